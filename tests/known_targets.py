"""Attribution targets with known answers, shared by the attribution and faithfulness tests."""
from __future__ import annotations

import torch

from workbench.attribution.targets import Target


class LinearEmbedTarget(Target):
    """f = sum_t w . embed_t over real tokens: linear in the token embeddings, so attributions are known."""

    spec = "linear"
    capture = "embed.hook_embed"

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight

    def select(self, output, index, captured):
        return (captured["embed.hook_embed"] * self.weight).sum((1, 2))
