"""Atinuke: the Transformer of arXiv 2401.16736, its tokenizer, corpus, pretraining and task heads."""
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from atinuke.config import PRESETS, AtinukeConfig, preset_config
from atinuke.model import (
    AtinukeForCausalLM,
    AtinukeForMaskedLM,
    AtinukeModel,
    HookPoint,
    count_parameters,
    hook_point_names,
)

AutoConfig.register("atinuke", AtinukeConfig, exist_ok=True)
AutoModel.register(AtinukeConfig, AtinukeModel, exist_ok=True)
AutoModelForMaskedLM.register(AtinukeConfig, AtinukeForMaskedLM, exist_ok=True)
AutoModelForCausalLM.register(AtinukeConfig, AtinukeForCausalLM, exist_ok=True)

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
