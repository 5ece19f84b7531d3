"""Pretraining checkpoints: tensors in safetensors, everything else in JSON, so loading unpickles nothing.

Log-spaced snapshots (:func:`log_schedule`, :func:`save_snapshot`) are weights only, for analysis over
training (``workbench dynamics``). A checkpoint ``out/checkpoints/step-N/`` holds ``model/`` (``save_pretrained`` + tokenizer),
``optimizer.safetensors`` + ``optimizer.json`` (AdamW moments and step counts; param groups),
``rng.safetensors`` (every rank's CPU/CUDA generator state: the dropout streams) and ``trainer_state.json``
(step, data position, tokens seen, world size, the run's config, the scheduler's state). It is written with
:func:`atinuke.io.atomic_dir`, so a killed job leaves either the old or the new checkpoint, never half of one.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as torch_dist
from safetensors.torch import load_file, save_file
from torch.optim.lr_scheduler import LRScheduler
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir
from atinuke.tokenizer import load_tokenizer
from atinuke.training import DistInfo


def gather_rng(dist: DistInfo, device: torch.device) -> dict[str, torch.Tensor]:
    """Every rank's RNG states (the dropout streams), gathered to each rank as uint8 tensors."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    out = {}
    for name, state in states.items():
        if dist.enabled:
            parts = [torch.empty_like(state, device=device) for _ in range(dist.world_size)]
            torch_dist.all_gather(parts, state.to(device))
        else:
            parts = [state]
        out.update({f"{name}.rank{r}": part.cpu() for r, part in enumerate(parts)})
    return out



@dataclass
class Checkpoint:
    """Everything a checkpoint holds, loaded and checked before anything is written."""

    path: Path
    state: dict[str, Any]
    config: dict[str, Any]  # the run's PretrainConfig as saved (the caller rebuilds and checks it)
    tokenizer: PreTrainedTokenizerFast
    model_weights: dict[str, torch.Tensor]
    optimizer_tensors: dict[str, torch.Tensor]
    optimizer_meta: dict[str, Any]
    rng: dict[str, torch.Tensor]


def checkpoint_dirs(out: Path) -> list[Path]:
    """The complete ``out/checkpoints/step-N`` directories, oldest first."""
    root = out / "checkpoints"
    dirs = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()] if root.is_dir() else []
    return sorted(dirs, key=lambda p: int(p.name[5:]))


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise UserInputError(f"{path}: missing from the checkpoint") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserInputError(f"{path}: corrupt checkpoint file ({error})") from error


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserInputError(f"{path}: missing from the checkpoint")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error type for truncated or garbled files
        raise UserInputError(f"{path}: corrupt checkpoint file ({str(error).splitlines()[0]})") from error


def load_checkpoint(out: Path) -> Checkpoint:
    """Load and check the latest checkpoint under ``out/checkpoints``.

    Raises:
        UserInputError: when there is none, or a file is missing, truncated or inconsistent.
    """
    dirs = checkpoint_dirs(out)
    if not dirs:
        raise UserInputError(f"{out / 'checkpoints'}: no checkpoint to resume from")
    path = dirs[-1]
    state = _load_json(path / "trainer_state.json")
    try:
        config = dict(state["config"])
        int(state["step"]), int(state["world_size"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserInputError(f"{path / 'trainer_state.json'}: corrupt checkpoint state ({error})") from error
    return Checkpoint(
        path=path, state=state, config=config, tokenizer=load_tokenizer(path / "model"),
        model_weights=_load_tensors(path / "model" / "model.safetensors"),
        optimizer_tensors=_load_tensors(path / "optimizer.safetensors"),
        optimizer_meta=_load_json(path / "optimizer.json"), rng=_load_tensors(path / "rng.safetensors"))


def optimizer_state_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split the optimizer state into tensors (for safetensors) and JSON."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, state in state_dict["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"state.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
    """Restore ``optimizer`` from a checkpoint's safetensors + JSON, checking shapes against its parameters.

    Raises:
        UserInputError: when the saved state does not fit the optimizer's parameters.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in checkpoint.optimizer_tensors.items():
        _, saved_id, key = name.split(".", 2)
        state.setdefault(int(saved_id), {})[key] = tensor
    for saved_id, scalars in checkpoint.optimizer_meta.get("scalars", {}).items():
        state.setdefault(int(saved_id), {}).update(scalars)
    where = checkpoint.path / "optimizer.safetensors"
    for param_id, entry in state.items():
        if param_id >= len(params) or any(t.dim() > 0 and t.shape != params[param_id].shape
                                          for t in entry.values() if torch.is_tensor(t)):
            raise UserInputError(f"{where}: optimizer state does not match the model (parameter {param_id})")
    groups = [dict(group, betas=tuple(group["betas"])) if "betas" in group else group
              for group in checkpoint.optimizer_meta["param_groups"]]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as error:
        raise UserInputError(f"{where}: optimizer state does not match the model ({error})") from error


def save_checkpoint(out: Path, step: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                    optimizer: torch.optim.Optimizer, scheduler: LRScheduler, rng: dict[str, torch.Tensor],
                    state: dict[str, Any], keep: int) -> Path:
    """Write ``out/checkpoints/step-N`` atomically and delete all but the newest ``keep`` checkpoints."""
    target = out / "checkpoints" / f"step-{step}"
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        tensors, meta = optimizer_state_files(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta, indent=1))
        save_file(rng, str(tmp / "rng.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps({**state, "scheduler": scheduler.state_dict()}, indent=2))
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def log_schedule(steps: int, first: int = 64, ratio: float = 2.0) -> list[int]:
    """Steps of the log-spaced snapshots: 0, ``first``, then each previous step times ``ratio`` (rounded, at least
    one more) below ``steps``, and ``steps``.

    >>> log_schedule(600)
    [0, 64, 128, 256, 512, 600]
    """
    if first < 1 or ratio <= 1:
        raise ValueError(f"log_schedule needs first >= 1 and ratio > 1, got {first}, {ratio}")
    schedule, step = [0], first
    while step < steps:
        schedule.append(step)
        step = max(step + 1, round(step * ratio))
    return schedule + [steps]


def save_snapshot(out: Path, step: int, tokens: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> Path:
    """Write ``out/snapshots/step-N/`` atomically: the model (save_pretrained, loadable by
    ``workbench.subject.load_subject``), its tokenizer and ``snapshot.json`` (step, training tokens seen)."""
    target = out / "snapshots" / f"step-{step}"
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "snapshot.json").write_text(json.dumps({"step": step, "tokens": tokens}, indent=2))
    return target


def share_tokenizer(tokenizer: Optional[PreTrainedTokenizerFast], dist: DistInfo) -> PreTrainedTokenizerFast:
    """Rank 0 trains the tokenizer; the others rebuild it from its JSON, so every rank has the same ids."""
    if dist.is_main:  # without torchrun the one process is rank 0
        assert tokenizer is not None, "rank 0 trains the tokenizer"
        if dist.enabled:
            torch_dist.broadcast_object_list([tokenizer.backend_tokenizer.to_str()], src=0)
        return tokenizer
    payload: list[str | None] = [None]
    torch_dist.broadcast_object_list(payload, src=0)
    from tokenizers import Tokenizer

    assert payload[0] is not None, "rank 0 broadcasts its tokenizer's JSON"
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(payload[0]), pad_token="[PAD]",
                                   unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "attention_mask"])
