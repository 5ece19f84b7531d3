"""Plotly figure builders shared by the app and the reports; each takes analysis results and returns a Figure.

Diverging scores (attributions) use a red-blue scale centred on 0; probabilities (attention) a sequential
scale from 0. Figures carry their numbers in hover text, so nothing shown is only a colour.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from atinuke.errors import UserInputError

DIVERGING = "RdBu_r"
SEQUENTIAL = "Blues"


def token_heatmap(attribution: "object", example_id: str, methods: Optional[Sequence[str]] = None,
                  normalize: bool = True, title: Optional[str] = None) -> go.Figure:
    """One row per method, one column per token of an example, coloured by score.

    Args:
        attribution: a :class:`~workbench.attribution.Attribution`.
        example_id: which example.
        methods: rows to show (default: all in the table).
        normalize: divide each method's scores by its max |score| so methods share one colour scale.

    Returns:
        A heatmap figure (hover: token, method, raw score).
    """
    frame = attribution.frame[attribution.frame["example_id"] == str(example_id)]
    if frame.empty:
        raise UserInputError(f"no attribution for example {example_id!r}")
    methods = list(methods or dict.fromkeys(frame["method"]))
    tokens = frame[frame["method"] == methods[0]].sort_values("token_index")["token"].tolist()
    raw = np.array([frame[frame["method"] == m].sort_values("token_index")["score"].to_numpy() for m in methods])
    shown = raw.copy()
    if normalize:
        scale = np.abs(raw).max(axis=1, keepdims=True)
        shown = np.divide(raw, scale, out=np.zeros_like(raw), where=scale > 0)
    x = [f"{i}:{t}" for i, t in enumerate(tokens)]
    figure = go.Figure(go.Heatmap(z=shown, x=x, y=methods, customdata=raw, colorscale=DIVERGING, zmid=0,
                                  text=[tokens] * len(methods), texttemplate="%{text}",
                                  hovertemplate="%{y}<br>%{x}<br>score %{customdata:.4g}<extra></extra>"))
    figure.update_layout(title=title or f"Token attributions, example {example_id}",
                         height=120 + 40 * len(methods), xaxis_showticklabels=False)
    return figure


def attention_heatmap(pattern: np.ndarray, tokens: Sequence[str], title: str = "Attention",
                      key_tokens: Optional[Sequence[str]] = None) -> go.Figure:
    """A query x key attention matrix.

    Args:
        pattern: [T_query, T_key] weights.
        tokens: query labels (and key labels unless ``key_tokens``).
    """
    pattern = np.asarray(pattern)
    keys = list(key_tokens or tokens)
    if pattern.shape != (len(tokens), len(keys)):
        raise UserInputError(f"pattern of shape {pattern.shape} does not match {len(tokens)} x {len(keys)} tokens")
    x, y = [f"{i}:{t}" for i, t in enumerate(keys)], [f"{i}:{t}" for i, t in enumerate(tokens)]
    figure = go.Figure(go.Heatmap(z=pattern, x=x, y=y, colorscale=SEQUENTIAL, zmin=0,
                                  hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"))
    figure.update_layout(title=title, yaxis_autorange="reversed", xaxis_title="key", yaxis_title="query")
    return figure


def head_grid(pattern: np.ndarray, tokens: Sequence[str], layers: Optional[Sequence[int]] = None,
              title: str = "Attention per layer and head") -> go.Figure:
    """Small multiples: one attention map per (layer, head).

    Args:
        pattern: [n_layers, n_heads, T, T].
        tokens: the T tokens (hover labels).
        layers: subset of layers (default all).
    """
    pattern = np.asarray(pattern)
    layers = list(range(pattern.shape[0]) if layers is None else layers)
    n_heads = pattern.shape[1]
    figure = make_subplots(rows=len(layers), cols=n_heads, horizontal_spacing=0.005, vertical_spacing=0.01,
                           row_titles=[f"L{layer}" for layer in layers], column_titles=[f"H{h}" for h in range(n_heads)])
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    for r, layer in enumerate(layers):
        for h in range(n_heads):
            figure.add_trace(go.Heatmap(z=pattern[layer, h], x=labels, y=labels, coloraxis="coloraxis",
                                        hovertemplate=f"L{layer} H{h}<br>q %{{y}}<br>k %{{x}}<br>%{{z:.3f}}<extra></extra>"),
                             row=r + 1, col=h + 1)
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, autorange="reversed")
    figure.update_layout(title=title, coloraxis={"colorscale": SEQUENTIAL, "cmin": 0}, height=90 * len(layers) + 120)
    return figure


def layer_head_grid(frame: pd.DataFrame, value: str, title: Optional[str] = None, diverging: bool = False) -> go.Figure:
    """A layer x head heatmap of one per-head statistic (importance, entropy, attention to [CLS]...).

    Args:
        frame: rows with ``layer``, ``head`` and ``value`` columns (e.g. from ``head_statistics`` or
            ``head_importance``).
        value: the column to show.
    """
    if value not in frame.columns:
        raise UserInputError(f"no column {value!r}; columns: {', '.join(frame.columns)}")
    grid = frame.pivot(index="layer", columns="head", values=value).sort_index()
    figure = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[f"H{h}" for h in grid.columns],
                                  y=[f"L{layer}" for layer in grid.index],
                                  colorscale=DIVERGING if diverging else SEQUENTIAL, zmid=0 if diverging else None,
                                  texttemplate="%{z:.2f}",
                                  hovertemplate=f"%{{y}} %{{x}}<br>{value} %{{z:.4g}}<extra></extra>"))
    figure.update_layout(title=title or value, xaxis_title="head", yaxis_title="layer", yaxis_autorange="reversed")
    return figure


def rollout_figure(rollout: np.ndarray, tokens: Sequence[str], title: str = "Attention rollout") -> go.Figure:
    """Rollout (or flow) as a heatmap: [T, T], or [n_layers, T, T] with a slider over layers."""
    rollout = np.asarray(rollout)
    if rollout.ndim == 2:
        return attention_heatmap(rollout, tokens, title=title)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    figure = go.Figure([go.Heatmap(z=rollout[layer], x=labels, y=labels, colorscale=SEQUENTIAL, zmin=0,
                                   visible=layer == rollout.shape[0] - 1) for layer in range(rollout.shape[0])])
    steps = [{"method": "update", "label": f"after layer {layer}",
              "args": [{"visible": [i == layer for i in range(rollout.shape[0])]}]} for layer in range(rollout.shape[0])]
    figure.update_layout(title=title, yaxis_autorange="reversed",
                         sliders=[{"active": rollout.shape[0] - 1, "steps": steps}])
    return figure


def curves_figure(curves: pd.DataFrame, x: str = "fraction", ys: Sequence[str] = ("deletion", "insertion"),
                  title: str = "Deletion and insertion curves") -> go.Figure:
    """Mean curve per method (with the per-example spread as a band) for deletion/insertion or ERASER tables.

    Args:
        curves: rows with ``method``, ``x`` and the ``ys`` columns (``deletion_insertion`` or ``eraser`` output;
            for ERASER use ``x="k", ys=("comprehensiveness", "sufficiency")``).
    """
    figure = go.Figure()
    for y in ys:
        if y not in curves.columns:
            raise UserInputError(f"no column {y!r} in the curves table")
        stats = curves.groupby(["method", x])[y].agg(["mean", "std"]).reset_index()
        for method, group in stats.groupby("method", sort=False):
            figure.add_trace(go.Scatter(x=group[x], y=group["mean"], mode="lines+markers", name=f"{method} {y}",
                                        error_y={"type": "data", "array": group["std"].fillna(0), "visible": True}))
    figure.update_layout(title=title, xaxis_title=x, yaxis_title="target value")
    return figure


def agreement_figure(matrix: pd.DataFrame, metric: str = "kendall_tau") -> go.Figure:
    """Symmetric method x method heatmap of mean agreement (output of ``agreement_matrix``)."""
    part = matrix[matrix["metric"] == metric]
    methods = list(dict.fromkeys(list(part["method_a"]) + list(part["method_b"])))
    grid = np.eye(len(methods))
    for _, row in part.iterrows():
        i, j = methods.index(row["method_a"]), methods.index(row["method_b"])
        grid[i, j] = grid[j, i] = row["mean"]
    figure = go.Figure(go.Heatmap(z=grid, x=methods, y=methods, colorscale=DIVERGING, zmid=0, zmin=-1, zmax=1,
                                  texttemplate="%{z:.2f}"))
    figure.update_layout(title=f"Agreement between methods ({metric})")
    return figure


def randomization_figure(table: pd.DataFrame, column: str = "spearman_abs") -> go.Figure:
    """Cascading-randomization curve: mean rank correlation with the trained model's attributions per stage."""
    stats = table.groupby(["method", "n_randomized", "stage"], sort=False)[column].agg(["mean", "std"]).reset_index()
    figure = go.Figure()
    for method, group in stats.groupby("method", sort=False):
        group = group.sort_values("n_randomized")
        figure.add_trace(go.Scatter(x=group["stage"], y=group["mean"], mode="lines+markers", name=method,
                                    error_y={"type": "data", "array": group["std"].fillna(0), "visible": True}))
    figure.update_layout(title="Model-parameter randomization (Adebayo et al., 2018)", xaxis_title="randomized up to",
                         yaxis_title=column, yaxis_range=[-1, 1.05])
    return figure
