"""``TaskKind``: everything the atinuke layer knows about one kind of task, in one object.

A task kind (classification, regression, span QA, BIO tagging, coreference, or one registered from outside)
says which example type it reads, how its head is built, how examples are encoded and predictions decoded,
how predictions are scored (the whole split and one example), how a value is written to the predictions
table (docs/predictions.md), which decision threshold is calibrated after fine-tuning, and what its trivial
baseline scores. ``TaskSpec.kind`` names one; :func:`get_kind` finds it. The built-in kinds live one per
file beside this one and are registered by ``atinuke.tasks.kinds``; a new kind is a subclass registered
with :func:`register_kind` (docs/architecture.md, "Where things go").
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Sequence

import numpy as np

from atinuke.errors import UserInputError
from atinuke.tasks.base import Example, TaskSpec

if TYPE_CHECKING:  # annotations only: importing the heads package here would run it before this registry exists
    import pandas as pd
    from torch import nn

    from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction


class TaskKind(ABC):
    """One kind of task. Subclasses set the class attributes and implement the abstract methods.

    Attributes:
        name: the ``TaskSpec.kind`` / ``HeadConfig.kind`` string.
        example_type: the example class its tasks load (``ClassificationExample``, ``QAExample``, ...).
        needs_labels: whether its head needs a non-empty label set (class or tag names).
        calibrated: the ``HeadConfig`` field tuned on held-out training examples after fine-tuning, or None.
        trivial_baseline: how its trivial baseline is described in the claims table.
        pair_inputs: whether its inputs are always pairs (question and context).
    """

    name: ClassVar[str]
    example_type: ClassVar[type]
    needs_labels: ClassVar[bool] = False
    calibrated: ClassVar[Optional[str]] = None
    trivial_baseline: ClassVar[str]
    pair_inputs: ClassVar[bool] = False
    # A user's dataset (``atinuke.tasks.userdata``): (required roles, optional roles) of ``--columns``, or None
    # when the kind cannot be read from a table; its headline metric; the fewest labels training must have.
    user_roles: ClassVar[Optional[tuple[tuple[str, ...], tuple[str, ...]]]] = None
    user_metric: ClassVar[Optional[str]] = None
    user_min_labels: ClassVar[int] = 0
    # The kind is inferred from a mapping that names one of ``user_signature`` (an empty signature: any
    # mapping), trying kinds by ascending ``user_priority``; ``user_role_aliases`` rename (given, meant) roles.
    user_signature: ClassVar[tuple[str, ...]] = ()
    user_priority: ClassVar[int] = 100
    user_role_aliases: ClassVar[tuple[tuple[str, str], ...]] = ()

    # ------------------------------------------------------------------------------------- the head

    @abstractmethod
    def build_head(self, d_model: int, config: HeadConfig, encoder: nn.Module) -> nn.Module:
        """The task head on an encoder of width ``d_model`` (``encoder`` is the base encoder module)."""

    @abstractmethod
    def encode(self, tokenizer: Any, config: HeadConfig, examples: Sequence[Any], use_token_types: bool) -> TaskBatch:
        """Tokenize examples (already checked to be ``example_type``) into a :class:`TaskBatch`."""

    @abstractmethod
    def decode(self, config: HeadConfig, output: TaskOutput, batch: TaskBatch,
               examples: Sequence[Any]) -> list[TaskPrediction]:
        """One batch's head output -> one prediction per example, ``value`` in the :meth:`score` format."""

    def head_defaults(self, spec: TaskSpec, head: dict[str, Any], max_len: int, train: Sequence[Example]) -> None:
        """Fill in ``HeadConfig`` fields the user left out of ``head`` for fine-tuning at ``max_len`` on
        ``train`` (``dict.setdefault``: what the user gave stays)."""

    def calibrate(self, model: Any, examples: Sequence[Example], batch_size: int) -> Optional[Any]:
        """Tune ``calibrated`` on held-out labelled examples (``atinuke.tasks.heads.calibration``); None when
        the head has nothing to calibrate."""
        return None

    # ------------------------------------------------------------------------------------- a user's dataset

    def user_role_names(self) -> tuple[str, ...]:
        """Every ``--columns`` role of the kind (required, then optional)."""
        required, optional = self.user_roles or ((), ())
        return required + optional

    def user_example(self, table: Any, location: str, record: dict[str, Any], mapping: dict[str, str], key: str,
                     meta: dict[str, Any]) -> Example:
        """One row of a user's table (``atinuke.tasks.userdata.Table``) as an example of this kind.

        Raises:
            UserInputError: ``location: what is wrong``.
        """
        raise UserInputError(f"{location}: task kind {self.name!r} cannot be read from a table")

    def label_set(self, examples: Sequence[Example]) -> tuple[str, ...]:
        """The label set a user's task of this kind gets from its training examples (empty: none)."""
        return ()

    # ------------------------------------------------------------------------------------- scoring

    def check_predictions(self, spec: TaskSpec, predictions: Sequence[Any]) -> None:
        """Refuse predictions that cannot be scored (beyond their count and the examples' type)."""

    @abstractmethod
    def score(self, spec: TaskSpec, examples: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
        """The task's official metrics (``atinuke.tasks.metrics.score_task`` documents the keys)."""

    @abstractmethod
    def example_f1(self, spec: TaskSpec, example: Any, prediction: Any) -> float:
        """The predictions table's ``example_f1`` of one example."""

    @abstractmethod
    def example_correct(self, spec: TaskSpec, example: Any, prediction: Any) -> bool:
        """The predictions table's ``correct`` (exact correctness) of one example."""

    # ------------------------------------------------------------------------------------- artifacts

    def encode_value(self, value: Any) -> str:
        """A gold value or prediction as the predictions table's text (docs/predictions.md, ``gold``)."""
        return str(value)

    def gold_value(self, example: Any) -> Any:
        """The gold value of an example, in the :meth:`score` prediction format."""
        return example.label

    def gold_text(self, example: Any) -> str:
        """The predictions table's ``gold`` of an example."""
        return self.encode_value(self.gold_value(example))

    def table_meta(self, example: Any) -> dict[str, Any]:
        """``meta_*`` columns the kind adds to every row of the predictions table (unless the example has them)."""
        return {}

    @abstractmethod
    def trivial_example_scores(self, gold: pd.Series) -> np.ndarray:
        """Per-example scores (the ``example_f1`` convention) of the trivial baseline on these table golds."""


KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind, replace: bool = False) -> TaskKind:
    """Make ``kind`` known under ``kind.name`` (a second kind of the same name is refused unless ``replace``)."""
    if kind.name in KINDS and not replace and type(KINDS[kind.name]) is not type(kind):
        raise UserInputError(f"task kind {kind.name!r} is already registered ({type(KINDS[kind.name]).__name__})")
    KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Forget a kind registered from outside (tests)."""
    KINDS.pop(name, None)


def get_kind(name: str) -> TaskKind:
    """The registered kind ``name``.

    Raises:
        UserInputError: no such kind.
    """
    try:
        return KINDS[name]
    except KeyError:
        raise UserInputError(f"unknown task kind {name!r}; known: {', '.join(KINDS)}") from None


def task_kinds() -> tuple[str, ...]:
    """The names of every registered kind, built-in ones first."""
    return tuple(KINDS)
