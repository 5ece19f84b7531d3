"""Exported reports: one self-contained HTML file (plus its data, plus a PDF when Chromium is installed).

``workbench report --runs runs/a runs/b --out report.html`` gathers every pretraining and fine-tuning run
under the given directories and writes:

- ``report.html``: opens offline; plotly's JavaScript is embedded once (``include_plotlyjs=True`` on the
  first figure, no CDN); every string that comes from data is HTML-escaped (tables through
  ``DataFrame.to_html(escape=True)``, text through :func:`html.escape`; plotly's JSON escapes ``<``);
- ``report_data/``: the underlying tables as CSV/parquet and the provenance as JSON;
- ``report.pdf``: printed by headless Chromium (``chromium --headless --print-to-pdf``) when installed.

Provenance covers model hashes, data sources (silver or gold), the git commit, seeds, run parameters and
package versions. The figure builders here are shared with the app's pages.
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir, atomic_path
from workbench import artifacts
from workbench.artifacts import FinetuneRun, PretrainRun
from workbench.claims import evaluate_claims

logger = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


# ---------------------------------------------------------------------------------------------------------
# Figures (plotly), shared with workbench/pages

def figure_training_curve(metrics: pd.DataFrame, unigram_ppl: Optional[float] = None) -> Any:
    """Training loss (left axis) and validation perplexity (right axis) against step, from metrics.csv."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=metrics["step"], y=metrics["loss"], name="train loss", mode="lines"))
    if "val_ppl" in metrics and metrics["val_ppl"].notna().any():
        valid = metrics[metrics["val_ppl"].notna()]
        fig.add_trace(go.Scatter(x=valid["step"], y=valid["val_ppl"], name="validation perplexity",
                                 mode="lines+markers"), secondary_y=True)
        unigram = unigram_ppl if unigram_ppl is not None else (
            valid["val_unigram_ppl"].dropna().iloc[-1] if "val_unigram_ppl" in valid and valid["val_unigram_ppl"].notna().any() else None)
        if unigram is not None:
            fig.add_trace(go.Scatter(x=[metrics["step"].min(), metrics["step"].max()], y=[unigram, unigram],
                                     name="unigram perplexity", mode="lines", line=dict(dash="dash")),
                          secondary_y=True)
    fig.update_layout(title="Training curve", xaxis_title="step", height=380, margin=dict(t=50, b=40))
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="perplexity", secondary_y=True, type="log")
    return fig


