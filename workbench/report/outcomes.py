"""The outcome sections: error analysis per task and model, paired model comparison, and provenance."""
from __future__ import annotations

from typing import Any

import pandas as pd

from atinuke.errors import UserInputError
from workbench import artifacts, compare
from workbench.artifacts import HOW_TO_CREATE, FinetuneRun
from workbench.figures import figure_confusion, figure_outcomes, figure_reliability, figure_slices
from workbench.report.context import Context, fmt
from workbench.report.document import PAIR_WIDTH_PX, Block, Missing, Pair, Paragraph, Section

# metrics.json keys that measure speed, not quality: left out of the report's text (kept in the data folder).
THROUGHPUT = ("eval_examples", "train_examples", "train_seconds", "train_steps", "n_")


def _worst_table(worst: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in ("id", "text", "text_pair", "gold", "prediction", "score") if c in worst.columns]
    out = worst[columns].copy()
    for column in ("text", "text_pair", "gold", "prediction"):
        if column in out:
            out[column] = out[column].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else
                                          (str(v)[:300] + "…" if len(str(v)) > 300 else str(v)))
    return out


def informative_slices(slices: pd.DataFrame, k: int = 4, max_slices: int = 10, min_n: int = 5) -> pd.DataFrame:
    """The slices of the ``k`` features whose slice values spread most, among features cut into 2 to
    ``max_slices`` slices (an identifier or free-text feature gives one slice per example: no information)."""
    usable = slices[slices["n"] >= min_n]
    counts = usable.groupby("feature")["slice"].nunique()
    candidates = counts[(counts >= 2) & (counts <= max_slices)].index
    spread = usable[usable["feature"].isin(candidates)].groupby("feature")["value"].agg(lambda v: v.max() - v.min())
    chosen = spread.sort_values(ascending=False).head(k).index
    return slices[slices["feature"].isin(chosen) & (slices["n"] >= min_n)]


def _error_blocks(ctx: Context, run: FinetuneRun) -> list[Block]:
    result = ctx.analysis(run)
    key = f"{run.model}_{run.task}".replace("/", "_")
    f1 = f"; mean example F1 {result.f1.estimate:.3f} [{result.f1.low:.3f}, {result.f1.high:.3f}]" if result.f1 else ""
    official = {k: v for k, v in run.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and not k.startswith(THROUGHPUT)}
    ctx.doc.keep(f"metrics_{key}", pd.DataFrame([official]))
    blocks: list[Block] = [Paragraph(
        f"n = {result.n}; exact accuracy {result.accuracy.estimate:.3f} [95% CI {result.accuracy.low:.3f}, "
        f"{result.accuracy.high:.3f}]{f1}. Data: {', '.join(result.provenance) or 'unknown'}. Official metrics: "
        + ", ".join(f"{k} {fmt(v)}" for k, v in official.items()) + ".")]
    if not result.slices.empty:
        informative = informative_slices(result.slices)
        if len(informative):
            blocks.append(ctx.doc.figure(
                figure_slices(informative, result.accuracy.estimate),
                "Accuracy per slice of the features whose slices differ most (numeric features binned by quantiles), "
                "with 95% bootstrap CIs; the dashed line is the overall accuracy. A slice far below it is a weakness; "
                f"a wide bar is a small slice. All features: {ctx.doc.data_dir_name}/slices_{ctx.doc.safe(key)}.csv.",
                width=ctx.width))
        worst = result.slices[result.slices["n"] >= 5].sort_values("value")
        blocks.append(ctx.doc.table(worst, "The weakest slices (at least 5 examples) first.", name=f"slices_{key}",
                                    max_rows=6, columns=[c for c in ("feature", "slice", "n", "value", "ci_low", "ci_high")
                                                         if c in worst.columns]))
        ctx.doc.keep(f"slices_{key}", result.slices)  # the data folder gets every slice, not only those shown
    # Reliability and confusion side by side at half width (one above the other in a comparison report).
    width = PAIR_WIDTH_PX if not ctx.pair else ctx.width
    small: list[Block] = []
    if result.calibration is not None:
        ctx.doc.keep(f"calibration_{key}", result.calibration.bins)
        small.append(ctx.doc.figure(
            figure_reliability(result.calibration.bins, result.calibration.ece),
            "Reliability diagram (Guo et al., 2017): accuracy per confidence bin against the diagonal; bars below it "
            "are over-confident. ECE is the bin-weighted gap.", width=width))
    if result.confusion is not None and len(result.confusion) <= 12:
        small.append(ctx.doc.figure(figure_confusion(result.confusion),
                                    "Confusion matrix: rows are gold labels, columns predictions.", width=width))
    if len(small) == 2 and not ctx.pair:
        blocks.append(Pair(("", ""), [small[0]], [small[1]]))
    else:
        blocks.extend(small)
    if result.cohorts is not None:
        ctx.doc.keep(f"cohorts_{key}", result.cohorts.nodes)
        cohorts = result.cohorts.cohorts()[["path", "n", "coverage", "error_rate", "error_coverage"]]
        blocks.append(ctx.doc.table(cohorts.sort_values("error_coverage", ascending=False),
                                    "Error cohorts: the leaves of a decision tree over the example features that hold "
                                    "the most errors (error coverage: their share of all errors). The Error analysis "
                                    "page draws the whole tree.", max_rows=5))
    blocks.append(ctx.doc.table(_worst_table(result.worst), "Most confidently wrong examples.", name=f"worst_{key}",
                                max_rows=5))
    return blocks


