"""Fine-tune tiny Atinuke and MiniLM on every diagnostic task and tabulate the dev scores.

    python -m atinuke.finetune_all --atinuke runs/pretrain/tiny-mlm --out runs/finetune

Writes ``<out>/{atinuke,minilm}/<task>/`` (the ``atinuke finetune`` outputs) and ``<out>/summary.csv`` with
columns ``model, task, metric, value, provenance`` (every official metric of each run, the task's headline
metric first). A task whose run directory already has ``metrics.json`` is not run again.

The per-task settings (``TASK_DEFAULTS``) are sized so that the whole sweep takes about fifteen minutes on two
CPU cores: both models see the same seeded training sample; MiniLM trains its top three layers and the head
(``freeze_layers=3``; all layers for SRL, four frozen for coreference; the pretrained lower layers already encode what these tasks need, and backpropagating
through them would triple the cost), Atinuke trains everything for more epochs (it is ~20x cheaper per
example and starts from a small pretraining run). ``--scale`` multiplies every example count (use a larger
value with a GPU or more time). Each run records its data source (real, registry-real or silver: rule-made
labels on real text) in ``metrics.json``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_text

if TYPE_CHECKING:
    from atinuke.finetune import FinetuneConfig

logger = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("model", "task", "metric", "value", "provenance")
_BOOKKEEPING = {"n_examples", "n_skipped", "n_truncated", "train_n_truncated", "eval_examples_per_s",
                "train_examples_per_s", "train_steps", "n_train", "train_seconds", "total", "HasAns_total", "NoAns_total"}


@dataclass(frozen=True)
class TaskDefaults:
    """Sweep settings of one task.

    Attributes:
        train: training examples (a seeded sample; coreference: documents).
        dev: dev examples evaluated.
        epochs_atinuke, epochs_minilm: passes over the training sample.
        batch_size: examples per step.
        max_len: longest input in tokens (QA contexts beyond it use doc stride).
        freeze_minilm: MiniLM layers kept fixed (with the embeddings).
        lr_minilm: MiniLM's encoder learning rate when not ``LEARNING_RATES["minilm"]``.
        head_lr: the task head's learning rate for every budget (None: ``atinuke finetune``'s default).
        cost_factor: CPU time per training token relative to single-sequence tasks (QA contexts become several
            chunks per example; coreference scores span pairs), for :func:`estimated_cost`.
    """

    train: int
    dev: int
    epochs_atinuke: float
    epochs_minilm: float
    batch_size: int
    max_len: int
    freeze_minilm: int = 4
    lr_minilm: Optional[float] = None
    head_lr: Optional[float] = None
    cost_factor: float = 1.0


TASK_DEFAULTS: dict[str, TaskDefaults] = {
    # Short single sentences / pairs: cheap per example, so the most data. MiniLM needs ~190 steps with its
    # top three layers free to leave chance level on these rule-made tasks (SNLI dev: 0.38 after 63 steps
    # with two free layers, 0.91 after 189 steps with three).
    "cola": TaskDefaults(train=800, dev=300, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=64, freeze_minilm=3),
    "mrpc": TaskDefaults(train=800, dev=300, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=96, freeze_minilm=3),
    "stsb": TaskDefaults(train=800, dev=300, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=96, freeze_minilm=3),
    "snli": TaskDefaults(train=800, dev=300, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=96, freeze_minilm=3),
    # The predicate indicator sits on the input embeddings, so SRL backpropagates through every layer.
    # Freezing saves nothing here, and 60 tags need the capacity. 100 MiniLM steps at 2e-4 left it predicting
    # "O" (dev F1 0.160, recall 0.10); 200 steps at 5e-4 with a 3e-3 head give 0.686. Tiny Atinuke: 150 steps
    # 0.088, 500 steps with the faster head 0.236.
    "srl": TaskDefaults(train=800, dev=300, epochs_atinuke=10, epochs_minilm=4, batch_size=16, max_len=96,
                        freeze_minilm=0, lr_minilm=5e-4, head_lr=3e-3),
    # Contexts of ~200 words: two or three chunks per question. 150 questions taught both models only to
    # abstain; 400 is the least that gets answers out.
    "squad2": TaskDefaults(train=400, dev=150, epochs_atinuke=6, epochs_minilm=3, batch_size=8, max_len=192,
                           freeze_minilm=3, cost_factor=2.5),
    # Documents of ~100 words; the pairwise antecedent scorer dominates.
    "coref": TaskDefaults(train=100, dev=60, epochs_atinuke=6, epochs_minilm=4, batch_size=4, max_len=128,
                          cost_factor=1.6),
    # Human-labelled data (atinuke.tasks.sources; real when $ATINUKE_DATA holds it, registry-real after
    # `atinuke prepare-data`). The training set is a seeded sample, as above; on real data the whole dev split
    # is evaluated at scale >= 1 (CoLA in_domain_dev 527, SST-2 872, MRPC's 500, STS's seeded 1,210-pair cut,
    # RTE-3 dev 800, SICK trial 500, GAP validation 454, VADER's 1,016; ``dev`` is their size, scaled below 1).
    # The sets the demo adds (sick, gap, vader-movies) train on 400 / 320 / 400 examples, so that the demo's
    # estimated cost grows by under 10% (docs/experiment.md).
    "sst2": TaskDefaults(train=800, dev=872, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=64, freeze_minilm=3),
    "sts": TaskDefaults(train=800, dev=1210, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=96, freeze_minilm=3),
    # RTE premises run to ~100 words: a longer window, so the most expensive pair task per example.
    "rte": TaskDefaults(train=800, dev=800, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=128, freeze_minilm=3),
    "sick": TaskDefaults(train=400, dev=500, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=64, freeze_minilm=3),
    # Wikipedia paragraphs cut to a window around the pronoun and both names (atinuke.tasks.kinds.gap).
    "gap": TaskDefaults(train=320, dev=454, epochs_atinuke=4, epochs_minilm=2, batch_size=8, max_len=128, freeze_minilm=3),
    "vader-movies": TaskDefaults(train=400, dev=1016, epochs_atinuke=6, epochs_minilm=3, batch_size=16, max_len=64,
                                 freeze_minilm=3),
}
# A real or registry-real dev split is evaluated whole at scale >= 1 (every one is under 1,300 examples).
WHOLE_SPLIT = 1_000_000
# Few steps per run, so larger peak rates than the usual 2e-5..5e-5 (Devlin et al., 2019) for full-data runs.
LEARNING_RATES = {"atinuke": 1e-3, "minilm": 2e-4}
# CPU time per training token relative to the tiny from-scratch models (measured on the demo: MiniLM's SNLI
# steps cost ~8x tiny Atinuke's per token).
BUDGET_COST = {"atinuke": 1.0, "minilm": 8.0}


def estimated_cost(task: str, budget: str) -> float:
    """Relative CPU cost of one sweep run: training tokens x the task's and the budget's cost per token.

    Only the order matters: ``atinuke experiment --jobs N`` starts the costliest runs first, so that the last
    minutes are not one long run on one core while the others idle (longest-processing-time-first scheduling).
    """
    settings = TASK_DEFAULTS[task]
    epochs = settings.epochs_minilm if budget == "minilm" else settings.epochs_atinuke
    steps = math.ceil(settings.train / settings.batch_size) * epochs
    return steps * settings.batch_size * settings.max_len * settings.cost_factor * BUDGET_COST[budget]


def metric_items(metrics: dict) -> list[tuple[str, float]]:
    """The official metrics of a run's ``metrics.json`` as (name, value), the headline metric first, then
    by name; counts, speeds and other bookkeeping are left out."""
    headline = metrics.get("headline_metric")
    keys = [k for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _BOOKKEEPING]
    keys.sort(key=lambda k: (k != headline, k))
    return [(k, metrics[k]) for k in keys]


def _summary_rows(model_dir: str, metrics: dict) -> list[dict]:
    return [{"model": metrics.get("model", model_dir), "task": metrics["task"], "metric": k,
             "value": value, "provenance": metrics.get("provenance", "")} for k, value in metric_items(metrics)]


def write_summary(out: Path, rows: Sequence[dict]) -> Path:
    """Write ``out/summary.csv`` atomically (columns ``SUMMARY_COLUMNS``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SUMMARY_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", buffer.getvalue())
    return out / "summary.csv"


def _collect_rows(out: Path) -> list[dict]:
    """Summary rows of every finished (model, task) run under ``out``, in sweep order."""
    rows: list[dict] = []
    for task in TASK_DEFAULTS:
        for model_dir in ("atinuke", "minilm"):
            path = out / model_dir / task / "metrics.json"
            if path.is_file():
                rows.extend(_summary_rows(model_dir, json.loads(path.read_text(encoding="utf-8"))))
    return rows


BUDGETS = ("atinuke", "minilm")


def is_real(task: str, data: str = "auto", data_dir: Optional[str] = None) -> bool:
    """Whether ``task`` reads human-labelled data (real or registry-real) under ``data``, not the silver suite."""
    from atinuke.tasks import DIAGNOSTIC_TASKS, sources

    try:
        return sources.resolve(task, data, data_dir, DIAGNOSTIC_TASKS) != "diag"
    except UserInputError:  # no data at all: the run itself says so
        return False


def task_config(task: str, model: str, budget: str, out: Path, data: str = "diag", scale: float = 1.0,
                device: str = "cpu", seed: int = 0, data_dir: Optional[str] = None) -> "FinetuneConfig":
    """The sweep's fine-tuning settings of one (model, task) run, as a :class:`FinetuneConfig`.

    Args:
        task: a ``TASK_DEFAULTS`` task name.
        model: "minilm" or a model/run directory.
        budget: "atinuke" (a small encoder trained from scratch: every layer trains, more epochs, a larger
            learning rate; also used for the from-scratch BERT baseline) or "minilm" (a pretrained encoder:
            lower layers frozen, fewer epochs).
        out: the run directory.
        data: "auto" (the data setting: real, else registry-real, else silver; :mod:`atinuke.tasks.sources`),
            "diag" or a directory in the official layout.
        scale: multiplier on the example counts; a real or registry-real dev split is evaluated whole at
            scale >= 1 (``WHOLE_SPLIT``).
        device: torch device.
        seed: data order, dropout and head initialisation (``atinuke finetune --seed``).
        data_dir: the data directory for "auto" (default ``$ATINUKE_DATA``).

    Raises:
        UserInputError: for a task without sweep settings or an unknown budget.
    """
    from atinuke.finetune import FinetuneConfig

    if task not in TASK_DEFAULTS:
        raise UserInputError(f"no sweep settings for task {task!r}; choose from {', '.join(TASK_DEFAULTS)}")
    if budget not in BUDGETS:
        raise UserInputError(f"unknown fine-tuning budget {budget!r}; choose from {', '.join(BUDGETS)}")
    settings = TASK_DEFAULTS[task]
    is_minilm = budget == "minilm"
    return FinetuneConfig(
        model=model, task=task, data=data, out=str(out),
        epochs=settings.epochs_minilm if is_minilm else settings.epochs_atinuke,
        batch_size=settings.batch_size, max_len=settings.max_len,
        limit=max(8, math.ceil(settings.train * scale)),
        eval_limit=WHOLE_SPLIT if scale >= 1 and is_real(task, data, data_dir) else max(8, math.ceil(settings.dev * scale)),
        lr=(settings.lr_minilm if is_minilm and settings.lr_minilm else LEARNING_RATES[budget]),
        head_lr=settings.head_lr, device=device, freeze_layers=settings.freeze_minilm if is_minilm else 0, seed=seed,
        data_dir=data_dir)


def finetune_all(atinuke: str, out: Path, tasks: Sequence[str], data: str = "diag", scale: float = 1.0,
                 device: str = "cpu", models: Sequence[str] = ("atinuke", "minilm")) -> list[dict]:
    """Run every (model, task) pair not already done and write the summary.

    Args:
        atinuke: Atinuke run or model directory.
        out: sweep directory.
        tasks: diagnostic task names.
        data: "diag" or a directory in the official layout.
        scale: multiplier on the example counts of ``TASK_DEFAULTS``.
        device: torch device.
        models: which of "atinuke", "minilm" to run.

    Returns:
        The summary rows.
    """
    from atinuke.finetune import finetune

    rows: list[dict] = []
    start = time.perf_counter()
    for task in tasks:
        for model_dir in models:
            run_dir = out / model_dir / task
            if (run_dir / "metrics.json").is_file():
                logger.info("%s/%s: already done, keeping %s", model_dir, task, run_dir / "metrics.json")
            else:
                model = "minilm" if model_dir == "minilm" else atinuke
                # An unfinished run of this sweep is its own to replace.
                finetune(dataclasses.replace(task_config(task, model, model_dir, run_dir, data, scale, device),
                                             overwrite=True))
            metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
            # Every finished run in the sweep directory, not just this invocation's: a sweep restricted
            # with --tasks must not drop the other tasks from the summary. Written after each run, so
            # partial results survive an interrupted sweep.
            rows = _collect_rows(out)
            write_summary(out, rows)
            logger.info("%s/%s: %s = %s (%.0f s elapsed)", model_dir, task, metrics["headline_metric"],
                        metrics.get(metrics["headline_metric"]), time.perf_counter() - start)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line of ``python -m atinuke.finetune_all``; exit code 2 with one line on bad input."""
    from atinuke.tasks import DIAGNOSTIC_TASKS

    parser = argparse.ArgumentParser(prog="python -m atinuke.finetune_all", description=__doc__.splitlines()[0])
    parser.add_argument("--atinuke", default="runs/pretrain/tiny-mlm", help="Atinuke run or model directory")
    parser.add_argument("--out", default="runs/finetune", help="sweep directory")
    parser.add_argument("--tasks", default=",".join(DIAGNOSTIC_TASKS), help="comma-separated diagnostic tasks")
    parser.add_argument("--models", default="atinuke,minilm", help="comma-separated: atinuke, minilm")
    parser.add_argument("--data", default="diag", help="'diag' or a directory in the official layout")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplier on every example count")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from atinuke.cli import EXPECTED_ERRORS
    from atinuke.encoders import resolve_model_path

    try:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        unknown = [t for t in tasks if t not in TASK_DEFAULTS]
        if unknown:
            raise UserInputError(f"no sweep settings for task(s) {unknown}; choose from {', '.join(TASK_DEFAULTS)}")
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models or set(models) - {"atinuke", "minilm"}:
            raise UserInputError(f"--models must list atinuke and/or minilm, got {args.models!r}")
        if not args.scale > 0:
            raise UserInputError(f"--scale must be positive, got {args.scale}")
        if "atinuke" in models:
            resolve_model_path(args.atinuke)
        start = time.perf_counter()
        rows = finetune_all(args.atinuke, Path(args.out), tasks, args.data, args.scale, args.device, models)
        logger.info("sweep done in %.0f s: %d summary rows in %s", time.perf_counter() - start, len(rows),
                    Path(args.out) / "summary.csv")
    except KeyboardInterrupt:
        print("finetune_all: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        print(f"finetune_all: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
