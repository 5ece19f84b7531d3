"""Power of the experiment's run-level tests: the minimum detectable effect and the seeds a design needs.

The verdicts (``workbench.claims``, docs/experiment.md) compare two arms' run-level headline metrics with a
Welch t statistic whose standard error adds a shared example-level component (resampled once for all runs).
Its power at a true difference ``delta`` is that of a two-sided t test with ``df`` degrees of freedom and
noncentrality ``delta / se`` (Cohen, 1988, ch. 2; the noncentral t of SciPy, as statsmodels' ``TTestIndPower``
computes it). Here it lives in ``atinuke`` so that ``atinuke experiment --plan`` can size an experiment before any
training, from the seed-to-seed spread of an earlier one (Bouthillier et al., 2021, arXiv 2103.03098, on seed
variance; Dror et al., 2018, on choosing the test).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from atinuke.errors import UserInputError

POWER = 0.8
ALPHA = 0.05
MAX_SEEDS = 200


def welch_df(variances: Sequence[float], counts: Sequence[int], extra: float = 0.0) -> float:
    """Welch-Satterthwaite degrees of freedom of ``sum(v_i) + extra``, each ``v_i`` estimated from ``n_i``
    values (``n_i - 1`` df) and ``extra`` known (infinite df); ``inf`` when every ``v_i`` is 0."""
    total = sum(variances) + extra
    denominator = sum(v * v / (n - 1) for v, n in zip(variances, counts) if n > 1)
    if denominator <= 0 or total <= 0:
        return math.inf
    return total * total / denominator


def t_test_power(delta: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided level-``alpha`` t test with ``df`` degrees of freedom at a true difference
    ``delta`` when the estimate's standard error is ``se`` (noncentral t; normal when ``df`` is infinite)."""
    from scipy import stats

    if se <= 0:
        return 1.0 if delta != 0 else alpha
    shift = abs(delta) / se
    if not math.isfinite(df) or df > 1e4:  # the noncentral t is a normal there (and numerically unstable)
        critical = float(stats.norm.isf(alpha / 2))
        return float(stats.norm.sf(critical - shift) + stats.norm.cdf(-critical - shift))
    critical = float(stats.t.isf(alpha / 2, df))
    upper, lower = float(stats.nct.sf(critical, df, shift)), float(stats.nct.cdf(-critical, df, shift))
    # SciPy's noncentral t returns NaN for a far tail (large shift): that tail is 0 (or 1) there.
    return (upper if math.isfinite(upper) else 1.0) + (lower if math.isfinite(lower) else 0.0)


