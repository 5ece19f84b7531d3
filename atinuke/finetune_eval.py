"""``atinuke evaluate``: score a fine-tuned task model and write ``metrics.json`` + ``predictions.parquet``.

The predictions table has exactly the columns of docs/predictions.md (one row per example; SRL per
predicate; coreference per document); ``metrics.json`` holds the official metrics of the same rows
(``atinuke.tasks.metrics.score_task``) plus ``n_examples``, ``n_skipped`` and ``skipped`` (reason -> count),
``n_truncated``, ``provenance``, ``task``, ``model``, ``split`` and ``headline_metric``. Examples that
cannot be scored (empty texts, offsets outside the text) are skipped, counted and logged, never scored as
wrong or dropped silently.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_json, check_out_dir, write_with
from atinuke.tasks.base import ClassificationExample, CorefDocument, Example, QAExample, SRLExample, TaskSpec
from atinuke.tasks.kinds import get_kind

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("id", "task", "model", "split", "provenance", "text", "text_pair", "gold", "prediction", "score",
                 "probs", "correct", "example_f1", "rationale")


@dataclass
class Evaluation:
    """Result of evaluating a model on one split.

    Attributes:
        metrics: what ``metrics.json`` holds.
        table: the predictions table (columns ``TABLE_COLUMNS`` then ``meta_*``).
    """

    metrics: dict[str, Any]
    table: pd.DataFrame = field(repr=False)


def sample_examples(examples: Sequence[Example], limit: Optional[int], seed: int = 0) -> list[Example]:
    """At most ``limit`` examples: a seeded sample kept in file order (the first N may all share one rule).

    ``atinuke finetune --limit N`` and ``atinuke evaluate --limit N`` with the same seed pick the same dev
    examples, so their scores can be compared.
    """
    if limit is None or limit >= len(examples):
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def screen_examples(examples: Sequence[Example]) -> tuple[list[Example], dict[str, int]]:
    """Drop the examples no model can be scored on, counting each reason.

    Returns:
        (kept examples in order, reason -> count).
    """
    kept: list[Example] = []
    skipped: Counter[str] = Counter()
    for ex in examples:
        reason = _skip_reason(ex)
        if reason:
            skipped[reason] += 1
        else:
            kept.append(ex)
    for reason, count in sorted(skipped.items()):
        logger.warning("skipped %d example(s): %s", count, reason)
    return kept, dict(skipped)


def _skip_reason(ex: Example) -> Optional[str]:
    if isinstance(ex, ClassificationExample):
        if not ex.text.strip() or (ex.text_pair is not None and not ex.text_pair.strip()):
            return "empty text"
    elif isinstance(ex, QAExample):
        if not ex.context.strip():
            return "empty context"
        if not ex.question.strip():
            return "empty question"
        if any(a.start < 0 or a.end > len(ex.context) for a in ex.answers):
            return "answer offsets outside the context"
    elif isinstance(ex, SRLExample):
        if not ex.words:
            return "empty sentence"
        if ex.predicate_index != -1 and not 0 <= ex.predicate_index < len(ex.words):  # -1: no predicate
            return "predicate index outside the sentence"
        if len(ex.tags) != len(ex.words):
            return "tag count differs from word count"
    elif isinstance(ex, CorefDocument):
        if not ex.words:
            return "empty document"
    return None


def _segments(ex: Example) -> tuple[str, Optional[str]]:
    if isinstance(ex, ClassificationExample):
        return ex.text, ex.text_pair
    if isinstance(ex, QAExample):
        return ex.context, ex.question
    return ex.text, None


def _encode_value(spec: TaskSpec, value: Any) -> str:
    """The table's text encoding of a gold value or prediction (docs/predictions.md, ``gold``)."""
    return get_kind(spec.kind).encode_value(value)


def _gold(spec: TaskSpec, ex: Example) -> str:
    return get_kind(spec.kind).gold_text(ex)


def _length_words(ex: Example) -> int:
    text, pair = _segments(ex)
    if isinstance(ex, QAExample):
        return len(ex.context.split())
    return len(text.split()) + (len(pair.split()) if pair else 0)


