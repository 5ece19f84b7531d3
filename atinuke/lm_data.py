"""Language-modelling data: corpus text -> packed token blocks, deterministic batches, MLM masking.

Everything random here is a pure function of ``(seed, index)`` (its own ``torch.Generator``), never of the
global RNG, so a resumed run, or a run split across ``torchrun`` ranks, sees exactly the same blocks and
masks as an uninterrupted single-process run:

- blocks: documents are tokenised, each followed by [SEP], concatenated into one stream and cut into
  blocks of ``seq_len`` tokens, each starting with [CLS] (the packing of RoBERTa's FULL-SENTENCES,
  Liu et al., 2019, arXiv 1907.11692; GPT-2 for causal LM). No padding is ever needed in training.
- order: epoch ``e`` visits the blocks in ``randperm(n_blocks, seed(seed, e))``; global micro-batch ``g``
  is items ``[g * B, (g + 1) * B)`` of the endless sequence of epochs, and rank ``r`` takes its slice.
- masking: BERT's 15% with 80% [MASK] / 10% random token / 10% unchanged (Devlin et al., 2019, arXiv
  1810.04805), drawn for the whole global micro-batch from ``seed(seed, g)``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from transformers import PreTrainedTokenizerFast

from atinuke.errors import UserInputError
from atinuke.training import DistInfo, all_reduce_sum

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label cross-entropy skips


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps), so nearby (seed, index) pairs give unrelated streams."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return state & 0x7FFFFFFFFFFFFFFF


def generator_for(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``parts`` (e.g. ``(seed, step)``)."""
    return torch.Generator().manual_seed(mix_seed(*parts))


def encode_stream(tokenizer: PreTrainedTokenizerFast, texts: Iterable[str], batch_size: int = 1024) -> torch.Tensor:
    """Tokenise documents into one stream of ids, each document followed by [SEP].

    Args:
        tokenizer: the fast tokenizer.
        texts: documents.
        batch_size: documents per call into the Rust tokenizer.

    Returns:
        Long tensor [n_tokens].
    """
    sep = tokenizer.sep_token_id
    texts = list(texts)
    ids: list[int] = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], add_special_tokens=False)["input_ids"]
        for doc in encoded:
            if doc:
                ids.extend(doc)
                ids.append(sep)
    return torch.tensor(ids, dtype=torch.long)


def pack_blocks(stream: torch.Tensor, seq_len: int, cls_id: int, name: str = "corpus") -> torch.Tensor:
    """Cut a token stream into blocks of ``seq_len`` tokens, each [CLS] + ``seq_len - 1`` stream tokens.

    The final partial block is dropped (at most ``seq_len - 2`` tokens).

    Args:
        stream: [n_tokens] ids.
        seq_len: block length, [CLS] included (>= 2).
        cls_id: id of [CLS].
        name: what the stream is, for the error message.

    Returns:
        Long tensor [n_blocks, seq_len].

    Raises:
        UserInputError: when the stream is shorter than one block.
    """
    body = seq_len - 1
    n_blocks = stream.numel() // body
    if n_blocks == 0:
        raise UserInputError(f"{name} has {stream.numel()} tokens, fewer than one block of seq_len={seq_len}")
    blocks = stream[: n_blocks * body].view(n_blocks, body)  # [n_blocks, seq_len - 1]
    cls = torch.full((n_blocks, 1), cls_id, dtype=torch.long)
    return torch.cat([cls, blocks], dim=1)  # [n_blocks, seq_len]


