"""SAE latents as units of analysis beyond one model: per-example feature activations as error-cohort
signals, the latents that separate two groups of examples, and matching two dictionaries' latents.

- :func:`example_activations`: each example's activation of every latent, pooled over its content tokens
  (max, mean, or the last token: a causal decoder's read-out). Encoders' classification heads read [CLS],
  a special token SAEs are not trained on (:mod:`workbench.features.store` leaves it out), so pooling over
  the tokens the dictionary does describe is the default.
- :func:`separating_features`: latents ranked by how well their pooled activation separates two groups
  (the failed examples from the rest; or where model A is right and B wrong), by the AUROC of the
  Mann-Whitney U statistic (Mann and Whitney, 1947; ``scipy.stats.mannwhitneyu``).
- :func:`feature_signals`: the top error-predictive latents as ``feature_<f>_active`` columns, for
  :func:`workbench.errors.error_cohorts`, so cohorts such as "feature 123 active" appear (features as the
  units of error analysis, as Marks et al., 2024, "Sparse Feature Circuits", arXiv 2403.19647, use them as
  units of circuits).
- :func:`match_features`: two dictionaries' latents matched by the Pearson correlation of their activations
  on the same units (tokens, or words when the tokenizers differ), best match per latent and one-to-one by
  the Hungarian algorithm; a latent whose best correlation stays under a threshold is one the other model
  lacks (the activation-correlation matching of Bricken et al., 2023, "Towards Monosemanticity", and
  Lan et al., 2024, "Sparse Autoencoders Reveal Universal Feature Spaces Across LLMs", arXiv 2410.06981).

Choosing the latents on the same examples the cohort tree is fitted to is exploratory: a cohort found this
way is a hypothesis to test on held-out examples, not a finding.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from atinuke.errors import UserInputError
from workbench.features.sae import SparseAutoencoder
from workbench.lm import content_mask

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

POOLS = ("max", "mean", "last")


@torch.no_grad()
def token_activations(subject: Subject, sae: SparseAutoencoder, hook: str, text: str,
                      text_pair: Optional[str] = None, max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(latents [pos, width] at every position, content mask [pos], the tokenised batch) of one text."""
    batch = subject.tokenize([text], None if text_pair is None else [text_pair], max_length=max_length)
    activation = subject.run_with_cache(batch, [hook])[hook]  # [1, pos, d]
    if activation.dim() != 3 or activation.shape[-1] != sae.config.d_in:
        raise UserInputError(f"{hook}: activation of shape {tuple(activation.shape)}; the SAE reads d_in={sae.config.d_in}")
    return sae.encode(activation[0].float()), content_mask(batch, subject.tokenizer)[0], batch


