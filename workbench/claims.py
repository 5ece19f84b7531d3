"""The paper's claims, judged on the controlled experiment (``atinuke experiment``).

*Engineering A Large Language Model From Scratch* (arXiv 2401.16736) claims that Atinuke improves SQuAD, GLUE,
SNLI, coreference and SRL, models language well, is efficient and is interpretable. A benchmark claim is
judged only on a comparison that can carry it:

- the comparator is the same-budget baseline (arm ``bert``: a BERT encoder of Atinuke's size trained on the
  same tokens with the same recipe); the pretrained all-MiniLM-L6-v2 is shown as a reference row, never as a
  comparator;
- each model must first clear its task's trivial baseline (majority class, mean score, always abstain,
  all-O, no cluster), scored by the same headline metric on the same dev examples, with a significant test
  over runs (``workbench.competence``); a task where either model is not shown above it is "not measurable at
  this budget";
- the unit of replication is the training run: each run is scored by its task's headline metric (MCC,
  Pearson, micro SRL F1, corpus-level CoNLL F1, SQuAD F1, accuracy or binary F1), recomputed on every resample of
  the dev examples (Koehn, 2004); the arms' mean run scores are compared with Welch's t over runs, its standard
  error including the example-level variance shared by all runs (examples resampled jointly across runs, arms
  and the tasks of a family, whose runs share their pretraining; ``workbench.run_inference``; Dror et al.,
  2018; Bouthillier et al., 2021, arXiv 2103.03098), so relabelling seeds changes nothing, and one seed per arm
  gives no verdict;
- the benchmark families and perplexity are corrected together with Holm's step-down method (Holm, 1979);
  every "inconclusive" states the smallest difference the experiment could detect with 80% power, every
  "supported" its scope (against a same-size BERT, on this data, at this budget, n seeds).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

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
from workbench.competence import floor_test, learnt
from workbench.experiment_runs import ALPHA, Experiment, expand_tasks, find_experiment, load_experiment, task_kind
from workbench.headline_stats import TaskRuns, load_task_runs
from workbench.run_inference import N_BOOT, RunTest, run_level_test
from workbench.stats import holm

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

CLAIM_COLUMNS = ("claim", "statement", "verdict", "scope", "comparator", "seeds", "metric", "atinuke_score",
                 "comparator_score", "trivial_score", "reference_score", "estimate", "ci_low", "ci_high", "p_value",
                 "p_mc_error", "p_adjusted", "mde", "n_resamples", "provenance", "evidence")
ONE_SEED = "one seed gives no verdict"
# An arm clears the unigram floor when its test perplexity is below the unigram model's by more than this
# fraction (one-sided t over runs of log perplexity).
PPL_FLOOR_MARGIN = 0.10

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

def _mean_sd(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "?"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


@dataclass
class ClaimRow:
    """One claim's verdict row (``CLAIM_COLUMNS``, plus what the verdict is decided from).

    Attributes:
        scope: what a verdict holds for: the comparator, the data, the budget, the seeds per arm.
        metric: the headline metric(s) the scores and the difference are in.
        estimate, ci_low, ci_high: subject minus comparator (perplexity: log test perplexity, comparator minus
            subject), with its 95% interval.
        p_value, p_mc_error, p_adjusted: the test's p, its Monte Carlo standard error, Holm-adjusted p.
        mde: the smallest difference the test detects with 80% power at alpha 0.05.
        handicapped: arms the learning-rate sweep says the shared recipe handicapped.
        untestable: why no test was possible ("" when one was).
    """

    claim: str = ""
    statement: str = ""
    verdict: str = ""
    scope: str = ""
    comparator: str = ""
    seeds: int = 0
    metric: str = ""
    atinuke_score: Optional[float] = None
    comparator_score: Optional[float] = None
    trivial_score: Optional[float] = None
    reference_score: Optional[float] = None
    estimate: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    p_value: Optional[float] = None
    p_mc_error: Optional[float] = None
    p_adjusted: Optional[float] = None
    mde: Optional[float] = None
    n_resamples: Optional[int] = None
    provenance: str = ""
    evidence: str = ""
    handicapped: set[str] = field(default_factory=set)
    untestable: str = ""

    def record(self) -> dict[str, Any]:
        """The row as ``CLAIM_COLUMNS``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in CLAIM_COLUMNS}

    def set_test(self, test: RunTest) -> None:
        self.estimate, self.ci_low, self.ci_high = test.estimate, test.low, test.high
        self.p_value, self.p_mc_error, self.n_resamples = test.p_value, test.p_mc_error, test.n_resamples
        self.mde = test.mde if math.isfinite(test.mde) else None
        if test.p_value is None:
            self.untestable = (f"{ONE_SEED.capitalize()}: with {min(test.runs_a, test.runs_b)} run(s) of an arm the seed-to-seed "
                               "variance is unmeasured, and an example-level test would pretend that one run stands for "
                               "the architecture (run --seeds 5).")


