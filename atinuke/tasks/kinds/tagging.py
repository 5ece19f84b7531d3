"""BIO tagging (semantic role labelling on CoNLL-2005/2012, a user's token-tag rows).

Head: per-word tag logits with a learned predicate indicator (Shi & Lin, 2019, arXiv 1904.05255), Viterbi
decoding under BIO constraints. Metric: argument precision, recall and F1 as the CoNLL ``srl-eval.pl``
scores them (Carreras & Marquez, 2005). Trivial baseline: all-O.
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from atinuke.errors import UserInputError
from atinuke.tasks.base import Example, SRLExample, TaskSpec
from atinuke.tasks.kinds.base import TaskKind
from atinuke.tasks.metrics import srl_example_f1, srl_scores, srl_tags_f1

if TYPE_CHECKING:  # the heads import torch, which ``import atinuke.tasks`` must not: they are imported on use
    import pandas as pd
    from torch import nn

    from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction


class TaggingKind(TaskKind):
    name = "tagging"
    example_type = SRLExample
    needs_labels = True
    trivial_baseline = "all-O"
    user_roles = (("tokens", "tags"), ())
    user_metric = "f1"
    user_signature = ("tokens",)
    user_priority = 0

    def build_head(self, d_model: int, config: HeadConfig, encoder: Any) -> nn.Module:
        import torch

        from atinuke.tasks.heads.tagging import TaggingHead

        # ``encoder`` is a transformers model (``get_input_embeddings``). The predicate embedding starts at the scale of the token embeddings it is added to.
        weight = encoder.get_input_embeddings().weight
        assert isinstance(weight, torch.Tensor)  # typed as a submodule attribute, which could be a Module
        std = float(weight.detach().float().std())
        return TaggingHead(d_model, config, embedding_std=std)

    def encode(self, tokenizer: Any, config: HeadConfig, examples: Sequence[SRLExample],
               use_token_types: bool) -> TaskBatch:
        from atinuke.tasks.heads.tagging import encode_tagging

        return encode_tagging(tokenizer, config, examples)

    def decode(self, config: HeadConfig, output: TaskOutput, batch: TaskBatch,
               examples: Sequence[SRLExample]) -> list[TaskPrediction]:
        from atinuke.tasks.heads.tagging import decode_tagging

        return decode_tagging(config, output, batch, examples)

    def user_example(self, table: Any, location: str, record: dict[str, Any], mapping: dict[str, str], key: str,
                     meta: dict[str, Any]) -> SRLExample:
        from atinuke.tasks.userdata import cell_words

        words = cell_words(location, record, mapping["tokens"])
        tags = cell_words(location, record, mapping["tags"], table.class_names.get(mapping["tags"]))
        if len(tags) != len(words):
            raise UserInputError(f"{location}: {len(tags)} tags for {len(words)} tokens")
        bad = next((t for t in tags if t != "O" and not re.fullmatch(r"[BI]-\S+", t)), None)
        if bad is not None:
            raise UserInputError(f"{location}: tag {bad!r} in column {mapping['tags']!r} is not BIO (O, B-X, I-X)")
        # No predicate: the tagging head's predicate indicator stays off (index -1).
        return SRLExample(key, words, -1, tags, meta=meta)

    def label_set(self, examples: Sequence[Example]) -> tuple[str, ...]:
        # The closed BIO set: B- and I- of every type seen, and O.
        types = {t[2:] for ex in examples if isinstance(ex, SRLExample) for t in ex.tags if t != "O"}
        return tuple(sorted({"O"} | {f"{p}-{t}" for t in types for p in "BI"}))

    def score(self, spec: TaskSpec, examples: Sequence[SRLExample], predictions: Sequence[Any]) -> dict[str, float]:
        return srl_scores(examples, predictions)

    def example_f1(self, spec: TaskSpec, example: SRLExample, prediction: Any) -> float:
        return srl_example_f1(example, prediction)

    def example_correct(self, spec: TaskSpec, example: SRLExample, prediction: Any) -> bool:
        return list(prediction) == list(example.tags)

    def gold_value(self, example: SRLExample) -> Any:
        return example.tags

    def encode_value(self, value: Any) -> str:
        return json.dumps(list(value))

    def trivial_example_scores(self, gold: pd.Series) -> np.ndarray:
        return np.array([srl_tags_f1(tags, ["O"] * len(tags)) for tags in map(json.loads, gold.astype(str))],
                        dtype=float)
