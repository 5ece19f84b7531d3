"""Where the project keeps fetched data and trained models."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Directory for fetched and derived data: ``$ATINUKE_CACHE``, else ``~/.cache/atinuke``."""
    path = Path(os.environ.get("ATINUKE_CACHE", Path.home() / ".cache" / "atinuke"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Directory of trained models and analysis artifacts: ``$ATINUKE_RUNS``, else ``<repo>/runs``."""
    return Path(os.environ.get("ATINUKE_RUNS", REPO_ROOT / "runs"))

