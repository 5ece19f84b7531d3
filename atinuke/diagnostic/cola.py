"""CoLA-style acceptability (Warstadt et al., 2019, arXiv 1805.12471): real sentences vs. corrupted ones.

Label 1: a real sentence from the corpus, unchanged. Label 0: another real sentence with one systematic
corruption, chosen in rotation among the rules that apply:

- ``swap_det_noun``: a determiner and the noun after it are swapped ("on the mat" -> "on mat the");
- ``delete_verb``: the main verb is deleted ("The cat on the mat.");
- ``delete_determiner``: the article of a singular count noun is deleted ("sat on mat");
- ``duplicate_function_word``: a preposition, determiner or auxiliary is doubled ("on on the mat");
- ``break_agreement``: a present-tense or "be/have/do" verb takes the wrong number ("The cat sit").

The rationale of a corrupted sentence covers the corrupted words (or the two words around a deletion);
real sentences have no rationale (nothing local decides that a sentence is fine).
"""
from __future__ import annotations

import random
from typing import Optional

from atinuke.diagnostic.records import Item, balance
from atinuke.diagnostic.text import Sentence, apply_edits, first_upper

_FLIP = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has", "does": "do", "do": "does"}
RULES = ("swap_det_noun", "delete_verb", "delete_determiner", "duplicate_function_word", "break_agreement")


def _third_person(lemma: str) -> str:
    if lemma.endswith(("s", "sh", "ch", "x", "z", "o")):
        return lemma + "es"
    if lemma.endswith("y") and len(lemma) > 1 and lemma[-2] not in "aeiou":
        return lemma[:-1] + "ies"
    return lemma + "s"


def corrupt(sent: Sentence, rule: str) -> Optional[tuple[str, list[tuple[int, int]]]]:
    """Apply ``rule`` to ``sent``; returns the corrupted text and the rationale spans in it, or None."""
    span, doc, text = sent.span, sent.span.doc, sent.text
    toks = list(span)
    if rule == "swap_det_noun":
        for a, b in zip(toks[1:], toks[2:]):
            if a.dep_ == "det" and a.lower_ in ("the", "a", "an", "this", "that") and a.head == b and b.pos_ == "NOUN" and a.whitespace_:
                s, e = sent.start(a), sent.end(b)
                return apply_edits(text, [(s, e, b.text + " " + a.text)]), [(s, e)]
    elif rule == "delete_verb":
        root = span.root
        if root.pos_ == "VERB" and root.i > span.start and any(c.dep_ == "nsubj" for c in root.children) and root.i + 1 < span.end:
            s, e = sent.start(root) - 1, sent.end(root)
            new = text[:s] + text[e:]
            prev, nxt = doc[root.i - 1], doc[root.i + 1]
            return new, [(sent.start(prev), sent.end(nxt) - (e - s))]
    elif rule == "delete_determiner":
        for a, b in zip(toks[1:], toks[2:]):
            if a.lower_ in ("the", "a", "an") and a.head == b and b.tag_ == "NN" and not b.ent_type_ and a.whitespace_:
                prev = doc[a.i - 1]
                s, e = sent.start(a) - 1, sent.end(a)
                return text[:s] + text[e:], [(sent.start(prev), sent.end(b) - (e - s))]
    elif rule == "duplicate_function_word":
        for tok in toks[1:-1]:
            if tok.pos_ in ("ADP", "DET", "AUX") and tok.is_alpha and tok.whitespace_:
                s, e = sent.start(tok), sent.end(tok)
                return apply_edits(text, [(e, e, " " + tok.text)]), [(s, e + 1 + len(tok.text))]
    elif rule == "break_agreement":
        for tok in toks:
            subj = [c for c in tok.children if c.dep_ == "nsubj" and c.pos_ in ("NOUN", "PROPN", "PRON")]
            if not subj or tok.tag_ not in ("VBZ", "VBP") or not tok.is_alpha or subj[0].lower_ in ("i", "you"):
                continue
            if tok.lower_ in _FLIP:
                new = _FLIP[tok.lower_]
            elif tok.tag_ == "VBZ" and tok.lower_ == _third_person(tok.lemma_.lower()):
                new = tok.lemma_.lower()
            elif tok.tag_ == "VBP" and tok.lower_ == tok.lemma_.lower():
                new = _third_person(tok.lemma_.lower())
            else:
                continue
            new = first_upper(new) if tok.text[:1].isupper() else new
            s, e = sent.start(tok), sent.end(tok)
            out = apply_edits(text, [(s, e, new)])
            shift = len(new) - (e - s)
            subj_s, subj_e = sent.start(subj[0]), sent.end(subj[0])
            spans = [(subj_s, subj_e), (s, e + shift)] if subj_e <= s else [(s, e + shift), (subj_s + shift, subj_e + shift)]
            return out, spans
    return None


def generate(sentences: list[Sentence], split: str, n: int, rng: random.Random) -> list[Item]:
    """``n`` examples (half label 1, half label 0) from the sentences of ``split``, each sentence used once."""
    pool = [s for s in sentences if s.split == split]
    rng.shuffle(pool)
    items: list[Item] = []
    n_pos = n_neg = 0
    for k, sent in enumerate(pool):
        if n_pos + n_neg >= n:
            break
        made = None
        if n_neg < n // 2 and (n_pos >= n - n // 2 or k % 2 == 0):
            for r in range(len(RULES)):
                rule = RULES[(n_neg + r) % len(RULES)]
                made = corrupt(sent, rule)
                if made:
                    break
        if made:
            new, spans = made
            items.append(Item(label=0, texts=(new,), rationale=[(0, s, e) for s, e in spans], sentence=sent,
                              meta={"rule": rule, "n_words": len(new.split()), "corruption": rule}))
            n_neg += 1
        elif n_pos < n - n // 2:
            items.append(Item(label=1, texts=(sent.text,), rationale=[], sentence=sent,
                              meta={"rule": "original", "n_words": len(sent.text.split()), "corruption": "none"}))
            n_pos += 1
    return balance(items)
