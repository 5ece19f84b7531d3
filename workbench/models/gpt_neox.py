"""The GPT-NeoX family (Black et al., 2022, arXiv 2204.06745), which the Pythia suite (Biderman et al., 2023,
arXiv 2304.01373) uses: a pre-norm causal decoder with rotary position embeddings (Su et al., 2021,
arXiv 2104.09864), ``GPTNeoXModel`` in ``transformers``.

Its module tree: ``embed_in`` (token embeddings; there is no learned position embedding), ``layers[i]`` blocks of
``input_layernorm``, ``attention`` (``query_key_value``: one fused linear layer whose output is laid out per head,
``[q_h, k_h, v_h]`` for each head h, then rotary on the first ``rotary_ndims`` dimensions of q and k, then
``dense``), ``post_attention_layernorm``, ``mlp`` (``dense_h_to_4h``, ``act``, ``dense_4h_to_h``), and the final
``final_layer_norm``. With ``use_parallel_residual`` (Pythia's setting) a block computes
``out = x + attn(ln1(x)) + mlp(ln2(x))``; without it, ``mid = x + attn(ln1(x))`` and ``out = mid + mlp(ln2(mid))``.

A GPT-NeoX model has no hook points, so each name is bridged to a submodule with a temporary forward (pre-)hook,
and what GPT-NeoX computes inside its ``ALL_ATTENTION_FUNCTIONS`` function (the rotated queries and keys, the
scores, the pattern) is reached through an attention implementation registered with ``transformers``
(``workbench_eager_gpt_neox``) that performs exactly the operations of GPT-NeoX's eager attention, in the same
order, with the hook callbacks (:data:`workbench.models.bridges.ATTN_CALLBACKS`) in between. What each name means:

=================================  ===================================================================
``embed.hook_embed``               ``embed_in`` output (token embeddings) [batch, pos, d_model]
``blocks.i.hook_resid_pre``        input of block ``layers[i]`` (block 0: embed_in, after embedding dropout)
``blocks.i.ln1.hook_normalized``   ``input_layernorm`` output, the input of attention
``blocks.i.attn.hook_q|k|v``       GPT-NeoX's own split of the fused ``attention.query_key_value`` output: viewed
                                   [batch, pos, n_heads, 3 * d_head], the first, second and last d_head of each
                                   head; each [batch, pos, n_heads, d_head], before rotary
``blocks.i.attn.hook_rot_q|rot_k`` q and k after the rotary embedding (only the first ``rotary_ndims`` =
                                   int(d_head * rotary_pct) dimensions of each head are rotated; the others are
                                   q and k unchanged) [batch, pos, n_heads, d_head]
``blocks.i.attn.hook_attn_scores`` rot_q rot_k^T / sqrt(d_head) + additive mask, pre-softmax
                                   [batch, n_heads, q_pos, k_pos]; the mask is causal plus padding
                                   (masked = dtype min)
``blocks.i.attn.hook_pattern``     softmax of the scores (in float32, cast back to the model's dtype; before
                                   attention dropout) [batch, n_heads, q_pos, k_pos]
``blocks.i.attn.hook_z``           per-head weighted values, the input of ``attention.dense``,
                                   viewed [batch, pos, n_heads, d_head]
``blocks.i.hook_attn_out``         ``attention.dense`` output (W_O z + b, before dropout and the residual)
``blocks.i.hook_resid_mid``        only without the parallel residual: resid_pre + attn_out, the input of
                                   ``post_attention_layernorm`` (= the residual the MLP adds to)
``blocks.i.ln2.hook_normalized``   ``post_attention_layernorm`` output, the input of the MLP (its input is
                                   resid_pre with the parallel residual, resid_mid without)
``blocks.i.mlp.hook_pre``          ``mlp.dense_h_to_4h`` output [batch, pos, d_ff]
``blocks.i.mlp.hook_post``         after the activation: the input of ``mlp.dense_4h_to_h`` [batch, pos, d_ff]
``blocks.i.hook_mlp_out``          ``mlp.dense_4h_to_h`` output (before dropout and the residual)
``blocks.i.hook_resid_post``       block ``layers[i]`` output: resid_pre + attn_out + mlp_out with the parallel
                                   residual, resid_mid + mlp_out without (in eval mode; dropout otherwise)
``ln_final.hook_normalized``       ``final_layer_norm`` output = the model's ``last_hidden_state``
=================================  ===================================================================

Left out, on purpose: ``embed.hook_pos_embed`` (GPT-NeoX adds no position embedding to the residual stream;
positions enter only through the rotation of q and k, which ``hook_rot_q|rot_k`` show), and, for a model with
``use_parallel_residual`` (every Pythia model), ``hook_resid_mid``: attention and MLP both read resid_pre, so no
tensor of the forward pass is resid_pre + attn_out (TransformerLens omits it for parallel blocks too).

Replacing ``hook_resid_mid``: GPT-NeoX adds the MLP's output to the very tensor it passes to
``post_attention_layernorm``, so the bridge (a pre-hook there) writes the replacement into that tensor in place,
and both uses see it, exactly (as :mod:`workbench.models.gpt2` does for ``ln_2``). Replacing ``hook_rot_k``
changes the keys attention uses, not those a key-value cache stored: the workbench runs single forward passes.
Positions are numbered 0..pos-1 whatever the padding, so right padding keeps real tokens exact.
:meth:`GPTNeoXAdapter.embedding_module` is ``embed_in``. Row pruning and the LM head are not written for this
family (the base class refuses them).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError
from workbench.models.base import CurrentInputs, HookFn, HookInfo, ModelAdapter, NormParameters, Undo
from workbench.models.bridges import (
    ATTN_CALLBACKS,
    attention_callback,
    first_input_hook,
    heads_second,
    output_hook,
    register_attention,
    rotary_eager_attention,
    split_heads,
)

ATTN_IMPLEMENTATION = "workbench_eager_gpt_neox"

# Per-block hook names of GPT-NeoX's pre-norm block, in forward order; hook_resid_mid only in a sequential block.
HOOK_NAMES_PER_BLOCK = (
    "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q",
    "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
    "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
)


def hooked_gpt_neox_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: Optional[torch.Tensor], scaling: float, dropout: float = 0.0,
                              **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-NeoX's eager attention (``eager_attention_forward`` of ``modeling_gpt_neox``), op for op, with the
    rotated-query/key, score and pattern callbacks.

    Args:
        query, key, value: [batch, n_heads, pos, d_head] (query and key already rotated).
        attention_mask: additive [batch, 1, query_pos, key_pos] (causal and padding) or None.

    Returns:
        (z [batch, pos, n_heads, d_head], pattern [batch, n_heads, query_pos, key_pos]).
    """
    return rotary_eager_attention(module, query, key, value, attention_mask, scaling, dropout)


