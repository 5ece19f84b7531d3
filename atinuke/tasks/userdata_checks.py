"""Checks that keep a user's file from turning silently into other training data (issue 30, item 6).

Each check either refuses with ``file:line`` (a :class:`~atinuke.errors.UserInputError`) or normalises and says so:

- a delimited file whose quoted field swallows whole rows (an unclosed ``"``: 20 lines became 17 examples);
- a header naming one column twice (the reader kept the second);
- a cell holding a list or a mapping where text is expected (JSONL, parquet: it was stringified);
- a label that is not a number (NaN, infinity) or not text (a list);
- numeric labels written two ways (``1`` and ``1.0``): they are one class, written as the integer, and the
  number of rewritten labels is logged and recorded.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any, Sequence

from atinuke.errors import UserInputError

logger = logging.getLogger(__name__)

_INTEGRAL = re.compile(r"[+-]?\d+\.0*")  # "1.0", "-3.00": an integer written as a float


def check_header(where: str, header: Sequence[str]) -> None:
    """Refuse a header that names a column twice (``where``: ``file:1`` or the parquet file)."""
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise UserInputError(f"{where}: column {name!r} appears twice in the header; rename one of them")
        seen.add(name)


def check_quoted_field(path: object, start: int, end: int, values: Sequence[str], delimiter: str,
                       n_columns: int) -> None:
    """Refuse a record whose quoted field holds whole rows of the file (an unclosed quote at line ``start``).

    A legitimate multi-line cell (a review over two lines) is kept; a cell whose every line but the last splits
    into the header's number of fields is rows swallowed by a quote that was never closed.
    """
    if end - start < 1:
        return
    for value in values:
        lines = value.split("\n")
        if len(lines) < 2:
            continue
        if all(len(line.split(delimiter)) == n_columns for line in lines[:-1]):
            raise UserInputError(f"{path}:{start}: a quoted field runs over lines {start}-{end} and holds whole rows "
                                 f"(an unclosed '\"'?); close the quote or write a literal quote as '\"\"'")


def check_text_cell(location: str, column: str, value: Any) -> None:
    """Refuse a list, mapping or array where text is expected (it would be stringified into the input)."""
    if isinstance(value, (list, tuple, dict, set)) or bool(getattr(value, "ndim", 0)):
        what = "a mapping" if isinstance(value, dict) else "a list"
        raise UserInputError(f"{location}: column {column!r} holds {what} ({str(value)[:40]}), not text")


def label_text(location: str, column: str, value: Any) -> str:
    """A class label as text; a float that is an integer and a text like ``1.0`` are written as the integer.

    Raises:
        UserInputError: NaN or an infinite number, a list or mapping.
    """
    check_text_cell(location, column, value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UserInputError(f"{location}: column {column!r}: label {value} is not a class; remove the row or "
                                 "give it a label")
        return str(int(value)) if value.is_integer() else repr(value)
    text = "" if value is None else str(value)
    if _INTEGRAL.fullmatch(text.strip()) and "." in text:
        return str(int(float(text)))
    return text


def count_rewritten(raw: Sequence[Any], labels: Sequence[Any]) -> int:
    """How many labels :func:`label_text` wrote otherwise than the file did (``1.0`` -> ``1``)."""
    return sum(1 for value, label in zip(raw, labels)
               if isinstance(value, (str, float)) and str(value) != str(label))


def log_rewritten(source: str, count: int) -> None:
    """Say that ``count`` numeric labels of ``source`` were written as integers (they are one class)."""
    if count:
        logger.warning("%s: %d label(s) written as a float (e.g. 1.0) were read as the integer (1): they are one "
                       "class", source, count)


__all__ = ["check_header", "check_quoted_field", "check_text_cell", "count_rewritten", "label_text", "log_rewritten"]
