"""One interface over every model the workbench inspects, whatever its family (``workbench.models``).

A :class:`Subject` wraps a base encoder (or a fine-tuned task model around one) and exposes its activations
under Atinuke's hook names (TransformerLens style, Nanda & Bloom 2022), so every analysis is written once:

* ``run_with_cache(inputs, names=[...])`` runs a forward pass and keeps only the requested activations;
* ``hooks([(name, fn)])`` is a context manager that reads or replaces activations and always removes every
  hook it added (in ``finally``, also when the body raises);
* ``ablate_heads({layer: [heads]}, mode="zero"|"mean")`` silences attention heads (Michel et al., 2019);
* ``patch(clean, corrupted, name)`` copies an activation from one run into another (activation patching /
  causal tracing: Meng et al., 2022, arXiv 2202.05262; Wang et al., 2022, arXiv 2211.00593).

Each model family's module tree lives in its adapter under ``workbench/models/`` (Atinuke's real hook points;
the BERT family's bridged hooks, documented name by name in ``workbench/models/bert.py``); a Subject only
speaks hook names.

Thread safety (docs/architecture.md, "One model, many threads"): hooks are global state on the shared module, so
every operation that attaches hooks, swaps a forward or the attention implementation, or runs the model holds the
model's re-entrant lock (:func:`model_lock`, also ``Subject.lock``) from attach through forward to detach; the
inputs of the running forward pass are kept per thread, never on the instance.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import nn
from transformers import BatchEncoding, PreTrainedTokenizerFast

from atinuke.encoders import Encoder, is_named_model, load_encoder
from atinuke.errors import UserInputError
from workbench.models import HOOK_NAMES_PER_BLOCK, HookFn, HookInfo, ModelAdapter, adapter_for, layer_of
from workbench.models.atinuke import AtinukeAdapter

logger = logging.getLogger(__name__)

__all__ = ["HOOK_NAMES_PER_BLOCK", "ActivationCache", "HookFn", "HookInfo", "MissingActivation", "PatchResult",
           "Subject", "load_subject", "model_lock", "task_subject"]

# Base module -> its lock: every Subject (and LanguageModel) over the same module shares one, whoever built it.
_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(module: nn.Module) -> threading.RLock:
    """The re-entrant lock of a shared model: hold it to attach hooks, replace a ``forward``, switch the attention
    implementation, change ``requires_grad``/train mode, or run a forward pass whose result must not see another
    thread's hooks. Re-entrant, so a locked operation may call another."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
        return lock


