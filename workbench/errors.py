"""Error analysis over per-example predictions tables (docs/predictions.md), one taxonomy for every task.

What it gives, for any task's ``predictions.parquet``:

- per-slice metrics over the ``meta_*`` features (numeric features binned by quantiles) with percentile
  bootstrap confidence intervals (Efron and Tibshirani, 1993, "An Introduction to the Bootstrap");
- confusion matrices (classification);
- calibration: expected and maximum calibration error and reliability-diagram data (Naeini et al., 2015,
  "Obtaining Well Calibrated Probabilities Using Bayesian Binning"; Guo et al., 2017, "On Calibration of
  Modern Neural Networks", arXiv 1706.04599);
- the worst examples (confidently wrong);
- error cohorts: a shallow decision tree fitted to predict *failure* from the meta features and from any
  internal signals supplied as extra columns (attention entropy, attribution concentration, probe
  confidence, IG delta), reported node by node with its error rate and coverage, in the spirit of
  Microsoft's Error Analysis (Nushi et al., 2018, "Towards Accountable AI: Hybrid Human-Machine Analyses for
  Characterizing System Failure", arXiv 1809.07424) -- which sees only tabular inputs, where this sees the
  model's insides too.

The taxonomy maps each task's ``meta_*`` names onto shared categories (length, lexical overlap, negation,
entity/answer type, span width, distance), so slices can be compared across tasks.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from atinuke.errors import UserInputError
from workbench.stats import ConfidenceInterval, bootstrap_ci  # noqa: F401  (bootstrap_ci re-exported for the app)

if TYPE_CHECKING:  # annotations only
    from workbench.features.sae import SparseAutoencoder
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "task", "model", "gold", "prediction", "score", "correct")

# One taxonomy across tasks: category -> the meta_* names (any task) that measure it.
TAXONOMY: dict[str, tuple[str, ...]] = {
    "length": ("meta_length", "meta_n_words", "meta_n_tokens", "meta_context_length", "meta_question_length",
               "meta_n_sentences"),
    "lexical overlap": ("meta_overlap", "meta_lexical_overlap", "meta_jaccard"),
    "negation": ("meta_negation", "meta_has_negation"),
    "entity/answer type": ("meta_answer_type", "meta_question_type", "meta_entity_type", "meta_arg_role",
                           "meta_ner"),
    "span width": ("meta_span_width", "meta_answer_length", "meta_argument_width"),
    "distance": ("meta_mention_distance", "meta_distance", "meta_predicate_distance", "meta_answer_position"),
    "label": ("meta_label", "meta_gold_label"),
    "construction": ("meta_rule", "meta_template", "meta_source"),
    "structure": ("meta_n_clusters", "meta_n_mentions", "meta_n_arguments", "meta_impossible"),
    "gender": ("meta_gender", "meta_pronoun"),  # GAP: the pronoun's gender (Webster et al., 2018)
    "page context": ("meta_page_context",),  # GAP: which name the Wikipedia page title matches
}

SIGNAL_PREFIX = "signal_"  # internal-signal columns (attention entropy, IG delta, ...) carry this prefix


def taxonomy_of(column: str) -> str:
    """The shared category of a ``meta_*`` (or ``signal_*``) column name.

    Unknown ``meta_*`` names fall back on keywords in the name (``length``, ``overlap``, ``negat``, ``type``,
    ``width``, ``distance``); internal signals are "internal signal"; anything else is "other".

    Args:
        column: a column name such as ``meta_overlap``.

    Returns:
        The category name, e.g. "lexical overlap".
    """
    for category, names in TAXONOMY.items():
        if column in names:
            return category
    if column.startswith(SIGNAL_PREFIX):
        return "internal signal"
    lowered = column.lower()
    for keyword, category in (("length", "length"), ("overlap", "lexical overlap"), ("negat", "negation"),
                              ("type", "entity/answer type"), ("width", "span width"),
                              ("distance", "distance"), ("label", "label")):
        if keyword in lowered:
            return category
    return "other"


def meta_columns(predictions: pd.DataFrame) -> list[str]:
    """The ``meta_*`` slicing features of a predictions table, in column order."""
    return [c for c in predictions.columns if c.startswith("meta_")]


def validate_predictions(predictions: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """Check the columns of docs/predictions.md and return a copy with ``correct`` as bool.

    Raises:
        UserInputError: naming ``source`` and the missing columns, or an empty table.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in predictions.columns]
    if missing:
        raise UserInputError(f"{source}: missing predictions column(s) {missing} (see docs/predictions.md)")
    if len(predictions) == 0:
        raise UserInputError(f"{source}: the predictions table is empty")
    table = predictions.copy()
    table["correct"] = table["correct"].astype(bool)
    return table


