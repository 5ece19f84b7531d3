"""Attribution: method picker, token heatmaps, faithfulness (ERASER) and method-agreement figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pandas as pd
import streamlit as st

from ui import common, links
from workbench import artifacts, catalog
from workbench.figures import DIVERGING
from workbench.names import method_name

DEFAULT_TEXT = "The film was not good, but the acting was wonderful."
DEFAULT_METHODS = ["integrated_gradients", "saliency", "attention"]
PAIR_DEFAULTS = ("A man is playing a guitar on stage.", "A person is making music.")
SLOW_METHODS = ("lime", "kernel_shap", "gradient_shap")


IG_TOLERANCE = 0.05  # |convergence delta| above this: the IG path integral is not converged (more steps)


def _entries() -> dict[str, catalog.ModelEntry]:
    """Fine-tuned task models first (their predicted class is explained), then the base encoders; by name."""
    return {e.name: e for e in catalog.finetuned(common.root()) + catalog.encoders(common.root(), common.opened_models())}


def _attribute(spec: str, text: str, methods: tuple[str, ...], baseline: str, n_steps: int,
               target: Optional[str] = None, text_pair: Optional[str] = None) -> pd.DataFrame:
    return common.attribution_frame(spec, text, methods, baseline, n_steps, common.weights_stamp(spec),
                                    target=target, text_pair=text_pair)


@st.cache_data(show_spinner=False, max_entries=32)
def _class_probabilities(spec: str, text: str, text_pair: Optional[str], stamp: float) -> Optional[dict[str, float]]:
    """A fine-tuned classifier's probability of each class on one input (None for other heads)."""
    import torch

    subject = common.subject(spec)
    labels = list(getattr(subject.task, "labels", ()) or ())
    if subject.task_model is None or not labels:
        return None
    with torch.no_grad():
        logits = getattr(subject.forward(subject.tokenize([text], None if text_pair is None else [text_pair])),
                         "logits", None)
    if logits is None or logits.dim() != 2 or logits.shape[-1] != len(labels):
        return None
    probs = torch.softmax(logits.float(), -1)[0].tolist()
    return dict(sorted(zip(labels, probs), key=lambda item: -item[1]))


def _class_target(spec: str, text: str, text_pair: Optional[str]) -> Optional[str]:
    """The class to explain, chosen on the page: the model's prediction by default, with its probability."""
    probs = _class_probabilities(spec, text, text_pair, common.weights_stamp(spec))
    if not probs:
        return None
    options: list[str] = list(probs)
    shown = {label: f"{label} (p = {p:.2f}){' — the prediction' if i == 0 else ''}"
             for i, (label, p) in enumerate(probs.items())}
    chosen = st.selectbox("Explain the class", options, index=0, key="attr_class",
                          format_func=lambda label: shown[label],
                          help="The model's prediction by default; another class shows what speaks for it.")
    st.caption(f"Explaining {shown[chosen]}.")
    return None if chosen == options[0] else f"class={chosen}"


