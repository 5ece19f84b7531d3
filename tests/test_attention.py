"""workbench.attention: known answers for aggregation, rollout, flow, entropy; statistics and importance."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.attention import (
    aggregate_to_words,
    attention_flow,
    attention_maps,
    attention_rollout,
    entropy,
    gold_logprob_score,
    head_importance,
    head_statistics,
)
from workbench.subject import load_subject

# Two hand-made 3-token layers (rows: queries, columns: keys; each row sums to 1).
A1 = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
A2 = np.array([[0.2, 0.2, 0.6], [0.0, 1.0, 0.0], [0.5, 0.25, 0.25]])


@pytest.fixture(scope="module")
def subject(tiny_atinuke_dir):
    return load_subject(tiny_atinuke_dir)


def test_rollout_of_identity_is_identity():
    eye = np.stack([np.eye(4)] * 3)
    np.testing.assert_allclose(attention_rollout(eye), eye)
    np.testing.assert_allclose(attention_rollout(eye, add_residual=False)[-1], np.eye(4))


def test_rollout_on_hand_made_graph():
    mixed1, mixed2 = 0.5 * A1 + 0.5 * np.eye(3), 0.5 * A2 + 0.5 * np.eye(3)
    rollout = attention_rollout(np.stack([A1, A2]))
    np.testing.assert_allclose(rollout[0], mixed1)
    np.testing.assert_allclose(rollout[1], mixed2 @ mixed1)
    np.testing.assert_allclose(rollout[1].sum(-1), np.ones(3))
    np.testing.assert_allclose(attention_rollout(np.stack([A1, A2]), add_residual=False)[1], A2 @ A1)


def test_flow_on_hand_made_graph():
    # One layer: the only path from input j to output i is the edge itself.
    np.testing.assert_allclose(attention_flow(A1[None], add_residual=False, normalize=False), A1, atol=1e-8)
    # Two layers: the paths j -> k -> i are edge-disjoint, so the max flow is sum_k min(A1[k, j], A2[i, k]).
    expected = np.array([[sum(min(A1[k, j], A2[i, k]) for k in range(3)) for j in range(3)] for i in range(3)])
    flow = attention_flow(np.stack([A1, A2]), add_residual=False, normalize=False)
    np.testing.assert_allclose(flow, expected, atol=1e-7)
    normalized = attention_flow(np.stack([A1, A2]), add_residual=False)
    np.testing.assert_allclose(normalized, expected / expected.sum(1, keepdims=True), atol=1e-7)
    # the float networkx solver agrees with the integer-scaled scipy one on a random 4-layer graph
    rng = np.random.default_rng(0)
    random = rng.random((4, 5, 5))
    random /= random.sum(-1, keepdims=True)
    np.testing.assert_allclose(attention_flow(random), attention_flow(random, backend="networkx"), atol=1e-6)


def test_entropy_known_answers():
    assert entropy(np.full(7, 1 / 7)) == pytest.approx(math.log(7))
    assert entropy(np.array([0.0, 1.0, 0.0])) == pytest.approx(0.0)


def test_word_aggregation_sums_keys_and_averages_queries():
    # tokens: [CLS] un ##like ##ly cat [SEP]; words: 0 = unlikely, 1 = cat
    rng = np.random.default_rng(0)
    pattern = rng.random((2, 6, 6))
    pattern /= pattern.sum(-1, keepdims=True)
    word_index = [-1, 0, 0, 0, 1, -1]
    tokens = ["[CLS]", "un", "##like", "##ly", "cat", "[SEP]"]
    words, units, labels = aggregate_to_words(pattern, word_index, tokens)
    assert labels == ["[CLS]", "unlikely", "cat", "[SEP]"]
    assert words.shape == (2, 4, 4)
    np.testing.assert_allclose(words.sum(-1), np.ones((2, 4)))
    # query "unlikely" -> key "cat" = mean over the 3 query sub-tokens of the attention to "cat"
    assert words[0, 1, 2] == pytest.approx(pattern[0, 1:4, 4].mean())
    # query "cat" -> key "unlikely" = sum over the 3 key sub-tokens
    assert words[0, 2, 1] == pytest.approx(pattern[0, 4, 1:4].sum())


def test_attention_maps_from_a_model(subject):
    maps = attention_maps(subject, "Stocks fell sharply.", "Markets dropped.")
    n_tokens = len(maps.tokens)
    assert maps.pattern.shape == (subject.n_layers, subject.n_heads, n_tokens, n_tokens)
    np.testing.assert_allclose(maps.pattern.sum(-1), 1.0, atol=1e-5)
    assert maps.words == ["Stocks", "fell", "sharply.", "Markets", "dropped."]
    words = maps.to_words()
    assert words.tokens[1:4] == ["Stocks", "fell", "sharply."]
    np.testing.assert_allclose(words.pattern.sum(-1), 1.0, atol=1e-5)


def test_head_statistics_are_consistent(subject):
    texts = ["The index rose 3 % , analysts said .", "Prices fell ."]
    frame = head_statistics(subject, texts)
    assert len(frame) == subject.n_layers * subject.n_heads
    assert list(frame.columns[:2]) == ["layer", "head"]
    # bounded by the entropy of a uniform row over the longest input
    longest = max(len(subject.tokenizer(t)["input_ids"]) for t in texts)
    assert (frame["entropy"] >= 0).all() and (frame["entropy"] <= math.log(longest) + 1e-9).all()
    assert (frame[["attn_cls", "attn_sep", "attn_punct"]] >= 0).all().all()
    assert (frame["attn_cls"] + frame["attn_sep"] <= 1 + 1e-9).all()
    # known answer: uniform attention over n keys -> entropy log n and mean distance (n^2 - 1) / (3n)
    def uniform(scores, hook):
        return torch.zeros_like(scores).masked_fill(scores <= torch.finfo(scores.dtype).min / 2, torch.finfo(scores.dtype).min)

    with subject.hooks([(f"blocks.{i}.attn.hook_attn_scores", uniform) for i in range(subject.n_layers)]):
        flat = head_statistics(subject, ["Prices fell ."])
    n = len(subject.tokenizer("Prices fell .")["input_ids"])
    np.testing.assert_allclose(flat["entropy"], math.log(n), rtol=1e-6)
    np.testing.assert_allclose(flat["mean_distance"], (n * n - 1) / (3 * n), rtol=1e-6)
    np.testing.assert_allclose(flat["attn_cls"], 1 / n, rtol=1e-6)


def test_head_importance_finds_the_only_useful_head(subject):
    """With every other head of the last layer silenced, only (last layer, head 2) can matter there."""
    last, keep = subject.n_layers - 1, 2

    def only_keep(z, hook):
        z = z.clone()
        z[:, :, [h for h in range(subject.n_heads) if h != keep]] = 0.0
        return z

    def score(output):
        return float(output.last_hidden_state[..., :4].sum())  # LayerNorm fixes the norm, not the direction

    with subject.hooks([(f"blocks.{last}.attn.hook_z", only_keep)]):
        frame = head_importance(subject, score, ["Prices fell sharply ."])
    layer = frame[frame["layer"] == last].set_index("head")
    assert abs(layer.loc[keep, "importance"]) > 1e-4
    assert layer.drop(index=keep)["importance"].abs().max() == 0.0
    assert abs(layer.loc[keep, "importance_norm"]) == pytest.approx(1.0)
    assert (frame["baseline"] == frame["baseline"].iloc[0]).all()


def test_gold_logprob_score():
    class Out:
        logits = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))

    assert gold_logprob_score(torch.tensor([0, 1]))(Out()) == pytest.approx((math.log(0.5) + math.log(0.75)) / 2)


def test_figures_carry_the_numbers(subject):
    from workbench import figures
    from workbench.attribution import attribute

    maps = attention_maps(subject, "prices fell .")
    grid = figures.head_grid(maps.pattern, maps.tokens)
    assert len(grid.data) == subject.n_layers * subject.n_heads
    np.testing.assert_allclose(np.asarray(grid.data[-1].z), maps.pattern[-1, -1])
    single = figures.attention_heatmap(maps.pattern[0, 0], maps.tokens)
    np.testing.assert_allclose(np.asarray(single.data[0].z), maps.pattern[0, 0])
    rollout = attention_rollout(maps.head_mean())
    assert len(figures.rollout_figure(rollout, maps.tokens).data) == subject.n_layers
    stats = head_statistics(subject, ["prices fell ."])
    heat = figures.layer_head_grid(stats, "entropy")
    np.testing.assert_allclose(np.asarray(heat.data[0].z), stats.pivot(index="layer", columns="head",
                                                                       values="entropy").to_numpy())
    result = attribute(subject, ["prices fell ."], "saliency")
    tokens = figures.token_heatmap(result, "0", normalize=False)
    np.testing.assert_allclose(np.asarray(tokens.data[0].z)[0], result.scores("0"))
    with pytest.raises(Exception, match="no column"):
        figures.layer_head_grid(stats, "nope")
