"""The interpretability sections: attention, attribution with its faithfulness checks, and probing."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from workbench import compare
from workbench.artifacts import HOW_TO_CREATE
from workbench.attribution import Attribution
from workbench.figures import (
    agreement_figure,
    curves_figure,
    faithfulness_figure,
    figure_probe_overlay,
    layer_head_grid,
    randomization_figure,
    rollout_figure,
)
from workbench.report.context import Context
from workbench.report.document import Block, Highlight, Missing, Paragraph, Section
from workbench.report.findings import probe_summary
from workbench.report.inputs import AttributionRun, MechanismRun, SAERun

METHODS = "integrated_gradients,saliency,attention"


def attribute_command(run: Optional[AttributionRun], model: str = "MODEL", task: str = "TASK") -> str:
    """The command that (re)creates an attribution run with its evaluation."""
    out = str(run.path) if run is not None else f"runs/attributions/{model}-{task}"
    overwrite = " --overwrite" if run is not None else ""
    recorded = run.summary.get("model_path") if run is not None else None
    model_dir = recorded or (f"runs/finetune/{model}/{task}" if task != "TASK" else "MODEL_DIR")
    methods = ",".join(run.summary.get("methods") or []) if run is not None and run.summary.get("methods") else METHODS
    limit = run.summary.get("n_examples", 40) if run is not None else 40
    task_flag = f" --task {task}" if task not in ("text", "") else ""
    return (f"workbench attribute --model {model_dir}{task_flag} --method {methods} --limit {limit} "
            f"--evaluate{overwrite} --out {out}")


def _runs(ctx: Context, model: str, task: Optional[str] = None) -> list[AttributionRun]:
    return [r for r in ctx.inputs.attributions if r.model == model and (task is None or r.task == task)]


# --------------------------------------------------------------------------------------------- attention

def _rollout_matrix(table: pd.DataFrame) -> tuple[np.ndarray, list[str], str]:
    example = str(table["example_id"].iloc[0])
    rows = table[table["example_id"].astype(str) == example]
    n = int(max(rows["query_index"].max(), rows["key_index"].max())) + 1
    matrix = np.zeros((n, n))
    matrix[rows["query_index"].to_numpy(), rows["key_index"].to_numpy()] = rows["weight"].to_numpy()
    tokens = rows.drop_duplicates("query_index").sort_values("query_index")["query_token"].astype(str).tolist()
    return matrix, tokens, example


def _attention_blocks(ctx: Context, model: str) -> list[Block]:
    blocks: list[Block] = []
    for run in _runs(ctx, model):
        heads, rollout = run.table("attention_heads"), run.table("rollout")
        if heads is None and rollout is None:
            continue
        if heads is not None:
            ctx.doc.keep(f"attention_heads_{model}_{run.task}", heads)
            blocks.append(ctx.doc.figure(
                layer_head_grid(heads, "entropy", title=f"Attention entropy per head ({run.task})"),
                f"Mean entropy (nats) of each head's attention over the {run.task} examples' tokens (Clark et al., "
                "2019): low entropy = a focused head, high = attention spread evenly. Rows are layers, columns heads.",
                width=ctx.width))
            top = heads.sort_values("attn_cls", ascending=False)
            blocks.append(ctx.doc.table(
                top[["layer", "head", "entropy", "mean_distance", "attn_cls", "attn_sep", "attn_punct"]],
                "Heads by the attention mass a query puts on [CLS] (then [SEP] and punctuation): heads that park "
                "their attention on special tokens are a known no-op pattern.", name=f"attention_heads_{model}_{run.task}",
                max_rows=8))
        if rollout is not None and len(rollout):
            matrix, tokens, example = _rollout_matrix(rollout)
            blocks.append(ctx.doc.figure(
                rollout_figure(matrix, tokens, title=f"Attention rollout, example {example}"),
                "Attention rollout after the last layer (Abnar and Zuidema, 2020): attention matrices multiplied "
                "through the layers with the residual added, heads averaged. Row = query token, column = the input "
                "token it draws on; rows sum to 1.", width=ctx.width))
    return blocks


def attention(ctx: Context) -> Section:
    """Head statistics and rollout, from the attribution runs' ``--evaluate`` tables."""
    section = Section("Attention", intro=(
        "Where each head looks. Attention weights are not explanations on their own (Jain and Wallace, 2019); "
        "the attribution section tests them against gradients."))
    with_attention = [m for m in ctx.models() if _attention_blocks_available(ctx, m)]
    if not with_attention:
        section.blocks.append(Missing("attention statistics", attribute_command(None)))
        return section
    ctx.per_model(section, lambda m: _attention_blocks(ctx, m) or [Missing(f"attention statistics of {m}",
                                                                          attribute_command(None, m))],
                  models=with_attention)
    return section