class BlockSampler:
    """Deterministic epoch-shuffled order over blocks, addressed by global micro-batch index.

    Args:
        n_blocks: number of training blocks.
        global_batch: blocks per global micro-batch (per-rank batch x world size).
        seed: run seed.
    """

    def __init__(self, n_blocks: int, global_batch: int, seed: int) -> None:
        if n_blocks < global_batch:
            raise UserInputError(f"the training corpus has {n_blocks} blocks, fewer than one global batch of "
                                 f"{global_batch}; lower --batch-size or --seq-len, or add --sources")
        self.n_blocks = n_blocks
        self.global_batch = global_batch
        self.seed = seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = torch.randperm(self.n_blocks, generator=generator_for(self.seed, 1, epoch))
        return self._perms[epoch]

    def epoch_of(self, micro_batch: int) -> float:
        """Fractional epochs completed after ``micro_batch`` global micro-batches."""
        return micro_batch * self.global_batch / self.n_blocks

    def indices(self, micro_batch: int) -> torch.Tensor:
        """Block indices of global micro-batch ``micro_batch``: long [global_batch]."""
        start = micro_batch * self.global_batch
        items = torch.arange(start, start + self.global_batch)  # [global_batch]
        epochs, positions = items // self.n_blocks, items % self.n_blocks
        out = torch.empty_like(items)
        for epoch in epochs.unique().tolist():
            chosen = epochs == epoch
            out[chosen] = self._perm(epoch)[positions[chosen]]
        return out


@dataclass
class LMBatch:
    """One batch for the language-model heads.

    Attributes:
        input_ids: [batch, pos] ids the model sees (masked for MLM).
        labels: [batch, pos] targets, -100 where no loss is taken (for CLM the model shifts them).
    """

    input_ids: torch.Tensor
    labels: torch.Tensor

    def __getitem__(self, rows: slice) -> "LMBatch":
        return LMBatch(self.input_ids[rows], self.labels[rows])

    def n_targets(self, objective: str) -> int:
        """Number of tokens that carry a loss (CLM predicts positions 1.. from the ones before)."""
        labels = self.labels[:, 1:] if objective == "clm" else self.labels
        return int((labels != IGNORE_INDEX).sum())

    def targets(self, objective: str) -> torch.Tensor:
        """The target ids that carry a loss, flattened: long [n_targets]."""
        labels = self.labels[:, 1:] if objective == "clm" else self.labels
        return labels[labels != IGNORE_INDEX]

    def to(self, device: torch.device | str) -> "LMBatch":
        return LMBatch(self.input_ids.to(device, non_blocking=True), self.labels.to(device, non_blocking=True))


def mask_tokens(
    blocks: torch.Tensor,
    generator: torch.Generator,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    mask_prob: float = 0.15,
    replace_probs: tuple[float, float] = (0.8, 0.1),
) -> LMBatch:
    """BERT masking (Devlin et al., 2019, §3.1): choose ``mask_prob`` of the non-special tokens as targets;
    of those, replace ``replace_probs[0]`` with [MASK], ``replace_probs[1]`` with a random token, keep the rest.

    At least one token per batch is chosen, so a loss always exists.

    Args:
        blocks: [batch, pos] ids.
        generator: CPU generator (the masks are a function of its seed alone).
        mask_id: id of [MASK].
        vocab_size: random replacements are drawn from ``[len(special_ids), vocab_size)``-style non-special ids.
        special_ids: ids never chosen as targets nor drawn as replacements ([PAD], [CLS], [SEP], ...).
        mask_prob: fraction of tokens chosen.
        replace_probs: (P[MASK], P[random]) among chosen tokens; (1.0, 0.0) always masks.

    Returns:
        An :class:`LMBatch` with ``labels`` = original ids at chosen positions, -100 elsewhere.
    """
    blocks = blocks.cpu()
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[list(special_ids)] = True
    maskable = ~special[blocks]  # [batch, pos]
    chosen = (torch.rand(blocks.shape, generator=generator) < mask_prob) & maskable  # [batch, pos]
    if not chosen.any():
        first = maskable.flatten().nonzero()
        if first.numel():
            chosen.view(-1)[first[0]] = True
    labels = torch.where(chosen, blocks, torch.full_like(blocks, IGNORE_INDEX))  # [batch, pos]
    action = torch.rand(blocks.shape, generator=generator)  # [batch, pos]
    to_mask = chosen & (action < replace_probs[0])
    to_random = chosen & (action >= replace_probs[0]) & (action < replace_probs[0] + replace_probs[1])
    # Random replacements come from the ordinary vocabulary: drawing over it and mapping specials away.
    ordinary = (~special).nonzero().flatten()  # [n_ordinary]
    random_ids = ordinary[torch.randint(len(ordinary), blocks.shape, generator=generator)]  # [batch, pos]
    input_ids = torch.where(to_mask, torch.full_like(blocks, mask_id), blocks)
    input_ids = torch.where(to_random, random_ids, input_ids)  # [batch, pos]
    return LMBatch(input_ids=input_ids, labels=labels)


