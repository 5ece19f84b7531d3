"""workbench.models.gpt_neox: tiny random GPT-NeoX models (pre-norm causal decoders with rotary embeddings, the
Pythia architecture) saved to disk, loaded through load_subject, with every hook name checked against the model's
own outputs, the residual arithmetic and an independent rotary computation; parallel and sequential residuals,
partial (rotary_pct 0.25) and full (1.0) rotary.

The tests speak hook names only (GPT-NeoX's module paths live in the adapter), except the head ablation, which
is computed independently by editing the weights of the attention's output projection."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, GPTNeoXConfig, GPTNeoXForCausalLM

from atinuke.encoders import Encoder, load_encoder
from atinuke.errors import UserInputError
from atinuke.tokenizer import save_tokenizer
from workbench.models.bridges import ATTN_CALLBACKS
from workbench.models.gpt_neox import GPTNeoXAdapter
from workbench.subject import Subject, load_subject

TEXTS = ["The market fell sharply on Monday.", "Shares rose."]  # different lengths: the second is padded
CLEAN, CORRUPTED = "The market fell sharply on Monday.", "The market rose sharply on Friday."
D_HEAD = 8

# The golden per-block lists, written out (not derived from the code under test). A parallel block has no
# resid_mid (attention and MLP both read resid_pre); no family list has embed.hook_pos_embed (rotary only).
PARALLEL_BLOCK = ["hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
                  "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z",
                  "hook_attn_out", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out",
                  "hook_resid_post"]
SEQUENTIAL_BLOCK = ["hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
                    "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z",
                    "hook_attn_out", "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post",
                    "hook_mlp_out", "hook_resid_post"]


def golden(parallel: bool) -> list[str]:
    block = PARALLEL_BLOCK if parallel else SEQUENTIAL_BLOCK
    return (["embed.hook_embed"] + [f"blocks.0.{n}" for n in block] + [f"blocks.1.{n}" for n in block]
            + ["ln_final.hook_normalized"])


VARIANTS = [(True, 0.25), (True, 1.0), (False, 0.25), (False, 1.0)]  # (use_parallel_residual, rotary_pct)


def _config(vocab_size: int, parallel: bool, rotary_pct: float) -> GPTNeoXConfig:
    return GPTNeoXConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=128, use_parallel_residual=parallel,
                         rotary_pct=rotary_pct, hidden_dropout=0.0, attention_dropout=0.0, pad_token_id=0,
                         bos_token_id=2, eos_token_id=3, dtype="float32")


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{'parallel' if v[0] else 'sequential'}-rot{v[1]}")
def model_dir(request, tmp_path_factory, tiny_tokenizer) -> Path:
    parallel, rotary_pct = request.param
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gpt_neox") / "model"
    config = _config(len(tiny_tokenizer), parallel, rotary_pct)
    AutoModel.from_config(copy.deepcopy(config), attn_implementation="eager").eval().save_pretrained(path)
    save_tokenizer(tiny_tokenizer, path)
    return path


@pytest.fixture(scope="module")
def subject(model_dir) -> Subject:
    return load_subject(model_dir)


def _parallel(subject: Subject) -> bool:
    return bool(subject.encoder.config.use_parallel_residual)


def _rotary_ndims(subject: Subject) -> int:
    return int(D_HEAD * subject.encoder.config.rope_parameters["partial_rotary_factor"])


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _handles(module: torch.nn.Module) -> dict[str, tuple]:
    return {n: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for n, m in module.named_modules()}


def test_golden_hook_names_adapter_and_unknown_names(subject):
    parallel = _parallel(subject)
    assert subject.hook_names == golden(parallel)
    assert isinstance(subject.adapter, GPTNeoXAdapter)
    assert subject.kind == "hf" and subject.encoder.config.model_type == "gpt_neox"
    assert subject.encoder.config._attn_implementation == "eager"
    assert (subject.n_layers, subject.n_heads, subject.d_head, subject.d_model, subject.max_len) == (2, 4, 8, 32, 128)
    assert subject.adapter.model_inputs == ("input_ids", "attention_mask")
    assert "token_type_ids" not in subject.as_inputs(TEXTS)
    assert len(subject.adapter.blocks()) == 2
    assert subject.adapter.embedding_module() is subject.input_embeddings
    assert subject.adapter.prune_refusal(subject.adapter.blocks()[-1]) is not None
    # no position embedding is faked, and a parallel block's resid_mid is refused by name
    absent = ["embed.hook_pos_embed"] + (["blocks.0.hook_resid_mid"] if parallel else [])
    for name in absent:
        with pytest.raises(UserInputError, match=f"unknown hook name '{name}'") as error:
            subject.run_with_cache(TEXTS, names=[name])
        assert "\n" not in str(error.value)
    with pytest.raises(UserInputError, match="close matches: blocks.0.attn.hook_rot_q"):
        subject.run_with_cache(TEXTS, names=["blocks.0.attn.hook_rotq"])


def test_a_head_class_is_refused(subject):
    head_model = GPTNeoXForCausalLM(copy.deepcopy(subject.encoder.config)).eval()
    encoder = Encoder(name="neox-lm", kind="hf", model=head_model, tokenizer=subject.tokenizer, path=Path("."))
    with pytest.raises(UserInputError, match="not a GPT-NeoX base model .*AutoModel"):
        Subject(encoder)


def test_cached_forward_equals_plain_forward_with_padding(subject):
    batch = subject.tokenize(TEXTS)
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # the second text is padded (on the right)
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        cache = subject.run_with_cache(batch)  # every name: attention runs the hooked implementation
        alone = subject.forward(TEXTS[1]).last_hidden_state
        alone_cache = subject.run_with_cache(TEXTS[1])
    assert list(cache) == golden(_parallel(subject))
    assert _max_diff(cache.output.last_hidden_state, plain) <= 1e-5
    assert _max_diff(cache["ln_final.hook_normalized"], plain) <= 1e-5
    # padding changes nothing at the real tokens of the shorter text, plain or cached
    n_real = int(mask[1].sum())
    assert alone.shape[1] == n_real
    assert _max_diff(plain[1, :n_real], alone[0]) <= 1e-5
    assert _max_diff(cache["ln_final.hook_normalized"][1, :n_real], alone[0]) <= 1e-5
    assert _max_diff(alone_cache.output.last_hidden_state, alone) <= 1e-5
    assert _max_diff(cache["blocks.1.attn.hook_rot_k"][1, :n_real], alone_cache["blocks.1.attn.hook_rot_k"][0]) <= 1e-5
    batch_size, n_pos = batch["input_ids"].shape
    for name, shape in [("blocks.0.attn.hook_q", (batch_size, n_pos, 4, 8)),
                        ("blocks.0.attn.hook_k", (batch_size, n_pos, 4, 8)),
                        ("blocks.0.attn.hook_v", (batch_size, n_pos, 4, 8)),
                        ("blocks.0.attn.hook_rot_q", (batch_size, n_pos, 4, 8)),
                        ("blocks.1.attn.hook_rot_k", (batch_size, n_pos, 4, 8)),
                        ("blocks.1.attn.hook_z", (batch_size, n_pos, 4, 8)),
                        ("blocks.0.attn.hook_pattern", (batch_size, 4, n_pos, n_pos)),
                        ("blocks.0.attn.hook_attn_scores", (batch_size, 4, n_pos, n_pos)),
                        ("blocks.0.mlp.hook_pre", (batch_size, n_pos, 128)),
                        ("blocks.0.mlp.hook_post", (batch_size, n_pos, 128)),
                        ("blocks.0.ln1.hook_normalized", (batch_size, n_pos, 32)),
                        ("embed.hook_embed", (batch_size, n_pos, 32))]:
        assert cache[name].shape == shape, name
    pattern = cache.stack("attn.hook_pattern")  # [n_layers, batch, n_heads, q, k]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    future = torch.ones(n_pos, n_pos, dtype=torch.bool).triu(1)  # [q, k]: keys after the query
    assert pattern[..., future].abs().max().item() == 0.0  # causal
    assert pattern[:, 1, :, :n_real, mask[1] == 0].abs().max().item() == 0.0  # padding keys get no attention
    # the residual stream starts from the token embeddings alone (no position embedding, no dropout)
    assert torch.equal(cache["embed.hook_embed"], cache["blocks.0.hook_resid_pre"])
    assert not any(t.requires_grad for t in cache.values())


def test_known_answers(subject, model_dir):
    parallel = _parallel(subject)
    batch = subject.tokenize(TEXTS)
    inputs = subject.as_inputs(batch)
    reference = load_encoder(model_dir).model  # a separate plain eager model
    with torch.no_grad():
        own = reference(**inputs, output_attentions=True, output_hidden_states=True)
        cache = subject.run_with_cache(batch)
    assert len(own.attentions) == 2 and len(own.hidden_states) == 3
    assert _max_diff(cache["ln_final.hook_normalized"], own.last_hidden_state) <= 1e-6
    assert _max_diff(cache["blocks.0.hook_resid_pre"], own.hidden_states[0]) <= 1e-6
    # hidden_states[i + 1] is block i's output, except the last, which GPT-NeoX replaces by the final norm's
    assert _max_diff(cache["blocks.0.hook_resid_post"], own.hidden_states[1]) <= 1e-6
    assert _max_diff(own.hidden_states[2], own.last_hidden_state) == 0
    assert _max_diff(subject.final_norm(cache["blocks.1.hook_resid_post"]), own.last_hidden_state) <= 1e-6
    real = inputs["attention_mask"].bool()  # [batch, pos]
    n_pos = real.shape[1]
    allowed = real[:, None, None, :] & torch.ones(n_pos, n_pos, dtype=torch.bool).tril()  # [batch, 1, q, k]
    for i in range(2):
        b = f"blocks.{i}."
        assert _max_diff(cache[b + "attn.hook_pattern"], own.attentions[i]) <= 1e-6
        pre, attn_out, mlp_out = cache[b + "hook_resid_pre"], cache[b + "hook_attn_out"], cache[b + "hook_mlp_out"]
        if parallel:  # out = x + attn(ln1(x)) + mlp(ln2(x)): both sublayers read resid_pre
            assert _max_diff(pre + attn_out + mlp_out, cache[b + "hook_resid_post"]) <= 1e-6
            ln2_source = pre
        else:
            assert _max_diff(pre + attn_out, cache[b + "hook_resid_mid"]) <= 1e-6
            assert _max_diff(cache[b + "hook_resid_mid"] + mlp_out, cache[b + "hook_resid_post"]) <= 1e-6
            ln2_source = cache[b + "hook_resid_mid"]
        # softmax(scores) = pattern; scores = rot_q rot_k^T / sqrt(d_head) where attending is allowed; z = pattern v
        scores = cache[b + "attn.hook_attn_scores"]
        assert _max_diff(scores.softmax(-1), cache[b + "attn.hook_pattern"]) <= 1e-6
        q, k, v = (cache[b + f"attn.hook_{x}"].transpose(1, 2) for x in ("rot_q", "rot_k", "v"))  # [b, h, pos, d]
        where = allowed.expand_as(scores)
        assert _max_diff((q @ k.transpose(-1, -2) / D_HEAD ** 0.5)[where], scores[where]) <= 1e-5
        assert (scores[~where] == torch.finfo(scores.dtype).min).all()
        assert _max_diff((cache[b + "attn.hook_pattern"] @ v).transpose(1, 2), cache[b + "attn.hook_z"]) <= 1e-5
        # the layer norms' outputs are normalised (their affine part is the identity at initialisation)
        for name, source in (("ln1.hook_normalized", pre), ("ln2.hook_normalized", ln2_source)):
            expected = torch.nn.functional.layer_norm(source, (32,), eps=1e-5)
            assert _max_diff(cache[b + name], expected) <= 1e-5
        # the MLP: post = gelu(pre), exactly what the next linear layer reads
        assert _max_diff(torch.nn.functional.gelu(cache[b + "mlp.hook_pre"]), cache[b + "mlp.hook_post"]) <= 1e-6
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"], atol=0, rtol=0)
    # final_norm is final_layer_norm's operation and does not fire the bridge on it
    fired = []
    with subject.hooks([("ln_final.hook_normalized", lambda act, hook: fired.append(hook.name))]):
        subject.final_norm(cache["blocks.1.hook_resid_post"])
    assert fired == []


def _rotate(x: torch.Tensor, rotary_ndims: int, theta: float = 10000.0) -> torch.Tensor:
    """RoPE (Su et al., 2021) written out: in each head, the pair (j, j + r/2) of the first r dimensions at
    position p turns by the angle p / theta^(2j / r); the other dimensions pass. x: [batch, pos, n_heads, d_head]."""
    half = rotary_ndims // 2
    out = x.double().clone()
    for p in range(x.shape[1]):
        for j in range(half):
            angle = p / theta ** (2 * j / rotary_ndims)
            a, b = x[:, p, :, j].double(), x[:, p, :, j + half].double()
            out[:, p, :, j] = a * math.cos(angle) - b * math.sin(angle)
            out[:, p, :, j + half] = b * math.cos(angle) + a * math.sin(angle)
    return out


def test_rotary_rotates_only_the_rotary_dimensions(subject):
    r = _rotary_ndims(subject)
    assert r == (2 if subject.encoder.config.rope_parameters["partial_rotary_factor"] == 0.25 else 8)
    with torch.no_grad():
        cache = subject.run_with_cache(TEXTS)
    for i in range(2):
        for x in ("q", "k"):
            plain, rotated = cache[f"blocks.{i}.attn.hook_{x}"], cache[f"blocks.{i}.attn.hook_rot_{x}"]
            assert torch.equal(rotated[..., r:], plain[..., r:])  # non-rotary dimensions pass untouched
            assert torch.equal(rotated[:, 0], plain[:, 0])  # position 0 turns by angle 0
            # every later position differs on the rotary dimensions, in every head
            moved = (rotated[:, 1:, :, :r] - plain[:, 1:, :, :r]).abs().amax(dim=-1)  # [batch, pos - 1, n_heads]
            assert moved.min().item() > 1e-4
            assert _max_diff(rotated.double(), _rotate(plain, r)) <= 1e-5


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


def test_zeroing_one_heads_z_equals_a_manual_ablation(subject):
    """The independent ablation: a copy of the model whose output projection ignores the head's d_head input
    columns (z_h W_O[h] vanishes the same way, so the results agree to the bit)."""
    layer, head = 0, 2
    batch = subject.as_inputs(subject.tokenize(TEXTS))
    ablated_model = copy.deepcopy(subject.encoder)
    with torch.no_grad():
        ablated_model.get_submodule(f"layers.{layer}.attention.dense").weight[:, head * D_HEAD:(head + 1) * D_HEAD] = 0

    def zero_head(z, hook):  # [batch, pos, n_heads, d_head]
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        manual = ablated_model(**batch).last_hidden_state
        with subject.hooks([(f"blocks.{layer}.attn.hook_z", zero_head)]):
            replaced = subject.run_with_cache(batch, names=[f"blocks.{layer}.hook_attn_out"])
        with subject.ablate_heads({layer: [head]}):
            ablated = subject.forward(batch).last_hidden_state
    assert _max_diff(replaced.output.last_hidden_state, manual) <= 1e-6
    assert torch.equal(replaced.output.last_hidden_state, ablated)
    assert _max_diff(manual, plain) > 1e-4


def test_patching_the_full_residual_stream_restores_the_clean_output(subject):
    assert subject.tokenize(CLEAN)["input_ids"].shape == subject.tokenize(CORRUPTED)["input_ids"].shape
    names = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]
    names += [] if _parallel(subject) else ["blocks.0.hook_resid_mid", "blocks.1.hook_resid_mid"]
    for name in names:
        result = subject.patch(CLEAN, CORRUPTED, name)
        assert torch.equal(result.patched_output.last_hidden_state, result.clean_output.last_hidden_state), name
        assert not torch.allclose(result.corrupted_output.last_hidden_state, result.clean_output.last_hidden_state)


def test_hooks_can_replace_activations(subject):
    """A returned tensor replaces the activation downstream, each with a known answer."""
    def zero(activation, hook):
        return torch.zeros_like(activation)

    batch = subject.as_inputs(subject.tokenize(TEXTS))
    mask = batch["attention_mask"].bool()
    n_pos = mask.shape[1]
    allowed = mask[:, None, None, :] & torch.ones(n_pos, n_pos, dtype=torch.bool).tril()  # [batch, 1, q, k]
    uniform = allowed / allowed.sum(-1, keepdim=True)  # equal attention to every allowed key
    with torch.no_grad():
        clean = subject.run_with_cache(batch)
        # zero rotated keys (or queries): every allowed score is 0, so the pattern is uniform over allowed keys
        for name in ("blocks.0.attn.hook_rot_k", "blocks.0.attn.hook_rot_q"):
            with subject.hooks([(name, zero)]):
                cache = subject.run_with_cache(batch, names=["blocks.0.attn.hook_pattern", name])
            assert cache[name].abs().max().item() == 0.0
            assert _max_diff(cache["blocks.0.attn.hook_pattern"], uniform.expand(-1, 4, -1, -1)) <= 1e-6
        # zero one head's values (GPT-NeoX's per-head layout): that head's z is zero, the others' are unchanged
        def zero_v_head(v, hook):  # [batch, pos, n_heads, d_head]
            v = v.clone()
            v[:, :, 1] = 0.0
            return v
        with subject.hooks([("blocks.0.attn.hook_v", zero_v_head)]):
            cache = subject.run_with_cache(batch, names=["blocks.0.attn.hook_z", "blocks.0.attn.hook_q"])
        z, clean_z = cache["blocks.0.attn.hook_z"], clean["blocks.0.attn.hook_z"]
        assert z[:, :, 1].abs().max().item() == 0.0
        assert torch.equal(z[:, :, [0, 2, 3]], clean_z[:, :, [0, 2, 3]])
        assert torch.equal(cache["blocks.0.attn.hook_q"], clean["blocks.0.attn.hook_q"])
        for name in ("blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v"):
            with subject.hooks([(name, zero)]):
                replaced = subject.run_with_cache(batch, names=["blocks.0.attn.hook_q", "blocks.0.attn.hook_k",
                                                                "blocks.0.attn.hook_v"])
            assert replaced[name].abs().max().item() == 0.0
            assert all(torch.equal(replaced[o], clean[o]) for o in replaced if o != name)
        # zero pattern -> zero z; zero MLP hidden -> mlp_out is dense_4h_to_h's bias at every position
        with subject.hooks([("blocks.0.attn.hook_pattern", zero), ("blocks.0.mlp.hook_post", zero)]):
            cache = subject.run_with_cache(batch, names=["blocks.0.attn.hook_z", "blocks.0.hook_mlp_out"])
        assert cache["blocks.0.attn.hook_z"].abs().max().item() == 0.0
        mlp_out = cache["blocks.0.hook_mlp_out"].flatten(0, 1)  # [batch * pos, d_model]
        assert torch.equal(mlp_out, mlp_out[:1].expand_as(mlp_out))
        names = ["blocks.1.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
        if _parallel(subject):  # zero resid_pre: the block's output is attn_out + mlp_out alone
            with subject.hooks([("blocks.1.hook_resid_pre", zero)]):
                zeroed = subject.run_with_cache(batch, names=names)
            assert torch.equal(zeroed["blocks.1.hook_resid_post"],
                               zeroed["blocks.1.hook_mlp_out"] + zeroed["blocks.1.hook_attn_out"])
        else:  # zero resid_mid: the block's output is mlp_out alone (the residual reads the replacement too)
            with subject.hooks([("blocks.1.hook_resid_mid", zero)]):
                zeroed = subject.run_with_cache(batch, names=names + ["blocks.1.ln2.hook_normalized"])
            normalized = zeroed["blocks.1.ln2.hook_normalized"].flatten(0, 1)
            assert torch.equal(normalized, normalized[:1].expand_as(normalized))
            assert torch.equal(zeroed["blocks.1.hook_resid_post"], zeroed["blocks.1.hook_mlp_out"])
            with pytest.raises(UserInputError, match="shape"):
                with subject.hooks([("blocks.0.hook_resid_mid", lambda act, hook: act[:, :1])]):
                    subject.forward(batch)


def test_gradient_reaches_a_replaced_residual_stream(subject):
    captured = {}
    name = "blocks.1.hook_resid_pre" if _parallel(subject) else "blocks.0.hook_resid_mid"

    def leaf(activation, hook):
        captured["x"] = activation.detach().clone().requires_grad_(True)
        return captured["x"]

    with torch.enable_grad(), subject.hooks([(name, leaf)]):
        total = subject.forward(TEXTS[0]).last_hidden_state.pow(2).sum()
        (gradient,) = torch.autograd.grad(total, captured["x"])
    assert gradient.shape == captured["x"].shape and gradient.abs().max().item() > 0


def _neox_tokenizer():
    """GPT-NeoX's own tokenizer class (byte-level BPE, ``<|padding|>`` = id 1 as in Pythia's vocabulary), its
    merges trained on real text (PTB valid) with the ``tokenizers`` library."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPTNeoXTokenizer

    from atinuke.corpus import load_texts

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(load_texts("ptb", "valid")[:1000], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return GPTNeoXTokenizer(vocab=model["vocab"], merges=merges)


@pytest.fixture(scope="module")
def pythia_dir(tmp_path_factory) -> Path:
    """A checkpoint laid out as Pythia's are: ``GPTNeoXForCausalLM`` (base model under ``gpt_neox.``, LM head
    ``embed_out``), with the legacy ``attention.bias``/``masked_bias`` buffers older checkpoints carry, and the
    family's own tokenizer."""
    from safetensors.torch import load_file, save_file

    tokenizer = _neox_tokenizer()
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=128, rotary_pct=0.25,
                           use_parallel_residual=True, dtype="float32")
    path = tmp_path_factory.mktemp("pythia") / "model"
    GPTNeoXForCausalLM(config).eval().save_pretrained(path)
    weights = load_file(path / "model.safetensors")
    for i in range(2):
        weights[f"gpt_neox.layers.{i}.attention.bias"] = torch.ones(1, 1, 128, 128, dtype=torch.bool).tril()
        weights[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save_pretrained(path)
    return path


def test_a_pythia_layout_checkpoint_loads_end_to_end(pythia_dir):
    """load_subject on a causal-LM checkpoint with the family's tokenizer: the base model is loaded (the LM head
    ``embed_out`` left unused, the legacy buffers ignored), padding is on the right with ``<|padding|>``, and the
    subject's output is the causal LM's own final hidden state."""
    subject = load_subject(pythia_dir)
    assert subject.hook_names == golden(True)
    assert subject.tokenizer.pad_token == "<|padding|>" and subject.tokenizer.padding_side == "right"
    batch = subject.tokenize(TEXTS)
    mask = batch["attention_mask"]
    n_real = int(mask[1].sum())
    assert (mask[1, n_real:] == 0).all() and n_real < mask.shape[1]  # right padding
    assert (batch["input_ids"][1, n_real:] == subject.tokenizer.pad_token_id).all()
    lm = GPTNeoXForCausalLM.from_pretrained(pythia_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        own = lm(**subject.as_inputs(batch), output_hidden_states=True)
        cache = subject.run_with_cache(batch)
        alone = subject.forward(TEXTS[1]).last_hidden_state
    assert _max_diff(cache["ln_final.hook_normalized"], own.hidden_states[-1]) <= 1e-6
    assert _max_diff(cache["blocks.0.hook_resid_post"], own.hidden_states[1]) <= 1e-6
    assert _max_diff(cache.output.last_hidden_state[1, :n_real], alone[0]) <= 1e-5
    # the checkpoint's missing tensors are still refused (only the LM head may be left unused)
    from safetensors.torch import load_file, save_file

    weights = load_file(pythia_dir / "model.safetensors")
    del weights["gpt_neox.layers.1.mlp.dense_4h_to_h.weight"]
    broken = pythia_dir.parent / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((pythia_dir / name).read_bytes())
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserInputError, match="missing layers.1.mlp.dense_4h_to_h.weight"):
        load_subject(broken)


@pytest.mark.parametrize("dtype, implementation", [(torch.bfloat16, "eager"), (torch.float32, "sdpa")])
def test_hooked_attention_is_the_eager_attention_op_for_op(tiny_tokenizer, subject, dtype, implementation):
    """In bfloat16 a change of operation or order shows (scaling q before the product, say, fails here): the fully
    hooked forward (every name, the registered attention) equals the plain eager forward bit for bit. A model
    loaded with SDPA runs the hooked eager attention while a score or pattern hook is on, then SDPA again."""
    config = copy.deepcopy(subject.encoder.config)
    torch.manual_seed(2)
    model = AutoModel.from_config(config, attn_implementation=implementation, dtype=dtype).eval()
    eager = copy.deepcopy(model)
    eager.config._attn_implementation = "eager"
    other = Subject(Encoder(name="neox-other", kind="hf", model=model, tokenizer=subject.tokenizer, path=Path(".")))
    inputs = other.as_inputs(other.tokenize(TEXTS))
    with torch.no_grad():
        plain = eager(**inputs, output_attentions=True)
        cache = other.run_with_cache(inputs)
    assert cache["blocks.0.hook_resid_pre"].dtype == dtype
    assert torch.equal(cache.output.last_hidden_state, plain.last_hidden_state)
    for i in range(2):
        assert torch.equal(cache[f"blocks.{i}.attn.hook_pattern"], plain.attentions[i])
    assert model.config._attn_implementation == implementation
    assert len(ATTN_CALLBACKS) == 0