def _attention_blocks_available(ctx: Context, model: str) -> bool:
    return any((r.path / "attention_heads.parquet").is_file() or (r.path / "rollout.parquet").is_file()
               for r in _runs(ctx, model))


# --------------------------------------------------------------------------------------------- attribution

def _heatmap_examples(attribution: Attribution, n: int = 2) -> list[str]:
    """The first example, and the one on which the methods disagree most (lowest mean rank correlation)."""
    ids = attribution.example_ids
    if len(ids) <= 1 or attribution.frame["method"].nunique() < 2:
        return ids[:n]
    frame = attribution.frame.assign(magnitude=attribution.frame["score"].abs())
    scale = frame.groupby(["example_id", "method"])["magnitude"].transform("max").replace(0, 1)
    frame = frame.assign(relative=frame["magnitude"] / scale)  # methods on one scale: |score| / max |score|
    spread = frame.groupby(["example_id", "token_index"])["relative"].agg(lambda s: float(np.ptp(s.to_numpy())))
    worst = spread.groupby(level=0).mean().idxmax()
    return list(dict.fromkeys([ids[0], str(worst)]))[:n]


def highlight(attribution: Attribution, example_id: str) -> Highlight:
    """The words of one example shaded by each method's score (sub-token scores summed per word)."""
    words = attribution.word_scores()
    words = words[words["example_id"] == str(example_id)]
    rows = []
    for method, group in words.groupby("method", sort=False):
        group = group.sort_values("word_index")
        scale = float(group["score"].abs().max()) or 1.0
        rows.append((str(method), [(str(w), float(v) / scale) for w, v in zip(group["word"], group["score"])]))
    targets = ", ".join(dict.fromkeys(words["target"].astype(str))) or "the prediction"
    return Highlight(rows, f"Example {example_id}: each word shaded by its attribution (sub-token scores summed), "
                           f"scaled per method by the largest |score|; red raises the explained output ({targets}), "
                           "blue lowers it.")


def _attribution_blocks(ctx: Context, run: AttributionRun) -> list[Block]:
    blocks: list[Block] = []
    attribution = Attribution(run.attributions())
    for example in _heatmap_examples(attribution):
        blocks.append(highlight(attribution, example))
    faithfulness = run.table("faithfulness")
    if faithfulness is None:
        blocks.append(Missing(f"faithfulness evaluation of {run.label} (the run was made without --evaluate)",
                              attribute_command(run, run.model, run.task)))
        return blocks
    key = f"{run.model}_{run.task}"
    blocks.append(ctx.doc.figure(
        faithfulness_figure(faithfulness),
        "Faithfulness per method with 95% bootstrap CIs over examples. Comprehensiveness (higher is better) and "
        "sufficiency (lower is better) are ERASER's AOPC (DeYoung et al., 2020); deletion AUC (lower) and insertion "
        "AUC (higher) follow Petsiuk et al. (2018); token F1 and AUPRC, when present, measure plausibility against "
        "gold rationales.", width=ctx.width))
    blocks.append(ctx.doc.table(faithfulness.drop(columns=["task"], errors="ignore"),
                                "Every faithfulness and plausibility measure per method.", name=f"faithfulness_{key}",
                                max_rows=24))
    curves = run.table("curves")
    if curves is not None and len(curves):
        blocks.append(ctx.doc.figure(
            curves_figure(curves),
            "Deletion and insertion curves (Petsiuk et al., 2018): the explained output as the top-ranked tokens are "
            "removed (deletion: a faithful ranking drops fast) or restored into a blank input (insertion: rises fast).",
            width=ctx.width))
    agreement = run.table("agreement")
    if agreement is not None and len(agreement):
        ctx.doc.keep(f"agreement_{key}", agreement)
        blocks.append(ctx.doc.figure(
            agreement_figure(agreement),
            "Agreement between methods: mean Kendall tau between their token rankings over the examples (1 = the same "
            "ranking, 0 = unrelated). Methods that disagree cannot all be right.", width=ctx.width))
        versus = agreement[(agreement["method_a"] == "attention") | (agreement["method_b"] == "attention")]
        if len(versus):
            blocks.append(ctx.doc.table(
                versus, "Attention against the gradient methods (Jain and Wallace, 2019): low agreement means the "
                "attention weights do not rank tokens the way the model's gradients do.", name=f"attention_vs_gradients_{key}"))
    randomization = run.table("randomization")
    if randomization is not None and len(randomization):
        ctx.doc.keep(f"randomization_{key}", randomization)
        blocks.append(ctx.doc.figure(
            randomization_figure(randomization),
            "Sanity check (Adebayo et al., 2018): rank correlation of the attributions with the trained model's as "
            "the weights are re-initialised from the top layer down. A method that still correlates after the model "
            "is randomised explains the input, not the model.", width=ctx.width))
    return blocks


