"""The settings of an attribution run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

BASELINES = ("pad", "mask", "zero")


@dataclass
class AttributionParams:
    """Settings of an attribution run (only those a method uses enter its ``params`` and store key).

    Attributes:
        baseline: "pad", "mask" or "zero": what replaces each non-special token in the reference input.
        n_steps: integral approximation steps (IG).
        tolerance: IG: raise n_steps (doubling, up to ``max_steps``) until |delta| < tolerance; None = fixed.
        max_steps: IG: upper bound for adaptive steps.
        ig_method: Captum's integral rule ("gausslegendre", "riemann_trapezoid", ...).
        n_samples: samples of GradientShap / LIME / KernelShap.
        stdevs: GradientShap input noise.
        window: occlusion window in tokens.
        seed: random seed of the sampling methods.
        batch_size: examples per batch.
        max_tokens_per_pass: bounds memory: rows (examples x steps or perturbations) per forward pass are
            chosen so that rows x padded length stays under this (Captum's ``internal_batch_size``).
        internal_batch_size: fixed rows per forward pass instead (overrides ``max_tokens_per_pass``).
        final_block_rows: let the last block compute only the positions the target reads (exact; see
            :mod:`workbench.pruned_forward`). Off only to compare against the full forward pass.
    """

    baseline: str = "pad"
    n_steps: int = 32
    tolerance: Optional[float] = None
    max_steps: int = 256
    ig_method: str = "gausslegendre"
    n_samples: int = 64
    stdevs: float = 0.0
    window: int = 3
    seed: int = 0
    batch_size: int = 16
    max_tokens_per_pass: int = 2048
    internal_batch_size: Optional[int] = None
    final_block_rows: bool = True

    def rows_per_pass(self, n_positions: int) -> int:
        """Rows per forward pass for inputs of ``n_positions`` tokens."""
        if self.internal_batch_size is not None:
            return max(1, self.internal_batch_size)
        return max(1, self.max_tokens_per_pass // max(1, n_positions))
