"""GAP pronoun resolution (Webster et al., 2018, arXiv 1810.05201): for each pronoun, is name A or name B its
antecedent (or neither).

Head: pair classification over (pronoun, candidate) spans (``atinuke.tasks.heads.gap``). Metrics: the official
GAP scorer's precision, recall and F1 over the A and B decisions, overall and per gender of the pronoun, and
the bias F1(feminine) / F1(masculine) (``atinuke.tasks.gap.gap_scores``); a per-example score is whether the
label (A, B, NEITHER) is right. Trivial baseline: the majority label.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from atinuke.errors import UserInputError
from atinuke.tasks.base import ClassificationExample, TaskSpec
from atinuke.tasks.gap import gap_scores
from atinuke.tasks.kinds.base import TaskKind

if TYPE_CHECKING:  # the heads import torch, which ``import atinuke.tasks`` must not: they are imported on use
    import pandas as pd
    from torch import nn

    from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction


class GapKind(TaskKind):
    name = "gap"
    example_type = ClassificationExample
    needs_labels = True
    trivial_baseline = "majority label"

    def build_head(self, d_model: int, config: HeadConfig, encoder: nn.Module) -> nn.Module:
        from atinuke.tasks.heads.gap import GapHead

        return GapHead(d_model, config)

    def encode(self, tokenizer: Any, config: HeadConfig, examples: Sequence[ClassificationExample],
               use_token_types: bool) -> TaskBatch:
        from atinuke.tasks.heads.gap import encode_gap

        return encode_gap(tokenizer, config, examples, use_token_types)

    def decode(self, config: HeadConfig, output: TaskOutput, batch: TaskBatch,
               examples: Sequence[ClassificationExample]) -> list[TaskPrediction]:
        from atinuke.tasks.heads.classification import decode_classification

        return decode_classification(config, output, batch, len(examples))

    def check_predictions(self, spec: TaskSpec, predictions: Sequence[Any]) -> None:
        unknown = {p for p in predictions if p is not None and p not in spec.labels}
        if unknown:
            raise UserInputError(f"{spec.name}: predicted labels {sorted(map(str, unknown))} are not in "
                                 f"{', '.join(spec.labels)}")

    def score(self, spec: TaskSpec, examples: Sequence[ClassificationExample],
              predictions: Sequence[Any]) -> dict[str, float]:
        genders = [str(example.meta.get("gender", "")) for example in examples]
        missing = [example.id for example, gender in zip(examples, genders) if gender not in ("masculine", "feminine")]
        if missing:
            raise UserInputError(f"{spec.name}: example {missing[0]!r} has no pronoun gender (meta 'gender')")
        return gap_scores(genders, [example.label for example in examples], predictions)

    def example_f1(self, spec: TaskSpec, example: ClassificationExample, prediction: Any) -> float:
        return float(self.example_correct(spec, example, prediction))

    def example_correct(self, spec: TaskSpec, example: ClassificationExample, prediction: Any) -> bool:
        return bool(prediction == example.label)

    def table_meta(self, example: ClassificationExample) -> dict[str, Any]:
        return {"meta_label": str(example.label)}

    def trivial_example_scores(self, gold: pd.Series) -> np.ndarray:
        gold = gold.astype(str)
        majority = gold.value_counts().sort_index().idxmax()
        return (gold == majority).to_numpy(dtype=float)
