"""Plumbing shared by the format loaders: the load result, opening files, skip counting, sidecar files.

Sidecars: the official formats have no room for rationales or slicing features, so any data file ``F`` may
have a ``F.meta.jsonl`` beside it whose lines are ``{"id": ..., "rationale": [[segment, char_start, char_end],
...], "meta": {...}}``. :func:`attach_sidecar` copies them onto the examples with the same id.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Optional, Sequence

from atinuke.errors import UserInputError, where
from atinuke.tasks.base import ClassificationExample, CorefDocument, Example, QAExample, SRLExample

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".meta.jsonl"


@dataclass
class LoadedData:
    """What a loader read from one file (or directory).

    Attributes:
        examples: the examples, in file order.
        path: the file or directory read.
        skipped: reason -> number of records dropped on purpose (e.g. SNLI ``gold_label "-"``); every skip is
            also logged, so no record disappears silently.
    """

    examples: list[Example]
    path: Path
    skipped: dict[str, int] = field(default_factory=dict)

    def extend(self, other: "LoadedData") -> None:
        """Append another file's examples and add up its skip counts."""
        self.examples.extend(other.examples)
        counts = Counter(self.skipped)
        counts.update(other.skipped)
        self.skipped = dict(counts)


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file (``.gz`` transparently); a leading byte-order mark is dropped.

    The whole file is decoded up front, so that invalid UTF-8 is reported as ``file:line`` before any
    example is parsed (a decoder error in the middle of a loader names neither).

    Raises:
        UserInputError: the file does not exist, is a directory, cannot be read or is not valid UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    try:
        data = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise UserInputError(f"{path}: cannot read ({error})") from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise UserInputError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[error.start]:02x} at column "
                             f"{column})") from error
    return io.StringIO(text, newline="")


def file_stamp(path: Path) -> tuple[str, int, int]:
    """``(path, size, mtime_ns)``: a cache key that changes when the file does (see the parse caches of
    :mod:`atinuke.tasks.sst`, :mod:`~atinuke.tasks.official`, :mod:`~atinuke.tasks.sentiment`)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise UserInputError(f"{path}: cannot read ({error})") from error
    return str(path), stat.st_size, stat.st_mtime_ns


def json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSON-lines file.

    Raises:
        UserInputError: naming ``file:line`` for invalid JSON or a line that is not a JSON object.
    """
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserInputError(f"{where(path, line_no)}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise UserInputError(f"{where(path, line_no)}: expected a JSON object")
            yield line_no, record


def log_skips(path: Path, skipped: dict[str, int]) -> None:
    """Log one line per skip reason (a counted, logged skip is never silent)."""
    for reason, count in sorted(skipped.items()):
        logger.warning("%s: skipped %d record(s): %s", path, count, reason)


def check_unique_ids(examples: Sequence[Example], path: Path, lines: Sequence[int] | None = None) -> None:
    """Raise UserInputError naming the second occurrence of a repeated id."""
    seen: dict[str, int] = {}
    for position, example in enumerate(examples):
        if example.id in seen:
            line = lines[position] if lines is not None else None
            raise UserInputError(f"{where(path, line)}: duplicate id {example.id!r}")
        seen[example.id] = position


def segment_texts(example: Example) -> tuple[str, ...]:
    """The texts a rationale's segment index refers to: 0 = first text/context/document, 1 = pair/question."""
    if isinstance(example, ClassificationExample):
        return (example.text,) if example.text_pair is None else (example.text, example.text_pair)
    if isinstance(example, QAExample):
        return (example.context, example.question)
    if isinstance(example, (SRLExample, CorefDocument)):
        return (example.text,)
    raise TypeError(f"not an example: {type(example).__name__}")


def sidecar_path(path: Path) -> Path:
    """The sidecar file of a data file: ``F`` -> ``F.meta.jsonl``."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def attach_sidecar(examples: Iterable[Example], path: Path, other_view: Optional[Callable[[str], bool]] = None
                   ) -> int:
    """Attach rationales and meta from ``path.meta.jsonl`` (if it exists) to the examples with the same id.

    Args:
        examples: examples read from ``path`` (modified in place).
        path: the data file.
        other_view: for files read as two tasks (a CoNLL-2012 file gives SRL and coreference examples): true
            for a sidecar id that belongs to the other task's examples, which is then passed over.

    Returns:
        The number of sidecar lines attached (0 when there is no sidecar).

    Raises:
        UserInputError: naming ``sidecar:line`` for invalid JSON, a missing or unknown id, a repeated id, or a
            rationale span that is not ``[segment, start, end]`` inside its segment's text.
    """
    side = sidecar_path(Path(path))
    if not side.exists():
        return 0
    by_id = {example.id: example for example in examples}
    seen: set[str] = set()
    attached = 0
    for line_no, record in json_lines(side):
        if "id" not in record:
            raise UserInputError(f"{where(side, line_no)}: expected an object with an \"id\"")
        key = str(record["id"])
        example = by_id.get(key)
        if example is None and other_view is not None and other_view(key):
            continue
        if example is None:
            raise UserInputError(f"{where(side, line_no)}: id {key!r} matches no example in {path.name}")
        if key in seen:
            raise UserInputError(f"{where(side, line_no)}: repeated id {key!r}")
        seen.add(key)
        texts = segment_texts(example)
        spans = []
        for span in record.get("rationale") or []:
            if (not isinstance(span, (list, tuple)) or len(span) != 3
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)):
                raise UserInputError(f"{where(side, line_no)}: rationale span {span!r} is not "
                                     "[segment, char_start, char_end]")
            segment, start, end = span
            if not 0 <= segment < len(texts) or not 0 <= start <= end <= len(texts[segment]):
                raise UserInputError(f"{where(side, line_no)}: rationale span {span!r} lies outside "
                                     f"segment {segment} of example {key!r}")
            spans.append((segment, start, end))
        meta = record.get("meta") or {}
        if not isinstance(meta, dict):
            raise UserInputError(f"{where(side, line_no)}: \"meta\" must be an object")
        example.rationale = tuple(spans)
        example.meta.update(meta)
        attached += 1
    logger.info("%s: attached %d sidecar record(s)", side, attached)
    return attached
