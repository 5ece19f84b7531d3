"""Claims: each claim of the Atinuke paper with its verdict from the controlled experiment (workbench.claims)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ui import common
from workbench import claims as claims_lib
from workbench import competence as competence_lib
from workbench import verdicts
from workbench.experiment_runs import find_experiment

BADGES = {claims_lib.SUPPORTED: ":green[supported]", claims_lib.CONTRADICTED: ":red[contradicted]",
          claims_lib.INCONCLUSIVE: ":orange[inconclusive]", claims_lib.FLOOR: ":gray[not measurable at this budget]"}


@st.cache_data(show_spinner=False, max_entries=8)
def _claims(root: str, stamp: tuple) -> pd.DataFrame:
    return verdicts.claims_of(Path(root))  # the same function as `workbench claims` and the reports


@st.cache_data(show_spinner=False, max_entries=8)
def _competence(root: str, stamp: tuple) -> pd.DataFrame:
    found = find_experiment(Path(root))
    return competence_lib.competence(found) if found else pd.DataFrame()


def _stamp() -> tuple:
    base = common.root()
    files = [p for pattern in ("experiment/**/predictions.parquet", "experiment/**/summary.json", "experiment.json",
                               "**/seed*/finetune/*/predictions.parquet", "pretrain/*/summary.json", "probes/**/results.*",
                               "experiment/*/seed*/pretrain/summary.json", "lr-sweep/best.json")
             for p in base.glob(pattern)]
    return tuple(sorted((str(p), common.file_mtime(p)) for p in files))


def _score(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.3f}"


def render() -> None:
    st.title("The paper's claims, checked")
    common.page_header()
    st.markdown("*Engineering A Large Language Model From Scratch* (arXiv 2401.16736) claims gains on SQuAD, GLUE, "
                "SNLI, coreference and SRL, and interpretability, without evidence. Benchmark verdicts here come only "
                "from the controlled experiment (`atinuke experiment`): Atinuke against a BERT encoder of the same "
                "size, trained on the same tokens with the same recipe. The unit is the training run: each run's "
                "headline metric (MCC, Pearson, corpus CoNLL F1, micro SRL F1, SQuAD F1…), compared by Welch's t "
                "over runs with the dev examples resampled jointly, Holm-corrected across claims; one seed per arm "
                "gives no verdict. A model not shown above its task's trivial baseline makes the claim *not "
                "measurable at this budget*. MiniLM is shown as a pretrained reference only.")
    with common.friendly_errors("claims"):
        with st.spinner("Computing paired tests from the predictions tables…"):
            claims = _claims(str(common.root()), _stamp())
        only_open = st.checkbox("Only claims with evidence", value=False, key="claims_filter")
        shown = claims[claims["verdict"] != claims_lib.NO_EVIDENCE] if only_open else claims
        if shown.empty:
            st.info("No claim has evidence yet. Run `atinuke experiment --arms atinuke,bert,minilm --seeds 3 "
                    "--out runs/experiment`.")
        root = common.root()
        for row in shown.itertuples():
            with st.container(border=True):
                st.markdown(f"**{row.statement}**")
                why = verdicts.reason(row)
                line = f"Verdict: {BADGES.get(row.verdict, row.verdict)}" + (f" — {why}" if why else "")
                if row.verdict in (claims_lib.SUPPORTED, claims_lib.CONTRADICTED) and not verdicts.blank(row.scope):
                    line += f" *{row.scope}*"
                if not verdicts.blank(row.comparator):
                    line += f" · comparator: `{row.comparator}`"
                    if not verdicts.blank(row.seeds) and int(row.seeds):
                        line += f" · seeds: {int(row.seeds)}"
                if not verdicts.blank(row.p_value):
                    line += f" · p = {row.p_value:.3g} ± {row.p_mc_error or 0:.1g} (Monte Carlo)"
                if not verdicts.blank(row.p_adjusted):
                    line += f" · Holm p = {row.p_adjusted:.3g}"
                if row.verdict == claims_lib.INCONCLUSIVE and not verdicts.blank(row.mde):
                    line += f" · smallest detectable difference (80% power): {row.mde:.3g}"
                if not verdicts.blank(row.provenance):
                    line += f" · data: *{row.provenance}*"
                st.markdown(line)
                if not verdicts.blank(row.atinuke_score):
                    st.caption(f"{row.metric or 'score'}: atinuke {_score(row.atinuke_score)} · {row.comparator} "
                               f"{_score(row.comparator_score)} · trivial {_score(row.trivial_score)} · minilm "
                               f"(reference) {_score(row.reference_score)}")
                st.write(verdicts.relative_paths(str(row.evidence or ""), root))
        with st.expander("Verdict table (the same as `workbench claims` and the reports' claims.csv)"):
            common.table(verdicts.verdict_table(claims), key="claims_table")
        st.download_button("Download claims (CSV)", claims.to_csv(index=False), "claims.csv", "text/csv",
                           key="claims_csv")
        _competence_section()


def _competence_section() -> None:
    """Has every model learnt every task? The floors the verdicts above rest on, for each arm, MiniLM included."""
    table = _competence(str(common.root()), _stamp())
    if table.empty:
        return
    st.subheader("Has each model learnt each task?")
    st.markdown("Each model's headline metric against its task's trivial baseline scored by the same metric on "
                "the same dev examples (one-sided t over runs, examples resampled jointly, α = 0.05; `workbench "
                "claims --competence`). ✗ means *not shown above the floor*, not *at the floor*; a comparison with "
                "such a model is no evidence.")
    pivot = table.assign(cell=[f"{'✓' if v == competence_lib.LEARNT else '✗'} {m} {s:.3f} (trivial {t:.3f}, "
                               f"p={p:.2g} ± {e or 0:.0g})"
                               for v, m, s, t, p, e in zip(table.verdict, table.metric, table.score, table.trivial_score,
                                                           table.p_value, table.p_mc_error)]
                         ).pivot(index="task", columns="arm", values="cell")
    st.dataframe(pivot, width="stretch")


render()
