"""``atinuke lr-sweep``: each arm's best peak learning rate on one grid, at a short budget, before the experiment.

    atinuke lr-sweep --arms atinuke,bert --lrs 5e-4,1e-3,2e-3,4e-3 --steps 1200 --out runs/lr-sweep

A comparison of two architectures trained with one recipe is fair only if the recipe is not tuned to one of
them: a learning rate chosen on Atinuke could leave the baseline under-trained and make any gap an artefact of
tuning (Melis et al., 2018, "On the State of the Art of Evaluation in Neural Language Models", arXiv
1707.05589, re-tuned every model and found older ones competitive). The sweep trains every (arm, learning rate)
for ``--steps`` steps on the same tokens, seed and tokenizer as ``atinuke pretrain`` would, and ranks each arm's
rates by PTB validation pseudo-perplexity. The experiment's shared recipe is fair when its rate is (close to)
each arm's best; ``best.json`` records both, and the claims evaluator cites it beside the perplexity verdict.

Layout under ``--out``: ``sweep.json`` (the grid, written first), ``<arm>/lr<rate>/`` (each ``atinuke pretrain``
run), ``results.csv`` (arm, lr, steps, val_ppl, val_unigram_ppl, best) and ``best.json`` (per arm: the best
rate, its perplexity, and the recipe rate's perplexity), rebuilt after every run. Finished runs are skipped,
interrupted ones resumed.
"""
from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import logging
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_json, atomic_write_text
from atinuke.parallel import Job, Work, run_jobs

logger = logging.getLogger(__name__)

DEFAULT_LRS = (5e-4, 1e-3, 2e-3, 4e-3)
RESULT_COLUMNS = ("arm", "lr", "steps", "val_ppl", "val_unigram_ppl", "best")


@dataclass(frozen=True)
class SweepSpec:
    """The identity of a sweep, as stored in ``sweep.json``."""

    arms: tuple[str, ...]
    lrs: tuple[float, ...]
    steps: int
    warmup: int
    preset: str
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {"arms": list(self.arms), "lrs": list(self.lrs), "steps": self.steps, "warmup": self.warmup,
                "preset": self.preset, "seed": self.seed}


def lr_name(lr: float) -> str:
    """Directory name of a rate: ``lr0.002``."""
    return f"lr{lr:g}"


def run_dir(out: Path, arm: str, lr: float) -> Path:
    return Path(out) / arm / lr_name(lr)


def parse_lrs(text: str) -> tuple[float, ...]:
    """``"5e-4,1e-3"`` as distinct, positive, finite rates in increasing order.

    Raises:
        UserInputError: an empty list, or a value that is not a positive finite number.
    """
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise UserInputError(f"--lrs: {part!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise UserInputError(f"--lrs: learning rates must be positive and finite, got {part}")
        values.append(value)
    if not values:
        raise UserInputError(f"--lrs {text!r} names no learning rate")
    return tuple(sorted(set(values)))


def recipe_lr(preset: str) -> float:
    """The peak rate ``atinuke pretrain --preset`` uses when no ``--lr`` is given (the experiment's shared rate)."""
    from atinuke.pretrain import TRAIN_DEFAULTS

    return float(TRAIN_DEFAULTS[preset]["lr"])


def pretrain_argv(out: Path, spec: SweepSpec, arm: str, lr: float, tokenizer: Optional[str],
                  extra: Sequence[str]) -> list[str]:
    """The ``atinuke pretrain`` arguments of one (arm, rate) run (``--resume`` for an interrupted one)."""
    from atinuke.experiment import arm_flags, pretrain_state

    path = run_dir(out, arm, lr)
    if pretrain_state(path) == "resume":
        return ["--out", str(path), "--resume"]
    flags = arm_flags(arm)
    if flags is None:
        raise UserInputError(f"arm {arm!r} is pretrained elsewhere; an lr sweep needs arms trained from scratch")
    argv = ["--preset", spec.preset, "--objective", "mlm", "--out", str(path), "--seed", str(spec.seed),
            "--steps", str(spec.steps), "--warmup", str(spec.warmup), "--lr", repr(lr),
            "--eval-every", str(spec.steps), "--checkpoint-every", str(spec.steps), *flags, *extra]
    if tokenizer:
        argv += ["--tokenizer", tokenizer]
    return argv


def collect(out: Path, spec: SweepSpec) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The results rows of every finished run and ``best.json``'s content."""
    rows: list[dict[str, Any]] = []
    for arm in spec.arms:
        for lr in spec.lrs:
            summary_path = run_dir(out, arm, lr) / "summary.json"
            if not summary_path.is_file():
                continue
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            rows.append({"arm": arm, "lr": lr, "steps": spec.steps, "val_ppl": float(summary["val_ppl"]),
                         "val_unigram_ppl": float(summary["val_unigram_ppl"]), "best": False})
    best: dict[str, Any] = {"recipe_lr": recipe_lr(spec.preset), "steps": spec.steps, "arms": {}}
    for arm in spec.arms:
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        winner = min(mine, key=lambda r: r["val_ppl"])
        winner["best"] = True
        at_recipe = next((r["val_ppl"] for r in mine if math.isclose(r["lr"], best["recipe_lr"])), None)
        best["arms"][arm] = {
            "best_lr": winner["lr"], "best_val_ppl": winner["val_ppl"], "recipe_val_ppl": at_recipe,
            "complete": len(mine) == len(spec.lrs),
            # A best rate at the edge of the grid may not be the best rate at all.
            "at_grid_edge": len(spec.lrs) > 1 and winner["lr"] in (spec.lrs[0], spec.lrs[-1]),
        }
    return rows, best


def write_results(out: Path, spec: SweepSpec) -> dict[str, Any]:
    rows, best = collect(out, spec)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_json(out / "best.json", best)
    return best


def _run_pretrain(argv: list[str]) -> None:
    from atinuke.pretrain import run_argv

    run_argv(argv)


def read_spec(out: Path) -> Optional[SweepSpec]:
    path = Path(out) / "sweep.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SweepSpec(tuple(data["arms"]), tuple(float(v) for v in data["lrs"]), int(data["steps"]),
                         int(data["warmup"]), str(data["preset"]), int(data["seed"]))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise UserInputError(f"{path}: not an lr-sweep description ({error})") from error


