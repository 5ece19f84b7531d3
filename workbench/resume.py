"""Resumable output tables for ``workbench patch``, ``workbench lens`` and ``workbench circuit``.

A command's work is split into units (a patching method, a circuit's node or edge ranking, a tuned lens); each
unit's table is written atomically, as soon as it is done, to ``OUT/parts/<unit>-<key>.parquet``, where the key
is a sha256 over the model hash, the inputs, the settings and the unit's name (as the attribution store keys its
entries, :meth:`workbench.store.AttributionStore.key`). ``OUT/parts/run.json`` holds the run's key material, so
a rerun into the same ``--out`` with ``--resume`` reads back every finished unit and computes only the others,
while a rerun with other settings is refused in one line. A unit read back is the table that was written
(parquet keeps the values and ``DataFrame.attrs``), so a resumed run's final tables equal an uninterrupted one's.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from atinuke.errors import UserInputError

logger = logging.getLogger(__name__)

PARTS = "parts"


class ResumableParts:
    """The units of one command's run in ``out`` (see the module docstring).

    Args:
        out: the command's --out directory.
        key: what identifies the run: model hash, inputs, settings (JSON-serialisable).
        resume: continue the run found there (else any parts of an earlier run are removed: --overwrite).

    Attributes:
        reused, computed: unit names read back / computed by this instance.
    """

    def __init__(self, out: Path, key: dict[str, Any], resume: bool) -> None:
        from atinuke.io import atomic_write_json

        self.root = Path(out) / PARTS
        self.key = json.loads(json.dumps(key, sort_keys=True, default=str))
        self.reused: list[str] = []
        self.computed: list[str] = []
        manifest = self.root / "run.json"
        if manifest.is_file() and resume:
            try:
                earlier = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise UserInputError(f"{manifest}: unreadable ({error}); pass --overwrite to start again") from error
            changed = sorted(k for k in set(earlier) | set(self.key) if earlier.get(k) != self.key.get(k))
            if changed:
                first = changed[0]
                raise UserInputError(f"{out} holds a run with other settings ({first}: {earlier.get(first)!r} there, "
                                     f"{self.key.get(first)!r} now); resume it with the same ones or choose another --out")
        elif self.root.is_dir():
            shutil.rmtree(self.root)  # --overwrite, or a directory without a finished manifest
        atomic_write_json(manifest, self.key)

    def _path(self, unit: str) -> Path:
        payload = json.dumps([self.key, unit], sort_keys=True, ensure_ascii=False)
        return self.root / f"{unit}-{hashlib.sha256(payload.encode('utf-8')).hexdigest()[:16]}.parquet"

    def table(self, unit: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The unit's table: read back when an earlier run wrote it, else computed and written at once."""
        from atinuke.io import write_with

        path = self._path(unit)
        if path.is_file():
            try:
                frame = pd.read_parquet(path)
                self.reused.append(unit)
                logger.info("resumed %s from %s", unit, path)
                return frame
            except Exception as error:  # pyarrow raises several types on truncated files
                logger.warning("%s: unreadable part (%s); recomputing", path, error)
        frame = compute()
        write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))
        self.computed.append(unit)
        return frame

    def file(self, unit: str, suffix: str) -> Path:
        """Where a unit that is not a table (a tuned lens) lives; it is done when the file exists."""
        return self._path(unit).with_suffix(suffix)
