"""Atinuke (arXiv 2401.16736), masked or causal: its blocks carry real :class:`~atinuke.model.HookPoint`
modules, so every hook name is a forward hook on the module of that name."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.model import AtinukeBlock, AtinukeModel, HookPoint, hook_point_names
from workbench.models.base import CurrentInputs, HookFn, HookInfo, ModelAdapter, NormParameters, Undo
from workbench.models.rows import RowSlot, gather_rows, scatter_rows


class AtinukeAdapter(ModelAdapter):
    family = "atinuke"
    kind = "atinuke"
    model_inputs = ("input_ids", "attention_mask")

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        super().__init__(model, n_heads, d_head)
        self.points: dict[str, HookPoint] = {n: m for n, m in model.named_modules() if isinstance(m, HookPoint)}

    def hook_names(self) -> list[str]:
        return hook_point_names(self.model)

    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        handle = self.points[name].register_forward_hook(lambda module, args, output: fn(output, info))
        return [handle.remove]

    def embedding_module(self) -> nn.Module:
        return self.model.get_submodule("embed")

    def blocks(self) -> list[nn.Module]:
        return list(self.model.get_submodule("blocks").children())

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """A pre-norm Atinuke's final layer norm; identity for the paper's post-norm blocks."""
        final = getattr(self.model, "ln_final", None)
        return final.norm(hidden) if final is not None else hidden

    @property
    def residual_is_sum(self) -> bool:  # type: ignore[override]
        return getattr(self.model.config, "norm_placement", "post") == "pre"

    def head_output_weights(self, layer: int) -> Optional[torch.Tensor]:
        """W_O split per head."""
        weight = cast(AtinukeBlock, self.blocks()[layer]).attn.W_O.weight  # [d_model, n_heads * d_head]
        return weight.T.reshape(self.n_heads, self.d_head, weight.shape[0])  # [n_heads, d_head, d_model]

    def norm_parameters(self, name: str) -> Optional[NormParameters]:
        if name == "ln_final":
            norm = getattr(self.model.get_submodule("ln_final"), "norm", None)
        else:
            _, layer, which = name.split(".")
            norm = getattr(self.blocks()[int(layer)], which)
        if not isinstance(norm, nn.LayerNorm):
            return None  # a post-norm stack has no final norm (identity)
        return NormParameters("layer", norm.weight, norm.bias, float(norm.eps))

    def prune_refusal(self, block: nn.Module) -> Optional[str]:
        return None

    def is_causal(self) -> bool:
        """``config.causal``: pretrained with ``--objective clm``."""
        return bool(getattr(self.model.config, "causal", False))

    def language_model_head(self, weights: Path) -> Optional[tuple[nn.Module, bool]]:
        from safetensors import safe_open

        from atinuke.model import AtinukeForCausalLM, AtinukeForMaskedLM

        with safe_open(str(weights), "pt") as handle:
            if "lm_head.bias" not in set(handle.keys()):
                return None
        causal = bool(getattr(self.model.config, "causal", False))
        head = (AtinukeForCausalLM if causal else AtinukeForMaskedLM).from_pretrained(str(weights.parent),
                                                                                      use_safetensors=True)
        head.atinuke = cast(AtinukeModel, self.model)  # the subject's modules: hooks attached to them apply
        return head, causal

    def readout(self, head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM transform (identity unless ``config.mlm_transform``) then the vocabulary projection."""
        return cast(nn.Module, head.lm_head)(cast(nn.Module, head.head_transform)(hidden))

    def pruned_forward(self, block: nn.Module, slot: RowSlot) -> Callable[..., object]:
        return pruned_block_forward(cast(AtinukeBlock, block), slot)


def pruned_block_forward(block: AtinukeBlock, slot: RowSlot) -> Callable[..., tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """AtinukeBlock.forward computing only ``slot.rows`` (same operations as the block, post- or pre-norm)."""
    original = block.forward
    attn = block.attn

    def forward(x: torch.Tensor, key_mask: Optional[torch.Tensor], head_mask: Optional[torch.Tensor] = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        rows = slot.rows
        if rows is None or head_mask is not None or output_attentions:
            return original(x, key_mask, head_mask, output_attentions)
        batch, n_pos, d_model = x.shape
        k = rows.shape[1]
        attn_in = block.ln1(x) if block.pre_norm else x  # [batch, pos, d_model]
        q = attn.W_Q(gather_rows(attn_in, rows)).view(batch, k, attn.n_heads, attn.d_head)  # [batch, k, n_heads, d_head]
        keys = attn.W_K(attn_in).view(batch, n_pos, attn.n_heads, attn.d_head)  # [batch, pos, n_heads, d_head]
        values = attn.W_V(attn_in).view(batch, n_pos, attn.n_heads, attn.d_head)  # [batch, pos, n_heads, d_head]
        mask = key_mask  # bool [batch, 1, 1, key_pos] or None
        if attn.causal:
            causal = torch.arange(n_pos, device=x.device)[None, None, None, :] <= rows[:, None, :, None]  # [batch, 1, k, key_pos]
            mask = causal if mask is None else mask & causal
        z = F.scaled_dot_product_attention(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
                                           attn_mask=mask)  # [batch, n_heads, k, d_head]
        attn_out = attn.W_O(z.transpose(1, 2).reshape(batch, k, d_model))  # [batch, k, d_model]
        resid_pre = gather_rows(x, rows)  # [batch, k, d_model]
        resid_mid = resid_pre + attn_out if block.pre_norm else block.ln1(resid_pre + attn_out)
        mlp_out = block.mlp(block.ln2(resid_mid) if block.pre_norm else resid_mid)  # [batch, k, d_model]
        resid_post = resid_mid + mlp_out if block.pre_norm else block.ln2(resid_mid + mlp_out)
        return scatter_rows(x, rows, resid_post), None  # [batch, pos, d_model]

    return forward
