"""``workbench report``: gather the runs, build the sections in reading order, write HTML + data (+ PDF)."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from atinuke.errors import UserInputError
from atinuke.io import atomic_path
from workbench.report import findings, interpretability, outcomes
from workbench.report.context import Context
from workbench.report.document import Document, Section, render
from workbench.report.inputs import gather
from workbench.report.output import check_data_dir, print_pdf, write_data

logger = logging.getLogger(__name__)

# The reading order: verdicts first, then what each model is, then why it predicts what it does, then where
# it fails and how it compares; provenance last. A mechanisms or features section registers here.
SECTIONS: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("findings", findings.findings),
    ("models", findings.models),
    ("attention", interpretability.attention),
    ("attribution", interpretability.attribution),
    ("probing", interpretability.probing),
    ("features", interpretability.features),
    ("mechanisms", interpretability.mechanisms),
    ("dynamics", interpretability.dynamics),
    ("errors", outcomes.error_analysis),
    ("comparison", outcomes.comparison),
)


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: ``html``, ``data_dir`` (its tables), ``pdf`` (or None), ``files``,
    and the section ids in page order."""

    html: Path
    data_dir: Path
    pdf: Optional[Path]
    files: list[Path]
    sections: list[str]


def _names(value: Optional[str | Sequence[str]], flag: str) -> Optional[list[str]]:
    if value is None:
        return None
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not names:
        raise UserInputError(f"{flag}: give at least one name")
    return names


def build_report(runs: Sequence[str | Path], out: str | Path, title: str = "Atinuke Workbench report",
                 pdf: Optional[bool] = None, n_boot: int = 500, seed: int = 0,
                 models: Optional[str | Sequence[str]] = None, tasks: Optional[str | Sequence[str]] = None,
                 pair: Optional[str | Sequence[str]] = None) -> ReportResult:
    """Write the HTML report, its data folder, and (when Chromium is installed) a PDF.

    Args:
        runs: run directories or folders of runs (see :func:`workbench.report.inputs.gather`).
        out: the HTML file to write; data go to ``<stem>_data/`` beside it, the PDF to ``<stem>.pdf``.
        title: the report's title.
        pdf: True to require a PDF, False to skip it, None to print one when Chromium is found.
        n_boot, seed: bootstrap resamples and seed of the intervals and paired tests.
        models, tasks: scope the report to these models and tasks (names or comma-separated; None: all).
        pair: two models to compare: the report is scoped to them and every section shows them side by side.

    Returns:
        A :class:`ReportResult` naming the files written.

    Raises:
        UserInputError: for a bad ``out``, a path without runs, or a model/task name no run has.
    """
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserInputError(f"--out {out}: the report is an .html file")
    if n_boot < 1:
        raise UserInputError(f"--n-boot must be positive, got {n_boot}")
    data_dir = out.with_name(out.stem + "_data")
    check_data_dir(data_dir)
    chosen_models, chosen_tasks, paired = _names(models, "--models"), _names(tasks, "--tasks"), _names(pair, "--compare")
    if paired is not None:
        if len(paired) != 2 or paired[0] == paired[1]:
            raise UserInputError(f"--compare takes two different models, got {','.join(paired)}")
        if chosen_models is not None:
            raise UserInputError("--compare already chooses the models; drop --models")
        chosen_models = paired
    inputs = gather(runs).scoped(chosen_models, chosen_tasks)
    doc = Document(data_dir.name)
    ctx = Context(inputs=inputs, doc=doc, n_boot=n_boot, seed=seed, pair=(paired[0], paired[1]) if paired else None)
    sections = [build(ctx) for _, build in SECTIONS]
    provenance_section, provenance, environment = outcomes.provenance(ctx)
    sections.append(provenance_section)

    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scope = []
    if paired:
        scope.append(f"comparing {paired[0]} and {paired[1]}")
    elif chosen_models:
        scope.append("models " + ", ".join(chosen_models))
    if chosen_tasks:
        scope.append("tasks " + ", ".join(chosen_tasks))
    subtitle = (f"Generated {generated} from {len(inputs.pretrain)} pretraining, {len(inputs.finetune)} fine-tuning "
                f"and {len(inputs.attributions)} attribution run(s)"
                f"{' and probe results' if inputs.probes is not None else ''}"
                f"{' (' + '; '.join(scope) + ')' if scope else ''}; git commit {environment['git_commit']}.")
    notes = []
    if "data_kind" in provenance and (provenance["data_kind"] == "silver").any():
        notes.append("Some task data are SILVER: derived from real text by rules (the diagnostic suite), not the "
                     "official benchmark sets. Their numbers are diagnostics, not leaderboard scores.")
    page = render(sections, title, subtitle, notes)
    written = write_data(data_dir, doc.tables, {"generated": generated, "environment": environment,
                                                "scope": {"models": chosen_models, "tasks": chosen_tasks, "pair": paired},
                                                "runs": provenance.to_dict(orient="records")})
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
        tmp.chmod(0o644)  # a report is meant to be shared; mkstemp would leave it owner-only
    pdf_path = print_pdf(out, required=bool(pdf)) if pdf is not False else None
    logger.info("report: %s (%d data files)%s", out, len(written), f", {pdf_path}" if pdf_path else "")
    return ReportResult(html=out, data_dir=data_dir, pdf=pdf_path, files=written,
                        sections=[s.id for s in sections])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``workbench report``."""
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="run directories or folders of runs")
    parser.add_argument("--out", required=True, type=Path, help="the HTML file to write (data go beside it)")
    parser.add_argument("--title", default="Atinuke Workbench report")
    parser.add_argument("--models", default=None, help="only these models (comma-separated run names)")
    parser.add_argument("--tasks", default=None, help="only these tasks (comma-separated, e.g. snli,squad2)")
    parser.add_argument("--compare", default=None, metavar="A,B",
                        help="a comparison report of two models: every section shows them side by side")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--pdf", dest="pdf", action="store_true", default=None, help="require a PDF (needs chromium)")
    group.add_argument("--no-pdf", dest="pdf", action="store_false", help="skip the PDF")
    parser.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Build the report and print where it went."""
    result = build_report(args.runs, args.out, title=args.title, pdf=args.pdf, n_boot=args.n_boot, seed=args.seed,
                          models=args.models, tasks=args.tasks, pair=args.compare)
    print(f"wrote {result.html}" + (f" and {result.pdf}" if result.pdf else "") + f"; data in {result.data_dir}")
    return 0