def figure_reliability(bins: pd.DataFrame, ece: float) -> Any:
    """Reliability diagram: accuracy per confidence bin against the diagonal (Guo et al., 2017)."""
    import plotly.graph_objects as go

    filled = bins[bins["n"] > 0]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=(filled["lower"] + filled["upper"]) / 2, y=filled["accuracy"], width=filled["upper"] - filled["lower"],
                         name="accuracy", customdata=filled[["n", "confidence"]],
                         hovertemplate="accuracy %{y:.3f}<br>n %{customdata[0]}<br>confidence %{customdata[1]:.3f}"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(dash="dash")))
    fig.update_layout(title=f"Reliability (ECE {ece:.3f})", xaxis_title="confidence", yaxis_title="accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1], height=360, margin=dict(t=50, b=40))
    return fig


def figure_slices(slices: pd.DataFrame, overall: float, feature: Optional[str] = None) -> Any:
    """Metric per slice with bootstrap error bars (one feature, or all features stacked by facet)."""
    import plotly.express as px

    data = slices if feature is None else slices[slices["feature"] == feature]
    data = data.assign(err_plus=data["ci_high"] - data["value"], err_minus=data["value"] - data["ci_low"])
    fig = px.bar(data, x="slice", y="value", error_y="err_plus", error_y_minus="err_minus", color="category",
                 facet_col="feature" if feature is None else None, hover_data=["n", "coverage", "ci_low", "ci_high"])
    fig.add_hline(y=overall, line_dash="dash", annotation_text="overall")
    fig.update_xaxes(matches=None, type="category")
    fig.update_layout(title="Metric per slice (95% bootstrap CI)", height=380, margin=dict(t=60, b=40),
                      yaxis_range=[0, 1.05])
    return fig


def figure_confusion(matrix: pd.DataFrame) -> Any:
    """Heatmap of a confusion matrix (rows gold, columns predicted)."""
    import plotly.express as px

    fig = px.imshow(matrix.to_numpy(), x=[str(c) for c in matrix.columns], y=[str(i) for i in matrix.index],
                    text_auto=True, color_continuous_scale="Blues", labels=dict(x="predicted", y="gold", color="count"))
    fig.update_layout(title="Confusion matrix", height=360, margin=dict(t=50, b=40))
    return fig


def figure_cohorts(nodes: pd.DataFrame) -> Any:
    """The error-cohort tree as a treemap: area = coverage, colour = error rate (Error Analysis style)."""
    import plotly.graph_objects as go

    ids = [str(n) for n in nodes["node"]]
    parents = ["" if p < 0 else str(p) for p in nodes["parent"]]
    labels = [f"{c}<br>err {e:.0%}, n={n}" for c, e, n in zip(nodes["condition"], nodes["error_rate"], nodes["n"])]
    fig = go.Figure(go.Treemap(ids=ids, parents=parents, labels=[html.escape(l).replace("&lt;br&gt;", "<br>") for l in labels],
                               values=nodes["n"], branchvalues="total",
                               marker=dict(colors=nodes["error_rate"], colorscale="Reds", cmin=0, cmax=1,
                                           colorbar=dict(title="error rate"))))
    fig.update_layout(title="Error cohorts (decision tree on features and internal signals)", height=420,
                      margin=dict(t=50, b=10, l=10, r=10))
    return fig


def figure_cka(cka: pd.DataFrame, name_a: str, name_b: str) -> Any:
    """Heatmap of layer-wise CKA (rows: layers of A, columns: layers of B; 0 = embeddings)."""
    import plotly.express as px

    grid = cka.pivot(index="layer_a", columns="layer_b", values="cka")
    fig = px.imshow(grid.to_numpy(), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index], zmin=0, zmax=1,
                    text_auto=".2f", color_continuous_scale="Viridis",
                    labels=dict(x=f"{name_b} layer", y=f"{name_a} layer", color="CKA"))
    fig.update_layout(title="Linear CKA between layers (Kornblith et al., 2019)", height=420, margin=dict(t=50))
    return fig


def figure_probe_overlay(overlay: pd.DataFrame) -> Any:
    """Probe accuracy against relative depth, one line per (model, control)."""
    import plotly.express as px

    data = overlay.assign(series=overlay["model"] + " / " + overlay["control"])
    fig = px.line(data, x="depth", y="mean", color="series", error_y="std" if data["std"].notna().any() else None,
                  markers=True, hover_data=["layer", "n_seeds"])
    fig.update_layout(title=f"Probe curves ({data['metric'].iloc[0]})", xaxis_title="relative depth (layer / last layer)",
                      yaxis_title=str(data["metric"].iloc[0]), height=380, margin=dict(t=50))
    return fig


def figure_outcomes(counts: pd.Series, name_a: str, name_b: str) -> Any:
    """Bar chart of paired outcomes (both right, both wrong, A wins, B wins)."""
    import plotly.graph_objects as go

    labels = [str(i).replace("A wins", f"{name_a} wins").replace("B wins", f"{name_b} wins") for i in counts.index]
    fig = go.Figure(go.Bar(x=labels, y=counts.to_numpy()))
    fig.update_layout(title="Per-example outcomes", height=320, margin=dict(t=50, b=40))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Gathering runs

@dataclass
class ReportInputs:
    """The runs a report covers."""

    pretrain: list[PretrainRun] = field(default_factory=list)
    finetune: list[FinetuneRun] = field(default_factory=list)
    probes: Optional[pd.DataFrame] = None
    experiment: Optional[Path] = None


