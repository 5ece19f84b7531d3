"""Plotly figure builders shared by the app and the reports; each takes analysis results and returns a Figure.

Diverging scores (attributions) use a red-blue scale centred on 0; probabilities (attention) a sequential
scale from 0. Figures carry their numbers in hover text, so nothing shown is only a colour.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only: the figures need no torch
    from workbench.attribution import Attribution

DIVERGING = "RdBu_r"
SEQUENTIAL = "Blues"


def token_heatmap(attribution: Attribution, example_id: str, methods: Optional[Sequence[str]] = None,
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


# ---------------------------------------------------------------------------------------------------------
# Training, error analysis, comparison and probing figures (the app's pages and the report)


def figure_training_curve(metrics: pd.DataFrame, unigram_ppl: Optional[float] = None) -> go.Figure:
    """Training loss (left axis) and validation perplexity (right axis) against step, from metrics.csv."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=metrics["step"], y=metrics["loss"], name="train loss", mode="lines"))
    if "val_ppl" in metrics and metrics["val_ppl"].notna().any():
        valid = metrics[metrics["val_ppl"].notna()]
        fig.add_trace(go.Scatter(x=valid["step"], y=valid["val_ppl"], name="validation perplexity",
                                 mode="lines+markers"), secondary_y=True)
        unigram = unigram_ppl if unigram_ppl is not None else (
            valid["val_unigram_ppl"].dropna().iloc[-1] if "val_unigram_ppl" in valid and valid["val_unigram_ppl"].notna().any() else None)
        if unigram is not None:
            fig.add_trace(go.Scatter(x=[metrics["step"].min(), metrics["step"].max()], y=[unigram, unigram],
                                     name="unigram perplexity", mode="lines", line=dict(dash="dash")),
                          secondary_y=True)
    fig.update_layout(title="Training curve", xaxis_title="step", height=380, margin=dict(t=50, b=40))
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="perplexity", secondary_y=True, type="log")
    return fig


