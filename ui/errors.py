"""Error analysis per benchmark task: slices, cohorts tree, confusion, calibration, worst examples, drill-down."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import streamlit as st

from ui import common, links
from workbench import errors, slicing
from workbench.figures import figure_cohorts, figure_confusion, figure_reliability, figure_slices

SIGNAL_LIMIT = 300  # examples whose internal signals are computed on demand (the tree then sees these rows)


@st.cache_data(show_spinner=False, max_entries=16)
def _slices(path: str, mtime: float, n_bins: int, metric: str) -> pd.DataFrame:
    return errors.slice_metrics(common.read_predictions(path, mtime), n_bins=n_bins, metric=metric, n_boot=300)


@st.cache_data(show_spinner=False, max_entries=16)
def _signals(spec: str, path: str, mtime: float, limit: int, with_attribution: bool, stamp: float) -> pd.DataFrame:
    """Internal signals per example (attention entropy; IG concentration and delta), computed on demand."""
    table = common.read_predictions(path, mtime).head(limit)
    progress = st.progress(0.0, text="Computing internal signals per example…")

    def report(done: int, total: int) -> None:
        progress.progress(done / total, text=f"Computing internal signals… {done}/{total}")

    signals = errors.internal_signals(common.subject(spec), table, attribution=with_attribution, progress=report)
    progress.empty()
    return signals


@st.cache_data(show_spinner=False, max_entries=8)
def _feature_activations(spec: str, sae_run: str, path: str, mtime: float, limit: int, pool: str,
                         stamp: float, sae_stamp: float) -> np.ndarray:
    """[examples, width] SAE latent activations per example (pooled over its tokens), computed on demand."""
    from workbench.features.units import example_activations

    table = common.read_predictions(path, mtime).head(limit)
    sae, hook = common.sae(Path(sae_run))
    pairs = table["text_pair"].tolist() if "text_pair" in table else None
    progress = st.progress(0.0, text="Encoding the examples into SAE features…")

    def report(done: int, total: int) -> None:
        progress.progress(done / total, text=f"Encoding the examples into SAE features… {done}/{total}")

    activations = example_activations(common.subject(spec), sae, hook, table["text"].astype(str).tolist(),
                                      [p if isinstance(p, str) and p.strip() else None for p in pairs] if pairs else None,
                                      pool=pool, progress=report)
    progress.empty()
    return activations


def _model_spec_for(run_model: str) -> Optional[str]:
    """The base encoder behind a fine-tuning run's model name (MiniLM or a pretraining run), if present."""
    return common.encoder_spec(run_model)


def _feature_units(run: Any, table: pd.DataFrame, path: str, mtime: float) -> Optional[pd.DataFrame]:
    """The SAE-feature signals of the cohorts tab (None when the model has no SAE run or none is wanted)."""
    from workbench.features.units import feature_signals, separating_features

    spec = _model_spec_for(run.model)
    runs = common.sae_runs_for(run.model) if spec is not None else {}
    if not runs:
        st.caption(f"No SAE run for '{run.model}' (`make models` trains one): no dictionary features as signals.")
        return None
    c1, c2, c3, c4 = st.columns([1.2, 1, 1, 1])
    if not c1.checkbox("Add SAE features as signals", key="err_sae"):
        return None
    chosen = runs[c2.selectbox("SAE run", list(runs), key="err_sae_run")]
    pool = c3.selectbox("Pool over tokens", ["max", "mean", "last"], key="err_sae_pool")
    k = c4.slider("Latents", 1, 20, 5, key="err_sae_k")
    subset = table.head(SIGNAL_LIMIT)
    if subset["correct"].all() or not subset["correct"].any():
        return None
    weights = chosen / "sae" / "sae_weights.safetensors"
    activations = _feature_activations(spec or "", str(chosen), path, mtime, SIGNAL_LIMIT, pool,
                                       common.weights_stamp(spec or ""), common.file_mtime(weights))
    correct = subset["correct"].to_numpy(bool)
    top = separating_features(activations, ~correct, k=k)
    labels_path = chosen / "features.parquet"
    if labels_path.is_file():
        described = pd.read_parquet(labels_path)
        wanted = [c for c in ("feature", "top_tokens", "top_pos", "top_dep", "top_srl", "top_ner") if c in described]
        top = top.merge(described[wanted], on="feature", how="left")
    st.markdown(f"**Error-predictive latents** of `{chosen.name}` (AUROC of the pooled activation for the failed "
                "examples; 1 = fires exactly on the failures, 0 = exactly on the successes):")
    st.dataframe(top, hide_index=True)
    st.caption(f"Activations of {Path(spec or '').name or spec} at its SAE's hook, pooled ({pool}) over each "
               f"example's tokens, for the first {len(subset)} examples. The latents are chosen on the same examples "
               "the tree is fitted to: a cohort such as 'feature 123 active' is a hypothesis to check on held-out data.")
    return feature_signals(activations, subset["id"].tolist(), correct, k=k)


