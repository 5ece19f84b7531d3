"""Span QA in the workbench: attribute the start, end or start + end logit of the predicted span (default the
span); the lens reads the share of positions whose start argmax agrees with the last layer's."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.kinds.base import WorkbenchKind, position_agreement_rows
from workbench.kinds.headline import SPAN_QA

if TYPE_CHECKING:  # annotations only
    import torch

    from atinuke.tasks.heads.common import HeadConfig


def lens_rows(config: HeadConfig, output: Any, last: Any, attention_mask: torch.Tensor, layer: int
              ) -> list[dict[str, Any]]:
    """One row per layer: agreement of the start logits' argmax with the last layer's."""
    return position_agreement_rows(output.start_logits, last.start_logits, attention_mask, layer)


KIND = WorkbenchKind("span_qa", target_forms=("start", "end", "span"), default_target="span", lens=lens_rows,
                     headline=SPAN_QA)