def _scope(experiment: Experiment, provenances: set[str], seeds: int) -> str:
    kinds = {provenance_kind(p) for p in provenances}
    data = ("silver diagnostic data (rules on real text)" if "silver" in kinds else
            "the official dev sets" if kinds == {"gold"} else "this data")
    return (f"against a same-size BERT (same tokens, same recipe), on {data}, at the {experiment.scale} budget, "
            f"{seeds} seed(s) per arm")


def _source_label(experiment: Experiment, runs: TaskRuns) -> str:
    """"real: <dataset>", "registry-real: <dataset>" or "silver data": where a task's runs read their data
    (``metrics.json``'s ``data_source``, recorded by fine-tuning; older runs by their provenance)."""
    record = experiment.metrics(SUBJECT, runs.seeds(SUBJECT)[0], runs.task)
    source = record.get("data_source") or (
        "silver" if any(provenance_kind(p) == "silver" for p in runs.provenance) else "real")
    return source + (f": {record['dataset']}" if source != "silver" and record.get("dataset") else " data")


def _task_sentence(runs: TaskRuns, floors: dict[str, Optional[RunTest]], label: str = "") -> str:
    a = [runs.value(SUBJECT, s) for s in runs.seeds(SUBJECT)]
    b = [runs.value(COMPARATOR, s) for s in runs.seeds(COMPARATOR)]
    text = (f"{runs.task}{f' [{label}]' if label else ''} ({len(a)}/{len(b)} runs, {runs.n} dev examples): {runs.metric} {SUBJECT} {_mean_sd(a)} vs "
            f"{COMPARATOR} {_mean_sd(b)}, trivial baseline ({task_kind(runs.task).trivial_baseline}) by the same "
            f"metric {runs.trivial_value:.3f}")
    if runs.seeds(REFERENCE):
        text += (f"; pretrained reference {REFERENCE} (not a comparator: 22 M parameters distilled from a large model) "
                 f"{_mean_sd([runs.value(REFERENCE, s) for s in runs.seeds(REFERENCE)])}")
    failed = [(arm, test) for arm, test in floors.items() if not learnt(test)]
    if not failed:
        return text + "."
    p_values = ", ".join(f"{arm} p={test.p_value:.3g}" for arm, test in failed if test and test.p_value is not None)
    return (text + f". {' and '.join(arm for arm, _ in failed)} not shown above the trivial baseline (one-sided test over "
            f"runs{': ' + p_values if p_values else ''}): not measurable at this budget.")


