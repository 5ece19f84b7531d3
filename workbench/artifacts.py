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
    "sae": "workbench sae train --model atinuke/checkpoints/tiny-atinuke-seed0 --hook blocks.1.hook_resid_post "
           "--width 2048 --k 16 --out runs/sae/atinuke-resid1 (or `make models`)",
    "dynamics": "atinuke pretrain --preset tiny --steps 600 --keep-log-checkpoints --out runs/pretrain/tiny-dyn, then "
                "workbench dynamics --run runs/pretrain/tiny-dyn [--run RUN2] --out runs/dynamics/tiny",
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

    @property
    def user_data(self) -> Optional[dict[str, Any]]:
        """For a run on the user's own data (``atinuke finetune --columns``): what ``finetune_config.json``
        recorded of it (``data``, ``dev_data``, ``columns``, ``kind``, ``split``, ``labels``), else None."""
        path = self.path / "finetune_config.json"
        if not path.is_file():
            return None
        try:
            record = read_json(path).get("user_data")
        except UserInputError as error:
            logger.warning("%s", error)
            return None
        return record if isinstance(record, dict) else None

    @property
    def data_note(self) -> str:
        """One line on the run's data: "your data: <file> [<mapping>], dev: <split rule>", or ""."""
        record = self.user_data
        if record is None:
            return ""
        return f"your data: {record.get('data')} [{record.get('columns')}], dev: {record.get('split')}"


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


def _experiment_run_name(run_dir: Path) -> str:
    """``<arm>-seed<k>`` for ``experiment/<arm>/seed<k>/pretrain`` or ``.../finetune/<task>``."""
    parts = run_dir.parts
    index = parts.index("pretrain") if parts[-1] == "pretrain" else len(parts) - 2
    return f"{parts[index - 2]}-{parts[index - 1]}"


def find_pretrain_runs(root: Optional[Path] = None) -> list[PretrainRun]:
    """Pretraining runs under ``root/pretrain`` (by directory name), then those of the controlled experiment
    ``root/experiment/<arm>/seed<k>/pretrain`` (named ``<arm>-seed<k>``)."""
    root = Path(root or runs_dir())
    candidates = [(p.name, p) for p in sorted((root / "pretrain").glob("*")) if p.is_dir() and not p.name.startswith(".")]
    candidates += [(_experiment_run_name(p), p) for p in sorted((root / "experiment").glob("*/seed*/pretrain"))
                   if p.is_dir()]
    runs = []
    for name, path in candidates:
        if not ((path / "summary.json").is_file() or (path / "model" / "config.json").is_file()
                or (path / "metrics.csv").is_file()):
            continue
        summary = {}
        if (path / "summary.json").is_file():
            try:
                summary = read_json(path / "summary.json")
            except UserInputError as error:
                logger.warning("%s", error)
        runs.append(PretrainRun(name=name, path=path, summary=summary))
    return runs


def find_finetune_runs(root: Optional[Path] = None) -> list[FinetuneRun]:
    """Fine-tuning runs with a predictions table under ``root/finetune/<model>/<task>/``, then those of the
    controlled experiment ``root/experiment/<arm>/seed<k>/finetune/<task>/`` (model ``<arm>-seed<k>``)."""
    root = Path(root or runs_dir())
    found = [(pred.parent.parent.name, pred.parent) for pred in sorted((root / "finetune").glob("*/*/predictions.parquet"))]
    found += [(_experiment_run_name(pred.parent), pred.parent)
              for pred in sorted((root / "experiment").glob("*/seed*/finetune/*/predictions.parquet"))]
    runs = []
    for model, path in found:
        metrics = {}
        if (path / "metrics.json").is_file():
            try:
                metrics = read_json(path / "metrics.json")
            except UserInputError as error:
                logger.warning("%s", error)
        runs.append(FinetuneRun(model=model, task=path.name, path=path, metrics=metrics))
        register_run_task(path)
    return runs


def register_run_task(path: Path) -> None:
    """Make a run on the user's own data known to ``atinuke.tasks.get_task`` (metrics, trivial baselines, the
    report), from the spec its ``model/task_model.json`` saved; benchmark runs need nothing."""
    from atinuke.tasks.registry import TASKS, register_task, spec_from_dict

    manifest = Path(path) / "model" / "task_model.json"
    if not manifest.is_file():
        return
    try:
        spec = spec_from_dict(read_json(manifest)["spec"])
    except (UserInputError, KeyError, TypeError) as error:
        logger.warning("%s: no task spec (%s)", manifest, error)
        return
    if spec.family == "user" and TASKS.get(spec.name) != spec:
        register_task(spec)


def finetune_run_from_dir(path: Path) -> FinetuneRun:
    """A :class:`FinetuneRun` for any directory with ``predictions.parquet`` (model/task from metrics.json)."""
    if not (path / "predictions.parquet").is_file():
        raise UserInputError(f"{path}: no predictions.parquet here")
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    register_run_task(path)
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


def find_sae_runs(root: Optional[Path] = None) -> list[Path]:
    """``workbench sae train|inspect`` output directories under ``root/sae`` (a ``metrics.json`` and feature
    tables), sorted."""
    base = Path(root or runs_dir()) / "sae"
    return sorted(p.parent for p in base.glob("*/metrics.json") if (p.parent / "features.parquet").is_file())


def find_dynamics_runs(root: Optional[Path] = None) -> list[Path]:
    """``workbench dynamics`` output directories under ``root/dynamics`` (a ``dynamics.parquet``), sorted."""
    base = Path(root or runs_dir()) / "dynamics"
    return sorted(p.parent for p in base.glob("*/dynamics.parquet") if (p.parent / "headline.csv").is_file())


def task_family(task: str) -> str:
    """The benchmark family of a task name ("glue", "squad", "nli", "coref", "srl"), or "other"."""
    from atinuke.tasks import TASKS

    if task in TASKS:
        return TASKS[task].family
    for prefix, family in (("squad", "squad"), ("srl", "srl"), ("coref", "coref"), ("snli", "nli")):
        if task.startswith(prefix):
            return family
    return "glue" if task in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "ax") else "other"


def family_tasks(family: str) -> list[str]:
    """The tasks of a benchmark family, the offline diagnostic ones first choice."""
    from atinuke.tasks import DIAGNOSTIC_TASKS, TASKS

    return [t for t in DIAGNOSTIC_TASKS if TASKS[t].family == family] or [t for t, s in TASKS.items() if s.family == family]


def provenance_kind(provenance: str) -> str:
    """"silver" for the derived diagnostic data, "gold" for official files, "user" for the user's own data
    (``atinuke.tasks.userdata``), else "unknown"."""
    text = str(provenance).lower()
    kinds = {"silver": "silver", "gold": "gold", "user": "user"}
    return next((kind for prefix, kind in kinds.items() if text.startswith(prefix)), "unknown")


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
        run's settings), ``data``, ``data_kind`` ("silver"/"gold"/"user"/"unknown").
    """
    if isinstance(run, PretrainRun):
        settings = run.summary.get("config", {})
        sources = settings.get("sources") or settings.get("source") or "ptb"
        return dict(run=run.name, kind="pretrain", path=str(run.path), model_hash=model_hash(run.model_dir),
                    seed=run.summary.get("seed", settings.get("seed")), parameters=json.dumps(settings, sort_keys=True, default=str),
                    data=f"pretraining text: {sources}", data_kind="gold (real text)")
    model_dir = run.path / "model"
    saved = run.metrics.get("config")
    config: dict[str, Any] = saved if isinstance(saved, dict) else {}
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
