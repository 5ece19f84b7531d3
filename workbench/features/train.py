"""Training a sparse autoencoder on an activation store: Adam, unit-norm decoder, checkpoints that resume
exactly (safetensors only), TensorBoard and a progress bar."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch
from safetensors.torch import load_file, save_file

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir
from workbench.features.sae import SAEConfig, SparseAutoencoder, load_state
from workbench.features.store import ActivationStore

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"


@dataclass
class TrainResult:
    """``sae`` (trained, eval mode), ``steps``, ``tokens``, ``seconds``, ``tokens_per_s``, ``final_loss``."""

    sae: SparseAutoencoder
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    final_loss: float


def _epoch_batches(store: ActivationStore, batch_size: int, seed: int, start_step: int) -> Iterator[torch.Tensor]:
    per_epoch = store.batches_per_epoch(batch_size)
    if per_epoch == 0:
        raise UserInputError(f"{store.directory}: {store.n_tokens} tokens, fewer than one batch of {batch_size}")
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        yield from store.batches(batch_size, seed, epoch, skip=skip)
        epoch, skip = epoch + 1, 0


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).clone()
    return tensors


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    current = optimizer.state_dict()
    current["state"] = state
    optimizer.load_state_dict(current)


def save_checkpoint(directory: Path, sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, step: int) -> None:
    """``directory/checkpoint/``: the SAE's tensors and Adam's moments in one safetensors file, plus the step."""
    tensors = {f"sae.{k}": v.detach().clone().contiguous() for k, v in sae.state_dict().items()} | _optimizer_tensors(optimizer)
    with atomic_dir(directory / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "progress.json").write_text(json.dumps({"step": step, "config": sae.config.to_dict()}), encoding="utf-8")


def load_checkpoint(directory: Path, sae: SparseAutoencoder, optimizer: torch.optim.Optimizer) -> int:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its step (0 when there is none)."""
    folder = directory / CHECKPOINT
    if not (folder / "progress.json").is_file():
        return 0
    progress = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
    if progress.get("config") != sae.config.to_dict():
        raise UserInputError(f"{folder}: a checkpoint of other SAE settings; rerun with those or --overwrite")
    try:
        tensors = load_file(str(folder / "state.safetensors"))
    except Exception as error:  # SafetensorError, OSError: a truncated or foreign file
        raise UserInputError(f"{folder / 'state.safetensors'}: unreadable checkpoint ({error})") from error
    load_state(sae, {k[4:]: v for k, v in tensors.items() if k.startswith("sae.")}, str(folder))
    _load_optimizer(optimizer, {k: v for k, v in tensors.items() if k.startswith("optimizer.")})
    return int(progress["step"])


def train_sae(data: ActivationStore | Iterable[torch.Tensor], config: SAEConfig, steps: int,
              out: Optional[Path] = None, resume: bool = False, checkpoint_every: int = 500, log_every: int = 50,
              progress: bool = False, tensorboard: bool = True, max_steps: Optional[int] = None) -> TrainResult:
    """Train an SAE for ``steps`` batches of ``config.batch_size`` rows.

    Args:
        data: an activation store (shuffled per epoch, resumable) or any iterable of [batch, d_in] tensors.
        steps: batches to train on (the learning rate decays linearly to 0 over the last fifth).
        out: where checkpoints and TensorBoard logs go (None: nowhere).
        resume: continue from ``out``'s checkpoint; the data order is a function of the seed and step,
            so a resumed run ends bit-identical to one that was never stopped.
        max_steps: stop after this step (a run interrupted on purpose, for tests); checkpoints there.

    Returns:
        A :class:`TrainResult`.
    """
    if steps < 1:
        raise UserInputError(f"--steps must be positive, got {steps}")
    torch.manual_seed(config.seed)
    sae = SparseAutoencoder(config)
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr, betas=(0.9, 0.999))
    decay_from = int(steps * 0.8)

    def learning_rate(step: int) -> float:  # constant, then linear decay to 0 over the last fifth
        return config.lr * (1.0 if step < decay_from else max(0.0, (steps - step) / max(steps - decay_from, 1)))

    start = load_checkpoint(out, sae, optimizer) if (resume and out is not None) else 0
    if isinstance(data, ActivationStore):
        if data.d_in != config.d_in:
            raise UserInputError(f"{data.directory}: activations of width {data.d_in}, the SAE reads {config.d_in}")
        if start == 0:
            sae.initialize_bias(data.sample(min(data.n_tokens, 8192), seed=config.seed))
        batches: Iterator[torch.Tensor] = _epoch_batches(data, config.batch_size, config.seed, start)
    else:
        batches = iter(data)
    writer = None
    if tensorboard and out is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(Path(out) / "tb"))
    from tqdm.auto import tqdm

    sae.train()
    stop = min(steps, max_steps) if max_steps is not None else steps
    bar = tqdm(total=steps, initial=start, disable=not progress, desc=f"SAE {config.kind}", unit="step")
    loss_value, started, step = float("nan"), time.perf_counter(), start
    try:
        for step in range(start, stop):
            x = next(batches)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step)
            optimizer.zero_grad(set_to_none=True)
            output = sae(x)
            output.loss.backward()
            sae.remove_parallel_gradient()
            optimizer.step()
            sae.normalize_decoder()
            if (step + 1) % log_every == 0 or step + 1 == stop:
                loss_value = float(output.loss.detach())
                l0 = output.l0
                dead = float(sae.dead_mask().float().mean())
                bar.set_postfix(loss=f"{loss_value:.4g}", l0=f"{l0:.1f}", dead=f"{dead:.0%}")
                if writer is not None:
                    for name, value in (("loss", loss_value), ("mse", float(output.mse.detach())), ("l0", l0),
                                        ("dead_fraction", dead), ("aux", float(output.aux.detach()))):
                        writer.add_scalar(f"sae/{name}", value, step + 1)
            bar.update(1)
            if out is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == stop):
                save_checkpoint(Path(out), sae, optimizer, step + 1)
    except StopIteration:
        raise UserInputError(f"the data ran out after {step} of {steps} steps") from None
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started
    done = stop - start
    sae.eval()
    tokens = done * config.batch_size
    return TrainResult(sae, stop, tokens, seconds, tokens / seconds if seconds > 0 else float("nan"), loss_value)
