"""The paper's claims, judged on the controlled experiment (``atinuke experiment``).

*Engineering A Large Language Model From Scratch* (arXiv 2401.16736) claims that Atinuke improves SQuAD, GLUE,
SNLI, coreference and SRL, models language well, is efficient and is interpretable. A benchmark claim is
judged only on a comparison that can carry it:

- the comparator is the same-budget baseline (arm ``bert``: a BERT encoder of Atinuke's size trained on the
  same tokens with the same recipe); the pretrained all-MiniLM-L6-v2 is shown as a reference row, never as a
  comparator;
- each model must first clear its task's trivial baseline (majority class, mean score, always abstain,
  all-O, no cluster) on the same dev examples, with a significant paired test; a task where either model is
  at the floor is "not measurable at this budget";
- the difference is tested with a two-stage (hierarchical) paired bootstrap that resamples seeds and then
  examples within each seed (Davison and Hinkley, 1997, §3.8; the seed-level variance of Bouthillier et al.,
  2021, arXiv 2103.03098), so that an advantage present in one seed only does not survive;
- the benchmark families are corrected together with Holm's step-down method (Holm, 1979).

The per-example score of every task is the predictions table's ``example_f1`` (accuracy for classification,
token F1 for QA, argument F1 per predicate for SRL, CoNLL F1 per document for coreference): the quantity the
paired tests resample. Headline metrics (MCC, Pearson, CoNLL F1...) are quoted beside them, mean ± sd over
seeds.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import pandas as pd

from atinuke.errors import UserInputError
from workbench.artifacts import (
    HOW_TO_CREATE,
    PretrainRun,
    find_pretrain_runs,
    find_probe_results,
    provenance_kind,
    runs_dir,
)
from workbench.experiment_runs import (
    ALPHA,
    Experiment,
    expand_tasks,
    find_experiment,
    headline,
    load_experiment,
    task_kind,
    trivial_example_scores,
)
from workbench.stats import N_BOOT, BootstrapTest, hierarchical_bootstrap, holm  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # annotations only
    pass

logger = logging.getLogger(__name__)

SUBJECT = "atinuke"
COMPARATOR = "bert"
REFERENCE = "minilm"

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
FLOOR = "not measurable at this budget"
NO_EVIDENCE = "no evidence"
MEASURED = "measured (side by side)"

CLAIM_COLUMNS = ("claim", "statement", "verdict", "comparator", "seeds", "atinuke_score", "comparator_score",
                 "trivial_score", "reference_score", "p_value", "p_adjusted", "p_resolution", "provenance", "evidence")

# (key, the claim as the paper states it, benchmark family or None)
PAPER_CLAIMS: tuple[tuple[str, str, Optional[str]], ...] = (
    ("squad", "Atinuke improves extractive question answering (SQuAD).", "squad"),
    ("glue", "Atinuke improves the GLUE benchmark.", "glue"),
    ("snli", "Atinuke improves natural language inference (SNLI).", "nli"),
    ("coref", "Atinuke improves coreference resolution.", "coref"),
    ("srl", "Atinuke improves semantic role labelling.", "srl"),
    ("perplexity", "Atinuke models language well (low perplexity).", None),
    ("efficiency", "Atinuke is efficient (strong results at small size and cost).", None),
    ("interpretability", "Atinuke's attention and representations are interpretable.", None),
)

# --------------------------------------------------------------------------------------------- statistics


# --------------------------------------------------------------------------------------------- per-example scores


# --------------------------------------------------------------------------------------------- the experiment


def _mean_sd(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "?"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


@dataclass
class _TaskEvidence:
    task: str
    seeds: list[int]
    subject_vs_comparator: list[np.ndarray]
    subject_vs_trivial: list[np.ndarray]
    comparator_vs_trivial: list[np.ndarray]
    subject_mean: float
    comparator_mean: float
    trivial_mean: float
    provenance: set[str]


def _task_evidence(experiment: Experiment, task: str, comparator: str) -> Optional[_TaskEvidence]:
    seeds, sc, st_, ct, subj, comp, triv, prov = [], [], [], [], [], [], [], set()
    for seed in experiment.seeds:
        a = experiment.predictions(SUBJECT, seed, task)
        b = experiment.predictions(comparator, seed, task)
        if a is None or b is None:
            continue
        joined = a.set_index("id")[["example_f1", "gold"]].join(
            b.set_index("id")[["example_f1"]], how="inner", rsuffix="_b")
        if joined.empty:
            continue
        trivial = trivial_example_scores(task, joined["gold"])
        sa, sb = joined["example_f1"].to_numpy(float), joined["example_f1_b"].to_numpy(float)
        seeds.append(seed)
        sc.append(sa - sb)
        st_.append(sa - trivial)
        ct.append(sb - trivial)
        subj.append(sa.mean())
        comp.append(sb.mean())
        triv.append(trivial.mean())
        if "provenance" in a:
            prov |= set(a["provenance"].dropna().astype(str))
    if not seeds:
        return None
    return _TaskEvidence(task, seeds, sc, st_, ct, float(np.mean(subj)), float(np.mean(comp)), float(np.mean(triv)), prov)


def _benchmark_claim(family: str, experiment: Optional[Experiment], n_boot: int) -> dict[str, Any]:
    from workbench.artifacts import family_tasks, task_family

    row: dict[str, Any] = {"comparator": COMPARATOR, "seeds": 0}
    if experiment is None:
        row.update(verdict=NO_EVIDENCE, evidence=(
            "No controlled experiment under the runs directory. Benchmark claims are judged only against the "
            "same-budget BERT baseline; create it with `atinuke experiment --arms atinuke,bert,minilm --seeds 3 "
            f"--tasks all --out runs/experiment` (tasks of this family: {', '.join(family_tasks(family))})."))
        return row
    tasks = [t for t in expand_tasks(experiment) if task_family(t) == family]
    if COMPARATOR not in experiment.arms or SUBJECT not in experiment.arms:
        row.update(verdict=NO_EVIDENCE, evidence=f"{experiment.path}: the experiment lacks the {SUBJECT} or "
                                                 f"{COMPARATOR} arm (arms: {', '.join(experiment.arms)}).")
        return row
    evidence = [e for e in (_task_evidence(experiment, t, COMPARATOR) for t in tasks) if e is not None]
    if not evidence:
        row.update(verdict=NO_EVIDENCE, evidence=f"No finished {SUBJECT} and {COMPARATOR} fine-tuning of a {family} "
                                                 f"task in {experiment.path} (tasks: {', '.join(tasks) or 'none'}).")
        return row
    sentences, measurable, provenances, silver = [], [], set(), []
    for ev in evidence:
        provenances |= ev.provenance
        record = experiment.metrics(SUBJECT, ev.seeds[0], ev.task)  # its data source (atinuke.tasks.sources)
        source = record.get("data_source") or ("silver" if any(provenance_kind(p) == "silver" for p in ev.provenance) else "real")
        silver += [ev.task] if source == "silver" else []
        floor_a = hierarchical_bootstrap([ev.subject_vs_trivial], n_boot, seed=1)
        floor_b = hierarchical_bootstrap([ev.comparator_vs_trivial], n_boot, seed=2)
        clears_a = floor_a.estimate > 0 and floor_a.p_value < ALPHA
        clears_b = floor_b.estimate > 0 and floor_b.p_value < ALPHA
        metric, a_values = headline(experiment, SUBJECT, ev.task)
        _, b_values = headline(experiment, COMPARATOR, ev.task)
        label = source + (f": {record['dataset']}" if source != "silver" and record.get("dataset") else " data")
        text = (f"{ev.task} [{label}] ({len(ev.seeds)} seed(s), {len(ev.subject_vs_comparator[0])} dev examples per seed): "
                f"per-example score {SUBJECT} {ev.subject_mean:.3f}, {COMPARATOR} {ev.comparator_mean:.3f}, "
                f"trivial baseline ({task_kind(ev.task).trivial_baseline}) {ev.trivial_mean:.3f}")
        if metric:
            text += f"; {metric} {SUBJECT} {_mean_sd(a_values)} vs {COMPARATOR} {_mean_sd(b_values)}"
        found = [experiment.predictions(REFERENCE, s, ev.task) for s in experiment.seeds] if REFERENCE in experiment.arms else []
        ref = [r for r in found if r is not None]
        if ref:
            text += (f"; pretrained reference {REFERENCE} (not a comparator: 22 M parameters distilled from a large "
                     f"model) {np.mean([r['example_f1'].mean() for r in ref]):.3f}")
        if not (clears_a and clears_b):
            at_floor = [name for name, ok, test in ((SUBJECT, clears_a, floor_a), (COMPARATOR, clears_b, floor_b)) if not ok]
            text += (f". {' and '.join(at_floor)} do(es) not clear the trivial baseline (paired test over seeds and "
                     f"examples, p={floor_a.p_value if not clears_a else floor_b.p_value:.3g}): not measurable at "
                     "this budget.")
        else:
            measurable.append(ev)
            text += "."
        sentences.append(text)
    row["seeds"] = max(len(ev.seeds) for ev in evidence)
    row["atinuke_score"] = float(np.mean([ev.subject_mean for ev in evidence]))
    row["comparator_score"] = float(np.mean([ev.comparator_mean for ev in evidence]))
    row["trivial_score"] = float(np.mean([ev.trivial_mean for ev in evidence]))
    if REFERENCE in experiment.arms:
        tables = [experiment.predictions(REFERENCE, s, ev.task) for ev in evidence for s in experiment.seeds]
        refs = [r["example_f1"].mean() for r in tables if r is not None]
        row["reference_score"] = float(np.mean(refs)) if refs else None
    row["provenance"] = ", ".join(sorted(provenances)) or "unknown"
    caveat = (f" The data of {', '.join(silver)} are silver (derived from real text by rules), not the official "
              "benchmark sets." if silver else "")
    if not measurable:
        row.update(verdict=FLOOR, evidence=" ".join(sentences) + caveat)
        return row
    test = hierarchical_bootstrap([ev.subject_vs_comparator for ev in measurable], n_boot, seed=0)
    row.update(p_value=test.p_value, p_resolution=test.resolution, _estimate=test.estimate,
               _seeds_measured=min(len(ev.seeds) for ev in measurable))
    sentences.append(f"Difference {SUBJECT} − {COMPARATOR} over {', '.join(ev.task for ev in measurable)}: "
                     f"{test.estimate:+.3f} [95% CI {test.low:+.3f}, {test.high:+.3f}], hierarchical paired bootstrap "
                     f"over seeds and examples ({test.n_boot} resamples, resolution {test.resolution:.1g}) "
                     f"p={test.p_value:.3g}.")
    row["evidence"] = " ".join(sentences) + caveat
    return row


def _decide(row: dict[str, Any]) -> str:
    if row.get("verdict"):
        return row["verdict"]
    if row.get("_seeds_measured", 0) < 2:
        row["evidence"] += " One seed only: the seed-to-seed variance is unmeasured, so no verdict (run --seeds 3)."
        return INCONCLUSIVE
    if row["p_adjusted"] is not None and row["p_adjusted"] < ALPHA:
        if row.get("_handicapped") and row["_estimate"] > 0:
            return INCONCLUSIVE  # the recipe, not the architecture, may have made the difference
        return SUPPORTED if row["_estimate"] > 0 else CONTRADICTED
    return INCONCLUSIVE


def _pretrain_summaries(experiment: Experiment, arm: str) -> list[dict[str, Any]]:
    return [s for s in (experiment.pretrain_summary(arm, seed) for seed in experiment.seeds) if s]


def flops_per_token(summary: dict[str, Any]) -> Optional[float]:
    """Forward FLOPs per token, 2 N_non-embedding + 2 n_layers n_ctx d_model (Kaplan et al., 2020, Table 1)."""
    params = summary.get("parameters") or {}
    config = summary.get("model_config") or {}
    layers = config.get("n_layers", config.get("num_hidden_layers"))
    width = config.get("d_model", config.get("hidden_size"))
    context = (summary.get("config") or {}).get("seq_len")
    if not (isinstance(params, dict) and params.get("non_embedding") and layers and width and context):
        return None
    return 2.0 * params["non_embedding"] + 2.0 * layers * context * width


# A comparator whose best swept rate beats the recipe's by more than this (relative validation perplexity) was
# handicapped by the shared recipe.
SWEEP_TOLERANCE = 0.02


def find_lr_sweep(root: Path, experiment: Optional[Experiment]) -> Optional[dict[str, Any]]:
    """``best.json`` of an ``atinuke lr-sweep`` in ``root/lr-sweep`` or beside the experiment (None if absent)."""
    candidates = [Path(root) / "lr-sweep"]
    if experiment is not None:
        candidates.append(Path(experiment.path).parent / "lr-sweep")
    for folder in candidates:
        try:
            best = json.loads((folder / "best.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(best, dict) and isinstance(best.get("arms"), dict):
            return dict(best, path=str(folder))
    return None


def lr_sweep_note(sweep: Optional[dict[str, Any]]) -> tuple[str, bool]:
    """What the learning-rate sweep says of the shared recipe, and whether it handicapped the comparator.

    The recipe is fair to an arm when the arm's best rate on the grid is the recipe's, or when the recipe's
    rate is within ``SWEEP_TOLERANCE`` of the best perplexity (Melis et al., 2018, arXiv 1707.05589: compare
    architectures only after tuning each).
    """
    if not sweep:
        return (" No learning-rate sweep: the shared recipe may favour one arm (`atinuke lr-sweep` checks it).",
                False)
    recipe = sweep.get("recipe_lr")
    parts, handicapped = [], False
    for arm in (SUBJECT, COMPARATOR):
        result = sweep["arms"].get(arm)
        if not result:
            parts.append(f"{arm} not swept")
            continue
        at_recipe = result.get("recipe_val_ppl")
        text = f"{arm} best lr {result['best_lr']:g} (valid ppl {result['best_val_ppl']:.0f}"
        text += f"; at the recipe's {recipe:g}: {at_recipe:.0f})" if at_recipe is not None else ")"
        if result.get("at_grid_edge"):
            text += " at the grid's edge"
        parts.append(text)
        if arm == COMPARATOR and (at_recipe is None
                                  or at_recipe > result["best_val_ppl"] * (1 + SWEEP_TOLERANCE)):
            handicapped = True
    note = f" Learning-rate sweep ({sweep.get('steps', '?')} steps each, {sweep['path']}): {'; '.join(parts)}."
    if handicapped:
        note += (f" The shared rate is not {COMPARATOR}'s best, so an advantage of {SUBJECT} may be the recipe's; "
                 "no verdict until the experiment is rerun with each arm's best rate.")
    else:
        note += f" The shared rate is {COMPARATOR}'s best on the grid (within {SWEEP_TOLERANCE:.0%})."
    return note, handicapped


def _perplexity_claim(experiment: Optional[Experiment], sweep: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    from scipy import stats

    row: dict[str, Any] = {"comparator": COMPARATOR, "seeds": 0, "provenance": "PTB valid/test (real text)"}
    if experiment is None:
        row.update(verdict=NO_EVIDENCE, evidence=f"No controlled experiment ({HOW_TO_CREATE['pretrain']}; "
                                                 "then `atinuke experiment`).")
        return row
    a = {s["seed"]: s for s in _pretrain_summaries(experiment, SUBJECT)}
    b = {s["seed"]: s for s in _pretrain_summaries(experiment, COMPARATOR)}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        row.update(verdict=NO_EVIDENCE, evidence=f"No finished {SUBJECT} and {COMPARATOR} pretraining in {experiment.path}.")
        return row
    row["seeds"] = len(seeds)
    row["atinuke_score"] = float(np.mean([a[s]["test_ppl"] for s in seeds]))
    row["comparator_score"] = float(np.mean([b[s]["test_ppl"] for s in seeds]))
    row["trivial_score"] = float(np.mean([a[s]["test_unigram_ppl"] for s in seeds]))
    text = (f"Pseudo-perplexity (fixed seeded 15% mask, lower is better) over {len(seeds)} seed(s): PTB valid "
            f"{SUBJECT} {_mean_sd([a[s]['val_ppl'] for s in seeds])} vs {COMPARATOR} "
            f"{_mean_sd([b[s]['val_ppl'] for s in seeds])}; test {_mean_sd([a[s]['test_ppl'] for s in seeds])} vs "
            f"{_mean_sd([b[s]['test_ppl'] for s in seeds])}; unigram floor {row['trivial_score']:.1f}.")
    at_floor = [arm for arm, runs in ((SUBJECT, a), (COMPARATOR, b))
                if any(runs[s]["test_ppl"] >= runs[s]["test_unigram_ppl"] for s in seeds)]
    if at_floor:
        row.update(verdict=FLOOR, evidence=text + f" {' and '.join(at_floor)} do(es) not beat the unigram model.")
        return row
    if len(seeds) >= 2:
        diff = [math.log(a[s]["test_ppl"]) - math.log(b[s]["test_ppl"]) for s in seeds]
        result = stats.ttest_rel([math.log(a[s]["test_ppl"]) for s in seeds], [math.log(b[s]["test_ppl"]) for s in seeds])
        p = float(result.pvalue) if math.isfinite(result.pvalue) else 1.0
        # Lower perplexity is better: Atinuke "wins" when its log-perplexity difference is negative.
        row.update(p_value=p, p_resolution=0.0, _estimate=-float(np.mean(diff)), _seeds_measured=len(seeds))
        text += f" Paired t-test of log test perplexity over seeds: p={p:.3g}."
    else:
        row["_seeds_measured"] = 1
    note, handicapped = lr_sweep_note(sweep)
    row["evidence"] = text + note
    if handicapped:
        row["_handicapped"] = True
    return row


def _efficiency_claim(experiment: Optional[Experiment], pretrain: list[PretrainRun]) -> dict[str, Any]:
    row: dict[str, Any] = {"comparator": COMPARATOR, "seeds": 0, "verdict": MEASURED,
                           "provenance": "pretraining on PTB (real text)"}
    if experiment is not None:
        a, b = _pretrain_summaries(experiment, SUBJECT), _pretrain_summaries(experiment, COMPARATOR)
        if a and b:
            row["seeds"] = min(len(a), len(b))
            parts = []
            for arm, runs in ((SUBJECT, a), (COMPARATOR, b)):
                params = runs[0].get("parameters", {}).get("total")
                flops = flops_per_token(runs[0])
                parts.append(f"{arm}: {params:,} parameters, {flops / 1e6:.2f} MFLOPs/token forward, "
                             f"{_mean_sd([r.get('tokens_per_s') or float('nan') for r in runs])} tokens/s on "
                             f"{runs[0].get('device', '?')}" if params and flops else f"{arm}: ?")
            row["atinuke_score"] = float(np.mean([r.get("tokens_per_s") or np.nan for r in a]))
            row["comparator_score"] = float(np.mean([r.get("tokens_per_s") or np.nan for r in b]))
            row["evidence"] = ("; ".join(parts) + ". Scores are training tokens/s measured in the same experiment; the "
                               "paper reports no cost figures, so this compares the arms, not the paper's numbers.")
            return row
    finished = [r for r in pretrain if r.summary]
    if not finished:
        row.update(verdict=NO_EVIDENCE, evidence=f"No finished pretraining run ({HOW_TO_CREATE['pretrain']}).")
        return row
    row["evidence"] = " ".join(
        f"{r.name}: {(r.summary.get('parameters') or {}).get('total', '?')} parameters, "
        f"{r.summary.get('tokens_per_s') or 0:.0f} tokens/s on {r.summary.get('device', '?')}." for r in finished
    ) + " No same-budget baseline to compare with (run `atinuke experiment`)."
    return row


def evaluate_claims(root: Optional[Path] = None, experiment: Optional[Path] = None, n_boot: int = N_BOOT,
                    pretrain: Optional[list[PretrainRun]] = None, probes: Optional[pd.DataFrame] = None,
                    search: bool = True) -> pd.DataFrame:
    """Each claim of the paper with its verdict from the controlled experiment.

    Args:
        root: the runs directory (default ``runs_dir()``); the experiment is ``root`` or ``root/experiment``.
        experiment: an experiment directory to use instead.
        n_boot: bootstrap resamples of every paired test.
        pretrain, probes: runs/results to use instead of searching ``root`` (efficiency without an experiment,
            interpretability).
        search: look for an experiment under ``root`` when ``experiment`` is None (a report of chosen runs
            passes False).

    Returns:
        DataFrame with ``CLAIM_COLUMNS``, one row per claim of ``PAPER_CLAIMS``.
    """
    root = Path(root or runs_dir())
    found = (load_experiment(experiment) if experiment is not None
             else find_experiment(root) if search else None)
    rows = []
    for key, statement, family in PAPER_CLAIMS:
        if family is not None:
            row = _benchmark_claim(family, found, n_boot)
        elif key == "perplexity":
            row = _perplexity_claim(found, find_lr_sweep(root, found))
        elif key == "efficiency":
            row = _efficiency_claim(found, find_pretrain_runs(root) if pretrain is None else pretrain)
        else:
            verdict, provenance, evidence = _interpretability_evidence(find_probe_results(root) if probes is None else probes)
            row = {"verdict": verdict, "provenance": provenance, "evidence": evidence, "comparator": "", "seeds": 0}
        rows.append({"claim": key, "statement": statement, **row})
    adjusted = holm([r.get("p_value") if not r.get("verdict") else None for r in rows])
    for row, p_adj in zip(rows, adjusted):
        row["p_adjusted"] = p_adj
        row["verdict"] = _decide(row)
        if p_adj is not None:
            row["evidence"] += f" Holm-adjusted over {sum(p is not None for p in adjusted)} claims: p={p_adj:.3g}."
    frame = pd.DataFrame(rows)
    for column in CLAIM_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame[list(CLAIM_COLUMNS)]


def _interpretability_evidence(results: Optional[pd.DataFrame]) -> tuple[str, str, str]:
    if results is None or results.empty:
        return ("no evidence", "", "The paper gives no evidence for interpretability, and no probe results exist "
                f"here yet ({HOW_TO_CREATE['probes']}). Attention maps alone are not explanations "
                "(Jain and Wallace, 2019); the Attribution page measures faithfulness on demand.")
    sentences = []
    control = results["control"].fillna("none").astype(str) if "control" in results else pd.Series("none", index=results.index)
    for (model, task), group in results.assign(control=control).groupby(["model", "task"]):
        group = group[group["layer"] >= 0]  # layer -1 holds whole-curve metrics
        real = group[group["control"].isin(["none", "", "real"])]
        ctrl = group[group["control"] == "control_task"]
        ctrl = ctrl if not ctrl.empty else group[~group["control"].isin(["none", "", "real"])]
        if real.empty:
            continue
        metric = "accuracy" if (real["metric"] == "accuracy").any() else str(real["metric"].iloc[0])
        best = real[real["metric"] == metric].groupby("layer")["value"].mean()
        text = f"{model} / {task}: best {metric} {best.max():.3f} at layer {int(best.idxmax())}"
        if not ctrl.empty:
            ctrl_best = ctrl[ctrl["metric"] == metric].groupby("layer")["value"].mean()
            if not ctrl_best.empty and int(best.idxmax()) in ctrl_best.index:
                text += f", control {ctrl_best.loc[int(best.idxmax())]:.3f} (selectivity {best.max() - ctrl_best.loc[int(best.idxmax())]:+.3f})"
        contextual = best[best.index > 0]
        if 0 in best.index and not contextual.empty:
            # Layer 0 is the (non-contextual) embedding layer: what the blocks add is the difference.
            gain = contextual.max() - best.loc[0]
            text += (f"; best contextual layer {int(contextual.idxmax())} {'beats' if gain > 0 else 'does not beat'} "
                     f"the embeddings ({contextual.max():.3f} vs layer 0 {best.loc[0]:.3f}, {gain:+.3f})")
        sentences.append(text + ".")
    evidence = (" ".join(sentences) + " Probes show what is linearly decodable from the representations, with "
                "controls separating the probe's own capacity (Hewitt and Liang, 2019); they do not show that the "
                "model uses that information, so they support 'inspectable', not 'interpretable by design'.")
    sources = sorted(results["source"].dropna().astype(str).unique()) if "source" in results else []
    return "partly measurable", ", ".join(sources) or "probe results", evidence


# --------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: Any) -> None:
    """Flags of ``workbench claims``."""
    parser.add_argument("--runs", default=None, help="runs directory or experiment directory (default: runs/)")
    parser.add_argument("--format", default="csv", help="csv (default) or json")
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples of each paired test")
    parser.add_argument("--competence", action="store_true",
                        help="instead of the claims: has each arm learnt each task (vs its trivial baseline)?")
    parser.add_argument("--out", default=None, help="write to this file (atomically) instead of stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: Any) -> int:
    """``workbench claims``: print (or write) one row per claim."""
    import sys

    from atinuke.io import atomic_write_text

    if args.format not in ("csv", "json"):
        raise UserInputError(f"--format {args.format!r}: choose csv or json")
    if args.n_boot < 1:
        raise UserInputError(f"--n-boot must be positive, got {args.n_boot}")
    root = Path(args.runs) if args.runs else None
    if root is not None and not root.is_dir():
        raise UserInputError(f"--runs {root}: no such directory")
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise UserInputError(f"--out {out} is a directory; name a file")
    if out is not None and out.exists() and not args.overwrite:
        raise UserInputError(f"--out {out} exists; pass --overwrite to replace it")
    if args.competence:
        from workbench.competence import competence

        found = find_experiment(root if root is not None else runs_dir())
        if found is None:
            raise UserInputError(f"--runs {root or runs_dir()}: no experiment.json there or in its experiment/")
        table = competence(found, n_boot=args.n_boot)
    else:
        table = evaluate_claims(root=root, n_boot=args.n_boot)
    text = (table.to_csv(index=False) if args.format == "csv"
            else json.dumps(json.loads(table.to_json(orient="records")), indent=2) + "\n")
    if out is not None:
        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)
    return 0
