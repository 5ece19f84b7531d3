"""workbench.subject: one hook vocabulary over Atinuke and MiniLM, exact against plain forwards."""
from __future__ import annotations

import logging

import pytest
import torch

from atinuke.encoders import load_encoder
from atinuke.errors import UserInputError
from workbench.models.bridges import ATTN_CALLBACKS
from workbench.subject import HOOK_NAMES_PER_BLOCK, ActivationCache, load_subject

TEXTS = ["The market fell sharply on Monday.", "Shares rose."]


@pytest.fixture(scope="module")
def atinuke_subject(tiny_atinuke_dir):
    return load_subject(tiny_atinuke_dir)


@pytest.fixture(scope="module")
def minilm_subject(minilm):
    return load_subject(minilm)


def _hook_handles(module: torch.nn.Module) -> dict[str, tuple]:
    return {name: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for name, m in module.named_modules()}


def _expected_names(n_layers: int) -> list[str]:
    return (["embed.hook_embed", "embed.hook_pos_embed"]
            + [f"blocks.{i}.{n}" for i in range(n_layers) for n in HOOK_NAMES_PER_BLOCK]
            + ["ln_final.hook_normalized"])


@pytest.mark.parametrize("which", ["atinuke_subject", "minilm_subject"])
def test_same_hook_names_for_both_families(which, request):
    subject = request.getfixturevalue(which)
    assert subject.hook_names == _expected_names(subject.n_layers)


@pytest.mark.parametrize("which,family", [("atinuke_subject", "atinuke"), ("minilm_subject", "bert")])
def test_unknown_hook_name_names_the_family_and_the_closest_names(which, family, request):
    subject = request.getfixturevalue(which)
    with pytest.raises(UserInputError) as error:
        subject.run_with_cache(subject.tokenize(TEXTS), names=["blocks.0.attn.hook_patern"])
    message = str(error.value)
    assert "\n" not in message
    assert f"'blocks.0.attn.hook_patern' for the {family} family" in message
    assert "close matches: blocks.0.attn.hook_pattern" in message


@pytest.mark.parametrize("which", ["atinuke_subject", "minilm_subject"])
def test_cached_forward_equals_plain_forward(which, request):
    subject = request.getfixturevalue(which)
    batch = subject.tokenize(TEXTS)
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        cache = subject.run_with_cache(batch)  # every name, so attention runs the explicit path
    assert isinstance(cache, ActivationCache)
    assert list(cache) == subject.hook_names
    assert (cache.output.last_hidden_state - plain).abs().max().item() <= 1e-6
    assert (cache["ln_final.hook_normalized"] - plain).abs().max().item() <= 1e-6
    last = f"blocks.{subject.n_layers - 1}.hook_resid_post"
    assert (cache[last] - plain).abs().max().item() <= 1e-6
    batch_size, n_pos = batch["input_ids"].shape
    assert cache["blocks.0.attn.hook_q"].shape == (batch_size, n_pos, subject.n_heads, subject.d_head)
    assert cache["blocks.0.attn.hook_pattern"].shape == (batch_size, subject.n_heads, n_pos, n_pos)
    assert cache["embed.hook_pos_embed"].shape == (batch_size, n_pos, subject.d_model)
    pattern = cache.stack("attn.hook_pattern")  # [n_layers, batch, n_heads, q, k]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    # padding keys receive no attention
    assert pattern[..., 1, :, :, batch["attention_mask"][1] == 0].abs().max().item() == 0.0
    assert not any(t.requires_grad for t in cache.values())


@pytest.mark.parametrize("which", ["atinuke_subject", "minilm_subject"])
def test_cache_holds_only_requested_names(which, request):
    subject = request.getfixturevalue(which)
    cache = subject.run_with_cache(TEXTS[0], names=["blocks.1.hook_resid_mid", "blocks.0.mlp.hook_post"])
    assert sorted(cache) == ["blocks.0.mlp.hook_post", "blocks.1.hook_resid_mid"]
    with pytest.raises(KeyError, match="not cached"):
        cache["blocks.0.hook_resid_post"]


