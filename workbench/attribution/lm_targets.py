"""Attribution targets of a decoder (causal LM): what the model says next, read through its own LM head.

=========================  ===============================================================================
``NextTokenTarget``        the logit of a next token at a position (default for a decoder: the token the model
                           predicts after the last real token)
``LogitDiffTarget``        logit(A) - logit(B) of two candidate next tokens (the metric of Wang et al., 2022,
                           arXiv 2211.00593, and of most circuit work)
``ContinuationTarget``     log p(continuation | prompt), teacher-forced, summed over the continuation's tokens
``GenerationTarget``       greedy generation of N tokens, then one row per generated token: its logit,
                           attributed to the prompt and the tokens generated before it
=========================  ===============================================================================

The logits are the LM head applied to the base model's last hidden state (:meth:`workbench.lm.LanguageModel.
readout`), only at the positions a target reads, so the last block can be pruned to those rows. Because the
model is causal, a position never receives attribution from a prediction made before it: a gradient method gives
exactly 0 to every token after the last position the target reads (tested).

Command-line forms (``workbench attribute --target``): ``next``, ``next@POS``, ``next=TOKEN``, ``next=TOKEN@POS``,
``logitdiff=A,B`` (``@POS`` optional), ``continuation=TEXT``, ``generate=N``. A TOKEN is a vocabulary entry
(``Ġparis``) or a text that the tokenizer maps to one token (`` paris``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch

from atinuke.errors import UserInputError
from workbench.attribution.target_base import Rows, Target
from workbench.lm import LanguageModel, require_language_model

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)
LM_TARGETS = ("next", "logitdiff", "continuation", "generate")


def causal_lm(subject: Subject, target: str) -> LanguageModel:
    """The subject's causal LM, or a one-line error (an encoder, or a decoder saved without its head)."""
    lm = require_language_model(subject, f"target {target!r}")
    if not lm.causal:
        raise UserInputError(f"target {target!r} needs a causal (decoder) language model; {subject.name} is a "
                             f"masked LM (use norm@POS)")
    return lm


def token_id(subject: Subject, token: str) -> int:
    """The id of a vocabulary entry, or of a text the tokenizer encodes as exactly one token."""
    tokenizer = subject.tokenizer
    vocab = tokenizer.get_vocab()
    if token in vocab:
        return int(vocab[token])
    pieces = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(pieces) != 1:
        shown = tokenizer.convert_ids_to_tokens(pieces)
        raise UserInputError(f"token {token!r} is not one token of {subject.name}'s vocabulary "
                             f"(it tokenizes as {shown}); give a single vocabulary entry")
    return int(pieces[0])


def last_content_position(rows: Rows, r: int) -> int:
    """The position of row ``r``'s last real (non-special) token: the one whose next token a decoder predicts."""
    content = (rows.segments[r] >= 0).nonzero().flatten()
    if len(content) == 0:
        raise UserInputError(f"example {rows.example_ids[r]} has no real tokens")
    return int(content[-1])


def hidden_at(output: Any, positions: torch.Tensor) -> torch.Tensor:
    """[batch, m, d_model] last hidden states at ``positions`` [batch, m]."""
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None:
        raise UserInputError("decoder targets need the base model's output (last_hidden_state)")
    positions = positions.to(hidden.device)
    return hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))


