"""The Llama family (Touvron et al., 2023, arXiv 2302.13971) and the decoders that share its module tree, Mistral
(Jiang et al., 2023, arXiv 2310.06825) and Qwen2 (Yang et al., 2024, arXiv 2407.10671): ``LlamaModel``,
``MistralModel`` and ``Qwen2Model`` in ``transformers``.

Their module tree: ``embed_tokens`` (no position embedding), ``layers[i]`` blocks of ``input_layernorm`` (RMSNorm,
Zhang & Sennrich 2019), ``self_attn`` (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``; grouped-query attention,
Ainslie et al. 2023, with ``num_key_value_heads`` K/V heads each shared by ``num_attention_heads / num_key_value_heads``
query heads; rotary position embeddings, Su et al. 2021, arXiv 2104.09864, applied to Q and K with the cos/sin that
the model's ``rotary_emb`` computes once per forward and hands every block as ``position_embeddings``),
``post_attention_layernorm`` (RMSNorm), ``mlp`` (SwiGLU, Shazeer 2020: ``down_proj(act_fn(gate_proj(x)) *
up_proj(x))``), and the final ``norm``. Each block computes ``mid = attn(input_layernorm(x)) + x`` and
``out = mlp(post_attention_layernorm(mid)) + mid``. Qwen2 adds biases to q/k/v_proj; Mistral (``sliding_window``) and
Qwen2 (``use_sliding_window``, on the layers from ``max_window_layers`` on) may let a query see only the last
``sliding_window`` keys, which the attention mask says (the eager attention function itself is the same).

These models have no hook points, so each name is bridged to a submodule with a temporary forward (pre-)hook. The
attention scores and pattern, and the rotated Q and K, are reached through an attention implementation registered
with ``transformers`` (``workbench_eager_llama``) that performs exactly the operations of the family's
``eager_attention_forward`` (``repeat_kv``, Q K^T * scaling, + mask, softmax in float32 cast back to Q's dtype,
dropout, the weighted values), in the same order, with the hook callbacks in between (:mod:`workbench.models.bridges`);
its mask is the eager mask, sliding window included. The RMSNorm's 1/rms factor is computed inside its forward, so
while a ``*.hook_scale`` is attached that norm runs :func:`rms_norm`, the same operations with the callbacks on the
factor. What each name means (``n_heads`` query heads, ``n_kv_heads`` key/value heads, ``d_head`` = ``head_dim``):

=====================================  ==============================================================================
``embed.hook_embed``                   ``embed_tokens`` output [batch, pos, d_model] = block 0's ``hook_resid_pre``
``blocks.i.hook_resid_pre``            input of block ``layers[i]``
``blocks.i.ln1.hook_scale``            ``input_layernorm``'s factor 1/sqrt(mean(x^2) + eps) [batch, pos, 1], computed
                                       (and replaceable) in float32, as the norm computes it
``blocks.i.ln1.hook_normalized``       ``input_layernorm`` output = weight * (x * scale), the input of attention
``blocks.i.attn.hook_q``               ``q_proj`` output before rotary, viewed [batch, pos, n_heads, d_head]
``blocks.i.attn.hook_k|hook_v``        ``k_proj`` / ``v_proj`` output (before rotary) [batch, pos, n_kv_heads, d_head]
``blocks.i.attn.hook_rot_q``           Q after the rotary embedding [batch, pos, n_heads, d_head]
``blocks.i.attn.hook_rot_k``           K after the rotary embedding [batch, pos, n_kv_heads, d_head] (one per K/V head:
                                       before ``repeat_kv``); with a KV cache, the keys the attention reads
``blocks.i.attn.hook_attn_scores``     rot_q rot_k^T * scaling + additive mask, pre-softmax, one per query head
                                       [batch, n_heads, q_pos, k_pos] (query head h reads K/V head
                                       h // (n_heads / n_kv_heads)); scaling is head_dim ** -0.5; the mask is causal
                                       plus padding plus, on sliding-window layers, keys at least ``sliding_window``
                                       positions back (masked = dtype min)
``blocks.i.attn.hook_pattern``         softmax of the scores (float32, cast to the model's dtype; before attention
                                       dropout) [batch, n_heads, q_pos, k_pos] = the model's own ``attentions``
``blocks.i.attn.hook_z``               per-head weighted values, the input of ``o_proj`` [batch, pos, n_heads, d_head]
``blocks.i.hook_attn_out``             ``o_proj`` output (before the residual)
``blocks.i.hook_resid_mid``            resid_pre + attn_out, the input of ``post_attention_layernorm`` (= the
                                       residual the MLP adds to)
``blocks.i.ln2.hook_scale``            ``post_attention_layernorm``'s 1/rms factor [batch, pos, 1] (float32)
``blocks.i.ln2.hook_normalized``       ``post_attention_layernorm`` output, the input of the MLP
``blocks.i.mlp.hook_pre``              ``gate_proj`` output, before the activation [batch, pos, d_ff]
``blocks.i.mlp.hook_pre_linear``       ``up_proj`` output [batch, pos, d_ff]
``blocks.i.mlp.hook_post``             act_fn(pre) * pre_linear, the input of ``down_proj`` [batch, pos, d_ff]
``blocks.i.hook_mlp_out``              ``mlp`` output (= ``down_proj`` output, before the residual)
``blocks.i.hook_resid_post``           block ``layers[i]`` output = resid_mid + mlp_out
``ln_final.hook_scale``                the final ``norm``'s 1/rms factor [batch, pos, 1] (float32)
``ln_final.hook_normalized``           the final ``norm``'s output = the model's ``last_hidden_state``
=====================================  ==============================================================================
All [batch, pos, d_model] unless noted.

``embed.hook_pos_embed`` is not in this family's list: rotary models add nothing to the residual stream for
position (positions enter only as the rotation of Q and K inside attention, which ``attn.hook_rot_q|rot_k`` show
next to the unrotated ``attn.hook_q|k``), and a zero tensor under that name would be a fake activation. Positions are
0..pos-1 whatever the padding (the workbench passes no ``position_ids``), so a decoder is tokenised with right
padding (:meth:`workbench.subject.Subject.tokenize`): the real tokens of a padded row are then computed exactly as
alone. Replacing ``hook_resid_mid``: the block adds the MLP's output to the very tensor it passes to
``post_attention_layernorm``, so the bridge writes the replacement into that tensor in place and both uses see it,
exactly (as for GPT-2). Replacing ``attn.hook_rot_k`` changes what attention reads in this forward, not the keys a
KV cache stored (the workbench runs whole sequences; generation with a cache under such a hook would see the
original keys). The LM head is left to the base class. Row pruning (:mod:`workbench.pruned_forward`) is written:
the last block computes every position's keys and values but only the target's rows' queries, attention, MLP and
norms (:func:`pruned_block_forward`).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

import torch
from torch import nn
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

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
from workbench.models.rows import RowSlot, gather_rows, scatter_rows

ATTN_IMPLEMENTATION = "workbench_eager_llama"

# Per-block hook names of the Llama block, in forward order.
HOOK_NAMES_PER_BLOCK = (
    "hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
    "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z",
    "hook_attn_out", "hook_resid_mid", "ln2.hook_scale", "ln2.hook_normalized", "mlp.hook_pre",
    "mlp.hook_pre_linear", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
)
FINAL_HOOK_NAMES = ("ln_final.hook_scale", "ln_final.hook_normalized")

# RMSNorm module -> the callbacks on its 1/rms factor; filled only while ``*.hook_scale`` hooks are on.
NORM_CALLBACKS: "weakref.WeakKeyDictionary[nn.Module, list[Callable]]" = weakref.WeakKeyDictionary()


def rms_norm(norm: nn.Module, hidden: torch.Tensor, callbacks: tuple[Callable, ...] = ()) -> torch.Tensor:
    """The family's RMSNorm forward (``LlamaRMSNorm``, ``MistralRMSNorm``, ``Qwen2RMSNorm``: the same code), op for
    op, with ``callbacks`` on the factor 1/rms.

    Args:
        hidden: [..., d_model].

    Returns:
        weight * (hidden * scale) in ``hidden``'s dtype, [..., d_model].
    """
    input_dtype = hidden.dtype
    hidden = hidden.to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)  # [..., 1]
    scale = torch.rsqrt(variance + getattr(norm, "variance_epsilon"))  # [..., 1]
    for callback in callbacks:
        scale = callback(scale)
    hidden = hidden * scale
    return getattr(norm, "weight") * hidden.to(input_dtype)


def scale_callback(norm: nn.Module, fn: HookFn, info: HookInfo) -> Undo:
    """Show ``fn`` the 1/rms factor of ``norm`` by running :func:`rms_norm` as its forward while it is attached;
    returns what detaches it (and restores the norm's own forward when no callback is left)."""
    def callback(tensor: torch.Tensor) -> torch.Tensor:
        new = fn(tensor, info)
        return tensor if new is None else new
    callbacks = NORM_CALLBACKS.setdefault(norm, [])
    callbacks.append(callback)
    if len(callbacks) == 1:
        # An instance attribute shadows the class's forward; nn.Module.__call__ (and its hooks) run it.
        norm.forward = lambda hidden_states: rms_norm(norm, hidden_states, tuple(NORM_CALLBACKS.get(norm, ())))

    def remove() -> None:
        entry = NORM_CALLBACKS.get(norm, [])
        entry.remove(callback)
        if not entry:
            NORM_CALLBACKS.pop(norm, None)
            if "forward" in norm.__dict__:
                del norm.forward
    return remove


def hooked_llama_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: Optional[torch.Tensor], scaling: float, dropout: float = 0.0,
                           **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The family's ``eager_attention_forward`` (Llama's, Mistral's and Qwen2's are the same code), op for op, with
    the rot_q/rot_k/score/pattern callbacks. ``sliding_window`` arrives in ``kwargs`` and, as in eager, is already
    in the mask.

    Args:
        query: rotated Q [batch, n_heads, pos, d_head]; key, value: [batch, n_kv_heads, pos, d_head].
        attention_mask: additive [batch, 1, query_pos, key_pos] (causal, padding, sliding window) or None.

    Returns:
        (z [batch, pos, n_heads, d_head], pattern [batch, n_heads, query_pos, key_pos]).
    """
    return rotary_eager_attention(module, query, key, value, attention_mask, scaling, dropout,
                                  getattr(module, "num_key_value_groups"))


def pruned_block_forward(block: nn.Module, slot: RowSlot) -> Callable[..., torch.Tensor]:
    """The decoder layer's forward computing only ``slot.rows`` (the full forward when they are unset): the same
    operations as the layer and its eager attention on those rows, every position's keys and values.

    Returns a function of the layer's arguments returning [batch, pos, d_model]: the block's output at the rows,
    zeros elsewhere (:mod:`workbench.pruned_forward`).
    """
    original = block.forward
    attn: Any = block.get_submodule("self_attn")
    ln1: Any = block.get_submodule("input_layernorm")
    ln2: Any = block.get_submodule("post_attention_layernorm")
    mlp: Any = block.get_submodule("mlp")

    def forward(hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *args: Any,
                **kwargs: Any) -> torch.Tensor:
        rows = slot.rows
        batch, n_pos, _ = hidden_states.shape
        mask = attention_mask  # [batch, 1, query_pos, key_pos]: additive (eager) or boolean (sdpa), or None
        if rows is None or mask is None or mask.dim() != 4 or mask.shape[2:] != (n_pos, n_pos):
            # no rows; or no mask (sdpa's implicit causal one) or past keys (a cache): the full forward
            return original(hidden_states, attention_mask, *args, **kwargs)
        if mask.dtype == torch.bool:  # True = may attend, as sdpa reads it; eager's additive form
            mask = torch.zeros((), dtype=hidden_states.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(hidden_states.dtype).min)
        k = rows.shape[1]
        normed = ln1(hidden_states)  # [batch, pos, d_model]: every key and value needs it
        query = attn.q_proj(gather_rows(normed, rows)).view(batch, k, -1, attn.head_dim).transpose(1, 2)
        keys = attn.k_proj(normed).view(batch, n_pos, -1, attn.head_dim).transpose(1, 2)  # [batch, n_kv, pos, d]
        values = attn.v_proj(normed).view(batch, n_pos, -1, attn.head_dim).transpose(1, 2)
        cos, sin = kwargs["position_embeddings"]  # [batch or 1, pos, d_head]
        cos_rows, sin_rows = (gather_rows(t.expand(batch, -1, -1), rows) for t in (cos, sin))  # [batch, k, d_head]
        query = query * cos_rows.unsqueeze(1) + rotate_half(query) * sin_rows.unsqueeze(1)  # [batch, n_heads, k, d]
        keys = keys * cos.unsqueeze(1) + rotate_half(keys) * sin.unsqueeze(1)
        keys, values = repeat_kv(keys, attn.num_key_value_groups), repeat_kv(values, attn.num_key_value_groups)
        weights = torch.matmul(query, keys.transpose(2, 3)) * attn.scaling  # [batch, n_heads, k, pos]
        weights = weights + mask.gather(2, rows[:, None, :, None].expand(-1, mask.shape[1], -1, n_pos))
        weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
        z = torch.matmul(weights, values).transpose(1, 2).reshape(batch, k, -1)  # [batch, k, n_heads * d_head]
        mid = gather_rows(hidden_states, rows) + attn.o_proj(z)  # [batch, k, d_model]
        return scatter_rows(hidden_states, rows, mid + mlp(ln2(mid)))  # [batch, pos, d_model]

    return forward


class LlamaAdapter(ModelAdapter):
    """Llama, Mistral and Qwen2 base models (``family`` is the checkpoint's ``model_type``)."""

    family = "llama"
    kind = "hf"
    n_kv_heads: int  # set from the config (num_key_value_heads)
    model_inputs = ("input_ids", "attention_mask")

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        config: Any = getattr(model, "config", None)
        name = getattr(config, "model_type", type(model).__name__)
        for attribute in ("embed_tokens", "layers", "norm", "rotary_emb"):
            if not hasattr(model, attribute):
                raise UserInputError(f"{name}: not a Llama-layout base model (no .{attribute}; "
                                     f"load it with AutoModel, not a head class)")
        # head_dim may be set apart from d_model / n_heads (Mistral-Nemo: 128 with 5120 / 32).
        super().__init__(model, n_heads, int(getattr(config, "head_dim", None) or d_head))
        self.family = str(name)
        self.n_kv_heads = int(getattr(config, "num_key_value_heads", None) or n_heads)
        self.embed: Any = model.get_submodule("embed_tokens")
        self.norm: Any = model.get_submodule("norm")
        self.layers: list[Any] = list(model.get_submodule("layers").children())

    def hook_names(self) -> list[str]:
        return (["embed.hook_embed"] + [f"blocks.{i}.{n}" for i in range(len(self.layers)) for n in HOOK_NAMES_PER_BLOCK]
                + list(FINAL_HOOK_NAMES))

    def embedding_module(self) -> nn.Module:
        """``embed_tokens``: the only embedding (positions enter inside attention, as rotations of Q and K)."""
        return self.embed

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """The final RMSNorm applied to a residual stream [..., d_model] (its own operations, without firing the
        ``ln_final.*`` bridges)."""
        return rms_norm(self.norm, hidden)

    residual_is_sum = True  # pre-norm blocks: mid = attn(input_layernorm(x)) + x, out = mlp(...(mid)) + mid

    def head_output_weights(self, layer: int) -> Optional[torch.Tensor]:
        """``o_proj`` split per query head: head h writes ``z[..., h, :] @ W[h]`` (``o_proj``'s bias, where a
        config has one, is no head's)."""
        weight = self.layers[layer].self_attn.o_proj.weight  # [d_model, n_heads * d_head]
        return weight.T.reshape(self.n_heads, self.d_head, weight.shape[0])  # [n_heads, d_head, d_model]

    def norm_parameters(self, name: str) -> Optional[NormParameters]:
        """RMSNorm (no mean subtraction, no bias): ``input_layernorm`` (ln1), ``post_attention_layernorm`` (ln2),
        ``norm`` (ln_final)."""
        if name == "ln_final":
            norm = self.norm
        else:
            _, layer, which = name.split(".")
            norm = self.layers[int(layer)].get_submodule(
                {"ln1": "input_layernorm", "ln2": "post_attention_layernorm"}[which])
        return NormParameters("rms", norm.weight, None, float(norm.variance_epsilon))

    def self_attention(self, block: nn.Module) -> nn.Module:
        """The module that computes the attention pattern of ``block`` (its callbacks live on it)."""
        return block.get_submodule("self_attn")

    def hooks_inside(self, block: nn.Module) -> bool:
        norms = (block.get_submodule("input_layernorm"), block.get_submodule("post_attention_layernorm"))
        return bool(ATTN_CALLBACKS.get(self.self_attention(block))) or any(n in NORM_CALLBACKS for n in norms)

    def prune_refusal(self, block: nn.Module) -> Optional[str]:
        return None

    def pruned_forward(self, block: nn.Module, slot: RowSlot) -> Callable[..., object]:
        return pruned_block_forward(block, slot)

    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        if name == "embed.hook_embed":
            return [self.embed.register_forward_hook(output_hook(fn, info)).remove]
        if name == "ln_final.hook_scale":
            return [scale_callback(self.norm, fn, info)]
        if name == "ln_final.hook_normalized":
            return [self.norm.register_forward_hook(output_hook(fn, info)).remove]
        assert info.layer is not None, name
        block = self.layers[info.layer]
        attn, mlp = block.self_attn, block.mlp
        suffix = name.split(".", 2)[2]
        if suffix == "hook_resid_pre":
            return [block.register_forward_pre_hook(first_input_hook(fn, info, "hidden_states"),
                                                    with_kwargs=True).remove]
        if suffix in ("ln1.hook_scale", "ln2.hook_scale"):
            norm = block.input_layernorm if suffix.startswith("ln1") else block.post_attention_layernorm
            return [scale_callback(norm, fn, info)]
        if suffix in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            projection = {"q": attn.q_proj, "k": attn.k_proj, "v": attn.v_proj}[suffix[-1]]
            heads = self.n_heads if suffix.endswith("q") else self.n_kv_heads
            return [projection.register_forward_hook(output_hook(split_heads(fn, heads, self.d_head), info)).remove]
        if suffix in ("attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern"):
            register_attention(ATTN_IMPLEMENTATION, hooked_llama_attention)
            key = {"attn.hook_rot_q": "rot_q", "attn.hook_rot_k": "rot_k", "attn.hook_attn_scores": "scores",
                   "attn.hook_pattern": "pattern"}[suffix]
            callback = heads_second(fn) if key.startswith("rot_") else fn
            return [attention_callback(self.model, attn, key, callback, info, ATTN_IMPLEMENTATION)]
        if suffix == "attn.hook_z":  # z [batch, pos, n_heads * d_head] is the input of o_proj
            z_hook = first_input_hook(split_heads(fn, self.n_heads, self.d_head), info, "input")
            return [attn.o_proj.register_forward_pre_hook(z_hook, with_kwargs=True).remove]
        if suffix == "hook_resid_mid":
            def mid_hook(module, args, kwargs):
                hidden = args[0] if args else kwargs["hidden_states"]  # resid_mid, also the MLP's residual
                new = fn(hidden, info)
                if new is not None and new is not hidden:
                    if new.shape != hidden.shape:
                        raise UserInputError(f"{name}: a replacement must keep the shape {tuple(hidden.shape)}, "
                                             f"got {tuple(new.shape)}")
                    hidden.copy_(new)  # in place: the norm and the residual connection both read this tensor
                return None
            return [block.post_attention_layernorm.register_forward_pre_hook(mid_hook, with_kwargs=True).remove]
        if suffix == "mlp.hook_post":
            return [mlp.down_proj.register_forward_pre_hook(first_input_hook(fn, info, "input"),
                                                            with_kwargs=True).remove]
        module = {"ln1.hook_normalized": block.input_layernorm, "hook_attn_out": attn.o_proj,
                  "ln2.hook_normalized": block.post_attention_layernorm, "mlp.hook_pre": mlp.gate_proj,
                  "mlp.hook_pre_linear": mlp.up_proj, "hook_mlp_out": mlp, "hook_resid_post": block}[suffix]
        return [module.register_forward_hook(output_hook(fn, info)).remove]
