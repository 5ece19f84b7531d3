"""Per-layer probe curves over seeds, and selectivity, from the probes' tidy results table.

``probes run`` writes one row per (model, task, layer, metric, seed, control) (:mod:`probes.runner`:
columns ``model, task, layer, metric, value, seed, control, source, probe``; layer -1 holds whole-curve
metrics such as ``expected_layer``). Everything that draws or tabulates a probe curve summarises that table
per layer: the mean over seeds with a Student-t interval, and selectivity, the real task's score minus a
control's at the same layer (Hewitt & Liang, 2019, arXiv 1909.03368).

The Hewitt & Liang control labels (:func:`control_labels`) live here too, so that ``workbench dynamics`` can
probe snapshots with them; ``probes.controls`` re-exports them. The summary lives here, not in ``probes``, because the workbench must not import the probes package
(``probes`` imports ``workbench``); :mod:`probes.figures` and :func:`probes.controls.seed_summary` use it.
"""
from __future__ import annotations

import hashlib
import math
from typing import Hashable, Optional, Sequence

import numpy as np
import pandas as pd

from workbench.stats import seed_interval

__all__ = ["REAL_CONTROLS", "CURVE_KEYS", "CURVE_COLUMNS", "seed_interval", "layer_curve", "layer_selectivity",
           "control_labels"]

# ``control`` values that mean the trained model on the real task (everything else is a control curve).
REAL_CONTROLS = ("none", "", "real")
CURVE_KEYS = ["model", "task", "control", "layer"]
CURVE_COLUMNS = [*CURVE_KEYS, "mean", "std", "low", "high", "n_seeds", "source"]


def layer_curve(results: pd.DataFrame, metric: str = "accuracy", confidence: float = 0.95) -> pd.DataFrame:
    """Mean over seeds with a Student-t interval, per (model, task, control, layer), of one metric.

    Args:
        results: the probes' tidy table; needs columns ``model, task, control, layer, metric, value, source``.
            Rows of layer < 0 (whole-curve metrics) are left out, and so are rows whose ``control`` is
            missing (pandas' groupby drops NaN keys: fill them first to keep them).
        metric: the metric whose rows are summarised.
        confidence: interval coverage.

    Returns:
        DataFrame with :data:`CURVE_COLUMNS`, sorted by the keys: ``mean``, ``std`` (sample standard
        deviation over seeds), ``low`` and ``high`` (the t interval; ``std``, ``low`` and ``high`` are NaN for
        one seed), ``n_seeds`` and ``source`` (the group's first row's).
    """
    rows = []
    chosen = results[(results["metric"] == metric) & (results["layer"] >= 0)]
    for (model, task, control, layer), group in chosen.groupby(CURVE_KEYS):
        values = np.asarray(group["value"].to_numpy(), dtype=float)
        mean, low, high = seed_interval(values, confidence)
        rows.append(dict(model=model, task=task, control=control, layer=int(layer), mean=mean,
                         std=float(values.std(ddof=1)) if len(values) > 1 else math.nan, low=low, high=high,
                         n_seeds=len(values), source=group["source"].iloc[0]))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def layer_selectivity(curve: pd.DataFrame, controls: Optional[Sequence[str]] = ("control_task",)) -> pd.DataFrame:
    """Selectivity per layer: the real curve's ``mean`` minus a control curve's at the same layer.

    Args:
        curve: a per-layer table with columns ``model``, ``control``, ``layer``, ``mean`` (and ``task`` when
            it holds several tasks), such as :func:`layer_curve`'s.
        controls: the control curves to compare with (default the Hewitt & Liang control task); None: every
            curve whose control is not in :data:`REAL_CONTROLS`.

    Returns:
        One row per (model[, task], layer) and control present on both sides: the real curve's columns, the
        control's with the suffix ``_control`` (``control_control`` names the control) and ``selectivity``.
    """
    keys = [column for column in ("model", "task", "layer") if column in curve.columns]
    real = curve[curve["control"].isin(REAL_CONTROLS)]
    control = curve[~curve["control"].isin(REAL_CONTROLS)]
    if controls is not None:
        control = control[control["control"].isin(list(controls))]
    merged = real.merge(control, on=keys, suffixes=("", "_control"))
    merged["selectivity"] = merged["mean"] - merged["mean_control"]
    return merged


def _stable_hash(key: Hashable, seed: int) -> int:
    """A process-independent hash (Python's ``hash`` of str is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x1f{key!r}".encode()).digest()[:8], "little")


def control_labels(keys: Sequence[Hashable], labels: Sequence, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang (2019) control task: one fixed random label per word type.

    Each distinct key (a word type, or a tuple of types for span pairs) gets a label sampled from the
    empirical distribution of ``labels``; the draw depends only on ``(seed, key)``, so the same type gets
    the same control label in train and test, in every run and process.

    Args:
        keys: the type of each target, shape [n] (e.g. lower-cased word forms).
        labels: the task's gold labels, shape [n] (their distribution is the control's).
        seed: which control task.

    Returns:
        Control labels, shape [n], values drawn from the set of ``labels``.
    """
    if len(keys) != len(labels):
        raise ValueError(f"{len(keys)} keys but {len(labels)} labels")
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    cumulative = np.cumsum(counts) / counts.sum()
    assigned: dict = {}
    out = np.empty(len(keys), dtype=classes.dtype)
    for i, key in enumerate(keys):
        if key not in assigned:
            u = (_stable_hash(key, seed) >> 11) / float(1 << 53)  # uniform in [0, 1)
            assigned[key] = classes[min(int(np.searchsorted(cumulative, u, side="right")), len(classes) - 1)]
        out[i] = assigned[key]
    return out
