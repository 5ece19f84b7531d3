"""workbench.models.modernbert: a tiny random ModernBERT (pre-norm encoder, rotary embeddings, global and
sliding-window local layers, GeGLU MLP) saved to disk, loaded through load_subject, with every hook name checked
against the model's own outputs, known answers and the residual arithmetic.

The tests speak hook names only: ModernBERT's module paths live in the adapter (the one exception is the manual
head ablation, which edits a weight of a separate copy by its state-dict name, to be independent of the hooks)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, ModernBertConfig

from atinuke.encoders import Encoder, load_encoder
from atinuke.errors import UserInputError
from atinuke.tokenizer import save_tokenizer
from workbench.models.bridges import ATTN_CALLBACKS
from workbench.models.modernbert import ModernBertAdapter
from workbench.pruned_forward import can_prune, pruned_forward
from workbench.subject import Subject, load_subject

TEXTS = ["The market fell sharply on Monday.", "Shares rose."]  # different lengths: the second is padded
CLEAN, CORRUPTED = "The market fell sharply on Monday.", "The market rose sharply on Friday."
N_LAYERS, N_HEADS, D_HEAD, D_MODEL, D_FF = 3, 4, 8, 32, 48
WINDOW = 2  # local_attention=4: a local layer's query sees keys with |q - k| <= 2 (the texts are 11 tokens long)
LOCAL, GLOBAL = [1], [0, 2]  # global_attn_every_n_layers=2
THETA = {"local": 10000.0, "global": 160000.0}  # ModernBERT's default local and global rotary bases

# The golden per-block list, written out (not derived from the code under test).
PER_BLOCK = ["hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q",
             "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
             "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post",
             "hook_mlp_out", "hook_resid_post"]
GOLDEN = (["embed.hook_embed"] + [f"blocks.{i}.{n}" for i in range(N_LAYERS) for n in PER_BLOCK]
          + ["ln_final.hook_normalized"])


def _config(vocab_size: int, n_layers: int = N_LAYERS) -> ModernBertConfig:
    return ModernBertConfig(vocab_size=vocab_size, hidden_size=D_MODEL, intermediate_size=D_FF,
                            num_hidden_layers=n_layers, num_attention_heads=N_HEADS, global_attn_every_n_layers=2,
                            local_attention=2 * WINDOW, max_position_embeddings=128, pad_token_id=0, bos_token_id=2,
                            eos_token_id=3, cls_token_id=2, sep_token_id=3, torch_dtype="float32")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A 32-wide model's matrix products are far faster on one thread than split across the shared CPUs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("modernbert") / "model"
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


def _allowed(mask: torch.Tensor, layer: int) -> torch.Tensor:
    """Where a query may attend [batch, 1, q, k]: real keys, and on a local layer only within the window."""
    n_pos = mask.shape[1]
    allowed = mask.bool()[:, None, None, :].expand(-1, 1, n_pos, -1)
    if layer in LOCAL:
        distance = (torch.arange(n_pos)[:, None] - torch.arange(n_pos)[None, :]).abs()  # [q, k]
        allowed = allowed & (distance <= WINDOW)
    return allowed


def _rotate(x: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE (Su et al., 2021) written out for x [batch, pos, n_heads, d_head] at positions 0..pos-1, halves paired
    as in GPT-NeoX/ModernBERT (dimension j with j + d_head/2)."""
    half = D_HEAD // 2
    angle = torch.arange(x.shape[1], dtype=torch.float64)[:, None] / theta ** (torch.arange(half) * 2 / D_HEAD)
    cos, sin = angle.cos()[None, :, None, :], angle.sin()[None, :, None, :]  # [1, pos, 1, half]
    x1, x2 = x[..., :half].double(), x[..., half:].double()
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).float()