def causal_batch(blocks: torch.Tensor) -> LMBatch:
    """CLM batch: the labels are the inputs (the model shifts them; every position after the first is a target)."""
    return LMBatch(input_ids=blocks, labels=blocks.clone())


@dataclass
class UnigramModel:
    """Add-one (Laplace) smoothed unigram model over the vocabulary, the perplexity baseline.

    ``p(t) = (count(t) + 1) / (n_tokens + vocab_size)``; counts come from the training stream.
    """

    log_probs: torch.Tensor  # [vocab]

    @classmethod
    def fit(cls, stream: torch.Tensor, vocab_size: int) -> "UnigramModel":
        """Count ``stream`` ([n_tokens] ids) into an add-one smoothed unigram model."""
        counts = torch.bincount(stream, minlength=vocab_size).double() + 1.0  # [vocab]
        return cls(log_probs=(counts / counts.sum()).log())

    def perplexity(self, targets: torch.Tensor) -> float:
        """exp(mean negative log-probability) of ``targets`` ([n] ids)."""
        return math.exp(-float(self.log_probs[targets.cpu()].mean()))


def eval_batches(
    blocks: torch.Tensor,
    objective: str,
    batch_size: int,
    seed: int,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    mask_prob: float = 0.15,
    rank: int = 0,
    world_size: int = 1,
) -> list[LMBatch]:
    """Fixed evaluation batches: for MLM every chosen token becomes [MASK] under a mask seeded by ``seed``
    (so every evaluation, of any run with that seed, scores the same positions); for CLM the plain blocks.

    Args:
        blocks: [n_blocks, pos] evaluation blocks.
        objective: "mlm" or "clm".
        batch_size: blocks per batch.
        seed: seed of the fixed mask.
        rank, world_size: this process's share (batches ``rank::world_size``).

    Returns:
        The batches of this rank.
    """
    out: list[LMBatch] = []
    for i, start in enumerate(range(0, len(blocks), batch_size)):
        if i % world_size != rank:
            continue
        chunk = blocks[start:start + batch_size]
        if objective == "mlm":
            out.append(mask_tokens(chunk, generator_for(seed, 2, i), mask_id, vocab_size, special_ids,
                                   mask_prob, replace_probs=(1.0, 0.0)))
        else:
            out.append(causal_batch(chunk))
    return out


def special_token_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Ids of every special token of ``tokenizer`` (never masked, never a random replacement)."""
    return sorted(set(tokenizer.all_special_ids))


# ---------------------------------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class EvalResult:
    """Perplexity on one evaluation set, with the unigram baseline on the same target tokens.

    ``ppl`` is the true perplexity (CLM) or the masked-token pseudo-perplexity under a fixed seeded 15%
    mask (MLM).
    """

    ppl: float
    unigram_ppl: float
    n_targets: int


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[LMBatch], objective: str, unigram: UnigramModel,
             device: torch.device, dist: DistInfo, autocast) -> EvalResult:
    """Perplexity of ``model`` over ``batches`` (summed over ranks), and the unigram model's on the same targets."""
    was_training = model.training
    model.eval()
    nll = count = unigram_nll = 0.0
    for batch in batches:
        batch_dev = batch.to(device)
        with autocast():
            out = model(batch_dev.input_ids, labels=batch_dev.labels,
                        **({"logits_at_labels_only": True} if objective == "mlm" else {}))
        n = batch.n_targets(objective)
        nll += float(out.loss) * n
        count += n
        unigram_nll += -float(unigram.log_probs[batch.targets(objective)].sum())
    model.train(was_training)
    nll, count, unigram_nll = all_reduce_sum([nll, count, unigram_nll], dist, device)
    return EvalResult(ppl=math.exp(nll / count), unigram_ppl=math.exp(unigram_nll / count), n_targets=int(count))
