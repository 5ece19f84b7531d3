"""CoNLL-2012 / OntoNotes 5.0 ``*_conll`` files, for SRL and coreference (Pradhan et al., 2012, "CoNLL-2012
Shared Task: Modeling Multilingual Unrestricted Coreference in OntoNotes").

A file holds documents, each ``#begin document (<doc_id>); part <NNN>`` ... ``#end document``, with one word
a line and a blank (or whitespace-only) line between sentences. Columns (whitespace-separated):

    0 document id   1 part   2 word index   3 word   4 POS   5 parse bit   6 predicate lemma
    7 predicate frameset id   8 word sense   9 speaker   10 named entities   11..N-2 one SRL column per
    predicate   N-1 coreference

SRL columns use start-end brackets (``(ARG0*``, ``*``, ``*)``, ``(V*)``); they become one
:class:`SRLExample` per predicate with BIO tags, id ``f"{doc_id}:{part}:{sentence_index}:{predicate_index}"``
(``part`` as an integer, sentence index 0-based within the part, predicate index = the word's 0-based
position in its sentence). The coreference column
(``(12``, ``12)``, ``(12)``, joined by ``|``) becomes one :class:`CorefDocument` per part with inclusive word
spans over the whole part, id ``f"{doc_id}:{part}"``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData, check_unique_ids, open_text
from atinuke.tasks.base import CorefDocument, Example, SRLExample

logger = logging.getLogger(__name__)

# PropBank roles of the CoNLL-2012 release: numbered arguments, modifiers, continuation (C-) and reference
# (R-) forms, the predicate (V) and the LINK roles of a few trees.
CORE_ROLES = ("ARG0", "ARG1", "ARG2", "ARG3", "ARG4", "ARG5", "ARGA")
MODIFIERS = ("ADJ", "ADV", "CAU", "COM", "DIR", "DIS", "DSP", "EXT", "GOL", "LOC", "LVB", "MNR", "MOD", "NEG",
             "PNC", "PRD", "PRP", "PRR", "PRX", "REC", "TMP")
_BASE_ROLES = CORE_ROLES + tuple(f"ARGM-{m}" for m in MODIFIERS)
SRL_ROLES: tuple[str, ...] = (("V", "C-V") + _BASE_ROLES + tuple(f"C-{r}" for r in _BASE_ROLES)
                              + tuple(f"R-{r}" for r in _BASE_ROLES) + ("LINK-PRO", "LINK-SLC", "LINK-PSV"))
SRL_TAGS: tuple[str, ...] = ("O",) + tuple(f"{p}-{r}" for r in SRL_ROLES for p in ("B", "I"))

_BEGIN = re.compile(r"^#begin document \((.*)\);\s*part\s+(\d+)\s*$")
_MIN_COLUMNS = 12
_CONLL_GLOB = "*_conll"


@dataclass
class ConllSentence:
    """The rows of one sentence: ``columns[k][i]`` is column k of word i; ``first_line`` for error messages."""

    columns: list[list[str]]
    first_line: int

    @property
    def words(self) -> list[str]:
        return self.columns[3]


@dataclass
class ConllDocument:
    """One ``#begin document`` ... ``#end document`` part."""

    doc_id: str
    part: int
    sentences: list[ConllSentence] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.doc_id}:{self.part}"


def read_conll2012(path: str | Path) -> list[ConllDocument]:
    """Parse a ``*_conll`` file into documents and sentences, checking its structure.

    Raises:
        UserInputError: naming ``file:line`` for a row outside a document, a nested or unclosed document,
            fewer than 12 columns, a column count that changes within a sentence, a word index out of order,
            or a part number that disagrees with the document header.
    """
    path = Path(path)
    documents: list[ConllDocument] = []
    current: Optional[ConllDocument] = None
    rows: list[list[str]] = []
    first_line = 0

    def close_sentence() -> None:
        nonlocal rows
        if rows:
            assert current is not None
            current.sentences.append(ConllSentence([list(col) for col in zip(*rows)], first_line))
            rows = []

    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            stripped = line.strip()
            if stripped.startswith("#begin document"):
                match = _BEGIN.match(stripped)
                if match is None:
                    raise UserInputError(f"{where(path, line_no)}: malformed document header {stripped!r}")
                if current is not None:
                    raise UserInputError(f"{where(path, line_no)}: #begin document inside document {current.id}")
                current = ConllDocument(match.group(1), int(match.group(2)))
                continue
            if stripped.startswith("#end document"):
                if current is None:
                    raise UserInputError(f"{where(path, line_no)}: #end document without #begin document")
                close_sentence()
                documents.append(current)
                current = None
                continue
            if not stripped:
                if current is not None:
                    close_sentence()
                continue
            if stripped.startswith("#"):
                continue  # other comment lines carry nothing we read
            if current is None:
                raise UserInputError(f"{where(path, line_no)}: data row outside a #begin/#end document block")
            cells = stripped.split()
            if len(cells) < _MIN_COLUMNS:
                raise UserInputError(f"{where(path, line_no)}: {len(cells)} columns, a CoNLL-2012 row has at least "
                                     f"{_MIN_COLUMNS}")
            if rows and len(cells) != len(rows[0]):
                raise UserInputError(f"{where(path, line_no)}: {len(cells)} columns, the sentence's first row has "
                                     f"{len(rows[0])}")
            if not rows:
                first_line = line_no
            # Word numbers must increase; they need not be contiguous (hand-trimmed excerpts skip some), so
            # words are indexed by their position in the sentence, not by this column.
            if not cells[2].isdigit() or (rows and int(cells[2]) <= int(rows[-1][2])):
                raise UserInputError(f"{where(path, line_no)}: word number {cells[2]!r} does not follow "
                                     f"{rows[-1][2] if rows else 'the sentence start'}")
            if not cells[1].isdigit() or int(cells[1]) != current.part:
                raise UserInputError(f"{where(path, line_no)}: part {cells[1]!r} differs from the header's part "
                                     f"{current.part}")
            rows.append(cells)
    if current is not None:
        raise UserInputError(f"{path}: document {current.id} is not closed with #end document")
    return documents


