"""The statistics every verdict of the workbench rests on, each written once.

- :func:`bootstrap_ci`: percentile bootstrap interval of any statistic (Efron and Tibshirani, 1993), through
  ``scipy.stats.bootstrap``; :func:`mean_ci` is the NaN-tolerant (mean, low, high) form the faithfulness
  tables use.
- :func:`paired_bootstrap`: two runs on the same examples (Koehn, 2004; Berg-Kirkpatrick et al., 2012).
- :func:`hierarchical_bootstrap`: seeds, then examples within each seed (Davison and Hinkley, 1997, §3.8), which
  ``scipy.stats.bootstrap`` does not offer. The claims no longer use it: with 3 seeds its seed stage has 10
  distinct outcomes and rejects far too often (issue 28); ``workbench.run_inference`` tests runs instead.
- :func:`mcnemar`: the exact binomial test on the discordant pairs (McNemar, 1947; Dietterich, 1998).
- :func:`holm`: Holm's step-down correction (Holm, 1979).
- :func:`seed_interval`: mean and Student-t interval over a handful of seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

from atinuke.errors import UserInputError

N_BOOT = 2000


# ---------------------------------------------------------------------------------------------------------
# Confidence intervals

@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile bootstrap interval.

    Attributes:
        estimate: the statistic on the full sample.
        low, high: the ``(alpha/2, 1 - alpha/2)`` percentiles of the bootstrap distribution.
        n: sample size.
        level: the interval's nominal coverage (``1 - alpha``).
    """

    estimate: float
    low: float
    high: float
    n: int
    level: float

    @property
    def width(self) -> float:
        return self.high - self.low


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic: Callable[..., float] = np.mean,
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> ConfidenceInterval:
    """Percentile bootstrap confidence interval of ``statistic`` (Efron and Tibshirani, 1993).

    Args:
        values: the per-example values, shape [n] (e.g. 0/1 correctness or per-example F1).
        statistic: maps a sample [n] to a number; vectorised over resamples when it accepts ``axis``
            (``np.mean`` does), which makes 1000 resamples of 10k values take milliseconds.
        n_boot: number of resamples.
        alpha: one minus the coverage.
        seed: seed of the resampling generator.

    Returns:
        A :class:`ConfidenceInterval`; the point estimate always lies inside it.
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise UserInputError(f"bootstrap_ci needs a non-empty 1-D sample, got shape {data.shape}")
    estimate = float(statistic(data))
    if data.size == 1 or np.all(data == data[0]):  # every resample is the sample itself
        return ConfidenceInterval(estimate, estimate, estimate, int(data.size), 1 - alpha)
    try:
        statistic(data[None, :], axis=1)
        vectorized = True
    except TypeError:
        vectorized = False
    result = stats.bootstrap((data,), statistic, n_resamples=n_boot, confidence_level=1 - alpha,
                             method="percentile", vectorized=vectorized, rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    # A percentile interval can miss the estimate for skewed statistics; widen to keep it inside.
    return ConfidenceInterval(estimate, min(low, estimate), max(high, estimate), int(data.size), 1 - alpha)


def seed_interval(values: npt.ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of per-seed values.

    Args:
        values: one value per seed, shape [n_seeds].
        confidence: interval coverage.

    Returns:
        ``(mean, low, high)``; the bounds are NaN for fewer than two values.
    """
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if len(array) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array)))
    return mean, mean - half, mean + half


def mean_ci(values: Sequence[Optional[float]], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
            ) -> tuple[float, float, float]:
    """(mean, low, high) of ``values`` with None and NaN dropped; NaNs when nothing is left."""
    data = [v for v in values if v is not None and not math.isnan(v)]
    if not data:
        return float("nan"), float("nan"), float("nan")
    ci = bootstrap_ci(data, n_boot=n_boot, alpha=alpha, seed=seed)
    return ci.estimate, ci.low, ci.high


# ---------------------------------------------------------------------------------------------------------
# Paired tests

