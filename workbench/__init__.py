"""Atinuke Workbench: analysis over any model behind one interface (see docs/architecture.md).

Every public name, the model interface (``workbench.subject``) included, is imported from its submodule on
first use (PEP 562), so ``import workbench`` stays free of torch for the app and the CLIs.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # the model interface (imports torch and transformers)
    "ActivationCache": "workbench.subject", "HookInfo": "workbench.subject", "PatchResult": "workbench.subject",
    "Subject": "workbench.subject", "load_subject": "workbench.subject",
    # attention analysis
    "AttentionMaps": "workbench.attention", "aggregate_to_words": "workbench.attention",
    "attention_flow": "workbench.attention", "attention_maps": "workbench.attention",
    "attention_rollout": "workbench.attention", "entropy": "workbench.attention",
    "gold_logprob_score": "workbench.attention", "head_importance": "workbench.attention",
    "head_statistics": "workbench.attention",
    # attribution
    "METHODS": "workbench.attribution", "Attribution": "workbench.attribution",
    "AttributionParams": "workbench.attribution", "attribute": "workbench.attribution",
    "attribute_many": "workbench.attribution",
    "AntecedentTarget": "workbench.attribution.targets", "ClassTarget": "workbench.attribution.targets",
    "FunctionTarget": "workbench.attribution.targets", "HiddenNormTarget": "workbench.attribution.targets",
    "SpanTarget": "workbench.attribution.targets", "TagTarget": "workbench.attribution.targets",
    "Target": "workbench.attribution.targets", "parse_target": "workbench.attribution.targets",
    # faithfulness
    "agreement_matrix": "workbench.faithfulness", "aopc": "workbench.faithfulness",
    "bootstrap_ci": "workbench.stats", "mean_ci": "workbench.stats", "curve_areas": "workbench.faithfulness",
    "deletion_insertion": "workbench.faithfulness", "eraser": "workbench.faithfulness",
    "plausibility": "workbench.faithfulness", "randomization_check": "workbench.faithfulness",
    "rank_agreement": "workbench.faithfulness", "summarize": "workbench.faithfulness",
    "faithfulness_summary": "workbench.faithfulness",
    # store
    "AttributionStore": "workbench.store",
}

__all__ = [*_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
