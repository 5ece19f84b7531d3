"""Default patching metrics for the targets a classifier's logit difference does not cover, and the clean and
corrupted inputs of ``workbench patch|circuit``. A coreference head's (a task kind's own metric) is in
:mod:`workbench.coref_patching`.

- A causal decoder: logit(clean next token) - logit(corrupted next token, or the clean runner-up when both
  agree) at the last real position of each row (the logit difference of Wang et al. 2022, arXiv 2211.00593),
  read through the model's unembedding.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

SPAN_KEYS = ("span_starts", "span_ends", "span_widths", "span_start_words", "span_end_words", "span_doc")


# --------------------------------------------------------------------------------------------- decoders

def is_causal(subject: Subject, inputs: dict[str, torch.Tensor]) -> bool:
    """Whether the subject is a causal decoder without a task head (its adapter says: :attr:`Subject.causal`);
    ``inputs`` are not needed and kept for the callers' signature."""
    return subject.task_model is None and subject.causal


def unembedding(subject: Subject) -> Callable[[torch.Tensor], torch.Tensor]:
    """[..., d_model] final states -> [..., vocab] next-token logits, through the decoder's own LM head
    (:func:`workbench.lm.language_model`: the checkpoint's head around the subject's modules, tied or untied)."""
    from workbench.lm import language_model

    lm = language_model(subject)
    if lm is None:
        raise UserInputError(f"{subject.name}: a decoder whose checkpoint has no LM head (an untied output "
                             "projection saved without its weights); no next-token logits to patch")
    return lm.readout


def next_token_metric(subject: Subject, clean: dict[str, torch.Tensor], corrupted: dict[str, torch.Tensor]
                      ) -> tuple[Callable[[Any], torch.Tensor], str]:
    """logit(clean next token) - logit(corrupted next token, or the clean runner-up) at each row's last real
    position, averaged over rows (see the module docstring)."""
    readout = unembedding(subject)
    last = clean["attention_mask"].sum(1) - 1  # [batch]
    if not torch.equal(last, corrupted["attention_mask"].sum(1) - 1):
        raise UserInputError("clean and corrupted rows end at different positions; patching needs aligned tokens")
    rows = torch.arange(len(last))

    def logits(output: Any) -> torch.Tensor:  # [batch, vocab]
        return readout(output.last_hidden_state[rows, last])

    with torch.no_grad():
        a, b = logits(subject.forward(clean)), logits(subject.forward(corrupted))
    right, other = a.argmax(-1), b.argmax(-1)
    wrong = torch.where(other == right, a.topk(2, dim=-1).indices[:, 1], other)

    def metric(output: Any) -> torch.Tensor:
        values = logits(output)
        return (values[rows, right] - values[rows, wrong]).mean()

    return metric, "next-token logit(clean prediction) - logit(corrupted prediction or runner-up) at the last token"


# --------------------------------------------------------------------------------------------- CLI inputs

def pair_inputs(subject: Subject, clean: str, corrupted: str, clean_pair: Optional[str] = None,
                corrupted_pair: Optional[str] = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The clean and corrupted inputs of ``workbench patch|circuit``: tokenised texts (and pairs), or for a
    coreference model one document each (words split on whitespace) with the clean run's kept spans."""
    for text, flag in ((clean, "--clean"), (corrupted, "--corrupted")):
        if not text.strip():
            raise UserInputError(f"{flag}: empty text")
    from workbench.kinds import task_workbench_kind

    kind = task_workbench_kind(subject.task)
    if kind is not None and kind.rows_by_document:  # coreference: one document per text, with its spans
        from workbench.coref_patching import coref_inputs

        a = coref_inputs(subject, clean.split())
        b = dict(a, **{k: v for k, v in coref_inputs(subject, corrupted.split()).items()
                       if k in ("input_ids", "attention_mask")})
        if len(clean.split()) != len(corrupted.split()):
            raise UserInputError(f"--clean has {len(clean.split())} words and --corrupted "
                                 f"{len(corrupted.split())}; patching needs documents of the same length")
    else:
        a = dict(subject.tokenize([clean], None if clean_pair is None else [clean_pair]))
        b = dict(subject.tokenize([corrupted], None if corrupted_pair is None else [corrupted_pair]))
    if a["input_ids"].shape != b["input_ids"].shape:
        raise UserInputError(f"--clean has {a['input_ids'].shape[-1]} tokens and --corrupted "
                             f"{b['input_ids'].shape[-1]}; patching needs inputs of the same length")
    return a, b