def check_out(out: Path, spec: SweepSpec, resume: bool) -> None:
    """Refuse a file, a non-empty directory that is not this sweep, or ``--resume`` of nothing.

    Raises:
        UserInputError: as above (nothing is written).
    """
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file, not a directory")
    existing = read_spec(out) if out.is_dir() else None
    if existing is None:
        if out.is_dir() and any(out.iterdir()):
            raise UserInputError(f"--out {out} holds files but no sweep.json; choose an empty or new directory")
        if resume:
            raise UserInputError(f"--resume: {out} holds no sweep.json to continue")
        return
    if existing != spec:
        raise UserInputError(f"{out / 'sweep.json'} describes another sweep ({existing.to_json()}); "
                             f"choose another --out")
    if not resume:
        raise UserInputError(f"--out {out} already holds this sweep; continue it with --resume")


def run_sweep(spec: SweepSpec, out: Path, tokenizer: Optional[str] = None, extra: Sequence[str] = (),
              jobs: int = 1) -> dict[str, Any]:
    """Train every (arm, rate) not yet done and write ``results.csv`` and ``best.json``.

    Returns:
        ``best.json``'s content.
    """
    from atinuke.experiment import pretrain_state

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", spec.to_json())

    def prepare(arm: str, lr: float) -> Work:
        argv = pretrain_argv(out, spec, arm, lr, tokenizer, extra)
        logger.info("%s lr %g: atinuke pretrain %s", arm, lr, shlex.join(argv))
        return _run_pretrain, (argv,)

    todo = [Job(f"{arm}/{lr_name(lr)}", functools.partial(prepare, arm, lr))
            for arm in spec.arms for lr in spec.lrs if pretrain_state(run_dir(out, arm, lr)) != "done"]

    def on_done(name: str) -> None:
        write_results(out, spec)

    run_jobs(todo, jobs, on_done=on_done)
    best = write_results(out, spec)
    for arm, result in best["arms"].items():
        logger.info("%s: best lr %g (val ppl %.1f); the recipe's lr %g gives %s", arm, result["best_lr"],
                    result["best_val_ppl"], best["recipe_lr"],
                    "-" if result["recipe_val_ppl"] is None else f"{result['recipe_val_ppl']:.1f}")
    return best


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``atinuke lr-sweep``."""
    parser.add_argument("--arms", default="atinuke,bert", help="comma-separated arms trained from scratch")
    parser.add_argument("--lrs", default=",".join(f"{v:g}" for v in DEFAULT_LRS), help="peak learning rates")
    parser.add_argument("--steps", type=int, default=1200, help="steps per run (a short budget)")
    parser.add_argument("--warmup", type=int, default=None, help="warmup steps (default a quarter of --steps, "
                                                                  "at most the preset's)")
    parser.add_argument("--preset", default="tiny", help="architecture preset (tiny, small, base)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer directory shared by every run (default: the shipped tiny run's)")
    parser.add_argument("--pretrain-flags", default="", help="extra flags for every run, e.g. '--sources ptb'")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (-1: one per core)")
    parser.add_argument("--out", default="runs/lr-sweep", help="sweep directory")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in --out")


def run(args: argparse.Namespace) -> int:
    """``atinuke lr-sweep``."""
    from atinuke.config import PRESETS
    from atinuke.experiment import arm_flags
    from atinuke.parallel import resolve_jobs
    from atinuke.pretrain import TRAIN_DEFAULTS
    from atinuke.shipped import SHIPPED_ROOT

    arms = list(dict.fromkeys(a.strip() for a in args.arms.split(",") if a.strip()))
    if not arms:
        raise UserInputError(f"--arms {args.arms!r} names no arm")
    for arm in arms:
        if arm_flags(arm) is None:
            raise UserInputError(f"arm {arm!r} is pretrained elsewhere; an lr sweep needs arms trained from scratch")
    if args.preset not in PRESETS:
        raise UserInputError(f"unknown --preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    warmup = args.warmup if args.warmup is not None else min(int(TRAIN_DEFAULTS[args.preset]["warmup"]),
                                                             args.steps // 4)
    spec = SweepSpec(tuple(arms), parse_lrs(args.lrs), args.steps, warmup, args.preset, args.seed)
    tokenizer = args.tokenizer
    if tokenizer is None:
        shipped = SHIPPED_ROOT / f"{args.preset}-atinuke-seed0" / "model" / "tokenizer.json"
        tokenizer = str(shipped.parent.parent) if shipped.is_file() else None
    elif not (Path(tokenizer) / "model" / "tokenizer.json").is_file() and not (Path(tokenizer) / "tokenizer.json").is_file():
        raise UserInputError(f"--tokenizer {tokenizer}: no tokenizer.json there")
    out = Path(args.out)
    check_out(out, spec, args.resume)
    run_sweep(spec, out, tokenizer, shlex.split(args.pretrain_flags), resolve_jobs(args.jobs))
    return 0
