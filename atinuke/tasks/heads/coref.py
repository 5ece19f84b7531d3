"""Coreference as span ranking, end-to-end (Lee et al., 2017, "End-to-end Neural Coreference Resolution",
arXiv 1707.07045), on a pretrained encoder as in Joshi et al., 2019 (arXiv 1908.09091).

1. A document is cut into segments of at most ``max_len`` tokens (at sentence ends where possible), each
   encoded independently as ``[CLS] ... [SEP]``; the sub-token states are read back in document order.
2. Every span of up to ``max_span_width`` words inside one sentence is a candidate; its representation is
   ``g = [h_first; h_last; phi(width)]`` (the endpoint states and a learned width embedding).
3. A feed-forward scorer gives each candidate a mention score s_m; the top ``lambda * n_words`` survive.
4. Each kept span i scores its K preceding kept spans: ``s(i, j) = s_m(i) + s_m(j) + s_a(i, j)`` with
   ``s_a = FFNN([g_i; g_j; g_i * g_j; phi(distance)])``; a dummy antecedent has score 0.
5. Training maximises the marginal log-likelihood of the gold antecedents (the dummy when there is none),
   plus (option, see ``HeadConfig.mention_loss_weight``) a binary mention loss on every candidate.
6. Decoding links each span to its best antecedent unless the dummy wins (its score: ``link_threshold``, 0
   until calibrated on held-out training documents), and grows clusters greedily.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError
from atinuke.tasks.base import CorefDocument
from atinuke.tasks.heads.common import (
    HeadConfig,
    TaskBatch,
    TaskOutput,
    TaskPrediction,
    pad_2d,
    pad_offsets,
    tokenize_words,
    word_char_starts,
)

logger = logging.getLogger(__name__)

N_DISTANCE_BUCKETS = 10
MASKED = -1e4

Span = tuple[int, int]


def distance_bucket(distance: torch.Tensor) -> torch.Tensor:
    """Lee et al. (2017) buckets: 0, 1, 2, 3, 4, 5-7, 8-15, 16-31, 32-63, 64+ -> 0..9."""
    distance = distance.clamp(min=0)
    log_bucket = torch.floor(torch.log2(distance.clamp(min=1).float())).long() + 3
    return torch.where(distance <= 4, distance, log_bucket).clamp(max=N_DISTANCE_BUCKETS - 1)


def _ffnn(d_in: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


class CorefHead(nn.Module):
    """Mention scorer, antecedent scorer and the width/distance embeddings of Lee et al. (2017)."""

    def __init__(self, d_model: int, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        span_dim = 2 * d_model + config.feature_size
        self.width_embedding = nn.Embedding(config.max_span_width, config.feature_size)
        self.distance_embedding = nn.Embedding(N_DISTANCE_BUCKETS, config.feature_size)
        self.dropout = nn.Dropout(config.dropout)
        self.mention_scorer = _ffnn(span_dim, config.ffnn_size, config.dropout)
        self.pair_scorer = _ffnn(3 * span_dim + config.feature_size, config.ffnn_size, config.dropout)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, span_starts: torch.Tensor,
                span_ends: torch.Tensor, span_widths: torch.Tensor, span_start_words: torch.Tensor,
                span_doc: torch.Tensor, doc_n_words: torch.Tensor, gold_cluster_ids: Optional[torch.Tensor] = None,
                **unused: torch.Tensor) -> TaskOutput:
        """Args:
            hidden: [rows, pos, d_model], the document segments.
            span_starts, span_ends: [n_spans] flat positions (row * pos + position) of each candidate's first
                and last sub-token.
            span_widths: [n_spans] width in words minus one.
            span_start_words: [n_spans] first word of each candidate (for the distance feature).
            span_doc: [n_spans] document of each candidate (candidates are grouped by document, in text order).
            doc_n_words: [n_docs] words per document (sets the pruning budget).
            gold_cluster_ids: [n_spans] 1 + gold cluster of the candidate, 0 for non-mentions.
        """
        flat = hidden.reshape(-1, hidden.shape[-1])  # [rows * pos, d_model]
        g = torch.cat([flat[span_starts], flat[span_ends], self.width_embedding(span_widths)], -1)  # [n_spans, span_dim]
        g = self.dropout(g)
        mention_scores = self.mention_scorer(g).squeeze(-1)  # [n_spans]
        tops, antecedents, scores, doc_losses = [], [], [], []
        for doc in range(int(doc_n_words.shape[0])):
            candidates = (span_doc == doc).nonzero().squeeze(1)  # [n_doc_spans]
            if candidates.numel() == 0:
                continue
            k = min(candidates.numel(), max(1, int(self.config.top_span_ratio * int(doc_n_words[doc]))))
            top = candidates[mention_scores[candidates].topk(k).indices.sort().values]  # [n_top], text order
            n_ant = min(self.config.max_antecedents, k - 1)
            position = torch.arange(k, device=g.device)
            ant_pos = position[:, None] - 1 - torch.arange(n_ant, device=g.device)[None]  # [n_top, K]
            valid = ant_pos >= 0
            ant_pos = ant_pos.clamp(min=0)
            g_i = g[top].unsqueeze(1).expand(-1, n_ant, -1)  # [n_top, K, span_dim]
            g_j = g[top][ant_pos]  # [n_top, K, span_dim]
            words = span_start_words[top]  # [n_top]
            distance = self.distance_embedding(distance_bucket(words[:, None] - words[ant_pos]))  # [n_top, K, feat]
            pair = self.pair_scorer(torch.cat([g_i, g_j, g_i * g_j, distance], -1)).squeeze(-1)  # [n_top, K]
            m_top = mention_scores[top]  # [n_top]
            pair_scores = (m_top[:, None] + m_top[ant_pos] + pair).masked_fill(~valid, MASKED)  # [n_top, K]
            full = torch.cat([pair_scores.new_zeros(k, 1), pair_scores], 1)  # [n_top, K + 1], col 0 = dummy
            if gold_cluster_ids is not None:
                cluster = gold_cluster_ids[top]  # [n_top]
                gold = (cluster[ant_pos] == cluster[:, None]) & valid & (cluster[:, None] > 0)  # [n_top, K]
                gold_mask = torch.cat([~gold.any(1, keepdim=True), gold], 1)  # [n_top, K + 1]
                marginal = torch.logsumexp(full.float().masked_fill(~gold_mask, MASKED), 1)  # [n_top]
                doc_losses.append((torch.logsumexp(full.float(), 1) - marginal).sum())
            tops.append(top)
            antecedents.append(torch.where(valid, top[ant_pos], torch.full_like(ant_pos, -1)))
            scores.append(full)
        width = max((a.shape[1] for a in antecedents), default=0)
        antecedent_indices = torch.cat([F.pad(a, (0, width - a.shape[1]), value=-1) for a in antecedents]) \
            if antecedents else torch.zeros(0, 0, dtype=torch.long, device=g.device)
        antecedent_scores = torch.cat([F.pad(s, (0, width - (s.shape[1] - 1)), value=MASKED) for s in scores]) \
            if scores else g.new_zeros(0, 1)
        loss = None
        if gold_cluster_ids is not None:
            loss = torch.stack(doc_losses).mean() if doc_losses else mention_scores.sum() * 0.0
            if self.config.mention_loss_weight > 0:
                mention_loss = F.binary_cross_entropy_with_logits(mention_scores.float(), (gold_cluster_ids > 0).float())
                loss = loss + self.config.mention_loss_weight * mention_loss
        return TaskOutput(loss=loss, mention_scores=mention_scores,
                          top_span_indices=torch.cat(tops) if tops else span_doc.new_zeros(0),
                          antecedent_indices=antecedent_indices, antecedent_scores=antecedent_scores)


def enumerate_spans(n_words: int, sentence_starts: Sequence[int], max_width: int) -> list[Span]:
    """Candidate mentions: every span of at most ``max_width`` words that stays inside one sentence.

    Returns:
        Inclusive (start, end) word spans ordered by start, then end.
    """
    boundaries = sorted(set(s for s in sentence_starts if 0 < s < n_words)) + [n_words]
    sentence_end, b = [], 0
    for w in range(n_words):
        while boundaries[b] <= w:
            b += 1
        sentence_end.append(boundaries[b] - 1)
    return [(i, j) for i in range(n_words) for j in range(i, min(i + max_width, sentence_end[i] + 1))]


def _segment_words(word_lengths: Sequence[int], sentence_starts: Sequence[int], budget: int) -> list[list[int]]:
    """Group word indices into segments of at most ``budget`` sub-tokens, at sentence ends where possible."""
    n = len(word_lengths)
    starts = sorted(set([0] + [s for s in sentence_starts if 0 < s < n]))
    sentences = [list(range(a, b)) for a, b in zip(starts, starts[1:] + [n])]
    segments: list[list[int]] = [[]]
    used = 0
    for sentence in sentences:
        size = sum(min(word_lengths[w], budget) for w in sentence)
        if used + size > budget and segments[-1]:
            segments.append([])
            used = 0
        for w in sentence:  # a sentence longer than a segment is split between words
            length = min(word_lengths[w], budget)
            if used + length > budget:
                segments.append([])
                used = 0
            segments[-1].append(w)
            used += length
    return [s for s in segments if s]


def encode_coref(tokenizer, config: HeadConfig, documents: Sequence[CorefDocument]) -> TaskBatch:
    """Segments of every document as rows, plus the candidate spans of all documents.

    A word with more sub-tokens than fit in a segment keeps its first ``max_len - 2`` (counted as truncated).

    Raises:
        UserInputError: an empty document or a gold mention outside the document.
    """
    budget = config.max_len - 2
    rows: list[list[int]] = []
    offsets_rows: list[list[tuple[int, int]]] = []
    first_sub: list[list[Optional[tuple[int, int]]]] = []  # per document, per word: (row, position)
    last_sub: list[list[Optional[tuple[int, int]]]] = []
    example_index, n_truncated = [], 0
    for d, doc in enumerate(documents):
        if not doc.words:
            raise UserInputError(f"document {doc.id!r}: no words")
        word_ids, word_offsets = tokenize_words(tokenizer, doc.words)
        n_truncated += any(len(ids) > budget for ids in word_ids)
        char_starts = word_char_starts(doc.words)
        firsts: list[Optional[tuple[int, int]]] = [None] * len(doc.words)
        lasts: list[Optional[tuple[int, int]]] = [None] * len(doc.words)
        for segment in _segment_words([len(ids) for ids in word_ids], doc.sentence_starts, budget):
            ids, offsets = [tokenizer.cls_token_id], [(0, 0)]
            for w in segment:
                firsts[w] = (len(rows), len(ids))
                for token, (a, b) in list(zip(word_ids[w], word_offsets[w]))[:budget]:
                    ids.append(token)
                    offsets.append((char_starts[w] + a, char_starts[w] + b))
                lasts[w] = (len(rows), len(ids) - 1)
            rows.append(ids + [tokenizer.sep_token_id])
            offsets_rows.append(offsets + [(0, 0)])
            example_index.append(d)
        first_sub.append(firsts)
        last_sub.append(lasts)
    width = max(len(r) for r in rows) if rows else 1
    starts, ends, widths, start_words, end_words, span_doc, gold_ids = [], [], [], [], [], [], []
    n_unreachable = 0
    for d, doc in enumerate(documents):
        spans = enumerate_spans(len(doc.words), doc.sentence_starts, config.max_span_width)
        gold = {}
        for c, cluster in enumerate(doc.clusters):
            for start, end in cluster:
                if not 0 <= start <= end < len(doc.words):
                    raise UserInputError(f"document {doc.id!r}: mention ({start}, {end}) outside {len(doc.words)} words")
                gold[(int(start), int(end))] = c + 1
        n_unreachable += len(set(gold) - set(spans))
        for i, j in spans:
            first, last = first_sub[d][i], last_sub[d][j]
            assert first is not None and last is not None  # every word is in a segment
            (row_i, pos_i), (row_j, pos_j) = first, last
            starts.append(row_i * width + pos_i)
            ends.append(row_j * width + pos_j)
            widths.append(j - i)
            start_words.append(i)
            end_words.append(j)
            span_doc.append(d)
            gold_ids.append(gold.get((i, j), 0))
    if n_unreachable:
        logger.debug("%d gold mentions are wider than %d words or cross a sentence: no candidate can match them",
                     n_unreachable, config.max_span_width)
    input_ids = pad_2d(rows, tokenizer.pad_token_id)  # [rows, pos]
    attention_mask = pad_2d([[1] * len(r) for r in rows], 0)  # [rows, pos]
    segments = torch.where(attention_mask.bool(), 0, -1)
    segments[:, 0] = -1
    for i, r in enumerate(rows):
        segments[i, len(r) - 1] = -1
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    head_inputs = {"span_starts": as_long(starts), "span_ends": as_long(ends), "span_widths": as_long(widths),
                   "span_start_words": as_long(start_words), "span_end_words": as_long(end_words),
                   "span_doc": as_long(span_doc), "doc_n_words": as_long([len(d.words) for d in documents]),
                   "gold_cluster_ids": as_long(gold_ids)}
    info = [{"document": d} for d in example_index]
    return TaskBatch(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=None,
                     head_inputs=head_inputs, offsets=pad_offsets(offsets_rows), segments=segments,
                     example_index=example_index, info=info, n_truncated=n_truncated)


def decode_clusters(spans: Sequence[Span], antecedents: Sequence[Sequence[int]],
                    antecedent_scores: torch.Tensor, link_threshold: float = 0.0) -> list[list[Span]]:
    """Greedy clustering from antecedent scores (Lee et al., 2017, §5).

    Args:
        spans: the kept spans in text order.
        antecedents: per span, its candidate antecedents as indices into ``spans`` (-1 = none).
        antecedent_scores: [n_spans, K + 1]; column 0 is the dummy antecedent (its score is replaced by
            ``link_threshold``).
        link_threshold: the score a real antecedent must beat.

    Returns:
        Clusters (two or more mentions), each sorted, ordered by their first mention.
    """
    cluster_of: dict[Span, int] = {}
    clusters: list[list[Span]] = []
    if len(spans):
        antecedent_scores = antecedent_scores.clone()
        antecedent_scores[:, 0] = link_threshold
    for i, span in enumerate(spans):
        best = int(antecedent_scores[i].argmax())
        if best == 0 or antecedents[i][best - 1] < 0:
            continue
        antecedent = spans[antecedents[i][best - 1]]
        if antecedent not in cluster_of:
            cluster_of[antecedent] = len(clusters)
            clusters.append([antecedent])
        if span not in cluster_of:
            cluster_of[span] = cluster_of[antecedent]
            clusters[cluster_of[span]].append(span)
    return sorted((sorted(c) for c in clusters), key=lambda c: c[0])


def decode_coref(config: HeadConfig, output: TaskOutput, batch: TaskBatch,
                 documents: Sequence[CorefDocument]) -> list[TaskPrediction]:
    """Clusters per document; confidence = mean probability of each kept span's chosen antecedent."""
    starts = batch.head_inputs["span_start_words"].tolist()
    ends = batch.head_inputs["span_end_words"].tolist()
    span_doc = batch.head_inputs["span_doc"].tolist()
    top_span_indices, antecedent_indices = output.top_span_indices, output.antecedent_indices
    antecedent_scores = output.antecedent_scores
    assert top_span_indices is not None and antecedent_indices is not None and antecedent_scores is not None, \
        "a coreference head always returns its kept spans and antecedents"
    top = top_span_indices.tolist()
    probs = antecedent_scores.float().softmax(-1).max(-1).values.tolist()  # [n_top]
    predictions = []
    for d in range(len(documents)):
        rows = [r for r, s in enumerate(top) if span_doc[s] == d]
        local = {top[r]: k for k, r in enumerate(rows)}
        spans = [(starts[top[r]], ends[top[r]]) for r in rows]
        antecedents = [[local.get(a, -1) if a >= 0 else -1 for a in antecedent_indices[r].tolist()]
                       for r in rows]
        scores = antecedent_scores[rows] if rows else antecedent_scores.new_zeros(0, 1)
        clusters = decode_clusters(spans, antecedents, scores, config.link_threshold)
        confidence = sum(probs[r] for r in rows) / len(rows) if rows else math.nan
        predictions.append(TaskPrediction(value=[[tuple(m) for m in c] for c in clusters], score=confidence))
    return predictions
