"""The report's first pages: the paper's claims with their verdicts, then one summary per model."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from workbench import compare
from workbench.artifacts import HOW_TO_CREATE
from workbench.figures import figure_training_curve
from workbench.report.context import Context, fmt
from workbench.report.document import Block, Claims, Missing, Paragraph, Section

EXPERIMENT_COMMAND = "atinuke experiment --arms atinuke,bert,minilm --seeds 3 --tasks all --scale tiny --out runs/experiment"


def _verdict_class(verdict: str) -> str:
    for word in ("supported", "contradicted", "inconclusive"):
        if verdict.startswith(word):
            return word
    return "none"


def claims_table(ctx: Context) -> pd.DataFrame:
    """The claims table, the same function of the same runs as the Claims page and ``workbench claims``.

    A report of one runs directory (the app's default, ``workbench report --runs runs``) judges the claims on
    that directory exactly as ``workbench claims --runs runs`` does (:func:`workbench.verdicts.claims_of`);
    a report of several chosen runs, or scoped to chosen models, judges them on the experiment, pretraining
    runs and probes among those.
    Either way with the claims' own resamples, not the report's ``--n-boot``.
    """
    from workbench.claims import evaluate_claims
    from workbench.verdicts import claims_of

    inputs = ctx.inputs
    if len(inputs.roots) == 1:
        return claims_of(inputs.roots[0])
    root = inputs.experiment.parent if inputs.experiment is not None else None
    return evaluate_claims(root=root, experiment=inputs.experiment, pretrain=inputs.pretrain, probes=inputs.probes,
                           search=False)


def findings(ctx: Context) -> Section:
    """The claims table: each claim as the paper states it, its verdict and why, the scores and the evidence."""
    from workbench.verdicts import blank, reason, relative_paths

    inputs = ctx.inputs
    claims = claims_table(ctx)
    ctx.claims = claims
    ctx.doc.keep("claims", claims)
    root = inputs.roots[0] if len(inputs.roots) == 1 else None
    section = Section("Findings: the paper's claims", intro=(
        "Benchmark verdicts come from the controlled experiment only: Atinuke against a BERT encoder of the same "
        "size trained on the same tokens with the same recipe (arm bert), over seeds and examples, Holm-corrected. "
        "A model at its task's trivial baseline makes the claim 'not measurable at this budget'. MiniLM is a "
        "pretrained reference, never the comparator. The Claims page and `workbench claims` show the same table."))
    rows = []
    for claim in claims.to_dict(orient="records"):
        comparator = f"{fmt(claim['comparator_score'])} ({claim['comparator']})" if not blank(claim.get("comparator")) \
            else fmt(claim["comparator_score"])
        why = reason(claim)
        verdict = _verdict_text(claim) + (f" — {why}" if why else "")
        rows.append(dict(statement=claim["statement"], verdict=verdict,
                         verdict_class=_verdict_class(str(claim["verdict"])), atinuke=fmt(claim["atinuke_score"]),
                         comparator=comparator, trivial=fmt(claim["trivial_score"]), p=_p_text(claim),
                         evidence=relative_paths(str(claim["evidence"] or ""), root),
                         provenance="" if blank(claim.get("provenance")) else str(claim["provenance"])))
    section.blocks.append(Claims(rows))
    if inputs.experiment is None:
        section.blocks.append(Missing("controlled experiment (the benchmark verdicts need it)", EXPERIMENT_COMMAND))
    if inputs.experiment is not None:
        section.blocks.append(_competence_table(ctx, inputs.experiment))
    section.blocks.append(Paragraph("Scores are each task's headline metric (MCC, Pearson, corpus CoNLL F1, micro "
                                    "SRL F1, SQuAD F1, accuracy or F1), averaged over runs; p is Welch's t over runs "
                                    "(dev examples resampled jointly) after Holm correction, with the raw p and its "
                                    "Monte Carlo error in brackets; an inconclusive verdict gives the smallest "
                                    "difference detectable with 80% power. Full table: "
                                    f"{ctx.doc.data_dir_name}/claims.csv.", "note"))
    return section


def _present(value) -> bool:
    return value is not None and not pd.isna(value)


def _verdict_text(claim: dict) -> str:
    """The verdict with its scope (supported, contradicted) or its minimum detectable effect (inconclusive)."""
    verdict = str(claim["verdict"])
    if verdict in ("supported", "contradicted") and claim.get("scope"):
        return f"{verdict} ({claim['scope']})"
    if verdict == "inconclusive" and _present(claim.get("mde")):
        return f"{verdict} (smallest detectable difference {claim['mde']:.3g})"
    return verdict


def _p_text(claim: dict) -> str:
    if not _present(claim.get("p_adjusted")):
        return fmt(claim.get("p_adjusted"))
    return f"{fmt(claim['p_adjusted'])} (p {claim['p_value']:.3g} ± {claim.get('p_mc_error') or 0:.1g})"


def _competence_table(ctx: Context, experiment_dir) -> Block:
    """Has each arm learnt each task? The floors the verdicts rest on (``workbench.competence``)."""
    from workbench.competence import competence
    from workbench.experiment_runs import load_experiment

    table = competence(load_experiment(experiment_dir))  # the Claims page's resamples, not --n-boot
    table = table.sort_values(["verdict", "task", "arm"], ascending=[False, True, True])  # "not shown" first
    return ctx.doc.table(table, "Has each model learnt each task? Each arm's headline metric against its task's "
                         "trivial baseline scored by the same metric on the same examples (one-sided t over runs, "
                         "examples resampled jointly, α = 0.05). A comparison with a model not shown above the floor "
                         "is no evidence.",
                         name="competence", max_rows=30,
                         columns=["arm", "task", "seeds", "metric", "score", "trivial_score", "p_value", "p_mc_error",
                                  "mde", "verdict"])


def _trivial(task: str, predictions: pd.DataFrame) -> Optional[float]:
    from workbench.experiment_runs import trivial_example_scores

    try:
        return float(np.mean(trivial_example_scores(task, predictions["gold"])))
    except (KeyError, ValueError, TypeError):
        return None


def task_scores(ctx: Context) -> pd.DataFrame:
    """One row per (model, task): the headline metric, the mean example score and the trivial baseline's."""
    if "task_scores" in ctx.cache:
        return ctx.cache["task_scores"]
    rows = []
    for run in ctx.inputs.finetune:
        predictions = ctx.predictions(run)
        headline = str(run.metrics.get("headline_metric") or "accuracy")
        example = predictions["example_f1"] if "example_f1" in predictions else predictions["correct"]
        rows.append(dict(model=run.model, task=run.task, metric=headline, value=run.metrics.get(headline),
                         example_score=float(example.astype(float).mean()), trivial=_trivial(run.task, predictions),
                         n=len(predictions), data=", ".join(sorted(predictions["provenance"].dropna().astype(str).unique()))
                         if "provenance" in predictions else ""))
    frame = pd.DataFrame(rows, columns=["model", "task", "metric", "value", "example_score", "trivial", "n", "data"])
    ctx.cache["task_scores"] = frame
    return frame


def probe_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, probing task): the best layer, its score, the control task's score there (selectivity,
    Hewitt and Liang 2019) and the embedding layer's score (what the contextual layers add)."""
    rows = []
    for task in sorted(results["task"].astype(str).unique()):
        overlay = compare.probe_overlay(results, task)
        for model, group in overlay.groupby("model", sort=False):
            real = group[group["control"].isin(["none", "", "real"])].set_index("layer")["mean"]
            if real.empty:
                continue
            control = group[group["control"] == "control_task"].set_index("layer")["mean"]
            best = int(real.idxmax())
            rows.append(dict(model=model, task=task, metric=str(group["metric"].iloc[0]), best_layer=best,
                             best=float(real.max()), layer_0=float(real.get(0, np.nan)),
                             control_at_best=float(control.get(best, np.nan)),
                             selectivity=float(real.max() - control.get(best, np.nan))))
    return pd.DataFrame(rows, columns=["model", "task", "metric", "best_layer", "best", "layer_0", "control_at_best",
                                       "selectivity"])


