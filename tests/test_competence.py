"""``workbench claims --competence``: has each arm learnt each task? Known answers on planted predictions."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.claims_fixtures import write_experiment
from workbench.cli import main
from workbench.competence import AT_FLOOR, COMPETENCE_COLUMNS, LEARNT, competence
from workbench.experiment_runs import load_experiment


def test_a_model_above_the_majority_class_learnt_and_one_at_it_did_not(tmp_path):
    # Majority class 0.6: 0.85 accuracy clears it in every seed; 0.6 is the floor itself.
    root = write_experiment(tmp_path / "exp", accuracy=lambda arm, seed: {"atinuke": 0.85, "bert": 0.6}[arm],
                            majority=0.6)
    table = competence(load_experiment(root), n_boot=500).set_index("arm")
    assert list(table.reset_index().columns) == list(COMPETENCE_COLUMNS)
    assert table.loc["atinuke", "verdict"] == LEARNT and table.loc["bert", "verdict"] == AT_FLOOR
    assert table.loc["atinuke", "trivial_score"] == pytest.approx(0.6)
    assert table.loc["atinuke", "example_score"] == pytest.approx(0.85)
    assert table.loc["atinuke", "difference"] == pytest.approx(0.25)
    assert table.loc["atinuke", "score"] == pytest.approx(0.85) and table.loc["atinuke", "seeds"] == 3
    assert table.loc["atinuke", "p_value"] < 0.01 and table.loc["atinuke", "p_mc_error"] < 0.005
    assert table.loc["atinuke", "ci_low"] > 0 and table.loc["bert", "ci_low"] < 0 < table.loc["bert", "ci_high"]
    assert table.loc["bert", "p_value"] > 0.05


def test_a_model_that_learnt_in_one_seed_only_is_at_the_floor(tmp_path):
    root = write_experiment(tmp_path / "exp", accuracy=lambda arm, seed: 0.95 if seed == 0 else 0.5, majority=0.5,
                            arms=("atinuke",))
    assert competence(load_experiment(root), n_boot=500).verdict.tolist() == [AT_FLOOR]


def test_cli_prints_the_table_and_writes_out_only_when_asked_to_replace(tmp_path, capsys):
    root = write_experiment(tmp_path / "exp", accuracy=lambda arm, seed: 0.9, majority=0.5)
    assert main(["claims", "--runs", str(root), "--competence", "--format", "json", "--n-boot", "200"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["arm"], r["verdict"]) for r in rows} == {("atinuke", LEARNT), ("bert", LEARNT)}
    out = tmp_path / "competence.csv"
    out.write_text("mine\n")
    assert main(["claims", "--runs", str(root), "--competence", "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and out.read_text() == "mine\n"
    assert main(["claims", "--runs", str(root), "--competence", "--out", str(out), "--overwrite",
                 "--n-boot", "200"]) == 0
    assert list(pd.read_csv(out).columns) == list(COMPETENCE_COLUMNS)
    assert main(["claims", "--runs", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
