"""workbench.models.llama: tiny random Llama, Mistral and Qwen2 models (grouped-query attention, rotary positions,
RMSNorm, SwiGLU; Mistral with a sliding window on every layer, Qwen2 on its second layer only and with q/k/v biases)
saved to disk, loaded through load_subject, with every hook name checked against the model's own outputs, the
residual arithmetic and independently computed rotary embeddings, norms and ablations.

The tests speak hook names only; the few weights they need are read from the saved checkpoint file."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModel, LlamaConfig, MistralConfig, Qwen2Config

from atinuke.encoders import Encoder, load_encoder
from atinuke.errors import UserInputError
from atinuke.tokenizer import save_tokenizer
from workbench.attribution import AttributionParams, attribute
from workbench.attribution.targets import HiddenNormTarget
from workbench.models.bridges import ATTN_CALLBACKS
from workbench.models.llama import NORM_CALLBACKS, LlamaAdapter
from workbench.subject import Subject, load_subject

TEXTS = ["The market fell sharply on Monday.", "Shares rose."]  # different lengths: the second is padded
CLEAN, CORRUPTED = "The market fell sharply on Monday.", "The market rose sharply on Friday."
N_HEADS, N_KV_HEADS, D_HEAD, D_FF, WINDOW = 4, 2, 8, 64, 4

# The golden per-block list, written out (not derived from the code under test). No embed.hook_pos_embed: rotary.
PER_BLOCK = ["hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
             "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z",
             "hook_attn_out", "hook_resid_mid", "ln2.hook_scale", "ln2.hook_normalized", "mlp.hook_pre",
             "mlp.hook_pre_linear", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]
GOLDEN = (["embed.hook_embed"] + [f"blocks.0.{n}" for n in PER_BLOCK] + [f"blocks.1.{n}" for n in PER_BLOCK]
          + ["ln_final.hook_scale", "ln_final.hook_normalized"])
# family -> (config class, its options, the layers whose queries see only the last WINDOW keys)
FAMILIES = {
    "llama": (LlamaConfig, {}, ()),
    "mistral": (MistralConfig, {"sliding_window": WINDOW}, (0, 1)),
    "qwen2": (Qwen2Config, {"use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1}, (1,)),
}


def _config(family: str, vocab_size: int):
    cls, options, _ = FAMILIES[family]
    return cls(vocab_size=vocab_size, hidden_size=32, intermediate_size=D_FF, num_hidden_layers=2,
               num_attention_heads=N_HEADS, num_key_value_heads=N_KV_HEADS, max_position_embeddings=128,
               pad_token_id=0, bos_token_id=2, eos_token_id=3, attention_dropout=0.0, initializer_range=0.1,
               dtype="float32", **options)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request) -> str:
    return request.param


def _save(family: str, tmp_path_factory, tiny_tokenizer) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(family) / "model"
    model = AutoModel.from_config(copy.deepcopy(_config(family, len(tiny_tokenizer)))).eval()
    with torch.no_grad():  # norm gains and biases away from their initial 1 and 0, so they enter every check
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                parameter.normal_(0.0, 0.1)
    model.save_pretrained(path)
    save_tokenizer(tiny_tokenizer, path)
    return path


@pytest.fixture(scope="module")
def model_dir(family, tmp_path_factory, tiny_tokenizer) -> Path:
    return _save(family, tmp_path_factory, tiny_tokenizer)


@pytest.fixture(scope="module")
def subject(model_dir) -> Subject:
    return load_subject(model_dir)


@pytest.fixture(scope="module")
def weights(model_dir) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, read from the file (not from the loaded modules)."""
    return load_file(str(model_dir / "model.safetensors"))


def _tensor(weights: dict[str, torch.Tensor], layer: int, suffix: str) -> torch.Tensor:
    """Block ``layer``'s checkpoint tensor whose name ends in ``suffix`` (found by name, not by module path)."""
    (name,) = [n for n in weights if n.startswith(f"layers.{layer}.") and n.endswith(suffix)]
    return weights[name]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _handles(module: torch.nn.Module) -> dict[str, tuple]:
    return {n: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for n, m in module.named_modules()}