def predictions_table(spec: TaskSpec, examples: Sequence[Example], predictions: Sequence[Any], model_name: str,
                      split: str, provenance: str) -> pd.DataFrame:
    """Build the per-example predictions table of docs/predictions.md.

    Args:
        spec: the task.
        examples: scored examples.
        predictions: aligned ``TaskPrediction`` objects (``value``, ``score``, ``probs``).
        model_name, split, provenance: constant columns.

    Returns:
        One row per example: ``TABLE_COLUMNS`` then the ``meta_*`` columns (sorted).
    """
    from atinuke.tasks.metrics import per_example_correct, per_example_f1

    rows = []
    for ex, pred in zip(examples, predictions):
        text, pair = _segments(ex)
        row = {
            "id": ex.id, "task": spec.name, "model": model_name, "split": split, "provenance": provenance,
            "text": text, "text_pair": pair, "gold": _gold(spec, ex), "prediction": _encode_value(spec, pred.value),
            "score": float(pred.score), "probs": json.dumps(pred.probs) if pred.probs is not None else None,
            "correct": bool(per_example_correct(spec.name, ex, pred.value)),
            "example_f1": float(per_example_f1(spec.name, ex, pred.value)),
            "rationale": [[int(seg), int(a), int(b)] for seg, a, b in ex.rationale],
        }
        meta = {(k if k.startswith("meta_") else f"meta_{k}"): v for k, v in ex.meta.items()}
        meta.setdefault("meta_length", _length_words(ex))
        for key, value in get_kind(spec.kind).table_meta(ex).items():
            meta.setdefault(key, value)
        row.update(meta)
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else list(TABLE_COLUMNS) + ["meta_length"])
    meta_columns = sorted(c for c in table.columns if c.startswith("meta_"))
    table = table[list(TABLE_COLUMNS) + meta_columns]
    for column in meta_columns:  # parquet needs one type per column: mixed or nested values become text
        values = table[column].dropna()
        kinds = {type(v) for v in values}
        if kinds and not (kinds <= {bool} or kinds <= {int, float} or kinds <= {str}):
            table[column] = table[column].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v))
                                              else (v if isinstance(v, str) else json.dumps(v, default=str)))
    table["score"] = table["score"].astype("float64")
    table["example_f1"] = table["example_f1"].astype("float64")
    table["correct"] = table["correct"].astype(bool)
    return table


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_model(model, examples: Sequence[Example], *, split: str, provenance: str,
                   skipped: Optional[dict[str, int]] = None, batch_size: int = 32,
                   task: Optional[str] = None) -> Evaluation:
    """Predict, score with the official metrics and build the predictions table.

    Args:
        model: a ``TaskModel``.
        examples: gold examples (unscorable ones are skipped and counted here).
        split, provenance: recorded in the outputs.
        skipped: reasons -> counts already skipped upstream (by the loader); added to ours.
        batch_size: examples per forward pass.
        task: registry name to score as (default ``model.spec.name``).

    Returns:
        An :class:`Evaluation`.
    """
    from atinuke.tasks import get_task
    from atinuke.tasks.metrics import score_task

    spec = get_task(task or model.spec.name)
    kept, own_skips = screen_examples(examples)
    counts = Counter(skipped or {})
    counts.update(own_skips)
    if not kept:
        raise UserInputError(f"{spec.name}/{split}: no example left to evaluate (skipped: {dict(counts)})")
    stats: dict[str, int] = {}
    start = time.perf_counter()
    predictions = model.predict(kept, batch_size=batch_size, stats=stats)
    seconds = time.perf_counter() - start
    if stats.get("n_truncated"):
        logger.warning("%s/%s: %d example(s) longer than max_len=%d were truncated (QA: questions cut; contexts "
                       "use doc stride)", spec.name, split, stats["n_truncated"], model.config.max_len)
    scores = score_task(spec.name, kept, [p.value for p in predictions])
    metrics = {k: _finite(float(v)) if isinstance(v, (int, float)) else v for k, v in scores.items()}
    metrics.update({
        "task": spec.name, "model": model.encoder_name, "split": split, "provenance": provenance,
        "headline_metric": spec.metric, "n_examples": len(kept), "n_skipped": int(sum(counts.values())),
        "skipped": dict(counts), "n_truncated": int(stats.get("n_truncated", 0)),
        "eval_examples_per_s": round(len(kept) / max(seconds, 1e-9), 2),
    })
    table = predictions_table(spec, kept, predictions, model.encoder_name, split, provenance)
    return Evaluation(metrics=metrics, table=table)


