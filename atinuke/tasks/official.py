"""Official raw releases of CoLA, MRPC, SICK and the SemEval STS tasks (one reader per format).

- CoLA 1.1 raw TSV (Warstadt et al., 2019, "Neural Network Acceptability Judgments", TACL): no header, four
  tab columns ``source, label (0/1), original mark, sentence``; ``in_domain_train.tsv`` (train),
  ``in_domain_dev.tsv`` (dev), ``out_of_domain_dev.tsv`` (test: the public labelled out-of-domain set).
  ``meta["domain"]`` is "in" or "out".
- MRPC in the MSR format (Dolan & Brockett, 2005, "Automatically Constructing a Corpus of Sentential
  Paraphrases", IWP): header ``Quality #1 ID #2 ID #1 String #2 String``, Quality 1 = paraphrase.
- SICK (Marelli et al., 2014, "A SICK cure for the evaluation of compositional distributional semantic
  models", LREC): header ``pair_ID sentence_A sentence_B relatedness_score entailment_judgment``; task
  ``sick`` reads the 3-way judgment (lower-cased to the SNLI label names), ``sick-r`` the relatedness (1-5).
- SemEval STS 2012-2016 (Agirre et al., 2012-2016): ``score<TAB>sentence1<TAB>sentence2``; rows with an empty
  score were not rated and are skipped (counted, logged); ``meta`` keeps year, genre and file.

Ids: ``f"{split}-{i}"`` with ``i`` the 0-based data-row index (SICK: its ``pair_ID``; STS:
``f"{year}-{genre}-{part}-{i}"``).
"""
from __future__ import annotations

import csv
import logging
import math
from functools import lru_cache
from pathlib import Path

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData, file_stamp, open_text
from atinuke.tasks.base import ClassificationExample
from atinuke.tasks.glue import read_glue

logger = logging.getLogger(__name__)

COLA_FILES = {"train": "in_domain_train.tsv", "dev": "in_domain_dev.tsv", "test": "out_of_domain_dev.tsv"}
MSR_FILES = {"train": "msr-para-train.tsv", "dev": "msr-para-val.tsv", "test": "msr-para-test.tsv"}
MSR_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
SICK_JUDGMENTS = {"ENTAILMENT": "entailment", "NEUTRAL": "neutral", "CONTRADICTION": "contradiction"}
SKIP_UNRATED = "STS pair without a gold score (not rated)"


def _rows(path: Path) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """Non-blank rows of a tab-separated file with quoting off, with their line numbers (read once per file
    version: STS's train and dev splits read the same files)."""
    return _read_rows(file_stamp(path))


@lru_cache(maxsize=64)
def _read_rows(stamp: tuple[str, int, int]) -> tuple[tuple[int, tuple[str, ...]], ...]:
    with open_text(Path(stamp[0])) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return tuple((reader.line_num, tuple(cell.rstrip("\r") for cell in row)) for row in reader
                     if row and any(cell.strip() for cell in row))


def read_cola_raw(path: str | Path, split: str) -> LoadedData:
    """One CoLA raw TSV file (four columns, no header); ``meta`` has ``source`` and ``domain``.

    Raises:
        UserInputError: ``file:line`` for a wrong column count, an empty sentence or a label other than 0/1.
    """
    path = Path(path)
    loaded = read_glue("cola", path, split=split)
    domain = "out" if path.name.startswith("out_of_domain") else "in"
    for example in loaded.examples:
        example.meta["domain"] = domain
    return loaded


def read_msr(path: str | Path, split: str) -> LoadedData:
    """One MRPC file in the MSR format; ``meta`` has both sentence ids.

    Raises:
        UserInputError: ``file:1`` for a header that is not the MSR one; ``file:line`` for a wrong column
            count, an empty sentence or a Quality other than 0/1.
    """
    path = Path(path)
    rows = _rows(path)
    header = [cell.strip() for cell in rows[0][1]] if rows else []
    if header != MSR_HEADER:
        raise UserInputError(f"{where(path, rows[0][0] if rows else 1)}: expected the MSR header "
                             f"{' / '.join(MSR_HEADER)}, found {' / '.join(header) or 'nothing'}")
    return read_glue("mrpc", path, split=split)


