"""Model comparison: paired metrics and significance, wins/losses, CKA, head matching, probe overlays."""
from __future__ import annotations

import streamlit as st

from atinuke.errors import UserInputError
from ui import common
from workbench import compare
from workbench.figures import figure_cka, figure_outcomes, figure_probe_overlay

DEFAULT_TEXTS = ("The committee approved the budget after a long debate.",
                 "She did not expect the train to arrive so early.",
                 "Investors sold shares of the bank on Friday.")


@st.cache_data(show_spinner=False, max_entries=8)
def _views(spec: str, texts: tuple[str, ...], stamp: float) -> list[compare.WordView]:
    subject = common.subject(spec)
    progress = st.progress(0.0, text=f"Encoding {len(texts)} texts…")
    views = []
    for i, text in enumerate(texts):
        views.append(compare.word_view(subject, text))
        progress.progress((i + 1) / len(texts))
    progress.empty()
    return views


def _runs_section() -> None:
    runs = common.finetune_runs()
    tasks = sorted({r.task for r in runs if sum(o.task == r.task for o in runs) >= 2})
    if not tasks:
        common.missing("pair of fine-tuning runs on the same task", "minilm-finetune")
        return
    task = common.linked_choice("selectbox", "Task", tasks, key="cmp_task", params="task")
    group = [r for r in runs if r.task == task]
    models = [r.model for r in group]
    c1, c2 = st.columns(2)
    model_a = common.linked_choice("selectbox", "Model A", models, container=c1, key="cmp_a", params="model",
                                    index=models.index("minilm") if "minilm" in models else 0)
    model_b = common.linked_choice("selectbox", "Model B", models, container=c2, key="cmp_b", params="model_b",
                                    index=next((i for i, m in enumerate(models) if m != model_a), 0))
    if model_a == model_b:
        st.error("Choose two different models.")
        return
    run_a, run_b = group[models.index(model_a)], group[models.index(model_b)]
    for run in (run_a, run_b):
        if run.data_note:
            st.caption(f"{run.label}: fine-tuned on {run.data_note}")
    result = compare.compare_runs(common.predictions(run_a), common.predictions(run_b), n_boot=500)
    st.dataframe(result.metrics, hide_index=True)
    for metric, test in result.bootstrap.items():
        verdict = "significant" if test.significant else "not significant"
        st.markdown(f"**{metric}**: B − A = {test.delta:+.4f} [95% CI {test.low:+.4f}, {test.high:+.4f}], paired "
                    f"bootstrap p = {test.p_value:.3g} ({verdict}); n = {test.n}.")
    m = result.mcnemar
    st.markdown(f"**McNemar**: only A right on {m.a_only}, only B right on {m.b_only}; exact binomial p = "
                f"{m.p_value:.3g}, χ² (corrected) = {m.statistic_corrected:.3f}.")
    if result.n_only_a or result.n_only_b:
        st.caption(f"{result.n_only_a} ids only in A and {result.n_only_b} only in B were left out.")
    common.plot(figure_outcomes(result.outcome_counts(), model_a, model_b), key="cmp_outcomes")
    names = {"A wins": f"{model_a} right, {model_b} wrong", "B wins": f"{model_b} right, {model_a} wrong"}
    outcome = st.selectbox("Show examples", ["A wins", "B wins", "both wrong", "disagreements"], key="cmp_outcome",
                           format_func=lambda o: names.get(o, o))
    frame = result.outcomes
    frame = frame[frame["disagree"]] if outcome == "disagreements" else frame[frame["outcome"] == outcome]
    columns = [c for c in ("id", "text", "text_pair", "gold", "prediction_a", "prediction_b") if c in frame]
    st.dataframe(frame[columns].head(200), hide_index=True)


def _representations_section() -> None:
    choices = common.model_choices()
    names = list(choices)
    c1, c2 = st.columns(2)
    name_a = c1.selectbox("Representations of", names, key="cka_a")
    name_b = c2.selectbox("against", names, index=len(names) - 1, key="cka_b")
    texts = st.text_area("Texts (one per line; the same words go through both models)", "\n".join(DEFAULT_TEXTS),
                         key="cka_texts", height=110)
    if not st.button("Compute CKA and head matching", key="cka_go"):
        st.caption("Layer-wise linear CKA (Kornblith et al., 2019) over word vectors, and a one-to-one matching of "
                   "heads by word-level attention similarity (Hungarian algorithm).")
        return
    lines = tuple(common.check_text(line, "line") for line in texts.splitlines() if line.strip())
    if not lines:
        raise UserInputError("Type at least one text.")
    views_a = _views(choices[name_a], lines, common.weights_stamp(choices[name_a]))
    views_b = _views(choices[name_b], lines, common.weights_stamp(choices[name_b]))
    if sum(len(v.words) for v in views_a) < 3:
        raise UserInputError("CKA needs at least 3 words in total.")
    common.plot(figure_cka(compare.layerwise_cka(views_a, views_b), name_a, name_b), key="cka_heatmap")
    matches = compare.match_heads(views_a, views_b)
    st.subheader("Matched heads")
    st.dataframe(matches, hide_index=True)


def _probes_section() -> None:
    results = common.probe_results()
    if results is None or results.empty:
        common.missing("probe results", "probes")
        return
    task = st.selectbox("Probing task", sorted(results["task"].astype(str).unique()), key="cmp_probe_task")
    overlay = compare.probe_overlay(results, task)
    common.plot(figure_probe_overlay(overlay), key="cmp_probe_curve")


def render() -> None:
    st.title("Model comparison")
    common.page_header()
    tabs = st.tabs(["Task metrics", "Representations (CKA, heads)", "Probe curves"])
    with tabs[0], common.friendly_errors("task comparison"):
        _runs_section()
    with tabs[1], common.friendly_errors("representations"):
        _representations_section()
    with tabs[2], common.friendly_errors("probe curves"):
        _probes_section()


render()
