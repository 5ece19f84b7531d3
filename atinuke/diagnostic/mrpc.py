"""MRPC-style paraphrase pairs (Dolan & Brockett, 2005) from controlled edits of real sentences.

- Paraphrase (1): an adverbial moved to the other end of the sentence, a function word or common word swapped
  for a synonym, or a parenthesis / appositive / light adverb ("also") dropped; failing those, a "-ly"
  adverb dropped (``drop_advmod``).
- Not a paraphrase (0): an entity or number swapped with another from the corpus, or a *different* sentence
  of the same document with high word overlap (the hardest negatives, as in MRPC).

Labels are balanced 1:1. The rationale is the changed words of both sentences.
"""
from __future__ import annotations

import random
from typing import Optional

from atinuke.diagnostic import edits
from atinuke.diagnostic.records import Item, balance, pair_rationale, word_overlap
from atinuke.diagnostic.text import Sentence

POSITIVE_RULES = ("reorder", "synonym", "drop_parenthetical")


def overlap_partner(sent: Sentence, by_doc: dict[str, list[Sentence]], threshold: float = 0.2) -> Optional[Sentence]:
    """The other sentence of the same document with the highest word overlap (at least ``threshold``)."""
    best, best_score = None, threshold
    for other in by_doc.get(sent.doc_id, []):
        if other.index != sent.index:
            score = word_overlap(sent.text, other.text)
            if score > best_score:
                best, best_score = other, score
    return best


def _positive(sent: Sentence, k: int, rng: random.Random) -> Optional[edits.Edit]:
    rules = (edits.reorder_clause, edits.synonym_swap, edits.drop_parenthetical)
    for r in range(len(rules)):
        made = rules[(k + r) % len(rules)](sent)
        if made and made.text != sent.text:
            return made
    # Last resort: drop one "-ly" manner/degree adverb, which MRPC annotators still call a paraphrase.
    return edits.drop_modifier(sent, rng, kinds=("advmod",))


def generate(sentences: list[Sentence], split: str, n: int, rng: random.Random, pool: dict) -> list[Item]:
    """``n`` pairs (half paraphrases) from the sentences of ``split``, each source sentence used once."""
    own = [s for s in sentences if s.split == split]
    by_doc: dict[str, list[Sentence]] = {}
    for s in own:
        by_doc.setdefault(s.doc_id, []).append(s)
    rng.shuffle(own)
    items: list[Item] = []
    n_pos = n_neg = 0
    for k, sent in enumerate(own):
        if n_pos + n_neg >= n:
            break
        second, rule, extra_meta = None, "", {}
        if n_pos < n // 2:
            made = _positive(sent, n_pos, rng)
            if made:
                second, rule, label, extra_meta = made.text, made.rule, 1, made.meta
        if second is None and n_neg < n - n // 2:
            partner = overlap_partner(sent, by_doc) if k % 2 == 0 else None
            if partner is not None:
                second, rule, label = partner.text, "same_document_overlap", 0
            else:
                made = edits.replace_entity(sent, rng, pool)
                if made:
                    second, rule, label, extra_meta = made.text, made.rule, 0, made.meta
        if second is None:
            continue
        n_pos, n_neg = n_pos + (label == 1), n_neg + (label == 0)
        meta = {"rule": rule, "words_1": len(sent.text.split()), "words_2": len(second.split()),
                "overlap": word_overlap(sent.text, second), "source": sent.source, **extra_meta}
        items.append(Item(label=label, texts=(sent.text, second), rationale=pair_rationale(sent.text, second),
                          sentence=sent, meta=meta))
    return balance(items)