def write_evaluation(evaluation: Evaluation, out: str | Path) -> None:
    """Write ``metrics.json`` and ``predictions.parquet`` into ``out``, each atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_with(out / "predictions.parquet", lambda tmp: evaluation.table.to_parquet(tmp, index=False))
    atomic_write_json(out / "metrics.json", evaluation.metrics)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``atinuke evaluate``."""
    parser.add_argument("--model", required=True, help="fine-tuning run directory (or its model/)")
    parser.add_argument("--task", default=None, help="task registry name (default: the model's task)")
    parser.add_argument("--data", default="auto", help="'auto' (official files under --data-dir/$ATINUKE_DATA, else "
                        "the registry copy, else silver), 'diag' (diagnostic suite), a path in the official format, "
                        "or, for a run on your data, a file/saved dataset/hf:NAME")
    parser.add_argument("--data-dir", default=None, help="directory of official layouts for --data auto "
                                                         "(default $ATINUKE_DATA)")
    parser.add_argument("--columns", default=None, help="your data's column mapping (default: the run's)")
    parser.add_argument("--split", default="dev", help="split to evaluate (default dev; a file is read whole)")
    parser.add_argument("--out", default=None, help="output directory, empty or new unless --overwrite (default: the "
                        "run directory, whose metrics.json and predictions.parquet only --overwrite replaces)")
    parser.add_argument("--overwrite", action="store_true", help="replace metrics.json and predictions.parquet in --out")
    parser.add_argument("--limit", type=int, default=None, help="evaluate a seeded sample of N examples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (as in finetune)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ...")


def run(args: argparse.Namespace) -> int:
    """``atinuke evaluate``: load, predict, score, write."""
    from atinuke.tasks import get_task, load_task
    from atinuke.tasks.heads import load_task_model

    run = Path(args.model) if (Path(args.model) / "model").is_dir() else Path(args.model).parent
    if args.out is not None:  # the one output policy, before any work
        check_out_dir(args.out, overwrite=args.overwrite)
    elif Path(args.model).is_dir():  # the default: the run's own results are replaced only with --overwrite
        check_out_dir(run, flag="the run directory (default --out)", overwrite=args.overwrite)
    model = load_task_model(args.model, device=args.device)
    task = args.task or model.spec.name
    spec = get_task(task)
    if spec.kind != model.spec.kind or (spec.labels and tuple(spec.labels) != tuple(model.label_names)):
        raise UserInputError(f"the model was fine-tuned for {model.spec.name!r} ({model.spec.kind}); it cannot "
                             f"predict task {task!r} ({spec.kind})")
    if args.limit is not None and args.limit <= 0:
        raise UserInputError(f"--limit must be positive, got {args.limit}")
    if args.columns and spec.family != "user":
        raise UserInputError(f"--columns is for a run on your own data; {task!r} is a benchmark task")
    out = Path(args.out) if args.out else run
    data = load_task(task, args.data, args.split, args.columns, data_dir=args.data_dir)
    examples = sample_examples(data.examples, args.limit, args.seed)
    evaluation = evaluate_model(model, examples, split=args.split, provenance=data.provenance, skipped=data.skipped,
                                batch_size=args.batch_size, task=task)
    evaluation.metrics.update(data.record())
    write_evaluation(evaluation, out)
    logger.info("%s on %s/%s: %s = %s (%d examples, %d skipped) -> %s", model.encoder_name, task, args.split,
                spec.metric, evaluation.metrics.get(spec.metric), evaluation.metrics["n_examples"],
                evaluation.metrics["n_skipped"], out)
    return 0