def error_analysis(ctx: Context) -> Section:
    """Per task: slices, calibration, confusion, error cohorts and the most confidently wrong examples."""
    section = Section("Error analysis", intro="Where each fine-tuned model fails, and whether its confidence can be trusted.")
    if not ctx.inputs.finetune:
        section.blocks.append(Missing("fine-tuning runs", HOW_TO_CREATE["finetune"]))
        return section
    ctx.per_task(section, ctx.inputs.finetune, "Errors", lambda run: _error_blocks(ctx, run),
                 lambda model, task: Missing(f"a {task} run of {model}", HOW_TO_CREATE["finetune"].replace("TASK", task)))
    return section


def comparison(ctx: Context) -> Section:
    """Paired comparisons of the models that ran the same task: bootstrap CIs and McNemar's test."""
    section = Section("Model comparison", intro=(
        "The same examples, two models: paired bootstrap CIs on the difference and McNemar's exact test on who gets "
        "which example right."))
    rows: list[dict[str, Any]] = []
    by_task: dict[str, list[FinetuneRun]] = {}
    for run in ctx.inputs.finetune:
        by_task.setdefault(run.task, []).append(run)
    for task, group in sorted(by_task.items()):
        if ctx.pair:
            group = [r for name in ctx.pair for r in group if r.model == name]
        for other in group[1:]:
            base = group[0]
            try:
                result = compare.compare_runs(ctx.predictions(base), ctx.predictions(other), n_boot=ctx.n_boot,
                                              seed=ctx.seed)
            except UserInputError as error:
                section.blocks.append(Paragraph(f"{task}: cannot compare {base.model} and {other.model}: {error}", "note"))
                continue
            sub = Section(f"Comparison: {task}, {base.model} (A) vs {other.model} (B)")
            sub.blocks.append(ctx.doc.table(result.metrics, "Each metric for A and B on the same examples."))
            for metric, test in result.bootstrap.items():
                rows.append(dict(task=task, model_a=base.model, model_b=other.model, metric=metric, n=test.n,
                                 mean_a=test.mean_a, mean_b=test.mean_b, delta=test.delta, ci_low=test.low,
                                 ci_high=test.high, p_bootstrap=test.p_value, p_mcnemar=result.mcnemar.p_value))
            sub.blocks.append(Paragraph(f"McNemar: {result.mcnemar.a_only} examples only A gets right, "
                                        f"{result.mcnemar.b_only} only B; exact p = {result.mcnemar.p_value:.3g}."))
            sub.blocks.append(ctx.doc.figure(figure_outcomes(result.outcome_counts(), base.model, other.model),
                                             "Paired outcomes per example: both right, both wrong, or only one model "
                                             "right (the discordant pairs McNemar's test uses)."))
            ctx.doc.keep(f"outcomes_{task}_{base.model}_vs_{other.model}", result.outcomes)
            section.subsections.append(sub)
    if rows:
        section.blocks.append(ctx.doc.table(pd.DataFrame(rows), "Every paired comparison: the difference B − A with "
                                            "its 95% paired-bootstrap CI and both tests' p-values.", name="comparisons",
                                            max_rows=20))
    else:
        section.blocks.append(Missing("pair of models fine-tuned on the same task",
                                      HOW_TO_CREATE["minilm-finetune"]))
    return section


def provenance(ctx: Context) -> tuple[Section, pd.DataFrame, dict[str, Any]]:
    """Model hashes, data sources, the git commit, seeds, run parameters and package versions."""
    environment = artifacts.environment()
    runs: list[artifacts.PretrainRun | artifacts.FinetuneRun] = [*ctx.inputs.pretrain, *ctx.inputs.finetune]
    table = pd.DataFrame([artifacts.run_provenance(r) for r in runs])
    ctx.doc.keep("provenance", table)
    section = Section("Provenance")
    section.blocks.append(Paragraph(f"git commit {environment['git_commit']}; packages: "
                                    + ", ".join(f"{k} {v}" for k, v in environment["packages"].items()), "note"))
    if len(table):
        section.blocks.append(ctx.doc.table(table.drop(columns=["parameters"], errors="ignore"),
                                            "Every run: where it is, its model hash, data and seed.", max_rows=60))
    return section, table, environment
