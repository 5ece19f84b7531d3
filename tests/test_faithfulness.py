"""workbench.faithfulness: known answers on a linear target and hand-made scores."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from known_targets import LinearEmbedTarget

from workbench.attribution import Attribution, AttributionParams, attribute
from workbench.faithfulness import (
    agreement_matrix,
    aopc,
    curve_areas,
    deletion_insertion,
    eraser,
    faithfulness_summary,
    plausibility,
    randomization_check,
    rank_agreement,
    summarize,
)
from workbench.stats import mean_ci
from workbench.subject import load_subject

TEXTS = ["The market fell sharply on Monday .", "Shares rose in heavy trading ."]


@pytest.fixture(scope="module")
def subject(tiny_atinuke_dir):
    return load_subject(tiny_atinuke_dir)


@pytest.fixture(scope="module")
def linear(subject):
    torch.manual_seed(1)
    target = LinearEmbedTarget(torch.randn(subject.d_model))
    return target, attribute(subject, TEXTS, "integrated_gradients", target, AttributionParams(n_steps=2))


def test_eraser_known_answer_on_a_linear_target(subject, linear):
    """With f linear and [PAD] erasing, removing tokens subtracts exactly their IG scores."""
    target, result = linear
    table = eraser(subject, TEXTS, result, target, ks=(10, 50, 100), erase="pad")
    for example_id in ("0", "1"):
        scores = result.scores(example_id)
        content = scores[1:-1]  # [CLS] ... [SEP]
        order = np.argsort(-content, kind="stable")
        for k in (10, 50, 100):
            n_top = max(1, math.ceil(k / 100 * len(content)))
            row = table[(table["example_id"] == example_id) & (table["k"] == k)].iloc[0]
            assert row["comprehensiveness"] == pytest.approx(content[order[:n_top]].sum(), abs=1e-4)
            assert row["sufficiency"] == pytest.approx(content[order[n_top:]].sum(), abs=1e-4)
    summary = aopc(table)
    expected = table.groupby("example_id")["comprehensiveness"].mean()
    np.testing.assert_allclose(summary.set_index("example_id")["comprehensiveness"], expected)


def test_eraser_delete_mode_and_classification_probability(subject):
    result = attribute(subject, TEXTS, "saliency")
    table = eraser(subject, TEXTS, result)  # deletion, norm target
    assert set(table["k"]) == {1, 5, 10, 20, 50}
    assert table[["comprehensiveness", "sufficiency"]].notna().all().all()
    # k = 100% of the erasable tokens: sufficiency keeps only protected tokens, comprehensiveness the same input
    full = eraser(subject, TEXTS, result, ks=(100,))
    np.testing.assert_allclose(full["comprehensiveness"], full["sufficiency"], atol=1e-5)


def test_deletion_and_insertion_curves_end_points(subject, linear):
    target, result = linear
    curves = deletion_insertion(subject, TEXTS, result, target, n_points=5, erase="pad")
    for example_id, group in curves.groupby("example_id"):
        group = group.sort_values("fraction")
        # deletion starts at f(x), insertion ends at f(x); both meet f(all erased) at the other end
        assert group["deletion"].iloc[0] == pytest.approx(group["insertion"].iloc[-1], abs=1e-5)
        assert group["deletion"].iloc[-1] == pytest.approx(group["insertion"].iloc[0], abs=1e-5)
        # IG on a linear f ranks exactly: deletion falls monotonically while positive tokens remain
        scores = np.sort(result.scores(example_id)[1:-1])[::-1]
        assert group["deletion"].iloc[0] - group["deletion"].iloc[-1] == pytest.approx(scores.sum(), abs=1e-4)
    areas = curve_areas(curves)
    assert set(areas.columns) >= {"deletion_auc", "insertion_auc"}
    assert (areas["insertion_auc"] >= areas["deletion_auc"]).all()  # a faithful ranking


def _hand_made(scores_a, scores_b):
    rows = []
    for method, scores in (("a", scores_a), ("b", scores_b)):
        for t, s in enumerate([0.0] + list(scores) + [0.0]):
            rows.append({"example_id": "x", "token_index": t, "token": f"t{t}", "word_index": -1 if t in (0, len(scores) + 1) else t - 1,
                         "word": f"w{t}", "score": s, "method": method, "params": "{}", "target": "t", "delta": np.nan})
    return Attribution(pd.DataFrame(rows))


def test_rank_agreement_known_answers():
    same = rank_agreement(_hand_made([1, 2, 3, 4], [10, 20, 30, 40]), "a", "b", k=2)
    assert same["kendall_tau"].iloc[0] == pytest.approx(1.0) and same["topk_overlap"].iloc[0] == 1.0
    reverse = rank_agreement(_hand_made([1, 2, 3, 4], [4, 3, 2, 1]), "a", "b", k=2)
    assert reverse["kendall_tau"].iloc[0] == pytest.approx(-1.0) and reverse["topk_overlap"].iloc[0] == 0.0
    one_swap = rank_agreement(_hand_made([1, 2, 3, 4], [1, 2, 4, 3]), "a", "b", k=1)
    assert one_swap["kendall_tau"].iloc[0] == pytest.approx(4 / 6)  # (5 concordant - 1 discordant) / 6 pairs
    matrix = agreement_matrix(_hand_made([1, 2, 3, 4], [1, 2, 4, 3]))
    assert set(matrix["metric"]) == {"kendall_tau", "topk_overlap"}


def test_plausibility_known_answers(subject):
    text = "the market fell last week"
    # gold rationale: "market fell" (characters 4-15)
    perfect = attribute(subject, [text], "saliency")
    tokens = perfect.frame["token"].tolist()
    gold_tokens = [t for t in tokens if t in ("market", "fell")]
    assert len(gold_tokens) == 2, tokens
    frame = perfect.frame.copy()
    frame["score"] = [1.0 if t in ("market", "fell") else 0.0 for t in tokens]
    result = plausibility(subject, [text], Attribution(frame), rationales=[[(0, 4, 15)]])
    assert result["token_f1"].iloc[0] == 1.0 and result["auprc"].iloc[0] == pytest.approx(1.0)
    # ranking: fell > the > market > last > week -> top-2 = {fell, the}: F1 0.5; AP = (1/1 + 2/3) / 2
    ranking = {"the": 0.8, "market": 0.5, "fell": 0.9, "last": 0.1, "week": 0.05}
    frame["score"] = [ranking.get(t, 0.0) for t in tokens]
    result = plausibility(subject, [text], Attribution(frame), rationales=[[(0, 4, 15)]])
    assert result["token_f1"].iloc[0] == pytest.approx(0.5)
    assert result["auprc"].iloc[0] == pytest.approx((1 + 2 / 3) / 2)


def test_randomization_check_cascades(subject):
    table = randomization_check(subject, TEXTS, "input_x_gradient", seed=0)
    stages = list(dict.fromkeys(table["stage"]))
    assert stages == ["none", "blocks.1", "blocks.0", "embed"]
    np.testing.assert_allclose(table[table["stage"] == "none"]["spearman"], 1.0)
    final = table[table["stage"] == "embed"]["spearman"]
    assert (final < 0.95).all()  # a fully random model explains differently
    # the subject itself is untouched
    again = attribute(subject, TEXTS, "input_x_gradient")
    assert np.allclose(again.scores("0"), attribute(subject, TEXTS, "input_x_gradient").scores("0"))


def test_bootstrap_and_summary():
    mean, low, high = mean_ci([2.0] * 10)
    assert (mean, low, high) == (2.0, 2.0, 2.0)
    values = np.random.default_rng(0).normal(1.0, 1.0, 400)
    mean, low, high = mean_ci(values)
    assert low < mean < high and low < 1.0 < high and high - low < 0.5
    frame = pd.DataFrame({"method": ["a"] * 5 + ["b"] * 5, "v": [1.0] * 5 + [3.0] * 5})
    summary = summarize(frame, ["v"])
    assert summary.set_index("method")["mean"].to_dict() == {"a": 1.0, "b": 3.0}
    assert math.isnan(mean_ci([])[0])


def test_eraser_on_a_classification_head_uses_probabilities(tiny_atinuke_dir):
    from atinuke.encoders import load_encoder
    from atinuke.tasks import get_task
    from atinuke.tasks.base import ClassificationExample
    from atinuke.tasks.heads import build_task_model

    torch.manual_seed(0)
    model = build_task_model(load_encoder(tiny_atinuke_dir), get_task("sst2"), dropout=0.0).eval()
    task_subject = load_subject(model)
    examples = [ClassificationExample("a", "the market fell last week .", None, "0"),
                ClassificationExample("b", "prices rose in early trading .", None, "1")]
    result = attribute(task_subject, examples, "input_x_gradient")
    table = eraser(task_subject, examples, result, ks=(20, 50))
    with torch.no_grad():
        probs = model(**model.encode(examples).model_inputs(with_targets=False)).logits.softmax(-1).max(-1).values
    full = table.groupby("example_id", sort=False)["full"].first().to_numpy()
    np.testing.assert_allclose(full, probs.numpy(), atol=1e-6)  # f = predicted-class probability
    assert (table["comprehensiveness"].abs() <= 1).all() and (table["sufficiency"].abs() <= 1).all()


def test_faithfulness_summary_table(subject):
    result = attribute(subject, TEXTS, "saliency")
    table = faithfulness_summary(subject, TEXTS, result, rationales=[[(0, 4, 10)], [(0, 0, 6)]], n_boot=50)
    assert set(table["metric"]) == {"comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc",
                                    "token_f1", "auprc"}
    assert (table["task"] == "encoder").all()
    assert ((table["ci_low"] <= table["mean"] + 1e-12) & (table["mean"] <= table["ci_high"] + 1e-12)).all()
