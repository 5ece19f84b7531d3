"""What an attribution explains (targets) and on which inputs (rows), for every task head and plain encoders.

A *target* turns the model output into one scalar per row, so every Captum method explains the same number:

=====================  ===============================================================================
``ClassTarget``        a class logit of a sequence head (default: the predicted class); regression: the score
``SpanTarget``         QA: the start logit, end logit, or span score start+end of the chosen answer span
``TagTarget``          tagging (SRL): the logit of a tag at a word (default: the predicate, predicted tag)
``AntecedentTarget``   coreference: the pair score of a mention and its antecedent (default: the top link)
``HiddenNormTarget``   plain encoders (no MLM head needed): the l2 norm of a hidden state at a position
``FunctionTarget``     any user function of the output, one value per row
=====================  ===============================================================================

Each target *resolves* per-row indices once on the unperturbed input (the predicted class, the chosen span...)
and then *selects* the scalar from any output; the indices travel through Captum as an additional forward
argument, so they are expanded along with the inputs for every interpolation step or perturbation.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
import torch

from atinuke.errors import UserInputError
from workbench.attribution.target_base import Rows, Target
from workbench.kinds import get_workbench_kind, task_workbench_kind

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)


def rows_from_texts(subject: Subject, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None,
                    example_ids: Optional[Sequence[str]] = None) -> Rows:
    """Tokenise plain texts (and optional pairs) for a plain encoder subject."""
    texts = list(texts)
    ids = [str(i) for i in (example_ids if example_ids is not None else range(len(texts)))]
    if len(set(ids)) != len(ids):
        raise UserInputError("example ids must be unique")
    batch = subject.tokenize(texts, text_pairs)
    segments = torch.full_like(batch["input_ids"], -1)
    assert batch.encodings is not None  # a fast tokenizer's output
    for row, encoding in enumerate(batch.encodings):
        for t, sequence in enumerate(encoding.sequence_ids):
            if sequence is not None and not batch["special_tokens_mask"][row, t]:
                segments[row, t] = sequence
    pairs = [None] * len(texts) if text_pairs is None else list(text_pairs)
    return Rows(ids, [[t] if p is None else [t, p] for t, p in zip(texts, pairs)], batch["input_ids"],
                batch["attention_mask"], batch.get("token_type_ids") if subject.kind == "hf" else None, {},
                batch["offset_mapping"], segments)


def segment_texts(example: Any) -> list[str]:
    """The texts of an example in segment order, as the tokenizer receives them."""
    if hasattr(example, "context"):  # QA: segment 0 the context, 1 the question
        return [example.context, example.question]
    if hasattr(example, "words"):
        return [" ".join(example.words)]
    return [example.text] if example.text_pair is None else [example.text, example.text_pair]


_TARGET_KEYS = ("labels", "start_positions", "end_positions", "tag_labels", "gold_cluster_ids")


def rows_from_examples(subject: Subject, examples: Sequence[Any]) -> Rows:
    """Encode task examples with the subject's task model; an example split into several features (long QA
    contexts) is explained on its first feature. Coreference documents are encoded one by one and must fit
    one segment; their span tensors (not row-aligned) go to ``info[r]["fixed_head_inputs"]``."""
    if subject.task_model is None:
        raise UserInputError(f"{subject.name} is a plain encoder; give texts, or a fine-tuned task model")
    examples = list(examples)
    ids = [str(e.id) for e in examples]
    if len(set(ids)) != len(ids):
        raise UserInputError("example ids must be unique")
    if getattr(task_workbench_kind(subject.task), "rows_by_document", False):
        return _coref_rows(subject, examples, ids)
    batch = subject.task_model.encode(examples)
    first: dict[int, int] = {}
    for row, example_index in enumerate(batch.example_index):
        first.setdefault(int(example_index), row)
    missing = [ids[i] for i in range(len(examples)) if i not in first]
    if missing:
        raise UserInputError(f"examples {missing[:3]} produced no input features")
    rows = [first[i] for i in range(len(examples))]
    idx = torch.as_tensor(rows)
    n_rows = batch.input_ids.shape[0]
    heads = {k: v[idx] for k, v in batch.head_inputs.items()
             if k not in _TARGET_KEYS and torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == n_rows}
    skipped = [k for k, v in batch.head_inputs.items() if k not in _TARGET_KEYS and k not in heads]
    if skipped:
        logger.warning("head inputs %s are not row-aligned and are left out of batched attribution", skipped)
    return Rows(ids, [segment_texts(e) for e in examples], batch.input_ids[idx], batch.attention_mask[idx],
                None if batch.token_type_ids is None else batch.token_type_ids[idx], heads,
                batch.offsets[idx], batch.segments[idx], examples,
                [batch.info[r] for r in rows] if batch.info else [{} for _ in rows])


def _coref_rows(subject: Subject, documents: list[Any], ids: list[str]) -> Rows:
    """One row per document: the real tokens of all its segments in order ([CLS] a [SEP] [CLS] b [SEP] ...).

    ``info[r]["layout"]`` keeps the segment tensors ([R, T]) and where each real token sits in them, so a
    forward pass can put (perturbed) row embeddings back into the segments the model reads.
    """
    flat_ids, flat_offsets, flat_segments, info = [], [], [], []
    for document in documents:
        batch = subject.task_model.encode([document])
        real = batch.attention_mask.flatten().bool()  # [R * T]
        positions = real.nonzero().flatten()
        flat_ids.append(batch.input_ids.flatten()[positions])
        flat_offsets.append(batch.offsets.reshape(-1, 2)[positions])
        flat_segments.append(batch.segments.flatten()[positions])
        info.append({"fixed_head_inputs": {k: v for k, v in batch.head_inputs.items() if k not in _TARGET_KEYS},
                     "layout": {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                                "positions": positions}})
    width = max(len(t) for t in flat_ids)
    pad = lambda t, value: torch.nn.functional.pad(t, (0, width - t.shape[0]), value=value)  # noqa: E731
    input_ids = torch.stack([pad(t, subject.tokenizer.pad_token_id) for t in flat_ids])
    attention_mask = torch.stack([pad(torch.ones(len(t), dtype=torch.long), 0) for t in flat_ids])
    segments = torch.stack([pad(t, -1) for t in flat_segments])
    offsets = torch.stack([torch.nn.functional.pad(t, (0, 0, 0, width - t.shape[0])) for t in flat_offsets])
    return Rows(ids, [segment_texts(d) for d in documents], input_ids, attention_mask, None, {}, offsets, segments,
                documents, info)


def unflatten_document(layout: dict[str, torch.Tensor], input_ids: torch.Tensor,
                       embeds: Optional[torch.Tensor] = None, embedding: Optional[torch.nn.Module] = None
                       ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Put one flattened document row back into its segments.

    Args:
        layout: ``info[r]["layout"]`` of a coreference row.
        input_ids: [1, N] the row's (possibly edited) token ids; padding past the document is ignored.
        embeds: [1, N, d_model] row embeddings to place (others: the embedding of the segment tokens).
        embedding: the token-embedding module (needed with ``embeds``).

    Returns:
        (input_ids [R, T], attention_mask [R, T], embeddings [R, T, d_model] or None).
    """
    positions = layout["positions"].to(input_ids.device)
    n = len(positions)
    ids = layout["input_ids"].to(input_ids.device).flatten().clone()
    ids[positions] = input_ids[0, :n]
    ids = ids.view_as(layout["input_ids"])
    mask = layout["attention_mask"].to(input_ids.device)
    if embeds is None:
        return ids, mask, None
    if embedding is None:
        raise ValueError("unflatten_document needs the embedding module to place embeddings")
    with torch.no_grad():
        full = embedding(ids).reshape(-1, embeds.shape[-1])  # [R * T, d_model]
    full = full.index_put((positions,), embeds[0, :n])  # differentiable in embeds
    return ids, mask, full.view(*ids.shape, embeds.shape[-1])