def attribution(ctx: Context) -> Section:
    """Per task: example heatmaps, faithfulness with CIs, curves, method agreement and the randomisation check."""
    section = Section("Attribution and faithfulness", intro=(
        "Which input tokens each prediction depends on (Captum), and whether the attributions are faithful to the "
        "model: what removing the top tokens does, whether methods agree, and whether they survive randomising the "
        "weights."))
    if not ctx.inputs.attributions:
        section.blocks.append(Missing("attributions", attribute_command(None)))
        return section
    ctx.per_task(section, ctx.inputs.attributions, "Attribution", lambda run: _attribution_blocks(ctx, run),
                 lambda model, task: Missing(f"attributions of {model} on {task}", attribute_command(None, model, task)))
    return section


# --------------------------------------------------------------------------------------------- probing

def probing(ctx: Context) -> Section:
    """Probe curves per probing task (all models on one relative-depth axis), with controls and a summary."""
    section = Section("Probing", intro=(
        "What is linearly decodable from each layer, against a control task of the same output space (Hewitt and "
        "Liang, 2019). Decodable is not used: probes support 'inspectable', not 'interpretable'."))
    results = ctx.inputs.probes
    if results is None or results.empty:
        section.blocks.append(Missing("probe results", HOW_TO_CREATE["probes"]))
        return section
    ctx.doc.keep("probes", results)
    for task in sorted(results["task"].astype(str).unique()):
        overlay = compare.probe_overlay(results, task)
        section.blocks.append(ctx.doc.figure(
            figure_probe_overlay(overlay),
            f"Probe {overlay['metric'].iloc[0]} on {task} per layer (x: layer / last layer, so models of different "
            "depth share an axis; 0 = the embeddings), one line per model and control, error bars over seeds. The "
            "gap between a model's line and its control line is the selectivity."))
    section.blocks.append(ctx.doc.table(probe_summary(results), "Best layer, selectivity and the embedding layer per "
                                        "model and probing task.", name="probes_summary"))
    return section


# --------------------------------------------------------------------------------------------- features

SAE_METRICS = ("l0", "fve", "loss_recovered", "dead_fraction", "dense_fraction", "n_tokens")