def read_sick(path: str | Path, split: str, task: str = "sick") -> LoadedData:
    """One SICK file as ``task`` ("sick": 3-way judgment; "sick-r": relatedness 1-5); ``meta`` keeps the other.

    Raises:
        UserInputError: ``file:line`` for a missing header column, a wrong column count, an empty sentence,
            an unknown judgment or a relatedness outside [1, 5].
    """
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise UserInputError(f"{path}: empty SICK file")
    header = [cell.strip() for cell in rows[0][1]]
    needed = ("pair_ID", "sentence_A", "sentence_B", "relatedness_score", "entailment_judgment")
    missing = [name for name in needed if name not in header]
    if missing:
        raise UserInputError(f"{where(path, rows[0][0])}: the SICK header lacks {', '.join(missing)}")
    column = {name: header.index(name) for name in needed}
    examples: list[ClassificationExample] = []
    for line_no, row in rows[1:]:
        if len(row) != len(header):
            raise UserInputError(f"{where(path, line_no)}: expected {len(header)} tab-separated SICK columns, "
                                 f"found {len(row)}")
        first, second = row[column["sentence_A"]], row[column["sentence_B"]]
        if not first.strip() or not second.strip():
            raise UserInputError(f"{where(path, line_no)}: empty sentence")
        judgment = row[column["entailment_judgment"]].strip()
        if judgment not in SICK_JUDGMENTS:
            raise UserInputError(f"{where(path, line_no)}: unknown SICK judgment {judgment!r} "
                                 f"(expected one of {', '.join(SICK_JUDGMENTS)})")
        relatedness = _score(row[column["relatedness_score"]], 1.0, 5.0, path, line_no)
        label: str | float = SICK_JUDGMENTS[judgment] if task == "sick" else relatedness
        meta = {"split": split, "relatedness": relatedness, "judgment": SICK_JUDGMENTS[judgment]}
        examples.append(ClassificationExample(id=row[column["pair_ID"]].strip(), text=first, text_pair=second,
                                              label=label, meta=meta))
    logger.info("%s: %d SICK pairs", path, len(examples))
    return LoadedData(list(examples), path)


def _score(value: str, low: float, high: float, path: Path, line_no: int) -> float:
    try:
        score = float(value)
    except ValueError:
        raise UserInputError(f"{where(path, line_no)}: score {value.strip()!r} is not a number") from None
    if not math.isfinite(score) or not low <= score <= high:
        raise UserInputError(f"{where(path, line_no)}: score {value.strip()!r} outside [{low:g}, {high:g}]")
    return score


def read_sts_file(path: str | Path, year: str, split: str) -> LoadedData:
    """One SemEval STS file ``<year>/<genre>.<part>.tsv``: rated pairs with year/genre/file meta.

    Raises:
        UserInputError: ``file:line`` for a row without three columns, an empty sentence, or a score that is
            not a number in [0, 5].
    """
    path = Path(path)
    genre, _, part = path.name.removesuffix(".tsv").rpartition(".")
    examples: list[ClassificationExample] = []
    unrated = 0
    for i, (line_no, row) in enumerate(_rows(path)):
        if len(row) != 3:
            raise UserInputError(f"{where(path, line_no)}: expected 3 tab-separated STS columns (score, sentence "
                                 f"1, sentence 2), found {len(row)}")
        if not row[0].strip():
            unrated += 1
            continue
        if not row[1].strip() or not row[2].strip():
            raise UserInputError(f"{where(path, line_no)}: empty sentence")
        score = _score(row[0], 0.0, 5.0, path, line_no)
        meta = {"split": split, "year": year, "genre": genre, "file": f"{year}/{path.name}"}
        examples.append(ClassificationExample(id=f"{year}-{genre}-{part}-{i}", text=row[1], text_pair=row[2],
                                              label=score, meta=meta))
    return LoadedData(list(examples), path, {SKIP_UNRATED: unrated} if unrated else {})


STS_TEST_YEARS = ("2016",)
STS_DEV_FRACTION = 0.1
STS_DEV_SEED = 2012


def sts_files(directory: Path) -> list[tuple[str, Path]]:
    """``(year, file)`` of every ``<year>/*.tsv`` under ``directory``, in year then name order."""
    return [(year.name, file) for year in sorted(p for p in directory.iterdir() if p.is_dir() and p.name.isdigit())
            for file in sorted(year.glob("*.tsv"))]


def load_sts_split(directory: Path, split: str) -> LoadedData:
    """One split of SemEval STS 2012-2016: test = the 2016 files; train and dev = the 2012-2015 files (their
    train and test parts), dev a seeded :data:`STS_DEV_FRACTION` cut (``random_state`` :data:`STS_DEV_SEED`,
    scikit-learn's ``train_test_split``) that no train pair enters.

    Raises:
        UserInputError: an unknown split, no ``<year>/*.tsv`` file, or a malformed row (``file:line``).
    """
    from sklearn.model_selection import train_test_split

    if split not in ("train", "dev", "test"):
        raise UserInputError(f"STS has splits train, dev, test, not {split!r}")
    files = sts_files(directory)
    if not files:
        raise UserInputError(f"{directory}: no SemEval STS files (<year>/<genre>.<part>.tsv)")
    total = LoadedData([], directory)
    for year, file in files:
        if (year in STS_TEST_YEARS) == (split == "test"):
            total.extend(read_sts_file(file, year, split))
    if split != "test":
        _, dev = train_test_split(range(len(total.examples)), test_size=STS_DEV_FRACTION, random_state=STS_DEV_SEED)
        held_out = set(dev)
        total.examples = [ex for i, ex in enumerate(total.examples) if (i in held_out) == (split == "dev")]
        for example in total.examples:
            example.meta["split"] = split
    return total