def figure_reliability(bins: pd.DataFrame, ece: float) -> go.Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal (Guo et al., 2017)."""
    filled = bins[bins["n"] > 0]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=(filled["lower"] + filled["upper"]) / 2, y=filled["accuracy"], width=filled["upper"] - filled["lower"],
                         name="accuracy", customdata=filled[["n", "confidence"]],
                         hovertemplate="accuracy %{y:.3f}<br>n %{customdata[0]}<br>confidence %{customdata[1]:.3f}"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(dash="dash")))
    fig.update_layout(title=f"Reliability (ECE {ece:.3f})", xaxis_title="confidence", yaxis_title="accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1], height=360, margin=dict(t=50, b=40))
    return fig


def figure_slices(slices: pd.DataFrame, overall: float, feature: Optional[str] = None) -> go.Figure:
    """Metric per slice with bootstrap error bars: one feature, or every feature in its own panel.

    Panels wrap two to a row with room between them, so facet titles never overlap (in print either);
    a panel's title is the feature's name without its ``meta_`` prefix.
    """
    data = slices if feature is None else slices[slices["feature"] == feature]
    data = data.assign(err_plus=data["ci_high"] - data["value"], err_minus=data["value"] - data["ci_low"],
                       panel=data["feature"].astype(str).str.removeprefix("meta_"))
    n_panels = data["panel"].nunique() if feature is None else 1
    wrap = 2 if n_panels > 1 else None
    rows = -(-n_panels // 2) if wrap else 1
    fig = px.bar(data, x="slice", y="value", error_y="err_plus", error_y_minus="err_minus", color="category",
                 facet_col="panel" if wrap else None, facet_col_wrap=wrap or 0,
                 facet_row_spacing=min(0.5 / max(rows, 1), 0.12) if wrap else None, facet_col_spacing=0.08 if wrap else None,
                 hover_data=["n", "coverage", "ci_low", "ci_high"])
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    fig.add_hline(y=overall, line_dash="dash", annotation_text="overall")
    fig.update_xaxes(matches=None, type="category", title_text="", showticklabels=True, tickangle=-30)
    fig.update_yaxes(range=[0, 1.05], title_text="")
    fig.update_layout(title="Metric per slice (95% bootstrap CI)", height=160 + 250 * rows, margin=dict(t=70, b=40),
                      legend=dict(orientation="h", y=-0.08))
    return fig


def figure_confusion(matrix: pd.DataFrame) -> go.Figure:
    """Heatmap of a confusion matrix (rows gold, columns predicted)."""
    fig = px.imshow(matrix.to_numpy(), x=[str(c) for c in matrix.columns], y=[str(i) for i in matrix.index],
                    text_auto=True, color_continuous_scale="Blues", labels=dict(x="predicted", y="gold", color="count"))
    fig.update_layout(title="Confusion matrix", height=360, margin=dict(t=50, b=40))
    return fig


def figure_cohorts(nodes: pd.DataFrame) -> go.Figure:
    """The error-cohort tree as a treemap: area = coverage, colour = error rate (Error Analysis style)."""
    ids = [str(n) for n in nodes["node"]]
    parents = ["" if p < 0 else str(p) for p in nodes["parent"]]
    labels = [f"{c}<br>err {e:.0%}, n={n}" for c, e, n in zip(nodes["condition"], nodes["error_rate"], nodes["n"])]
    fig = go.Figure(go.Treemap(ids=ids, parents=parents, labels=[html.escape(l).replace("&lt;br&gt;", "<br>") for l in labels],
                               values=nodes["n"], branchvalues="total",
                               marker=dict(colors=nodes["error_rate"], colorscale="Reds", cmin=0, cmax=1,
                                           colorbar=dict(title="error rate"))))
    fig.update_layout(title="Error cohorts (decision tree on features and internal signals)", height=420,
                      margin=dict(t=50, b=10, l=10, r=10))
    return fig


def figure_cka(cka: pd.DataFrame, name_a: str, name_b: str) -> go.Figure:
    """Heatmap of layer-wise CKA (rows: layers of A, columns: layers of B; 0 = embeddings)."""
    grid = cka.pivot(index="layer_a", columns="layer_b", values="cka")
    fig = px.imshow(grid.to_numpy(), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index], zmin=0, zmax=1,
                    text_auto=".2f", color_continuous_scale="Viridis",
                    labels=dict(x=f"{name_b} layer", y=f"{name_a} layer", color="CKA"))
    fig.update_layout(title="Linear CKA between layers (Kornblith et al., 2019)", height=420, margin=dict(t=50))
    return fig


def figure_probe_overlay(overlay: pd.DataFrame) -> go.Figure:
    """Probe accuracy against relative depth, one line per (model, control)."""
    data = overlay.assign(series=overlay["model"] + " / " + overlay["control"])
    fig = px.line(data, x="depth", y="mean", color="series", error_y="std" if data["std"].notna().any() else None,
                  markers=True, hover_data=["layer", "n_seeds"])
    fig.update_layout(title=f"Probe curves ({data['metric'].iloc[0]})", xaxis_title="relative depth (layer / last layer)",
                      yaxis_title=str(data["metric"].iloc[0]), height=380, margin=dict(t=50))
    return fig


def figure_outcomes(counts: pd.Series, name_a: str, name_b: str) -> go.Figure:
    """Bar chart of paired outcomes (both right, both wrong, A wins, B wins)."""
    labels = [str(i).replace("A wins", f"{name_a} wins").replace("B wins", f"{name_b} wins") for i in counts.index]
    fig = go.Figure(go.Bar(x=labels, y=counts.to_numpy()))
    fig.update_layout(title="Per-example outcomes", height=320, margin=dict(t=50, b=40))
    return fig


def faithfulness_figure(table: pd.DataFrame) -> go.Figure:
    """Each faithfulness/plausibility metric per method, with its 95% bootstrap CI (``faithfulness_summary``).

    Comprehensiveness (higher = more faithful) and sufficiency (lower = more faithful) are ERASER's AOPC
    measures (DeYoung et al., 2020); deletion (lower) and insertion (higher) AUC follow Petsiuk et al. (2018).
    """
    data = table.assign(err_plus=table["ci_high"] - table["mean"], err_minus=table["mean"] - table["ci_low"])
    fig = px.bar(data, x="metric", y="mean", color="method", barmode="group", error_y="err_plus",
                 error_y_minus="err_minus", hover_data=["n", "ci_low", "ci_high"])
    fig.update_layout(title="Faithfulness per method (95% bootstrap CI)", xaxis_title="", yaxis_title="mean",
                      height=360, margin=dict(t=50, b=40), legend=dict(orientation="h", y=-0.15))
    return fig


def feature_histogram(histogram: pd.DataFrame, feature: int) -> go.Figure:
    """Histogram of one SAE latent's non-zero activations (``histograms.parquet`` rows of that feature)."""
    rows = histogram[histogram["feature"] == feature]
    fig = go.Figure(go.Bar(x=(rows["left"] + rows["right"]) / 2, y=rows["count"], width=rows["right"] - rows["left"],
                           hovertemplate="activation %{x:.3f}<br>tokens %{y}<extra></extra>"))
    fig.update_layout(title=f"Latent {feature}: activations when active", xaxis_title="activation",
                      yaxis_title="tokens", height=300, margin=dict(t=50, b=40))
    return fig


