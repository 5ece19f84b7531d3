"""The DistilBERT family (Sanh et al., 2019, arXiv 1910.01108): a post-norm encoder like BERT, but with its own
module tree (``embeddings``, ``transformer.layer[i]``: ``attention.q_lin|k_lin|v_lin|out_lin``, ``sa_layer_norm``,
``ffn.lin1|lin2``, ``output_layer_norm``) and no token types.

As in :mod:`workbench.models.bert`, each name is bridged to a submodule with a temporary forward (pre-)hook, and
the attention scores and pattern, which DistilBERT computes inside an ``ALL_ATTENTION_FUNCTIONS`` function exactly
like BERT (its ``eager_attention_forward`` is a copy of BERT's), are reached through BERT's hooked eager attention
and callback table, imported from there and registered with ``transformers`` as ``workbench_eager`` (op for op
DistilBERT's eager attention). DistilBERT's attention module also applies the output projection, so ``hook_z`` is
the input of ``out_lin``. What each name means:

=============================  ===================================================================
``embed.hook_embed``           ``embeddings.word_embeddings`` output (token embeddings, unscaled)
``embed.hook_pos_embed``       ``embeddings.position_embeddings`` output (learned or sinusoidal), expanded to
                               [batch, pos, d_model] (the embedding LayerNorm has no hook name)
``blocks.i.hook_resid_pre``    input of ``transformer.layer[i]`` (block 0: the embedding output, after LN)
``blocks.i.attn.hook_q|k|v``   ``attention.q_lin|k_lin|v_lin`` outputs viewed [batch, pos, n_heads, d_head]
``blocks.i.attn.hook_attn_scores``  Q K^T / sqrt(d_head) + additive mask (padding = dtype min), pre-softmax
``blocks.i.attn.hook_pattern`` softmax of the scores (before attention dropout) [batch, n_heads, q_pos, k_pos]
``blocks.i.attn.hook_z``       per-head weighted values, the input of ``attention.out_lin``,
                               viewed [batch, pos, n_heads, d_head]
``blocks.i.hook_attn_out``     ``attention.out_lin`` output (W_O z + b, before residual and LayerNorm)
``blocks.i.hook_resid_mid``    ``sa_layer_norm`` output = LN(resid_pre + attn_out)
``blocks.i.mlp.hook_pre``      ``ffn.lin1`` output [batch, pos, d_ff]
``blocks.i.mlp.hook_post``     after the activation: the input of ``ffn.lin2`` [batch, pos, d_ff]
``blocks.i.hook_mlp_out``      ``ffn`` output (``lin2`` then dropout: the term the residual adds, before LN)
``blocks.i.hook_resid_post``   ``output_layer_norm`` output = LN(resid_mid + mlp_out), the block's output
``ln_final.hook_normalized``   the transformer's last hidden state (post-norm: no extra LayerNorm)
=============================  ===================================================================

``mlp.hook_pre|post`` are refused for a config with ``chunk_size_feed_forward`` > 0 (the FFN then runs its
linear layers once per chunk of positions, so those bridges would see pieces). Row pruning and the masked-LM
head are not written for this family (the base class refuses them).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from atinuke.errors import UserInputError
from workbench.models.base import CurrentInputs, HookFn, HookInfo, ModelAdapter, Undo, block_hook_names
from workbench.models.bert import ATTN_IMPLEMENTATION, hooked_eager_attention
from workbench.models.bridges import (
    ATTN_CALLBACKS,
    attention_callback,
    first_input_hook,
    last_hidden_state_hook,
    output_hook,
    position_hook,
    register_attention,
    split_heads,
)


class DistilBertAdapter(ModelAdapter):
    family = "distilbert"
    kind = "hf"
    model_inputs = ("input_ids", "attention_mask")

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        for attribute in ("embeddings", "transformer"):
            if not hasattr(model, attribute):
                name = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
                raise UserInputError(f"{name}: not a DistilBERT encoder (no .{attribute})")
        super().__init__(model, n_heads, d_head)
        self.embeddings: Any = model.get_submodule("embeddings")
        self.layers: list[Any] = list(model.get_submodule("transformer.layer").children())

    def hook_names(self) -> list[str]:
        return block_hook_names(len(self.layers))

    def embedding_module(self) -> nn.Module:
        return self.embeddings

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def self_attention(self, block: nn.Module) -> nn.Module:
        """The module that computes the attention pattern of ``block`` (its callbacks live on it)."""
        return block.get_submodule("attention")

    def hooks_inside(self, block: nn.Module) -> bool:
        return bool(ATTN_CALLBACKS.get(self.self_attention(block)))

    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        if name == "embed.hook_embed":
            return [self.embeddings.word_embeddings.register_forward_hook(output_hook(fn, info)).remove]
        if name == "embed.hook_pos_embed":
            return [self.embeddings.position_embeddings.register_forward_hook(position_hook(fn, info, current)).remove]
        if name == "ln_final.hook_normalized":
            return [self.model.get_submodule("transformer").register_forward_hook(last_hidden_state_hook(fn, info)).remove]
        assert info.layer is not None, name
        layer = self.layers[info.layer]
        suffix = name.split(".", 2)[2]
        if suffix == "hook_resid_pre":
            return [layer.register_forward_pre_hook(first_input_hook(fn, info, "hidden_states"), with_kwargs=True).remove]
        if suffix in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            linear = getattr(layer.attention, f"{suffix[-1]}_lin")
            return [linear.register_forward_hook(output_hook(split_heads(fn, self.n_heads, self.d_head), info)).remove]
        if suffix in ("attn.hook_attn_scores", "attn.hook_pattern"):
            # DistilBERT's eager attention is BERT's, so BERT's hooked copy serves it.
            register_attention(ATTN_IMPLEMENTATION, hooked_eager_attention)
            key = "scores" if suffix.endswith("scores") else "pattern"
            return [attention_callback(self.model, self.self_attention(layer), key, fn, info, ATTN_IMPLEMENTATION)]
        if suffix == "attn.hook_z":  # z [batch, pos, d_model] is the input of out_lin
            z_hook = first_input_hook(split_heads(fn, self.n_heads, self.d_head), info, "input")
            return [layer.attention.out_lin.register_forward_pre_hook(z_hook, with_kwargs=True).remove]
        if suffix in ("mlp.hook_pre", "mlp.hook_post") and layer.ffn.chunk_size_feed_forward:
            raise UserInputError(f"{name}: the FFN runs in chunks (chunk_size_feed_forward="
                                 f"{layer.ffn.chunk_size_feed_forward}), so this activation is never whole")
        if suffix == "mlp.hook_post":
            return [layer.ffn.lin2.register_forward_pre_hook(first_input_hook(fn, info, "input"), with_kwargs=True).remove]
        module = {"hook_attn_out": layer.attention.out_lin, "hook_resid_mid": layer.sa_layer_norm,
                  "mlp.hook_pre": layer.ffn.lin1, "hook_mlp_out": layer.ffn,
                  "hook_resid_post": layer.output_layer_norm}[suffix]
        return [module.register_forward_hook(output_hook(fn, info)).remove]
