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

REPO = Path(__file__).resolve().parents[1]
# A fixed seed per run of the suite can be replaced to explore other kill points: ATINUKE_KILL_SEED=N.
KILL_SEED = int(os.environ.get("ATINUKE_KILL_SEED", "30"))


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _run(module: str, argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", module, *argv], env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.perf_counter() - start


def _killed(module: str, argv: list[str], after_s: float) -> bool:
    """Start the command in its own process group and kill -9 the group after ``after_s``; whether it was
    still running then (else it had finished, and the rerun is a plain rerun)."""
    proc = subprocess.Popen([sys.executable, "-m", module, *argv], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=after_s)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _kill_and_resume(module: str, argv: list[str], reference: Path, out: Path, salt: str) -> None:
    whole = _run(module, [*argv, "--out", str(reference)])
    rng = random.Random(f"{KILL_SEED}-{salt}")
    after = rng.uniform(0.35, 0.9) * whole  # the interpreter start is part of `whole`: aim past it
    was_running = _killed(module, [*argv, "--out", str(out)], after)
    _run(module, [*argv, "--out", str(out), "--resume"])
    assert not (out / CLAIM).exists()  # the rerun took over the killed run's claim and ended it
    print(f"{module}: killed after {after:.1f} s of {whole:.1f} s (running: {was_running})")


def _results(path: Path, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    return frame.drop(columns=[c for c in frame.columns if c in drop or "second" in c or c.endswith("_s")])


def test_a_killed_probes_run_resumes_to_the_same_results(tmp_path, tiny_atinuke_dir):
    argv = ["run", "--model", str(tiny_atinuke_dir), "--task", "length", "--max-sentences", "60", "--seeds", "2",
            "--controls", "--layers", "all"]
    _kill_and_resume("probes.cli", argv, tmp_path / "whole", tmp_path / "killed", "probes")
    pd.testing.assert_frame_equal(_results(tmp_path / "killed" / "results.parquet"),
                                  _results(tmp_path / "whole" / "results.parquet"))


def test_a_killed_sae_training_resumes_to_the_same_dictionary(tmp_path, tiny_atinuke_dir, corpus_file):  # noqa: F811
    argv = ["sae", "train", "--model", str(tiny_atinuke_dir), "--corpus", str(corpus_file), "--hook",
            "blocks.1.hook_resid_post", "--width", "64", "--k", "4", "--lr", "1e-3", "--batch-size", "64", "--steps",
            "200", "--max-tokens", "6000", "--eval-texts", "20", "--no-control", "--no-progress"]
    _kill_and_resume("workbench.cli", argv, tmp_path / "whole", tmp_path / "killed", "sae")
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    timing = {k for k in whole if "second" in k or k.endswith("_s") or "per_s" in k}
    assert {k: v for k, v in killed.items() if k not in timing} == {k: v for k, v in whole.items() if k not in timing}
    weights = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*.safetensors"))
    assert weights
    for name in weights:
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


@pytest.mark.parametrize("salt", ["a", "b"])
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
