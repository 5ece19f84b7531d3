"""Sequence classification and regression on a pooled encoder state (Devlin et al., 2019, arXiv 1810.04805, §4.1).

Pairs are encoded ``[CLS] a [SEP] b [SEP]``; BERT-family encoders also get ``token_type_ids``, Atinuke (no
segment embeddings) tells the segments apart by the [SEP] alone. The pooled vector is the [CLS] state or
the mean over real tokens, then dropout, a tanh layer (BERT's pooler) and a linear output.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError
from atinuke.tasks.base import ClassificationExample
from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction, pad_2d, pad_offsets

logger = logging.getLogger(__name__)


class SequenceHead(nn.Module):
    """Pooled state -> tanh layer -> n_labels logits (classification) or one score (regression)."""

    def __init__(self, d_model: int, config: HeadConfig, regression: bool = False) -> None:
        super().__init__()
        self.regression = regression
        self.pooling = config.pooling
        self.dropout = nn.Dropout(config.dropout)
        self.dense = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, 1 if self.regression else len(config.labels))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, labels: Optional[torch.Tensor] = None,
                **unused: torch.Tensor) -> TaskOutput:
        """Args:
            hidden: [batch, pos, d_model] last encoder layer.
            attention_mask: [batch, pos].
            labels: [batch] class ids (long) or gold scores (float), optional.
        """
        if self.pooling == "cls":
            pooled = hidden[:, 0]  # [batch, d_model]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [batch, pos, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [batch, d_model]
        x = self.dropout(torch.tanh(self.dense(self.dropout(pooled))))  # [batch, d_model]
        logits = self.out(x)  # [batch, n_labels] or [batch, 1]
        loss = None
        if self.regression:
            logits = logits.squeeze(-1)  # [batch]
            if labels is not None:
                loss = F.mse_loss(logits.float(), labels.float())
        elif labels is not None:
            loss = F.cross_entropy(logits.float(), labels.long())
        return TaskOutput(loss=loss, logits=logits)


def encode_classification(tokenizer, config: HeadConfig, examples: Sequence[ClassificationExample],
                          use_token_types: bool, regression: bool = False) -> TaskBatch:
    """Tokenize sentences or pairs, cutting the longer segment first when a pair exceeds ``max_len``.

    Raises:
        UserInputError: for an empty text or a label outside the task's label set.
    """
    for ex in examples:
        if not ex.text.strip() or (ex.text_pair is not None and not ex.text_pair.strip()):
            raise UserInputError(f"example {ex.id!r}: empty text")
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair for ex in examples]
    has_pair = [p is not None for p in pairs]
    if any(has_pair) and not all(has_pair):
        raise UserInputError("a batch mixes single sentences and pairs; a task is either one or the other")
    pair_arg = pairs if all(has_pair) and examples else None
    full = tokenizer(texts, pair_arg, add_special_tokens=True)
    truncated = [len(ids) > config.max_len for ids in full["input_ids"]]
    enc = tokenizer(texts, pair_arg, truncation=True, max_length=config.max_len, return_offsets_mapping=True)
    segments = []
    for i in range(len(examples)):
        segments.append([-1 if s is None else s for s in enc.sequence_ids(i)])
    head_inputs: dict[str, torch.Tensor] = {}
    labelled = [ex.label is not None for ex in examples]
    if examples and all(labelled):
        if regression:
            try:
                # every example is labelled (checked above): the filter only narrows the type for mypy
                scores = [float(ex.label) for ex in examples if ex.label is not None]
                head_inputs["labels"] = torch.tensor(scores, dtype=torch.float32)
            except (TypeError, ValueError) as error:
                raise UserInputError(f"regression labels must be numbers ({error})") from error
        else:
            index = {name: i for i, name in enumerate(config.labels)}
            ids = []
            for ex in examples:
                if str(ex.label) not in index:
                    raise UserInputError(f"example {ex.id!r}: unknown label {ex.label!r}; expected one of {list(config.labels)}")
                ids.append(index[str(ex.label)])
            head_inputs["labels"] = torch.tensor(ids, dtype=torch.long)
    token_types = None
    if use_token_types and "token_type_ids" in enc:
        token_types = pad_2d(enc["token_type_ids"], 0)
    if any(truncated):
        logger.debug("%d of %d examples truncated to %d tokens", sum(truncated), len(examples), config.max_len)
    return TaskBatch(
        input_ids=pad_2d(enc["input_ids"], tokenizer.pad_token_id),
        attention_mask=pad_2d(enc["attention_mask"], 0),
        token_type_ids=token_types,
        head_inputs=head_inputs,
        offsets=pad_offsets(enc["offset_mapping"]),
        segments=pad_2d(segments, -1),
        example_index=list(range(len(examples))),
        info=[{"truncated": t} for t in truncated],
        n_truncated=sum(truncated),
    )


def decode_classification(config: HeadConfig, output: TaskOutput, batch: TaskBatch,
                          n_examples: int, regression: bool = False) -> list[TaskPrediction]:
    """Class with the highest probability (with every class's probability), or the regression score."""
    logits = output.logits
    assert logits is not None, "a sequence head always returns logits"
    if regression:
        return [TaskPrediction(value=float(v), score=math.nan) for v in logits.float().tolist()]
    probs = logits.float().softmax(-1)  # [batch, n_labels]
    predictions = []
    for row in probs.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        predictions.append(TaskPrediction(value=config.labels[best], score=float(row[best]),
                                          probs={name: float(p) for name, p in zip(config.labels, row)}))
    return predictions