def _benchmark_claim(family: str, experiment: Optional[Experiment], n_boot: int) -> ClaimRow:
    from workbench.artifacts import family_tasks, task_family

    row = ClaimRow(comparator=COMPARATOR)
    if experiment is None:
        row.verdict, row.evidence = NO_EVIDENCE, (
            "No controlled experiment under the runs directory. Benchmark claims are judged only against the "
            "same-budget BERT baseline; create it with `atinuke experiment --arms atinuke,bert,minilm --seeds 5 "
            f"--tasks all --out runs/experiment` (tasks of this family: {', '.join(family_tasks(family))}).")
        return row
    tasks = [t for t in expand_tasks(experiment) if task_family(t) == family]
    if COMPARATOR not in experiment.arms or SUBJECT not in experiment.arms:
        row.verdict, row.evidence = NO_EVIDENCE, (f"{experiment.path}: the experiment lacks the {SUBJECT} or "
                                                  f"{COMPARATOR} arm (arms: {', '.join(experiment.arms)}).")
        return row
    evidence = [r for r in (load_task_runs(experiment, t) for t in tasks)
                if r is not None and r.seeds(SUBJECT) and r.seeds(COMPARATOR)]
    if not evidence:
        row.verdict, row.evidence = NO_EVIDENCE, (f"No finished {SUBJECT} and {COMPARATOR} fine-tuning of a {family} "
                                                  f"task in {experiment.path} (tasks: {', '.join(tasks) or 'none'}).")
        return row
    sentences, measurable, provenances, silver = [], [], set(), []
    for runs in evidence:
        provenances |= runs.provenance
        label = _source_label(experiment, runs)
        silver += [runs.task] if label == "silver data" else []
        floors = {arm: floor_test(runs, arm, n_boot) for arm in (SUBJECT, COMPARATOR)}
        sentences.append(_task_sentence(runs, floors, label))
        if all(learnt(test) for test in floors.values()):
            measurable.append(runs)
    row.seeds = min(min(len(r.seeds(SUBJECT)), len(r.seeds(COMPARATOR))) for r in evidence)
    row.metric = ", ".join(dict.fromkeys(r.metric for r in evidence))
    row.atinuke_score = float(np.mean([np.mean([r.value(SUBJECT, s) for s in r.seeds(SUBJECT)]) for r in evidence]))
    row.comparator_score = float(np.mean([np.mean([r.value(COMPARATOR, s) for s in r.seeds(COMPARATOR)])
                                          for r in evidence]))
    row.trivial_score = float(np.mean([r.trivial_value for r in evidence]))
    refs = [np.mean([r.value(REFERENCE, s) for s in r.seeds(REFERENCE)]) for r in evidence if r.seeds(REFERENCE)]
    row.reference_score = float(np.mean(refs)) if refs else None
    row.provenance = ", ".join(sorted(provenances)) or "unknown"
    row.scope = _scope(experiment, provenances, row.seeds)
    caveat = (f" The data of {', '.join(silver)} are silver (derived from real text by rules), not the official "
              "benchmark sets." if silver else "")
    if not measurable:
        row.verdict, row.evidence = FLOOR, " ".join(sentences) + caveat
        return row
    test = family_test(measurable, n_boot)
    row.set_test(test)
    sentences.append(f"Difference {SUBJECT} − {COMPARATOR} in {row.metric} (mean over "
                     f"{', '.join(r.task for r in measurable)}): {test.describe()}.")
    row.evidence = " ".join(sentences) + caveat
    return row


def family_test(measurable: Sequence[TaskRuns], n_boot: int = N_BOOT) -> RunTest:
    """Welch t over runs of the family score of each run of ``SUBJECT`` and ``COMPARATOR``.

    A run is one pretraining seed: its family score is the mean headline metric over the family's measurable
    tasks, so seeds are resampled jointly across the family's tasks (they share the pretraining); each task's
    examples are resampled jointly across runs and arms (``TaskRuns.resampled``).
    """
    seeds = {arm: sorted(set.intersection(*(set(r.seeds(arm)) for r in measurable))) for arm in (SUBJECT, COMPARATOR)}
    values = {arm: [float(np.mean([r.value(arm, s) for r in measurable])) for s in seeds[arm]]
              for arm in (SUBJECT, COMPARATOR)}

    def resampled(chunk: int) -> np.ndarray:
        return np.hstack([np.mean([r.resampled(arm, seeds[arm], chunk) for r in measurable], axis=0)
                          for arm in (SUBJECT, COMPARATOR)])

    return run_level_test(values[SUBJECT], values[COMPARATOR], resampled, n_boot)


def decide_verdict(row: ClaimRow, n_tested: int) -> str:
    """The verdict of a row whose ``p_adjusted`` is set (Holm over ``n_tested`` claims); adds its reason to
    the evidence."""
    if row.verdict:
        return row.verdict
    if row.p_value is None or row.p_adjusted is None:
        row.evidence += " " + (row.untestable or f"{ONE_SEED.capitalize()}.")
        return INCONCLUSIVE
    if row.p_adjusted < ALPHA:
        winner, loser = (SUBJECT, COMPARATOR) if (row.estimate or 0) > 0 else (COMPARATOR, SUBJECT)
        if loser in row.handicapped:
            row.evidence += (f" The shared recipe handicapped {loser}, so {winner}'s advantage may be the recipe's: "
                             "inconclusive until each arm runs at its best rate.")
            return INCONCLUSIVE
        row.evidence += f" Holds {row.scope}; nothing beyond."
        return SUPPORTED if winner == SUBJECT else CONTRADICTED
    if row.mde is not None:
        row.evidence += (f" Inconclusive is not 'no difference': the smallest difference this experiment detects with "
                         f"80% power is {row.mde:.3g} ({row.metric}; α = 0.05 before Holm over {n_tested} claims).")
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


