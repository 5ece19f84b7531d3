"""Compare two runs or two models: paired significance, per-example outcomes, CKA, head matching, agreement.

- Metrics with bootstrap intervals and *paired* significance on the same example ids: the paired bootstrap
  (Koehn, 2004, "Statistical Significance Tests for Machine Translation Evaluation"; Berg-Kirkpatrick et
  al., 2012, "An Empirical Investigation of Statistical Significance in NLP") and McNemar's test (McNemar,
  1947) by the exact binomial test on the discordant pairs (Dietterich, 1998, "Approximate Statistical Tests
  for Comparing Supervised Classification Learning Algorithms").
- Per-example wins, losses and disagreements.
- Layer-wise linear CKA (Kornblith et al., 2019, "Similarity of Neural Network Representations Revisited",
  arXiv 1905.00414) between two models' representations of the same *words*: subword vectors are averaged
  per whitespace word through the tokenizers' offset mappings, so models with different tokenizers align.
- Head matching by attention similarity at word level (attention *to* a word sums over its subwords, *from*
  a word averages them; Clark et al., 2019, "What Does BERT Look At?", arXiv 1906.04341), one-to-one by the
  Hungarian algorithm (Kuhn, 1955) via ``scipy.optimize.linear_sum_assignment``.
- Probe-curve overlays and agreement of two attribution tables on the same examples.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from atinuke.errors import UserInputError
from workbench.errors import validate_predictions
from workbench.probe_curves import layer_curve
from workbench.stats import (  # noqa: F401  (re-exported: the comparison API)
    ConfidenceInterval,
    McNemar,
    PairedBootstrap,
    bootstrap_ci,
    mcnemar,
    mcnemar_from_table,
    paired_bootstrap,
)

logger = logging.getLogger(__name__)

OUTCOMES = ("both right", "both wrong", "A wins", "B wins")


# ---------------------------------------------------------------------------------------------------------
# Paired significance

# ---------------------------------------------------------------------------------------------------------
# Two runs on the same examples

@dataclass
class RunComparison:
    """Two predictions tables of one task compared on their shared example ids.

    Attributes:
        task: the task name.
        model_a, model_b: the models' names.
        n: number of shared ids (``n_only_a``/``n_only_b``: ids in one run only, left out).
        metrics: tidy DataFrame, one row per (model, metric): ``model``, ``metric`` ("accuracy",
            "example_f1"), ``value``, ``ci_low``, ``ci_high``, ``n``.
        bootstrap: paired bootstrap per metric name.
        mcnemar: McNemar's test on ``correct``.
        outcomes: one row per shared id: ``id``, ``correct_a``, ``correct_b``, ``prediction_a``,
            ``prediction_b``, ``gold``, ``outcome`` (one of ``OUTCOMES``), ``disagree`` (different
            predictions), ``text``, ``text_pair``, plus the ``meta_*`` columns of A.
    """

    task: str
    model_a: str
    model_b: str
    n: int
    n_only_a: int
    n_only_b: int
    metrics: pd.DataFrame
    bootstrap: dict[str, PairedBootstrap]
    mcnemar: McNemar
    outcomes: pd.DataFrame

    def outcome_counts(self) -> pd.Series:
        """Number of ids per outcome, in ``OUTCOMES`` order."""
        return self.outcomes["outcome"].value_counts().reindex(list(OUTCOMES), fill_value=0)


def compare_runs(predictions_a: pd.DataFrame, predictions_b: pd.DataFrame, n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> RunComparison:
    """Compare two runs of one task on the ids they share.

    Args:
        predictions_a, predictions_b: predictions tables (docs/predictions.md) of the same task.
        n_boot, alpha, seed: for the bootstrap intervals and the paired bootstrap.

    Returns:
        A :class:`RunComparison`.

    Raises:
        UserInputError: when the tasks differ or the runs share no ids.
    """
    a, b = validate_predictions(predictions_a, "run A"), validate_predictions(predictions_b, "run B")
    tasks = {str(a["task"].iloc[0]), str(b["task"].iloc[0])}
    if len(tasks) != 1:
        raise UserInputError(f"cannot pair runs of different tasks: {sorted(tasks)}")
    meta = [c for c in a.columns if c.startswith("meta_")]
    optional = [c for c in ("example_f1", "text", "text_pair") if c in a.columns]
    left = a[["id", "correct", "prediction", "gold", *optional, *meta]]
    right = b[["id", "correct", "prediction"] + (["example_f1"] if "example_f1" in b.columns else [])]
    merged = left.merge(right, on="id", suffixes=("_a", "_b"), validate="one_to_one")
    if merged.empty:
        raise UserInputError("the two runs share no example ids; were they evaluated on the same split?")
    ca, cb = merged["correct_a"].to_numpy(bool), merged["correct_b"].to_numpy(bool)
    outcome = np.select([ca & cb, ~ca & ~cb, ca & ~cb], list(OUTCOMES[:3]), default=OUTCOMES[3])
    merged["outcome"] = outcome
    merged["disagree"] = merged["prediction_a"].astype(str) != merged["prediction_b"].astype(str)
    name_a, name_b = str(a["model"].iloc[0]), str(b["model"].iloc[0])
    rows, tests = [], {}
    metric_columns = {"accuracy": ("correct_a", "correct_b")}
    if "example_f1_a" in merged and "example_f1_b" in merged:
        metric_columns["example_f1"] = ("example_f1_a", "example_f1_b")
    for metric, (col_a, col_b) in metric_columns.items():
        for model, column in ((name_a, col_a), (name_b, col_b)):
            ci: ConfidenceInterval = bootstrap_ci(merged[column].astype(float).to_numpy(), n_boot=n_boot,
                                                  alpha=alpha, seed=seed)
            rows.append(dict(model=model, metric=metric, value=ci.estimate, ci_low=ci.low, ci_high=ci.high, n=ci.n))
        tests[metric] = paired_bootstrap(merged[col_a].astype(float), merged[col_b].astype(float),
                                         n_boot=n_boot, alpha=alpha, seed=seed)
    only_a = len(set(a["id"]) - set(b["id"]))
    only_b = len(set(b["id"]) - set(a["id"]))
    if only_a or only_b:
        logger.warning("comparing on %d shared ids; %d only in A, %d only in B", len(merged), only_a, only_b)
    return RunComparison(task=tasks.pop(), model_a=name_a, model_b=name_b, n=len(merged), n_only_a=only_a,
                         n_only_b=only_b, metrics=pd.DataFrame(rows), bootstrap=tests,
                         mcnemar=mcnemar(ca, cb), outcomes=merged.reset_index(drop=True))


# ---------------------------------------------------------------------------------------------------------
# Representations of the same words

def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment (Kornblith et al., 2019, arXiv 1905.00414, eq. 5).

    ``CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred X, Y. Invariant to
    orthogonal transforms and isotropic scaling of either side, not to arbitrary invertible maps.

    Args:
        x: representations [n_examples, d_x].
        y: representations of the same examples [n_examples, d_y].

    Returns:
        A similarity in [0, 1] (1 for identical representations).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise UserInputError(f"linear_cka needs [n, d] arrays with the same n >= 2, got {x.shape} and {y.shape}")
    x = x - x.mean(axis=0, keepdims=True)  # [n, d_x]
    y = y - y.mean(axis=0, keepdims=True)  # [n, d_y]
    cross = np.linalg.norm(y.T @ x, "fro") ** 2
    norm = np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")
    return float(cross / norm) if norm > 0 else 0.0


_WORD = re.compile(r"\S+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the whitespace-separated words of ``text``."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def token_to_word(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Word index of each token from its character offsets; -1 for special tokens (empty offsets).

    Args:
        offsets: the tokenizer's offset mapping, one ``(start, end)`` per token.
        spans: :func:`word_spans` of the same text.

    Returns:
        int array [pos].
    """
    starts = np.array([s for s, _ in spans])
    out = np.full(len(offsets), -1, dtype=int)
    for i, (start, end) in enumerate(offsets):
        if end > start:
            out[i] = int(np.searchsorted(starts, start, side="right") - 1)
    return out


