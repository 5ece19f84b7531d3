"""Plotly figures of probing results, shared by ``probes report``, the app and exported reports.

Every function takes the tidy results table of :mod:`probes.runner` (columns ``model, task, layer, metric,
value, seed, control, source, probe``) and returns a ``plotly.graph_objects.Figure``.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.probe_curves import layer_curve

__all__ = ["layer_summary", "layer_curve_figure", "selectivity_figure"]

_DASH = {"none": "solid", "control_task": "dot", "random_init": "dash"}
SUMMARY_COLUMNS = ["model", "task", "control", "layer", "mean", "low", "high", "n_seeds", "source"]


def layer_summary(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean over seeds with a 95% t-interval, per (model, task, control, layer)
    (:func:`workbench.probe_curves.layer_curve` without its ``std`` column).

    Returns:
        DataFrame with columns model, task, control, layer, mean, low, high, n_seeds, source.
    """
    return layer_curve(results, metric)[SUMMARY_COLUMNS]


def layer_curve_figure(results: pd.DataFrame, metric: str = "accuracy", title: str = "") -> go.Figure:
    """Per-layer curves of ``metric``: one line per (model, task, control), error bars = 95% CI over seeds.

    Solid lines are the trained model on the task, dotted the Hewitt & Liang control task, dashed the
    random-initialisation model; layer 0 is the embedding baseline. The label source is in the hover text.
    """
    summary = layer_summary(results, metric)
    figure = go.Figure()
    for (model, task, control), group in summary.groupby(["model", "task", "control"]):
        group = group.sort_values("layer")
        has_ci = group["n_seeds"].max() > 1
        figure.add_trace(go.Scatter(
            x=group["layer"], y=group["mean"], mode="lines+markers",
            name=f"{model} · {task}" + ("" if control == "none" else f" · {control}"),
            line=dict(dash=_DASH.get(control, "solid")),
            error_y=dict(type="data", symmetric=False, array=(group["high"] - group["mean"]).tolist(),
                         arrayminus=(group["mean"] - group["low"]).tolist(), visible=bool(has_ci)),
            hovertemplate=f"layer %{{x}}<br>{metric} %{{y:.3f}}<br>{group['source'].iloc[0]}<extra></extra>",
        ))
    figure.update_layout(title=title or f"Probe {metric} by layer", xaxis_title="layer (0 = embeddings)",
                         yaxis_title=metric, template="plotly_white", legend_title="model · task · control")
    figure.update_xaxes(dtick=1)
    return figure


def selectivity_figure(results: pd.DataFrame, title: str = "") -> go.Figure:
    """Selectivity (task accuracy minus control-task accuracy; Hewitt & Liang, 2019) by layer."""
    return layer_curve_figure(results[results["metric"] == "selectivity"], metric="selectivity",
                              title=title or "Selectivity (task − control accuracy) by layer")
