"""The official metric of every benchmark task, behind one entry point, :func:`score_task`.

All values are fractions in [0, 1] (the official SQuAD scripts print them multiplied by 100).

* SQuAD v1.1 / v2.0: exact match and token F1 after the official answer normalisation (lower case, drop
  punctuation and the articles a/an/the, collapse whitespace), maximised over the gold answers; v2 adds
  HasAns_/NoAns_ breakdowns where "" is the no-answer prediction (Rajpurkar et al., 2016 and 2018).
* GLUE (Wang et al., 2019): CoLA Matthews correlation (``mcc``); MRPC/QQP F1 of class "1" and accuracy;
  STS-B Pearson and Spearman; AX the multi-class Matthews correlation R3 (Gorodkin, 2004); accuracy for the
  rest; MNLI also ``accuracy_matched`` / ``accuracy_mismatched`` by the examples' ``meta["split"]``. The
  classification metrics are scikit-learn's, the correlations SciPy's.
* Coreference: MUC (Vilain et al., 1995), B-cubed (Bagga and Baldwin, 1998), entity-based CEAF-e (Luo, 2005)
  with the Hungarian assignment, and their CoNLL average, summed over documents as in the reference scorer
  (Pradhan et al., 2014, "Scoring Coreference Partitions of Predicted Mentions: A Reference Implementation").
* SRL: labelled argument precision/recall/F1 with the srl-eval.pl conventions (Carreras and Màrquez, 2005):
  the predicate ``V`` is excluded, and a ``C-X`` continuation joins the preceding ``X`` into one
  discontinuous argument that is correct only when all its pieces are.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Any, Hashable, Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from atinuke.errors import UserInputError
from atinuke.tasks.base import ClassificationExample, CorefDocument, Example, QAExample, SRLExample, TaskSpec
from atinuke.tasks.kinds.base import get_kind
from atinuke.tasks.registry import get_task

Cluster = Sequence[tuple[int, int]]
_Clusters = list[list[tuple[int, ...]]]  # clusters as :func:`_dedupe` returns them
Argument = tuple[str, tuple[tuple[int, int], ...]]  # (label, ((start, end), ...)) with inclusive word spans

# --------------------------------------------------------------------------------------------------- SQuAD

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, drop punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def qa_exact(prediction: str, gold: str) -> float:
    """1.0 when the normalised texts are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def qa_f1(prediction: str, gold: str, v2: bool = True) -> float:
    """Token-overlap F1 of normalised answers.

    Args:
        v2: follow the v2.0 script, where an empty side scores 1.0 against an empty side (no answer); the
            v1.1 script scores any empty side 0.0.
    """
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if v2 and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _gold_texts(example: QAExample, v2: bool) -> list[str]:
    """Gold answers as the official scripts see them (v2: those normalising to "" dropped; none -> [""])."""
    texts = [answer.text for answer in example.answers]
    if v2:
        texts = [text for text in texts if normalize_answer(text)] or [""]
    return texts


def qa_example_scores(example: QAExample, prediction: str, v2: bool = True) -> tuple[float, float]:
    """(exact, f1) of one answer text, maximised over the gold answers ("" = no answer)."""
    golds = _gold_texts(example, v2)
    return max(qa_exact(prediction, g) for g in golds), max(qa_f1(prediction, g, v2) for g in golds)


def squad_scores(examples: Sequence[QAExample], predictions: Sequence[str], v2: bool) -> dict[str, float]:
    """SQuAD metrics over aligned predictions: ``exact``, ``f1`` (+ v2: HasAns_*/NoAns_* and totals)."""
    exact, f1 = zip(*(qa_example_scores(e, p, v2) for e, p in zip(examples, predictions))) if examples else ((), ())
    scores = {"exact": _mean(exact), "f1": _mean(f1)}
    if v2:
        scores["total"] = float(len(examples))
        has = [i for i, e in enumerate(examples) if not e.is_impossible]
        no = [i for i, e in enumerate(examples) if e.is_impossible]
        for prefix, ids in (("HasAns", has), ("NoAns", no)):
            if ids:  # the official script omits a breakdown with no questions
                scores[f"{prefix}_exact"] = _mean([exact[i] for i in ids])
                scores[f"{prefix}_f1"] = _mean([f1[i] for i in ids])
                scores[f"{prefix}_total"] = float(len(ids))
    return scores


