"""The experiment runner end to end on a tiny Atinuke (probes/runner.py), and layer parsing."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from atinuke.errors import UserInputError
from probes.runner import RESULT_COLUMNS, ProbeRunConfig, parse_layers, run_probing


def test_parse_layers():
    assert parse_layers("all", 3) == [0, 1, 2]
    assert parse_layers("0, 2", 3) == [0, 2]
    assert parse_layers("1-3", 5) == [1, 2, 3]
    with pytest.raises(UserInputError, match="unknown layer 'x'"):
        parse_layers("x", 3)
    with pytest.raises(UserInputError, match="unknown layer 5"):
        parse_layers("5", 3)


def test_tiny_atinuke_run_with_controls_in_parallel(tiny_atinuke_dir, tmp_path):
    config = ProbeRunConfig(model=str(tiny_atinuke_dir), task="xpos", data="gold", controls=True, seeds=2, n_jobs=2,
                            backend="threading")  # threads: the parallel path without process start-up cost
    run = run_probing(config, tmp_path / "run")
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    pd.testing.assert_frame_equal(results, run.results)
    assert list(results.columns) == RESULT_COLUMNS
    assert set(results["source"]) == {run.source} and run.source.startswith("gold: data/dependencies.conllu")
    accuracy = results[results["metric"] == "accuracy"]
    # 3 layers (embeddings + 2 blocks) x 2 seeds x (task, control task, random init)
    assert len(accuracy) == 3 * 2 * 3 and accuracy["value"].between(0, 1).all()
    selectivity = results[results["metric"] == "selectivity"].set_index(["layer", "seed"])["value"]
    task = accuracy[accuracy["control"] == "none"].set_index(["layer", "seed"])["value"]
    control = accuracy[accuracy["control"] == "control_task"].set_index(["layer", "seed"])["value"]
    pd.testing.assert_series_equal(selectivity.sort_index(), (task - control).sort_index(), check_names=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_layer"] in (0, 1, 2) and summary["n_test"] == run.n_test > 0
    # A second run reuses the stored features (same words, same model hash) and gives the same numbers.
    again = run_probing(config, tmp_path / "run")
    pd.testing.assert_frame_equal(again.results, run.results)


def test_a_deterministic_probe_is_fitted_once_per_labelling(tiny_atinuke_dir, tmp_path, monkeypatch):
    """L-BFGS is deterministic, so the task's seeds share one fit; each control-task draw is its own fit."""
    import probes.runner as runner

    fits = []
    real_make_probe = runner.make_probe

    def counting_make_probe(kind, random_state=None, **params):
        probe = real_make_probe(kind, random_state=random_state, **params)
        fit = probe.fit
        probe.fit = lambda X, y: (fits.append(random_state), fit(X, y))[1]
        return probe

    monkeypatch.setattr(runner, "make_probe", counting_make_probe)
    config = ProbeRunConfig(model=str(tiny_atinuke_dir), task="xpos", data="gold", seeds=3, layers="0,1")
    results = run_probing(config).results
    assert len(fits) == 2  # one per layer, not one per (layer, seed)
    accuracy = results[results["metric"] == "accuracy"]
    assert len(accuracy) == 2 * 3 and accuracy.groupby("layer")["value"].nunique().eq(1).all()
    fits.clear()
    run_probing(ProbeRunConfig(model=str(tiny_atinuke_dir), task="xpos", data="gold", seeds=3, layers="0",
                               probe="mlp"))
    assert len(fits) == 3  # the MLP's seeds change its initialisation: a fit per seed
