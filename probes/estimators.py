"""Probing classifiers that follow the scikit-learn estimator contract, and the edge-probing feature layout.

A probe is a small supervised classifier trained on *frozen* representations; its test accuracy says how
(linearly) decodable a property is from a layer (Alain & Bengio, 2016, arXiv 1610.01644). Two capacities:

- :class:`LinearProbe`: multinomial logistic regression on standardised features.
- :class:`MLPProbe`: one hidden layer (ReLU), the non-linear probe of Hewitt & Liang (2019, arXiv 1909.03368).

Both store only their parameters in ``__init__``, validate in ``fit`` with
``sklearn.utils.validation.validate_data``, set trailing-underscore attributes, return ``self``, and start
``predict`` with ``check_is_fitted``; ``tests/test_probes_estimators.py`` runs ``parametrize_with_checks``.

Edge probing (Tenney et al., 2019, "What do you learn from context?", arXiv 1905.06316): each span is
pooled from the frozen encoder's token vectors into a fixed-size vector and a pair of spans is the
concatenation of its two span vectors; :func:`edge_features` builds that layout.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["LinearProbe", "MLPProbe", "edge_features", "make_probe", "PROBE_KINDS"]

PROBE_KINDS = ("linear", "mlp")


class _ProbeBase(ClassifierMixin, BaseEstimator):
    """Shared fit/predict plumbing: standardisation, label bookkeeping, the wrapped sklearn model."""

    def _make_model(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y) -> "_ProbeBase":
        """Fit the probe.

        Args:
            X: features, shape [n_samples, n_features] (float16 memmaps are read as float32).
            y: labels, shape [n_samples] (strings or integers).

        Returns:
            self, with ``classes_``, ``n_features_in_``, ``mean_``, ``scale_``, ``model_`` and ``n_iter_`` set.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if self.classes_.shape[0] < 2:
            raise ValueError(f"a probe needs at least 2 classes in y; got 1 class ({self.classes_[0]!r})")
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            scale = X.std(axis=0)
            self.scale_ = np.where(scale > 1e-12, scale, 1.0)  # constant features stay finite
        else:
            self.mean_ = np.zeros(X.shape[1], dtype=X.dtype)
            self.scale_ = np.ones(X.shape[1], dtype=X.dtype)
        model = self._make_model()
        with warnings.catch_warnings():
            # A probe that stops at max_iter is still a valid (regularised) probe; the warning is noise here.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit((X - self.mean_) / self.scale_, y_index)
        self.model_ = model
        self.n_iter_ = int(np.max(model.n_iter_))
        return self

    def _transform(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return (X - self.mean_) / self.scale_

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape [n_samples, n_classes], columns in ``classes_`` order."""
        check_is_fitted(self)
        return self.model_.predict_proba(self._transform(X))

    def predict_log_proba(self, X) -> np.ndarray:
        """Natural-log class probabilities, shape [n_samples, n_classes]."""
        check_is_fitted(self)
        return np.log(np.clip(self.predict_proba(X), 1e-300, None))

    def predict(self, X) -> np.ndarray:
        """Most probable class per sample, shape [n_samples]."""
        check_is_fitted(self)
        return self.classes_[self.model_.predict(self._transform(X))]


class LinearProbe(_ProbeBase):
    """Multinomial logistic regression probe on standardised features.

    Args:
        C: inverse L2 regularisation strength (scikit-learn convention).
        max_iter: L-BFGS iterations.
        standardize: z-score features with the training mean and std before fitting (layers differ in scale
            by orders of magnitude, and an unscaled L2 penalty would favour the large ones).
        random_state: passed to the solver (L-BFGS itself is deterministic).

    Example:
        >>> probe = LinearProbe().fit(X_train, y_train)
        >>> accuracy = probe.score(X_test, y_test)
    """

    def __init__(self, C: float = 1.0, max_iter: int = 300, standardize: bool = True,
                 random_state: Optional[int] = None) -> None:
        self.C = C
        self.max_iter = max_iter
        self.standardize = standardize
        self.random_state = random_state

    def _make_model(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)

    def decision_function(self, X) -> np.ndarray:
        """Logits, shape [n_samples, n_classes] (or [n_samples] for two classes, as scikit-learn does)."""
        check_is_fitted(self)
        return self.model_.decision_function(self._transform(X))


class MLPProbe(_ProbeBase):
    """One-hidden-layer ReLU probe trained with Adam (Hewitt & Liang, 2019, arXiv 1909.03368, MLP-1).

    Args:
        hidden_size: width of the hidden layer.
        alpha: L2 penalty.
        max_iter: epochs.
        learning_rate_init: Adam step size.
        standardize: z-score features before fitting.
        random_state: seed of the weight initialisation and batch order.
    """

    def __init__(self, hidden_size: int = 256, alpha: float = 1e-4, max_iter: int = 200,
                 learning_rate_init: float = 1e-3, standardize: bool = True,
                 random_state: Optional[int] = None) -> None:
        self.hidden_size = hidden_size
        self.alpha = alpha
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.standardize = standardize
        self.random_state = random_state

    def _make_model(self) -> MLPClassifier:
        return MLPClassifier(hidden_layer_sizes=(self.hidden_size,), alpha=self.alpha, max_iter=self.max_iter,
                             learning_rate_init=self.learning_rate_init, random_state=self.random_state)


def make_probe(kind: str, random_state: Optional[int] = None, **params) -> _ProbeBase:
    """Build a probe by name ("linear" or "mlp").

    Raises:
        ValueError: for an unknown kind.
    """
    if kind == "linear":
        return LinearProbe(random_state=random_state, **params)
    if kind == "mlp":
        return MLPProbe(random_state=random_state, **params)
    raise ValueError(f"unknown probe {kind!r}; choose from {PROBE_KINDS}")


def edge_features(span_a: np.ndarray, span_b: Optional[np.ndarray] = None) -> np.ndarray:
    """Edge-probing input: the concatenation of two pooled span vectors (Tenney et al., 2019, §3).

    Args:
        span_a: first span vectors, shape [n, d].
        span_b: second span vectors, shape [n, d], or None for single-span (and token) targets.

    Returns:
        Shape [n, 2d] for pairs, [n, d] for single spans.
    """
    if span_b is None:
        return np.asarray(span_a)
    if span_a.shape != span_b.shape:
        raise ValueError(f"span pair shapes differ: {span_a.shape} vs {span_b.shape}")
    return np.concatenate([span_a, span_b], axis=1)  # [n, 2d]
