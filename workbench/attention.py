"""Attention analysis: per-layer/head maps, word-level aggregation, rollout, flow, head statistics, importance.

* Maps come from ``blocks.{i}.attn.hook_pattern`` of any :class:`~workbench.subject.Subject`.
* Token -> word aggregation (Clark et al., 2019, "What Does BERT Look At?", arXiv 1906.04341): attention
  *to* a word is the sum over its sub-tokens, attention *from* a word the mean over its sub-tokens, so every
  row still sums to 1.
* Attention rollout and attention flow (Abnar & Zuidema, 2020, "Quantifying Attention Flow in
  Transformers", arXiv 2005.00928): the residual connection is modelled as 0.5 A + 0.5 I; rollout multiplies
  the layers' matrices, flow solves a max-flow problem on the layered graph (networkx).
* Head statistics (Clark et al., 2019): entropy, mean attention distance, attention to [CLS], [SEP] and
  punctuation.
* Head importance by ablation (Michel et al., 2019, "Are Sixteen Heads Really Better than One?",
  arXiv 1905.10650): the drop in a task score when one head is masked, normalised per layer (l2).
"""
from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

SPECIAL_WORD = -1  # word index of special tokens ([CLS], [SEP]) and padding


@dataclass
class AttentionMaps:
    """Attention of one input, trimmed to its real tokens.

    Attributes:
        tokens: the T sub-tokens (special tokens included).
        pattern: [n_layers, n_heads, T, T] float array (query rows, key columns; rows sum to 1).
        word_index: [T] word of each token (-1 for special tokens); words are whitespace-separated words
            of the text, numbered across both segments.
        words: the words, in order.
        special: [T] bool, True for special tokens.
    """

    tokens: list[str]
    pattern: np.ndarray
    word_index: np.ndarray
    words: list[str]
    special: np.ndarray

    def to_words(self) -> "AttentionMaps":
        """The same maps over words (special tokens kept as their own units); see :func:`aggregate_to_words`."""
        pattern, units, labels = aggregate_to_words(self.pattern, self.word_index, self.tokens)
        labels = [self.words[u] if u >= 0 else label for u, label in zip(units, labels)]
        special = np.array([u < 0 for u in units])
        return AttentionMaps(labels, pattern, np.array(units), self.words, special)

    def head_mean(self) -> np.ndarray:
        """[n_layers, T, T] mean over heads (the input of rollout and flow)."""
        return self.pattern.mean(axis=1)


