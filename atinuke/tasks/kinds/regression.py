"""Sequence regression (STS-B, a user's scored texts): one real score per example or sentence pair.

Head: the classification head with one output and a mean-squared-error loss (Devlin et al., 2019, arXiv
1810.04805). Metric: Pearson and Spearman correlation (GLUE, Wang et al., 2018, arXiv 1804.07461); an
example counts as correct within ``REGRESSION_TOLERANCE`` (a slicing convention). Trivial baseline: the mean
score.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from atinuke.tasks.base import ClassificationExample, TaskSpec
from atinuke.tasks.kinds.base import TaskKind
from atinuke.tasks.metrics import REGRESSION_TOLERANCE, gold_label, pearson, spearman

if TYPE_CHECKING:  # the heads import torch, which ``import atinuke.tasks`` must not: they are imported on use
    import pandas as pd
    from torch import nn

    from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction


class RegressionKind(TaskKind):
    name = "regression"
    example_type = ClassificationExample
    trivial_baseline = "mean score"
    user_roles = (("text", "score"), ("text_b",))
    user_metric = "pearson"
    user_signature = ("score",)
    user_priority = 2
    user_role_aliases = (("label", "score"),)  # label=COLUMN of a regression task names its scores

    def build_head(self, d_model: int, config: HeadConfig, encoder: nn.Module) -> nn.Module:
        from atinuke.tasks.heads.classification import SequenceHead

        return SequenceHead(d_model, config, regression=True)

    def encode(self, tokenizer: Any, config: HeadConfig, examples: Sequence[ClassificationExample],
               use_token_types: bool) -> TaskBatch:
        from atinuke.tasks.heads.classification import encode_classification

        return encode_classification(tokenizer, config, examples, use_token_types, regression=True)

    def decode(self, config: HeadConfig, output: TaskOutput, batch: TaskBatch,
               examples: Sequence[ClassificationExample]) -> list[TaskPrediction]:
        from atinuke.tasks.heads.classification import decode_classification

        return decode_classification(config, output, batch, len(examples), regression=True)

    def user_example(self, table: Any, location: str, record: dict[str, Any], mapping: dict[str, str], key: str,
                     meta: dict[str, Any]) -> ClassificationExample:
        from atinuke.tasks.userdata import cell_number, cell_text

        text = cell_text(location, record, mapping["text"])
        pair = cell_text(location, record, mapping["text_b"]) if "text_b" in mapping else None
        return ClassificationExample(key, text, pair, cell_number(location, record, mapping["score"]), meta=meta)

    def score(self, spec: TaskSpec, examples: Sequence[ClassificationExample],
              predictions: Sequence[Any]) -> dict[str, float]:
        values = [float(p) for p in predictions]
        gold_values = [float(gold_label(example)) for example in examples]
        return {"pearson": pearson(gold_values, values), "spearman": spearman(gold_values, values)}

    def example_f1(self, spec: TaskSpec, example: ClassificationExample, prediction: Any) -> float:
        return float(self.example_correct(spec, example, prediction))

    def example_correct(self, spec: TaskSpec, example: ClassificationExample, prediction: Any) -> bool:
        return abs(float(prediction) - float(gold_label(example))) <= REGRESSION_TOLERANCE

    def encode_value(self, value: Any) -> str:
        return repr(float(value))

    def trivial_example_scores(self, gold: pd.Series) -> np.ndarray:
        values = gold.astype(str).astype(float).to_numpy()
        return (np.abs(values - values.mean()) <= REGRESSION_TOLERANCE).astype(float)
