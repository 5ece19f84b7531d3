"""Model comparison: paired metrics and significance, wins/losses, CKA, head matching, probe overlays, and
the two models' dictionary features (SAE latents) matched by activation correlation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from atinuke.errors import UserInputError
from ui import common, links
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
    task = links.linked_choice("selectbox", "Task", tasks, key="cmp_task", params="task")
    group = [r for r in runs if r.task == task]
    models = [r.model for r in group]
    c1, c2 = st.columns(2)
    model_a = links.linked_choice("selectbox", "Model A", models, container=c1, key="cmp_a", params="model",
                                    index=models.index("minilm") if "minilm" in models else 0)
    model_b = links.linked_choice("selectbox", "Model B", models, container=c2, key="cmp_b", params="model_b",
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
    _separating_section(result, model_a, model_b, outcome)


SEPARATING_LIMIT = 300  # examples encoded into SAE features on demand


@st.cache_data(show_spinner=False, max_entries=8)
def _pooled(spec: str, sae_run: str, texts: tuple[str, ...], stamp: float, sae_stamp: float) -> np.ndarray:
    from workbench.features.units import example_activations

    sae, hook = common.sae(Path(sae_run))
    with st.spinner(f"Encoding {len(texts)} examples into SAE features…"):
        return example_activations(common.subject(spec), sae, hook, list(texts))


def _separating_section(result: compare.RunComparison, model_a: str, model_b: str, outcome: str) -> None:
    """The SAE latents (of A's or B's encoder) that separate one outcome's examples from the rest."""
    if outcome not in compare.OUTCOMES or "text" not in result.outcomes:
        return
    owners = {m: (common.encoder_spec(m), common.sae_runs_for(m)) for m in (model_a, model_b)}
    owners = {m: (spec, runs) for m, (spec, runs) in owners.items() if spec is not None and runs}
    if not owners:
        st.caption("No SAE run for either model: no dictionary features to separate the outcomes with.")
        return
    if not st.checkbox("Which SAE features separate these examples from the rest?", key="cmp_sep"):
        return
    c1, c2 = st.columns(2)
    model = c1.selectbox("Features of", list(owners), key="cmp_sep_model")
    spec, runs = owners[model]
    run = runs[c2.selectbox("SAE run", list(runs), key="cmp_sep_run")]
    frame = result.outcomes.head(SEPARATING_LIMIT)
    if not (frame["outcome"] == outcome).any() or (frame["outcome"] == outcome).all():
        st.info(f"No contrast: '{outcome}' covers none or all of the first {len(frame)} examples.")
        return
    pooled = _pooled(str(spec), str(run), tuple(frame["text"].astype(str)), common.weights_stamp(str(spec)),
                     common.file_mtime(run / "sae" / "sae_weights.safetensors"))
    top = compare.separating_features_of_outcomes(frame, pooled, outcome, k=10)
    st.dataframe(_described(top, run, "feature"), hide_index=True)
    st.caption("AUROC of each latent's activation (max over the example's tokens) for these examples against the "
               "rest (Mann-Whitney U); 0.5 = no separation.")


def _described(table: pd.DataFrame, run: Path, column: str) -> pd.DataFrame:
    """``table`` with the feature tables' top tokens and labels of the latent in ``column``."""
    path = run / "features.parquet"
    if not path.is_file():
        return table
    described = pd.read_parquet(path)
    wanted = [c for c in ("feature", "top_tokens", "top_pos", "top_dep", "top_srl") if c in described]
    return table.merge(described[wanted].rename(columns={"feature": column}), on=column, how="left")


CKA_MIN_TEXTS = 20  # below this the layer-by-layer CKA map is mostly small-sample bias


def _other(labels: list[str], options: dict[str, tuple[str, Path]], first: str) -> int:
    """The default second side: a dictionary of another model, else another dictionary, else the first."""
    spec = options[first][0]
    for same_model_ok in (False, True):
        for index, label in enumerate(labels):
            if label != first and (same_model_ok or options[label][0] != spec):
                return index
    return labels.index(first)