def faithfulness_headline(ctx: Context, model: str) -> pd.DataFrame:
    """Comprehensiveness and sufficiency (ERASER AOPC) per task and method of ``model``'s attribution runs."""
    rows = []
    for run in ctx.inputs.attributions:
        table = run.table("faithfulness") if run.model == model else None
        if table is None:
            continue
        wide = table.pivot_table(index="method", columns="metric", values="mean", sort=False)
        for method, values in wide.iterrows():
            rows.append(dict(task=run.task, method=method, **{k: values.get(k) for k in (
                "comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc") if k in values}))
    return pd.DataFrame(rows)


def _pretraining_blocks(ctx: Context, model: str) -> list[Block]:
    blocks: list[Block] = []
    for run in [r for r in ctx.inputs.pretrain if r.name == model]:
        s = run.summary
        params = s.get("parameters", {})
        facts = dict(arch=s.get("arch"), objective=s.get("objective"),
                     parameters=params.get("total") if isinstance(params, dict) else params, steps=s.get("steps"),
                     tokens=s.get("tokens"), val_ppl=s.get("val_ppl"), test_ppl=s.get("test_ppl"),
                     unigram_ppl=s.get("val_unigram_ppl"), seed=s.get("seed"))
        facts = {k: v for k, v in facts.items() if v is not None}
        blocks.append(ctx.doc.table(pd.DataFrame([facts]), "Pretraining: validation and test (pseudo-)perplexity "
                                    "against the unigram model's, which knows only word frequencies.",
                                    name=f"pretrain_{model}_summary"))
        metrics = run.metrics()
        if metrics is not None and {"step", "loss"} <= set(metrics.columns) and len(metrics):
            ctx.doc.keep(f"pretrain_{model}_metrics", metrics)
            blocks.append(ctx.doc.figure(
                figure_training_curve(metrics, s.get("val_unigram_ppl")),
                "Training loss (left axis) and validation perplexity (right axis, log scale) per step. The dashed "
                "line is the unigram perplexity: a model below it has learnt more than word frequencies.",
                width=ctx.width))
    return blocks


