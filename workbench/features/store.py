"""Activations of one hook, streamed from a corpus to disk in bounded shards, and read back shuffled.

Building holds at most one shard in memory whatever the number of tokens; each shard is written atomically
and recorded in ``manifest.json`` with the next text to read, so a killed build resumes where it stopped.
Reading visits the shards in a seeded order and each shard's rows in a seeded order: the batch sequence is a
function of (seed, epoch) alone, bit-identical across reruns, and a resumed training run skips to its batch.

Each row keeps where it came from (text index, token position, token id) for the feature dashboards.
Special tokens ([CLS], [SEP], padding) are left out: their activations are outliers that no dictionary of
the text should spend latents on.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Optional, Sequence

import numpy as np
import torch

from atinuke.errors import UserInputError
from atinuke.io import atomic_path, atomic_write_json

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass
class Shard:
    """One shard: ``activations`` [n, d_in] float32, ``doc``/``pos``/``token`` [n] int32."""

    activations: np.ndarray
    doc: np.ndarray
    pos: np.ndarray
    token: np.ndarray


class ActivationStore:
    """A directory of activation shards (``shard-00000.npz``-style .npy quadruples) plus its manifest."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise UserInputError(f"{self.directory}: no activation store here ({MANIFEST} missing)")
        try:
            self.manifest = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise UserInputError(f"{path}: not valid JSON ({error})") from error

    @property
    def d_in(self) -> int:
        return int(self.manifest["d_in"])

    @property
    def shards(self) -> list[dict[str, Any]]:
        return list(self.manifest["shards"])

    @property
    def n_tokens(self) -> int:
        return sum(int(s["rows"]) for s in self.shards)

    def shard(self, index: int, mmap: bool = True) -> Shard:
        name = self.shards[index]["name"]
        mode: Optional[Literal["r"]] = "r" if mmap else None
        try:
            return Shard(*(np.load(self.directory / f"{name}.{part}.npy", mmap_mode=mode)
                           for part in ("activations", "doc", "pos", "token")))
        except (OSError, ValueError) as error:
            raise UserInputError(f"{self.directory / name}: unreadable activation shard ({error})") from error

    def plan(self, batch_size: int, seed: int, epoch: int = 0) -> Iterator[list[tuple[int, np.ndarray]]]:
        """The batches of an epoch as (shard, rows) pieces, without reading any activation.

        Shard order and row order come from ``numpy.random.default_rng((seed, epoch))``; rows left over at
        the end of a shard start the next batch, so every batch is full (the last partial one is dropped).
        """
        rng = np.random.default_rng((seed, epoch))
        pieces: list[tuple[int, np.ndarray]] = []
        filled = 0
        for index in rng.permutation(len(self.shards)):
            rows = int(self.shards[int(index)]["rows"])
            permutation = rng.permutation(rows)
            start = 0
            while start < rows:
                take = permutation[start:start + batch_size - filled]
                pieces.append((int(index), take))
                filled += len(take)
                start += len(take)
                if filled == batch_size:
                    yield pieces
                    pieces, filled = [], 0

    def batches(self, batch_size: int, seed: int, epoch: int = 0, skip: int = 0) -> Iterator[torch.Tensor]:
        """Shuffled batches [batch_size, d_in] float32 (see :meth:`plan`); the first ``skip`` batches are
        passed over without reading their rows (a resumed run)."""
        opened: dict[int, np.ndarray] = {}
        for number, pieces in enumerate(self.plan(batch_size, seed, epoch)):
            if number < skip:
                continue
            parts = []
            for index, take in pieces:
                if index not in opened:
                    opened.clear()  # one memory-mapped shard at a time
                    opened[index] = self.shard(index).activations
                parts.append(_gather(opened[index], take))
            yield torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0])

    def batches_per_epoch(self, batch_size: int) -> int:
        return self.n_tokens // batch_size

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` rows drawn uniformly (for initialising the decoder bias and scaling)."""
        rng = np.random.default_rng((seed, 999_983))
        total = self.n_tokens
        picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
        out, offset = [], 0
        for index, shard in enumerate(self.shards):
            rows = int(shard["rows"])
            local = picks[(picks >= offset) & (picks < offset + rows)] - offset
            if len(local):
                out.append(np.asarray(self.shard(index).activations[local]))
            offset += rows
        return torch.from_numpy(np.concatenate(out)).float()


def _gather(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of a memory-mapped array in ``rows`` order, read in ascending file order."""
    ascending = np.argsort(rows)
    block = np.asarray(data[rows[ascending]], dtype=np.float32)
    out = np.empty_like(block)
    out[ascending] = block
    return out


def build_store(subject: Subject, hook: str, texts: Sequence[str], directory: Path, shard_tokens: int = 65_536,
                max_tokens: Optional[int] = None, batch_size: int = 16, max_length: int = 128,
                progress: bool = False) -> ActivationStore:
    """Stream ``hook``'s activations over ``texts`` into ``directory`` (resuming a partial build).

    Args:
        subject: a :class:`workbench.subject.Subject`.
        hook: a hook name whose activation is [batch, pos, d] (residual stream, attention or MLP output).
        texts: the corpus, in a fixed order.
        directory: the store (created; an existing complete store of the same settings is reused).
        shard_tokens: rows per shard: the memory bound of building and of reading.
        max_tokens: stop after this many rows (None: the whole corpus).

    Returns:
        The :class:`ActivationStore`.
    """
    from tqdm.auto import tqdm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    settings = {"hook": hook, "model": subject.name, "model_hash": subject.model_hash(), "n_texts": len(texts),
                "max_tokens": max_tokens, "max_length": max_length, "shard_tokens": shard_tokens}
    manifest_path = directory / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("settings") != settings:
            raise UserInputError(f"{directory}: holds activations of other settings ({manifest.get('settings')}); "
                                 "choose another --out or --overwrite")
        if manifest.get("complete"):
            return ActivationStore(directory)
    else:
        manifest = {"settings": settings, "d_in": None, "shards": [], "next_text": 0, "complete": False}
    subject.check_hook_names([hook])
    special = {subject.tokenizer.cls_token_id, subject.tokenizer.sep_token_id, subject.tokenizer.pad_token_id,
               getattr(subject.tokenizer, "bos_token_id", None), getattr(subject.tokenizer, "eos_token_id", None)}
    special.discard(None)
    total = sum(int(s["rows"]) for s in manifest["shards"])
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    pending_rows = 0
    start = int(manifest["next_text"])
    bar = tqdm(total=max_tokens, initial=total, disable=not progress, desc=f"activations {hook}", unit="tok")

    def flush(next_text: int) -> None:
        nonlocal pending, pending_rows
        if pending_rows:
            name = f"shard-{len(manifest['shards']):05d}"
            parts = [np.concatenate([p[i] for p in pending]) for i in range(4)]
            for part, array in zip(("activations", "doc", "pos", "token"), parts):
                with atomic_path(directory / f"{name}.{part}.npy", suffix=".npy") as tmp:
                    with open(tmp, "wb") as handle:
                        np.save(handle, array)
            manifest["shards"].append({"name": name, "rows": int(pending_rows)})
        manifest["next_text"] = next_text
        atomic_write_json(manifest_path, manifest)
        pending, pending_rows = [], 0

    index = start
    try:
        for index in range(start, len(texts), batch_size):
            chunk = list(texts[index:index + batch_size])
            batch = subject.tokenize(chunk, max_length=max_length)
            with torch.no_grad():
                activation = subject.run_with_cache(batch, [hook])[hook]  # [batch, pos, d]
            if activation.dim() != 3:
                raise UserInputError(f"{hook}: activation of shape {tuple(activation.shape)}; an SAE needs "
                                     "[batch, pos, d] (residual stream, attention or MLP output)")
            ids = batch["input_ids"]
            keep = batch["attention_mask"].bool() & ~torch.isin(ids, torch.tensor(sorted(special)))
            b, p = keep.nonzero(as_tuple=True)
            rows = activation[b, p].float().cpu().numpy()
            manifest["d_in"] = int(rows.shape[1])
            if max_tokens is not None:
                rows, b, p = rows[:max_tokens - total], b[:max_tokens - total], p[:max_tokens - total]
            pending.append((rows, (b + index).numpy().astype(np.int32), p.numpy().astype(np.int32),
                            ids[b, p].numpy().astype(np.int32)))
            pending_rows += len(rows)
            total += len(rows)
            bar.update(len(rows))
            if pending_rows >= shard_tokens:
                flush(index + batch_size)
            if max_tokens is not None and total >= max_tokens:
                break
        flush(min(index + batch_size, len(texts)))
    finally:
        bar.close()
    if total == 0:
        raise UserInputError(f"{hook}: the corpus gave no tokens")
    manifest["complete"] = True
    atomic_write_json(manifest_path, manifest)
    logger.info("activation store %s: %d tokens of %s in %d shards", directory, total, hook, len(manifest["shards"]))
    return ActivationStore(directory)
