"""Verdicts of the paper's claims from a controlled experiment: known answers on planted predictions (issue 10)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.claims_fixtures import write_experiment
from workbench import claims, experiment_runs, stats
from workbench.cli import main


def _glue(root, **kwargs) -> pd.Series:
    table = claims.evaluate_claims(root=write_experiment(root, **kwargs), n_boot=1000)
    assert list(table.columns) == list(claims.CLAIM_COLUMNS)
    return table.set_index("claim").loc["glue"]


def test_planted_advantage_is_supported(tmp_path):
    row = _glue(tmp_path / "exp", accuracy=lambda arm, seed: {"atinuke": 0.9, "bert": 0.7}[arm])
    assert row.verdict == claims.SUPPORTED and row.comparator == "bert" and row.seeds == 3
    assert row.atinuke_score == pytest.approx(0.9) and row.comparator_score == pytest.approx(0.7)
    assert row.trivial_score == pytest.approx(0.5)
    # Welch t over runs: no seed spread, so each run's own example noise is the floor of the seed variance.
    assert row.p_value < 0.01 and row.p_mc_error < 0.005 and row.n_resamples >= 1000
    assert row.p_adjusted <= 0.05 and "silver" in row.provenance
    assert row.metric == "accuracy" and row.estimate == pytest.approx(0.2) and row.ci_low > 0
    assert "same-size BERT" in row.scope and "tiny budget" in row.scope and "3 seed(s) per arm" in row.scope


def test_planted_disadvantage_is_contradicted(tmp_path):
    row = _glue(tmp_path / "exp", accuracy=lambda arm, seed: {"atinuke": 0.7, "bert": 0.9}[arm])
    assert row.verdict == claims.CONTRADICTED


def test_equal_models_are_inconclusive(tmp_path):
    row = _glue(tmp_path / "exp", accuracy=lambda arm, seed: 0.8)
    assert row.verdict == claims.INCONCLUSIVE and row.p_value > 0.2


def test_both_models_at_the_floor_are_not_measurable(tmp_path):
    # 70% majority class: 0.70 accuracy is exactly the trivial baseline, whatever the difference.
    row = _glue(tmp_path / "exp", majority=0.7, accuracy=lambda arm, seed: {"atinuke": 0.72, "bert": 0.70}[arm])
    assert row.verdict == claims.FLOOR and pd.isna(row.p_value)
    assert "not shown above the trivial baseline" in row.evidence


def test_comparator_at_the_floor_is_not_measurable_even_with_a_big_gap(tmp_path):
    row = _glue(tmp_path / "exp", majority=0.6, accuracy=lambda arm, seed: {"atinuke": 0.95, "bert": 0.6}[arm])
    assert row.verdict == claims.FLOOR and "bert" in row.evidence


def test_an_advantage_in_one_seed_only_does_not_survive(tmp_path):
    def accuracy(arm, seed):
        return 0.95 if (arm == "atinuke" and seed == 0) else 0.75

    row = _glue(tmp_path / "exp", accuracy=accuracy)
    assert row.verdict == claims.INCONCLUSIVE
    # Pooling the examples of all seeds (ignoring seeds) would call it significant: the run is the unit.
    diffs = []
    exp = experiment_runs.load_experiment(tmp_path / "exp")
    for seed in exp.seeds:
        a, b = exp.predictions("atinuke", seed, "sst2"), exp.predictions("bert", seed, "sst2")
        diffs.append(a["example_f1"].to_numpy() - b["example_f1"].to_numpy())
    pooled = stats.hierarchical_bootstrap([[np.concatenate(diffs)]], n_boot=1000)
    assert pooled.p_value < 0.01 < 0.05 < row.p_value
    assert f"{row.mde:.3g}" in row.evidence and "smallest difference" in row.evidence


def test_one_seed_gives_no_verdict(tmp_path):
    row = _glue(tmp_path / "exp", seeds=1, accuracy=lambda arm, seed: {"atinuke": 0.9, "bert": 0.7}[arm])
    assert row.verdict == claims.INCONCLUSIVE and claims.ONE_SEED in row.evidence.lower() and pd.isna(row.p_value)


def test_minilm_is_a_reference_row_never_the_comparator(tmp_path):
    row = _glue(tmp_path / "exp", arms=("atinuke", "bert", "minilm"),
                accuracy=lambda arm, seed: {"atinuke": 0.8, "bert": 0.8, "minilm": 0.99}[arm])
    assert row.comparator == "bert" and row.reference_score == pytest.approx(0.99)
    assert row.verdict == claims.INCONCLUSIVE and "not a comparator" in row.evidence


def test_without_an_experiment_benchmark_claims_have_no_evidence(tmp_path):
    table = claims.evaluate_claims(root=tmp_path, n_boot=10).set_index("claim")
    for key in ("squad", "glue", "snli", "coref", "srl", "perplexity"):
        assert table.loc[key, "verdict"] == claims.NO_EVIDENCE, key
    assert "atinuke experiment" in table.loc["glue", "evidence"]


def test_holm_known_answer():
    assert claims.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None], nan_ok=True)
    assert claims.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])


def test_bootstrap_is_deterministic_and_resamples_at_both_levels():
    d = [[np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0])]]
    assert stats.hierarchical_bootstrap(d, n_boot=200) == stats.hierarchical_bootstrap(d, n_boot=200)
    zero = stats.hierarchical_bootstrap([[np.zeros(5)]], n_boot=99)
    assert zero.estimate == 0 and zero.p_value == 1.0
    with pytest.raises(ValueError):
        stats.hierarchical_bootstrap([[np.array([])]])


@pytest.mark.parametrize("task, gold, expected", [
    ("mrpc", ["1", "1", "0"], [1, 1, 0]),
    ("stsb", ["1.0", "2.0", "4.5"], [0, 1, 0]),  # mean 2.5, tolerance 0.5
    ("squad2", ["", "Paris", ""], [1, 0, 1]),  # always abstain
    ("srl", [json.dumps(["B-ARG0", "B-V", "O"]), json.dumps(["O", "B-V", "O"])], [0, 1]),  # all-O
    # No cluster: 0 on a document with clusters, and 0 on an empty one too (the scorer's convention for 0/0,
    # the same convention the model's own example_f1 uses).
    ("coref", [json.dumps([[[0, 1], [4, 4]]]), json.dumps([])], [0, 0]),
])
def test_trivial_baselines_known_answers(task, gold, expected):
    got = experiment_runs.trivial_example_scores(task, pd.Series(gold))
    assert got.tolist() == pytest.approx(expected)


def _summary(arm, seed):
    ppl = {"atinuke": 300.0, "bert": 200.0}[arm] + seed
    return {"seed": seed, "val_ppl": ppl, "test_ppl": ppl, "val_unigram_ppl": 700.0, "test_unigram_ppl": 680.0,
            "parameters": {"total": 1000, "non_embedding": 400}, "tokens_per_s": 5000.0 + seed, "device": "cpu",
            "model_config": {"n_layers": 2, "d_model": 8}, "config": {"seq_len": 16}}


def test_perplexity_and_efficiency_compare_the_arms(tmp_path):
    root = write_experiment(tmp_path / "exp", accuracy=lambda arm, seed: 0.8, pretrain=_summary)
    table = claims.evaluate_claims(root=root, n_boot=200).set_index("claim")
    ppl = table.loc["perplexity"]
    assert ppl.verdict == claims.CONTRADICTED and ppl.atinuke_score == pytest.approx(301.0)
    assert ppl.comparator_score == pytest.approx(201.0) and ppl.trivial_score == pytest.approx(680.0)
    efficiency = table.loc["efficiency"]
    assert efficiency.verdict == claims.MEASURED and "1,000 parameters" in efficiency.evidence
    assert claims.flops_per_token(_summary("atinuke", 0)) == 2 * 400 + 2 * 2 * 16 * 8
    assert "0.00 MFLOPs/token" in efficiency.evidence


def test_cli_writes_one_row_per_claim_as_csv_and_json(tmp_path, capsys):
    root = write_experiment(tmp_path / "exp", accuracy=lambda arm, seed: {"atinuke": 0.9, "bert": 0.7}[arm])
    assert main(["claims", "--runs", str(root), "--format", "json", "--n-boot", "300"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["claim"] for r in rows] == [c[0] for c in claims.PAPER_CLAIMS]
    assert set(claims.CLAIM_COLUMNS) <= set(rows[0])
    glue = next(r for r in rows if r["claim"] == "glue")
    assert glue["verdict"] == "supported" and glue["seeds"] == 3
    out = tmp_path / "claims.csv"
    assert main(["claims", "--runs", str(root), "--out", str(out), "--n-boot", "300"]) == 0
    assert pd.read_csv(out)["claim"].tolist() == [c[0] for c in claims.PAPER_CLAIMS]


@pytest.mark.parametrize("flags, needle", [
    (["--format", "xml"], "--format 'xml'"),
    (["--n-boot", "0"], "--n-boot must be at least 1, got 0"),
    (["--runs", "/nonexistent/x"], "no such directory"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, flags, needle):
    assert main(["claims", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_malformed_experiment_json_names_the_file(tmp_path, capsys):
    (tmp_path / "experiment.json").write_text("{not json")
    assert main(["claims", "--runs", str(tmp_path)]) == 2
    assert "experiment.json:1: malformed JSON" in capsys.readouterr().err


def test_experiment_runs_are_listed_by_arm_and_seed(tmp_path):
    from workbench import artifacts

    root = tmp_path / "runs"
    write_experiment(root / "experiment", seeds=2, accuracy=lambda arm, seed: 0.8,
                     pretrain=lambda arm, seed: {"seed": seed})
    (root / "experiment" / "atinuke" / "seed0" / "pretrain" / "model").mkdir()
    (root / "experiment" / "atinuke" / "seed0" / "pretrain" / "model" / "config.json").write_text("{}")
    assert [r.name for r in artifacts.find_pretrain_runs(root)] == ["atinuke-seed0", "atinuke-seed1", "bert-seed0",
                                                                    "bert-seed1"]
    runs = artifacts.find_finetune_runs(root)
    assert {r.label for r in runs} == {f"{a}-seed{s} / sst2" for a in ("atinuke", "bert") for s in (0, 1)}


def test_interpretability_evidence_says_whether_the_blocks_add_to_the_embeddings():
    from workbench.claims import _interpretability_evidence

    def results(model, accuracies):
        rows = [dict(model=model, task="pos", layer=layer, metric="accuracy", value=v, seed=0, control="none",
                     source="silver: spaCy", probe="linear") for layer, v in enumerate(accuracies)]
        rows += [dict(rows[0], layer=layer, value=0.5, control="control_task") for layer in range(len(accuracies))]
        return rows

    frame = pd.DataFrame(results("flat", [0.85, 0.80, 0.78]) + results("deep", [0.80, 0.90, 0.86]))
    verdict, provenance, evidence = _interpretability_evidence(frame)
    assert verdict == "partly measurable" and provenance == "silver: spaCy"
    assert ("flat / pos: best accuracy 0.850 at layer 0, control 0.500 (selectivity +0.350); best contextual layer 1 "
            "does not beat the embeddings (0.800 vs layer 0 0.850, -0.050)") in evidence
    assert "deep / pos: best accuracy 0.900 at layer 1" in evidence
    assert "best contextual layer 1 beats the embeddings (0.900 vs layer 0 0.800, +0.100)" in evidence
    assert _interpretability_evidence(None)[0] == "no evidence"


def _better_atinuke(arm, seed):
    return dict(_summary(arm, seed), val_ppl={"atinuke": 100.0, "bert": 300.0}[arm] + seed * 5,
                test_ppl={"atinuke": 100.0, "bert": 300.0}[arm] + seed * 5)


def _sweep(root, bert_at_recipe, bert_best, bert_best_lr):
    folder = root / "lr-sweep"
    folder.mkdir()
    (folder / "best.json").write_text(json.dumps({"recipe_lr": 2e-3, "steps": 1200, "arms": {
        "atinuke": {"best_lr": 2e-3, "best_val_ppl": 400.0, "recipe_val_ppl": 400.0, "complete": True,
                    "at_grid_edge": False},
        "bert": {"best_lr": bert_best_lr, "best_val_ppl": bert_best, "recipe_val_ppl": bert_at_recipe,
                 "complete": True, "at_grid_edge": False}}}))


@pytest.mark.parametrize("sweep, verdict, needle", [
    (None, claims.SUPPORTED, "No learning-rate sweep"),
    ((600.0, 600.0, 2e-3), claims.SUPPORTED, "is each arm's best on the grid"),
    ((605.0, 600.0, 1e-3), claims.SUPPORTED, "bert best lr 0.001"),  # within the 2% tolerance
    ((600.0, 450.0, 4e-3), claims.INCONCLUSIVE, "may be the recipe's"),  # the recipe handicapped BERT
])
def test_a_recipe_tuned_for_atinuke_alone_cannot_support_the_perplexity_claim(tmp_path, sweep, verdict, needle):
    write_experiment(tmp_path / "runs" / "experiment", accuracy=lambda arm, seed: 0.8, pretrain=_better_atinuke)
    if sweep is not None:
        _sweep(tmp_path / "runs", *sweep)
    row = claims.evaluate_claims(root=tmp_path / "runs", n_boot=200).set_index("claim").loc["perplexity"]
    assert row.verdict == verdict and needle in row.evidence
