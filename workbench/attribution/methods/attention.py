"""Attention-based token scores in the attribution result type, so they compare with the gradient methods.

``attention``: the last layer's pattern, mean over heads, at the target's query row; ``rollout``: attention
rollout (Abnar & Zuidema, 2020, arXiv 2005.00928); ``attention_x_gradient``: the last layer's
E_h[(A ⊙ dA)+] (Chefer et al., 2021, arXiv 2103.15679).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from workbench.attention import attention_rollout
from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput
from workbench.attribution.targets import Target, as_index_list

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject


def attention_scores(method: str, subject: Subject, forward: Callable[..., torch.Tensor], embeds: torch.Tensor,
                     args: tuple, target: Target, index: torch.Tensor) -> torch.Tensor:
    """[B, T] attention-based token scores read at each row's query position.

    Args:
        method: "attention", "rollout" or "attention_x_gradient".
        subject: the :class:`~workbench.subject.Subject`.
        forward: f(embeds, *args) -> [B] target values (the attribution engine's forward).
        embeds: [B, T, d_model] token embeddings; args: the rest of ``forward``'s arguments, args[1] being
            the attention mask.
        target, index: the target and its resolved [B, k] indices.
    """
    n_layers = subject.n_layers
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(n_layers)]
    store: dict[str, torch.Tensor] = {}
    positions = [target.query_position(row) for row in as_index_list(index)]
    rows = torch.arange(embeds.shape[0])
    if method == "attention_x_gradient":
        last = names[-1]

        def leaf(pattern: torch.Tensor, hook: Any) -> torch.Tensor:
            store[last] = pattern.detach().requires_grad_(True)
            return store[last]

        with torch.enable_grad(), subject.hooks([(last, leaf)]):
            value = forward(embeds.detach(), *args)
            (grad,) = torch.autograd.grad(value.sum(), store[last])
        product = (store[last].detach() * grad).clamp(min=0).mean(1)  # [B, T, T]
        return product[rows, positions]
    with torch.no_grad(), subject.hooks([(n, lambda a, h: store.__setitem__(h.name, a.detach())) for n in names]):
        forward(embeds.detach(), *args)
    pattern = torch.stack([store[n] for n in names]).mean(2)  # [L, B, T, T] mean over heads
    if method == "attention":
        return pattern[-1][rows, positions]
    out = torch.zeros(embeds.shape[:2])
    for r in range(embeds.shape[0]):
        n = int(args[1][r].sum())
        rollout = attention_rollout(pattern[:, r, :n, :n].double().cpu().numpy())[-1]  # [n, n]
        out[r, :n] = torch.from_numpy(rollout[positions[r]]).float()
    return out



class _AttentionMethod(AttributionMethod):
    family = "attention"
    row_prunable = False  # every row's pattern is read
    reads_attention = True

    def scores(self, call: MethodCall) -> MethodOutput:
        return MethodOutput(attention_scores(self.name, call.subject, call.forward, call.embeds, call.args, call.target,
                                             call.index))


class Attention(_AttentionMethod):
    """The last layer's pattern, mean over heads, at the target's query row."""

    name = "attention"


class Rollout(_AttentionMethod):
    """Attention rollout (Abnar & Zuidema, 2020, arXiv 2005.00928)."""

    name = "rollout"


class AttentionXGradient(_AttentionMethod):
    """The last layer's E_h[(A ⊙ dA)+] (Chefer et al., 2021, arXiv 2103.15679)."""

    name = "attention_x_gradient"