def gather(paths: Sequence[str | Path]) -> ReportInputs:
    """Find every run under ``paths``: a runs root, a ``pretrain``/``finetune`` folder, or single run dirs.

    Raises:
        UserInputError: for a path that does not exist or holds no run.
    """
    inputs = ReportInputs()
    probe_frames = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise UserInputError(f"{path}: no such run directory")
        found = 0
        candidates = {p.parent for p in path.rglob("summary.json")} | {p.parent for p in path.rglob("metrics.csv")}
        for candidate in sorted(candidates):
            if (candidate / "predictions.parquet").exists() or any(p.startswith(".") for p in candidate.parts[-2:]):
                continue  # fine-tuning runs are found below; hidden dirs are atomic writes in progress
            has_summary = (candidate / "summary.json").is_file()
            if not (has_summary or (candidate / "model" / "config.json").is_file()):
                continue
            if candidate not in {r.path for r in inputs.pretrain}:
                summary = artifacts.read_json(candidate / "summary.json") if has_summary else {}
                inputs.pretrain.append(PretrainRun(candidate.name, candidate, summary))
                found += 1
        for pred in sorted(path.rglob("predictions.parquet")):
            if pred.parent not in {r.path for r in inputs.finetune}:
                inputs.finetune.append(artifacts.finetune_run_from_dir(pred.parent))
                found += 1
        experiment = next((p.parent for p in sorted(path.rglob("experiment.json"))), None)
        if experiment is not None and inputs.experiment is None:
            inputs.experiment = experiment
            found += 1
        probes = artifacts.find_probe_results(path.parent if path.name == "probes" else path)
        if probes is not None:
            probe_frames.append(probes)
            found += 1
        if not found:
            raise UserInputError(f"{path}: no pretraining run, predictions.parquet or probe results found")
    if probe_frames:
        inputs.probes = pd.concat(probe_frames, ignore_index=True).drop_duplicates()
    return inputs


# ---------------------------------------------------------------------------------------------------------
# HTML

# C0 control characters other than tab/newline (NUL included) are not text a reader can see; HTML forbids them.
_CONTROL = {c: None for c in range(32) if c not in (9, 10, 13)} | {127: None}


def _printable(value: Any) -> Any:
    return value.translate(_CONTROL) if isinstance(value, str) else value


class _Html:
    """Accumulates escaped HTML (control characters dropped); plotly's JavaScript goes in with the first figure only."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._plotly_included = False

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(_printable(text))}</h{level}>")

    def para(self, text: str, css: str = "") -> None:
        self.parts.append(f'<p class="{css}">{html.escape(_printable(text))}</p>')

    def table(self, frame: pd.DataFrame, max_rows: int = 50) -> None:
        frame = frame.head(max_rows).copy()
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]):
                frame[column] = frame[column].map(_printable)
        frame.columns = [_printable(str(c)) for c in frame.columns]
        self.parts.append(frame.to_html(escape=True, index=False, float_format=lambda v: f"{v:.4g}",
                                                       border=0, classes="data", na_rep="–"))

    def figure(self, fig: Any) -> None:
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=not self._plotly_included,
                                      config={"displaylogo": False}))
        self._plotly_included = True


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{border-bottom:2px solid #444} h2{margin-top:2em;border-bottom:1px solid #ccc}
table.data{border-collapse:collapse;font-size:.85em;margin:.5em 0} table.data td,table.data th{border:1px solid #ddd;padding:3px 6px;vertical-align:top}
table.data th{background:#f3f3f3} table.data td{word-break:break-word;max-width:460px} .note{color:#555;font-size:.9em} .silver{background:#fff6d6;padding:.4em}
"""


def _worst_table(worst: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in ("id", "text", "text_pair", "gold", "prediction", "score") if c in worst.columns]
    out = worst[columns].copy()
    for column in ("text", "text_pair", "gold", "prediction"):
        if column in out:
            out[column] = out[column].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else
                                          (str(v)[:300] + "…" if len(str(v)) > 300 else str(v)))
    return out


