"""Issue 30, item 4: the demo build's long paths under ``kill -9`` at a random point. Each is run once whole, once
killed (the whole process group, as a killed build takes its workers with it) somewhere in its running time and
then rerun with ``--resume``: the rerun finishes, and its results equal the uninterrupted run's."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from atinuke.io import CLAIM
from tests.test_finetune import mrpc_dir  # noqa: F401  (fixtures)
from tests.test_pretrain import corpus_file, tokenizer_dir  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
# A fixed seed per run of the suite can be replaced to explore other kill points: ATINUKE_KILL_SEED=N.
KILL_SEED = int(os.environ.get("ATINUKE_KILL_SEED", "30"))


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _run(module: str, argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", module, *argv], env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.perf_counter() - start


def _files(root: Path) -> int:
    """Files under ``root`` now; the run renames its temporary directories into place while this walks, so a
    directory that vanished mid-walk is simply not counted (os.walk skips it)."""
    import os

    return sum(1 for _, _, names in os.walk(root) for name in names if name != CLAIM) if root.exists() else 0


def _killed(module: str, argv: list[str], out: Path, at_files: int) -> bool:
    """Start the command in its own process group and kill -9 the group as soon as ``out`` holds ``at_files``
    files (temporary ones included: a point in its progress, whatever the machine's load); whether it was still
    running then (else it had finished, and the rerun is a plain rerun)."""
    proc = subprocess.Popen([sys.executable, "-m", module, *argv], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while proc.poll() is None and _files(out) < at_files:
            time.sleep(0.02)
        if proc.poll() is not None:
            return False
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _kill_and_resume(module: str, argv: list[str], reference: Path, out: Path, salt: str) -> None:
    whole = _run(module, [*argv, "--out", str(reference)])
    n_files = _files(reference)
    at_files = random.Random(f"{KILL_SEED}-{salt}").randint(1, max(1, n_files - 1))
    was_running = _killed(module, [*argv, "--out", str(out)], out, at_files)
    assert was_running, f"{module} finished before it wrote {at_files} of its {n_files} files"
    _run(module, [*argv, "--out", str(out), "--resume"])
    assert not (out / CLAIM).exists()  # the rerun took over the killed run's claim and ended it
    print(f"{module}: killed at {at_files} of {n_files} files (a whole run: {whole:.1f} s)")


def _results(path: Path, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    return frame.drop(columns=[c for c in frame.columns if c in drop or "second" in c or c.endswith("_s")])


def test_a_killed_probes_run_resumes_to_the_same_results(tmp_path, tiny_atinuke_dir):
    argv = ["run", "--model", str(tiny_atinuke_dir), "--task", "length", "--max-sentences", "40", "--seeds", "2",
            "--layers", "all"]
    _kill_and_resume("probes.cli", argv, tmp_path / "whole", tmp_path / "killed", "probes")
    pd.testing.assert_frame_equal(_results(tmp_path / "killed" / "results.parquet"),
                                  _results(tmp_path / "whole" / "results.parquet"))


def test_a_killed_sae_training_resumes_to_the_same_dictionary(tmp_path, tiny_atinuke_dir, corpus_file):  # noqa: F811
    argv = ["sae", "train", "--model", str(tiny_atinuke_dir), "--corpus", str(corpus_file), "--hook",
            "blocks.1.hook_resid_post", "--width", "64", "--k", "4", "--lr", "1e-3", "--batch-size", "64", "--steps",
            "60", "--max-tokens", "3000", "--eval-texts", "20", "--no-control", "--no-progress"]
    _kill_and_resume("workbench.cli", argv, tmp_path / "whole", tmp_path / "killed", "sae")
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    for metrics in (whole, killed):  # this process's time and speed: the resumed one trained only the rest
        metrics.pop("seconds", None)
        for key in ("seconds", "tokens", "tokens_per_s"):
            metrics.get("train", {}).pop(key, None)
    assert killed == whole
    weights = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*.safetensors"))
    assert weights
    for name in weights:
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


@pytest.mark.skipif(not os.environ.get("ATINUKE_SLOW"), reason="three tiny experiments (minutes on 2 busy cores): "
                    "set ATINUKE_SLOW=1")
@pytest.mark.parametrize("salt", ["a"])
def test_a_killed_experiment_with_two_jobs_resumes_to_the_same_table(tmp_path, corpus_file, tokenizer_dir,  # noqa: F811
                                                                     mrpc_dir, salt):  # noqa: F811
    flags = (f"--sources {corpus_file} --tokenizer {tokenizer_dir} --seq-len 32 --batch-size 8 --warmup 2 --steps 6 "
             f"--eval-max-blocks 4 --eval-batch-size 4 --eval-every 0 --checkpoint-every 2")
    argv = ["experiment", "--arms", "atinuke,bert", "--seeds", "1", "--tasks", "mrpc", "--finetune-scale", "0.02",
            "--data", str(mrpc_dir), "--jobs", "2", "--no-shipped", "--pretrain-flags", flags]
    _kill_and_resume("atinuke.cli", argv, tmp_path / "whole", tmp_path / "killed", f"experiment-{salt}")
    drop = ("predictions", "run", "path")
    pd.testing.assert_frame_equal(_results(tmp_path / "killed" / "results.parquet", drop),
                                  _results(tmp_path / "whole" / "results.parquet", drop))
