"""``workbench report`` as a stand-alone command: ``python -m workbench.report_cli --runs runs --out r.html``.

The subcommand itself lives in :mod:`workbench.report` (``add_arguments``/``run``), so ``workbench/cli.py``
registers it with one line in its COMMANDS dict:
``"report": ("workbench.report", "one self-contained HTML report (+ data, + PDF) of runs")``.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from atinuke.cli import run_cli
from workbench.report import add_arguments, run

__all__ = ["add_arguments", "run", "main"]

COMMANDS = {"report": ("workbench.report", "one self-contained HTML report (+ data, + PDF) of runs")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``report`` with ``argv`` (the subcommand name is implied)."""
    return run_cli("workbench", COMMANDS, ["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
