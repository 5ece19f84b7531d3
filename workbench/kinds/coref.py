"""Coreference in the workbench: attribute the score of a mention's antecedent; documents are encoded one by
one for attribution (their span tensors are not row-aligned); the task-head lens cannot read the head."""
from __future__ import annotations

from typing import Any, Callable

from workbench.kinds.base import WorkbenchKind


def antecedent_margin(clean: Any, corrupted: Any) -> tuple[Callable[[Any], Any], str]:
    """The default patching metric: a mention's clean top-antecedent score minus its runner-up
    (:func:`workbench.coref_patching.coref_metric`; imported here lazily so the registry loads no torch)."""
    from workbench.coref_patching import coref_metric

    return coref_metric(clean)


KIND = WorkbenchKind("coref", target_forms=("antecedent",), default_target="antecedent", rows_by_document=True,
                     lens_refusal="the task-head lens does not read coreference heads (they need candidate spans)",
                     patching_metric=antecedent_margin)
