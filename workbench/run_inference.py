"""Run-level inference: the training run is the unit of replication (docs/experiment.md, "Verdicts").

Each run's score is its task's headline metric on the dev set (``workbench.headline_stats``). Two arms share no
initialisation, so their runs are independent samples: the difference of the arms' mean run scores is tested
with Welch's t (Welch, 1947; the run-level comparison Dror et al., 2018, and Bouthillier et al., 2021, arXiv
2103.03098, recommend at few seeds), whose reference distribution has the degrees of freedom the seed count
allows. Relabelling seeds cannot change it.

Every run scores the same dev examples, so part of the example-level noise is shared by all runs and is not in
the seed-to-seed spread. It is measured by resampling the examples jointly, one index vector per resample for
every run, arm and task (Koehn, 2004, for a corpus-level metric recomputed on each resample): the covariance of
two runs' resampled scores estimates the shared variance, which is added to the standard error with infinite
degrees of freedom (Welch-Satterthwaite). A run's own example noise, the variance minus that covariance, is a
floor on the seed variance. The resamples are seeded by (``RESAMPLING_SEED``, task, number of examples, chunk),
so every table of one experiment draws the same ones; more chunks are drawn until the Monte Carlo standard
error of p (from the spread of p over the chunks) is below ``ALPHA / 10``.
"""
from __future__ import annotations

import collections
import functools
import math
import zlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import stats

from atinuke.power import minimum_detectable_effect, welch_df
from workbench.experiment_runs import ALPHA

RESAMPLING_SEED = 0  # the one seed of every example resample (claims, competence, report, app)
CHUNK = 250  # resamples drawn at a time; the Monte Carlo error is estimated from the spread over chunks
N_BOOT = 1000  # resamples drawn at least
MAX_FACTOR = 16  # at most N_BOOT * MAX_FACTOR resamples


_WEIGHTS: "collections.OrderedDict[tuple[str, int, int, int], np.ndarray]" = collections.OrderedDict()
WEIGHTS_CACHE_BYTES = 64 * 2 ** 20  # the most memory the cached resamples take


def resample_weights(task: str, n: int, chunk: int, size: int = CHUNK) -> np.ndarray:
    """How often each of ``n`` examples is drawn in each of ``size`` bootstrap resamples, ``[size, n]``: the same
    for every run, arm and table of the task (seeded by ``RESAMPLING_SEED``, the task, ``n`` and ``chunk``).
    Read-only (cached up to ``WEIGHTS_CACHE_BYTES``)."""
    key = (task, n, chunk, size)
    if key in _WEIGHTS:
        _WEIGHTS.move_to_end(key)
        return _WEIGHTS[key]
    weights = _draw_weights(task, n, chunk, size)
    _WEIGHTS[key] = weights
    while sum(w.nbytes for w in _WEIGHTS.values()) > WEIGHTS_CACHE_BYTES and len(_WEIGHTS) > 1:
        _WEIGHTS.popitem(last=False)
    return weights


def _draw_weights(task: str, n: int, chunk: int, size: int) -> np.ndarray:
    sequence = np.random.SeedSequence([RESAMPLING_SEED, zlib.crc32(task.encode("utf-8")), n, chunk])
    picks = np.random.default_rng(sequence).integers(0, n, size=(size, n))  # one index vector per resample
    counts = np.bincount((picks + n * np.arange(size)[:, None]).ravel(), minlength=size * n)
    weights = counts.reshape(size, n).astype(float)
    weights.flags.writeable = False
    return weights


@dataclass(frozen=True)
class RunTest:
    """A test of run-level scores: arm A against arm B (two-sample), or A against 0 (one-sample).

    Attributes:
        estimate: mean run score of A minus that of B (or of A).
        low, high: two-sided ``1 - ALPHA`` t interval.
        p_value: two-sided (``alternative="two-sided"``) or one-sided ("greater") p; None when no test is
            possible (one run per arm in a two-sample test).
        p_mc_error: Monte Carlo standard error of ``p_value`` (from the spread of p over resample chunks).
        se, df: the standard error and its Welch-Satterthwaite degrees of freedom (``inf``: normal).
        mde: the smallest true difference detected with 80% power at ``alpha`` (NaN when untestable; computed on
            first use).
        n_resamples: example resamples drawn.
        runs_a, runs_b: runs of each arm (``runs_b`` 0 in a one-sample test).
        seed_sd_a, seed_sd_b: the seed-to-seed sd of each arm's run scores (NaN with one run).
        shared_se: the part of ``se`` from the examples shared by all runs.
        alternative: "two-sided" or "greater".
    """

    estimate: float
    low: float
    high: float
    p_value: Optional[float]
    p_mc_error: Optional[float]
    se: float
    df: float
    n_resamples: int
    runs_a: int
    runs_b: int
    seed_sd_a: float
    seed_sd_b: float
    shared_se: float
    alternative: str
    alpha: float = ALPHA

    @functools.cached_property
    def mde(self) -> float:
        if self.p_value is None:
            return math.nan
        return minimum_detectable_effect(self.se, self.df, self.alpha if self.alternative == "two-sided" else 2 * self.alpha)

    def describe(self) -> str:
        """One sentence: estimate, interval, test, p with its Monte Carlo error."""
        df = "∞" if not math.isfinite(self.df) else f"{self.df:.1f}"
        text = f"{self.estimate:+.3f} [95% CI {self.low:+.3f}, {self.high:+.3f}]"
        if self.p_value is None:
            return text + " (example-level interval only)"
        kind = "Welch t over runs" if self.runs_b else ("one-sample t over runs" if self.runs_a > 1 else
                                                        "example-level bootstrap of one run")
        return (f"{text}, {kind} (df {df}; seed sd {_sd(self.seed_sd_a)}"
                + (f" vs {_sd(self.seed_sd_b)}" if self.runs_b else "")
                + f"; shared example se {self.shared_se:.3g}; {self.n_resamples} joint example resamples), "
                f"{'one-sided ' if self.alternative == 'greater' else ''}p={self.p_value:.3g} ± {self.p_mc_error or 0:.1g}")


