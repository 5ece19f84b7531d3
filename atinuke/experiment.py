"""``atinuke experiment``: pretrain and fine-tune every (arm, seed) and write one tidy results table.

    atinuke experiment --arms atinuke,bert --seeds 3 --tasks all --scale tiny --out runs/experiment

An *arm* is one architecture under test, trained from scratch with the same data, budget and tokenizer as the
others, so that differences between arms are differences of architecture (the controlled comparison the
paper, arXiv 2401.16736, never reports): ``atinuke`` (the paper's model), ``bert`` (a BERT encoder of the same
size, Devlin et al., 2019, arXiv 1810.04805), three ablations of Atinuke (learned positions, pre-norm, no
sqrt(d) embedding scale), and ``minilm`` (the pretrained all-MiniLM-L6-v2, fine-tuned only, as a reference).
Pretraining goes through ``atinuke pretrain``'s own flags; fine-tuning uses ``atinuke.finetune_all``'s
per-task budgets with ``--seed`` per run.

Layout under ``--out`` (read by the claims evaluator; docs/experiment.md):
``experiment.json`` ({"arms", "seeds", "tasks", "scale"}, written first), ``<arm>/seed<k>/pretrain/`` (the
pretraining run), ``<arm>/seed<k>/finetune/<task>/`` (the fine-tuning run), ``results.csv`` and
``results.parquet`` (columns ``RESULT_COLUMNS``, rebuilt from every finished run), ``progress.json``
(done/total/current unit, rewritten atomically after each unit). Finished units are skipped and an
interrupted pretraining run is resumed from its last checkpoint, so the command can be rerun at any time.
A fresh pretraining unit whose arguments resolve to exactly the recipe of a run shipped in
``atinuke/checkpoints/`` (seed 0 of the tiny Atinuke and BERT) gets a copy of it (``atinuke.shipped``;
``--no-shipped`` trains it instead).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from atinuke.errors import UserInputError
from atinuke.experiment_results import rebuild_results
from atinuke.io import atomic_write_json, check_out_path, claim_out_dir, holds_files
from atinuke.parallel import Job, Work, run_jobs

logger = logging.getLogger(__name__)

# Arm -> the ``atinuke pretrain`` flags that select its architecture; None: a pretrained reference that is
# only fine-tuned.
ARMS: dict[str, Optional[tuple[str, ...]]] = {
    "atinuke": ("--arch", "atinuke"),
    "bert": ("--arch", "bert"),
    "atinuke-learned-pos": ("--arch", "atinuke", "--positions", "learned"),
    "atinuke-pre-norm": ("--arch", "atinuke", "--norm-placement", "pre"),
    "atinuke-no-scale": ("--arch", "atinuke", "--embed-scale", "none"),
    "minilm": None,
}
DEFAULT_ARMS = ("atinuke", "bert")
SPEC_KEYS = ("arms", "seeds", "tasks", "scale")
# ``--tasks all`` and ``--tasks demo``: slots, each the first of its tasks whose data exist under the data
# setting (real, registry-real after `atinuke prepare-data`, or silver); a slot with none is left out, and
# the log says which. Real tasks take the claims' families (GLUE: cola, sst2, mrpc, sts, rte; SNLI: sick, SNLI's
# real stand-in; coreference: gap); SQuAD 2.0 and SRL have only silver versions here. The silver snli and coref
# stay as second, labelled tasks in "all" (snli also in "demo": the Makefile's attribution and patching use it).
TASK_SLOTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "all": (("cola",), ("sst2",), ("mrpc",), ("sts", "stsb"), ("rte",), ("sick",), ("snli",), ("squad2",), ("srl",),
            ("gap",), ("coref",), ("vader-movies",)),
    "demo": (("cola",), ("mrpc",), ("sts", "stsb"), ("sick",), ("snli",), ("squad2",), ("srl",), ("gap", "coref"),
             ("vader-movies",)),
}


@dataclass(frozen=True)
class Scale:
    """What ``--scale`` means.

    Attributes:
        preset: the ``atinuke pretrain --preset`` (architecture and training defaults).
        finetune_scale: multiplier on ``finetune_all.TASK_DEFAULTS`` example counts.
        device: torch device of both stages ("auto" = CUDA when present; pretraining then runs in bf16
            autocast).
    """

    preset: str
    finetune_scale: float
    device: str


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", 1.0, "cpu"),  # the demo: ~9 min pretraining per run (seed 0 ships) and the CPU sweep budgets
    "small": Scale("small", 2.0, "auto"),  # 4 layers x 256, 20k steps: an hour-scale CPU run, minutes on a GPU
    "base": Scale("base", 4.0, "auto"),  # 12 layers x 768, 100k steps in bf16: a GPU run
}


@dataclass(frozen=True)
class ExperimentSpec:
    """The identity of an experiment, as stored in ``experiment.json``."""

    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]
    scale: str

    def to_json(self) -> dict[str, Any]:
        return {"arms": list(self.arms), "seeds": list(self.seeds), "tasks": list(self.tasks), "scale": self.scale}


@dataclass(frozen=True)
class Unit:
    """One step of the experiment: ``stage`` is "pretrain" or "finetune/<task>"."""

    arm: str
    seed: int
    stage: str

    @property
    def name(self) -> str:
        return f"{self.arm}/seed{self.seed}/{self.stage}"

    @property
    def task(self) -> Optional[str]:
        return self.stage.split("/", 1)[1] if self.stage.startswith("finetune/") else None


# ------------------------------------------------------------------------------------------ mapping


def arm_flags(arm: str) -> Optional[list[str]]:
    """The ``atinuke pretrain`` flags of ``arm`` (None for a pretrained reference arm).

    Raises:
        UserInputError: for an unknown arm.
    """
    if arm not in ARMS:
        raise UserInputError(f"unknown arm {arm!r}; valid arms: {', '.join(ARMS)}")
    flags = ARMS[arm]
    return None if flags is None else list(flags)


def pretrain_dir(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / arm / f"seed{seed}" / "pretrain"


def finetune_dir(out: Path, arm: str, seed: int, task: str) -> Path:
    return Path(out) / arm / f"seed{seed}" / "finetune" / task


def plan_units(spec: ExperimentSpec) -> list[Unit]:
    """Every unit in run order: per arm and seed, pretraining (unless pretrained) then each task."""
    units = []
    for arm in spec.arms:
        for seed in spec.seeds:
            if ARMS[arm] is not None:
                units.append(Unit(arm, seed, "pretrain"))
            units.extend(Unit(arm, seed, f"finetune/{task}") for task in spec.tasks)
    return units


def pretrain_state(path: Path) -> str:
    """"done" (model/config.json and summary.json), "resume" (checkpoints, no summary), "fresh" (absent or
    empty) or "stale" (files but nothing to resume from: killed before its first checkpoint)."""
    from atinuke.pretrain_checkpoint import checkpoint_dirs

    if (path / "model" / "config.json").is_file() and (path / "summary.json").is_file():
        return "done"
    if checkpoint_dirs(path):
        return "resume"
    if not path.exists() or not any(path.iterdir()):
        return "fresh"
    return "stale"


def finetune_done(path: Path) -> bool:
    return (path / "metrics.json").is_file()


def unit_done(out: Path, unit: Unit) -> bool:
    if unit.stage == "pretrain":
        return pretrain_state(pretrain_dir(out, unit.arm, unit.seed)) == "done"
    assert unit.task is not None  # a unit that is not "pretrain" is "finetune/<task>"
    return finetune_done(finetune_dir(out, unit.arm, unit.seed, unit.task))


# ------------------------------------------------------------------------------------------ input


def _split(value: str) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


def task_source(task: str, data: str = "auto", data_dir: Optional[str] = None) -> Optional[tuple[str, str]]:
    """(source, dataset) of ``task`` under the data setting: ("real" | "registry-real" | "silver", name), or
    None when it has no data (no official files, registry copy not fetched, no silver version)."""
    from atinuke.tasks import DIAGNOSTIC_TASKS, sources

    try:
        resolved = sources.resolve(task, data, data_dir, DIAGNOSTIC_TASKS)
    except UserInputError:
        return None
    source = sources.SOURCES.get(task)
    if resolved == "diag":
        return (sources.SILVER, "diagnostic suite (spaCy-rule labels on real text)") if task in DIAGNOSTIC_TASKS \
            else None
    if resolved == "registry":
        fetched = source is not None and source.locate is not None and source.locate(False) is not None
        return (sources.REGISTRY_REAL, source.dataset) if fetched and source is not None else None
    layout = sources.find_layout(task, Path(resolved))
    return sources.REAL, (source.dataset if layout is not None and source is not None else f"official files in {resolved}")


def expand_tasks(preset: str, data: str = "auto", data_dir: Optional[str] = None) -> list[str]:
    """The tasks of ``--tasks all`` / ``demo`` (``TASK_SLOTS``) whose data exist, logged with their sources."""
    chosen, missing = [], []
    for slot in TASK_SLOTS[preset]:
        found = next(((t, task_source(t, data, data_dir)) for t in slot if task_source(t, data, data_dir)), None)
        if found is None:
            missing.append("/".join(slot))
            continue
        chosen.append(found[0])
    logger.info("--tasks %s: %s", preset, ", ".join(f"{t} ({task_source(t, data, data_dir)[0]})"  # type: ignore[index]
                                                   for t in chosen))
    if missing:
        logger.info("--tasks %s leaves out %s: no data (set ATINUKE_DATA or --data-dir for the official files; "
                    "`atinuke prepare-data` fetches the registry sets)", preset, ", ".join(missing))
    return chosen


def parse_spec(arms: str, seeds: int, tasks: str, scale: str, data: str = "auto",
               data_dir: Optional[str] = None) -> ExperimentSpec:
    """Validate the command-line values (``tasks`` "all" or "demo": :func:`expand_tasks` under ``data``).

    Raises:
        UserInputError: unknown arm, task or scale; fewer than one seed.
    """
    from atinuke.finetune_all import TASK_DEFAULTS

    arm_list = _split(arms)
    if not arm_list:
        raise UserInputError(f"--arms {arms!r} names no arm; valid arms: {', '.join(ARMS)}")
    for arm in arm_list:
        arm_flags(arm)
    if int(seeds) < 1:
        raise UserInputError(f"--seeds must be at least 1, got {seeds}")
    task_list = expand_tasks(tasks.strip(), data, data_dir) if tasks.strip() in TASK_SLOTS else _split(tasks)
    unknown = [t for t in task_list if t not in TASK_DEFAULTS]
    if unknown or not task_list:
        raise UserInputError(f"unknown task(s) {unknown or tasks!r}; choose 'all', 'demo' or from {', '.join(TASK_DEFAULTS)}")
    if scale not in SCALES:
        raise UserInputError(f"unknown --scale {scale!r}; choose from {', '.join(SCALES)}")
    return ExperimentSpec(tuple(arm_list), tuple(range(int(seeds))), tuple(task_list), scale)


def read_spec(out: Path) -> Optional[ExperimentSpec]:
    """The spec in ``out/experiment.json`` (None when absent).

    Raises:
        UserInputError: the file is not a valid experiment description.
    """
    path = Path(out) / "experiment.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ExperimentSpec(tuple(data["arms"]), tuple(int(s) for s in data["seeds"]), tuple(data["tasks"]),
                              str(data["scale"]))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise UserInputError(f"{path}: not an experiment description ({error})") from error


def _describe(spec: ExperimentSpec) -> str:
    return (f"arms={','.join(spec.arms)} seeds={len(spec.seeds)} tasks={','.join(spec.tasks)} "
            f"scale={spec.scale}")


def check_out(out: Path, requested: Optional[ExperimentSpec], resume: bool, overwrite: bool) -> ExperimentSpec:
    """Decide which experiment runs in ``out`` without writing anything.

    ``requested`` None (with ``resume``) means "whatever ``out/experiment.json`` says". An existing experiment
    with the same spec is continued; a different arms/seeds/tasks needs ``overwrite`` (which replaces
    experiment.json and keeps every run); a different scale is always refused.

    Raises:
        UserInputError: ``out`` is a file or a non-empty directory that is not an experiment, ``--resume``
            without an experiment, or a spec that contradicts the existing one.
    """
    out = check_out_path(out)
    existing = read_spec(out) if out.is_dir() else None
    if existing is None:
        if out.is_dir() and holds_files(out):
            raise UserInputError(f"--out {out} holds files but no experiment.json; choose an empty or new directory")
        if resume:
            raise UserInputError(f"--resume: {out} holds no experiment.json to continue")
        assert requested is not None
        return requested
    if requested is None or requested == existing:
        return existing
    if requested.scale != existing.scale:
        raise UserInputError(f"{out / 'experiment.json'} is a {existing.scale} experiment, this run asks for "
                             f"{requested.scale}; runs of two scales cannot share a directory, choose another --out")
    if not overwrite:
        raise UserInputError(f"{out / 'experiment.json'} describes {_describe(existing)}, not {_describe(requested)}; "
                             f"continue it with --resume, pass --overwrite to change it (no run is deleted), "
                             f"or choose another --out")
    return requested


# ------------------------------------------------------------------------------------------ running


def _run_pretrain(argv: list[str]) -> None:
    """Run ``atinuke pretrain`` with ``argv`` in this process (its own flags and validation)."""
    from atinuke.pretrain import run_argv

    run_argv(argv)


def _run_finetune(config: Any) -> None:
    """Run one fine-tuning (``atinuke.finetune.finetune``)."""
    from atinuke.finetune import finetune

    finetune(config)


def pretrain_argv(out: Path, unit: Unit, scale: Scale, device: str, extra: Sequence[str],
                  tokenizer: Optional[Path]) -> list[str]:
    """The ``atinuke pretrain`` arguments of a pretraining unit (``--resume`` for an interrupted one: the
    checkpoint then supplies every setting)."""
    path = pretrain_dir(out, unit.arm, unit.seed)
    if pretrain_state(path) == "resume":
        return ["--out", str(path), "--resume", "--device", device]
    flags = arm_flags(unit.arm)
    assert flags is not None, f"arm {unit.arm} is pretrained elsewhere"  # plan_units gives it no pretrain unit
    argv = ["--preset", scale.preset, "--objective", "mlm", "--out", str(path), "--seed", str(unit.seed),
            "--device", device, *flags, *extra]
    if tokenizer is not None and "--tokenizer" not in extra:
        argv += ["--tokenizer", str(tokenizer)]
    return argv


def _shared_tokenizer(out: Path, spec: ExperimentSpec) -> Optional[Path]:
    """The first pretraining run's directory once it has a tokenizer: every later run reuses it, so that
    arms and seeds differ in architecture and initialisation only (the WordPiece trainer's id order varies
    between processes)."""
    first = next((u for u in plan_units(spec) if u.stage == "pretrain"), None)
    if first is None:
        return None
    path = pretrain_dir(out, first.arm, first.seed)
    return path if (path / "model" / "tokenizer.json").is_file() else None


def _write_progress(out: Path, units: Sequence[Unit], done: set[str], running: Sequence[str],
                    error: Optional[str] = None) -> None:
    """``progress.json``: ``current`` is the first running unit (or the next one), ``running`` all of them."""
    pending = [u.name for u in units if u.name not in done]
    current: Optional[str] = (list(running) or pending or [None])[0]  # type: ignore[list-item]
    atomic_write_json(out / "progress.json", {
        "done": len(done), "total": len(units), "current": current,
        "running": list(running), "pending": pending, "finished": len(done) == len(units),
        "error": error, "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})


def _set_aside(path: Path) -> Path:
    """Rename a pretraining directory that cannot be resumed to ``pretrain.interrupted[-N]`` (kept, not deleted)."""
    target, n = path.with_name(path.name + ".interrupted"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.interrupted-{n}")
    path.rename(target)
    logger.warning("%s was interrupted before its first checkpoint; moved to %s and started again", path, target)
    return target


def _usable_shipped(unit: Unit, scale: Scale, argv: Sequence[str], tokenizer: Optional[Path],
                    path: Path) -> Optional[Path]:
    """The shipped run (``atinuke.shipped``) that is exactly what this fresh pretraining unit would train."""
    from atinuke.shipped import matches, shipped_run

    shipped = shipped_run(scale.preset, unit.arm, unit.seed)
    if shipped is None or pretrain_state(path) != "fresh":
        return None
    reason = matches(shipped, argv, tokenizer)
    if reason is not None:
        logger.info("%s: not using the shipped run %s (%s); training", unit.name, shipped, reason)
        return None
    return shipped


def _pretrain_work(out: Path, spec: ExperimentSpec, unit: Unit, scale: Scale, device: str,
                   pretrain_flags: Sequence[str], use_shipped: bool) -> Work:
    """Prepare a pretraining unit: install the shipped run it matches (no work left) or return the training."""
    from atinuke.shipped import install as install_shipped

    path = pretrain_dir(out, unit.arm, unit.seed)
    if pretrain_state(path) == "stale":
        _set_aside(path)
    tokenizer = _shared_tokenizer(out, spec)
    argv = pretrain_argv(out, unit, scale, device, pretrain_flags, tokenizer)
    shipped = _usable_shipped(unit, scale, argv, tokenizer, path) if use_shipped else None
    if shipped is not None:
        install_shipped(shipped, path)
        return None
    logger.info("%s: atinuke pretrain %s", unit.name, shlex.join(argv))
    return _run_pretrain, (argv,)


def _other_source(out: Path, unit: Unit, data_record: dict[str, dict[str, str]]) -> bool:
    """Whether a finished fine-tuning unit read another data source than its task has now (silver cola before
    ATINUKE_DATA was set): it is run again, so that no result is labelled with data it did not use."""
    if unit.task is None:
        return False
    metrics = json.loads((finetune_dir(out, unit.arm, unit.seed, unit.task) / "metrics.json").read_text(encoding="utf-8"))
    recorded, now = metrics.get("data_source"), data_record.get(unit.task, {}).get("source")
    if recorded and now and now != "none" and recorded != now:
        logger.info("%s: its run read %s data, the task now has %s: running it again", unit.name, recorded, now)
        return True
    return False


def run_experiment(spec: ExperimentSpec, out: Path, data: str = "auto", device: Optional[str] = None,
                   pretrain_flags: Sequence[str] = (), finetune_scale: Optional[float] = None,
                   use_shipped: bool = True, jobs: int = 1, pretrain_only: bool = False,
                   data_dir: Optional[str] = None) -> list[dict[str, Any]]:
    """Write ``experiment.json``, run every unit not yet done, and rebuild the results table.

    Args:
        spec: arms, seeds, tasks and scale.
        out: the experiment directory (validated with :func:`check_out` first).
        data: "auto" (each task's real data, else registry-real, else silver: :mod:`atinuke.tasks.sources`),
            "diag" (silver) or a directory of official task files.
        device: overrides the scale's device.
        pretrain_flags: extra ``atinuke pretrain`` flags for every fresh pretraining run (e.g. ``--steps``).
        finetune_scale: overrides the scale's multiplier on the fine-tuning example counts.
        use_shipped: copy a shipped pretraining run (``atinuke/checkpoints/``) into a fresh unit whose
            arguments resolve to exactly its recipe, instead of training it again.
        jobs: units run at once, each in its own process (``atinuke.parallel``); a unit starts once the
            pretraining it fine-tunes is done, and every pretraining run after the first waits for the
            first one's tokenizer. Fine-tuning runs start costliest first.
        pretrain_only: run the pretraining units only (``make models`` starts the analyses of the pretrained
            models while the fine-tuning runs); progress still counts every unit.
        data_dir: the data directory for "auto" (``--data-dir``; default ``$ATINUKE_DATA``).

    Returns:
        The result rows.
    """
    from tqdm import tqdm

    from atinuke.finetune_all import estimated_cost, task_config
    out = Path(out)
    scale = SCALES[spec.scale]
    device = device or scale.device
    multiplier = scale.finetune_scale if finetune_scale is None else finetune_scale
    out.mkdir(parents=True, exist_ok=True)
    data_record = {task: dict(zip(("source", "dataset"), task_source(task, data, data_dir) or ("none", "")))
                   for task in spec.tasks}
    atomic_write_json(out / "experiment.json", spec.to_json() | {"data": data, "data_dir": data_dir,
                                                                 "task_data": data_record})
    units = plan_units(spec)
    done = {u.name for u in units if unit_done(out, u) and not _other_source(out, u, data_record)}
    _write_progress(out, units, done, [])
    first_pretrain = next((u.name for u in units if u.stage == "pretrain"), None)
    by_name = {u.name: u for u in units}
    bar = tqdm(total=len(units), initial=len(done), desc="experiment", unit="unit", dynamic_ncols=True, position=0)
    running: list[str] = []

    def prepare(unit: Unit) -> Work:
        if unit.stage == "pretrain":
            return _pretrain_work(out, spec, unit, scale, device, pretrain_flags, use_shipped)
        assert unit.task is not None  # a unit that is not "pretrain" is "finetune/<task>"
        model = "minilm" if ARMS[unit.arm] is None else str(pretrain_dir(out, unit.arm, unit.seed))
        budget = "minilm" if ARMS[unit.arm] is None else "atinuke"
        config = task_config(unit.task, model, budget, finetune_dir(out, unit.arm, unit.seed, unit.task),
                             data, multiplier, device, unit.seed, data_dir)
        return _run_finetune, (dataclasses.replace(config, overwrite=True),)  # an unfinished unit is ours to redo

    def after(unit: Unit) -> frozenset[str]:
        needs = set()
        if unit.stage == "pretrain" and first_pretrain not in (None, unit.name):
            needs.add(first_pretrain)  # its tokenizer is every later run's
        if unit.stage != "pretrain" and ARMS[unit.arm] is not None:
            needs.add(Unit(unit.arm, unit.seed, "pretrain").name)
        return frozenset(needs - done)

    def on_start(names: Sequence[str]) -> None:
        running[:] = names
        bar.set_postfix_str(", ".join(names))
        _write_progress(out, units, done, running)

    def on_done(name: str) -> None:
        unit = by_name[name]
        if unit.stage == "pretrain":
            path = pretrain_dir(out, unit.arm, unit.seed)
            if pretrain_state(path) != "done":  # e.g. --stop-after in --pretrain-flags
                raise UserInputError(f"{path}: pretraining stopped at a checkpoint before its last step; "
                                     "continue the experiment with --resume")
        else:
            rebuild_results(out, spec.arms)
        done.add(name)
        if name in running:
            running.remove(name)
        bar.update(1)
        _write_progress(out, units, done, running)

    def order(unit: Unit) -> tuple[bool, float]:  # pretraining first (plan order), then the costliest runs
        if unit.task is None:
            return (False, 0.0)
        return (True, -estimated_cost(unit.task, "minilm" if ARMS[unit.arm] is None else "atinuke"))

    wanted = [u for u in units if u.name not in done and (u.stage == "pretrain" or not pretrain_only)]
    todo = [Job(u.name, functools.partial(prepare, u), after(u)) for u in sorted(wanted, key=order)]
    try:
        run_jobs(todo, jobs, on_start=on_start, on_done=on_done)
    except BaseException as error:
        _write_progress(out, units, done, running, error=f"{type(error).__name__}: {error}".splitlines()[0])
        raise
    finally:
        bar.close()
    rows = rebuild_results(out, spec.arms)
    logger.info("%s done: %d units, %d result rows in %s", "pretraining" if pretrain_only else "experiment",
                len(done), len(rows), out / "results.csv")
    return rows


# ------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``atinuke experiment``."""
    parser.add_argument("--arms", default=None, help=f"comma-separated arms: {', '.join(ARMS)} "
                                                     f"(default {','.join(DEFAULT_ARMS)})")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 per arm (default 3)")
    parser.add_argument("--tasks", default=None, help="'all' (default), 'demo' or comma-separated tasks "
                                                      "('all'/'demo': those whose data exist; docs/experiment.md)")
    parser.add_argument("--scale", default=None, help=f"{', '.join(SCALES)} (default tiny; see docs/experiment.md)")
    parser.add_argument("--out", default="runs/experiment", help="experiment directory")
    parser.add_argument("--resume", action="store_true", help="continue the experiment in --out with its settings")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a different experiment.json in --out (runs are kept and reused, never deleted)")
    parser.add_argument("--data", default="auto", help="'auto' (real where it exists, else registry-real, else "
                                                     "silver), 'diag' (silver) or a directory of official task files")
    parser.add_argument("--data-dir", default=None, help="directory of official layouts (default $ATINUKE_DATA)")
    parser.add_argument("--device", default=None, help="override the scale's device (cpu, cuda, auto)")
    parser.add_argument("--pretrain-flags", default="", help="extra flags for every pretraining run, e.g. '--steps 500'")
    parser.add_argument("--finetune-scale", type=float, default=None,
                        help="override the scale's multiplier on the fine-tuning example counts")
    parser.add_argument("--jobs", type=int, default=1,
                        help="units run at once, each in its own process with its share of the cores (default 1; -1: one per core)")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="run only the pretraining units (the rest later, with the same command without it)")
    parser.add_argument("--no-shipped", dest="use_shipped", action="store_false",
                        help="train every pretraining run, even one that a shipped run (atinuke/checkpoints/) matches")
    parser.add_argument("--plan", action="store_true",
                        help="train nothing: print the seeds per arm needed to detect --effect, from the runs in --from")
    parser.add_argument("--effect", type=float, default=0.02,
                        help="with --plan: the difference in the headline metric to detect (default 0.02)")
    parser.add_argument("--from", dest="plan_from", default=None,
                        help="with --plan: an earlier experiment directory (default --out)")


