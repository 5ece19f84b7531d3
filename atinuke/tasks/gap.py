"""GAP, the gender-balanced pronoun resolution benchmark (Webster et al., 2018, "Mind the GAP: A Balanced Corpus
of Gendered Ambiguous Pronouns", TACL, arXiv 1810.05201): reader, split layout and the official metrics.

Format (``gap-{development,validation,test}.tsv``, tab-separated, one header row, 11 columns)::

    ID  Text  Pronoun  Pronoun-offset  A  A-offset  A-coref  B  B-offset  B-coref  URL

Offsets are character offsets into ``Text`` where the pronoun / name appears verbatim; ``A-coref`` and
``B-coref`` are ``TRUE``/``FALSE`` (at most one is true). Each row becomes a :class:`ClassificationExample`
whose label is ``"A"``, ``"B"`` or ``"NEITHER"`` (the antecedent of the pronoun) and whose ``meta`` keeps the
spans and the slicing features: ``gender`` (of the pronoun: "masculine"/"feminine"), ``page_context`` (which
name the Wikipedia page title matches, the paper's page-context cue: "A", "B", "both" or "none"), ``url``.

Splits (the GAP paper's): ``gap-development`` (2,000) is the training set, ``gap-validation`` (454) the dev
set, ``gap-test`` (2,000) the test set.

Metrics (:func:`gap_scores`) follow the official scorer (``gap_scorer.py`` of google-research-datasets/
gap-coreference): every example contributes two binary decisions, "is A the antecedent" and "is B the
antecedent"; true/false positives and negatives are counted over those decisions, overall and per gender of
the pronoun; a decision with no system output counts as a false negative (whatever the gold value).
Precision, recall and F1 are percentages (0 when undefined); the bias is F1(feminine) / F1(masculine),
undefined (NaN) when either is 0.
"""
from __future__ import annotations

import csv
import logging
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData, check_unique_ids, open_text
from atinuke.tasks.base import ClassificationExample

logger = logging.getLogger(__name__)

GAP_LABELS = ("A", "B", "NEITHER")
GAP_COLUMNS = ("ID", "Text", "Pronoun", "Pronoun-offset", "A", "A-offset", "A-coref", "B", "B-offset", "B-coref",
               "URL")
GAP_FILES = {"train": "gap-development.tsv", "dev": "gap-validation.tsv", "test": "gap-test.tsv"}
GAP_SIZES = {"train": 2000, "dev": 454, "test": 2000}
# The official scorer's pronoun lists (constants.py): the pronoun's gender decides the slice.
MASCULINE = ("he", "his", "him", "himself")
FEMININE = ("she", "her", "hers", "herself")
GENDERS = ("masculine", "feminine")


def pronoun_gender(pronoun: str) -> Optional[str]:
    """"masculine" / "feminine" for a GAP pronoun (any case), None for anything else."""
    word = pronoun.strip().lower()
    return "masculine" if word in MASCULINE else "feminine" if word in FEMININE else None


def _boolean(value: str, path: Path, line: int, column: str) -> bool:
    if value.strip().lower() == "true":
        return True
    if value.strip().lower() == "false":
        return False
    raise UserInputError(f"{where(path, line)}: {column} {value!r} is not TRUE or FALSE")


def _offset(value: str, text: str, name: str, path: Path, line: int, column: str) -> int:
    """A character offset that must point at ``name`` in ``text``."""
    if not re.fullmatch(r"\d+", value.strip()):
        raise UserInputError(f"{where(path, line)}: {column} {value!r} is not a character offset")
    start = int(value)
    if not name or text[start:start + len(name)] != name:
        found = text[start:start + len(name)]
        raise UserInputError(f"{where(path, line)}: {column} {start} does not point at {name!r} in Text "
                             f"(found {found!r})")
    return start


