"""The ModernBERT family (Warner et al., 2024, "Smarter, Better, Faster, Longer", arXiv 2412.13663): a pre-norm
encoder with rotary position embeddings (Su et al., 2021, arXiv 2104.09864), alternating global and sliding-window
local attention, and a GeGLU MLP (Shazeer, 2020, arXiv 2002.05202); ``ModernBertModel`` in ``transformers``.

Its module tree: ``embeddings`` (``tok_embeddings``, then ``norm`` and ``drop``), ``layers[i]`` of ``attn_norm``
(``nn.Identity`` in layer 0, whose input is already the normalised embedding), ``attn`` (``Wqkv``: one fused
linear producing Q, K and V; rotary embeddings applied to Q and K; the attention function; ``Wo``, ``out_drop``),
``mlp_norm``, ``mlp`` (``Wi`` producing the activation's input and the gate in one matrix, ``act``, ``drop``,
``Wo``), and the final ``final_norm``. Each layer computes ``mid = x + attn(attn_norm(x))`` and
``out = mid + mlp(mlp_norm(mid))``. Every ``global_attn_every_n_layers``-th layer (layer 0 first) attends
globally with rotary base ``global_rope_theta``; the others attend to keys within ``local_attention // 2``
positions of the query (``|q - k| <= local_attention // 2``) with rotary base ``local_rope_theta``
(``config.layer_types`` says which is which; rotary positions are 0..pos-1, whatever the padding).

``transformers`` unpads the batch only for flash attention; the workbench loads ModernBERT eagerly
(:func:`atinuke.encoders.load_encoder`'s default), the padded path with an additive mask that carries both the
padding and the sliding window. The scores and pattern, computed inside an ``ALL_ATTENTION_FUNCTIONS`` function, and
the rotated queries and keys, which that function receives, are reached through an attention implementation
registered with ``transformers`` (``workbench_eager_modernbert``): ModernBERT's eager attention op for op (softmax
in float32, cast back to the query's dtype), with the hook callbacks in between; it is switched on only while such a
hook is attached. Every other name is bridged to a submodule with a temporary forward (pre-)hook. What each name
means:

==================================  ==================================================================================
``embed.hook_embed``                ``embeddings.tok_embeddings`` output (token embeddings, before the norm)
``blocks.i.hook_resid_pre``         input of ``layers[i]`` (layer 0: ``embeddings.norm`` output after its dropout)
``blocks.i.ln1.hook_normalized``    ``attn_norm`` output, the input of attention (layer 0: ``nn.Identity``, so it
                                    equals resid_pre; replacing it changes attention's input, not the residual)
``blocks.i.attn.hook_q|k|v``        the three thirds of the fused ``attn.Wqkv`` output (ModernBERT's own split),
                                    each viewed [batch, pos, n_heads, d_head]; q and k before the rotary embedding
``blocks.i.attn.hook_rot_q|rot_k``  q and k after the rotary embedding (the layer type's base and positions), as the
                                    attention function receives them, viewed [batch, pos, n_heads, d_head]
``blocks.i.attn.hook_attn_scores``  rot_q rot_k^T / sqrt(d_head) + the additive mask (padding keys and, on a local
                                    layer, keys outside the sliding window = dtype min), pre-softmax
                                    [batch, n_heads, q_pos, k_pos]
``blocks.i.attn.hook_pattern``      softmax of the scores (before attention dropout) [batch, n_heads, q_pos, k_pos]
``blocks.i.attn.hook_z``            per-head weighted values, the input of ``attn.Wo``, viewed
                                    [batch, pos, n_heads, d_head]
``blocks.i.hook_attn_out``          ``attn`` output: ``out_drop(Wo z)``, the term the residual adds
``blocks.i.hook_resid_mid``         resid_pre + attn_out, the input of ``mlp_norm`` (= the residual the MLP adds to)
``blocks.i.ln2.hook_normalized``    ``mlp_norm`` output, the input of the MLP
``blocks.i.mlp.hook_pre``           the first half of ``mlp.Wi``'s output, the activation's input [batch, pos, d_ff]
``blocks.i.mlp.hook_pre_linear``    the second half of ``mlp.Wi``'s output, the linear gate [batch, pos, d_ff]
``blocks.i.mlp.hook_post``          act(pre) * pre_linear after ``mlp.drop``: the input of ``mlp.Wo``
                                    [batch, pos, d_ff]
``blocks.i.hook_mlp_out``           ``mlp`` output (``Wo`` of hook_post), the term the residual adds
``blocks.i.hook_resid_post``        ``layers[i]`` output = resid_mid + mlp_out
``ln_final.hook_normalized``        ``final_norm`` output = the model's ``last_hidden_state``
==================================  ==================================================================================

There is no ``embed.hook_pos_embed``: ModernBERT adds no position vector to the residual stream; position enters
only through the rotary embedding of q and k inside attention, which ``attn.hook_rot_q|rot_k`` expose. Nor is there
an ``embed.hook_normalized``: the embedding norm's output, in eval mode (where the embedding dropout is the
identity), is the very tensor ``blocks.0.hook_resid_pre`` sees, so a second name would cache it twice and count it
twice in a sweep over names. The dropouts are the identity in eval mode, in which the workbench runs models; in
training mode the names sit where the table says (hook_attn_out and hook_mlp_out are what the residual adds).

Replacing ``hook_resid_mid``: the layer adds the MLP's output to the very tensor it passes to ``mlp_norm``, so the
bridge (a pre-hook on ``mlp_norm``) writes the replacement into that tensor in place, and both uses see it, exactly,
as in :mod:`workbench.models.gpt2`. ``mlp.hook_pre`` and ``mlp.hook_pre_linear`` are two views of one ``Wi`` output:
each bridge re-splits what the previous hook returned, so hooks at both names compose.

Row pruning (:mod:`workbench.pruned_forward`) is written for the eager and SDPA paths: the last layer computes
the attention output, MLP and norms at the target's rows only (the fused Q/K/V projection and the keys' rotary
embedding at every row, with ``transformers``' own rotary function; the mask's rows gathered, so a local last
layer keeps its window). :meth:`ModernBertAdapter.head_output_weights` splits ``attn.Wo`` per head (what head h
writes into the residual stream). A ``ModernBertForMaskedLM`` checkpoint, the form in which ModernBERT is
published, loads as its encoder (:data:`atinuke.encoders.UNUSED_HEAD_PREFIXES` leaves ``head.`` and ``decoder.``
unused); the masked-LM head itself is not wired to the workbench's LM read-out (the base class refuses it).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Optional, cast

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
    heads_second,
    output_hook,
    register_attention,
    rotary_eager_attention,
    split_heads,
)
from workbench.models.rows import RowSlot, gather_rows, scatter_rows

ATTN_IMPLEMENTATION = "workbench_eager_modernbert"

# Per-block hook names of ModernBERT's pre-norm block, in forward order.
HOOK_NAMES_PER_BLOCK = (
    "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q",
    "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
    "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post",
    "hook_mlp_out", "hook_resid_post",
)
# Attention-function callback keys beyond bridges' "scores" and "pattern": the rotated query and key.
ROTATED = {"attn.hook_rot_q": "rot_q", "attn.hook_rot_k": "rot_k"}


def hooked_modernbert_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                attention_mask: Optional[torch.Tensor], scaling: float, dropout: float = 0.0,
                                **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """ModernBERT's eager attention (``eager_attention_forward`` of ``modeling_modernbert``), op for op, with the
    rotated-q/k, score and pattern callbacks. ``sliding_window`` arrives in ``kwargs`` and, as in the eager path,
    is not used here: the mask already carries the window.

    Args:
        query, key: rotated, [batch, n_heads, pos, d_head]; value: [batch, n_heads, pos, d_head].
        attention_mask: additive [batch, 1, query_pos, key_pos] (padding, and the window on local layers) or None.

    Returns:
        (z [batch, pos, n_heads, d_head], pattern [batch, n_heads, query_pos, key_pos]).
    """
    return rotary_eager_attention(module, query, key, value, attention_mask, scaling, dropout)


def split_output_hook(fn: HookFn, info: HookInfo, part: int, n_parts: int,
                      view: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
    """A forward hook on a fused linear layer whose output is ``n_parts`` equal chunks of the last dimension (as
    the family splits it): ``fn`` sees chunk ``part`` through ``view`` and its replacement is put back in place."""
    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> Optional[torch.Tensor]:
        parts = list(out.chunk(n_parts, dim=-1))  # n_parts x [batch, pos, width]
        new = fn(view(parts[part]), info)
        if new is None:
            return None
        parts[part] = new.reshape(parts[part].shape)
        return torch.cat(parts, dim=-1)
    return hook


class ModernBertAdapter(ModelAdapter):
    family = "modernbert"
    kind = "hf"
    model_inputs = ("input_ids", "attention_mask")

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        for attribute in ("embeddings", "layers", "final_norm"):
            if not hasattr(model, attribute):
                name = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
                raise UserInputError(f"{name}: not a ModernBERT base model (no .{attribute}; "
                                     f"load it with AutoModel, not a head class)")
        super().__init__(model, n_heads, d_head)
        self.embeddings: Any = model.get_submodule("embeddings")
        self.norm: Any = model.get_submodule("final_norm")
        self.layers: list[Any] = list(model.get_submodule("layers").children())

    def hook_names(self) -> list[str]:
        # ModernBERT has no position embedding (rotary only): embed.hook_pos_embed is left out.
        names = block_hook_names(len(self.layers), HOOK_NAMES_PER_BLOCK)
        return [n for n in names if n != "embed.hook_pos_embed"]

    def embedding_module(self) -> nn.Module:
        return self.embeddings

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """``final_norm`` applied to a residual stream [..., d_model] (its own operation, without firing the
        ``ln_final.hook_normalized`` bridge on it)."""
        norm = self.norm
        return F.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    def self_attention(self, block: nn.Module) -> nn.Module:
        """The module that computes the attention pattern of ``block`` (its callbacks live on it)."""
        return block.get_submodule("attn")

    def hooks_inside(self, block: nn.Module) -> bool:
        return bool(ATTN_CALLBACKS.get(self.self_attention(block)))

    residual_is_sum = True  # pre-norm: mid = x + attn(attn_norm(x)), out = mid + mlp(mlp_norm(mid))

    def norm_parameters(self, name: str) -> Optional[NormParameters]:
        """LayerNorms (bias-free unless ``norm_bias``): ``attn_norm`` (ln1; None in layer 0, an ``nn.Identity``),
        ``mlp_norm`` (ln2), ``final_norm``. (The embedding norm is inside the ``embed`` part: block 0's input.)"""
        if name == "ln_final":
            norm = self.norm
        else:
            _, layer, which = name.split(".")
            norm = self.layers[int(layer)].get_submodule({"ln1": "attn_norm", "ln2": "mlp_norm"}[which])
        if not isinstance(norm, nn.LayerNorm):
            return None
        return NormParameters("layer", norm.weight, norm.bias, float(norm.eps))

    def head_output_weights(self, layer: int) -> Optional[torch.Tensor]:
        """``attn.Wo`` split per head, [n_heads, d_head, d_model]: head h writes ``z[..., h, :] @ W[h]`` into the
        residual stream (pre-norm: the stream is the sum of the component outputs; ``Wo``'s bias, when a config
        has one, is not any head's)."""
        weight = self.layers[layer].attn.Wo.weight  # [d_model, n_heads * d_head]
        return weight.T.reshape(self.n_heads, self.d_head, weight.shape[0])

    def language_model_head(self, weights: Path) -> Optional[tuple[nn.Module, bool]]:
        """ModernBERT's MLM head (``head``: dense, activation, norm; then the tied ``decoder``), as its released
        checkpoints carry it, built around this adapter's own model so hooks apply; None without one."""
        from safetensors import safe_open
        from transformers import ModernBertForMaskedLM

        with safe_open(str(weights), "pt") as handle:
            if not any(k.startswith("head.") for k in handle.keys()):
                return None
        config: Any = self.model.config
        head = ModernBertForMaskedLM.from_pretrained(str(weights.parent), config=copy.deepcopy(config),
                                                     use_safetensors=True)
        head.model = self.model  # the subject's modules: hooks attached to them apply to the LM
        return head.eval(), False

    def readout(self, head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM logits of final states (``final_norm`` already applied by the base model): decoder(head(h))."""
        return cast(nn.Module, head.decoder)(cast(nn.Module, head.head)(hidden))

    def prune_refusal(self, block: nn.Module) -> Optional[str]:
        implementation = getattr(self.model.config, "_attn_implementation", None)
        if implementation not in ("eager", "sdpa", ATTN_IMPLEMENTATION):
            return f"row pruning supports ModernBERT's eager and SDPA attention, not {implementation!r}"
        return None

    def pruned_forward(self, block: nn.Module, slot: RowSlot) -> Callable[..., object]:
        return pruned_layer_forward(block, slot, self.n_heads, self.d_head)

    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        if name == "embed.hook_embed":
            return [self.embeddings.tok_embeddings.register_forward_hook(output_hook(fn, info)).remove]
        if name == "ln_final.hook_normalized":
            return [self.norm.register_forward_hook(output_hook(fn, info)).remove]
        assert info.layer is not None, name
        layer = self.layers[info.layer]
        attn, mlp = layer.attn, layer.mlp
        suffix = name.split(".", 2)[2]
        if suffix == "hook_resid_pre":
            return [layer.register_forward_pre_hook(first_input_hook(fn, info, "hidden_states"),
                                                    with_kwargs=True).remove]
        if suffix in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            def per_head(part: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model] -> [.., n_heads, d_head]
                return part.view(*part.shape[:-1], self.n_heads, self.d_head)
            hook = split_output_hook(fn, info, "qkv".index(suffix[-1]), 3, per_head)
            return [attn.Wqkv.register_forward_hook(hook).remove]
        if suffix in ROTATED or suffix in ("attn.hook_attn_scores", "attn.hook_pattern"):
            register_attention(ATTN_IMPLEMENTATION, hooked_modernbert_attention)
            if suffix in ROTATED:
                key, fn = ROTATED[suffix], heads_second(fn)
            else:
                key = "scores" if suffix.endswith("scores") else "pattern"
            return [attention_callback(self.model, attn, key, fn, info, ATTN_IMPLEMENTATION)]
        if suffix == "attn.hook_z":  # z [batch, pos, d_model] is the input of attn.Wo
            z_hook = first_input_hook(split_heads(fn, self.n_heads, self.d_head), info, "input")
            return [attn.Wo.register_forward_pre_hook(z_hook, with_kwargs=True).remove]
        if suffix == "hook_attn_out":  # attn returns (output, weights); the residual adds the output
            def attn_out_hook(module: nn.Module, args: tuple, out: tuple) -> Optional[tuple]:
                new = fn(out[0], info)
                return None if new is None else (new, *out[1:])
            return [attn.register_forward_hook(attn_out_hook).remove]
        if suffix == "hook_resid_mid":
            return [layer.mlp_norm.register_forward_pre_hook(in_place_input_hook(fn, info, name),
                                                             with_kwargs=True).remove]
        if suffix in ("mlp.hook_pre", "mlp.hook_pre_linear"):
            hook = split_output_hook(fn, info, 0 if suffix == "mlp.hook_pre" else 1, 2, lambda part: part)
            return [mlp.Wi.register_forward_hook(hook).remove]
        if suffix == "mlp.hook_post":
            return [mlp.Wo.register_forward_pre_hook(first_input_hook(fn, info, "input"), with_kwargs=True).remove]
        module = {"ln1.hook_normalized": layer.attn_norm, "ln2.hook_normalized": layer.mlp_norm,
                  "hook_mlp_out": mlp, "hook_resid_post": layer}[suffix]
        return [module.register_forward_hook(output_hook(fn, info)).remove]


def in_place_input_hook(fn: HookFn, info: HookInfo, name: str) -> Callable[..., Any]:
    """A forward pre-hook (``with_kwargs=True``) that shows ``fn`` a module's first input and writes its replacement
    into that tensor in place, so that every other reader of the tensor (a residual connection) sees it too."""
    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["input"]
        new = fn(hidden, info)
        if new is not None and new is not hidden:
            if new.shape != hidden.shape:
                raise UserInputError(f"{name}: a replacement must keep the shape {tuple(hidden.shape)}, "
                                     f"got {tuple(new.shape)}")
            hidden.copy_(new)  # in place: mlp_norm and the residual connection both read this tensor
        return None
    return pre_hook


def pruned_layer_forward(layer: Any, slot: RowSlot, n_heads: int, d_head: int) -> Callable[..., torch.Tensor]:
    """``ModernBertEncoderLayer.forward`` computing only ``slot.rows`` (keys and values at every row)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.modernbert.modeling_modernbert import apply_rotary_pos_emb, eager_attention_forward

    original = layer.forward
    attn = layer.attn

    def forward(hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                position_embeddings: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                **kwargs: Any) -> torch.Tensor:
        rows = slot.rows
        if rows is None or position_embeddings is None:
            return original(hidden_states, attention_mask=attention_mask, position_embeddings=position_embeddings,
                            **kwargs)
        batch, n_pos, d_model = hidden_states.shape
        k = rows.shape[1]
        normed = layer.attn_norm(hidden_states)  # [batch, pos, d_model]: every row's key and value need it
        # The fused projection at every row, as the full layer computes it: the rotary embedding rounds q and k
        # to float32, which would turn a split product's last-bit differences into visible ones.
        qkv = attn.Wqkv(normed)  # [batch, pos, 3 * d_model]
        q = gather_rows(qkv[..., :d_model], rows).view(batch, k, n_heads, d_head).transpose(1, 2)  # [b, h, k, d]
        keys, values = (t.transpose(1, 2) for t in qkv[..., d_model:].view(batch, n_pos, 2, n_heads, d_head).unbind(2))
        cos, sin = position_embeddings  # [1 or batch, pos, d_head]
        cos_rows, sin_rows = (gather_rows(t.expand(batch, -1, -1), rows) for t in (cos, sin))  # [batch, k, d_head]
        q, _ = apply_rotary_pos_emb(q, q, cos_rows, sin_rows, unsqueeze_dim=1)
        _, keys = apply_rotary_pos_emb(keys, keys, cos, sin, unsqueeze_dim=1)
        mask = attention_mask  # additive float or bool, [batch, 1, query_pos, key_pos], or None
        if mask is not None and mask.dim() == 4 and mask.shape[2] == n_pos and n_pos > 1:
            mask = mask.expand(batch, -1, -1, -1).gather(
                2, rows[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[3]))
        # The layer's own attention function (eager: softmax in float32, as the full pass; or SDPA) on the rows.
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
        z, _ = attention(attn, q, keys, values, mask, dropout=0.0, scaling=d_head ** -0.5,
                         sliding_window=attn.sliding_window)  # z: [batch, k, n_heads, d_head]
        mid = gather_rows(hidden_states, rows) + attn.out_drop(attn.Wo(z.reshape(batch, k, d_model)))
        out = mid + layer.mlp(layer.mlp_norm(mid))  # [batch, k, d_model]
        return scatter_rows(hidden_states, rows, out)  # [batch, pos, d_model]

    return forward
