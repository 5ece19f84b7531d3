"""Each task's headline metric as a function of additive per-example statistics, so that it can be recomputed
exactly on every resample of the dev examples (Koehn, 2004, resamples a corpus-level metric this way).

A run's predictions table becomes a matrix ``[n_examples, k]`` whose column sums determine the headline
metric: the confusion-matrix cells for MCC (Matthews, 1975; Gorodkin, 2004), true/false positives and false
negatives for binary F1, the moments for Pearson's r, the (correct, predicted, gold) argument counts of the
micro-averaged SRL F1 (Carreras and Màrquez, 2005), the recall and precision numerators and denominators of
MUC, B-cubed and CEAF-e whose F1 mean is the CoNLL F1 (Pradhan et al., 2014), and the per-question F1 whose
mean is SQuAD F1. A resample with weights ``w`` (how often each example is drawn) has statistics
``w @ matrix`` and the metric :func:`metric_from_totals` of them. The trivial baseline is scored by the same
metric (:func:`trivial_statistics`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import pandas as pd

from workbench.experiment_runs import task_kind
from workbench.kinds import WORKBENCH_KINDS
from workbench.kinds.headline import HeadlineMetric, mean_statistics, mean_value
from workbench.run_inference import resample_weights

if TYPE_CHECKING:
    from workbench.experiment_runs import Experiment

EXAMPLE_MEAN = "mean example_f1"  # the fallback for a kind or metric without additive statistics


def headline_name(task: str, recorded: str = "") -> str:
    """The task's headline metric: the registry's (``TaskSpec.metric``), else the one ``metrics.json`` names."""
    from atinuke.tasks import TASKS

    spec = TASKS.get(task)
    return spec.metric if spec is not None else (recorded or EXAMPLE_MEAN)


def _headline(task: str) -> Optional[HeadlineMetric]:
    entry = WORKBENCH_KINDS.get(task_kind(task).name)  # a kind registered without a workbench entry: None
    return entry.headline if entry is not None else None


def statistics_metric(task: str, recorded: str = "") -> str:
    """The metric :func:`example_statistics` computes for ``task`` (the headline, or ``EXAMPLE_MEAN``)."""
    name, headline = headline_name(task, recorded), _headline(task)
    return name if headline is not None and name in headline.metrics else EXAMPLE_MEAN


def example_statistics(task: str, gold: pd.Series, prediction: pd.Series, example_f1: Optional[pd.Series] = None,
                       recorded: str = "") -> np.ndarray:
    """The additive statistics ``[n, k]`` of one run's predictions (docs/predictions.md encodings).

    Args:
        task: the task name.
        gold, prediction: the predictions table's columns (label text, ``repr`` floats, answer text, JSON tags,
            JSON clusters).
        example_f1: the table's per-example score (SQuAD F1 and the fallback use it).
        recorded: the headline metric ``metrics.json`` names (for tasks outside the registry).
    """
    metric, headline = statistics_metric(task, recorded), _headline(task)
    scores = pd.Series(np.zeros(len(gold))) if example_f1 is None else example_f1
    if metric == EXAMPLE_MEAN or headline is None:
        return mean_statistics(metric, gold, prediction, scores)
    return headline.statistics(metric, gold, prediction, scores)


def trivial_predictions(task: str, gold: pd.Series) -> pd.Series:
    """The trivial baseline's predictions on these golds: the majority class, the mean score, no answer,
    all-O tags, no cluster (``TaskKind.trivial_baseline``)."""
    headline = _headline(task)
    return headline.trivial(gold) if headline is not None else pd.Series([""] * len(gold), index=gold.index)


def trivial_statistics(task: str, gold: pd.Series, recorded: str = "") -> np.ndarray:
    """:func:`example_statistics` of the trivial baseline (its per-example score from the task kind)."""
    return example_statistics(task, gold, trivial_predictions(task, gold),
                              pd.Series(task_kind(task).trivial_example_scores(gold)), recorded)


def metric_from_totals(task: str, totals: np.ndarray, recorded: str = "") -> np.ndarray:
    """The headline metric of summed statistics ``[..., k]`` (one value per leading index)."""
    metric, headline = statistics_metric(task, recorded), _headline(task)
    t = np.asarray(totals, dtype=float)
    if metric == EXAMPLE_MEAN or headline is None:
        return mean_value(metric, t)
    return headline.value(metric, t)


# --------------------------------------------------------------------------------------------- an experiment's task


@dataclass
class TaskRuns:
    """Every run of one task in an experiment, on the dev examples all of them scored.

    Attributes:
        task, metric: the task and the headline metric the statistics compute.
        n: the examples every run scored (the intersection of the runs' ids).
        stats: arm -> seed -> ``[n, k]`` statistics, rows in one example order.
        trivial: the trivial baseline's statistics on the same examples.
        example_means: arm -> seed -> mean ``example_f1`` (descriptive only).
        trivial_example_mean: the trivial baseline's mean per-example score.
        provenance: the data's provenance strings.
    """

    task: str
    metric: str
    n: int
    stats: dict[str, dict[int, np.ndarray]]
    trivial: np.ndarray
    example_means: dict[str, dict[int, float]]
    trivial_example_mean: float
    provenance: set[str]

    def seeds(self, arm: str) -> list[int]:
        return sorted(self.stats.get(arm, {}))

    def value(self, arm: str, seed: int) -> float:
        """The run's headline metric on the examples."""
        return float(metric_from_totals(self.task, self.stats[arm][seed].sum(axis=0), self.metric))

    @property
    def trivial_value(self) -> float:
        return float(metric_from_totals(self.task, self.trivial.sum(axis=0), self.metric))

    def resampled(self, arm: str, seeds: Sequence[int], chunk: int) -> np.ndarray:
        """``[CHUNK, len(seeds)]``: each run's headline metric on the task's shared resamples ``chunk``."""
        weights = resample_weights(self.task, self.n, chunk)
        return np.column_stack([metric_from_totals(self.task, weights @ self.stats[arm][s], self.metric)
                                for s in seeds]) if seeds else np.zeros((len(weights), 0))

    def resampled_trivial(self, chunk: int) -> np.ndarray:
        """``[CHUNK]``: the trivial baseline's headline metric on the same resamples."""
        return metric_from_totals(self.task, resample_weights(self.task, self.n, chunk) @ self.trivial, self.metric)


def load_task_runs(experiment: "Experiment", task: str, arms: Optional[Sequence[str]] = None) -> Optional[TaskRuns]:
    """Read every finished run of ``task`` (of ``arms``, default all) and compute its statistics on the
    examples all of them scored; None when no run has predictions."""
    tables: dict[tuple[str, int], pd.DataFrame] = {}
    recorded = ""
    for arm in arms or experiment.arms:
        for seed in experiment.seeds:
            table = experiment.predictions(arm, seed, task)
            if table is not None and not table.empty:
                tables[(arm, seed)] = table.drop_duplicates("id").set_index("id")
                recorded = recorded or str(experiment.metrics(arm, seed, task).get("headline_metric", ""))
    if not tables:
        return None
    ids = sorted(set.intersection(*(set(t.index.astype(str)) for t in tables.values())))
    if not ids:
        return None
    gold = next(iter(tables.values())).loc[ids, "gold"]
    stats: dict[str, dict[int, np.ndarray]] = {}
    means: dict[str, dict[int, float]] = {}
    provenance: set[str] = set()
    for (arm, seed), table in tables.items():
        rows = table.loc[ids]
        stats.setdefault(arm, {})[seed] = example_statistics(task, rows["gold"], rows["prediction"],
                                                             rows["example_f1"], recorded)
        means.setdefault(arm, {})[seed] = float(rows["example_f1"].astype(float).mean())
        if "provenance" in rows:
            provenance |= set(rows["provenance"].dropna().astype(str))
    trivial_scores = task_kind(task).trivial_example_scores(gold)
    return TaskRuns(task, statistics_metric(task, recorded), len(ids), stats,
                    trivial_statistics(task, gold, recorded), means, float(np.mean(trivial_scores)),
                    provenance)
