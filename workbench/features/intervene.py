"""Features as units: ablating and steering SAE latents through the hook interface, and attributing an
output to latents.

Interventions keep the SAE's reconstruction error: at each position the activation becomes
x + (decode(f') - decode(f)), with f the latents of x and f' the edited ones. With no edit the model runs
exactly as it would without the SAE (unlike splicing the bare reconstruction in), so an effect measured is
the edit's alone.

Attribution to latents is gradient x activation at the hook, taken in the SAE's basis (as in Marks et al.
2024, "Sparse Feature Circuits", arXiv 2403.19647): with g = d score / d x at a position,
attr_f = f * (W_dec[f] . g), and sum_f attr_f + g . (b_dec + error) = g . x exactly (completeness).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence

import pandas as pd
import torch

from atinuke.errors import UserInputError
from workbench.features.sae import SparseAutoencoder
from workbench.lm import content_mask

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject


def _check(sae: SparseAutoencoder, features: Sequence[int]) -> None:
    bad = [f for f in features if not 0 <= int(f) < sae.config.width]
    if bad:
        raise UserInputError(f"feature {bad[0]} is not a latent of this SAE (0..{sae.config.width - 1})")


@contextlib.contextmanager
def edit_features(subject: Subject, sae: SparseAutoencoder, hook: str, mask: torch.Tensor,
                  ablate: Sequence[int] = (), steer: Optional[Mapping[int, float]] = None) -> Iterator[Any]:
    """Within the block, ``hook``'s activation at ``mask`` positions has the ``ablate`` latents set to 0 and
    each ``steer`` latent increased by its value (in activation units), the SAE error kept.

    Args:
        mask: [batch, pos] positions to edit (e.g. :func:`content_mask`).
    """
    steer = dict(steer or {})
    _check(sae, [*ablate, *steer])
    ablated = torch.tensor(sorted(set(int(f) for f in ablate)), dtype=torch.long)
    steered = torch.tensor(sorted(steer), dtype=torch.long)
    amounts = torch.tensor([steer[int(f)] for f in steered], dtype=torch.float32)

    def edit(activation: torch.Tensor, info: Any) -> torch.Tensor:  # [batch, pos, d]
        rows = activation[mask].float()  # [n, d]
        latents = sae.encode(rows)  # [n, width]
        delta = torch.zeros_like(rows)
        if len(ablated):
            delta -= latents[:, ablated] @ sae.W_dec[ablated]  # [n, d]
        if len(steered):
            delta += (amounts @ sae.W_dec[steered]).expand_as(rows)
        out = activation.clone()
        out[mask] = (rows + delta).to(activation.dtype)
        return out

    with torch.no_grad(), subject.hooks([(hook, edit)]):
        yield subject


@dataclass
class FeatureAttribution:
    """``table``: one row per (example, position, latent) with a non-zero attribution: ``example``,
    ``position``, ``token``, ``feature``, ``activation``, ``attribution``; ``residual``: per position its
    ``error_term`` g . (b_dec + error) and ``total`` g . x, so the attributions plus the error term give the
    total exactly."""

    table: pd.DataFrame
    residual: pd.DataFrame


def feature_attribution(subject: Subject, sae: SparseAutoencoder, hook: str, texts: Sequence[str],
                        score: Callable[[Any], torch.Tensor], max_length: int = 128) -> FeatureAttribution:
    """Gradient x activation of ``score(output)`` (a scalar per example, summed) in the SAE's basis.

    Args:
        score: maps the model output to [batch] scores (e.g. a class logit, a token's log-probability).
    """
    batch = subject.tokenize(list(texts), max_length=max_length)
    mask = content_mask(batch, subject.tokenizer)
    captured: dict[str, torch.Tensor] = {}

    def leaf(activation: torch.Tensor, info: Any) -> torch.Tensor:
        variable = activation.detach().clone().requires_grad_(True)
        captured["x"] = variable
        return variable

    with subject.hooks([(hook, leaf)]):
        output = subject.forward(batch)
        total = score(output).sum()
    (gradient,) = torch.autograd.grad(total, captured["x"])
    x, g = captured["x"].detach()[mask].float(), gradient[mask].float()  # [n, d]
    with torch.no_grad():
        latents = sae.encode(x)  # [n, width]
        reconstruction = sae.decode(latents)
        per_latent = latents * (g @ sae.W_dec.t())  # [n, width]
        residual = (g * (x - reconstruction + sae.b_dec)).sum(-1)  # [n]
    examples, positions = mask.nonzero(as_tuple=True)
    tokens = subject.tokenizer.convert_ids_to_tokens(batch["input_ids"][mask].tolist())
    row, feature = per_latent.nonzero(as_tuple=True)
    table = pd.DataFrame({"example": examples[row].numpy(), "position": positions[row].numpy(),
                          "token": [tokens[i] for i in row.tolist()], "feature": feature.numpy(),
                          "activation": latents[row, feature].numpy(), "attribution": per_latent[row, feature].numpy()})
    residual_table = pd.DataFrame({"example": examples.numpy(), "position": positions.numpy(), "token": tokens,
                                   "error_term": residual.numpy(), "total": (g * x).sum(-1).numpy()})
    return FeatureAttribution(table.sort_values("attribution", key=abs, ascending=False, ignore_index=True),
                              residual_table)


def token_score(lm: Any, position: int, token_id: int) -> Callable[[Any], torch.Tensor]:
    """A score for :func:`feature_attribution` and :func:`feature_effect`: the log-probability the
    subject's LM head (:func:`workbench.features.evaluate.language_model`) gives ``token_id`` at
    ``position``, from the encoder's output [batch]."""

    def score(output: Any) -> torch.Tensor:
        logits = lm.unembed(output.last_hidden_state[:, position])  # [batch, vocab]
        return torch.log_softmax(logits.float(), dim=-1)[:, token_id]

    return score


@torch.no_grad()
def feature_effect(subject: Subject, sae: SparseAutoencoder, hook: str, texts: Sequence[str],
                   score: Callable[[Any], torch.Tensor], ablate: Sequence[int] = (),
                   steer: Optional[Mapping[int, float]] = None, max_length: int = 128) -> pd.DataFrame:
    """The score before and after editing latents at every content position (:func:`edit_features`).

    Returns:
        One row per text: ``example``, ``clean``, ``edited``, ``change`` (edited - clean).
    """
    batch = subject.tokenize(list(texts), max_length=max_length)
    mask = content_mask(batch, subject.tokenizer)
    clean = score(subject.forward(batch)).float()  # [batch]
    with edit_features(subject, sae, hook, mask, ablate=ablate, steer=steer):
        edited = score(subject.forward(batch)).float()
    return pd.DataFrame({"example": range(len(texts)), "clean": clean.numpy(), "edited": edited.numpy(),
                         "change": (edited - clean).numpy()})