def test_minilm_pattern_equals_its_own_output_attentions(minilm_subject):
    batch = minilm_subject.tokenize(TEXTS)
    reference = load_encoder("minilm")  # a separate plain eager model
    with torch.no_grad():
        own = reference.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              token_type_ids=batch["token_type_ids"], output_attentions=True)
        cache = minilm_subject.run_with_cache(batch, names=lambda n: n.endswith("hook_pattern"))
    for i, attention in enumerate(own.attentions):
        assert (cache[f"blocks.{i}.attn.hook_pattern"] - attention).abs().max().item() <= 1e-6
    torch.testing.assert_close(cache.output.last_hidden_state, own.last_hidden_state, atol=1e-6, rtol=0)


def test_minilm_bridged_names_match_module_arithmetic(minilm_subject):
    """The BERT bridges mean what the docs say: resid_mid = LN(resid_pre + attn_out), z @ W_O = attn_out."""
    layer = minilm_subject.encoder.encoder.layer[1]
    with torch.no_grad():
        cache = minilm_subject.run_with_cache(TEXTS[0])
        ln1 = layer.attention.output.LayerNorm
        torch.testing.assert_close(ln1(cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"]),
                                   cache["blocks.1.hook_resid_mid"])
        z = cache["blocks.1.attn.hook_z"].flatten(2)
        torch.testing.assert_close(layer.attention.output.dense(z), cache["blocks.1.hook_attn_out"])
        # z = pattern @ v per head
        v = cache["blocks.1.attn.hook_v"].transpose(1, 2)  # [batch, n_heads, pos, d_head]
        torch.testing.assert_close((cache["blocks.1.attn.hook_pattern"] @ v).transpose(1, 2),
                                   cache["blocks.1.attn.hook_z"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"])


@pytest.mark.parametrize("which", ["atinuke_subject", "minilm_subject"])
def test_hooks_are_removed_when_the_body_raises(which, request):
    subject = request.getfixturevalue(which)
    subject.forward(TEXTS)
    before = _hook_handles(subject.encoder)
    attn_impl = subject.encoder.config._attn_implementation
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with subject.hooks([(name, lambda act, hook: seen.append(hook.name)) for name in subject.hook_names]):
            subject.forward(TEXTS)
            raise RuntimeError("boom")
    assert set(seen) == set(subject.hook_names)  # every bridge fired
    assert _hook_handles(subject.encoder) == before
    assert subject.encoder.config._attn_implementation == attn_impl
    assert len(ATTN_CALLBACKS) == 0


@pytest.mark.parametrize("which", ["atinuke_subject", "minilm_subject"])
def test_head_ablation(which, request):
    subject = request.getfixturevalue(which)
    batch = subject.tokenize(TEXTS)
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        with subject.ablate_heads({}):
            assert torch.equal(subject.forward(batch).last_hidden_state, plain)
        zeroed = subject.forward(batch, head_ablation={0: [1]}).last_hidden_state
        with subject.ablate_heads({0: [1]}, mode="mean", reference=batch):
            mean = subject.forward(batch).last_hidden_state
    assert (zeroed - plain).abs().max().item() > 1e-3
    assert (mean - plain).abs().max().item() > 1e-4
    assert not torch.allclose(mean, zeroed)


def test_atinuke_zero_ablation_equals_native_head_mask(atinuke_subject):
    batch = atinuke_subject.tokenize(TEXTS)
    head_mask = torch.ones(atinuke_subject.n_layers, atinuke_subject.n_heads)
    head_mask[1, 2] = 0.0
    with torch.no_grad():
        native = atinuke_subject.encoder(batch["input_ids"], batch["attention_mask"], head_mask=head_mask)
        ablated = atinuke_subject.forward(batch, head_ablation={1: [2]})
    assert (native.last_hidden_state - ablated.last_hidden_state).abs().max().item() <= 1e-6


@pytest.mark.parametrize("which", ["atinuke_subject", "minilm_subject"])
def test_patching_the_full_residual_stream_restores_the_clean_output(which, request):
    subject = request.getfixturevalue(which)
    clean, corrupted = "The market fell sharply on Monday.", "The market rose sharply on Friday."
    assert subject.tokenize(clean)["input_ids"].shape == subject.tokenize(corrupted)["input_ids"].shape
    result = subject.patch(clean, corrupted, "blocks.0.hook_resid_post")
    assert torch.equal(result.patched_output.last_hidden_state, result.clean_output.last_hidden_state)
    assert not torch.allclose(result.corrupted_output.last_hidden_state, result.clean_output.last_hidden_state)
    # a single position restores only part of the difference
    partial = subject.patch(clean, corrupted, "blocks.0.hook_resid_post", positions=[0])
    gap = (partial.patched_output.last_hidden_state - result.clean_output.last_hidden_state).abs().max()
    assert gap.item() > 1e-4


def test_bad_inputs_are_user_errors(atinuke_subject, caplog):
    with pytest.raises(UserInputError, match="hook_pattern"):
        atinuke_subject.run_with_cache(TEXTS, names=["blocks.0.attn.hook_patern"])
    with pytest.raises(UserInputError, match="empty"):
        atinuke_subject.tokenize(["fine", "  "])
    long_text = " ".join(["market"] * 300)
    with pytest.raises(UserInputError, match="max_length"):
        atinuke_subject.tokenize(long_text, truncate=False)
    with caplog.at_level(logging.WARNING):
        batch = atinuke_subject.tokenize(long_text)
    assert batch["input_ids"].shape[1] == atinuke_subject.max_len
    assert "truncating" in caplog.text
    with pytest.raises(UserInputError, match="does not exist"):
        with atinuke_subject.ablate_heads({0: [99]}):
            pass
    with pytest.raises(UserInputError, match="differ in shape"):
        atinuke_subject.patch("a b", "a b c d e", "blocks.0.hook_resid_post")


def test_hook_can_replace_an_activation(atinuke_subject):
    """A hook that returns a tensor replaces the activation downstream (here: zero pattern -> zero z)."""
    def zero(pattern, hook):
        return torch.zeros_like(pattern)

    with atinuke_subject.hooks([("blocks.0.attn.hook_pattern", zero)]):
        cache = atinuke_subject.run_with_cache(TEXTS[0], names=["blocks.0.attn.hook_z"])
    assert cache["blocks.0.attn.hook_z"].abs().max().item() == 0.0


def test_a_family_without_an_adapter_is_refused_by_name(tmp_path, tiny_tokenizer):
    from transformers import FalconConfig, FalconModel

    from atinuke.errors import UserInputError
    from atinuke.tokenizer import save_tokenizer

    FalconModel(FalconConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=4)).save_pretrained(tmp_path / "falcon")
    save_tokenizer(tiny_tokenizer, tmp_path / "falcon")
    with pytest.raises(UserInputError, match=r"'falcon' \(FalconModel\) has no adapter.*supported: .*gpt2.*gpt_neox") as error:
        load_subject(tmp_path / "falcon")
    assert "\n" not in str(error.value)


def test_a_family_that_only_shares_berts_top_level_tree_is_refused_by_name(tmp_path, tiny_tokenizer):
    """DeBERTa v1 has .embeddings and .encoder.layer like BERT, but fused attention: the BERT adapter, which
    every unlisted family is tried with, refuses it at load time in one line instead of failing at a hook."""
    from transformers import DebertaConfig, DebertaModel

    from atinuke.errors import UserInputError
    from atinuke.tokenizer import save_tokenizer

    DebertaModel(DebertaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=4, intermediate_size=64)).save_pretrained(tmp_path / "deberta")
    save_tokenizer(tiny_tokenizer, tmp_path / "deberta")
    with pytest.raises(UserInputError, match=r"'deberta' \(DebertaModel\) has no adapter.*supported: .*deberta-v2") as error:
        load_subject(tmp_path / "deberta")
    assert "\n" not in str(error.value)