@st.cache_data(show_spinner=False, max_entries=16)
def _faithfulness(spec: str, text: str, methods: tuple[str, ...], baseline: str, n_steps: int,
                  stamp: float, target: Optional[str] = None, text_pair: Optional[str] = None) -> pd.DataFrame:
    from workbench.attribution import Attribution
    from workbench.faithfulness import aopc, eraser

    attribution = Attribution(_attribute(spec, text, methods, baseline, n_steps, target, text_pair))
    table = eraser(common.subject(spec), [text], attribution, target=target, ks=(10, 20, 50), example_ids=["input"],
                   text_pairs=None if text_pair is None else [text_pair])
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
                               y=[method_name(m) for m in normalised.index], colorscale=DIVERGING, zmid=0,
                               zmin=-1, zmax=1, colorbar=dict(title="for (red) / against (blue)"),
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

    entries = _entries()
    default = catalog.default_finetuned([e for e in entries.values() if e.task]) or catalog.default_encoder(
        list(entries.values()))
    names = list(entries)
    name = links.linked_choice("selectbox", "Model", names, key="attr_model",
                                params=lambda n: {"model": entries[n].key},
                                index=names.index(default.name) if default is not None else 0)
    entry = entries[name]
    task = entry.task
    examples = common.dataset_examples(task, max_chars=600)  # a fine-tuned model: examples of its own task only
    source = common.input_source("attr_source", bool(examples))
    segments = common.pair_labels(task)
    text_pair: Optional[str] = None
    if source == "Dataset example" and examples:
        picked = examples[links.linked_choice("selectbox", f"Example ({task})" if task else "Example",
                                                list(examples), key="attr_example", params=common.example_param)]
        text, text_pair = picked.text, picked.text_pair if (segments or task is None) else None
        first, second = segments or ("Text", "Second segment")
        st.caption(f"**{first}:** {text}" + (f"  \n**{second}:** {text_pair}" if text_pair else ""))
    else:
        if source == "Dataset example":
            common.missing(f"predictions table of {task}", "finetune")
        first, second = segments or ("Text", "")
        text = st.text_area(first, DEFAULT_TEXT if not segments else PAIR_DEFAULTS[0], key="attr_text", height=80)
        if segments:
            text_pair = st.text_area(second, PAIR_DEFAULTS[1], key="attr_text_pair", height=60)
    methods = st.multiselect("Methods", list(METHODS), default=[m for m in DEFAULT_METHODS if m in METHODS],
                             key="attr_methods", format_func=method_name,
                             help="Captum methods and attention-based scores on one scale")
    c1, c2 = st.columns(2)
    baseline = c1.selectbox("Baseline", list(BASELINES), key="attr_baseline")
    n_steps = c2.slider("IG steps", 8, 128, 32, step=8, key="attr_steps")
    if any(m in SLOW_METHODS for m in methods):
        st.caption("Sampling methods (LIME, KernelSHAP, GradientSHAP) take a few seconds more.")
    if not methods:
        st.error("Choose at least one method.")
        return
    spec = entry.spec
    with common.friendly_errors("attribution"):
        text = common.check_text(text)
        if segments:
            text_pair = common.check_text(text_pair, segments[1].lower())
        common.check_length(spec, text, text_pair)
        common.model_caption(entry.name, spec)
        target = _class_target(spec, text, text_pair) if task else _decoder_target(spec)
        with st.spinner(f"Attributing with {len(methods)} method(s)…"):
            frame = _attribute(spec, text, tuple(methods), baseline, n_steps, target, text_pair)
        from workbench.attribution import Attribution

        attribution = Attribution(frame)
        explained = ", ".join(sorted(frame["target"].astype(str).unique()))
        note = ("" if task else
                " (a decoder: what it says next, read through its own LM head; a token is explained only by itself "
                "and earlier tokens)" if target is not None else
                " (a plain encoder has no prediction: the norm of the [CLS] state is explained)")
        st.caption(f"{name}. Explained target: {explained}" + note + ". Red: speaks for the target; blue: against it.")
        for example in attribution.example_ids:  # generate=N: one row per generated token
            one = frame[frame["example_id"] == example]
            if len(attribution.example_ids) > 1:
                st.caption(f"Generated token {example.rpartition('#')[2]}: {one['target'].iloc[0]}")
            common.plot(_heatmap(Attribution(one).word_scores()), key=f"attr_heatmap_{example}")
        deltas = frame.dropna(subset=["delta"]).drop_duplicates(["method"])[["method", "delta"]]
        if not deltas.empty:
            st.caption("IG convergence delta: " + ", ".join(f"{method_name(r.method)} {r.delta:+.2e}"
                                                            for r in deltas.itertuples()))
            worst = deltas.loc[deltas["delta"].abs().idxmax()]
            if abs(worst["delta"]) > IG_TOLERANCE:
                st.warning(f"{method_name(worst['method'])} has not converged: convergence delta {worst['delta']:+.3f} "
                           f"(|delta| > {IG_TOLERANCE}; Sundararajan et al., 2017): the scores do not add up to the "
                           "output's change from the baseline. Raise the IG steps.")
        words = attribution.word_scores()
        with st.expander("Scores table"):
            st.dataframe(words, hide_index=True)
        if len(methods) >= 2:
            from workbench.faithfulness import rank_agreement

            pairs = [rank_agreement(attribution, a, b, k=3) for i, a in enumerate(methods) for b in methods[i + 1:]]
            agreement = pd.concat(pairs, ignore_index=True)
            st.subheader("Agreement between methods")
            shown = agreement[["method_a", "method_b", "kendall_tau", "topk_overlap", "k"]].copy()
            shown[["method_a", "method_b"]] = shown[["method_a", "method_b"]].map(method_name)
            common.table(shown, key="attr_agreement")
        if st.checkbox("Faithfulness (ERASER comprehensiveness / sufficiency)", key="attr_faith"):
            with st.spinner("Erasing tokens and re-running the model…"):
                faith = _faithfulness(spec, text, tuple(methods), baseline, n_steps, common.weights_stamp(spec),
                                      target, text_pair)
            import plotly.express as px

            value_columns = [c for c in faith.columns if c in ("comprehensiveness", "sufficiency")]
            melted = faith.melt(id_vars=[c for c in faith.columns if c not in value_columns], value_vars=value_columns,
                                var_name="measure", value_name="AOPC")
            melted["method"] = melted["method"].map(method_name)
            fig = px.bar(melted, x="method", y="AOPC", color="measure", barmode="group",
                         title="ERASER AOPC (DeYoung et al., 2020): comprehensiveness high and sufficiency low is better")
            common.plot(fig, key="attr_faith_fig")
            st.dataframe(faith, hide_index=True)


render()