def _features_section() -> None:
    options = {}
    choices = common.model_choices()
    for name, spec in choices.items():
        model = common.model_param(name, choices)  # the run's name, as the SAE run records its model
        for run_name, run in common.sae_runs_for(model).items():
            options[f"{name} — {run_name}"] = (spec, run)
    if not options:
        common.missing("SAE run of a model", "sae")
        return
    labels = list(options)
    c1, c2 = st.columns(2)
    first = c1.selectbox("Dictionary A", labels, key="cmp_sae_a")
    second = c2.selectbox("Dictionary B", labels, index=_other(labels, options, first), key="cmp_sae_b")
    if second == first:
        st.warning("A and B are the same dictionary: every latent matches itself. Choose another for B "
                   f"({'train one with `make models`' if len(labels) == 1 else 'below'}).")
    texts = st.text_area("Texts (one per line; latents are compared on the same words)", "\n".join(DEFAULT_TEXTS),
                         key="cmp_sae_texts", height=110)
    threshold = st.slider("Correlation a match needs", 0.1, 0.95, 0.5, 0.05, key="cmp_sae_threshold")
    if not st.button("Match features", key="cmp_sae_go"):
        st.caption("Each latent of A is matched to the latent of B whose activations over the same words correlate "
                   "most (Pearson; words pool their subword tokens by max, so different tokenizers align), and "
                   "one-to-one by the Hungarian algorithm; a live latent with no match above the threshold is one "
                   "the other dictionary lacks.")
        return
    lines = [common.check_text(line, "line") for line in texts.splitlines() if line.strip()]
    if not lines:
        raise UserInputError("Type at least one text.")
    (spec_a, run_a), (spec_b, run_b) = options[first], options[second]
    sae_a, hook_a = common.sae(run_a)
    sae_b, hook_b = common.sae(run_b)
    with st.spinner("Encoding the texts through both models and dictionaries…"):
        match = compare.compare_features(common.subject(spec_a), sae_a, hook_a, common.subject(spec_b), sae_b, hook_b,
                                         lines, threshold=threshold)
    live_a, live_b = match.best_a[match.best_a["frequency_a"] > 0], match.best_b[match.best_b["frequency_b"] > 0]
    cols = st.columns(3)
    cols[0].metric("Words", match.n_units)
    cols[1].metric("A's live latents matched in B", f"{live_a['matched'].mean():.0%}" if len(live_a) else "–")
    cols[2].metric("B's live latents matched in A", f"{live_b['matched'].mean():.0%}" if len(live_b) else "–")
    st.subheader("Matched pairs (one-to-one)")
    pairs = _described(_described(match.pairs.head(50), run_a, "feature_a"), run_b, "feature_b")
    st.dataframe(pairs, hide_index=True)
    for side, only, best, run in (("A", match.only_a, live_a, run_a), ("B", match.only_b, live_b, run_b)):
        st.subheader(f"Only in {side}: {len(only)} live latents without a match")
        key = f"feature_{side.lower()}"
        st.dataframe(_described(best[best[key].isin(only)].head(50), run, key), hide_index=True)


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
    if len(lines) < CKA_MIN_TEXTS:
        st.warning(f"CKA over {len(lines)} sentence(s) ({sum(len(t.split()) for t in lines)} words) is unreliable: "
                   "linear CKA is biased upwards on few examples (Davari et al., 2022, arXiv 2210.16156). Paste at "
                   f"least {CKA_MIN_TEXTS} sentences.")
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
    tabs = st.tabs(["Task metrics", "Representations (CKA, heads)", "Probe curves", "Dictionary features"])
    with tabs[0], common.friendly_errors("task comparison"):
        _runs_section()
    with tabs[1], common.friendly_errors("representations"):
        _representations_section()
    with tabs[2], common.friendly_errors("probe curves"):
        _probes_section()
    with tabs[3], common.friendly_errors("dictionary features"):
        _features_section()


render()
