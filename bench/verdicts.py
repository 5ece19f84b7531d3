"""Calibration of the claims' verdicts: whole simulated experiments through the real verdict code.

Each simulated experiment has two arms (atinuke, bert), ``--seeds`` pretraining seeds per arm and three
claims judged together (Holm): GLUE (SST-2 accuracy, CoLA MCC, STS-B Pearson: three tasks sharing each seed's
pretraining), NLI (SNLI accuracy) and SQuAD 2.0 (F1). Its structure is the one the verdicts must respect:

- seed variance: a pretraining effect per (arm, seed) shared by every task, plus one per (arm, seed, task);
- example variance: every run scores the same dev examples; each example has a difficulty shared by both arms
  and an arm-specific effect shared by all that arm's seeds (so the arms differ on a fixed dev set even when
  their populations do not), plus fresh noise per run;
- the trivial baseline scored by the same headline metric (majority class, mean score, always abstain).

The predictions become ``workbench.headline_stats.TaskRuns`` through the functions that read a predictions
table (``example_statistics``, ``trivial_statistics``); the verdicts come from the claims' own code:
``competence.floor_test`` (both arms must clear the floor), ``claims.family_test`` (Welch t over runs, examples
resampled jointly), ``stats.holm`` and ``claims.decide_verdict``.

Prints a final JSON line: ``type1_3seeds``, ``type1_5seeds`` (experiments with any false supported or
contradicted claim under no true difference: the family-wise rate Holm controls), their Monte Carlo errors,
the per-claim rates, ``power_3seeds``, ``power_5seeds`` (per claim, every claim with a true advantage of
``--effect`` on the probit scale; ``effect_metric`` is the mean difference it makes in the headline metrics),
``ci_coverage_3seeds`` (95% intervals of the null claims holding the true difference 0) and
``seed_relabel_max_p_change`` / ``seed_relabel_verdict_changes`` (seeds relabelled within each arm).
Targets: type-I <= 0.05 + its Monte Carlo error, coverage >= 0.93, relabelling changes no verdict.

    nice -n 10 python bench/verdicts.py [--reps 200] [--power-reps 50] [--effect 0.5] [--n-boot 500]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from typing import Optional

import numpy as np
import pandas as pd

from workbench.claims import COMPARATOR, SUBJECT, ClaimRow, decide_verdict, family_test
from workbench.competence import floor_test, learnt
from workbench.headline_stats import TaskRuns, example_statistics, statistics_metric, trivial_statistics
from workbench.stats import holm

FAMILIES = {"glue": ("sst2", "cola", "stsb"), "nli": ("snli",), "squad": ("squad2",)}
N_EXAMPLES = {"sst2": 300, "cola": 300, "stsb": 300, "snli": 300, "squad2": 150}
MAJORITY = {"sst2": 0.5, "cola": 0.7, "snli": 0.34}
ARMS = (SUBJECT, COMPARATOR)


class Simulator:
    """One experiment's randomness: example effects per task, seed effects per arm.

    Args:
        seed_sd: sd of each (arm, seed)'s pretraining effect, shared by all tasks (probit scale).
        task_seed_sd: sd of each (arm, seed, task)'s own effect.
        example_sd: sd of each example's difficulty, shared by both arms.
        arm_example_sd: sd of each (arm, example) effect, shared by the arm's seeds.
        level: the arms' common mean quality; ``effect`` is added to atinuke's.
    """

    def __init__(self, rng: np.random.Generator, seeds: int, effect: float = 0.0, seed_sd: float = 0.15,
                 task_seed_sd: float = 0.1, example_sd: float = 1.0, arm_example_sd: float = 0.3,
                 level: float = 0.8) -> None:
        self.rng, self.seeds, self.example_sd, self.arm_example_sd = rng, seeds, example_sd, arm_example_sd
        self.quality = {arm: level + (effect if arm == SUBJECT else 0.0) for arm in ARMS}
        self.pretraining = {(arm, s): rng.normal(0, seed_sd) for arm in ARMS for s in range(seeds)}
        self.task_seed_sd = task_seed_sd

    def task(self, task: str) -> TaskRuns:
        """Every run's predictions of ``task``, as the claims read them."""
        rng, n = self.rng, N_EXAMPLES[task]
        difficulty = rng.normal(0, self.example_sd, n)
        gold = self._gold(task, n)
        stats: dict[str, dict[int, np.ndarray]] = {}
        means: dict[str, dict[int, float]] = {}
        for arm in ARMS:
            shared = difficulty + rng.normal(0, self.arm_example_sd, n)
            for s in range(self.seeds):
                quality = self.quality[arm] + self.pretraining[(arm, s)] + rng.normal(0, self.task_seed_sd)
                prediction, example_f1 = self._predict(task, gold, quality + shared + rng.normal(0, 1, n))
                stats.setdefault(arm, {})[s] = example_statistics(task, gold, prediction, example_f1)
                means.setdefault(arm, {})[s] = float(example_f1.mean())
        from workbench.experiment_runs import task_kind

        trivial_mean = float(np.mean(task_kind(task).trivial_example_scores(gold)))
        return TaskRuns(task, statistics_metric(task), n, stats, trivial_statistics(task, gold), means, trivial_mean,
                        {"simulated"})

    def _gold(self, task: str, n: int) -> pd.Series:
        if task == "stsb":
            return pd.Series([repr(float(v)) for v in self.rng.uniform(0, 5, n)])
        if task == "squad2":
            return pd.Series(["" if self.rng.random() < 1 / 3 else "an answer" for _ in range(n)])
        labels = np.where(self.rng.random(n) < MAJORITY[task], "1", "0")
        return pd.Series(labels.tolist())

    def _predict(self, task: str, gold: pd.Series, margin: np.ndarray) -> tuple[pd.Series, pd.Series]:
        from scipy.stats import norm

        if task == "stsb":  # a better run (larger margin) predicts closer to the gold score
            y = gold.astype(float).to_numpy()
            prediction = y + 1.5 * norm.cdf(-margin) * self.rng.normal(0, 2.0, len(y))
            return pd.Series([repr(float(v)) for v in prediction]), pd.Series(np.abs(prediction - y) <= 0.5, dtype=float)
        if task == "squad2":
            f1 = norm.cdf(margin - 0.3)
            return pd.Series([""] * len(gold)), pd.Series(f1)
        correct = margin > 0
        labels = gold.to_numpy(dtype=str)
        prediction = pd.Series(np.where(correct, labels, np.where(labels == "1", "0", "1")).tolist())
        return prediction, pd.Series(correct.astype(float))


