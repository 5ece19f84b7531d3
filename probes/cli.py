"""Command-line entry points: ``probes run`` and ``probes report``.

Example:
    probes run --model minilm --task pos --layers all --out runs/probes/minilm/pos --controls --seeds 3
    probes report --runs runs/probes/minilm/pos runs/probes/tiny-mlm/pos --out runs/probes/report
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from atinuke.cli import run_cli

PROBES_COMMANDS = {
    "run": ("probes.cli_run", "probe every layer of a model for one task (with controls and seeds)"),
    "report": ("probes.cli_report", "merge probing runs into one table and layer-curve figures"),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``probes`` console script."""
    return run_cli("probes", PROBES_COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
