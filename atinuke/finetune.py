"""``atinuke finetune``: fine-tune an encoder with a task head, then evaluate it on the dev split.

The loop follows the pretraining conventions: AdamW (Loshchilov & Hutter, 2019, arXiv 1711.05101) with
1) linear warmup over the first ``warmup_ratio`` of the steps, then 2) linear decay to zero (Devlin et al.,
2019); gradient clipping; a tqdm bar; TensorBoard in ``out/tb``; ``metrics.csv``; the model written
atomically to ``out/model`` at the end of every epoch (so a killed run keeps its last complete epoch).
Data order and dropout are seeded. The freshly initialised head trains with its own, larger learning rate
(``head_lr``): a random head at the encoder's small fine-tuning rate wastes the first epoch.

Outputs in ``out``: ``model/`` (``load_task_model``), ``metrics.json``, ``predictions.parquet``
(docs/predictions.md), ``metrics.csv``, ``tb/``, ``finetune_config.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch
from tqdm import tqdm

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_json, check_out_dir, check_owned, release_out_dirs
from atinuke.paths import runs_dir
from atinuke.training import decay_groups, resolve_device, warmup_linear, write_metrics_csv

if TYPE_CHECKING:  # the task heads import transformers; `atinuke finetune --help` should not wait for it
    from atinuke.tasks.heads.model import TaskModel

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ("step", "epoch", "loss", "lr", "examples_per_s")


@dataclass
class FinetuneConfig:
    """Settings of one fine-tuning run (each maps onto an ``atinuke finetune`` flag).

    Attributes:
        model: "minilm" or an Atinuke/HF model or run directory.
        task: task registry name; with ``columns`` the name given to the user's dataset ("" = its file stem).
        data: "diag", a path in the official format, or a user dataset (with ``columns``, or ``hf:NAME``).
        out: run directory (default ``runs/finetune/<model>/<task>``).
        epochs: passes over the training set (fractions allowed).
        lr: peak encoder learning rate (default: 5e-5 for HF encoders, 5e-4 for Atinuke, which is small and
            trained briefly, so it tolerates and needs a larger step).
        head_lr: learning rate of the new head (default max(lr, 1e-3)).
        batch_size: examples per step (coreference: documents).
        max_len: longest input in tokens.
        seed: seeds data order, dropout and head initialisation.
        limit: use at most this many training and dev examples (a seeded sample in file order).
        eval_limit: at most this many dev examples (default: ``limit``).
        device: "cpu", "cuda", "auto".
        warmup_ratio: fraction of the steps with linear warmup.
        weight_decay: AdamW weight decay (not on biases and norms).
        clip: gradient norm clip.
        eval_split: split evaluated after training.
        eval_batch_size: examples per forward pass at evaluation.
        log_every: steps between metrics.csv/TensorBoard rows.
        freeze_layers: keep the embeddings and the lowest N encoder layers fixed (0 = train everything); the
            backward pass then stops at layer N, which makes CPU fine-tuning of a pretrained encoder cheaper.
        head: extra ``HeadConfig`` fields (doc_stride, max_span_width, ...).
        overwrite: replace the run's files in a non-empty ``out`` (else such an ``out`` is refused).
        strict_max_len: a ``max_len`` beyond the model's positions is an error (the CLI: the user typed it)
            rather than capped to them (the sweeps' per-task defaults).
        calibrate: after training, tune the QA null threshold / the coreference link threshold on held-out
            training examples (``atinuke.tasks.heads.calibration``); other heads have nothing to tune.
        calibration_limit: at most this many held-out training examples for the calibration.
        columns: the user dataset's column mapping ("text=review,label=stars"; :mod:`atinuke.tasks.userdata`).
        dev_data: the user dataset's dev file (else its validation split, else a seeded held-out part).
        kind: the user task's kind when the mapping does not say it ("regression" for ``label=`` scores).
        dev_fraction: the part of the user's training rows held out as dev when there is no dev data.
    """

    model: str
    task: str
    data: str = "diag"
    out: Optional[str] = None
    epochs: float = 3.0
    lr: Optional[float] = None
    head_lr: Optional[float] = None
    batch_size: int = 16
    max_len: int = 128
    seed: int = 0
    limit: Optional[int] = None
    eval_limit: Optional[int] = None
    device: str = "cpu"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    clip: float = 1.0
    eval_split: str = "dev"
    eval_batch_size: int = 32
    log_every: int = 10
    freeze_layers: int = 0
    head: dict[str, Any] = dataclasses.field(default_factory=dict)
    overwrite: bool = False
    strict_max_len: bool = False
    calibrate: bool = True
    calibration_limit: int = 100
    columns: Optional[str] = None
    dev_data: Optional[str] = None
    kind: Optional[str] = None
    dev_fraction: float = 0.2
    data_dir: Optional[str] = None

    def validate(self) -> None:
        """Raise UserInputError for a value no run can use."""
        if not self.epochs > 0:
            raise UserInputError(f"--epochs must be positive, got {self.epochs}")
        for name in ("batch_size", "max_len", "eval_batch_size", "log_every", "calibration_limit"):
            if int(getattr(self, name)) <= 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be positive, got {value}")
        for name in ("lr", "head_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserInputError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class FinetuneResult:
    """What a run produced: its directory, dev metrics and speed."""

    out: Path
    metrics: dict[str, Any]
    train_examples_per_s: float
    wall_s: float


def _param_groups(model: TaskModel, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """The encoder at ``lr`` and the head at ``head_lr``, each with decay on matrices only."""
    groups = (decay_groups(model.encoder.parameters(), weight_decay, lr=lr)
              + decay_groups(model.head.parameters(), weight_decay, lr=head_lr))
    return [group for group in groups if group["params"]]


def freeze_lower_layers(encoder: torch.nn.Module, n_layers: int) -> int:
    """Set ``requires_grad=False`` on the embeddings and the lowest ``n_layers`` blocks of an Atinuke or
    BERT-family encoder.

    Returns:
        The number of parameters frozen.

    Raises:
        UserInputError: ``n_layers`` is negative or larger than the encoder.
    """
    from atinuke.encoders import embeddings_and_blocks

    embeddings, layers = embeddings_and_blocks(encoder)
    if not 0 <= n_layers <= len(layers):
        raise UserInputError(f"--freeze-layers must be in [0, {len(layers)}], got {n_layers}")
    frozen = 0
    if n_layers == 0:
        return 0
    for module in [embeddings] + layers[:n_layers]:
        for param in module.parameters():
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def default_out(model: str, task: str) -> Path:
    """``runs/finetune/<model name>/<task>``."""
    name = "minilm" if model == "minilm" else (Path(model).name if Path(model).name != "model" else Path(model).parent.name)
    return runs_dir() / "finetune" / name / task


def _held_out(examples: Sequence[Any], train: Sequence[Any], config: FinetuneConfig) -> list[Any]:
    """Training-split examples the run did not train on (a seeded sample of at most ``calibration_limit``);
    the training sample itself when the run used the whole split."""
    from atinuke.finetune_eval import sample_examples, screen_examples

    used = {ex.id for ex in train}
    rest, _ = screen_examples([ex for ex in examples if ex.id not in used])
    if not rest:
        logger.info("no held-out training example: calibrating on the training sample")
        rest = list(train)
    return sample_examples(rest, config.calibration_limit, config.seed)


def _check_doc_stride(config: FinetuneConfig) -> None:
    """Refuse a QA ``--doc-stride`` that leaves no room in the ``--max-len`` window, before anything is written."""
    from atinuke.tasks.heads.common import HeadConfig

    stride = config.head.get("doc_stride")
    if stride is None:
        return
    query = int(config.head.get("max_query_len", HeadConfig.max_query_len))
    room = config.max_len - query - 4  # [CLS] question [SEP] chunk [SEP], and at least one new token per chunk
    if stride > room:
        raise UserInputError(f"--doc-stride {stride} does not fit the --max-len {config.max_len} window (questions "
                             f"take up to {query} tokens); use at most {max(room, 0)}")


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Fine-tune, save, evaluate on ``eval_split``; see the module docstring for the outputs.

    Raises:
        UserInputError: unknown task/model/label, missing data, bad settings, a diverging loss.
    """
    from atinuke.tasks import get_task
    from atinuke.tasks.heads.model import MODEL_FILES
    from atinuke.tasks.userdata import is_user_source, load_user_data

    config.validate()
    wall_start = time.perf_counter()
    user = None
    if config.columns or is_user_source(config.data):
        user = load_user_data(config.data, config.columns, dev_data=config.dev_data,
                              kind=config.kind, name=config.task or None, dev_fraction=config.dev_fraction,
                              seed=config.seed)
        config = dataclasses.replace(config, task=user.spec.name)
    elif config.dev_data or config.kind:
        raise UserInputError("--dev-data and --kind are for a user dataset: give --columns")
    spec = get_task(config.task)
    _check_doc_stride(config)
    device = resolve_device(config.device)
    out = check_out_dir(Path(config.out) if config.out else default_out(config.model, config.task),
                        overwrite=config.overwrite)
    try:
        check_owned(out / "model", MODEL_FILES)  # --overwrite replaces model/ as a whole
        return _finetune(config, user, spec, device, out, wall_start)
    finally:
        release_out_dirs(out)


def _finetune(config: FinetuneConfig, user: Any, spec: Any, device: Any, out: Path, wall_start: float) -> FinetuneResult:
    """The run of :func:`finetune` in its claimed ``out``."""
    from torch.utils.tensorboard import SummaryWriter

    from atinuke.finetune_eval import evaluate_model, sample_examples, screen_examples, write_evaluation
    from atinuke.tasks import TaskData, get_kind, load_task
    from atinuke.tasks.heads import build_task_model, save_task_model
    from atinuke.tasks.heads.calibration import calibrate

    if user is not None:  # nothing is read twice: both splits came with the spec
        train_data = TaskData(spec.name, "train", user.train, Path(config.data), user.train_provenance)
        dev_data = TaskData(spec.name, config.eval_split, user.dev, Path(config.dev_data or config.data),
                            user.dev_provenance)
    else:
        train_data = load_task(config.task, config.data, "train", data_dir=config.data_dir)
        dev_data = load_task(config.task, config.data, config.eval_split, data_dir=config.data_dir)
    train, train_skips = screen_examples(sample_examples(train_data.examples, config.limit, config.seed))
    dev = sample_examples(dev_data.examples, config.eval_limit or config.limit, config.seed)
    if not train:
        raise UserInputError(f"{train_data.path}: no usable training example (skipped: {train_skips})")
    torch.manual_seed(config.seed)
    head = dict(config.head)
    head.setdefault("max_len", config.max_len)
    get_kind(spec.kind).head_defaults(spec, head, config.max_len, train)
    model = build_task_model(config.model, spec, device=device, **head)
    positions = int(getattr(model.encoder.config, "max_len", None) or model.encoder.config.max_position_embeddings)
    if config.max_len > positions:
        if config.strict_max_len:  # the user typed it: a value the model cannot use is an error
            raise UserInputError(f"--max-len {config.max_len} is longer than the model's {positions} positions")
        # A sweep's per-task default (sized for MiniLM's 512 positions) is capped to the model's, and the
        # capped value is what finetune_config.json records.
        logger.info("max_len %d capped to the model's %d positions", config.max_len, positions)
        config = dataclasses.replace(config, max_len=positions)
    if config.freeze_layers:
        logger.info("froze %d parameters (embeddings and %d layers)", freeze_lower_layers(model.encoder, config.freeze_layers),
                    config.freeze_layers)
    lr = config.lr or (5e-5 if model.encoder_kind == "hf" else 5e-4)
    head_lr = config.head_lr or max(lr, 1e-3)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = int(config.warmup_ratio * total_steps)
    optimizer = torch.optim.AdamW(_param_groups(model, lr, head_lr, config.weight_decay))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(warmup, total_steps))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "finetune_config.json", dataclasses.asdict(config) | {
        "lr": lr, "head_lr": head_lr, "total_steps": total_steps, "n_train": len(train), "n_dev": len(dev),
        "head_config": model.config.to_dict(), "provenance": train_data.provenance, **train_data.record(),
        "user_data": None if user is None else user.record})
    writer = SummaryWriter(str(out / "tb"))
    rows: list[dict[str, Any]] = []
    generator = torch.Generator().manual_seed(config.seed)
    logger.info("fine-tuning %s on %s: %d train / %d %s examples, %d steps, lr %.1e (head %.1e)",
                model.encoder_name, spec.name, len(train), len(dev), config.eval_split, total_steps, lr, head_lr)
    model.train()
    step, seen, train_seconds, window_loss, window_n, train_truncated = 0, 0, 0.0, 0.0, 0, 0
    bar = tqdm(total=total_steps, desc=f"finetune {model.encoder_name}/{spec.name}", unit="step", leave=False)
    try:
        epoch = 0
        while step < total_steps:
            order = torch.randperm(len(train), generator=generator).tolist()
            for start in range(0, len(order), config.batch_size):
                if step >= total_steps:
                    break
                chunk = [train[i] for i in order[start: start + config.batch_size]]
                tick = time.perf_counter()
                batch = model.encode(chunk).to(device)
                if epoch == 0:  # each training example is encoded once in the first epoch
                    train_truncated += batch.n_truncated
                loss = model(**batch.model_inputs()).loss
                if not torch.isfinite(loss):
                    raise UserInputError(f"loss became {loss.item()} at step {step}; lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.clip)
                optimizer.step()
                scheduler.step()
                train_seconds += time.perf_counter() - tick
                step += 1
                seen += len(chunk)
                window_loss += loss.item()
                window_n += 1
                bar.update(1)
                if step % config.log_every == 0 or step == total_steps:
                    row = {"step": step, "epoch": round(seen / len(train), 3), "loss": round(window_loss / window_n, 5),
                           "lr": scheduler.get_last_lr()[0], "examples_per_s": round(seen / train_seconds, 2)}
                    rows.append(row)
                    writer.add_scalar("train/loss", row["loss"], step)
                    writer.add_scalar("train/lr", row["lr"], step)
                    write_metrics_csv(out / "metrics.csv", rows, METRIC_COLUMNS)
                    bar.set_postfix(loss=f"{row['loss']:.3f}")
                    window_loss, window_n = 0.0, 0
            epoch += 1
            save_task_model(model, out / "model")  # the checkpoint of the last complete epoch
    finally:
        bar.close()
    if train_truncated:
        logger.warning("%s: %d training example(s) longer than max_len=%d were cut to it", spec.name, train_truncated,
                       config.max_len)
    calibration = None
    if config.calibrate:
        calibration = calibrate(model, _held_out(train_data.examples, train, config), batch_size=config.eval_batch_size)
        if calibration is not None:
            save_task_model(model, out / "model")  # the tuned threshold is part of the model
    evaluation = evaluate_model(model, dev, split=config.eval_split, provenance=dev_data.provenance,
                                skipped=dev_data.skipped, batch_size=config.eval_batch_size)
    speed = round(seen / max(train_seconds, 1e-9), 2)
    evaluation.metrics.update(dev_data.record())
    evaluation.metrics.update({"train_examples_per_s": speed, "train_steps": step, "n_train": len(train),
                               "train_n_truncated": train_truncated,
                               "train_skipped": dict(train_skips) | {f"loader: {k}": v for k, v in train_data.skipped.items()},
                               "train_seconds": round(train_seconds, 2)})
    if calibration is not None:
        evaluation.metrics["calibration"] = calibration.to_dict()
    for key, value in evaluation.metrics.items():
        if isinstance(value, float):
            writer.add_scalar(f"{config.eval_split}/{key}", value, step)
    writer.close()
    write_evaluation(evaluation, out)
    wall = time.perf_counter() - wall_start
    logger.info("%s on %s: %s = %s (%s, %d examples) in %.0f s -> %s", model.encoder_name, spec.name, spec.metric,
                evaluation.metrics.get(spec.metric), evaluation.metrics["provenance"], evaluation.metrics["n_examples"],
                wall, out)
    return FinetuneResult(out=out, metrics=evaluation.metrics, train_examples_per_s=speed, wall_s=wall)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``atinuke finetune``."""
    from atinuke.tasks.userdata import user_kinds

    parser.add_argument("--model", required=True, help="'minilm' or an Atinuke/HF model or run directory")
    parser.add_argument("--task", default="", help="task registry name (squad2, cola, mrpc, stsb, snli, srl, coref, "
                                                  "...); with --columns the name of your dataset's task")
    parser.add_argument("--data", default="auto", help="'auto' (the official files under --data-dir/$ATINUKE_DATA, "
                        "else the registry copy, else silver), 'diag' (diagnostic suite, silver), 'real', 'registry', "
                        "a path in the official format, or your data (CSV/TSV/JSONL/parquet with --columns, "
                        "a saved dataset, hf:NAME[/CONFIG])")
    parser.add_argument("--data-dir", default=None, help="directory of official layouts for --data auto/real "
                                                         "(default $ATINUKE_DATA)")
    parser.add_argument("--columns", default=None, help="your data's column mapping: text=COL,label=COL (pairs "
                        "text_a=,text_b=; regression score=; QA question=,context=,answer_text=[,answer_start=]; "
                        "tagging tokens=,tags=; any kind id=)")
    parser.add_argument("--dev-data", default=None, help="your data's dev file (default: its validation split, else "
                                                         "a seeded held-out --dev-fraction of the training rows)")
    parser.add_argument("--dev-fraction", type=float, default=0.2, help="held-out dev part without --dev-data")
    parser.add_argument("--kind", default=None, choices=tuple(user_kinds()),
                        help="your data's task kind when --columns does not say it (regression with label=)")
    parser.add_argument("--out", default=None, help="run directory (default runs/finetune/<model>/<task>)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=None, help="encoder learning rate (default 5e-5 HF, 5e-4 Atinuke)")
    parser.add_argument("--head-lr", type=float, default=None, help="head learning rate (default max(lr, 1e-3))")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="at most N training and N dev examples")
    parser.add_argument("--eval-limit", type=int, default=None, help="at most N dev examples (default --limit)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, auto")
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--doc-stride", type=int, default=None, help="QA: tokens of overlap between context chunks")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--freeze-layers", type=int, default=0, help="keep embeddings and the lowest N layers fixed")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run's files in a non-empty --out (other files there are kept)")
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="keep the QA null / coreference link threshold at 0 instead of tuning it on "
                             "held-out training examples")


def run(args: argparse.Namespace) -> int:
    """``atinuke finetune``."""
    head = {} if args.doc_stride is None else {"doc_stride": args.doc_stride}
    config = FinetuneConfig(model=args.model, task=args.task, data=args.data, out=args.out, epochs=args.epochs,
                            lr=args.lr, head_lr=args.head_lr, batch_size=args.batch_size, max_len=args.max_len,
                            seed=args.seed, limit=args.limit, eval_limit=args.eval_limit, device=args.device, warmup_ratio=args.warmup_ratio,
                            weight_decay=args.weight_decay, eval_batch_size=args.eval_batch_size,
                            freeze_layers=args.freeze_layers, head=head, overwrite=args.overwrite,
                            strict_max_len=True, calibrate=args.calibrate, columns=args.columns,
                            dev_data=args.dev_data, kind=args.kind, dev_fraction=args.dev_fraction,
                            data_dir=args.data_dir)
    from atinuke.tasks.userdata import is_user_source

    if not config.task and not config.columns and not is_user_source(config.data):
        raise UserInputError("give --task (a benchmark task) or --columns (your data's column mapping)")
    finetune(config)
    return 0
