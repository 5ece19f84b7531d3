"""Classification in the workbench: attribute a class logit (the predicted class by default); the lens reads
each layer's predicted class, its probability and every class's probability."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.kinds.base import WorkbenchKind
from workbench.kinds.headline import CLASSIFICATION

if TYPE_CHECKING:  # annotations only
    import torch

    from atinuke.tasks.heads.common import HeadConfig


def lens_rows(config: HeadConfig, output: Any, last: Any, attention_mask: torch.Tensor, layer: int
              ) -> list[dict[str, Any]]:
    """Per example: the class predicted at this layer, whether the last layer agrees, and the probabilities."""
    rows = []
    probs = output.logits.softmax(-1)  # [batch, labels]
    for example, p in enumerate(probs):
        prediction = int(p.argmax())
        rows.append(dict(layer=layer, example=example, prediction=config.labels[prediction],
                         agrees=prediction == int(last.logits[example].argmax()), score=float(p[prediction]),
                         **{f"p_{label}": float(v) for label, v in zip(config.labels, p)}))
    return rows


KIND = WorkbenchKind("classification", target_forms=("class",), default_target="class", lens=lens_rows,
                     lens_in_app=True, headline=CLASSIFICATION)