def _sae_blocks(ctx: Context, run: SAERun) -> list[Block]:
    metrics = run.metrics
    config = metrics.get("config", {})
    sides = {"trained model": metrics.get("sae", {})}
    if "control" in metrics:
        sides["random-init control"] = metrics["control"]
    table = pd.DataFrame([{"metric": m, **{name: side.get(m) for name, side in sides.items()}} for m in SAE_METRICS])
    key = ctx.doc.safe(run.path.name)
    blocks: list[Block] = [ctx.doc.table(
        table, f"{config.get('kind', '?')} SAE at {metrics.get('hook', config.get('hook', '?'))}, width "
        f"{config.get('width', '?')}, k {config.get('k', '?')}, on held-out text: L0 (active latents per token), "
        "fraction of variance explained, loss recovered when the reconstruction is spliced in "
        f"({metrics.get('sae', {}).get('loss_kind', '?')}), dead and dense latents; beside the same SAE trained "
        "on a randomly re-initialised copy of the model (Heap et al., 2025). Metrics as good on the random "
        "model say little about what the trained model learnt.", name=f"sae_{key}_metrics")]
    features, contexts = run.table("features"), run.table("contexts")
    if features is not None and len(features):
        common = features.sort_values("frequency", ascending=False)
        columns = ["feature", "frequency", "max_activation", "top_tokens", "promoted_tokens"]
        columns += [c for c in ("top_pos", "pos_lift", "top_dep", "dep_lift", "top_srl", "srl_lift") if c in common]
        blocks.append(ctx.doc.table(common[columns],
                                    "The most frequent latents, the tokens they fire on most, the output tokens "
                                    "their decoder directions promote through the unembedding and (silver, spaCy) "
                                    "the part of speech, dependency relation and role they pick out, each with its "
                                    "lift over the base rate.",
                                    name=f"sae_{key}_features", max_rows=8))
        labels = run.table("labels")
        if labels is not None and {"precision", "lift"} <= set(labels.columns):
            specific = labels[(labels["count"] >= 5) & ~labels["label"].isin(["O", "X"])]
            specific = specific.sort_values(["precision", "lift"], ascending=False).drop_duplicates(["kind", "label"])
            if len(specific):
                blocks.append(ctx.doc.table(
                    specific[["kind", "label", "feature", "count", "precision", "lift"]],
                    "The most label-specific latents: for each silver label (part of speech, entity type, "
                    "dependency relation, PropBank-style role derived from the dependency arcs), the latent whose "
                    "activations fall on it most often (precision, at least 5 activations), with its lift.",
                    name=f"sae_{key}_labels", max_rows=10))
        if contexts is not None and len(contexts):
            import json

            rows = []
            for feature in common["feature"].head(4):
                top = contexts[(contexts["feature"] == feature) & (contexts["rank"] == 0)]
                if len(top):
                    item = top.iloc[0]
                    values = json.loads(item["activations"])
                    scale = max(max(values), 1e-12)
                    rows.append((f"latent {feature}", [(t, v / scale) for t, v in zip(json.loads(item["tokens"]), values)]))
            if rows:
                blocks.append(Highlight(rows, "The top-activating context of each of those latents, tokens shaded by "
                                              "the latent's activation (the feature pages of the app show more)."))
    return blocks


def features(ctx: Context) -> Section:
    """SAE metrics beside the random-model control, the most frequent latents and their top contexts."""
    section = Section("Dictionary features", intro=(
        "Sparse autoencoders (Bricken et al., 2023; Gao et al., 2024) trained on a hook's activations name "
        "directions the layer uses; the random-model control is built in."))
    if not ctx.inputs.sae:
        section.blocks.append(Missing("SAE runs", HOW_TO_CREATE["sae"]))
        return section
    for run in ctx.inputs.sae:
        section.subsections.append(Section(f"Features: {run.model}, {run.metrics.get('hook', '?')}", _sae_blocks(ctx, run)))
    return section


# --------------------------------------------------------------------------------------------- mechanisms