def judge(tasks: dict[str, TaskRuns], n_boot: int) -> list[ClaimRow]:
    """The three claims' rows, decided as ``evaluate_claims`` decides them."""
    rows = []
    for family, names in FAMILIES.items():
        runs = [tasks[t] for t in names]
        row = ClaimRow(claim=family, comparator=COMPARATOR, metric=", ".join(r.metric for r in runs),
                       seeds=min(len(r.seeds(SUBJECT)) for r in runs), scope="simulated")
        measurable = [r for r in runs if all(learnt(floor_test(r, arm, n_boot)) for arm in ARMS)]
        if measurable:
            row.set_test(family_test(measurable, n_boot))
        else:
            row.verdict = "not measurable at this budget"
        rows.append(row)
    adjusted = holm([r.p_value if not r.verdict else None for r in rows])
    tested = sum(p is not None for p in adjusted)
    for row, p in zip(rows, adjusted):
        row.p_adjusted = p
        row.verdict = decide_verdict(row, tested)
    return rows


def relabelled(tasks: dict[str, TaskRuns], rng: np.random.Generator) -> dict[str, TaskRuns]:
    """The same runs with each arm's seed labels permuted (one permutation per arm, for every task)."""
    orders = {arm: rng.permutation(sorted(next(iter(tasks.values())).stats[arm])) for arm in ARMS}
    out = {}
    for name, runs in tasks.items():
        stats = {arm: {int(orders[arm][s]): runs.stats[arm][s] for s in runs.stats[arm]} for arm in ARMS}
        means = {arm: {int(orders[arm][s]): runs.example_means[arm][s] for s in runs.stats[arm]} for arm in ARMS}
        out[name] = TaskRuns(runs.task, runs.metric, runs.n, stats, runs.trivial, means, runs.trivial_example_mean,
                             runs.provenance)
    return out


