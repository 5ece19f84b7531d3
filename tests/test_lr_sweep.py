"""``atinuke lr-sweep``: each arm's best rate on one grid, resumable, refusing what it cannot run (issue 10)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from atinuke import lr_sweep
from atinuke.cli import main
from atinuke.lr_sweep import SweepSpec, collect, parse_lrs, run_dir
from tests.test_pretrain import corpus_file, tokenizer_dir  # noqa: F401  (fixtures)


def _plant(out: Path, arm: str, lr: float, ppl: float) -> None:
    path = run_dir(out, arm, lr)
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"val_ppl": ppl, "val_unigram_ppl": 700.0}))


def test_the_best_rate_is_each_arms_lowest_perplexity_and_an_edge_is_flagged(tmp_path):
    spec = SweepSpec(("atinuke", "bert"), (5e-4, 1e-3, 2e-3, 4e-3), 100, 25, "tiny", 0)
    for lr, ppl in zip(spec.lrs, (300.0, 250.0, 200.0, 260.0)):
        _plant(tmp_path, "atinuke", lr, ppl)
    for lr, ppl in zip(spec.lrs[:3], (610.0, 605.0, 601.0)):  # 4e-3 not run yet
        _plant(tmp_path, "bert", lr, ppl)
    rows, best = collect(tmp_path, spec)
    assert best["recipe_lr"] == 2e-3  # the tiny preset's own rate
    assert best["arms"]["atinuke"] == {"best_lr": 2e-3, "best_val_ppl": 200.0, "recipe_val_ppl": 200.0,
                                       "complete": True, "at_grid_edge": False}
    assert best["arms"]["bert"]["best_lr"] == 2e-3 and not best["arms"]["bert"]["complete"]
    assert [r["lr"] for r in rows if r["best"]] == [2e-3, 2e-3]
    _plant(tmp_path, "bert", 4e-3, 590.0)
    _, best = collect(tmp_path, spec)
    assert best["arms"]["bert"]["best_lr"] == 4e-3 and best["arms"]["bert"]["at_grid_edge"]


def test_parse_lrs_sorts_dedups_and_refuses_bad_numbers():
    assert parse_lrs("2e-3, 5e-4,2e-3") == (5e-4, 2e-3)
    for bad, needle in (("", "names no"), ("1e-3,x", "not a number"), ("-1", "positive"), ("inf", "positive")):
        with pytest.raises(lr_sweep.UserInputError, match=needle):
            parse_lrs(bad)


def test_a_real_sweep_trains_every_rate_once_and_a_resume_is_a_no_op(tmp_path, corpus_file, tokenizer_dir):  # noqa: F811
    out = tmp_path / "sweep"
    flags = ["lr-sweep", "--arms", "atinuke", "--lrs", "1e-3,3e-3", "--steps", "4", "--tokenizer", str(tokenizer_dir),
             "--pretrain-flags", f"--sources {corpus_file} --seq-len 32 --batch-size 8 --eval-max-blocks 4 "
                                 "--eval-batch-size 4", "--out", str(out)]
    assert main(flags) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == list(lr_sweep.RESULT_COLUMNS) and sorted(table.lr) == [1e-3, 3e-3]
    assert table.val_ppl.nunique() == 2  # different rates train different models
    best = json.loads((out / "best.json").read_text())
    assert best["arms"]["atinuke"]["best_val_ppl"] == table.val_ppl.min()
    for lr in (1e-3, 3e-3):
        summary = json.loads((run_dir(out, "atinuke", lr) / "summary.json").read_text())
        assert summary["config"]["lr"] == lr and summary["config"]["steps"] == 4 and summary["config"]["warmup"] == 1
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    assert main(flags + ["--resume"]) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}


@pytest.mark.parametrize("extra, needle", [
    (["--lrs", "1e-3,abc"], "not a number"),
    (["--arms", "minilm"], "pretrained elsewhere"),
    (["--arms", "gpt9"], "unknown arm"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--preset", "huge"], "unknown --preset"),
])
def test_bad_values_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, extra, needle):
    out = tmp_path / "sweep"
    assert main(["lr-sweep", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists()


def test_another_sweep_or_a_foreign_directory_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["lr-sweep", "--out", str(out)]) == 2
    assert "no sweep.json" in capsys.readouterr().err
    (out / "notes.txt").unlink()
    (out / "sweep.json").write_text(json.dumps(SweepSpec(("bert",), (1e-3,), 10, 2, "tiny", 0).to_json()))
    assert main(["lr-sweep", "--out", str(out), "--resume"]) == 2
    assert "describes another sweep" in capsys.readouterr().err
    assert json.loads((out / "sweep.json").read_text())["arms"] == ["bert"]
