"""An ``atinuke experiment`` directory as the workbench reads it: its arms, seeds and tasks, each run's metrics and
predictions, and each task's trivial baseline per example. The claims (``workbench.claims``) and the competence
table (``workbench.competence``) are both judged on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from atinuke.errors import UserInputError
from workbench.artifacts import load_predictions, read_json

if TYPE_CHECKING:
    from atinuke.tasks.kinds import TaskKind

ALPHA = 0.05  # the significance level of every test of the experiment (floors, claims, competence)


def task_kind(task: str) -> "TaskKind":
    """The task kind object of a registered task name."""
    from atinuke.tasks import get_kind, get_task

    return get_kind(get_task(task).kind)


def trivial_example_scores(task: str, gold: pd.Series) -> np.ndarray:
    """Per-example scores (the ``example_f1`` convention) of the task's trivial baseline on these gold values.

    Majority class (of these examples: an upper bound on a train-set majority), the mean score within
    ``REGRESSION_TOLERANCE``, always abstain (SQuAD 2.0), all-O (SRL) or no cluster (coreference): the task
    kind's ``TaskKind.trivial_example_scores``.
    """
    return task_kind(task).trivial_example_scores(gold)


@dataclass
class Experiment:
    """An ``atinuke experiment`` directory: ``experiment.json`` and ``<arm>/seed<k>/...`` runs."""

    path: Path
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]
    scale: str

    def finetune_dir(self, arm: str, seed: int, task: str) -> Path:
        return self.path / arm / f"seed{seed}" / "finetune" / task

    def pretrain_summary(self, arm: str, seed: int) -> dict[str, Any]:
        path = self.path / arm / f"seed{seed}" / "pretrain" / "summary.json"
        return read_json(path) if path.is_file() else {}

    def predictions(self, arm: str, seed: int, task: str) -> Optional[pd.DataFrame]:
        path = self.finetune_dir(arm, seed, task) / "predictions.parquet"
        return load_predictions(path) if path.is_file() else None

    def metrics(self, arm: str, seed: int, task: str) -> dict[str, Any]:
        path = self.finetune_dir(arm, seed, task) / "metrics.json"
        return read_json(path) if path.is_file() else {}


def load_experiment(path: Path) -> Experiment:
    """Read ``path/experiment.json``.

    Raises:
        UserInputError: when it is absent or malformed.
    """
    path = Path(path)
    spec = read_json(path / "experiment.json") if (path / "experiment.json").is_file() else None
    if spec is None:
        raise UserInputError(f"{path}: no experiment.json (create one with `atinuke experiment --out {path}`)")
    try:
        return Experiment(path, tuple(spec["arms"]), tuple(int(s) for s in spec["seeds"]), tuple(spec["tasks"]),
                          str(spec["scale"]))
    except (KeyError, TypeError, ValueError) as error:
        raise UserInputError(f"{path / 'experiment.json'}: not an experiment description ({error})") from error


def find_experiment(root: Path) -> Optional[Experiment]:
    """The experiment at ``root`` itself or at ``root/experiment`` (the demo's), else None."""
    for candidate in (Path(root), Path(root) / "experiment"):
        if (candidate / "experiment.json").is_file():
            return load_experiment(candidate)
    return None


def expand_tasks(experiment: Experiment) -> list[str]:
    """The experiment's task names ("all" expanded to the sweep's tasks)."""
    if experiment.tasks == ("all",):
        from atinuke.finetune_all import TASK_DEFAULTS

        return list(TASK_DEFAULTS)
    return list(experiment.tasks)


def headline(experiment: Experiment, arm: str, task: str) -> tuple[str, list[float]]:
    """The task's headline metric name and its value in each seed's ``metrics.json``."""
    name, values = "", []
    for seed in experiment.seeds:
        metrics = experiment.metrics(arm, seed, task)
        name = metrics.get("headline_metric", name)
        if name and isinstance(metrics.get(name), (int, float)):
            values.append(float(metrics[name]))
    return name, values
