"""Default patching metrics for the targets a classifier's logit difference does not cover: a coreference
head's antecedent score and a causal decoder's next token.

- Coreference (the span-ranking model of Lee et al. 2017): the antecedent score of a chosen mention's clean top
  antecedent minus its clean runner-up (another candidate or the dummy, whose score is 0). Candidate pruning
  keeps the top mention scores, so a patched run could keep other spans; :func:`coref_inputs` therefore passes
  only the clean run's kept spans, which every run then keeps (in text order), and the metric finds its rows by
  span index, refusing an output where they are missing.
- A causal decoder: logit(clean next token) - logit(corrupted next token, or the clean runner-up when both
  agree) at the last real position of each row (the logit difference of Wang et al. 2022, arXiv 2211.00593),
  read through the model's unembedding.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

SPAN_KEYS = ("span_starts", "span_ends", "span_widths", "span_start_words", "span_end_words", "span_doc")


# --------------------------------------------------------------------------------------------- coreference

def coref_inputs(subject: Subject, words: Sequence[str], sentence_starts: Sequence[int] = (0,)
                 ) -> dict[str, torch.Tensor]:
    """A coreference task model's inputs for one document of ``words``: the segments and the candidate spans
    the clean run keeps after pruning (so that every patched run keeps the same ones)."""
    from atinuke.tasks.base import CorefDocument

    model = subject.task_model
    if model is None or model.config.kind != "coref":
        raise UserInputError(f"{subject.name}: not a coreference model")
    if not words:
        raise UserInputError("empty document")
    batch = model.encode([CorefDocument("patch", list(words), list(sentence_starts), [])])
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
              **{k: v for k, v in batch.head_inputs.items() if k != "gold_cluster_ids"}}
    head: dict[str, Any] = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = subject.forward({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}, **head)
    top = out.top_span_indices  # [n_top] candidate indices, text order
    inputs.update({k: inputs[k][top] for k in SPAN_KEYS if k in inputs})
    return inputs


def _antecedent_score(output: Any, mention: int, antecedent: int) -> torch.Tensor:
    """The score of span ``antecedent`` (-1: the dummy) as the antecedent of span ``mention`` (candidate indices)."""
    rows = (output.top_span_indices == mention).nonzero()
    if rows.numel() == 0:
        raise UserInputError(f"candidate span {mention} was pruned in a patched run; build the inputs with "
                             "coref_inputs so that every run keeps the clean run's spans")
    row = int(rows[0, 0])
    if antecedent < 0:
        return output.antecedent_scores[row, 0]
    columns = (output.antecedent_indices[row] == antecedent).nonzero()
    if columns.numel() == 0:
        raise UserInputError(f"span {antecedent} is not a candidate antecedent of span {mention} in a patched run")
    return output.antecedent_scores[row, 1 + int(columns[0, 0])]


def coref_metric(output: Any, mention: Optional[int] = None) -> tuple[Callable[[Any], torch.Tensor], str]:
    """The metric on a coreference output (see the module docstring) and its description.

    Args:
        output: the clean run's output.
        mention: the row of ``output.top_span_indices`` to explain; default the mention whose clean top
            antecedent (not the dummy) wins by the largest margin, else the one it loses by the least.
    """
    scores = output.antecedent_scores.detach().clone()  # [n_top, K + 1], col 0 = dummy
    indices = output.antecedent_indices  # [n_top, K], -1 where none
    if scores.shape[1] < 2 or not (indices >= 0).any():
        raise UserInputError("the document has fewer than two candidate mentions; nothing to link")
    valid = torch.cat([torch.ones_like(indices[:, :1], dtype=torch.bool), indices >= 0], 1)  # [n_top, K + 1]
    scores[~valid] = float("-inf")
    best_ant = scores[:, 1:].argmax(1) + 1  # [n_top]: the best real antecedent's column
    best = scores.gather(1, best_ant[:, None]).squeeze(1)
    others = scores.scatter(1, best_ant[:, None], float("-inf")).max(1).values  # runner-up (dummy included)
    margin = torch.where(valid[:, 1:].any(1), best - others, torch.full_like(best, float("-inf")))
    row = int(margin.argmax()) if mention is None else int(mention)
    if not 0 <= row < len(scores) or not valid[row, 1:].any():
        raise UserInputError(f"mention {mention}: no such top span with a candidate antecedent")
    span = int(output.top_span_indices[row])
    antecedent = int(indices[row, int(best_ant[row]) - 1])
    masked = scores[row].clone()
    masked[int(best_ant[row])] = float("-inf")
    runner_column = int(masked.argmax())
    runner = -1 if runner_column == 0 else int(indices[row, runner_column - 1])

    def metric(out: Any) -> torch.Tensor:
        return _antecedent_score(out, span, antecedent) - _antecedent_score(out, span, runner)

    what = "the dummy" if runner < 0 else f"span {runner}"
    return metric, f"antecedent score of span {antecedent} for mention span {span} minus that of {what}"


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
    if subject.task_model is not None and subject.task_model.config.kind == "coref":
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