class GPTNeoXAdapter(ModelAdapter):
    family = "gpt_neox"
    kind = "hf"
    model_inputs = ("input_ids", "attention_mask")

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        for attribute in ("embed_in", "layers", "final_layer_norm"):
            if not hasattr(model, attribute):
                name = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
                raise UserInputError(f"{name}: not a GPT-NeoX base model (no .{attribute}; "
                                     f"load it with AutoModel, not a head class)")
        super().__init__(model, n_heads, d_head)
        self.embed_in: Any = model.get_submodule("embed_in")
        self.final_layer_norm: Any = model.get_submodule("final_layer_norm")
        self.layers: list[Any] = list(model.get_submodule("layers").children())
        self.parallel = bool(getattr(model, "config").use_parallel_residual)
        self.parallel_residual = self.parallel  # the MLP reads ln2(resid_pre): the edge graph follows

    def hook_names(self) -> list[str]:
        per_block = [n for n in HOOK_NAMES_PER_BLOCK if not (self.parallel and n == "hook_resid_mid")]
        return (["embed.hook_embed"] + [f"blocks.{i}.{n}" for i in range(len(self.layers)) for n in per_block]
                + ["ln_final.hook_normalized"])

    def embedding_module(self) -> nn.Module:
        """``embed_in``: GPT-NeoX's residual stream starts from the token embeddings alone."""
        return self.embed_in

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """``final_layer_norm`` applied to a residual stream [..., d_model] (its own operation, without firing
        the ``ln_final.hook_normalized`` bridge on it)."""
        norm = self.final_layer_norm
        return F.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    residual_is_sum = True  # pre-norm: out = x + attn(ln1(x)) + mlp(ln2(x)) (parallel) or the sequential sum

    def head_output_weights(self, layer: int) -> Optional[torch.Tensor]:
        """``attention.dense`` split per head (its bias is no head's)."""
        weight = self.layers[layer].attention.dense.weight  # [d_model, n_heads * d_head]
        return weight.T.reshape(self.n_heads, self.d_head, weight.shape[0])  # [n_heads, d_head, d_model]

    def norm_parameters(self, name: str) -> Optional[NormParameters]:
        """LayerNorms: ``input_layernorm`` (ln1), ``post_attention_layernorm`` (ln2), ``final_layer_norm``."""
        if name == "ln_final":
            norm = self.final_layer_norm
        else:
            _, layer, which = name.split(".")
            norm = self.layers[int(layer)].get_submodule(
                {"ln1": "input_layernorm", "ln2": "post_attention_layernorm"}[which])
        return NormParameters("layer", norm.weight, norm.bias, float(norm.eps))

    def self_attention(self, block: nn.Module) -> nn.Module:
        """The module that computes the attention pattern of ``block`` (its callbacks live on it)."""
        return block.get_submodule("attention")

    def hooks_inside(self, block: nn.Module) -> bool:
        return bool(ATTN_CALLBACKS.get(self.self_attention(block)))

    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        if name == "embed.hook_embed":
            return [self.embed_in.register_forward_hook(output_hook(fn, info)).remove]
        if name == "ln_final.hook_normalized":
            return [self.final_layer_norm.register_forward_hook(output_hook(fn, info)).remove]
        assert info.layer is not None, name
        block = self.layers[info.layer]
        attn, mlp = block.attention, block.mlp
        suffix = name.split(".", 2)[2]
        if suffix == "hook_resid_pre":
            return [block.register_forward_pre_hook(first_input_hook(fn, info, "hidden_states"),
                                                    with_kwargs=True).remove]
        if suffix in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            third = "qkv".index(suffix[-1])

            def qkv_hook(module, args, out):  # out: [batch, pos, 3 * d_model], laid out per head as GPT-NeoX reads it
                parts = list(out.view(*out.shape[:-1], self.n_heads, 3, self.d_head).unbind(-2))  # 3 x [b, p, h, d]
                new = fn(parts[third], info)  # [batch, pos, n_heads, d_head]
                if new is None:
                    return None
                parts[third] = new
                return torch.stack(parts, dim=-2).reshape(out.shape)
            return [attn.query_key_value.register_forward_hook(qkv_hook).remove]
        if suffix in ("attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern"):
            register_attention(ATTN_IMPLEMENTATION, hooked_gpt_neox_attention)
            key = {"attn.hook_rot_q": "rot_q", "attn.hook_rot_k": "rot_k", "attn.hook_attn_scores": "scores",
                   "attn.hook_pattern": "pattern"}[suffix]
            seen = heads_second(fn) if key.startswith("rot_") else fn
            return [attention_callback(self.model, attn, key, seen, info, ATTN_IMPLEMENTATION)]
        if suffix == "attn.hook_z":  # z [batch, pos, d_model] is the input of dense
            z_hook = first_input_hook(split_heads(fn, self.n_heads, self.d_head), info, "input")
            return [attn.dense.register_forward_pre_hook(z_hook, with_kwargs=True).remove]
        if suffix == "hook_resid_mid":  # listed (and so reachable) only for a sequential block
            def mid_hook(module, args, kwargs):
                hidden = args[0] if args else kwargs["input"]  # resid_mid, also the residual the MLP adds to
                new = fn(hidden, info)
                if new is not None and new is not hidden:
                    if new.shape != hidden.shape:
                        raise UserInputError(f"{name}: a replacement must keep the shape {tuple(hidden.shape)}, "
                                             f"got {tuple(new.shape)}")
                    hidden.copy_(new)  # in place: the layer norm and the residual connection both read this tensor
                return None
            return [block.post_attention_layernorm.register_forward_pre_hook(mid_hook, with_kwargs=True).remove]
        if suffix == "mlp.hook_post":
            return [mlp.dense_4h_to_h.register_forward_pre_hook(first_input_hook(fn, info, "input"),
                                                                with_kwargs=True).remove]
        module = {"ln1.hook_normalized": block.input_layernorm, "hook_attn_out": attn.dense,
                  "ln2.hook_normalized": block.post_attention_layernorm, "mlp.hook_pre": mlp.dense_h_to_4h,
                  "hook_mlp_out": mlp.dense_4h_to_h, "hook_resid_post": block}[suffix]
        return [module.register_forward_hook(output_hook(fn, info)).remove]
