"""The attribution engine: one tidy result for any subject, target and method, batched and resumable.

Gradient methods run on the token-embedding output (``subject.input_embeddings``), which a forward hook
replaces with the tensor Captum perturbs; that makes integrated gradients on the embeddings exactly Captum's
``LayerIntegratedGradients`` on the embedding layer, and lets every baseline ([PAD], [MASK], zero) be used.
The methods themselves are objects in ``methods/`` (see ``methods/__init__.py`` for the list and the papers).

Token score = sum over embedding dimensions of the attribution (saliency: the gradient's l2 norm). Special
tokens keep their own embedding in the baseline, so their IG score is 0. Rows are batched (sorted by
length to limit padding; padded keys are masked, so padding never changes a real token's score), model
parameters are frozen (no weight gradients), Captum's ``internal_batch_size`` bounds memory, the last
block computes only the rows the target reads (:mod:`workbench.pruned_forward`, exact) when the method
declares it may, and an optional :class:`~workbench.store.AttributionStore` makes reruns free and killed
jobs resumable.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from atinuke.errors import UserInputError
from workbench.attention import word_index_from_offsets
from workbench.attribution.method import AttributionMethod, MethodCall
from workbench.attribution.methods import get_method
from workbench.attribution.params import BASELINES, AttributionParams
from workbench.attribution.result import Attribution
from workbench.attribution.targets import (
    Rows,
    Target,
    as_index_list,
    parse_target,
    rows_from_examples,
    rows_from_texts,
    unflatten_document,
)
from workbench.pruned_forward import RowSlot, can_prune, distinct_rows, pruned_forward

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

def _baseline_ids(subject: Subject, rows: Rows, baseline: str) -> torch.Tensor:
    """[N, T] ids of the reference input: content tokens -> [PAD]/[MASK]; special tokens and padding kept."""
    if baseline not in BASELINES:
        raise UserInputError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    token = subject.tokenizer.pad_token_id if baseline in ("pad", "zero") else subject.tokenizer.mask_token_id
    return torch.where(rows.segments >= 0, torch.full_like(rows.input_ids, token), rows.input_ids)


@contextlib.contextmanager
def _embedding_override(subject: Subject) -> Iterator[dict[str, Optional[torch.Tensor]]]:
    """While active, the token-embedding module returns ``slot["embeds"]`` (when set) instead of its output."""
    slot: dict[str, Optional[torch.Tensor]] = {"embeds": None}

    def replace(module: nn.Module, args: Any, output: torch.Tensor) -> Optional[torch.Tensor]:
        return slot["embeds"]

    with subject.lock:  # a hook on the shared model: no other thread may run it meanwhile
        handle = subject.input_embeddings.register_forward_hook(replace)
        try:
            yield slot
        finally:
            handle.remove()


class _EmbeddingForward(nn.Module):
    """f(embeddings, ...) -> [batch] target values; an nn.Module so that DeepLift can find the nonlinearities.

    Additional forward arguments (expanded by Captum along with the inputs): input_ids, attention_mask,
    token_type_ids (or None), target index [batch, k], then the head-input tensors in ``head_keys`` order.
    ``fixed`` head inputs (coreference spans of one document) are not expanded: then every row of the
    expanded batch is a variant of that one document and runs as its own forward pass.
    """

    def __init__(self, subject: Subject, target: Target, slot: dict, head_keys: Sequence[str],
                 fixed: Optional[dict[str, torch.Tensor]] = None, layout: Optional[dict] = None) -> None:
        super().__init__()
        self.model = subject.module
        self._subject, self._target, self._slot, self._head_keys = subject, target, slot, list(head_keys)
        self._fixed = None if fixed is None else {k: v.to(subject.device) for k, v in fixed.items()}
        self._layout = layout
        self.row_slot: Optional[RowSlot] = None  # set while the last block is pruned to the target's rows
        self.calls = 0

    def output(self, embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: Optional[torch.Tensor], head_values: Sequence[torch.Tensor]
               ) -> tuple[Any, dict[str, torch.Tensor]]:
        """The model output (and the target's captured activation) for the given embeddings."""
        self.calls += 1
        if self._layout is not None:  # a document row back into its segments: [1, N] -> [R, T]
            input_ids, attention_mask, unflat = unflatten_document(self._layout, input_ids, embeds,
                                                                   self._subject.input_embeddings)
            assert unflat is not None  # given embeddings, it returns them placed
            embeds = unflat
        self._slot["embeds"] = embeds  # [batch, pos, d_model]
        captured: dict[str, torch.Tensor] = {}
        hooks = []
        if self._target.capture is not None:
            hooks.append((self._target.capture, lambda act, hook: captured.__setitem__(hook.name, act)))
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        head_inputs: dict[str, Any] = dict(zip(self._head_keys, head_values), **(self._fixed or {}))
        try:
            with self._subject.hooks(hooks):
                output = self._subject.forward(inputs, **head_inputs)
        finally:
            self._slot["embeds"] = None
        return output, captured

    def forward(self, embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: Optional[torch.Tensor], index: torch.Tensor, *head_values: torch.Tensor) -> torch.Tensor:
        if self._fixed is None:
            if self.row_slot is not None:
                positions = self._target.read_positions(self._subject, index)  # [batch, m]
                assert positions is not None  # the engine prunes only targets that declare their positions
                self.row_slot.rows = distinct_rows(positions.to(embeds.device), embeds.shape[1])
            try:
                output, captured = self.output(embeds, input_ids, attention_mask, token_type_ids, head_values)
            finally:
                if self.row_slot is not None:
                    self.row_slot.rows = None
            return self._target.select(output, index, captured)  # [batch]
        values = []
        for b in range(embeds.shape[0]):
            row = slice(b, b + 1)
            output, captured = self.output(embeds[row], input_ids[row], attention_mask[row],
                                           None if token_type_ids is None else token_type_ids[row],
                                           [v[row] for v in head_values])
            values.append(self._target.select(output, index[row], captured))
        return torch.cat(values)  # [batch]


def _compute(subject: Subject, rows: Rows, method: AttributionMethod, target: Target, params: AttributionParams
             ) -> list[tuple[np.ndarray, float, dict, str]]:
    """Attribute one batch of rows. Returns per row (scores [T_real], delta, extra params, target label)."""
    base_ids = _baseline_ids(subject, rows, params.baseline)
    head_keys = sorted(rows.head_inputs)
    with torch.no_grad():
        embeds = subject.input_embeddings(rows.input_ids.to(subject.device)).detach()  # [B, T, d]
        base = subject.input_embeddings(base_ids.to(subject.device)).detach()
        if params.baseline == "zero":
            base = torch.where((rows.segments >= 0).to(base.device)[..., None], torch.zeros_like(base), base)
    fixed = rows.info[0].get("fixed_head_inputs") if rows.info else None
    layout = rows.info[0].get("layout") if rows.info else None
    if fixed is not None and len(rows) != 1:
        raise UserInputError("coreference attribution runs one document per batch (batch_size 1)")
    if layout is not None and method.reads_attention and layout["input_ids"].shape[0] > 1:
        raise UserInputError(f"{method.name} reads one attention matrix; document {rows.example_ids[0]} spans "
                             f"{layout['input_ids'].shape[0]} segments (use a gradient or perturbation method)")
    with _embedding_override(subject) as slot:
        forward = _EmbeddingForward(subject, target, slot, head_keys, fixed, layout)
        device = subject.device
        args: tuple[Any, ...] = (rows.input_ids.to(device), rows.attention_mask.to(device),
                None if rows.token_type_ids is None else rows.token_type_ids.to(device),
                torch.zeros(len(rows), 1, dtype=torch.long, device=device),
                *[rows.head_inputs[k].to(device) for k in head_keys])
        with torch.no_grad():
            clean_output, captured = forward.output(embeds, args[0], args[1], args[2], args[4:])
            index = target.resolve(subject, rows, clean_output, captured).to(device)
        args = args[:3] + (index,) + args[4:]
        lengths = [int(n) for n in rows.attention_mask.sum(1)]
        prune = (params.final_block_rows and method.row_prunable and fixed is None and layout is None
                 and target.capture is None and target.read_positions(subject, index) is not None
                 and can_prune(subject))
        with target.context(subject, index), (pruned_forward(subject) if prune else contextlib.nullcontext()) as rows_slot:
            forward.row_slot = rows_slot
            result = method.scores(MethodCall(subject, forward, embeds, base, args, target, index, lengths, params))
    scores, deltas = result.scores.detach().float().cpu(), result.deltas
    extras = result.extras or [{} for _ in lengths]
    labels = [target.label(subject, row) for row in as_index_list(index)]
    out = []
    for r in range(len(rows)):
        delta = float("nan") if deltas is None else float(deltas[r])
        out.append((scores[r, :lengths[r]].numpy().copy(), delta, extras[r], labels[r]))
    return out


def _frame_for_row(subject: Subject, rows: Rows, r: int, scores: np.ndarray, delta: float, method: str,
                   params_json: str, target_label: str) -> pd.DataFrame:
    n = len(scores)
    ids = rows.input_ids[r, :n].tolist()
    special = (rows.segments[r, :n] < 0).tolist()
    segments = [max(s, 0) for s in rows.segments[r, :n].tolist()]
    word_index, words = word_index_from_offsets(rows.offsets[r, :n].tolist(), special, segments, rows.texts[r])
    tokens = subject.tokenizer.convert_ids_to_tokens(ids)
    return pd.DataFrame({
        "example_id": rows.example_ids[r], "token_index": np.arange(n), "token": tokens,
        "word_index": word_index, "word": [words[w] if w >= 0 else tok for w, tok in zip(word_index, tokens)],
        "score": scores.astype(np.float64), "method": method, "params": params_json, "target": target_label,
        "delta": delta})


def _length_buckets(order: list[int], lengths: list[int], batch_size: int, slack: float = 1.25) -> list[list[int]]:
    """Batches of at most ``batch_size`` rows (``order`` sorted by length) whose longest row is at most
    ``slack`` times the shortest, so padding wastes little compute (a padded position costs a real one)."""
    batches: list[list[tuple[int, int]]] = []  # (row, length)
    for r, n in zip(order, lengths):
        if batches and len(batches[-1]) < batch_size and n <= slack * batches[-1][0][1]:
            batches[-1].append((r, n))
        else:
            batches.append([(r, n)])
    return [[r for r, _ in batch] for batch in batches]


def _bucket_slack(method: str, params: AttributionParams, lengths: list[int]) -> float:
    """How unequal the lengths in one batch may be. When one example's IG steps already fill a forward pass,
    putting examples together saves nothing and padding would cost: only equal lengths share a batch."""
    if method == "integrated_gradients" and lengths:
        typical = sorted(lengths)[len(lengths) // 2]
        if params.n_steps >= params.rows_per_pass(typical):
            return 1.0
    return 1.25


def _fingerprint(rows: Rows, r: int) -> list[str]:
    """What the store key knows of an input: its texts, and for task examples every field but ``meta``
    (an SRL example's predicate, a QA example's answers...)."""
    if rows.examples is None:
        return list(rows.texts[r])
    example = rows.examples[r]
    fields = {k: v for k, v in dataclasses.asdict(example).items() if k != "meta"} \
        if dataclasses.is_dataclass(example) and not isinstance(example, type) else repr(example)
    return list(rows.texts[r]) + [json.dumps(fields, sort_keys=True, default=str)]


def attribute(subject: Subject, inputs: Union[Sequence[str], Sequence[Any], Rows], method: str = "integrated_gradients",
              target: Union[Target, str, None] = None, params: Optional[AttributionParams] = None, *,
              text_pairs: Optional[Sequence[str]] = None, example_ids: Optional[Sequence[str]] = None,
              store: Any = None, progress: bool = False,
              on_batch: Optional[Callable[[list[str]], None]] = None) -> Attribution:
    """Attribute a target of ``subject`` to the input tokens of every example.

    Args:
        subject: a :class:`~workbench.subject.Subject` (plain encoder or task model).
        inputs: texts (plain encoders), task examples (task subjects), or prepared :class:`Rows`.
        method: a registered method name (``workbench.attribution.METHODS``).
        target: a :class:`Target`, a target string (see ``parse_target``), or None for the default.
        params: :class:`AttributionParams` (default settings when None).
        text_pairs, example_ids: for texts.
        store: an :class:`~workbench.store.AttributionStore`; cached results are reused, new ones written
            after every batch.
        progress: show a tqdm bar.
        on_batch: called with the example ids of every computed batch (after it is stored).

    Returns:
        :class:`Attribution` in the order of ``inputs``.

    Raises:
        UserInputError: unknown method/baseline/target, empty or malformed inputs.
    """
    chosen = get_method(method)
    params = params or AttributionParams()
    if isinstance(inputs, Rows):
        rows = inputs
    elif len(inputs) and isinstance(inputs[0], str):
        rows = rows_from_texts(subject, inputs, text_pairs, example_ids)
    elif len(inputs):
        rows = rows_from_examples(subject, inputs)
    else:
        raise UserInputError("no inputs to attribute")
    target = parse_target(target, subject) if target is None or isinstance(target, str) else target
    target_spec = target.spec if isinstance(target, Target) else str(target)
    rows = target.prepare_rows(subject, rows)  # a continuation appended, or one row per generated token
    params_json = json.dumps(chosen.settings(params), sort_keys=True)
    if target.spec == "antecedent":
        params = dataclasses.replace(params, batch_size=1)  # one document per forward pass
    keys = [None] * len(rows)
    results: dict[int, pd.DataFrame] = {}
    if store is not None:
        model_hash = subject.model_hash()
        for r in range(len(rows)):
            keys[r] = store.key(model_hash, rows.example_ids[r], _fingerprint(rows, r), method, params_json,
                                target_spec)
            cached = store.get(keys[r])
            if cached is not None:
                results[r] = cached
    todo = [r for r in range(len(rows)) if r not in results]
    todo.sort(key=lambda r: int(rows.attention_mask[r].sum()))  # similar lengths together: less padding
    logger.info("%s: %d example(s) cached, %d to compute", method, len(rows) - len(todo), len(todo))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"{method}", unit="ex")
    if todo:
        chosen.check(subject)  # once, before any work
    try:
        with subject.frozen():
            lengths = [int(rows.attention_mask[r].sum()) for r in todo]
            for chunk in _length_buckets(todo, lengths, params.batch_size, _bucket_slack(method, params, lengths)):
                batch = rows.select(chunk)
                computed = _compute(subject, batch, chosen, target, params)
                for i, (scores, delta, extra, label) in enumerate(computed):
                    row_params = params_json if not extra else json.dumps(
                        {**json.loads(params_json), **extra}, sort_keys=True)
                    frame = _frame_for_row(subject, batch, i, scores, delta, method, row_params, label)
                    results[chunk[i]] = frame
                    if store is not None:
                        store.put(keys[chunk[i]], frame)
                if on_batch is not None:
                    on_batch([rows.example_ids[r] for r in chunk])
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return Attribution(pd.concat([results[r] for r in range(len(rows))], ignore_index=True))


def attribute_many(subject: Subject, inputs: Sequence[Any], methods: Sequence[str], target: Union[Target, str, None] = None,
                   params: Optional[AttributionParams] = None, **kwargs: Any) -> Attribution:
    """Run several methods on the same inputs and concatenate the tables (see :func:`attribute`)."""
    return Attribution.concat([attribute(subject, inputs, m, target, params, **kwargs) for m in methods])


__all__ = ["attribute", "attribute_many"]
