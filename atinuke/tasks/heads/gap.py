"""GAP pronoun resolution as pair classification over (pronoun, candidate) spans.

The span-pair scorer is that of end-to-end coreference (Lee et al., 2017, arXiv 1707.07045: span vectors of
endpoint states, a feed-forward scorer over ``[g_p; g_c; g_p * g_c]``) with the candidates fixed to GAP's two
names, as in the BERT baselines for GAP (Webster et al., 2018, arXiv 1810.05201; Joshi et al., 2019,
arXiv 1908.09091):

1. The text is encoded once as ``[CLS] text [SEP]``; when it is longer than ``max_len`` a window of tokens that
   holds the pronoun and both names is kept (centred on them; a name that cannot fit with the pronoun is
   masked: never predicted, and an example whose gold name is masked is left out of the loss).
2. Each of the three spans is ``g = [h_first; h_last]`` (its first and last sub-token states).
3. ``s(c) = FFNN([g_p; g_c; g_p * g_c])`` for c in {A, B}; "NEITHER" scores 0 (the dummy antecedent).
4. The three scores are the class logits, in the order of ``HeadConfig.labels``; training minimises their
   cross-entropy, decoding takes the arg max (with every label's probability), as a classification head.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError
from atinuke.tasks.base import ClassificationExample
from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, pad_2d, pad_offsets

logger = logging.getLogger(__name__)

MASKED = -1e4
SPANS = ("pronoun", "a", "b")  # rows of ``span_bounds``


class GapHead(nn.Module):
    """Pronoun-candidate pair scorer: one logit per label ("A", "B", and 0 for "NEITHER")."""

    def __init__(self, d_model: int, config: HeadConfig) -> None:
        super().__init__()
        if sorted(config.labels) != ["A", "B", "NEITHER"]:
            raise UserInputError(f"a gap head needs the labels A, B, NEITHER, got {list(config.labels)}")
        # column j of the logits is config.labels[j]: its position among the scores (A, B, NEITHER)
        self.order = [("A", "B", "NEITHER").index(name) for name in config.labels]
        self.dropout = nn.Dropout(config.dropout)
        span = 2 * d_model
        self.pair_scorer = nn.Sequential(nn.Linear(3 * span, config.ffnn_size), nn.ReLU(), nn.Dropout(config.dropout),
                                         nn.Linear(config.ffnn_size, 1))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, span_bounds: torch.Tensor,
                span_valid: torch.Tensor, labels: torch.Tensor | None = None, **unused: torch.Tensor) -> TaskOutput:
        """Args:
            hidden: [batch, pos, d_model] last encoder layer.
            span_bounds: [batch, 3, 2] first and last token position of the pronoun, name A and name B.
            span_valid: [batch, 3] 1 where the span is inside the encoded window.
            labels: [batch] index of the gold label in ``HeadConfig.labels``, optional.
        """
        d = hidden.shape[-1]
        index = span_bounds.reshape(span_bounds.shape[0], 6, 1).expand(-1, -1, d)  # [batch, 6, d_model]
        ends = hidden.gather(1, index).reshape(hidden.shape[0], 3, 2 * d)  # [batch, 3, 2 * d_model]
        g = self.dropout(ends)
        pronoun = g[:, :1].expand(-1, 2, -1)  # [batch, 2, span]
        names = g[:, 1:]  # [batch, 2, span]
        scores = self.pair_scorer(torch.cat([pronoun, names, pronoun * names], -1)).squeeze(-1)  # [batch, 2]
        scores = scores.masked_fill(span_valid[:, 1:] == 0, MASKED)
        by_name = torch.cat([scores, scores.new_zeros(scores.shape[0], 1)], 1)  # [batch, 3]: A, B, NEITHER
        logits = by_name[:, self.order]  # [batch, n_labels], in the config's label order
        loss = None
        if labels is not None:  # an example whose gold name fell outside the window teaches nothing: left out
            reachable = torch.cat([span_valid[:, 1:], span_valid.new_ones(span_valid.shape[0], 1)], 1)[:, self.order]
            keep = reachable.gather(1, labels.long()[:, None]).squeeze(1).bool()  # [batch]
            losses = F.cross_entropy(logits.float(), labels.long(), reduction="none")  # [batch]
            loss = losses[keep].mean() if bool(keep.any()) else losses.sum() * 0.0
        return TaskOutput(loss=loss, logits=logits)


def _token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """First and last token overlapping the characters [start, end) (the nearest token when none does)."""
    inside = [t for t, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    if inside:
        return inside[0], inside[-1]
    nearest = min(range(len(offsets)), key=lambda t: abs(offsets[t][0] - start))
    return nearest, nearest


def _window(n: int, spans: list[tuple[int, int]], budget: int) -> tuple[int, int]:
    """A window [lo, lo + budget) of n tokens holding all spans when they fit, else the pronoun (spans[0])."""
    if n <= budget:
        return 0, n
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans) + 1
    if hi - lo > budget:
        lo, hi = spans[0]
        hi += 1
    start = max(0, min(lo - (budget - (hi - lo)) // 2, n - budget))
    return start, start + budget


def encode_gap(tokenizer, config: HeadConfig, examples: Sequence[ClassificationExample],
               use_token_types: bool) -> TaskBatch:
    """Tokenize GAP examples (``meta`` holds the character spans, :mod:`atinuke.tasks.gap`) into a batch.

    Raises:
        UserInputError: an example without GAP spans or with a label outside the head's labels.
    """
    budget = config.max_len - 2
    rows: list[list[int]] = []
    offsets_rows: list[list[tuple[int, int]]] = []
    bounds: list[list[list[int]]] = []
    valid: list[list[int]] = []
    truncated: list[bool] = []
    for ex in examples:
        if not all(f"{name}_start" in ex.meta for name in SPANS):
            raise UserInputError(f"example {ex.id!r}: no GAP pronoun/name offsets in its meta (read it with the gap "
                                 "loader)")
        enc = tokenizer(ex.text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        spans = [_token_span(offsets, int(ex.meta[f"{name}_start"]), int(ex.meta[f"{name}_end"])) for name in SPANS]
        lo, hi = _window(len(ids), spans, budget)
        inside = [lo <= s and e < hi for s, e in spans]
        rows.append([tokenizer.cls_token_id] + ids[lo:hi] + [tokenizer.sep_token_id])
        offsets_rows.append([(0, 0)] + offsets[lo:hi] + [(0, 0)])
        bounds.append([[s - lo + 1, e - lo + 1] if ok else [0, 0] for (s, e), ok in zip(spans, inside)])
        valid.append([int(ok) for ok in inside])
        truncated.append(len(ids) > budget)
    head_inputs = {"span_bounds": torch.tensor(bounds, dtype=torch.long).reshape(len(examples), 3, 2),
                   "span_valid": torch.tensor(valid, dtype=torch.long).reshape(len(examples), 3)}
    if examples and all(ex.label is not None for ex in examples):
        index = {name: i for i, name in enumerate(config.labels)}
        unknown = [ex.id for ex in examples if str(ex.label) not in index]
        if unknown:
            raise UserInputError(f"example {unknown[0]!r}: label outside {list(config.labels)}")
        head_inputs["labels"] = torch.tensor([index[str(ex.label)] for ex in examples], dtype=torch.long)
    input_ids = pad_2d(rows, tokenizer.pad_token_id)
    attention_mask = pad_2d([[1] * len(r) for r in rows], 0)
    segments = pad_2d([[-1] + [0] * (len(r) - 2) + [-1] for r in rows], -1)
    n_truncated = sum(truncated)
    if n_truncated:
        logger.debug("%d of %d GAP texts cut to a %d-token window", n_truncated, len(examples), budget)
    return TaskBatch(input_ids=input_ids, attention_mask=attention_mask,
                     token_type_ids=torch.zeros_like(input_ids) if use_token_types else None,
                     head_inputs=head_inputs, offsets=pad_offsets(offsets_rows), segments=segments,
                     example_index=list(range(len(examples))), info=[{"truncated": t} for t in truncated],
                     n_truncated=n_truncated)