def _drill_down(run: Any, row: pd.Series) -> None:
    st.markdown(f"**{row['id']}** — gold `{row['gold']}`, predicted `{row['prediction']}` "
                f"(score {float(row['score']):.3f}, {'right' if row['correct'] else 'wrong'})")
    st.text(str(row["text"]) + (f"\n\n{row['text_pair']}" if isinstance(row.get("text_pair"), str) and row.get("text_pair") else ""))
    spec = _model_spec_for(run.model)
    if spec is None:
        st.info(f"The encoder of '{run.model}' is not under {common.root() / 'pretrain'}; no attention view.")
        return
    from workbench.attention import attention_maps, attention_rollout

    pair = row["text_pair"] if isinstance(row.get("text_pair"), str) and row.get("text_pair") else None
    maps = attention_maps(common.subject(spec), str(row["text"])[:2000], pair).to_words()
    rollout = attention_rollout(maps.head_mean())[-1]  # [units, units]
    import plotly.graph_objects as go

    first = 0  # the [CLS] row: what the sentence representation draws on
    fig = go.Figure(go.Bar(x=maps.tokens, y=rollout[first]))
    fig.update_layout(title="Attention rollout from [CLS] to each word (last layer)", height=300,
                      xaxis=dict(type="category", tickangle=-60), margin=dict(t=50, b=10))
    common.plot(fig, key="drill_rollout")
    from workbench.attribution import Attribution
    from workbench.figures import token_heatmap

    # The fine-tuned model explains its own prediction; without one, the encoder's [CLS] norm is explained.
    task_dir = run.path if (run.path / "model" / "config.json").is_file() else None
    explained = str(task_dir) if task_dir is not None else spec
    with st.spinner("Integrated gradients and saliency for this example…"):
        frame = common.attribution_frame(explained, str(row["text"])[:2000], ("integrated_gradients", "saliency"),
                                          "pad", 32, common.weights_stamp(explained), pair)
    target = ", ".join(sorted(frame["target"].astype(str).unique()))
    common.plot(token_heatmap(Attribution(frame), "input", title=f"Token attributions (target {target})"),
                 key="drill_attribution")


