"""The task kinds: one object per kind (``TaskKind``), one file per built-in kind, and their registry.

``get_kind(spec.kind)`` is how the atinuke layer dispatches on a task's kind (head, encoding, decoding,
metrics, calibration, predictions-table values, trivial baseline). The workbench adds what it needs per kind
in the parallel registry ``workbench.kinds``, keyed by the same name. Importing ``atinuke.tasks`` imports
this package, so the built-in kinds are always registered.
"""
from atinuke.tasks.kinds.base import KINDS, TaskKind, get_kind, register_kind, task_kinds, unregister_kind
from atinuke.tasks.kinds.classification import ClassificationKind
from atinuke.tasks.kinds.coref import CorefKind
from atinuke.tasks.kinds.gap import GapKind
from atinuke.tasks.kinds.regression import RegressionKind
from atinuke.tasks.kinds.span_qa import ANSWER_SEPARATOR, SpanQAKind
from atinuke.tasks.kinds.tagging import TaggingKind

for _kind in (ClassificationKind(), RegressionKind(), SpanQAKind(), TaggingKind(), CorefKind(), GapKind()):
    register_kind(_kind)

__all__ = [
    "ANSWER_SEPARATOR",
    "KINDS",
    "ClassificationKind",
    "CorefKind",
    "GapKind",
    "RegressionKind",
    "SpanQAKind",
    "TaggingKind",
    "TaskKind",
    "get_kind",
    "register_kind",
    "task_kinds",
    "unregister_kind",
]
