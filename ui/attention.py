"""Attention explorer: any text or a dataset example; layer x head grid, one head, rollout and flow; two models."""
from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from atinuke.errors import UserInputError
from ui import common, links
from workbench import catalog

DEFAULT_TEXT = common.ATTENTION_DEFAULT_TEXT
FLOW_MAX_UNITS = 24  # attention flow solves one max-flow problem per token pair: keep it interactive
_maps = common.attention_maps  # cached in ui.common, where the app's warm-up fills it for the default view
causal_blank = common.causal_blank


@st.cache_data(show_spinner=False, max_entries=16)
def _flow(spec: str, text: str, words: bool, stamp: float) -> np.ndarray:
    from workbench.attention import attention_flow

    maps = _maps(spec, text, words, stamp)
    flow = attention_flow(np.nan_to_num(maps["pattern"]).mean(axis=1))
    return causal_blank(flow) if maps["causal"] else flow


def _heatmap(matrix: np.ndarray, labels: list[str], title: str) -> Any:
    import plotly.graph_objects as go

    # one scale for every panel (weights are in [0, 1]), so that side-by-side models compare by colour
    fig = go.Figure(go.Heatmap(z=matrix, x=_unique(labels), y=_unique(labels), colorscale="Blues", zmin=0, zmax=1,
                               hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=460, yaxis_autorange="reversed", margin=dict(t=50, l=10, r=10, b=10),
                      xaxis=dict(tickangle=-60, type="category", title="key (attended to)"),
                      yaxis=dict(type="category", title="query (attending)"))
    return fig


def _unique(labels: list[str]) -> list[str]:
    """Token labels made distinct (a category axis merges repeated ones): "the", "the·2", ..."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}·{seen[label]}")
    return out


def _grid(pattern: np.ndarray, title: str, labels: list[str]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n_layers, n_heads = pattern.shape[:2]
    fig = make_subplots(rows=n_layers, cols=n_heads, horizontal_spacing=0.005, vertical_spacing=0.01,
                        row_titles=[f"L{l}" for l in range(n_layers)], column_titles=[f"H{h}" for h in range(n_heads)])
    for layer in range(n_layers):
        for head in range(n_heads):
            fig.add_trace(go.Heatmap(z=pattern[layer, head], x=_unique(labels), y=_unique(labels), colorscale="Blues",
                                     zmin=0, zmax=1, showscale=layer == head == 0,
                                     hovertemplate=f"L{layer} H{head}<br>query %{{y}} → key %{{x}}: "
                                                   "%{z:.2f}<extra></extra>"),
                          row=layer + 1, col=head + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    fig.update_layout(title=f"{title} (rows: query, columns: key; hover for tokens)",
                      height=max(300, 70 * n_layers + 80), margin=dict(t=60, l=30, r=30, b=10))
    return fig


def render() -> None:
    st.title("Attention explorer")
    common.page_header()
    common.model_imports()  # before any import of transformers: one thread at a time
    choices = common.model_choices() | {e.name: e.spec for e in catalog.finetuned(common.root())}
    examples = common.example_texts(max_chars=400)
    source = common.input_source("attn_source", bool(examples))
    if source == "Dataset example" and examples:
        text = examples[links.linked_choice("selectbox", "Example", list(examples), key="attn_example",
                                              params=common.example_param)]
        st.caption(text)
    else:
        if source == "Dataset example":
            common.missing("predictions table to pick examples from", "finetune")
        text = st.text_area("Text", DEFAULT_TEXT, key="attn_text", max_chars=None, height=80)
    models = links.linked_choice("multiselect", "Models (side by side)", list(choices),
                                   default=common.default_models(choices),
                                   max_selections=3, key="attn_models",
                                   params=lambda n: {"model": common.model_param(n, choices)})
    c1, c2 = st.columns([2, 1])
    view = c1.radio("View", ["Layer × head grid", "Single head", "Rollout", "Flow"], horizontal=True, key="attn_view")
    words = c2.toggle("Aggregate to words", value=True, key="attn_words",
                      help="attention to a word sums its sub-tokens, from a word averages them (Clark et al., 2019)")
    if not models:
        st.error("Choose at least one model.")
        return
    for name in models:
        common.model_caption(name, choices[name])
    with common.friendly_errors("attention"):
        text = common.check_text(text)
        columns = st.columns(len(models))
        for column, name in zip(columns, models):
            with column, common.friendly_errors(name):
                st.subheader(name)
                common.check_length(choices[name], text)
                with st.spinner("Running the model…"):
                    maps = _maps(choices[name], text, words, common.weights_stamp(choices[name]))
                pattern, labels = maps["pattern"], maps["labels"]
                n_layers, n_heads = pattern.shape[:2]
                if maps["causal"]:
                    st.caption("A decoder: each position attends only to itself and earlier positions (the blank "
                               "upper triangle).")
                if view == "Layer × head grid":
                    common.plot(_grid(pattern, f"{n_layers} layers × {n_heads} heads", labels),
                                key=f"grid_{name}")
                elif view == "Single head":
                    layer = st.slider("Layer", 0, n_layers - 1, n_layers - 1, key=f"attn_layer_{name}")
                    head = st.slider("Head", 0, n_heads - 1, 0, key=f"attn_head_{name}")
                    common.plot(_heatmap(pattern[layer, head], labels, f"layer {layer}, head {head}"), key=f"chart_head_{name}")
                elif view == "Rollout":
                    from workbench.attention import attention_rollout

                    rollout = attention_rollout(np.nan_to_num(pattern).mean(axis=1))
                    if maps["causal"]:
                        rollout = causal_blank(rollout)
                    common.plot(_heatmap(rollout[-1], labels, "Attention rollout (Abnar & Zuidema, 2020)"),
                                 key=f"rollout_{name}")
                else:
                    if len(labels) > FLOW_MAX_UNITS:
                        raise UserInputError(f"Attention flow is limited to {FLOW_MAX_UNITS} units here ({len(labels)} "
                                             "given): shorten the text or aggregate to words.")
                    with st.spinner("Solving max-flow problems…"):
                        flow = _flow(choices[name], text, words, common.weights_stamp(choices[name]))
                    common.plot(_heatmap(flow, labels, "Attention flow (Abnar & Zuidema, 2020)"), key=f"flow_{name}")


render()