def mechanisms(ctx: Context) -> Section:
    """Logit/tuned lens per layer and patching heatmaps (exact beside attribution patching)."""
    from scipy.stats import spearmanr

    from workbench.figures import lens_figure, patching_heatmap

    section = Section("Mechanisms", intro=(
        "What each layer would output (logit lens, nostalgebraist 2020; tuned lens, Belrose et al. 2023), "
        "which components carry a clean-vs-corrupted difference (activation patching, Meng et al. 2022; "
        "attribution patching, Nanda 2023) and which edges between them (circuit discovery by EAP-IG, Hanna et "
        "al. 2024)."))
    if not ctx.inputs.mechanisms:
        section.blocks.append(Missing("lens or patching runs", "workbench lens --model RUN --out runs/lens/M; "
                                      "workbench patch --model RUN --clean TEXT --corrupted TEXT --out runs/patch/M"))
    if not any(run.kind == "circuit" for run in ctx.inputs.mechanisms):
        section.blocks.append(Missing("a circuit run", "workbench circuit --model RUN --clean TEXT --corrupted TEXT "
                                      "--fraction 0.9 --out runs/circuit/M"))
    for run in ctx.inputs.mechanisms:
        table = run.table()
        key = ctx.doc.safe(f"{run.kind}_{run.path.name}")
        if run.kind == "circuit":
            section.subsections.append(Section(f"Circuit: {run.model}", _circuit_blocks(ctx, run, table, key)))
            continue
        if run.kind == "dla":
            section.subsections.append(Section(f"Direct logit attribution: {run.model}", _dla_blocks(ctx, run, table,
                                                                                                   key)))
            continue
        if run.kind == "lens":
            blocks: list[Block] = [ctx.doc.figure(lens_figure(table), (
                "KL divergence (nats, mean per held-out token) from the model's final output distribution to each "
                "layer's lens; 0 = the embeddings. The last layer's lens is the output itself (KL 0); a tuned lens "
                "below the logit lens means the layer holds the answer in another basis."), width=ctx.width),
                ctx.doc.table(table, "The lenses per layer, with how often their top token is the model's.",
                              name=key)]
            section.subsections.append(Section(f"Lens: {run.model}", blocks))
            continue
        blocks = [Paragraph(f"Clean: {run.summary.get('clean', '?')} / corrupted: {run.summary.get('corrupted', '?')}. "
                            f"Metric: {run.summary.get('metric', '?')}.", "note")]
        methods = list(dict.fromkeys(table["method"]))
        for method in methods:
            part = table[table["method"] == method]
            if "head" in part or "position" in part:
                blocks.append(ctx.doc.figure(patching_heatmap(part, f"{method} patching"), (
                    f"Normalised effect of restoring each component from the clean run ({method}): 1 restores the "
                    "clean metric, 0 leaves the corrupted one, negative moves away from the clean."), width=ctx.width))
        if "exact" in methods and len(methods) > 1:
            exact = table[table["method"] == "exact"]["effect"].to_numpy()
            rho = {m: float(spearmanr(exact, table[table["method"] == m]["effect"].to_numpy())[0])
                   for m in methods if m != "exact"}
            blocks.append(Paragraph("Rank correlation with exact patching: " + ", ".join(
                f"{m} {v:.3f}" for m, v in rho.items()) + "."))
        ctx.doc.keep(key, table)
        section.subsections.append(Section(f"Patching: {run.model}, {run.summary.get('component', '')}", blocks))
    return section


def _dla_blocks(ctx: Context, run: MechanismRun, table: pd.DataFrame, key: str) -> list[Block]:
    """A ``workbench dla`` run: the parts beside their sum and the logit, and whether the split is exact."""
    from workbench.figures import dla_figure

    s = run.summary
    logit = float(s.get("logit", float("nan")))
    exactness = ("Exact (Elhage et al. 2021): " if s.get("exact") else "Last block only: ") + str(s.get("why", ""))
    ctx.doc.keep(key, table)
    return [Paragraph(f"Text: {s.get('text', '?')}; read at position {s.get('position', '?')} ({s.get('token', '?')}) "
                      f"by the {s.get('readout', '?')}. Logit {logit:.5g}; the parts sum to "
                      f"{float(s.get('sum_of_parts', float('nan'))):.5g}. {exactness}.", "note"),
            ctx.doc.figure(dla_figure(table, logit), (
                "Each part's contribution to the read-out (red raises it, blue lowers it), in model order, then the "
                "sum of the parts and the logit computed by the model's own forward pass (grey)."), width=ctx.width)]


