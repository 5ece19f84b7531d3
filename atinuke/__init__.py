"""Atinuke: the Transformer of arXiv 2401.16736, its tokenizer, corpus, pretraining and task heads.

The public names below are imported on first use (PEP 562), so that light modules such as
``atinuke.errors``, ``atinuke.paths`` and ``atinuke.io`` load without torch or transformers (the Streamlit
app imports them on every page). Importing ``atinuke.model`` registers the Atinuke classes with
transformers' ``AutoConfig``/``AutoModel*`` factories.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PRESETS": "atinuke.config", "AtinukeConfig": "atinuke.config", "preset_config": "atinuke.config",
    "AtinukeForCausalLM": "atinuke.model", "AtinukeForMaskedLM": "atinuke.model", "AtinukeModel": "atinuke.model",
    "HookPoint": "atinuke.model", "count_parameters": "atinuke.model", "hook_point_names": "atinuke.model",
}

__all__ = [
    "PRESETS",
    "AtinukeConfig",
    "AtinukeForCausalLM",
    "AtinukeForMaskedLM",
    "AtinukeModel",
    "HookPoint",
    "count_parameters",
    "hook_point_names",
    "preset_config",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atinuke' has no attribute {name!r}")