def _allowed(mask: torch.Tensor, layer: int, family: str) -> torch.Tensor:
    """[batch, 1, q, k]: the keys each query may attend to (real, not after it, inside the window if any)."""
    n_pos = mask.shape[1]
    q, k = torch.arange(n_pos)[:, None], torch.arange(n_pos)[None, :]
    ok = k <= q
    if layer in FAMILIES[family][2]:
        ok = ok & (q - k < WINDOW)
    return mask.bool()[:, None, None, :] & ok


def _rotary(x: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE (Su et al., 2021) computed here from its definition, half-split layout: x [batch, pos, heads, d]."""
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)  # [d/2]
    angles = torch.arange(x.shape[1], dtype=torch.float32)[:, None] * inv_freq  # [pos, d/2]
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def test_golden_hook_names_and_adapter(subject, family):
    assert subject.hook_names == GOLDEN
    assert "embed.hook_pos_embed" not in subject.hook_names
    assert isinstance(subject.adapter, LlamaAdapter) and subject.adapter.family == family
    assert subject.kind == "hf" and subject.encoder.config.model_type == family
    assert (subject.n_layers, subject.n_heads, subject.d_head, subject.d_model) == (2, N_HEADS, D_HEAD, 32)
    assert subject.adapter.n_kv_heads == N_KV_HEADS
    assert subject.adapter.model_inputs == ("input_ids", "attention_mask")
    assert "token_type_ids" not in subject.as_inputs(TEXTS)
    assert len(subject.adapter.blocks()) == 2
    assert subject.adapter.embedding_module() is subject.input_embeddings
    assert subject.adapter.prune_refusal(subject.adapter.blocks()[-1]) is None  # row pruning is written


def test_unknown_hook_names_are_one_line_errors_naming_the_family(subject, family):
    with pytest.raises(UserInputError) as error:
        subject.run_with_cache(TEXTS[0], names=["blocks.0.attn.hook_rotq"])
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"unknown hook name 'blocks.0.attn.hook_rotq' for the {family} family; close matches: ")
    assert "blocks.0.attn.hook_rot_q" in message
    with pytest.raises(UserInputError, match=f"'embed.hook_pos_embed' for the {family} family"):
        with subject.hooks([("embed.hook_pos_embed", lambda act, hook: None)]):
            pass


def test_cached_forward_equals_plain_forward_with_padding(subject):
    batch = subject.tokenize(TEXTS)
    mask = batch["attention_mask"]
    assert (mask[1] == 0).any() and mask[1, 0] == 1  # the second text is padded, on the right
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        cache = subject.run_with_cache(batch)  # every name: attention runs the hooked implementation
        alone = subject.forward(TEXTS[1]).last_hidden_state
        alone_cache = subject.run_with_cache(TEXTS[1])
    assert list(cache) == GOLDEN
    assert _max_diff(cache.output.last_hidden_state, plain) <= 1e-5
    assert _max_diff(cache["ln_final.hook_normalized"], plain) <= 1e-5
    n_real = int(mask[1].sum())  # padding changes nothing at the real tokens of the shorter text
    assert alone.shape[1] == n_real
    assert _max_diff(plain[1, :n_real], alone[0]) <= 1e-5
    assert _max_diff(cache["ln_final.hook_normalized"][1, :n_real], alone[0]) <= 1e-5
    assert _max_diff(alone_cache.output.last_hidden_state, alone) <= 1e-5
    assert _max_diff(cache["blocks.1.attn.hook_pattern"][1, :, :n_real, :n_real],
                     alone_cache["blocks.1.attn.hook_pattern"][0]) <= 1e-5
    batch_size, n_pos = batch["input_ids"].shape
    for name, shape in [("blocks.0.attn.hook_q", (batch_size, n_pos, N_HEADS, D_HEAD)),
                        ("blocks.0.attn.hook_k", (batch_size, n_pos, N_KV_HEADS, D_HEAD)),
                        ("blocks.0.attn.hook_v", (batch_size, n_pos, N_KV_HEADS, D_HEAD)),
                        ("blocks.0.attn.hook_rot_q", (batch_size, n_pos, N_HEADS, D_HEAD)),
                        ("blocks.0.attn.hook_rot_k", (batch_size, n_pos, N_KV_HEADS, D_HEAD)),
                        ("blocks.1.attn.hook_z", (batch_size, n_pos, N_HEADS, D_HEAD)),
                        ("blocks.0.attn.hook_pattern", (batch_size, N_HEADS, n_pos, n_pos)),
                        ("blocks.0.attn.hook_attn_scores", (batch_size, N_HEADS, n_pos, n_pos)),
                        ("blocks.0.ln1.hook_scale", (batch_size, n_pos, 1)),
                        ("ln_final.hook_scale", (batch_size, n_pos, 1)),
                        ("blocks.0.mlp.hook_pre", (batch_size, n_pos, D_FF)),
                        ("blocks.0.mlp.hook_pre_linear", (batch_size, n_pos, D_FF)),
                        ("blocks.0.mlp.hook_post", (batch_size, n_pos, D_FF)),
                        ("embed.hook_embed", (batch_size, n_pos, 32))]:
        assert cache[name].shape == shape, name
    pattern = cache.stack("attn.hook_pattern")  # [n_layers, batch, n_heads, q, k]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    assert pattern[:, 1, :, :n_real][..., mask[1] == 0].abs().max().item() == 0.0  # padding keys get no attention
    assert torch.equal(cache["embed.hook_embed"], cache["blocks.0.hook_resid_pre"])  # no position embedding
    assert not any(t.requires_grad for t in cache.values())


def test_known_answers(subject, model_dir, family, weights):
    batch = subject.tokenize(TEXTS)
    inputs = subject.as_inputs(batch)
    reference = load_encoder(model_dir).model  # a separate plain eager model
    config = reference.config
    with torch.no_grad():
        own = reference(**inputs, output_attentions=True, output_hidden_states=True)
        cache = subject.run_with_cache(batch)
    assert len(own.attentions) == 2 and len(own.hidden_states) == 3
    assert _max_diff(cache["ln_final.hook_normalized"], own.last_hidden_state) <= 1e-6
    assert _max_diff(cache["blocks.0.hook_resid_pre"], own.hidden_states[0]) <= 1e-6
    # hidden_states[i + 1] is block i's output, except the last, which the model replaces by the final norm's
    assert _max_diff(cache["blocks.0.hook_resid_post"], own.hidden_states[1]) <= 1e-6
    assert _max_diff(subject.final_norm(cache["blocks.1.hook_resid_post"]), own.last_hidden_state) <= 1e-6
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"], atol=0, rtol=0)
    scaling, theta = D_HEAD ** -0.5, config.rope_parameters["rope_theta"]
    norms = [("ln1", "hook_resid_pre", "input_layernorm"), ("ln2", "hook_resid_mid", "post_attention_layernorm")]
    for i in range(2):
        b = f"blocks.{i}."
        allowed = _allowed(inputs["attention_mask"], i, family)  # [batch, 1, q, k]
        pattern, scores = cache[b + "attn.hook_pattern"], cache[b + "attn.hook_attn_scores"]
        assert _max_diff(pattern, own.attentions[i]) <= 1e-6
        real_query = inputs["attention_mask"].bool()[:, None, :, None]  # [batch, 1, q, 1]
        hidden = (~allowed & real_query).expand_as(pattern)  # (a padded query may see no real key in its window)
        assert pattern[hidden].abs().max().item() == 0.0  # causal, padding, sliding window
        assert _max_diff(cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"], cache[b + "hook_resid_mid"]) <= 1e-6
        assert _max_diff(cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"], cache[b + "hook_resid_post"]) <= 1e-6
        assert _max_diff(F.silu(cache[b + "mlp.hook_pre"]) * cache[b + "mlp.hook_pre_linear"],
                         cache[b + "mlp.hook_post"]) <= 1e-6
        for ln, source, module in norms:  # scale = 1/rms(x); scale * x = normalized / weight
            x, scale = cache[b + source], cache[b + f"{ln}.hook_scale"]
            weight = _tensor(weights, i, f".{module}.weight")
            assert _max_diff(scale, (x.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps).rsqrt()) <= 1e-6
            assert _max_diff(scale * x, cache[b + f"{ln}.hook_normalized"] / weight) <= 1e-6
        # rotary: rot = RoPE(q), exactly q at position 0, and really rotated further on
        q, k = cache[b + "attn.hook_q"], cache[b + "attn.hook_k"]
        rot_q, rot_k = cache[b + "attn.hook_rot_q"], cache[b + "attn.hook_rot_k"]
        assert _max_diff(rot_q, _rotary(q, theta)) <= 1e-5 and _max_diff(rot_k, _rotary(k, theta)) <= 1e-5
        assert torch.equal(rot_q[:, 0], q[:, 0]) and torch.equal(rot_k[:, 0], k[:, 0])
        assert _max_diff(rot_q[:, 1:], q[:, 1:]) > 1e-3
        # scores = rot_q rot_k^T * scaling where allowed (query head h reads K/V head h // 2), dtype min elsewhere
        rot_k_per_query = rot_k.repeat_interleave(N_HEADS // N_KV_HEADS, dim=2)  # [batch, pos, n_heads, d_head]
        expected = torch.matmul(rot_q.transpose(1, 2), rot_k_per_query.transpose(1, 2).transpose(2, 3)) * scaling
        where = allowed.expand_as(scores)
        assert _max_diff(expected[where], scores[where]) <= 1e-6
        assert (scores[~where] == torch.finfo(scores.dtype).min).all()
        assert _max_diff(scores.softmax(-1), pattern) <= 1e-6
        v_per_query = cache[b + "attn.hook_v"].repeat_interleave(N_HEADS // N_KV_HEADS, dim=2).transpose(1, 2)
        assert _max_diff((pattern @ v_per_query).transpose(1, 2), cache[b + "attn.hook_z"]) <= 1e-6
    if FAMILIES[family][2]:  # the window really cuts: a long enough query has real keys it may not see
        assert not _allowed(inputs["attention_mask"], FAMILIES[family][2][0], family)[0, 0, -1, 0]
    # final_norm is the norm's operation and does not fire the bridges on it
    fired = []
    with subject.hooks([(n, lambda act, hook: fired.append(hook.name)) for n in ("ln_final.hook_scale",
                                                                                 "ln_final.hook_normalized")]):
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
    assert len(ATTN_CALLBACKS) == 0 and len(NORM_CALLBACKS) == 0
    assert not any("forward" in vars(m) for m in subject.encoder.modules())  # every norm has its own forward back
    assert not any(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())


def test_zeroing_one_heads_z_equals_a_manual_ablation(subject, weights):
    """Zeroing head 2's z through the hook equals feeding o_proj, computed here from the checkpoint's weight, the
    clean z with that head's slice zeroed (and is what Subject.ablate_heads does)."""
    layer, head = 0, 2
    batch = subject.as_inputs(subject.tokenize(TEXTS))
    w_o = _tensor(weights, layer, ".o_proj.weight")  # [d_model, n_heads * d_head], no bias

    def zero_head(z, hook):  # [batch, pos, n_heads, d_head]
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    with torch.no_grad():
        clean = subject.run_with_cache(batch, names=[f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_attn_out"])
        z = clean[f"blocks.{layer}.attn.hook_z"].flatten(-2).clone()  # [batch, pos, n_heads * d_head]
        z[..., head * D_HEAD:(head + 1) * D_HEAD] = 0.0
        manual_out = F.linear(z, w_o)  # [batch, pos, d_model]
        with subject.hooks([(f"blocks.{layer}.attn.hook_z", zero_head)]):
            replaced = subject.run_with_cache(batch, names=[f"blocks.{layer}.hook_attn_out"])
        with subject.hooks([(f"blocks.{layer}.hook_attn_out", lambda act, hook: manual_out)]):
            manual = subject.forward(batch).last_hidden_state
        with subject.ablate_heads({layer: [head]}):
            ablated = subject.forward(batch).last_hidden_state
    assert _max_diff(F.linear(clean[f"blocks.{layer}.attn.hook_z"].flatten(-2), w_o),
                     clean[f"blocks.{layer}.hook_attn_out"]) <= 1e-6  # o_proj is that linear map
    assert _max_diff(replaced[f"blocks.{layer}.hook_attn_out"], manual_out) <= 1e-6
    assert _max_diff(replaced.output.last_hidden_state, manual) <= 1e-6
    assert torch.equal(replaced.output.last_hidden_state, ablated)
    assert _max_diff(replaced.output.last_hidden_state, clean.output.last_hidden_state) > 1e-4


@pytest.mark.parametrize("name", ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.1.hook_resid_post"])
def test_patching_the_full_residual_stream_restores_the_other_runs_output(subject, name):
    assert subject.tokenize(CLEAN)["input_ids"].shape == subject.tokenize(CORRUPTED)["input_ids"].shape
    result = subject.patch(CLEAN, CORRUPTED, name)
    assert torch.equal(result.patched_output.last_hidden_state, result.clean_output.last_hidden_state)
    assert not torch.allclose(result.corrupted_output.last_hidden_state, result.clean_output.last_hidden_state)
    # and the other way round: the corrupted run's residual stream at block 0 restores the corrupted output
    reverse = subject.patch(CORRUPTED, CLEAN, name)
    assert torch.equal(reverse.patched_output.last_hidden_state, result.corrupted_output.last_hidden_state)


def test_hooks_can_replace_activations(subject):
    """A returned tensor replaces the activation downstream, at each kind of bridge."""
    def zero(activation, hook):
        return torch.zeros_like(activation)

    def double(activation, hook):
        return activation * 2

    with torch.no_grad():
        clean = subject.run_with_cache(TEXTS[0])
        with subject.hooks([("blocks.0.ln1.hook_scale", double), ("ln_final.hook_scale", double)]):
            doubled = subject.run_with_cache(TEXTS[0], names=["blocks.0.ln1.hook_normalized", "blocks.0.attn.hook_q"])
        with subject.hooks([("blocks.0.attn.hook_rot_k", zero)]):
            no_keys = subject.run_with_cache(TEXTS[0], names=["blocks.0.attn.hook_attn_scores",
                                                              "blocks.0.attn.hook_pattern"])
        with subject.hooks([("blocks.1.attn.hook_q", zero)]):
            no_q = subject.run_with_cache(TEXTS[0], names=["blocks.1.attn.hook_rot_q", "blocks.1.attn.hook_rot_k"])
        with subject.hooks([("blocks.1.hook_resid_mid", zero)]):
            no_mid = subject.run_with_cache(TEXTS[0], names=["blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"])
        with subject.hooks([("blocks.0.mlp.hook_post", zero)]):
            no_mlp = subject.run_with_cache(TEXTS[0], names=["blocks.0.hook_mlp_out"])
    # a doubled 1/rms doubles the norm's output exactly (a power of two), and the final output
    assert torch.equal(doubled["blocks.0.ln1.hook_normalized"], 2 * clean["blocks.0.ln1.hook_normalized"])
    assert _max_diff(doubled["blocks.0.attn.hook_q"], clean["blocks.0.attn.hook_q"]) > 1e-4
    # zero keys: every allowed score is 0, so each query attends uniformly over the keys it may see
    scores, pattern = no_keys["blocks.0.attn.hook_attn_scores"][0], no_keys["blocks.0.attn.hook_pattern"][0]
    allowed = clean["blocks.0.attn.hook_pattern"][0] > 0  # [heads, q, k]
    assert scores[allowed].abs().max().item() == 0.0
    uniform = allowed.float() / allowed.float().sum(-1, keepdim=True)
    assert _max_diff(pattern, uniform) <= 1e-6
    # a zero q stays zero after rotary; k is untouched
    assert no_q["blocks.1.attn.hook_rot_q"].abs().max().item() == 0.0
    assert _max_diff(no_q["blocks.1.attn.hook_rot_k"], clean["blocks.1.attn.hook_rot_k"]) <= 1e-6
    # zero resid_mid: the residual connection reads the replacement too, so the block's output is mlp_out alone
    assert torch.equal(no_mid["blocks.1.hook_resid_post"], no_mid["blocks.1.hook_mlp_out"])
    # zero MLP hidden state: down_proj has no bias, so the MLP adds nothing
    assert no_mlp["blocks.0.hook_mlp_out"].abs().max().item() == 0.0
    with pytest.raises(UserInputError, match="shape"):
        with subject.hooks([("blocks.0.hook_resid_mid", lambda act, hook: act[:, :1])]):
            subject.forward(TEXTS[0])
    assert len(NORM_CALLBACKS) == 0 and len(ATTN_CALLBACKS) == 0


def test_gradient_reaches_a_replaced_scale_and_residual_stream(subject):
    captured = {}

    def leaf(key):
        def hook(activation, info):
            captured[key] = activation.detach().clone().requires_grad_(True)
            return captured[key]
        return hook

    with torch.enable_grad(), subject.hooks([("blocks.0.hook_resid_mid", leaf("mid")),
                                             ("blocks.1.ln1.hook_scale", leaf("scale"))]):
        total = subject.forward(TEXTS[0]).last_hidden_state.pow(2).sum()
        gradients = torch.autograd.grad(total, [captured["mid"], captured["scale"]])
    assert all(g.shape == captured[k].shape and g.abs().max().item() > 0 for g, k in zip(gradients, ("mid", "scale")))


def test_a_decoder_tokenizer_without_pad_token_pads_right_with_eos(subject):
    """Llama tokenizers pad on the left and have no pad token; the subject pads on the right with EOS, so the
    real tokens of a padded row are computed exactly as alone (positions are 0..pos-1 in every row)."""
    tokenizer = copy.deepcopy(subject.tokenizer)
    tokenizer.padding_side = "left"
    tokenizer.eos_token = "[SEP]"
    tokenizer.pad_token = None
    decoder = Subject(Encoder(name="no-pad", kind="hf", model=subject.encoder, tokenizer=tokenizer, path=Path(".")))
    assert decoder.tokenizer.pad_token == "[SEP]"
    batch = decoder.tokenize(TEXTS)
    n_real = int(batch["attention_mask"][1].sum())
    assert batch["attention_mask"][1, :n_real].all() and not batch["attention_mask"][1, n_real:].any()
    assert (batch["input_ids"][1, n_real:] == tokenizer.convert_tokens_to_ids("[SEP]")).all()
    with torch.no_grad():
        padded, alone = decoder.forward(batch).last_hidden_state, decoder.forward(TEXTS[1]).last_hidden_state
    assert _max_diff(padded[1, :n_real], alone[0]) <= 1e-5


def test_integrated_gradients_complete_and_causal(tmp_path_factory, tiny_tokenizer):
    """Integrated gradients (Sundararajan et al., 2017) through workbench.attribution: the scores sum to
    target(x) - target(baseline) within the convergence delta, and a causal model gives tokens after the target
    position exactly 0 (the default target, the state at position 0, therefore gets 0 everywhere)."""
    subject = load_subject(_save("llama", tmp_path_factory, tiny_tokenizer))
    text, position = TEXTS[0], 3
    params = AttributionParams(n_steps=16, tolerance=1e-3, max_steps=256)
    batch = subject.tokenize(text)
    ids, special = batch["input_ids"], batch["special_tokens_mask"].bool()
    baseline = torch.where(special, ids, torch.full_like(ids, subject.tokenizer.pad_token_id))

    def norm_at(input_ids: torch.Tensor) -> float:
        with torch.no_grad():
            return float(subject.forward({"input_ids": input_ids}).last_hidden_state[0, position].norm())

    result = attribute(subject, [text], "integrated_gradients", target=HiddenNormTarget(position=position),
                       params=params).frame
    gap = norm_at(ids) - norm_at(baseline)
    assert abs(gap) > 1e-2
    assert abs(result["score"].sum() - gap) <= abs(result["delta"].iloc[0]) + 1e-5
    assert abs(result["delta"].iloc[0]) < 1e-3
    assert (result["score"].to_numpy()[position + 1:] == 0).all()
    default = attribute(subject, [text], "integrated_gradients", params=params).frame
    assert default["target"].iloc[0] == "norm@0" and (default["score"] == 0).all()


def test_a_head_dim_apart_from_d_model_over_n_heads(tmp_path_factory, tiny_tokenizer):
    """Llama-family configs may set head_dim apart from hidden_size / n_heads (Mistral-Nemo: 128, not 160): the
    subject's d_head and every per-head view follow the config, and head ablation stays exact."""
    config = _config("llama", len(tiny_tokenizer))
    config.head_dim = 16  # 4 heads x 16 = 64 != hidden 32
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("head_dim") / "model"
    AutoModel.from_config(copy.deepcopy(config)).eval().save_pretrained(path)
    save_tokenizer(tiny_tokenizer, path)
    subject = load_subject(path)
    assert (subject.d_model, subject.n_heads, subject.d_head) == (32, N_HEADS, 16)
    with torch.no_grad():
        plain = subject.forward(TEXTS).last_hidden_state
        cache = subject.run_with_cache(TEXTS)
        with subject.ablate_heads({1: [3]}):
            ablated = subject.run_with_cache(TEXTS, names=["blocks.1.attn.hook_z"])
    assert _max_diff(cache.output.last_hidden_state, plain) <= 1e-5
    n_pos = plain.shape[1]
    assert cache["blocks.0.attn.hook_q"].shape == (2, n_pos, N_HEADS, 16)
    assert cache["blocks.0.attn.hook_rot_k"].shape == (2, n_pos, N_KV_HEADS, 16)
    assert cache["blocks.1.attn.hook_z"].shape == (2, n_pos, N_HEADS, 16)
    assert ablated["blocks.1.attn.hook_z"][:, :, 3].abs().max().item() == 0.0
    assert torch.equal(ablated["blocks.1.attn.hook_z"][:, :, :3], cache["blocks.1.attn.hook_z"][:, :, :3])


def test_position_patching_is_causal(subject):
    """workbench.patching on a decoder: restoring one position's residual stream can move a metric read at
    position m only from positions <= m (exactly 0 after it), and at block 0 only where the two texts' tokens
    differ (identical tokens have identical block-0 inputs)."""
    from workbench.patching import exact_patching

    clean, corrupted = subject.as_inputs(CLEAN), subject.as_inputs(CORRUPTED)
    differ = (clean["input_ids"][0] != corrupted["input_ids"][0]).nonzero().flatten().tolist()
    read = differ[0] + 2  # a position after the first difference, before the end

    def metric(output):
        return output.last_hidden_state[0, read].norm()

    frame = exact_patching(subject, clean, corrupted, metric, component="positions")
    effects = frame.pivot(index="layer", columns="position", values="effect").to_numpy()  # [layer, pos]
    assert (effects[:, read + 1:] == 0).all()
    assert all(effects[0, p] == 0 for p in range(read + 1) if p not in differ)
    assert abs(effects[0, differ[0]]) > 1e-4 and abs(effects[1, read]) > 1e-4


@pytest.mark.parametrize("family_name, implementation", [("llama", "eager"), ("mistral", "eager"),
                                                          ("qwen2", "eager"), ("llama", "sdpa")])
def test_pruned_last_block_is_exact(family_name, implementation, tiny_tokenizer):
    """workbench.pruned_forward: the last block computing only the target's rows gives the full pass's final
    states at those rows and the same gradient with respect to the token embeddings (the additive eager mask,
    sliding windows included, and sdpa's boolean one), to float32 rounding. (float32: the family's RMSNorm and
    softmax compute in float32 whatever the model's dtype, and a float64 eager model's fully masked padded rows
    overflow to -inf there and give NaN, pruned or not.)"""
    from workbench.pruned_forward import can_prune, pruned_forward

    torch.manual_seed(0)
    config = copy.deepcopy(_config(family_name, len(tiny_tokenizer)))
    model = AutoModel.from_config(config, attn_implementation=implementation).eval()
    subject = Subject(Encoder(name=family_name, kind="hf", model=model, tokenizer=tiny_tokenizer, path=Path(".")))
    inputs = subject.as_inputs(subject.tokenize(TEXTS))
    read = torch.tensor([[5, 2], [int(inputs["attention_mask"][1].sum()) - 1, 0]])  # [batch, k], any order
    assert can_prune(subject)
    direction = torch.randn(2, 2, 32)  # [batch, k, d_model]

    def values_and_gradient(rows):
        embeds = subject.input_embeddings(inputs["input_ids"]).detach().requires_grad_(True)
        handle = subject.input_embeddings.register_forward_hook(lambda module, args, output: embeds)
        try:
            with pruned_forward(subject) as slot:
                slot.rows = rows
                hidden = subject.encoder(**inputs).last_hidden_state  # [batch, pos, d_model]
        finally:
            handle.remove()
        values = hidden.gather(1, read[..., None].expand(-1, -1, hidden.shape[-1]))
        # a fixed random direction (a sum of squares would be ~constant after the final RMSNorm: no gradient)
        (gradient,) = torch.autograd.grad((values * direction).sum(), embeds)
        return values.detach(), gradient

    full_values, full_gradient = values_and_gradient(None)
    values, gradient = values_and_gradient(read)
    torch.testing.assert_close(values, full_values, atol=1e-5, rtol=0)
    assert _max_diff(gradient, full_gradient) <= 1e-5 * full_gradient.abs().max().item()
    assert all("forward" not in vars(block) for block in subject.adapter.blocks())  # the class's forward is back
    with subject.hooks([("blocks.1.attn.hook_pattern", lambda act, hook: None)]):
        assert not can_prune(subject)  # a hook inside the last block would be skipped