def build_report(runs: Sequence[str | Path], out: str | Path, title: str = "Atinuke Workbench report",
                 pdf: Optional[bool] = None, n_boot: int = 500, seed: int = 0) -> "ReportResult":
    """Write the HTML report, its data folder, and (when Chromium is installed) a PDF.

    Args:
        runs: run directories or folders of runs (see :func:`gather`).
        out: the HTML file to write; data go to ``<stem>_data/`` beside it, the PDF to ``<stem>.pdf``.
        title: the report's title.
        pdf: True to require a PDF, False to skip it, None to print one when Chromium is found.
        n_boot, seed: bootstrap resamples and seed of the intervals and paired tests.

    Returns:
        A :class:`ReportResult` naming the files written.
    """
    from workbench import compare, errors

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserInputError(f"--out {out}: the report is an .html file")
    _check_data_dir(out.with_name(out.stem + "_data"))
    inputs = gather(runs)
    doc, tables = _Html(), {}
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.heading(title, 1)
    doc.para(f"Generated {generated} from {len(inputs.pretrain)} pretraining run(s), {len(inputs.finetune)} "
             f"fine-tuning run(s){' and probe results' if inputs.probes is not None else ''}.", "note")

    # Provenance
    environment = artifacts.environment()
    provenance = pd.DataFrame([artifacts.run_provenance(r) for r in [*inputs.pretrain, *inputs.finetune]])
    tables["provenance"] = provenance
    doc.heading("Provenance")
    doc.para(f"git commit {environment['git_commit']}; packages: "
             + ", ".join(f"{k} {v}" for k, v in environment["packages"].items()), "note")
    if (provenance.get("data_kind", pd.Series(dtype=str)) == "silver").any():
        doc.para("Some task data are SILVER: derived from real text by rules (the diagnostic suite), not the "
                 "official benchmark sets. Their numbers are diagnostics, not leaderboard scores.", "silver")
    doc.table(provenance.drop(columns=["parameters"], errors="ignore"))

    # Pretraining
    if inputs.pretrain:
        doc.heading("Models and pretraining")
        rows = []
        for run in inputs.pretrain:
            s = run.summary
            params = s.get("parameters", {})
            rows.append(dict(run=run.name, objective=s.get("objective"), parameters=params.get("total") if isinstance(params, dict) else params,
                             val_ppl=s.get("val_ppl"), val_unigram_ppl=s.get("val_unigram_ppl"), test_ppl=s.get("test_ppl"),
                             tokens=s.get("tokens"), tokens_per_s=s.get("tokens_per_s"), seed=s.get("seed")))
            metrics = run.metrics()
            if metrics is not None and {"step", "loss"} <= set(metrics.columns) and len(metrics):
                doc.heading(f"{run.name}: training curve", 3)
                doc.figure(figure_training_curve(metrics, s.get("val_unigram_ppl")))
                tables[f"pretrain_{run.name}_metrics"] = metrics
        tables["pretrain_summary"] = pd.DataFrame(rows)
        doc.table(tables["pretrain_summary"])

    # Per task
    analyses: dict[str, Any] = {}
    for run in inputs.finetune:
        table = run.predictions()
        result = errors.analyze(table, n_boot=n_boot, seed=seed)
        analyses[run.label] = result
        key = f"{run.model}_{run.task}".replace("/", "_")
        doc.heading(f"{run.task} — {run.model}")
        f1 = f"; mean example F1 {result.f1.estimate:.3f} [{result.f1.low:.3f}, {result.f1.high:.3f}]" if result.f1 else ""
        doc.para(f"n = {result.n}; exact accuracy {result.accuracy.estimate:.3f} [95% CI {result.accuracy.low:.3f}, "
                 f"{result.accuracy.high:.3f}]{f1}. Data: {', '.join(result.provenance) or 'unknown'}.")
        official = {k: v for k, v in run.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if official:
            doc.table(pd.DataFrame([official]))
        tables[f"slices_{key}"] = result.slices
        if not result.slices.empty:
            doc.figure(figure_slices(result.slices, result.accuracy.estimate))
            doc.table(result.slices)
        if result.calibration is not None:
            tables[f"calibration_{key}"] = result.calibration.bins
            doc.figure(figure_reliability(result.calibration.bins, result.calibration.ece))
        if result.confusion is not None and len(result.confusion) <= 12:
            doc.figure(figure_confusion(result.confusion))
        if result.cohorts is not None:
            tables[f"cohorts_{key}"] = result.cohorts.nodes
            doc.heading("Error cohorts", 3)
            doc.figure(figure_cohorts(result.cohorts.nodes))
            doc.table(result.cohorts.cohorts()[["path", "n", "coverage", "error_rate", "error_coverage"]], max_rows=12)
        doc.heading("Most confidently wrong", 3)
        doc.table(_worst_table(result.worst))

    # Comparisons (same task, different models)
    comparison_rows = []
    by_task: dict[str, list[FinetuneRun]] = {}
    for run in inputs.finetune:
        by_task.setdefault(run.task, []).append(run)
    for task, group in sorted(by_task.items()):
        for other in group[1:]:
            base = group[0]
            try:
                result = compare.compare_runs(base.predictions(), other.predictions(), n_boot=n_boot, seed=seed)
            except UserInputError as error:
                doc.para(f"{task}: cannot compare {base.model} and {other.model}: {error}", "note")
                continue
            if not comparison_rows:
                doc.heading("Model comparison")
            doc.heading(f"{task}: {base.model} (A) vs {other.model} (B)", 3)
            doc.table(result.metrics)
            for metric, test in result.bootstrap.items():
                comparison_rows.append(dict(task=task, model_a=base.model, model_b=other.model, metric=metric, n=test.n,
                                            mean_a=test.mean_a, mean_b=test.mean_b, delta=test.delta, ci_low=test.low,
                                            ci_high=test.high, p_bootstrap=test.p_value, p_mcnemar=result.mcnemar.p_value))
            doc.para(f"McNemar: {result.mcnemar.a_only} examples only A gets right, {result.mcnemar.b_only} only B; "
                     f"exact p = {result.mcnemar.p_value:.3g}.")
            doc.figure(figure_outcomes(result.outcome_counts(), base.model, other.model))
            tables[f"outcomes_{task}_{base.model}_vs_{other.model}"] = result.outcomes
    if comparison_rows:
        tables["comparisons"] = pd.DataFrame(comparison_rows)
        doc.table(tables["comparisons"])

    # Probes
    if inputs.probes is not None:
        doc.heading("Probing")
        tables["probes"] = inputs.probes
        for task in sorted(inputs.probes["task"].astype(str).unique()):
            doc.figure(figure_probe_overlay(compare.probe_overlay(inputs.probes, task)))

    # Claims
    claims = evaluate_claims(experiment=inputs.experiment, pretrain=inputs.pretrain, probes=inputs.probes,
                             n_boot=n_boot, search=False)
    tables["claims"] = claims
    doc.heading("The paper's claims beside the evidence")
    doc.para("Benchmark verdicts come from the controlled experiment only: Atinuke against a BERT encoder of the "
             "same size trained on the same tokens (arm bert), over seeds and examples, Holm-corrected; a model "
             "at its task's trivial baseline makes the claim 'not measurable at this budget'. MiniLM is a "
             "pretrained reference, never the comparator.", "note")
    doc.table(claims[["statement", "verdict", "seeds", "atinuke_score", "comparator_score", "trivial_score",
                      "p_adjusted", "evidence", "provenance"]])

    body = "\n".join(doc.parts)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
    data_dir = out.with_name(out.stem + "_data")
    written = _write_data(data_dir, tables, {"generated": generated, "environment": environment,
                                             "runs": provenance.to_dict(orient="records")})
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
        tmp.chmod(0o644)  # a report is meant to be shared; mkstemp would leave it owner-only
    pdf_path = _print_pdf(out, required=bool(pdf)) if pdf is not False else None
    logger.info("report: %s (%d data files)%s", out, len(written), f", {pdf_path}" if pdf_path else "")
    return ReportResult(html=out, data_dir=data_dir, pdf=pdf_path, files=written)


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: ``html``, ``data_dir`` (its tables), ``pdf`` (or None), ``files``."""

    html: Path
    data_dir: Path
    pdf: Optional[Path]
    files: list[Path]


def _check_data_dir(data_dir: Path) -> None:
    """Refuse to replace a ``<stem>_data/`` folder that holds files an earlier report did not write.

    Raises:
        UserInputError: naming the folder and one foreign file.
    """
    if not data_dir.exists():
        return
    if not data_dir.is_dir():
        raise UserInputError(f"{data_dir} is a file; the report's data folder goes there (choose another --out)")
    present = sorted(p.name for p in data_dir.iterdir())
    if not present:
        return
    manifest = data_dir / "provenance.json"
    try:
        written = set(json.loads(manifest.read_text(encoding="utf-8")).get("files", []))
    except (OSError, ValueError, AttributeError):
        written = set()
    foreign = [name for name in present if name != "provenance.json" and name not in written]
    if foreign or not manifest.is_file():
        raise UserInputError(f"{data_dir} holds files this report did not write ({(foreign or present)[0]}); "
                             "move them or choose another --out")


def _write_data(data_dir: Path, tables: dict[str, pd.DataFrame], provenance: dict[str, Any]) -> list[Path]:
    names = []
    with atomic_dir(data_dir) as tmp:
        tmp.chmod(0o755)
        for name, frame in tables.items():
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
            frame.to_csv(tmp / f"{safe}.csv", index=False)
            names.append(f"{safe}.csv")
            try:
                frame.to_parquet(tmp / f"{safe}.parquet", index=False)
                names.append(f"{safe}.parquet")
            except (ValueError, TypeError, ImportError) as error:  # mixed-type object columns
                logger.debug("%s: no parquet copy (%s)", name, error)
        # The manifest of what this report wrote: a later report may replace exactly these files.
        (tmp / "provenance.json").write_text(json.dumps({**provenance, "files": names}, indent=2, default=str) + "\n",
                                             encoding="utf-8")
        names.insert(0, "provenance.json")
    return [data_dir / n for n in names]


def find_chromium() -> Optional[str]:
    """Path of a Chromium executable, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _print_pdf(html_path: Path, required: bool = False, timeout: float = 120.0) -> Optional[Path]:
    chromium = find_chromium()
    if chromium is None:
        if required:
            raise UserInputError("--pdf: no chromium executable found (apt-get install chromium)")
        logger.info("chromium not found; no PDF")
        return None
    target = html_path.with_suffix(".pdf")
    with atomic_path(target, suffix=".pdf") as tmp:
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-pdf-header-footer", f"--print-to-pdf={tmp}", html_path.resolve().as_uri()]
        try:
            subprocess.run(command, capture_output=True, timeout=timeout, check=True)
        except (subprocess.SubprocessError, OSError) as error:
            if required:
                raise UserInputError(f"chromium could not print {html_path} to PDF ({error})") from error
            logger.warning("no PDF: chromium failed (%s)", error)
            tmp.unlink(missing_ok=True)
            return None
        if not tmp.exists() or tmp.stat().st_size == 0:
            if required:
                raise UserInputError(f"chromium wrote no PDF for {html_path}")
            return None
    return target


# ---------------------------------------------------------------------------------------------------------
# The `workbench report` subcommand

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``workbench report``."""
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="run directories or folders of runs")
    parser.add_argument("--out", required=True, type=Path, help="the HTML file to write (data go beside it)")
    parser.add_argument("--title", default="Atinuke Workbench report")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--pdf", dest="pdf", action="store_true", default=None, help="require a PDF (needs chromium)")
    group.add_argument("--no-pdf", dest="pdf", action="store_false", help="skip the PDF")
    parser.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Build the report and print where it went."""
    result = build_report(args.runs, args.out, title=args.title, pdf=args.pdf, n_boot=args.n_boot, seed=args.seed)
    print(f"wrote {result.html}" + (f" and {result.pdf}" if result.pdf else "") + f"; data in {result.data_dir}")
    return 0
