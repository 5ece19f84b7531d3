"""Extractive question answering (SQuAD 1.1/2.0, a user's question-context-answer rows).

Head: start/end logits over the context with a null answer at [CLS] and a doc stride (Devlin et al., 2019,
arXiv 1810.04805); the null-answer threshold is calibrated on held-out training examples. Metric: the
official SQuAD exact match and token F1 (Rajpurkar et al., 2016, arXiv 1606.05250; 2018, arXiv 1806.03822).
Trivial baseline: always abstain.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from atinuke.tasks.base import Example, QAExample, TaskSpec
from atinuke.tasks.kinds.base import TaskKind
from atinuke.tasks.metrics import qa_example_scores, squad_scores

if TYPE_CHECKING:  # the heads import torch, which ``import atinuke.tasks`` must not: they are imported on use
    import pandas as pd
    from torch import nn

    from atinuke.tasks.heads.calibration import Calibration
    from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction

# Between the gold answers of one question in the predictions table's ``gold``.
ANSWER_SEPARATOR = " ||| "


class SpanQAKind(TaskKind):
    name = "span_qa"
    example_type = QAExample
    calibrated = "null_threshold"
    trivial_baseline = "always abstain"
    pair_inputs = True
    user_roles = (("question", "context", "answer_text"), ("answer_start",))
    user_metric = "f1"
    user_signature = ("question", "context")
    user_priority = 1

    def build_head(self, d_model: int, config: HeadConfig, encoder: nn.Module) -> nn.Module:
        from atinuke.tasks.heads.qa import SpanQAHead

        return SpanQAHead(d_model, config)

    def encode(self, tokenizer: Any, config: HeadConfig, examples: Sequence[QAExample],
               use_token_types: bool) -> TaskBatch:
        from atinuke.tasks.heads.qa import encode_qa

        return encode_qa(tokenizer, config, examples, use_token_types)

    def decode(self, config: HeadConfig, output: TaskOutput, batch: TaskBatch,
               examples: Sequence[QAExample]) -> list[TaskPrediction]:
        from atinuke.tasks.heads.qa import decode_qa

        return decode_qa(config, output, batch, examples)

    def head_defaults(self, spec: TaskSpec, head: dict[str, Any], max_len: int, train: Sequence[Example]) -> None:
        # Keep room for a context chunk when --max-len is small.
        head.setdefault("max_query_len", min(48, max_len // 3))
        head.setdefault("doc_stride", min(32, max_len // 4))
        # A span_qa task's examples are all QAExamples; the isinstance only tells the type checker so.
        head.setdefault("allow_null", (spec.name != "squad" and spec.family != "user")
                        or any(isinstance(ex, QAExample) and ex.is_impossible for ex in train))

    def calibrate(self, model: Any, examples: Sequence[Example], batch_size: int) -> Optional[Calibration]:
        from atinuke.tasks.heads.calibration import calibrate_qa

        if not model.config.allow_null:  # nothing to threshold without a null answer
            return None
        return calibrate_qa(model, examples, batch_size)

    def user_example(self, table: Any, location: str, record: dict[str, Any], mapping: dict[str, str], key: str,
                     meta: dict[str, Any]) -> QAExample:
        from atinuke.tasks.userdata import qa_row_example

        return qa_row_example(location, record, mapping, key, meta)

    def score(self, spec: TaskSpec, examples: Sequence[QAExample], predictions: Sequence[Any]) -> dict[str, float]:
        return squad_scores(examples, [str(p) for p in predictions], v2=spec.name != "squad")

    def example_f1(self, spec: TaskSpec, example: QAExample, prediction: Any) -> float:
        return qa_example_scores(example, str(prediction), v2=spec.name != "squad")[1]

    def example_correct(self, spec: TaskSpec, example: QAExample, prediction: Any) -> bool:
        return qa_example_scores(example, str(prediction), v2=spec.name != "squad")[0] == 1.0

    def gold_text(self, example: QAExample) -> str:
        return "" if example.is_impossible else ANSWER_SEPARATOR.join(a.text for a in example.answers)

    def trivial_example_scores(self, gold: pd.Series) -> np.ndarray:
        return (gold.astype(str) == "").to_numpy(dtype=float)