def _model_blocks(ctx: Context, model: str) -> list[Block]:
    blocks = _pretraining_blocks(ctx, model)
    scores = task_scores(ctx)
    mine = scores[scores["model"] == model]
    if len(mine):
        others = scores[scores["model"] != model]
        table = mine[["task", "metric", "value", "example_score", "trivial", "n"]].copy()
        table["other_models"] = [", ".join(f"{o.model} {o.example_score:.3f}" for o in others[others["task"] == t].itertuples())
                                 for t in table["task"]]
        blocks.append(ctx.doc.table(
            table, "Fine-tuned tasks: the headline metric, then the mean example score beside the trivial baseline's "
            "(majority class, always abstain, all-O, no cluster) and the other models' on the same examples. A score "
            "at the trivial baseline means the model has not learnt the task.", name=f"tasks_{model}", max_rows=20))
    if ctx.inputs.probes is not None:
        probes = probe_summary(ctx.inputs.probes)
        probes = probes[probes["model"] == model]
        if len(probes):
            blocks.append(ctx.doc.table(
                probes.drop(columns=["model"]), "Probes: the best layer, its score, the control task's score at that "
                "layer (selectivity = the difference; Hewitt and Liang, 2019) and layer 0, the embeddings: a best "
                "layer of 0 means the contextual layers add nothing decodable.", name=f"probes_summary_{model}"))
    faithful = faithfulness_headline(ctx, model)
    if len(faithful):
        blocks.append(ctx.doc.table(
            faithful, "Faithfulness of the attributions: comprehensiveness (higher: removing the top tokens changes "
            "the prediction more) and sufficiency (lower: the top tokens alone keep it), ERASER AOPC (DeYoung et al., "
            "2020).", name=f"faithfulness_headline_{model}"))
    return blocks


def models(ctx: Context) -> Section:
    """One summary per model: pretraining, each task's score beside the trivial baseline and the others,
    the probes' best layer and selectivity, the headline faithfulness figures."""
    section = Section("Models at a glance")
    if not ctx.models():
        section.blocks.append(Missing("model runs", HOW_TO_CREATE["pretrain"]))
        return section
    ctx.per_model(section, lambda model: _model_blocks(ctx, model) or [Missing(
        f"pretraining, fine-tuning, probing or attribution runs of {model}", HOW_TO_CREATE["finetune"])])
    return section