@dataclass(frozen=True)
class PairedBootstrap:
    """Paired bootstrap of the difference ``mean(b) - mean(a)`` over the same examples.

    Attributes:
        mean_a, mean_b: the metric of each run.
        delta: ``mean_b - mean_a``.
        low, high: percentile interval of the resampled deltas.
        p_value: two-sided, ``2 * (min(#{delta* <= 0}, #{delta* >= 0}) + 1) / (n_boot + 1)``, capped at 1.
        n: number of paired examples.
        significant: ``p_value < alpha``.
    """

    mean_a: float
    mean_b: float
    delta: float
    low: float
    high: float
    p_value: float
    n: int
    significant: bool


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = 2000,
                     alpha: float = 0.05, seed: int = 0) -> PairedBootstrap:
    """Paired bootstrap test of two runs' per-example scores (Berg-Kirkpatrick et al., 2012).

    Args:
        a, b: per-example metric (0/1 correctness or F1) of runs A and B on the same examples, shape [n].
        n_boot: resamples (each resamples example indices once and applies them to both runs).
        alpha: significance level and one minus the interval's coverage.
        seed: generator seed.

    Returns:
        A :class:`PairedBootstrap`; identical runs give delta 0 and p-value 1.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise UserInputError(f"paired_bootstrap needs two equal non-empty 1-D samples, got {x.shape} and {y.shape}")
    diff = y - x  # [n]
    if diff.size == 1 or np.all(diff == diff[0]):
        deltas = np.full(n_boot, diff[0])
    else:
        deltas = stats.bootstrap((diff,), np.mean, n_resamples=n_boot, method="percentile", vectorized=True,
                                 rng=np.random.default_rng(seed)).bootstrap_distribution  # [n_boot]
    # (count + 1) / (n_boot + 1): a resampling p-value is never exactly 0 (Davison and Hinkley, 1997, eq. 4.11).
    tail = min(int(np.sum(deltas <= 0)), int(np.sum(deltas >= 0)))
    p_value = min(1.0, 2.0 * (tail + 1) / (n_boot + 1))
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return PairedBootstrap(float(x.mean()), float(y.mean()), float(diff.mean()), float(low), float(high),
                           p_value, int(diff.size), p_value < alpha)


@dataclass(frozen=True)
class BootstrapTest:
    """A two-sided paired bootstrap test of "the mean difference is 0".

    Attributes:
        estimate: the observed statistic (mean over tasks of the mean over seeds of the mean difference).
        low, high: 95% percentile interval.
        p_value: (k + 1) / (B + 1) doubled, k the resamples on the far side of 0 (Davison and Hinkley, 1997).
        resolution: the smallest p-value ``n_boot`` resamples can give.
        n_boot: resamples.
    """

    estimate: float
    low: float
    high: float
    p_value: float
    resolution: float
    n_boot: int


def hierarchical_bootstrap(groups: Sequence[Sequence[np.ndarray]], n_boot: int = N_BOOT, seed: int = 0) -> BootstrapTest:
    """Two-stage paired bootstrap over seeds, then examples within each seed, of per-example differences.

    Args:
        groups: one entry per task; each a list with one array per seed of per-example differences
            (model A minus model B on the same examples).
        n_boot: resamples.
        seed: the resampling RNG seed (the test is deterministic).

    Returns:
        The test of the mean over tasks of (mean over seeds of the mean difference).

    Raises:
        UserInputError: for an empty task, an empty seed or ``n_boot < 1``.
    """
    if n_boot < 1:
        raise UserInputError(f"n_boot must be positive, got {n_boot}")
    if not groups or any(not seeds or any(len(d) == 0 for d in seeds) for seeds in groups):
        raise UserInputError("every task needs at least one seed with at least one example")
    rng = np.random.default_rng(seed)
    observed = float(np.mean([np.mean([d.mean() for d in seeds]) for seeds in groups]))
    boot = np.zeros(n_boot)
    for seeds in groups:
        # [n_seeds, n_boot]: each seed's example-resampled means
        means = np.stack([d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1) for d in seeds])
        picks = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))  # [n_boot, n_seeds] resampled seeds
        boot += means[picks, np.arange(n_boot)[:, None]].mean(axis=1)
    boot /= len(groups)
    below, above = int((boot <= 0).sum()), int((boot >= 0).sum())
    p_value = min(1.0, 2 * (min(below, above) + 1) / (n_boot + 1))
    low, high = np.percentile(boot, [2.5, 97.5])
    return BootstrapTest(observed, float(low), float(high), p_value, min(1.0, 2 / (n_boot + 1)), n_boot)


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on paired correctness (McNemar, 1947; Dietterich, 1998).

    Attributes:
        both_right, a_only, b_only, both_wrong: the 2x2 table of paired outcomes.
        statistic: the chi-square statistic ``(a_only - b_only)^2 / (a_only + b_only)`` (no correction).
        statistic_corrected: with Edwards' continuity correction, ``(|a_only - b_only| - 1)^2 / (...)``.
        p_value: the exact two-sided binomial p-value of ``a_only`` among the discordant pairs (p = 0.5).
        p_value_chi2: the asymptotic p-value of ``statistic_corrected`` (chi-square, 1 df).
    """

    both_right: int
    a_only: int
    b_only: int
    both_wrong: int
    statistic: float
    statistic_corrected: float
    p_value: float
    p_value_chi2: float


def mcnemar(a_correct: Sequence[bool] | np.ndarray, b_correct: Sequence[bool] | np.ndarray) -> McNemar:
    """McNemar's test of two classifiers on the same examples, exact (binomial) and asymptotic.

    Args:
        a_correct, b_correct: per-example correctness of runs A and B, shape [n].

    Returns:
        A :class:`McNemar`; with no discordant pairs the p-values are 1.
    """
    x, y = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise UserInputError(f"mcnemar needs two equal 1-D correctness vectors, got {x.shape} and {y.shape}")
    return mcnemar_from_table(int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum()), int((~x & ~y).sum()))


def mcnemar_from_table(both_right: int, a_only: int, b_only: int, both_wrong: int) -> McNemar:
    """McNemar's test from the 2x2 table's counts (see :func:`mcnemar`)."""
    discordant = a_only + b_only
    if discordant == 0:
        return McNemar(both_right, a_only, b_only, both_wrong, 0.0, 0.0, 1.0, 1.0)
    statistic = (a_only - b_only) ** 2 / discordant
    corrected = (abs(a_only - b_only) - 1) ** 2 / discordant
    exact = float(stats.binomtest(a_only, discordant, 0.5, alternative="two-sided").pvalue)
    return McNemar(both_right, a_only, b_only, both_wrong, float(statistic), float(corrected), exact,
                   float(stats.chi2.sf(corrected, df=1)))


def holm(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjusted p-values (Holm, 1979); None entries stay None and do not count."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[Optional[float]] = [None] * len(p_values)
    running = 0.0
    m = len(present)
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
