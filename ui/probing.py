"""Probing: layer curves of every probing task, with control tasks, from the probes' tidy results."""
from __future__ import annotations

import streamlit as st

from probes.figures import layer_curve_figure
from ui import common, links
from workbench.compare import probe_overlay
from workbench.probe_curves import REAL_CONTROLS, layer_selectivity


def render() -> None:
    st.title("Probing")
    common.page_header()
    st.caption("What each layer makes linearly decodable; control tasks (Hewitt and Liang, 2019) show how much a "
               "probe learns by itself. Selectivity = task accuracy − control accuracy.")
    results = common.probe_results()
    if results is None or results.empty:
        common.missing("probe results (results.parquet under probes/)", "probes")
        return
    with common.friendly_errors("probing"):
        tasks = sorted(results["task"].astype(str).unique())
        c1, c2 = st.columns(2)
        task = links.linked_choice("selectbox", "Probing task", tasks, container=c1, key="probe_task", params="task")
        rows = results[results["task"] == task]
        metric = c2.selectbox("Metric", sorted(rows["metric"].astype(str).unique()), key="probe_metric")
        models = sorted(rows["model"].astype(str).unique())
        chosen = links.linked_choice("multiselect", "Models", models, default=models, key="probe_models",
                                       params="model")
        show_controls = st.checkbox("Show control curves", value=True, key="probe_controls")
        if not chosen:
            st.error("Choose at least one model.")
            return
        overlay = probe_overlay(rows[rows["model"].isin(chosen)], task, metric)
        if not show_controls:
            overlay = overlay[overlay["control"].isin(REAL_CONTROLS)]
        if overlay.empty:
            st.info("No rows left with these settings.")
            return
        # The probes package's own figure: CIs over seeds, dashes per control.
        shown = rows[rows["model"].isin(chosen)]
        if not show_controls:
            shown = shown[shown["control"].fillna("none").isin(REAL_CONTROLS)]
        common.plot(layer_curve_figure(shown, metric=metric, title=f"Probe {metric} by layer: {task}"), key="probe_curve")
        merged = layer_selectivity(overlay, controls=None)
        if not merged.empty:
            st.subheader("Selectivity per layer")
            st.dataframe(merged[["model", "layer", "depth", "mean", "control_control", "mean_control", "selectivity"]]
                         .rename(columns={"control_control": "control"}), hide_index=True)
        st.caption(f"Sources: {', '.join(sorted(results['source'].dropna().astype(str).unique())) if 'source' in results else '?'}")


render()