@dataclass
class WordView:
    """One text through one encoder, aggregated to whitespace words.

    Attributes:
        words: the words of the text.
        hidden: word vectors per layer [n_layers + 1, n_words, d_model] (embeddings first); subword
            vectors are averaged per word.
        attention: word-level attention [n_layers, n_heads, n_words, n_words]: to a word sums over its
            subwords, from a word averages them; rows renormalised over words (special tokens dropped).
    """

    words: list[str]
    hidden: np.ndarray
    attention: np.ndarray


def word_view(encoder: Any, text: str) -> WordView:
    """Run ``encoder`` (an ``atinuke.encoders.Encoder``) on ``text`` and aggregate to words.

    Args:
        encoder: an ``Encoder`` or a ``workbench.subject.Subject``: has ``.model`` (or ``.encoder``), returning
            hidden states and attentions on request, ``.tokenizer``, ``.kind`` and ``.max_len``.
        text: a non-empty text within the encoder's maximum length.

    Returns:
        A :class:`WordView`.
    """
    import torch

    spans = word_spans(text)
    if not spans:
        raise UserInputError("empty text: type at least one word")
    batch = encoder.tokenizer(text, return_offsets_mapping=True, return_tensors="pt", truncation=False)
    offsets = [tuple(o) for o in batch.pop("offset_mapping")[0].tolist()]
    max_len = int(getattr(encoder, "max_len", 512))
    if batch["input_ids"].shape[1] > max_len:
        raise UserInputError(f"text is {batch['input_ids'].shape[1]} tokens long; the model takes at most {max_len}")
    # Only the inputs the family's forward takes: GPT-2 would add wte(token_type_ids) to every position.
    accepted = getattr(getattr(encoder, "adapter", None), "model_inputs", ("input_ids", "attention_mask",
                                                                            "token_type_ids"))
    inputs = {k: v for k, v in batch.items() if k in accepted}
    if getattr(encoder, "kind", "hf") == "atinuke":
        inputs.pop("token_type_ids", None)
    with torch.no_grad():
        model = encoder.model if hasattr(encoder, "model") else encoder.encoder
        output = model(**inputs, output_hidden_states=True, output_attentions=True)
    hidden = torch.stack(output.hidden_states)[:, 0].float().numpy()  # [n_layers + 1, pos, d_model]
    attn = torch.stack(output.attentions)[:, 0].float().numpy()  # [n_layers, n_heads, pos, pos]
    owner = token_to_word(offsets, spans)  # [pos]
    n_words = len(spans)
    member = np.zeros((n_words, len(owner)))  # [n_words, pos]
    member[owner[owner >= 0], np.nonzero(owner >= 0)[0]] = 1.0
    counts = member.sum(axis=1, keepdims=True)
    missing = np.nonzero(counts.ravel() == 0)[0]
    if missing.size:  # a word the tokenizer dropped entirely (e.g. a lone control character)
        raise UserInputError(f"word {text[spans[missing[0]][0]:spans[missing[0]][1]]!r} has no tokens")
    mean_pool = member / counts  # [n_words, pos]
    word_hidden = np.einsum("wp,lpd->lwd", mean_pool, hidden)  # [n_layers + 1, n_words, d_model]
    word_attn = np.einsum("qp,lhpk,wk->lhqw", mean_pool, attn, member)  # [n_layers, n_heads, n_words, n_words]
    word_attn = word_attn / np.clip(word_attn.sum(axis=-1, keepdims=True), 1e-12, None)
    words = [text[s:e] for s, e in spans]
    return WordView(words=words, hidden=word_hidden, attention=word_attn)


