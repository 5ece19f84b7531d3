"""``atinuke pretrain``: train Atinuke from scratch with masked (MLM) or causal (CLM) language modelling.

The loop follows nanoGPT's train.py (karpathy/nanoGPT) in shape: AdamW (Loshchilov & Hutter, 2019, arXiv
1711.05101) with 1) linear warmup then 2) cosine decay to 10% of the peak, gradient accumulation and
clipping, bf16 autocast and optional ``torch.compile`` on CUDA, and DistributedDataParallel under
``torchrun`` (gloo on CPU, nccl on GPU; rank 0 alone writes). MLM follows BERT (Devlin et al., 2019, arXiv
1810.04805) with the decoder applied to masked positions only.

Outputs under ``--out``: ``model/`` (save_pretrained + tokenizer), ``checkpoints/step-N/`` (the last two),
``metrics.csv``, ``tb/`` (TensorBoard), ``summary.json``; with ``--keep-log-checkpoints`` also weights-only
``snapshots/step-N/`` at steps 0, F, 2F, 4F, ... and the last (F = ``--log-checkpoint-first``) for ``workbench
dynamics``. Data order, masks and dropout are functions of the seed and the step, and checkpoints hold every
piece of state (safetensors and JSON: nothing is unpickled), so ``--resume`` continues bit-exactly.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional, cast

import torch
import torch.distributed as torch_dist
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from atinuke.baseline import ARCHITECTURES, build_bert_baseline
from atinuke.config import EMBED_SCALES, NORM_PLACEMENTS, POSITIONS, PRESETS, preset_config
from atinuke.corpus import BUILTIN_SOURCES, load_texts, read_text_file
from atinuke.errors import UserInputError
from atinuke.io import atomic_dir, atomic_write_json, check_out_path, claim_out_dir, holds_files, release_out_dirs
from atinuke.lm_data import (
    BlockSampler,
    LMBatch,
    UnigramModel,
    causal_batch,
    encode_stream,
    eval_batches,
    evaluate,
    generator_for,
    mask_tokens,
    mix_seed,
    pack_blocks,
    special_token_ids,
)
from atinuke.model import AtinukeForCausalLM, AtinukeForMaskedLM, count_parameters
from atinuke.pretrain_checkpoint import (
    Checkpoint,
    gather_rng,
    load_checkpoint,
    load_optimizer_state,
    log_schedule,
    save_checkpoint,
    save_snapshot,
    share_tokenizer,
)
from atinuke.tokenizer import load_tokenizer, train_tokenizer
from atinuke.training import (
    DistInfo,
    all_reduce_sum,
    decay_groups,
    init_distributed,
    read_metrics_csv,
    resolve_device,
    warmup_cosine,
    write_metrics_csv,
)

logger = logging.getLogger(__name__)

OBJECTIVES = ("mlm", "clm")
SMALL_SOURCES = ("ptb", "wiki", "lee", "sotu", "wikiopen", "shakespeare")
# Per-preset training defaults (the architecture lives in atinuke.config.PRESETS).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    # ~9 minutes on 2 CPU cores (seed 0 of Atinuke and BERT ships in atinuke/checkpoints/). Small batches
    # (more updates per token early on) and no dropout (the run sees each block about six times). 1,800
    # steps left PTB valid pseudo-perplexity at 320 (unigram 753), still falling steeply; 5,400 reach 94.
    "tiny": dict(steps=5400, batch_size=16, seq_len=128, lr=2e-3, warmup=300, dropout=0.0, eval_every=1800,
                 checkpoint_every=900),
    # The small scale trains on the larger corpus (its tokenizer too); the tiny runs keep PTB + wiki + Lee.
    "small": dict(steps=20000, batch_size=32, seq_len=256, lr=7e-4, warmup=1000, eval_every=2000, checkpoint_every=2000,
                  sources=SMALL_SOURCES),
    "base": dict(steps=100000, batch_size=64, seq_len=512, lr=2e-4, warmup=10000, eval_every=5000, checkpoint_every=5000),
}
# Evaluation always masks 15% (BERT's rate), whatever --mask-prob trains with, so runs stay comparable.
EVAL_MASK_PROB = 0.15
# Settings that may change between a run and its resumption; every other field must match the checkpoint.
OPERATIONAL_FIELDS = ("out", "eval_every", "checkpoint_every", "keep_checkpoints", "compile", "device", "stop_after",
                      "eval_batch_size", "eval_max_blocks", "keep_log_checkpoints", "log_checkpoint_first")
METRIC_COLUMNS = ("step", "epoch", "lr", "loss", "grad_norm", "tokens", "tokens_per_s", "elapsed_s",
                  "val_ppl", "val_unigram_ppl")


@dataclass(frozen=True)
class PretrainConfig:
    """Every setting of a pretraining run (the CLI flags map one to one onto these fields).

    Args:
        preset: architecture preset ("tiny", "small", "base").
        objective: "mlm" (masked LM, encoder) or "clm" (causal LM, decoder).
        out: run directory.
        sources: training text: "ptb", "wiki", "lee" or UTF-8 text file paths.
        steps: optimizer steps.
        batch_size: blocks per micro-batch per process; the global batch is batch_size x world x grad_accum.
        seq_len: tokens per block ([CLS] included); at most the preset's max_len.
        lr: peak learning rate. warmup: steps of linear warmup.
        grad_accum: micro-batches per optimizer step. clip: gradient-norm clip (0 disables).
        weight_decay: AdamW decay of matrices (biases and layer norms are not decayed).
        vocab_size: WordPiece vocabulary size. mask_prob: MLM masking rate.
        tokenizer: reuse the tokenizer in this directory (or run directory) instead of training one; the
            ``tokenizers`` WordPiece trainer orders its vocabulary differently from process to process, so
            runs that must be bit-identical share one.
        dropout: overrides the preset's dropout when set.
        eval_every, checkpoint_every: in steps (0 disables periodic ones); keep_checkpoints: how many stay.
        keep_log_checkpoints: also keep weights-only snapshots at steps 0, F, 2F, 4F, ... and the last
            (F = log_checkpoint_first) under ``snapshots/step-N/`` (:func:`log_schedule`).
        eval_batch_size: blocks per evaluation batch. eval_max_blocks: evaluate on the first N blocks of PTB
            valid/test only (quick runs; None = all).
        seed: seeds initialisation, data order, masks and dropout.
        compile: torch.compile the model. device: "auto", "cpu", "cuda" or "cuda:N".
        stop_after: stop (with a checkpoint) after this step, as a scheduler's time limit would.
        arch: "atinuke" (the paper's model) or "bert" (the same-budget baseline, ``atinuke.baseline``).
        positions, norm_placement, embed_scale: the Atinuke ablation switches (``AtinukeConfig``).
    """

    preset: str = "tiny"
    objective: str = "mlm"
    out: str = ""
    sources: tuple[str, ...] = ("ptb", "wiki", "lee")
    steps: int = 5400
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 2e-3
    warmup: int = 300
    grad_accum: int = 1
    clip: float = 1.0
    weight_decay: float = 0.01
    vocab_size: int = 8000
    tokenizer: Optional[str] = None
    mask_prob: float = 0.15
    dropout: Optional[float] = None
    eval_every: int = 600
    checkpoint_every: int = 600
    keep_checkpoints: int = 2
    eval_batch_size: int = 64
    eval_max_blocks: Optional[int] = None
    seed: int = 0
    compile: bool = False
    device: str = "auto"
    stop_after: Optional[int] = None
    keep_log_checkpoints: bool = False
    log_checkpoint_first: int = 64
    arch: str = "atinuke"
    positions: str = "sinusoidal"
    norm_placement: str = "post"
    embed_scale: str = "sqrt"

    def validate(self) -> None:
        """Raise :class:`UserInputError` naming the first bad value."""
        if self.preset not in PRESETS:
            raise UserInputError(f"unknown preset {self.preset!r}; choose from {sorted(PRESETS)}")
        if self.objective not in OBJECTIVES:
            raise UserInputError(f"unknown objective {self.objective!r}; choose from {list(OBJECTIVES)}")
        if not self.out:
            raise UserInputError("--out is required (the run directory)")
        if not self.sources or any(not s.strip() for s in self.sources):
            raise UserInputError(f"--sources {','.join(self.sources)!r} names an empty source")
        max_len = PRESETS[self.preset].max_len
        if not 2 <= self.seq_len <= max_len:
            raise UserInputError(f"--seq-len {self.seq_len} is outside [2, {max_len}] (the {self.preset} preset's max_len)")
        for name in ("steps", "batch_size", "grad_accum", "vocab_size", "keep_checkpoints", "eval_batch_size",
                     "log_checkpoint_first"):
            if getattr(self, name) <= 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "checkpoint_every", "clip", "weight_decay"):
            if getattr(self, name) < 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserInputError(f"--lr must be positive, got {self.lr}")
        if not 0.0 < self.mask_prob < 1.0:
            raise UserInputError(f"--mask-prob must be in (0, 1), got {self.mask_prob}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise UserInputError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.vocab_size < 100:
            raise UserInputError(f"--vocab-size {self.vocab_size} is too small (at least 100)")
        if self.eval_max_blocks is not None and self.eval_max_blocks <= 0:
            raise UserInputError(f"--eval-max-blocks must be positive, got {self.eval_max_blocks}")
        choices = {"arch": ARCHITECTURES, "positions": POSITIONS, "norm_placement": NORM_PLACEMENTS,
                   "embed_scale": EMBED_SCALES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserInputError(f"--{name.replace('_', '-')} {getattr(self, name)!r} is not one of "
                                     f"{', '.join(allowed)}")
        if self.arch == "bert":
            if self.objective != "mlm":
                raise UserInputError("--arch bert is an encoder baseline; use --objective mlm")
            changed = [name for name in ("positions", "norm_placement", "embed_scale")
                       if getattr(self, name) != getattr(PretrainConfig, name)]
            if changed:
                raise UserInputError(f"--{changed[0].replace('_', '-')} is an Atinuke switch; BERT's layout is fixed "
                                     "(learned positions, post-norm, no scale)")
        if self.stop_after is not None and self.stop_after <= 0:
            raise UserInputError(f"--stop-after must be positive, got {self.stop_after}")


# ----------------------------------------------------------------------------------------------- CLI

_FLAGS: list[tuple[str, type, str]] = [
    ("steps", int, "optimizer steps"), ("batch_size", int, "blocks per micro-batch per process"),
    ("seq_len", int, "tokens per block"), ("lr", float, "peak learning rate"),
    ("warmup", int, "linear warmup steps"), ("grad_accum", int, "micro-batches per step"),
    ("clip", float, "gradient-norm clip (0 disables)"), ("weight_decay", float, "AdamW weight decay"),
    ("vocab_size", int, "tokenizer vocabulary size"), ("tokenizer", str, "reuse this tokenizer directory"), ("mask_prob", float, "MLM masking rate"),
    ("dropout", float, "override the preset's dropout"), ("eval_every", int, "evaluate every N steps"),
    ("checkpoint_every", int, "checkpoint every N steps"), ("keep_checkpoints", int, "checkpoints kept"),
    ("eval_batch_size", int, "blocks per evaluation batch"), ("seed", int, "random seed"),
    ("eval_max_blocks", int, "evaluate on the first N blocks of PTB valid/test only (quick runs)"),
    ("stop_after", int, "stop after this step with a checkpoint (resume later with --resume)"),
    ("log_checkpoint_first", int, "with --keep-log-checkpoints: the first step after 0 (default 64)"),
    ("arch", str, "atinuke (default) or bert: the same-size BERT baseline trained by the same loop"),
    ("positions", str, "Atinuke ablation: sinusoidal (default) or learned"),
    ("norm_placement", str, "Atinuke ablation: post (default, the paper) or pre"),
    ("embed_scale", str, "Atinuke ablation: sqrt (default, the paper) or none"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``pretrain`` flags (defaults None: unset flags come from the preset or the checkpoint)."""
    parser.add_argument("--preset", default=None, help=f"architecture preset: {', '.join(PRESETS)} (default tiny)")
    parser.add_argument("--objective", default=None, help="mlm or clm (default mlm)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--sources", default=None, help="comma-separated: ptb, wiki, lee or text file paths")
    for name, kind, help_line in _FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_line)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument("--keep-log-checkpoints", action="store_true", default=None,
                        help="also keep weights-only snapshots at steps 0, 64, 128, 256, ... and the last (snapshots/)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")


