"""``TaskModel``: any encoder (Atinuke or a Hugging Face BERT-family model) plus one task head.

Saved layout (``save_task_model``): ``task_model.json`` (format version, task spec, head config, encoder
name and kind), ``head.safetensors`` (head weights), ``encoder/`` (``save_pretrained`` + tokenizer, loadable
by ``atinuke.encoders.load_encoder`` and ``AutoModel``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from atinuke.encoders import Encoder, load_encoder
from atinuke.errors import UserInputError
from atinuke.io import atomic_dir, atomic_write_json
from atinuke.tasks.base import Example, TaskSpec
from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction
from atinuke.tasks.heads.tagging import TaggingHead
from atinuke.tasks.kinds.base import TaskKind, get_kind
from atinuke.tasks.registry import TASKS, register_task, spec_from_dict

logger = logging.getLogger(__name__)

FORMAT = "atinuke-task-model"
FORMAT_VERSION = 1


class TaskModel(nn.Module):
    """An encoder with a task head.

    Attributes:
        spec: the task's :class:`TaskSpec`.
        config: the :class:`HeadConfig`.
        encoder: the base encoder module (``AtinukeModel`` or e.g. ``BertModel``); hook it to inspect.
        tokenizer: its fast tokenizer.
        encoder_name, encoder_kind: "minilm"/run name, and "atinuke" or "hf".
        head: the task head module.
    """

    def __init__(self, encoder: Encoder, spec: TaskSpec, config: HeadConfig) -> None:
        super().__init__()
        if spec.kind != config.kind:
            raise UserInputError(f"task {spec.name!r} has kind {spec.kind!r} but the head config says {config.kind!r}")
        self.task_kind: TaskKind = get_kind(spec.kind)
        if self.task_kind.needs_labels and not config.labels:
            raise UserInputError(f"a {config.kind} head needs a non-empty label set")
        self.spec = spec
        self.config = dataclasses.replace(config, max_len=min(config.max_len, encoder.max_len))
        self.encoder = encoder.model
        self.tokenizer = encoder.tokenizer
        self.encoder_name = encoder.name
        self.encoder_kind = encoder.kind
        self.head: nn.Module = self.task_kind.build_head(encoder.d_model, self.config, self.encoder)

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names (classification) or tag names (tagging); empty for the other kinds."""
        return self.config.labels

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, examples: Sequence[Example]) -> TaskBatch:
        """Tokenize examples into a :class:`TaskBatch` (targets included when the examples have gold labels).

        Raises:
            UserInputError: wrong example type, empty text, unknown label, bad offsets.
        """
        # Told by class name, so that examples of a reloaded module still pass.
        expected = self.task_kind.example_type.__name__
        for ex in examples:
            if type(ex).__name__ != expected:
                raise UserInputError(f"task {self.spec.name!r} needs {expected} examples, got {type(ex).__name__}")
        return self.task_kind.encode(self.tokenizer, self.config, examples, self.encoder_kind == "hf")

    @contextlib.contextmanager
    def _predicate_indicator(self, predicate_mask: Optional[torch.Tensor]) -> Iterator[None]:
        """Add the learned predicate embedding to the predicate's input embeddings while the block runs.

        The hook is registered last, so a hook that replaces the token embeddings (Captum's layer
        attribution) runs first and the indicator is still added on top.
        """
        if predicate_mask is None or not isinstance(self.head, TaggingHead):
            yield
            return
        embedding = self.head.predicate_embedding  # [d_model]

        def add_indicator(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            return output + predicate_mask.unsqueeze(-1).to(output.dtype) * embedding  # [batch, pos, d_model]

        handle = self.encoder.get_input_embeddings().register_forward_hook(add_indicator)
        try:
            yield
        finally:
            handle.remove()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: Optional[torch.Tensor] = None, **head_inputs: torch.Tensor) -> TaskOutput:
        """Run the encoder and the head.

        Args:
            input_ids: [batch, pos].
            attention_mask: [batch, pos].
            token_type_ids: [batch, pos] for BERT-family encoders (ignored by Atinuke).
            **head_inputs: the ``TaskBatch.head_inputs`` tensors (``predicate_mask``, coreference spans,
                ``context_mask``, and targets for a loss).

        Returns:
            A :class:`TaskOutput`.
        """
        kwargs = {}
        if token_type_ids is not None and self.encoder_kind == "hf":
            kwargs["token_type_ids"] = token_type_ids
        with self._predicate_indicator(head_inputs.get("predicate_mask")):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return self.head(hidden, attention_mask, **head_inputs)  # hidden: [batch, pos, d_model]

    def decode(self, output: TaskOutput, batch: TaskBatch, examples: Sequence[Example]) -> list[TaskPrediction]:
        """Turn one batch's output into one :class:`TaskPrediction` per example."""
        # ``examples`` are those given to :meth:`encode`, which checked their type.
        return self.task_kind.decode(self.config, output, batch, examples)

    @torch.no_grad()
    def predict(self, examples: Sequence[Example], batch_size: int = 32,
                stats: Optional[dict[str, int]] = None) -> list[TaskPrediction]:
        """Predict every example (eval mode; the previous mode is restored).

        Args:
            examples: task examples.
            batch_size: examples per forward pass (coreference: documents).
            stats: if given, ``stats["n_truncated"]`` is increased by the examples cut to ``max_len``.

        Returns:
            One :class:`TaskPrediction` per example, in order; ``[p.value for p in ...]`` is what
            ``atinuke.tasks.metrics.score_task`` takes.
        """
        was_training = self.training
        self.eval()
        predictions: list[TaskPrediction] = []
        try:
            for start in range(0, len(examples), batch_size):
                chunk = examples[start: start + batch_size]
                batch = self.encode(chunk).to(self.device)
                if stats is not None:
                    stats["n_truncated"] = stats.get("n_truncated", 0) + batch.n_truncated
                output = self(**batch.model_inputs(with_targets=False))
                predictions.extend(self.decode(output, batch, chunk))
        finally:
            self.train(was_training)
        return predictions


