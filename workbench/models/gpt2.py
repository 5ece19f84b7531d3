"""The GPT-2 family (Radford et al., 2019): a pre-norm causal decoder, ``GPT2Model`` in ``transformers``.

Its module tree: ``wte`` and ``wpe`` (token and learned position embeddings, added inside ``GPT2Model.forward``),
``h[i]`` blocks of ``ln_1``, ``attn`` (``c_attn``: one fused Conv1D producing Q, K and V, then ``c_proj``),
``ln_2``, ``mlp`` (``c_fc``, ``act``, ``c_proj``), and the final ``ln_f``. Each block computes
``mid = attn(ln_1(x)) + x`` and ``out = mlp(ln_2(mid)) + mid``.

A GPT-2 model has no hook points, so each name is bridged to a submodule with a temporary forward (pre-)hook, and
the attention scores and pattern, which GPT-2 computes inside an ``ALL_ATTENTION_FUNCTIONS`` function, are reached
through an attention implementation registered with ``transformers`` (``workbench_eager_gpt2``) that performs
exactly the operations of GPT-2's eager attention (or, for a config with ``reorder_and_upcast_attn``, of its
upcast-and-reordered attention), in the same order, with the hook callbacks in between; the callbacks live in
BERT's table (:data:`workbench.models.bert.ATTN_CALLBACKS`, keyed by attention module). What each name means:

=================================  ===================================================================
``embed.hook_embed``               ``wte`` output (token embeddings) [batch, pos, d_model]
``embed.hook_pos_embed``           ``wpe`` output, expanded to [batch, pos, d_model] (positions 0..pos-1, as GPT-2
                                   numbers them whatever the padding: right padding keeps real tokens exact)
``blocks.i.hook_resid_pre``        input of block ``h[i]`` (block 0: wte + wpe, after embedding dropout)
``blocks.i.ln1.hook_normalized``   ``ln_1`` output, the input of attention
``blocks.i.attn.hook_q|k|v``       the three thirds of the fused ``attn.c_attn`` output (GPT-2's own split),
                                   each viewed [batch, pos, n_heads, d_head]
``blocks.i.attn.hook_attn_scores`` Q K^T * scaling + additive mask, pre-softmax [batch, n_heads, q_pos, k_pos];
                                   scaling is 1/sqrt(d_head) (1 without ``scale_attn_weights``, further / (i+1)
                                   with ``scale_attn_by_inverse_layer_idx``); the mask is causal plus padding
                                   (masked = dtype min)
``blocks.i.attn.hook_pattern``     softmax of the scores (before attention dropout) [batch, n_heads, q_pos, k_pos]
``blocks.i.attn.hook_z``           per-head weighted values, the input of ``attn.c_proj``,
                                   viewed [batch, pos, n_heads, d_head]
``blocks.i.hook_attn_out``         ``attn.c_proj`` output (W_O z + b, before residual dropout and the residual)
``blocks.i.hook_resid_mid``        resid_pre + attn_out, the input of ``ln_2`` (= the residual the MLP adds to)
``blocks.i.ln2.hook_normalized``   ``ln_2`` output, the input of the MLP
``blocks.i.mlp.hook_pre``          ``mlp.c_fc`` output [batch, pos, d_ff]
``blocks.i.mlp.hook_post``         after the activation: the input of ``mlp.c_proj`` [batch, pos, d_ff]
``blocks.i.hook_mlp_out``          ``mlp.c_proj`` output (before dropout and the residual)
``blocks.i.hook_resid_post``       block ``h[i]`` output = resid_mid + mlp_out (in eval mode; dropout otherwise)
``ln_final.hook_normalized``       ``ln_f`` output = the model's ``last_hidden_state``
=================================  ===================================================================

Replacing ``hook_resid_mid``: GPT-2 adds the MLP's output to the very tensor it passes to ``ln_2``, so the bridge
(a pre-hook on ``ln_2``) writes the replacement into that tensor in place, and both uses see it, exactly; a hook
that kept the tensor it was given (one attached earlier at the same name) therefore sees the replacement too.
The tensor given to ``ln_2`` is resid_mid only while no ``encoder_hidden_states`` are passed (a GPT-2 with
``add_cross_attention`` would then put cross-attention in between; the workbench never passes them).

Every name is had exactly; nothing is left out. ``embed.hook_embed`` would also see the token-type embeddings,
which GPT-2 looks up in ``wte``, but the family's inputs are ``input_ids`` and ``attention_mask`` only.
:meth:`GPT2Adapter.embedding_module` is a container of ``wte`` and ``wpe`` (no one GPT-2 module computes the
embedding): it holds the embedding parameters, it is not a hook point. Row pruning is not written for this
family (the base class refuses it); the LM head is the base class's generic one (``GPT2LMHeadModel`` around this
model, its projection tied to ``wte`` or read from the checkpoint: :mod:`workbench.models.causal_head`).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError
from workbench.models.base import (
    CurrentInputs,
    HookFn,
    HookInfo,
    ModelAdapter,
    NormParameters,
    Undo,
    block_hook_names,
)
from workbench.models.bridges import (
    ATTN_CALLBACKS,
    attention_callback,
    first_input_hook,
    output_hook,
    position_hook,
    register_attention,
    run_callbacks,
    split_heads,
)

ATTN_IMPLEMENTATION = "workbench_eager_gpt2"

# Per-block hook names of GPT-2's pre-norm block, in forward order.
HOOK_NAMES_PER_BLOCK = (
    "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
    "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre",
    "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
)


def hooked_gpt2_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None,
                          dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-2's eager attention (``eager_attention_forward``, or ``GPT2Attention._upcast_and_reordered_attn``
    when the module reorders and upcasts), op for op, with the score/pattern callbacks.

    Args:
        query, key, value: [batch, n_heads, pos, d_head].
        attention_mask: additive [batch, 1, query_pos, key_pos] (causal and padding) or None.

    Returns:
        (z [batch, pos, n_heads, d_head], pattern [batch, n_heads, query_pos, key_pos]).
    """
    callbacks = ATTN_CALLBACKS.get(module, {})
    if getattr(module, "reorder_and_upcast_attn", False):
        from transformers.utils.generic import maybe_autocast

        bsz, num_heads, q_seq_len, dk = query.size()
        k_seq_len = key.size(-2)
        weights = torch.empty(bsz * num_heads, q_seq_len, k_seq_len, dtype=torch.float32, device=query.device)
        with maybe_autocast(query.device.type, enabled=False):
            q, k = query.reshape(-1, q_seq_len, dk), key.transpose(-1, -2).reshape(-1, dk, k_seq_len)
            weights = torch.baddbmm(weights, q.float(), k.float(), beta=0, alpha=getattr(module, "scaling"))
            weights = weights.reshape(bsz, num_heads, q_seq_len, k_seq_len)
        if attention_mask is not None:
            weights = weights + attention_mask
        weights = run_callbacks(callbacks, "scores", weights)
        weights = nn.functional.softmax(weights, dim=-1)
        weights = run_callbacks(callbacks, "pattern", weights)
        weights = weights.type(value.dtype)
        weights = module.get_submodule("attn_dropout")(weights)
    else:
        if scaling is None:
            scaling = query.size(-1) ** -0.5
        weights = torch.matmul(query, key.transpose(-1, -2)) * scaling  # [batch, n_heads, query_pos, key_pos]
        if attention_mask is not None:
            weights = weights + attention_mask
        weights = run_callbacks(callbacks, "scores", weights)
        weights = nn.functional.softmax(weights, dim=-1)
        weights = run_callbacks(callbacks, "pattern", weights)
        weights = weights.type(value.dtype)
        weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2)  # [batch, pos, n_heads, d_head]
    return output, weights