def patching_heatmap(frame: pd.DataFrame, title: str = "Activation patching") -> go.Figure:
    """Layer x head (or layer x position) heatmap of normalised patching effects (0 corrupted, 1 clean)."""
    column = "head" if "head" in frame.columns else "position"
    grid = frame.pivot(index="layer", columns=column, values="normalized").sort_index()
    figure = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[f"{column[0].upper()}{c}" for c in grid.columns],
                                  y=[f"L{layer}" for layer in grid.index], colorscale=DIVERGING, zmid=0,
                                  texttemplate="%{z:.2f}",
                                  hovertemplate="%{y} %{x}<br>normalised effect %{z:.3f}<extra></extra>"))
    figure.update_layout(title=title, xaxis_title=column, yaxis_title="layer", yaxis_autorange="reversed", height=340)
    return figure


def lens_figure(layers: pd.DataFrame) -> go.Figure:
    """KL(final || lens) per layer for the logit lens and (when present) the tuned lens."""
    figure = go.Figure()
    for column, name in (("kl_logit_lens", "logit lens"), ("kl_tuned_lens", "tuned lens")):
        if column in layers and layers[column].notna().any():
            figure.add_trace(go.Scatter(x=layers["layer"], y=layers[column], mode="lines+markers", name=name))
    figure.update_layout(title="KL to the final output per layer (0 = embeddings)", xaxis_title="layer",
                         yaxis_title="KL (nats)", height=320)
    return figure


def task_lens_figure(table: pd.DataFrame, example: int = 0) -> go.Figure:
    """Each class's probability when the task head reads layer k (0 = embeddings; the last = the model)."""
    rows = table[table["example"] == example].sort_values("layer")
    figure = go.Figure()
    for column in [c for c in rows.columns if c.startswith("p_")]:
        figure.add_trace(go.Scatter(x=rows["layer"], y=rows[column], mode="lines+markers", name=column[2:]))
    figure.update_layout(title="What the classifier would say at each layer", xaxis_title="layer",
                         yaxis_title="probability", yaxis_range=[0, 1], height=320)
    return figure


def _circuit_node(name: str, n_layers: int) -> tuple[str, float, float, str]:
    """(node, x, y, input) for an edge end: heads at 2l + 1 by head index, MLPs at 2l + 2, logits last."""
    if name == "embed":
        return name, 0.0, 0.0, ""
    if name == "logits":
        return name, 2.0 * n_layers + 1, 0.0, ""
    if name.startswith("MLP"):
        return name, 2.0 * int(name[3:]) + 2, -1.5, ""
    parts = name.split(".")  # L{l}.H{h}[.q|k|v], or L{l}.KV{g}.k|v (a grouped key/value head, drawn between)
    layer, head = int(parts[0][1:]), float(parts[1].lstrip("HKV")) + (0.5 if parts[1].startswith("KV") else 0.0)
    return f"{parts[0]}.{parts[1]}", 2.0 * layer + 1, head, parts[2] if len(parts) > 2 else ""


