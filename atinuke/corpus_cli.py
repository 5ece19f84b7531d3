"""``atinuke corpus stats``: words per pretraining source and split, as a table (``--out`` also writes a CSV)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atinuke.corpus import BUILTIN_SOURCES, corpus_stats
from atinuke.errors import UserInputError
from atinuke.io import atomic_write_text

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``corpus`` flags."""
    parser.add_argument("action", choices=["stats"], help="stats: words per source and split")
    parser.add_argument("--sources", default=None,
                        help="comma-separated sources (default: ptb, wiki, lee, the registry texts, installed Debian texts)")
    parser.add_argument("--out", default=None, help="also write the table to this CSV file")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``atinuke corpus``."""
    sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
    if sources is not None and not all(sources):
        raise UserInputError(f"--sources {args.sources!r} names an empty source")
    for source in sources or []:  # every name checked before any source is fetched or read
        if source not in BUILTIN_SOURCES and not Path(source).is_file():
            raise UserInputError(f"unknown corpus source {source!r}; choose from {', '.join(BUILTIN_SOURCES)} "
                                 "or give a text file path")
    table = corpus_stats(sources)
    total = table.groupby("split", sort=False)["words"].sum()
    lines = [table.to_string(index=False, formatters={"words": "{:,}".format, "units": "{:,}".format}), "",
             "total: " + ", ".join(f"{split} {words:,}" for split, words in total.items())]
    print("\n".join(lines))
    if args.out:
        atomic_write_text(Path(args.out), table.to_csv(index=False))
    return 0