class GPT2Adapter(ModelAdapter):
    family = "gpt2"
    kind = "hf"
    model_inputs = ("input_ids", "attention_mask")

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        for attribute in ("wte", "wpe", "h", "ln_f"):
            if not hasattr(model, attribute):
                name = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
                raise UserInputError(f"{name}: not a GPT-2 base model (no .{attribute}; "
                                     f"load it with AutoModel, not a head class)")
        super().__init__(model, n_heads, d_head)
        self.wte: Any = model.get_submodule("wte")
        self.wpe: Any = model.get_submodule("wpe")
        self.ln_f: Any = model.get_submodule("ln_f")
        self.layers: list[Any] = list(model.get_submodule("h").children())
        self.embeddings = nn.ModuleList([self.wte, self.wpe])

    def hook_names(self) -> list[str]:
        return block_hook_names(len(self.layers), HOOK_NAMES_PER_BLOCK)

    def embedding_module(self) -> nn.Module:
        """``wte`` and ``wpe`` in one container (for their parameters; GPT-2 adds them in its forward)."""
        return self.embeddings

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """``ln_f`` applied to a residual stream [..., d_model] (its own operation, without firing the
        ``ln_final.hook_normalized`` bridge on it)."""
        norm = self.ln_f
        return F.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    residual_is_sum = True  # pre-norm blocks: mid = attn(ln_1(x)) + x, out = mlp(ln_2(mid)) + mid

    def head_output_weights(self, layer: int) -> Optional[torch.Tensor]:
        """``attn.c_proj`` (a Conv1D, weight [in, out]) split per head."""
        weight = self.layers[layer].get_submodule("attn").c_proj.weight  # [n_heads * d_head, d_model]
        return weight.reshape(self.n_heads, self.d_head, weight.shape[1])  # [n_heads, d_head, d_model]

    def norm_parameters(self, name: str) -> Optional[NormParameters]:
        if name == "ln_final":
            norm = self.ln_f
        else:
            _, layer, which = name.split(".")
            norm = self.layers[int(layer)].get_submodule({"ln1": "ln_1", "ln2": "ln_2"}[which])
        return NormParameters("layer", norm.weight, norm.bias, float(norm.eps))

    def self_attention(self, block: nn.Module) -> nn.Module:
        """The module that computes the attention pattern of ``block`` (its callbacks live on it)."""
        return block.get_submodule("attn")

    def hooks_inside(self, block: nn.Module) -> bool:
        return bool(ATTN_CALLBACKS.get(self.self_attention(block)))

    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        if name == "embed.hook_embed":
            return [self.wte.register_forward_hook(output_hook(fn, info)).remove]
        if name == "embed.hook_pos_embed":
            return [self.wpe.register_forward_hook(position_hook(fn, info, current)).remove]
        if name == "ln_final.hook_normalized":
            return [self.ln_f.register_forward_hook(output_hook(fn, info)).remove]
        assert info.layer is not None, name
        block = self.layers[info.layer]
        attn, mlp = block.attn, block.mlp
        suffix = name.split(".", 2)[2]
        heads = (self.n_heads, self.d_head)
        if suffix == "hook_resid_pre":
            return [block.register_forward_pre_hook(first_input_hook(fn, info, "hidden_states"),
                                                    with_kwargs=True).remove]
        if suffix in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            third = "qkv".index(suffix[-1])

            def qkv_hook(module, args, out):  # out: [batch, pos, 3 * d_model], split as GPT-2 splits it
                parts = list(out.split(attn.split_size, dim=2))  # 3 x [batch, pos, d_model]
                part = parts[third]
                new = fn(part.view(*part.shape[:-1], *heads), info)  # [batch, pos, n_heads, d_head]
                if new is None:
                    return None
                parts[third] = new.reshape(part.shape)
                return torch.cat(parts, dim=2)
            return [attn.c_attn.register_forward_hook(qkv_hook).remove]
        if suffix in ("attn.hook_attn_scores", "attn.hook_pattern"):
            register_attention(ATTN_IMPLEMENTATION, hooked_gpt2_attention)
            key = "scores" if suffix.endswith("scores") else "pattern"
            return [attention_callback(self.model, self.self_attention(block), key, fn, info, ATTN_IMPLEMENTATION)]
        if suffix == "attn.hook_z":  # z [batch, pos, d_model] is the input of c_proj
            z_hook = first_input_hook(split_heads(fn, self.n_heads, self.d_head), info, "x")
            return [attn.c_proj.register_forward_pre_hook(z_hook, with_kwargs=True).remove]
        if suffix == "hook_resid_mid":
            def mid_hook(module, args, kwargs):
                hidden = args[0] if args else kwargs["input"]  # resid_mid, also the residual the MLP adds to
                new = fn(hidden, info)
                if new is not None and new is not hidden:
                    if new.shape != hidden.shape:
                        raise UserInputError(f"{name}: a replacement must keep the shape {tuple(hidden.shape)}, "
                                             f"got {tuple(new.shape)}")
                    hidden.copy_(new)  # in place: ln_2 and the residual connection both read this tensor
                return None
            return [block.ln_2.register_forward_pre_hook(mid_hook, with_kwargs=True).remove]
        if suffix == "mlp.hook_post":
            return [mlp.c_proj.register_forward_pre_hook(first_input_hook(fn, info, "x"), with_kwargs=True).remove]
        module = {"ln1.hook_normalized": block.ln_1, "hook_attn_out": attn.c_proj, "ln2.hook_normalized": block.ln_2,
                  "mlp.hook_pre": mlp.c_fc, "hook_mlp_out": mlp.c_proj, "hook_resid_post": block}[suffix]
        return [module.register_forward_hook(output_hook(fn, info)).remove]
