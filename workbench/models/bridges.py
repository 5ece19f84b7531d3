"""How a Hugging Face family without hook points is bridged to hook names: the torch hooks every such adapter
builds, and the attention callbacks that reach the scores and pattern computed inside an attention function.

A family's adapter says *which* module each name bridges to; these say *how*, once for every family. The
attention scores and pattern are reached through an attention implementation the family registers with
``transformers`` (``register_attention``): a copy of its eager attention, op for op, that runs
:data:`ATTN_CALLBACKS` between the operations; :func:`attention_callback` switches the model to it while a
callback is attached.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

import torch
from torch import nn

from workbench.models.base import CurrentInputs, HookFn, HookInfo, Undo

# Attention module -> {"scores": [callbacks], "pattern": [callbacks]}; filled only while hooks are on.
ATTN_CALLBACKS: "weakref.WeakKeyDictionary[nn.Module, dict[str, list[Callable]]]" = weakref.WeakKeyDictionary()


def run_callbacks(callbacks: dict[str, list[Callable]], key: str, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` through the ``key`` ("scores" or "pattern") callbacks of one attention module, in order."""
    for callback in callbacks.get(key, ()):
        tensor = callback(tensor)
    return tensor


def register_attention(name: str, function: Callable[..., Any]) -> None:
    """Register a hooked attention function (and the eager mask it expects) under ``name``; repeating it is
    harmless."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, eager_mask)


def attention_callback(model: nn.Module, attention: nn.Module, key: str, fn: HookFn, info: HookInfo,
                       implementation: str) -> Undo:
    """Show ``fn`` the ``key`` ("scores" or "pattern") of ``attention`` by switching ``model`` to the registered
    ``implementation`` while it is attached; returns what detaches it and restores the previous implementation."""
    def callback(tensor: torch.Tensor) -> torch.Tensor:
        new = fn(tensor, info)
        return tensor if new is None else new
    ATTN_CALLBACKS.setdefault(attention, {}).setdefault(key, []).append(callback)
    config: Any = model.config
    previous = config._attn_implementation
    config._attn_implementation = implementation

    def remove() -> None:
        config._attn_implementation = previous
        entry = ATTN_CALLBACKS.get(attention, {})
        entry.get(key, []).remove(callback)
        if not any(entry.values()):
            ATTN_CALLBACKS.pop(attention, None)
    return remove


def output_hook(fn: HookFn, info: HookInfo) -> Callable[..., Any]:
    """A forward hook that shows ``fn`` a module's output and substitutes what it returns."""
    return lambda module, args, out: fn(out, info)


def first_input_hook(fn: HookFn, info: HookInfo, keyword: str) -> Callable[..., Any]:
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


def split_heads(fn: HookFn, n_heads: int, d_head: int) -> HookFn:
    """``fn`` seeing a [..., d_model] activation as [..., n_heads, d_head]; its replacement is merged back."""
    def per_head(tensor: torch.Tensor, info: HookInfo) -> Optional[torch.Tensor]:
        new = fn(tensor.view(*tensor.shape[:-1], n_heads, d_head), info)  # [batch, pos, n_heads, d_head]
        return None if new is None else new.reshape(tensor.shape)
    return per_head


def position_hook(fn: HookFn, info: HookInfo, current: CurrentInputs) -> Callable[..., Any]:
    """A forward hook on a position-embedding table whose output [1, pos, d_model] is shared over the batch:
    ``fn`` sees it expanded to the running batch [batch, pos, d_model]."""
    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> Optional[torch.Tensor]:
        inputs = current()
        batch = inputs["input_ids"].shape[0] if inputs else out.shape[0]
        return fn(out.expand(batch, -1, -1), info)
    return hook


def last_hidden_state_hook(fn: HookFn, info: HookInfo) -> Callable[..., Any]:
    """A forward hook on a module returning a ``BaseModelOutput``: ``fn`` sees (and may replace) its
    ``last_hidden_state``."""
    def hook(module: nn.Module, args: tuple, out: Any) -> Any:
        new = fn(out.last_hidden_state, info)
        if new is not None:
            out.last_hidden_state = new
        return out
    return hook


def heads_second(fn: HookFn) -> HookFn:
    """``fn`` seeing a [batch, n_heads, pos, d_head] tensor as [batch, pos, n_heads, d_head] (the hook names'
    layout, TransformerLens's for q and k); its replacement is transposed back."""
    def transposed(tensor: torch.Tensor, info: HookInfo) -> Optional[torch.Tensor]:
        new = fn(tensor.transpose(1, 2), info)  # [batch, pos, n_heads, d_head]
        return None if new is None else new.transpose(1, 2)
    return transposed


def rotary_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: Optional[torch.Tensor], scaling: float, dropout: float = 0.0,
                           kv_groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``eager_attention_forward`` that the rotary families of ``transformers`` share (Llama, Mistral, Qwen2,
    GPT-NeoX, ModernBERT: the same code), op for op, with the rotated-q/k, score and pattern callbacks of
    ``module`` in between; a sliding window, where the family has one, is already in the mask.

    Args:
        query: rotated Q [batch, n_heads, pos, d_head]; key, value: [batch, n_kv_heads, pos, d_head].
        attention_mask: additive [batch, 1, query_pos, key_pos] or None.
        kv_groups: query heads per key/value head (grouped-query attention; 1 without it).

    Returns:
        (z [batch, pos, n_heads, d_head], pattern [batch, n_heads, query_pos, key_pos]).
    """
    from transformers.models.llama.modeling_llama import repeat_kv

    callbacks = ATTN_CALLBACKS.get(module, {})
    query = run_callbacks(callbacks, "rot_q", query)
    key = run_callbacks(callbacks, "rot_k", key)
    key_states, value_states = repeat_kv(key, kv_groups), repeat_kv(value, kv_groups)  # [batch, n_heads, pos, d]
    weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling  # [batch, n_heads, query_pos, key_pos]
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = run_callbacks(callbacks, "scores", weights)
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = run_callbacks(callbacks, "pattern", weights)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value_states).transpose(1, 2).contiguous()  # [batch, pos, n_heads, d_head]
    return output, weights
