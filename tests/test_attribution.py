"""workbench.attribution: completeness, known answers on a linear target, batched == per-example Captum."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from captum.attr import LayerIntegratedGradients
from known_targets import LinearEmbedTarget

from atinuke.config import AtinukeConfig
from atinuke.encoders import Encoder
from atinuke.errors import UserInputError
from atinuke.model import AtinukeModel
from workbench.attribution import COLUMNS, METHODS, Attribution, AttributionParams, attribute
from workbench.attribution.targets import HiddenNormTarget
from workbench.subject import Subject, load_subject

TEXTS = ["The market fell sharply on Monday .", "Shares rose .", "Analysts expect the index to recover next week ."]


@pytest.fixture(scope="module")
def subject(tiny_atinuke_dir):
    return load_subject(tiny_atinuke_dir)


def _plain_norm(subject, input_ids, attention_mask=None):
    return subject.encoder(input_ids, attention_mask).last_hidden_state[:, 0].norm(dim=-1)


def test_result_table_is_tidy_and_complete(subject):
    result = attribute(subject, TEXTS, "integrated_gradients", params=AttributionParams(n_steps=8))
    assert isinstance(result, Attribution)
    assert tuple(result.frame.columns) == COLUMNS
    lengths = [len(subject.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert result.frame.groupby("example_id", sort=False).size().tolist() == lengths  # real tokens only
    assert result.example_ids == ["0", "1", "2"]  # input order, though computed sorted by length
    first = result.frame[result.frame["example_id"] == "1"]
    assert first["token"].tolist()[0] == "[CLS]" and first["word_index"].tolist()[0] == -1
    assert first["word"].tolist()[1:3] == ["Shares", "rose"]
    assert json.loads(first["params"].iloc[0])["n_steps"] == 8
    assert first["target"].iloc[0] == "norm@0"
    # special tokens keep their embedding in the baseline, so IG gives them exactly 0
    assert (first[first["word_index"] == -1]["score"] == 0).all()
    words = result.word_scores()
    assert set(words.columns) >= {"example_id", "word", "score"}


def test_ig_completeness_against_independent_forwards(subject):
    params = AttributionParams(n_steps=16, tolerance=1e-3, max_steps=256)
    result = attribute(subject, TEXTS, "integrated_gradients", params=params)
    for i, text in enumerate(TEXTS):
        batch = subject.tokenize(text)
        ids = batch["input_ids"]
        special = batch["special_tokens_mask"].bool()
        baseline = torch.where(special, ids, torch.full_like(ids, subject.tokenizer.pad_token_id))
        with torch.no_grad():
            gap = float(_plain_norm(subject, ids) - _plain_norm(subject, baseline))
        rows = result.frame[result.frame["example_id"] == str(i)]
        assert abs(rows["score"].sum() - gap) <= 1e-3 + 1e-5
        assert abs(rows["delta"].iloc[0]) < 1e-3
        assert json.loads(rows["params"].iloc[0])["n_steps_used"] >= 16


def test_known_attributions_of_a_linear_target(subject):
    torch.manual_seed(0)
    weight = torch.randn(subject.d_model)
    target = LinearEmbedTarget(weight)
    batch = subject.tokenize(TEXTS[0])
    ids = batch["input_ids"][0]
    table = subject.input_embeddings.weight.detach()
    scale = math.sqrt(subject.d_model)  # Atinuke scales E(x) by sqrt(d_model) before hook_embed
    special = batch["special_tokens_mask"][0].bool()
    pad = table[subject.tokenizer.pad_token_id]
    expected_ig = torch.where(special, torch.zeros(len(ids)), ((table[ids] - pad) * weight).sum(-1) * scale)
    params = AttributionParams(n_steps=4, n_samples=200, window=1)
    for method, expected in [("integrated_gradients", expected_ig), ("feature_ablation", expected_ig),
                             ("occlusion", expected_ig), ("kernel_shap", expected_ig), ("deeplift", None),
                             ("input_x_gradient", (table[ids] * weight).sum(-1) * scale),
                             ("saliency", torch.full((len(ids),), float(weight.norm()) * scale))]:
        if method == "deeplift":
            continue  # the tiny fixture uses GELU; DeepLift is checked on a ReLU model below
        scores = torch.tensor(attribute(subject, [TEXTS[0]], method, target, params).scores("0"), dtype=torch.float32)
        torch.testing.assert_close(scores, expected, atol=2e-4 if method == "kernel_shap" else 1e-5, rtol=1e-4,
                                   msg=method)


def test_batched_engine_equals_per_example_captum(subject):
    """The engine (padded batches, frozen weights) == a plain per-example LayerIntegratedGradients loop."""
    n_steps = 12
    result = attribute(subject, TEXTS, "integrated_gradients", HiddenNormTarget(0),
                       AttributionParams(n_steps=n_steps, batch_size=3, internal_batch_size=7))
    lig = LayerIntegratedGradients(lambda ids: _plain_norm(subject, ids), subject.input_embeddings)
    worst = 0.0
    for i, text in enumerate(TEXTS):
        batch = subject.tokenize(text)
        ids = batch["input_ids"]
        baseline = torch.where(batch["special_tokens_mask"].bool(), ids,
                               torch.full_like(ids, subject.tokenizer.pad_token_id))
        attr = lig.attribute(ids, baselines=baseline, n_steps=n_steps, method="gausslegendre").sum(-1)[0]
        worst = max(worst, float((attr - torch.from_numpy(result.scores(str(i)).copy())).abs().max()))
    assert worst <= 1e-5


def test_no_weight_gradients_and_parameters_restored(subject):
    params = list(subject.module.parameters())
    assert all(p.requires_grad for p in params)
    for method in ("integrated_gradients", "saliency", "attention_x_gradient", "gradient_shap"):
        attribute(subject, TEXTS[:2], method, params=AttributionParams(n_steps=4, n_samples=4))
    assert all(p.grad is None for p in params)
    assert all(p.requires_grad for p in params)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "deeplift"])
def test_every_method_runs_padding_aware(subject, method):
    """Batched with padding == each example alone (padding never leaks into a real token's score)."""
    params = AttributionParams(n_steps=4, n_samples=8, window=2, batch_size=3)
    together = attribute(subject, TEXTS, method, params=params)
    alone = attribute(subject, [TEXTS[1]], method, params=params, example_ids=["1"])
    np.testing.assert_allclose(together.scores("1"), alone.scores("1"), atol=1e-5, rtol=1e-4)
    assert np.isfinite(together.frame["score"]).all()
    if method in ("attention", "rollout"):
        for i in range(len(TEXTS)):
            assert together.scores(str(i)).sum() == pytest.approx(1.0, abs=1e-5)


def test_deeplift_where_supported(tiny_tokenizer, subject):
    torch.manual_seed(0)
    config = AtinukeConfig(vocab_size=len(tiny_tokenizer), d_model=32, n_heads=4, n_layers=2, d_ff=64,
                           max_len=64, dropout=0.0, activation="relu")
    relu = Subject(Encoder("tiny-relu", "atinuke", AtinukeModel(config).eval(), tiny_tokenizer, None))
    result = attribute(relu, TEXTS[:2], "deeplift")
    assert np.isfinite(result.frame["score"]).all() and result.frame["delta"].abs().max() < 1e-3
    with pytest.raises(UserInputError, match="deeplift does not support"):
        attribute(subject, TEXTS[:1], "deeplift")


def test_bad_requests_are_user_errors(subject):
    with pytest.raises(UserInputError, match="unknown method"):
        attribute(subject, TEXTS, "integrated_gradient")
    with pytest.raises(UserInputError, match="does not exist"):
        attribute(subject, TEXTS, "saliency", target="class=1")
    with pytest.raises(UserInputError, match="baseline"):
        attribute(subject, TEXTS, "saliency", params=AttributionParams(baseline="unk"))
    with pytest.raises(UserInputError, match="empty"):
        attribute(subject, ["fine", ""], "saliency")
    with pytest.raises(UserInputError, match="past the end"):
        attribute(subject, TEXTS, "saliency", target="norm@40")


def test_minilm_batched_equals_per_example(minilm):
    subject = load_subject(minilm)
    texts = ["Stocks fell.", "The index rose slightly today."]
    result = attribute(subject, texts, "integrated_gradients", params=AttributionParams(n_steps=6))

    def norm(ids, mask, types):
        return subject.encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state[:, 0].norm(dim=-1)

    lig = LayerIntegratedGradients(norm, subject.input_embeddings)
    for i, text in enumerate(texts):
        batch = subject.tokenize(text)
        ids = batch["input_ids"]
        baseline = torch.where(batch["special_tokens_mask"].bool(), ids, torch.zeros_like(ids))
        attr = lig.attribute(ids, baselines=baseline, n_steps=6, method="gausslegendre",
                             additional_forward_args=(batch["attention_mask"], batch["token_type_ids"])).sum(-1)[0]
        np.testing.assert_allclose(attr.detach().numpy(), result.scores(str(i)), atol=1e-5)


# ------------------------------------------------------------------------------------------ task heads
@pytest.fixture(scope="module")
def task_subjects(tiny_atinuke_dir):
    """Untrained heads of every kind on the tiny Atinuke encoder (seeded)."""
    from atinuke.encoders import load_encoder
    from atinuke.tasks import get_task
    from atinuke.tasks.heads import build_task_model

    subjects = {}
    for name in ("sst2", "squad2", "srl", "coref"):
        torch.manual_seed(0)
        model = build_task_model(load_encoder(tiny_atinuke_dir), get_task(name), dropout=0.0).eval()
        subjects[name] = load_subject(model)
    return subjects


def _examples(kind):
    from atinuke.tasks.base import Answer, ClassificationExample, CorefDocument, QAExample, SRLExample

    if kind == "sst2":
        return [ClassificationExample("a", "the market fell last week .", None, "0"),
                ClassificationExample("b", "prices rose .", None, "1")]
    if kind == "squad2":
        return [QAExample("q", "the market fell last week after the report .", "when did the market fall ?",
                          [Answer("last week", 16)])]
    if kind == "srl":
        words = "the market fell last week".split()
        return [SRLExample("s", words, 2, ["B-ARG1", "I-ARG1", "B-V", "B-ARGM-TMP", "I-ARGM-TMP"])]
    words = "the company said it would sell its shares .".split()
    return [CorefDocument("d", words, [0], [[(0, 1), (3, 3), (6, 6)]])]


def test_classification_target_completeness_and_naive_equality(task_subjects):
    subject = task_subjects["sst2"]
    examples = _examples("sst2")
    result = attribute(subject, examples, "integrated_gradients", "class=1", AttributionParams(n_steps=16))
    assert set(result.frame["target"]) == {"class=1"}
    model = subject.task_model
    lig = LayerIntegratedGradients(lambda ids, mask: model(ids, mask).logits[:, 1], subject.input_embeddings)
    for example in examples:
        batch = model.encode([example])
        ids, mask = batch.input_ids, batch.attention_mask
        baseline = torch.where(batch.segments >= 0, torch.zeros_like(ids), ids)
        attr, delta = lig.attribute(ids, baselines=baseline, n_steps=16, additional_forward_args=(mask,),
                                    return_convergence_delta=True)
        scores = result.scores(example.id)
        np.testing.assert_allclose(attr.sum(-1)[0].detach().numpy(), scores, atol=1e-5)
        with torch.no_grad():
            gap = float(model(ids, mask).logits[0, 1] - model(baseline, mask).logits[0, 1])
        assert abs(scores.sum() - gap) <= abs(float(delta)) + 1e-5
    predicted = attribute(subject, examples, "saliency")  # default target: the predicted class
    with torch.no_grad():
        labels = model(**model.encode(examples).model_inputs(with_targets=False)).logits.argmax(-1).tolist()
    assert predicted.frame.groupby("example_id", sort=False)["target"].first().tolist() == [f"class={l}" for l in labels]


@pytest.mark.parametrize("task, target, prefix", [("squad2", "span", "span="), ("squad2", "end", "end="),
                                                  ("srl", None, "tag="), ("coref", None, "antecedent=")])
def test_span_tag_and_antecedent_targets(task_subjects, task, target, prefix):
    subject = task_subjects[task]
    examples = _examples(task)
    result = attribute(subject, examples, "integrated_gradients", target, AttributionParams(n_steps=24))
    label = result.frame["target"].iloc[0]
    assert label.startswith(prefix)
    assert np.isfinite(result.frame["score"]).all() and result.frame["score"].abs().sum() > 0
    assert result.frame["delta"].abs().max() < 0.05 * max(1.0, result.frame["score"].abs().sum())
    if task == "srl":
        assert label.endswith("@3")  # the predicate "fell" is token 3 after [CLS] the market
    occlusion = attribute(subject, examples, "feature_ablation", target)
    assert occlusion.frame["target"].iloc[0] == label  # the same quantity is explained
    with pytest.raises(UserInputError, match="does not exist"):
        attribute(subject, examples, "saliency", "class=1")


def test_coref_document_over_several_segments(task_subjects):
    """A document longer than one input: its segments are attributed as one row of real tokens."""
    from atinuke.tasks.base import CorefDocument
    from workbench.faithfulness import eraser

    subject = task_subjects["coref"]
    sentence = "it fell .".split()  # short sentences keep the number of candidate spans small
    words = sentence * 45  # 135 words: more than one 128-token segment
    document = CorefDocument("long", words, list(range(0, len(words), len(sentence))), [[(0, 0), (3, 3)]])
    batch = subject.task_model.encode([document])
    assert batch.input_ids.shape[0] >= 2
    result = attribute(subject, [document], "integrated_gradients", params=AttributionParams(n_steps=8))
    assert len(result.frame) == int(batch.attention_mask.sum())  # every real token of every segment
    assert result.frame["word"].iloc[1] == "it" and result.frame["word_index"].max() == len(words) - 1
    delta = abs(result.frame["delta"].iloc[0])
    assert delta < 0.05 * max(1.0, abs(result.frame["score"].sum()))
    table = eraser(subject, [document], result, ks=(10,), erase="mask")
    assert np.isfinite(table[["comprehensiveness", "sufficiency"]].to_numpy()).all()
    with pytest.raises(UserInputError, match="segments"):
        attribute(subject, [document], "attention")


def test_examples_share_a_batch_only_when_it_saves_work():
    from workbench.attribution.engine import _bucket_slack, _length_buckets

    order, lengths = [0, 1, 2, 3], [10, 11, 12, 20]
    assert _length_buckets(order, lengths, 16, 1.25) == [[0, 1, 2], [3]]  # 12 <= 1.25 * 10 < 20
    assert _length_buckets(order, lengths, 2, 1.25) == [[0, 1], [2], [3]]
    assert _length_buckets(order, [10, 10, 11, 11], 16, 1.0) == [[0, 1], [2, 3]]  # no padding at all
    small = AttributionParams(n_steps=50, max_tokens_per_pass=2048)  # 204 rows of 10 tokens per pass
    assert _bucket_slack("integrated_gradients", small, [10, 11]) == 1.25
    many = AttributionParams(n_steps=256, max_tokens_per_pass=2048)  # one example's steps fill passes
    assert _bucket_slack("integrated_gradients", many, [10, 11]) == 1.0
    assert _bucket_slack("saliency", many, [10, 11]) == 1.25


def test_a_registered_method_runs_through_the_engine(subject, monkeypatch):
    """Adding a method is one class and one registry entry: the engine, the params column and the store key
    follow from its declarations."""
    import dataclasses

    from workbench.attribution import REGISTRY, AttributionMethod, MethodOutput
    from workbench.attribution.params import AttributionParams as Params

    class Position(AttributionMethod):
        """Planted scores: each token's position, so the expected table is known exactly."""

        name = "position"
        family = "perturbation"
        params = ("seed", "window")

        def scores(self, call):
            return MethodOutput(torch.arange(call.embeds.shape[1], dtype=torch.float32).expand(call.embeds.shape[:2]))

    monkeypatch.setitem(REGISTRY, "position", Position())
    result = attribute(subject, TEXTS, "position", params=AttributionParams(seed=3, window=2))
    for i, text in enumerate(TEXTS):
        np.testing.assert_array_equal(result.scores(str(i)), np.arange(len(result.scores(str(i)))))
    assert set(result.frame["params"]) == {json.dumps({"seed": 3, "window": 2}, sort_keys=True)}
    assert result.frame["delta"].isna().all()
    fields = {f.name for f in dataclasses.fields(Params)}
    for method in REGISTRY.values():  # every declared setting is a real one, every family known
        assert set(method.params) <= fields, method.name
        assert method.family in ("gradient", "perturbation", "attention")