def word_index_from_offsets(offsets: Sequence[tuple[int, int]], special: Sequence[bool],
                            segments: Sequence[int], texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Map each token to a whitespace word through its character offsets.

    Args:
        offsets: [T] (start, end) character offsets within each token's segment text.
        special: [T] True for special tokens / padding.
        segments: [T] segment (0 or 1) of each token.
        texts: the segment texts.

    Returns:
        (word index per token, -1 for special tokens; the list of words across segments).
    """
    words: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    for text in texts:
        segment_spans, position = [], 0
        for word in text.split():
            start = text.index(word, position)
            segment_spans.append((start, start + len(word)))
            words.append(word)
            position = start + len(word)
        spans.append(segment_spans)
    first_word = np.cumsum([0] + [len(s) for s in spans])
    index = np.full(len(offsets), SPECIAL_WORD, dtype=np.int64)
    for t, ((start, end), is_special, segment) in enumerate(zip(offsets, special, segments)):
        if is_special or end <= start:
            continue
        for w, (w_start, w_end) in enumerate(spans[segment]):
            if w_start <= start < w_end:
                index[t] = first_word[segment] + w
                break
    return index, words


def attention_maps(subject: Subject, text: str, text_pair: Optional[str] = None) -> AttentionMaps:
    """Every layer's and head's attention for one input.

    Args:
        subject: a :class:`~workbench.subject.Subject`.
        text, text_pair: the input (pair: second segment).

    Returns:
        :class:`AttentionMaps` over the real tokens.
    """
    batch = subject.tokenize(text, text_pair)
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(subject.n_layers)]
    with torch.no_grad():
        cache = subject.run_with_cache(batch, names)
    pattern = cache.stack("attn.hook_pattern")[:, 0].float().cpu().numpy()  # [n_layers, n_heads, T, T]
    ids = batch["input_ids"][0].tolist()
    special = batch["special_tokens_mask"][0].bool().numpy()
    segments = _segments(batch, ids, special)
    index, words = word_index_from_offsets(batch["offset_mapping"][0].tolist(), special, segments,
                                           [text] if text_pair is None else [text, text_pair])
    tokens = subject.tokenizer.convert_ids_to_tokens(ids)
    assert isinstance(tokens, list)  # a list of ids gives a list of tokens
    return AttentionMaps(tokens, pattern, index, words, special)


def _segments(batch: Any, ids: list[int], special: np.ndarray) -> list[int]:
    """Segment (0 first text, 1 second) of each token, from the fast tokenizer's sequence ids."""
    if batch.encodings:
        return [s if s is not None else 0 for s in batch.encodings[0].sequence_ids]
    if batch.get("token_type_ids") is not None:
        return batch["token_type_ids"][0].tolist()
    return [0] * len(ids)


def aggregate_to_words(pattern: np.ndarray, word_index: Sequence[int] | np.ndarray,
                       tokens: Optional[Sequence[str]] = None) -> tuple[np.ndarray, list[int], list[str]]:
    """Aggregate token attention to words: sum over a word's key sub-tokens, mean over its query sub-tokens.

    Special tokens (word index -1) stay units of their own, so rows keep summing to 1 (Clark et al., 2019).

    Args:
        pattern: [..., T, T] (query, key) attention.
        word_index: [T] word of each token, -1 for special tokens.
        tokens: [T] token strings (for labels).

    Returns:
        (pattern [..., U, U] over units, unit ids (word index, or -1 - token position for special
        tokens), unit labels).
    """
    word_index = list(word_index)
    units: list[int] = []
    unit_of_token = []
    for t, w in enumerate(word_index):
        unit = w if w >= 0 else -1 - t
        if unit not in units:
            units.append(unit)
        unit_of_token.append(units.index(unit))
    n_units, n_tokens = len(units), len(word_index)
    membership = np.zeros((n_units, n_tokens))  # [U, T]
    membership[unit_of_token, np.arange(n_tokens)] = 1.0
    query_mean = membership / membership.sum(axis=1, keepdims=True)  # [U, T], rows average sub-tokens
    aggregated = query_mean @ pattern @ membership.T  # [..., U, U]
    labels = []
    for u in range(n_units):
        members = [t for t in range(n_tokens) if unit_of_token[t] == u]
        if tokens is None:
            labels.append(str(units[u]))
        else:
            labels.append("".join(tokens[t][2:] if tokens[t].startswith("##") else tokens[t] for t in members))
    return aggregated, units, labels


def _with_residual(attention: np.ndarray) -> np.ndarray:
    """0.5 A + 0.5 I, rows renormalised (Abnar & Zuidema, 2020, §3)."""
    eye = np.eye(attention.shape[-1])
    mixed = 0.5 * attention + 0.5 * eye
    return mixed / mixed.sum(axis=-1, keepdims=True)


def attention_rollout(attention: np.ndarray, add_residual: bool = True) -> np.ndarray:
    """Attention rollout: R_l = Ã_l R_{l-1}, R_0 = I (Abnar & Zuidema, 2020).

    Args:
        attention: [n_layers, T, T] (heads averaged) query-by-key attention.
        add_residual: model the skip connection as 0.5 A + 0.5 I.

    Returns:
        [n_layers, T, T]: entry [l, i, j] is how much input token j contributes to token i after layer l.
    """
    attention = np.asarray(attention, dtype=np.float64)
    mixed = _with_residual(attention) if add_residual else attention
    rollout = np.empty_like(mixed)
    current = np.eye(mixed.shape[-1])
    for layer in range(mixed.shape[0]):
        current = mixed[layer] @ current
        rollout[layer] = current
    return rollout


_FLOW_SCALE = 10 ** 8  # scipy's max-flow needs integer capacities: weights in [0, 1] kept to 1e-8


def attention_flow(attention: np.ndarray, add_residual: bool = True, normalize: bool = True,
                   backend: str = "scipy") -> np.ndarray:
    """Attention flow: max-flow from each input token to each output token (Abnar & Zuidema, 2020).

    The graph has a node per (layer boundary, token); an edge from token j below layer l to token i above
    it has capacity Ã_l[i, j]. ``backend="scipy"`` solves it with ``scipy.sparse.csgraph.maximum_flow`` on
    capacities scaled to integers (exact to ~1e-8, fast); ``"networkx"`` with preflow-push on the floats.

    Args:
        attention: [n_layers, T, T] (heads averaged).
        add_residual: model the skip connection as 0.5 A + 0.5 I.
        normalize: divide each output token's flows by their sum (as in the paper's code).
        backend: "scipy" or "networkx".

    Returns:
        [T, T]: entry [i, j] is the flow from input token j to output token i through all layers.
    """
    attention = np.asarray(attention, dtype=np.float64)
    mixed = _with_residual(attention) if add_residual else attention
    n_layers, n_tokens, _ = mixed.shape
    node = lambda layer, token: layer * n_tokens + token  # noqa: E731
    edges = [(node(layer, j), node(layer + 1, i), mixed[layer, i, j])
             for layer in range(n_layers) for i in range(n_tokens) for j in range(n_tokens) if mixed[layer, i, j] > 0]
    flow = np.zeros((n_tokens, n_tokens))
    if backend == "scipy":
        from scipy.sparse import csr_array
        from scipy.sparse.csgraph import maximum_flow

        size = (n_layers + 1) * n_tokens
        rows, cols, caps = zip(*edges) if edges else ((), (), ())
        capacities = np.rint(np.asarray(caps) * _FLOW_SCALE).astype(np.int32)
        graph = csr_array((capacities, (np.asarray(rows, dtype=np.int32), np.asarray(cols, dtype=np.int32))),
                          shape=(size, size))
        for i in range(n_tokens):
            for j in range(n_tokens):
                flow[i, j] = maximum_flow(graph, node(0, j), node(n_layers, i)).flow_value / _FLOW_SCALE
    elif backend == "networkx":
        import networkx as nx
        from networkx.algorithms.flow import preflow_push

        graph = nx.DiGraph()
        graph.add_nodes_from(range((n_layers + 1) * n_tokens))
        for u, v, capacity in edges:
            graph.add_edge(u, v, capacity=float(capacity))
        for i in range(n_tokens):
            for j in range(n_tokens):
                flow[i, j] = nx.maximum_flow_value(graph, node(0, j), node(n_layers, i), flow_func=preflow_push)
    else:
        raise UserInputError(f"unknown flow backend {backend!r}; choose 'scipy' or 'networkx'")
    if normalize:
        totals = flow.sum(axis=1, keepdims=True)
        flow = np.divide(flow, totals, out=np.zeros_like(flow), where=totals > 0)
    return flow


def entropy(pattern: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each attention row: -sum_k p log p; a uniform row over n keys gives log n.

    Args:
        pattern: [..., T] rows of probabilities.

    Returns:
        [...] entropies.
    """
    p = np.asarray(pattern, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=-1)


def _is_punctuation(token: str) -> bool:
    stripped = token[2:] if token.startswith("##") else token
    return bool(stripped) and all(c in string.punctuation for c in stripped)


def head_statistics(subject: Subject, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None,
                    batch_size: int = 16) -> pd.DataFrame:
    """Per-head statistics averaged over the real query tokens of ``texts`` (Clark et al., 2019).

    Args:
        subject: a Subject.
        texts: inputs (and ``text_pairs``).
        batch_size: examples per forward pass.

    Returns:
        DataFrame, one row per (layer, head), columns: ``layer``, ``head``, ``entropy`` (nats, mean per
        query), ``mean_distance`` (sum_k p_qk |q - k|, mean per query), ``attn_cls``, ``attn_sep``,
        ``attn_punct`` (mean attention mass a query puts on [CLS] / [SEP] / punctuation tokens; NaN for a
        tokenizer without that token), ``n_queries``.
    """
    sums = np.zeros((subject.n_layers, subject.n_heads, 5))
    n_queries = 0
    tokenizer = subject.tokenizer
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(subject.n_layers)]
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        pairs = None if text_pairs is None else list(text_pairs[start:start + batch_size])
        batch = subject.tokenize(chunk, pairs)
        with torch.no_grad():
            cache = subject.run_with_cache(batch, names)
        pattern = cache.stack("attn.hook_pattern").double().cpu().numpy()  # [L, batch, H, T, T]
        mask = batch["attention_mask"].numpy().astype(bool)  # [batch, T]
        ids = batch["input_ids"].numpy()
        for b in range(len(chunk)):
            real = mask[b]
            p = pattern[:, b][:, :, real][:, :, :, real]  # [L, H, T, T]
            n_tokens = int(real.sum())
            positions = np.arange(n_tokens)
            distance = np.abs(positions[:, None] - positions[None, :])
            token_ids = ids[b][real]
            tokens = tokenizer.convert_ids_to_tokens(token_ids.tolist())
            is_cls = token_ids == tokenizer.cls_token_id
            is_sep = token_ids == tokenizer.sep_token_id
            is_punct = np.array([_is_punctuation(t) for t in tokens])
            sums[..., 0] += entropy(p).sum(-1)
            sums[..., 1] += (p * distance).sum(-1).sum(-1)
            sums[..., 2] += p[..., is_cls].sum(-1).sum(-1)
            sums[..., 3] += p[..., is_sep].sum(-1).sum(-1)
            sums[..., 4] += p[..., is_punct].sum(-1).sum(-1)
            n_queries += n_tokens
    means = sums / max(n_queries, 1)
    # A tokenizer without [CLS] / [SEP] (GPT-2's) has no such statistic: NaN, not a misleading 0.
    for column, token in ((2, tokenizer.cls_token_id), (3, tokenizer.sep_token_id)):
        if token is None:
            means[..., column] = np.nan
    rows = [dict(layer=layer, head=head, entropy=means[layer, head, 0], mean_distance=means[layer, head, 1],
                 attn_cls=means[layer, head, 2], attn_sep=means[layer, head, 3], attn_punct=means[layer, head, 4],
                 n_queries=n_queries)
            for layer in range(subject.n_layers) for head in range(subject.n_heads)]
    return pd.DataFrame(rows)


def head_importance(subject: Subject, score_fn: Callable[[Any], float], inputs: Any, mode: str = "zero",
                    **head_inputs: Any) -> pd.DataFrame:
    """Importance of each head as the drop in a task score when it alone is ablated (Michel et al., 2019).

    Args:
        subject: a Subject.
        score_fn: model output -> score, higher is better (accuracy, mean gold log-probability, -loss).
        inputs: the evaluation inputs (texts or a tokenised batch).
        mode: "zero" (head mask = 0, as in the paper) or "mean" ablation.
        **head_inputs: extra task-head tensors.

    Returns:
        DataFrame, one row per (layer, head): ``layer``, ``head``, ``baseline`` (score with every head),
        ``ablated`` (score without this head), ``importance`` (baseline - ablated), ``importance_norm``
        (importance divided by the l2 norm of its layer's importances, Michel et al. §4.3).
    """
    with torch.no_grad():
        baseline = float(score_fn(subject.forward(inputs, **head_inputs)))
        rows = []
        for layer in range(subject.n_layers):
            for head in range(subject.n_heads):
                with subject.ablate_heads({layer: [head]}, mode=mode,
                                          reference=inputs if mode == "mean" else None):
                    ablated = float(score_fn(subject.forward(inputs, **head_inputs)))
                rows.append(dict(layer=layer, head=head, baseline=baseline, ablated=ablated,
                                 importance=baseline - ablated))
    frame = pd.DataFrame(rows)
    norms = frame.groupby("layer")["importance"].transform(lambda v: float(np.sqrt((v ** 2).sum())))
    frame["importance_norm"] = np.where(norms > 0, frame["importance"] / norms.replace(0, 1), 0.0)
    return frame


def gold_logprob_score(labels: torch.Tensor) -> Callable[[Any], float]:
    """A score for :func:`head_importance`: mean log-probability of the gold class of a classification head.

    Args:
        labels: [batch] gold class indices.
    """
    def score(output: Any) -> float:
        logits = getattr(output, "logits", None)
        if logits is None or logits.dim() != 2:
            raise UserInputError("gold_logprob_score needs a classification output with logits [batch, n_labels]")
        return float(logits.log_softmax(-1).gather(1, labels.view(-1, 1).to(logits.device)).mean())
    return score