def build_task_model(encoder: str | Path | Encoder, spec: TaskSpec, device: str | torch.device = "cpu",
                     **config: Any) -> TaskModel:
    """A fresh head on a pretrained encoder.

    Args:
        encoder: "minilm", a model/run directory, or a loaded :class:`Encoder`.
        spec: the task.
        device: where to put the model.
        **config: :class:`HeadConfig` fields (``labels`` defaults to ``spec.labels``).

    Returns:
        The :class:`TaskModel` in train mode.
    """
    if not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder, attn_implementation="eager", device=device)
    config.setdefault("labels", spec.labels)
    model = TaskModel(encoder, spec, HeadConfig(kind=spec.kind, **config))
    return model.to(device).train()


MODEL_FILES = frozenset({"task_model.json", "head.safetensors", "encoder"})  # what save_task_model writes


def save_task_model(model: TaskModel, directory: str | Path) -> None:
    """Write the model atomically: ``task_model.json``, ``head.safetensors``, ``encoder/`` (``MODEL_FILES``); it
    replaces ``directory`` as a whole, so a caller refuses one holding anything else (``atinuke.io.check_owned``)."""
    with atomic_dir(directory) as tmp:
        model.encoder.save_pretrained(tmp / "encoder")
        model.tokenizer.save_pretrained(tmp / "encoder")
        state = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
        save_file(state, str(tmp / "head.safetensors"))
        atomic_write_json(tmp / "task_model.json", {
            "format": FORMAT, "version": FORMAT_VERSION, "spec": dataclasses.asdict(model.spec),
            "head": model.config.to_dict(), "encoder": {"name": model.encoder_name, "kind": model.encoder_kind}})


def load_task_model(directory: str | Path, device: str | torch.device = "cpu") -> TaskModel:
    """Load a model written by :func:`save_task_model` (a fine-tuning run directory resolves to ``model/``).

    Returns:
        The :class:`TaskModel` in eval mode.

    Raises:
        UserInputError: missing, corrupt or mismatched files.
    """
    directory = Path(directory)
    if (directory / "model" / "task_model.json").is_file():
        directory = directory / "model"
    manifest_path = directory / "task_model.json"
    if not manifest_path.is_file():
        raise UserInputError(f"{directory}: not a fine-tuned task model (no task_model.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
        if manifest.get("version") != FORMAT_VERSION:
            raise ValueError(f"version {manifest.get('version')!r} is not supported (expected {FORMAT_VERSION})")
        spec = spec_from_dict(manifest["spec"])
        config = HeadConfig.from_dict(manifest["head"])
        encoder_info = manifest["encoder"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserInputError(f"{manifest_path}: corrupt task model manifest ({error})") from error
    encoder = load_encoder(directory / "encoder", attn_implementation="eager", device=device)
    encoder = dataclasses.replace(encoder, name=encoder_info.get("name", encoder.name))
    if encoder.kind != encoder_info.get("kind"):
        raise UserInputError(f"{directory / 'encoder'}: encoder kind {encoder.kind!r} does not match the manifest's "
                             f"{encoder_info.get('kind')!r}")
    if TASKS.get(spec.name) != spec:  # a user dataset's task (not a benchmark): make get_task know it
        register_task(spec)
    model = TaskModel(encoder, spec, config)
    try:
        state = load_file(str(directory / "head.safetensors"))
        model.head.load_state_dict(state, strict=True)
    except Exception as error:  # safetensors raises its own SafetensorError for a corrupt header
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"{directory / 'head.safetensors'}: cannot load head weights ({first_line})") from error
    return model.to(device).eval()


def prediction_values(predictions: Sequence[TaskPrediction]) -> list[Any]:
    """The ``score_task`` view of a list of predictions."""
    return [p.value for p in predictions]


def finite_or_none(value: float) -> Optional[float]:
    """``value`` unless NaN/inf (for JSON)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
