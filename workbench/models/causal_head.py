"""The language-model head of any decoder family, built by ``transformers`` around the adapter's own base model.

A checkpoint of a decoder holds its base model plus, unless the output projection is tied to the token
embeddings, that projection (``lm_head.weight`` for GPT-2, Llama, Mistral, Qwen2; ``embed_out.weight`` for
GPT-NeoX). :func:`causal_lm_head` asks ``AutoModelForCausalLM`` for the family's ``*ForCausalLM`` class, builds
it on the meta device (no second copy of the base model is allocated), puts the subject's own base model in its
place (so every hook on the subject applies to the LM) and fills the remaining tensors from the safetensors file,
or ties them to the input embeddings when the config ties them. The family's final norm is inside its base model
(``ln_f``, ``norm``, ``final_layer_norm``), so the logits are the output projection of the last hidden state;
that is checked once on a few tokens, and a family whose head does more (logit scaling, soft-capping) is refused
by name rather than read wrongly.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Optional, cast

import torch
from torch import nn

from atinuke.errors import UserInputError

logger = logging.getLogger(__name__)


def checkpoint_tensors(weights: Path) -> dict[str, Any]:
    """name -> lazy slice getter of every tensor in a safetensors file (or each shard of a sharded index)."""
    import json

    from safetensors import safe_open

    files = ([weights.parent / f for f in sorted(set(json.loads(weights.read_text())["weight_map"].values()))]
             if weights.name.endswith(".index.json") else [weights])
    found: dict[str, Any] = {}
    for file in files:
        with safe_open(str(file), "pt") as handle:
            for name in handle.keys():
                found[name] = (file, name)
    return found


def read_tensor(where: tuple[Path, str]) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(where[0]), "pt") as handle:
        return handle.get_tensor(where[1])


def checkpoint_renamed(class_name: str, name: str) -> str:
    """A checkpoint tensor's name as the module tree of ``class_name`` names it: ``transformers`` 5 keeps legacy
    names in saved files (GPT-NeoX's ``embed_out.weight``) and renames them on loading (to ``lm_head.weight``)
    through its checkpoint conversion mapping; the plain renamings of that mapping are applied here."""
    import re

    from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    from transformers.core_model_loading import WeightRenaming

    for rule in get_checkpoint_conversion_mapping(class_name) or []:
        if type(rule) is WeightRenaming:
            for source, target in zip(rule.source_patterns, rule.target_patterns):
                name = re.sub(source, target, name)
    return name


def causal_lm_head(base: nn.Module, weights: Path) -> Optional[tuple[nn.Module, bool]]:
    """The ``*ForCausalLM`` of ``base``'s family wrapped around ``base`` itself, and True (it is causal).

    Args:
        base: the subject's base model (e.g. ``GPT2Model``), whose final norm is part of its forward.
        weights: the checkpoint's ``model.safetensors`` (or ``model.safetensors.index.json``).

    Returns:
        (head, True), or None when the family has no causal-LM class or the checkpoint has no output projection
        (saved without it and not tied).

    Raises:
        UserInputError: a head whose logits are not the output projection of the last hidden state.
    """
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config: Any = getattr(base, "config", None)
    if config is None or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return None
    with torch.device("meta"):
        head: Any = AutoModelForCausalLM.from_config(copy.deepcopy(config))
    prefix = head.base_model_prefix
    setattr(head, prefix, base)  # the subject's modules: hooks attached to them apply to the LM
    available = checkpoint_tensors(weights)
    available.update({renamed: where for name, where in available.items()
                      for renamed in [checkpoint_renamed(type(head).__name__, name)] if renamed != name})
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, tensor in list(head.named_parameters()) + list(head.named_buffers()):
        if name.startswith(prefix + ".") or tensor.device.type != "meta":
            continue
        owner, _, leaf = name.rpartition(".")
        module = head.get_submodule(owner)
        if name in available:
            value = read_tensor(available[name]).to(next(base.parameters()).device)
            setattr(module, leaf, nn.Parameter(value.to(tensor.dtype), requires_grad=False)
                    if isinstance(tensor, nn.Parameter) else value)
        elif tied and module is head.get_output_embeddings() and leaf == "weight":
            module.weight = cast(Any, base).get_input_embeddings().weight
        else:
            logger.info("%s: no %s in the checkpoint; no LM head", weights, name)
            return None
    head.to(next(base.parameters()).dtype).eval()
    check_readout(base, head)
    return head, True


def check_readout(base: nn.Module, head: Any) -> None:
    """Refuse a head whose logits are not ``get_output_embeddings()(last_hidden_state)`` (a few tokens' check)."""
    vocab = int(head.get_output_embeddings().weight.shape[0])
    device = next(base.parameters()).device
    ids = torch.arange(min(vocab, 4), device=device)[None]  # [1, pos]
    with torch.no_grad():
        hidden = base(input_ids=ids).last_hidden_state  # [1, pos, d_model]
        logits = head(input_ids=ids).logits  # [1, pos, vocab]
        read = head.get_output_embeddings()(hidden)  # [1, pos, vocab]
    if read.shape != logits.shape or not torch.equal(read, logits):
        raise UserInputError(f"{type(head).__name__}: its logits are not the output projection of the last hidden "
                             f"state (logit scaling or soft-capping?); the workbench cannot read this family's LM")
