"""The pretraining runs shipped in atinuke/checkpoints/: their recipe reproduces them, and the experiment uses
one only where a unit would train exactly that (atinuke/shipped.py)."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from atinuke.errors import UserInputError
from atinuke.pretrain import add_arguments, run
from atinuke.shipped import SHIPPED_ROOT, install, matches, read_recipe, reproduce_command, shipped_run

SHIPPED = [("atinuke", 0), ("bert", 0)]


def _losses(path, n):
    with open(path, newline="", encoding="utf-8") as handle:
        return [float(row["loss"]) for row, _ in zip(csv.DictReader(handle), range(n))]


@pytest.mark.parametrize("arm,seed", SHIPPED)
def test_the_shipped_run_is_complete_and_small(arm, seed):
    path = shipped_run("tiny", arm, seed)
    assert path is not None, f"no shipped tiny {arm} seed {seed} in {SHIPPED_ROOT}"
    assert (path / "model" / "model.safetensors").stat().st_size < 25 * 2**20
    summary = json.loads((path / "summary.json").read_text())
    assert summary["arch"] == arm and summary["config"]["seed"] == seed
    assert summary["config"]["steps"] == len(open(path / "metrics.csv").readlines()) - 1  # every step logged
    assert "atinuke pretrain --preset tiny" in reproduce_command(path)


@pytest.mark.slow
@pytest.mark.parametrize("arm,seed", SHIPPED)
def test_the_recipe_reproduces_the_first_steps(tmp_path, arm, seed):
    """Three steps of the recipe give the shipped run's first three losses (to float32 reduction order:
    BLAS sums in a different order on another CPU or thread count, so not bit for bit)."""
    import argparse

    path = shipped_run("tiny", arm, seed)
    argv = read_recipe(path)
    argv[argv.index("--tokenizer") + 1] = str(SHIPPED_ROOT / "tiny-atinuke-seed0")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    run(parser.parse_args([*argv, "--out", str(tmp_path / "again"), "--stop-after", "3"]))
    assert _losses(tmp_path / "again" / "metrics.csv", 3) == pytest.approx(_losses(path / "metrics.csv", 3), rel=2e-5)


def test_the_experiment_uses_a_shipped_run_only_for_its_exact_recipe(tmp_path):
    path = shipped_run("tiny", "atinuke", 0)
    base = ["--preset", "tiny", "--objective", "mlm", "--out", str(tmp_path / "x"), "--seed", "0", "--device", "cpu",
            "--arch", "atinuke"]
    assert matches(path, base, tokenizer=None) is None  # the unit would train its own tokenizer
    assert matches(path, base, tokenizer=path) is None  # or reuse this very one
    # Operational settings (snapshots, evaluation, checkpoints) change nothing that is trained.
    assert matches(path, [*base, "--keep-log-checkpoints", "--eval-every", "100"], tokenizer=path) is None
    assert "steps" in matches(path, [*base, "--steps", "500"], tokenizer=None)
    assert "seed" in matches(path, [a if a != "0" else "1" for a in base], tokenizer=None)
    assert "positions" in matches(path, [*base, "--positions", "learned"], tokenizer=None)
    other = tmp_path / "other-tokenizer"
    other.mkdir()
    (other / "tokenizer.json").write_text("{}")
    assert "not the shipped one" in matches(path, base, tokenizer=other)


def test_install_copies_atomically_and_never_over_existing_files(tmp_path):
    path = shipped_run("tiny", "atinuke", 0)
    target = install(path, tmp_path / "seed0" / "pretrain")
    assert (target / "model" / "model.safetensors").read_bytes() == (path / "model" / "model.safetensors").read_bytes()
    assert json.loads((target / "shipped.json").read_text())["copied_from"] == str(path)
    assert not (tmp_path / "seed0" / "pretrain.copying").exists()
    with pytest.raises(UserInputError, match="not empty"):
        install(path, target)
    assert (target / "summary.json").is_file()  # the refused copy touched nothing


def test_a_bad_recipe_is_a_one_line_error(tmp_path):
    with pytest.raises(UserInputError, match="--steps"):
        matches(shipped_run("tiny", "atinuke", 0), ["--steps", "many"], tokenizer=None)
    shutil.copytree(shipped_run("tiny", "atinuke", 0), tmp_path / "run")
    (tmp_path / "run" / "recipe.json").write_text("{not json")
    with pytest.raises(UserInputError, match="recipe.json: not a readable recipe"):
        read_recipe(tmp_path / "run")


def test_the_experiment_picks_the_shipped_run_for_a_fresh_matching_unit_only(tmp_path):
    from atinuke.experiment import SCALES, Unit, _usable_shipped, pretrain_argv

    unit = Unit("atinuke", 0, "pretrain")
    fresh = pretrain_argv(tmp_path, unit, SCALES["tiny"], "cpu", (), None)
    target = tmp_path / "atinuke" / "seed0" / "pretrain"
    assert _usable_shipped(unit, SCALES["tiny"], fresh, None, target) == shipped_run("tiny", "atinuke", 0)
    shorter = pretrain_argv(tmp_path, unit, SCALES["tiny"], "cpu", ["--steps", "50"], None)
    assert _usable_shipped(unit, SCALES["tiny"], shorter, None, target) is None
    assert _usable_shipped(Unit("atinuke", 1, "pretrain"), SCALES["tiny"], fresh, None, target) is None  # none shipped
    target.mkdir(parents=True)
    (target / "metrics.csv").write_text("step\n")  # someone's own files: never replaced
    assert _usable_shipped(unit, SCALES["tiny"], fresh, None, target) is None