def requested_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The fields the user set explicitly."""
    given = {f.name: getattr(args, f.name, None) for f in fields(PretrainConfig)}
    if given["sources"] is not None:
        given["sources"] = tuple(s.strip() for s in given["sources"].split(","))
    return {k: v for k, v in given.items() if v is not None}


def resolve_config(requested: dict[str, Any], saved: Optional[PretrainConfig] = None) -> PretrainConfig:
    """Build the run's config: explicit flags over the checkpoint's config (on resume) or the preset's defaults.

    Raises:
        UserInputError: when a flag contradicts the checkpoint being resumed, or a value is invalid.
    """
    if saved is not None:
        for name, value in requested.items():
            if name not in OPERATIONAL_FIELDS and value != getattr(saved, name):
                raise UserInputError(f"--{name.replace('_', '-')} {value} does not match the checkpoint's "
                                     f"{getattr(saved, name)} (resume with the original settings)")
        # stop_after belongs to one invocation: a resumed run goes on to the end unless asked again.
        config = replace(saved, **{"stop_after": None, **{k: v for k, v in requested.items() if k in OPERATIONAL_FIELDS}})
    else:
        preset = requested.get("preset", "tiny")
        if preset not in PRESETS:
            raise UserInputError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        config = PretrainConfig(**{**TRAIN_DEFAULTS[preset], **requested})
    config.validate()
    return config


# ------------------------------------------------------------------------------------------ training

def lr_lambda(config: PretrainConfig) -> Callable[[int], float]:
    """Multiplier on the peak lr at a step: 1) linear warmup, 2) cosine decay to 10% (nanoGPT's schedule)."""
    return warmup_cosine(config.warmup, config.steps, floor=0.1)


@dataclass
class RunData:
    """Token blocks of a run."""

    train: torch.Tensor  # [n_blocks, seq_len]
    valid: torch.Tensor  # [n_valid_blocks, seq_len]
    test: torch.Tensor  # [n_test_blocks, seq_len]
    unigram: UnigramModel
    n_train_tokens: int


def _load_sources(sources: tuple[str, ...]) -> list[str]:
    """Read files first (they fail fastest), then the built-in corpora."""
    texts: dict[str, list[str]] = {}
    for source in sources:
        if source not in BUILTIN_SOURCES:
            if not Path(source).exists() and "/" not in source and not source.endswith(".txt"):
                raise UserInputError(f"unknown corpus source {source!r}; choose from {BUILTIN_SOURCES} or a text file path")
            texts[source] = read_text_file(source)
    for source in sources:
        if source in BUILTIN_SOURCES:
            texts[source] = load_texts(source, "train")
    return [doc for source in sources for doc in texts[source]]


def _prepare_data(tokenizer: PreTrainedTokenizerFast, texts: list[str], config: PretrainConfig) -> RunData:
    cls_id = tokenizer.cls_token_id
    stream = encode_stream(tokenizer, texts)
    train = pack_blocks(stream, config.seq_len, cls_id, name="the training corpus")
    valid = pack_blocks(encode_stream(tokenizer, load_texts("ptb", "valid")), config.seq_len, cls_id, "PTB valid")
    test = pack_blocks(encode_stream(tokenizer, load_texts("ptb", "test")), config.seq_len, cls_id, "PTB test")
    if config.eval_max_blocks:
        valid, test = valid[: config.eval_max_blocks], test[: config.eval_max_blocks]
    unigram = UnigramModel.fit(train.flatten(), len(tokenizer))
    logger.info("training data: %s tokens in %s blocks of %d; PTB valid %d blocks, test %d blocks",
                f"{stream.numel():,}", f"{len(train):,}", config.seq_len, len(valid), len(test))
    return RunData(train=train, valid=valid, test=test, unigram=unigram, n_train_tokens=int(train.numel()))


def _saved_config(checkpoint: Checkpoint) -> PretrainConfig:
    try:
        return PretrainConfig(**{**checkpoint.config, "sources": tuple(checkpoint.config["sources"])})
    except (KeyError, TypeError) as error:
        raise UserInputError(f"{checkpoint.path / 'trainer_state.json'}: config does not fit this version "
                             f"of atinuke pretrain ({error})") from error


def _check_out_dir(out: Path, resume: bool) -> None:
    check_out_path(out)
    if not resume and out.exists() and holds_files(out):
        raise UserInputError(f"--out {out} already holds files; pass --resume to continue that run or choose another directory")


def run_argv(argv: list[str]) -> None:
    """Run ``atinuke pretrain`` with ``argv`` in this process, with its own flags and validation (the experiment
    and the learning-rate sweep call it for each run)."""
    from atinuke.validation import RaisingArgumentParser

    parser = RaisingArgumentParser(prog="atinuke pretrain")
    add_arguments(parser)
    run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Entry point of ``atinuke pretrain``."""
    requested = requested_settings(args)
    out = Path(requested["out"])
    checkpoint = load_checkpoint(out) if args.resume else None
    config = resolve_config(requested, _saved_config(checkpoint) if checkpoint else None)
    _check_out_dir(out, args.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # one claim per run: rank 0's (its other ranks share the directory)
        claim_out_dir(out)
        _check_out_dir(out, args.resume)  # a run that finished meanwhile left its files there
    device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist = init_distributed(device)
    try:
        train(config, out, device, dist, checkpoint)
    finally:
        release_out_dirs(out)
        if dist.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    return 0


def train(config: PretrainConfig, out: Path, device: torch.device, dist: DistInfo,
          checkpoint: Optional[Checkpoint] = None) -> Optional[dict[str, Any]]:
    """Run (or continue) pretraining; rank 0 writes everything under ``out``.

    Returns:
        The summary dict on rank 0 once the run reaches ``config.steps`` (None when stopped early or on other ranks).
    """
    started = time.time()
    texts = _load_sources(config.sources)
    if checkpoint is not None:
        if int(checkpoint.state["world_size"]) != dist.world_size:
            raise UserInputError(f"{checkpoint.path}: written by {checkpoint.state['world_size']} processes, "
                                 f"resumed with {dist.world_size}; data sharding would differ")
        tokenizer = checkpoint.tokenizer
    elif config.tokenizer:
        tokenizer = load_tokenizer(Path(config.tokenizer) / "model" if (Path(config.tokenizer) / "model" /
                                                                          "tokenizer.json").is_file() else config.tokenizer)
    else:
        trained = train_tokenizer(texts, vocab_size=config.vocab_size) if dist.is_main else None
        tokenizer = share_tokenizer(trained, dist)
    data = _prepare_data(tokenizer, texts, config)
    specials = special_token_ids(tokenizer)
    vocab = len(tokenizer)

    # Model: seeded init (DDP then broadcasts rank 0's weights anyway).
    torch.manual_seed(config.seed)
    overrides = {"causal": config.objective == "clm", "positions": config.positions,
                 "norm_placement": config.norm_placement, "embed_scale": config.embed_scale}
    if config.dropout is not None:
        overrides["dropout"] = config.dropout
    model_config = preset_config(config.preset, vocab_size=vocab, pad_token_id=tokenizer.pad_token_id, **overrides)
    if config.arch == "bert":
        raw_model: PreTrainedModel = build_bert_baseline(model_config)
    else:
        model_class = AtinukeForMaskedLM if config.objective == "mlm" else AtinukeForCausalLM
        raw_model = model_class(model_config)
    if checkpoint is not None:
        missing, unexpected = raw_model.load_state_dict(checkpoint.model_weights, strict=False) if _shapes_match(
            raw_model, checkpoint) else (None, None)
        tied = {"lm_head.weight", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
        if missing is None or set(missing) - tied or unexpected:
            raise UserInputError(f"{checkpoint.path / 'model' / 'model.safetensors'}: weights do not match the "
                                 f"{config.preset} {config.objective} model (missing {sorted(set(missing or []) - tied)[:3]}, "
                                 f"unexpected {list(unexpected or [])[:3]})")
        raw_model.tie_weights()
    # transformers decorates PreTrainedModel.to with functools.wraps(nn.Module.to), which mypy reads as an
    # unbound function that wants the model as its first argument.
    raw_model.to(device).train()  # type: ignore[arg-type]
    optimizer = torch.optim.AdamW(decay_groups(raw_model.parameters(), config.weight_decay), lr=config.lr, betas=(0.9, 0.98),
                                  eps=1e-6, fused=device.type == "cuda")
    scheduler = LambdaLR(optimizer, lr_lambda(config))
    start_step = 0
    if checkpoint is not None:
        load_optimizer_state(optimizer, checkpoint)
        scheduler.load_state_dict(checkpoint.state["scheduler"])
        start_step = int(checkpoint.state["step"])
        torch.set_rng_state(checkpoint.rng[f"cpu.rank{dist.rank}"])
        if device.type == "cuda" and f"cuda.rank{dist.rank}" in checkpoint.rng:
            torch.cuda.set_rng_state(checkpoint.rng[f"cuda.rank{dist.rank}"], device)
    else:
        torch.manual_seed(mix_seed(config.seed, 3, dist.rank))  # each rank its own dropout stream
    # torch.compile's annotation is Callable; given a module it returns one (an OptimizedModule).
    model: torch.nn.Module = cast(torch.nn.Module, torch.compile(raw_model)) if config.compile else raw_model
    ddp: Optional[torch.nn.parallel.DistributedDataParallel] = None
    if dist.enabled:
        model = ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda"
                else contextlib.nullcontext)
    params = count_parameters(raw_model)
    logger.info("model: %s %s %s, %s parameters (%s non-embedding), device %s, %d process(es)", config.arch,
                config.preset, config.objective, f"{params.total:,}", f"{params.non_embedding:,}", device, dist.world_size)

    batch = config.batch_size
    global_batch = batch * dist.world_size
    sampler = BlockSampler(len(data.train), global_batch, config.seed)
    valid_batches = eval_batches(data.valid, config.objective, config.eval_batch_size, config.seed, tokenizer.mask_token_id,
                                 vocab, specials, EVAL_MASK_PROB, dist.rank, dist.world_size)

    def make_global_batch(micro: int) -> LMBatch:
        blocks = data.train[sampler.indices(micro)]  # [global_batch, seq_len]
        if config.objective == "clm":
            return causal_batch(blocks)
        return mask_tokens(blocks, generator_for(config.seed, 4, micro), tokenizer.mask_token_id, vocab, specials,
                           config.mask_prob)

    writer = metrics_path = None
    rows: list[dict[str, Any]] = []
    if dist.is_main:
        from torch.utils.tensorboard import SummaryWriter

        out.mkdir(parents=True, exist_ok=True)
        metrics_path = out / "metrics.csv"
        rows = read_metrics_csv(metrics_path, start_step) if checkpoint is not None else []
        writer = SummaryWriter(str(out / "tb"), purge_step=start_step + 1 if checkpoint is not None else None)
    tokens_per_step = global_batch * config.grad_accum * config.seq_len
    tokens_seen = int(checkpoint.state.get("tokens", 0)) if checkpoint else 0
    train_time = 0.0
    session_tokens = 0
    step = start_step
    last_checkpoint = start_step if checkpoint else -1

    def write_checkpoint(at_step: int) -> None:
        rng = gather_rng(dist, device)
        if dist.is_main:
            state = {"step": at_step, "micro_batch": at_step * config.grad_accum, "tokens": tokens_seen,
                     "world_size": dist.world_size, "config": asdict(config), "torch": torch.__version__}
            path = save_checkpoint(out, at_step, raw_model, tokenizer, optimizer, scheduler, rng, state,
                                   config.keep_checkpoints)
            assert metrics_path is not None  # set on rank 0 above
            write_metrics_csv(metrics_path, rows, METRIC_COLUMNS)
            logger.info("checkpoint written: %s", path)

    stop_at = min(config.steps, config.stop_after or config.steps)
    snapshot_steps = set(log_schedule(config.steps, config.log_checkpoint_first)) if config.keep_log_checkpoints else set()

    def write_snapshot(at_step: int) -> None:
        # Weights only, no RNG touched, so a run with snapshots trains exactly as one without; a resumed run
        # rewrites none it already has.
        if dist.is_main and at_step in snapshot_steps and not (out / "snapshots" / f"step-{at_step}").is_dir():
            save_snapshot(out, at_step, tokens_seen, raw_model, tokenizer)

    write_snapshot(start_step)
    # TQDM_DISABLE: tqdm's own switch, which an explicit ``disable`` would otherwise override (worker processes
    # of ``atinuke.parallel`` set it, so that their bars do not interleave in one log).
    bar = tqdm(total=config.steps, initial=start_step, disable=not dist.is_main or bool(os.environ.get("TQDM_DISABLE")),
               desc="pretrain", unit="step", dynamic_ncols=True)
    for step in range(start_step + 1, stop_at + 1):
        tick = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        micro_batches = [make_global_batch((step - 1) * config.grad_accum + a) for a in range(config.grad_accum)]
        # Token-weighted loss over the whole global step: each rank's sum over its targets divided by the
        # global count (times world_size, since DDP averages gradients), so any split gives the same gradient.
        n_total = sum(mb.n_targets(config.objective) for mb in micro_batches)
        loss_sum = 0.0
        for a, global_mb in enumerate(micro_batches):
            local = global_mb[dist.rank * batch:(dist.rank + 1) * batch].to(device)
            n_local = local.n_targets(config.objective)
            sync = contextlib.nullcontext() if (ddp is None or a == config.grad_accum - 1) else ddp.no_sync()
            with sync:
                with autocast():
                    outputs = model(local.input_ids, labels=local.labels,
                                    **({"logits_at_labels_only": True} if config.objective == "mlm" else {}))
                scaled = outputs.loss * (n_local * dist.world_size / n_total)
                scaled.backward()
            loss_sum += float(outputs.loss.detach()) * n_local
        max_norm = config.clip if config.clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(raw_model.parameters(), max_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss = all_reduce_sum([loss_sum], dist, device)[0] / n_total
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss} at step {step}; lower --lr or raise --warmup")
        tokens_seen += tokens_per_step
        session_tokens += tokens_per_step
        train_time += time.perf_counter() - tick
        row = {"step": step, "epoch": round(sampler.epoch_of(step * config.grad_accum), 4), "lr": lr, "loss": loss,
               "grad_norm": grad_norm, "tokens": tokens_seen, "tokens_per_s": round(session_tokens / train_time, 1),
               "elapsed_s": round(time.time() - started, 2), "val_ppl": "", "val_unigram_ppl": ""}
        if config.eval_every and step % config.eval_every == 0 and step != config.steps:
            result = evaluate(raw_model, valid_batches, config.objective, data.unigram, device, dist, autocast)
            row.update(val_ppl=result.ppl, val_unigram_ppl=result.unigram_ppl)
            if dist.is_main:
                assert writer is not None  # opened on rank 0 above
                writer.add_scalar("val/ppl", result.ppl, step)
                logger.info("step %d: val ppl %.2f (unigram %.2f)", step, result.ppl, result.unigram_ppl)
        if dist.is_main:
            assert writer is not None  # opened on rank 0 above
            rows.append(row)
            writer.add_scalar("train/loss", loss, step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/grad_norm", grad_norm, step)
            writer.add_scalar("train/tokens_per_s", row["tokens_per_s"], step)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
            bar.update(1)
        write_snapshot(step)
        if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == stop_at:
            write_checkpoint(step)
            last_checkpoint = step
    bar.close()
    if stop_at < config.steps:
        if last_checkpoint != stop_at:
            write_checkpoint(stop_at)
        logger.info("stopped after step %d of %d; continue with --resume", stop_at, config.steps)
        if writer is not None:
            writer.close()
        return None
    return _finish(config, out, dist, device, raw_model, tokenizer, data, autocast, rows, writer, metrics_path,
                   params, tokens_seen, session_tokens, train_time, started, valid_batches, specials)


def _shapes_match(model: torch.nn.Module, checkpoint: Checkpoint) -> bool:
    expected = model.state_dict()
    return all(name not in expected or expected[name].shape == tensor.shape
               for name, tensor in checkpoint.model_weights.items())


def _finish(config, out, dist, device, raw_model, tokenizer, data, autocast, rows, writer, metrics_path, params,
            tokens_seen, session_tokens, train_time, started, valid_batches, specials) -> Optional[dict[str, Any]]:
    """Final evaluation on PTB valid and test, then model/, metrics.csv and summary.json."""
    test_batches = eval_batches(data.test, config.objective, config.eval_batch_size, config.seed + 1,
                                tokenizer.mask_token_id, len(tokenizer), specials, EVAL_MASK_PROB,
                                dist.rank, dist.world_size)
    valid = evaluate(raw_model, valid_batches, config.objective, data.unigram, device, dist, autocast)
    test = evaluate(raw_model, test_batches, config.objective, data.unigram, device, dist, autocast)
    if not dist.is_main:
        return None
    if rows:
        rows[-1].update(val_ppl=valid.ppl, val_unigram_ppl=valid.unigram_ppl)
    writer.add_scalar("val/ppl", valid.ppl, config.steps)
    writer.close()
    with atomic_dir(out / "model") as tmp:
        raw_model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_metrics_csv(metrics_path, rows, METRIC_COLUMNS)
    summary = {
        "arch": config.arch, "config": asdict(config), "model_config": raw_model.config.to_diff_dict(),
        "parameters": asdict(params), "objective": config.objective,
        "perplexity_kind": "pseudo (masked tokens, fixed seeded 15% mask)" if config.objective == "mlm" else "causal",
        "val_ppl": valid.ppl, "test_ppl": test.ppl, "val_unigram_ppl": valid.unigram_ppl,
        "test_unigram_ppl": test.unigram_ppl, "val_targets": valid.n_targets, "test_targets": test.n_targets,
        "final_loss": float(rows[-1]["loss"]) if rows else None, "tokens": tokens_seen,
        "train_tokens_in_corpus": data.n_train_tokens,
        "tokens_per_s": session_tokens / train_time if train_time else None,
        "wall_time_s": time.time() - started, "seed": config.seed, "world_size": dist.world_size,
        "device": str(device), "torch": torch.__version__,
    }
    atomic_write_json(out / "summary.json", summary)
    logger.info("done: PTB valid ppl %.2f (unigram %.2f), test ppl %.2f (unigram %.2f); model in %s",
                valid.ppl, valid.unigram_ppl, test.ppl, test.unigram_ppl, out / "model")
    return summary
