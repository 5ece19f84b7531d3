"""The contract between :class:`~workbench.subject.Subject` and a model family.

A family's adapter knows the family's module tree; nothing else in the workbench does (``tests/test_layout.py``
greps for module paths outside ``workbench/models/``). It maps the workbench's hook names, TransformerLens
style (Nanda & Bloom 2022), onto the family's modules, and names the modules that other analyses take apart
(the embedding layer, the blocks).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional

import torch
from torch import nn

if TYPE_CHECKING:
    from workbench.models.rows import RowSlot

# Per-block hook names of a post-norm encoder block (Atinuke and the BERT family), in forward order.
HOOK_NAMES_PER_BLOCK = (
    "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
    "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post",
    "hook_mlp_out", "hook_resid_post",
)


@dataclass(frozen=True)
class HookInfo:
    """What a hook function is told about the activation it receives.

    Attributes:
        name: the hook name, e.g. ``blocks.1.attn.hook_pattern``.
        layer: the block index, or None for ``embed.*`` and ``ln_final.*``.
    """

    name: str
    layer: Optional[int]


@dataclass(frozen=True)
class NormParameters:
    """A normalisation layer's parameters and which normalisation it is (``workbench.decompose`` freezes its scale).

    Attributes:
        kind: "layer" (LayerNorm, Ba et al. 2016: ``weight * (x - mean(x)) / sqrt(var(x) + eps) + bias``) or "rms"
            (RMSNorm, Zhang & Sennrich 2019: ``weight * x / sqrt(mean(x^2) + eps)``, no mean subtraction, no bias).
        weight: the gain [d_model].
        bias: the shift [d_model], None where the norm has none (RMSNorm, a bias-free LayerNorm).
        eps: added to the variance (or mean square) under the square root.
    """

    kind: str
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    eps: float

    def frozen_scale(self, total: torch.Tensor) -> torch.Tensor:
        """The factor 1/sigma the norm applies to ``total`` [..., d_model]: [..., 1]."""
        centred = total - total.mean(-1, keepdim=True) if self.kind == "layer" else total
        return torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + self.eps)

    def linear_part(self, part: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """What ``part`` [..., d_model] of the normalised stream contributes with the scale frozen at ``scale``:
        ``weight * (part - mean(part)) * scale`` (LayerNorm) or ``weight * part * scale`` (RMSNorm)."""
        centred = part - part.mean(-1, keepdim=True) if self.kind == "layer" else part
        return self.weight * centred * scale


HookFn = Callable[[torch.Tensor, HookInfo], Optional[torch.Tensor]]
Undo = Callable[[], None]
# The inputs of the forward pass that is running (None outside one); some hooks need its batch size or mask.
CurrentInputs = Callable[[], Optional[Mapping[str, torch.Tensor]]]


def block_hook_names(n_layers: int, per_block: tuple[str, ...] = HOOK_NAMES_PER_BLOCK) -> list[str]:
    """The embedding names, ``per_block`` for every block, then the final norm's: a family's hook names in
    forward order."""
    return (["embed.hook_embed", "embed.hook_pos_embed"]
            + [f"blocks.{i}.{n}" for i in range(n_layers) for n in per_block] + ["ln_final.hook_normalized"])


def layer_of(name: str) -> Optional[int]:
    """The block index in a ``blocks.{i}.*`` hook name, None for the others."""
    return int(name.split(".")[1]) if name.startswith("blocks.") else None


class ModelAdapter(ABC):
    """One model family's module tree behind the workbench's hook vocabulary.

    Attributes:
        family: the family's name as errors and tables show it ("atinuke", "bert").
        kind: "atinuke" for this repository's models, "hf" for Hugging Face ones (decides the inputs passed).
        model_inputs: the tokenizer outputs the model's forward takes.
    """

    family: str = ""
    kind: str = "hf"
    model_inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        self.model = model
        self.n_heads = n_heads
        self.d_head = d_head

    @abstractmethod
    def hook_names(self) -> list[str]:
        """Every hook name this model has, in forward order."""

    @abstractmethod
    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        """Make ``fn`` see (and optionally replace) the activation at ``name``; returns what removes it."""

    @abstractmethod
    def embedding_module(self) -> nn.Module:
        """The module that turns token ids into the residual stream (token, position and type embeddings)."""

    @abstractmethod
    def blocks(self) -> list[nn.Module]:
        """The transformer blocks, input side first."""

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """The family's last step on the residual stream after the blocks (identity for post-norm blocks,
        which already end in a layer norm). [..., d_model]."""
        return hidden

    # Whether the residual stream is a sum of component outputs (pre-norm blocks); a post-norm block's layer
    # norm sits on the stream itself. Edge attribution and direct logit attribution need it.
    residual_is_sum: bool = False
    # Whether a block's MLP reads the block's input (GPT-NeoX's parallel residual: out = x + attn(ln1(x)) +
    # mlp(ln2(x))) rather than resid_mid; the edge graph then gives block l's MLP no edge from block l's heads.
    parallel_residual: bool = False
    # Key/value heads per block; fewer than n_heads under grouped-query attention (Llama family), where one K/V
    # head's input is shared by several query heads.
    n_kv_heads: Optional[int] = None

    def head_output_weights(self, layer: int) -> Optional[torch.Tensor]:
        """Each head's slice of block ``layer``'s attention output projection, [n_heads, d_head, d_model], so that
        head h contributes ``z[..., h, :] @ W[h]`` to the attention output (``workbench.edges``,
        ``workbench.decompose``); None where the family does not say."""
        return None

    def norm_parameters(self, name: str) -> Optional[NormParameters]:
        """The norm ``blocks.{i}.ln1``, ``blocks.{i}.ln2`` or ``ln_final`` (its kind and parameters); None where
        there is none (a post-norm model's final norm, ModernBERT's identity ``attn_norm`` in layer 0) or the
        family does not say."""
        return None
    def is_causal(self) -> bool:
        """Whether the model is a decoder (each position attends to itself and earlier ones only): a model type
        ``transformers`` has a causal-LM class for and no masked-LM class (GPT-2, Llama, Mistral, Qwen2,
        GPT-NeoX...), or a config marked ``is_decoder``. A family that knows better overrides it."""
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )

        config = getattr(self.model, "config", None)
        model_type = getattr(config, "model_type", None)
        return bool(getattr(config, "is_decoder", False)) or (
            model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    def hooks_inside(self, block: nn.Module) -> bool:
        """Whether a hook that is not a torch module hook (e.g. an attention callback) is attached in ``block``."""
        return False

    def prune_refusal(self, block: nn.Module) -> Optional[str]:
        """Why this family's ``block`` cannot compute only some rows (None when :meth:`pruned_forward` can)."""
        return f"row pruning is not written for the {self.family} family"

    def pruned_forward(self, block: nn.Module, slot: RowSlot) -> Callable[..., object]:
        """A replacement for ``block.forward`` that computes only ``slot.rows`` when they are set (exact: the
        same operations as the block on those rows; :mod:`workbench.pruned_forward`)."""
        raise NotImplementedError(f"row pruning is not written for the {self.family} family")

    def language_model_head(self, weights: Path) -> Optional[tuple[nn.Module, bool]]:
        """The family's LM head from a checkpoint's ``weights`` file, wrapped around this adapter's own model
        (so hooks on it apply to the LM), and whether it is causal; None when the checkpoint has no LM head.

        The default serves every decoder family that ``transformers`` maps to a ``*ForCausalLM`` class whose
        logits are the output projection of the base model's last hidden state (GPT-2, Llama, Mistral, Qwen2,
        GPT-NeoX...): :func:`workbench.models.causal_head.causal_lm_head`. Encoder families override it.
        """
        from workbench.models.causal_head import causal_lm_head

        return causal_lm_head(self.model, weights)

    def readout(self, head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [..., vocab] from the base model's last hidden state [..., d_model] (its final norm already
        applied) through ``head`` (what :meth:`language_model_head` returned): the output projection of a
        ``*ForCausalLM``; a family with a transform before it (an MLM head) overrides this."""
        output = head.get_output_embeddings()  # type: ignore[operator]
        return output(hidden)