def _circuit_blocks(ctx: Context, run: MechanismRun, table: pd.DataFrame, key: str) -> list[Block]:
    """A ``workbench circuit`` run: the graph, what it recovers, and its edges."""
    from workbench.figures import circuit_graph

    summary = run.summary
    kept = table[table["in_circuit"]].sort_values("rank")
    if "node" in table:  # a node-level circuit (post-norm models, or --level nodes)
        ctx.doc.keep(key + "_all", table)
        return [
            Paragraph(f"Clean: {summary.get('clean', '?')} / corrupted: {summary.get('corrupted', '?')}. Metric: "
                      f"{summary.get('metric', '?')}. Node level: {len(kept)} of {len(table)} nodes (heads, MLPs, "
                      f"embeddings), ranked by {summary.get('method', '?')}, recover "
                      f"{float(summary.get('faithfulness', float('nan'))):.3f} of the metric (asked: "
                      f"{summary.get('fraction', '?')}) with every other node "
                      f"{'mean-ablated' if summary.get('ablation') == 'mean' else 'patched from the corrupted run'}.",
                      "note"),
            ctx.doc.figure(circuit_graph(table, f"Node circuit: {run.model}"), (
                "The discovered node circuit on a layer x head grid (plus each layer's MLP and the embeddings): "
                "colour is the node's normalised attribution score (the share of the clean-minus-corrupted metric "
                "it carries, first order), and the kept nodes are outlined. Nodes, not edges: a post-norm block's "
                "layer norm sits on the residual stream, which is then no sum of component outputs."),
                width=ctx.width),
            ctx.doc.table(kept[["rank", "node", "score", "normalized"]], "The circuit's nodes, by rank.", name=key)]
    blocks: list[Block] = [
        Paragraph(f"Clean: {summary.get('clean', '?')} / corrupted: {summary.get('corrupted', '?')}. Metric: "
                  f"{summary.get('metric', '?')}. {len(kept)} of {len(table)} edges, ranked by "
                  f"{summary.get('method', '?')}, recover {float(summary.get('faithfulness', float('nan'))):.3f} of "
                  f"the metric (asked: {summary.get('fraction', '?')}) with every other edge "
                  f"{'mean-ablated' if summary.get('ablation') == 'mean' else 'patched from the corrupted run'}.",
                  "note"),
        ctx.doc.figure(circuit_graph(kept, f"Circuit: {run.model}"), (
            "The discovered circuit: nodes by depth (embeddings, each layer's heads by index and its MLP, the "
            "read-out); one line per kept edge, its width the edge's normalised EAP-IG score (the share of the "
            "clean-minus-corrupted metric it carries, first order) and its colour the sign (red supports the clean "
            "behaviour, blue opposes it). Hover names the input an edge enters (q, k or v)."), width=ctx.width),
        ctx.doc.table(kept[["rank", "edge", "score", "normalized"]], "The circuit's edges, by rank.", name=key)]
    ctx.doc.keep(key + "_all", table)
    return blocks


# ----------------------------------------------------------------------------------------------- dynamics

def dynamics(ctx: Context) -> Section:
    """Training dynamics over kept snapshots (``workbench dynamics``): the headline curves of every run, aligned
    by training tokens, and when each made half of its change."""
    import pandas as pd

    from workbench.dynamics import curves
    from workbench.figures import dynamics_figure

    section = Section("Training dynamics", intro=(
        "How the held-out loss, a UPOS probe and its control task (Hewitt & Liang 2019), attention heads "
        "(Clark et al. 2019; induction scores, Olsson et al. 2022), the logit lens, the residual stream's effective "
        "rank and a small SAE's dictionary develop over the snapshots a pretraining run kept at log-spaced steps."))
    if not ctx.inputs.dynamics:
        section.blocks.append(Missing("training dynamics", "atinuke pretrain ... --keep-log-checkpoints --out RUN; "
                                      "workbench dynamics --run RUN [--run RUN2] --out runs/dynamics/NAME"))
    for directory in ctx.inputs.dynamics:
        table = pd.read_parquet(directory / "dynamics.parquet")
        headline = pd.read_csv(directory / "headline.csv")
        key = ctx.doc.safe(f"dynamics_{directory.name}")
        blocks: list[Block] = [
            ctx.doc.figure(dynamics_figure(curves(table), headline), (
                "One panel per curve, one line per run, against training tokens (log axis; step 0 drawn at half "
                "the first snapshot's tokens). A star marks the first snapshot where the curve has made half of its "
                "change from the first snapshot to the last."), width=ctx.width),
            ctx.doc.table(headline, "Per run and curve: the first and final values and the step (and training "
                                    "tokens) at which the curve had made half of its change.", name=key)]
        section.subsections.append(Section(f"Dynamics: {', '.join(dict.fromkeys(table['run']))}", blocks))
    return section
