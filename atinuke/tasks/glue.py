"""GLUE TSVs of all nine tasks and the AX diagnostic (Wang et al., 2019, "GLUE", arXiv 1804.07461).

The files are tab-separated with quoting disabled (``csv.QUOTE_NONE``: sentences contain bare quotes).
Each task has its own columns (train/dev; test files drop the label and usually start with ``index``):

- cola: no header, 4 columns (source, label 0/1, original mark, sentence); test has ``index sentence``.
- sst2: ``sentence label`` (0/1).
- mrpc: ``Quality #1 ID #2 ID #1 String #2 String`` (Quality = label 0/1).
- qqp: ``id qid1 qid2 question1 question2 is_duplicate`` (0/1); the released train file has rows broken by
  newlines inside questions: rows with missing fields are skipped, counted and logged.
- stsb: ``index genre filename year old_index source1 source2 sentence1 sentence2 score`` (float in [0, 5]).
- mnli: ``index promptID pairID genre <4 parse columns> sentence1 sentence2 [label1..label5] gold_label``
  (train 12 columns, dev_matched/dev_mismatched 16; rows may list fewer annotator labels); NLI labels.
- qnli: ``index question sentence label``; rte: ``index sentence1 sentence2 label`` (entailment,
  not_entailment); wnli: the same with labels 0/1.
- ax: ``index sentence1 sentence2`` (AX.tsv, unlabelled) or diagnostic-full.tsv (``Lexical Semantics
  Predicate-Argument Structure Logic Knowledge Domain Premise Hypothesis Label``); NLI labels.

Ids: ``f"{split}-{i}"`` with ``i`` the 0-based data-row index; unlabelled (test) files use their ``index``
(QQP: ``id``) column instead of ``i`` when present.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData, open_text
from atinuke.tasks.base import ClassificationExample

logger = logging.getLogger(__name__)

GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "ax")
KNOWN_SPLITS = ("train", "dev", "test", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched")
SKIP_QQP_MISSING = "QQP row with missing fields"
_NLI = ("entailment", "neutral", "contradiction")
_COLA_COLUMNS = ("source", "label", "original_label", "sentence")


@dataclass(frozen=True)
class _Columns:
    """Header names of a task's text, pair and label columns (alternatives in order of preference)."""

    text: tuple[str, ...]
    pair: tuple[str, ...]
    label: tuple[str, ...]
    labels: Optional[tuple[str, ...]]  # None: a float score (STS-B)
    meta: tuple[str, ...] = ()


_FORMATS: dict[str, _Columns] = {
    "cola": _Columns(("sentence",), (), ("label",), ("0", "1"), ("source",)),
    "sst2": _Columns(("sentence",), (), ("label",), ("0", "1")),
    "mrpc": _Columns(("#1 String",), ("#2 String",), ("Quality",), ("0", "1"), ("#1 ID", "#2 ID")),
    "qqp": _Columns(("question1",), ("question2",), ("is_duplicate",), ("0", "1"), ("qid1", "qid2")),
    "stsb": _Columns(("sentence1",), ("sentence2",), ("score",), None, ("genre", "filename", "year")),
    "mnli": _Columns(("sentence1",), ("sentence2",), ("gold_label",), _NLI, ("genre", "pairID", "promptID")),
    "qnli": _Columns(("question",), ("sentence",), ("label",), ("entailment", "not_entailment")),
    "rte": _Columns(("sentence1",), ("sentence2",), ("label",), ("entailment", "not_entailment")),
    "wnli": _Columns(("sentence1",), ("sentence2",), ("label",), ("0", "1")),
    "ax": _Columns(("sentence1", "Premise"), ("sentence2", "Hypothesis"), ("Label", "label"), _NLI,
                   ("Lexical Semantics", "Predicate-Argument Structure", "Logic", "Knowledge", "Domain")),
}


def split_of(path: Path, default: str) -> str:
    """The split a GLUE file holds: its stem when that is a known split name ("dev_matched"), else ``default``."""
    return path.stem if path.stem in KNOWN_SPLITS else default