def render() -> None:
    st.title("Error analysis")
    common.page_header()
    runs = common.finetune_runs()
    if not runs:
        common.missing("fine-tuning run with predictions.parquet", "finetune")
        return
    by_label = {r.label: r for r in runs}
    run = by_label[links.linked_choice("selectbox", "Run (model / task)", list(by_label), key="err_run",
                                         params=lambda label: {"model": by_label[label].model,
                                                               "task": by_label[label].task})]
    with common.friendly_errors(run.label):
        table = common.predictions(run)
        path, mtime = str(run.predictions_path), common.file_mtime(run.predictions_path)
        accuracy = errors.bootstrap_ci(table["correct"].astype(float).to_numpy(), n_boot=300)
        provenance = ", ".join(sorted(table["provenance"].dropna().astype(str).unique())) if "provenance" in table else "?"
        cols = st.columns(3)
        cols[0].metric("Examples", len(table))
        cols[1].metric("Exact accuracy", f"{accuracy.estimate:.3f}", help=f"95% CI [{accuracy.low:.3f}, {accuracy.high:.3f}]")
        cols[2].metric("Data", provenance)
        if "silver" in provenance:
            st.caption("Silver data: derived from real text by rules; diagnostics, not official benchmark scores.")
        if run.data_note:
            st.caption(f"Fine-tuned on {run.data_note}; the meta_* slices are its extra columns.")
        tabs = st.tabs(["Slices", "Cohorts", "Confusion", "Calibration", "Worst examples"])
        with tabs[0]:
            ranks = slicing.rank_features(table)
            # the useful features first (enough examples per slice, failure depending on the slice); ids and free
            # text never (workbench.slicing)
            features = [r.feature for r in ranks if r.usable] + [r.feature for r in ranks
                                                                 if not r.usable and r.kind != "excluded"]
            if not features:
                st.info("This predictions table has no meta_* feature to slice by"
                        + (f" ({'; '.join(f'{r.feature}: {r.reason}' for r in ranks)})." if ranks else "."))
            else:
                c1, c2, c3 = st.columns(3)
                if st.session_state.get("err_feature_of") != run.label:  # another run opens on its own best feature
                    st.session_state.pop("err_feature", None)
                    st.session_state["err_feature_of"] = run.label
                feature = c1.selectbox("Feature (most useful first)", features, key="err_feature",
                                       format_func=lambda f: f"{f} ({errors.taxonomy_of(f)})",
                                       help=f"Ranked by the chi-squared test of slice × failure over slices of at "
                                            f"least {slicing.MIN_SLICE} examples; ids and free text are left out.")
                skipped = [r for r in ranks if not r.usable]
                if skipped:
                    st.caption("Last or not offered: " + "; ".join(f"{r.feature} ({r.reason})" for r in skipped) + ".")
                n_bins = c2.slider("Quantile bins (numeric)", 2, 8, 4, key="err_bins")
                metric = c3.selectbox("Metric", [m for m in ("correct", "example_f1") if m in table], key="err_metric")
                slices = _slices(path, mtime, n_bins, metric)
                common.plot(figure_slices(slices, float(table[metric].astype(float).mean()), feature), key="slices")
                common.table(slices[slices["feature"] == feature])
        with tabs[1]:
            depth = st.slider("Tree depth", 1, 5, 3, key="err_depth")
            c1, c2 = st.columns(2)
            use_signals = c1.checkbox("Add internal signals (attention entropy)", key="err_signals")
            with_ig = c2.checkbox("… and attribution concentration, IG delta (slower)", key="err_signals_ig",
                                  disabled=not use_signals)
            signals = None
            if use_signals:
                spec = _model_spec_for(run.model)
                if spec is None:
                    st.info(f"No encoder for '{run.model}' under {common.root() / 'pretrain'}; meta features only.")
                else:
                    signals = _signals(spec, path, mtime, SIGNAL_LIMIT, with_ig, common.weights_stamp(spec))
            units = _feature_units(run, table, path, mtime)
            if units is not None:
                signals = units if signals is None else signals.merge(units, on="id", how="left")
            if table["correct"].all() or not table["correct"].any():
                st.info("Every prediction is right (or every one wrong): there are no error cohorts to find.")
            else:
                subset = table.head(SIGNAL_LIMIT) if signals is not None else table
                subset = subset.drop(columns=slicing.excluded_features(table))  # no ids or free text in the tree
                tree = errors.error_cohorts(subset, signals=signals, max_depth=depth)
                common.plot(figure_cohorts(tree.nodes), key="cohort_tree")
                common.table(tree.cohorts()[["path", "n", "coverage", "error_rate", "error_coverage"]])
                st.caption(f"Tree features: {', '.join(tree.features)}.")
                st.caption("Cohorts: leaves of a decision tree predicting failure (Nushi et al., 2018); error_coverage "
                           "is the share of all errors in the cohort.")
        with tabs[2]:
            if errors.is_classification(table):
                common.plot(figure_confusion(errors.confusion_matrix(table)), key="confusion")
            else:
                st.info(f"{run.task} is not a classification task: see slices and worst examples instead.")
        with tabs[3]:
            n_bins = st.slider("Confidence bins", 5, 20, 10, key="err_cal_bins")
            scores = table["score"].astype(float)
            if scores.isna().any() or not scores.between(0, 1).all():
                st.info("Scores are not probabilities; calibration is undefined.")
            else:
                result = errors.calibration(scores.to_numpy(), table["correct"].to_numpy(), n_bins=n_bins)
                st.metric("Expected calibration error", f"{result.ece:.4f}", help=f"maximum calibration error {result.mce:.4f}")
                common.plot(figure_reliability(result.bins, result.ece), key="reliability")
        with tabs[4]:
            k = st.slider("How many", 1, 50, 10, key="err_k")
            worst = errors.worst_examples(table, k)
            if worst.empty:
                st.info("No wrong predictions.")
            else:
                st.dataframe(worst[[c for c in ("id", "text", "text_pair", "gold", "prediction", "score") if c in worst]],
                             hide_index=True)
                chosen = links.linked_choice("selectbox", "Drill down into", list(worst["id"]), key="err_drill",
                                               params="example")
                _drill_down(run, worst[worst["id"] == chosen].iloc[0])


render()