def circuit_graph(edges: pd.DataFrame, title: str = "Circuit", max_edges: int = 80) -> go.Figure:
    """A discovered circuit as a graph: nodes by depth (embeddings, each layer's heads then its MLP, the
    read-out), one line per edge in the circuit, its width the edge's |normalised score| and its colour the sign
    (red helps the clean behaviour, blue opposes it); hover gives the edge, the input it enters (q, k, v) and
    its score. Takes ``workbench circuit``'s ``edges.parquet`` (rows with ``in_circuit``; all rows if absent);
    a node-level ``nodes.parquet`` is drawn by :func:`node_circuit_grid`."""
    if "node" in edges and "upstream" not in edges:
        return node_circuit_grid(edges, title)
    if edges.empty:
        raise UserInputError("no edges to draw")
    kept = edges[edges["in_circuit"]] if "in_circuit" in edges else edges
    kept = kept.reindex(kept["normalized"].abs().sort_values(ascending=False).index).head(max_edges)
    layers = [int(n.split(".")[0][1:]) for n in pd.concat([edges["upstream"], edges["downstream"]])
              if n.startswith("L")] + [int(n[3:]) for n in edges["upstream"] if n.startswith("MLP")]
    n_layers = max(layers, default=-1) + 1
    top = float(kept["normalized"].abs().max()) or 1.0
    figure = go.Figure()
    nodes: dict[str, tuple[float, float]] = {}
    for row in kept.itertuples():
        up, x0, y0, _ = _circuit_node(str(row.upstream), n_layers)
        down, x1, y1, slot = _circuit_node(str(row.downstream), n_layers)
        nodes[up], nodes[down] = (x0, y0), (x1, y1)
        value = float(row.normalized)
        figure.add_trace(go.Scatter(
            x=[x0, (x0 + x1) / 2, x1], y=[y0, (y0 + y1) / 2, y1], mode="lines", showlegend=False,
            line=dict(width=1 + 7 * abs(value) / top, color="#d62728" if value >= 0 else "#1f77b4"),
            opacity=0.35 + 0.65 * abs(value) / top, hoverinfo="text",
            text=html.escape(f"{row.upstream} → {row.downstream}{' (' + slot + ')' if slot else ''}: "
                             f"normalised score {value:.3f}")))
    names = list(nodes)
    figure.add_trace(go.Scatter(x=[nodes[n][0] for n in names], y=[nodes[n][1] for n in names], mode="markers+text",
                                text=[html.escape(n) for n in names], textposition="top center", showlegend=False,
                                marker=dict(size=16, color="#444"), hovertemplate="%{text}<extra></extra>"))
    figure.update_layout(title=title, height=380, xaxis=dict(
        title="depth (embeddings, then each layer's heads and MLP, then the read-out)", showgrid=False,
        zeroline=False, showticklabels=False), yaxis=dict(title="head", showgrid=False, zeroline=False))
    return figure


def node_circuit_grid(nodes: pd.DataFrame, title: str = "Node circuit") -> go.Figure:
    """A node-level circuit on a layer x head grid: one row per layer (the embeddings below), one column per
    head plus the layer's MLP; colour is the node's normalised score (red helps the clean behaviour, blue
    opposes it) and the kept nodes are outlined. Takes ``workbench circuit``'s ``nodes.parquet`` (every node,
    with ``in_circuit``)."""
    if nodes.empty:
        raise UserInputError("no nodes to draw")
    n_layers = int(nodes["layer"].max()) + 1
    n_heads = int(nodes["head"].max()) + 1
    columns = [f"H{h}" for h in range(n_heads)] + ["MLP"]
    rows = ["embed"] + [f"L{layer}" for layer in range(n_layers)]
    grid = np.full((len(rows), len(columns)), np.nan)
    labels = np.full(grid.shape, "", dtype=object)
    kept_x, kept_y = [], []
    for row in nodes.itertuples():
        y = 0 if row.kind == "embed" else int(row.layer) + 1
        x = int(row.head) if row.kind == "head" else (len(columns) - 1 if row.kind == "mlp" else 0)
        grid[y, x] = float(row.normalized)
        labels[y, x] = f"{row.node}: normalised score {float(row.normalized):.3f}"
        if bool(getattr(row, "in_circuit", False)):
            kept_x.append(columns[x])
            kept_y.append(rows[y])
    top = float(np.nanmax(np.abs(grid))) or 1.0
    figure = go.Figure(go.Heatmap(z=grid, x=columns, y=rows, text=labels, hoverinfo="text", colorscale="RdBu",
                                  reversescale=True, zmin=-top, zmax=top, colorbar=dict(title="normalised")))
    figure.add_trace(go.Scatter(x=kept_x, y=kept_y, mode="markers", name="in the circuit",
                                marker=dict(symbol="square-open", size=26, line=dict(width=3), color="#222")))
    figure.update_layout(title=title, height=120 + 50 * len(rows), xaxis_title="head (and the layer's MLP)",
                         yaxis_title="layer (embeddings at the bottom)")
    return figure


