"""Estimator contract and known answers for the probing classifiers (probes/estimators.py)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from probes.estimators import LinearProbe, MLPProbe, edge_features


@parametrize_with_checks([LinearProbe(), MLPProbe(hidden_size=32)])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _planted(n=600, d=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    direction = rng.normal(size=d)
    y = np.where(X @ direction > 0, "pos", "neg")
    return X, y


def test_linear_probe_recovers_planted_feature_and_not_a_random_one():
    X, y = _planted()
    probe = LinearProbe().fit(X[:400], y[:400])
    assert probe.score(X[400:], y[400:]) > 0.9
    y_random = np.random.default_rng(1).permutation(y)
    chance = LinearProbe().fit(X[:400], y_random[:400]).score(X[400:], y_random[400:])
    assert chance < 0.65


def test_float16_memmap_input_and_proba_columns(tmp_path):
    X, y = _planted(n=200, d=8)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=X.shape)
    mm[:] = X
    probe = LinearProbe().fit(mm, y)
    proba = probe.predict_proba(mm)
    assert proba.shape == (200, 2) and np.allclose(proba.sum(1), 1.0)
    assert list(probe.classes_) == ["neg", "pos"]
    assert (probe.classes_[proba.argmax(1)] == probe.predict(mm)).all()


def test_mlp_probe_learns_xor_that_a_linear_probe_cannot():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(800, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    linear = LinearProbe().fit(X[:600], y[:600]).score(X[600:], y[600:])
    mlp = MLPProbe(hidden_size=32, max_iter=500, learning_rate_init=1e-2, random_state=0).fit(X[:600], y[:600])
    assert linear < 0.7 and mlp.score(X[600:], y[600:]) > 0.9


def test_edge_features_concatenate_spans():
    a, b = np.ones((3, 2)), np.zeros((3, 2))
    assert edge_features(a, b).tolist() == [[1, 1, 0, 0]] * 3
    with pytest.raises(ValueError):
        edge_features(a, np.zeros((3, 3)))