def simulate(reps: int, seeds: int, effect: float, n_boot: int, rng: np.random.Generator,
             relabel: int = 0) -> dict[str, float]:
    """Run ``reps`` experiments; rates of verdicts, coverage of the null, relabelling changes."""
    any_false, false_claims, supported, covered, claims = 0, 0, 0, 0, 0
    estimates: list[float] = []
    max_change, verdict_changes, floors = 0.0, 0, 0
    for rep in range(reps):
        sim = Simulator(rng, seeds, effect)
        tasks = {t: sim.task(t) for names in FAMILIES.values() for t in names}
        rows = judge(tasks, n_boot)
        wrong = [r for r in rows if r.verdict in ("supported", "contradicted")]
        any_false += bool(wrong)
        false_claims += len(wrong)
        supported += sum(r.verdict == "supported" for r in rows)
        floors += sum(r.p_value is None for r in rows)
        for r in rows:
            if r.ci_low is not None and r.ci_high is not None and r.estimate is not None:
                claims += 1
                covered += r.ci_low <= 0.0 <= r.ci_high
                estimates.append(r.estimate)
        if rep < relabel:
            again = judge(relabelled(tasks, rng), n_boot)
            for r, q in zip(rows, again):
                if r.p_value is not None and q.p_value is not None:
                    max_change = max(max_change, abs(r.p_value - q.p_value))
                verdict_changes += r.verdict != q.verdict
    n_claims = reps * len(FAMILIES)
    return {"any_false": any_false / reps, "per_claim": false_claims / n_claims, "supported": supported / n_claims,
            "coverage": covered / max(claims, 1), "mean_estimate": float(np.mean(estimates)) if estimates else math.nan,
            "untested": floors / n_claims, "relabel_max_p_change": max_change, "relabel_verdict_changes": verdict_changes}


def _mc(rate: float, n: int) -> float:
    return math.sqrt(max(rate * (1 - rate), 1e-12) / n)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200, help="null experiments per seed count (default 200)")
    parser.add_argument("--power-reps", type=int, default=50, help="experiments with an effect per seed count")
    parser.add_argument("--effect", type=float, default=0.5, help="atinuke's advantage, probit scale (default 0.5)")
    parser.add_argument("--n-boot", type=int, default=500, help="joint example resamples at least (default 500)")
    parser.add_argument("--relabel", type=int, default=20, help="null experiments also judged with seeds relabelled")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    figures: dict[str, float | int | str] = {}
    for seeds in (3, 5):
        null = simulate(args.reps, seeds, 0.0, args.n_boot, rng, relabel=args.relabel if seeds == 3 else 0)
        alt = simulate(args.power_reps, seeds, args.effect, args.n_boot, rng)
        figures[f"type1_{seeds}seeds"] = round(null["any_false"], 4)
        figures[f"type1_{seeds}seeds_mc_error"] = round(_mc(null["any_false"], args.reps), 4)
        figures[f"type1_per_claim_{seeds}seeds"] = round(null["per_claim"], 4)
        figures[f"power_{seeds}seeds"] = round(alt["supported"], 4)
        figures[f"power_{seeds}seeds_mc_error"] = round(_mc(alt["supported"], args.power_reps * len(FAMILIES)), 4)
        figures[f"ci_coverage_{seeds}seeds"] = round(null["coverage"], 4)
        figures[f"effect_metric_{seeds}seeds"] = round(alt["mean_estimate"], 4)
        if seeds == 3:
            figures["seed_relabel_max_p_change"] = float(f"{null['relabel_max_p_change']:.3g}")
            figures["seed_relabel_verdict_changes"] = int(null["relabel_verdict_changes"])
    figures.update(effect_probit=args.effect, reps=args.reps, power_reps=args.power_reps, n_boot=args.n_boot,
                   claims_per_experiment=len(FAMILIES), seconds=round(time.perf_counter() - start, 1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
