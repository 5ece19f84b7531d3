"""Tagging in the workbench: attribute a word's tag logit (the predicted tag of the predicate's word by
default); the lens reads the share of positions whose tag argmax agrees with the last layer's."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.kinds.base import WorkbenchKind, position_agreement_rows
from workbench.kinds.headline import TAGGING

if TYPE_CHECKING:  # annotations only
    import torch

    from atinuke.tasks.heads.common import HeadConfig


def lens_rows(config: HeadConfig, output: Any, last: Any, attention_mask: torch.Tensor, layer: int
              ) -> list[dict[str, Any]]:
    """One row per layer: agreement of the tag logits' argmax with the last layer's."""
    return position_agreement_rows(output.tag_logits, last.tag_logits, attention_mask, layer)


KIND = WorkbenchKind("tagging", target_forms=("tag",), default_target="tag", lens=lens_rows,
                     headline=TAGGING)