def brackets_to_spans(column: list[str], path: Path, line: int, roles: Optional[tuple[str, ...]] = None,
                      nested: bool = False) -> list[tuple[str, int, int]]:
    """Turn a start-end bracket column (``(ARG0*``, ``*``, ``*)``, ``(V*)``) into labelled spans.

    Args:
        column: one cell per word.
        path, line: file and first line of the sentence, for error messages.
        roles: allowed labels (None: any).
        nested: allow spans inside spans (parse/NER columns); SRL arguments of one predicate never nest.

    Returns:
        ``(label, start, end)`` with inclusive word indices, in order of their closing.

    Raises:
        UserInputError: unbalanced brackets, a malformed cell, an unknown label, or nesting when not allowed.
    """
    spans: list[tuple[str, int, int]] = []
    stack: list[tuple[str, int]] = []
    for position, cell in enumerate(column):
        place = where(path, line + position)
        match = re.fullmatch(r"((?:\([^()*]+)*)\*((?:[^()*]*\))*)", cell)
        if match is None:
            raise UserInputError(f"{place}: malformed bracket cell {cell!r}")
        for label in re.findall(r"\(([^()*]+)", match.group(1)):
            if roles is not None and label not in roles:
                raise UserInputError(f"{place}: unknown role label {label!r}")
            if stack and not nested:
                raise UserInputError(f"{place}: span {label!r} opens inside unclosed {stack[-1][0]!r}")
            stack.append((label, position))
        for closing in re.findall(r"([^()*]*)\)", match.group(2)):
            if not stack:
                raise UserInputError(f"{place}: unbalanced brackets: ')' without an open span in {cell!r}")
            label, start = stack.pop()
            if closing and closing != label:
                raise UserInputError(f"{place}: closing {closing!r} does not match open {label!r}")
            spans.append((label, start, position))
    if stack:
        label, start = stack[-1]
        raise UserInputError(f"{where(path, line + start)}: unbalanced brackets: span {label!r} is never closed")
    return spans


def spans_to_bio(spans: list[tuple[str, int, int]], length: int) -> list[str]:
    """BIO tags of non-overlapping labelled spans over ``length`` words."""
    tags = ["O"] * length
    for label, start, end in spans:
        tags[start] = f"B-{label}"
        for position in range(start + 1, end + 1):
            tags[position] = f"I-{label}"
    return tags


def read_srl(path: str | Path) -> LoadedData:
    """One :class:`SRLExample` per predicate (SRL column) of every sentence of a ``*_conll`` file.

    The predicate is the first word of the column's ``V`` span. ``meta`` holds ``predicate_lemma``,
    ``predicate_sense`` (frameset id) and ``document``.

    Raises:
        UserInputError: as :func:`read_conll2012`, plus unbalanced/unknown SRL brackets or a column without V.
    """
    path = Path(path)
    examples: list[SRLExample] = []
    lines: list[int] = []
    for document in read_conll2012(path):
        for s_index, sentence in enumerate(document.sentences):
            for column in sentence.columns[11:-1]:
                spans = brackets_to_spans(column, path, sentence.first_line, SRL_ROLES)
                verbs = [start for label, start, _ in spans if label == "V"]
                if not verbs:
                    raise UserInputError(f"{where(path, sentence.first_line)}: an SRL column of this sentence has "
                                         "no (V*) predicate")
                predicate = min(verbs)
                examples.append(SRLExample(
                    id=f"{document.id}:{s_index}:{predicate}", words=list(sentence.words),
                    predicate_index=predicate, tags=spans_to_bio(spans, len(sentence.words)),
                    meta={"predicate_lemma": sentence.columns[6][predicate],
                          "predicate_sense": sentence.columns[7][predicate], "document": document.id}))
                lines.append(sentence.first_line)
    check_unique_ids(examples, path, lines)
    logger.info("%s: %d predicates", path, len(examples))
    return LoadedData(list(examples), path)


