"""The attribution methods, one class each, and their registry (the order users see them in).

Adding a method: a file here with an :class:`~workbench.attribution.method.AttributionMethod` subclass, and
one line in :data:`REGISTRY`. docs/architecture.md walks through an example.
"""
from __future__ import annotations

import difflib

from atinuke.errors import UserInputError
from workbench.attribution.method import AttributionMethod
from workbench.attribution.methods.attention import Attention, AttentionXGradient, Rollout
from workbench.attribution.methods.deeplift import DeepLift
from workbench.attribution.methods.feature_ablation import FeatureAblation
from workbench.attribution.methods.gradient_shap import GradientShap
from workbench.attribution.methods.input_x_gradient import InputXGradient
from workbench.attribution.methods.integrated_gradients import IntegratedGradients
from workbench.attribution.methods.occlusion import Occlusion
from workbench.attribution.methods.saliency import Saliency
from workbench.attribution.methods.surrogate import KernelShap, Lime

REGISTRY: dict[str, AttributionMethod] = {method.name: method for method in (
    IntegratedGradients(), Saliency(), InputXGradient(), GradientShap(), DeepLift(),
    Occlusion(), FeatureAblation(), Lime(), KernelShap(),
    Attention(), Rollout(), AttentionXGradient(),
)}
METHODS = tuple(REGISTRY)
GRADIENT_METHODS = tuple(n for n, m in REGISTRY.items() if m.family == "gradient")
PERTURBATION_METHODS = tuple(n for n, m in REGISTRY.items() if m.family == "perturbation")
ATTENTION_METHODS = tuple(n for n, m in REGISTRY.items() if m.family == "attention")


def get_method(name: str) -> AttributionMethod:
    """The registered method called ``name``.

    Raises:
        UserInputError: an unknown name (with the closest ones).
    """
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, METHODS, n=2)
        raise UserInputError(f"unknown method {name!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                            f"; choose from {', '.join(METHODS)}"))
    return REGISTRY[name]


__all__ = ["ATTENTION_METHODS", "GRADIENT_METHODS", "METHODS", "PERTURBATION_METHODS", "REGISTRY", "get_method"]
