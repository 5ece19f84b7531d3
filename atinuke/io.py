"""Atomic file writes: a reader (or a killed job) never sees half a file, and nothing old is lost.

Everything the project writes goes to a temporary sibling first and is then renamed over the target with
``os.replace``, which POSIX makes atomic within one file system.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``, else delete it.

    Example:
        >>> with atomic_path("out/table.parquet") as tmp:
        ...     frame.to_parquet(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); use open()'s default mode
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target`` as a whole.

    An existing ``target`` is kept until the new one is complete, then moved aside and deleted, so a
    crash at any point leaves either the old or the new directory in place.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the directory private (0700)
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_with(target: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and atomically move the result to ``target``."""
    with atomic_path(target, suffix=Path(target).suffix) as tmp:
        writer(tmp)


def check_out_dir(out: str | os.PathLike, flag: str = "--out", resume: bool = False, overwrite: bool = False) -> Path:
    """The output-directory policy of every command, checked before any work is done.

    ``out`` may be absent or empty; a non-empty directory needs ``resume`` (continue the run there) or
    ``overwrite`` (replace the files this command writes; files it does not write are left alone).

    Raises:
        UserInputError: ``out`` is a file, or a non-empty directory without ``--resume``/``--overwrite``.
    """
    from atinuke.errors import UserInputError

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{flag} {path} is a file, not a directory")
    if path.is_dir() and not (resume or overwrite) and any(path.iterdir()):
        raise UserInputError(f"{flag} {path} already holds files; choose an empty directory or pass --overwrite "
                             "to replace what this command writes there")
    return path