def minimum_detectable_effect(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference the test detects with probability ``power`` (NaN when ``se`` or ``df``
    are not finite and positive)."""
    from scipy.optimize import brentq

    if not (math.isfinite(se) and se > 0 and df > 0):
        return math.nan
    upper = se
    while t_test_power(upper, se, df, alpha) < power:
        upper *= 2
    return float(brentq(lambda d: t_test_power(d, se, df, alpha) - power, 0.0, upper, xtol=se * 1e-4))


def seeds_needed(effect: float, sd_a: float, sd_b: float, shared_variance: float = 0.0, alpha: float = ALPHA,
                 power: float = POWER, max_seeds: int = MAX_SEEDS) -> Optional[int]:
    """The fewest seeds per arm (equal in both) for which the run-level test detects ``effect`` with
    ``power``, given each arm's seed-to-seed sd and the shared example-level variance of the difference
    (which more seeds do not shrink). None when even ``max_seeds`` are not enough."""
    if effect <= 0:
        raise UserInputError(f"--effect must be positive, got {effect}")
    for n in range(2, max_seeds + 1):
        variances = [sd_a ** 2 / n, sd_b ** 2 / n]
        se = math.sqrt(sum(variances) + shared_variance)
        if t_test_power(effect, se, welch_df(variances, [n, n], shared_variance), alpha) >= power:
            return n
    return None


@dataclass(frozen=True)
class PlanRow:
    """Seeds one task needs, from an earlier experiment's headline metric in each run.

    Attributes:
        task, metric: the task and its headline metric.
        seeds_a, seeds_b: the earlier experiment's runs of each arm.
        sd_a, sd_b: the seed-to-seed standard deviation of each arm's headline metric.
        seeds_needed: seeds per arm for 80% power at the effect (None: more than ``MAX_SEEDS``).
    """

    task: str
    metric: str
    seeds_a: int
    seeds_b: int
    sd_a: float
    sd_b: float
    seeds_needed: Optional[int]


def plan_from_results(results_dir: Path, effect: float, arms: tuple[str, str] = ("atinuke", "bert"),
                      alpha: float = ALPHA, power: float = POWER) -> list[PlanRow]:
    """Seeds per arm needed to detect ``effect`` (in headline-metric units) on each task of an earlier
    experiment, from its run-level seed variance.

    The seed sd of each run's headline metric includes that run's own example-level noise; the shared part
    (the dev set drawn once for every run) is not in it, so the answer is a lower bound when example variance
    is large (``workbench claims`` reports the full minimum detectable effect).

    Raises:
        UserInputError: no finished runs, or fewer than two seeds of an arm for every task.
    """
    from statistics import stdev

    from atinuke.experiment_results import collect_results

    rows = collect_results(Path(results_dir))
    if not rows:
        raise UserInputError(f"--from {results_dir}: no finished fine-tuning runs of an `atinuke experiment` there")
    headline: dict[tuple[str, str], list[float]] = {}
    metric_of: dict[str, str] = {}
    for row in rows:
        metric_of.setdefault(row["task"], row["metric"])  # the headline metric comes first
        if row["metric"] == metric_of[row["task"]] and row["arm"] in arms and row["value"] not in ("", None):
            headline.setdefault((row["arm"], row["task"]), []).append(float(row["value"]))
    plan = []
    for task, metric in metric_of.items():
        a, b = headline.get((arms[0], task), []), headline.get((arms[1], task), [])
        if len(a) < 2 or len(b) < 2:
            continue
        sd_a, sd_b = stdev(a), stdev(b)
        plan.append(PlanRow(task, metric, len(a), len(b), sd_a, sd_b,
                            seeds_needed(effect, sd_a, sd_b, 0.0, alpha, power)))
    if not plan:
        raise UserInputError(f"--from {results_dir}: no task has two or more seeds of both {arms[0]} and {arms[1]}; "
                             "a seed variance needs at least two runs per arm")
    return plan


def format_plan(plan: Sequence[PlanRow], effect: float, arms: tuple[str, str] = ("atinuke", "bert"),
                alpha: float = ALPHA, power: float = POWER) -> str:
    """The plan as a short text table, the largest need last."""
    lines = [f"Seeds per arm to detect a difference of {effect:g} in the headline metric ({arms[0]} vs {arms[1]}, "
             f"two-sided Welch t over runs, alpha {alpha:g}, power {power:.0%}; from the seed sd of the earlier "
             "runs, so a lower bound where the shared dev-set variance matters):",
             f"{'task':<10} {'metric':<9} {'runs':>7} {'sd ' + arms[0]:>12} {'sd ' + arms[1]:>10} {'seeds':>6}"]
    for row in plan:
        needed = str(row.seeds_needed) if row.seeds_needed is not None else f">{MAX_SEEDS}"
        lines.append(f"{row.task:<10} {row.metric:<9} {row.seeds_a:>3}/{row.seeds_b:<3} {row.sd_a:>12.4f} "
                     f"{row.sd_b:>10.4f} {needed:>6}")
    known = [r.seeds_needed for r in plan if r.seeds_needed is not None]
    worst = f">{MAX_SEEDS}" if len(known) < len(plan) else str(max(known))
    lines.append(f"Every task: --seeds {worst}.")
    return "\n".join(lines) + "\n"
