"""Probing classifiers with proper controls: what do a model's layers encode, and is a probe evidence?

Modules (public names are re-exported here and imported on first use, so ``probes --help`` stays quick):

- :mod:`probes.features`: every layer from one forward pass, pooled into words/spans, float16 memmaps on disk.
- :mod:`probes.estimators`: :class:`LinearProbe`, :class:`MLPProbe` (scikit-learn estimators), edge features.
- :mod:`probes.tasks`: POS, PTB tags, NER, dependencies, SRL, coreference, sentence properties; gold/silver.
- :mod:`probes.controls`: control tasks and selectivity, random-init model, MDL online code, seed CIs,
  expected layer.
- :mod:`probes.structural`: the structural probe for tree distance and depth (Hewitt & Manning, 2019).
- :mod:`probes.runner`: one experiment end to end, as a tidy results table.
- :mod:`probes.figures`: plotly layer curves for the CLI report, the app and exported reports.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "probes.features": ("FeatureStore", "extract_features", "open_store", "target_features", "TargetFeatures",
                        "layer_hook_names", "WORD_POOLS", "SPAN_POOLS"),
    "probes.estimators": ("LinearProbe", "MLPProbe", "edge_features", "make_probe", "PROBE_KINDS"),
    "probes.tasks": ("ProbeSentence", "ProbingData", "TASKS", "load_probing_data"),
    "probes.controls": ("control_labels", "selectivity", "random_init_encoder", "online_codelength", "OnlineCode",
                        "seed_summary", "SeedSummary", "expected_layer", "MDL_PORTIONS"),
    "probes.runner": ("ProbeRunConfig", "ProbeRun", "run_probing", "parse_layers", "RESULT_COLUMNS"),
    "probes.figures": ("layer_curve_figure", "selectivity_figure", "layer_summary"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'probes' has no attribute {name!r}")