def run(args: argparse.Namespace) -> int:
    """``atinuke experiment``."""
    from atinuke.parallel import resolve_jobs
    from atinuke.tasks.sources import data_dir

    data_dir(args.data_dir)  # a --data-dir or ATINUKE_DATA that is no directory: said before anything runs
    out = Path(args.out)
    if getattr(args, "plan", False):
        from atinuke.power import format_plan, plan_from_results

        source = Path(args.plan_from or out)
        if not source.is_dir():
            raise UserInputError(f"--from {source}: no such directory")
        sys.stdout.write(format_plan(plan_from_results(source, args.effect), args.effect))
        return 0
    given = [args.arms, args.seeds, args.tasks, args.scale]
    if args.resume and all(v is None for v in given):
        requested = None
    else:
        existing = read_spec(out) if args.resume and out.is_dir() else None
        base = existing or ExperimentSpec(DEFAULT_ARMS, (0, 1, 2), ("all",), "tiny")
        requested = parse_spec(args.arms if args.arms is not None else ",".join(base.arms),
                               args.seeds if args.seeds is not None else len(base.seeds),
                               args.tasks if args.tasks is not None else ",".join(base.tasks),
                               args.scale if args.scale is not None else base.scale, args.data, args.data_dir)
    if args.finetune_scale is not None and not args.finetune_scale > 0:
        raise UserInputError(f"--finetune-scale must be positive, got {args.finetune_scale}")
    spec = check_out(out, requested, args.resume, args.overwrite)
    claim_out_dir(out)  # one experiment at a time in a directory (run_cli ends the claim)
    spec = check_out(out, requested, args.resume, args.overwrite)  # one that finished meanwhile wrote its spec
    run_experiment(spec, out, data=args.data, device=args.device, pretrain_flags=shlex.split(args.pretrain_flags),
                   finetune_scale=args.finetune_scale, use_shipped=getattr(args, "use_shipped", True),
                   jobs=resolve_jobs(args.jobs), pretrain_only=args.pretrain_only, data_dir=args.data_dir)
    return 0
