"""The two types every attribution target is written against: :class:`Rows` (the tokenised inputs) and
:class:`Target` (resolve per-row indices on the clean input, then select one scalar per row). The targets of task
heads and plain encoders are in :mod:`workbench.attribution.targets`, those of decoders in
:mod:`workbench.attribution.lm_targets`."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject


@dataclass
class Rows:
    """Tokenised inputs of an attribution run, one row per example (padded).

    Attributes:
        example_ids: [N] ids.
        texts: [N] segment texts of each row (words joined by spaces for CoNLL examples).
        input_ids, attention_mask: [N, T].
        token_type_ids: [N, T] or None.
        head_inputs: extra task-head tensors, first dimension N.
        offsets: [N, T, 2] character offsets within each token's segment.
        segments: [N, T] segment of each token (-1 for special tokens and padding).
        examples: the source examples (task runs) or None.
        info: per-row decoding info from the task batch.
    """

    example_ids: list[str]
    texts: list[list[str]]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: Optional[torch.Tensor]
    head_inputs: dict[str, torch.Tensor]
    offsets: torch.Tensor
    segments: torch.Tensor
    examples: Optional[list[Any]] = None
    info: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.example_ids)

    def select(self, indices: Sequence[int]) -> "Rows":
        """The rows at ``indices``, trimmed to their longest real length (less padding per batch)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        width = max(int(self.attention_mask[idx].sum(1).max()), 1)
        def cut(t: torch.Tensor) -> torch.Tensor:
            return t[idx][:, :width]

        heads = {k: (v[idx][:, :width] if v.dim() >= 2 and v.shape[1] == self.input_ids.shape[1] else v[idx])
                 for k, v in self.head_inputs.items()}
        return Rows([self.example_ids[i] for i in indices], [self.texts[i] for i in indices], cut(self.input_ids),
                    cut(self.attention_mask), None if self.token_type_ids is None else cut(self.token_type_ids),
                    heads, cut(self.offsets),
                    cut(self.segments), None if self.examples is None else [self.examples[i] for i in indices],
                    [self.info[i] for i in indices] if self.info else [])


class Target:
    """Base class: ``resolve`` per-row indices on the clean input, then ``select`` one scalar per row."""

    spec: str = "target"
    capture: Optional[str] = None  # hook name whose activation ``select`` needs
    position_columns: tuple[int, ...] = ()  # index columns that are token positions (kept when erasing)

    def prepare_rows(self, subject: Subject, rows: Rows) -> Rows:
        """The rows to attribute, given the inputs' rows (a decoder target may append or multiply them)."""
        return rows

    def resolve(self, subject: Subject, rows: Rows, output: Any, captured: dict[str, torch.Tensor]) -> torch.Tensor:
        """Returns: [N, k] long indices fixed for the rest of the run."""
        return torch.zeros(len(rows), 1, dtype=torch.long)

    def select(self, output: Any, index: torch.Tensor, captured: dict[str, torch.Tensor]) -> torch.Tensor:
        """Returns: [batch] scalars (differentiable)."""
        raise NotImplementedError

    def label(self, subject: Subject, index: Sequence[int]) -> str:
        """The ``target`` column for a row with these indices."""
        return self.spec

    def query_position(self, index: Sequence[int]) -> int:
        """The token whose attention row attention-based methods read."""
        return 0

    def read_positions(self, subject: Subject, index: torch.Tensor) -> Optional[torch.Tensor]:
        """The positions of the encoder's last hidden state that ``select`` depends on, long [batch, m], or
        None when it may read any (then the last block cannot be pruned: see ``workbench.pruned_forward``).

        Args:
            index: [batch, k] resolved indices, as passed to ``select``.
        """
        return None

    def context(self, subject: Subject, index: torch.Tensor) -> Any:
        """A context manager active while the resolved target is evaluated on perturbed inputs."""
        return contextlib.nullcontext()
