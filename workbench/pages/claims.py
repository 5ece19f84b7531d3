"""Claims: each claim of the Atinuke paper beside what this workbench measured for it, computed from artifacts."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import artifacts
from workbench.pages import _common

BADGES = {"supported on this data": ":green[supported on this data]",
          "contradicted on this data": ":red[contradicted on this data]"}


@st.cache_data(show_spinner=False, max_entries=8)
def _claims(root: str, stamp: tuple) -> pd.DataFrame:
    return artifacts.evaluate_claims(root=__import__("pathlib").Path(root), n_boot=300)


def _stamp() -> tuple:
    base = _common.root()
    files = [p for pattern in ("finetune/*/*/predictions.parquet", "pretrain/*/summary.json", "probes/**/results.*")
             for p in base.glob(pattern)]
    return tuple(sorted((str(p), _common._mtime(p)) for p in files))


def render() -> None:
    st.title("The paper's claims, checked")
    _common.page_header()
    st.markdown("*Engineering A Large Language Model From Scratch* (arXiv 2401.16736) claims gains on SQuAD, GLUE, "
                "SNLI, coreference and SRL, and interpretability, without evidence. Each claim below stands beside "
                "what the artifacts under the runs directory show, and what they cannot show.")
    with _common.friendly_errors("claims"):
        with st.spinner("Computing paired tests from the predictions tables…"):
            claims = _claims(str(_common.root()), _stamp())
        only_open = st.checkbox("Only claims with evidence", value=False, key="claims_filter")
        shown = claims[claims["verdict"] != "no evidence"] if only_open else claims
        if shown.empty:
            st.info("No claim has evidence yet. " + artifacts.HOW_TO_CREATE["finetune"])
        for row in shown.itertuples():
            with st.container(border=True):
                st.markdown(f"**{row.statement}**")
                st.markdown(f"Verdict: {BADGES.get(row.verdict, row.verdict)}" +
                            (f" · data: *{row.provenance}*" if row.provenance else ""))
                st.write(row.evidence)
        st.download_button("Download claims (CSV)", claims.to_csv(index=False), "claims.csv", "text/csv",
                           key="claims_csv")


render()
