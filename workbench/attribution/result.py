"""The one result type of every attribution method: a tidy table, one row per (example, real token)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from atinuke.errors import UserInputError
from atinuke.io import write_with

COLUMNS = ("example_id", "token_index", "token", "word_index", "word", "score", "method", "params", "target",
           "delta")


@dataclass
class Attribution:
    """Attribution scores as a tidy table, one row per (example, real token).

    Columns of ``frame``: ``example_id`` (str), ``token_index`` (position in the model input), ``token``,
    ``word_index`` (whitespace word across segments, -1 for special tokens), ``word``, ``score`` (float),
    ``method``, ``params`` (JSON of the settings used; IG adds the ``n_steps_used``), ``target`` (what was
    explained, e.g. ``class=1``, ``span=12:14``, ``norm@0``), ``delta`` (convergence delta; NaN when the
    method has none).
    """

    frame: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(COLUMNS)))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def example_ids(self) -> list[str]:
        return list(dict.fromkeys(self.frame["example_id"]))

    def scores(self, example_id: str, method: Optional[str] = None) -> np.ndarray:
        """[T] token scores of one example (in token order)."""
        rows = self.frame[self.frame["example_id"] == str(example_id)]
        if method is not None:
            rows = rows[rows["method"] == method]
        if rows.empty:
            raise UserInputError(f"no attribution for example {example_id!r}")
        return rows.sort_values("token_index")["score"].to_numpy()

    def word_scores(self) -> pd.DataFrame:
        """Scores summed over each word's sub-tokens (special tokens dropped).

        Returns:
            DataFrame: example_id, method, target, word_index, word, score.
        """
        words = self.frame[self.frame["word_index"] >= 0]
        return (words.groupby(["example_id", "method", "target", "word_index", "word"], sort=False)["score"]
                .sum().reset_index())

    def to_parquet(self, path: Union[str, Path]) -> None:
        """Write the table atomically."""
        write_with(path, lambda tmp: self.frame.to_parquet(tmp, index=False))

    @classmethod
    def read_parquet(cls, path: Union[str, Path]) -> "Attribution":
        return cls(pd.read_parquet(path))

    @classmethod
    def concat(cls, parts: Sequence["Attribution"]) -> "Attribution":
        frames = [p.frame for p in parts if len(p.frame)]
        return cls(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS)))