def _require(output: Any, field_name: str, target: str, subject: Subject) -> torch.Tensor:
    value = getattr(output, field_name, None)
    if value is None:
        kind = getattr(subject.task, "kind", "plain encoder") if subject is not None else "this model"
        raise UserInputError(f"target {target!r} does not exist for {kind} ({field_name} not produced)")
    return value


@dataclass
class ClassTarget(Target):
    """A class logit (``label`` name or index; None = the predicted class). Regression heads: the score."""

    label_name: Optional[str] = None
    spec: str = "class"

    def resolve(self, subject, rows, output, captured):
        logits = _require(output, "logits", self.spec, subject)
        if logits.dim() == 1:
            return torch.zeros(len(rows), 1, dtype=torch.long)
        if self.label_name is None:
            return logits.argmax(-1, keepdim=True).cpu()
        labels = list(subject.task.labels) if subject.task is not None else []
        if self.label_name in labels:
            position = labels.index(self.label_name)
        elif str(self.label_name).isdigit() and int(self.label_name) < logits.shape[-1]:
            position = int(self.label_name)
        else:
            raise UserInputError(f"target class {self.label_name!r} does not exist; labels: {labels}")
        return torch.full((len(rows), 1), position, dtype=torch.long)

    def select(self, output, index, captured):
        logits = output.logits
        if logits.dim() == 1:
            return logits
        return logits.gather(1, index[:, :1].to(logits.device)).squeeze(1)

    def read_positions(self, subject, index):
        pooling = getattr(getattr(subject.task_model, "config", None), "pooling", None)
        if pooling != "cls" or not getattr(task_workbench_kind(subject.task), "class_reads_cls", True):
            return None  # the head reads more than the [CLS] row (mean pooling, GAP's spans): no row pruning
        return torch.zeros(len(index), 1, dtype=torch.long, device=index.device)

    def label(self, subject, index):
        labels = list(getattr(subject.task, "labels", ()) or ())
        output_label = getattr(task_workbench_kind(subject.task), "output_label", None)
        if output_label is not None:
            return output_label
        return f"class={labels[index[0]] if index[0] < len(labels) else index[0]}"


