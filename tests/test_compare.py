"""Known-answer tests of workbench.compare: CKA invariances, McNemar, paired bootstrap, word alignment."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

from atinuke.errors import UserInputError
from workbench import compare


def test_cka_identity_orthogonal_and_scaling_invariance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    q = ortho_group.rvs(16, random_state=1)
    assert compare.linear_cka(x, x) == pytest.approx(1.0)
    assert compare.linear_cka(x, x @ q) == pytest.approx(1.0)
    assert compare.linear_cka(x, 7.5 * x) == pytest.approx(1.0)
    y = rng.normal(size=(200, 24))
    assert compare.linear_cka(x, y @ ortho_group.rvs(24, random_state=2)) == pytest.approx(compare.linear_cka(x, y))
    # Not invariant to an arbitrary invertible linear map (Kornblith et al., 2019, section 3).
    skew = np.diag(np.linspace(0.1, 10, 16))
    assert compare.linear_cka(x, x @ skew) < 0.9


def test_cka_of_independent_data_is_small():
    rng = np.random.default_rng(3)
    # Expected CKA of independent Gaussians ~ d_x*d_y/(n*sqrt(d_x*d_y)) = sqrt(d_x*d_y)/n = 0.016 here.
    assert compare.linear_cka(rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))) < 0.05


def test_mcnemar_textbook_values():
    # Wikipedia's McNemar example: b = 121, c = 59 -> chi2 = (121 - 59)^2 / 180 = 21.36.
    result = compare.mcnemar_from_table(101, 121, 59, 33)
    assert result.statistic == pytest.approx(21.3556, abs=1e-4)
    assert result.statistic_corrected == pytest.approx(61 ** 2 / 180)
    # Exact: b = 1 of 10 discordant pairs -> p = 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024.
    assert compare.mcnemar_from_table(5, 1, 9, 5).p_value == pytest.approx(22 / 1024)
    a = np.array([True] * 5 + [True] * 1 + [False] * 9 + [False] * 5)
    b = np.array([True] * 5 + [False] * 1 + [True] * 9 + [False] * 5)
    vec = compare.mcnemar(a, b)
    assert (vec.both_right, vec.a_only, vec.b_only, vec.both_wrong) == (5, 1, 9, 5)
    assert vec.p_value == pytest.approx(22 / 1024)


def test_paired_bootstrap_identical_runs_not_significant_and_real_gain_is():
    rng = np.random.default_rng(0)
    a = (rng.random(300) < 0.6).astype(float)
    same = compare.paired_bootstrap(a, a.copy())
    assert same.delta == 0.0 and same.p_value == 1.0 and not same.significant
    better = np.where(rng.random(300) < 0.5, 1.0, a)  # flips about half the wrong ones to right
    gain = compare.paired_bootstrap(a, better)
    assert gain.significant and gain.delta > 0 and gain.low > 0


def _predictions(model: str, correct: np.ndarray) -> pd.DataFrame:
    n = len(correct)
    return pd.DataFrame(dict(id=[f"e{i}" for i in range(n)], task="sst2", model=model, gold="positive",
                             prediction=np.where(correct, "positive", "negative"), score=0.8, correct=correct,
                             example_f1=correct.astype(float), text=[f"t{i}" for i in range(n)], text_pair=None,
                             meta_length=np.arange(n)))


def test_compare_runs_outcomes_and_tests():
    a = np.array([True, True, False, False, True] * 20)
    b = np.array([True, False, True, False, True] * 20)
    result = compare.compare_runs(_predictions("A", a), _predictions("B", b).iloc[::-1])
    counts = result.outcome_counts()
    assert counts["both right"] == 40 and counts["A wins"] == 20 and counts["B wins"] == 20
    assert counts["both wrong"] == 20
    assert result.outcomes["disagree"].sum() == 40
    assert result.mcnemar.p_value == pytest.approx(1.0)
    assert not result.bootstrap["accuracy"].significant
    with pytest.raises(UserInputError, match="different tasks"):
        compare.compare_runs(_predictions("A", a), _predictions("B", b).assign(task="mnli"))


def test_token_to_word_alignment():
    text = "Hello, wonderful world!"
    spans = compare.word_spans(text)
    owner = compare.token_to_word([(0, 0), (0, 5), (5, 6), (7, 16), (17, 22), (22, 23), (0, 0)], spans)
    assert owner.tolist() == [-1, 0, 0, 1, 2, 2, -1]


def test_word_views_cka_and_head_matching(tiny_atinuke_dir, minilm):
    from atinuke.encoders import load_encoder

    tiny = load_encoder(tiny_atinuke_dir)
    texts = ["The quick brown fox jumps over the lazy dog.", "Stocks fell sharply on Monday, traders said."]
    views_tiny = [compare.word_view(tiny, t) for t in texts]
    views_minilm = [compare.word_view(minilm, t) for t in texts]
    assert views_tiny[0].words == views_minilm[0].words
    assert views_minilm[0].attention.shape == (6, 12, 9, 9)
    np.testing.assert_allclose(views_minilm[0].attention.sum(-1), 1.0, rtol=1e-5)
    cka = compare.layerwise_cka(views_tiny, views_minilm)
    assert len(cka) == 3 * 7 and cka["cka"].between(0, 1 + 1e-9).all()
    self_cka = compare.layerwise_cka(views_minilm, views_minilm)
    diagonal = self_cka[self_cka["layer_a"] == self_cka["layer_b"]]["cka"]
    assert np.allclose(diagonal, 1.0)
    # Matching a model against itself recovers the identity with similarity 1.
    matches = compare.match_heads(views_tiny, views_tiny)
    assert len(matches) == 8
    assert (matches["layer_a"] == matches["layer_b"]).all() and (matches["head_a"] == matches["head_b"]).all()
    assert np.allclose(matches["similarity"], 1.0)
    cross = compare.match_heads(views_tiny, views_minilm)
    assert len(cross) == 8 and cross["similarity"].between(0, 1).all()
    with pytest.raises(UserInputError, match="empty text"):
        compare.word_view(tiny, "   ")


def test_attribution_agreement_and_probe_overlay():
    a = pd.DataFrame(dict(id=["x"] * 4 + ["y"] * 3, word_index=[0, 1, 2, 3, 0, 1, 2],
                          score=[0.1, 0.9, -0.5, 0.2, 1.0, 2.0, 3.0]))
    b = a.assign(score=[0.2, 1.8, -1.0, 0.4, 3.0, 2.0, 1.0])
    agreement = compare.attribution_agreement(a, b, k=2).set_index("id")
    assert agreement.loc["x", "spearman"] == pytest.approx(1.0)
    assert agreement.loc["x", "topk_jaccard"] == 1.0
    assert agreement.loc["y", "spearman"] == pytest.approx(-1.0)
    results = pd.DataFrame(dict(model=["m1"] * 4 + ["m2"] * 2, task="pos", layer=[0, 1, 0, 1, 0, 6],
                                metric="accuracy", value=[0.5, 0.7, 0.6, 0.9, 0.4, 0.8], seed=[0, 0, 1, 1, 0, 0],
                                control=None, source="test"))
    overlay = compare.probe_overlay(results, "pos")
    m1 = overlay[(overlay["model"] == "m1") & (overlay["layer"] == 1)].iloc[0]
    assert m1["mean"] == pytest.approx(0.8) and m1["n_seeds"] == 2 and m1["depth"] == 1.0
    assert overlay[(overlay["model"] == "m2") & (overlay["layer"] == 6)]["depth"].iloc[0] == 1.0
