"""Known-answer tests of workbench.errors on hand-built predictions tables (synthetic test fixtures)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atinuke.errors import UserInputError
from workbench import errors


def _table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A synthetic predictions table: the model fails exactly on negated examples (a planted cohort)."""
    rng = np.random.default_rng(seed)
    negation = rng.random(n) < 0.25
    length = rng.integers(3, 40, size=n)
    gold = rng.choice(["positive", "negative"], size=n)
    prediction = np.where(negation, np.where(gold == "positive", "negative", "positive"), gold)
    return pd.DataFrame(dict(
        id=[f"ex{i}" for i in range(n)], task="sst2", model="test-fixture", split="dev",
        provenance="silver, derived", text=[f"sentence {i}" for i in range(n)], text_pair=None,
        gold=gold, prediction=prediction, score=rng.uniform(0.5, 1.0, size=n), probs=None,
        correct=prediction == gold, example_f1=(prediction == gold).astype(float),
        meta_length=length, meta_negation=negation, meta_rule=rng.choice(["a", "b", "c"], size=n)))


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # In each bin the accuracy equals the (constant) confidence exactly: 0.25 -> 1 of 4 right, etc.
    scores = np.repeat([0.25, 0.5, 0.75, 1.0], 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1], dtype=bool)
    result = errors.calibration(scores, correct, n_bins=10)
    assert result.ece == pytest.approx(0.0, abs=1e-12)
    assert result.mce == pytest.approx(0.0, abs=1e-12)
    assert result.bins["n"].sum() == 16


def test_ece_known_value_for_overconfident_model():
    # Always 0.9 confident, right half the time: ECE = |0.5 - 0.9| = 0.4, one non-empty bin.
    result = errors.calibration(np.full(10, 0.9), np.arange(10) % 2 == 0, n_bins=10)
    assert result.ece == pytest.approx(0.4)
    filled = result.bins[result.bins["n"] > 0]
    assert len(filled) == 1 and filled["gap"].iloc[0] == pytest.approx(-0.4)


def test_calibration_rejects_non_probabilities():
    with pytest.raises(UserInputError):
        errors.calibration([0.5, 1.5], [True, False])


def test_planted_cohort_found_with_error_rate_one():
    table = _table()
    tree = errors.error_cohorts(table, max_depth=2)
    negated = tree.nodes[tree.nodes["condition"] == "meta_negation = True"]
    assert len(negated) == 1
    node = negated.iloc[0]
    assert node["error_rate"] == 1.0
    assert node["coverage"] == pytest.approx(table["meta_negation"].mean())
    assert node["error_coverage"] == 1.0  # every error is in the cohort
    assert tree.cohorts().iloc[0]["error_rate"] == 1.0
    assert tree.importances.index[0] == "meta_negation"


def test_internal_signal_columns_can_carry_the_cohort():
    # Errors planted on a high internal signal only; the meta features are independent of failure.
    table = _table().drop(columns=["meta_negation"])
    rng = np.random.default_rng(1)
    entropy = np.where(~table["correct"], rng.uniform(2.0, 3.0, len(table)), rng.uniform(0.0, 1.0, len(table)))
    signals = pd.DataFrame({"id": table["id"], "attention_entropy": entropy})
    tree = errors.error_cohorts(table, signals=signals, max_depth=2)
    assert "signal_attention_entropy" in tree.features
    worst = tree.cohorts().iloc[0]
    assert worst["error_rate"] == 1.0 and "signal_attention_entropy >" in worst["path"]


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = errors.bootstrap_ci(rng.random(50) < 0.7, n_boot=800)
    large = errors.bootstrap_ci(rng.random(5000) < 0.7, n_boot=800)
    for ci in (small, large):
        assert ci.low <= ci.estimate <= ci.high
    assert large.width < small.width / 4  # ~ 1/sqrt(n): sqrt(100) = 10x narrower in expectation
    assert large.low < 0.7 < large.high


def test_bootstrap_ci_non_vectorised_statistic():
    values = np.arange(101, dtype=float)
    ci = errors.bootstrap_ci(values, statistic=lambda x: float(np.median(x)), n_boot=200)
    assert ci.estimate == 50.0 and ci.low <= 50.0 <= ci.high


def test_slice_metrics_known_values_and_quantile_bins():
    table = _table()
    slices = errors.slice_metrics(table, n_boot=200)
    negation = slices[slices["feature"] == "meta_negation"].set_index("slice")
    assert negation.loc["True", "value"] == 0.0 and negation.loc["False", "value"] == 1.0
    assert negation.loc["True", "category"] == "negation"
    length = slices[slices["feature"] == "meta_length"]
    assert 3 <= len(length) <= 4 and length["n"].sum() == len(table)
    lefts = [float(s.split(",")[0][1:]) for s in length["slice"]]
    assert length["slice"].iloc[0].startswith(f"[{table['meta_length'].min()},")
    assert lefts == sorted(lefts)  # numeric bins come out in numeric order
    assert (slices["ci_low"] <= slices["value"]).all() and (slices["value"] <= slices["ci_high"]).all()



