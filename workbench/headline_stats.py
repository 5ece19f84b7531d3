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

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import pandas as pd

from workbench.experiment_runs import task_kind
from workbench.run_inference import resample_weights

if TYPE_CHECKING:
    from workbench.experiment_runs import Experiment

EXAMPLE_MEAN = "mean example_f1"  # the fallback for a kind or metric without additive statistics


def headline_name(task: str, recorded: str = "") -> str:
    """The task's headline metric: the registry's (``TaskSpec.metric``), else the one ``metrics.json`` names."""
    from atinuke.tasks import TASKS

    spec = TASKS.get(task)
    return spec.metric if spec is not None else (recorded or EXAMPLE_MEAN)


def _supported(kind: str, metric: str) -> bool:
    return (kind, metric) in {("classification", "accuracy"), ("classification", "mcc"), ("classification", "f1"),
                              ("regression", "pearson"), ("span_qa", "f1"), ("tagging", "f1"), ("coref", "conll_f1")}


def statistics_metric(task: str, recorded: str = "") -> str:
    """The metric :func:`example_statistics` computes for ``task`` (the headline, or ``EXAMPLE_MEAN``)."""
    name = headline_name(task, recorded)
    return name if _supported(task_kind(task).name, name) else EXAMPLE_MEAN


def _labels(values: pd.Series) -> np.ndarray:
    return np.asarray(values.astype(str).to_numpy(dtype=object), dtype=str)


def _clusters(text: str) -> list[list[tuple[int, int]]]:
    return [[(int(m[0]), int(m[-1])) for m in cluster] for cluster in json.loads(text)] if text else []


def example_statistics(task: str, gold: pd.Series, prediction: pd.Series, example_f1: Optional[pd.Series] = None,
                       recorded: str = "", labels: Optional[list[str]] = None) -> np.ndarray:
    """The additive statistics ``[n, k]`` of one run's predictions (docs/predictions.md encodings).

    Args:
        task: the task name.
        gold, prediction: the predictions table's columns (label text, ``repr`` floats, answer text, JSON tags,
            JSON clusters).
        example_f1: the table's per-example score (used for SQuAD F1 and the fallback).
        recorded: the headline metric ``metrics.json`` names (for tasks outside the registry).
        labels: the label set of a classification task (the MCC confusion matrix's order); default the labels
            seen in ``gold`` and ``prediction``.
    """
    from atinuke.tasks.metrics import b_cubed_counts, ceafe_counts, muc_counts, srl_counts

    metric, kind = statistics_metric(task, recorded), task_kind(task).name
    n = len(gold)
    if metric == EXAMPLE_MEAN or (kind, metric) == ("span_qa", "f1"):
        scores = np.asarray(example_f1, dtype=float) if example_f1 is not None else np.zeros(n)
        return np.column_stack([np.ones(n), scores])
    if kind == "classification":
        g, p = _labels(gold), _labels(prediction)
        if metric == "accuracy":
            return np.column_stack([np.ones(n), (g == p).astype(float)])
        if metric == "f1":  # binary F1 of class "1" (GLUE's MRPC/QQP)
            return np.column_stack([(g == "1") & (p == "1"), (g != "1") & (p == "1"), (g == "1") & (p != "1")]
                                   ).astype(float).reshape(n, 3)
        order = np.array(sorted(labels or set(g) | set(p)))
        cell = np.searchsorted(order, g) * len(order) + np.searchsorted(order, p)
        cells = np.zeros((n, len(order) ** 2))
        cells[np.arange(n), cell] = 1.0
        return cells
    if kind == "regression":
        y = np.asarray(gold.astype(str).astype(float), dtype=float)
        x = np.asarray(prediction.astype(str).astype(float), dtype=float)
        x, y = x - x.mean(), y - y.mean()  # r is shift-invariant; centring keeps a constant side exactly constant
        return np.column_stack([np.ones(n), x, y, x * x, y * y, x * y])
    if kind == "tagging":
        return np.array([srl_counts(json.loads(str(a)), json.loads(str(b))) for a, b in zip(gold, prediction)],
                        dtype=float).reshape(n, 3)
    counts = []  # coreference: per document, (recall num, recall den, precision num, precision den) x 3 metrics
    for a, b in zip(gold, prediction):
        key, response = _clusters(str(a)), _clusters(str(b))
        counts.append([*muc_counts(key, response), *b_cubed_counts(key, response), *ceafe_counts(key, response)])
    return np.array(counts, dtype=float).reshape(n, 12)


