"""Training dynamics: how a model's loss, probes, heads, lenses, rank and features develop over its snapshots.

``workbench dynamics --run RUN [--run RUN2] --out DIR`` reads the log-spaced snapshots a pretraining run kept
(``atinuke pretrain --keep-log-checkpoints``: ``RUN/snapshots/step-N/`` with ``snapshot.json``) and measures,
per snapshot, on held-out text (PTB valid by default):

- ``mlm_loss``: the model's own held-out loss (a fixed seeded 15% mask for an MLM; next-token for a decoder);
- ``probe_accuracy`` / ``probe_control`` / ``probe_selectivity`` per layer: a logistic-regression probe of gold
  UPOS (a CoNLL-U file, ``--probe-data``; default UD EWT dev under ``$ATINUKE_DATA``) on each layer's residual
  stream, its Hewitt & Liang (2019, arXiv 1909.03368) control task, and their difference;
- attention head statistics (Clark et al., 2019, arXiv 1906.04341; :func:`workbench.attention.head_statistics`):
  entropy and attention to [CLS] / [SEP] / punctuation per head, plus ``prev_token`` and ``next_token`` (mean
  attention to the neighbouring position) and, on sequences of random tokens repeated once, ``induction``
  (attention from a repeated token to the token after its first occurrence) and ``duplicate`` (to the first
  occurrence itself), the scores of Olsson et al. (2022, "In-context Learning and Induction Heads", arXiv
  2209.11895); each head's type (the behaviour with at least half its attention mass) and the types' shares;
- ``lens_kl`` per layer: the logit lens's KL to the final distribution (:func:`workbench.lens.evaluate_lens`);
- ``effective_rank`` per layer: exp of the entropy of the normalised singular values of the centred residual
  stream (Roy & Vetterli, 2007);
- ``sae_match``: a small top-k SAE (:mod:`workbench.features`) per snapshot on the middle layer, matched to the
  previous snapshot's by activation correlation on the same held-out tokens
  (:func:`workbench.features.units.match_features`): the share of the previous dictionary's live latents with
  a match of r >= 0.5 (how stable the dictionary is), with ``sae_pair_correlation`` the mean Hungarian-pair r.

Each snapshot's rows are cached in ``DIR/cache/<run>-<settings hash>/step-N.parquet`` (and the SAE's
activations beside them), so a rerun skips done snapshots and an interrupted run resumes. ``DIR`` receives
``dynamics.parquet`` (the tidy table of every run), ``headline.csv`` (per run and headline curve: first and
final values and the first snapshot where the curve has gone half of the way from its first to its final
value, in steps and training tokens), ``dynamics.html`` (the figure) and ``summary.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_json, atomic_write_text, check_out_dir, write_with
from workbench.dynamics_measures import (
    ALL_PARTS,
    DynamicsConfig,
    analyse_snapshot,
    default_probe_data,
    read_conllu_upos,
    sae_activations,
)

logger = logging.getLogger(__name__)

COLUMNS = ["run", "step", "tokens", "metric", "layer", "head", "value"]
# The curves the figure and headline table show: (metric, reduction over layers/heads, label).
HEADLINE = (("mlm_loss", "value", "held-out loss"), ("probe_selectivity", "max", "best probe selectivity"),
            ("probe_accuracy", "max", "best probe accuracy"), ("prev_token", "max", "max previous-token score"),
            ("induction", "max", "max induction score"), ("entropy", "mean", "mean head entropy (nats)"),
            ("lens_kl", "mean_inner", "mean logit-lens KL (nats)"), ("effective_rank", "last", "last-layer effective rank"),
            ("sae_match", "value", "SAE dictionary match"))


@dataclass(frozen=True)
class Snapshot:
    """One kept snapshot of a run: its step, the training tokens seen, its directory."""

    step: int
    tokens: int
    path: Path


def list_snapshots(run: Path) -> list[Snapshot]:
    """The snapshots of a pretraining run, by step.

    Raises:
        UserInputError: when ``run`` has none (it was trained without ``--keep-log-checkpoints``).
    """
    root = Path(run) / "snapshots"
    found = []
    for directory in (root.glob("step-*") if root.is_dir() else []):
        meta = directory / "snapshot.json"
        if directory.is_dir() and meta.is_file():
            data = json.loads(meta.read_text(encoding="utf-8"))
            found.append(Snapshot(int(data["step"]), int(data["tokens"]), directory))
    if not found:
        raise UserInputError(f"{root}: no snapshots (train with atinuke pretrain --keep-log-checkpoints)")
    return sorted(found, key=lambda s: s.step)


# ------------------------------------------------------------------------------------------ over snapshots

def held_out_texts(config: DynamicsConfig) -> list[str]:
    """The first ``n_texts`` held-out texts of at least 5 words (PTB valid, or a registry source's held-out split)."""
    from atinuke.corpus import load_texts

    split = "valid" if config.text_source == "ptb" else "heldout"
    texts = [t for t in load_texts(config.text_source, split) if len(t.split()) >= 5][: config.n_texts]
    if not texts:
        raise UserInputError(f"--text-source {config.text_source!r}: no held-out texts")
    return texts


def _read_cached(path: Path) -> Optional[pd.DataFrame]:
    return pd.read_parquet(path) if path.is_file() else None


def _save_array(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array.astype(np.float32))
    write_with(path, write)


def parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    """A writer of ``frame`` as parquet for :func:`atinuke.io.write_with`."""
    def write(tmp: Path) -> None:
        frame.to_parquet(tmp, index=False)
    return write


def run_name(run: Path) -> str:
    """A run's display name: its directory name (``<arm>/seed<k>/pretrain`` of the experiment: ``arm-seedk``)."""
    run = Path(run)
    if run.name == "pretrain" and run.parent.name.startswith("seed"):
        return f"{run.parent.parent.name}-{run.parent.name}"
    return run.name


def run_dynamics(runs: Sequence[Path], out: Path, config: DynamicsConfig, device: str = "cpu") -> pd.DataFrame:
    """Measure every snapshot of every run (cached per snapshot), write the tables and the figure under ``out``.

    Returns:
        The tidy table (:data:`COLUMNS`) of every run and snapshot.
    """
    from workbench.features.units import match_features
    from workbench.subject import load_subject

    unknown = set(config.parts) - set(ALL_PARTS)
    if unknown:
        raise UserInputError(f"--parts {','.join(sorted(unknown))}: choose from {', '.join(ALL_PARTS)}")
    listed = {Path(run): list_snapshots(Path(run)) for run in runs}  # every run checked before any work
    names = [run_name(run) for run in listed]
    if len(set(names)) != len(names):
        raise UserInputError(f"two runs share the name {names}: give runs whose directories are named differently")
    probe = read_conllu_upos(Path(config.probe_data), config.probe_sentences) if (
        config.probe_data and "probe" in config.parts) else None
    if "probe" in config.parts and probe is None:
        logger.info("no --probe-data (and no UD EWT under $ATINUKE_DATA): no probe rows")
    texts = held_out_texts(config)
    frames = []
    for (run, snapshots), name in zip(listed.items(), names):
        cache = out / "cache" / f"{name}-{config.key()}"
        previous: Optional[np.ndarray] = None
        for index, snapshot in enumerate(snapshots):
            path = cache / f"step-{snapshot.step}.parquet"
            frame = _read_cached(path)
            sae_path = cache / f"sae-{snapshot.step}.npy"
            if frame is None:
                logger.info("%s step %d (%d of %d)", name, snapshot.step, index + 1, len(snapshots))
                subject = load_subject(snapshot.path, device=device)
                rows = analyse_snapshot(subject, texts, config, probe)
                if "sae" in config.parts:
                    latents, layer = sae_activations(subject, texts, config)
                    _save_array(sae_path, latents)
                    if previous is not None:
                        match = match_features(previous, latents)
                        live = match.best_a["frequency_a"] > 0
                        rows.append(dict(metric="sae_match", layer=layer, head=-1,
                                         value=float(match.best_a["matched"][live].mean()) if live.any() else 0.0))
                        rows.append(dict(metric="sae_pair_correlation", layer=layer, head=-1,
                                         value=float(match.pairs["correlation"].mean())))
                frame = pd.DataFrame(rows).assign(run=name, step=snapshot.step, tokens=snapshot.tokens)[COLUMNS]
                write_with(path, parquet_writer(frame))
            else:
                logger.info("%s step %d: cached", name, snapshot.step)
            if "sae" in config.parts:
                previous = np.load(sae_path) if sae_path.is_file() else None
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    headline = headline_table(table)
    write_with(out / "dynamics.parquet", parquet_writer(table))
    atomic_write_text(out / "headline.csv", headline.to_csv(index=False))
    from workbench.figures import dynamics_figure

    atomic_write_text(out / "dynamics.html", dynamics_figure(curves(table), headline).to_html(include_plotlyjs="cdn"))
    atomic_write_json(out / "summary.json", {"runs": {n: str(r) for n, r in zip(names, listed)}, "config": asdict(config),
                                             "key": config.key(), "snapshots": {n: [s.step for s in listed[r]]
                                                                                 for n, r in zip(names, listed)}})
    return table


def curves(table: pd.DataFrame) -> pd.DataFrame:
    """The headline curves: one value per run, step and headline metric (:data:`HEADLINE`'s reductions: the
    value, the max or mean over layers and heads, the mean over all but the last depth, the last depth)."""
    rows = []
    for metric, how, label in HEADLINE:
        chosen = table[table["metric"] == metric]
        for (run, step, tokens), group in chosen.groupby(["run", "step", "tokens"]):
            values = group.sort_values(["layer", "head"])["value"]
            if how == "max":
                value = values.max()
            elif how == "mean":
                value = values.mean()
            elif how == "mean_inner":
                value = group[group["layer"] < group["layer"].max()]["value"].mean()
            elif how == "last":
                value = group[group["layer"] == group["layer"].max()]["value"].mean()
            else:
                value = values.iloc[0]
            rows.append(dict(run=run, step=int(step), tokens=int(tokens), metric=metric, label=label, value=float(value)))
    return pd.DataFrame(rows, columns=["run", "step", "tokens", "metric", "label", "value"])


def half_crossing(steps: Sequence[int], values: Sequence[float]) -> Optional[int]:
    """The index of the first point that has gone at least half of the way from the first value to the last
    (for a curve that starts at 0: the first reaching half its final value), or None for a flat curve."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or not np.isfinite(v[[0, -1]]).all() or v[-1] == v[0]:
        return None
    progress = (v - v[0]) / (v[-1] - v[0])
    return int(np.flatnonzero(progress >= 0.5)[0])


def headline_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and headline curve: first and final values and where it crosses half of its change."""
    rows = []
    for (run, metric), group in curves(table).groupby(["run", "metric"], sort=False):
        group = group.sort_values("step")
        index = half_crossing(group["step"].tolist(), group["value"].tolist())
        rows.append(dict(run=run, metric=metric, label=group["label"].iloc[0], first=group["value"].iloc[0],
                         final=group["value"].iloc[-1],
                         half_step=None if index is None else int(group["step"].iloc[index]),
                         half_tokens=None if index is None else int(group["tokens"].iloc[index])))
    return pd.DataFrame(rows, columns=["run", "metric", "label", "first", "final", "half_step", "half_tokens"])


# ---------------------------------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``workbench dynamics``."""
    parser.add_argument("--run", action="append", required=True,
                        help="a pretraining run with snapshots/ (atinuke pretrain --keep-log-checkpoints); repeat for more")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue in a non-empty --out (done snapshots are skipped)")
    parser.add_argument("--overwrite", action="store_true", help="replace the tables in a non-empty --out")
    parser.add_argument("--probe-data", default=None,
                        help="CoNLL-U file with gold UPOS (default: UD EWT dev under $ATINUKE_DATA; 'none' to skip)")
    parser.add_argument("--text-source", default="ptb", help="held-out text: ptb (valid) or a registry source (heldout)")
    parser.add_argument("--parts", default=",".join(ALL_PARTS), help=f"comma-separated subset of {','.join(ALL_PARTS)}")
    defaults = DynamicsConfig()
    for flag, help_line in (("n_texts", "held-out texts"), ("max_length", "tokens per text"),
                            ("probe_sentences", "probe sentences"), ("sae_width", "SAE latents"),
                            ("sae_k", "SAE active latents per token"), ("sae_steps", "SAE training batches"),
                            ("seed", "seed of masks, probe split, random sequences, SAEs")):
        parser.add_argument("--" + flag.replace("_", "-"), type=int, default=getattr(defaults, flag),
                            help=f"{help_line} (default {getattr(defaults, flag)})")
    parser.add_argument("--sae-layer", type=int, default=None, help="the SAE's layer (default: the middle one)")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``workbench dynamics``."""
    probe = default_probe_data() if args.probe_data is None else ("" if args.probe_data == "none" else args.probe_data)
    if probe and not Path(probe).is_file():
        raise UserInputError(f"--probe-data {probe}: no such CoNLL-U file")
    config = DynamicsConfig(n_texts=args.n_texts, max_length=args.max_length, text_source=args.text_source,
                            probe_data=probe, probe_sentences=args.probe_sentences, sae_width=args.sae_width,
                            sae_k=args.sae_k, sae_steps=args.sae_steps, sae_layer=args.sae_layer,
                            parts=tuple(p.strip() for p in args.parts.split(",") if p.strip()), seed=args.seed)
    if config.sae_k > config.sae_width:
        raise UserInputError(f"--sae-k {config.sae_k} exceeds --sae-width {config.sae_width}")
    for run_dir in args.run:
        list_snapshots(Path(run_dir))
    out = check_out_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    run_dynamics([Path(r) for r in args.run], out, config, device=args.device)
    headline = pd.read_csv(out / "headline.csv")
    print(headline.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0

