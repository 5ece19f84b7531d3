"""Decision thresholds tuned after fine-tuning on held-out training examples.

Two heads end in a "nothing" decision whose score is fixed by convention rather than learnt: SQuAD 2.0's null
answer (abstain when ``null - best_span > null_threshold``; Devlin et al., 2019, arXiv 1810.04805, §4.3 tune
that threshold) and coreference's dummy antecedent (score 0; Lee et al., 2017, arXiv 1707.07045). A briefly
trained head ranks well before it is calibrated against that constant: on the demo's coreference data a
MiniLM head put the gold antecedent first for half the anaphors, but below the dummy for all of them, so it
predicted no cluster at all. :func:`calibrate` picks the threshold that maximises the task's headline metric
on training examples the run did not train on, and never looks at the evaluation split.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from atinuke.tasks.base import Example
from atinuke.tasks.kinds.base import get_kind

logger = logging.getLogger(__name__)

N_CANDIDATES = 48


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` chose.

    Attributes:
        parameter: the ``HeadConfig`` field ("null_threshold" or "link_threshold").
        value: its new value.
        default: its value before calibration.
        metric: the headline metric maximised.
        before, after: that metric on the calibration examples at ``default`` and at ``value``.
        n_examples: calibration examples used.
    """

    parameter: str
    value: float
    default: float
    metric: str
    before: float
    after: float
    n_examples: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def best_threshold(candidates: Sequence[float], score: Callable[[float], float], default: float) -> tuple[float, float]:
    """The candidate with the highest ``score`` (ties: the one nearest ``default``), and that score.

    ``default`` is always among the candidates, so calibration can only match or improve on it.
    """
    values = sorted(set(float(c) for c in candidates if math.isfinite(c)) | {float(default)})
    scored = [(score(t), -abs(t - default), t) for t in values]
    best = max(scored)
    return best[2], best[0]


def _candidates(values: np.ndarray, low_quantile: float) -> list[float]:
    if values.size == 0:
        return []
    cuts = np.quantile(values, np.linspace(low_quantile, 1.0, N_CANDIDATES))
    return list(np.unique(np.round(cuts, 4)))


@torch.no_grad()
def _forward_all(model, examples: Sequence[Example], batch_size: int) -> list[tuple]:
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start: start + batch_size])
        batch = model.encode(chunk).to(model.device)
        out.append((model(**batch.model_inputs(with_targets=False)), batch, chunk))
    return out


def calibrate_coref(model, examples: Sequence[Example], batch_size: int) -> Calibration:
    """The coreference link threshold (the dummy antecedent's score) that maximises the headline metric."""
    from atinuke.tasks.heads.coref import decode_coref
    from atinuke.tasks.metrics import score_task

    passes = _forward_all(model, examples, batch_size)
    best_scores = np.concatenate([output.antecedent_scores[:, 1:].max(1).values.float().cpu().numpy()
                                  for output, _, _ in passes if output.antecedent_scores.shape[1] > 1] or [np.zeros(0)])
    default = float(model.config.link_threshold)
    metric = model.spec.metric

    @functools.lru_cache(maxsize=None)  # best_threshold already scores the default
    def score(threshold: float) -> float:
        config = dataclasses.replace(model.config, link_threshold=threshold)
        values = [p.value for output, batch, chunk in passes for p in decode_coref(config, output, batch, chunk)]
        return float(score_task(model.spec.name, examples, values)[metric])

    # A span links only when its best antecedent clears the threshold, and most kept spans should not link:
    # the candidates are the upper half of the best-antecedent scores.
    value, after = best_threshold(_candidates(best_scores[best_scores > -1e3], 0.5), score, default)
    return Calibration("link_threshold", value, default, metric, score(default), after, len(examples))


def calibrate_qa(model, examples: Sequence[Example], batch_size: int) -> Calibration:
    """The SQuAD 2.0 null-answer threshold that maximises the headline metric."""
    from atinuke.tasks.heads.qa import decode_qa
    from atinuke.tasks.metrics import score_task

    passes = _forward_all(model, examples, batch_size)
    # Decoded once never abstaining and once always abstaining, each prediction's score is its share of the
    # same softmax, so log(p_null) - log(p_best) is exactly the margin null - best_span that the threshold cuts.
    never = dataclasses.replace(model.config, null_threshold=math.inf)
    always = dataclasses.replace(model.config, null_threshold=-math.inf)
    answers, margins = [], []
    for output, batch, chunk in passes:
        for best, null in zip(decode_qa(never, output, batch, chunk), decode_qa(always, output, batch, chunk)):
            answers.append(best.value)
            has_span = best.value != "" and best.score > 0 and null.score > 0
            margins.append(math.log(null.score) - math.log(best.score) if has_span else math.inf)
    margins_array = np.array(margins)
    default = float(model.config.null_threshold)
    metric = model.spec.metric

    @functools.lru_cache(maxsize=None)
    def score(threshold: float) -> float:
        values = ["" if m > threshold else a for a, m in zip(answers, margins)]
        return float(score_task(model.spec.name, examples, values)[metric])

    finite = margins_array[np.isfinite(margins_array)]
    value, after = best_threshold(_candidates(finite, 0.0), score, default)
    return Calibration("null_threshold", value, default, metric, score(default), after, len(examples))


def calibrate(model, examples: Sequence[Example], batch_size: int = 32) -> Optional[Calibration]:
    """Tune the head's decision threshold on ``examples`` and set it on ``model.config``.

    Args:
        model: a :class:`~atinuke.tasks.heads.model.TaskModel` (left in the mode it was in).
        examples: labelled examples the model was not trained on.
        batch_size: examples per forward pass.

    Returns:
        The :class:`Calibration`, or None when the head has nothing to calibrate (classification, tagging,
        QA without a null answer) or there are no examples.
    """
    if not examples:
        return None
    was_training = model.training
    model.eval()
    try:
        result = get_kind(model.config.kind).calibrate(model, examples, batch_size)
    finally:
        model.train(was_training)
    if result is None:  # the kind has nothing to calibrate (classification, tagging, QA without a null answer)
        return None
    model.config = dataclasses.replace(model.config, **{result.parameter: result.value})
    logger.info("calibrated %s = %.4g on %d held-out training examples: %s %.4f -> %.4f (at %.4g)",
                result.parameter, result.value, result.n_examples, result.metric, result.before, result.after,
                result.default)
    return result
