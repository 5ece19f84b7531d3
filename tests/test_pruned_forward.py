"""workbench.pruned_forward: the last block computed at the target's rows only is the same function."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from atinuke.config import AtinukeConfig
from atinuke.encoders import Encoder
from atinuke.model import AtinukeModel
from workbench.attribution import AttributionParams, attribute
from workbench.attribution import engine as attribution_engine
from workbench.attribution.targets import SpanTarget
from workbench.pruned_forward import distinct_rows, pruned_forward
from workbench.subject import Subject, load_subject

TEXTS = ["the market fell sharply on monday .", "shares rose ."]


def _atinuke_subject(tiny_tokenizer, **overrides) -> Subject:
    torch.manual_seed(0)
    config = AtinukeConfig(vocab_size=len(tiny_tokenizer), d_model=32, n_heads=4, n_layers=2, d_ff=64,
                           max_len=64, dropout=0.0, **overrides)
    model = AtinukeModel(config).eval().double()
    return Subject(Encoder("tiny", "atinuke", model, tiny_tokenizer, None))


def _rows_and_gradient(subject: Subject, rows, read=((0, 3), (2, 4))):
    """Last hidden state at fixed positions and d(sum of squares)/d(token embeddings), with the last block
    pruned to ``rows`` (None: full forward pass)."""
    batch = subject.tokenize(TEXTS)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    if subject.kind == "hf":
        inputs["token_type_ids"] = batch["token_type_ids"]
    embeds = subject.input_embeddings(inputs["input_ids"]).detach().requires_grad_(True)
    handle = subject.input_embeddings.register_forward_hook(lambda module, args, output: embeds)
    try:
        with pruned_forward(subject) as slot:
            slot.rows = rows
            hidden = subject.encoder(**inputs).last_hidden_state  # [batch, pos, d_model]
    finally:
        handle.remove()
    read = torch.tensor(read)
    values = hidden.gather(1, read[..., None].expand(-1, -1, hidden.shape[-1]))
    (gradient,) = torch.autograd.grad(values.pow(2).sum(), embeds)
    return values.detach(), gradient


@pytest.mark.parametrize("overrides", [{}, {"norm_placement": "pre"}, {"causal": True}],
                         ids=["post-norm", "pre-norm", "causal"])
def test_atinuke_pruned_block_is_exact(tiny_tokenizer, overrides):
    subject = _atinuke_subject(tiny_tokenizer, **overrides)
    full_values, full_gradient = _rows_and_gradient(subject, None)
    values, gradient = _rows_and_gradient(subject, torch.tensor([[3, 0], [4, 2]]))  # any order
    torch.testing.assert_close(values, full_values, atol=1e-12, rtol=0)
    torch.testing.assert_close(gradient, full_gradient, atol=1e-11, rtol=0)
    assert "forward" not in vars(subject.encoder.blocks[-1])  # the class's forward is back


def test_minilm_pruned_layer_is_exact(minilm):
    with torch.no_grad():  # installs transformers' own output-capturing hooks, which must not block pruning
        minilm.model(input_ids=torch.tensor([[101, 102]]), output_attentions=True)
    model = copy.deepcopy(minilm.model).double().eval()
    subject = Subject(Encoder("minilm64", "hf", model, minilm.tokenizer, minilm.path))
    full_values, full_gradient = _rows_and_gradient(subject, None)
    values, gradient = _rows_and_gradient(subject, torch.tensor([[0, 3], [2, 4]]))
    torch.testing.assert_close(values, full_values, atol=1e-12, rtol=0)
    torch.testing.assert_close(gradient, full_gradient, atol=1e-10, rtol=0)
    assert "forward" not in vars(model.encoder.layer[-1])


def test_distinct_rows_replace_repeats_with_unused_positions():
    assert distinct_rows(torch.tensor([[3, 3], [1, 2]]), 5).tolist() == [[3, 0], [1, 2]]
    assert distinct_rows(torch.tensor([[0, 0, 0]]), 4).tolist() == [[0, 1, 2]]
    assert distinct_rows(torch.tensor([[2], [2]]), 3).tolist() == [[2], [2]]
    with pytest.raises(ValueError, match="distinct rows"):
        distinct_rows(torch.tensor([[0, 0, 0]]), 2)


def test_repeated_position_is_not_counted_twice(tiny_tokenizer):
    """A QA span whose start is its end reads one row; pruning to [t, t] must not double its gradient."""
    subject = _atinuke_subject(tiny_tokenizer)
    read = ((3, 3), (4, 4))
    _, full_gradient = _rows_and_gradient(subject, None, read)
    _, gradient = _rows_and_gradient(subject, distinct_rows(torch.tensor(read), 5), read)
    torch.testing.assert_close(gradient, full_gradient, atol=1e-11, rtol=0)
    _, doubled = _rows_and_gradient(subject, torch.tensor(read), read)  # what distinct_rows prevents
    assert not torch.allclose(doubled, full_gradient)


def test_refuses_hooks_in_the_last_block_and_training_mode(tiny_tokenizer):
    subject = _atinuke_subject(tiny_tokenizer)
    with subject.hooks([("blocks.1.attn.hook_pattern", lambda act, hook: None)]):
        with pytest.raises(RuntimeError, match="hook is attached"):
            with pruned_forward(subject):
                pass
    with subject.hooks([("blocks.0.attn.hook_pattern", lambda act, hook: None)]), pruned_forward(subject):
        pass  # hooks in earlier blocks still run
    subject.encoder.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        with pruned_forward(subject):
            pass
    subject.encoder.eval()
    with pytest.raises(KeyError):
        with pruned_forward(subject):
            raise KeyError("body failed")
    assert "forward" not in vars(subject.encoder.blocks[-1])


@pytest.fixture(scope="module")
def heads(tiny_atinuke_dir):
    from atinuke.encoders import load_encoder
    from atinuke.tasks import get_task
    from atinuke.tasks.heads import build_task_model

    subjects = {}
    for name, pooling in (("sst2", "cls"), ("sst2-mean", "mean"), ("squad2", None), ("srl", None)):
        torch.manual_seed(0)
        extra = {"pooling": pooling} if pooling else {}
        model = build_task_model(load_encoder(tiny_atinuke_dir), get_task(name.split("-")[0]), dropout=0.0,
                                 **extra).eval()
        subjects[name] = load_subject(model)
    return subjects


def _task_examples(name):
    from atinuke.tasks.base import Answer, ClassificationExample, QAExample, SRLExample

    if name.startswith("sst2"):
        return [ClassificationExample("a", "the market fell last week .", None, "0"),
                ClassificationExample("b", "prices rose .", None, "1")]
    if name == "squad2":
        return [QAExample("q", "the market fell last week after the report .", "when did the market fall ?",
                          [Answer("last week", 16)])]
    return [SRLExample("s", "the market fell last week".split(), 2, ["B-ARG1", "I-ARG1", "B-V", "B-ARGM-TMP",
                                                                     "I-ARGM-TMP"])]


@pytest.mark.parametrize("name, target, pruned", [
    ("sst2", "class=1", True), ("sst2-mean", "class=1", False), ("squad2", "span", True),
    ("squad2", "start", True), ("squad2", SpanTarget("span", start=5, end=5), True), ("srl", None, True)])
@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation"])
def test_engine_scores_equal_with_and_without_pruning(heads, monkeypatch, name, target, pruned, method):
    entered = []

    def spy(subject):
        entered.append(subject)
        return pruned_forward(subject)

    monkeypatch.setattr(attribution_engine, "pruned_forward", spy)
    subject, examples = heads[name], _task_examples(name)
    on = attribute(subject, examples, method, target, AttributionParams(n_steps=8))
    assert bool(entered) == pruned  # mean pooling reads every row, so it runs the full forward pass
    calls = len(entered)
    off = attribute(subject, examples, method, target, AttributionParams(n_steps=8, final_block_rows=False))
    assert len(entered) == calls
    assert on.frame["target"].tolist() == off.frame["target"].tolist()
    np.testing.assert_allclose(on.frame["score"], off.frame["score"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(on.frame["delta"], off.frame["delta"], atol=1e-5, equal_nan=True)


def test_engine_runs_the_full_pass_when_the_last_block_is_hooked(tiny_tokenizer):
    """A user's hook inside the last block must run, so the engine does not prune then (nor fail)."""
    subject = _atinuke_subject(tiny_tokenizer)
    subject.encoder.float()
    params = AttributionParams(n_steps=4)
    plain = attribute(subject, TEXTS, "integrated_gradients", params=params)
    seen = []
    with subject.hooks([("blocks.1.hook_mlp_out", lambda act, hook: seen.append(act.shape))]):
        hooked = attribute(subject, TEXTS, "integrated_gradients", params=params)
    assert seen and all(shape[1] > 2 for shape in seen)  # every position, not just the target's row
    np.testing.assert_allclose(hooked.frame["score"], plain.frame["score"], atol=1e-5, rtol=1e-5)