def lr_sweep_note(sweep: Optional[dict[str, Any]]) -> tuple[str, set[str]]:
    """What the learning-rate sweep says of the shared recipe, and which arms it handicapped.

    The recipe is fair to an arm when the arm's best rate on the grid is the recipe's, or when the recipe's
    rate is within ``SWEEP_TOLERANCE`` of the best perplexity (Melis et al., 2018, arXiv 1707.05589: compare
    architectures only after tuning each). The check applies to both arms: an advantage over a handicapped arm
    is no verdict, whichever arm has it.
    """
    if not sweep:
        return (" No learning-rate sweep: the shared recipe may favour one arm (`atinuke lr-sweep` checks it).",
                set())
    recipe = sweep.get("recipe_lr")
    parts, handicapped = [], set()
    for arm in (SUBJECT, COMPARATOR):
        result = sweep["arms"].get(arm)
        if not result:
            parts.append(f"{arm} not swept")
            handicapped.add(arm)
            continue
        at_recipe = result.get("recipe_val_ppl")
        text = f"{arm} best lr {result['best_lr']:g} (valid ppl {result['best_val_ppl']:.0f}"
        text += f"; at the recipe's {recipe:g}: {at_recipe:.0f})" if at_recipe is not None else ")"
        if result.get("at_grid_edge"):
            text += " at the grid's edge"
        parts.append(text)
        if at_recipe is None or at_recipe > result["best_val_ppl"] * (1 + SWEEP_TOLERANCE):
            handicapped.add(arm)
    note = f" Learning-rate sweep ({sweep.get('steps', '?')} steps each, {sweep['path']}): {'; '.join(parts)}."
    if handicapped:
        note += (f" The shared rate is not the best of {' and '.join(sorted(handicapped))} (or is untested), so an "
                 "advantage over it may be the recipe's; no verdict until the experiment is rerun with each arm's best "
                 "rate.")
    else:
        note += f" The shared rate is each arm's best on the grid (within {SWEEP_TOLERANCE:.0%})."
    return note, handicapped


def _no_resamples(width: int) -> Any:
    """Run scores without an example level (perplexity summaries hold aggregates only)."""
    from workbench.run_inference import CHUNK

    return lambda chunk: np.zeros((CHUNK, width))


def _perplexity_claim(experiment: Optional[Experiment], sweep: Optional[dict[str, Any]] = None,
                      n_boot: int = N_BOOT) -> ClaimRow:
    row = ClaimRow(comparator=COMPARATOR, provenance="PTB valid/test (real text)", metric="log test pseudo-perplexity")
    if experiment is None:
        row.verdict, row.evidence = NO_EVIDENCE, (f"No controlled experiment ({HOW_TO_CREATE['pretrain']}; "
                                                  "then `atinuke experiment`).")
        return row
    runs = {arm: sorted(_pretrain_summaries(experiment, arm), key=lambda s: s.get("seed", 0))
            for arm in (SUBJECT, COMPARATOR)}
    if not runs[SUBJECT] or not runs[COMPARATOR]:
        row.verdict, row.evidence = NO_EVIDENCE, (f"No finished {SUBJECT} and {COMPARATOR} pretraining in "
                                                  f"{experiment.path}.")
        return row
    a, b = runs[SUBJECT], runs[COMPARATOR]
    row.seeds = min(len(a), len(b))
    row.scope = (f"against a same-size BERT (same tokens, same recipe), on PTB, at the {experiment.scale} budget, "
                 f"{row.seeds} seed(s) per arm")
    row.atinuke_score = float(np.mean([s["test_ppl"] for s in a]))
    row.comparator_score = float(np.mean([s["test_ppl"] for s in b]))
    row.trivial_score = float(np.mean([s["test_unigram_ppl"] for s in a]))
    text = (f"Pseudo-perplexity (lower is better) over {len(a)}/{len(b)} runs: PTB valid {SUBJECT} "
            f"{_mean_sd([s['val_ppl'] for s in a])} vs {COMPARATOR} {_mean_sd([s['val_ppl'] for s in b])}; test "
            f"{_mean_sd([s['test_ppl'] for s in a])} vs {_mean_sd([s['test_ppl'] for s in b])}; unigram floor "
            f"{row.trivial_score:.1f}. It is the exponentiated masked-LM loss at one fixed, seeded 15% mask: fair "
            "between the arms (same mask, same tokens), not comparable with published pseudo-perplexity, which "
            "masks every token in turn (Salazar et al., 2020).")
    margin = -math.log(1 - PPL_FLOOR_MARGIN)
    not_below = []
    for arm, summaries in runs.items():
        if len(summaries) < 2:
            continue
        gains = [math.log(s["test_unigram_ppl"]) - math.log(s["test_ppl"]) - margin for s in summaries]
        floor = run_level_test(gains, None, _no_resamples(len(gains)), n_boot, alternative="greater")
        if not (floor.estimate > 0 and floor.p_value is not None and floor.p_value < ALPHA):
            not_below.append(f"{arm} (one-sided t over runs, p={floor.p_value:.3g})")
    if not_below:
        row.verdict = FLOOR
        row.evidence = text + (f" {' and '.join(not_below)} not shown more than {PPL_FLOOR_MARGIN:.0%} below the "
                               "unigram model's perplexity.")
        return row
    # Positive: Atinuke's perplexity is lower. Welch t over runs of log test perplexity (arms independent).
    test = run_level_test([-math.log(s["test_ppl"]) for s in a], [-math.log(s["test_ppl"]) for s in b],
                          _no_resamples(len(a) + len(b)), n_boot)
    row.set_test(test)
    row.p_mc_error = 0.0 if test.p_value is not None else None
    row.n_resamples = 0
    if test.p_value is not None:
        text += (f" Welch t over runs of log test perplexity ({COMPARATOR} − {SUBJECT}; the test set's own sampling "
                 f"variance is not in the summaries): {test.estimate:+.3f} [95% CI {test.low:+.3f}, {test.high:+.3f}], "
                 f"df {test.df:.1f}, p={test.p_value:.3g}, i.e. {SUBJECT}'s perplexity is {math.exp(-test.estimate):.2f}× "
                 f"{COMPARATOR}'s.")
    note, row.handicapped = lr_sweep_note(sweep)
    row.evidence = text + note
    return row