def _coref_column(column: list[str], path: Path, line: int, offset: int,
                  clusters: dict[str, list[tuple[int, int]]]) -> None:
    """Add the mentions of one sentence's coreference column to ``clusters`` (word indices + ``offset``)."""
    open_mentions: dict[str, list[int]] = {}
    for position, cell in enumerate(column):
        if cell == "-":
            continue
        for item in cell.split("|"):
            match = re.fullmatch(r"(\()?(\d+)(\))?", item)
            if match is None or not (match.group(1) or match.group(3)):
                raise UserInputError(f"{where(path, line + position)}: malformed coreference cell {cell!r}")
            opens, cluster, closes = bool(match.group(1)), match.group(2), bool(match.group(3))
            if opens and closes:
                clusters.setdefault(cluster, []).append((offset + position, offset + position))
            elif opens:
                open_mentions.setdefault(cluster, []).append(position)
            else:
                if not open_mentions.get(cluster):
                    raise UserInputError(f"{where(path, line + position)}: unbalanced brackets: mention of "
                                         f"cluster {cluster} closes without opening")
                start = open_mentions[cluster].pop()
                clusters.setdefault(cluster, []).append((offset + start, offset + position))
    for cluster, starts in open_mentions.items():
        if starts:
            raise UserInputError(f"{where(path, line + starts[-1])}: unbalanced brackets: mention of cluster "
                                 f"{cluster} is never closed in its sentence")


def read_coref(path: str | Path) -> LoadedData:
    """One :class:`CorefDocument` per document part of a ``*_conll`` file.

    Clusters are sorted lists of distinct inclusive word spans over the whole part, ordered by first mention;
    ``speakers`` is column 9 per word; ``meta["cluster_ids"]`` keeps the file's cluster numbers.

    Raises:
        UserInputError: as :func:`read_conll2012`, plus malformed or unbalanced coreference cells and
            empty documents.
    """
    path = Path(path)
    documents: list[CorefDocument] = []
    for document in read_conll2012(path):
        if not document.sentences:
            raise UserInputError(f"{path}: document {document.id} has no sentences")
        words: list[str] = []
        speakers: list[str] = []
        starts: list[int] = []
        clusters: dict[str, list[tuple[int, int]]] = {}
        for sentence in document.sentences:
            starts.append(len(words))
            _coref_column(sentence.columns[-1], path, sentence.first_line, len(words), clusters)
            words.extend(sentence.words)
            speakers.extend(sentence.columns[9])
        ordered = sorted(((sorted(set(mentions)), key) for key, mentions in clusters.items()),
                         key=lambda item: item[0][0])
        documents.append(CorefDocument(id=document.id, words=words, sentence_starts=starts,
                                       clusters=[mentions for mentions, _ in ordered], speakers=speakers,
                                       meta={"cluster_ids": [key for _, key in ordered], "document": document.doc_id}))
    check_unique_ids(documents, path)
    logger.info("%s: %d document part(s), %d clusters", path, len(documents),
                sum(len(d.clusters) for d in documents))
    return LoadedData(list(documents), path)


def conll_files(path: str | Path, split: str = "train") -> list[Path]:
    """The ``*_conll`` files to read for ``split``: ``path`` itself, or those under a directory.

    In a directory, files named ``<split>.*_conll`` are preferred, then a ``<split>`` subdirectory (``development`` for dev, as in the CoNLL-2012 release) is
    preferred when present; when both gold and auto files are there only ``*gold_conll`` are read.

    Raises:
        UserInputError: no ``*_conll`` file found.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    names = (split, "development") if split == "dev" else (split,)
    for name in names:
        # A flat directory of per-split files (train.gold_conll, dev.gold_conll) names the split in the file.
        flat = sorted(file for file in path.glob(f"{name}.*_conll") if file.is_file())
        if flat:
            return [file for file in flat if file.name.endswith("gold_conll")] or flat
    for name in names:
        if (path / name).is_dir():
            path = path / name
            break
    files = sorted(path.rglob(_CONLL_GLOB))
    gold = [file for file in files if file.name.endswith("gold_conll")]
    if not files:
        raise UserInputError(f"{path}: no *_conll files found")
    return gold or files


def other_view(examples: Sequence[Example], family: str) -> Callable[[str], bool]:
    """Recognise sidecar ids of the other task read from the same file: coreference ids ``doc:part`` when
    reading SRL, SRL ids ``doc:part:sentence:predicate`` when reading coreference (``family`` "coref"; see
    ``attach_sidecar``)."""
    if family == "coref":
        parts = {example.id for example in examples}
        return lambda key: key.rsplit(":", 2)[0] in parts and all(p.isdigit() for p in key.rsplit(":", 2)[1:])
    parts = {example.meta["document"] for example in examples}
    return lambda key: key in parts
