"""Controls (probes/controls.py): control tasks, selectivity, MDL online code, seed CIs, expected layer."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probes.controls import (
    control_labels,
    expected_layer,
    online_codelength,
    random_init_encoder,
    seed_summary,
    selectivity,
)
from probes.estimators import LinearProbe


def test_control_labels_are_per_type_deterministic_and_follow_the_label_distribution():
    rng = np.random.default_rng(0)
    types = [f"w{i}" for i in range(400)]
    keys = list(rng.choice(types, size=5000))
    labels = rng.choice(["NOUN", "VERB", "DET"], p=[0.6, 0.3, 0.1], size=5000)
    control = control_labels(keys, labels, seed=0)
    by_type = {}
    for key, label in zip(keys, control):
        assert by_type.setdefault(key, label) == label  # one label per word type
    assert list(control) == list(control_labels(keys, labels, seed=0))  # deterministic
    assert list(control) != list(control_labels(keys, labels, seed=1))  # the seed picks another control task
    assert set(control) <= set(labels)
    share = np.mean([by_type[t] == "NOUN" for t in by_type])
    assert 0.5 < share < 0.7  # types drawn from the empirical distribution (0.6 NOUN)
    # The assignment depends on the type, not on where it occurs: shuffled data, same label per type.
    order = rng.permutation(len(keys))
    shuffled = control_labels([keys[i] for i in order], labels[order], seed=0)
    assert all(by_type[keys[i]] == label for i, label in zip(order, shuffled))


def test_selectivity_arithmetic():
    assert selectivity(0.97, 0.71) == pytest.approx(0.26)
    assert selectivity(0.5, 0.6) == pytest.approx(-0.1)


def test_online_code_first_block_is_uniform_and_learnable_task_is_cheaper():
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    X = rng.normal(size=(n, 8))
    learnable = np.argmax(X[:, :k], axis=1)
    random = rng.integers(0, k, size=n)
    good = online_codelength(X, learnable, LinearProbe, seed=0)
    bad = online_codelength(X, random, LinearProbe, seed=0)
    assert good.block_ends[0] == 2 and good.block_bits[0] == pytest.approx(2 * math.log2(k))
    assert good.uniform_codelength == pytest.approx(n * math.log2(k))
    assert good.codelength == pytest.approx(sum(good.block_bits))
    assert good.codelength < 0.5 * bad.codelength
    assert good.compression > 2 and bad.compression < 1.1


def test_seed_summary_t_interval():
    summary = seed_summary([0.8, 0.9, 1.0])
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
    assert summary.mean == pytest.approx(0.9)
    assert (summary.low, summary.high) == pytest.approx((0.9 - half, 0.9 + half))
    assert math.isnan(seed_summary([0.5]).low)


def test_expected_layer_center_of_gravity():
    # All the gain arrives at layer 2: expected layer 2. Half at 1, half at 3: expected layer 2.
    assert expected_layer([0.5, 0.5, 0.9, 0.9]) == pytest.approx(2.0)
    assert expected_layer([0.5, 0.6, 0.6, 0.7]) == pytest.approx(2.0)
    assert expected_layer([0.5, 0.7, 0.6, 0.8]) == pytest.approx((1 * 0.2 + 3 * 0.1) / 0.3)  # a dip counts as 0
    assert math.isnan(expected_layer([0.9, 0.8]))


def test_random_init_encoder_keeps_architecture_and_changes_weights(tiny_atinuke_dir):
    from atinuke.encoders import load_encoder

    encoder = load_encoder(str(tiny_atinuke_dir))
    fresh = random_init_encoder(encoder, seed=3)
    again = random_init_encoder(encoder, seed=3)
    trained = dict(encoder.model.named_parameters())
    assert fresh.tokenizer is encoder.tokenizer and fresh.n_layers == encoder.n_layers
    for name, parameter in fresh.model.named_parameters():
        assert parameter.shape == trained[name].shape
        torch.testing.assert_close(parameter, dict(again.model.named_parameters())[name])
    assert not torch.equal(fresh.model.embed.token.weight, encoder.model.embed.token.weight)