@dataclass
class SpanTarget(Target):
    """QA: ``part`` = "start" | "end" | "span" (start + end logit) of the predicted span (or ``start``/``end``
    token positions given)."""

    part: str = "span"
    start: Optional[int] = None
    end: Optional[int] = None
    max_answer_len: int = 30

    position_columns = (0, 1)

    def __post_init__(self) -> None:
        if self.part not in ("start", "end", "span"):
            raise UserInputError(f"unknown QA target {self.part!r}; choose start, end or span")
        self.spec = self.part

    def resolve(self, subject, rows, output, captured):
        start_logits = _require(output, "start_logits", self.spec, subject).detach().cpu()  # [N, T]
        end_logits = output.end_logits.detach().cpu()
        index = torch.zeros(len(rows), 2, dtype=torch.long)
        for r in range(len(rows)):
            if self.start is not None and self.end is not None:
                index[r] = torch.tensor([self.start, self.end])
                continue
            n = int(rows.attention_mask[r].sum())
            pair = start_logits[r, :n, None] + end_logits[r, None, :n]  # [T, T] start x end
            valid = torch.ones(n, n, dtype=torch.bool).triu() & ~torch.ones(n, n, dtype=torch.bool).triu(
                self.max_answer_len)
            best = int(pair.masked_fill(~valid, float("-inf")).flatten().argmax())
            index[r] = torch.tensor([best // n, best % n])
        return index

    def select(self, output, index, captured):
        index = index.to(output.start_logits.device)
        start = output.start_logits.gather(1, index[:, :1]).squeeze(1)
        end = output.end_logits.gather(1, index[:, 1:2]).squeeze(1)
        return {"start": start, "end": end, "span": start + end}[self.part]

    def label(self, subject, index):
        return f"{self.part}={index[0]}:{index[1]}"

    def query_position(self, index):
        return int(index[1] if self.part == "end" else index[0])

    def read_positions(self, subject, index):
        return {"start": index[:, :1], "end": index[:, 1:2], "span": index[:, :2]}[self.part]


def _first_token_of_word(rows: Rows, row: int, word: int) -> int:
    """Token position of the first sub-token of whitespace word ``word`` in segment 0 of ``row``."""
    text = rows.texts[row][0]
    starts, position = [], 0
    for w in text.split(" "):
        starts.append(position)
        position += len(w) + 1
    if not 0 <= word < len(starts):
        raise UserInputError(f"word {word} does not exist in example {rows.example_ids[row]} ({len(starts)} words)")
    for t in range(rows.input_ids.shape[1]):
        if rows.segments[row, t] == 0 and int(rows.offsets[row, t, 0]) == starts[word] and rows.offsets[row, t, 1] > \
                rows.offsets[row, t, 0]:
            return t
    raise UserInputError(f"word {word} of example {rows.example_ids[row]} was truncated away")


@dataclass
class TagTarget(Target):
    """Tagging (SRL): the logit of ``tag`` (None = predicted) at word ``word`` (None = the predicate)."""

    word: Optional[int] = None
    tag: Optional[str] = None
    spec: str = "tag"
    position_columns = (0,)

    def resolve(self, subject, rows, output, captured):
        tag_logits = _require(output, "tag_logits", self.spec, subject).detach().cpu()  # [N, T, n_tags]
        labels = list(subject.task.labels)
        index = torch.zeros(len(rows), 2, dtype=torch.long)
        for r in range(len(rows)):
            word = self.word
            if word is None:
                example = rows.examples[r] if rows.examples else None
                word = max(getattr(example, "predicate_index", 0), 0)  # -1 (a tagger without predicate): word 0
            position = _first_token_of_word(rows, r, word)
            if self.tag is None:
                tag = int(tag_logits[r, position].argmax())
            elif self.tag in labels:
                tag = labels.index(self.tag)
            else:
                raise UserInputError(f"target tag {self.tag!r} does not exist; tags: {labels[:8]}...")
            index[r] = torch.tensor([position, tag])
        return index

    def select(self, output, index, captured):
        logits = output.tag_logits  # [batch, pos, n_tags]
        index = index.to(logits.device)
        at = logits.gather(1, index[:, :1, None].expand(-1, 1, logits.shape[-1])).squeeze(1)  # [batch, n_tags]
        return at.gather(1, index[:, 1:2]).squeeze(1)

    def label(self, subject, index):
        return f"tag={subject.task.labels[index[1]]}@{index[0]}"

    def query_position(self, index):
        return int(index[0])

    def read_positions(self, subject, index):
        return index[:, :1]


@dataclass
class AntecedentTarget(Target):
    """Coreference: the pair score s(i, j) = s_m(i) + s_m(j) + s_a(i, j) of a mention i and its antecedent j
    (Lee et al., 2017), by default the top-scoring link the model predicts (``mention`` = a kept-span row to
    choose the mention instead).

    The link is chosen on the clean input with the model's pruning; while attributing, pruning is switched
    off (every candidate kept, antecedent window wide enough for the link), so the score of that fixed pair
    is a continuous function of the input instead of jumping when the kept spans change.
    Index columns: candidate indices (i, j).
    """

    mention: Optional[int] = None
    spec: str = "antecedent"

    def resolve(self, subject, rows, output, captured):
        scores = _require(output, "antecedent_scores", self.spec, subject).detach().cpu()  # [n_top, K + 1]
        if len(rows) != 1:
            raise UserInputError("coreference attribution runs one document at a time (batch_size 1)")
        if scores.shape[0] < 2 or scores.shape[1] < 2:
            raise UserInputError(f"document {rows.example_ids[0]} has fewer than two kept mentions; no link to explain")
        real = scores[:, 1:]
        if self.mention is None:
            flat = int(real.flatten().argmax())
            row, column = flat // real.shape[1], flat % real.shape[1]
        else:
            if not 0 <= self.mention < scores.shape[0]:
                raise UserInputError(f"mention {self.mention} does not exist ({scores.shape[0]} kept spans)")
            row, column = self.mention, int(real[self.mention].argmax())
        mention = int(output.top_span_indices[row])
        antecedent = int(output.antecedent_indices[row, column])
        if antecedent < 0:
            raise UserInputError(f"mention {row} has no candidate antecedent")
        return torch.tensor([[mention, antecedent]])

    @contextlib.contextmanager
    def context(self, subject, index):
        head_config = subject.task_model.head.config
        saved = (head_config.top_span_ratio, head_config.max_antecedents)
        try:
            head_config.top_span_ratio = 1e9  # keep every candidate span
            head_config.max_antecedents = int((index[:, 0] - index[:, 1]).max())
            yield
        finally:
            head_config.top_span_ratio, head_config.max_antecedents = saved

    def select(self, output, index, captured):
        # Without pruning the kept spans are all candidates in text order, so mention i sits in row i and
        # antecedent j in column 1 + (i - 1 - j) (column 0 is the dummy antecedent).
        scores = output.antecedent_scores  # [n_candidates, K + 1], one document per call
        if index.shape[0] != 1:
            raise UserInputError("coreference attribution needs one input per forward pass")
        mention, antecedent = int(index[0, 0]), int(index[0, 1])
        return scores[mention, mention - antecedent].view(1)

    def label(self, subject, index):
        return f"antecedent=span{index[0]}->span{index[1]}"


@dataclass
class HiddenNormTarget(Target):
    """Plain encoders: ||h[position]||_2 of the last hidden state, or of ``blocks.{layer}.hook_resid_post``."""

    position: int = 0
    layer: Optional[int] = None
    spec: str = "norm"
    position_columns = (0,)

    def __post_init__(self) -> None:
        self.capture = None if self.layer is None else f"blocks.{self.layer}.hook_resid_post"

    def _hidden(self, output: Any, captured: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.capture is not None:
            return captured[self.capture]
        hidden = getattr(output, "last_hidden_state", None)
        if hidden is None:
            raise UserInputError("target 'norm' needs an encoder output (last_hidden_state)")
        return hidden

    def resolve(self, subject, rows, output, captured):
        lengths = rows.attention_mask.sum(1)
        if (lengths <= self.position).any():
            raise UserInputError(f"target position {self.position} is past the end of an input "
                                 f"(shortest has {int(lengths.min())} tokens)")
        return torch.full((len(rows), 1), self.position, dtype=torch.long)

    def select(self, output, index, captured):
        hidden = self._hidden(output, captured)  # [batch, pos, d_model]
        index = index.to(hidden.device)
        at = hidden.gather(1, index[:, :1, None].expand(-1, 1, hidden.shape[-1])).squeeze(1)  # [batch, d_model]
        return at.norm(dim=-1)

    def label(self, subject, index):
        return f"norm@{index[0]}" + ("" if self.layer is None else f":layer={self.layer}")

    def query_position(self, index):
        return int(index[0])

    def read_positions(self, subject, index):
        return index[:, :1] if self.layer is None else None


@dataclass
class FunctionTarget(Target):
    """Any function ``fn(output) -> [batch]`` of the model output."""

    fn: Callable[[Any], torch.Tensor] = None  # type: ignore[assignment]
    spec: str = "function"

    def select(self, output, index, captured):
        value = self.fn(output)
        if value.dim() != 1:
            raise UserInputError(f"target function must return [batch] values, got shape {tuple(value.shape)}")
        return value


# The target class of each form of ``parse_target`` (a task kind's ``WorkbenchKind.default_target`` names one).
TARGET_FORMS: dict[str, Callable[[], Target]] = {"class": ClassTarget, "start": lambda: SpanTarget("start"),
                                                 "end": lambda: SpanTarget("end"), "span": SpanTarget,
                                                 "tag": TagTarget, "antecedent": AntecedentTarget,
                                                 "norm": HiddenNormTarget}


def default_target(subject: Subject) -> Target:
    """The natural target of a subject: its task head's prediction, the predicted next token of a decoder with
    its LM head, or the [CLS] state norm of an encoder."""
    kind = task_workbench_kind(subject.task)
    if kind is None and subject.causal:
        from workbench.attribution.lm_targets import NextTokenTarget
        from workbench.lm import language_model

        if language_model(subject) is not None:
            return NextTokenTarget()
    return TARGET_FORMS[kind.default_target]() if kind is not None else HiddenNormTarget()


def parse_target(spec: Optional[str], subject: Subject) -> Target:
    """Parse a command-line target.

    Forms: ``predicted`` (default), ``class=NAME``, ``start`` | ``end`` | ``span``, ``tag@WORD`` or
    ``tag=TAG@WORD``, ``antecedent``, ``norm@POS`` or ``norm@POS:layer=L``; for a decoder also ``next[=TOKEN][@POS]``,
    ``logitdiff=A,B[@POS]``, ``continuation=TEXT``, ``generate=N`` (:mod:`workbench.attribution.lm_targets`).

    Raises:
        UserInputError: unknown form, or one that does not exist for the subject's task.
    """
    kind = getattr(subject.task, "kind", None)
    if spec in (None, "", "predicted"):
        return default_target(subject)
    allowed = get_workbench_kind(kind).target_forms if kind is not None else ("norm",)
    head = spec.split("=")[0].split("@")[0]
    if kind is None and subject.causal:
        from workbench.attribution.lm_targets import LM_TARGETS, parse_lm_target

        if head in LM_TARGETS:
            return parse_lm_target(spec)
        allowed = allowed + LM_TARGETS
    if head not in allowed:
        raise UserInputError(f"target {spec!r} does not exist for {kind or 'a plain encoder'}; "
                             f"use {' / '.join(allowed)}")
    try:
        if head == "class":
            return ClassTarget(spec.split("=", 1)[1] if "=" in spec else None)
        if head in ("start", "end", "span"):
            return SpanTarget(head)
        if head == "tag":
            body, _, word = spec.partition("@")
            return TagTarget(int(word) if word else None, body.split("=", 1)[1] if "=" in body else None)
        if head == "antecedent":
            return AntecedentTarget(int(spec.split("@", 1)[1]) if "@" in spec else None)
        position, _, layer = spec.partition("@")[2].partition(":layer=")
        return HiddenNormTarget(int(position or 0), int(layer) if layer else None)
    except ValueError as error:
        raise UserInputError(f"cannot parse target {spec!r} ({error})") from None


def as_index_list(index: torch.Tensor) -> list[list[int]]:
    """[N, k] tensor -> nested Python ints."""
    return np.asarray(index.cpu()).astype(int).tolist()
