"""Find and load the artifacts under ``atinuke.paths.runs_dir()``: runs, predictions, probe results, provenance.

The app's pages and ``workbench report`` read everything through this module (no streamlit here), so the
layout of ``runs/`` is known in one place (docs/architecture.md, "Run directories"):

- ``pretrain/<name>/``: ``model/``, ``metrics.csv``, ``summary.json``, ``tb/``;
- ``finetune/<model>/<task>/``: ``metrics.json``, ``predictions.parquet`` (docs/predictions.md), ``model/``;
- probe results: any ``results.parquet`` / ``results.csv`` under ``probes/`` with the tidy columns
  ``model, task, layer, metric, value, seed, control, source``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from atinuke.errors import UserInputError
from atinuke.paths import REPO_ROOT, runs_dir

logger = logging.getLogger(__name__)

PROBE_COLUMNS = ("model", "task", "layer", "metric", "value", "seed", "control", "source")
PACKAGES = ("torch", "transformers", "tokenizers", "captum", "scikit-learn", "scipy", "numpy", "pandas",
            "pyarrow", "plotly", "streamlit")

# Which command creates each artifact, for "missing artifact" messages in the app and the report.
HOW_TO_CREATE = {
    "pretrain": "atinuke pretrain --preset tiny --objective mlm --out runs/pretrain/tiny-mlm (or `make models`)",
    "finetune": "atinuke finetune --model runs/pretrain/tiny-mlm --task TASK --out runs/finetune/atinuke/TASK",
    "probes": "probes run --model minilm --out runs/probes/minilm (see probes/ --help)",
    "attribute": "workbench attribute --model minilm --method integrated_gradients,saliency,attention --limit 50 --out runs/attributions/minilm",
    "minilm-finetune": "atinuke finetune --model minilm --task TASK --out runs/finetune/minilm/TASK",
}


@dataclass
class PretrainRun:
    """A pretraining run directory.

    Attributes:
        name: the directory name ("tiny-mlm").
        path: the run directory.
        summary: ``summary.json`` (empty when the run has not finished).
    """

    name: str
    path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def finished(self) -> bool:
        return (self.model_dir / "config.json").is_file()

    def metrics(self) -> Optional[pd.DataFrame]:
        """``metrics.csv`` (one row per logged step), or None when absent."""
        path = self.path / "metrics.csv"
        return read_csv(path) if path.is_file() else None

    def config(self) -> dict[str, Any]:
        """The model's ``config.json`` (empty when absent)."""
        path = self.model_dir / "config.json"
        return read_json(path) if path.is_file() else {}


