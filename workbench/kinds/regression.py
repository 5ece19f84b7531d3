"""Regression in the workbench: attribute the predicted score (a class target of the one output, labelled
"score"); the lens reads each layer's score and whether it equals the last layer's."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.kinds.base import WorkbenchKind
from workbench.kinds.headline import REGRESSION

if TYPE_CHECKING:  # annotations only (``import workbench.kinds`` stays free of torch for the app)
    import torch

    from atinuke.tasks.heads.common import HeadConfig


def lens_rows(config: HeadConfig, output: Any, last: Any, attention_mask: torch.Tensor, layer: int
              ) -> list[dict[str, Any]]:
    """Per example: the score read at this layer and whether it matches the last layer's (to 1e-5)."""
    import torch

    return [dict(layer=layer, example=example, prediction=float(value), score=float(value),
                 agrees=bool(torch.isclose(value, last.logits[example], atol=1e-5)))
            for example, value in enumerate(output.logits)]


KIND = WorkbenchKind("regression", target_forms=("class",), default_target="class", output_label="score",
                     lens=lens_rows, headline=REGRESSION)