def dla_figure(frame: pd.DataFrame, logit: float, title: str = "Direct logit attribution") -> go.Figure:
    """One bar per part of a read-out (``workbench.dla``: embeddings, each head, attention biases, each MLP, norm
    and read-out biases) in model order, and beside them the sum of the parts and the logit itself; the two grey
    bars are equal when the split is exact."""
    total = float(frame["value"].sum())
    names = list(frame["component"]) + ["sum of parts", "logit"]
    values = list(frame["value"].astype(float)) + [total, float(logit)]
    colours = ["#b2182b" if v > 0 else "#2166ac" for v in frame["value"]] + ["#636363", "#252525"]
    figure = go.Figure(go.Bar(x=names, y=values, marker_color=colours,
                              hovertemplate="%{x}<br>%{y:.5g}<extra></extra>"))
    figure.update_layout(title=title, xaxis_title="part", yaxis_title="contribution to the logit", height=380,
                         xaxis_tickangle=-45)
    return figure


def dynamics_figure(curves: pd.DataFrame, headline: Optional[pd.DataFrame] = None) -> go.Figure:
    """Training dynamics: one panel per headline curve (``workbench.dynamics.curves``), a line per run against
    training tokens (log axis; step 0 drawn at half the first snapshot's tokens), and a star where each curve
    has gone half of the way from its first to its final value (``headline``'s ``half_step``)."""
    if curves.empty:
        raise UserInputError("no dynamics to draw: run workbench dynamics first")
    labels = list(dict.fromkeys(curves["label"]))
    columns = 3
    rows = -(-len(labels) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=labels, horizontal_spacing=0.07,
                           vertical_spacing=0.12)
    positive = curves.loc[curves["tokens"] > 0, "tokens"]
    zero_at = float(positive.min()) / 2 if len(positive) else 1.0
    colours = px.colors.qualitative.Plotly
    runs = list(dict.fromkeys(curves["run"]))
    for i, label in enumerate(labels):
        row, col = i // columns + 1, i % columns + 1
        for r, run in enumerate(runs):
            part = curves[(curves["label"] == label) & (curves["run"] == run)].sort_values("step")
            if part.empty:
                continue
            x = part["tokens"].where(part["tokens"] > 0, zero_at)
            figure.add_trace(go.Scatter(
                x=x, y=part["value"], mode="lines+markers", name=run, legendgroup=run, showlegend=i == 0,
                line=dict(color=colours[r % len(colours)]), customdata=part[["step", "tokens"]].to_numpy(),
                hovertemplate=f"{run}<br>step %{{customdata[0]}}, %{{customdata[1]:,}} tokens<br>{label} %{{y:.4g}}"
                              "<extra></extra>"), row=row, col=col)
            if headline is not None:
                hit = headline[(headline["run"] == run) & (headline["label"] == label)]
                if len(hit) and pd.notna(hit["half_step"].iloc[0]):
                    at = part[part["step"] == int(hit["half_step"].iloc[0])]
                    figure.add_trace(go.Scatter(
                        x=at["tokens"].where(at["tokens"] > 0, zero_at), y=at["value"], mode="markers",
                        marker=dict(symbol="star", size=13, color=colours[r % len(colours)],
                                    line=dict(width=1, color="black")),
                        name=f"{run}: half way", legendgroup=run, showlegend=False,
                        hovertemplate=f"{run}: half of the change by step {int(hit['half_step'].iloc[0])}"
                                      "<extra></extra>"), row=row, col=col)
        figure.update_xaxes(type="log", title_text="training tokens" if row == rows else None, row=row, col=col)
    figure.update_layout(title="Training dynamics (stars: where each curve has made half of its change)",
                         height=260 * rows + 80)
    return figure
