"""Decoder attribution targets (workbench.attribution.lm_targets) on a tiny GPT-2 and a tiny causal Atinuke:
known answers from independent plain forwards, Integrated Gradients completeness, exact causal zeros, and greedy
generation equal to transformers' own."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from atinuke.errors import UserInputError
from tests.decoders import clm_atinuke_dir, gpt2_dir
from workbench.attribution import AttributionParams, attribute
from workbench.attribution.lm_targets import (
    ContinuationTarget,
    GenerationTarget,
    LogitDiffTarget,
    NextTokenTarget,
    last_content_position,
)
from workbench.attribution.targets import HiddenNormTarget, parse_target, rows_from_texts
from workbench.faithfulness import eraser
from workbench.lm import language_model
from workbench.subject import load_subject

TEXTS = ["the market fell sharply on monday", "shares rose"]
IG = AttributionParams(n_steps=64)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, tiny_tokenizer):
    path = gpt2_dir(tmp_path_factory.mktemp("gpt2"), tiny_tokenizer, tied=False)
    return load_subject(path), AutoModelForCausalLM.from_pretrained(path).eval()


@pytest.fixture(scope="module")
def clm(tmp_path_factory, tiny_tokenizer):
    return load_subject(clm_atinuke_dir(tmp_path_factory.mktemp("clm"), tiny_tokenizer))


def _plain_logits(lm_or_model, ids: torch.Tensor) -> torch.Tensor:
    """[pos, vocab] logits of one unpadded row by a plain forward (no workbench hooks)."""
    with torch.no_grad():
        return lm_or_model(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None]).logits[0]


def _baseline(subject, rows, r: int) -> torch.Tensor:
    """The row's ids with every content token replaced by [PAD] (the engine's "pad" baseline)."""
    n = int(rows.attention_mask[r].sum())
    return torch.where(rows.segments[r, :n] >= 0, subject.tokenizer.pad_token_id, rows.input_ids[r, :n])


def _completeness(result, values: dict[str, tuple[float, float]]) -> None:
    """IG: per example, the scores sum to f(x) - f(baseline) (f computed independently) within |delta|."""
    for example, frame in result.frame.groupby("example_id"):
        fx, fb = values[str(example)]
        delta = float(frame["delta"].iloc[0])
        assert abs(frame["score"].sum() - (fx - fb)) <= abs(delta) + 1e-4
        assert abs(delta) <= 0.02 * max(abs(fx - fb), 1.0)  # converged: the check above is not vacuous


def test_next_token_default_target_known_answer_and_completeness(gpt2):
    subject, model = gpt2
    assert subject.causal and isinstance(parse_target(None, subject), NextTokenTarget)
    rows = rows_from_texts(subject, TEXTS)
    result = attribute(subject, TEXTS, "integrated_gradients", None, IG, store=None)
    values, labels = {}, {}
    for r in range(len(rows)):
        last = last_content_position(rows, r)
        ids = rows.input_ids[r, :int(rows.attention_mask[r].sum())]
        logits = _plain_logits(model, ids)[last]
        token = int(logits.argmax())
        labels[str(r)] = f"next={subject.tokenizer.convert_ids_to_tokens(token)}@{last}"
        values[str(r)] = (float(logits[token]), float(_plain_logits(model, _baseline(subject, rows, r))[last, token]))
    assert dict(result.frame.groupby("example_id")["target"].first()) == labels
    _completeness(result, values)


def test_logit_difference_equals_two_plain_logits(gpt2):
    subject, model = gpt2
    a, b = "market", "the"
    target = parse_target(f"logitdiff={a},{b}", subject)
    assert isinstance(target, LogitDiffTarget)
    rows = rows_from_texts(subject, TEXTS)
    ia, ib = subject.tokenizer.convert_tokens_to_ids([a, b])
    with torch.no_grad():
        output = subject.forward({"input_ids": rows.input_ids, "attention_mask": rows.attention_mask})
        index = target.resolve(subject, rows, output, {})
        value = target.select(output, index, {})
    values = {}
    for r in range(len(rows)):
        last = last_content_position(rows, r)
        ids = rows.input_ids[r, :int(rows.attention_mask[r].sum())]
        logits, base = _plain_logits(model, ids)[last], _plain_logits(model, _baseline(subject, rows, r))[last]
        assert index[r].tolist() == [last, ia, ib]
        assert abs(float(value[r]) - float(logits[ia] - logits[ib])) <= 1e-5
        values[str(r)] = (float(logits[ia] - logits[ib]), float(base[ia] - base[ib]))
    _completeness(attribute(subject, TEXTS, "integrated_gradients", target, IG), values)


@pytest.mark.parametrize("which", ["gpt2", "clm"])
def test_continuation_log_prob_equals_hand_sum_of_log_softmax(which, request):
    subject = request.getfixturevalue(which)
    subject = subject[0] if isinstance(subject, tuple) else subject
    lm = language_model(subject)
    target = parse_target("continuation=on friday", subject)
    assert isinstance(target, ContinuationTarget)
    rows = target.prepare_rows(subject, rows_from_texts(subject, TEXTS))
    cont = subject.tokenizer("on friday", add_special_tokens=False)["input_ids"]
    assert len(cont) == 2 and target.ids == cont
    with torch.no_grad():
        output = subject.forward({"input_ids": rows.input_ids, "attention_mask": rows.attention_mask})
        index = target.resolve(subject, rows, output, {})
        value = target.select(output, index, {})
    values = {}
    for r in range(len(rows)):
        n = int(rows.attention_mask[r].sum())
        start = last_content_position(rows, r) + 1  # the continuation's tokens are fixed (segment -1)
        assert rows.input_ids[r, start:start + 2].tolist() == cont and int(index[r, 0]) == start
        assert (rows.segments[r, start:start + 2] == -1).all()
        def logprob(ids: torch.Tensor) -> float:
            logp = _plain_logits(lm.model, ids).float().log_softmax(-1)  # [pos, vocab]
            return float(logp[start - 1, cont[0]] + logp[start, cont[1]])
        by_hand = logprob(rows.input_ids[r, :n])
        assert abs(float(value[r]) - by_hand) <= 1e-5 and by_hand < 0
        values[str(r)] = (by_hand, logprob(_baseline(subject, rows, r)))
    result = attribute(subject, TEXTS, "integrated_gradients", target, IG)
    starts = result.frame["example_id"].map({str(r): int(index[r, 0]) for r in range(len(rows))})
    scored = result.frame[(result.frame["token_index"] >= starts) & (result.frame["token_index"] < starts + 2)]
    assert scored["token"].tolist() == ["on", "friday"] * len(rows)
    assert (scored["score"] == 0).all()  # in the table, fixed: not attributed
    _completeness(result, values)
    faith = eraser(subject, TEXTS, result, target=parse_target("continuation=on friday", subject), ks=(50,))
    assert set(faith["example_id"]) == {"0", "1"} and faith["full"].round(5).tolist() == \
        [round(values[e][0], 5) for e in faith["example_id"]]  # erasure keeps the continuation it scores


def test_greedy_generation_equals_transformers_generate_and_attributes_each_token(gpt2):
    subject, model = gpt2
    rows = rows_from_texts(subject, TEXTS[:1])
    last = last_content_position(rows, 0)
    prompt = rows.input_ids[0, :last + 1]
    with torch.no_grad():
        reference = model.generate(prompt[None], attention_mask=torch.ones_like(prompt)[None], max_new_tokens=4,
                                   do_sample=False, pad_token_id=0)[0, last + 1:].tolist()
    generated = language_model(subject).greedy(prompt.tolist(), 4)
    assert generated == reference and len(generated) >= 1
    target = parse_target("generate=4", subject)
    assert isinstance(target, GenerationTarget)
    result = attribute(subject, TEXTS[:1], "integrated_gradients", target, IG)
    frame = result.frame
    ids = [f"0#{j}" for j in range(len(generated))]
    assert list(dict.fromkeys(frame["example_id"])) == ids  # one row (example) per generated token
    values = {}
    for j, token in enumerate(generated):
        row = frame[frame["example_id"] == ids[j]]
        label = subject.tokenizer.convert_ids_to_tokens(token)
        assert row["target"].iloc[0] == f"next={label}@{last + j}"
        ids_j = torch.cat([prompt, torch.tensor(generated[:j], dtype=prompt.dtype)])
        assert len(row) == len(ids_j) + 1  # prompt + earlier generated tokens + the trailing [SEP]
        base = torch.where(torch.arange(len(ids_j)) > 0, subject.tokenizer.pad_token_id, ids_j)  # [CLS] kept
        values[ids[j]] = (float(_plain_logits(model, ids_j)[-1, token]), float(_plain_logits(model, base)[-1, token]))
    _completeness(result, values)


@pytest.mark.parametrize("which", ["gpt2", "clm"])
@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_no_attribution_from_later_positions(which, method, request):
    subject = request.getfixturevalue(which)
    subject = subject[0] if isinstance(subject, tuple) else subject
    frame = attribute(subject, TEXTS[:1], method, "next@3", AttributionParams(n_steps=8)).frame
    assert frame["target"].iloc[0].endswith("@3")
    assert (frame["score"][frame["token_index"] > 3] == 0).all()  # exactly: causal attention
    assert (frame["score"][(frame["token_index"] > 0) & (frame["token_index"] <= 3)] != 0).all()


def test_target_forms_and_one_line_errors(gpt2, tiny_atinuke_dir):
    subject = gpt2[0]
    assert parse_target("next@2", subject) == NextTokenTarget(2, None)
    assert parse_target("next=market@2", subject) == NextTokenTarget(2, "market")
    assert parse_target("logitdiff=a,b@1", subject) == LogitDiffTarget(1, token_a="a", token_b="b")
    assert parse_target("generate=3", subject) == GenerationTarget(n_tokens=3)
    assert parse_target("norm@0", subject) == HiddenNormTarget(0)
    for bad, message in [("logitdiff=a", "TOKEN_A,TOKEN_B"), ("generate=0", "N >= 1"), ("continuation=", "TEXT"),
                         ("class=x", "does not exist")]:
        with pytest.raises(UserInputError, match=message):
            parse_target(bad, subject)
    with pytest.raises(UserInputError, match="not one token"):
        attribute(subject, TEXTS[:1], "saliency", "next=zzzqqq xx")
    encoder = load_subject(tiny_atinuke_dir)  # a masked LM
    assert not encoder.causal and isinstance(parse_target(None, encoder), HiddenNormTarget)
    with pytest.raises(UserInputError, match="does not exist"):
        parse_target("next", encoder)


def test_attribute_cli_generates_and_attributes_in_bfloat16(gpt2, tmp_path):
    import pandas as pd

    from workbench.cli import main

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "o"
    argv = ["attribute", "--model", str(gpt2[0].path), "--data", str(texts), "--method", "saliency",
            "--target", "generate=2", "--out", str(out), "--no-store", "--no-progress", "--device", "cpu",
            "--dtype", "bfloat16"]
    assert main(argv) == 0
    frame = pd.read_parquet(out / "attributions.parquet")
    examples = list(dict.fromkeys(frame["example_id"]))
    assert examples == ["0#0", "0#1", "1#0", "1#1"]  # one row per generated token (neither text hits the eos)
    assert frame.groupby("example_id")["target"].nunique().eq(1).all() and frame["target"].str.startswith("next=").all()
    lengths = frame.groupby("example_id", sort=False).size().tolist()
    assert lengths[1] == lengths[0] + 1 and lengths[3] == lengths[2] + 1  # each later row adds the generated token
