"""A persistent, content-addressed store of per-example attribution results.

The key of a result is the sha256 of everything it depends on: the model's parameter hash, the example id
and its input text(s), the method, its parameters (canonical JSON) and the target. Each value is a small
parquet file ``<root>/<key[:2]>/<key>.parquet`` written atomically (``atinuke.io``), one per example as soon
as its batch is done, so a rerun costs nothing, a killed job resumes losing nothing that was written, and
concurrent ranks never write the same file. A corrupt or truncated file is treated as missing (and logged).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import pandas as pd

from atinuke.io import write_with

logger = logging.getLogger(__name__)


class AttributionStore:
    """Content-addressed results on disk.

    Args:
        root: the store directory (created on first write).

    Attributes:
        hits, misses, writes: counters of this instance (a rerun's ``misses`` is the work it had to do).
    """

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.writes = 0

    @staticmethod
    def key(model_hash: str, example_id: str, texts: Sequence[str], method: str, params_json: str,
            target: str) -> str:
        """sha256 over the canonical JSON of every input of a result."""
        payload = json.dumps([model_hash, str(example_id), list(texts), method, params_json, target],
                             ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.parquet"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> Optional[pd.DataFrame]:
        """The stored table of ``key``, or None (missing or unreadable)."""
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types on truncated files
            logger.warning("%s: unreadable store entry (%s); recomputing", path, error)
            self.misses += 1
            return None
        self.hits += 1
        return frame

    def put(self, key: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` under ``key`` atomically."""
        write_with(self.path(key), lambda tmp: frame.to_parquet(tmp, index=False))
        self.writes += 1

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.parquet")) if self.root.is_dir() else 0
