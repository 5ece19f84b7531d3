"""The experiment's results: one tidy table (arm, seed, task, metric, value, predictions) of every finished
fine-tuning run under an ``atinuke experiment`` directory, and its arms x tasks summary (mean over seeds with a
95% Student-t interval) as ``summary.md``; rebuilt after every unit (docs/experiment.md).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Optional, Sequence

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_text, write_with

RESULT_COLUMNS = ("arm", "seed", "task", "metric", "value", "predictions", "source", "dataset")


def _seed_of(name: str) -> Optional[int]:
    return int(name[4:]) if name.startswith("seed") and name[4:].isdigit() else None


def collect_results(out: Path, arms: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Tidy rows (``RESULT_COLUMNS``) of every finished fine-tuning run under ``out``.

    Rows are ordered by arm (``arms``' order, then any other by name), seed, task (the sweep's order,
    then by name) and metric (headline first). ``predictions`` is the path of the run's
    ``predictions.parquet`` relative to ``out`` ("" when the run wrote none); ``source`` is where the run's
    data came from ("real", "registry-real", "silver"; "" for a run that predates the record) and ``dataset``
    its name (:mod:`atinuke.tasks.sources`).
    """
    from atinuke.finetune_all import TASK_DEFAULTS, metric_items

    out = Path(out)
    arm_order = list(arms)
    task_order = list(TASK_DEFAULTS)
    found = []
    for metrics_path in out.glob("*/seed*/finetune/*/metrics.json"):
        run_dir = metrics_path.parent
        arm, seed = run_dir.parts[-4], _seed_of(run_dir.parts[-3])
        if seed is None:
            continue
        found.append((arm, seed, run_dir.name, run_dir))
    found.sort(key=lambda f: (arm_order.index(f[0]) if f[0] in arm_order else len(arm_order), f[0], f[1],
                              task_order.index(f[2]) if f[2] in task_order else len(task_order), f[2]))
    rows: list[dict[str, Any]] = []
    for arm, seed, task, run_dir in found:
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserInputError(f"{run_dir / 'metrics.json'}: not a JSON metrics file ({error})") from error
        predictions = run_dir / "predictions.parquet"
        relative = predictions.relative_to(out).as_posix() if predictions.is_file() else ""
        rows.extend({"arm": arm, "seed": seed, "task": task, "metric": name, "value": float(value),
                     "predictions": relative, "source": str(metrics.get("data_source", "")),
                     "dataset": str(metrics.get("dataset", ""))} for name, value in metric_items(metrics))
    return rows


def write_results(out: Path, rows: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``out/results.csv`` and ``out/results.parquet`` atomically."""
    import pandas as pd

    out = Path(out)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RESULT_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    frame = pd.DataFrame(list(rows), columns=list(RESULT_COLUMNS)).astype(
        {"arm": str, "seed": "int64", "task": str, "metric": str, "value": "float64", "predictions": str,
         "source": str, "dataset": str})
    write_with(out / "results.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    return out / "results.csv", out / "results.parquet"


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Arms x tasks: each task's headline metric, mean over seeds with a 95% Student-t interval.

    Returns:
        One row per (arm, task) in the results' order: arm, task, metric, n_seeds, mean, ci_low, ci_high
        (the interval is None with one seed), source (the task's data sources over its runs, "" if unrecorded).
    """
    import numpy as np
    from scipy import stats

    from atinuke.tasks import get_task

    def headline_of(task: str) -> str:
        return get_task(task).metric

    groups: dict[tuple[str, str], list[float]] = {}
    source_of: dict[str, set[str]] = {}
    for row in rows:
        if row["metric"] == headline_of(row["task"]):
            groups.setdefault((row["arm"], row["task"]), []).append(float(row["value"]))
            source_of.setdefault(row["task"], set()).add(str(row.get("source") or ""))
    summary = []
    for (arm, task), values in groups.items():
        mean = float(np.mean(values))
        low: Optional[float]
        high: Optional[float]
        if len(values) > 1:
            half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
            low, high = mean - half, mean + half
        else:
            low = high = None
        summary.append({"arm": arm, "task": task, "metric": headline_of(task), "n_seeds": len(values), "mean": mean,
                        "ci_low": low, "ci_high": high, "source": "/".join(sorted(source_of[task] - {""}))})
    return summary


def summary_markdown(summary: Sequence[dict[str, Any]]) -> str:
    """The arms x tasks table as Markdown: "mean ± half-width (n seeds)" per cell; each task row names its
    metric and its data source ("cola (mcc; real)")."""
    arms = list(dict.fromkeys(r["arm"] for r in summary))
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    cells = {(r["arm"], r["task"]): r for r in summary}
    lines = ["| task (metric) | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for task in tasks:
        first = next(r for r in summary if r["task"] == task)
        row = [f"{task} ({first['metric']}" + (f"; {first['source']})" if first.get("source") else ")")]
        for arm in arms:
            cell = cells.get((arm, task))
            if cell is None:
                row.append("–")
            elif cell["ci_low"] is None:
                row.append(f"{cell['mean']:.3f} (1 seed)")
            else:
                row.append(f"{cell['mean']:.3f} ± {cell['mean'] - cell['ci_low']:.3f} ({cell['n_seeds']} seeds)")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def rebuild_results(out: Path, arms: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Collect and write the results table and its arms x tasks summary (``summary.md``); returns the rows."""
    rows = collect_results(out, arms)
    write_results(out, rows)
    atomic_write_text(Path(out) / "summary.md", summary_markdown(summarise(rows)))
    return rows
