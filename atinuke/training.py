"""What pretraining and fine-tuning share: the device, the torchrun process group, AdamW parameter groups, the
learning-rate schedules and the ``metrics.csv`` writer.

The schedules are written here rather than taken from ``transformers.get_*_schedule_with_warmup`` on purpose:
those start warmup at a multiplier of 0 (step 0 is a wasted update) and the shipped checkpoints
(``atinuke/checkpoints/``, reproduced step for step by ``tests/test_shipped.py``) were trained with the
``(step + 1) / (warmup + 1)`` warmup below.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.distributed as torch_dist

from atinuke.io import atomic_write_text
from atinuke.validation import check_device

# ---------------------------------------------------------------------------------------- devices


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """The torch device for a ``--device`` value: "auto" is CUDA when present, "cuda" is this rank's GPU.

    Raises:
        UserInputError: an unknown device or one this machine does not have (``atinuke.validation.check_device``).
    """
    text = check_device(spec)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda":
        text = f"cuda:{local_rank}"
    return torch.device(text)


# ---------------------------------------------------------------------------------------- distributed

@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group named by ``WORLD_SIZE``/``LOCAL_RANK`` (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    info = DistInfo(rank=torch_dist.get_rank(), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not info.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    return info


def all_reduce_sum(values: list[float], dist: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (``values`` itself without torchrun)."""
    if not dist.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return tensor.tolist()


# ---------------------------------------------------------------------------------------- optimisation

def decay_groups(parameters: Iterable[torch.nn.Parameter], weight_decay: float,
                 **group_options: Any) -> list[dict[str, Any]]:
    """AdamW groups that decay matrices only (the GPT-2/BERT convention: no decay on biases and norm gains).

    Shared parameters (tied embeddings) and frozen ones are left out; ``group_options`` (e.g. ``lr``) go into
    both groups.
    """
    seen: set[int] = set()
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in parameters:
        if id(param) in seen or not param.requires_grad:
            continue
        seen.add(id(param))
        (decay if param.dim() >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay, **group_options},
            {"params": no_decay, "weight_decay": 0.0, **group_options}]


def warmup_cosine(warmup: int, steps: int, floor: float = 0.1) -> Callable[[int], float]:
    """Multiplier on the peak lr: 1) linear warmup over ``warmup`` steps, 2) cosine decay to ``floor``
    at ``steps`` (nanoGPT's schedule)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return floor + (1.0 - floor) / 2 * (1.0 + math.cos(math.pi * progress))
    return factor


def warmup_linear(warmup: int, steps: int) -> Callable[[int], float]:
    """Multiplier on the peak lr: 1) linear warmup, 2) linear decay to 0 at ``steps`` (BERT's fine-tuning)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (steps - step) / max(1, steps - warmup))
    return factor


# ---------------------------------------------------------------------------------------- metrics.csv

def read_metrics_csv(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """The rows of ``path`` up to and including ``up_to_step`` (none when it does not exist)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def write_metrics_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` (extra keys ignored) atomically: a killed run never leaves half a file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
