"""The BERT family (BERT, RoBERTa, XLM-R, ELECTRA, CamemBERT: one module tree), post-norm like the paper's Atinuke.

A BERT model has no hook points, so each name is bridged to a submodule with a temporary forward hook, and the
attention scores and pattern, which BERT computes inside a function, are reached through an attention
implementation registered with ``transformers`` (``workbench_eager``) that performs exactly the operations of
BERT's eager attention, in the same order, with the hook callbacks in between. What each name means:

=============================  ===================================================================
``embed.hook_embed``           ``embeddings.word_embeddings`` output (token embeddings, unscaled)
``embed.hook_pos_embed``       ``embeddings.position_embeddings`` output, expanded to [batch, pos, d_model]
                               (token-type embeddings and the embedding LayerNorm have no hook name)
``blocks.i.hook_resid_pre``    input of ``encoder.layer[i]`` (block 0: the embedding output, after LN)
``blocks.i.attn.hook_q|k|v``   ``attention.self.query|key|value`` outputs viewed [batch, pos, n_heads, d_head]
``blocks.i.attn.hook_attn_scores``  Q K^T / sqrt(d_head) + additive mask (padding = dtype min), pre-softmax
``blocks.i.attn.hook_pattern`` softmax of the scores (before attention dropout)
``blocks.i.attn.hook_z``       per-head weighted values (``attention.self`` output) [batch, pos, n_heads, d_head]
``blocks.i.hook_attn_out``     ``attention.output.dense`` output (W_O z + b, before residual and LayerNorm)
``blocks.i.hook_resid_mid``    ``attention.output`` output = LN(resid_pre + attn_out)
``blocks.i.mlp.hook_pre|post`` ``intermediate.dense`` output / after the activation [batch, pos, d_ff]
``blocks.i.hook_mlp_out``      ``output.dense`` output (before residual and LayerNorm)
``blocks.i.hook_resid_post``   ``output`` output = LN(resid_mid + mlp_out), the block's output
``ln_final.hook_normalized``   the encoder's last hidden state (post-norm: no extra LayerNorm, as in Atinuke)
=============================  ===================================================================
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError
from workbench.models.base import CurrentInputs, HookFn, HookInfo, ModelAdapter, Undo, block_hook_names
from workbench.models.bridges import (
    ATTN_CALLBACKS,
    attention_callback,
    first_input_hook,
    last_hidden_state_hook,
    output_hook,
    position_hook,
    register_attention,
    run_callbacks,
    split_heads,
)
from workbench.models.rows import RowSlot, gather_rows, scatter_rows

if TYPE_CHECKING:
    from transformers.models.bert.modeling_bert import BertLayer, BertModel

ATTN_IMPLEMENTATION = "workbench_eager"


def hooked_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None,
                           dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's eager attention, op for op (so results are bitwise equal), with the score/pattern callbacks."""
    callbacks = ATTN_CALLBACKS.get(module, {})
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # [batch, n_heads, query_pos, key_pos]
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = run_callbacks(callbacks, "scores", weights)
    weights = nn.functional.softmax(weights, dim=-1)  # [batch, n_heads, query_pos, key_pos]
    weights = run_callbacks(callbacks, "pattern", weights)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # [batch, pos, n_heads, d_head]
    return output, weights


# The modules of a BERT block that the hooks bridge to.
BLOCK_MODULES = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense")


