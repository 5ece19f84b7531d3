"""SQuAD 2.0-style extractive QA (Rajpurkar et al., 2018, arXiv 1806.03822) built from entity-bearing sentences.

The context is a whole source document (a Lee article or a Wikipedia paragraph). A question is made from one
of its sentences by replacing an entity with a wh-phrase:

- ``subject_who`` / ``subject_which``: a PERSON / ORG / GPE subject -> "Who ...?", "Which organisation ...?";
- ``how_many`` / ``how_many_object``: a subject or object "N things" with a CARDINAL -> "How many things ...?";
- ``object_who``: a PERSON / ORG / GPE direct object -> "Who did the police arrest?";
- ``where`` / ``when``: a prepositional phrase of the main verb with a GPE/LOC/FAC ("in Sydney") or a
  DATE ("in 2003", "on Monday", or a bare "today") is removed and the clause inverted ("Where did the company hire workers?").

About a third are made unanswerable: an entity (or a noun) of the question is replaced by one that does not
occur in the context, so the context no longer answers it; the original answer is kept as
``plausible_answers``. The rationale is the answer span in the context (segment 0) plus the question's
keywords (segment 1); for an unanswerable question, the altered word in the question and the word it
replaced in the context.
"""
from __future__ import annotations

import random
from typing import Optional

from atinuke.diagnostic.records import Item
from atinuke.diagnostic.text import CONTENT_POS, Sentence

_WHO = {"PERSON": "Who", "ORG": "Which organisation", "GPE": "Which place"}
_TITLES = frozenset({"the", "mr", "mrs", "ms", "dr", "mr.", "mrs.", "dr."})


def _subtree_set(token) -> set[int]:
    return {t.i for t in token.subtree}


def _render(span, drop: set[int], replace: dict[int, str], lower: Optional[int]) -> tuple[str, dict[int, tuple[int, int]]]:
    """Join the clause's tokens minus ``drop`` (and the final punctuation), with replacements; also
    return each kept token's character span in the result."""
    pieces, where, pos = [], {}, 0
    toks = [t for t in span[:-1] if t.i not in drop]
    while toks and toks[-1].text in (",", ";", ":"):
        toks.pop()
    for tok in toks:
        text = replace.get(tok.i, tok.text)
        if tok.i == lower and tok.pos_ != "PROPN" and tok.text != "I":
            text = text[:1].lower() + text[1:]
        where[tok.i] = (pos, pos + len(text))
        pieces.append(text + (" " if tok.whitespace_ else ""))
        pos += len(pieces[-1])
    return "".join(pieces).rstrip(), where


def _clauses(sent: Sentence) -> list:
    """The main clause, plus the clause reported by "say/tell/report/announce" ("X said [the company hired
    300 workers]."), each as a span ending with the sentence's final punctuation."""
    span, root = sent.span, sent.span.root
    out = [span]
    if root.lemma_ in ("say", "tell", "report", "announce", "confirm", "believe"):
        for child in root.children:
            if child.dep_ == "ccomp" and child.i > root.i:
                sub = sorted(_subtree_set(child))
                first = sub[0] + (1 if span.doc[sub[0]].dep_ == "mark" else 0)
                if sub[-1] == span.end - 2 and sub[-1] - sub[0] + 1 == len(sub) and first < child.i:
                    out.append(span.doc[first:span.end])
    return out


def _question(sent: Sentence, ent, span=None) -> Optional[tuple[str, str, dict[int, tuple[int, int]], int]]:
    """A wh-question whose answer is ``ent``: (question, rule, token char spans in it, wh length)."""
    span = sent.span if span is None else span
    root = span.root
    if not (span.start <= ent.start and ent.end <= span.end):
        return None
    subj = [c for c in root.children if c.dep_ in ("nsubj", "nsubjpass")]
    if not subj or root.pos_ not in ("VERB", "AUX"):
        return None
    subj_toks = _subtree_set(subj[0])
    if min(subj_toks) != span.start or len(subj_toks) != max(subj_toks) - span.start + 1:  # a contiguous, clause-initial subject
        return None
    ent_toks = set(range(ent.start, ent.end))

    def titles_only(extra: set[int]) -> bool:
        return all(span.doc[i].lower_ in _TITLES for i in extra)

    if ent_toks <= subj_toks:
        rest = subj_toks - ent_toks
        if ent.label_ in _WHO and titles_only(rest):
            wh, rule = _WHO[ent.label_], "subject_who" if ent.label_ == "PERSON" else "subject_which"
        elif ent.label_ == "CARDINAL" and len(ent) == 1 and ent.root.dep_ == "nummod" and ent.root.head == subj[0] and subj_toks == {ent.start, subj[0].i}:
            wh, rule = "How many " + subj[0].text, "how_many"
        else:
            return None
        body, where = _render(span, subj_toks, {}, None)
        shifted = {i: (s + len(wh) + 1, e + len(wh) + 1) for i, (s, e) in where.items()}
        return f"{wh} {body}?", rule, shifted, len(wh)
    head = ent.root
    if head.dep_ == "pobj" and head.head.dep_ == "prep" and head.head.head == root and head.head.i > root.i:
        prep = head.head
        if ent.label_ in ("GPE", "LOC", "FAC") and prep.lower_ in ("in", "at", "near"):
            wh, rule = "Where", "where"
        elif ent.label_ == "DATE" and prep.lower_ in ("in", "on", "during"):
            wh, rule = "When", "when"
        else:
            return None
        drop = _subtree_set(prep)
    elif head.dep_ == "npadvmod" and head.head == root and ent.label_ in ("DATE", "TIME") and head.i > root.i:
        wh, rule, drop = "When", "when", _subtree_set(head)
    elif head.dep_ == "dobj" and head.head == root and ent.label_ in _WHO and titles_only(_subtree_set(head) - ent_toks):
        wh, rule, drop = ("Who" if ent.label_ == "PERSON" else _WHO[ent.label_]), "object_who", _subtree_set(head)
    elif (ent.label_ == "CARDINAL" and len(ent) == 1 and head.dep_ == "nummod" and head.head.dep_ == "dobj"
          and head.head.head == root and _subtree_set(head.head) == {head.i, head.head.i}):
        wh, rule, drop = "How many " + head.head.text, "how_many_object", {head.i, head.head.i}
    else:
        return None
    if max(drop) - min(drop) + 1 != len(drop) or any(c.dep_ in ("aux", "auxpass") and c.i > root.i for c in root.children):
        return None
    auxes = [c for c in root.children if c.dep_ in ("aux", "auxpass") and c.i < root.i and c.is_alpha]
    replace: dict[int, str] = {}
    if auxes:
        front = auxes[0].text
        drop = drop | {auxes[0].i}
    elif root.lemma_ == "be" and root.tag_ in ("VBZ", "VBD", "VBP") and root.is_alpha:
        front = root.text
        drop = drop | {root.i}
    elif root.tag_ in ("VBD", "VBZ", "VBP") and root.lemma_.isalpha() and root.lemma_.islower():
        front = {"VBD": "did", "VBZ": "does", "VBP": "do"}[root.tag_]
        replace[root.i] = root.lemma_
    else:
        return None
    if root.i in drop and len([t for t in span if t.i > max(subj_toks) and t.i not in drop and not t.is_punct]) == 0:
        return None
    body, where = _render(span, drop, replace, span.start)
    head = f"{wh} {front.lower()} "
    shifted = {i: (s + len(head), e + len(head)) for i, (s, e) in where.items()}
    return f"{head}{body}?", rule, shifted, len(wh)


