"""What the demo's background build (``make demo`` -> ``make -j2 models``) has still to do, for every page's banner.

Two sources: ``<runs>/experiment/progress.json`` (written by ``atinuke experiment``: units done, running and
pending) and, while the build holds ``<runs>/.build.lock``, which of the demo's analyses exist yet
(``DEMO_ARTIFACTS``, the files of the Makefile's ``models`` rule; ``tests/test_build_status.py`` keeps the two
lists equal).
"""
from __future__ import annotations

import fcntl
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

logger = logging.getLogger(__name__)

LOCK_FILE = ".build.lock"
# The analyses `make models` builds after (or beside) the experiment, relative to the runs directory.
DEMO_ARTIFACTS = (
    "lr-sweep/best.json",
    "probes/atinuke-seed0/pos/results.parquet",
    "probes/bert-seed0/pos/results.parquet",
    "probes/minilm/pos/results.parquet",
    "attributions/atinuke-snli/attributions.parquet",
    "attributions/minilm-snli/attributions.parquet",
    "sae/atinuke-seed0-resid1/metrics.json",
    "sae/minilm-resid3/metrics.json",
    "lens/atinuke-seed0/lens_layers.parquet",
    "lens/bert-seed0/lens_layers.parquet",
    "patch/atinuke-seed0-snli/patching.parquet",
    "patch/minilm-seed0-snli/patching.parquet",
    "circuit/atinuke-seed0-snli/nodes.parquet",
    "circuit/minilm-seed0-snli/nodes.parquet",
    "pretrain/atinuke-clm/model/config.json",
)


def experiment_progress(root: Path) -> Optional[dict[str, Any]]:
    """``<root>/experiment/progress.json`` as written by ``atinuke experiment``, or None when absent or unreadable."""
    path = Path(root) / "experiment" / "progress.json"
    if not path.is_file():
        return None
    try:
        progress = json.loads(path.read_text())
        done, total = int(progress["done"]), int(progress["total"])
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("cannot read %s", path, exc_info=True)
        return None
    return dict(progress, done=done, total=total)


def build_running(root: Path) -> bool:
    """Whether a build holds ``<root>/.build.lock`` (``flock``'s exclusive lock) right now."""
    path = Path(root) / LOCK_FILE
    if not path.is_file():
        return False
    try:
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def missing_artifacts(root: Path, artifacts: Sequence[str] = DEMO_ARTIFACTS) -> list[str]:
    return [name for name in artifacts if not (Path(root) / name).exists()]


def _short(name: str) -> str:
    """``attributions/minilm-snli/attributions.parquet`` -> ``attributions minilm-snli``."""
    parts = name.split("/")
    return f"{parts[0]} {parts[1]}" if len(parts) > 2 else parts[0]


def building_message(progress: Optional[Mapping[str, Any]], missing: Sequence[str] = (),
                     running: bool = False, total: int = len(DEMO_ARTIFACTS)) -> Optional[str]:
    """The banner text while something is still being built, or None when nothing is.

    Args:
        progress: the experiment's progress (``experiment_progress``).
        missing: demo analyses not built yet; shown only while ``running``.
        running: whether the background build is running.
        total: how many analyses the build makes.
    """
    if progress and progress["done"] < progress["total"]:
        message = f"Still building the experiment: {progress['done']}/{progress['total']} units done"
        now = progress.get("running") or ([progress["current"]] if progress.get("current") else [])
        if now:
            message += f", now {', '.join(now)}"
        if progress.get("error"):
            message += f" (stopped with {progress['error']}; rerun `atinuke experiment` to resume)"
        if running and missing:
            message += f"; analyses {total - len(missing)}/{total} built"
        return message
    if running and missing:
        return (f"Still building the analyses: {total - len(missing)}/{total} built, next "
                f"{', '.join(_short(m) for m in missing[:3])}{' …' if len(missing) > 3 else ''} (log: runs/build.log)")
    return None


def status_message(root: Path) -> Optional[str]:
    """The banner text for the runs directory ``root`` (None when nothing is being built)."""
    running = build_running(root)
    return building_message(experiment_progress(root), missing_artifacts(root) if running else (), running)
