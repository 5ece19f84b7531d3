"""Mechanisms: the logit lens per layer, and which heads / positions carry a clean-vs-corrupted difference."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
from scipy.stats import spearmanr

from atinuke.errors import UserInputError
from ui import common, links
from workbench.figures import circuit_graph, lens_figure, patching_heatmap, task_lens_figure

CLEAN = "The market fell sharply on Monday after the report."
CORRUPTED = "The market rose sharply on Monday after the report."


@st.cache_data(show_spinner=False, max_entries=16)
def _lens(spec: str, text: str, stamp: float, mask_positions: tuple[int, ...] = ()):
    from workbench.lens import evaluate_lens

    result = evaluate_lens(common.subject(spec), [text], mask_positions=mask_positions)
    return result.layers, result.tokens


@st.cache_data(show_spinner=False, max_entries=16)
def _task_lens(run: str, text: str, pair: str, stamp: float):
    from workbench.lens import task_lens
    from workbench.subject import load_subject

    return task_lens(load_subject(run), [text], None if not pair.strip() else [pair])


def _masked(spec: str, text: str) -> tuple[int, ...]:
    """For a masked LM, the token positions of the word chosen on the page, which the lens replaces by [MASK]: an
    MLM reading its own unmasked input only copies it, so the lens is read where the model has to predict
    (Devlin et al., 2019). Empty for a decoder, or when no word is chosen."""
    import re

    model = common.subject(spec)
    if model.causal or getattr(model.tokenizer, "mask_token_id", None) is None:
        return ()
    words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    options = ["(none: read the unmasked input)"] + [f"{i}: {w}" for i, (_, _, w) in enumerate(words)]
    default = 1 + min(2, len(words) - 1) if words else 0  # the third word ("fell" in the default text)
    chosen = st.selectbox("Mask a word (masked LM)", options, index=default, key="mech_mask",
                          help="The lens reads every position; at the [MASK] it shows what each layer predicts.")
    if chosen == options[0]:
        return ()
    start, end, _ = words[int(chosen.split(":", 1)[0])]
    offsets = model.tokenize([text])["offset_mapping"][0].tolist()  # [pos, 2] character spans
    return tuple(i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= end)


def _task_model_runs() -> dict[str, str]:
    """Fine-tuning runs whose classification model was saved (label -> directory)."""
    import json

    from workbench.kinds import WORKBENCH_KINDS

    found = {}
    for run in common.finetune_runs():
        for directory in (run.path / "model", run.path):
            config = directory / "task_model.json"
            if config.is_file():
                kind = WORKBENCH_KINDS.get((json.loads(config.read_text()).get("head") or {}).get("kind", ""))
                if kind is not None and kind.lens_in_app:
                    found[run.label] = str(run.path)
                break
    return found


def _task_lens_section() -> None:
    st.subheader("Task-head lens")
    runs = _task_model_runs()
    if not runs:
        st.info("No fine-tuned classification model with its weights under the runs folder yet "
                "(`atinuke finetune ... --out runs/finetune/M/snli` saves one).")
        return
    label = st.selectbox("Fine-tuned model", list(runs), key="mech_task_model")
    c1, c2 = st.columns(2)
    text = common.check_text(c1.text_input("Text", "A man is playing a guitar on stage.", key="mech_task_text"))
    pair = c2.text_input("Second segment (pair tasks)", "A man is playing music.", key="mech_task_pair")
    table = _task_lens(runs[label], text, pair, common.weights_stamp(runs[label]))
    common.plot(task_lens_figure(table), key="mech_task_lens")
    st.caption("The task head applied to each layer's residual stream; the last layer is the model's prediction.")


@st.cache_data(show_spinner=False, max_entries=16)
def _patch(spec: str, clean: str, corrupted: str, component: str, stamp: float):
    from atinuke.errors import UserInputError
    from workbench.patching import attribution_patching, default_metric, exact_patching

    subject = common.subject(spec)
    a, b = subject.tokenize([clean]), subject.tokenize([corrupted])
    if a["input_ids"].shape != b["input_ids"].shape:
        raise UserInputError(f"the clean text has {a['input_ids'].shape[1]} tokens and the corrupted one "
                             f"{b['input_ids'].shape[1]}; patching needs the same length")
    metric, description = default_metric(subject, a, b)
    return (exact_patching(subject, a, b, metric, component), attribution_patching(subject, a, b, metric, component),
            description)


PLANTED = "planted-circuit model (built here)"


@st.cache_data(show_spinner=False, max_entries=4)
def _planted_circuit(fraction: float, level: str = "edges"):
    from workbench.circuits import discover_circuit
    from workbench.nodes import discover_node_circuit
    from workbench.planted import planted_metric, planted_model, planted_pairs
    from workbench.subject import load_subject

    subject = load_subject(planted_model())
    clean, corrupted = (subject.tokenize(texts) for texts in planted_pairs(8))
    if level == "nodes":
        found = discover_node_circuit(subject, clean, corrupted, planted_metric(), fraction=fraction)
        return found.nodes, found.summary
    circuit = discover_circuit(subject, clean, corrupted, planted_metric(), fraction=fraction)
    return circuit.edges, circuit.summary


def _circuit_runs() -> dict[str, str]:
    """``workbench circuit`` output directories under the runs folder (label -> directory)."""
    from atinuke.paths import runs_dir

    root = runs_dir()
    tables = sorted([*root.rglob("edges.parquet"), *root.rglob("nodes.parquet")])  # edge or node level
    return {str(p.parent.relative_to(root)): str(p) for p in tables if (p.parent / "summary.json").is_file()}


def _circuit_section() -> None:
    st.subheader("Circuit")
    if not st.toggle("Show a discovered circuit", key="mech_circuit"):
        st.caption("Circuit discovery (EAP-IG, Hanna et al. 2024) ranks the edges between components and keeps the "
                   "fewest that recover the metric; `workbench circuit --model M --clean ... --corrupted ... --out DIR` "
                   "writes a run this page draws.")
        return
    import json

    import pandas as pd

    runs = _circuit_runs()
    source = st.selectbox("Circuit", [PLANTED, *runs], key="mech_circuit_source")
    if source == PLANTED:
        fraction = st.slider("Fraction of the metric to recover", 0.5, 1.0, 0.9, 0.05, key="mech_circuit_fraction")
        level = st.radio("Level", ["edges", "nodes"], horizontal=True, key="mech_circuit_level")
        edges, summary = _planted_circuit(fraction, level)
        st.caption("A model whose weights are set by hand (workbench/planted.py): head L1.H2 copies the token at "
                   "position 3 to [CLS] and alone decides the class; the planted edges are embed → L1.H2 (value) "
                   "and L1.H2 → logits.")
    else:
        edges = pd.read_parquet(runs[source])
        summary = json.loads((Path(runs[source]).parent / "summary.json").read_text(encoding="utf-8"))
    kept = edges[edges["in_circuit"]]
    if "node" in edges:  # a node-level circuit: the layer x head grid, kept nodes outlined
        common.plot(circuit_graph(edges, f"Node circuit: {summary.get('model', source)}"), key="mech_circuit_graph")
        st.caption(f"{len(kept)} of {len(edges)} nodes recover {float(summary['faithfulness']):.3f} of the metric "
                   "with every other node patched from the corrupted run; colour = normalised attribution score.")
        st.dataframe(kept.sort_values("rank")[["rank", "node", "score", "normalized"]], hide_index=True)
        return
    common.plot(circuit_graph(kept, f"Circuit: {summary.get('model', source)}"), key="mech_circuit_graph")
    st.caption(f"{len(kept)} of {len(edges)} edges recover {float(summary['faithfulness']):.3f} of the metric with "
               "every other edge patched from the corrupted run; line width = normalised EAP-IG score.")
    st.dataframe(kept.sort_values("rank")[["rank", "edge", "score", "normalized"]], hide_index=True)


PLANTED_DLA = "planted-circuit model (pre-norm, built here)"


@st.cache_data(show_spinner=False, max_entries=16)
def _dla(spec: str, text: str, target: str, position: str, stamp: float):
    from workbench.dla import dla
    from workbench.planted import planted_model
    from workbench.subject import load_subject

    subject = load_subject(planted_model()) if spec == PLANTED_DLA else common.subject(spec)
    result = dla(subject, text, target, position)
    return result.frame, result.summary


def _dla_section(name: str, spec: str) -> None:
    st.subheader("Direct logit attribution")
    if not st.toggle("Show direct logit attribution", key="mech_dla"):
        st.caption("Splits one read-out of the final state into the embeddings, every head, every MLP and the biases "
                   "(Elhage et al. 2021); `workbench dla --model M --text TEXT --out DIR` writes the same table.")
        return
    from workbench.dla import EXACT_WHY, POST_NORM_WHY
    from workbench.figures import dla_figure
    from workbench.planted import planted_pairs

    source = st.selectbox("Model", [name, PLANTED_DLA], key="mech_dla_source")
    planted = source == PLANTED_DLA
    c1, c2, c3 = st.columns([3, 1, 1])
    text = common.check_text(c1.text_input("Text", planted_pairs(1)[0][0] if planted else CLEAN,
                                           key=f"mech_dla_text_{int(planted)}"))
    target = c2.text_input("Read-out", "top", key="mech_dla_target",
                           help="top (the predicted token, the default) or token:WORD (tied embeddings), or "
                                "random:SEED (a fixed random unit vector: a control, or a model without an LM head)")
    position = c3.text_input("Position", "0", key="mech_dla_position", help="'last' or an index (0 = [CLS])")
    model, stamp = (PLANTED_DLA, 0.0) if planted else (spec, common.weights_stamp(spec))
    try:
        frame, summary = _dla(model, text, target, position, stamp)
    except UserInputError as error:
        if target.strip() != "top":
            raise
        st.caption(f"No predicted token to read out here ({error}); a fixed random direction (random:0) instead.")
        frame, summary = _dla(model, text, "random:0", position, stamp)
    common.plot(dla_figure(frame, summary["logit"], f"Direct logit attribution: {summary['readout']}"), key="mech_dla_bars")
    st.metric("Logit", f"{summary['logit']:.6g}", f"sum of parts {summary['sum_of_parts']:.6g}", delta_color="off")
    if summary["exact"]:
        st.caption(f"Exact: {EXACT_WHY}. Position {summary['position']} ({summary['token']}).")
    else:
        st.warning(f"Last-block decomposition only: a full split is not exact here. {POST_NORM_WHY[0].upper()}"
                   f"{POST_NORM_WHY[1:]}.")
    st.dataframe(frame, hide_index=True)


def render() -> None:
    st.title("Mechanisms")
    common.page_header()
    common.model_imports()  # before any import of transformers: one thread at a time
    st.caption("The logit lens (nostalgebraist, 2020) reads every layer through the model's own output path; "
               "activation patching (Meng et al., 2022) restores one component of a clean run inside a corrupted "
               "one; attribution patching (Nanda, 2023) estimates all of them from one backward pass.")
    choices = common.model_choices()
    with common.friendly_errors("mechanisms"):
        names = list(choices)
        first = common.default_models(choices)[0]
        name = links.linked_choice("selectbox", "Model", names, key="mech_model", index=names.index(first),
                                    params=lambda n: {"model": common.model_param(n, choices)})
        spec = choices[name]
        common.model_caption(name, spec)
        stamp = common.weights_stamp(spec)
        st.subheader("Logit lens")
        text = common.check_text(st.text_input("Text", CLEAN, key="mech_text"))
        if "MiniLM" in name:
            st.info("MiniLM ships without its language-model head: the lens needs an MLM/CLM model "
                    "(an Atinuke or BERT pretraining run).")
        else:
            common.check_length(spec, text)  # as every page does: no silent truncation
            layers, tokens = _lens(spec, text, stamp, _masked(spec, text))
            common.plot(lens_figure(layers), key="mech_lens")
            grid = tokens.pivot(index="layer", columns="position", values="top_tokens")
            grid.columns = [f"{p}:{t}" for p, t in zip(grid.columns, tokens[tokens["layer"] == 0]["token"])]
            st.caption("Each layer's top predictions per position (0 = embeddings; the last row is the model's output).")
            st.dataframe(grid, width="stretch")
        st.subheader("Patching")
        c1, c2 = st.columns(2)
        clean = common.check_text(c1.text_input("Clean text", CLEAN, key="mech_clean"), "clean text")
        corrupted = common.check_text(c2.text_input("Corrupted text (same length)", CORRUPTED, key="mech_corrupted"),
                                       "corrupted text")
        component = st.radio("Components", ["heads", "positions", "mlp"], horizontal=True, key="mech_component")
        exact, estimate, description = _patch(spec, clean, corrupted, component, stamp)
        st.caption(f"Metric: {description}. Clean {exact.attrs['clean']:.4g}, corrupted {exact.attrs['corrupted']:.4g}; "
                   "effects normalised so that 0 is the corrupted run and 1 the clean one.")
        if component == "mlp":
            st.dataframe(exact.merge(estimate, on="layer", suffixes=("_exact", "_attribution")), hide_index=True)
        else:
            left, right = st.columns(2)
            with left:
                common.plot(patching_heatmap(exact, "Exact activation patching"), key="mech_exact")
            with right:
                common.plot(patching_heatmap(estimate, "Attribution patching"), key="mech_attribution")
        rho = spearmanr(exact["effect"], estimate["effect"])[0]
        st.caption(f"Rank correlation of the estimate with exact patching: Spearman {rho:.3f}.")
    with common.friendly_errors("circuit"):
        _circuit_section()
    with common.friendly_errors("direct logit attribution"):
        _dla_section(name, spec)
    with common.friendly_errors("task-head lens"):
        _task_lens_section()


render()
