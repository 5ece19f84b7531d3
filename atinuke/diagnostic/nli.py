"""SNLI-style 3-way inference (Bowman et al., 2015, arXiv 1508.05326) from controlled edits of real sentences.

Each premise is a real sentence; it gets one hypothesis per label, as in SNLI:

- entailment: a modifier is dropped (adjective, "-ly" adverb, prepositional phrase of the main verb,
  relative clause) from a sentence without negation or downward-entailing words;
- contradiction: the main verb is negated, the subject and object are swapped, or an entity or number is
  replaced by another of the same type (contradiction under SNLI's same-situation reading);
- neutral: unsupported content is added (an adjective before a definite noun, or an adverbial phrase).

Only premises that admit all three edits are used, so the labels are exactly balanced. The rationale is the
changed words: dropped ones in the premise (segment 0) and added/changed ones in the hypothesis (segment 1).
"""
from __future__ import annotations

import random

from atinuke.diagnostic import edits
from atinuke.diagnostic.records import Item, pair_rationale, word_overlap
from atinuke.diagnostic.text import Sentence

LABELS = ("entailment", "contradiction", "neutral")


def _contradiction(sent: Sentence, rng: random.Random, pool: dict, k: int):
    rules = (edits.negate, edits.swap_arguments, lambda s: edits.replace_entity(s, rng, pool))
    for r in range(len(rules)):
        made = rules[(k + r) % len(rules)](sent)
        if made:
            return made
    return None


def generate(sentences: list[Sentence], split: str, n: int, rng: random.Random, pool: dict) -> list[Item]:
    """About ``n`` pairs (a multiple of 3, labels balanced) from the sentences of ``split``."""
    premises = [s for s in sentences if s.split == split]
    rng.shuffle(premises)
    items: list[Item] = []
    for k, sent in enumerate(premises):
        if len(items) + 3 > n:
            break
        made = {"entailment": edits.drop_modifier(sent, rng), "contradiction": _contradiction(sent, rng, pool, k),
                "neutral": edits.add_content(sent, rng)}
        if any(m is None or m.text == sent.text for m in made.values()):
            continue
        for label in LABELS:
            edit = made[label]
            meta = {"rule": edit.rule, "premise_words": len(sent.text.split()), "hypothesis_words": len(edit.text.split()),
                    "overlap": word_overlap(sent.text, edit.text), "negation": edit.rule == "negate_main_verb",
                    "source": sent.source, **{k2: v for k2, v in edit.meta.items() if k2 != "negation"}}
            items.append(Item(label=label, texts=(sent.text, edit.text), rationale=pair_rationale(sent.text, edit.text),
                              sentence=sent, meta=meta))
    return items