# -------------------------------------------------------------------------------------------- classification

def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if len(values) else 0.0


def _label_codes(gold: Iterable[Hashable], predicted: Iterable[Hashable]
                 ) -> tuple[np.ndarray, np.ndarray, dict[Hashable, int]]:
    """Aligned gold and predicted labels as integer codes, and the code of each label.

    Pairs beyond the shorter side are ignored (as ``zip``). scikit-learn compares labels as numpy arrays and
    rejects mixed or real-valued labels; codes keep plain Python equality, whatever the labels' type.
    """
    index: dict[Hashable, int] = {}
    codes = [(index.setdefault(g, len(index)), index.setdefault(p, len(index))) for g, p in zip(gold, predicted)]
    pairs = np.array(codes, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1], index


def accuracy(gold: Sequence[Any], predicted: Sequence[Any]) -> float:
    """Fraction of equal pairs (0.0 when there are none)."""
    from sklearn.metrics import accuracy_score  # imported on use: scikit-learn is slow to import

    gold_codes, predicted_codes, _ = _label_codes(gold, predicted)
    return float(accuracy_score(gold_codes, predicted_codes)) if len(gold_codes) else 0.0


def binary_f1(gold: Sequence[Hashable], predicted: Sequence[Hashable], positive: str = "1") -> float:
    """F1 of the positive class (0.0 when it is never predicted nor gold)."""
    from sklearn.metrics import f1_score

    gold_codes, predicted_codes, index = _label_codes(gold, predicted)
    if not len(gold_codes):
        return 0.0
    positive_code = index.get(positive, len(index))  # a code no pair has when the class never occurs
    scores = f1_score(gold_codes, predicted_codes, labels=[positive_code], average=None, zero_division=0.0)
    return float(scores[0])


