"""Silver coreference (CoNLL-2012 style) from repeated mentions in 2-5 consecutive real sentences.

Mentions and clusters, in document order:

- named entities (PERSON, ORG, GPE, LOC, FAC, NORP) with the same text (a leading "the" ignored) corefer;
  a one-word PERSON mention equal to the last word of an earlier PERSON ("John Howard" ... "Howard") joins it;
- common-noun phrases (spaCy noun chunks headed by a NOUN with a determiner) with the same head lemma corefer;
- he/him/his/she/her/himself/herself join the PERSON cluster only when exactly one PERSON cluster has been
  mentioned before the pronoun in the document (the unambiguous case; the rest stay unannotated).

Clusters with one mention are dropped; documents without any cluster are skipped. The rationale is every
mention of the document.
"""
from __future__ import annotations

import random

from atinuke.diagnostic.conll import ConllSentence, coref_column, word_offsets
from atinuke.diagnostic.records import Item
from atinuke.diagnostic.text import Sentence

ENTITY_TYPES = ("PERSON", "ORG", "GPE", "LOC", "FAC", "NORP")
PERSON_PRONOUNS = frozenset({"he", "him", "his", "she", "her", "himself", "herself"})


def _mentions(sents: list[Sentence]) -> list[tuple[int, int, str, str]]:
    """Candidate mentions ``(doc_token_start, doc_token_end_inclusive, key, kind)`` in document order."""
    found: list[tuple[int, int, str, str]] = []
    people: list[str] = []  # keys of PERSON clusters, in order of first mention
    last_names: dict[str, str] = {}
    for sent in sents:
        spans = {}
        for ent in sent.span.ents:
            if ent.label_ not in ENTITY_TYPES:
                continue
            text = ent.text[4:] if ent.text.lower().startswith("the ") else ent.text
            key = f"{ent.label_}:{text.lower()}"
            if ent.label_ == "PERSON":
                if len(ent) == 1 and text.lower() in last_names:
                    key = last_names[text.lower()]
                elif len(ent) > 1:
                    last_names.setdefault(ent[-1].lower_, key)
            spans[(ent.start, ent.end - 1)] = (key, "entity")
        for chunk in sent.span.noun_chunks:
            root = chunk.root
            if root.pos_ == "NOUN" and not root.ent_type_ and chunk[0].dep_ == "det" and chunk[0].lower_ in ("the", "a", "an", "this", "that", "these", "those"):
                spans.setdefault((chunk.start, chunk.end - 1), (f"NP:{root.lemma_.lower()}", "head_lemma"))
        for tok in sent.span:
            if tok.lower_ in PERSON_PRONOUNS and tok.tag_ in ("PRP", "PRP$"):
                spans.setdefault((tok.i, tok.i), ("PRONOUN", "pronoun"))
        for (start, end), (key, kind) in sorted(spans.items()):
            if kind == "pronoun":
                if len(set(people)) != 1:
                    continue
                key = people[0]
            if key.startswith("PERSON:") and key not in people:
                people.append(key)
            found.append((start, end, key, kind))
    return found


def generate(sentences: list[Sentence], split: str, n: int, rng: random.Random) -> tuple[list[Item], dict[str, list[ConllSentence]]]:
    """Up to ``n`` documents of 2-5 consecutive sentences with at least one cluster."""
    docs: dict[str, list[Sentence]] = {}
    for s in sentences:
        if s.split == split:
            docs.setdefault(s.doc_id, []).append(s)
    windows: list[list[Sentence]] = []
    for doc_id, sents in docs.items():
        run: list[Sentence] = []
        for sent in [*sents, None]:  # None ends the last run
            if sent is not None and run and sent.index == run[-1].index + 1:
                run.append(sent)
                continue
            while len(run) >= 2:
                size = min(len(run), rng.randint(2, 5))
                windows.append(run[:size])
                run = run[size:]
            run = [sent] if sent is not None else []
    rng.shuffle(windows)
    items: list[Item] = []
    out: dict[str, list[ConllSentence]] = {}
    for window in windows:
        if len(items) >= n:
            break
        mentions = _mentions(window)
        by_key: dict[str, list[tuple[int, int, str]]] = {}
        for start, end, key, kind in mentions:
            by_key.setdefault(key, []).append((start, end, kind))
        clusters = [m for m in by_key.values() if len(m) >= 2]
        if not clusters:
            continue
        doc_id = f"diag/{window[0].doc_id}_s{window[0].index:03d}"
        base_of = {}
        words: list[str] = []
        for s in window:
            base_of[s.index] = (s.span.start, len(words))
            words.extend(t.text for t in s.span)
        offsets = word_offsets(words)
        conll_sents: list[ConllSentence] = []
        flat: list[tuple[int, int, int]] = []
        kinds: dict[str, int] = {}
        distances: list[int] = []

        def to_word(tok_i: int) -> int:
            for s in window:
                if s.span.start <= tok_i < s.span.end:
                    return base_of[s.index][1] + tok_i - s.span.start
            raise ValueError(tok_i)

        per_sentence: dict[int, list[tuple[int, int, int]]] = {s.index: [] for s in window}
        for cid, cluster in enumerate(clusters):
            prev_end = None
            for start, end, kind in cluster:
                ws, we = to_word(start), to_word(end)
                flat.append((0, offsets[ws][0], offsets[we][1]))
                kinds[kind] = kinds.get(kind, 0) + 1
                if prev_end is not None:
                    distances.append(ws - prev_end)
                prev_end = we
                for s in window:
                    if s.span.start <= start < s.span.end:
                        per_sentence[s.index].append((start - s.span.start, end - s.span.start, cid))
        for s in window:
            conll_sents.append(ConllSentence(tokens=list(s.span), coref=coref_column(len(s.span), per_sentence[s.index])))
        out[doc_id] = conll_sents
        meta = {"rule": "+".join(sorted(kinds)), "n_sentences": len(window), "n_words": len(words), "n_clusters": len(clusters),
                "n_mentions": sum(len(c) for c in clusters), "max_mention_distance": max(distances, default=0),
                "n_pronouns": kinds.get("pronoun", 0), "source": window[0].source}
        items.append(Item(label=[[(to_word(s), to_word(e)) for s, e, _ in c] for c in clusters], texts=(" ".join(words),),
                          rationale=flat, meta=meta, extra={"id": f"{doc_id}:0", "sentences": window}))
    return items, out
