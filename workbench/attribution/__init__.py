"""Token attribution for any subject and target: Captum-backed methods as objects, one engine, one result type.

``attribute(subject, inputs, method, target, params)`` returns an :class:`Attribution` (a tidy table). The
methods (``METHODS``, in ``methods/``): ``integrated_gradients`` (Sundararajan et al., 2017, arXiv 1703.01365;
with the convergence delta, optionally adaptive ``n_steps``), ``saliency`` (Simonyan et al., 2013),
``input_x_gradient`` (Shrikumar et al., 2016), ``gradient_shap`` (Lundberg & Lee, 2017), ``deeplift``
(Shrikumar et al., 2017; only for models whose nonlinearities DeepLift supports), ``occlusion`` (Zeiler &
Fergus, 2014), ``feature_ablation``, ``lime`` (Ribeiro et al., 2016), ``kernel_shap`` (Lundberg & Lee, 2017),
and attention-based scores in the same result type: ``attention`` (last layer, mean over heads, the target
token's row), ``rollout`` (Abnar & Zuidema, 2020), ``attention_x_gradient`` (Chefer et al., 2021,
arXiv 2103.15679). Targets (what is explained) are in :mod:`workbench.attribution.targets`; ERASER-style
evaluation of a run in :mod:`workbench.attribution.evaluate`.
"""
from __future__ import annotations

from workbench.attribution.engine import attribute, attribute_many
from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput
from workbench.attribution.methods import (
    ATTENTION_METHODS,
    GRADIENT_METHODS,
    METHODS,
    PERTURBATION_METHODS,
    REGISTRY,
    get_method,
)
from workbench.attribution.params import BASELINES, AttributionParams
from workbench.attribution.result import COLUMNS, Attribution
from workbench.attribution.targets import default_target

__all__ = ["ATTENTION_METHODS", "Attribution", "AttributionMethod", "AttributionParams", "BASELINES", "COLUMNS",
           "GRADIENT_METHODS", "METHODS", "MethodCall", "MethodOutput", "PERTURBATION_METHODS", "REGISTRY",
           "attribute", "attribute_many", "default_target", "get_method"]
