"""What an attribution method is: one object that declares its parameters and capabilities and computes
token scores for a prepared batch (Captum's layout: one class per method, capabilities on the class).

The engine (:mod:`workbench.attribution.engine`) prepares a :class:`MethodCall` (the embeddings, the baseline,
the batched forward function and the resolved target) and calls :meth:`AttributionMethod.scores`; it reads
the declarations to decide what enters the store key (``params``) and whether the last block may compute
only the target's rows (``row_prunable``). Adding a method is one file in ``methods/`` and one entry in
``methods/__init__.py``'s registry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Optional

import torch

from workbench.attribution.params import AttributionParams

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject


@dataclass
class MethodCall:
    """A prepared batch, as a method receives it.

    Attributes:
        subject: the :class:`~workbench.subject.Subject`.
        forward: f(embeds [B, T, d], *args) -> [B] target values (an ``nn.Module``, so DeepLift can hook it).
        embeds: [B, T, d_model] token embeddings of the inputs (detached).
        base: [B, T, d_model] embeddings of the reference input (the baseline).
        args: ``forward``'s other arguments: input_ids, attention_mask, token_type_ids, target index [B, k],
            then the head inputs.
        target: the :class:`~workbench.attribution.targets.Target`; index: its resolved [B, k] indices.
        lengths: real tokens per row.
        params: the run's :class:`AttributionParams`.
    """

    subject: Subject
    forward: Any
    embeds: torch.Tensor
    base: torch.Tensor
    args: tuple
    target: Any
    index: torch.Tensor
    lengths: list[int]
    params: AttributionParams


@dataclass
class MethodOutput:
    """Token scores [B, T], the convergence delta [B] (None when the method has none), and per-row settings
    that were chosen while running (IG's ``n_steps_used``)."""

    scores: torch.Tensor
    deltas: Optional[torch.Tensor] = None
    extras: list[dict[str, Any]] = field(default_factory=list)


class AttributionMethod(ABC):
    """One attribution method.

    Attributes:
        name: the name users pass (``--method``), e.g. "integrated_gradients".
        family: "gradient", "perturbation" or "attention".
        params: the :class:`AttributionParams` fields the result depends on (they go into the result's
            ``params`` column and the store key).
        row_prunable: the forward passes need only the target's value, so the last block may compute only
            the rows the target reads (:mod:`workbench.pruned_forward`). False when the method reads
            activations at every row (attention) or rewrites gradients with module hooks (DeepLift).
        reads_attention: the method reads one attention matrix, so a document split into several segments
            cannot be explained by it.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    params: ClassVar[tuple[str, ...]] = ()
    row_prunable: ClassVar[bool] = True
    reads_attention: ClassVar[bool] = False

    def check(self, subject: Subject) -> None:
        """Raise a UserInputError when the method cannot explain ``subject`` (before any work is done)."""

    @abstractmethod
    def scores(self, call: MethodCall) -> MethodOutput:
        """Token scores of every row of the batch."""

    def settings(self, params: AttributionParams) -> dict[str, Any]:
        """The settings this method depends on, as a JSON-able dict."""
        return {key: getattr(params, key) for key in self.params}


def rows_of(call: MethodCall) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, tuple]]:
    """One example at a time, cut to its real tokens: (row, n tokens, embeds [1, n, d], base [1, n, d], args).

    For the Captum methods that need batch 1 (LIME, KernelShap) or sample per example (GradientShap).
    """
    t = call.embeds.shape[1]
    for r, n in enumerate(call.lengths):
        def one(position: int, x: Any) -> Any:
            """Row r of an argument; token-aligned ones ([B, T, ...], not the target index) cut to n tokens."""
            if not torch.is_tensor(x):
                return x
            if position != 3 and x.dim() >= 2 and x.shape[1] == t:
                return x[r:r + 1, :n]
            return x[r:r + 1]
        yield r, n, call.embeds[r:r + 1, :n], call.base[r:r + 1, :n], tuple(one(i, a) for i, a in enumerate(call.args))