def test_golden_hook_names_and_adapter(subject):
    assert subject.hook_names == GOLDEN
    assert subject.adapter.hook_names() == GOLDEN
    assert "embed.hook_pos_embed" not in subject.hook_names  # rotary only: no position vector in the residual
    assert isinstance(subject.adapter, ModernBertAdapter)
    assert subject.kind == "hf" and subject.encoder.config.model_type == "modernbert"
    assert subject.encoder.config._attn_implementation == "eager"  # the padded path, hooked exactly
    assert subject.encoder.config.layer_types == ["full_attention", "sliding_attention", "full_attention"]
    assert (subject.n_layers, subject.n_heads, subject.d_head, subject.d_model) == (N_LAYERS, N_HEADS, D_HEAD, D_MODEL)
    assert subject.adapter.model_inputs == ("input_ids", "attention_mask")
    batch = subject.tokenize(TEXTS)
    assert "token_type_ids" not in subject.as_inputs(batch)
    assert batch["input_ids"][0, 0].item() == subject.tokenizer.cls_token_id
    assert len(subject.adapter.blocks()) == N_LAYERS
    assert subject.input_embeddings in list(subject.adapter.embedding_module().children())
    assert subject.adapter.prune_refusal(subject.adapter.blocks()[-1]) is None  # eager: row pruning written
    for wrong, close in [("embed.hook_pos_embed", "embed.hook_embed"), ("blocks.1.attn.hook_rot_v", "hook_rot_")]:
        with pytest.raises(UserInputError, match=f"unknown hook name '{wrong}'.*{close}") as error:
            subject.run_with_cache(TEXTS, names=[wrong])
        assert "\n" not in str(error.value)
    with pytest.raises(UserInputError, match="unknown hook name 'blocks.3.hook_resid_pre'"):
        with subject.hooks([("blocks.3.hook_resid_pre", lambda act, hook: None)]):
            pass


def test_cached_forward_equals_plain_forward_with_padding(subject):
    batch = subject.tokenize(TEXTS)
    mask = batch["attention_mask"]
    assert (mask == 0).any() and mask.shape[1] > 2 * WINDOW + 1  # padded, and longer than the local window
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
    for name, shape in [("blocks.0.attn.hook_q", (batch_size, n_pos, N_HEADS, D_HEAD)),
                        ("blocks.1.attn.hook_v", (batch_size, n_pos, N_HEADS, D_HEAD)),
                        ("blocks.1.attn.hook_rot_q", (batch_size, n_pos, N_HEADS, D_HEAD)),
                        ("blocks.2.attn.hook_rot_k", (batch_size, n_pos, N_HEADS, D_HEAD)),
                        ("blocks.2.attn.hook_z", (batch_size, n_pos, N_HEADS, D_HEAD)),
                        ("blocks.1.attn.hook_attn_scores", (batch_size, N_HEADS, n_pos, n_pos)),
                        ("blocks.1.attn.hook_pattern", (batch_size, N_HEADS, n_pos, n_pos)),
                        ("blocks.0.mlp.hook_pre", (batch_size, n_pos, D_FF)),
                        ("blocks.0.mlp.hook_pre_linear", (batch_size, n_pos, D_FF)),
                        ("blocks.0.mlp.hook_post", (batch_size, n_pos, D_FF)),
                        ("blocks.0.ln1.hook_normalized", (batch_size, n_pos, D_MODEL)),
                        ("embed.hook_embed", (batch_size, n_pos, D_MODEL))]:
        assert cache[name].shape == shape, name
    pattern = cache.stack("attn.hook_pattern")  # [n_layers, batch, n_heads, q, k]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    assert pattern[:, 1, :, :n_real, mask[1] == 0].abs().max().item() == 0.0  # padding keys get no attention
    # a real query attends to exactly its allowed keys (a padding query whose window holds only padding keys
    # sees every score at dtype min, hence a uniform row: what the model computes there, and never read)
    real_query = mask.bool()[:, None, :, None]  # [batch, 1, q, 1]
    for layer in range(N_LAYERS):
        allowed = _allowed(mask, layer).expand(-1, N_HEADS, -1, -1)  # [batch, n_heads, q, k]
        assert pattern[layer][~allowed & real_query].abs().max().item() == 0.0
        assert pattern[layer][allowed & real_query].min().item() > 0.0
    # the local layer is banded; the global ones reach past the window
    assert (~_allowed(mask, LOCAL[0])[0, 0]).sum() > 0
    assert all(_allowed(mask, g)[0].all() for g in GLOBAL)
    assert not any(t.requires_grad for t in cache.values())