def _efficiency_claim(experiment: Optional[Experiment], pretrain: list[PretrainRun]) -> ClaimRow:
    row = ClaimRow(comparator=COMPARATOR, verdict=MEASURED, provenance="pretraining on PTB (real text)")
    if experiment is not None:
        a, b = _pretrain_summaries(experiment, SUBJECT), _pretrain_summaries(experiment, COMPARATOR)
        if a and b:
            row.seeds = min(len(a), len(b))
            parts = []
            for arm, runs in ((SUBJECT, a), (COMPARATOR, b)):
                params = runs[0].get("parameters", {}).get("total")
                flops = flops_per_token(runs[0])
                parts.append(f"{arm}: {params:,} parameters, {flops / 1e6:.2f} MFLOPs/token forward, "
                             f"{_mean_sd([r.get('tokens_per_s') or float('nan') for r in runs])} tokens/s on "
                             f"{runs[0].get('device', '?')}" if params and flops else f"{arm}: ?")
            row.atinuke_score = float(np.mean([r.get("tokens_per_s") or np.nan for r in a]))
            row.comparator_score = float(np.mean([r.get("tokens_per_s") or np.nan for r in b]))
            row.evidence = ("; ".join(parts) + ". Scores are training tokens/s measured in the same experiment; the "
                            "paper reports no cost figures, so this compares the arms, not the paper's numbers.")
            return row
    finished = [r for r in pretrain if r.summary]
    if not finished:
        row.verdict, row.evidence = NO_EVIDENCE, f"No finished pretraining run ({HOW_TO_CREATE['pretrain']})."
        return row
    row.evidence = " ".join(
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
        n_boot: joint example resamples drawn at least for every test (more until the Monte Carlo error of p is
            below alpha/10).
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
    rows: list[ClaimRow] = []
    for key, statement, family in PAPER_CLAIMS:
        if family is not None:
            row = _benchmark_claim(family, found, n_boot)
        elif key == "perplexity":
            row = _perplexity_claim(found, find_lr_sweep(root, found), n_boot)
        elif key == "efficiency":
            row = _efficiency_claim(found, find_pretrain_runs(root) if pretrain is None else pretrain)
        else:
            verdict, provenance, evidence = _interpretability_evidence(find_probe_results(root) if probes is None else probes)
            row = ClaimRow(verdict=verdict, provenance=provenance, evidence=evidence)
        row.claim, row.statement = key, statement
        rows.append(row)
    adjusted = holm([r.p_value if not r.verdict else None for r in rows])
    n_tested = sum(p is not None for p in adjusted)
    for row, p_adj in zip(rows, adjusted):
        row.p_adjusted = p_adj
        if p_adj is not None:
            row.evidence += f" Holm-adjusted over {n_tested} claims: p={p_adj:.3g}."
        row.verdict = decide_verdict(row, n_tested)
    return pd.DataFrame([row.record() for row in rows], columns=list(CLAIM_COLUMNS))


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
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="joint example resamples drawn at least for each test (more until p's Monte Carlo error < alpha/10)")
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
