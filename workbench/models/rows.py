"""The row slot through which :mod:`workbench.pruned_forward` tells a family's pruned block which rows to
compute, and the gather/scatter the pruned blocks share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class RowSlot:
    """The rows the last block computes for the next forward pass: long [batch, k] positions, or None for
    a full forward pass."""

    rows: Optional[torch.Tensor] = None


def gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x [batch, pos, d], rows [batch, k] -> [batch, k, d]."""
    return x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))


def scatter_rows(x: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A zero tensor shaped like x [batch, pos, d] holding values [batch, k, d] at rows [batch, k]."""
    return x.new_zeros(x.shape).scatter(1, rows[..., None].expand(-1, -1, x.shape[-1]), values)
