"""``atinuke data list [--format table|json] [--data-dir DIR] [--task NAME ...]``: where each task's data comes from.

One row per task (the registry's benchmark tasks, then any real-data source of a task outside it, such as a
probing task): task, family, source (``real`` / ``registry-real`` / ``silver``, or ``none`` when nothing is
available), dataset, the train/dev/test sizes the loaders give (after their documented drops: SST-2's neutral
sentences, STS's unrated pairs...), licence, provenance and how the splits were made. The source is what
``--data auto`` picks (:func:`atinuke.tasks.sources.resolve`); nothing is fetched or written.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from atinuke.errors import UserInputError

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


@dataclass
class DataRow:
    """One task's data as ``--data auto`` finds it (sizes None where a split does not exist)."""

    task: str
    family: str
    source: str
    dataset: str
    train: Optional[int]
    dev: Optional[int]
    test: Optional[int]
    licence: str
    provenance: str
    splits: str


def _sizes(load, splits: tuple[str, ...]) -> dict[str, Optional[int]]:
    return {split: (len(load(split).examples) if split in splits else None) for split in SPLITS}


def data_rows(data_dir: Optional[str | Path] = None, tasks: Optional[list[str]] = None) -> list[DataRow]:
    """The rows of ``atinuke data list`` (see the module docstring), all tasks or only ``tasks``.

    Raises:
        UserInputError: ``data_dir`` (or ``$ATINUKE_DATA``) is not a directory, an unknown task name, or a
            file in the data is malformed.
    """
    from atinuke.tasks import DIAG_PROVENANCE, DIAGNOSTIC_SPLITS, DIAGNOSTIC_TASKS, TASKS, load_task, sources

    root = sources.data_dir(data_dir)
    names = [name for name, spec in TASKS.items() if spec.family != "user"]
    names += [name for name in sources.SOURCES if name not in TASKS]
    if tasks:
        from atinuke.tasks.conllu import UD_PROBING_TASKS

        unknown = [name for name in tasks if name not in names and name.removeprefix("probe:") not in UD_PROBING_TASKS]
        if unknown:
            raise UserInputError(f"unknown task {unknown[0]!r}; known: {', '.join(names)}")
        names = [name for name in names if name in tasks]
    rows = []
    for name in names:
        source = sources.SOURCES.get(name)
        family = TASKS[name].family if name in TASKS else (source.family if source else "")
        try:
            resolved = sources.resolve(name, "auto", root, DIAGNOSTIC_TASKS)
        except UserInputError:
            resolved = None
        if resolved == "diag":
            sizes = _sizes(lambda split: load_task(name, "diag", split), DIAGNOSTIC_SPLITS) \
                if all(_diag_exists(name, split) for split in DIAGNOSTIC_SPLITS) else dict.fromkeys(SPLITS)
            rows.append(DataRow(name, family, sources.SILVER, "diagnostic suite (spaCy-rule labels on real text)",
                                **sizes, licence="derived from PTB/Wikipedia/Lee text", provenance=DIAG_PROVENANCE +
                                " (atinuke prepare-data)", splits="train / dev"))
        elif resolved is not None and source is not None:
            if resolved == "registry":
                file = source.locate(False) if source.locate is not None else None
                sizes = _sizes(lambda split: source.load(file, split), source.splits) if file is not None \
                    else dict.fromkeys(SPLITS)
                provenance = source.provenance + ("" if file is not None else " (not fetched: run atinuke prepare-data)")
            else:
                sizes = _sizes(lambda split: source.load(Path(resolved), split), source.splits)
                provenance = f"{source.provenance}; read from {resolved}"
            rows.append(DataRow(name, family, source.kind, source.dataset, **sizes, licence=source.licence,
                                provenance=provenance, splits=source.split_note))
        else:
            hint = f"set {sources.DATA_ENV} to a directory holding it" if source else "give --data PATH"
            rows.append(DataRow(name, family, "none", source.dataset if source else "", None, None, None,
                                source.licence if source else "", source.provenance if source else hint,
                                hint if source else ""))
    if not tasks or any(name.startswith("probe:") for name in tasks):
        rows += _ud_rows(root, tasks)
    return rows


def _ud_rows(root: Optional[Path], tasks: Optional[list[str]]) -> list[DataRow]:
    """The UD English EWT probing rows (:func:`atinuke.tasks.conllu.describe`; sizes in sentences)."""
    from atinuke.tasks.conllu import describe

    return [DataRow(row["task"], row["family"], "real" if row["source"] == "real" else "none", row["dataset"],
                    train=row["splits"].get("train"), dev=row["splits"].get("dev"), test=row["splits"].get("test"),
                    licence=row["licence"],
                    provenance=row["provenance"], splits="official UD splits (sentences)")
            for row in describe(root) if not tasks or row["task"] in tasks]


def _diag_exists(name: str, split: str) -> bool:
    from atinuke.tasks import diagnostic_path

    return diagnostic_path(name, split).is_file()


def format_rows(rows: list[DataRow], fmt: str = "table") -> str:
    """``rows`` as a JSON array of objects, or as a fixed-width table (the widest columns last)."""
    if fmt == "json":
        return json.dumps([dataclasses.asdict(row) for row in rows], indent=1) + "\n"
    header = [field.name for field in dataclasses.fields(DataRow)]
    cells = [[("-" if value is None else f"{value:,}") if name in SPLITS else str(value)
              for name, value in dataclasses.asdict(row).items()] for row in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    return "".join("  ".join(cell.rjust(width) if header[i] in SPLITS else cell.ljust(width)
                             for i, (cell, width) in enumerate(zip(line, widths))).rstrip() + "\n"
                   for line in [header, *cells])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``data list`` and its flags."""
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="one row per task: source, dataset, split sizes, licence, provenance")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.add_argument("--task", action="append", default=None, help="only this task (repeatable)")
    listing.add_argument("--data-dir", default=None, help="directory of official layouts (default $ATINUKE_DATA)")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``atinuke data list``: the table (or JSON) on stdout."""
    quiet = logging.getLogger("atinuke.tasks")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the loaders' per-file lines; the rows say what each split holds
    try:
        text = format_rows(data_rows(args.data_dir, args.task), args.format)
    finally:
        quiet.setLevel(level)
    sys.stdout.write(text)
    return 0
