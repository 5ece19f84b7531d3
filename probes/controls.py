"""Controls that tell what a probe's accuracy means: is it the representation, or the probe's own capacity?

- Control tasks and selectivity (Hewitt & Liang, 2019, "Designing and Interpreting Probes with Control
  Tasks", arXiv 1909.03368): every word type gets a fixed random label drawn from the task's empirical label
  distribution; a probe that also fits that control well is memorising, not reading structure off the
  representation. Selectivity = task accuracy - control accuracy.
- A random-initialisation baseline: the same architecture with re-initialised weights (so the same tokenizer,
  depth and width, no training).
- The layer-0 (embedding) baseline is the ``layer == 0`` row of every run.
- Minimum description length by online coding (Voita & Titov, 2020, "Information-Theoretic Probing with
  Minimum Description Length", arXiv 2003.12298).
- Mean and Student-t confidence interval across seeds (:func:`workbench.probe_curves.seed_interval`).
- Expected layer / center of gravity over layers (Tenney, Das & Pavlick, 2019, "BERT Rediscovers the
  Classical NLP Pipeline", arXiv 1905.05950).
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import numpy as np
import torch

from atinuke.encoders import Encoder
from workbench.probe_curves import control_labels, seed_interval

logger = logging.getLogger(__name__)

__all__ = ["control_labels", "selectivity", "random_init_encoder", "OnlineCode", "online_codelength",
           "MDL_PORTIONS", "SeedSummary", "seed_summary", "expected_layer"]

# Voita & Titov (2020), §3.2: block boundaries as fractions of the training set.
MDL_PORTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


def selectivity(task_accuracy: float, control_accuracy: float) -> float:
    """Hewitt & Liang (2019): task accuracy minus control-task accuracy (same probe, same layer)."""
    return float(task_accuracy) - float(control_accuracy)


def random_init_encoder(encoder: Encoder, seed: int = 0) -> Encoder:
    """The same architecture and tokenizer with freshly initialised weights (the untrained baseline).

    Args:
        encoder: a loaded encoder (Atinuke or HF).
        seed: torch seed of the re-initialisation.

    Returns:
        A new :class:`Encoder` named ``"<name>-random-init"`` in eval mode on the same device.
    """
    config = copy.deepcopy(encoder.model.config)  # from_config mutates the config it gets
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = type(encoder.model)(config)
        if hasattr(model, "post_init"):
            model.post_init()
    finally:
        torch.random.set_rng_state(state)
    device = next(encoder.model.parameters()).device
    # transformers decorates PreTrainedModel.to with functools.wraps(nn.Module.to), which mypy reads as an
    # unbound function that wants the model as its first argument.
    moved = model.to(device)  # type: ignore[arg-type]
    return Encoder(name=f"{encoder.name}-random-init", kind=encoder.kind, model=moved.eval(),
                   tokenizer=encoder.tokenizer, path=encoder.path)


class CodingProbe(Protocol):
    """What online coding needs of a probe: scikit-learn's ``fit`` (returning the fitted probe),
    ``predict_proba`` and ``classes_``."""

    @property
    def classes_(self) -> np.ndarray: ...

    def fit(self, X: np.ndarray, y: np.ndarray) -> CodingProbe: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


@dataclass
class OnlineCode:
    """Result of online (prequential) coding.

    Attributes:
        codelength: total bits to transmit the training labels (first block uniform, then each block with
            a probe trained on all earlier blocks).
        uniform_codelength: n * log2(K) bits, the code without any model.
        compression: uniform_codelength / codelength (higher: the representation makes labels cheaper).
        block_ends: index where each block ends, shape [n_blocks].
        block_bits: bits spent on each block, shape [n_blocks].
        n_classes: K.
    """

    codelength: float
    uniform_codelength: float
    compression: float
    block_ends: list[int]
    block_bits: list[float]
    n_classes: int


def online_codelength(X: np.ndarray, y: np.ndarray, make_probe: Callable[[], CodingProbe],
                      portions: Sequence[float] = MDL_PORTIONS, seed: int = 0) -> OnlineCode:
    """Minimum description length of labels given representations by online coding (Voita & Titov, 2020).

    The data are shuffled once (``seed``), cut at ``portions`` of n; the first block is sent with the
    uniform code (t_1 * log2 K bits), and block i+1 with a probe trained on blocks 1..i:
    ``L = t_1 log2 K - sum_i sum_{j in block i+1} log2 p_i(y_j | x_j)``.

    Args:
        X: features, shape [n, d].
        y: labels, shape [n].
        make_probe: returns a fresh unfitted probe with ``fit`` / ``predict_proba`` / ``classes_``.
        portions: increasing block ends as fractions of n, the last one 1.0.
        seed: shuffling seed.

    Returns:
        An :class:`OnlineCode`.
    """
    y = np.asarray(y)
    n = len(y)
    classes = np.unique(y)
    k = len(classes)
    order = np.random.default_rng(seed).permutation(n)
    ends = sorted({max(1, min(n, int(round(p * n)))) for p in portions})
    if ends[-1] != n:
        ends.append(n)
    block_bits = [ends[0] * math.log2(k)]
    for start, end in zip(ends[:-1], ends[1:]):
        train, block = order[:start], order[start:end]
        seen = np.unique(y[train])
        if len(seen) < 2:  # nothing to learn from yet: the uniform code over K classes
            block_bits.append(len(block) * math.log2(k))
            continue
        probe = make_probe().fit(X[train], y[train])
        proba = probe.predict_proba(X[block])  # [block, seen classes]
        column = {label: j for j, label in enumerate(probe.classes_)}
        # A label the probe never saw gets the probability mass of a floor, as any real code must.
        p = np.array([proba[i, column[label]] if label in column else 0.0 for i, label in enumerate(y[block])])
        block_bits.append(float(-np.log2(np.clip(p, 1e-12, 1.0)).sum()))
    total = float(sum(block_bits))
    uniform = n * math.log2(k)
    return OnlineCode(codelength=total, uniform_codelength=uniform, compression=uniform / total if total else math.inf,
                      block_ends=list(ends), block_bits=block_bits, n_classes=k)


@dataclass
class SeedSummary:
    """Mean of a metric over seeds with a Student-t confidence interval (NaN bounds for a single seed)."""

    mean: float
    low: float
    high: float
    n: int


def seed_summary(values: Sequence[float], confidence: float = 0.95) -> SeedSummary:
    """Mean and t-interval of per-seed values.

    Args:
        values: one value per seed.
        confidence: interval coverage.
    """
    mean, low, high = seed_interval(values, confidence)
    return SeedSummary(mean, low, high, len(values))


def expected_layer(scores: Sequence[float], layers: Optional[Sequence[int]] = None) -> float:
    """Center of gravity of a per-layer score curve (Tenney, Das & Pavlick, 2019, eq. 2).

    Tenney et al. score cumulative probes (layers 0..l mixed); with independent per-layer probes we use the
    running maximum as the cumulative score (what a mix of layers 0..l could at least reach), so the
    differential Delta_l = best(0..l) - best(0..l-1) >= 0 and ``E[l] = sum_l l Delta_l / sum_l Delta_l``.

    Args:
        scores: score per layer, in layer order.
        layers: the layer numbers (default 0..len-1).

    Returns:
        The expected layer; NaN when no layer improves on the first.
    """
    curve = np.asarray(scores, dtype=float)
    numbers = np.arange(len(curve)) if layers is None else np.asarray(layers, dtype=float)
    cumulative = np.maximum.accumulate(curve)
    delta = np.diff(cumulative)  # [n_layers - 1]
    if delta.sum() <= 0:
        return math.nan
    return float((numbers[1:] * delta).sum() / delta.sum())
