"""Example types shared by every benchmark family, and the registry of tasks.

Loaders (one file per family) turn official-format files into these examples; heads turn examples into
tensors; metrics score predictions against them. A *rationale* is the evidence that decides an example's
label, as character spans ``(segment, start, end)`` where segment 0 is the first text (sentence, premise,
context, document) and segment 1 the second (hypothesis, question); attribution methods are scored against
it (DeYoung et al., 2020, "ERASER", arXiv 1911.03429).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

Rationale = tuple[tuple[int, int, int], ...]  # ((segment, char_start, char_end), ...)


@dataclass
class ClassificationExample:
    """A single sentence or a sentence pair with a class label (or a real-valued score for regression).

    Attributes:
        id: unique within its split.
        text: first sentence (premise, sentence1, question1).
        text_pair: second sentence or None.
        label: class name (str), score (float, regression), or None when the split is unlabelled.
        rationale: gold evidence spans; empty when the source has none.
        meta: slicing features (lengths, overlap, negation, construction rule...).
    """

    id: str
    text: str
    text_pair: Optional[str]
    label: Union[str, float, None]
    rationale: Rationale = ()
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Answer:
    """A gold answer: its text and its character offset in the context."""

    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class QAExample:
    """Extractive QA in SQuAD form (v2: ``is_impossible`` questions have no answers)."""

    id: str
    context: str
    question: str
    answers: list[Answer]
    is_impossible: bool = False
    title: str = ""
    rationale: Rationale = ()
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SRLExample:
    """One predicate of one sentence, with BIO argument tags over whitespace words (CoNLL conventions)."""

    id: str
    words: list[str]
    predicate_index: int
    tags: list[str]  # "B-ARG0", "I-ARG0", "B-V", "O", ...
    rationale: Rationale = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass
class CorefDocument:
    """A document with its gold coreference clusters of word spans (inclusive ``(start, end)`` word indices)."""

    id: str
    words: list[str]
    sentence_starts: list[int]  # word index where each sentence begins
    clusters: list[list[tuple[int, int]]]
    speakers: Optional[list[str]] = None
    rationale: Rationale = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(self.words)


Example = Union[ClassificationExample, QAExample, SRLExample, CorefDocument]

TASK_KINDS = ("classification", "regression", "span_qa", "tagging", "coref", "gap")


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its kind, label set, and headline metric.

    Attributes:
        name: registry name used on the command line ("sst2", "squad2", "srl", ...).
        family: benchmark family ("glue", "squad", "nli", "coref", "srl").
        kind: one of ``TASK_KINDS``.
        labels: class names (classification), tag names (tagging), empty otherwise.
        metric: the headline metric's key in metrics.json.
        pair: whether inputs are sentence pairs.
        columns: a user dataset's column mapping, ``((role, column), ...)`` (``atinuke.tasks.userdata``);
            empty for the benchmark tasks.
    """

    name: str
    family: str
    kind: str
    labels: tuple[str, ...]
    metric: str
    pair: bool = False
    columns: tuple[tuple[str, str], ...] = ()