def append_tokens(subject: Subject, rows: Rows, r: int, ids: Sequence[int], text: Optional[str] = None,
                  offsets: Optional[Sequence[tuple[int, int]]] = None, fixed: bool = False) -> dict[str, Any]:
    """Row ``r`` with ``ids`` inserted after its last real token (a trailing [SEP] stays after them, where a
    causal model never reads it): its unpadded fields, for :func:`stack_rows`.

    Args:
        text: the characters the tokens spell, appended to the row's first segment (default: each token decoded,
            space-separated, so each appended token is its own word).
        offsets: each token's (start, end) in ``text`` (default: those of the decoded pieces).
        fixed: mark the tokens as not attributable (segment -1, like special tokens): they keep their own
            embedding in every baseline and are never erased by the faithfulness measures.
    """
    last = last_content_position(rows, r)
    n = int(rows.attention_mask[r].sum())
    first = rows.texts[r][0]
    if text is None:
        pieces = [str(subject.tokenizer.decode([i])).strip() or str(subject.tokenizer.convert_ids_to_tokens(i))
                  for i in ids]
        text, offsets, position = "", [], 0
        for piece in pieces:
            text += " " + piece
            offsets.append((position + 1, position + 1 + len(piece)))
            position = len(text)
    assert offsets is not None and len(offsets) == len(ids)
    shifted = torch.tensor([[len(first) + s, len(first) + e] for s, e in offsets], dtype=rows.offsets.dtype).view(-1, 2)
    new = torch.tensor(list(ids), dtype=rows.input_ids.dtype)
    def splice(t: torch.Tensor, middle: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[r, :last + 1], middle, t[r, last + 1:n]])

    types = None if rows.token_type_ids is None else splice(
        rows.token_type_ids, rows.token_type_ids[r, last].repeat(len(new)))
    return {"input_ids": splice(rows.input_ids, new), "token_type_ids": types,
            "segments": splice(rows.segments, torch.full_like(new, -1) if fixed
                               else torch.zeros_like(new) + rows.segments[r, last]),
            "offsets": splice(rows.offsets, shifted), "texts": [first + text] + list(rows.texts[r][1:])}


def stack_rows(subject: Subject, rows: Rows, parts: list[tuple[int, str, dict[str, Any], dict[str, Any]]]) -> Rows:
    """New rows from (source row, example id, fields from :func:`append_tokens`, info), padded on the right."""
    if rows.head_inputs or rows.examples is not None:
        raise UserInputError("decoder targets extend plain texts; task examples have their own targets")
    width = max(len(p[2]["input_ids"]) for p in parts)
    pad_id = subject.tokenizer.pad_token_id if subject.tokenizer.pad_token_id is not None else 0

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, 0, 0, width - len(t)) if t.dim() == 2 else (0, width - len(t)),
                                       value=value)

    ids = torch.stack([pad(p[2]["input_ids"], pad_id) for p in parts])
    mask = torch.stack([pad(torch.ones(len(p[2]["input_ids"]), dtype=rows.attention_mask.dtype), 0) for p in parts])
    types = None if rows.token_type_ids is None else torch.stack([pad(p[2]["token_type_ids"], 0) for p in parts])
    return Rows([p[1] for p in parts], [p[2]["texts"] for p in parts], ids, mask, types, {},
                torch.stack([pad(p[2]["offsets"], 0) for p in parts]),
                torch.stack([pad(p[2]["segments"], -1) for p in parts]), None, [p[3] for p in parts])


@dataclass
class NextTokenTarget(Target):
    """The logit of ``token`` (None = the predicted one) as the next token after ``position`` (None = the last
    real token). Index columns: (position, token id)."""

    position: Optional[int] = None
    token: Optional[str] = None
    spec: str = "next"
    lm: Optional[LanguageModel] = field(default=None, repr=False, compare=False)
    position_columns = (0,)

    def positions(self, rows: Rows) -> list[int]:
        out = []
        for r in range(len(rows)):
            n = int(rows.attention_mask[r].sum())
            if self.position is not None and not 0 <= self.position < n:
                raise UserInputError(f"target position {self.position} is past the end of example "
                                     f"{rows.example_ids[r]} ({n} tokens)")
            out.append(last_content_position(rows, r) if self.position is None else self.position)
        return out

    def logits(self, output: Any, index: torch.Tensor) -> torch.Tensor:
        """[batch, vocab] next-token logits at the indexed positions."""
        assert self.lm is not None, "resolve() first"
        return self.lm.readout(hidden_at(output, index[:, :1]))[:, 0]

    def resolve(self, subject, rows, output, captured):
        self.lm = causal_lm(subject, self.spec)
        positions = torch.tensor(self.positions(rows))
        tokens: list[int] = []
        for r in range(len(rows)):  # a generated token (GenerationTarget), a given one, or -1: the predicted one
            forced = rows.info[r].get("next_token") if rows.info else None
            tokens.append(int(forced) if forced is not None else token_id(subject, self.token) if self.token else -1)
        chosen = torch.tensor(tokens)
        if (chosen < 0).any():
            predicted = self.logits(output, positions[:, None].to(subject.device)).argmax(-1).cpu()  # [N]
            chosen = torch.where(chosen < 0, predicted, chosen)
        return torch.stack([positions, chosen], 1)

    def select(self, output, index, captured):
        logits = self.logits(output, index)  # [batch, vocab]
        return logits.gather(1, index[:, 1:2].to(logits.device)).squeeze(1)

    def label(self, subject, index):
        return f"next={subject.tokenizer.convert_ids_to_tokens(int(index[1]))}@{index[0]}"

    def query_position(self, index):
        return int(index[0])

    def read_positions(self, subject, index):
        return index[:, :1]


