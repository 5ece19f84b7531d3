"""``atinuke.parallel.run_jobs``: dependencies respected, independent jobs overlap, failures stop the rest."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from atinuke.parallel import Job, resolve_jobs, run_jobs


def record(log: str, name: str, seconds: float) -> None:
    """A job: append "start"/"end" lines with wall-clock times to ``log`` (one line per write, so they never mix)."""
    with open(log, "a") as handle:
        handle.write(f"{name} start {time.time()}\n")
    time.sleep(seconds)
    with open(log, "a") as handle:
        handle.write(f"{name} end {time.time()}\n")


def fail(message: str) -> None:
    raise RuntimeError(message)


def _events(log: Path) -> dict[tuple[str, str], float]:
    return {(name, what): float(t) for name, what, t in (line.split() for line in log.read_text().splitlines())}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_starts_only_after_the_jobs_it_waits_for(tmp_path, workers):
    log = tmp_path / "log.txt"
    done_in_parent: list[str] = []
    jobs = [Job("first", lambda: (record, (str(log), "first", 0.3))),
            Job("a", lambda: (record, (str(log), "a", 0.6)), frozenset({"first"})),
            Job("b", lambda: (record, (str(log), "b", 0.6)), frozenset({"first"})),
            Job("copied", lambda: None, frozenset({"a"})),  # finished by prepare itself
            Job("last", lambda: (record, (str(log), "last", 0.0)), frozenset({"a", "b", "copied"}))]
    run_jobs(jobs, workers, on_done=done_in_parent.append)
    events = _events(log)
    assert set(done_in_parent) == {"first", "a", "b", "copied", "last"}
    assert done_in_parent.index("copied") > done_in_parent.index("a")
    assert events["a", "start"] >= events["first", "end"] and events["b", "start"] >= events["first", "end"]
    assert events["last", "start"] >= max(events["a", "end"], events["b", "end"])
    if workers == 1:
        assert events["b", "start"] >= events["a", "end"]


def test_independent_jobs_run_at_the_same_time(tmp_path):
    log = tmp_path / "log.txt"
    run_jobs([Job(name, lambda name=name: (record, (str(log), name, 1.5))) for name in ("x", "y")], 2)
    events = _events(log)
    overlap = min(events["x", "end"], events["y", "end"]) - max(events["x", "start"], events["y", "start"])
    assert overlap > 0.5


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_and_what_waits_for_it_never_starts(tmp_path, workers):
    log = tmp_path / "log.txt"
    jobs = [Job("bad", lambda: (fail, ("broken input",))),
            Job("after-bad", lambda: (record, (str(log), "after-bad", 0.0)), frozenset({"bad"}))]
    with pytest.raises(RuntimeError, match="broken input"):
        run_jobs(jobs, workers)
    assert not log.exists()


def test_unknown_dependencies_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unknown jobs"):
        run_jobs([Job("a", lambda: None, frozenset({"ghost"}))], 2)


def test_jobs_follow_joblibs_convention():
    import os

    assert resolve_jobs(3) == 3
    assert resolve_jobs(-1) == (os.cpu_count() or 1)
    assert resolve_jobs(-1000) == 1