def _sd(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.3g}"


def _off_diagonal_mean(block: np.ndarray) -> float:
    size = block.shape[0]
    return float((block.sum() - np.trace(block)) / (size * (size - 1))) if size > 1 else math.nan


def _evaluate(a: np.ndarray, b: Optional[np.ndarray], boot: np.ndarray, alternative: str
              ) -> tuple[float, float, float, Optional[float], float, float, float]:
    """(estimate, se, df, p, seed sd a, seed sd b, shared se) from run scores and their resampled values."""
    n_a, n_b = len(a), 0 if b is None else len(b)
    estimate = float(a.mean() - (b.mean() if b is not None else 0.0))
    cov = np.atleast_2d(np.cov(boot, rowvar=False))
    sd_a = float(a.std(ddof=1)) if n_a > 1 else math.nan
    sd_b = float(b.std(ddof=1)) if b is not None and n_b > 1 else math.nan
    contrast = np.concatenate([np.full(n_a, 1.0 / n_a), np.full(n_b, -1.0 / n_b) if n_b else []])
    if n_a < 2 or (b is not None and n_b < 2):
        # No seed variance: the example-level variance only. A one-sample test of one run is a test of that
        # run; a two-sample test needs two runs per arm.
        se = math.sqrt(max(float(contrast @ cov @ contrast), 0.0))
        p = None if b is not None else _p(estimate, se, math.inf, alternative)
        return estimate, se, math.inf, p, sd_a, sd_b, se
    block_a = cov[:n_a, :n_a]
    shared_a = _off_diagonal_mean(block_a)
    own_a = max(float(np.mean(np.diag(block_a))) - shared_a, 0.0)
    variances, counts = [max(sd_a ** 2, own_a) / n_a], [n_a]
    shared = shared_a
    if b is not None:
        block_b = cov[n_a:, n_a:]
        shared_b = _off_diagonal_mean(block_b)
        own_b = max(float(np.mean(np.diag(block_b))) - shared_b, 0.0)
        variances.append(max(sd_b ** 2, own_b) / n_b)
        counts.append(n_b)
        shared = shared_a + shared_b - 2 * float(cov[:n_a, n_a:].mean())
    shared = max(shared, 0.0)
    se = math.sqrt(sum(variances) + shared)
    df = welch_df(variances, counts, shared)
    return estimate, se, df, _p(estimate, se, df, alternative), sd_a, sd_b, math.sqrt(shared)


def _p(estimate: float, se: float, df: float, alternative: str) -> float:
    if se <= 0:
        positive = estimate > 0 if alternative == "greater" else estimate != 0
        return 0.0 if positive else 1.0
    t = estimate / se
    sf = stats.norm.sf if not math.isfinite(df) else (lambda x: stats.t.sf(x, df))
    return float(min(1.0, 2 * sf(abs(t)))) if alternative == "two-sided" else float(sf(t))


def run_level_test(a: Sequence[float], b: Optional[Sequence[float]], resampled: Callable[[int], np.ndarray],
                   n_boot: int = N_BOOT, alternative: str = "two-sided", alpha: float = ALPHA) -> RunTest:
    """Test run scores ``a`` against ``b`` (or against 0 when ``b`` is None).

    Args:
        a, b: one score per run of each arm.
        resampled: ``resampled(chunk)`` gives the same scores on ``CHUNK`` joint resamples of the examples,
            ``[CHUNK, len(a) + len(b)]`` (a's runs first), the same resamples for every run.
        n_boot: resamples drawn at least; more (up to ``MAX_FACTOR`` times) until the Monte Carlo standard error
            of p is below ``alpha / 10``.
        alternative: "two-sided" or "greater" (a above b).
        alpha: the level of the interval and of the minimum detectable effect.
    """
    x = np.asarray(a, dtype=float)
    y = None if b is None else np.asarray(b, dtype=float)
    least = max(2, math.ceil(n_boot / CHUNK))
    chunks: list[np.ndarray] = []
    while True:
        chunks.append(np.asarray(resampled(len(chunks)), dtype=float).reshape(CHUNK, -1))
        if len(chunks) < least:
            continue
        estimate, se, df, p, sd_a, sd_b, shared_se = _evaluate(x, y, np.concatenate(chunks), alternative)
        if p is None:
            error = None
            break
        per_chunk = [_evaluate(x, y, chunk, alternative)[3] for chunk in chunks]
        error = float(np.std([q for q in per_chunk if q is not None], ddof=1) / math.sqrt(len(chunks)))
        if error <= alpha / 10 or len(chunks) >= least * MAX_FACTOR:
            break
    critical = float(stats.norm.isf(alpha / 2) if not math.isfinite(df) else stats.t.isf(alpha / 2, df))
    return RunTest(estimate, estimate - critical * se, estimate + critical * se, p, error, se, df,
                   CHUNK * len(chunks), len(x), 0 if y is None else len(y), sd_a, sd_b, shared_se, alternative, alpha)
