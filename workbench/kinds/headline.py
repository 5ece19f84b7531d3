"""Each built-in task kind's headline metric as a function of additive per-example statistics
(``workbench.headline_stats``; Koehn, 2004, resamples a corpus-level metric this way).

A run's predictions table becomes a matrix ``[n_examples, k]`` whose column sums determine the metric: the
confusion-matrix cells for MCC (Matthews, 1975; Gorodkin, 2004), true/false positives and false negatives for
binary F1, the moments for Pearson's r, the (correct, predicted, gold) argument counts of the micro-averaged
SRL F1 (Carreras and Màrquez, 2005), the recall and precision numerators and denominators of MUC, B-cubed and
CEAF-e whose F1 mean is the CoNLL F1 (Pradhan et al., 2014), and the per-question F1 whose mean is SQuAD F1.
Undefined values follow the scorers' conventions: MCC and Pearson 0 for a constant side, F1 0 with no positives.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class HeadlineMetric:
    """How a kind's headline metrics are computed from additive statistics.

    Attributes:
        metrics: the metric names (``TaskSpec.metric``) it computes.
        statistics: (metric, gold, prediction, example_f1) -> ``[n, k]`` statistics of a predictions table.
        value: (metric, totals ``[..., k]``) -> the metric, one value per leading index.
        trivial: the trivial baseline's predictions of these golds (the table's encoding).
    """

    metrics: tuple[str, ...]
    statistics: Callable[[str, pd.Series, pd.Series, pd.Series], np.ndarray]
    value: Callable[[str, np.ndarray], np.ndarray]
    trivial: Callable[[pd.Series], pd.Series]


def _text(values: pd.Series) -> np.ndarray:
    return np.asarray(values.astype(str).to_numpy(dtype=object), dtype=str)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def mean_statistics(metric: str, gold: pd.Series, prediction: pd.Series, example_f1: pd.Series) -> np.ndarray:
    """``[1, example_f1]``: the mean per-example score (SQuAD F1; any metric without statistics)."""
    return np.column_stack([np.ones(len(gold)), np.asarray(example_f1, dtype=float)])


def mean_value(metric: str, totals: np.ndarray) -> np.ndarray:
    return _ratio(totals[..., 1], totals[..., 0])


def _classification_statistics(metric: str, gold: pd.Series, prediction: pd.Series, example_f1: pd.Series
                               ) -> np.ndarray:
    g, p = _text(gold), _text(prediction)
    n = len(g)
    if metric == "accuracy":
        return np.column_stack([np.ones(n), (g == p).astype(float)])
    if metric == "f1":  # binary F1 of class "1" (GLUE's MRPC/QQP)
        return np.column_stack([(g == "1") & (p == "1"), (g != "1") & (p == "1"), (g == "1") & (p != "1")]
                               ).astype(float).reshape(n, 3)
    order = np.array(sorted(set(g) | set(p)))  # MCC: the confusion matrix, one cell per example
    cells = np.zeros((n, len(order) ** 2))
    cells[np.arange(n), np.searchsorted(order, g) * len(order) + np.searchsorted(order, p)] = 1.0
    return cells


def _classification_value(metric: str, totals: np.ndarray) -> np.ndarray:
    t = np.asarray(totals, dtype=float)
    if metric == "accuracy":
        return mean_value(metric, t)
    if metric == "f1":
        tp, fp, fn = t[..., 0], t[..., 1], t[..., 2]
        return _ratio(2 * tp, 2 * tp + fp + fn)
    size = int(round(np.sqrt(t.shape[-1])))  # multi-class MCC R_K, scikit-learn's formula
    cells = t.reshape(*t.shape[:-1], size, size)
    true, pred = cells.sum(axis=-1), cells.sum(axis=-2)
    correct, total = np.trace(cells, axis1=-2, axis2=-1), cells.sum(axis=(-2, -1))
    denominator = (total ** 2 - (pred * pred).sum(-1)) * (total ** 2 - (true * true).sum(-1))
    return _ratio(correct * total - (true * pred).sum(-1), np.sqrt(np.maximum(denominator, 0.0)))


def _majority(gold: pd.Series) -> pd.Series:
    text = gold.astype(str)
    return pd.Series([text.value_counts().sort_index().idxmax()] * len(gold), index=gold.index)


def _regression_statistics(metric: str, gold: pd.Series, prediction: pd.Series, example_f1: pd.Series
                           ) -> np.ndarray:
    y = np.asarray(gold.astype(str).astype(float), dtype=float)
    x = np.asarray(prediction.astype(str).astype(float), dtype=float)
    x, y = x - x.mean(), y - y.mean()  # r is shift-invariant; centring keeps a constant side exactly constant
    return np.column_stack([np.ones(len(y)), x, y, x * x, y * y, x * y])


def _regression_value(metric: str, totals: np.ndarray) -> np.ndarray:
    n, sx, sy, sxx, syy, sxy = (np.asarray(totals, dtype=float)[..., i] for i in range(6))
    vx, vy = n * sxx - sx * sx, n * syy - sy * sy
    ok = (vx > 1e-9 * np.maximum(n * sxx, 1e-300)) & (vy > 1e-9 * np.maximum(n * syy, 1e-300))
    return np.where(ok, (n * sxy - sx * sy) / np.sqrt(np.where(ok, vx * vy, 1.0)), 0.0)


def _mean_score(gold: pd.Series) -> pd.Series:
    return pd.Series([repr(float(gold.astype(str).astype(float).mean()))] * len(gold), index=gold.index)


def _tagging_statistics(metric: str, gold: pd.Series, prediction: pd.Series, example_f1: pd.Series) -> np.ndarray:
    from atinuke.tasks.metrics import srl_counts

    return np.array([srl_counts(json.loads(str(a)), json.loads(str(b))) for a, b in zip(gold, prediction)],
                    dtype=float).reshape(len(gold), 3)


def _tagging_value(metric: str, totals: np.ndarray) -> np.ndarray:
    correct, predicted, gold = (np.asarray(totals, dtype=float)[..., i] for i in range(3))
    return _ratio(2 * correct, predicted + gold)  # micro F1 = 2PR/(P+R)


def _all_o(gold: pd.Series) -> pd.Series:
    return pd.Series([json.dumps(["O"] * len(json.loads(str(g)))) for g in gold], index=gold.index)


def _clusters(text: str) -> list[list[tuple[int, int]]]:
    return [[(int(m[0]), int(m[-1])) for m in cluster] for cluster in json.loads(text)] if text else []


def _coref_statistics(metric: str, gold: pd.Series, prediction: pd.Series, example_f1: pd.Series) -> np.ndarray:
    from atinuke.tasks.metrics import b_cubed_counts, ceafe_counts, muc_counts

    counts = []  # per document, (recall num, recall den, precision num, precision den) x MUC, B-cubed, CEAF-e
    for a, b in zip(gold, prediction):
        key, response = _clusters(str(a)), _clusters(str(b))
        counts.append([*muc_counts(key, response), *b_cubed_counts(key, response), *ceafe_counts(key, response)])
    return np.array(counts, dtype=float).reshape(len(gold), 12)


def _coref_value(metric: str, totals: np.ndarray) -> np.ndarray:
    t = np.asarray(totals, dtype=float)
    f1s = []
    for base in (0, 4, 8):
        recall, precision = _ratio(t[..., base], t[..., base + 1]), _ratio(t[..., base + 2], t[..., base + 3])
        f1s.append(_ratio(2 * precision * recall, precision + recall))
    return (f1s[0] + f1s[1] + f1s[2]) / 3


def _no_cluster(gold: pd.Series) -> pd.Series:
    return pd.Series(["[]"] * len(gold), index=gold.index)


def _no_answer(gold: pd.Series) -> pd.Series:
    return pd.Series([""] * len(gold), index=gold.index)


CLASSIFICATION = HeadlineMetric(("accuracy", "mcc", "f1"), _classification_statistics, _classification_value, _majority)
REGRESSION = HeadlineMetric(("pearson",), _regression_statistics, _regression_value, _mean_score)
SPAN_QA = HeadlineMetric(("f1",), mean_statistics, mean_value, _no_answer)
TAGGING = HeadlineMetric(("f1",), _tagging_statistics, _tagging_value, _all_o)
COREF = HeadlineMetric(("conll_f1",), _coref_statistics, _coref_value, _no_cluster)


def _gap_statistics(metric: str, gold: pd.Series, prediction: pd.Series, example_f1: pd.Series) -> np.ndarray:
    """``[tp, fp, fn]`` of each example's two decisions (A is the antecedent, B is), as GAP's official scorer
    counts them (Webster et al., 2018): a missing output is a false negative."""
    from atinuke.tasks.gap import decisions

    rows = []
    for g_value, p_value in zip(gold, prediction, strict=True):
        tp = fp = fn = 0
        for g, p in zip(decisions(g_value), decisions(None if pd.isna(p_value) else p_value), strict=True):
            if p is None:
                fn += 1
            elif p:
                tp, fp = tp + bool(g), fp + (not g)
            elif g:
                fn += 1
        rows.append((tp, fp, fn))
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def _gap_value(metric: str, totals: np.ndarray) -> np.ndarray:
    tp, fp, fn = (np.asarray(totals, dtype=float)[..., i] for i in range(3))
    return _ratio(2 * tp, 2 * tp + fp + fn)


GAP = HeadlineMetric(("f1",), _gap_statistics, _gap_value, _majority)