def test_duplicate_slice_features_are_dropped_near_duplicates_kept(caplog):
    table = _table()
    planted = table.copy()
    planted["meta_source"] = planted["meta_rule"].map({"a": "x", "b": "y", "c": "z"})  # a renamed copy
    planted["meta_n_words"] = 2 * planted["meta_length"] + 1  # monotone: the same quantile bins, other labels
    near = planted["meta_rule"].copy()
    near.iloc[7] = "b" if near.iloc[7] != "b" else "c"  # differs from meta_rule on exactly one row
    planted["meta_template"] = near
    with caplog.at_level("INFO", logger="workbench.errors"):
        slices = errors.slice_metrics(planted, n_boot=100)
    assert list(dict.fromkeys(slices["feature"])) == ["meta_length", "meta_negation", "meta_rule", "meta_template"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "kept meta_rule, dropped meta_source" in messages
    assert "kept meta_length, dropped meta_n_words" in messages
    # The kept features' rows are exactly those of the table without the planted columns.
    original = errors.slice_metrics(table, n_boot=100)
    pd.testing.assert_frame_equal(slices[slices["feature"] != "meta_template"].reset_index(drop=True), original)
    template = slices[slices["feature"] == "meta_template"]
    assert template["n"].sum() == len(table)
    assert sorted(template["n"]) != sorted(original[original["feature"] == "meta_rule"]["n"])  # one row moved
    # The order of ``features`` decides which twin is kept; analyze dedupes the same way.
    swapped = errors.slice_metrics(planted, features=["meta_n_words", "meta_length"], n_boot=50)
    assert set(swapped["feature"]) == {"meta_n_words"}
    assert set(errors.analyze(planted, n_boot=50).slices["feature"]) == {"meta_length", "meta_negation",
                                                                          "meta_rule", "meta_template"}


def test_same_partition_is_equality_up_to_relabelling():
    same = errors._same_partition
    assert same(np.array([0, 0, 1, 2]), np.array([5, 5, 3, 4]))
    assert not same(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))  # same slice count, other grouping
    assert not same(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2]))  # a refinement is not a duplicate
    assert not same(np.array([0, 0, 1, 2]), np.array([0, 0, 1, 1]))

def test_confusion_matrix_and_worst_examples():
    table = _table()
    matrix = errors.confusion_matrix(table)
    assert matrix.to_numpy().sum() == len(table)
    assert np.trace(matrix.to_numpy()) == table["correct"].sum()
    worst = errors.worst_examples(table, k=5)
    assert (~worst["correct"]).all() and list(worst["score"]) == sorted(worst["score"], reverse=True)
    assert worst["score"].iloc[0] == table.loc[~table["correct"], "score"].max()


def test_taxonomy_maps_task_names_onto_shared_categories():
    assert errors.taxonomy_of("meta_overlap") == "lexical overlap"
    assert errors.taxonomy_of("meta_mention_distance") == "distance"
    assert errors.taxonomy_of("meta_answer_type") == "entity/answer type"
    assert errors.taxonomy_of("meta_span_width") == "span width"
    assert errors.taxonomy_of("meta_context_length") == "length"
    assert errors.taxonomy_of("signal_ig_delta") == "internal signal"


def test_analyze_and_validation():
    result = errors.analyze(_table(), n_boot=100)
    assert result.accuracy.estimate == pytest.approx(0.75, abs=0.06)
    assert result.confusion is not None and result.cohorts is not None
    assert result.provenance == ["silver, derived"]
    with pytest.raises(UserInputError, match="missing predictions column"):
        errors.validate_predictions(pd.DataFrame({"id": ["a"]}))


def test_internal_signals_from_a_real_model(tiny_atinuke_dir):
    from workbench.subject import load_subject

    table = _table(n=6)
    table["text"] = ["the market fell sharply", "prices rose", "no one came to the meeting today", "yes",
                     "shares of the company were not traded", "it is raining"]
    signals = errors.internal_signals(load_subject(tiny_atinuke_dir), table, n_steps=8, top_k=2)
    assert list(signals["id"]) == list(table["id"])
    assert signals["attention_entropy"].between(0, np.log(128)).all()
    one_word = signals.set_index("id").loc["ex3"]
    assert one_word["attribution_concentration"] == pytest.approx(1.0)  # a single word carries everything
    assert signals["attribution_concentration"].between(0, 1 + 1e-9).all() and (signals["ig_delta"] >= 0).all()
    tree = errors.error_cohorts(table, signals=signals, max_depth=1, min_samples_leaf=1)
    assert {"signal_attention_entropy", "signal_ig_delta"} <= set(tree.features)