class MissingActivation(KeyError, UserInputError):
    """An activation that was not cached (a KeyError for Mapping semantics, a UserInputError for CLIs)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass
class ActivationCache(Mapping):
    """The activations of one forward pass, detached, keyed by hook name; only those that were asked for.

    Attributes:
        activations: hook name -> tensor (shapes as documented per name in this module's docstring).
        output: the model's own output (``BaseModelOutput`` for encoders, the task head's output otherwise).
        attention_mask: [batch, pos] of the run (1 = real token).
    """

    activations: dict[str, torch.Tensor]
    output: Any = None
    attention_mask: Optional[torch.Tensor] = None

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self.activations[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.activations), n=3)
            raise MissingActivation(f"activation {name!r} was not cached" +
                                    (f"; did you mean {', '.join(close)}?" if close else "")) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.activations)

    def __len__(self) -> int:
        return len(self.activations)

    def stack(self, suffix: str) -> torch.Tensor:
        """Stack one per-block activation over layers, e.g. ``stack("attn.hook_pattern")``.

        Returns:
            Tensor [n_layers, *activation shape] in layer order.
        """
        names = sorted((n for n in self.activations if n.startswith("blocks.") and n.split(".", 2)[2] == suffix),
                       key=lambda n: int(n.split(".")[1]))
        if not names:
            raise MissingActivation(f"no cached activation ends in {suffix!r}")
        return torch.stack([self.activations[n] for n in names])


@dataclass
class PatchResult:
    """Outputs of an activation-patching experiment.

    Attributes:
        name: the patched hook name.
        positions: the patched positions (None = all).
        clean_output / corrupted_output: outputs of the two unpatched runs.
        patched_output: output of the corrupted run with ``name`` restored from the clean run.
    """

    name: str
    positions: Optional[list[int]]
    clean_output: Any
    corrupted_output: Any
    patched_output: Any


# WordPiece maps a word longer than 100 characters to [UNK] (``max_input_chars_per_word``), plus one separator.
MAX_CHARS_PER_TOKEN = 101


class Subject:
    """A model under inspection; build it with :func:`load_subject`.

    Attributes:
        name: display name ("minilm", a run directory's name).
        kind: "atinuke" or "hf" (the encoder family).
        encoder: the base encoder module (hooks attach here).
        task_model: the fine-tuned task model around it, or None for a plain encoder.
        tokenizer: fast tokenizer with offsets.
    """

    def __init__(self, encoder: Encoder, task_model: Any = None) -> None:
        self.name = encoder.name
        self.kind = encoder.kind
        self.encoder = encoder.model
        self.task_model = task_model
        self.tokenizer: PreTrainedTokenizerFast = encoder.tokenizer
        self.path = encoder.path
        self.n_layers = encoder.n_layers
        self.n_heads = encoder.n_heads
        self.d_model = encoder.d_model
        self.d_head = self.d_model // self.n_heads
        self.max_len = encoder.max_len
        self.lock = model_lock(self.encoder)  # held across attach -> forward -> detach (module docstring)
        self._running = threading.local()  # .inputs: the running forward pass's inputs, per thread
        self._hash: Optional[str] = None
        self.adapter: ModelAdapter = (AtinukeAdapter(self.encoder, self.n_heads, self.d_head) if self.kind == "atinuke"
                                      else adapter_for(self.encoder, self.n_heads, self.d_head))
        self.d_head = self.adapter.d_head  # a family may set head_dim apart from d_model / n_heads (Llama's config)
        self.hook_names = self.adapter.hook_names()
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            # Decoder tokenizers (Llama, Mistral, Qwen2) often have no pad token; padded keys are masked anyway.
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # ------------------------------------------------------------------ metadata
    @property
    def task(self) -> Any:
        """The task's TaskSpec, or None for a plain encoder."""
        return getattr(self.task_model, "spec", None)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def input_embeddings(self) -> nn.Module:
        """The token-embedding table; attribution methods work on its output [batch, pos, d_model]."""
        return self.encoder.get_input_embeddings()

    @property
    def causal(self) -> bool:
        """Whether the encoder is a decoder: a position attends to itself and earlier positions only."""
        return self.adapter.is_causal()

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """The encoder's last step on the residual stream: a pre-norm Atinuke's final layer norm; identity for
        post-norm Atinuke and BERT-family encoders, whose blocks already end in one. [..., d_model]."""
        return self.adapter.final_norm(hidden)

    @property
    def module(self) -> nn.Module:
        """The outermost module (task model if any), e.g. to freeze or randomise parameters."""
        return self.task_model if isinstance(self.task_model, nn.Module) else self.encoder

    def model_hash(self) -> str:
        """sha256 over the parameter names and values (content address of the model), cached."""
        if self._hash is None:
            digest = hashlib.sha256(self.kind.encode())
            for name, tensor in self.module.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._hash = digest.hexdigest()
        return self._hash

    def current_inputs(self) -> Optional[Mapping[str, torch.Tensor]]:
        """The inputs of the forward pass this thread is running (None outside one): what hooks read."""
        return getattr(self._running, "inputs", None)

    # ------------------------------------------------------------------ inputs
    def tokenize(self, texts: Union[str, Sequence[str]], text_pairs: Union[str, Sequence[str], None] = None,
                 max_length: Optional[int] = None, truncate: bool = True) -> BatchEncoding:
        """Tokenise a batch (padded, with ``offset_mapping``), checking for empty and over-long inputs.

        Args:
            texts: one text or a list.
            text_pairs: second segments (same length as ``texts``) or None.
            max_length: longest sequence in tokens (default and upper bound: the model's ``max_len``).
            truncate: cut over-long inputs with a logged warning; if False raise instead.

        Returns:
            BatchEncoding of tensors [batch, pos]: input_ids, attention_mask, (token_type_ids), offset_mapping
            [batch, pos, 2], special_tokens_mask.

        Raises:
            UserInputError: for an empty text, or an over-long text with ``truncate=False``.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        pairs = [text_pairs] if isinstance(text_pairs, str) else (None if text_pairs is None else list(text_pairs))
        if not texts:
            raise UserInputError("no texts given")
        if pairs is not None and len(pairs) != len(texts):
            raise UserInputError(f"{len(texts)} texts but {len(pairs)} text pairs")
        for i, text in enumerate(texts + (pairs or [])):
            if not isinstance(text, str) or not text.strip():
                raise UserInputError(f"text {i % len(texts)} is empty: {text!r}")
        limit, texts, pairs, too_long, clipped, lengths = self._bounded(texts, pairs, max_length)
        budget = limit * MAX_CHARS_PER_TOKEN
        if too_long:
            first = too_long[0]
            size = (f"over {budget:,} characters" if first in {i % len(texts) for i in clipped}
                    else f"{lengths[first]} tokens")
            message = f"text {first} has {size}, more than max_length={limit} ({len(too_long)} text(s) too long)"
            if not truncate:
                raise UserInputError(message + "; shorten it or allow truncation")
            logger.warning("%s; truncating", message)
        cut = dict(truncation="longest_first", max_length=limit) if too_long else {}
        # Right padding whatever the tokenizer's default (Llama's is left): a decoder numbers positions 0..pos-1,
        # so only then are the real tokens of a padded row computed exactly as alone.
        return self.tokenizer(texts, pairs, padding=True, padding_side="right", return_offsets_mapping=True,
                              return_special_tokens_mask=True, return_tensors="pt", **cut)

    def _bounded(self, texts: list[str], pairs: Optional[list[str]], max_length: Optional[int]) -> tuple:
        """(limit, texts, pairs cut to the character budget, indices of texts too long, clipped indices, lengths)."""
        limit = min(max_length or self.max_len, self.max_len)
        # Bound the work by the model's length before tokenising: no WordPiece token covers more than
        # MAX_CHARS_PER_TOKEN characters, so characters past limit x that can never reach the model (a 50 MB
        # line would otherwise be tokenised in full to keep 128 tokens).
        budget = limit * MAX_CHARS_PER_TOKEN
        clipped = {i for i, t in enumerate(texts + (pairs or [])) if len(t) > budget}
        if clipped:
            texts = [t[:budget] for t in texts]
            pairs = None if pairs is None else [t[:budget] for t in pairs]
        lengths = [len(ids) for ids in self.tokenizer(texts, pairs)["input_ids"]]
        too_long = sorted({i for i, n in enumerate(lengths) if n > limit} | {i % len(texts) for i in clipped})
        return limit, texts, pairs, too_long, clipped, lengths

    def too_long(self, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None,
                 max_length: Optional[int] = None) -> list[int]:
        """Indices of the inputs that :meth:`tokenize` cuts (longer than ``max_length``, default the model's)."""
        return self._bounded(list(texts), None if text_pairs is None else list(text_pairs), max_length)[3]

    def as_inputs(self, inputs: Any) -> dict[str, torch.Tensor]:
        """The model's inputs on its device from text(s) or a tokenised mapping (an all-ones mask if none)."""
        if isinstance(inputs, (str, list, tuple)):
            inputs = self.tokenize(inputs)
        if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
            raise UserInputError("inputs must be text(s) or a mapping with input_ids")
        keep = self.adapter.model_inputs
        batch = {k: inputs[k].to(self.device) for k in keep if k in inputs and inputs[k] is not None}
        if "attention_mask" not in batch:
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        return batch

    # ------------------------------------------------------------------ forward passes
    def forward(self, inputs: Any, *, head_ablation: Optional[Mapping[int, Sequence[int]]] = None,
                **head_inputs: Any) -> Any:
        """Run the model (task model if any) on ``inputs`` (texts or a tokenised mapping).

        Args:
            inputs: text(s), a BatchEncoding, or a mapping with input_ids [batch, pos], attention_mask, ...
            head_ablation: {layer: [heads]} zero-ablated for this call.
            **head_inputs: extra task-head tensors (predicate_mask, ...).

        Returns:
            The model output (BaseModelOutput for an encoder, the task output otherwise).
        """
        batch = self.as_inputs(inputs)
        with self.lock, contextlib.ExitStack() as stack:
            if head_ablation:
                stack.enter_context(self.ablate_heads(head_ablation))
            outer = self.current_inputs()  # a hook may itself run a forward pass: restore the caller's inputs
            self._running.inputs = batch
            try:
                if self.task_model is not None:
                    return self.task_model.forward(batch["input_ids"], batch["attention_mask"],
                                                   batch.get("token_type_ids"), **head_inputs)
                return self.encoder(**batch)
            finally:
                self._running.inputs = outer

    def run_with_cache(self, inputs: Any, names: Union[Sequence[str], Callable[[str], bool], None] = None, *,
                       head_ablation: Optional[Mapping[int, Sequence[int]]] = None,
                       **head_inputs: Any) -> ActivationCache:
        """Forward pass that caches the requested activations (detached), plus the output.

        Args:
            inputs: see :meth:`forward`.
            names: hook names, a predicate on names, or None for every hook name.
            head_ablation: {layer: [heads]} zero-ablated during the run.

        Returns:
            :class:`ActivationCache` holding exactly the requested names.
        """
        if names is None:
            chosen = list(self.hook_names)
        elif callable(names):
            chosen = [n for n in self.hook_names if names(n)]
        else:
            chosen = list(names)
        self.check_hook_names(chosen)
        store: dict[str, torch.Tensor] = {}

        def save(activation: torch.Tensor, hook: HookInfo) -> None:
            store[hook.name] = activation.detach()

        batch = self.as_inputs(inputs)
        with self.hooks([(name, save) for name in chosen]):
            output = self.forward(batch, head_ablation=head_ablation, **head_inputs)
        return ActivationCache({n: store[n] for n in chosen if n in store}, output, batch["attention_mask"])

    def check_hook_names(self, names: Sequence[str]) -> None:
        """Raise a one-line UserInputError, with the closest names, for a name this model does not have."""
        known = set(self.hook_names)
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, self.hook_names, n=3)
                raise UserInputError(f"unknown hook name {name!r} for the {self.adapter.family} family" +
                                     (f"; close matches: {', '.join(close)}" if close else
                                      f"; names look like {self.hook_names[2]!r}"))

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator["Subject"]:
        """Attach ``fn(activation, HookInfo) -> replacement or None`` at each name for the ``with`` body.

        Everything added (torch hooks, attention callbacks, the attention implementation switch) is undone
        in ``finally``, also when the body raises. The model's lock is held for the whole ``with`` body, so no
        other thread runs the model while these hooks are on (nor attaches its own).

        Raises:
            UserInputError: for an unknown hook name (with close matches).
        """
        self.check_hook_names([name for name, _ in fwd_hooks])
        undo: list[Callable[[], None]] = []
        with self.lock:
            try:
                for name, fn in fwd_hooks:
                    undo.extend(self.adapter.attach(name, fn, HookInfo(name, layer_of(name)), self.current_inputs))
                yield self
            finally:
                for step in reversed(undo):
                    step()

    # ------------------------------------------------------------------ interventions
    def head_means(self, reference: Any) -> dict[int, torch.Tensor]:
        """Mean of each head's output z over the real tokens of ``reference`` inputs.

        Returns:
            {layer: tensor [n_heads, d_head]}.
        """
        names = [f"blocks.{i}.attn.hook_z" for i in range(self.n_layers)]
        with torch.no_grad():
            cache = self.run_with_cache(reference, names)
        assert cache.attention_mask is not None  # run_with_cache always records the mask
        mask = cache.attention_mask.to(torch.float32)[..., None, None]  # [batch, pos, 1, 1]
        return {i: (cache[n] * mask).sum((0, 1)) / mask.sum() for i, n in enumerate(names)}

    @contextlib.contextmanager
    def ablate_heads(self, heads: Mapping[int, Sequence[int]], mode: str = "zero",
                     reference: Any = None) -> Iterator["Subject"]:
        """Ablate attention heads inside the ``with`` body by overwriting their output z.

        Zeroing z is exactly BERT/Atinuke ``head_mask`` = 0 (the pattern is scaled before it weights V);
        "mean" replaces z with its mean over the real tokens of ``reference`` (default: of each batch run),
        which keeps the activation in distribution (Wang et al., 2022).

        Args:
            heads: {layer: [head indices]}.
            mode: "zero" or "mean".
            reference: inputs for the mean (mode "mean").
        """
        if mode not in ("zero", "mean"):
            raise UserInputError(f"unknown ablation mode {mode!r}; choose 'zero' or 'mean'")
        for layer, indices in heads.items():
            if not 0 <= int(layer) < self.n_layers or any(not 0 <= int(h) < self.n_heads for h in indices):
                raise UserInputError(f"head {layer}:{list(indices)} does not exist "
                                     f"({self.n_layers} layers x {self.n_heads} heads)")
        means = self.head_means(reference) if mode == "mean" and reference is not None else None

        def make(layer: int, indices: list[int]) -> HookFn:
            def ablate(z: torch.Tensor, hook: HookInfo) -> torch.Tensor:  # z: [batch, pos, n_heads, d_head]
                z = z.clone()
                if mode == "zero":
                    z[:, :, indices] = 0.0
                    return z
                if means is not None:
                    mean = means[layer][indices].to(z.dtype)  # [heads, d_head]
                else:
                    running = self.current_inputs()
                    mask = (running["attention_mask"] if running else
                            torch.ones(z.shape[:2], device=z.device)).to(z.dtype)[..., None, None]
                    mean = ((z[:, :, indices] * mask).sum((0, 1)) / mask.sum()).detach()  # [heads, d_head]
                z[:, :, indices] = mean.expand(z.shape[0], z.shape[1], -1, -1)
                return z
            return ablate

        hooks = [(f"blocks.{int(layer)}.attn.hook_z", make(int(layer), [int(h) for h in indices]))
                 for layer, indices in heads.items() if len(indices)]
        with self.hooks(hooks):
            yield self

    def patch(self, clean_inputs: Any, corrupted_inputs: Any, name: str,
              positions: Optional[Sequence[int]] = None, **head_inputs: Any) -> PatchResult:
        """Activation patching: rerun the corrupted input with ``name`` restored from the clean run.

        (Meng et al., 2022, "Locating and Editing Factual Associations in GPT", arXiv 2202.05262;
        Wang et al., 2022, arXiv 2211.00593.) The patched output tells how much of the clean behaviour that
        activation (at those positions) carries.

        Args:
            clean_inputs / corrupted_inputs: inputs of equal token length.
            name: hook name to patch.
            positions: token positions (query positions for scores/pattern); None = all.

        Returns:
            :class:`PatchResult`.
        """
        self.check_hook_names([name])
        clean, corrupted = self.as_inputs(clean_inputs), self.as_inputs(corrupted_inputs)
        if clean["input_ids"].shape != corrupted["input_ids"].shape:
            raise UserInputError(f"clean and corrupted inputs differ in shape: {tuple(clean['input_ids'].shape)}"
                                 f" vs {tuple(corrupted['input_ids'].shape)}; patching needs aligned tokens")
        with self.lock, torch.no_grad():
            clean_cache = self.run_with_cache(clean, [name], **head_inputs)
            corrupted_output = self.forward(corrupted, **head_inputs)
        source = clean_cache[name]
        pos_dim = 2 if name.endswith(("hook_attn_scores", "hook_pattern")) else 1
        index = None if positions is None else torch.as_tensor(list(positions), device=source.device)
        if positions is not None and index is not None and (index.min() < 0 or index.max() >= source.shape[pos_dim]):
            raise UserInputError(f"positions {list(positions)} out of range for {source.shape[pos_dim]} tokens")

        def restore(activation: torch.Tensor, hook: HookInfo) -> torch.Tensor:
            if index is None:
                return source.clone()
            patched = activation.clone()
            patched.index_copy_(pos_dim, index, source.index_select(pos_dim, index))
            return patched

        with torch.no_grad(), self.hooks([(name, restore)]):
            patched_output = self.forward(corrupted, **head_inputs)
        return PatchResult(name, None if positions is None else list(positions),
                           clean_cache.output, corrupted_output, patched_output)

    @contextlib.contextmanager
    def frozen(self) -> Iterator["Subject"]:
        """Parameters with ``requires_grad=False`` and the model in eval mode for the body (then restored); the
        model's lock is held throughout, so a whole attribution run is one isolated use of the model."""
        with self.lock:
            params = list(self.module.parameters())
            previous = [p.requires_grad for p in params]
            was_training = self.module.training
            try:
                for p in params:
                    p.requires_grad_(False)
                self.module.eval()
                yield self
            finally:
                for p, flag in zip(params, previous):
                    p.requires_grad_(flag)
                self.module.train(was_training)


def _is_task_model(obj: Any) -> bool:
    return hasattr(obj, "spec") and hasattr(obj, "encoder") and hasattr(obj, "forward")


def load_subject(spec: Union[str, Path, Encoder, Any], device: Union[str, torch.device] = "cpu",
                 dtype: Union[str, torch.dtype] = "float32", device_map: Optional[str] = None) -> Subject:
    """Load a model for inspection.

    Args:
        spec: "minilm", a model/run directory (a fine-tuning run with a task head becomes a task subject),
            an :class:`~atinuke.encoders.Encoder`, or a task model from ``atinuke.tasks.heads``.
        device: where to put a model loaded from disk ("auto": CUDA when available; over several GPUs when
            more than one is visible).
        device_map: "auto" to spread a model larger than one device over every device (accelerate).
        dtype: the dtype of a model loaded from disk: float32, bfloat16 (also on the CPU), float16 (GPU only).

    Returns:
        A :class:`Subject`.

    Raises:
        UserInputError: for unknown names, unreadable directories, unsupported architectures.
    """
    if isinstance(spec, Subject):
        return spec
    if isinstance(spec, Encoder):
        return Subject(spec)
    if _is_task_model(spec):
        return task_subject(spec)
    path = Path(str(spec))
    if not is_named_model(spec) and path.is_dir() and _looks_like_task_dir(path):
        from atinuke.tasks.heads import load_task_model
        from atinuke.validation import check_dtype, resolve_device

        where = resolve_device(device) if isinstance(device, str) else device
        cast_to = getattr(torch, check_dtype(dtype, str(where))) if isinstance(dtype, str) else dtype
        return task_subject(load_task_model(path, device=where).to(cast_to))
    return Subject(load_encoder(spec, device=device, dtype=dtype, device_map=device_map))


def _looks_like_task_dir(path: Path) -> bool:
    return (path / "task_model.json").is_file() or (path / "model" / "task_model.json").is_file()


def task_subject(task_model: Any) -> Subject:
    """A Subject over a fine-tuned task model (the head's forward runs, the hooks sit in its encoder)."""
    encoder = task_model.encoder
    if not isinstance(encoder, Encoder):
        kind = getattr(task_model, "encoder_kind", None) or (
            "atinuke" if encoder.config.model_type == "atinuke" else "hf")
        name = getattr(task_model, "encoder_name", None) or type(encoder).__name__
        encoder = Encoder(name=f"{name}/{task_model.spec.name}", kind=kind, model=encoder,
                          tokenizer=task_model.tokenizer, path=Path(getattr(task_model, "path", ".")))
    return Subject(encoder, task_model=task_model)
