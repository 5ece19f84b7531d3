"""Evaluate stored attributions once, so reports can show the analyses without reloading a model.

:func:`evaluate_attributions` runs the faithfulness and attention analyses of :mod:`workbench.faithfulness`
and :mod:`workbench.attention` on the inputs and result of :func:`workbench.attribution.attribute` and
returns one tidy table per analysis; ``workbench attribute --evaluate`` writes them beside
``attributions.parquet`` under the names in :data:`EVALUATION_FILES` (columns: :data:`EVALUATION_COLUMNS`).

* ``faithfulness``: ERASER comprehensiveness / sufficiency as AOPC (DeYoung et al., 2020, arXiv 1911.03429),
  deletion / insertion AUC (Petsiuk et al., 2018, arXiv 1806.07421) and, with gold rationales, token F1 and
  AUPRC; means with percentile-bootstrap CIs -- exactly :func:`~workbench.faithfulness.faithfulness_summary`.
* ``curves``: the deletion / insertion curves averaged over examples per method and fraction (the input of
  :func:`workbench.figures.curves_figure`).
* ``agreement``: Kendall tau and top-k overlap between every ordered pair of methods, diagonal included
  (attention vs gradients: Jain & Wallace, 2019, arXiv 1902.10186); :func:`workbench.figures.agreement_figure`.
* ``randomization``: cascading model-parameter randomisation (Adebayo et al., 2018, "Sanity Checks for
  Saliency Maps", arXiv 1810.03292) of the first gradient method; :func:`workbench.figures.randomization_figure`.
* ``attention_heads``: per-head entropy, distance and [CLS]/[SEP]/punctuation mass (Clark et al., 2019,
  arXiv 1906.04341); :func:`workbench.figures.layer_head_grid`.
* ``rollout``: last-layer attention rollout of the first example (Abnar & Zuidema, 2020, arXiv 2005.00928).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import pandas as pd

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

# analysis name -> file written beside attributions.parquet (in the order they are computed)
EVALUATION_FILES: dict[str, str] = {
    "faithfulness": "faithfulness.parquet",
    "curves": "curves.parquet",
    "agreement": "agreement.parquet",
    "randomization": "randomization.parquet",
    "attention_heads": "attention_heads.parquet",
    "rollout": "rollout.parquet",
}

# analysis name -> the columns of its table
EVALUATION_COLUMNS: dict[str, tuple[str, ...]] = {
    "faithfulness": ("task", "method", "metric", "mean", "ci_low", "ci_high", "n"),
    "curves": ("method", "fraction", "deletion", "insertion", "deletion_std", "insertion_std", "n"),
    "agreement": ("method_a", "method_b", "metric", "mean", "ci_low", "ci_high", "n"),
    "randomization": ("stage", "n_randomized", "example_id", "method", "spearman", "spearman_abs"),
    "attention_heads": ("layer", "head", "entropy", "mean_distance", "attn_cls", "attn_sep", "attn_punct",
                        "n_queries"),
    "rollout": ("example_id", "query_index", "key_index", "query_token", "key_token", "weight"),
}


class Evaluation(dict):
    """name -> table of :func:`evaluate_attributions`, with what was done and what was not.

    Attributes:
        n_examples: analysis name -> examples it used.
        seconds: analysis name -> wall-clock seconds it took.
        skipped: analysis name -> why it was not run (its table is absent).
        randomization_method: the gradient method the randomisation check recomputed, or None.
    """

    def __init__(self) -> None:
        super().__init__()
        self.n_examples: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.skipped: dict[str, str] = {}
        self.randomization_method: Optional[str] = None

    def summary(self) -> dict[str, Any]:
        """A JSON-able account (``summary.json``'s "evaluation" object, less the files written)."""
        return {"analyses": [name for name in EVALUATION_FILES if name in self],
                "n_examples": dict(self.n_examples), "seconds_per_analysis": dict(self.seconds),
                "seconds": round(sum(self.seconds.values()), 3), "skipped": dict(self.skipped),
                "randomization_method": self.randomization_method}


def _texts(inputs: Sequence[Any], text_pairs: Optional[Sequence[Optional[str]]]
           ) -> tuple[list[str], list[Optional[str]]]:
    """(first segments, second segments or None) of texts or task examples (as the attributions saw them)."""
    if len(inputs) and isinstance(inputs[0], str):
        pairs: list[Optional[str]] = list(text_pairs) if text_pairs is not None else [None] * len(inputs)
        return list(inputs), pairs
    from workbench.attribution.targets import segment_texts

    segments = [segment_texts(e) for e in inputs]
    return [s[0] for s in segments], [s[1] if len(s) > 1 else None for s in segments]


def _encoder_view(subject: Subject) -> Any:
    """The subject's encoder as a plain-encoder subject (same modules, no copy): attention patterns do not
    depend on the task head, and heads that need extra inputs (predicate masks, spans) are not run."""
    if subject.task_model is None:
        return subject
    from atinuke.encoders import Encoder
    from workbench.subject import Subject

    return Subject(Encoder(subject.name, subject.kind, subject.encoder, subject.tokenizer, subject.path))


def _indexed(attribution: Any) -> Any:
    """The same attribution with ``scores(example_id, method)`` answered from a per-(example, method) index:
    the faithfulness functions ask for every example's scores of every method, and filtering the whole table
    on each call costs more than the tiny models' forward passes. The table itself is not changed."""
    from workbench.attribution import Attribution

    class IndexedAttribution(Attribution):
        def __init__(self, frame: pd.DataFrame) -> None:
            super().__init__(frame)
            ordered = frame.sort_values(["example_id", "method", "token_index"], kind="stable")
            self._index = {(str(e), str(m)): group["score"].to_numpy()
                           for (e, m), group in ordered.groupby(["example_id", "method"], sort=False)}

        def scores(self, example_id: str, method: Optional[str] = None) -> np.ndarray:
            if method is None:
                return super().scores(example_id, method)
            found = self._index.get((str(example_id), method))
            if found is None:
                raise UserInputError(f"no attribution for example {example_id!r}")
            return found.copy()

    return IndexedAttribution(attribution.frame)


def _faithfulness(subject: Subject, inputs: Any, attribution: Any, target: Any, curves: pd.DataFrame,
                  n_boot: int, seed: int, **kwargs: Any) -> pd.DataFrame:
    """:func:`~workbench.faithfulness.faithfulness_summary`, reusing already computed deletion/insertion curves
    (the same calls in the same order, so the table is identical; tests/test_attribution_eval.py checks it)."""
    from workbench.faithfulness import aopc, curve_areas, eraser, plausibility, summarize

    task = getattr(subject.task, "name", None) or "encoder"
    erase = "mask" if getattr(target, "spec", None) == "antecedent" else "delete"  # spans cannot be deleted
    per_example = aopc(eraser(subject, inputs, attribution, target, erase=erase, **kwargs))
    areas = curve_areas(curves)
    parts = [summarize(per_example, ["comprehensiveness", "sufficiency"], n_boot=n_boot, seed=seed),
             summarize(areas, ["deletion_auc", "insertion_auc"], n_boot=n_boot, seed=seed)]
    if not (len(inputs) and isinstance(inputs[0], str)) and any(getattr(e, "rationale", ()) for e in inputs):
        plausible = plausibility(subject, inputs, attribution, **kwargs)
        if len(plausible):
            parts.append(summarize(plausible, ["token_f1", "auprc"], n_boot=n_boot, seed=seed))
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "task", task)
    return table


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Deletion / insertion curves averaged over examples, per method and fraction (Petsiuk et al., 2018).

    Args:
        curves: :func:`~workbench.faithfulness.deletion_insertion` output (one row per example, method, fraction).

    Returns:
        DataFrame: ``method``, ``fraction``, ``deletion``, ``insertion`` (means), ``deletion_std``,
        ``insertion_std`` (spread over examples; 0 for one example), ``n`` (examples); methods in their
        first-seen order, fractions ascending. :func:`workbench.figures.curves_figure` draws it.
    """
    grouped = curves.groupby(["method", "fraction"], sort=False)
    table = grouped[["deletion", "insertion"]].mean()
    spread = grouped[["deletion", "insertion"]].std(ddof=1).fillna(0.0)
    table["deletion_std"], table["insertion_std"] = spread["deletion"], spread["insertion"]
    table["n"] = grouped.size()
    table = table.reset_index()
    order = {m: i for i, m in enumerate(dict.fromkeys(curves["method"]))}
    table = table.sort_values(["method", "fraction"], key=lambda c: c.map(order) if c.name == "method" else c)
    return table.reset_index(drop=True)[list(EVALUATION_COLUMNS["curves"])]


def full_agreement(attribution: Any, methods: Sequence[str]) -> pd.DataFrame:
    """Kendall tau and top-k overlap for every ordered pair of methods, the diagonal (a, a) included.

    The pairs a < b are :func:`~workbench.faithfulness.agreement_matrix` (its bootstrap: 1000 resamples,
    seed 0); (b, a) is the same statistic (both measures are symmetric in a and b) and (a, a) is computed
    like any pair (tau = overlap = 1 unless all scores tie), so a pivot on (method_a, method_b) gives the
    full square matrix.

    Returns:
        DataFrame: ``method_a``, ``method_b``, ``metric``, ``mean``, ``ci_low``, ``ci_high``, ``n``.
    """
    from workbench.faithfulness import agreement_matrix, rank_agreement, summarize

    methods = list(methods)
    upper = agreement_matrix(attribution, methods) if len(methods) > 1 else None
    diagonal = summarize(pd.concat([rank_agreement(attribution, m, m) for m in methods], ignore_index=True),
                         ["kendall_tau", "topk_overlap"], by=("method_a", "method_b"))
    parts = [diagonal]
    if upper is not None:
        lower = upper.rename(columns={"method_a": "method_b", "method_b": "method_a"})
        parts += [upper, lower]
    table = pd.concat(parts, ignore_index=True)[list(EVALUATION_COLUMNS["agreement"])]
    order = {m: i for i, m in enumerate(methods)}
    return table.sort_values(["metric", "method_a", "method_b"], key=lambda c: c.map(order) if c.name != "metric"
                             else c).reset_index(drop=True)


def pooled_head_statistics(subject: Subject, texts: Sequence[str], text_pairs: Sequence[Optional[str]]) -> pd.DataFrame:
    """:func:`~workbench.attention.head_statistics` over inputs some of which have a second segment and some
    not: computed per group and pooled by query count (the statistics are means over queries)."""
    from workbench.attention import head_statistics

    paired = [i for i, p in enumerate(text_pairs) if p is not None]
    single = [i for i, p in enumerate(text_pairs) if p is None]
    parts = []
    if single:
        parts.append(head_statistics(subject, [texts[i] for i in single]))
    if paired:
        parts.append(head_statistics(subject, [texts[i] for i in paired], [str(text_pairs[i]) for i in paired]))
    if len(parts) == 1:
        return parts[0]
    values = ["entropy", "mean_distance", "attn_cls", "attn_sep", "attn_punct"]
    a, b = parts
    weights_a, weights_b = a["n_queries"].to_numpy(float), b["n_queries"].to_numpy(float)
    pooled = a.copy()
    for column in values:
        pooled[column] = (a[column] * weights_a + b[column] * weights_b) / (weights_a + weights_b)
    pooled["n_queries"] = a["n_queries"] + b["n_queries"]
    return pooled


def rollout_table(subject: Subject, text: str, text_pair: Optional[str], example_id: str) -> pd.DataFrame:
    """Last-layer attention rollout of one input, heads averaged (Abnar & Zuidema, 2020), as a long table.

    Returns:
        DataFrame, one row per (query, key) token pair: ``example_id``, ``query_index``, ``key_index``,
        ``query_token``, ``key_token``, ``weight`` (each query's weights sum to 1).
    """
    from workbench.attention import attention_maps, attention_rollout

    maps = attention_maps(subject, text, text_pair)
    rollout = attention_rollout(maps.head_mean())[-1]  # [T, T]
    n = rollout.shape[0]
    query, key = np.divmod(np.arange(n * n), n)
    tokens = np.asarray(maps.tokens, dtype=object)
    return pd.DataFrame({"example_id": str(example_id), "query_index": query, "key_index": key,
                         "query_token": tokens[query], "key_token": tokens[key], "weight": rollout.ravel()})


def evaluate_attributions(subject: Subject, inputs: Sequence[Any], attribution: Any, *, target: Any = None,
                          text_pairs: Optional[Sequence[Optional[str]]] = None,
                          example_ids: Optional[Sequence[str]] = None, n_boot: int = 1000, seed: int = 0,
                          randomization_limit: int = 8, params: Any = None) -> Evaluation:
    """Every faithfulness and attention analysis of an attribution run, as tables to store beside it.

    Args:
        subject: the :class:`~workbench.subject.Subject` the attributions explain.
        inputs: the same inputs given to :func:`~workbench.attribution.attribute` (texts or task examples).
        attribution: its :class:`~workbench.attribution.Attribution` (one or more methods).
        target: the same target (a target string such as ``class=1``, a Target, or None for the default).
        text_pairs, example_ids: for texts, as given to ``attribute``.
        n_boot: bootstrap resamples of every confidence interval.
        seed: seed of the bootstrap and of the randomisation noise.
        randomization_limit: the randomisation check recomputes attributions once per model stage, so it runs
            on the first ``randomization_limit`` examples only.
        params: the :class:`~workbench.attribution.AttributionParams` of the run (the randomisation check
            recomputes with them; default settings when None).

    Returns:
        :class:`Evaluation`: analysis name (a key of :data:`EVALUATION_FILES`) -> table with the columns of
        :data:`EVALUATION_COLUMNS`; ``agreement`` needs two methods and ``randomization`` a gradient method,
        else they are absent and ``skipped`` says why.

    Raises:
        UserInputError: no inputs, a non-positive limit, or attributions that do not match the inputs.
    """
    from workbench.attribution import GRADIENT_METHODS
    from workbench.attribution.targets import parse_target
    from workbench.faithfulness import deletion_insertion, randomization_check

    if not len(inputs):
        raise UserInputError("no inputs to evaluate")
    if randomization_limit < 1:
        raise UserInputError(f"randomization_limit must be at least 1, got {randomization_limit}")
    if n_boot < 1:
        raise UserInputError(f"n_boot must be at least 1, got {n_boot}")
    is_text = isinstance(inputs[0], str)
    kwargs: dict[str, Any] = {"text_pairs": text_pairs, "example_ids": example_ids} if is_text else {}
    ids = [str(i) for i in example_ids] if is_text and example_ids is not None else (
        [str(i) for i in range(len(inputs))] if is_text else [str(e.id) for e in inputs])
    target = parse_target(target, subject) if target is None or isinstance(target, str) else target
    methods = list(dict.fromkeys(attribution.frame["method"]))
    attribution = _indexed(attribution)
    result = Evaluation()

    def timed(name: str, n: int, compute: Any) -> None:
        started = time.perf_counter()
        result[name] = compute()
        result.seconds[name] = round(time.perf_counter() - started, 3)
        result.n_examples[name] = n
        logger.info("evaluation: %s of %d example(s) in %.1f s", name, n, result.seconds[name])

    raw_curves: dict[str, pd.DataFrame] = {}

    def curves() -> pd.DataFrame:
        raw_curves["table"] = deletion_insertion(subject, inputs, attribution, target, **kwargs)
        return mean_curves(raw_curves["table"])

    timed("curves", len(inputs), curves)
    timed("faithfulness", len(inputs), lambda: _faithfulness(subject, inputs, attribution, target,
                                                             raw_curves["table"], n_boot, seed, **kwargs))
    if len(methods) > 1:
        timed("agreement", len(inputs), lambda: full_agreement(attribution, methods))
    else:
        result.skipped["agreement"] = f"one method ({methods[0]}); agreement needs two"
    gradient = next((m for m in GRADIENT_METHODS if m in methods), None)
    if gradient is None:
        result.skipped["randomization"] = (f"no gradient method among {', '.join(methods)}; the randomization check "
                                           f"recomputes one of {', '.join(GRADIENT_METHODS)}")
    else:
        n = min(randomization_limit, len(inputs))
        part = {k: None if v is None else list(v)[:n] for k, v in kwargs.items()}
        result.randomization_method = gradient
        timed("randomization", n, lambda: randomization_check(subject, list(inputs)[:n], method=gradient,
                                                              target=target, params=params, seed=seed, **part))
    texts, pairs = _texts(inputs, text_pairs)
    encoder = _encoder_view(subject)
    timed("attention_heads", len(texts), lambda: pooled_head_statistics(encoder, texts, pairs))
    timed("rollout", 1, lambda: rollout_table(encoder, texts[0], pairs[0], ids[0]))
    # the computed tables in EVALUATION_FILES order
    ordered = {name: result[name] for name in EVALUATION_FILES if name in result}
    result.clear()
    result.update(ordered)
    logger.info("evaluation: %d table(s) in %.1f s; skipped: %s", len(result), sum(result.seconds.values()),
                ", ".join(result.skipped) or "none")
    return result


__all__ = ["EVALUATION_COLUMNS", "EVALUATION_FILES", "Evaluation", "evaluate_attributions", "full_agreement",
           "mean_curves", "pooled_head_statistics", "rollout_table"]
