"""Known answers for each defect of issue 28: run-level tests on the headline metric, seed labels, power."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from atinuke.power import minimum_detectable_effect, seeds_needed, t_test_power
from atinuke.tasks.metrics import coref_scores, srl_scores
from tests.claims_fixtures import write_experiment, write_task_runs
from workbench import claims, stats
from workbench.competence import LEARNT, competence
from workbench.experiment_runs import load_experiment
from workbench.headline_stats import TaskRuns, example_statistics, metric_from_totals, trivial_statistics
from workbench.run_inference import run_level_test


def _glue(root, **kwargs) -> pd.Series:
    return claims.evaluate_claims(root=write_experiment(root, **kwargs), n_boot=500).set_index("claim").loc["glue"]


def test_seed_differences_of_one_two_and_twenty_points_are_not_significant(tmp_path):
    # Issue 28: per-seed differences +0.01, +0.02, +0.20. The old two-stage bootstrap called it p = 0.001; a
    # t test over runs says about 0.3.
    gains = [0.01, 0.02, 0.20]
    row = _glue(tmp_path / "exp", accuracy=lambda arm, seed: 0.7 + (gains[seed] if arm == "atinuke" else 0.0))
    assert row.estimate == pytest.approx(np.mean(gains))
    assert 0.15 < row.p_value < 0.6 and row.verdict == claims.INCONCLUSIVE
    assert row.mde > row.estimate and "smallest difference" in row.evidence
    # Without example noise the old seed-resampling bootstrap sits at its floor 2/(B+1) (the defect this
    # replaces); the run-level test gives the t test's answer, p = 0.34 with 2 df.
    old = stats.hierarchical_bootstrap([[np.full(50, g) for g in gains]], n_boot=1000)
    assert old.p_value == pytest.approx(2 / 1001)
    exact = run_level_test(gains, [0.0, 0.0, 0.0], lambda chunk: np.zeros((250, 6)))
    assert exact.p_value == pytest.approx(0.3394, abs=1e-3) and exact.df == pytest.approx(2.0)


def test_a_planted_advantage_consistent_over_five_seeds_is_supported_with_its_scope(tmp_path):
    jitter = [0.0, 0.01, -0.01, 0.02, -0.005]
    row = _glue(tmp_path / "exp", seeds=5, accuracy=lambda arm, seed: {"atinuke": 0.80, "bert": 0.72}[arm] + jitter[seed])
    assert row.verdict == claims.SUPPORTED and row.seeds == 5
    assert row.ci_low > 0.03 and row.ci_high < 0.13 and row.p_adjusted < 0.05
    assert "5 seed(s) per arm" in row.scope and "same-size BERT" in row.scope and "Holds against" in row.evidence
    assert row.p_mc_error <= 0.005


def test_relabelling_seeds_changes_no_p(tmp_path):
    accuracy = {("atinuke", 0): 0.80, ("atinuke", 1): 0.74, ("atinuke", 2): 0.77,
                ("bert", 0): 0.70, ("bert", 1): 0.76, ("bert", 2): 0.73}
    root = write_experiment(tmp_path / "exp", accuracy=lambda arm, seed: accuracy[(arm, seed)])
    before = claims.evaluate_claims(root=root, n_boot=500).set_index("claim").loc["glue"]
    bert = root / "bert"
    shutil.move(bert / "seed0", bert / "tmp")
    shutil.move(bert / "seed2", bert / "seed0")
    shutil.move(bert / "tmp", bert / "seed2")  # bert's seeds 0 and 2 swap labels
    after = claims.evaluate_claims(root=root, n_boot=500).set_index("claim").loc["glue"]
    assert after.p_value == pytest.approx(before.p_value, abs=1e-12) and after.verdict == before.verdict
    assert after.ci_low == pytest.approx(before.ci_low, abs=1e-12)


def _docs(small: int, large: int) -> list[list[list[list[int]]]]:
    """``small`` documents with one 2-mention cluster, then ``large`` documents with one 40-mention cluster."""
    return ([[[[0, 0], [2, 2]]]] * small) + ([[[[i, i] for i in range(0, 80, 2)]]] * large)


def test_coreference_is_judged_by_the_corpus_conll_f1_not_the_mean_per_document(tmp_path):
    # Atinuke finds every small document's cluster and none of the large ones; BERT the reverse. Per document
    # Atinuke wins (mean 0.667 vs 0.333); over the corpus (the CoNLL scorer sums counts) BERT wins, 0.353 vs
    # 0.809 (issue 28 measured 0.683 vs 0.333 per document, 0.335 vs 0.809 over the corpus).
    gold = _docs(20, 10)
    found = {"atinuke": _docs(20, 0) + [[]] * 10, "bert": [[]] * 20 + _docs(0, 10)}
    runs = {}
    for arm in ("atinuke", "bert"):
        per_doc = [coref_scores([g], [p])["conll_f1"] for g, p in zip(gold, found[arm])]
        for seed in range(3):
            runs[(arm, seed)] = ([json.dumps(g) for g in gold], [json.dumps(p) for p in found[arm]], per_doc)
    root = write_task_runs(tmp_path / "exp", "coref", runs, "conll_f1")
    row = claims.evaluate_claims(root=root, n_boot=500).set_index("claim").loc["coref"]
    corpus = {arm: coref_scores(gold, found[arm])["conll_f1"] for arm in ("atinuke", "bert")}
    assert corpus["atinuke"] == pytest.approx(0.353, abs=1e-3) and corpus["bert"] == pytest.approx(0.809, abs=1e-3)
    assert np.mean(runs[("atinuke", 0)][2]) == pytest.approx(2 / 3) and np.mean(runs[("bert", 0)][2]) == pytest.approx(1 / 3)
    assert row.metric == "conll_f1" and row.atinuke_score == pytest.approx(corpus["atinuke"])
    assert row.comparator_score == pytest.approx(corpus["bert"]) and row.trivial_score == 0.0
    assert row.estimate == pytest.approx(corpus["atinuke"] - corpus["bert"]) and row.verdict != claims.SUPPORTED


def _noisy(rng, values, flips):
    out = list(values)
    for i in rng.choice(len(out), flips, replace=False):
        out[i] = "0" if out[i] == "1" else "1"
    return out


def test_cola_is_judged_on_mcc_with_the_majority_class_at_zero(tmp_path):
    rng = np.random.default_rng(0)
    gold = ["1"] * 210 + ["0"] * 90
    runs = {("atinuke", s): (gold, p := _noisy(rng, gold, 45 + 5 * s), [float(a == b) for a, b in zip(gold, p)])
            for s in range(3)}
    table = competence(load_experiment(write_task_runs(tmp_path / "exp", "cola", runs, "mcc")), n_boot=500)
    row = table.iloc[0]
    expected = np.mean([matthews_corrcoef(gold, runs[("atinuke", s)][1]) for s in range(3)])
    assert row.metric == "mcc" and row.score == pytest.approx(expected) and row.trivial_score == 0.0
    assert row.example_score == pytest.approx(np.mean([1 - (45 + 5 * s) / 300 for s in range(3)]))
    assert row.verdict == LEARNT


def test_sts_is_judged_on_pearson_even_when_the_tolerance_score_is_below_the_mean_baseline(tmp_path):
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, 300)
    runs = {}
    for s in range(3):  # correlated (r ~ 0.35) but rarely within 0.5 of the gold score
        prediction = 2.5 + 1.2 * (gold - 2.5) + rng.normal(0, 5.0, 300)
        runs[("atinuke", s)] = ([repr(float(g)) for g in gold], [repr(float(p)) for p in prediction],
                                (np.abs(prediction - gold) <= 0.5).astype(float).tolist())
    table = competence(load_experiment(write_task_runs(tmp_path / "exp", "stsb", runs, "pearson")), n_boot=500)
    row = table.iloc[0]
    pearson = np.mean([np.corrcoef(gold, [float(v) for v in runs[("atinuke", s)][1]])[0, 1] for s in range(3)])
    tolerance_trivial = float(np.mean(np.abs(gold - gold.mean()) <= 0.5))
    assert row.metric == "pearson" and row.score == pytest.approx(pearson) and 0.25 < pearson < 0.45
    assert row.example_score < tolerance_trivial  # a per-example tolerance score would say "at the floor"
    assert row.trivial_score == 0.0 and row.verdict == LEARNT


@pytest.mark.parametrize("task", ["cola", "mrpc", "sst2", "stsb", "srl", "coref"])
def test_headline_statistics_reproduce_the_official_metric_exactly(task):
    rng = np.random.default_rng(2)
    if task in ("cola", "mrpc", "sst2"):
        gold = pd.Series(rng.choice(["0", "1"], 80, p=[0.3, 0.7]).tolist())
        prediction = pd.Series(_noisy(rng, gold.tolist(), 20))
        official = {"cola": matthews_corrcoef, "mrpc": lambda g, p: f1_score(g, p, pos_label="1"),
                    "sst2": lambda g, p: float(np.mean(np.array(g) == np.array(p)))}[task](gold, prediction)
    elif task == "stsb":
        y = rng.uniform(0, 5, 80)
        gold = pd.Series([repr(float(v)) for v in y])
        prediction = pd.Series([repr(float(v)) for v in y + rng.normal(0, 1, 80)])
        official = np.corrcoef(y, prediction.astype(float))[0, 1]
    elif task == "srl":
        tags = [["B-ARG0", "I-ARG0", "B-V", "B-ARG1", "O"], ["O", "B-V", "B-ARG1", "I-ARG1", "O"]] * 10
        guess = [["B-ARG0", "O", "B-V", "B-ARG1", "O"], ["O", "B-V", "O", "O", "O"]] * 10
        gold, prediction = pd.Series([json.dumps(t) for t in tags]), pd.Series([json.dumps(t) for t in guess])
        official = srl_scores([type("E", (), {"tags": t, "words": t, "id": i})() for i, t in enumerate(tags)], guess)["f1"]
    else:
        docs, found = _docs(5, 2), _docs(5, 0) + _docs(0, 1) + [[]]
        gold, prediction = pd.Series([json.dumps(d) for d in docs]), pd.Series([json.dumps(d) for d in found])
        official = coref_scores(docs, found)["conll_f1"]
    matrix = example_statistics(task, gold, prediction, pd.Series(np.zeros(len(gold))))
    assert float(metric_from_totals(task, matrix.sum(axis=0))) == pytest.approx(official, abs=1e-12)
    # Resampling is a weighting of the rows: weight 2 on every row is the same metric.
    assert float(metric_from_totals(task, 2 * matrix.sum(axis=0))) == pytest.approx(official, abs=1e-12)
    trivial = float(metric_from_totals(task, trivial_statistics(task, gold).sum(axis=0)))
    share = float(np.mean(gold == "1"))
    expected = {"sst2": max(share, 1 - share), "mrpc": 2 * share / (1 + share) if share > 0.5 else 0.0}
    assert trivial == pytest.approx(expected.get(task, 0.0), abs=1e-12)  # majority class, mean score, all-O, none


def _null_experiment(rng, seeds: int, n: int = 150) -> TaskRuns:
    """One accuracy task, no true difference: seed effects dominate, a shared per-example difficulty, and an
    arm-specific per-example effect."""
    from scipy.stats import norm

    difficulty = rng.normal(0, 1, n)
    gold = pd.Series(["1"] * n)
    stats_, means = {}, {}
    for arm in ("atinuke", "bert"):
        shared = difficulty + rng.normal(0, 0.3, n)
        for s in range(seeds):
            correct = rng.random(n) < norm.cdf(0.8 + rng.normal(0, 0.2) + shared)
            prediction = pd.Series(np.where(correct, "1", "0").tolist())
            stats_.setdefault(arm, {})[s] = example_statistics("sst2", gold, prediction, pd.Series(correct.astype(float)))
            means.setdefault(arm, {})[s] = float(correct.mean())
    return TaskRuns("sst2", "accuracy", n, stats_, trivial_statistics("sst2", gold), means, 1.0, set())


def test_simulated_type_one_error_at_three_seeds_is_within_bounds():
    rng = np.random.default_rng(3)
    reps = 120
    rejected = covered = 0
    for _ in range(reps):
        test = claims.family_test([_null_experiment(rng, 3)], n_boot=250)
        rejected += test.p_value < 0.05
        covered += test.low <= 0.0 <= test.high
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    assert rejected / reps <= bound and covered / reps >= 1 - bound


def test_one_run_against_the_floor_is_an_example_level_test_and_the_mc_error_is_small():
    values = [0.1]
    test = run_level_test(values, None, lambda chunk: np.random.default_rng(chunk).normal(0.1, 0.05, (250, 1)),
                          n_boot=500, alternative="greater")
    assert test.df == math.inf and test.se == pytest.approx(0.05, rel=0.1)
    assert test.p_value == pytest.approx(0.0228, abs=0.01) and test.p_mc_error < 0.005


def test_power_known_answers():
    # Cohen (1988), Table 2.4.1: d = 0.5 needs 64 per group for 80% power at two-sided alpha 0.05.
    assert seeds_needed(0.5, 1.0, 1.0) == 64
    assert minimum_detectable_effect(1.0, math.inf) == pytest.approx(1.95996 + 0.84162, abs=1e-3)
    assert t_test_power(0.0, 1.0, 10) == pytest.approx(0.05, abs=1e-9)
    se = math.sqrt(2 / 64)
    assert t_test_power(0.5, se, 126) == pytest.approx(0.80, abs=0.01)


def test_experiment_plan_prints_the_seeds_needed_before_any_training(tmp_path, capsys):
    from atinuke.cli import main

    for arm, values in (("atinuke", [0.80, 0.82, 0.78]), ("bert", [0.75, 0.77, 0.73])):
        for seed, value in enumerate(values):
            run = tmp_path / "old" / arm / f"seed{seed}" / "finetune" / "sst2"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({"headline_metric": "accuracy", "accuracy": value}))
            (run / "predictions.parquet").write_bytes(b"")
    assert main(["experiment", "--plan", "--effect", "0.02", "--from", str(tmp_path / "old"),
                 "--out", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "sst2       accuracy" in out and f"--seeds {seeds_needed(0.02, 0.02, 0.02)}" in out
    assert not (tmp_path / "new").exists()  # nothing trained, nothing written
    assert main(["experiment", "--plan", "--from", str(tmp_path / "missing")]) == 2


def test_calibration_bench_prints_its_figures_and_relabelling_changes_nothing(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "verdicts.py"
    spec = importlib.util.spec_from_file_location("bench_verdicts", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--reps", "2", "--power-reps", "1", "--relabel", "2", "--n-boot", "250"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"type1_3seeds", "type1_5seeds", "power_3seeds", "power_5seeds", "ci_coverage_3seeds",
            "seed_relabel_max_p_change"} <= set(figures)
    assert figures["seed_relabel_max_p_change"] < 1e-9 and figures["seed_relabel_verdict_changes"] == 0


def test_gap_headline_is_the_official_scorer_f1_recomputed_from_counts():
    """GAP's F1 over the A/B decisions (Webster et al., 2018) from additive counts equals ``gap_scores`` exactly,
    also on a resample-like reweighting, and the trivial baseline is the majority label scored the same way."""
    from atinuke.tasks.gap import gap_scores

    rng = np.random.default_rng(5)
    labels = ["A", "B", "NEITHER"]
    gold = pd.Series(rng.choice(labels, 60, p=[0.45, 0.45, 0.1]).tolist())
    prediction = pd.Series([g if rng.random() < 0.6 else labels[int(rng.integers(3))] for g in gold])
    genders = ["masculine"] * 60
    official = gap_scores(genders, gold.tolist(), prediction.tolist())["f1"]
    matrix = example_statistics("gap", gold, prediction, pd.Series(np.zeros(len(gold))))
    assert float(metric_from_totals("gap", matrix.sum(axis=0))) == pytest.approx(official, abs=1e-12)
    weights = rng.integers(0, 3, len(gold))
    chosen = np.repeat(np.arange(len(gold)), weights)
    reweighted = gap_scores(["masculine"] * len(chosen), gold.iloc[chosen].tolist(), prediction.iloc[chosen].tolist())["f1"]
    assert float(metric_from_totals("gap", (matrix * weights[:, None]).sum(axis=0))) == pytest.approx(reweighted)
    majority = gold.value_counts().sort_index().idxmax()
    trivial = float(metric_from_totals("gap", trivial_statistics("gap", gold).sum(axis=0)))
    assert trivial == pytest.approx(gap_scores(genders, gold.tolist(), [majority] * 60)["f1"], abs=1e-12)
