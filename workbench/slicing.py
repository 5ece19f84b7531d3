"""Which ``meta_*`` features are worth slicing by: usable slices, ranked by how much failure depends on them.

A slice feature is useful when it cuts the examples into a few groups each large enough to estimate an error
rate (``min_n`` examples), and when the error rate differs between those groups. Identifier-like and free-text
columns (nearly one value per example, such as a caption id or a generator's added words) make slices of one or
two examples with meaningless intervals: they are excluded, as they are from the cohort tree. Numeric features
are binned by quantiles. Usefulness is the chi-squared test of independence between slice and failure
(Pearson, 1900; ``scipy.stats.chi2_contingency``) on the slices with enough examples; its p-value ranks them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_SLICE = 10  # examples a slice needs for its error rate to mean something (a 95% CI at most about ±0.3)
MAX_CATEGORIES = 12  # more distinct values than this (non-numeric): free text or an id, not a slice feature


@dataclass(frozen=True)
class FeatureRank:
    """How useful one feature is for slicing: ``usable`` with the reason when not, and the test's p-value."""

    feature: str
    kind: str  # "categorical", "binned" or "excluded"
    usable: bool
    n_slices: int
    p_value: float
    reason: str


def _slices(values: pd.Series, n_bins: int) -> tuple[pd.Series, str, str]:
    """The slice of each example, the feature's kind, and why it is excluded ("" when it is not)."""
    present = values.dropna()
    if present.empty:
        return values, "excluded", "no values"
    distinct = present.astype(str).nunique()
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    if numeric and distinct > n_bins:
        return pd.qcut(values.astype(float), n_bins, duplicates="drop").astype(str), "binned", ""
    if not numeric and (distinct > MAX_CATEGORIES or distinct > 0.5 * len(present)):
        return values, "excluded", f"{distinct} distinct values: an id or free text"
    return values.astype(str), "categorical", ""


def rank_features(table: pd.DataFrame, n_bins: int = 4, min_n: int = MIN_SLICE) -> list[FeatureRank]:
    """The ``meta_*`` features of a predictions table, the most useful first, unusable ones last.

    Args:
        table: a predictions table (``correct`` and ``meta_*`` columns).
        n_bins: quantile bins of a numeric feature.
        min_n: examples a slice needs to count.

    Returns:
        One :class:`FeatureRank` per feature: usable ones by the chi-squared p-value of slice x failure
        (ascending), then the unusable ones with their reason.
    """
    from scipy.stats import chi2_contingency

    failed = ~table["correct"].astype(bool)
    ranks = []
    for feature in [c for c in table.columns if c.startswith("meta_")]:
        slices, kind, reason = _slices(table[feature], n_bins)
        if reason:
            ranks.append(FeatureRank(feature, kind, False, 0, float("nan"), reason))
            continue
        counts = pd.crosstab(slices, failed)
        big = counts[counts.sum(axis=1) >= min_n]
        if len(big) < 2:
            ranks.append(FeatureRank(feature, kind, False, len(big), float("nan"),
                                     f"fewer than two slices of {min_n} or more examples"))
            continue
        if big.shape[1] < 2 or (big == 0).all(axis=0).any():
            p = 1.0  # every slice all right (or all wrong): failure does not depend on it here
        else:
            p = float(chi2_contingency(big.to_numpy())[1])
        ranks.append(FeatureRank(feature, kind, True, len(big), p, ""))
    usable = sorted((r for r in ranks if r.usable), key=lambda r: (r.p_value, r.feature))
    return usable + [r for r in ranks if not r.usable]


def excluded_features(table: pd.DataFrame, n_bins: int = 4) -> list[str]:
    """The ``meta_*`` columns that are ids or free text (never a slice or a cohort feature)."""
    return [c for c in table.columns if c.startswith("meta_") and _slices(table[c], n_bins)[1] == "excluded"]


def as_frame(ranks: list[FeatureRank]) -> pd.DataFrame:
    """The ranking as a table (feature, kind, usable, slices, p-value, reason)."""
    return pd.DataFrame([r.__dict__ for r in ranks], columns=["feature", "kind", "usable", "n_slices", "p_value",
                                                               "reason"]).replace({np.nan: None})