def read_glue(task: str, path: str | Path, split: Optional[str] = None) -> LoadedData:
    """Read one GLUE TSV file of ``task``.

    Args:
        task: one of ``GLUE_TASKS``.
        path: the TSV file.
        split: split name used in ids (default: the file stem if it is a known split, else "train").

    Returns:
        LoadedData of :class:`ClassificationExample`; label is None in unlabelled (test) files, a float for
        STS-B. ``meta`` holds ``split`` and task extras (genre, pair ids, CoLA source, AX categories).

    Raises:
        UserInputError: naming ``file:line`` for a missing header column, a wrong column count, an empty
            sentence, an unknown label or a score outside [0, 5].
    """
    if task not in _FORMATS:
        raise UserInputError(f"unknown GLUE task {task!r}; known: {', '.join(GLUE_TASKS)}")
    path = Path(path)
    split = split or split_of(path, "train")
    columns = _FORMATS[task]
    examples: list[ClassificationExample] = []
    skipped = 0
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    if not rows:
        raise UserInputError(f"{path}: empty GLUE {task} file")
    header, data_rows = _header(task, path, rows)
    width = len(header)
    index_of = {name: position for position, name in enumerate(header)}
    text_col = _find(columns.text, index_of, path, task)
    pair_col = _find(columns.pair, index_of, path, task) if columns.pair else None
    label_col = next((index_of[name] for name in columns.label if name in index_of), None)
    id_col = index_of.get("index", index_of.get("id")) if label_col is None else None
    # MNLI/SNLI-style files list a variable number of annotator labels (label1..label5) before gold_label:
    # a row may stop early as long as it reaches past the sentences; gold_label is then its last cell.
    variable_tail = label_col == width - 1 and task == "mnli"
    min_width = max(text_col, pair_col or 0) + 2 if variable_tail else width
    for i, (line_no, row) in enumerate(data_rows):
        if not min_width <= len(row) <= width:
            if task == "qqp":  # the released QQP train.tsv has a few truncated rows
                skipped += 1
                continue
            expected = f"{min_width} to {width}" if variable_tail else str(width)
            raise UserInputError(f"{where(path, line_no)}: expected {expected} tab-separated columns for {task}, "
                                 f"found {len(row)}")
        text = row[text_col]
        pair = row[pair_col] if pair_col is not None else None
        if not text.strip() or (pair is not None and not pair.strip()):
            if task == "qqp":
                skipped += 1
                continue
            raise UserInputError(f"{where(path, line_no)}: empty sentence")
        label = None if label_col is None else _label(row[-1] if variable_tail else row[label_col], columns.labels,
                                                      path, line_no, task)
        key = f"{split}-{row[id_col]}" if id_col is not None else f"{split}-{i}"
        meta: dict = {"split": split}
        meta.update({name: row[index_of[name]] for name in columns.meta if name in index_of})
        examples.append(ClassificationExample(id=key, text=text, text_pair=pair, label=label, meta=meta))
    skips = {SKIP_QQP_MISSING: skipped} if skipped else {}
    logger.info("%s: %d %s examples (%s)", path, len(examples), task, "labelled" if label_col is not None
                else "unlabelled")
    return LoadedData(list(examples), path, skips)


def _header(task: str, path: Path, rows: list[tuple[int, list[str]]]) -> tuple[list[str], list]:
    """Split off the header row; CoLA train/dev files have none (4 fixed columns)."""
    first = [cell.strip() for cell in rows[0][1]]
    if task == "cola" and first != ["index", "sentence"]:
        return list(_COLA_COLUMNS), rows
    return first, rows[1:]


def _find(names: tuple[str, ...], index_of: dict[str, int], path: Path, task: str) -> int:
    for name in names:
        if name in index_of:
            return index_of[name]
    raise UserInputError(f"{where(path, 1)}: the {task} header lacks column {names[0]!r} "
                         f"(found: {', '.join(index_of)})")


def _label(value: str, labels: Optional[tuple[str, ...]], path: Path, line_no: int, task: str) -> str | float:
    value = value.strip()
    if labels is None:
        try:
            score = float(value)
        except ValueError:
            raise UserInputError(f"{where(path, line_no)}: score {value!r} is not a number") from None
        if not math.isfinite(score) or not 0.0 <= score <= 5.0:
            raise UserInputError(f"{where(path, line_no)}: score {value!r} outside the STS-B range [0, 5]")
        return score
    if value not in labels:
        raise UserInputError(f"{where(path, line_no)}: unknown {task} label {value!r} "
                             f"(expected one of {', '.join(labels)})")
    return value
