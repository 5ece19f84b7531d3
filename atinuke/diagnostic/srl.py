"""Silver semantic role labelling (CoNLL-2012 style) read off spaCy's dependency parse.

For each verb (POS VERB, not an auxiliary) its direct dependents become arguments, each spanning the
dependent's subtree (when contiguous and not containing the verb):
nsubj/csubj -> ARG0, nsubjpass -> ARG1, agent ("by ...") -> ARG0, dobj -> ARG1, ccomp -> ARG1 (when there is
no dobj), dative -> ARG2, npadvmod or prep whose object is a DATE/TIME entity -> ARGM-TMP, prep whose object
is a GPE/LOC/FAC entity -> ARGM-LOC, neg -> ARGM-NEG. The predicate itself is tagged V. PropBank's
verb-specific numbering (ARG0 = proto-agent, Dowty 1991) is approximated by grammatical function, so
unaccusatives ("the ice melted": PropBank ARG1) come out as ARG0: see docs/diagnostic_suite.md.
"""
from __future__ import annotations

import random

from atinuke.diagnostic.conll import ConllSentence, spans_to_brackets, word_offsets
from atinuke.diagnostic.records import Item
from atinuke.diagnostic.text import Sentence

ROLE_BY_DEP = {"nsubj": "ARG0", "csubj": "ARG0", "nsubjpass": "ARG1", "agent": "ARG0", "dobj": "ARG1",
               "dative": "ARG2", "neg": "ARGM-NEG"}


def _role(child, has_dobj: bool) -> str | None:
    if child.dep_ in ROLE_BY_DEP:
        return ROLE_BY_DEP[child.dep_]
    if child.dep_ == "ccomp" and not has_dobj:
        return "ARG1"
    if child.dep_ == "npadvmod" and child.ent_type_ in ("DATE", "TIME"):
        return "ARGM-TMP"
    if child.dep_ == "prep":
        objs = [c for c in child.children if c.dep_ == "pobj"]
        if objs and objs[0].ent_type_ in ("DATE", "TIME"):
            return "ARGM-TMP"
        if objs and objs[0].ent_type_ in ("GPE", "LOC", "FAC"):
            return "ARGM-LOC"
    return None


def frame(sent: Sentence, predicate) -> list[tuple[int, int, str]]:
    """Argument spans ``(start, end_inclusive, role)`` (word indices within the sentence) of ``predicate``,
    including ``(p, p, "V")``; empty when the verb has no argument."""
    base = sent.span.start
    has_dobj = any(c.dep_ == "dobj" for c in predicate.children)
    spans = []
    for child in predicate.children:
        role = _role(child, has_dobj)
        if role is None:
            continue
        sub = list(child.subtree)
        first, last = sub[0].i, sub[-1].i
        if last - first + 1 != len(sub) or first <= predicate.i <= last:
            continue
        while last > first and sent.span.doc[last].is_punct:
            last -= 1
        spans.append((first - base, last - base, role))
    if not spans:
        return []
    return sorted(spans + [(predicate.i - base, predicate.i - base, "V")])


def to_bio(n_words: int, spans: list[tuple[int, int, str]]) -> list[str]:
    """BIO tags of a frame (the tags a loader derives from the bracket column)."""
    from atinuke.tasks.conll2012 import spans_to_bio

    return spans_to_bio([(role, start, end) for start, end, role in spans], n_words)


def generate(sentences: list[Sentence], split: str, n: int, rng: random.Random) -> tuple[list[Item], dict[str, list[ConllSentence]]]:
    """About ``n`` predicate frames; returns the items (one per predicate, in file order) and the
    documents to write (doc id -> sentences)."""
    own = [s for s in sentences if s.split == split]
    docs: dict[str, list[Sentence]] = {}
    for s in own:
        docs.setdefault(s.doc_id, []).append(s)
    doc_ids = list(docs)
    rng.shuffle(doc_ids)
    items: list[Item] = []
    out: dict[str, list[ConllSentence]] = {}
    for doc_id in doc_ids:
        if len(items) >= n:
            break
        conll_id = f"diag/{doc_id}"
        written: list[ConllSentence] = []
        for sent in docs[doc_id]:
            tokens = list(sent.span)
            words = [t.text for t in tokens]
            offsets = word_offsets(words)
            frames = [(t, frame(sent, t)) for t in tokens if t.pos_ == "VERB" and t.dep_ not in ("aux", "auxpass")]
            frames = [(t, f) for t, f in frames if f]
            if not frames:
                continue
            index = len(written)
            conll = ConllSentence(tokens=tokens)
            for pred, spans in frames:
                p = pred.i - sent.span.start
                conll.predicates.append(p)
                conll.srl_columns.append(spans_to_brackets(len(words), spans))
                args = [(s, e, r) for s, e, r in spans if r != "V"]
                rationale = [(0, offsets[s][0], offsets[e][1]) for s, e, _ in args]
                meta = {"rule": "dependency_frame", "predicate": pred.lemma_, "roles": [r for _, _, r in args],
                        "n_args": len(args), "passive": any(r == "ARG1" and s < p for s, _, r in args),
                        "sentence_words": len(words), "max_arg_width": max(e - s + 1 for s, e, _ in args),
                        "max_arg_distance": max(min(abs(s - p), abs(e - p)) for s, e, _ in args), "source": sent.source}
                items.append(Item(label=to_bio(len(words), spans), texts=(" ".join(words),), rationale=rationale, sentence=sent,
                                  meta=meta, extra={"id": f"{conll_id}:0:{index}:{p}"}))
            written.append(conll)
        if written:
            out[conll_id] = written
    return items, out
