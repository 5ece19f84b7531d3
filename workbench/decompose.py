"""Direct logit attribution: a read-out split into the embeddings, each head and each MLP.

A linear read-out ``logit = w . norm(x) + b`` of the final residual stream x at one position (an LM's unembedding
row, a probe, a classifier's first layer) is split into the parts of x (Elhage et al. 2021, "A Mathematical
Framework for Transformer Circuits"; nostalgebraist 2020). What is exact, and where:

- **Pre-norm blocks** (GPT-2, a pre-norm Atinuke, Llama/Mistral/Qwen2, GPT-NeoX with either residual,
  ModernBERT): x = embed + sum of head outputs + attention output biases + MLP outputs. With the final norm's
  scale frozen at its value on x (sigma, what every DLA freezes), ``norm`` is affine, so for a LayerNorm
  ``w . norm(x) = sum over parts of w . (g * (part - mean(part)) / sigma) + w . beta``, and for an RMSNorm
  (Zhang & Sennrich 2019: no mean subtraction, no bias; sigma = sqrt(mean(x^2) + eps)) the parts are
  ``w . (g * part / sigma)`` with no bias part (:class:`workbench.models.base.NormParameters` says which):
  :func:`direct_logit_attribution` returns those parts and they sum to the logit to float precision (tested
  within 1e-5). The freezing is the only approximation, and it is one of meaning, not of arithmetic: a part's
  contribution is what it adds at the actual scale, not what removing it would do (removing it changes sigma).
- **Post-norm blocks** (the paper's Atinuke, BERT; DeBERTa-v2, whose adapter does not split its heads, is refused
  by both functions): every block ends in a layer norm applied to the whole stream,
  so no part of x is one head's output: the embeddings and earlier heads reach the read-out only through every
  later norm, and nothing exact splits them. :func:`direct_logit_attribution` refuses them by name.
  :func:`last_block_decomposition` instead splits the last block exactly (both of its norms' scales frozen):
  the stream entering it (everything earlier, one part), each of its heads, its attention bias, its MLP and its
  norms' biases. For earlier components use patching (:mod:`workbench.patching`, :mod:`workbench.circuits`).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.models.base import NormParameters
    from workbench.subject import Subject


def _norm(subject: Subject, name: str) -> NormParameters:
    params = subject.adapter.norm_parameters(name)
    if params is None:
        raise UserInputError(f"{subject.name}: the {subject.adapter.family} adapter does not expose {name}")
    return dataclasses.replace(params, weight=params.weight.detach(),
                               bias=None if params.bias is None else params.bias.detach())


def _through_norm(parts: dict[str, torch.Tensor], total: torch.Tensor, norm: NormParameters,
                  bias_name: str) -> dict[str, torch.Tensor]:
    """Each part [batch, d] through a norm whose scale is frozen at its value on ``total`` [batch, d] (a LayerNorm
    centres each part; an RMSNorm does not, and has no bias, so no bias part)."""
    scale = norm.frozen_scale(total)  # [batch, 1]
    out = {name: norm.linear_part(part, scale) for name, part in parts.items()}
    if norm.bias is not None:
        out[bias_name] = norm.bias.expand_as(total)
    return out


def _rows(positions: Any, batch: int) -> torch.Tensor:
    rows = torch.as_tensor(positions, dtype=torch.long)
    return rows.expand(batch) if rows.dim() == 0 else rows


def _frame(parts: dict[str, torch.Tensor], direction: torch.Tensor, bias: float) -> pd.DataFrame:
    values = {name: (part @ direction.to(part.dtype)).detach() for name, part in parts.items()}  # [batch] each
    values["readout bias"] = torch.full_like(next(iter(values.values())), float(bias))
    frame = pd.DataFrame([{"example": i, "component": name, "contribution": float(v[i])}
                          for name, v in values.items() for i in range(len(v))])
    frame.attrs["logit"] = frame.groupby("example")["contribution"].sum().tolist()
    return frame


@torch.no_grad()
def direct_logit_attribution(subject: Subject, inputs: Any, direction: torch.Tensor, position: Any = 0,
                             bias: float = 0.0) -> pd.DataFrame:
    """Split ``direction . final_norm(x)[position] + bias`` into the embeddings, every head, every attention
    bias, every MLP, the final norm's bias and ``bias`` (pre-norm models; exact with the norm's scale frozen).

    Args:
        inputs: texts or a tokenised mapping.
        direction: [d_model] the read-out row (e.g. an unembedding row, a class's weight on the final state).
        position: the position read (an int, or one per example).
        bias: the read-out's own bias.

    Returns:
        Tidy table ``example``, ``component``, ``contribution``; ``attrs["logit"]`` the sum per example.
    """
    adapter = subject.adapter
    if not adapter.residual_is_sum:
        raise UserInputError(
            f"{subject.name}: direct logit attribution is exact only for pre-norm blocks; these "
            f"{adapter.family} blocks are post-norm (a layer norm on the whole stream after every block), so no "
            "head's share of the final state exists. Use workbench.decompose.last_block_decomposition for the last "
            "block, or patching for the rest")
    batch = subject.as_inputs(inputs)
    L = subject.n_layers
    names = ["blocks.0.hook_resid_pre", f"blocks.{L - 1}.hook_resid_post"] + [
        f"blocks.{l}.{s}" for l in range(L) for s in ("attn.hook_z", "hook_attn_out", "hook_mlp_out")]
    cache = subject.run_with_cache(batch, names)
    rows = _rows(position, batch["input_ids"].shape[0])
    index = torch.arange(len(rows))

    def at(name: str) -> torch.Tensor:
        return cache[name][index, rows]  # [batch, d_model] (or [batch, n_heads, d_head])

    parts = {"embed": at("blocks.0.hook_resid_pre")}
    for layer in range(L):
        W = adapter.head_output_weights(layer)
        if W is None:
            raise UserInputError(f"{subject.name}: the {adapter.family} adapter does not split heads")
        heads = torch.einsum("bhd,hdm->bhm", at(f"blocks.{layer}.attn.hook_z"), W.detach())  # [batch, H, d]
        parts.update({f"L{layer}.H{h}": heads[:, h] for h in range(subject.n_heads)})
        parts[f"L{layer}.attn_bias"] = at(f"blocks.{layer}.hook_attn_out") - heads.sum(1)  # W_O's bias
        parts[f"MLP{layer}"] = at(f"blocks.{layer}.hook_mlp_out")
    total = at(f"blocks.{L - 1}.hook_resid_post")
    return _frame(_through_norm(parts, total, _norm(subject, "ln_final"), "ln_final bias"), direction, bias)


@torch.no_grad()
def last_block_decomposition(subject: Subject, inputs: Any, direction: torch.Tensor, position: Any = 0,
                             bias: float = 0.0) -> pd.DataFrame:
    """Split ``direction . out[position] + bias``, ``out`` the model's final state, over the last block of a
    post-norm model (exact with both of its layer norms' scales frozen): ``resid_pre`` (the stream entering the
    block: all earlier components together), each of its heads, its attention bias, ``ln1 bias``, its MLP and
    ``ln2 bias``. (Post-norm: mid = LN1(resid_pre + attn_out), out = LN2(mid + mlp_out).)

    Returns:
        The table of :func:`direct_logit_attribution`.
    """
    adapter = subject.adapter
    if adapter.residual_is_sum:
        raise UserInputError(f"{subject.name}: pre-norm blocks; use direct_logit_attribution, which splits "
                             "every layer exactly")
    batch = subject.as_inputs(inputs)
    last = subject.n_layers - 1
    prefix = f"blocks.{last}."
    names = [prefix + s for s in ("hook_resid_pre", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
                                  "hook_mlp_out")]
    cache = subject.run_with_cache(batch, names)
    rows = _rows(position, batch["input_ids"].shape[0])
    index = torch.arange(len(rows))

    def at(name: str) -> torch.Tensor:
        return cache[prefix + name][index, rows]

    W = adapter.head_output_weights(last)
    if W is None:
        raise UserInputError(f"{subject.name}: the {adapter.family} adapter does not split heads")
    heads = torch.einsum("bhd,hdm->bhm", at("attn.hook_z"), W.detach())  # [batch, H, d_model]
    first = {"resid_pre": at("hook_resid_pre")} | {f"L{last}.H{h}": heads[:, h] for h in range(subject.n_heads)}
    first[f"L{last}.attn_bias"] = at("hook_attn_out") - heads.sum(1)
    mid = _through_norm(first, at("hook_resid_pre") + at("hook_attn_out"), _norm(subject, prefix + "ln1"), "ln1 bias")
    mid[f"MLP{last}"] = at("hook_mlp_out")
    return _frame(_through_norm(mid, at("hook_resid_mid") + at("hook_mlp_out"), _norm(subject, prefix + "ln2"),
                                "ln2 bias"), direction, bias)