def layerwise_cka(views_a: Sequence[WordView], views_b: Sequence[WordView]) -> pd.DataFrame:
    """Linear CKA between every layer of model A and every layer of model B over the same words.

    Args:
        views_a, views_b: :func:`word_view` of the same texts through models A and B.

    Returns:
        Tidy DataFrame: ``layer_a``, ``layer_b`` (0 = embeddings), ``cka``, ``n_words``.
    """
    if len(views_a) != len(views_b) or not views_a:
        raise UserInputError("layerwise_cka needs the same non-empty list of texts for both models")
    for va, vb in zip(views_a, views_b):
        if va.words != vb.words:
            raise UserInputError("the two models saw different words; pass views of the same texts")
    ha = np.concatenate([v.hidden for v in views_a], axis=1)  # [layers_a, words, d_a]
    hb = np.concatenate([v.hidden for v in views_b], axis=1)  # [layers_b, words, d_b]
    rows = [dict(layer_a=i, layer_b=j, cka=linear_cka(ha[i], hb[j]), n_words=ha.shape[1])
            for i in range(ha.shape[0]) for j in range(hb.shape[0])]
    return pd.DataFrame(rows)


def head_similarity(views_a: Sequence[WordView], views_b: Sequence[WordView]) -> np.ndarray:
    """Similarity of every head of A to every head of B: 1 - mean Jensen-Shannon distance of word rows.

    The Jensen-Shannon distance (base 2) of two attention rows is in [0, 1]; it is averaged over every
    query word of every text. Identical heads score 1.

    Returns:
        Array [n_layers_a * n_heads_a, n_layers_b * n_heads_b], heads flattened layer-major.
    """
    total, count = None, 0
    for va, vb in zip(views_a, views_b):
        pa = va.attention.reshape(-1, *va.attention.shape[2:])[:, None]  # [heads_a, 1, q, k]
        pb = vb.attention.reshape(-1, *vb.attention.shape[2:])[None]  # [1, heads_b, q, k]
        mid = (pa + pb) / 2  # [heads_a, heads_b, q, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            kl_a = np.where(pa > 0, pa * np.log2(pa / mid), 0.0).sum(-1)  # [heads_a, heads_b, q]
            kl_b = np.where(pb > 0, pb * np.log2(pb / mid), 0.0).sum(-1)
        distance = np.sqrt(np.clip((kl_a + kl_b) / 2, 0.0, 1.0))  # [heads_a, heads_b, q]
        part = distance.sum(-1)
        total = part if total is None else total + part
        count += distance.shape[-1]
    if total is None:
        raise UserInputError("head_similarity needs at least one text")
    return 1.0 - total / count


