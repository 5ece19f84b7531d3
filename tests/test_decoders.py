"""Decoders as subjects: the causal Atinuke through load_subject (causal patterns, exact hooks, its LM head) and
the generic ``*ForCausalLM`` head that every decoder family gets from ``ModelAdapter`` (tested on GPT-2)."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from atinuke.model import AtinukeForCausalLM
from tests.decoders import clm_atinuke_dir, gpt2_dir
from workbench.lm import language_model
from workbench.subject import load_subject

TEXTS = ["the market fell sharply on monday .", "shares rose ."]


@pytest.fixture(scope="module")
def clm_subject(tmp_path_factory, tiny_tokenizer):
    return load_subject(clm_atinuke_dir(tmp_path_factory.mktemp("clm"), tiny_tokenizer))


@pytest.mark.parametrize("norm_placement", ["pre", "post"])
def test_causal_atinuke_subject_patterns_hooks_and_head(tmp_path, tiny_tokenizer, norm_placement):
    path = clm_atinuke_dir(tmp_path, tiny_tokenizer, norm_placement)
    subject = load_subject(path)
    batch = subject.tokenize(TEXTS)
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state  # no hooks
        cache = subject.run_with_cache(batch)
        own = AtinukeForCausalLM.from_pretrained(path).eval()(batch["input_ids"], batch["attention_mask"]).logits
    # Caching the pattern runs the explicit attention path instead of SDPA: equal to float32 rounding.
    assert (cache.output.last_hidden_state - plain).abs().max().item() <= 1e-6
    assert (cache["ln_final.hook_normalized"] - plain).abs().max().item() <= 1e-6
    with torch.no_grad():  # a hook that does not need the pattern leaves the forward bit for bit as it was
        resid = subject.run_with_cache(batch, ["blocks.1.hook_resid_post"])
    assert torch.equal(resid.output.last_hidden_state, plain)
    pattern = cache.stack("attn.hook_pattern")  # [layers, batch, heads, q, k]
    above = torch.ones(pattern.shape[-2:], dtype=torch.bool).triu(1)
    assert pattern[..., above].abs().max().item() == 0.0  # causal: nothing above the diagonal
    assert pattern[..., ~above].abs().max().item() > 0.0
    real = batch["attention_mask"].bool()
    rows = pattern.sum(-1).permute(1, 3, 0, 2)[real]  # [real queries, layers, heads]
    assert torch.allclose(rows, torch.ones(()), atol=1e-5)
    lm = language_model(subject)
    assert lm is not None and lm.causal
    assert isinstance(lm.model, AtinukeForCausalLM) and lm.model.atinuke is subject.encoder  # the subject's modules
    with torch.no_grad():
        assert torch.equal(lm.readout(plain), lm.logits(batch))
        assert (lm.logits(batch) - own).abs().max().item() <= 1e-5  # the checkpoint's own head
        last = cache[f"blocks.{subject.n_layers - 1}.hook_resid_post"]
        assert (lm.unembed(last) - own).abs().max().item() <= 1e-5  # final norm + head from the residual stream


@pytest.mark.parametrize("head,tied", [(True, True), (True, False), (False, True)])
def test_generic_causal_head_on_gpt2(tmp_path, tiny_tokenizer, head, tied):
    path = gpt2_dir(tmp_path, tiny_tokenizer, head=head, tied=tied)
    subject = load_subject(path)
    lm = language_model(subject)
    assert lm is not None and lm.causal
    assert lm.model.base_model is subject.encoder  # hooks on the subject reach the LM
    batch = subject.tokenize(TEXTS)
    with torch.no_grad():
        reference = AutoModelForCausalLM.from_pretrained(path).eval()(input_ids=batch["input_ids"],
                                                                      attention_mask=batch["attention_mask"]).logits
        logits = lm.logits(batch)
        assert (logits - reference).abs().max().item() <= 1e-5
        assert torch.equal(lm.readout(subject.forward(batch).last_hidden_state), logits)
        if head and not tied:  # the saved projection, not the embeddings
            assert not torch.equal(lm.model.get_output_embeddings().weight, subject.input_embeddings.weight)
        # a hook on the subject changes the LM's logits: the head reads the subject's own modules
        with subject.hooks([("ln_final.hook_normalized", lambda x, info: torch.zeros_like(x))]):
            zeroed = lm.logits(batch)
    assert zeroed.abs().max().item() == 0.0  # GPT-2's projection has no bias


def test_untied_base_only_checkpoint_has_no_head(tmp_path, tiny_tokenizer):
    subject = load_subject(gpt2_dir(tmp_path, tiny_tokenizer, head=False, tied=False))
    assert language_model(subject) is None


def test_a_tokenizer_without_pad_token_pads_right_with_eos(tmp_path, tiny_tokenizer):
    import copy

    path = gpt2_dir(tmp_path, tiny_tokenizer)
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.pad_token, tokenizer.eos_token, tokenizer.padding_side = None, "[SEP]", "left"  # as GPT-2's has none
    tokenizer.save_pretrained(str(path))
    subject = load_subject(path)
    assert subject.tokenizer.pad_token == "[SEP]" and subject.tokenizer.padding_side == "right"
    batch = subject.tokenize(TEXTS)  # two lengths: the short one is padded, on the right
    assert batch["attention_mask"][1].tolist() == sorted(batch["attention_mask"][1].tolist(), reverse=True)
    with torch.no_grad():
        padded = subject.forward(batch).last_hidden_state[1]
        alone = subject.forward(TEXTS[1]).last_hidden_state[0]
    assert (padded[:len(alone)] - alone).abs().max().item() <= 1e-5


def test_logit_lens_reads_a_gpt2_through_the_generic_head(tmp_path, tiny_tokenizer):
    from workbench.lens import evaluate_lens

    subject = load_subject(gpt2_dir(tmp_path, tiny_tokenizer, tied=False))
    result = evaluate_lens(subject, TEXTS)
    last = result.layers.iloc[-1]  # ln_f then the projection of the last residual stream: the model's own logits
    assert last["kl_logit_lens"] == pytest.approx(0.0, abs=1e-6) and last["top1_logit_lens"] == 1.0
    assert result.layers.iloc[0]["kl_logit_lens"] > 1e-3  # the embeddings alone are not the output


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "gpt_neox"])
def test_generic_causal_head_on_the_other_decoder_families(tmp_path, tiny_tokenizer, family):
    """The families whose adapters write no LM code get theirs from the base adapter: a ``*ForCausalLM`` saved with
    an untied head reads out exactly as ``AutoModelForCausalLM`` does, around the subject's own modules."""
    import copy

    import transformers as tf

    from atinuke.tokenizer import save_tokenizer

    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
    sizes = dict(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=128, **ids)
    config = {"llama": lambda: tf.LlamaConfig(num_key_value_heads=2, **sizes),
              "mistral": lambda: tf.MistralConfig(num_key_value_heads=2, **sizes),
              "qwen2": lambda: tf.Qwen2Config(num_key_value_heads=2, **sizes),
              "gpt_neox": lambda: tf.GPTNeoXConfig(**sizes)}[family]()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(copy.deepcopy(config)).eval()
    path = tmp_path / "model"
    model.save_pretrained(path)
    save_tokenizer(tiny_tokenizer, path)
    subject = load_subject(path)
    lm = language_model(subject)
    assert lm is not None and lm.causal and subject.causal
    assert lm.model.base_model is subject.encoder
    batch = subject.tokenize(TEXTS)
    with torch.no_grad():
        reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = lm.logits(batch)
        assert not torch.equal(lm.model.get_output_embeddings().weight, subject.input_embeddings.weight)
        real = batch["attention_mask"].bool()
        assert (logits[real] - reference[real]).abs().max().item() <= 1e-5
        assert torch.equal(lm.readout(subject.forward(batch).last_hidden_state), logits)
