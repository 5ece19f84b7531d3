"""Coreference in the workbench: attribute the score of a mention's antecedent; documents are encoded one by
one for attribution (their span tensors are not row-aligned); the task-head lens applies the span-ranking head
to every layer over the clean run's kept mentions and reads whether each mention's top antecedent agrees with
the last layer's."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from workbench.kinds.base import WorkbenchKind
from workbench.kinds.headline import COREF

if TYPE_CHECKING:  # annotations only
    import torch

    from atinuke.tasks.heads.common import HeadConfig


def antecedent_margin(clean: Any, corrupted: Any) -> tuple[Callable[[Any], Any], str]:
    """The default patching metric: a mention's clean top-antecedent score minus its runner-up
    (:func:`workbench.coref_patching.coref_metric`; imported here lazily so the registry loads no torch)."""
    from workbench.coref_patching import coref_metric

    return coref_metric(clean)


def top_antecedents(output: Any) -> torch.Tensor:
    """[n_top] the span index of each kept mention's best antecedent, -1 where the dummy (no link) wins."""
    import torch

    best = output.antecedent_scores.argmax(-1)  # [n_top]: column 0 is the dummy
    spans = output.antecedent_indices.gather(1, (best - 1).clamp(min=0)[:, None]).squeeze(1)  # [n_top]
    return torch.where(best == 0, torch.full_like(spans, -1), spans)


def lens_rows(config: HeadConfig, output: Any, last: Any, attention_mask: torch.Tensor, layer: int
              ) -> list[dict[str, Any]]:
    """One row per layer: the share of kept mentions whose top antecedent (a span, or none) is the last
    layer's, and the share that link to any antecedent at all."""
    if not (output.top_span_indices == last.top_span_indices).all():  # coref_inputs keeps the clean spans
        raise ValueError("the task-head lens needs the same kept mentions at every layer")
    here, final = top_antecedents(output), top_antecedents(last)
    return [{"layer": layer, "agrees": float((here == final).float().mean()), "linked": float((here >= 0).float().mean()),
             "mentions": int(len(here))}]


KIND = WorkbenchKind("coref", target_forms=("antecedent",), default_target="antecedent", rows_by_document=True,
                     lens=lens_rows, patching_metric=antecedent_margin, headline=COREF)