def matthews_corr(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Matthews correlation, multi-class form R_K (Gorodkin, 2004; equal to the binary MCC for two classes).

    With confusion matrix C, t_k = row sums (gold), p_k = column sums (predicted), c = trace, s = total:
    ``(c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t))``, scikit-learn's ``matthews_corrcoef``; 0.0 when a
    denominator factor is 0 (a constant side, or no pairs).
    """
    from sklearn.metrics import matthews_corrcoef

    gold_codes, predicted_codes, index = _label_codes(gold, predicted)
    if len(index) < 2:  # no pairs, or one label only: both denominator factors are 0
        return 0.0
    return float(matthews_corrcoef(gold_codes, predicted_codes))


def _constant(values: np.ndarray) -> bool:
    """Whether a correlation with ``values`` is undefined: fewer than two values, or all equal."""
    return len(values) < 2 or bool(np.all(values == values[0]))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (SciPy's ``pearsonr``); 0.0 when either side is constant (undefined)."""
    from scipy.stats import pearsonr  # imported on use: scipy.stats is slow to import

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if _constant(a) or _constant(b):
        return 0.0
    return float(pearsonr(a, b).statistic)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (SciPy's ``spearmanr``: Pearson of average ranks); 0.0 when either side is
    constant (undefined)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if _constant(a) or _constant(b):
        return 0.0
    return float(spearmanr(a, b).statistic)


# ------------------------------------------------------------------------------------------------------- SRL

def bio_to_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Labelled spans ``(label, start, end)`` (inclusive) of a BIO sequence, conlleval style: an ``I-X`` that
    does not continue an ``X`` span starts a new one."""
    spans: list[tuple[str, int, int]] = []
    label, start = None, 0
    for position, tag in enumerate(list(tags) + ["O"]):
        prefix, _, name = tag.partition("-")
        if label is not None and not (prefix == "I" and name == label):
            spans.append((label, start, position - 1))
            label = None
        if prefix == "B" or (prefix == "I" and label is None):
            label, start = name, position
        elif prefix not in ("B", "I", "O"):
            raise UserInputError(f"malformed BIO tag {tag!r}")
    return spans


def srl_arguments(tags: Sequence[str]) -> set[Argument]:
    """srl-eval arguments of one predicate: spans, with each ``C-X`` joined to the latest ``X`` argument."""
    arguments: list[list] = []
    latest: dict[str, int] = {}
    for label, start, end in bio_to_spans(tags):
        if label.startswith("C-"):
            base = label[2:]
            if base in latest:
                arguments[latest[base]][1].append((start, end))
                continue
            label = base
        latest[label] = len(arguments)
        arguments.append([label, [(start, end)]])
    return {(label, tuple(pieces)) for label, pieces in arguments}


def srl_counts(gold_tags: Sequence[str], predicted_tags: Sequence[str]) -> tuple[int, int, int]:
    """(correct, predicted, gold) argument counts of one predicate, ``V`` excluded."""
    gold = {a for a in srl_arguments(gold_tags) if a[0] != "V"}
    predicted = {a for a in srl_arguments(predicted_tags) if a[0] != "V"}
    return len(gold & predicted), len(predicted), len(gold)


def _prf(correct: float, predicted: float, gold: float) -> tuple[float, float, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def srl_example_f1(example: SRLExample, predicted_tags: Sequence[str]) -> float:
    """Argument F1 of one predicate (1.0 when neither side has arguments)."""
    return srl_tags_f1(example.tags, predicted_tags)


def srl_tags_f1(gold_tags: Sequence[str], predicted_tags: Sequence[str]) -> float:
    """Argument F1 of one predicate's BIO tags (1.0 when neither side has arguments)."""
    correct, predicted, gold = srl_counts(gold_tags, predicted_tags)
    return 1.0 if predicted == gold == 0 else _prf(correct, predicted, gold)[2]


def srl_scores(examples: Sequence[SRLExample], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged labelled argument ``precision``, ``recall``, ``f1`` (srl-eval conventions)."""
    totals = np.zeros(3)
    for example, tags in zip(examples, predictions):
        if len(tags) != len(example.words):
            raise UserInputError(f"SRL prediction for {example.id!r} has {len(tags)} tags for "
                                 f"{len(example.words)} words")
        totals += srl_counts(example.tags, tags)
    precision, recall, f1 = _prf(*totals)
    return {"precision": precision, "recall": recall, "f1": f1}


# ------------------------------------------------------------------------------------------------ coreference

def _mention_map(clusters: _Clusters, what: str) -> dict[tuple[int, ...], int]:
    mapping: dict[tuple[int, ...], int] = {}
    for index, cluster in enumerate(clusters):
        for mention in cluster:
            if mention in mapping and mapping[mention] != index:
                raise UserInputError(f"{what} mention {mention} is in two clusters")
            mapping[mention] = index
    return mapping


def _dedupe(clusters: Sequence[Cluster]) -> _Clusters:
    result = []
    for cluster in clusters:
        mentions = list(dict.fromkeys(tuple(m) for m in cluster))
        if mentions:
            result.append(mentions)
    return result


def muc_counts(key: Sequence[Cluster], response: Sequence[Cluster]) -> tuple[float, float, float, float]:
    """MUC (Vilain et al., 1995): (recall numerator, recall denominator, precision num., precision den.).

    Recall = sum over key clusters K of (|K| - |partition of K by the response|) / sum (|K| - 1); a key mention
    absent from the response is its own part. Precision swaps key and response.
    """
    def one_side(a: _Clusters, b_map: dict[tuple[int, ...], int]) -> tuple[float, float]:
        numerator = denominator = 0.0
        for cluster in a:
            parts = {b_map.get(m, ("missing", m)) for m in cluster}
            numerator += len(cluster) - len(parts)
            denominator += len(cluster) - 1
        return numerator, denominator

    keys, responses = _dedupe(key), _dedupe(response)
    return (*one_side(keys, _mention_map(responses, "predicted")), *one_side(responses, _mention_map(keys, "gold")))


def b_cubed_counts(key: Sequence[Cluster], response: Sequence[Cluster]) -> tuple[float, float, float, float]:
    """B-cubed (Bagga and Baldwin, 1998) as in the reference scorer: recall = sum_K sum_R |K∩R|^2 / |K| over
    the number of key mentions; precision swaps key and response."""
    def one_side(a: _Clusters, b: _Clusters) -> tuple[float, float]:
        b_sets = [set(cluster) for cluster in b]
        numerator = sum(len(set(cluster) & other) ** 2 / len(cluster) for cluster in a for other in b_sets)
        return numerator, float(sum(len(cluster) for cluster in a))

    keys, responses = _dedupe(key), _dedupe(response)
    return (*one_side(keys, responses), *one_side(responses, keys))


def ceafe_counts(key: Sequence[Cluster], response: Sequence[Cluster]) -> tuple[float, float, float, float]:
    """Entity-based CEAF (Luo, 2005) with phi4(K, R) = 2|K∩R| / (|K| + |R|) and the best one-to-one alignment
    (Hungarian algorithm): recall = similarity / #key entities, precision = similarity / #response entities."""
    keys, responses = _dedupe(key), _dedupe(response)
    if not keys or not responses:
        return 0.0, float(len(keys)), 0.0, float(len(responses))
    similarity = np.array([[2 * len(set(k) & set(r)) / (len(k) + len(r)) for r in responses] for k in keys])
    rows, cols = linear_sum_assignment(-similarity)
    total = float(similarity[rows, cols].sum())
    return total, float(len(keys)), total, float(len(responses))


_COREF_METRICS = {"muc": muc_counts, "b3": b_cubed_counts, "ceafe": ceafe_counts}


def coref_scores(gold: Sequence[Sequence[Cluster]], predicted: Sequence[Sequence[Cluster]]) -> dict[str, float]:
    """MUC, B-cubed and CEAF-e precision/recall/F1 summed over documents, and ``conll_f1`` (their F1 mean).

    Args:
        gold, predicted: per document, a list of clusters of inclusive ``(start, end)`` word spans.

    Returns:
        ``muc_p, muc_r, muc_f1, b3_p, b3_r, b3_f1, ceafe_p, ceafe_r, ceafe_f1, conll_f1``.
    """
    scores: dict[str, float] = {}
    for name, counts in _COREF_METRICS.items():
        totals = np.zeros(4)
        for key, response in zip(gold, predicted):
            totals += counts(key, response)
        recall = totals[0] / totals[1] if totals[1] else 0.0
        precision = totals[2] / totals[3] if totals[3] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.update({f"{name}_p": float(precision), f"{name}_r": float(recall), f"{name}_f1": float(f1)})
    scores["conll_f1"] = (scores["muc_f1"] + scores["b3_f1"] + scores["ceafe_f1"]) / 3
    return scores


def coref_example_f1(document: CorefDocument, predicted: Sequence[Cluster]) -> float:
    """CoNLL F1 (mean of MUC, B-cubed, CEAF-e F1) of one document."""
    return coref_scores([document.clusters], [predicted])["conll_f1"]


# ------------------------------------------------------------------------------------------------ entry point

# Half a point on the 0-5 STS-B scale: the per-example "correct" of a regression task (slicing only).
REGRESSION_TOLERANCE = 0.5

def gold_label(example: ClassificationExample) -> str | float:
    """The gold label of an example that :func:`score_task` has found labelled."""
    assert example.label is not None, f"example {example.id!r} has no gold label"
    return example.label


def _check_kind(spec: TaskSpec, examples: Sequence[Example], predictions: Sequence[Any]) -> None:
    if len(examples) != len(predictions):
        raise UserInputError(f"{spec.name}: {len(predictions)} predictions for {len(examples)} examples")
    kind = get_kind(spec.kind)
    expected = kind.example_type
    for example in examples:
        if not isinstance(example, expected):
            raise UserInputError(f"{spec.name}: expected {expected.__name__}, got {type(example).__name__}")
        if isinstance(example, ClassificationExample) and example.label is None:
            raise UserInputError(f"{spec.name}: example {example.id!r} has no gold label (an unlabelled test split "
                                 "cannot be scored)")
    kind.check_predictions(spec, predictions)


def score_task(name: str, examples: Sequence[Example], predictions: Sequence[Any]) -> dict[str, float]:
    """The official metrics of task ``name`` for predictions aligned with ``examples``.

    Args:
        name: registry name (``atinuke.tasks.TASKS``).
        examples: gold examples.
        predictions: one per example: classification -> label str; regression -> float; span_qa -> answer
            text ("" = no answer); tagging -> BIO tags, one per word; coref -> clusters of ``(start, end)``.

    Returns:
        metric name -> value in [0, 1] (correlations in [-1, 1]); the task's headline metric is
        ``get_task(name).metric``. Keys: squad ``exact, f1``; squad2 also ``HasAns_exact, HasAns_f1,
        NoAns_exact, NoAns_f1`` and ``total/HasAns_total/NoAns_total`` counts; cola/ax ``mcc, accuracy``;
        mrpc/qqp ``f1, accuracy``; stsb ``pearson, spearman``; mnli ``accuracy`` (+ ``accuracy_matched``,
        ``accuracy_mismatched``); others ``accuracy``; srl/srl2005 ``precision, recall, f1``; coref ``muc_*,
        b3_*, ceafe_*, conll_f1``. The task's kind (``atinuke.tasks.kinds``) computes them.

    Raises:
        UserInputError: unknown task, misaligned predictions, unlabelled examples, unknown predicted labels.
    """
    spec = get_task(name)
    _check_kind(spec, examples, predictions)
    return get_kind(spec.kind).score(spec, examples, predictions)


def per_example_f1(name: str, example: Example, prediction: Any) -> float:
    """The per-example score of the predictions table (``example_f1``).

    QA: token F1 (max over gold answers); SRL: argument F1 of the predicate; coreference: the document's
    CoNLL F1; classification and regression: 1.0 / 0.0 as :func:`per_example_correct`.
    """
    spec = get_task(name)
    return get_kind(spec.kind).example_f1(spec, example, prediction)


def per_example_correct(name: str, example: Example, prediction: Any) -> bool:
    """Exact correctness: equal label; QA exact match; all tags equal; the same partition of mentions; for
    regression ``|prediction - gold| <= REGRESSION_TOLERANCE`` (a slicing convention, not a GLUE metric)."""
    spec = get_task(name)
    return get_kind(spec.kind).example_correct(spec, example, prediction)


__all__ = [
    "REGRESSION_TOLERANCE",
    "accuracy",
    "b_cubed_counts",
    "binary_f1",
    "bio_to_spans",
    "ceafe_counts",
    "coref_example_f1",
    "coref_scores",
    "gold_label",
    "matthews_corr",
    "muc_counts",
    "normalize_answer",
    "pearson",
    "per_example_correct",
    "per_example_f1",
    "qa_exact",
    "qa_example_scores",
    "qa_f1",
    "score_task",
    "spearman",
    "squad_scores",
    "srl_arguments",
    "srl_counts",
    "srl_example_f1",
    "srl_scores",
]