@torch.no_grad()
def example_activations(subject: Subject, sae: SparseAutoencoder, hook: str, texts: Sequence[str],
                        text_pairs: Optional[Sequence[Optional[str]]] = None, pool: str = "max",
                        batch_size: int = 16, max_length: int = 128,
                        progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """Each example's activation of every latent, pooled over its content tokens.

    Args:
        text_pairs: second segments (None where an example has none).
        pool: "max", "mean" or "last" (the last content token).
        progress: called with (done, total) after each batch.

    Returns:
        Array [n_texts, width] float32.
    """
    if pool not in POOLS:
        raise UserInputError(f"unknown pooling {pool!r}; choose one of {', '.join(POOLS)}")
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise UserInputError(f"{len(texts)} texts but {len(text_pairs)} text pairs")
    paired = [text_pairs is not None and isinstance(text_pairs[i], str) for i in range(len(texts))]
    if any(paired) and not all(paired):  # pairs and single texts cannot share a batch: one pass for each
        out = np.zeros((len(texts), sae.config.width), dtype=np.float32)
        for side in (True, False):
            keep = [i for i, has in enumerate(paired) if has == side]
            second = [text_pairs[i] for i in keep] if side and text_pairs is not None else None
            out[keep] = example_activations(subject, sae, hook, [texts[i] for i in keep], second, pool,
                                            batch_size, max_length)
        return out
    sae.eval()
    out = np.zeros((len(texts), sae.config.width), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        pairs = [str(p) for p in text_pairs[start:start + batch_size]] if text_pairs is not None and all(paired) else None
        batch = subject.tokenize(chunk, pairs, max_length=max_length)
        activation = subject.run_with_cache(batch, [hook])[hook]  # [b, pos, d]
        if activation.dim() != 3 or activation.shape[-1] != sae.config.d_in:
            raise UserInputError(f"{hook}: activation of shape {tuple(activation.shape)}; the SAE reads "
                                 f"d_in={sae.config.d_in}")
        mask = content_mask(batch, subject.tokenizer)  # [b, pos]
        latents = sae.encode(activation.float().flatten(0, 1)).view(*mask.shape, -1)  # [b, pos, width]
        weights = mask.float().unsqueeze(-1)  # [b, pos, 1]
        if pool == "max":
            pooled = latents.masked_fill(~mask.unsqueeze(-1), 0.0).amax(1)  # latents are >= 0
        elif pool == "mean":
            pooled = (latents * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        else:
            positions = torch.arange(mask.shape[1]).expand_as(mask)
            last = torch.where(mask, positions, -1).amax(1).clamp(min=0)  # [b]
            pooled = latents[torch.arange(len(chunk)), last] * mask.any(1, keepdim=True).float()
        out[start:start + len(chunk)] = pooled.numpy()
        if progress is not None:
            progress(min(start + batch_size, len(texts)), len(texts))
    return out


def separating_features(activations: np.ndarray, group: Sequence[bool] | np.ndarray, k: int = 10,
                        min_active: int = 1) -> pd.DataFrame:
    """Latents ranked by how well their activation separates ``group`` (True) from the other examples.

    Args:
        activations: [n, width] per-example activations (:func:`example_activations`).
        group: [n] membership (e.g. the failed predictions).
        k: how many latents to return.
        min_active: latents active on fewer examples are left out.

    Returns:
        DataFrame of the ``k`` latents with the largest |AUROC - 0.5|: ``feature``, ``auroc`` (P(a group
        member's activation > a non-member's), ties half), ``rate_in``/``rate_out`` (share of each side
        where the latent is active), ``mean_in``/``mean_out``, ``p_value`` (two-sided Mann-Whitney U).
    """
    from scipy.stats import mannwhitneyu

    x = np.asarray(activations, dtype=np.float64)
    member = np.asarray(group, dtype=bool)
    if x.ndim != 2 or len(member) != len(x):
        raise UserInputError(f"activations {x.shape} and group ({len(member)}) do not match")
    if member.all() or not member.any():
        raise UserInputError("separating features need examples on both sides (some in the group, some not)")
    active = (x > 0).sum(0) >= min_active  # [width]
    columns = np.flatnonzero(active)
    if not len(columns):
        return pd.DataFrame(columns=["feature", "auroc", "rate_in", "rate_out", "mean_in", "mean_out", "p_value"])
    inside, outside = x[member][:, columns], x[~member][:, columns]
    test = mannwhitneyu(inside, outside, axis=0, alternative="two-sided")
    auroc = test.statistic / (len(inside) * len(outside))  # [n_active]
    table = pd.DataFrame({"feature": columns, "auroc": auroc, "rate_in": (inside > 0).mean(0),
                          "rate_out": (outside > 0).mean(0), "mean_in": inside.mean(0), "mean_out": outside.mean(0),
                          "p_value": test.pvalue})
    order = np.lexsort((table["feature"].to_numpy(), -np.abs(table["auroc"].to_numpy() - 0.5)))
    return table.iloc[order[:k]].reset_index(drop=True)


def feature_signals(activations: np.ndarray, ids: Sequence, correct: Sequence[bool] | np.ndarray, k: int = 5,
                    threshold: float = 0.0, values: bool = False) -> pd.DataFrame:
    """Per-example signals for :func:`workbench.errors.error_cohorts`: for the ``k`` latents that best
    separate the failed examples (:func:`separating_features`), ``feature_<f>_active`` (activation above
    ``threshold``) as a bool column, or with ``values`` the pooled activation itself as ``feature_<f>`` (the
    tree then picks its own threshold).

    Returns:
        DataFrame: ``id`` and one column per chosen latent (none when every prediction is right or every
        one wrong).
    """
    failed = ~np.asarray(correct, dtype=bool)
    table = pd.DataFrame({"id": list(ids)})
    if failed.all() or not failed.any():
        return table
    chosen = separating_features(activations, failed, k=k)
    for feature in chosen["feature"]:
        column = np.asarray(activations)[:, int(feature)]
        if values:
            table[f"feature_{int(feature)}"] = column.astype(float)
        else:
            table[f"feature_{int(feature)}_active"] = column > threshold
    return table


@dataclass
class FeatureMatch:
    """Two dictionaries' latents matched by activation correlation on the same units.

    Attributes:
        best_a: per latent of A: ``feature_a``, ``best_b`` (its most correlated latent of B),
            ``correlation``, ``matched`` (correlation >= threshold), ``frequency_a`` (share of units where it
            fires); ``best_b`` the same from B's side (``feature_b``, ``best_a``, ...).
        pairs: the one-to-one matching (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``):
            ``feature_a``, ``feature_b``, ``correlation``, sorted by correlation.
        only_a, only_b: latents that fire on the units but have no match of at least ``threshold``: what one
            model's dictionary has that the other's lacks.
        threshold, n_units: the settings.
    """

    best_a: pd.DataFrame
    best_b: pd.DataFrame
    pairs: pd.DataFrame
    only_a: list[int]
    only_b: list[int]
    threshold: float
    n_units: int


def _standardise(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(0)
    norm = np.linalg.norm(centred, axis=0)
    return np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)  # dead latents stay 0


def match_features(activations_a: np.ndarray, activations_b: np.ndarray, threshold: float = 0.5) -> FeatureMatch:
    """Match latents of two dictionaries by the Pearson correlation of their activations on the same units.

    Args:
        activations_a, activations_b: [n_units, width_a] and [n_units, width_b], row i of both the same
            unit (token or word) of the same text.
        threshold: the correlation a latent needs with some latent of the other dictionary to count as
            shared.
    """
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(activations_a, dtype=np.float64), np.asarray(activations_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise UserInputError(f"activations of {a.shape} and {b.shape}: need [units, width] on the same units")
    if len(a) < 3:
        raise UserInputError(f"{len(a)} units: correlations need at least 3")
    corr = _standardise(a).T @ _standardise(b)  # [width_a, width_b] Pearson correlations
    fires_a, fires_b = (a > 0).mean(0), (b > 0).mean(0)

    def best(c: np.ndarray, fires: np.ndarray, mine: str, other: str) -> pd.DataFrame:
        index = c.argmax(1)
        value = c[np.arange(len(c)), index]
        return pd.DataFrame({f"feature_{mine}": np.arange(len(c)), f"best_{other}": index, "correlation": value,
                             "matched": value >= threshold, f"frequency_{mine}": fires})

    best_a, best_b = best(corr, fires_a, "a", "b"), best(corr.T, fires_b, "b", "a")
    rows, cols = linear_sum_assignment(corr, maximize=True)
    pairs = pd.DataFrame({"feature_a": rows, "feature_b": cols, "correlation": corr[rows, cols]})
    pairs = pairs.sort_values("correlation", ascending=False, ignore_index=True)
    only_a = best_a[(~best_a["matched"]) & (fires_a > 0)].sort_values("frequency_a", ascending=False)["feature_a"]
    only_b = best_b[(~best_b["matched"]) & (fires_b > 0)].sort_values("frequency_b", ascending=False)["feature_b"]
    logger.info("feature matching: %d of %d live A latents and %d of %d live B latents matched at r >= %.2f",
                int(best_a["matched"][fires_a > 0].sum()), int((fires_a > 0).sum()),
                int(best_b["matched"][fires_b > 0].sum()), int((fires_b > 0).sum()), threshold)
    return FeatureMatch(best_a=best_a, best_b=best_b, pairs=pairs, only_a=[int(f) for f in only_a],
                        only_b=[int(f) for f in only_b], threshold=threshold, n_units=len(a))
