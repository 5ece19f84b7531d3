"""Coreference in the workbench: attribute the score of a mention's antecedent; documents are encoded one by
one for attribution (their span tensors are not row-aligned); the task-head lens cannot read the head."""
from __future__ import annotations

from workbench.kinds.base import WorkbenchKind

KIND = WorkbenchKind("coref", target_forms=("antecedent",), default_target="antecedent", rows_by_document=True,
                     lens_refusal="the task-head lens does not read coreference heads (they need candidate spans)")
