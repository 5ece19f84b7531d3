"""workbench.models.gpt2: a tiny random GPT-2 (pre-norm causal decoder) saved to disk, loaded through
load_subject, with every hook name checked against the model's own outputs and the residual arithmetic.

The tests speak hook names only: GPT-2's module paths live in the adapter."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, GPT2Config

from atinuke.encoders import Encoder, load_encoder
from atinuke.errors import UserInputError
from atinuke.tokenizer import save_tokenizer
from workbench.models.bridges import ATTN_CALLBACKS
from workbench.models.gpt2 import GPT2Adapter
from workbench.subject import Subject, load_subject

TEXTS = ["The market fell sharply on Monday.", "Shares rose."]  # different lengths: the second is padded
CLEAN, CORRUPTED = "The market fell sharply on Monday.", "The market rose sharply on Friday."

# The golden per-block list, written out (not derived from the code under test).
PER_BLOCK = ["hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
             "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
             "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]
GOLDEN = (["embed.hook_embed", "embed.hook_pos_embed"] + [f"blocks.0.{n}" for n in PER_BLOCK]
          + [f"blocks.1.{n}" for n in PER_BLOCK] + ["ln_final.hook_normalized"])


def _config(vocab_size: int, **overrides) -> GPT2Config:
    return GPT2Config(vocab_size=vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                      torch_dtype="float32", **overrides)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gpt2") / "model"
    AutoModel.from_config(_config(len(tiny_tokenizer))).eval().save_pretrained(path)
    save_tokenizer(tiny_tokenizer, path)
    return path


@pytest.fixture(scope="module")
def subject(model_dir) -> Subject:
    return load_subject(model_dir)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _handles(module: torch.nn.Module) -> dict[str, tuple]:
    return {n: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for n, m in module.named_modules()}


def test_golden_hook_names_and_adapter(subject):
    assert subject.hook_names == GOLDEN
    assert isinstance(subject.adapter, GPT2Adapter)
    assert subject.kind == "hf" and subject.encoder.config.model_type == "gpt2"
    assert (subject.n_layers, subject.n_heads, subject.d_head, subject.d_model, subject.max_len) == (2, 4, 8, 32, 128)
    assert subject.adapter.model_inputs == ("input_ids", "attention_mask")
    assert "token_type_ids" not in subject.as_inputs(TEXTS)
    assert len(subject.adapter.blocks()) == 2
    assert subject.input_embeddings in list(subject.adapter.embedding_module().children())
    assert subject.adapter.prune_refusal(subject.adapter.blocks()[-1]) is not None


def test_cached_forward_equals_plain_forward_with_padding(subject):
    batch = subject.tokenize(TEXTS)
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # the second text is padded (on the right)
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        cache = subject.run_with_cache(batch)  # every name: attention runs the hooked implementation
        alone = subject.forward(TEXTS[1]).last_hidden_state
        alone_cache = subject.run_with_cache(TEXTS[1])
    assert list(cache) == GOLDEN
    assert _max_diff(cache.output.last_hidden_state, plain) <= 1e-5
    assert _max_diff(cache["ln_final.hook_normalized"], plain) <= 1e-5
    # padding changes nothing at the real tokens of the shorter text, plain or cached
    n_real = int(mask[1].sum())
    assert alone.shape[1] == n_real
    assert _max_diff(plain[1, :n_real], alone[0]) <= 1e-5
    assert _max_diff(cache["ln_final.hook_normalized"][1, :n_real], alone[0]) <= 1e-5
    assert _max_diff(alone_cache.output.last_hidden_state, alone) <= 1e-5
    batch_size, n_pos = batch["input_ids"].shape
    for name, shape in [("blocks.0.attn.hook_q", (batch_size, n_pos, 4, 8)),
                        ("blocks.0.attn.hook_k", (batch_size, n_pos, 4, 8)),
                        ("blocks.0.attn.hook_v", (batch_size, n_pos, 4, 8)),
                        ("blocks.1.attn.hook_z", (batch_size, n_pos, 4, 8)),
                        ("blocks.0.attn.hook_pattern", (batch_size, 4, n_pos, n_pos)),
                        ("blocks.0.attn.hook_attn_scores", (batch_size, 4, n_pos, n_pos)),
                        ("blocks.0.mlp.hook_pre", (batch_size, n_pos, 128)),
                        ("blocks.0.mlp.hook_post", (batch_size, n_pos, 128)),
                        ("blocks.0.ln1.hook_normalized", (batch_size, n_pos, 32)),
                        ("embed.hook_embed", (batch_size, n_pos, 32)),
                        ("embed.hook_pos_embed", (batch_size, n_pos, 32))]:
        assert cache[name].shape == shape, name
    pattern = cache.stack("attn.hook_pattern")  # [n_layers, batch, n_heads, q, k]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    future = torch.ones(n_pos, n_pos, dtype=torch.bool).triu(1)  # [q, k]: keys after the query
    assert pattern[..., future].abs().max().item() == 0.0  # causal
    assert pattern[:, 1, :, :n_real, mask[1] == 0].abs().max().item() == 0.0  # padding keys get no attention
    # the embedding is wte + wpe (no dropout, no token types)
    assert _max_diff(cache["embed.hook_embed"] + cache["embed.hook_pos_embed"], cache["blocks.0.hook_resid_pre"]) == 0
    assert not any(t.requires_grad for t in cache.values())


def test_known_answers(subject, model_dir):
    batch = subject.tokenize(TEXTS)
    inputs = subject.as_inputs(batch)
    reference = load_encoder(model_dir).model  # a separate plain eager model
    with torch.no_grad():
        own = reference(**inputs, output_attentions=True, output_hidden_states=True)
        cache = subject.run_with_cache(batch)
    assert len(own.attentions) == 2 and len(own.hidden_states) == 3
    assert _max_diff(cache["ln_final.hook_normalized"], own.last_hidden_state) <= 1e-6
    assert _max_diff(cache["blocks.0.hook_resid_pre"], own.hidden_states[0]) <= 1e-6
    # hidden_states[i + 1] is block i's output, except the last, which GPT-2 replaces by ln_f's output
    assert _max_diff(cache["blocks.0.hook_resid_post"], own.hidden_states[1]) <= 1e-6
    assert _max_diff(own.hidden_states[2], own.last_hidden_state) == 0
    assert _max_diff(subject.final_norm(cache["blocks.1.hook_resid_post"]), own.last_hidden_state) <= 1e-6
    real = inputs["attention_mask"].bool()  # [batch, pos]
    n_pos = real.shape[1]
    allowed = real[:, None, None, :] & torch.ones(n_pos, n_pos, dtype=torch.bool).tril()  # [batch, 1, q, k]
    for i in range(2):
        b = f"blocks.{i}."
        assert _max_diff(cache[b + "attn.hook_pattern"], own.attentions[i]) <= 1e-6
        assert _max_diff(cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"], cache[b + "hook_resid_mid"]) <= 1e-6
        assert _max_diff(cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"], cache[b + "hook_resid_post"]) <= 1e-6
        # softmax(scores) = pattern; scores = q k^T / sqrt(d_head) where attending is allowed; z = pattern v
        scores = cache[b + "attn.hook_attn_scores"]
        assert _max_diff(scores.softmax(-1), cache[b + "attn.hook_pattern"]) <= 1e-6
        q, k, v = (cache[b + f"attn.hook_{x}"].transpose(1, 2) for x in "qkv")  # [batch, n_heads, pos, d_head]
        where = allowed.expand_as(scores)
        assert _max_diff((q @ k.transpose(-1, -2) / 8 ** 0.5)[where], scores[where]) <= 1e-5
        assert (scores[~where] == torch.finfo(scores.dtype).min).all()
        assert _max_diff((cache[b + "attn.hook_pattern"] @ v).transpose(1, 2), cache[b + "attn.hook_z"]) <= 1e-5
        # the layer norms' outputs are normalised (their affine part is the identity at initialisation)
        for name, source in (("ln1.hook_normalized", "hook_resid_pre"), ("ln2.hook_normalized", "hook_resid_mid")):
            expected = torch.nn.functional.layer_norm(cache[b + source], (32,), eps=1e-5)
            assert _max_diff(cache[b + name], expected) <= 1e-5
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"], atol=0, rtol=0)
    # final_norm is ln_f's operation and does not fire the bridge on ln_f
    fired = []
    with subject.hooks([("ln_final.hook_normalized", lambda act, hook: fired.append(hook.name))]):
        subject.final_norm(cache["blocks.1.hook_resid_post"])
    assert fired == []


def test_hooks_are_removed_when_the_body_raises(subject):
    subject.forward(TEXTS)
    handles = _handles(subject.encoder)
    attn_impl = subject.encoder.config._attn_implementation
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with subject.hooks([(name, lambda act, hook: seen.append(hook.name)) for name in subject.hook_names]):
            assert all(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())
            subject.forward(TEXTS)
            raise RuntimeError("boom")
    assert set(seen) == set(subject.hook_names)  # every bridge fired
    after = _handles(subject.encoder)
    assert after == handles
    assert all(not hooks and not pre for hooks, pre in after.values())
    assert subject.encoder.config._attn_implementation == attn_impl
    assert len(ATTN_CALLBACKS) == 0
    assert not any(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())


def test_zeroing_one_heads_z_equals_ablating_that_head(subject):
    layer, head = 0, 2
    batch = subject.as_inputs(subject.tokenize(TEXTS))

    def zero_head(z, hook):  # [batch, pos, n_heads, d_head]
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        with subject.hooks([(f"blocks.{layer}.attn.hook_z", zero_head)]):
            replaced = subject.run_with_cache(batch, names=[f"blocks.{layer}.hook_attn_out"])
        with subject.ablate_heads({layer: [head]}):
            ablated = subject.run_with_cache(batch, names=[f"blocks.{layer}.attn.hook_z"])
        clean = subject.run_with_cache(batch, names=[f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_attn_out"])
    assert torch.equal(replaced.output.last_hidden_state, ablated.output.last_hidden_state)
    assert ablated[f"blocks.{layer}.attn.hook_z"][:, :, head].abs().max().item() == 0.0
    assert torch.equal(ablated[f"blocks.{layer}.attn.hook_z"][:, :, :head], clean[f"blocks.{layer}.attn.hook_z"][:, :, :head])
    assert _max_diff(replaced.output.last_hidden_state, plain) > 1e-4
    assert _max_diff(replaced[f"blocks.{layer}.hook_attn_out"], clean[f"blocks.{layer}.hook_attn_out"]) > 1e-4


@pytest.mark.parametrize("name", ["blocks.1.hook_resid_post", "blocks.1.hook_resid_mid", "blocks.0.hook_resid_mid",
                                  "blocks.0.hook_resid_pre"])
def test_patching_the_full_residual_stream_restores_the_clean_output(subject, name):
    assert subject.tokenize(CLEAN)["input_ids"].shape == subject.tokenize(CORRUPTED)["input_ids"].shape
    result = subject.patch(CLEAN, CORRUPTED, name)
    assert torch.equal(result.patched_output.last_hidden_state, result.clean_output.last_hidden_state)
    assert not torch.allclose(result.corrupted_output.last_hidden_state, result.clean_output.last_hidden_state)


def test_hooks_can_replace_activations(subject):
    """A returned tensor replaces the activation downstream: zero pattern -> zero z; zero MLP hidden ->
    mlp_out is c_proj's bias at every position; zero resid_mid -> the block's output is mlp_out alone (the
    residual connection reads the replacement too)."""
    def zero(activation, hook):
        return torch.zeros_like(activation)

    names = ["blocks.0.attn.hook_z", "blocks.0.hook_mlp_out"]
    with subject.hooks([("blocks.0.attn.hook_pattern", zero), ("blocks.0.mlp.hook_post", zero)]):
        cache = subject.run_with_cache(TEXTS[0], names=names)
    assert cache["blocks.0.attn.hook_z"].abs().max().item() == 0.0
    mlp_out = cache["blocks.0.hook_mlp_out"][0]  # [pos, d_model]
    assert torch.equal(mlp_out, mlp_out[:1].expand_as(mlp_out))
    names = ["blocks.1.hook_resid_mid", "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out",
             "blocks.1.hook_resid_post"]
    with subject.hooks([("blocks.1.hook_resid_mid", zero)]):
        zeroed = subject.run_with_cache(TEXTS[0], names=names)
    assert zeroed["blocks.1.hook_resid_mid"].abs().max().item() == 0.0
    normalized = zeroed["blocks.1.ln2.hook_normalized"][0]
    assert torch.equal(normalized, normalized[:1].expand_as(normalized))
    assert torch.equal(zeroed["blocks.1.hook_resid_post"], zeroed["blocks.1.hook_mlp_out"])
    for name in ("blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v"):
        with subject.hooks([(name, zero)]):
            replaced = subject.run_with_cache(TEXTS[0], names=["blocks.0.attn.hook_q", "blocks.0.attn.hook_k",
                                                               "blocks.0.attn.hook_v"])
        assert replaced[name].abs().max().item() == 0.0
        assert all(replaced[other].abs().max().item() > 0 for other in replaced if other != name)
    with pytest.raises(UserInputError, match="shape"):
        with subject.hooks([("blocks.0.hook_resid_mid", lambda act, hook: act[:, :1])]):
            subject.forward(TEXTS[0])


def test_gradient_reaches_a_replaced_residual_stream(subject):
    captured = {}

    def leaf(activation, hook):
        captured["x"] = activation.detach().clone().requires_grad_(True)
        return captured["x"]

    with torch.enable_grad(), subject.hooks([("blocks.0.hook_resid_mid", leaf)]):
        total = subject.forward(TEXTS[0]).last_hidden_state.pow(2).sum()
        (gradient,) = torch.autograd.grad(total, captured["x"])
    assert gradient.shape == captured["x"].shape and gradient.abs().max().item() > 0


def test_reordered_upcast_attention_is_hooked_exactly(tiny_tokenizer, subject):
    """GPT-2 configs with reorder_and_upcast_attn (and layer-wise scaling) take another eager path; the hooked
    implementation mirrors that one too."""
    config = _config(len(tiny_tokenizer), reorder_and_upcast_attn=True, scale_attn_by_inverse_layer_idx=True)
    torch.manual_seed(1)
    model = AutoModel.from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    reference = copy.deepcopy(model)
    upcast = Subject(Encoder(name="gpt2-upcast", kind="hf", model=model, tokenizer=subject.tokenizer,
                             path=Path(".")))
    inputs = upcast.as_inputs(upcast.tokenize(TEXTS))
    with torch.no_grad():
        own = reference(**inputs, output_attentions=True)
        cache = upcast.run_with_cache(inputs)
    assert upcast.hook_names == GOLDEN
    assert _max_diff(cache.output.last_hidden_state, own.last_hidden_state) <= 1e-6
    for i in range(2):
        assert _max_diff(cache[f"blocks.{i}.attn.hook_pattern"], own.attentions[i]) <= 1e-6
        q, k = (cache[f"blocks.{i}.attn.hook_{x}"].transpose(1, 2) for x in "qk")
        scores = cache[f"blocks.{i}.attn.hook_attn_scores"]
        assert _max_diff((q @ k.transpose(-1, -2) / (8 ** 0.5 * (i + 1)))[..., 0, 0], scores[..., 0, 0]) <= 1e-5
    assert len(ATTN_CALLBACKS) == 0
