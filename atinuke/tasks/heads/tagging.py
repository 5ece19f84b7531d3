"""SRL as BIO tagging with a predicate indicator (Shi & Lin, 2019, arXiv 1904.05255; He et al., 2017).

The predicate is marked by a learned embedding added to the input embeddings of its sub-tokens (the
"indicator" of He et al., 2017, here on top of a pretrained encoder), so every encoder layer knows which
predicate the arguments belong to. Each word's tag is read at its first sub-token; the other sub-tokens are
ignored by the loss (label -100). Decoding is Viterbi over the word tags with BIO constraints (an ``I-X``
only after ``B-X`` or ``I-X``), as in AllenNLP's SRL predictor.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError
from atinuke.tasks.base import SRLExample
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

IGNORE = -100


class TaggingHead(nn.Module):
    """A learned predicate embedding (added to the inputs by ``TaskModel``) and a linear tag classifier."""

    def __init__(self, d_model: int, config: HeadConfig, embedding_std: float = 0.02) -> None:
        super().__init__()
        self.predicate_embedding = nn.Parameter(torch.randn(d_model) * embedding_std)  # [d_model]
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(d_model, len(config.labels))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, tag_labels: Optional[torch.Tensor] = None,
                **unused: torch.Tensor) -> TaskOutput:
        """Args:
            hidden: [batch, pos, d_model] (already predicate-aware).
            tag_labels: [batch, pos] tag ids at first sub-tokens, -100 elsewhere.
        """
        tag_logits = self.classifier(self.dropout(hidden))  # [batch, pos, n_tags]
        loss = None
        if tag_labels is not None:
            loss = F.cross_entropy(tag_logits.float().flatten(0, 1), tag_labels.flatten(), ignore_index=IGNORE)
        return TaskOutput(loss=loss, tag_logits=tag_logits)


def encode_tagging(tokenizer, config: HeadConfig, examples: Sequence[SRLExample]) -> TaskBatch:
    """``[CLS] words [SEP]`` with a predicate mask; tags at each word's first sub-token.

    Words that do not fit ``max_len`` are dropped from the input (the example counts as truncated) and
    decoded as "O".

    Raises:
        UserInputError: empty sentence, predicate index outside the sentence, tags/words length mismatch,
            or a tag outside the task's tag set.
    """
    tag_index = {name: i for i, name in enumerate(config.labels)}
    rows, offsets_rows, predicate_rows, label_rows, info = [], [], [], [], []
    n_truncated = 0
    budget = config.max_len - 2
    for ex in examples:
        if not ex.words:
            raise UserInputError(f"example {ex.id!r}: empty sentence")
        if ex.predicate_index != -1 and not 0 <= ex.predicate_index < len(ex.words):  # -1: no predicate (NER)
            raise UserInputError(f"example {ex.id!r}: predicate index {ex.predicate_index} outside {len(ex.words)} words")
        if ex.tags and len(ex.tags) != len(ex.words):
            raise UserInputError(f"example {ex.id!r}: {len(ex.tags)} tags for {len(ex.words)} words")
        word_ids, word_offsets = tokenize_words(tokenizer, ex.words)
        char_starts = word_char_starts(ex.words)
        ids, offsets, predicate, labels, first_token = [tokenizer.cls_token_id], [(0, 0)], [0], [IGNORE], []
        for w, (sub_ids, sub_offsets) in enumerate(zip(word_ids, word_offsets)):
            if len(ids) - 1 + len(sub_ids) > budget:
                break
            first_token.append(len(ids))
            for k, (token, (a, b)) in enumerate(zip(sub_ids, sub_offsets)):
                ids.append(token)
                offsets.append((char_starts[w] + a, char_starts[w] + b))
                predicate.append(1 if w == ex.predicate_index else 0)
                if k == 0 and ex.tags:
                    if ex.tags[w] not in tag_index:
                        raise UserInputError(f"example {ex.id!r}: unknown tag {ex.tags[w]!r}")
                    labels.append(tag_index[ex.tags[w]])
                else:
                    labels.append(IGNORE)
        ids.append(tokenizer.sep_token_id)
        offsets.append((0, 0))
        predicate.append(0)
        labels.append(IGNORE)
        truncated = len(first_token) < len(ex.words)
        n_truncated += truncated
        rows.append(ids)
        offsets_rows.append(offsets)
        predicate_rows.append(predicate)
        label_rows.append(labels)
        info.append({"first_token": first_token, "n_words": len(ex.words), "truncated": truncated})
    if n_truncated:
        logger.debug("%d of %d sentences truncated to %d tokens", n_truncated, len(examples), config.max_len)
    head_inputs = {"predicate_mask": pad_2d(predicate_rows, 0)}
    if examples and all(ex.tags for ex in examples):
        head_inputs["tag_labels"] = pad_2d(label_rows, IGNORE)
    input_ids = pad_2d(rows, tokenizer.pad_token_id)  # [batch, pos]
    attention_mask = pad_2d([[1] * len(r) for r in rows], 0)  # [batch, pos]
    segments = torch.where(attention_mask.bool(), 0, -1)  # words are segment 0; [CLS]/[SEP]/padding -1
    segments[:, 0] = -1
    for i, r in enumerate(rows):
        segments[i, len(r) - 1] = -1
    return TaskBatch(input_ids=input_ids, attention_mask=attention_mask,
                     token_type_ids=None, head_inputs=head_inputs, offsets=pad_offsets(offsets_rows),
                     segments=segments, example_index=list(range(len(examples))), info=info,
                     n_truncated=n_truncated)


def allowed_transitions(labels: Sequence[str]) -> torch.Tensor:
    """[n_tags, n_tags] bool: may tag j follow tag i under BIO (``I-X`` only after ``B-X``/``I-X``)."""
    n = len(labels)
    allowed = torch.ones(n, n, dtype=torch.bool)
    for j, to in enumerate(labels):
        if to.startswith("I-"):
            for i, frm in enumerate(labels):
                allowed[i, j] = frm in (f"B-{to[2:]}", f"I-{to[2:]}")
    return allowed


def viterbi_bio(log_probs: torch.Tensor, labels: Sequence[str]) -> list[int]:
    """Most probable tag sequence under BIO constraints.

    Args:
        log_probs: [n_words, n_tags] per-word tag log-probabilities.
        labels: tag names.

    Returns:
        Tag ids, one per word.
    """
    n_words, n_tags = log_probs.shape
    if n_words == 0:
        return []
    forbidden = (~allowed_transitions(labels)).float() * -1e9  # [n_tags, n_tags]
    start_forbidden = torch.tensor([-1e9 if t.startswith("I-") else 0.0 for t in labels])
    score = log_probs[0].double() + start_forbidden.double()  # [n_tags]
    back = []
    for w in range(1, n_words):
        total = score.unsqueeze(1) + forbidden.double()  # [from, to]
        best, arg = total.max(0)  # [n_tags]
        back.append(arg)
        score = best + log_probs[w].double()
    path = [int(score.argmax())]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1]


def decode_tagging(config: HeadConfig, output: TaskOutput, batch: TaskBatch,
                   examples: Sequence[SRLExample]) -> list[TaskPrediction]:
    """BIO tags per word (Viterbi-constrained); words cut off by ``max_len`` get "O"."""
    tag_logits = output.tag_logits
    assert tag_logits is not None, "a tagging head always returns tag logits"
    predictions = []
    outside = config.labels.index("O") if "O" in config.labels else None
    for row, info in enumerate(batch.info):
        first = info["first_token"]
        log_probs = tag_logits[row, first].float().log_softmax(-1)  # [n_kept_words, n_tags]
        path = viterbi_bio(log_probs, config.labels)
        tags = [config.labels[t] for t in path]
        probs = [float(log_probs[w, t].exp()) for w, t in enumerate(path)]
        missing = info["n_words"] - len(first)
        if missing:
            tags += ["O" if outside is not None else config.labels[0]] * missing
        predictions.append(TaskPrediction(value=tags, score=sum(probs) / max(len(probs), 1)))
    return predictions
