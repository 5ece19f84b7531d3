"""STS-B-style graded similarity (Cer et al., 2017, arXiv 1708.00055) from controlled edits of real sentences.

Each pair is a real sentence and a version made by a *recipe* of edits, drawn in rotation so that scores
spread over 0-5: a paraphrase edit, one or two dropped modifiers, added content, a replaced entity or
number, a negated main verb, combinations, another sentence of the same document, or a sentence of another
document. The score is::

    score = clip(5 * Dice(C1, C2) - 1.5 * n_replaced - 2.0 * negated, 0, 5), rounded to 0.01

where C1 and C2 are the multisets of lower-cased content words (not stop words) of the two sentences,
``Dice = 2 |C1 & C2| / (|C1| + |C2|)``, ``n_replaced`` counts replaced entities/numbers and ``negated`` is
1 when the main verb was negated. Meaning-preserving edits score 5, word loss lowers the score in
proportion to the content lost, and a changed fact or polarity costs a fixed amount. The rationale is the
changed words of both sentences.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Optional

from atinuke.diagnostic import edits
from atinuke.diagnostic.records import Item, pair_rationale, word_overlap
from atinuke.diagnostic.text import Sentence, content_lemmas

RECIPES = ("paraphrase", "drop", "drop2", "add", "replace", "replace_drop", "negate", "negate_replace",
           "same_document", "other_document")


def _stop_words() -> frozenset:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def similarity_score(a: str, b: str, n_replaced: int = 0, negated: bool = False) -> float:
    """The documented silver similarity score of a pair (see the module docstring)."""
    ca, cb = Counter(content_lemmas(a, _stop_words())), Counter(content_lemmas(b, _stop_words()))
    total = sum(ca.values()) + sum(cb.values())
    dice = 2 * sum((ca & cb).values()) / total if total else 1.0
    return round(min(5.0, max(0.0, 5 * dice - 1.5 * n_replaced - 2.0 * float(negated))), 2)


def _apply(recipe: str, sent: Sentence, rng: random.Random, pool: dict, own: list[Sentence]) -> Optional[tuple[str, int, bool]]:
    """Run one recipe; returns (second sentence, number of replacements, negated) or None."""
    if recipe == "paraphrase":
        made = edits.reorder_clause(sent) or edits.synonym_swap(sent) or edits.drop_parenthetical(sent)
        return (made.text, 0, False) if made else None
    if recipe in ("drop", "add"):
        made = edits.drop_modifier(sent, rng) if recipe == "drop" else edits.add_content(sent, rng)
        return (made.text, 0, False) if made else None
    if recipe == "drop2":
        first = edits.drop_modifier(sent, rng, kinds=("amod", "advmod"))
        second = edits.drop_modifier(sent, rng, kinds=("prep", "relcl"))
        if not first or not second:
            return None
        dropped = [first.meta["dropped"], second.meta["dropped"]]
        if dropped[0] in dropped[1]:
            return None
        return (second.text.replace(" " + dropped[0], "", 1), 0, False)
    if recipe in ("replace", "replace_drop", "negate_replace"):
        made = edits.replace_entity(sent, rng, pool)
        if not made:
            return None
        text = made.text
        if recipe == "replace_drop":
            drop = edits.drop_modifier(sent, rng, kinds=("amod", "advmod"))
            if not drop or drop.meta["dropped"] in (made.meta["old"],) or " " + drop.meta["dropped"] not in text:
                return None
            text = text.replace(" " + drop.meta["dropped"], "", 1)
        if recipe == "negate_replace":
            neg = edits.negate(sent)
            if not neg or neg.meta["target"] not in text:
                return None
            old, new = made.meta["old"], made.meta["new"]
            if old not in neg.text:
                return None
            return (neg.text.replace(old, new, 1), 1, True)
        return (text, 1, False)
    if recipe == "negate":
        made = edits.negate(sent)
        return (made.text, 0, True) if made else None
    if recipe == "same_document":
        others = [s for s in own if s.doc_id == sent.doc_id and s.index != sent.index]
        return (others[rng.randrange(len(others))].text, 0, False) if others else None
    others = [s for s in own if s.doc_id != sent.doc_id]
    return (others[rng.randrange(len(others))].text, 0, False) if others else None


def generate(sentences: list[Sentence], split: str, n: int, rng: random.Random, pool: dict) -> list[Item]:
    """``n`` scored pairs from the sentences of ``split``; recipes rotate so scores cover 0-5."""
    own = [s for s in sentences if s.split == split]
    order = list(own)
    rng.shuffle(order)
    items: list[Item] = []
    for k, sent in enumerate(order):
        if len(items) >= n:
            break
        for r in range(len(RECIPES)):
            recipe = RECIPES[(len(items) + r) % len(RECIPES)]
            made = _apply(recipe, sent, rng, pool, own)
            if made and made[0] != sent.text:
                break
        else:
            continue
        second, n_replaced, negated = made
        score = similarity_score(sent.text, second, n_replaced, negated)
        meta = {"rule": recipe, "n_replaced": n_replaced, "negation": negated, "words_1": len(sent.text.split()),
                "words_2": len(second.split()), "overlap": word_overlap(sent.text, second), "source": sent.source}
        items.append(Item(label=score, texts=(sent.text, second), rationale=pair_rationale(sent.text, second),
                          sentence=sent, meta=meta))
    return items
