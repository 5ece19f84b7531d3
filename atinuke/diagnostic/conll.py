"""Writing CoNLL-2012 (OntoNotes ``*_conll``) files: the column layout shared by the SRL and coref tasks.

Columns: document id, part number, word number, word, POS, parse bit, predicate lemma, predicate frameset,
word sense, speaker, named entities, one argument column per predicate, coreference (Pradhan et al., 2012).
There is no constituency parse here: the parse bit is a flat ``(TOP* ... *)`` bracket per sentence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from spacy.tokens import Token


@dataclass
class ConllSentence:
    """One sentence to write: its tokens (spaCy), predicate columns and coreference brackets per word."""

    tokens: list[Token]
    predicates: list[int] = field(default_factory=list)  # word indices of predicates (column order)
    srl_columns: list[list[str]] = field(default_factory=list)  # one bracket column per predicate
    coref: Optional[list[str]] = None  # per word: "-", "(3", "3)", "(3)", "(1|(3" ...


def spans_to_brackets(n_words: int, spans: list[tuple[int, int, str]]) -> list[str]:
    """``(start, end_inclusive, label)`` spans -> CoNLL bracket column ("(ARG0*", "*", "*)", "(V*)")."""
    column = ["*"] * n_words
    for start, end, label in spans:
        column[start] = f"({label}" + column[start]
        column[end] = column[end] + ")"
    return column


def coref_column(n_words: int, mentions: list[tuple[int, int, int]]) -> list[str]:
    """``(start, end_inclusive, cluster_id)`` mentions -> the coreference column ("(0", "0)", "(0)", "-")."""
    parts: list[list[str]] = [[] for _ in range(n_words)]
    for start, end, cid in sorted(mentions, key=lambda m: (m[0], -m[1], m[2])):
        if start == end:
            parts[start].append(f"({cid})")
        else:
            parts[start].append(f"({cid}")
    for start, end, cid in sorted(mentions, key=lambda m: (m[1], -m[0], m[2])):
        if start != end:
            parts[end].append(f"{cid})")
    return ["|".join(p) if p else "-" for p in parts]


def _ne_column(tokens: list[Token]) -> list[str]:
    out = []
    for tok in tokens:
        iob, label = tok.ent_iob_, tok.ent_type_
        nxt_inside = tok.i + 1 < len(tok.doc) and tok.doc[tok.i + 1].ent_iob_ == "I" and tok is not tokens[-1]
        if not label:
            out.append("*")
        elif iob == "B" or tok is tokens[0]:  # an entity is never continued across sentences
            out.append(f"({label})" if not nxt_inside else f"({label}*")
        else:
            out.append("*)" if not nxt_inside else "*")
    return out


def format_document(doc_id: str, sentences: list[ConllSentence], part: int = 0) -> str:
    """The text of one ``#begin document`` ... ``#end document`` block."""
    lines = [f"#begin document ({doc_id}); part {part:03d}"]
    for sent in sentences:
        n = len(sent.tokens)
        ne = _ne_column(sent.tokens)
        coref = sent.coref or ["-"] * n
        for w, tok in enumerate(sent.tokens):
            parse = ("(TOP*" if w == 0 else "*") + (")" if w == n - 1 else "")
            is_pred = w in sent.predicates
            cols = [doc_id, str(part), str(w), tok.text, tok.tag_ or "-", parse, tok.lemma_ if is_pred else "-",
                    "-", "-", "-", ne[w]] + [col[w] for col in sent.srl_columns] + [coref[w]]
            lines.append("   ".join(cols))
        lines.append("")
    lines.append("#end document")
    return "\n".join(lines) + "\n"


def word_offsets(words: list[str]) -> list[tuple[int, int]]:
    """Character spans of ``words`` in ``" ".join(words)`` (the text of SRL and coref examples)."""
    out, pos = [], 0
    for w in words:
        out.append((pos, pos + len(w)))
        pos += len(w) + 1
    return out
