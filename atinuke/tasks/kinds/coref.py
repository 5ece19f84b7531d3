"""Coreference resolution (CoNLL-2012 documents): clusters of mention spans per document.

Head: span ranking with a dummy antecedent (Lee et al., 2017, arXiv 1707.07045); the link threshold is
calibrated on held-out training documents. Metric: the CoNLL F1, the mean of MUC, B-cubed and CEAF-e
(Pradhan et al., 2014). Trivial baseline: no cluster.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from atinuke.tasks.base import CorefDocument, Example, TaskSpec
from atinuke.tasks.kinds.base import TaskKind
from atinuke.tasks.metrics import Cluster, coref_example_f1, coref_scores

if TYPE_CHECKING:  # the heads import torch, which ``import atinuke.tasks`` must not: they are imported on use
    import pandas as pd
    from torch import nn

    from atinuke.tasks.heads.calibration import Calibration
    from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction


class CorefKind(TaskKind):
    name = "coref"
    example_type = CorefDocument
    calibrated = "link_threshold"
    trivial_baseline = "no cluster"

    def build_head(self, d_model: int, config: HeadConfig, encoder: nn.Module) -> nn.Module:
        from atinuke.tasks.heads.coref import CorefHead

        return CorefHead(d_model, config)

    def encode(self, tokenizer: Any, config: HeadConfig, examples: Sequence[CorefDocument],
               use_token_types: bool) -> TaskBatch:
        from atinuke.tasks.heads.coref import encode_coref

        return encode_coref(tokenizer, config, examples)

    def decode(self, config: HeadConfig, output: TaskOutput, batch: TaskBatch,
               examples: Sequence[CorefDocument]) -> list[TaskPrediction]:
        from atinuke.tasks.heads.coref import decode_coref

        return decode_coref(config, output, batch, examples)

    def calibrate(self, model: Any, examples: Sequence[Example], batch_size: int) -> Optional[Calibration]:
        from atinuke.tasks.heads.calibration import calibrate_coref

        return calibrate_coref(model, examples, batch_size)

    def score(self, spec: TaskSpec, examples: Sequence[CorefDocument],
              predictions: Sequence[Any]) -> dict[str, float]:
        return coref_scores([doc.clusters for doc in examples], predictions)

    def example_f1(self, spec: TaskSpec, example: CorefDocument, prediction: Any) -> float:
        return coref_example_f1(example, prediction)

    def example_correct(self, spec: TaskSpec, example: CorefDocument, prediction: Any) -> bool:
        def partition(clusters: Sequence[Cluster]) -> set[frozenset[tuple[int, ...]]]:
            return {frozenset(tuple(m) for m in cluster) for cluster in clusters if cluster}
        return partition(prediction) == partition(example.clusters)

    def gold_value(self, example: CorefDocument) -> Any:
        return example.clusters

    def encode_value(self, value: Any) -> str:
        return json.dumps([[list(map(int, m)) for m in cluster] for cluster in value])

    def trivial_example_scores(self, gold: pd.Series) -> np.ndarray:
        docs = [[[tuple(m) for m in cluster] for cluster in json.loads(g)] for g in gold.astype(str)]
        return np.array([coref_scores([clusters], [[]])["conll_f1"] for clusters in docs], dtype=float)