def _alter(sent: Sentence, ent, where: dict, question: str, rng: random.Random, pool: dict, context: str):
    """Make the question unanswerable: replace another entity (or a noun) by one absent from the context."""
    low = context.lower()
    for other in sent.span.ents:
        if other == ent or other.label_ not in pool or other.start not in where or (other.end - 1) not in where:
            continue
        options = [e for e in pool[other.label_] if e.lower() not in low]
        if options:
            new = options[rng.randrange(len(options))]
            qs, qe = where[other.start][0], where[other.end - 1][1]
            return new, qs, qe, other.start_char, other.end_char
    nouns = [t for t in sent.span if t.pos_ == "NOUN" and t.i in where and not t.ent_type_ and t.is_alpha]
    options = [w for w in pool.get("_NOUN", []) if w.lower() not in low]
    if nouns and options:
        tok = nouns[rng.randrange(len(nouns))]
        new = options[rng.randrange(len(options))]
        qs, qe = where[tok.i]
        return new, qs, qe, tok.idx, tok.idx + len(tok.text)
    return None


def generate(sentences: list[Sentence], split: str, n: int, rng: random.Random, pool: dict) -> list[Item]:
    """About ``n`` questions (1/3 unanswerable) over the documents of ``split``."""
    own = [s for s in sentences if s.split == split]
    rng.shuffle(own)
    items: list[Item] = []
    for sent in own:
        if len(items) >= n:
            break
        context = sent.span.doc.text
        for ent, clause in ((e, c) for c in _clauses(sent) for e in sent.span.ents):
            made = _question(sent, ent, clause)
            if made is None:
                continue
            question, rule, where, _ = made
            rule = rule if clause is sent.span else f"{rule}_reported"
            answer = {"text": ent.text, "answer_start": ent.start_char}
            meta = {"rule": rule, "answer_type": ent.label_, "answer_words": len(ent), "question_words": len(question.split()),
                    "context_words": len(context.split()), "source": sent.source, "doc_id": sent.doc_id}
            keywords = [(1, s, e) for i, (s, e) in where.items() if sent.span.doc[i].pos_ in CONTENT_POS and not sent.span.doc[i].is_stop]
            if len(items) % 3 == 2:
                altered = _alter(sent, ent, where, question, rng, pool, context)
                if altered is None:
                    continue
                new, qs, qe, cs, ce = altered
                question = question[:qs] + new + question[qe:]
                meta.update(rule=f"{rule}_altered", altered=new, replaced=context[cs:ce])
                items.append(Item(label="impossible", texts=(context, question), rationale=[(0, cs, ce), (1, qs, qs + len(new))],
                                  sentence=sent, meta=meta, extra={"answers": [], "plausible_answers": [answer], "title": sent.doc_id}))
            else:
                items.append(Item(label="answerable", texts=(context, question), rationale=[(0, ent.start_char, ent.end_char)] + keywords,
                                  sentence=sent, meta=meta, extra={"answers": [answer], "title": sent.doc_id}))
            if len(items) >= n:
                break
    return items


def noun_pool(sentences: list[Sentence], split: str) -> list[str]:
    """Common nouns of ``split`` (sorted by frequency, then text), replacements for unanswerable questions."""
    counts: dict[str, int] = {}
    for s in sentences:
        if s.split == split:
            for t in s.span:
                if t.tag_ == "NN" and t.is_alpha and t.is_lower and not t.is_stop:
                    counts[t.text] = counts.get(t.text, 0) + 1
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:500]
