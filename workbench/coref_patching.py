"""The default patching metric of a coreference head (the span-ranking model of Lee et al. 2017): the antecedent
score of a chosen mention's clean top antecedent minus its clean runner-up (another candidate or the dummy, whose
score is 0). Candidate pruning keeps the top mention scores, so a patched run could keep other spans;
:func:`coref_inputs` therefore passes only the clean run's kept spans, which every run then keeps (in text
order), and the metric finds its rows by span index, refusing an output where they are missing. The coreference
task kind (``workbench/kinds/coref.py``) names :func:`coref_metric` as its patching metric.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

SPAN_KEYS = ("span_starts", "span_ends", "span_widths", "span_start_words", "span_end_words", "span_doc")


def coref_inputs(subject: Subject, words: Sequence[str], sentence_starts: Sequence[int] = (0,)
                 ) -> dict[str, torch.Tensor]:
    """A coreference task model's inputs for one document of ``words``: the segments and the candidate spans
    the clean run keeps after pruning (so that every patched run keeps the same ones)."""
    from atinuke.tasks.base import CorefDocument
    from atinuke.tasks.kinds import get_kind

    model = subject.task_model
    if model is None or get_kind(model.config.kind).example_type is not CorefDocument:
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
