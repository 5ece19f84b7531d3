"""Token attribution for any subject and target, Captum-backed, batched, resumable; one tidy result type.

Gradient methods run on the token-embedding output (``subject.input_embeddings``), which a forward hook
replaces with the tensor Captum perturbs; that makes integrated gradients on the embeddings exactly Captum's
``LayerIntegratedGradients`` on the embedding layer, and lets every baseline ([PAD], [MASK], zero) be used.

Methods (``METHODS``): ``integrated_gradients`` (Sundararajan et al., 2017, arXiv 1703.01365; with the
convergence delta, optionally adaptive ``n_steps``), ``saliency`` (Simonyan et al., 2013; l2 norm of the
gradient), ``input_x_gradient`` (Shrikumar et al., 2016), ``gradient_shap`` (Lundberg & Lee, 2017),
``deeplift`` (Shrikumar et al., 2017; only for models whose nonlinearities DeepLift supports), ``occlusion``
(Zeiler & Fergus, 2014), ``feature_ablation``, ``lime`` (Ribeiro et al., 2016), ``kernel_shap`` (Lundberg &
Lee, 2017), and attention-based scores in the same result type: ``attention`` (last layer, mean over heads,
the target token's row), ``rollout`` (Abnar & Zuidema, 2020), ``attention_x_gradient`` (last layer
E_h[(A ⊙ dA)+], Chefer et al., 2021, arXiv 2103.15679).

Token score = sum over embedding dimensions of the attribution (saliency: the gradient's l2 norm). Special
tokens keep their own embedding in the baseline, so their IG score is 0. Rows are batched (sorted by
length to limit padding; padded keys are masked, so padding never changes a real token's score), model
parameters are frozen (no weight gradients), Captum's ``internal_batch_size`` bounds memory, the last
block computes only the rows the target reads (:mod:`workbench.pruned_forward`, exact), and an optional
:class:`~workbench.store.AttributionStore` makes reruns free and killed jobs resumable.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from atinuke.errors import UserInputError
from atinuke.io import write_with
from workbench.attention import word_index_from_offsets
from workbench.attribution_attention import attention_scores
from workbench.attribution_targets import (
    Rows,
    Target,
    as_index_list,
    default_target,
    parse_target,
    rows_from_examples,
    rows_from_texts,
    unflatten_document,
)
from workbench.pruned_forward import RowSlot, can_prune, distinct_rows, pruned_forward

logger = logging.getLogger(__name__)

COLUMNS = ("example_id", "token_index", "token", "word_index", "word", "score", "method", "params", "target",
           "delta")
GRADIENT_METHODS = ("integrated_gradients", "saliency", "input_x_gradient", "gradient_shap", "deeplift")
PERTURBATION_METHODS = ("occlusion", "feature_ablation", "lime", "kernel_shap")
ATTENTION_METHODS = ("attention", "rollout", "attention_x_gradient")
METHODS = GRADIENT_METHODS + PERTURBATION_METHODS + ATTENTION_METHODS
# Methods whose forward passes only need the target's value (DeepLift rewrites nonlinearity gradients with
# module hooks, and the attention methods read every row's pattern, so they run the full forward pass).
_ROW_PRUNABLE_METHODS = ("integrated_gradients", "saliency", "input_x_gradient", "gradient_shap") + PERTURBATION_METHODS
BASELINES = ("pad", "mask", "zero")
# The parameters each method's result depends on (they go into ``params`` and the store key).
_METHOD_PARAMS = {
    "integrated_gradients": ("baseline", "n_steps", "tolerance", "max_steps", "ig_method"),
    "saliency": (), "input_x_gradient": (), "attention": (), "rollout": (), "attention_x_gradient": (),
    "gradient_shap": ("baseline", "n_samples", "stdevs", "seed"),
    "deeplift": ("baseline",),
    "occlusion": ("baseline", "window"),
    "feature_ablation": ("baseline",),
    "lime": ("baseline", "n_samples", "seed"),
    "kernel_shap": ("baseline", "n_samples", "seed"),
}


@dataclass
class AttributionParams:
    """Settings of an attribution run (only those a method uses enter its ``params`` and store key).

    Attributes:
        baseline: "pad", "mask" or "zero": what replaces each non-special token in the reference input.
        n_steps: integral approximation steps (IG).
        tolerance: IG: raise n_steps (doubling, up to ``max_steps``) until |delta| < tolerance; None = fixed.
        max_steps: IG: upper bound for adaptive steps.
        ig_method: Captum's integral rule ("gausslegendre", "riemann_trapezoid", ...).
        n_samples: samples of GradientShap / LIME / KernelShap.
        stdevs: GradientShap input noise.
        window: occlusion window in tokens.
        seed: random seed of the sampling methods.
        batch_size: examples per batch.
        max_tokens_per_pass: bounds memory: rows (examples x steps or perturbations) per forward pass are
            chosen so that rows x padded length stays under this (Captum's ``internal_batch_size``).
        internal_batch_size: fixed rows per forward pass instead (overrides ``max_tokens_per_pass``).
        final_block_rows: let the last block compute only the positions the target reads (exact; see
            :mod:`workbench.pruned_forward`). Off only to compare against the full forward pass.
    """

    baseline: str = "pad"
    n_steps: int = 32
    tolerance: Optional[float] = None
    max_steps: int = 256
    ig_method: str = "gausslegendre"
    n_samples: int = 64
    stdevs: float = 0.0
    window: int = 3
    seed: int = 0
    batch_size: int = 16
    max_tokens_per_pass: int = 2048
    internal_batch_size: Optional[int] = None
    final_block_rows: bool = True

    def rows_per_pass(self, n_positions: int) -> int:
        """Rows per forward pass for inputs of ``n_positions`` tokens."""
        if self.internal_batch_size is not None:
            return max(1, self.internal_batch_size)
        return max(1, self.max_tokens_per_pass // max(1, n_positions))

    def for_method(self, method: str) -> dict[str, Any]:
        """The settings ``method`` depends on, as a JSON-able dict."""
        return {key: getattr(self, key) for key in _METHOD_PARAMS[method]}


@dataclass
class Attribution:
    """Attribution scores as a tidy table, one row per (example, real token).

    Columns of ``frame``: ``example_id`` (str), ``token_index`` (position in the model input), ``token``,
    ``word_index`` (whitespace word across segments, -1 for special tokens), ``word``, ``score`` (float),
    ``method``, ``params`` (JSON of the settings used; IG adds the ``n_steps_used``), ``target`` (what was
    explained, e.g. ``class=1``, ``span=12:14``, ``norm@0``), ``delta`` (convergence delta; NaN when the
    method has none).
    """

    frame: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(COLUMNS)))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def example_ids(self) -> list[str]:
        return list(dict.fromkeys(self.frame["example_id"]))

    def scores(self, example_id: str, method: Optional[str] = None) -> np.ndarray:
        """[T] token scores of one example (in token order)."""
        rows = self.frame[self.frame["example_id"] == str(example_id)]
        if method is not None:
            rows = rows[rows["method"] == method]
        if rows.empty:
            raise UserInputError(f"no attribution for example {example_id!r}")
        return rows.sort_values("token_index")["score"].to_numpy()

    def word_scores(self) -> pd.DataFrame:
        """Scores summed over each word's sub-tokens (special tokens dropped).

        Returns:
            DataFrame: example_id, method, target, word_index, word, score.
        """
        words = self.frame[self.frame["word_index"] >= 0]
        return (words.groupby(["example_id", "method", "target", "word_index", "word"], sort=False)["score"]
                .sum().reset_index())

    def to_parquet(self, path: Union[str, Path]) -> None:
        """Write the table atomically."""
        write_with(path, lambda tmp: self.frame.to_parquet(tmp, index=False))

    @classmethod
    def read_parquet(cls, path: Union[str, Path]) -> "Attribution":
        return cls(pd.read_parquet(path))

    @classmethod
    def concat(cls, parts: Sequence["Attribution"]) -> "Attribution":
        frames = [p.frame for p in parts if len(p.frame)]
        return cls(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS)))


def _baseline_ids(subject: Any, rows: Rows, baseline: str) -> torch.Tensor:
    """[N, T] ids of the reference input: content tokens -> [PAD]/[MASK]; special tokens and padding kept."""
    if baseline not in BASELINES:
        raise UserInputError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    token = subject.tokenizer.pad_token_id if baseline in ("pad", "zero") else subject.tokenizer.mask_token_id
    return torch.where(rows.segments >= 0, torch.full_like(rows.input_ids, token), rows.input_ids)


@contextlib.contextmanager
def _embedding_override(subject: Any) -> Iterator[dict[str, Optional[torch.Tensor]]]:
    """While active, the token-embedding module returns ``slot["embeds"]`` (when set) instead of its output."""
    slot: dict[str, Optional[torch.Tensor]] = {"embeds": None}

    def replace(module: nn.Module, args: Any, output: torch.Tensor) -> Optional[torch.Tensor]:
        return slot["embeds"]

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

    def __init__(self, subject: Any, target: Target, slot: dict, head_keys: Sequence[str],
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
            input_ids, attention_mask, embeds = unflatten_document(self._layout, input_ids, embeds,
                                                                   self._subject.input_embeddings)
        self._slot["embeds"] = embeds  # [batch, pos, d_model]
        captured: dict[str, torch.Tensor] = {}
        hooks = []
        if self._target.capture is not None:
            hooks.append((self._target.capture, lambda act, hook: captured.__setitem__(hook.name, act)))
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        head_inputs = dict(zip(self._head_keys, head_values), **(self._fixed or {}))
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


def _check_deeplift(subject: Any) -> None:
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    linear_ok = (nn.Linear, nn.Embedding, nn.LayerNorm, nn.Dropout, nn.Identity, nn.ModuleList, nn.ModuleDict)
    for name, module in subject.module.named_modules():
        if len(list(module.children())) == 0 and not isinstance(module, linear_ok + tuple(SUPPORTED_NON_LINEAR)):
            if type(module).__name__ != "HookPoint":
                raise UserInputError(f"deeplift does not support {type(module).__name__} ({name}); "
                                     f"use integrated_gradients or a ReLU model")


def _gradient_like(method: str, forward: _EmbeddingForward, embeds: torch.Tensor, base: torch.Tensor,
                   args: tuple, params: AttributionParams) -> tuple[torch.Tensor, Optional[torch.Tensor], dict]:
    """Run one batched Captum method. Returns (attributions [B, T, d] or [B, T], delta [B] or None, extras)."""
    import captum.attr as ca

    b, t, d = embeds.shape
    ibs = params.rows_per_pass(t)
    embeds = embeds.clone().requires_grad_(method in ("saliency", "input_x_gradient", "deeplift"))
    if method == "integrated_gradients":
        attr, delta = ca.IntegratedGradients(forward).attribute(
            embeds, baselines=base, additional_forward_args=args, n_steps=params.n_steps, method=params.ig_method,
            internal_batch_size=ibs, return_convergence_delta=True)
        return attr, delta, {}
    if method == "saliency":
        grads = ca.Saliency(forward).attribute(embeds, additional_forward_args=args, abs=False)
        return grads.norm(dim=-1), None, {}
    if method == "input_x_gradient":
        return ca.InputXGradient(forward).attribute(embeds, additional_forward_args=args), None, {}
    if method == "deeplift":
        attr, delta = ca.DeepLift(forward).attribute(embeds, baselines=base, additional_forward_args=args,
                                                     return_convergence_delta=True)
        return attr, delta, {}
    per_eval = max(1, ibs // max(b, 1))
    if method == "feature_ablation":
        mask = torch.arange(t, device=embeds.device).view(1, t, 1).expand(b, t, d)
        attr = ca.FeatureAblation(forward).attribute(embeds, baselines=base, additional_forward_args=args,
                                                     feature_mask=mask, perturbations_per_eval=per_eval)
        return attr[..., 0], None, {}
    if method == "occlusion":
        attr = ca.Occlusion(forward).attribute(embeds, sliding_window_shapes=(min(params.window, t), d),
                                               strides=(1, d), baselines=base, additional_forward_args=args,
                                               perturbations_per_eval=per_eval)
        return attr.sum(-1) / d, None, {}
    raise AssertionError(method)


def _per_example(method: str, forward: _EmbeddingForward, embeds: torch.Tensor, base: torch.Tensor, args: tuple,
                 lengths: list[int], params: AttributionParams) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """GradientShap / LIME / KernelShap, one example at a time (Captum's LIME and KernelShap need batch 1)."""
    import captum.attr as ca

    b, t, d = embeds.shape
    scores = torch.zeros(b, t)
    deltas = torch.full((b,), float("nan"))
    for r in range(b):
        n = lengths[r]

        def one(position: int, x: Any) -> Any:
            """Row r of an argument; token-aligned ones ([B, T, ...], not the target index) cut to n tokens."""
            if not torch.is_tensor(x):
                return x
            if position != 3 and x.dim() >= 2 and x.shape[1] == t:
                return x[r:r + 1, :n]
            return x[r:r + 1]

        e, bl = embeds[r:r + 1, :n], base[r:r + 1, :n]
        row_args = tuple(one(i, a) for i, a in enumerate(args))
        torch.manual_seed(params.seed)
        if method == "gradient_shap":
            attr, delta = ca.GradientShap(forward).attribute(
                e, baselines=bl, n_samples=params.n_samples, stdevs=params.stdevs, additional_forward_args=row_args,
                return_convergence_delta=True)
            scores[r, :n] = attr.sum(-1)[0].detach()
            deltas[r] = delta.mean().detach()
            continue
        mask = torch.arange(n).view(1, n, 1).expand(1, n, d)
        explainer = ca.Lime(forward) if method == "lime" else ca.KernelShap(forward)
        attr = explainer.attribute(e, baselines=bl, additional_forward_args=row_args, feature_mask=mask,
                                   n_samples=params.n_samples,
                                   perturbations_per_eval=max(1, min(params.n_samples, params.rows_per_pass(n))))
        scores[r, :n] = attr[0, :, 0].detach()
    return scores, deltas


def _compute(subject: Any, rows: Rows, method: str, target: Target, params: AttributionParams
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
    if layout is not None and method in ATTENTION_METHODS and layout["input_ids"].shape[0] > 1:
        raise UserInputError(f"{method} reads one attention matrix; document {rows.example_ids[0]} spans "
                             f"{layout['input_ids'].shape[0]} segments (use a gradient or perturbation method)")
    with _embedding_override(subject) as slot:
        forward = _EmbeddingForward(subject, target, slot, head_keys, fixed, layout)
        device = subject.device
        args = (rows.input_ids.to(device), rows.attention_mask.to(device),
                None if rows.token_type_ids is None else rows.token_type_ids.to(device),
                torch.zeros(len(rows), 1, dtype=torch.long, device=device),
                *[rows.head_inputs[k].to(device) for k in head_keys])
        with torch.no_grad():
            clean_output, captured = forward.output(embeds, *args[:3], args[4:])
            index = target.resolve(subject, rows, clean_output, captured).to(device)
        args = args[:3] + (index,) + args[4:]
        lengths = [int(n) for n in rows.attention_mask.sum(1)]
        prune = (params.final_block_rows and method in _ROW_PRUNABLE_METHODS and fixed is None and layout is None
                 and target.capture is None and target.read_positions(subject, index) is not None
                 and can_prune(subject))
        with target.context(subject, index), (pruned_forward(subject) if prune else contextlib.nullcontext()) as slot:
            forward.row_slot = slot
            scores, deltas, extras = _run_method(subject, method, forward, embeds, base, args, target, index,
                                                 lengths, params)
    scores = scores.detach().float().cpu()
    labels = [target.label(subject, row) for row in as_index_list(index)]
    out = []
    for r in range(len(rows)):
        delta = float("nan") if deltas is None else float(deltas[r])
        out.append((scores[r, :lengths[r]].numpy().copy(), delta, extras[r], labels[r]))
    return out


def _run_method(subject: Any, method: str, forward: _EmbeddingForward, embeds: torch.Tensor, base: torch.Tensor,
                args: tuple, target: Target, index: torch.Tensor, lengths: list[int], params: AttributionParams
                ) -> tuple[torch.Tensor, Optional[torch.Tensor], list[dict]]:
    """Dispatch one method on a prepared batch. Returns (scores [B, T], delta [B] or None, extra params per row)."""
    extras = [{} for _ in range(len(lengths))]
    deltas: Optional[torch.Tensor] = None
    if method in ATTENTION_METHODS:
        scores = attention_scores(method, subject, forward, embeds, args, target, index)
    elif method in ("gradient_shap", "lime", "kernel_shap"):
        scores, deltas = _per_example(method, forward, embeds, base, args, lengths, params)
    else:
        if method == "deeplift":
            _check_deeplift(subject)
        attr, deltas, _ = _gradient_like(method, forward, embeds, base, args, params)
        scores = attr.sum(-1) if attr.dim() == 3 else attr
        if method == "integrated_gradients":
            for r in range(len(lengths)):
                extras[r]["n_steps_used"] = params.n_steps
            if params.tolerance is not None:
                scores, deltas = _adaptive_ig(forward, embeds, base, args, params, scores, deltas, extras)
    return scores, deltas, extras


def _adaptive_ig(forward, embeds, base, args, params, scores, deltas, extras):
    """Double n_steps for the rows whose |delta| >= tolerance, up to max_steps."""
    import captum.attr as ca

    steps = params.n_steps
    todo = (deltas.abs() >= params.tolerance).nonzero().flatten()
    while len(todo) and steps * 2 <= params.max_steps:
        steps *= 2
        pick = lambda x: x[todo] if torch.is_tensor(x) else x  # noqa: E731
        attr, delta = ca.IntegratedGradients(forward).attribute(
            embeds[todo], baselines=base[todo], additional_forward_args=tuple(pick(a) for a in args),
            n_steps=steps, method=params.ig_method, internal_batch_size=params.rows_per_pass(embeds.shape[1]),
            return_convergence_delta=True)
        scores[todo] = attr.sum(-1).detach().to(scores.dtype)
        deltas[todo] = delta.detach().to(deltas.dtype)
        for r in todo.tolist():
            extras[r]["n_steps_used"] = steps
        todo = todo[delta.abs() >= params.tolerance]
    if len(todo):
        logger.warning("%d example(s) still have |delta| >= %g at max_steps=%d", len(todo), params.tolerance,
                       params.max_steps)
    return scores, deltas


def _frame_for_row(subject: Any, rows: Rows, r: int, scores: np.ndarray, delta: float, method: str,
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
    batches: list[list[int]] = []
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
        if dataclasses.is_dataclass(example) else repr(example)
    return list(rows.texts[r]) + [json.dumps(fields, sort_keys=True, default=str)]


def attribute(subject: Any, inputs: Union[Sequence[str], Sequence[Any], Rows], method: str = "integrated_gradients",
              target: Union[Target, str, None] = None, params: Optional[AttributionParams] = None, *,
              text_pairs: Optional[Sequence[str]] = None, example_ids: Optional[Sequence[str]] = None,
              store: Any = None, progress: bool = False,
              on_batch: Optional[Callable[[list[str]], None]] = None) -> Attribution:
    """Attribute a target of ``subject`` to the input tokens of every example.

    Args:
        subject: a :class:`~workbench.subject.Subject` (plain encoder or task model).
        inputs: texts (plain encoders), task examples (task subjects), or prepared :class:`Rows`.
        method: one of ``METHODS``.
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
    if method not in METHODS:
        import difflib

        close = difflib.get_close_matches(method, METHODS, n=2)
        raise UserInputError(f"unknown method {method!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                              f"; choose from {', '.join(METHODS)}"))
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
    params_json = json.dumps(params.for_method(method), sort_keys=True)
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
    try:
        with subject.frozen():
            lengths = [int(rows.attention_mask[r].sum()) for r in todo]
            for chunk in _length_buckets(todo, lengths, params.batch_size, _bucket_slack(method, params, lengths)):
                batch = rows.select(chunk)
                computed = _compute(subject, batch, method, target, params)
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


def attribute_many(subject: Any, inputs: Sequence[Any], methods: Sequence[str], target: Union[Target, str, None] = None,
                   params: Optional[AttributionParams] = None, **kwargs: Any) -> Attribution:
    """Run several methods on the same inputs and concatenate the tables (see :func:`attribute`)."""
    return Attribution.concat([attribute(subject, inputs, m, target, params, **kwargs) for m in methods])


__all__ = ["ATTENTION_METHODS", "Attribution", "AttributionParams", "BASELINES", "COLUMNS", "GRADIENT_METHODS",
           "METHODS", "PERTURBATION_METHODS", "attribute", "attribute_many", "default_target"]
