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

from typing import Any, Callable

import torch
from torch import nn

from atinuke.errors import UserInputError
from workbench.models.base import HOOK_NAMES_PER_BLOCK, CurrentInputs, HookFn, HookInfo, ModelAdapter, Undo
from workbench.models.bert import ATTN_CALLBACKS, ATTN_IMPLEMENTATION, hooked_eager_attention


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
        return (["embed.hook_embed", "embed.hook_pos_embed"]
                + [f"blocks.{i}.{n}" for i in range(len(self.layers)) for n in HOOK_NAMES_PER_BLOCK]
                + ["ln_final.hook_normalized"])

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
            return [self.embeddings.word_embeddings.register_forward_hook(lambda m, a, out: fn(out, info)).remove]
        if name == "embed.hook_pos_embed":
            def pos_hook(module, args, out):  # out: [1, pos, d_model] shared over the batch
                inputs = current()
                batch = inputs["input_ids"].shape[0] if inputs else out.shape[0]
                return fn(out.expand(batch, -1, -1), info)
            return [self.embeddings.position_embeddings.register_forward_hook(pos_hook).remove]
        if name == "ln_final.hook_normalized":
            def final_hook(module, args, out):
                new = fn(out.last_hidden_state, info)
                if new is not None:
                    out.last_hidden_state = new
                return out
            return [self.model.get_submodule("transformer").register_forward_hook(final_hook).remove]
        assert info.layer is not None, name
        layer = self.layers[info.layer]
        suffix = name.split(".", 2)[2]
        heads = (self.n_heads, self.d_head)
        if suffix == "hook_resid_pre":
            return [layer.register_forward_pre_hook(_first_input_hook(fn, info, "hidden_states"),
                                                    with_kwargs=True).remove]
        if suffix in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            linear = getattr(layer.attention, f"{suffix[-1]}_lin")

            def qkv_hook(module, args, out):  # out: [batch, pos, d_model]
                new = fn(out.view(*out.shape[:-1], *heads), info)  # [batch, pos, n_heads, d_head]
                return None if new is None else new.reshape(out.shape)
            return [linear.register_forward_hook(qkv_hook).remove]
        if suffix in ("attn.hook_attn_scores", "attn.hook_pattern"):
            return [self._attention_callback(layer, "scores" if suffix.endswith("scores") else "pattern", fn, info)]
        if suffix == "attn.hook_z":
            def z_fn(z: torch.Tensor, hook: HookInfo) -> torch.Tensor | None:  # z: [batch, pos, d_model]
                new = fn(z.view(*z.shape[:-1], *heads), hook)  # [batch, pos, n_heads, d_head]
                return None if new is None else new.reshape(z.shape)
            return [layer.attention.out_lin.register_forward_pre_hook(_first_input_hook(z_fn, info, "input"),
                                                                      with_kwargs=True).remove]
        if suffix in ("mlp.hook_pre", "mlp.hook_post") and layer.ffn.chunk_size_feed_forward:
            raise UserInputError(f"{name}: the FFN runs in chunks (chunk_size_feed_forward="
                                 f"{layer.ffn.chunk_size_feed_forward}), so this activation is never whole")
        if suffix == "mlp.hook_post":
            return [layer.ffn.lin2.register_forward_pre_hook(_first_input_hook(fn, info, "input"),
                                                             with_kwargs=True).remove]
        module = {"hook_attn_out": layer.attention.out_lin, "hook_resid_mid": layer.sa_layer_norm,
                  "mlp.hook_pre": layer.ffn.lin1, "hook_mlp_out": layer.ffn,
                  "hook_resid_post": layer.output_layer_norm}[suffix]
        return [module.register_forward_hook(lambda m, a, out: fn(out, info)).remove]

    def _attention_callback(self, layer: Any, key: str, fn: HookFn, info: HookInfo) -> Undo:
        """Switch the model to the hooked eager attention while ``fn`` is attached to ``layer``'s scores/pattern."""
        _register_attention_implementation()
        attention = self.self_attention(layer)

        def callback(tensor: torch.Tensor) -> torch.Tensor:
            new = fn(tensor, info)
            return tensor if new is None else new
        ATTN_CALLBACKS.setdefault(attention, {}).setdefault(key, []).append(callback)
        config: Any = self.model.config
        previous = config._attn_implementation
        config._attn_implementation = ATTN_IMPLEMENTATION

        def remove() -> None:
            config._attn_implementation = previous
            entry = ATTN_CALLBACKS.get(attention, {})
            entry.get(key, []).remove(callback)
            if not any(entry.values()):
                ATTN_CALLBACKS.pop(attention, None)
        return remove


def _register_attention_implementation() -> None:
    """Register BERT's hooked eager attention (the same function, under the same name: idempotent, whichever
    family registers it first) and the eager mask that goes with it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, hooked_eager_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)


def _first_input_hook(fn: HookFn, info: HookInfo, keyword: str) -> Callable[..., Any]:
    """A forward pre-hook (``with_kwargs=True``) that shows ``fn`` a module's first input, positional or
    passed as ``keyword``, and substitutes what ``fn`` returns."""
    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
        tensor = args[0] if args else kwargs[keyword]
        new = fn(tensor, info)
        if new is None:
            return None
        if args:
            return (new, *args[1:]), kwargs
        return args, {**kwargs, keyword: new}
    return pre_hook
