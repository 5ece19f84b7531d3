"""The task registry: ``TASKS`` maps a command-line name to its :class:`~atinuke.tasks.base.TaskSpec`.

It lives apart from the loaders in :mod:`atinuke.tasks` so that :mod:`atinuke.tasks.metrics` can look tasks up
without importing the package that imports it; both names are re-exported from :mod:`atinuke.tasks`.
"""
from __future__ import annotations

from atinuke.errors import UserInputError
from atinuke.tasks.base import TaskSpec
from atinuke.tasks.conll2005 import SRL_TAGS as _SRL2005_TAGS
from atinuke.tasks.conll2012 import SRL_TAGS as _SRL2012_TAGS

_NLI = ("entailment", "neutral", "contradiction")
_BINARY = ("0", "1")
_QNLI = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("squad", "squad", "span_qa", (), "f1", pair=True),
    TaskSpec("squad2", "squad", "span_qa", (), "f1", pair=True),
    TaskSpec("cola", "glue", "classification", _BINARY, "mcc"),
    TaskSpec("sst2", "glue", "classification", _BINARY, "accuracy"),
    TaskSpec("mrpc", "glue", "classification", _BINARY, "f1", pair=True),
    TaskSpec("qqp", "glue", "classification", _BINARY, "f1", pair=True),
    TaskSpec("stsb", "glue", "regression", (), "pearson", pair=True),
    TaskSpec("mnli", "glue", "classification", _NLI, "accuracy", pair=True),
    TaskSpec("qnli", "glue", "classification", _QNLI, "accuracy", pair=True),
    TaskSpec("rte", "glue", "classification", _QNLI, "accuracy", pair=True),
    TaskSpec("wnli", "glue", "classification", _BINARY, "accuracy", pair=True),
    # GLUE scores the AX diagnostic with R3, the multi-class Matthews correlation (Gorodkin, 2004).
    TaskSpec("ax", "glue", "classification", _NLI, "mcc", pair=True),
    TaskSpec("snli", "nli", "classification", _NLI, "accuracy", pair=True),
    # Real data in official raw layouts (atinuke.tasks.sources): SST-5, SemEval STS 2012-2016, SICK.
    TaskSpec("sst5", "glue", "classification", ("0", "1", "2", "3", "4"), "accuracy"),
    TaskSpec("sts", "glue", "regression", (), "pearson", pair=True),
    TaskSpec("sick", "nli", "classification", _NLI, "accuracy", pair=True),
    TaskSpec("sick-r", "nli", "regression", (), "pearson", pair=True),
    # Registry-real sentiment sets fetched by `atinuke prepare-data` (atinuke.tasks.sentiment).
    TaskSpec("vader-movies", "sentiment", "classification", _BINARY, "accuracy"),
    TaskSpec("vader-movies-r", "sentiment", "regression", (), "pearson"),
    TaskSpec("rt-critics", "sentiment", "classification", _BINARY, "accuracy"),
    TaskSpec("srl", "srl", "tagging", _SRL2012_TAGS, "f1"),
    TaskSpec("srl2005", "srl", "tagging", _SRL2005_TAGS, "f1"),
    TaskSpec("coref", "coref", "coref", (), "conll_f1"),
    TaskSpec("gap", "coref", "gap", ("A", "B", "NEITHER"), "f1"),
)}


def get_task(name: str) -> TaskSpec:
    """The registry entry of ``name``.

    Raises:
        UserInputError: for an unknown name, listing the known ones.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise UserInputError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task that is not a benchmark (a user's dataset, family "user") so :func:`get_task` finds it in this
    process; re-registering a name replaces its spec (a new run on new data), a benchmark's name is refused.

    Raises:
        UserInputError: ``spec.name`` is a benchmark task of another family.
    """
    current = TASKS.get(spec.name)
    if current is not None and current.family != spec.family:
        raise UserInputError(f"task name {spec.name!r} is taken by a {current.family} benchmark task")
    TASKS[spec.name] = spec
    return spec


def spec_from_dict(fields: dict) -> TaskSpec:
    """The :class:`TaskSpec` saved as ``dataclasses.asdict`` (a task model's ``task_model.json`` "spec").

    Raises:
        TypeError, KeyError: the fields are not a task spec's.
    """
    fields = dict(fields)
    fields["labels"] = tuple(fields["labels"])
    fields["columns"] = tuple((str(role), str(column)) for role, column in fields.get("columns", ()))
    return TaskSpec(**fields)


__all__ = ["TASKS", "get_task", "register_task", "spec_from_dict"]
