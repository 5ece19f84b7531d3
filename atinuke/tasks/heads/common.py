"""Shared types of the task heads: the head configuration, the encoded batch, the forward output, predictions.

These dataclasses are the contract between :class:`~atinuke.tasks.heads.model.TaskModel`, the fine-tuning
loop and the attribution engine; keep their field names stable.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from atinuke.errors import UserInputError


@dataclass
class HeadConfig:
    """Everything a head needs besides the encoder (saved as JSON beside the weights).

    Attributes:
        kind: a registered task kind (``atinuke.tasks.kinds``; the built-in ones are ``TASK_KINDS``).
        labels: class names (classification) or BIO tag names (tagging); empty otherwise.
        max_len: longest input in tokens, special tokens included (capped by the encoder's own maximum).
        pooling: "cls" (the [CLS] state) or "mean" (mean over real tokens) for sequence heads.
        dropout: dropout on the encoder output inside the head.
        doc_stride: QA; tokens shared by consecutive chunks of a long context (the Hugging Face
            ``stride`` convention, i.e. the overlap, not the step).
        max_query_len: QA; longer questions are cut to this many tokens (counted as truncated).
        max_answer_len: QA; longest predicted answer in tokens.
        n_best: QA; candidate start and end positions kept per chunk.
        allow_null: QA; SQuAD v2 behaviour: the [CLS] position stands for "no answer".
        null_threshold: QA; predict no answer when ``null_score - best_span_score > null_threshold``
            (Devlin et al., 2019, §4.3).
        max_span_width: coreference; longest candidate mention in words.
        top_span_ratio: coreference; mentions kept after pruning per word (lambda of Lee et al., 2017).
        max_antecedents: coreference; antecedents scored per mention (K of Lee et al., 2017).
        ffnn_size: coreference; hidden width of the mention and pair scorers.
        feature_size: coreference; width of the span-width and distance embeddings.
        mention_loss_weight: coreference; weight of an auxiliary binary mention-detection loss on every
            candidate span (0 gives the plain marginal likelihood of Lee et al., 2017; a positive weight
            makes pruning useful after a few hundred steps, which matters on small data).
        link_threshold: coreference; a span links to its best antecedent only when that score exceeds this
            (the dummy antecedent's score: 0 in Lee et al., 2017). After fine-tuning it is tuned on held-out
            training documents (``atinuke.tasks.heads.calibration``), as BERT tunes SQuAD 2.0's null threshold.
    """

    kind: str
    labels: tuple[str, ...] = ()
    max_len: int = 128
    pooling: str = "cls"
    dropout: float = 0.1
    doc_stride: int = 32
    max_query_len: int = 48
    max_answer_len: int = 30
    n_best: int = 20
    allow_null: bool = True
    null_threshold: float = 0.0
    max_span_width: int = 8
    top_span_ratio: float = 0.4
    max_antecedents: int = 30
    ffnn_size: int = 150
    feature_size: int = 20
    mention_loss_weight: float = 1.0
    link_threshold: float = 0.0

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        if self.pooling not in ("cls", "mean"):
            raise UserInputError(f"unknown pooling {self.pooling!r}; choose 'cls' or 'mean'")
        if self.max_len < 8:
            raise UserInputError(f"max_len={self.max_len} is too short (at least 8 tokens)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserInputError(f"unknown head config fields {unknown}")
        return cls(**data)


@dataclass
class TaskBatch:
    """Examples turned into tensors, plus what decoding needs to map positions back to text.

    Rows are *features*: one per example, except QA (one per context chunk) and coreference (one per
    document segment).

    Attributes:
        input_ids: [batch, pos] token ids.
        attention_mask: [batch, pos], 1 for real tokens.
        token_type_ids: [batch, pos] segment ids for BERT-family encoders, or None (Atinuke has no
            segment embeddings; pairs are still ``[CLS] a [SEP] b [SEP]``).
        head_inputs: extra keyword tensors of ``TaskModel.forward``: ``predicate_mask`` [batch, pos]
            (tagging), the coreference span tensors, and the training targets when the examples carry
            gold labels (``labels``, ``start_positions``/``end_positions``, ``tag_labels``,
            ``gold_cluster_ids``).
        offsets: [batch, pos, 2] character offsets of each token in its source segment (``(0, 0)`` for
            special tokens and padding); SRL/coreference offsets index the words joined by spaces.
        segments: [batch, pos] the rationale segment a token comes from: 0 first text (sentence, premise,
            context, document), 1 second text (hypothesis, question), -1 special tokens and padding.
        example_index: row -> position of its example in the list given to ``encode``.
        info: per-row bookkeeping for decoding (QA chunk offsets, word positions...).
        n_truncated: examples whose input did not fit ``max_len`` and was cut.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: Optional[torch.Tensor]
    head_inputs: dict[str, torch.Tensor]
    offsets: torch.Tensor
    segments: torch.Tensor
    example_index: list[int]
    info: list[dict[str, Any]] = field(default_factory=list)
    n_truncated: int = 0

    TARGET_KEYS = ("labels", "start_positions", "end_positions", "tag_labels", "gold_cluster_ids")

    def model_inputs(self, with_targets: bool = True) -> dict[str, torch.Tensor]:
        """Keyword arguments of ``TaskModel.forward`` (without targets: no loss is computed)."""
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        for key, value in self.head_inputs.items():
            if with_targets or key not in self.TARGET_KEYS:
                inputs[key] = value
        return inputs

    def to(self, device: str | torch.device) -> "TaskBatch":
        """A copy with every tensor on ``device``."""
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device)

        return dataclasses.replace(
            self, input_ids=move(self.input_ids), attention_mask=move(self.attention_mask),
            token_type_ids=None if self.token_type_ids is None else move(self.token_type_ids),
            offsets=move(self.offsets), segments=move(self.segments),
            head_inputs={k: move(v) for k, v in self.head_inputs.items()})

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class TaskOutput:
    """What ``TaskModel.forward`` returns; fields not produced by the head are None.

    Attributes:
        loss: scalar training loss when targets were given.
        logits: classification [batch, n_labels]; regression [batch] (the predicted score).
        start_logits, end_logits: span QA [batch, pos] (masked to -1e4 outside the context and [CLS]).
        tag_logits: tagging [batch, pos, n_tags].
        mention_scores: coreference [n_spans], every candidate span.
        top_span_indices: coreference [n_top], the kept spans (indices into the candidates), per document
            in text order.
        antecedent_indices: coreference [n_top, K] candidate antecedents (indices into the candidates,
            -1 where there is none).
        antecedent_scores: coreference [n_top, K + 1]; column 0 is the dummy antecedent (score 0).
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    start_logits: Optional[torch.Tensor] = None
    end_logits: Optional[torch.Tensor] = None
    tag_logits: Optional[torch.Tensor] = None
    mention_scores: Optional[torch.Tensor] = None
    top_span_indices: Optional[torch.Tensor] = None
    antecedent_indices: Optional[torch.Tensor] = None
    antecedent_scores: Optional[torch.Tensor] = None


@dataclass
class TaskPrediction:
    """One example's prediction.

    Attributes:
        value: exactly what ``atinuke.tasks.metrics.score_task`` expects: label (str), score (float),
            answer text ("" = no answer), BIO tags (list of str), or clusters (list of lists of inclusive
            ``(start, end)`` word spans).
        score: confidence in ``value``: max class probability, span probability, mean tag probability,
            mean antecedent probability; NaN for regression (no calibrated confidence).
        probs: label -> probability for classification, else None.
    """

    value: Any
    score: float
    probs: Optional[dict[str, float]] = None


def pad_2d(rows: list[list[int]], pad: int) -> torch.Tensor:
    """Right-pad integer rows into a [len(rows), max_len] long tensor."""
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), max(width, 1)), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def pad_offsets(rows: list[list[tuple[int, int]]]) -> torch.Tensor:
    """Right-pad rows of (start, end) offsets into a [batch, pos, 2] long tensor of zeros."""
    width = max((len(r) for r in rows), default=1)
    out = torch.zeros(len(rows), max(width, 1), 2, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long).view(-1, 2)
    return out


def word_char_starts(words: list[str]) -> list[int]:
    """Character start of each word in ``" ".join(words)``."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    return starts


def tokenize_words(tokenizer, words: list[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """Sub-token ids and word-relative offsets of each word; a word with no sub-token becomes [UNK].

    Returns:
        (ids per word, offsets per word within the word).
    """
    if not words:
        return [], []
    encoded = tokenizer(list(words), add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = [], []
    for word, word_ids, word_offsets in zip(words, encoded["input_ids"], encoded["offset_mapping"]):
        if not word_ids:  # e.g. a control character the normalizer drops: keep the word addressable
            word_ids, word_offsets = [tokenizer.unk_token_id], [(0, len(word))]
        ids.append(list(word_ids))
        offsets.append([tuple(o) for o in word_offsets])
    return ids, offsets
