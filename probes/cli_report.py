"""``probes report``: merge run directories into one tidy table, a per-layer summary and plotly figures."""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from atinuke.errors import UserInputError
from atinuke.io import check_out_dir, write_with
from probes.figures import layer_curve_figure, layer_summary, selectivity_figure
from probes.runner import RESULT_COLUMNS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="directories written by `probes run`")
    parser.add_argument("--out", type=Path, required=True, help="report directory (new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace the report files in a non-empty --out")


def load_runs(directories: list[Path]) -> pd.DataFrame:
    """Concatenate the results.parquet of each run directory (or any directory below it)."""
    frames = []
    for directory in directories:
        files = [directory] if directory.is_file() else sorted(directory.rglob("results.parquet"))
        if not files:
            raise UserInputError(f"{directory}: no results.parquet (run `probes run --out {directory}` first)")
        for file in files:
            frame = pd.read_parquet(file)
            missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
            if missing:
                raise UserInputError(f"{file}: not a probing results table (missing column {missing[0]!r})")
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _write_html(figure: go.Figure, tmp: Path) -> None:
    figure.write_html(str(tmp), include_plotlyjs=True)


def run(args: argparse.Namespace) -> int:
    out = check_out_dir(args.out, overwrite=args.overwrite)
    results = load_runs(args.runs)
    write_with(out / "results.parquet", lambda tmp: results.to_parquet(tmp, index=False))
    summary = layer_summary(results)
    write_with(out / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    for name, figure in (("layers.html", layer_curve_figure(results)), ("selectivity.html", selectivity_figure(results))):
        write_with(out / name, partial(_write_html, figure))
    print(f"{len(results)} rows from {results[['model', 'task']].drop_duplicates().shape[0]} model/task runs; "
          f"wrote {out}")
    return 0
