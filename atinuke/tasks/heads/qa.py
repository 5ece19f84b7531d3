"""Span-extraction QA: start/end logits over the context, [CLS] as the null answer (SQuAD v2), doc stride.

Devlin et al., 2019 (arXiv 1810.04805), §4.2-4.3: a start vector S and an end vector E score every token;
a span (i, j) scores S·T_i + E·T_j with j >= i; for SQuAD v2 the null answer scores S·C + E·C at [CLS] and
is predicted when it beats the best non-null span by more than a threshold. Contexts longer than the model
are cut into overlapping chunks (the "doc stride"); an example's answer is the best span over its chunks,
its null score the lowest null score over its chunks (the Hugging Face ``run_qa`` convention).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError
from atinuke.tasks.base import QAExample
from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction, pad_2d, pad_offsets

logger = logging.getLogger(__name__)

MASKED = -1e4  # finite, so a softmax over a fully masked row stays defined (and fp16-safe)


class SpanQAHead(nn.Module):
    """One linear layer giving each token a start and an end logit."""

    def __init__(self, d_model: int, config: HeadConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.qa_outputs = nn.Linear(d_model, 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, context_mask: Optional[torch.Tensor] = None,
                start_positions: Optional[torch.Tensor] = None, end_positions: Optional[torch.Tensor] = None,
                **unused: torch.Tensor) -> TaskOutput:
        """Args:
            hidden: [batch, pos, d_model].
            context_mask: [batch, pos], 1 on context tokens and on [CLS] (the null answer); else all real tokens.
            start_positions, end_positions: [batch] gold token positions (0 = no answer in this chunk).
        """
        logits = self.qa_outputs(self.dropout(hidden))  # [batch, pos, 2]
        start_logits, end_logits = logits.unbind(-1)  # [batch, pos] each
        allowed = (context_mask if context_mask is not None else attention_mask).bool()  # [batch, pos]
        start_logits = start_logits.masked_fill(~allowed, MASKED)
        end_logits = end_logits.masked_fill(~allowed, MASKED)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = (F.cross_entropy(start_logits.float(), start_positions.long())
                    + F.cross_entropy(end_logits.float(), end_positions.long())) / 2
        return TaskOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)


def _check_example(ex: QAExample) -> None:
    if not ex.context.strip():
        raise UserInputError(f"example {ex.id!r}: empty context")
    if not ex.question.strip():
        raise UserInputError(f"example {ex.id!r}: empty question")
    for answer in ex.answers:
        if answer.start < 0 or answer.end > len(ex.context):
            raise UserInputError(f"example {ex.id!r}: answer offset {answer.start}..{answer.end} outside the "
                                 f"context of {len(ex.context)} characters")


def encode_qa(tokenizer, config: HeadConfig, examples: Sequence[QAExample], use_token_types: bool) -> TaskBatch:
    """Encode ``[CLS] question [SEP] context-chunk [SEP]`` features, ``doc_stride`` tokens of overlap.

    Targets: the first gold answer's token span when it lies wholly inside the chunk, else [CLS] (0, 0).

    Raises:
        UserInputError: empty context or question, answer offsets outside the context, or a ``max_len``
            too short for ``max_query_len`` plus ``doc_stride``.
    """
    if config.max_query_len + config.doc_stride + 4 > config.max_len:
        raise UserInputError(f"max_len={config.max_len} leaves no room for a context after max_query_len="
                             f"{config.max_query_len} and doc_stride={config.doc_stride}")
    for ex in examples:
        _check_example(ex)
    questions = [ex.question for ex in examples]
    contexts = [ex.context for ex in examples]
    question_tokens = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    n_question_cut = 0
    for i, offsets in enumerate(question_tokens["offset_mapping"]):
        if len(offsets) > config.max_query_len:
            questions[i] = questions[i][: offsets[config.max_query_len - 1][1]]
            n_question_cut += 1
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=config.max_len,
                    stride=config.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    sample_map = enc["overflow_to_sample_mapping"]
    segments, offsets_rows, context_masks, starts, ends, info = [], [], [], [], [], []
    chunks_per_example = [0] * len(examples)
    for row, example_pos in enumerate(sample_map):
        ex = examples[example_pos]
        chunks_per_example[example_pos] += 1
        sequence_ids = enc.sequence_ids(row)
        offsets = [tuple(o) for o in enc["offset_mapping"][row]]
        context_positions = [p for p, s in enumerate(sequence_ids) if s == 1]
        first, last = context_positions[0], context_positions[-1]
        # Tokenizer segment 0 is the question = rationale segment 1; tokenizer segment 1 is the context = 0.
        segments.append([-1 if s is None else 1 - s for s in sequence_ids])
        offsets_rows.append([o if s is not None else (0, 0) for o, s in zip(offsets, sequence_ids)])
        context_masks.append([1 if (s == 1 or p == 0) else 0 for p, s in enumerate(sequence_ids)])
        start_pos = end_pos = 0
        if ex.answers and not ex.is_impossible:
            answer = ex.answers[0]
            if offsets[first][0] <= answer.start and answer.end <= offsets[last][1]:
                start_pos = max(p for p in context_positions if offsets[p][0] <= answer.start)
                end_pos = min(p for p in context_positions if offsets[p][1] >= answer.end)
        starts.append(start_pos)
        ends.append(end_pos)
        info.append({"example": example_pos, "context_range": (first, last), "offsets": offsets})
    n_chunked = sum(1 for c in chunks_per_example if c > 1)
    if n_chunked or n_question_cut:
        logger.debug("%d contexts split into chunks, %d questions cut to %d tokens", n_chunked, n_question_cut,
                     config.max_query_len)
    token_types = pad_2d(enc["token_type_ids"], 0) if use_token_types and "token_type_ids" in enc else None
    return TaskBatch(
        input_ids=pad_2d(enc["input_ids"], tokenizer.pad_token_id),
        attention_mask=pad_2d(enc["attention_mask"], 0),
        token_type_ids=token_types,
        head_inputs={"context_mask": pad_2d(context_masks, 0),
                     "start_positions": torch.tensor(starts, dtype=torch.long),
                     "end_positions": torch.tensor(ends, dtype=torch.long)},
        offsets=pad_offsets(offsets_rows),
        segments=pad_2d(segments, -1),
        example_index=list(sample_map),
        info=info,
        n_truncated=n_question_cut,
    )


def span_candidates(start_logits: torch.Tensor, end_logits: torch.Tensor, context_range: tuple[int, int],
                    max_answer_len: int, n_best: int) -> list[tuple[float, int, int]]:
    """Valid spans of one chunk among the ``n_best`` best starts and ends.

    Args:
        start_logits, end_logits: [pos] one chunk's logits.
        context_range: first and last context token positions (inclusive).
        max_answer_len: longest span in tokens.
        n_best: starts and ends considered.

    Returns:
        (score = start logit + end logit, start position, end position), best first.
    """
    first, last = context_range
    context_start = start_logits[first: last + 1].float()
    context_end = end_logits[first: last + 1].float()
    top_starts = context_start.topk(min(n_best, len(context_start))).indices.tolist()
    top_ends = context_end.topk(min(n_best, len(context_end))).indices.tolist()
    spans = []
    for s in top_starts:
        for e in top_ends:
            if s <= e < s + max_answer_len:
                spans.append((float(context_start[s] + context_end[e]), first + s, first + e))
    return sorted(spans, reverse=True)


def decode_qa_example(start_logits: Sequence[torch.Tensor], end_logits: Sequence[torch.Tensor],
                      infos: Sequence[dict[str, Any]], context: str, config: HeadConfig) -> TaskPrediction:
    """Best answer of one example over its chunks.

    The null score is the lowest ``start[0] + end[0]`` over chunks; with ``allow_null`` the answer is ""
    when ``null_score - best_span_score > null_threshold``. The confidence is the chosen candidate's share
    of a softmax over the n-best spans (and the null answer).

    Args:
        start_logits, end_logits: one [pos] tensor per chunk.
        infos: per chunk ``{"context_range": (first, last), "offsets": [(char_start, char_end), ...]}``.
        context: the example's context.
        config: head configuration (``max_answer_len``, ``n_best``, ``allow_null``, ``null_threshold``).

    Returns:
        A :class:`TaskPrediction` whose value is the answer text ("" for no answer).
    """
    candidates: list[tuple[float, str]] = []
    null_score = math.inf
    for start, end, info in zip(start_logits, end_logits, infos):
        null_score = min(null_score, float(start[0] + end[0]))
        offsets = info["offsets"]
        for score, s, e in span_candidates(start, end, info["context_range"], config.max_answer_len, config.n_best):
            candidates.append((score, context[offsets[s][0]: offsets[e][1]]))
    candidates.sort(key=lambda c: c[0], reverse=True)
    candidates = candidates[: config.n_best]
    pool = [score for score, _ in candidates] + ([null_score] if config.allow_null else [])
    if not pool:
        return TaskPrediction(value="", score=math.nan)
    log_norm = torch.logsumexp(torch.tensor(pool, dtype=torch.float64), 0).item()
    if not candidates or (config.allow_null and null_score - candidates[0][0] > config.null_threshold):
        return TaskPrediction(value="", score=math.exp(null_score - log_norm))
    best_score, best_text = candidates[0]
    return TaskPrediction(value=best_text, score=math.exp(best_score - log_norm))


def decode_qa(config: HeadConfig, output: TaskOutput, batch: TaskBatch,
              examples: Sequence[QAExample]) -> list[TaskPrediction]:
    """Group the chunks of each example and decode them with :func:`decode_qa_example`."""
    start_logits, end_logits = output.start_logits, output.end_logits
    assert start_logits is not None and end_logits is not None, "a span QA head always returns both logits"
    rows: list[list[int]] = [[] for _ in examples]
    for row, example_pos in enumerate(batch.example_index):
        rows[example_pos].append(row)
    return [decode_qa_example([start_logits[r] for r in chunk], [end_logits[r] for r in chunk],
                              [batch.info[r] for r in chunk], ex.context, config)
            for ex, chunk in zip(examples, rows)]