def match_heads(views_a: Sequence[WordView], views_b: Sequence[WordView]) -> pd.DataFrame:
    """One-to-one matching of A's heads to B's heads maximising word-level attention similarity.

    Uses the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``, maximize=True) on
    :func:`head_similarity`; ``min(heads_a, heads_b)`` pairs come out.

    Returns:
        DataFrame sorted by descending similarity: ``layer_a``, ``head_a``, ``layer_b``, ``head_b``,
        ``similarity``, ``best_b_similarity`` (the best similarity of that A head to any B head).
    """
    from scipy.optimize import linear_sum_assignment

    sim = head_similarity(views_a, views_b)  # [heads_a, heads_b]
    heads_a, heads_b = views_a[0].attention.shape[1], views_b[0].attention.shape[1]
    rows_idx, cols_idx = linear_sum_assignment(sim, maximize=True)
    rows = [dict(layer_a=int(r // heads_a), head_a=int(r % heads_a), layer_b=int(c // heads_b),
                 head_b=int(c % heads_b), similarity=float(sim[r, c]), best_b_similarity=float(sim[r].max()))
            for r, c in zip(rows_idx, cols_idx)]
    return pd.DataFrame(rows).sort_values("similarity", ascending=False).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# Probes and attributions

def probe_overlay(results: pd.DataFrame, task: str, metric: Optional[str] = None) -> pd.DataFrame:
    """Layer curves of several models on one probing task, on a shared relative-depth axis.

    Args:
        results: the probes' tidy table (``model, task, layer, metric, value, seed, control, source``).
        task: the probing task to overlay.
        metric: the metric (default: "accuracy" when present, else the first one listed for the task).

    Returns:
        DataFrame per (model, control, layer): ``model``, ``control``, ``layer``, ``depth`` (layer /
        the model's last layer, so 6- and 4-layer models share an x axis), ``mean``, ``std``, ``n_seeds``.
    """
    needed = {"model", "task", "layer", "metric", "value"}
    if not needed <= set(results.columns):
        raise UserInputError(f"probe results need columns {sorted(needed)}")
    rows = results[results["task"] == task]
    if rows.empty:
        raise UserInputError(f"no probe results for task {task!r}; available: {sorted(results['task'].unique())}")
    metrics = list(dict.fromkeys(rows["metric"].astype(str)))
    metric = metric or ("accuracy" if "accuracy" in metrics else metrics[0])
    rows = rows.assign(control=rows["control"].fillna("none").astype(str) if "control" in rows else "none",
                       source=rows["source"] if "source" in rows else "")
    grouped = layer_curve(rows, metric)[["model", "control", "layer", "mean", "std", "n_seeds"]]
    last = grouped.groupby("model")["layer"].transform("max").replace(0, 1)
    grouped["depth"] = grouped["layer"] / last
    grouped["metric"] = metric
    return grouped


def attribution_agreement(a: pd.DataFrame, b: pd.DataFrame, key: str = "id", position: str = "word_index",
                          score: str = "score", k: int = 3) -> pd.DataFrame:
    """Agreement of two attribution tables on the same examples (same words, different methods or models).

    Args:
        a, b: tidy tables with one row per (example, position): columns ``key``, ``position``, ``score``.
        key, position, score: column names.
        k: size of the top-k sets compared.

    Returns:
        One row per shared example: ``key``, ``n_positions``, ``spearman`` (rank correlation of scores),
        ``kendall``, ``topk_jaccard`` (overlap of the k highest-|score| positions), ``sign_agreement``.
    """
    for name, table in (("A", a), ("B", b)):
        missing = {key, position, score} - set(table.columns)
        if missing:
            raise UserInputError(f"attribution table {name} lacks column(s) {sorted(missing)}")
    merged = a[[key, position, score]].merge(b[[key, position, score]], on=[key, position], suffixes=("_a", "_b"))
    rows = []
    for example, group in merged.groupby(key, sort=True):
        sa, sb = group[f"{score}_a"].to_numpy(float), group[f"{score}_b"].to_numpy(float)
        kk = min(k, len(group))
        top_a = set(group[position].to_numpy()[np.argsort(-np.abs(sa))[:kk]])
        top_b = set(group[position].to_numpy()[np.argsort(-np.abs(sb))[:kk]])
        constant = np.ptp(sa) == 0 or np.ptp(sb) == 0
        rows.append({key: example, "n_positions": len(group),
                     "spearman": float("nan") if constant else float(stats.spearmanr(sa, sb).statistic),
                     "kendall": float("nan") if constant else float(stats.kendalltau(sa, sb).statistic),
                     "topk_jaccard": len(top_a & top_b) / len(top_a | top_b) if top_a | top_b else float("nan"),
                     "sign_agreement": float(np.mean(np.sign(sa) == np.sign(sb)))})
    return pd.DataFrame(rows, columns=[key, "n_positions", "spearman", "kendall", "topk_jaccard", "sign_agreement"])


# ---------------------------------------------------------------------------------------------------------
# Dictionary features of two models

def word_feature_activations(subject: Any, sae: Any, hook: str, texts: Sequence[str], max_length: int = 128
                             ) -> tuple[np.ndarray, list[str]]:
    """Every latent's activation on every whitespace word of ``texts`` (the max over the word's tokens), so
    two models with different tokenizers describe the same units.

    Args:
        subject: a :class:`workbench.subject.Subject`; sae: a
            :class:`workbench.features.sae.SparseAutoencoder` of its ``hook``.

    Returns:
        (activations [n_words, width], the words), words of all texts in order; a word past ``max_length``
        tokens gets zeros.
    """
    from workbench.features.units import token_activations

    blocks, words = [], []
    for text in texts:
        spans = word_spans(text)
        if not spans:
            raise UserInputError("empty text: type at least one word")
        latents, mask, batch = token_activations(subject, sae, hook, text, max_length=max_length)  # [pos, width]
        owner = token_to_word([tuple(o) for o in batch["offset_mapping"][0].tolist()], spans)  # [pos]
        block = np.zeros((len(spans), latents.shape[1]), dtype=np.float32)
        values = latents.numpy()
        for position in np.flatnonzero((owner >= 0) & mask.numpy()):
            block[owner[position]] = np.maximum(block[owner[position]], values[position])
        blocks.append(block)
        words += [text[s:e] for s, e in spans]
    return np.concatenate(blocks), words


def compare_features(subject_a: Any, sae_a: Any, hook_a: str, subject_b: Any, sae_b: Any, hook_b: str,
                     texts: Sequence[str], threshold: float = 0.5, max_length: int = 128) -> Any:
    """Match the latents of two models' SAEs by activation correlation on the same words
    (:func:`workbench.features.units.match_features`): which features the two share and which one has that
    the other lacks.

    Returns:
        A :class:`workbench.features.units.FeatureMatch` over the words of ``texts``.
    """
    from workbench.features.units import match_features

    a, words_a = word_feature_activations(subject_a, sae_a, hook_a, texts, max_length)
    b, words_b = word_feature_activations(subject_b, sae_b, hook_b, texts, max_length)
    if words_a != words_b:  # the same texts split the same way: cannot happen unless texts changed
        raise UserInputError("the two models saw different words")
    return match_features(a, b, threshold=threshold)


def separating_features_of_outcomes(outcomes: pd.DataFrame, activations: np.ndarray, which: str = "A wins",
                                    k: int = 10) -> pd.DataFrame:
    """The latents (of one model's SAE, pooled per example) that best separate the examples of one outcome
    of :func:`compare_runs` (e.g. "A wins": A right and B wrong) from the rest.

    Args:
        outcomes: ``RunComparison.outcomes``, rows aligned with ``activations``.
        activations: [n, width] (:func:`workbench.features.units.example_activations` of the same texts).
        which: an outcome of :data:`OUTCOMES`.
    """
    from workbench.features.units import separating_features

    if which not in OUTCOMES:
        raise UserInputError(f"unknown outcome {which!r}; choose one of {', '.join(OUTCOMES)}")
    return separating_features(activations, (outcomes["outcome"] == which).to_numpy(), k=k)
