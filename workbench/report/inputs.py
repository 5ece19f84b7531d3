"""What a report covers: the runs found under the paths it is given, scoped to chosen models and tasks."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from atinuke.errors import UserInputError
from workbench import artifacts
from workbench.artifacts import FinetuneRun, PretrainRun

logger = logging.getLogger(__name__)

_SEED_DIR = re.compile(r"seed\d+")


def run_name(path: Path) -> str:
    """A pretraining run's name: ``<arm>-seed<k>`` inside an experiment (``<arm>/seed<k>/pretrain``), else
    its directory name."""
    if path.name == "pretrain" and _SEED_DIR.fullmatch(path.parent.name):
        return f"{path.parent.parent.name}-{path.parent.name}"
    return path.name


def match_model(name: str, known: Sequence[str]) -> str:
    """``name`` as one of the ``known`` model names: itself, or the one seeded run of that arm
    (probe and attribution runs of the demo name ``minilm`` what fine-tuning calls ``minilm-seed0``)."""
    if name in known:
        return name
    seeded = [k for k in known if k.startswith(f"{name}-seed")]
    return seeded[0] if len(seeded) == 1 else name


@dataclass
class AttributionRun:
    """A ``workbench attribute`` output directory: ``attributions.parquet``, ``summary.json`` and, when it was
    run with ``--evaluate``, the faithfulness tables beside them."""

    path: Path
    model: str
    task: str
    summary: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model} / {self.task}"

    def attributions(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "attributions.parquet")

    def table(self, name: str) -> Optional[pd.DataFrame]:
        """``<name>.parquet`` of this run (``faithfulness``, ``curves``, ...), or None when it was not written."""
        path = self.path / f"{name}.parquet"
        if not path.is_file():
            return None
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as error:
            raise UserInputError(f"{path}: not a readable parquet table ({error})") from error


def attribution_run(path: Path) -> AttributionRun:
    """The :class:`AttributionRun` in ``path`` (model and task from its summary.json)."""
    summary = artifacts.read_json(path / "summary.json") if (path / "summary.json").is_file() else {}
    model, _, task = str(summary.get("model") or path.name).partition("/")
    return AttributionRun(path=path, model=model, task=str(summary.get("task") or task or "text"), summary=summary)


@dataclass
class SAERun:
    """A ``workbench sae train|inspect`` directory: ``metrics.json`` and the feature tables."""

    path: Path
    model: str
    metrics: dict = field(default_factory=dict)

    def table(self, name: str) -> Optional[pd.DataFrame]:
        path = self.path / f"{name}.parquet"
        return pd.read_parquet(path) if path.is_file() else None


MECHANISM_TABLES = {"lens": "lens_layers.parquet", "patching": "patching.parquet", "circuit": "edges.parquet",
                    "dla": "dla.parquet"}
NODE_CIRCUIT_TABLE = "nodes.parquet"  # a node-level ``workbench circuit`` run (kind "circuit" too)


@dataclass
class MechanismRun:
    """A ``workbench lens`` (``lens_layers.parquet``), ``workbench patch`` (``patching.parquet``) or ``workbench
    circuit`` (``edges.parquet``) directory."""

    path: Path
    kind: str  # "lens", "patching", "circuit" or "dla" (``workbench dla``: ``dla.parquet``)
    model: str
    summary: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        if self.kind == "circuit" and (self.path / NODE_CIRCUIT_TABLE).is_file():
            return pd.read_parquet(self.path / NODE_CIRCUIT_TABLE)
        return pd.read_parquet(self.path / MECHANISM_TABLES[self.kind])


@dataclass
class ReportInputs:
    """The runs a report covers."""

    pretrain: list[PretrainRun] = field(default_factory=list)
    finetune: list[FinetuneRun] = field(default_factory=list)
    probes: Optional[pd.DataFrame] = None
    experiment: Optional[Path] = None
    attributions: list[AttributionRun] = field(default_factory=list)
    sae: list[SAERun] = field(default_factory=list)
    mechanisms: list[MechanismRun] = field(default_factory=list)
    dynamics: list[Path] = field(default_factory=list)  # ``workbench dynamics`` output directories
    roots: list[Path] = field(default_factory=list)  # the paths the report was given

    def models(self) -> list[str]:
        """Every model name, in the order the runs were found (pretraining first)."""
        names = [r.name for r in self.pretrain] + [r.model for r in self.finetune]
        names += [r.model for r in self.attributions] + [r.model for r in self.sae] + [r.model for r in self.mechanisms]
        if self.probes is not None:
            names += [str(m) for m in self.probes["model"].unique()]
        return list(dict.fromkeys(names))

    def tasks(self) -> list[str]:
        """Every fine-tuning and attribution task, sorted."""
        return sorted({r.task for r in self.finetune} | {r.task for r in self.attributions})

    def scoped(self, models: Optional[Sequence[str]] = None, tasks: Optional[Sequence[str]] = None) -> "ReportInputs":
        """Only the runs of ``models`` and ``tasks`` (None: all).

        Raises:
            UserInputError: for a model or task no run has, naming the ones that exist.
        """
        for chosen, available, what in ((models, self.models(), "--models"), (tasks, self.tasks(), "--tasks")):
            unknown = [name for name in chosen or () if name not in available]
            if unknown:
                raise UserInputError(f"{what}: no run of {unknown[0]!r} here; available: {', '.join(available) or 'none'}")
        keep_model = (lambda name: True) if not models else (lambda name: name in models)
        keep_task = (lambda name: True) if not tasks else (lambda name: name in tasks)
        probes = self.probes
        if probes is not None and models:
            probes = probes[probes["model"].astype(str).isin(models)]
            probes = probes if len(probes) else None
        # scoped to some models, the claims are judged on their runs only (findings.claims_table), not the root's
        return replace(self, roots=self.roots if not models else [],
                       pretrain=[r for r in self.pretrain if keep_model(r.name)],
                       finetune=[r for r in self.finetune if keep_model(r.model) and keep_task(r.task)],
                       attributions=[r for r in self.attributions if keep_model(r.model) and keep_task(r.task)],
                       sae=[r for r in self.sae if keep_model(r.model)],
                       mechanisms=[r for r in self.mechanisms if keep_model(r.model)], probes=probes)


def gather(paths: Sequence[str | Path]) -> ReportInputs:
    """Find every run under ``paths``: a runs root, a ``pretrain``/``finetune`` folder, or single run dirs.

    Model names are made consistent across kinds of run (:func:`match_model`).

    Raises:
        UserInputError: for a path that does not exist or holds no run.
    """
    inputs = ReportInputs(roots=[Path(p) for p in paths])
    probe_frames = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise UserInputError(f"{path}: no such run directory")
        found = 0
        candidates = {p.parent for p in path.rglob("summary.json")} | {p.parent for p in path.rglob("metrics.csv")}
        for candidate in sorted(candidates):
            if any(p.startswith(".") for p in candidate.parts[-2:]):
                continue  # hidden dirs are atomic writes in progress
            if any((candidate / name).exists() for name in ("predictions.parquet", "attributions.parquet",
                                                            "results.parquet", "results.csv", "lens_layers.parquet",
                                                            "patching.parquet", "edges.parquet", "dla.parquet",
                                                            "dynamics.parquet", NODE_CIRCUIT_TABLE)):
                continue  # fine-tuning, attribution and probe runs are found below
            has_summary = (candidate / "summary.json").is_file()
            if not (has_summary or (candidate / "model" / "config.json").is_file()):
                continue
            if candidate not in {r.path for r in inputs.pretrain}:
                summary = artifacts.read_json(candidate / "summary.json") if has_summary else {}
                inputs.pretrain.append(PretrainRun(run_name(candidate), candidate, summary))
                found += 1
        for pred in sorted(path.rglob("predictions.parquet")):
            if pred.parent not in {r.path for r in inputs.finetune} and not pred.parent.name.startswith("."):
                inputs.finetune.append(artifacts.finetune_run_from_dir(pred.parent))
                found += 1
        for directory in artifacts.find_attribution_runs(path):
            if directory not in {r.path for r in inputs.attributions}:
                inputs.attributions.append(attribution_run(directory))
                found += 1
        for features in sorted(path.rglob("features.parquet")):
            directory = features.parent
            if (directory / "metrics.json").is_file() and directory not in {r.path for r in inputs.sae}:
                metrics = artifacts.read_json(directory / "metrics.json")
                inputs.sae.append(SAERun(directory, str(metrics.get("model") or directory.name), metrics))
                found += 1
        for kind, name in [*MECHANISM_TABLES.items(), ("circuit", NODE_CIRCUIT_TABLE)]:
            for table in sorted(path.rglob(name)):
                directory = table.parent
                if directory in {r.path for r in inputs.mechanisms}:
                    continue
                summary = artifacts.read_json(directory / "summary.json") if (directory / "summary.json").is_file() else {}
                inputs.mechanisms.append(MechanismRun(directory, kind, str(summary.get("model") or directory.name), summary))
                found += 1
        for table in sorted(path.rglob("dynamics.parquet")):
            if (table.parent / "headline.csv").is_file() and table.parent not in inputs.dynamics:
                inputs.dynamics.append(table.parent)
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
            raise UserInputError(f"{path}: no pretraining run, predictions.parquet, attributions or probe results found")
    known = [r.name for r in inputs.pretrain] + [r.model for r in inputs.finetune]
    runs: list[AttributionRun | SAERun | MechanismRun] = [*inputs.attributions, *inputs.sae, *inputs.mechanisms]
    for run in runs:
        run.model = match_model(run.model, known)
    if probe_frames:
        probes = pd.concat(probe_frames, ignore_index=True).drop_duplicates()
        probes["model"] = probes["model"].astype(str).map(lambda m: match_model(m, known))
        inputs.probes = probes
    return inputs
