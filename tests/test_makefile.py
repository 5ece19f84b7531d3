"""``make demo`` starts the background build exactly once (issue 10: the demo must build its models)."""
from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("flock") is None,
                                reason="needs make and flock")


def _demo(folder: Path) -> list[str]:
    """Run the demo recipe in ``folder`` with a stub ``$(MAKE)`` (data treated as made); the stub's calls."""
    stub = folder / "stub-make"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {folder / "calls.txt"}\n')
    stub.chmod(0o755)
    subprocess.run(["make", "-f", str(REPO / "Makefile"), "-o", "data", "demo", f"MAKE={stub}"], cwd=folder,
                   check=True, capture_output=True, text=True, timeout=60)
    for _ in range(50):  # the build is started in the background
        if (folder / "calls.txt").is_file() and len((folder / "calls.txt").read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    return sorted((folder / "calls.txt").read_text().splitlines()) if (folder / "calls.txt").is_file() else []


def test_demo_starts_the_background_build_and_the_app(tmp_path):
    calls = _demo(tmp_path)
    assert calls == ["--no-print-directory app", "-j2 --no-print-directory models"]
    assert (tmp_path / "runs" / "build.log").is_file()


def test_demo_does_not_start_a_second_build_while_one_holds_the_lock(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "build.log").write_text("the running build's log\n")
    with open(tmp_path / "runs" / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        calls = _demo(tmp_path)
    assert calls == ["--no-print-directory app"]
    assert (tmp_path / "runs" / "build.log").read_text() == "the running build's log\n"  # not truncated