@dataclass
class LogitDiffTarget(NextTokenTarget):
    """logit(``token_a``) - logit(``token_b``) as the next token after ``position`` (None = the last real
    token). Index columns: (position, id of A, id of B)."""

    token_a: str = ""
    token_b: str = ""
    spec: str = "logitdiff"

    def resolve(self, subject, rows, output, captured):
        self.lm = causal_lm(subject, self.spec)
        a, b = token_id(subject, self.token_a), token_id(subject, self.token_b)
        return torch.tensor([[p, a, b] for p in self.positions(rows)])

    def select(self, output, index, captured):
        logits = self.logits(output, index)  # [batch, vocab]
        index = index.to(logits.device)
        return (logits.gather(1, index[:, 1:2]) - logits.gather(1, index[:, 2:3])).squeeze(1)

    def label(self, subject, index):
        a, b = subject.tokenizer.convert_ids_to_tokens([int(index[1]), int(index[2])])
        return f"logitdiff={a},{b}@{index[0]}"


@dataclass
class ContinuationTarget(Target):
    """log p(``text`` | prompt) = sum over the continuation's tokens c_k of log_softmax(logits at the position
    before c_k)[c_k], teacher-forced: the continuation is appended to every input (tokenised on its own) as fixed
    tokens (what is scored, not evidence: they keep their embeddings in the baseline and are never erased), so the
    log-probability is attributed to the prompt. Index column: the position of the continuation's first token."""

    text: str = ""
    spec: str = "continuation"
    lm: Optional[LanguageModel] = field(default=None, repr=False, compare=False)
    ids: list[int] = field(default_factory=list)
    position_columns = (0,)

    def prepare_rows(self, subject: Subject, rows: Rows) -> Rows:
        causal_lm(subject, self.spec)
        encoded = subject.tokenizer(self.text, add_special_tokens=False, return_offsets_mapping=True)
        self.ids = [int(i) for i in encoded["input_ids"]]
        if not self.ids:
            raise UserInputError(f"continuation {self.text!r} has no tokens")
        offsets = [(int(o[0]), int(o[1])) for o in encoded["offset_mapping"]]
        parts: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = [
            (r, rows.example_ids[r], append_tokens(subject, rows, r, self.ids, self.text, offsets, fixed=True),
             {"continuation_start": last_content_position(rows, r) + 1})
            for r in range(len(rows))]
        return stack_rows(subject, rows, parts)

    def resolve(self, subject, rows, output, captured):
        self.lm = causal_lm(subject, self.spec)
        if not self.ids:
            raise UserInputError("continuation targets need their rows prepared (prepare_rows)")
        starts = [int(rows.info[r].get("continuation_start", -1)) if rows.info else -1 for r in range(len(rows))]
        for r, start in enumerate(starts):
            if start < 1 or rows.input_ids[r, start:start + len(self.ids)].tolist() != self.ids:
                raise UserInputError(f"example {rows.example_ids[r]} does not end in the continuation {self.text!r}")
        return torch.tensor(starts)[:, None]

    def read_positions(self, subject, index):
        return index[:, :1] - 1 + torch.arange(len(self.ids), device=index.device)  # [batch, k]

    def select(self, output, index, captured):
        assert self.lm is not None, "resolve() first"
        positions = self.read_positions(None, index)  # [batch, k]
        logprobs = self.lm.readout(hidden_at(output, positions)).float().log_softmax(-1)  # [batch, k, vocab]
        ids = torch.tensor(self.ids, device=logprobs.device).expand(len(index), -1)  # [batch, k]
        return logprobs.gather(2, ids[..., None]).squeeze(2).sum(1)

    def label(self, subject, index):
        return f"continuation={self.text}"

    def query_position(self, index):
        return int(index[0]) - 1


