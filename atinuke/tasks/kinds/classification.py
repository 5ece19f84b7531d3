"""Sequence classification (GLUE, SNLI, a user's labelled texts): a label per example or sentence pair.

Head: [CLS] or mean pooling -> tanh layer -> class logits (Devlin et al., 2019, arXiv 1810.04805). Metric:
accuracy, plus MCC (CoLA, AX), binary F1 (MRPC, QQP) and matched/mismatched accuracy (MNLI) as GLUE reports
them (Wang et al., 2018, arXiv 1804.07461). Trivial baseline: the majority class.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from atinuke.errors import UserInputError
from atinuke.tasks.base import ClassificationExample, Example, TaskSpec
from atinuke.tasks.kinds.base import TaskKind
from atinuke.tasks.metrics import accuracy, binary_f1, gold_label, matthews_corr

if TYPE_CHECKING:  # the heads import torch, which ``import atinuke.tasks`` must not: they are imported on use
    import pandas as pd
    from torch import nn

    from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction


class ClassificationKind(TaskKind):
    name = "classification"
    example_type = ClassificationExample
    needs_labels = True
    trivial_baseline = "majority class"
    user_roles = (("text", "label"), ("text_b",))
    user_metric = "accuracy"
    user_min_labels = 2

    def build_head(self, d_model: int, config: HeadConfig, encoder: nn.Module) -> nn.Module:
        from atinuke.tasks.heads.classification import SequenceHead

        return SequenceHead(d_model, config)

    def encode(self, tokenizer: Any, config: HeadConfig, examples: Sequence[ClassificationExample],
               use_token_types: bool) -> TaskBatch:
        from atinuke.tasks.heads.classification import encode_classification

        return encode_classification(tokenizer, config, examples, use_token_types)

    def decode(self, config: HeadConfig, output: TaskOutput, batch: TaskBatch,
               examples: Sequence[ClassificationExample]) -> list[TaskPrediction]:
        from atinuke.tasks.heads.classification import decode_classification

        return decode_classification(config, output, batch, len(examples))

    def user_example(self, table: Any, location: str, record: dict[str, Any], mapping: dict[str, str], key: str,
                     meta: dict[str, Any]) -> ClassificationExample:
        from atinuke.tasks.userdata import cell_label, cell_text

        text = cell_text(location, record, mapping["text"])
        pair = cell_text(location, record, mapping["text_b"]) if "text_b" in mapping else None
        return ClassificationExample(key, text, pair, cell_label(table, location, record, mapping["label"]), meta=meta)

    def label_set(self, examples: Sequence[Example]) -> tuple[str, ...]:
        from atinuke.tasks.userdata import sorted_labels

        return sorted_labels([str(ex.label) for ex in examples if isinstance(ex, ClassificationExample)])

    def check_predictions(self, spec: TaskSpec, predictions: Sequence[Any]) -> None:
        unknown = {p for p in predictions if p not in spec.labels}
        if unknown:
            raise UserInputError(f"{spec.name}: predicted labels {sorted(map(str, unknown))} are not in "
                                 f"{', '.join(spec.labels)}")

    def score(self, spec: TaskSpec, examples: Sequence[ClassificationExample],
              predictions: Sequence[Any]) -> dict[str, float]:
        name = spec.name
        gold = [gold_label(example) for example in examples]
        scores = {"accuracy": accuracy(gold, predictions)}
        if name in ("cola", "ax") or spec.metric == "mcc":
            scores["mcc"] = matthews_corr(gold, predictions)
        if name in ("mrpc", "qqp") or spec.metric == "f1":
            scores["f1"] = binary_f1(gold, predictions)
        if name == "mnli":
            for part in ("matched", "mismatched"):
                ids = [i for i, e in enumerate(examples) if str(e.meta.get("split", "")).endswith(f"_{part}")]
                if ids:
                    scores[f"accuracy_{part}"] = accuracy([gold[i] for i in ids], [predictions[i] for i in ids])
        return scores

    def example_f1(self, spec: TaskSpec, example: ClassificationExample, prediction: Any) -> float:
        return float(self.example_correct(spec, example, prediction))

    def example_correct(self, spec: TaskSpec, example: ClassificationExample, prediction: Any) -> bool:
        return bool(prediction == example.label)

    def table_meta(self, example: ClassificationExample) -> dict[str, Any]:
        return {"meta_label": str(example.label)}

    def trivial_example_scores(self, gold: pd.Series) -> np.ndarray:
        # The majority of these examples: an upper bound on a train-set majority.
        gold = gold.astype(str)
        majority = gold.value_counts().sort_index().idxmax()
        return (gold == majority).to_numpy(dtype=float)
