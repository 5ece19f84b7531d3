"""Atomic file writes: a reader (or a killed job) never sees half a file, and nothing old is lost.

Everything the project writes goes to a temporary sibling first and is then renamed over the target with
``os.replace``, which POSIX makes atomic within one file system.
"""
from __future__ import annotations

import atexit
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


CLAIM = ".atinuke-claim"  # the lock file a run holds in its output directory while it writes there
# resolved dir -> (pid, fd, the lock file, the dirs this claim made)
_CLAIMS: dict[Path, tuple[int, int, Path, list[Path]]] = {}


def holds_files(path: str | os.PathLike) -> bool:
    """Whether the directory ``path`` holds anything but a run's claim (left behind by a killed run)."""
    return any(entry.name != CLAIM for entry in Path(path).iterdir())


def check_out_path(out: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuse up front an output path that cannot become a directory: a file, a dangling symlink, a path under
    a file.

    Raises:
        UserInputError: one line naming ``flag``, the path and what is in the way.
    """
    from atinuke.errors import UserInputError

    path = Path(out)
    if path.is_symlink() and not path.exists():
        raise UserInputError(f"{flag} {path} is a dangling symbolic link (to {os.readlink(path)}); remove it or "
                             "choose another directory")
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{flag} {path} is a file, not a directory")
    blocker = next((parent for parent in path.parents if parent.exists() or parent.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserInputError(f"{flag} {path} is under {blocker}, which is a file, not a directory")
    return path


def check_out_dir(out: str | os.PathLike, flag: str = "--out", resume: bool = False, overwrite: bool = False,
                  claim: bool = True) -> Path:
    """The output-directory policy of every command, checked before any work is done, and the claim on it.

    ``out`` may be absent or empty; a non-empty directory needs ``resume`` (continue the run there) or
    ``overwrite`` (replace the files this command writes; files it does not write are left alone).
    The directory is then claimed for this process (:func:`claim_out_dir`), so a second run started into it
    is refused while this one writes there, and after it finished (it then holds files), whichever started
    first; the claim ends with the command (:func:`release_out_dirs`) or the process. ``claim=False``: the
    checks only (the other ranks of a distributed run, whose rank 0 holds the claim).

    Raises:
        UserInputError: ``out`` is a file (or a dangling link, or under a file), a non-empty directory without
            ``--resume``/``--overwrite``, or another run's claimed directory.
    """
    path = check_out_path(out, flag)
    if not (resume or overwrite):
        _refuse_non_empty(path, flag)
    if not claim:
        return path
    claim_out_dir(path, flag)
    if not (resume or overwrite):
        try:  # a run that finished between the check above and the claim left its files there
            _refuse_non_empty(path, flag)
        except Exception:
            release_out_dirs(path)
            raise
    return path


def _refuse_non_empty(path: Path, flag: str) -> None:
    from atinuke.errors import UserInputError

    if path.is_dir() and holds_files(path):
        raise UserInputError(f"{flag} {path} already holds files; choose an empty directory or pass --overwrite "
                             "to replace what this command writes there")


def claim_out_dir(out: str | os.PathLike, flag: str = "--out") -> Path:
    """Create ``out`` if needed and hold an exclusive lock (``flock`` on ``out/.atinuke-claim``) for this process.

    The claim is re-entrant within a process and ends with :func:`release_out_dirs` (``run_cli`` calls it when a
    command ends) or with the process, whatever way it ends (the kernel drops the lock of a killed process).

    Raises:
        UserInputError: another process holds the claim (a run writing there now).
    """
    import fcntl

    from atinuke.errors import UserInputError

    path = check_out_path(out, flag)
    key = path.resolve()
    if key in _CLAIMS:
        return path
    created = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    lock = path / CLAIM
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = lock.read_text(errors="replace").strip() or "another process"
        raise UserInputError(f"{flag} {path}: another run ({holder}) is writing there now; wait for it to finish "
                             "or choose another directory") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}\n".encode())
    _CLAIMS[key] = (os.getpid(), fd, lock, created)
    return path


def release_out_dirs(*outs: str | os.PathLike) -> None:
    """End this process's claims on ``outs`` (all of them when none is named): the lock file is removed while
    the lock is held, and directories the claim created that stayed empty are removed again."""
    keys = [Path(o).resolve() for o in outs] if outs else list(_CLAIMS)
    for key in keys:
        claim = _CLAIMS.pop(key, None)
        if claim is None:
            continue
        pid, fd, lock, created = claim
        if pid != os.getpid():  # a forked worker inherited its parent's claim: the parent ends it
            continue
        lock.unlink(missing_ok=True)
        os.close(fd)
        for directory in created:  # deepest first
            try:
                directory.rmdir()
            except OSError:  # not empty (the run wrote there) or gone
                break


def check_owned(directory: str | os.PathLike, owned: frozenset[str] | set[str], flag: str = "--overwrite") -> None:
    """Refuse to replace ``directory`` as a whole when it holds entries this project did not write.

    Raises:
        UserInputError: naming the directory and the first foreign entry.
    """
    from atinuke.errors import UserInputError

    path = Path(directory)
    if not path.is_dir():
        return
    foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in owned)
    if foreign:
        raise UserInputError(f"{flag} would replace {path}, which holds {foreign[0]!r} (not written by this "
                             f"command{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); move it "
                             "or choose another --out")


atexit.register(release_out_dirs)