# ---------------------------------------------------------------------------------------------------------
# Bootstrap confidence intervals

# ---------------------------------------------------------------------------------------------------------
# Slices

def bin_feature(values: pd.Series, n_bins: int = 4) -> pd.Series:
    """Slice labels for one feature: quantile bins for numeric features, the value itself otherwise.

    Args:
        values: one ``meta_*`` column.
        n_bins: number of quantile bins for numeric columns with more than ``n_bins`` distinct values.

    Returns:
        A Series of slice labels (``"(3, 7]"``, ``"True"``, ``"who"``; missing values become
        ``"(missing)"``); numeric bins come as an ordered categorical so slices sort by value.
    """
    if pd.api.types.is_bool_dtype(values) or values.dropna().nunique() <= max(n_bins, 2) \
            or not pd.api.types.is_numeric_dtype(values):
        labels = values.map(lambda v: "(missing)" if _is_missing(v) else str(v))
        return labels.astype(str)
    binned = pd.qcut(values.astype(float), q=n_bins, duplicates="drop")  # ordered categorical of intervals
    lowest = float(values.min())  # qcut widens the first edge by 0.1%; show the real minimum instead
    names = [f"[{lowest:.4g}, {iv.right:.4g}]" if i == 0 else f"({iv.left:.4g}, {iv.right:.4g}]"
             for i, iv in enumerate(binned.cat.categories)]
    labels = pd.Categorical.from_codes(binned.cat.codes.where(binned.notna(), -1), categories=names,
                                       ordered=True)
    labels = labels.add_categories(["(missing)"]).fillna("(missing)") if values.isna().any() else labels
    return pd.Series(labels, index=values.index)


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def slice_metrics(predictions: pd.DataFrame, features: Optional[Sequence[str]] = None, n_bins: int = 4,
                  metric: str = "correct", n_boot: int = 500, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Metric per slice of every feature, with bootstrap confidence intervals.

    Args:
        predictions: a predictions table (docs/predictions.md), optionally with ``signal_*`` columns.
        features: columns to slice by (default: every ``meta_*`` column).
        n_bins: quantile bins for numeric features.
        metric: per-example column averaged in each slice (``correct`` -> accuracy/EM, ``example_f1``).
        n_boot, alpha, seed: see :func:`bootstrap_ci`.

    Duplicate features are dropped: a feature whose slice assignment (after binning) puts every example in
    the same group as an earlier feature does -- identical up to renaming the slice labels, e.g. a copy of a
    column, or ``meta_n_words`` beside ``meta_length`` when both bin into the same quantile slices -- would
    repeat that feature's rows, so only the first (in ``features`` order) is kept and the drop is logged.
    Features that differ on even one example are kept.

    Returns:
        Tidy DataFrame, one row per (feature, slice): ``feature``, ``category`` (the taxonomy),
        ``slice``, ``n``, ``coverage`` (share of all rows), ``value`` (mean ``metric``), ``ci_low``,
        ``ci_high``, ``error_rate`` (1 - mean correct), ``delta`` (value minus the overall value).
    """
    table = validate_predictions(predictions)
    if metric not in table.columns:
        raise UserInputError(f"unknown metric column {metric!r}; available: {sorted(table.columns)}")
    features = list(features) if features is not None else meta_columns(table)
    unknown = [f for f in features if f not in table.columns]
    if unknown:
        raise UserInputError(f"unknown feature column(s) {unknown}")
    overall = float(table[metric].astype(float).mean())
    rows = []
    kept: list[tuple[str, np.ndarray]] = []  # (feature, slice code per example) of the features kept so far
    for feature in features:
        labels = bin_feature(table[feature], n_bins)
        codes = pd.factorize(labels.astype(str), sort=False)[0]  # [n] slice id per example, labels forgotten
        twin = next((name for name, other in kept if _same_partition(codes, other)), None)
        if twin is not None:
            logger.info("slices: %s puts every example in the same slice as %s; kept %s, dropped %s",
                        feature, twin, twin, feature)
            continue
        kept.append((feature, codes))
        for label, group in table.groupby(labels, sort=True, observed=True):
            ci = bootstrap_ci(group[metric].astype(float).to_numpy(), n_boot=n_boot, alpha=alpha, seed=seed)
            rows.append(dict(feature=feature, category=taxonomy_of(feature), slice=str(label), n=len(group),
                             coverage=len(group) / len(table), value=ci.estimate, ci_low=ci.low,
                             ci_high=ci.high, error_rate=1.0 - float(group["correct"].mean()),
                             delta=ci.estimate - overall))
    columns = ["feature", "category", "slice", "n", "coverage", "value", "ci_low", "ci_high", "error_rate",
               "delta"]
    return pd.DataFrame(rows, columns=columns)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two [n] slice-code arrays group the examples identically (equal up to relabelling): true
    exactly when the code pairs (a_i, b_i) are as many distinct values as the codes of either array."""
    if len(a) != len(b):
        return False
    n_a, n_b = len(np.unique(a)), len(np.unique(b))
    if n_a != n_b:
        return False
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == n_a


# ---------------------------------------------------------------------------------------------------------
# Confusion and calibration

def confusion_matrix(predictions: pd.DataFrame, labels: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Counts of (gold, predicted) label pairs, for classification tasks.

    Args:
        predictions: a predictions table whose ``gold``/``prediction`` are class names.
        labels: label order (default: sorted union of gold and predicted labels).

    Returns:
        A square DataFrame, index = gold label, columns = predicted label, values = counts.
    """
    table = validate_predictions(predictions)
    gold, predicted = table["gold"].astype(str), table["prediction"].astype(str)
    labels = list(labels) if labels is not None else sorted(set(gold) | set(predicted))
    if len(labels) > 50:
        raise UserInputError(f"{len(labels)} distinct labels: a confusion matrix needs a classification task")
    matrix = pd.crosstab(pd.Categorical(gold, categories=labels), pd.Categorical(predicted, categories=labels),
                         dropna=False)
    matrix.index, matrix.columns = pd.Index(labels, name="gold"), pd.Index(labels, name="predicted")
    return matrix.astype(int)


def is_classification(predictions: pd.DataFrame) -> bool:
    """Whether a predictions table holds class labels (it has ``probs``, or few distinct gold values)."""
    if "probs" in predictions.columns and predictions["probs"].notna().any():
        return True
    return predictions["gold"].astype(str).nunique() <= 20 and len(predictions) > 20


@dataclass
class Calibration:
    """Calibration of a model's confidence (Guo et al., 2017, arXiv 1706.04599).

    Attributes:
        ece: expected calibration error, sum_b (n_b / n) |acc_b - conf_b|.
        mce: maximum calibration error, max_b |acc_b - conf_b| over non-empty bins.
        bins: one row per bin: ``bin``, ``lower``, ``upper``, ``n``, ``confidence`` (mean score),
            ``accuracy`` (mean correct), ``gap`` (accuracy - confidence); the reliability diagram's data.
        n: number of examples.
    """

    ece: float
    mce: float
    bins: pd.DataFrame
    n: int


def calibration(scores: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
                n_bins: int = 10) -> Calibration:
    """Expected calibration error and reliability-diagram data with equal-width confidence bins.

    Args:
        scores: confidence of each prediction in [0, 1], shape [n].
        correct: whether each prediction was right, shape [n].
        n_bins: number of equal-width bins over [0, 1]; bin b holds scores in (b/n_bins, (b+1)/n_bins]
            (the first bin includes 0).

    Returns:
        A :class:`Calibration`.
    """
    conf = np.asarray(scores, dtype=float)
    hits = np.asarray(correct, dtype=float)
    if conf.shape != hits.shape or conf.ndim != 1 or conf.size == 0:
        raise UserInputError(f"calibration needs equal non-empty 1-D scores and correct, got {conf.shape}, {hits.shape}")
    if np.any(~np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1:
        raise UserInputError("calibration scores must be probabilities in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # [n]
    rows, ece, mce = [], 0.0, 0.0
    for b in range(n_bins):
        member = which == b
        n_b = int(member.sum())
        confidence = float(conf[member].mean()) if n_b else float("nan")
        accuracy = float(hits[member].mean()) if n_b else float("nan")
        if n_b:
            gap = abs(accuracy - confidence)
            ece += n_b / conf.size * gap
            mce = max(mce, gap)
        rows.append(dict(bin=b, lower=edges[b], upper=edges[b + 1], n=n_b, confidence=confidence,
                         accuracy=accuracy, gap=accuracy - confidence if n_b else float("nan")))
    return Calibration(ece=float(ece), mce=float(mce), bins=pd.DataFrame(rows), n=int(conf.size))


def worst_examples(predictions: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The ``k`` most confidently wrong predictions (highest ``score`` among ``correct == False``).

    Returns:
        Rows of the predictions table, sorted by descending score (ties by id for determinism).
    """
    table = validate_predictions(predictions)
    wrong = table[~table["correct"]]
    return wrong.sort_values(["score", "id"], ascending=[False, True]).head(k).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# Error cohorts

@dataclass
class CohortTree:
    """Error cohorts found by a decision tree predicting failure (Nushi et al., 2018, arXiv 1809.07424).

    Attributes:
        nodes: one row per tree node: ``node``, ``parent`` (-1 at the root), ``depth``, ``condition``
            (the split that leads here from the parent, e.g. ``meta_negation = True``), ``path`` (all
            conditions from the root joined by " and "), ``n``, ``coverage`` (share of all rows),
            ``error_rate`` (share of wrong predictions in the node), ``error_coverage`` (share of all
            errors that fall in the node), ``is_leaf``.
        features: the feature columns the tree saw (after one-hot encoding of categorical features).
        importances: the tree's feature importances, indexed by feature.
        overall_error_rate: error rate of the whole table.
        assignments: node id of the leaf each row falls into (aligned with the input rows).
    """

    nodes: pd.DataFrame
    features: list[str]
    importances: pd.Series
    overall_error_rate: float
    assignments: np.ndarray = field(repr=False)

    def cohorts(self, min_coverage: float = 0.0) -> pd.DataFrame:
        """Leaves sorted by error rate (highest first), keeping those with at least ``min_coverage``."""
        leaves = self.nodes[self.nodes["is_leaf"] & (self.nodes["coverage"] >= min_coverage)]
        return leaves.sort_values(["error_rate", "n"], ascending=[False, False]).reset_index(drop=True)


def _design_matrix(table: pd.DataFrame, columns: Sequence[str], max_levels: int = 12) -> pd.DataFrame:
    """Numeric features for the tree: numbers/bools as they are, categories one-hot (``col = value``)."""
    parts = {}
    for column in columns:
        values = table[column]
        if pd.api.types.is_bool_dtype(values):
            parts[column] = values.astype(float)
        elif pd.api.types.is_numeric_dtype(values):
            parts[column] = values.astype(float).fillna(values.astype(float).median())
        else:
            text = values.map(lambda v: "(missing)" if _is_missing(v) else str(v))
            if text.dropna().map(lambda s: s in ("True", "False")).all():
                parts[column] = (text == "True").astype(float)
                continue
            for level in text.value_counts().index[:max_levels]:
                parts[f"{column} = {level}"] = (text == level).astype(float)
    return pd.DataFrame(parts, index=table.index)


def error_cohorts(predictions: pd.DataFrame, signals: Optional[pd.DataFrame] = None, max_depth: int = 3,
                  min_samples_leaf: int | float = 0.02, seed: int = 0) -> CohortTree:
    """Fit a shallow decision tree predicting failure and report every node as an error cohort.

    Args:
        predictions: a predictions table; its ``meta_*`` and ``signal_*`` columns are the features.
        signals: optional internal signals, one row per example id: an ``id`` column and numeric columns
            (attention entropy, attribution concentration, probe confidence, IG delta, ...); they are
            merged on ``id`` and prefixed ``signal_`` when they are not already.
        max_depth: depth of the tree (Error Analysis uses shallow trees so cohorts stay readable).
        min_samples_leaf: the smallest cohort, as a count or a share of the rows.
        seed: ``random_state`` of the tree.

    Returns:
        A :class:`CohortTree`.
    """
    from sklearn.tree import DecisionTreeClassifier

    table = validate_predictions(predictions).reset_index(drop=True)
    if signals is not None:
        if "id" not in signals.columns:
            raise UserInputError("signals need an 'id' column to join with the predictions")
        renamed = {c: c if c.startswith(SIGNAL_PREFIX) else f"{SIGNAL_PREFIX}{c}" for c in signals.columns if c != "id"}
        table = table.merge(signals.rename(columns=renamed), on="id", how="left")
    columns = meta_columns(table) + [c for c in table.columns if c.startswith(SIGNAL_PREFIX)]
    if not columns:
        raise UserInputError("no meta_* or signal_* columns to find error cohorts with")
    design = _design_matrix(table, columns)
    failed = (~table["correct"]).to_numpy().astype(int)  # [n]
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_samples_leaf, random_state=seed)
    tree.fit(design.to_numpy(), failed)
    structure = tree.tree_
    node_of_row = tree.decision_path(design.to_numpy())  # sparse [n, n_nodes]
    n_total, n_errors = len(table), int(failed.sum())
    parents, conditions = {0: -1}, {0: ""}
    for node in range(structure.node_count):
        left, right = structure.children_left[node], structure.children_right[node]
        if left == -1:
            continue
        name, threshold = design.columns[structure.feature[node]], structure.threshold[node]
        binary = set(np.unique(design.iloc[:, structure.feature[node]])) <= {0.0, 1.0}
        parents[left], parents[right] = node, node
        if binary and " = " in name:
            conditions[left], conditions[right] = f"not ({name})", name
        elif binary:
            conditions[left], conditions[right] = f"{name} = False", f"{name} = True"
        else:
            conditions[left], conditions[right] = f"{name} <= {threshold:.4g}", f"{name} > {threshold:.4g}"
    rows = []
    for node in range(structure.node_count):
        members = node_of_row[:, node].toarray().ravel().astype(bool)  # [n]
        path, cursor = [], node
        while cursor > 0:
            path.append(conditions[cursor])
            cursor = parents[cursor]
        n_node = int(members.sum())
        errors = int(failed[members].sum())
        rows.append(dict(node=node, parent=parents[node], depth=len(path), condition=conditions[node] or "all",
                         path=" and ".join(reversed(path)) or "all", n=n_node, coverage=n_node / n_total,
                         error_rate=errors / n_node if n_node else float("nan"),
                         error_coverage=errors / n_errors if n_errors else 0.0,
                         is_leaf=bool(structure.children_left[node] == -1)))
    importances = pd.Series(tree.feature_importances_, index=design.columns).sort_values(ascending=False)
    logger.info("error cohorts: %d nodes over %d features, overall error rate %.3f",
                structure.node_count, design.shape[1], n_errors / n_total)
    return CohortTree(nodes=pd.DataFrame(rows), features=list(design.columns), importances=importances,
                      overall_error_rate=n_errors / n_total, assignments=tree.apply(design.to_numpy()))


def internal_signals(subject: Subject, predictions: pd.DataFrame, attribution: bool = True, n_steps: int = 16,
                     top_k: int = 3, progress: Optional[Callable[[int, int], None]] = None,
                     sae: Optional[SparseAutoencoder] = None, hook: Optional[str] = None, n_features: int = 5,
                     pool: str = "max") -> pd.DataFrame:
    """Per-example internal signals of a model, to join with a predictions table for :func:`error_cohorts`.

    Signals: ``attention_entropy`` (mean Shannon entropy, nats, of the last layer's attention rows; high =
    diffuse attention), and with ``attribution=True`` integrated gradients (Sundararajan et al., 2017)
    against a [PAD] baseline: ``attribution_concentration`` (share of the total |score| carried by the
    ``top_k`` words) and ``ig_delta`` (|convergence delta|: how far the IG sum is from f(x) - f(baseline),
    i.e. how little the attribution can be trusted). Probe confidence comes from ``probes`` and is passed
    to :func:`error_cohorts` as a column of its own (workbench does not import probes).

    Args:
        subject: a :class:`workbench.subject.Subject` (plain encoder or task model).
        predictions: the table whose ``id``, ``text`` (and ``text_pair``) rows are explained.
        attribution: also compute the IG-based signals (slower).
        n_steps: IG steps.
        top_k: words counted in the concentration.
        progress: called with (done, total) after each example.
        sae, hook: a sparse autoencoder of ``hook``'s activations: adds ``feature_<f>_active`` for the
            ``n_features`` latents whose activation (pooled by ``pool`` over each example's tokens) best
            separates the failed examples (:func:`workbench.features.units.feature_signals`).

    Returns:
        DataFrame: ``id``, ``attention_entropy`` and, with attribution, ``attribution_concentration``,
        ``ig_delta``; with an SAE, the feature columns. Examples the model cannot read (empty, too long)
        get NaN.
    """
    from workbench.attention import attention_maps, entropy

    table = validate_predictions(predictions)
    rows = []
    for i, row in enumerate(table.itertuples(index=False)):
        text = str(row.text)
        pair = getattr(row, "text_pair", None)
        pair = pair if isinstance(pair, str) and pair.strip() else None
        values: dict[str, Any] = {"id": row.id, "attention_entropy": np.nan}
        try:
            maps = attention_maps(subject, text, pair)
            values["attention_entropy"] = float(entropy(maps.pattern[-1]).mean())
            if attribution:
                from workbench.attribution import AttributionParams, attribute

                result = attribute(subject, [text], "integrated_gradients", params=AttributionParams(n_steps=n_steps),
                                   text_pairs=None if pair is None else [pair], example_ids=[str(row.id)])
                words = result.word_scores()["score"].abs().to_numpy()
                total = words.sum()
                values["attribution_concentration"] = float(np.sort(words)[::-1][:top_k].sum() / total) if total > 0 else np.nan
                values["ig_delta"] = float(np.abs(result.frame["delta"].dropna()).max()) if result.frame["delta"].notna().any() else np.nan
        except UserInputError as error:
            logger.warning("signals of %s skipped: %s", row.id, error)
        rows.append(values)
        if progress is not None:
            progress(i + 1, len(table))
    signals = pd.DataFrame(rows)
    if sae is not None:
        signals = signals.merge(feature_signal_table(subject, table, sae, hook or sae.config.hook, n_features, pool),
                                on="id", how="left")
    return signals


def feature_signal_table(subject: Subject, predictions: pd.DataFrame, sae: SparseAutoencoder, hook: str,
                         n_features: int = 5, pool: str = "max", threshold: float = 0.0) -> pd.DataFrame:
    """``id`` and ``feature_<f>_active`` for the ``n_features`` latents of ``sae`` that best separate the
    failed examples of a predictions table (see :mod:`workbench.features.units`)."""
    from workbench.features.units import example_activations, feature_signals

    if not hook:
        raise UserInputError("the SAE names no hook; pass hook=")
    table = validate_predictions(predictions)
    pairs = table["text_pair"].where(table["text_pair"].map(lambda v: isinstance(v, str) and bool(v.strip())), None) \
        if "text_pair" in table else None
    activations = example_activations(subject, sae, hook, table["text"].astype(str).tolist(),
                                      None if pairs is None else pairs.tolist(), pool=pool)
    return feature_signals(activations, table["id"].tolist(), table["correct"].to_numpy(), k=n_features,
                           threshold=threshold)


# ---------------------------------------------------------------------------------------------------------
# Everything at once

@dataclass
class ErrorAnalysis:
    """The whole error analysis of one predictions table.

    Attributes:
        task, model: from the table.
        n: number of examples.
        accuracy: mean ``correct`` with its bootstrap interval.
        f1: mean ``example_f1`` with its interval (None when the column is absent).
        slices: :func:`slice_metrics`.
        calibration: :func:`calibration` of ``score`` (None when scores are not probabilities).
        confusion: :func:`confusion_matrix` (None for non-classification tasks).
        worst: :func:`worst_examples`.
        cohorts: :func:`error_cohorts` (None when every prediction is right or wrong, or no features).
        provenance: distinct provenance strings of the rows.
    """

    task: str
    model: str
    n: int
    accuracy: ConfidenceInterval
    f1: Optional[ConfidenceInterval]
    slices: pd.DataFrame
    calibration: Optional[Calibration]
    confusion: Optional[pd.DataFrame]
    worst: pd.DataFrame
    cohorts: Optional[CohortTree]
    provenance: list[str]


def analyze(predictions: pd.DataFrame, signals: Optional[pd.DataFrame] = None, n_bins: int = 4,
            n_boot: int = 500, max_depth: int = 3, k_worst: int = 10, seed: int = 0) -> ErrorAnalysis:
    """Run every analysis of this module on one predictions table.

    Args:
        predictions: a predictions table (docs/predictions.md).
        signals: optional internal signals for :func:`error_cohorts`.
        n_bins, n_boot, max_depth, k_worst, seed: passed on.

    Returns:
        An :class:`ErrorAnalysis`.
    """
    table = validate_predictions(predictions)
    accuracy = bootstrap_ci(table["correct"].astype(float).to_numpy(), n_boot=n_boot, seed=seed)
    f1 = (bootstrap_ci(table["example_f1"].astype(float).to_numpy(), n_boot=n_boot, seed=seed)
          if "example_f1" in table.columns and table["example_f1"].notna().all() else None)
    scores = table["score"].astype(float)
    calib = (calibration(scores.to_numpy(), table["correct"].to_numpy())
             if scores.notna().all() and scores.between(0, 1).all() else None)
    confusion = confusion_matrix(table) if is_classification(table) else None
    cohorts = None
    if 0 < (~table["correct"]).sum() < len(table) and (meta_columns(table) or signals is not None):
        cohorts = error_cohorts(table, signals=signals, max_depth=max_depth, seed=seed)
    provenance = sorted(table["provenance"].dropna().astype(str).unique()) if "provenance" in table else []
    return ErrorAnalysis(task=str(table["task"].iloc[0]), model=str(table["model"].iloc[0]), n=len(table),
                         accuracy=accuracy, f1=f1, slices=slice_metrics(table, n_bins=n_bins, n_boot=n_boot, seed=seed),
                         calibration=calib, confusion=confusion, worst=worst_examples(table, k_worst),
                         cohorts=cohorts, provenance=provenance)