def page_context(url: str, a: str, b: str) -> str:
    """Which candidate the Wikipedia page title names (GAP's page-context cue): "A", "B", "both" or "none".

    A name matches when one of its words (of two or more letters) is a word of the title.
    """
    title = url.rstrip("/").rsplit("/", 1)[-1]
    title_words = {w.lower() for w in re.split(r"[\W_]+", title) if w}

    def named(name: str) -> bool:
        return any(len(w) > 1 and w.lower() in title_words for w in re.split(r"\W+", name))
    hits = (named(a), named(b))
    return {(True, False): "A", (False, True): "B", (True, True): "both"}.get(hits, "none")


def read_gap(path: str | Path) -> LoadedData:
    """Read one GAP TSV file into examples labelled "A", "B" or "NEITHER".

    ``meta``: ``pronoun``, ``pronoun_start``/``pronoun_end``, ``a``/``a_start``/``a_end``, ``b``/``b_start``/
    ``b_end`` (character offsets, end exclusive), ``gender``, ``page_context``, ``url``.

    Raises:
        UserInputError: naming ``file:line`` for a wrong header or column count, an offset that does not
            point at its pronoun/name in the text, a label that is not TRUE/FALSE, both names marked as the
            antecedent, or a pronoun outside the GAP pronouns.
    """
    path = Path(path)
    examples: list[ClassificationExample] = []
    lines: list[int] = []
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    if not rows:
        raise UserInputError(f"{path}: empty GAP file")
    header_line, header = rows[0]
    if tuple(cell.strip() for cell in header) != GAP_COLUMNS:
        raise UserInputError(f"{where(path, header_line)}: expected the GAP header {' '.join(GAP_COLUMNS)}")
    for line_no, row in rows[1:]:
        if len(row) != len(GAP_COLUMNS):
            raise UserInputError(f"{where(path, line_no)}: expected {len(GAP_COLUMNS)} tab-separated GAP columns, "
                                 f"found {len(row)}")
        key, text, pronoun, p_off, a, a_off, a_coref, b, b_off, b_coref, url = row
        gender = pronoun_gender(pronoun)
        if gender is None:
            raise UserInputError(f"{where(path, line_no)}: pronoun {pronoun!r} is not one of the GAP pronouns "
                                 f"({', '.join(MASCULINE + FEMININE)})")
        p_start = _offset(p_off, text, pronoun, path, line_no, "Pronoun-offset")
        a_start = _offset(a_off, text, a, path, line_no, "A-offset")
        b_start = _offset(b_off, text, b, path, line_no, "B-offset")
        a_true = _boolean(a_coref, path, line_no, "A-coref")
        b_true = _boolean(b_coref, path, line_no, "B-coref")
        if a_true and b_true:
            raise UserInputError(f"{where(path, line_no)}: A-coref and B-coref are both TRUE (a pronoun has one "
                                 "antecedent)")
        label = "A" if a_true else "B" if b_true else "NEITHER"
        meta: dict[str, Any] = {
            "pronoun": pronoun, "pronoun_start": p_start, "pronoun_end": p_start + len(pronoun),
            "a": a, "a_start": a_start, "a_end": a_start + len(a), "b": b, "b_start": b_start,
            "b_end": b_start + len(b), "gender": gender, "page_context": page_context(url, a, b), "url": url}
        examples.append(ClassificationExample(id=key.strip(), text=text, text_pair=None, label=label, meta=meta))
        lines.append(line_no)
    check_unique_ids(examples, path, lines)
    logger.info("%s: %d GAP examples (%s)", path, len(examples),
                ", ".join(f"{k} {v}" for k, v in sorted(Counter(str(e.label) for e in examples).items())))
    return LoadedData(list(examples), path)


def gap_file(path: Path, split: str) -> Path:
    """The GAP file of ``split`` ("train" -> gap-development.tsv, "dev" -> gap-validation.tsv, "test") in a
    directory, or ``path`` itself when it is a file.

    Raises:
        UserInputError: an unknown split or a missing file.
    """
    if path.is_file():
        return path
    if split not in GAP_FILES:
        raise UserInputError(f"GAP has splits {', '.join(GAP_FILES)}, not {split!r}")
    for candidate in (path / GAP_FILES[split], path / "gap" / GAP_FILES[split]):
        if candidate.is_file():
            return candidate
    raise UserInputError(f"{path}: no {GAP_FILES[split]} (the GAP {split} split) found")