def trivial_predictions(task: str, gold: pd.Series) -> pd.Series:
    """The trivial baseline's predictions on these golds: the majority class, the mean score, no answer,
    all-O tags, no cluster (``TaskKind.trivial_baseline``)."""
    kind = task_kind(task).name
    if kind == "classification":
        text = gold.astype(str)
        return pd.Series([text.value_counts().sort_index().idxmax()] * len(gold), index=gold.index)
    if kind == "regression":
        return pd.Series([repr(float(gold.astype(str).astype(float).mean()))] * len(gold), index=gold.index)
    if kind == "tagging":
        return pd.Series([json.dumps(["O"] * len(json.loads(str(g)))) for g in gold], index=gold.index)
    if kind == "coref":
        return pd.Series(["[]"] * len(gold), index=gold.index)
    return pd.Series([""] * len(gold), index=gold.index)


def trivial_statistics(task: str, gold: pd.Series, recorded: str = "", labels: Optional[list[str]] = None
                       ) -> np.ndarray:
    """:func:`example_statistics` of the trivial baseline (its per-example score from the task kind)."""
    return example_statistics(task, gold, trivial_predictions(task, gold),
                              pd.Series(task_kind(task).trivial_example_scores(gold)), recorded, labels)


def metric_from_totals(task: str, totals: np.ndarray, recorded: str = "") -> np.ndarray:
    """The headline metric of summed statistics ``[..., k]`` (one value per leading index).

    Undefined values follow the scorers' conventions: MCC and Pearson 0 for a constant side, F1 0 with no
    positives.
    """
    metric, kind = statistics_metric(task, recorded), task_kind(task).name
    t = np.asarray(totals, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == EXAMPLE_MEAN or (kind, metric) in (("span_qa", "f1"), ("classification", "accuracy")):
            return np.where(t[..., 0] > 0, t[..., 1] / t[..., 0], 0.0)
        if kind == "classification" and metric == "f1":
            tp, fp, fn = t[..., 0], t[..., 1], t[..., 2]
            return np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        if kind == "classification":  # multi-class MCC R_K (Gorodkin, 2004), scikit-learn's formula
            size = int(round(np.sqrt(t.shape[-1])))
            cells = t.reshape(*t.shape[:-1], size, size)
            true, pred = cells.sum(axis=-1), cells.sum(axis=-2)
            correct, total = np.trace(cells, axis1=-2, axis2=-1), cells.sum(axis=(-2, -1))
            denominator = (total ** 2 - (pred * pred).sum(-1)) * (total ** 2 - (true * true).sum(-1))
            return np.where(denominator > 0, (correct * total - (true * pred).sum(-1)) / np.sqrt(denominator), 0.0)
        if kind == "regression":
            n, sx, sy, sxx, syy, sxy = (t[..., i] for i in range(6))
            vx, vy = n * sxx - sx * sx, n * syy - sy * sy
            ok = (vx > 1e-9 * np.maximum(n * sxx, 1e-300)) & (vy > 1e-9 * np.maximum(n * syy, 1e-300))
            return np.where(ok, (n * sxy - sx * sy) / np.sqrt(np.where(ok, vx * vy, 1.0)), 0.0)
        if kind == "tagging":
            correct, predicted, gold = t[..., 0], t[..., 1], t[..., 2]
            return np.where(predicted + gold > 0, 2 * correct / (predicted + gold), 0.0)
        f1s = []
        for base in (0, 4, 8):
            recall = np.where(t[..., base + 1] > 0, t[..., base] / t[..., base + 1], 0.0)
            precision = np.where(t[..., base + 3] > 0, t[..., base + 2] / t[..., base + 3], 0.0)
            f1s.append(np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0))
        return (f1s[0] + f1s[1] + f1s[2]) / 3


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
    labels = None
    if task_kind(task).name == "classification":
        labels = sorted(set(gold.astype(str)).union(*(set(t.loc[ids, "prediction"].astype(str)) for t in tables.values())))
    stats: dict[str, dict[int, np.ndarray]] = {}
    means: dict[str, dict[int, float]] = {}
    provenance: set[str] = set()
    for (arm, seed), table in tables.items():
        rows = table.loc[ids]
        stats.setdefault(arm, {})[seed] = example_statistics(task, rows["gold"], rows["prediction"],
                                                             rows["example_f1"], recorded, labels)
        means.setdefault(arm, {})[seed] = float(rows["example_f1"].astype(float).mean())
        if "provenance" in rows:
            provenance |= set(rows["provenance"].dropna().astype(str))
    trivial_scores = task_kind(task).trivial_example_scores(gold)
    return TaskRuns(task, statistics_metric(task, recorded), len(ids), stats,
                    trivial_statistics(task, gold, recorded, labels), means, float(np.mean(trivial_scores)),
                    provenance)