@dataclass
class FinetuneRun:
    """A fine-tuning (or evaluation) run directory ``finetune/<model>/<task>/``.

    Attributes:
        model, task: from the directory names.
        path: the run directory.
        metrics: ``metrics.json`` (empty when absent).
    """

    model: str
    task: str
    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions_path(self) -> Path:
        return self.path / "predictions.parquet"

    @property
    def label(self) -> str:
        return f"{self.model} / {self.task}"

    def predictions(self) -> pd.DataFrame:
        """The predictions table, validated (see :func:`load_predictions`)."""
        return load_predictions(self.predictions_path)


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object; a malformed file raises UserInputError naming ``file:line``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from error
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object")
    return data


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV file; a malformed one raises UserInputError naming it."""
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserInputError(f"{path}: cannot read CSV ({str(error).splitlines()[0]})") from error


def load_predictions(path: str | Path) -> pd.DataFrame:
    """Read a ``predictions.parquet`` and check its columns (docs/predictions.md).

    Raises:
        UserInputError: for a missing/corrupt file or missing columns.
    """
    from workbench.errors import validate_predictions

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such predictions table")
    try:
        table = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise UserInputError(f"{path}: cannot read parquet ({str(error).splitlines()[0]})") from error
    return validate_predictions(table, str(path))


def find_pretrain_runs(root: Optional[Path] = None) -> list[PretrainRun]:
    """Pretraining runs under ``root/pretrain`` (default ``runs_dir()``), sorted by name."""
    base = Path(root or runs_dir()) / "pretrain"
    runs = []
    for path in sorted(p for p in base.glob("*") if p.is_dir() and not p.name.startswith(".")):
        if not ((path / "summary.json").is_file() or (path / "model" / "config.json").is_file()
                or (path / "metrics.csv").is_file()):
            continue
        summary = {}
        if (path / "summary.json").is_file():
            try:
                summary = read_json(path / "summary.json")
            except UserInputError as error:
                logger.warning("%s", error)
        runs.append(PretrainRun(name=path.name, path=path, summary=summary))
    return runs


def find_finetune_runs(root: Optional[Path] = None) -> list[FinetuneRun]:
    """Fine-tuning runs with a predictions table under ``root/finetune/<model>/<task>/``."""
    base = Path(root or runs_dir()) / "finetune"
    runs = []
    for pred in sorted(base.glob("*/*/predictions.parquet")):
        path = pred.parent
        metrics = {}
        if (path / "metrics.json").is_file():
            try:
                metrics = read_json(path / "metrics.json")
            except UserInputError as error:
                logger.warning("%s", error)
        runs.append(FinetuneRun(model=path.parent.name, task=path.name, path=path, metrics=metrics))
    return runs


def finetune_run_from_dir(path: Path) -> FinetuneRun:
    """A :class:`FinetuneRun` for any directory with ``predictions.parquet`` (model/task from metrics.json)."""
    if not (path / "predictions.parquet").is_file():
        raise UserInputError(f"{path}: no predictions.parquet here")
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    return FinetuneRun(model=str(metrics.get("model", path.parent.name)), task=str(metrics.get("task", path.name)),
                       path=path, metrics=metrics)


def find_probe_results(root: Optional[Path] = None) -> Optional[pd.DataFrame]:
    """All probe results under ``root/probes`` concatenated (tidy ``PROBE_COLUMNS``), or None when absent."""
    base = Path(root or runs_dir()) / "probes"
    frames = []
    for path in sorted(base.rglob("results.parquet")) + sorted(base.rglob("results.csv")):
        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else read_csv(path)
        except Exception as error:  # one bad file should not hide the others
            logger.warning("%s: skipped (%s)", path, error)
            continue
        if set(PROBE_COLUMNS[:5]) <= set(frame.columns):
            frame = frame.copy()
            frame["file"] = str(path.relative_to(base))
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def find_attribution_runs(root: Optional[Path] = None) -> list[Path]:
    """Directories under ``root`` holding an ``attributions.parquet`` (written by ``workbench attribute``)."""
    base = Path(root or runs_dir())
    return sorted(p.parent for p in base.rglob("attributions.parquet") if not any(x.startswith(".") for x in p.parts[-3:]))


def task_family(task: str) -> str:
    """The benchmark family of a task name ("glue", "squad", "nli", "coref", "srl"), or "other"."""
    try:
        from atinuke.tasks import TASKS

        if task in TASKS:
            return TASKS[task].family
    except ImportError:  # the task registry is optional for reading artifacts
        pass
    for prefix, family in (("squad", "squad"), ("srl", "srl"), ("coref", "coref"), ("snli", "nli")):
        if task.startswith(prefix):
            return family
    return "glue" if task in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "ax") else "other"


def _family_tasks(family: str) -> list[str]:
    try:
        from atinuke.tasks import DIAGNOSTIC_TASKS, TASKS

        return [t for t in DIAGNOSTIC_TASKS if TASKS[t].family == family] or [t for t, s in TASKS.items() if s.family == family]
    except ImportError:
        return [family]


def provenance_kind(provenance: str) -> str:
    """"silver" for the derived diagnostic data, "gold" for official files, else "unknown"."""
    text = str(provenance).lower()
    return "silver" if text.startswith("silver") else "gold" if text.startswith("gold") else "unknown"


# ---------------------------------------------------------------------------------------------------------
# Provenance

def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def model_hash(model_dir: Path) -> Optional[str]:
    """sha256 over the weight files (``*.safetensors``, ``*.bin``) of a model directory, or None."""
    files = sorted(list(Path(model_dir).glob("*.safetensors")) + list(Path(model_dir).glob("*.bin")))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The repository's HEAD commit (with ``+dirty`` when the tree has changes), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_provenance(run: PretrainRun | FinetuneRun) -> dict[str, Any]:
    """Provenance of one run: kind, path, model hash, seed, parameters, data source and its kind.

    Returns:
        A flat dict: ``run``, ``kind``, ``path``, ``model_hash``, ``seed``, ``parameters`` (JSON text of the
        run's settings), ``data``, ``data_kind`` ("silver"/"gold"/"unknown").
    """
    if isinstance(run, PretrainRun):
        config = run.summary.get("config", {})
        sources = config.get("sources") or config.get("source") or "ptb"
        return dict(run=run.name, kind="pretrain", path=str(run.path), model_hash=model_hash(run.model_dir),
                    seed=run.summary.get("seed", config.get("seed")), parameters=json.dumps(config, sort_keys=True, default=str),
                    data=f"pretraining text: {sources}", data_kind="gold (real text)")
    model_dir = run.path / "model"
    config = run.metrics.get("config") if isinstance(run.metrics.get("config"), dict) else {}
    provenance = str(run.metrics.get("provenance", ""))
    if not provenance and run.predictions_path.is_file():
        try:
            column = pd.read_parquet(run.predictions_path, columns=["provenance"])["provenance"]
            provenance = ", ".join(sorted(column.dropna().astype(str).unique()))
        except Exception:  # provenance is best effort; the table itself is validated when read
            provenance = ""
    settings = {k: v for k, v in run.metrics.items() if k in ("config", "seed", "split", "n_examples", "n_skipped",
                                                             "epochs", "lr", "batch_size", "model_path")}
    return dict(run=run.label, kind="finetune", path=str(run.path),
                model_hash=model_hash(model_dir) if model_dir.is_dir() else None,
                seed=run.metrics.get("seed", config.get("seed")),
                parameters=json.dumps(settings, sort_keys=True, default=str), data=provenance or "unknown",
                data_kind=provenance_kind(provenance))


def environment() -> dict[str, Any]:
    """Git commit and package versions, for a report's provenance block."""
    return {"git_commit": git_commit(), "packages": package_versions()}


# ---------------------------------------------------------------------------------------------------------
# The paper's claims beside the evidence

BASELINE = "minilm"

# (key, the claim as the paper states it, benchmark family or None)
PAPER_CLAIMS: tuple[tuple[str, str, Optional[str]], ...] = (
    ("squad", "Atinuke improves extractive question answering (SQuAD).", "squad"),
    ("glue", "Atinuke improves the GLUE benchmark.", "glue"),
    ("snli", "Atinuke improves natural language inference (SNLI).", "nli"),
    ("coref", "Atinuke improves coreference resolution.", "coref"),
    ("srl", "Atinuke improves semantic role labelling.", "srl"),
    ("interpretability", "Atinuke's attention and representations are interpretable.", None),
    ("efficiency", "Atinuke is efficient (strong results at small size and cost).", None),
)


def _benchmark_evidence(family: str, runs: list[FinetuneRun], n_boot: int) -> tuple[str, str, str, list[dict]]:
    from workbench.compare import compare_runs

    mine = [r for r in runs if task_family(r.task) == family]
    if not mine:
        return "no evidence", "", f"No fine-tuning runs of a {family} task. Create them: {HOW_TO_CREATE['finetune']} (TASK: {', '.join(_family_tasks(family))})", []
    rows, sentences = [], []
    provenances = set()
    for task in sorted({r.task for r in mine}):
        baseline = next((r for r in mine if r.task == task and r.model == BASELINE), None)
        for run in (r for r in mine if r.task == task and r.model != BASELINE):
            table = run.predictions()
            provenances |= set(table["provenance"].dropna().astype(str)) if "provenance" in table else set()
            if baseline is None:
                acc = float(table["correct"].mean())
                sentences.append(f"{task}: {run.model} scores {acc:.3f} exact accuracy on {len(table)} examples, "
                                 f"with no {BASELINE} run to compare ({HOW_TO_CREATE['minilm-finetune']}).")
                rows.append(dict(task=task, model=run.model, value=acc, delta=None, p_value=None))
                continue
            result = compare_runs(baseline.predictions(), table, n_boot=n_boot)
            metric = "example_f1" if "example_f1" in result.bootstrap else "accuracy"
            test = result.bootstrap[metric]
            sentences.append(
                f"{task} ({metric}, n={result.n}): {run.model} {test.mean_b:.3f} vs {BASELINE} {test.mean_a:.3f}; "
                f"difference {test.delta:+.3f} [95% CI {test.low:+.3f}, {test.high:+.3f}], paired bootstrap "
                f"p={test.p_value:.3g}, McNemar exact p={result.mcnemar.p_value:.3g}.")
            rows.append(dict(task=task, model=run.model, value=test.mean_b, delta=test.delta, p_value=test.p_value))
    compared = [r for r in rows if r["delta"] is not None]
    if not compared:
        verdict = "not tested"
    elif all(r["delta"] > 0 and r["p_value"] < 0.05 for r in compared):
        verdict = "supported on this data"
    elif any(r["delta"] < 0 and r["p_value"] < 0.05 for r in compared):
        verdict = "contradicted on this data"
    else:
        verdict = "not shown (differences not significant)"
    kinds = {provenance_kind(p) for p in provenances}
    provenance = ", ".join(sorted(provenances)) or "unknown"
    caveat = (" The data are silver (derived from real text by rules), not the official benchmark sets: they can "
              "show whether Atinuke beats the baseline on these diagnostics, not reproduce the paper's leaderboard "
              "numbers.") if "silver" in kinds else ""
    return verdict, provenance, " ".join(sentences) + caveat, rows


def evaluate_claims(root: Optional[Path] = None, n_boot: int = 500, finetune: Optional[list[FinetuneRun]] = None,
                    pretrain: Optional[list[PretrainRun]] = None,
                    probes: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Each claim of the Atinuke paper beside what the artifacts under ``root`` measured for it.

    Args:
        root: the runs directory (default ``runs_dir()``), searched for whatever is not given.
        n_boot: bootstrap resamples of the paired tests.
        finetune, pretrain, probes: the runs/results to use instead of searching ``root``.

    Benchmark claims compare every non-baseline model with MiniLM on the same example ids (paired
    bootstrap and McNemar, :mod:`workbench.compare`); interpretability draws on the probe results (accuracy
    above the control task); efficiency on the pretraining summaries. Nothing here is hard-coded: a claim
    without artifacts says "no evidence" and which command would create it.

    Returns:
        DataFrame: ``claim`` (key), ``statement`` (the paper's claim), ``verdict``, ``evidence`` (plain
        sentences with numbers), ``provenance`` (of the data, e.g. "silver, derived").
    """
    root = Path(root or runs_dir())
    finetune = find_finetune_runs(root) if finetune is None else finetune
    pretrain = find_pretrain_runs(root) if pretrain is None else pretrain
    probes = find_probe_results(root) if probes is None else probes
    rows = []
    for key, statement, family in PAPER_CLAIMS:
        if family is not None:
            verdict, provenance, evidence, _ = _benchmark_evidence(family, finetune, n_boot)
        elif key == "interpretability":
            verdict, provenance, evidence = _interpretability_evidence(probes)
        else:
            verdict, provenance, evidence = _efficiency_evidence(pretrain)
        rows.append(dict(claim=key, statement=statement, verdict=verdict, evidence=evidence, provenance=provenance))
    return pd.DataFrame(rows)


def _interpretability_evidence(results: Optional[pd.DataFrame]) -> tuple[str, str, str]:
    if results is None or results.empty:
        return ("no evidence", "", "The paper gives no evidence for interpretability, and no probe results exist "
                f"here yet ({HOW_TO_CREATE['probes']}). Attention maps alone are not explanations "
                "(Jain and Wallace, 2019); the Attribution page measures faithfulness on demand.")
    sentences = []
    control = results["control"].fillna("none").astype(str) if "control" in results else pd.Series("none", index=results.index)
    for (model, task), group in results.assign(control=control).groupby(["model", "task"]):
        group = group[group["layer"] >= 0]  # layer -1 holds whole-curve metrics
        real = group[group["control"].isin(["none", "", "real"])]
        ctrl = group[group["control"] == "control_task"]
        ctrl = ctrl if not ctrl.empty else group[~group["control"].isin(["none", "", "real"])]
        if real.empty:
            continue
        metric = "accuracy" if (real["metric"] == "accuracy").any() else str(real["metric"].iloc[0])
        best = real[real["metric"] == metric].groupby("layer")["value"].mean()
        text = f"{model} / {task}: best {metric} {best.max():.3f} at layer {int(best.idxmax())}"
        if not ctrl.empty:
            ctrl_best = ctrl[ctrl["metric"] == metric].groupby("layer")["value"].mean()
            if not ctrl_best.empty and int(best.idxmax()) in ctrl_best.index:
                text += f", control {ctrl_best.loc[int(best.idxmax())]:.3f} (selectivity {best.max() - ctrl_best.loc[int(best.idxmax())]:+.3f})"
        sentences.append(text + ".")
    evidence = (" ".join(sentences) + " Probes show what is linearly decodable from the representations, with "
                "controls separating the probe's own capacity (Hewitt and Liang, 2019); they do not show that the "
                "model uses that information, so they support 'inspectable', not 'interpretable by design'.")
    sources = sorted(results["source"].dropna().astype(str).unique()) if "source" in results else []
    return "partly measurable", ", ".join(sources) or "probe results", evidence


def _efficiency_evidence(pretrain: list[PretrainRun]) -> tuple[str, str, str]:
    runs = [r for r in pretrain if r.summary]
    if not runs:
        return "no evidence", "", f"No finished pretraining run ({HOW_TO_CREATE['pretrain']})."
    sentences = []
    for run in runs:
        s = run.summary
        params = s.get("parameters", {})
        total = params.get("total") if isinstance(params, dict) else params
        sentences.append(
            f"{run.name}: {total if total is not None else '?'} parameters, validation perplexity "
            f"{_fmt(s.get('val_ppl'))} vs unigram {_fmt(s.get('val_unigram_ppl'))}, "
            f"{_fmt(s.get('tokens_per_s'))} tokens/s on {s.get('device', '?')}, {_fmt(s.get('wall_time_s'))} s.")
    evidence = (" ".join(sentences) + " The paper reports no cost figures to compare with; these numbers say what "
                "this implementation costs, not that it is more efficient than another design.")
    return "measured, no comparison in the paper", "pretraining on PTB (real text)", evidence


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "?"
