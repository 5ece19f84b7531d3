"""How good a sparse autoencoder is, on held-out tokens, beside the same SAE trained on a random model.

- L0 (active latents per token), fraction of variance explained, dead latents (never fire on the held-out
  tokens) and dense latents (fire on more than 10% of them);
- loss recovered: the model's own loss with the reconstruction spliced in at the hook, against the clean
  model and against zero-ablating the hook: (CE_zero - CE_sae) / (CE_zero - CE_clean) (Bricken et al. 2023;
  Gao et al. 2024). For masked LMs the loss is the MLM cross-entropy on a fixed 15% mask, for causal LMs the
  next-token cross-entropy. An encoder without an LM head (MiniLM) has no loss of its own: there the same ratio
  is taken of the final hidden states' squared error ("output recovered"), and the table says which it is;
- the control (Heap et al. 2025, arXiv 2501.17727): a copy of the model re-initialised by its own
  initialiser, with the same tokenizer and corpus, gets an SAE trained identically. SAE metrics that are as
  good on the random model say little about what the trained model learnt.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, cast

import torch
import torch.nn as nn

from atinuke.encoders import Encoder
from atinuke.errors import UserInputError
from workbench.features.sae import SparseAutoencoder
from workbench.lm import LanguageModel, content_mask, language_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from workbench.subject import Subject

logger = logging.getLogger(__name__)

__all__ = ["SAEMetrics", "evaluate_sae", "randomized_copy", "splice"]

DENSE_FRACTION = 0.1


@dataclass
class SAEMetrics:
    """Held-out metrics of one SAE (see the module docstring); ``loss_kind`` names the loss used."""

    n_tokens: int
    l0: float
    fve: float
    mse: float
    dead_fraction: float
    dense_fraction: float
    loss_kind: str
    loss_clean: float
    loss_sae: float
    loss_zero: float
    loss_recovered: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def splice(subject: Subject, hook: str, reconstruct: Callable[[torch.Tensor], torch.Tensor], mask: torch.Tensor):
    """A hook context that replaces ``hook``'s activation at ``mask`` positions by ``reconstruct(rows)``."""

    def replace(activation: torch.Tensor, info: Any) -> torch.Tensor:  # [batch, pos, d]
        out = activation.clone()
        out[mask] = reconstruct(activation[mask]).to(activation.dtype)
        return out

    return subject.hooks([(hook, replace)])


def _final(subject: Subject, batch: Any) -> torch.Tensor:
    return subject.forward(batch).last_hidden_state  # [batch, pos, d_model]


@torch.no_grad()
def evaluate_sae(sae: SparseAutoencoder, subject: Subject, hook: str, texts: Sequence[str], batch_size: int = 16,
                 max_length: int = 128, seed: int = 0, lm: Any = "auto") -> SAEMetrics:
    """Every metric of the module docstring on ``texts`` (held out from training).

    Args:
        lm: the :class:`LanguageModel` whose loss is recovered; "auto" finds the subject's own, None uses the
            output-recovered proxy.
    """
    if not texts:
        raise UserInputError("no held-out texts to evaluate the SAE on")
    sae.eval()
    lm = language_model(subject) if lm == "auto" else lm
    fired = torch.zeros(sae.config.width, dtype=torch.long)
    n_tokens, l0_sum, residual, sums, sq_sums = 0, 0.0, 0.0, None, None
    clean = spliced = zeroed = 0.0
    n_batches = 0
    for start in range(0, len(texts), batch_size):
        batch = subject.tokenize(list(texts[start:start + batch_size]), max_length=max_length)
        mask = content_mask(batch, subject.tokenizer)
        x = subject.run_with_cache(batch, [hook])[hook][mask].float()  # [n, d]
        out = sae(x)
        active = out.latents > 0
        fired += active.sum(0)
        n_tokens += len(x)
        l0_sum += float(active.sum())
        residual += float((x - out.reconstruction).pow(2).sum())
        sums = x.sum(0) if sums is None else sums + x.sum(0)
        sq_sums = x.pow(2).sum(0) if sq_sums is None else sq_sums + x.pow(2).sum(0)

        def by_sae(rows: torch.Tensor) -> torch.Tensor:
            return sae(rows.float()).reconstruction

        if lm is not None:
            clean += float(lm.loss(batch, seed + start))
            with splice(subject, hook, by_sae, mask):
                spliced += float(lm.loss(batch, seed + start))
            with splice(subject, hook, torch.zeros_like, mask):
                zeroed += float(lm.loss(batch, seed + start))
        else:
            reference = _final(subject, batch)
            real = batch["attention_mask"].bool()
            with splice(subject, hook, by_sae, mask):
                spliced += float((_final(subject, batch) - reference)[real].pow(2).sum(-1).mean())
            with splice(subject, hook, torch.zeros_like, mask):
                zeroed += float((_final(subject, batch) - reference)[real].pow(2).sum(-1).mean())
        n_batches += 1
    assert sums is not None and sq_sums is not None  # texts is not empty, so the loop ran
    total_sq = float((sq_sums - sums.pow(2) / n_tokens).sum())
    clean, spliced, zeroed = clean / n_batches, spliced / n_batches, zeroed / n_batches
    # Undefined when zero-ablating the hook does not hurt (a random model can do better without it).
    recovered = (zeroed - spliced) / (zeroed - clean) if zeroed > clean else float("nan")
    frequency = fired.float() / max(n_tokens, 1)
    return SAEMetrics(n_tokens=n_tokens, l0=l0_sum / n_tokens, fve=1 - residual / max(total_sq, 1e-12),
                      mse=residual / n_tokens, dead_fraction=float((fired == 0).float().mean()),
                      dense_fraction=float((frequency > DENSE_FRACTION).float().mean()),
                      loss_kind=("causal LM cross-entropy" if lm.causal else "MLM cross-entropy (15% mask)")
                      if lm is not None else "output recovered (final hidden-state squared error; no LM head)",
                      loss_clean=clean, loss_sae=spliced, loss_zero=zeroed, loss_recovered=recovered)


def randomized_copy(subject: Subject, seed: int = 0, lm: Any = "auto") -> tuple[Any, Optional[LanguageModel]]:
    """The subject's architecture re-initialised by its own initialiser (same tokenizer, same hook names),
    and its LM (a re-initialised LM head around the random encoder) when the subject has one (``lm``: the
    subject's :class:`LanguageModel` if already loaded, "auto" to look for it)."""
    from workbench.subject import Subject

    if subject.task_model is not None:
        raise UserInputError("the random-model control is for encoders and LMs; give the pretrained model")
    trained_lm = language_model(subject) if lm == "auto" else lm
    # Offset so the control is never the trained model's own starting point (pretraining seeds are small).
    torch.manual_seed(seed + 1_000_003)
    head: Optional[nn.Module] = None
    causal = False
    if trained_lm is not None:
        head = type(trained_lm.model)(copy.deepcopy(trained_lm.model.config)).eval()
        causal = trained_lm.causal
        fresh = cast("PreTrainedModel", head).base_model  # the LM's encoder (its base_model_prefix)
    else:
        fresh = type(subject.encoder)(copy.deepcopy(subject.encoder.config)).eval()
    control = Subject(Encoder(name=f"{subject.name} (random init)", kind=subject.kind,
                              model=cast("PreTrainedModel", fresh), tokenizer=subject.tokenizer, path=subject.path))
    return control, (LanguageModel(control, head, causal) if head is not None else None)