def _has_submodule(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


class BertAdapter(ModelAdapter):
    family = "bert"
    kind = "hf"

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        for attribute in ("embeddings", "encoder"):
            if not hasattr(model, attribute):
                name = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
                raise UserInputError(f"{name}: not a BERT-family encoder (no .{attribute})")
        super().__init__(model, n_heads, d_head)
        self.embeddings: Any = model.get_submodule("embeddings")
        self.layers: list[Any] = list(model.get_submodule("encoder.layer").children()) if hasattr(
            model.get_submodule("encoder"), "layer") else []
        # A family that only shares the top of BERT's tree (DeBERTa v1's fused attention, say) is refused here, in
        # one line, rather than failing at the first hook.
        missing = [path for path in BLOCK_MODULES if not self.layers or not _has_submodule(self.layers[0], path)]
        if missing or not hasattr(self.embeddings, "word_embeddings"):
            name = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            raise UserInputError(f"{name}: not a BERT-family encoder (its blocks lack "
                                 f"{', '.join(missing) or 'embeddings.word_embeddings'})")

    def hook_names(self) -> list[str]:
        return block_hook_names(len(self.layers))

    def embedding_module(self) -> nn.Module:
        return self.embeddings

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def self_attention(self, block: nn.Module) -> nn.Module:
        """The module that computes the attention pattern of ``block`` (its callbacks live on it)."""
        return block.get_submodule("attention.self")

    def hooks_inside(self, block: nn.Module) -> bool:
        return bool(ATTN_CALLBACKS.get(self.self_attention(block)))

    def prune_refusal(self, block: nn.Module) -> Optional[str]:
        if getattr(block, "crossattention", None) is not None or getattr(self.model.config, "is_decoder", False):
            return "row pruning supports BERT encoders without cross-attention"
        return None

    def pruned_forward(self, block: nn.Module, slot: RowSlot) -> Callable[..., object]:
        return pruned_layer_forward(cast("BertLayer", block), slot)

    def language_model_head(self, weights: Path) -> Optional[tuple[nn.Module, bool]]:
        from safetensors import safe_open
        from transformers import BertForMaskedLM

        with safe_open(str(weights), "pt") as handle:
            if not any(k.startswith("cls.predictions") for k in handle.keys()):
                return None
        config: Any = self.model.config
        head = BertForMaskedLM.from_pretrained(str(weights.parent), config=copy.deepcopy(config), use_safetensors=True)
        head.bert = cast("BertModel", self.model)  # the subject's modules: hooks attached to them apply
        return head, False

    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        if name == "embed.hook_embed":
            return [self.embeddings.word_embeddings.register_forward_hook(output_hook(fn, info)).remove]
        if name == "embed.hook_pos_embed":
            return [self.embeddings.position_embeddings.register_forward_hook(position_hook(fn, info, current)).remove]
        if name == "ln_final.hook_normalized":
            return [self.model.get_submodule("encoder").register_forward_hook(last_hidden_state_hook(fn, info)).remove]
        assert info.layer is not None, name
        layer = self.layers[info.layer]
        suffix = name.split(".", 2)[2]
        if suffix == "hook_resid_pre":
            return [layer.register_forward_pre_hook(first_input_hook(fn, info, "hidden_states"), with_kwargs=True).remove]
        if suffix in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            linear = getattr(layer.attention.self, {"q": "query", "k": "key", "v": "value"}[suffix[-1]])
            return [linear.register_forward_hook(output_hook(split_heads(fn, self.n_heads, self.d_head), info)).remove]
        if suffix in ("attn.hook_attn_scores", "attn.hook_pattern"):
            register_attention(ATTN_IMPLEMENTATION, hooked_eager_attention)
            key = "scores" if suffix.endswith("scores") else "pattern"
            return [attention_callback(self.model, self.self_attention(layer), key, fn, info, ATTN_IMPLEMENTATION)]
        if suffix == "attn.hook_z":
            per_head = split_heads(fn, self.n_heads, self.d_head)

            def z_hook(module, args, out):  # out: (z [batch, pos, d_model], weights)
                new = per_head(out[0], info)
                return None if new is None else (new, *out[1:])
            return [layer.attention.self.register_forward_hook(z_hook).remove]
        module = {"hook_attn_out": layer.attention.output.dense, "hook_resid_mid": layer.attention.output,
                  "mlp.hook_pre": layer.intermediate.dense, "mlp.hook_post": layer.intermediate,
                  "hook_mlp_out": layer.output.dense, "hook_resid_post": layer.output}[suffix]
        return [module.register_forward_hook(output_hook(fn, info)).remove]


def pruned_layer_forward(layer: BertLayer, slot: RowSlot) -> Callable[..., torch.Tensor]:
    """BertLayer.forward computing only ``slot.rows`` (BERT's post-norm layer, self-attention only)."""
    original = layer.forward
    self_attention = layer.attention.self
    n_heads, d_head = self_attention.num_attention_heads, self_attention.attention_head_size

    def forward(hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *args: Any,
                **kwargs: Any) -> torch.Tensor:
        rows = slot.rows
        if rows is None:
            return original(hidden_states, attention_mask, *args, **kwargs)
        batch, n_pos, d_model = hidden_states.shape
        k = rows.shape[1]
        rows_in = gather_rows(hidden_states, rows)  # [batch, k, d_model]
        q = self_attention.query(rows_in).view(batch, k, n_heads, d_head).transpose(1, 2)  # [batch, n_heads, k, d_head]
        keys = self_attention.key(hidden_states).view(batch, n_pos, n_heads, d_head).transpose(1, 2)  # [batch, n_heads, pos, d_head]
        values = self_attention.value(hidden_states).view(batch, n_pos, n_heads, d_head).transpose(1, 2)
        mask = attention_mask  # additive float or bool, [batch, 1, query_pos or 1, key_pos], or None
        if mask is not None and mask.dim() == 4 and mask.shape[2] == n_pos and n_pos > 1:
            mask = mask.gather(2, rows[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[3]))
        z = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                           scale=self_attention.scaling)  # [batch, n_heads, k, d_head]
        attention_output = layer.attention.output(z.transpose(1, 2).reshape(batch, k, d_model), rows_in)
        layer_output = layer.output(layer.intermediate(attention_output), attention_output)  # [batch, k, d_model]
        return scatter_rows(hidden_states, rows, layer_output)  # [batch, pos, d_model]

    return forward