def test_known_answers(subject, model_dir):
    batch = subject.tokenize(TEXTS)
    inputs = subject.as_inputs(batch)
    reference = load_encoder(model_dir).model  # a separate plain eager model
    with torch.no_grad():
        own = reference(**inputs, output_attentions=True, output_hidden_states=True)
        cache = subject.run_with_cache(batch)
    assert len(own.attentions) == N_LAYERS and len(own.hidden_states) == N_LAYERS + 1
    assert _max_diff(cache["ln_final.hook_normalized"], own.last_hidden_state) <= 1e-6
    assert _max_diff(cache["blocks.0.hook_resid_pre"], own.hidden_states[0]) <= 1e-6
    # hidden_states[i + 1] is block i's output, except the last, which ModernBERT replaces by final_norm's output
    for i in range(N_LAYERS - 1):
        assert _max_diff(cache[f"blocks.{i}.hook_resid_post"], own.hidden_states[i + 1]) <= 1e-6
    assert _max_diff(own.hidden_states[-1], own.last_hidden_state) == 0
    last = cache[f"blocks.{N_LAYERS - 1}.hook_resid_post"]
    assert _max_diff(subject.final_norm(last), own.last_hidden_state) <= 1e-6
    # the norms have unit weight and no bias at initialisation: each is a plain layer norm
    assert _max_diff(F.layer_norm(last, (D_MODEL,), eps=1e-5), own.last_hidden_state) <= 1e-5
    assert _max_diff(F.layer_norm(cache["embed.hook_embed"], (D_MODEL,), eps=1e-5), own.hidden_states[0]) <= 1e-5
    mask = inputs["attention_mask"]
    for i in range(N_LAYERS):
        b = f"blocks.{i}."
        assert _max_diff(cache[b + "attn.hook_pattern"], own.attentions[i]) <= 1e-6
        assert _max_diff(cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"], cache[b + "hook_resid_mid"]) <= 1e-6
        assert _max_diff(cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"], cache[b + "hook_resid_post"]) <= 1e-6
        if i + 1 < N_LAYERS:
            assert torch.equal(cache[b + "hook_resid_post"], cache[f"blocks.{i + 1}.hook_resid_pre"])
        # layer 0's attention norm is the identity (its input is already normalised); the others are layer norms
        expected = (cache[b + "hook_resid_pre"] if i == 0
                    else F.layer_norm(cache[b + "hook_resid_pre"], (D_MODEL,), eps=1e-5))
        assert _max_diff(cache[b + "ln1.hook_normalized"], expected) <= 1e-5
        assert _max_diff(cache[b + "ln2.hook_normalized"],
                         F.layer_norm(cache[b + "hook_resid_mid"], (D_MODEL,), eps=1e-5)) <= 1e-5
        # rotary embedding with the layer type's base: local layers 10 000, global ones 160 000
        theta = THETA["local" if i in LOCAL else "global"]
        other = THETA["global" if i in LOCAL else "local"]
        for x in "qk":
            assert _max_diff(_rotate(cache[b + f"attn.hook_{x}"], theta), cache[b + f"attn.hook_rot_{x}"]) <= 1e-5
            assert _max_diff(_rotate(cache[b + f"attn.hook_{x}"], other), cache[b + f"attn.hook_rot_{x}"]) > 1e-3
        # scores = rot_q rot_k^T / sqrt(d_head) where attending is allowed, dtype min elsewhere; softmax -> pattern
        scores = cache[b + "attn.hook_attn_scores"]
        where = _allowed(mask, i).expand_as(scores)
        rot_q, rot_k = (cache[b + f"attn.hook_rot_{x}"].transpose(1, 2) for x in "qk")  # [batch, heads, pos, d]
        assert _max_diff((rot_q @ rot_k.transpose(-1, -2) / D_HEAD ** 0.5)[where], scores[where]) <= 1e-5
        assert (scores[~where] == torch.finfo(scores.dtype).min).all()
        assert _max_diff(scores.softmax(-1), cache[b + "attn.hook_pattern"]) <= 1e-6
        v = cache[b + "attn.hook_v"].transpose(1, 2)  # [batch, heads, pos, d_head]
        assert _max_diff((cache[b + "attn.hook_pattern"] @ v).transpose(1, 2), cache[b + "attn.hook_z"]) <= 1e-5
        # GeGLU: post = gelu(pre) * pre_linear
        post = F.gelu(cache[b + "mlp.hook_pre"]) * cache[b + "mlp.hook_pre_linear"]
        assert _max_diff(post, cache[b + "mlp.hook_post"]) <= 1e-6
    # final_norm is final_norm's operation and does not fire the bridge on it
    fired = []
    with subject.hooks([("ln_final.hook_normalized", lambda act, hook: fired.append(hook.name))]):
        subject.final_norm(last)
    assert fired == []


def test_hooks_are_removed_when_the_body_raises(subject):
    subject.forward(TEXTS)
    handles = _handles(subject.encoder)
    attn_impl = subject.encoder.config._attn_implementation
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with subject.hooks([(name, lambda act, hook: seen.append(hook.name)) for name in subject.hook_names]):
            assert all(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())
            assert subject.encoder.config._attn_implementation != attn_impl
            subject.forward(TEXTS)
            raise RuntimeError("boom")
    assert seen == GOLDEN  # every bridge fired, once, in forward order
    after = _handles(subject.encoder)
    assert after == handles
    assert all(not hooks and not pre for hooks, pre in after.values())
    assert subject.encoder.config._attn_implementation == attn_impl
    assert len(ATTN_CALLBACKS) == 0
    assert not any(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())


@pytest.mark.parametrize("layer, head", [(1, 2), (2, 0)])  # a local and a global layer
def test_zeroing_one_heads_z_equals_a_manual_ablation(subject, model_dir, layer, head):
    """Zeroing head h's z equals zeroing the columns of the output projection that read it, done by hand on a
    separate copy of the weights (no hooks involved)."""
    batch = subject.as_inputs(subject.tokenize(TEXTS))

    def zero_head(z, hook):  # [batch, pos, n_heads, d_head]
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    manual = load_encoder(model_dir).model
    with torch.no_grad():
        manual.get_parameter(f"layers.{layer}.attn.Wo.weight")[:, head * D_HEAD:(head + 1) * D_HEAD] = 0.0
        by_hand = manual(**batch).last_hidden_state
        plain = subject.forward(batch).last_hidden_state
        with subject.hooks([(f"blocks.{layer}.attn.hook_z", zero_head)]):
            replaced = subject.run_with_cache(batch, names=[f"blocks.{layer}.hook_attn_out"])
        with subject.ablate_heads({layer: [head]}):
            ablated = subject.run_with_cache(batch, names=[f"blocks.{layer}.attn.hook_z"])
    assert _max_diff(replaced.output.last_hidden_state, by_hand) <= 1e-6
    assert torch.equal(replaced.output.last_hidden_state, ablated.output.last_hidden_state)
    assert ablated[f"blocks.{layer}.attn.hook_z"][:, :, head].abs().max().item() == 0.0
    assert _max_diff(by_hand, plain) > 1e-4


@pytest.mark.parametrize("name", ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre",
                                  "blocks.1.hook_resid_mid", "blocks.2.hook_resid_post"])
def test_patching_the_full_residual_stream_restores_the_clean_output(subject, name):
    assert subject.tokenize(CLEAN)["input_ids"].shape == subject.tokenize(CORRUPTED)["input_ids"].shape
    result = subject.patch(CLEAN, CORRUPTED, name)
    assert torch.equal(result.patched_output.last_hidden_state, result.clean_output.last_hidden_state)
    assert not torch.allclose(result.corrupted_output.last_hidden_state, result.clean_output.last_hidden_state)


def test_every_hook_can_replace_its_activation(subject):
    """At every name: returning the activation unchanged leaves the output bit for bit; returning a perturbed one
    changes the output, and a hook attached after it at the same name sees exactly that replacement."""
    batch = subject.as_inputs(subject.tokenize(TEXTS))
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
    for name in subject.hook_names:
        generator = torch.Generator().manual_seed(0)
        given, seen = {}, {}

        def perturb(act, hook):
            scale = act[act > torch.finfo(act.dtype).min].abs().mean()  # masked scores are dtype min
            given["act"] = act + torch.randn(act.shape, generator=generator) * scale
            return given["act"]

        def watch(act, hook):
            seen["act"] = act.clone()

        with torch.no_grad():
            with subject.hooks([(name, lambda act, hook: act.clone())]):
                unchanged = subject.forward(batch).last_hidden_state
            with subject.hooks([(name, perturb), (name, watch)]):
                replaced = subject.forward(batch).last_hidden_state
        assert torch.equal(unchanged, plain), name
        assert _max_diff(replaced, plain) > 1e-6, name  # q or k moves a near-uniform random pattern only a little
        assert torch.equal(seen["act"], given["act"]), name


def test_hooks_replace_activations_with_known_answers(subject):
    def zero(activation, hook):
        return torch.zeros_like(activation)

    text, b = TEXTS[0], "blocks.1."
    # zero pattern -> zero z; zero gate or zero activation input -> zero MLP hidden -> zero mlp_out (no biases)
    for name, zeroed in [("attn.hook_pattern", "attn.hook_z"), ("mlp.hook_pre_linear", "hook_mlp_out"),
                         ("mlp.hook_pre", "hook_mlp_out"), ("mlp.hook_post", "hook_mlp_out")]:
        with subject.hooks([(b + name, zero)]):
            cache = subject.run_with_cache(text, names=[b + zeroed, b + "mlp.hook_post"])
        assert cache[b + zeroed].abs().max().item() == 0.0, name
    # q and k given back unrotated: the scores are the plain q k^T / sqrt(d_head) on the allowed keys
    plain = subject.run_with_cache(text, names=[b + "attn.hook_q", b + "attn.hook_k"])
    names = [b + "attn.hook_attn_scores", b + "attn.hook_rot_q", b + "attn.hook_rot_k"]
    with subject.hooks([(b + "attn.hook_rot_q", lambda act, hook: plain[b + "attn.hook_q"]),
                        (b + "attn.hook_rot_k", lambda act, hook: plain[b + "attn.hook_k"])]):
        unrotated = subject.run_with_cache(text, names=names)
    q, k = (plain[b + f"attn.hook_{x}"].transpose(1, 2) for x in "qk")  # [batch, heads, pos, d_head]
    scores = unrotated[b + "attn.hook_attn_scores"]
    where = _allowed(torch.ones(scores.shape[:1] + scores.shape[-1:]), 1).expand_as(scores)
    assert _max_diff((q @ k.transpose(-1, -2) / D_HEAD ** 0.5)[where], scores[where]) <= 1e-5
    assert torch.equal(unrotated[b + "attn.hook_rot_q"], plain[b + "attn.hook_q"])
    # zero k: every allowed score is 0, so the pattern is uniform over the window
    with subject.hooks([(b + "attn.hook_k", zero)]):
        flat = subject.run_with_cache(text, names=[b + "attn.hook_attn_scores", b + "attn.hook_rot_k"])
    assert flat[b + "attn.hook_rot_k"].abs().max().item() == 0.0
    assert flat[b + "attn.hook_attn_scores"][where].abs().max().item() == 0.0
    # zero resid_mid: the block's output is mlp_out alone (the residual connection reads the replacement too)
    names = [b + "hook_resid_mid", b + "hook_mlp_out", b + "hook_resid_post"]
    with subject.hooks([(b + "hook_resid_mid", zero)]):
        zeroed = subject.run_with_cache(text, names=names)
    assert zeroed[b + "hook_resid_mid"].abs().max().item() == 0.0
    assert torch.equal(zeroed[b + "hook_resid_post"], zeroed[b + "hook_mlp_out"])
    # layer 0's identity attention norm: replacing its output changes attention's input, not the residual
    with subject.hooks([("blocks.0.ln1.hook_normalized", zero)]):
        cut = subject.run_with_cache(text, names=["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out",
                                                  "blocks.0.hook_resid_mid"])
    assert cut["blocks.0.hook_resid_pre"].abs().max().item() > 0
    assert torch.equal(cut["blocks.0.hook_resid_pre"] + cut["blocks.0.hook_attn_out"], cut["blocks.0.hook_resid_mid"])
    with pytest.raises(UserInputError, match="shape"):
        with subject.hooks([(b + "hook_resid_mid", lambda act, hook: act[:, :1])]):
            subject.forward(text)


def test_gradient_reaches_a_replaced_residual_stream(subject):
    captured = {}

    def leaf(activation, hook):
        captured["x"] = activation.detach().clone().requires_grad_(True)
        return captured["x"]

    with torch.enable_grad(), subject.hooks([("blocks.1.hook_resid_mid", leaf)]):
        total = subject.forward(TEXTS[0]).last_hidden_state.pow(2).sum()
        (gradient,) = torch.autograd.grad(total, captured["x"])
    assert gradient.shape == captured["x"].shape and gradient.abs().max().item() > 0


def test_an_sdpa_model_is_hooked_through_the_eager_path(subject, model_dir):
    """Loaded with SDPA (faster, no attention weights), the pattern hooks switch the model to the hooked eager
    implementation while attached, and back after: same numbers as the eager subject."""
    sdpa = Subject(load_encoder(model_dir, attn_implementation="sdpa"))
    assert sdpa.encoder.config._attn_implementation == "sdpa" and sdpa.hook_names == GOLDEN
    with torch.no_grad():
        fast = sdpa.forward(TEXTS).last_hidden_state
        cache = sdpa.run_with_cache(TEXTS, names=["blocks.1.attn.hook_pattern"])
        eager = subject.run_with_cache(TEXTS, names=["blocks.1.attn.hook_pattern"])
    assert sdpa.encoder.config._attn_implementation == "sdpa"
    # at the real tokens; a padding query whose window holds only padding keys (a fully masked row) is uniform
    # under eager attention and not under SDPA, so padding positions may differ (nothing reads them)
    real = cache.attention_mask.bool()  # [batch, pos]
    assert _max_diff(cache.output.last_hidden_state[real], fast[real]) <= 1e-5
    assert torch.equal(cache["blocks.1.attn.hook_pattern"], eager["blocks.1.attn.hook_pattern"])


# 11 and 10 tokens: one padding row, within the window of a real token. (A padding query whose window holds only
# padding keys is fully masked, and in float64 ModernBERT's own eager pass gives it NaNs, which the next global layer
# spreads through the padding keys.)
PRUNE_TEXTS = ["The market fell sharply on Monday.", "Shares rose sharply on Monday."]


def _pruned_values_and_gradient(subject: Subject, rows, read=((0, 3), (2, 4))):
    """Last hidden state at fixed positions and d(sum of squares)/d(token embeddings), with the last block
    pruned to ``rows`` (None: the full forward pass)."""
    inputs = subject.as_inputs(subject.tokenize(PRUNE_TEXTS))
    assert (inputs["attention_mask"] == 0).any()
    embeds = subject.input_embeddings(inputs["input_ids"]).detach().requires_grad_(True)
    handle = subject.input_embeddings.register_forward_hook(lambda module, args, output: embeds)
    try:
        with pruned_forward(subject) as slot:
            slot.rows = rows
            hidden = subject.encoder(**inputs).last_hidden_state  # [batch, pos, d_model]
    finally:
        handle.remove()
    index = torch.tensor(read)
    values = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
    (gradient,) = torch.autograd.grad(values.pow(2).sum(), embeds)
    return values.detach(), gradient


@pytest.mark.parametrize("n_layers, implementation", [(3, "eager"), (2, "eager"), (2, "sdpa")],
                         ids=["global-last", "local-last", "local-last-sdpa"])
def test_pruned_last_block_is_exact(subject, n_layers, implementation):
    """The last block at the target's rows only (queries, MLP, norms) is the same function, in float64, whether
    the last layer attends globally or through its window."""
    torch.manual_seed(0)
    model = AutoModel.from_config(_config(len(subject.tokenizer), n_layers), attn_implementation=implementation)
    pruned = Subject(Encoder(f"modernbert{n_layers}", "hf", model.double().eval(), subject.tokenizer, Path(".")))
    assert pruned.encoder.config.layer_types[-1] == ("full_attention" if n_layers == 3 else "sliding_attention")
    assert can_prune(pruned)
    full_values, full_gradient = _pruned_values_and_gradient(pruned, None)
    values, gradient = _pruned_values_and_gradient(pruned, torch.tensor([[3, 0], [4, 2]]))  # any order
    torch.testing.assert_close(values, full_values, atol=1e-12, rtol=0)
    torch.testing.assert_close(gradient, full_gradient, atol=1e-11, rtol=0)
    assert "forward" not in vars(pruned.adapter.blocks()[-1])  # the class's forward is back
    with pruned.hooks([(f"blocks.{n_layers - 1}.attn.hook_rot_q", lambda act, hook: None)]):
        assert not can_prune(pruned)  # a hook inside the last block would be skipped
    pruned.encoder.config._attn_implementation = "flex_attention"  # its block mask has no rows to gather
    assert "eager and SDPA" in str(pruned.adapter.prune_refusal(pruned.adapter.blocks()[-1]))


def test_attribution_on_a_task_model_is_the_same_with_and_without_pruning(model_dir, monkeypatch):
    """Integrated gradients through a classifier on the ModernBERT encoder ([CLS] pooling): the engine prunes the
    last block to the [CLS] row, and the scores equal the full pass's."""
    import numpy as np

    from atinuke.tasks import get_task
    from atinuke.tasks.base import ClassificationExample
    from atinuke.tasks.heads import build_task_model
    from workbench.attribution import AttributionParams, attribute
    from workbench.attribution import engine as attribution_engine

    torch.manual_seed(0)
    task = load_subject(build_task_model(load_encoder(model_dir), get_task("sst2"), dropout=0.0).eval())
    assert isinstance(task.adapter, ModernBertAdapter)
    entered = []

    def spy(subject):
        entered.append(subject)
        return pruned_forward(subject)

    monkeypatch.setattr(attribution_engine, "pruned_forward", spy)
    examples = [ClassificationExample("a", "the market fell last week .", None, "0"),
                ClassificationExample("b", "prices rose .", None, "1")]
    on = attribute(task, examples, "integrated_gradients", "class=1", AttributionParams(n_steps=8))
    assert entered
    off = attribute(task, examples, "integrated_gradients", "class=1",
                    AttributionParams(n_steps=8, final_block_rows=False))
    assert on.frame["target"].tolist() == off.frame["target"].tolist()
    np.testing.assert_allclose(on.frame["score"], off.frame["score"], atol=1e-5, rtol=1e-5)
    assert on.frame["score"].abs().max() > 0


def test_head_output_weights_split_attn_out_into_heads(subject):
    """Each head's slice of the output projection: the heads' writes z_h W[h] sum to hook_attn_out."""
    names = [f"blocks.{i}.{n}" for i in range(N_LAYERS) for n in ("attn.hook_z", "hook_attn_out")]
    with torch.no_grad():
        cache = subject.run_with_cache(TEXTS, names=names)
    for i in range(N_LAYERS):
        weights = subject.adapter.head_output_weights(i)
        assert weights is not None and weights.shape == (N_HEADS, D_HEAD, D_MODEL)
        writes = torch.einsum("bphd,hdm->bphm", cache[f"blocks.{i}.attn.hook_z"], weights)  # [batch, pos, heads, d]
        assert _max_diff(writes.sum(2), cache[f"blocks.{i}.hook_attn_out"]) <= 1e-6
        assert writes.abs().amax((0, 1, 3)).min().item() > 0  # every head writes something


def test_a_masked_lm_checkpoint_loads_as_the_encoder_and_a_classifier_is_refused(subject, tmp_path):
    """Real ModernBERT checkpoints are ModernBertForMaskedLM: their MLM head (head.*, decoder.*) is left unused and
    the encoder is the same function; a fine-tuned classifier's extra weights are still refused by name."""
    from transformers import ModernBertForMaskedLM, ModernBertForSequenceClassification

    torch.manual_seed(0)
    mlm = ModernBertForMaskedLM(_config(len(subject.tokenizer))).eval()
    mlm.save_pretrained(tmp_path / "mlm")
    save_tokenizer(subject.tokenizer, tmp_path / "mlm")
    loaded = load_subject(tmp_path / "mlm")
    assert isinstance(loaded.adapter, ModernBertAdapter) and loaded.hook_names == GOLDEN
    inputs = loaded.as_inputs(loaded.tokenize(TEXTS))
    real = inputs["attention_mask"].bool()  # the in-memory MLM runs SDPA: fully masked padding rows differ
    with torch.no_grad():
        assert _max_diff(loaded.forward(inputs).last_hidden_state[real], mlm.model(**inputs).last_hidden_state[real]) <= 1e-6
    from workbench.lm import language_model

    lm = language_model(loaded)  # its MLM head, around the subject's own modules, reads out as the checkpoint's
    assert lm is not None and not lm.causal and lm.model.model is loaded.encoder
    with torch.no_grad():
        assert _max_diff(lm.logits(inputs)[real], mlm(**inputs).logits[real]) <= 1e-5
        assert torch.equal(lm.readout(loaded.forward(inputs).last_hidden_state), lm.logits(inputs))
    ModernBertForSequenceClassification(_config(len(subject.tokenizer))).save_pretrained(tmp_path / "classifier")
    save_tokenizer(subject.tokenizer, tmp_path / "classifier")
    with pytest.raises(UserInputError, match="unexpected classifier"):
        load_subject(tmp_path / "classifier")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_the_hooked_attention_is_modernberts_eager_attention_op_for_op(subject, dtype):
    """Without callbacks the registered implementation returns exactly what ModernBERT's eager attention returns
    (bit for bit, including its float32 softmax for half precision and float64)."""
    from transformers.models.modernbert.modeling_modernbert import eager_attention_forward

    from workbench.models.modernbert import hooked_modernbert_attention

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, N_HEADS, 7, D_HEAD, generator=generator).to(dtype) for _ in range(3))
    mask = torch.zeros(2, 1, 7, 7, dtype=dtype)
    mask[1, :, :, 5:] = torch.finfo(dtype).min  # padding keys of the second row
    module = subject.adapter.self_attention(subject.adapter.blocks()[1])
    ours = hooked_modernbert_attention(module, q, k, v, mask, scaling=D_HEAD ** -0.5, sliding_window=3)
    theirs = eager_attention_forward(module, q, k, v, mask, scaling=D_HEAD ** -0.5, sliding_window=3)
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(ours, theirs))
