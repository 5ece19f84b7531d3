"""What the workbench adds per task kind (attribution targets, lens read-out, patching metric): one
``WorkbenchKind`` per kind, one file per built-in kind, keyed by the names of ``atinuke.tasks.kinds``."""
from workbench.kinds import classification, coref, gap, regression, span_qa, tagging
from workbench.kinds.base import (
    WORKBENCH_KINDS,
    WorkbenchKind,
    get_workbench_kind,
    register_workbench_kind,
    task_workbench_kind,
    unregister_workbench_kind,
)

for _module in (classification, regression, span_qa, tagging, coref, gap):
    register_workbench_kind(_module.KIND)

__all__ = [
    "WORKBENCH_KINDS",
    "WorkbenchKind",
    "get_workbench_kind",
    "register_workbench_kind",
    "task_workbench_kind",
    "unregister_workbench_kind",
]
