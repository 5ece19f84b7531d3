"""What every section builder reads: the runs, the document being built, and the report's settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pandas as pd

from workbench.report.document import PAGE_WIDTH_PX, PAIR_WIDTH_PX, Block, Document, Pair, Section
from workbench.report.inputs import ReportInputs


@dataclass
class Context:
    """The report being built.

    Attributes:
        inputs: the runs (already scoped to the chosen models and tasks).
        doc: the document (figure sizing, tables kept for the data folder).
        n_boot, seed: bootstrap resamples and seed for intervals and paired tests.
        pair: two models to lay out side by side in every section (a comparison report), or None.
        claims: the claims table (:func:`workbench.claims.evaluate_claims`).
    """

    inputs: ReportInputs
    doc: Document
    n_boot: int = 500
    seed: int = 0
    pair: Optional[tuple[str, str]] = None
    claims: Optional[pd.DataFrame] = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Figure width: half a page in a side-by-side report."""
        return PAIR_WIDTH_PX if self.pair else PAGE_WIDTH_PX

    def models(self) -> list[str]:
        return list(self.pair) if self.pair else self.inputs.models()

    def per_model(self, section: Section, build: Callable[[str], list[Block]], title: Callable[[str], str] = str,
                  models: Optional[list[str]] = None) -> None:
        """Add ``build(model)`` for each model: subsections one after another, or one side-by-side pair."""
        models = self.models() if models is None else models
        if self.pair:
            left, right = self.pair
            section.blocks.append(Pair((title(left), title(right)), build(left), build(right)))
            return
        for model in models:
            blocks = build(model)
            if blocks:
                section.subsections.append(Section(title(model), blocks))

    def per_task(self, section: Section, runs: list[Any], prefix: str, blocks_of: Callable[[Any], list[Block]],
                 missing: Callable[[str, str], Block]) -> None:
        """Add each task's runs: one subsection per (task, model), or per task with the pair side by side
        (``missing(model, task)`` stands in for a model without that task's run)."""
        for task in sorted({r.task for r in runs}):
            group = [r for r in runs if r.task == task]
            if not self.pair:
                for run in group:
                    section.subsections.append(Section(f"{prefix}: {task} — {run.model}", blocks_of(run)))
                continue
            sub = Section(f"{prefix}: {task}")

            def build(model: str, group: list[Any] = group, task: str = task) -> list[Block]:
                return [b for r in group if r.model == model for b in blocks_of(r)] or [missing(model, task)]

            self.per_model(sub, build)
            section.subsections.append(sub)

    def predictions(self, run: Any) -> pd.DataFrame:
        """A fine-tuning run's predictions table, read once per report (several sections use it)."""
        key = f"predictions:{run.path}"
        if key not in self.cache:
            self.cache[key] = run.predictions()
        return self.cache[key]

    def analysis(self, run: Any) -> Any:
        """The error analysis of a fine-tuning run, computed once per report."""
        from workbench import errors

        key = f"analysis:{run.path}"
        if key not in self.cache:
            self.cache[key] = errors.analyze(self.predictions(run), n_boot=self.n_boot, seed=self.seed)
        return self.cache[key]


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell ("–" for none)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, (int, float)):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2e}" if 0 < abs(value) < 0.001 else f"{value:.{digits}f}"
    return str(value)
