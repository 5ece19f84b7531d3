"""The benchmark task registry: what each task is, where its data lives, and how to load it.

Where the data comes from is one setting (``ATINUKE_DATA`` / ``--data-dir``, ``--data auto``): see
:mod:`atinuke.tasks.sources` for the real-data registry and the layout detection.

``TASKS`` maps a command-line name to a :class:`TaskSpec` (defined in :mod:`atinuke.tasks.registry`, with
:func:`get_task`, and re-exported here); :func:`load_task_data` reads either the offline diagnostic suite
(``data="diag"``, silver data derived from real text, written in the official formats by ``atinuke
prepare-data``) or a user's files in the official layout (``data=PATH``), with the loaders of
:mod:`atinuke.tasks.squad`, :mod:`~atinuke.tasks.glue`, :mod:`~atinuke.tasks.nli`,
:mod:`~atinuke.tasks.conll2012` and :mod:`~atinuke.tasks.conll2005`. Metrics: :mod:`atinuke.tasks.metrics`.

Example:
    >>> from atinuke.tasks import load_task_data, get_task
    >>> dev = load_task_data("mrpc", "glue_data/MRPC", split="dev")
    >>> get_task("mrpc").metric
    'f1'
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from atinuke.errors import UserInputError
from atinuke.paths import cache_dir
from atinuke.tasks import conll2005, conll2012, gap, glue, nli, sources, squad, userdata
from atinuke.tasks._common import LoadedData, attach_sidecar, check_unique_ids, log_skips
from atinuke.tasks.base import (
    TASK_KINDS,
    Answer,
    ClassificationExample,
    CorefDocument,
    Example,
    QAExample,
    SRLExample,
    TaskSpec,
)
from atinuke.tasks.kinds import TaskKind, get_kind, register_kind, task_kinds
from atinuke.tasks.metrics import per_example_correct, per_example_f1, score_task
from atinuke.tasks.registry import TASKS, get_task

logger = logging.getLogger(__name__)

# Tasks with a diagnostic (silver, derived) version: registry name -> (directory, file extension).
_DIAG_LAYOUT: dict[str, tuple[str, str]] = {
    "squad2": ("qa", "json"),
    "cola": ("cola", "tsv"),
    "mrpc": ("mrpc", "tsv"),
    "stsb": ("stsb", "tsv"),
    "snli": ("nli", "jsonl"),
    "coref": ("coref", "gold_conll"),
    "srl": ("srl", "gold_conll"),
}
DIAGNOSTIC_TASKS: tuple[str, ...] = tuple(_DIAG_LAYOUT)
DIAGNOSTIC_SPLITS = ("train", "dev")
DIAG_PROVENANCE = "silver, derived"


@dataclass
class TaskData:
    """One task split, loaded.

    Attributes:
        task: registry name.
        split: split name ("train", "dev", "dev_mismatched", ...).
        examples: the examples (SRL: one per predicate; coreference: one per document part).
        path: the file or directory read.
        provenance: "silver, derived" for the diagnostic suite, "gold: <file name>" for official files,
            "gold (registry-real): <dataset>" for data fetched from the package registry.
        skipped: reason -> number of records the loader dropped (also logged).
        source: "real", "registry-real", "silver" or "user" (:mod:`atinuke.tasks.sources`).
        dataset: the dataset's name ("CoLA 1.1 (Warstadt et al., 2019)", "diagnostic suite", ...).
    """

    task: str
    split: str
    examples: list[Example]
    path: Path
    provenance: str
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = ""
    dataset: str = ""

    def record(self) -> dict[str, str]:
        """What a result records about its data: ``{"data_source": ..., "dataset": ...}``."""
        return {"data_source": self.source, "dataset": self.dataset}


def diagnostic_path(name: str, split: str = "train") -> Path:
    """Where the diagnostic suite keeps ``name``'s ``split``: ``cache_dir()/diagnostic/<dir>/<split>.<ext>``.

    Raises:
        UserInputError: the task has no diagnostic version.
    """
    get_task(name)
    if name not in _DIAG_LAYOUT:
        raise UserInputError(f"task {name!r} has no diagnostic data; diagnostic tasks: {', '.join(DIAGNOSTIC_TASKS)}"
                             f"; give --data PATH with the official files")
    directory, extension = _DIAG_LAYOUT[name]
    return cache_dir() / "diagnostic" / directory / f"{split}.{extension}"


def provenance(name: str, data: str = "diag") -> str:
    """The provenance label shown with data and scores: "silver, derived" or "gold: <file name>"."""
    get_task(name)
    if data == "diag":
        return DIAG_PROVENANCE
    return f"gold: {Path(data).name}"


def load_task(name: str, data: str = "diag", split: str = "train", columns: Optional[str] = None,
              data_dir: Optional[str | Path] = None) -> TaskData:
    """Load one split of a task with its provenance and skip counts.

    Args:
        name: registry name (see ``TASKS``).
        data: "diag" for the diagnostic suite (silver); "auto" for the data setting (:mod:`atinuke.tasks.sources`:
            the official layout under ``data_dir``/``$ATINUKE_DATA``, else the registry copy, else silver);
            "real" (the official layout, required); "registry" (fetched by ``atinuke prepare-data``); else a
            path in the official layout: a raw release named in :mod:`atinuke.tasks.sources` (CoLA raw TSV, SST
            trees, MRPC MSR, SemEval STS, RTE XML/zip, SICK), a GLUE task directory
            (train.tsv/dev.tsv/test.tsv; MNLI dev_matched.tsv/dev_mismatched.tsv or the MultiNLI jsonl
            release; AX.tsv) or one TSV; a SQuAD
            json file (or a directory with ``<split>.json`` / ``<split>-v2.0.json``); a jsonl file (or a
            directory with ``<split>.jsonl`` / ``snli_1.0_<split>.jsonl``); a ``*_conll`` file or a directory
            of them (a ``<split>`` subdirectory is used when present); CoNLL-2005 words+props or combined files.
        split: "train", "dev", "test" (MNLI also "dev_matched", "dev_mismatched", "test_matched", ...).
        columns: for a user dataset's task (family "user", a fine-tuned run's spec): the ``--columns``
            mapping, default the one the task was fine-tuned with (:mod:`atinuke.tasks.userdata`).
        data_dir: the data directory for "auto"/"real" (``--data-dir``; default ``$ATINUKE_DATA``).

    Returns:
        The loaded split, with its source ("real", "registry-real", "silver", "user") and dataset name;
        sidecar rationales/meta (``F.meta.jsonl``) are attached.

    Raises:
        UserInputError: unknown task, missing file (diag: says to run ``atinuke prepare-data``), malformed data.
    """
    spec = get_task(name)
    if spec.family == userdata.USER_FAMILY:
        if data in sources.DATA_CHOICES:
            raise UserInputError(f"task {name!r} is a user dataset's; give --data (a file, a saved dataset or hf:NAME)")
        examples, prov = userdata.load_user_split(spec, data, split, columns)
        return TaskData(name, split, examples, Path(data), prov, source="user", dataset=Path(data).name)
    if data == "diag" and name not in DIAGNOSTIC_TASKS and name in sources.SOURCES:
        data = "auto"  # a real-only task (gap) has no silver version: its default is the data setting
    data = sources.resolve(name, data, data_dir, DIAGNOSTIC_TASKS)
    source = sources.SOURCES.get(name)
    if data == "registry":
        if source is None or source.kind != sources.REGISTRY_REAL:
            raise UserInputError(f"task {name!r} has no registry data")
        loaded = source.load(sources.registry_file(name), split)
        kind, dataset, prov = sources.REGISTRY_REAL, source.dataset, f"gold (registry-real): {source.dataset}"
    elif data == "diag":
        if split not in DIAGNOSTIC_SPLITS:
            raise UserInputError(f"the diagnostic suite has splits {', '.join(DIAGNOSTIC_SPLITS)}, not {split!r}")
        path = diagnostic_path(name, split)
        if not path.is_file():
            raise UserInputError(f"{path}: diagnostic data for {name!r} not found; run `atinuke prepare-data` first")
        loaded = _LOADERS[spec.family](spec, path, split)
        kind, dataset, prov = sources.SILVER, "diagnostic suite", DIAG_PROVENANCE
    else:
        path = Path(data)
        if not path.exists():
            raise UserInputError(f"{path}: no such file or directory (--data for task {name!r})")
        layout = sources.find_layout(name, path)
        if layout is not None and source is not None:
            loaded = source.load(layout, split)
            dataset = source.dataset
        elif source is not None and (source.kind == sources.REGISTRY_REAL or name not in glue.GLUE_TASKS):
            if source.kind == sources.REGISTRY_REAL and path.is_file():
                loaded = source.load(path, split)
            else:
                raise UserInputError(f"{path}: no {source.dataset} files found (looked for "
                                     f"{', '.join(source.markers) or 'the fetched file'}, also under {source.subdir}/)")
            dataset = source.dataset
        else:
            loaded = _LOADERS[spec.family](spec, path, split)
            dataset = "official files"
        kind = sources.REAL
        prov = f"gold: {loaded.path.name}" + ("" if dataset == "official files" else f" ({dataset})")
    log_skips(loaded.path, loaded.skipped)
    if not loaded.examples:
        raise UserInputError(f"{loaded.path}: no {name} examples found")
    logger.info("%s/%s: %d examples from %s (%s)", name, split, len(loaded.examples), loaded.path, prov)
    return TaskData(name, split, loaded.examples, loaded.path, prov, loaded.skipped, kind, dataset)


def load_task_data(name: str, data: str = "diag", split: str = "train",
                   columns: Optional[str] = None, data_dir: Optional[str | Path] = None) -> list[Example]:
    """The examples of one split of a task (see :func:`load_task` for the arguments and errors)."""
    return load_task(name, data, split, columns, data_dir).examples


def _pick(path: Path, candidates: list[str], what: str) -> Path:
    """``path`` itself when it is a file, else the first existing candidate file inside it."""
    if path.is_file():
        return path
    for candidate in candidates:
        if (path / candidate).is_file():
            return path / candidate
    raise UserInputError(f"{path}: no {what} file found (looked for {', '.join(candidates)})")


def _load_squad(spec: TaskSpec, path: Path, split: str) -> LoadedData:
    version = "2.0" if spec.name == "squad2" else "1.1"
    file = _pick(path, [f"{split}.json", f"{split}-v{version}.json"], "SQuAD json")
    loaded = squad.read_squad(file, version=version)
    attach_sidecar(loaded.examples, file)
    return loaded


def _load_glue(spec: TaskSpec, path: Path, split: str) -> LoadedData:
    if spec.name == "mnli" and split in ("dev", "test"):
        split = f"{split}_matched"
    if spec.name == "mnli" and (path.suffix == ".jsonl" or (path / f"multinli_1.0_{split}.jsonl").is_file()):
        return _load_mnli_jsonl(path, split)
    candidates = ["AX.tsv", "diagnostic-full.tsv", "diagnostic.tsv"] if spec.name == "ax" else [f"{split}.tsv"]
    file = _pick(path, candidates, f"GLUE {spec.name}")
    loaded = glue.read_glue(spec.name, file, split=glue.split_of(file, split))
    attach_sidecar(loaded.examples, file)
    return loaded


def _load_mnli_jsonl(path: Path, split: str) -> LoadedData:
    """MultiNLI in its own jsonl release; ``meta["split"]`` (dev_matched / dev_mismatched) from the file name."""
    file = _pick(path, [f"multinli_1.0_{split}.jsonl"], "MultiNLI jsonl")
    loaded = nli.read_nli_jsonl(file)
    part = next((name for name in ("dev_mismatched", "dev_matched", "train") if name in file.name), split)
    for example in loaded.examples:
        example.meta["split"] = part
    attach_sidecar(loaded.examples, file)
    return loaded


def _load_nli(spec: TaskSpec, path: Path, split: str) -> LoadedData:
    file = _pick(path, [f"{split}.jsonl", f"snli_1.0_{split}.jsonl", f"multinli_1.0_{split}.jsonl"], "NLI jsonl")
    loaded = nli.read_nli_jsonl(file)
    attach_sidecar(loaded.examples, file)
    return loaded


def _load_conll2012(spec: TaskSpec, path: Path, split: str) -> LoadedData:
    files = conll2012.conll_files(path, split)
    reader: Callable[[Path], LoadedData] = (conll2012.read_coref if spec.family == "coref" else conll2012.read_srl)
    total = LoadedData([], path if path.is_dir() else files[0])
    for file in files:
        loaded = reader(file)
        attach_sidecar(loaded.examples, file, other_view=conll2012.other_view(loaded.examples, spec.family))
        total.extend(loaded)
    check_unique_ids(total.examples, total.path)  # two files may not hold the same document part
    return total


def _load_conll2005(spec: TaskSpec, path: Path, split: str) -> LoadedData:
    return conll2005.load_conll2005(path, split)


def _load_gap(spec: TaskSpec, path: Path, split: str) -> LoadedData:
    file = gap.gap_file(path, split)
    loaded = gap.read_gap(file)
    attach_sidecar(loaded.examples, file)
    return loaded


def _load_coref_or_srl(spec: TaskSpec, path: Path, split: str) -> LoadedData:
    if spec.name == "gap":
        return _load_gap(spec, path, split)
    if spec.name == "srl2005":
        return _load_conll2005(spec, path, split)
    return _load_conll2012(spec, path, split)


def _load_sentiment(spec: TaskSpec, path: Path, split: str) -> LoadedData:
    return sources.SOURCES[spec.name].load(path, split)


_LOADERS: dict[str, Callable[[TaskSpec, Path, str], LoadedData]] = {
    "sentiment": _load_sentiment,
    "squad": _load_squad,
    "glue": _load_glue,
    "nli": _load_nli,
    "srl": _load_coref_or_srl,
    "coref": _load_coref_or_srl,
}

__all__ = [
    "DIAGNOSTIC_TASKS",
    "DIAG_PROVENANCE",
    "TASKS",
    "TASK_KINDS",
    "TaskKind",
    "Answer",
    "ClassificationExample",
    "CorefDocument",
    "Example",
    "LoadedData",
    "QAExample",
    "SRLExample",
    "TaskData",
    "TaskSpec",
    "diagnostic_path",
    "get_task",
    "load_task",
    "load_task_data",
    "get_kind",
    "per_example_correct",
    "per_example_f1",
    "register_kind",
    "provenance",
    "score_task",
    "task_kinds",
]