# ----------------------------------------------------------------------------------------------- metrics
def decisions(value: Any) -> tuple[Optional[bool], Optional[bool]]:
    """The scorer's two decisions (A is the antecedent, B is the antecedent) of a label or prediction:
    "A" -> (True, False), "B" -> (False, True), "NEITHER" -> (False, False), None (no output) -> (None, None);
    an ``(a, b)`` pair of booleans (or None) is taken as it is."""
    if value is None:
        return None, None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (None if value[0] is None else bool(value[0]), None if value[1] is None else bool(value[1]))
    if value not in GAP_LABELS:
        raise UserInputError(f"GAP prediction {value!r} is not one of {', '.join(GAP_LABELS)}")
    return value == "A", value == "B"


def _prf(counts: Counter) -> tuple[float, float, float]:
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision = 100.0 * tp / (tp + fp) if tp + fp else 0.0
    recall = 100.0 * tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def gap_counts(genders: Sequence[str], gold: Sequence[Any], predictions: Sequence[Any]) -> dict[str, Counter]:
    """tp/fp/fn/tn over the A and B decisions: key "overall" and one per gender."""
    counts: dict[str, Counter] = {"overall": Counter(), **{g: Counter() for g in GENDERS}}
    for gender, g_value, p_value in zip(genders, gold, predictions, strict=True):
        for g, p in zip(decisions(g_value), decisions(p_value)):
            outcome = "fn" if p is None else "tp" if g and p else "fp" if p else "tn" if not g else "fn"
            counts["overall"][outcome] += 1
            counts[gender][outcome] += 1
    return counts


def gap_scores(genders: Sequence[str], gold: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    """GAP's scorecard: ``precision``, ``recall``, ``f1`` (overall) and ``{masculine,feminine}_{precision,
    recall,f1}``, all in [0, 1] (the scorer prints percentages), plus ``bias`` = F1 feminine / F1 masculine
    (NaN when either is 0) and ``accuracy`` (the three-way label, for the trivial baselines)."""
    counts = gap_counts(genders, gold, predictions)
    scores: dict[str, float] = {}
    for name, counter in counts.items():
        precision, recall, f1 = _prf(counter)
        prefix = "" if name == "overall" else f"{name}_"
        scores.update({f"{prefix}precision": precision / 100, f"{prefix}recall": recall / 100,
                       f"{prefix}f1": f1 / 100})
    male, female = scores["masculine_f1"], scores["feminine_f1"]
    scores["bias"] = female / male if male and female else math.nan
    scores["accuracy"] = sum(g == p for g, p in zip(gold, predictions)) / len(gold) if gold else math.nan
    return scores


def describe(root: Optional[Path]) -> dict[str, Any]:
    """The ``data list`` row of GAP: task, family, source, dataset, split sizes, licence, provenance."""
    present = root is not None and all((root / "gap" / f).is_file() for f in GAP_FILES.values())
    sizes = {}
    if present:
        assert root is not None
        for split, name in GAP_FILES.items():  # data rows: non-blank lines after the header
            with (root / "gap" / name).open(encoding="utf-8") as handle:
                sizes[split] = sum(1 for line in handle if line.strip()) - 1
    where_ = f" in {root / 'gap'}" if present and root is not None else "; set ATINUKE_DATA"
    return {"task": "gap", "family": "coref", "source": "real" if present else "missing",
            "dataset": "GAP coreference (Webster et al., 2018)", "splits": sizes, "licence": "Apache-2.0",
            "provenance": ("google-research-datasets/gap-coreference: gap-development.tsv as train, "
                           "gap-validation.tsv as dev, gap-test.tsv as test") + where_}
