"""Attribution: method picker, token heatmaps, faithfulness (ERASER) and method-agreement figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pandas as pd
import streamlit as st

from ui import common
from workbench import artifacts

DEFAULT_TEXT = "The film was not good, but the acting was wonderful."
DEFAULT_METHODS = ["integrated_gradients", "saliency", "attention"]
SLOW_METHODS = ("lime", "kernel_shap", "gradient_shap")


def _attribution_choices() -> dict[str, str]:
    """Fine-tuned task models first (their predicted class is explained), then the base encoders."""
    choices = {}
    for run in artifacts.find_finetune_runs(common.root()):
        if (run.path / "model" / "config.json").is_file() or (run.path / "model" / "task_model.json").is_file():
            note = f" ({run.data_note})" if run.data_note else ""
            choices[f"Fine-tuned: {run.label}{note}"] = str(run.path)
    return choices | common.model_choices()


def _link_params(choices: dict[str, str]):
    """Link parameter of a model choice: ``model=<encoder>``, or ``model=<encoder>/<task>`` for a fine-tuned run
    (its directory is ``finetune/<encoder>/<task>``)."""
    def params(name: str) -> dict[str, str]:
        if name.startswith("Fine-tuned: "):
            path = Path(choices[name])
            return {"model": f"{path.parent.name}/{path.name}"}
        return {"model": common.model_param(name, choices)}

    return params


def _attribute(spec: str, text: str, methods: tuple[str, ...], baseline: str, n_steps: int,
               target: Optional[str] = None) -> pd.DataFrame:
    return common.attribution_frame(spec, text, methods, baseline, n_steps, common.weights_stamp(spec),
                                    target=target)


@st.cache_data(show_spinner=False, max_entries=16)
def _faithfulness(spec: str, text: str, methods: tuple[str, ...], baseline: str, n_steps: int,
                  stamp: float, target: Optional[str] = None) -> pd.DataFrame:
    from workbench.attribution import Attribution
    from workbench.faithfulness import aopc, eraser

    attribution = Attribution(_attribute(spec, text, methods, baseline, n_steps, target))
    table = eraser(common.subject(spec), [text], attribution, target=target, ks=(10, 20, 50), example_ids=["input"])
    return aopc(table)


def _decoder_target(spec: str) -> Optional[str]:
    """For a decoder (a causal LM with its head), the target to explain, chosen on the page; None otherwise."""
    if not common.subject(spec).causal:
        return None
    from workbench.lm import language_model

    if language_model(common.subject(spec)) is None:
        return None
    return st.text_input("Target (decoder)", "next", key="attr_target",
                         help="next (the predicted next token's logit), next=TOKEN, logitdiff=A,B, "
                              "continuation=TEXT (its log-probability), generate=N (one row per generated token)")


def _heatmap(words: pd.DataFrame) -> Any:
    import plotly.graph_objects as go

    pivot = words.pivot_table(index="method", columns="word_index", values="score", aggfunc="sum")
    labels = words.drop_duplicates("word_index").set_index("word_index")["word"].reindex(pivot.columns)
    scale = pivot.abs().max(axis=1).replace(0, 1)
    normalised = pivot.div(scale, axis=0)  # each method on [-1, 1]: methods have different units
    fig = go.Figure(go.Heatmap(z=normalised.to_numpy(), x=[f"{w} ({i})" for i, w in labels.items()],
                               y=list(normalised.index), colorscale="RdBu", zmid=0, zmin=-1, zmax=1,
                               customdata=pivot.to_numpy(), hovertemplate="%{y}<br>%{x}<br>raw %{customdata:.4g}<extra></extra>"))
    fig.update_layout(title="Word attributions (each method scaled by its largest |score|)", height=120 + 40 * len(pivot),
                      xaxis=dict(type="category", tickangle=-45), margin=dict(t=50, b=10))
    return fig


@st.cache_data(show_spinner=False, max_entries=8)
def _stored(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_parquet(Path(path) / "attributions.parquet")


def _precomputed() -> None:
    """Attribution tables written by ``workbench attribute``: per-example heatmaps and method agreement."""
    runs = artifacts.find_attribution_runs(common.root())
    if not runs:
        common.missing("precomputed attribution table (attributions.parquet)", "attribute")
        return
    labels = [str(p.relative_to(common.root())) for p in runs]
    chosen = runs[labels.index(st.selectbox("Attribution run", labels, key="attr_run"))]
    from workbench.attribution import Attribution
    from workbench.figures import agreement_figure, token_heatmap

    attribution = Attribution(_stored(str(chosen), common.file_mtime(chosen / "attributions.parquet")))
    example = st.selectbox("Example", attribution.example_ids, key="attr_stored_example")
    common.plot(token_heatmap(attribution, example), key="attr_stored_heatmap")
    methods = list(dict.fromkeys(attribution.frame["method"]))
    if len(methods) >= 2:
        from workbench.faithfulness import agreement_matrix

        matrix = agreement_matrix(attribution, methods)
        common.plot(agreement_figure(matrix), key="attr_stored_agreement")
        st.dataframe(matrix, hide_index=True)


def render() -> None:
    st.title("Attribution")
    common.page_header()
    common.model_imports()  # before any import of transformers: one thread at a time
    if st.radio("Source", ["Compute now", "Precomputed runs"], horizontal=True, key="attr_mode") == "Precomputed runs":
        with common.friendly_errors("precomputed attributions"):
            _precomputed()
        return
    from workbench.attribution import BASELINES, METHODS

    choices = _attribution_choices()
    examples = common.example_texts(max_chars=600)
    name = common.linked_choice("selectbox", "Model", list(choices), key="attr_model", params=_link_params(choices))
    source = common.input_source("attr_source", bool(examples))
    if source == "Dataset example" and examples:
        text = examples[common.linked_choice("selectbox", "Example", list(examples), key="attr_example",
                                              params=common.example_param)]
        st.caption(text)
    else:
        text = st.text_area("Text", DEFAULT_TEXT, key="attr_text", height=80)
    methods = st.multiselect("Methods", list(METHODS), default=[m for m in DEFAULT_METHODS if m in METHODS],
                             key="attr_methods", help="Captum methods and attention-based scores on one scale")
    c1, c2 = st.columns(2)
    baseline = c1.selectbox("Baseline", list(BASELINES), key="attr_baseline")
    n_steps = c2.slider("IG steps", 8, 128, 32, step=8, key="attr_steps")
    if any(m in SLOW_METHODS for m in methods):
        st.caption("Sampling methods (LIME, KernelSHAP, GradientSHAP) take a few seconds more.")
    if not methods:
        st.error("Choose at least one method.")
        return
    with common.friendly_errors("attribution"):
        text = common.check_text(text)
        common.check_length(choices[name], text)
        target = None if name.startswith("Fine-tuned") else _decoder_target(choices[name])
        with st.spinner(f"Attributing with {len(methods)} method(s)…"):
            frame = _attribute(choices[name], text, tuple(methods), baseline, n_steps, target)
        from workbench.attribution import Attribution

        attribution = Attribution(frame)
        explained = ", ".join(sorted(frame["target"].astype(str).unique()))
        note = ("" if name.startswith("Fine-tuned") else
                " (a decoder: what it says next, read through its own LM head; a token is explained only by itself "
                "and earlier tokens)" if target is not None else
                " (a plain encoder has no prediction: the norm of the [CLS] state is explained)")
        st.caption(f"Explained target: {explained}" + note)
        for example in attribution.example_ids:  # generate=N: one row per generated token
            one = frame[frame["example_id"] == example]
            if len(attribution.example_ids) > 1:
                st.caption(f"Generated token {example.rpartition('#')[2]}: {one['target'].iloc[0]}")
            common.plot(_heatmap(Attribution(one).word_scores()), key=f"attr_heatmap_{example}")
        words = attribution.word_scores()
        deltas = frame.dropna(subset=["delta"]).drop_duplicates(["method"])[["method", "delta"]]
        if not deltas.empty:
            st.caption("IG convergence delta: " + ", ".join(f"{r.method} {r.delta:+.2e}" for r in deltas.itertuples()))
        with st.expander("Scores table"):
            st.dataframe(words, hide_index=True)
        if len(methods) >= 2:
            from workbench.faithfulness import rank_agreement

            pairs = [rank_agreement(attribution, a, b, k=3) for i, a in enumerate(methods) for b in methods[i + 1:]]
            agreement = pd.concat(pairs, ignore_index=True)
            st.subheader("Agreement between methods")
            st.dataframe(agreement[["method_a", "method_b", "kendall_tau", "topk_overlap", "k"]], hide_index=True)
        if st.checkbox("Faithfulness (ERASER comprehensiveness / sufficiency)", key="attr_faith"):
            with st.spinner("Erasing tokens and re-running the model…"):
                faith = _faithfulness(choices[name], text, tuple(methods), baseline, n_steps,
                                      common.weights_stamp(choices[name]), target)
            import plotly.express as px

            value_columns = [c for c in faith.columns if c in ("comprehensiveness", "sufficiency")]
            melted = faith.melt(id_vars=[c for c in faith.columns if c not in value_columns], value_vars=value_columns,
                                var_name="measure", value_name="AOPC")
            fig = px.bar(melted, x="method", y="AOPC", color="measure", barmode="group",
                         title="ERASER AOPC (DeYoung et al., 2020): comprehensiveness high and sufficiency low is better")
            common.plot(fig, key="attr_faith_fig")
            st.dataframe(faith, hide_index=True)


render()
