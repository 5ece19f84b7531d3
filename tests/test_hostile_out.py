"""Issue 30, item 6, "data loss" and "late errors" on output paths: a run claims its --out for as long as it
writes there, --overwrite removes only what the project wrote, and an --out or --store that cannot be a
directory is refused in one line before any work."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from atinuke.cli import main as atinuke_main
from atinuke.errors import UserInputError
from atinuke.io import CLAIM, check_out_dir, release_out_dirs


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1")


@pytest.fixture()
def reviews(tmp_path) -> Path:
    path = tmp_path / "reviews.csv"
    path.write_text("review,trend\n" + "".join(f"shares fell {i},{'up' if i % 2 else 'down'}\n" for i in range(20)))
    return path


def _finetune_argv(model, data, out, *extra) -> list[str]:
    return ["finetune", "--model", str(model), "--data", str(data), "--columns", "text=review,label=trend",
            "--epochs", "1", "--max-len", "32", "--out", str(out), *extra]


def test_overwrite_keeps_the_users_files_in_model(tmp_path, tiny_atinuke_dir, reviews, capsys):
    out = tmp_path / "run"
    assert atinuke_main(_finetune_argv(tiny_atinuke_dir, reviews, out)) == 0
    notes = out / "model" / "my-notes.txt"
    notes.write_text("mine")
    capsys.readouterr()
    code = atinuke_main(_finetune_argv(tiny_atinuke_dir, reviews, out, "--overwrite"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "holds 'my-notes.txt' (not written by this command)" in err[0], err
    assert notes.read_text() == "mine"
    notes.unlink()
    assert atinuke_main(_finetune_argv(tiny_atinuke_dir, reviews, out, "--overwrite")) == 0  # its own files: fine
    assert not (out / CLAIM).exists()  # the claim ends with the command


_HOLD = textwrap.dedent("""
    import sys, time
    from atinuke.io import check_out_dir
    check_out_dir(sys.argv[1])
    print("claimed", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def test_a_claimed_out_is_refused_while_its_run_writes_and_after(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out), "30"], env=_env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
        for flags in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(UserInputError, match=fr"--out {out}: another run \(pid {holder.pid}\) is writing"):
                check_out_dir(out, **flags)
    finally:
        holder.kill()
        holder.wait()
    # killed (kill -9 drops the lock): the directory is free again, its stale claim file is no content
    assert (out / CLAIM).exists()
    assert check_out_dir(out) == out
    (out / "results.parquet").write_bytes(b"done")
    release_out_dirs(out)
    with pytest.raises(UserInputError, match="already holds files"):
        check_out_dir(out)


def test_two_runs_started_into_one_empty_out_one_wins(tmp_path, tiny_atinuke_dir, reviews):
    """Both passed the start-of-run check and both exited 0, the second replacing the first's output."""
    out = tmp_path / "race"
    argv = [sys.executable, "-m", "atinuke.cli", *_finetune_argv(tiny_atinuke_dir, reviews, out)]
    runs = [subprocess.Popen(argv, env=_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((run.wait(timeout=300), run.stderr.read() if run.stderr else "") for run in runs)
    assert [code for code, _ in results] == [0, 2], results
    last = results[1][1].strip().splitlines()[-1]
    assert ("another run" in last or "already holds files" in last) and "Traceback" not in results[1][1], last
    assert (out / "metrics.json").is_file() and not (out / CLAIM).exists()


@pytest.mark.parametrize("case", ["dangling", "under_file", "file"])
def test_an_out_that_cannot_be_a_directory_is_refused_up_front(tmp_path, tiny_atinuke_dir, reviews, capsys, case):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    out = {"dangling": tmp_path / "link", "under_file": blocker / "out", "file": blocker}[case]
    if case == "dangling":
        out.symlink_to(tmp_path / "gone")
    needle = {"dangling": "is a dangling symbolic link", "under_file": f"is under {blocker}, which is a file",
              "file": "is a file, not a directory"}[case]
    from probes.cli import main as probes_main
    from workbench.cli import main as workbench_main

    commands = [
        (atinuke_main, _finetune_argv(tiny_atinuke_dir, reviews, out)),
        (atinuke_main, ["pretrain", "--sources", str(reviews), "--preset", "tiny", "--out", str(out)]),
        (atinuke_main, ["experiment", "--out", str(out), "--scale", "tiny"]),
        (workbench_main, ["attribute", "--model", str(tiny_atinuke_dir), "--method", "saliency", "--limit", "1",
                          "--out", str(out)]),
        (probes_main, ["run", "--model", str(tiny_atinuke_dir), "--task", "length", "--max-sentences", "20",
                       "--seeds", "1", "--out", str(out)]),
    ]
    for main, argv in commands:
        start = time.perf_counter()
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], (argv[0], err)
        assert time.perf_counter() - start < 20, argv[0]  # up front, not after the work
    assert blocker.read_text() == "mine"
    assert case != "dangling" or (out.is_symlink() and not out.exists())


def test_a_store_that_is_a_file_is_refused_up_front(tmp_path, tiny_atinuke_dir, capsys):
    from workbench.cli import main as workbench_main

    store = tmp_path / "store"
    store.write_text("mine")
    out = tmp_path / "out"
    code = workbench_main(["attribute", "--model", str(tiny_atinuke_dir), "--method", "saliency", "--limit", "1",
                           "--store", str(store), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--store {store} is a file, not a directory" in err[0], err
    assert not out.exists() and store.read_text() == "mine"