@dataclass
class GenerationTarget(NextTokenTarget):
    """Greedy generation of ``n_tokens`` after each input; row ``i#j`` is the prompt plus the first j generated
    tokens, and its target is the logit of the j-th generated token at the last of them (so every generated token
    is attributed to the prompt and the tokens generated before it)."""

    n_tokens: int = 1
    spec: str = "generate"
    n_cut: int = 0  # prompts whose generation stopped at the position limit (set by prepare_rows)

    def prepare_rows(self, subject: Subject, rows: Rows) -> Rows:
        if self.n_tokens < 1:
            raise UserInputError(f"generate={self.n_tokens}: generate at least one token")
        if self.n_tokens >= subject.max_len:
            raise UserInputError(f"generate={self.n_tokens}: {subject.name} reads at most {subject.max_len} positions, "
                                 f"prompt included; generate at most {subject.max_len - 1} tokens")
        lm = causal_lm(subject, self.spec)
        parts: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
        n_cut = 0
        for r in range(len(rows)):
            last = last_content_position(rows, r)
            n_cut += last + 1 + self.n_tokens > subject.max_len
            generated = lm.greedy(rows.input_ids[r, :last + 1].tolist(), self.n_tokens)
            for j, token in enumerate(generated):
                parts.append((r, f"{rows.example_ids[r]}#{j}", append_tokens(subject, rows, r, generated[:j]),
                              {"next_token": token}))
        if n_cut:  # greedy() stops at the position limit: say how often, the rows show how far each got
            logger.warning("generate=%d: %d of %d prompt(s) reach the model's %d positions first; their generation "
                           "stops there", self.n_tokens, n_cut, len(rows), subject.max_len)
        self.n_cut = n_cut
        return stack_rows(subject, rows, parts)


def parse_lm_target(spec: str) -> Target:
    """A decoder target from its command-line form (see the module docstring).

    Raises:
        UserInputError: a malformed form.
    """
    head, _, body = spec.partition("=")
    if head.startswith("next") and not body:  # next or next@POS
        body = spec[len("next"):]
        head = "next"
    where = None
    if head in ("next", "logitdiff") and "@" in body and body.rpartition("@")[2].isdigit():
        body, _, at = body.rpartition("@")
        where = int(at)
    if head == "next":
        return NextTokenTarget(where, body or None)
    if head == "logitdiff":
        parts = body.split(",")
        if len(parts) != 2 or not all(parts):
            raise UserInputError(f"target {spec!r}: write logitdiff=TOKEN_A,TOKEN_B")
        return LogitDiffTarget(where, token_a=parts[0], token_b=parts[1])
    if head == "continuation":
        if not body:
            raise UserInputError(f"target {spec!r}: write continuation=TEXT")
        return ContinuationTarget(body)
    if head == "generate":
        if not body.isdigit() or int(body) < 1:
            raise UserInputError(f"target {spec!r}: write generate=N with N >= 1 tokens")
        return GenerationTarget(n_tokens=int(body))
    raise UserInputError(f"unknown decoder target {spec!r}; use {' / '.join(LM_TARGETS)}")
