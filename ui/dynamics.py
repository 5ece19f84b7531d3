"""Training dynamics: when loss, probes, heads, lenses, rank and SAE features appear over a run's snapshots,
for one or two arms side by side (``workbench dynamics``; figures from :func:`workbench.figures.dynamics_figure`)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ui import common, links
from workbench import artifacts
from workbench.dynamics import curves
from workbench.figures import dynamics_figure, layer_head_grid


@st.cache_data(show_spinner=False, max_entries=8)
def _tables(directory: str, stamp: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(Path(directory) / "dynamics.parquet"), pd.read_csv(Path(directory) / "headline.csv")


def render() -> None:
    st.title("Training dynamics")
    common.page_header()
    st.markdown("Each curve is measured on the snapshots a pretraining run kept at log-spaced steps (0, 64, 128, 256, "
                "…), on held-out text; arms are aligned by training tokens. A star marks where a curve has made half "
                "of its change from the first snapshot to the last. Probe selectivity is the UPOS probe's accuracy "
                "minus its control task's (Hewitt & Liang, 2019); the induction score is the attention a repeated "
                "token pays to the token after its first occurrence (Olsson et al., 2022).")
    found = artifacts.find_dynamics_runs(common.root())
    if not found:
        common.missing("training dynamics", "dynamics")
        return
    with common.friendly_errors("dynamics"):
        chosen = links.linked_choice("selectbox", "Analysis", found, key="dynamics_dir", params="dynamics",
                                      format_func=lambda p: p.name)
        table, headline = _tables(str(chosen), common.file_mtime(Path(chosen) / "dynamics.parquet"))
        common.plot(dynamics_figure(curves(table), headline), key="dynamics_figure")
        st.subheader("When each curve made half of its change")
        st.dataframe(headline, hide_index=True)
        st.subheader("Per head at one snapshot")
        runs = list(dict.fromkeys(table["run"]))
        left, middle, right = st.columns(3)
        run = links.linked_choice("selectbox", "Run", runs, key="dynamics_run", params="run", container=left)
        steps = sorted(table.loc[table["run"] == run, "step"].unique())
        step = middle.select_slider("Step", options=steps, value=steps[-1], key="dynamics_step")
        head_metrics = sorted(table.loc[table["head"] >= 0, "metric"].unique())
        if not head_metrics:
            st.info("This analysis has no per-head measurements (rerun with --parts including heads or repeat).")
            return
        metric = right.selectbox("Statistic", head_metrics, key="dynamics_metric",
                                 index=head_metrics.index("induction") if "induction" in head_metrics else 0)
        part = table[(table["run"] == run) & (table["step"] == step) & (table["metric"] == metric)]
        common.plot(layer_head_grid(part[["layer", "head", "value"]], "value", title=f"{metric}, {run}, step {step}"),
                    key="dynamics_heads")


render()
