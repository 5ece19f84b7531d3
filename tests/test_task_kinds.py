"""A task kind registered from outside the package: every registry dispatches to it (issue #12).

The planted kind is "parity": is the number of words even or odd. It is classification with its own
observable choices: a head forced to mean pooling, its own metric key, a table encoding with a prefix, a
``meta_n_words`` column, its own trivial baseline; in the workbench a class target, a lens that reads the
odd-minus-even logit margin, and a patching metric of that margin. Each test checks one of them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pytest
import torch

from atinuke.encoders import Encoder
from atinuke.errors import UserInputError
from atinuke.tasks import TASKS, get_kind, per_example_correct, register_kind, score_task
from atinuke.tasks.base import ClassificationExample, TaskSpec
from atinuke.tasks.heads.common import HeadConfig
from atinuke.tasks.heads.model import TaskModel
from atinuke.tasks.kinds import ClassificationKind, unregister_kind
from atinuke.tasks.registry import register_task
from workbench.kinds import WorkbenchKind, get_workbench_kind, register_workbench_kind, unregister_workbench_kind

LABELS = ("even", "odd")
TEXTS = ("red cat sat", "blue dog", "the big cat sat on", "a mat", "red", "blue small dog ran")


class ParityKind(ClassificationKind):
    """Toy kind: the parity of the word count, scored by accuracy and balanced accuracy."""

    name = "parity"
    trivial_baseline = "always even"

    def build_head(self, d_model, config, encoder):
        return super().build_head(d_model, dataclasses.replace(config, pooling="mean"), encoder)

    def score(self, spec, examples, predictions):
        gold = np.array([e.label for e in examples])
        pred = np.array(predictions)
        recalls = [float((pred[gold == label] == label).mean()) for label in LABELS if (gold == label).any()]
        return {"accuracy": float((gold == pred).mean()), "balanced_accuracy": float(np.mean(recalls))}

    def encode_value(self, value: Any) -> str:
        return f"parity:{value}"

    def table_meta(self, example):
        return super().table_meta(example) | {"meta_n_words": len(example.text.split())}

    def trivial_example_scores(self, gold: pd.Series) -> np.ndarray:
        return (gold.astype(str) == "parity:even").to_numpy(dtype=float)


def margin_lens(config: HeadConfig, output: Any, last: Any, attention_mask: torch.Tensor, layer: int
                ) -> list[dict[str, Any]]:
    margin = output.logits[:, 1] - output.logits[:, 0]  # [batch]
    return [dict(layer=layer, example=i, prediction="", agrees=True, score=float(m)) for i, m in enumerate(margin)]


def margin_metric(clean: Any, corrupted: Any):
    return (lambda out: (out.logits[:, 1] - out.logits[:, 0]).mean()), "odd - even logit"


def examples(texts: Sequence[str] = TEXTS) -> list[ClassificationExample]:
    return [ClassificationExample(str(i), t, None, LABELS[len(t.split()) % 2]) for i, t in enumerate(texts)]


@pytest.fixture
def parity():
    """The kind registered in both layers, a task of that kind, and a TaskModel on the planted encoder."""
    from workbench.planted import planted_model

    kind = register_kind(ParityKind())
    register_workbench_kind(WorkbenchKind("parity", target_forms=("class",), default_target="class",
                                          lens=margin_lens, patching_metric=margin_metric))
    spec = register_task(TaskSpec("toy_parity", "planted", "parity", LABELS, "balanced_accuracy"))
    planted = planted_model()
    encoder = Encoder(name="planted", kind="atinuke", model=planted.encoder, tokenizer=planted.tokenizer, path=".")
    torch.manual_seed(0)
    model = TaskModel(encoder, spec, HeadConfig(kind="parity", labels=LABELS, max_len=8, dropout=0.0)).eval()
    try:
        yield kind, spec, model
    finally:
        unregister_kind("parity")
        unregister_workbench_kind("parity")
        TASKS.pop("toy_parity", None)


def test_metrics_dispatch_to_the_planted_kind(parity):
    kind, _, _ = parity
    assert get_kind("parity") is kind
    gold = examples()
    predictions = ["even"] * len(gold)  # always even: right on the even texts, balanced accuracy 1/2
    n_even = sum(e.label == "even" for e in gold)
    assert score_task("toy_parity", gold, predictions) == {"accuracy": n_even / len(gold), "balanced_accuracy": 0.5}
    assert per_example_correct("toy_parity", gold[1], "even") and not per_example_correct("toy_parity", gold[0], "even")
    with pytest.raises(UserInputError, match="not in even, odd"):  # classification's check, inherited
        score_task("toy_parity", gold[:1], ["maybe"])


def test_head_prediction_table_calibration_and_trivial_baseline(parity):
    from atinuke.finetune_eval import predictions_table
    from atinuke.tasks.heads.calibration import calibrate
    from workbench.experiment_runs import trivial_example_scores

    _, spec, model = parity
    assert model.head.pooling == "mean" and model.config.pooling == "cls"  # the kind built the head
    gold = examples()
    predictions = model.predict(gold)
    batch = model.encode(gold)
    with torch.no_grad():
        logits = model(**batch.model_inputs(with_targets=False)).logits  # [batch, 2]
    assert [p.value for p in predictions] == [LABELS[int(i)] for i in logits.argmax(-1)]
    table = predictions_table(spec, gold, predictions, "planted", "dev", "test")
    assert table["gold"].tolist() == [f"parity:{e.label}" for e in gold]
    assert table["prediction"].tolist() == [f"parity:{p.value}" for p in predictions]
    assert table["meta_n_words"].tolist() == [len(t.split()) for t in TEXTS]
    assert table["meta_label"].tolist() == [e.label for e in gold]
    assert calibrate(model, gold) is None  # nothing to calibrate, as for classification
    np.testing.assert_array_equal(trivial_example_scores("toy_parity", table["gold"]),
                                  [e.label == "even" for e in gold])


def test_workbench_registry_dispatches_to_the_planted_kind(parity):
    from workbench.attribution.targets import ClassTarget, default_target, parse_target
    from workbench.lens import task_lens
    from workbench.patching import default_metric
    from workbench.subject import task_subject

    _, _, model = parity
    subject = task_subject(model)
    assert isinstance(default_target(subject), ClassTarget)
    with pytest.raises(UserInputError, match="use class"):
        parse_target("span", subject)
    frame = task_lens(subject, list(TEXTS))
    batch = subject.tokenize(list(TEXTS))
    with torch.no_grad():
        logits = subject.forward(batch).logits  # [batch, 2]
    last = frame[frame.layer == frame.layer.max()].sort_values("example")
    # The planted read-out at the last layer is the model's own odd-minus-even margin.
    np.testing.assert_allclose(last["score"], (logits[:, 1] - logits[:, 0]).numpy(), atol=1e-5)
    clean, corrupted = subject.tokenize(["red cat sat"]), subject.tokenize(["blue cat sat"])
    metric, description = default_metric(subject, clean, corrupted)
    assert description == "odd - even logit"
    with torch.no_grad():
        out = subject.forward(clean)
    assert float(metric(out)) == pytest.approx(float(out.logits[0, 1] - out.logits[0, 0]))


def test_an_unregistered_kind_is_refused_in_one_line(parity):
    _, spec, model = parity
    encoder = Encoder(name="planted", kind="atinuke", model=model.encoder, tokenizer=model.tokenizer, path=".")
    with pytest.raises(UserInputError, match="unknown task kind 'multi_label'"):
        TaskModel(encoder, dataclasses.replace(spec, kind="multi_label"), HeadConfig(kind="multi_label"))
    unregister_workbench_kind("parity")
    with pytest.raises(UserInputError, match="task kind 'parity' has no workbench entry"):
        get_workbench_kind("parity")
    with pytest.raises(UserInputError, match="needs a non-empty label set"):
        TaskModel(encoder, spec, HeadConfig(kind="parity"))
