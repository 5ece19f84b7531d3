"""Pretraining runs that ship with the repository, so that the demo does not spend its first minutes on them.

``atinuke/checkpoints/<preset>-<arm>-seed<k>/`` holds what ``atinuke pretrain`` wrote for that run (``model/``
as safetensors with its tokenizer, ``summary.json``, ``metrics.csv``; no optimizer checkpoints) plus
``recipe.json``: the exact ``atinuke pretrain`` arguments that produced it. ``atinuke experiment`` copies a
shipped run into a fresh pretraining unit only when the unit's own arguments resolve to the same recipe
(every training setting equal; the tokenizer either trained afresh by the unit, or byte-identical to the
shipped one), and says so in the log and in ``shipped.json`` beside the copy. Anything else is trained.

The first steps' losses of every shipped run are reproduced by the test suite from ``recipe.json`` (with the
shipped tokenizer pinned, because the WordPiece trainer's id order differs between processes).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

SHIPPED_ROOT = Path(__file__).resolve().parent / "checkpoints"
RECIPE_FILE = "recipe.json"
MARKER_FILE = "shipped.json"
SHIPPED_FILES = ("summary.json", "metrics.csv", RECIPE_FILE)


def _ignored() -> set[str]:
    """Settings that do not change what is trained (where it runs, how often it is evaluated or saved): pretraining's
    own list of operational fields, so that a new one (``--keep-log-checkpoints``) never makes a shipped run stale,
    plus the tokenizer path (compared by content instead)."""
    from atinuke.pretrain import OPERATIONAL_FIELDS

    return {*OPERATIONAL_FIELDS, "tokenizer"}


def shipped_run(preset: str, arm: str, seed: int, root: Path = SHIPPED_ROOT) -> Optional[Path]:
    """The shipped run of (preset, arm, seed), or None when the repository has none."""
    path = Path(root) / f"{preset}-{arm}-seed{seed}"
    complete = all((path / name).is_file() for name in SHIPPED_FILES) and \
        (path / "model" / "model.safetensors").is_file() and (path / "model" / "tokenizer.json").is_file()
    return path if complete else None


def read_recipe(path: Path) -> list[str]:
    """The ``atinuke pretrain`` arguments stored in ``path/recipe.json`` (without ``--out``)."""
    try:
        recipe = json.loads((Path(path) / RECIPE_FILE).read_text(encoding="utf-8"))
        argv = recipe["argv"]
    except (OSError, ValueError, KeyError) as error:
        raise UserInputError(f"{Path(path) / RECIPE_FILE}: not a readable recipe ({error})") from None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise UserInputError(f"{Path(path) / RECIPE_FILE}: 'argv' must be a list of strings")
    return argv


def resolved_settings(argv: Sequence[str]) -> dict[str, Any]:
    """The training settings ``atinuke pretrain argv`` would use (defaults filled in), minus the operational ones."""
    from atinuke import pretrain
    from atinuke.validation import RaisingArgumentParser

    parser = RaisingArgumentParser(prog="atinuke pretrain", add_help=False)
    pretrain.add_arguments(parser)
    args = parser.parse_args(list(argv))
    requested = pretrain.requested_settings(args)
    requested.setdefault("out", "unused")
    config = asdict(pretrain.resolve_config(requested))
    config["sources"] = list(config["sources"])
    ignored = _ignored()
    return {k: v for k, v in config.items() if k not in ignored}


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tokenizer_file(directory: Path) -> Path:
    """``tokenizer.json`` of a run or model directory."""
    directory = Path(directory)
    return directory / "model" / "tokenizer.json" if (directory / "model" / "tokenizer.json").is_file() \
        else directory / "tokenizer.json"


def matches(shipped: Path, argv: Sequence[str], tokenizer: Optional[Path]) -> Optional[str]:
    """Why the shipped run is *not* what ``atinuke pretrain argv`` would train (None when it is).

    Args:
        shipped: a :func:`shipped_run` directory.
        argv: the unit's ``atinuke pretrain`` arguments.
        tokenizer: the tokenizer directory the unit would reuse (None: it would train its own).
    """
    wanted = resolved_settings(argv)
    summary = json.loads((Path(shipped) / "summary.json").read_text(encoding="utf-8"))
    ignored = _ignored()
    have = {k: (list(v) if isinstance(v, tuple) else v) for k, v in summary["config"].items() if k not in ignored}
    differing = sorted(k for k in set(wanted) | set(have) if wanted.get(k) != have.get(k))
    if differing:
        return "settings differ: " + ", ".join(f"{k} {have.get(k)!r} (shipped) vs {wanted.get(k)!r}" for k in differing)
    if tokenizer is not None and _digest(tokenizer_file(tokenizer)) != _digest(tokenizer_file(shipped)):
        return f"the tokenizer in {tokenizer} is not the shipped one"
    return None


def install(shipped: Path, target: Path) -> Path:
    """Copy a shipped run into the (absent or empty) pretraining directory ``target``.

    The copy is made beside ``target`` and renamed into place (``atomic_dir``), so an interruption leaves no
    half-copied run.

    Raises:
        UserInputError: when ``target`` already holds files.
    """
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise UserInputError(f"{target}: not empty; a shipped run is only copied into a fresh directory")
    with atomic_dir(target) as staging:
        shutil.copytree(Path(shipped) / "model", staging / "model")
        for name in SHIPPED_FILES:
            shutil.copy2(Path(shipped) / name, staging / name)
        atomic_write_json(staging / MARKER_FILE, {"copied_from": str(shipped), "reproduce": reproduce_command(shipped)})
    logger.info("%s: copied the shipped run %s (reproduce it with: %s)", target, shipped, reproduce_command(shipped))
    return target


def reproduce_command(shipped: Path) -> str:
    """The shell command that trains the shipped run again."""
    import shlex

    return "atinuke pretrain " + shlex.join([*read_recipe(shipped), "--out", "runs/reproduce/" + Path(shipped).name])
