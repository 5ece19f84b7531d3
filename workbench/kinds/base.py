"""``WorkbenchKind``: what the workbench adds to one task kind, keyed by the name of its ``atinuke`` kind.

The atinuke layer's ``atinuke.tasks.kinds.TaskKind`` says how a kind's head is built, decoded and scored;
this parallel registry says how the workbench reads it: the attribution targets it offers and its default
one (``workbench.attribution.targets``), the task-head lens read-out (``workbench.lens.task_lens``; the
logit lens of nostalgebraist, 2020, applied to a task head), and optionally its own default patching metric
(``workbench.patching.default_metric``, which otherwise chooses by the head's output fields). The built-in
kinds are one file each beside this one, registered by ``workbench.kinds``; a kind registered from outside
adds its entry with :func:`register_workbench_kind`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    import torch

    from atinuke.tasks.heads.common import HeadConfig
    from workbench.kinds.headline import HeadlineMetric

# (head config, one layer's head output, the last layer's, attention mask [batch, pos], layer) -> table rows
LensReadout = Callable[["HeadConfig", Any, Any, "torch.Tensor", int], list[dict[str, Any]]]
# (clean output, corrupted output) -> (metric of a model output, its description)
PatchingMetric = Callable[[Any, Any], tuple[Callable[[Any], "torch.Tensor"], str]]


@dataclass(frozen=True)
class WorkbenchKind:
    """The workbench's side of one task kind.

    Attributes:
        name: the kind's name (``TaskSpec.kind``), as in ``atinuke.tasks.kinds``.
        target_forms: the heads of ``parse_target`` forms it accepts ("class", "start", "end", "span", "tag",
            "antecedent"), in the order the refusal message lists them.
        default_target: the form of its natural target (``default_target``), one of ``target_forms``.
        rows_by_document: attribution encodes its examples one by one, with span tensors that are not
            row-aligned (coreference documents).
        output_label: the name a class target reads out when the head has a single output (regression: "score").
        lens: the task-head lens read-out, or None when the lens cannot read the head.
        lens_refusal: the one-line reason given when ``lens`` is None.
        patching_metric: the kind's default patching metric, or None to choose by the head's output fields.
        lens_in_app: the app's task-head lens (``ui/mechanisms.py``, per-class probabilities by layer) offers
            its fine-tuned models.
        headline: its headline metrics from additive per-example statistics (``workbench.kinds.headline``), which
            the claims recompute on every resample; None: the claims use the mean ``example_f1``.
        class_reads_cls: a class target of a ``pooling="cls"`` head reads the [CLS] row alone (so attribution
            may compute only that row in the last block); False for a head that reads other rows (GAP's spans).
    """

    name: str
    target_forms: tuple[str, ...]
    default_target: str
    rows_by_document: bool = False
    output_label: Optional[str] = None
    lens: Optional[LensReadout] = None
    lens_refusal: str = ""
    patching_metric: Optional[PatchingMetric] = None
    lens_in_app: bool = False
    headline: Optional["HeadlineMetric"] = None
    class_reads_cls: bool = True

    def __post_init__(self) -> None:
        if self.default_target not in self.target_forms:
            raise ValueError(f"{self.name}: default target {self.default_target!r} is not in {self.target_forms}")


WORKBENCH_KINDS: dict[str, WorkbenchKind] = {}


def register_workbench_kind(kind: WorkbenchKind, replace: bool = False) -> WorkbenchKind:
    """Make ``kind`` known under ``kind.name`` (a different entry of the same name is refused unless ``replace``)."""
    if kind.name in WORKBENCH_KINDS and not replace and WORKBENCH_KINDS[kind.name] != kind:
        raise UserInputError(f"the workbench already has task kind {kind.name!r}")
    WORKBENCH_KINDS[kind.name] = kind
    return kind


def unregister_workbench_kind(name: str) -> None:
    """Forget an entry registered from outside (tests)."""
    WORKBENCH_KINDS.pop(name, None)


def get_workbench_kind(name: str) -> WorkbenchKind:
    """The workbench entry of task kind ``name``.

    Raises:
        UserInputError: the kind has no workbench entry.
    """
    try:
        return WORKBENCH_KINDS[name]
    except KeyError:
        raise UserInputError(f"task kind {name!r} has no workbench entry (workbench.kinds); known: "
                             f"{', '.join(WORKBENCH_KINDS)}") from None


def task_workbench_kind(task: Any) -> Optional[WorkbenchKind]:
    """The entry of a subject's task (a ``TaskSpec``), or None for a plain encoder (``task`` None)."""
    kind = getattr(task, "kind", None)
    return None if kind is None else get_workbench_kind(kind)


def position_agreement_rows(logits: torch.Tensor, final: torch.Tensor, attention_mask: torch.Tensor,
                            layer: int) -> list[dict[str, Any]]:
    """One lens row: the share of real positions whose argmax at this layer agrees with the last layer's.

    Args:
        logits, final: [batch, pos, ...] per-position logits of this layer and of the last one.
        attention_mask: [batch, pos].
    """
    mask = attention_mask.bool()
    agree = (logits.argmax(-1) == final.argmax(-1))[mask].float().mean()
    return [dict(layer=layer, example=-1, prediction="", agrees=float(agree) == 1.0, score=float(agree))]
