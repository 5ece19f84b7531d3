"""CoNLL-2005 SRL (Carreras and Màrquez, 2005, "Introduction to the CoNLL-2005 Shared Task: Semantic Role
Labeling").

Two layouts are read:

* words + props: a words file (one token a line, first column the word, blank line between sentences) and
  a props file whose first column is the target verb (its lemma, or ``-``) and then one start-end bracket
  column per target (``(A0*``, ``*``, ``*)`` or ``*A0)``, ``(V*V)``), as released (``.gz`` accepted);
* combined: one file whose first column is the word and whose last ``1 + k`` columns are the props
  (target column then ``k`` argument columns), as produced by pasting words, syntax, NE and props.

One :class:`SRLExample` per target with BIO tags; id ``f"{sentence_index}:{predicate_index}"`` (0-based).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData, attach_sidecar, check_unique_ids, open_text
from atinuke.tasks.base import SRLExample
from atinuke.tasks.conll2012 import brackets_to_spans, spans_to_bio

logger = logging.getLogger(__name__)

CORE_ROLES = ("A0", "A1", "A2", "A3", "A4", "A5", "AA")
MODIFIERS = ("ADV", "CAU", "DIR", "DIS", "EXT", "LOC", "MNR", "MOD", "NEG", "PNC", "PRD", "REC", "TMP")
_BASE_ROLES = CORE_ROLES + tuple(f"AM-{m}" for m in MODIFIERS) + ("AM",)
SRL_ROLES: tuple[str, ...] = (("V", "C-V") + _BASE_ROLES + tuple(f"C-{r}" for r in _BASE_ROLES)
                              + tuple(f"R-{r}" for r in _BASE_ROLES))
SRL_TAGS: tuple[str, ...] = ("O",) + tuple(f"{p}-{r}" for r in SRL_ROLES for p in ("B", "I"))


def _blocks(path: Path) -> list[tuple[int, list[list[str]]]]:
    """Blank-line separated blocks of whitespace-split rows: ``(first line, rows)``."""
    blocks: list[tuple[int, list[list[str]]]] = []
    rows: list[list[str]] = []
    first = 0
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            cells = line.split()
            if not cells:
                if rows:
                    blocks.append((first, rows))
                rows = []
                continue
            if not rows:
                first = line_no
            rows.append(cells)
    if rows:
        blocks.append((first, rows))
    return blocks


def _examples(words: list[str], props: list[list[str]], s_index: int, path: Path, line: int) -> list[SRLExample]:
    """The examples of one sentence from its words and props rows (target column first)."""
    width = len(props[0])
    for offset, row in enumerate(props):
        if len(row) != width:
            raise UserInputError(f"{where(path, line + offset)}: {len(row)} props columns, expected {width}")
    targets = [i for i, row in enumerate(props) if row[0] != "-"]
    if len(targets) != width - 1:
        raise UserInputError(f"{where(path, line)}: {len(targets)} target verbs but {width - 1} argument columns")
    examples = []
    for column_index, predicate in enumerate(targets, start=1):
        column = [row[column_index] for row in props]
        spans = brackets_to_spans(column, path, line, SRL_ROLES)
        examples.append(SRLExample(id=f"{s_index}:{predicate}", words=list(words), predicate_index=predicate,
                                   tags=spans_to_bio(spans, len(words)),
                                   meta={"predicate_lemma": props[predicate][0]}))
    return examples


def read_conll2005(words_path: str | Path, props_path: str | Path) -> LoadedData:
    """Read a CoNLL-2005 words file and its props file.

    Raises:
        UserInputError: naming ``file:line`` for differing sentence counts or lengths, a props column count
            that changes within a sentence or disagrees with the number of targets, and bracket errors.
    """
    words_path, props_path = Path(words_path), Path(props_path)
    word_blocks, prop_blocks = _blocks(words_path), _blocks(props_path)
    if len(word_blocks) != len(prop_blocks):
        raise UserInputError(f"{props_path}: {len(prop_blocks)} sentences, but {words_path.name} has "
                             f"{len(word_blocks)}")
    examples: list[SRLExample] = []
    for s_index, ((_, word_rows), (line, prop_rows)) in enumerate(zip(word_blocks, prop_blocks)):
        if len(word_rows) != len(prop_rows):
            raise UserInputError(f"{where(props_path, line)}: sentence of {len(prop_rows)} rows, "
                                 f"{words_path.name} has {len(word_rows)} words")
        examples.extend(_examples([row[0] for row in word_rows], prop_rows, s_index, props_path, line))
    check_unique_ids(examples, props_path)
    return LoadedData(list(examples), props_path)


def _props_start(rows: list[list[str]]) -> Optional[int]:
    """Index of the target column in a combined sentence: the column c with exactly ``width-1-c`` targets."""
    width = len(rows[0])
    for start in range(width - 1, 0, -1):
        if sum(row[start] != "-" for row in rows) == width - 1 - start:
            return start
    return None


def read_conll2005_combined(path: str | Path) -> LoadedData:
    """Read the combined column format (word first, props columns last).

    Raises:
        UserInputError: naming ``file:line`` for rows of differing width, no consistent target column, and
            bracket errors.
    """
    path = Path(path)
    examples: list[SRLExample] = []
    for s_index, (line, rows) in enumerate(_blocks(path)):
        width = len(rows[0])
        for offset, row in enumerate(rows):
            if len(row) != width:
                raise UserInputError(f"{where(path, line + offset)}: {len(row)} columns, expected {width}")
        start = _props_start(rows)
        if start is None:
            raise UserInputError(f"{where(path, line)}: no target column whose verbs match the number of "
                                 "argument columns")
        examples.extend(_examples([row[0] for row in rows], [row[start:] for row in rows], s_index, path, line))
    check_unique_ids(examples, path)
    return LoadedData(list(examples), path)


def _props_for(words: Path) -> Optional[Path]:
    """The props file beside a words file (same directory, or a sibling ``props/``)."""
    name = words.name.replace("words", "props")
    for candidate in (words.with_name(name), words.parent.parent / "props" / name):
        if candidate.is_file():
            return candidate
    return None


def load_conll2005(path: str | Path, split: str = "train") -> LoadedData:
    """Load CoNLL-2005 SRL from a words file (props found beside it), a combined file, or a directory.

    In a directory, files whose names start with ``split`` are used: words+props pairs when present
    (e.g. ``test.wsj.words.gz`` with ``test.wsj.props.gz``), else combined files. Sidecars are attached.

    Raises:
        UserInputError: nothing to read, or malformed files.
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(p for p in path.rglob(f"{split}*") if p.is_file() and not p.name.endswith(".meta.jsonl"))
        words = [p for p in candidates if "words" in p.name and _props_for(p)]
        files = words or [p for p in candidates if "props" not in p.name and "words" not in p.name]
        if not files:
            raise UserInputError(f"{path}: no CoNLL-2005 files for split {split!r}")
    else:
        files = [path]
    total = LoadedData([], path)
    for file in files:
        props = _props_for(file) if "words" in file.name else None
        loaded = read_conll2005(file, props) if props else read_conll2005_combined(file)
        attach_sidecar(loaded.examples, loaded.path)
        if len(files) > 1:  # sentence numbers restart per file: prefix the file name to keep ids unique
            for example in loaded.examples:
                example.id = f"{file.name}:{example.id}"
        total.extend(loaded)
    return total
