"""workbench.models.deberta: tiny random DeBERTa-v2 encoders (a v3-like one: relative positions only, shared
attention keys, bucketed distances, LayerNorm'd relative embeddings; and one with absolute positions, token types,
separate position projections, clamped distances and the first layer's ConvLayer) saved to disk, loaded through
load_subject, with every hook name checked against the models' own outputs and the disentangled-attention
arithmetic recomputed here from the weights."""
from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import DebertaV2Config, DebertaV2Model
from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

from atinuke.encoders import load_encoder
from atinuke.errors import UserInputError
from atinuke.tokenizer import save_tokenizer
from workbench.models.bridges import ATTN_CALLBACKS
from workbench.models.deberta import DebertaV2Adapter, per_block_names
from workbench.subject import load_subject

TEXTS = ["The market fell sharply on Monday.", "Shares rose."]  # different lengths: the second is padded
FAMILIES = ["v3", "biased_conv"]
D_HEAD, N_HEADS = 8, 4
SCALE = (D_HEAD * 3) ** 0.5  # scale_factor = 1 + c2p + p2c

# The golden per-block list, written out (not derived from the code under test).
PER_BLOCK = ["hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_c2p", "attn.hook_p2c",
             "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
             "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]
BLOCKS = [f"blocks.0.{n}" for n in PER_BLOCK] + [f"blocks.1.{n}" for n in PER_BLOCK]
GOLDEN = {"v3": ["embed.hook_embed"] + BLOCKS + ["ln_final.hook_normalized"],  # no absolute positions
          "biased_conv": ["embed.hook_embed", "embed.hook_pos_embed"] + BLOCKS + ["ln_final.hook_normalized"]}
CONFIGS = {
    # DeBERTa-v3's settings (microsoft/deberta-v3-*), shrunk: 8 buckets make distances beyond 4 log-bucketed.
    "v3": dict(relative_attention=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
               norm_rel_ebd="layer_norm", share_att_key=True, position_buckets=8, type_vocab_size=0),
    # Absolute positions, token types, pos_key_proj/pos_query_proj, distances clamped to +-4, the ConvLayer.
    "biased_conv": dict(relative_attention=True, pos_att_type=["c2p", "p2c"], position_biased_input=True,
                        share_att_key=False, max_relative_positions=4, conv_kernel_size=3, type_vocab_size=2),
}


def _model(family: str, vocab_size: int, n_layers: int = 2) -> DebertaV2Model:
    model = DebertaV2Model(DebertaV2Config(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=N_HEADS,
        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, pad_token_id=0, **CONFIGS[family],
        initializer_range=0.2))  # the default 0.02 would leave every attention score near 0 (c2p ~1e-4)
    return model


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    dirs = {}
    for family in FAMILIES:
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(family) / "model"
        _model(family, len(tiny_tokenizer)).eval().save_pretrained(path)
        tokenizer = copy.deepcopy(tiny_tokenizer)
        if CONFIGS[family]["type_vocab_size"]:  # DeBERTa's own tokenizers return token types
            tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
        save_tokenizer(tokenizer, path)
        dirs[family] = path
    return dirs


@pytest.fixture(scope="module")
def subjects(model_dirs):
    return {family: load_subject(path) for family, path in model_dirs.items()}


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def subject(subjects, family):
    return subjects[family]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _relative_terms(encoder, i: int, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c2p and p2c [batch, n_heads, q_pos, k_pos] of block i from the weights, by the paper's definition
    (He et al. 2021, eq. 4): c2p[i, j] = q_i . Kr[delta(i, j)], p2c[i, j] = k_j . Qr[delta(j, i)], over
    sqrt(3 d_head); delta(i, j) = clamp(bucket(i - j) + span, 0, 2 span - 1). q, k: [batch, pos, heads, d_head]."""
    config = encoder.config
    attention = encoder.encoder.layer[i].attention.self
    table = encoder.encoder.rel_embeddings.weight  # [2 span, d_model]
    if "layer_norm" in getattr(config, "norm_rel_ebd", "none"):
        table = encoder.encoder.LayerNorm(table)
    buckets = getattr(config, "position_buckets", -1)  # DebertaV2Config has no default for the three
    max_relative = getattr(config, "max_relative_positions", -1)
    shared = getattr(config, "share_att_key", False)
    span = buckets if buckets > 0 else max_relative
    key_proj = attention.key_proj if shared else attention.pos_key_proj
    query_proj = attention.query_proj if shared else attention.pos_query_proj
    pos_keys = key_proj(table[:2 * span]).view(2 * span, N_HEADS, D_HEAD)  # [2 span, heads, d_head]
    pos_queries = query_proj(table[:2 * span]).view(2 * span, N_HEADS, D_HEAD)
    n = q.shape[1]
    positions = torch.zeros(n, 1)  # build_relative_position reads the length from size(-2)
    max_position = max_relative if max_relative > 0 else config.max_position_embeddings
    bucket = build_relative_position(positions, positions, bucket_size=buckets,
                                     max_position=max_position)[0]  # [pos, pos]: bucket(i - j), log beyond span/2
    if buckets <= 0:
        assert torch.equal(bucket, torch.arange(n)[:, None] - torch.arange(n)[None, :])
    delta = (bucket + span).clamp(0, 2 * span - 1)  # [q, k]
    c2p = torch.einsum("bihd,ijhd->bhij", q, pos_keys[delta]) / SCALE
    delta_back = (-bucket.T + span).clamp(0, 2 * span - 1)  # delta(j, i) by the sign convention of p2c
    p2c = torch.einsum("bjhd,ijhd->bhij", k, pos_queries[delta_back]) / SCALE
    return c2p, p2c


def test_golden_hook_names_and_adapter(subject, family):
    assert subject.hook_names == GOLDEN[family]
    assert isinstance(subject.adapter, DebertaV2Adapter)
    assert (subject.n_layers, subject.n_heads, subject.d_head, subject.d_model) == (2, 4, 8, 32)
    assert subject.adapter.model_inputs == ("input_ids", "attention_mask", "token_type_ids")
    with pytest.raises(UserInputError, match="unknown hook name 'blocks.0.attn.hook_c2q'.*hook_c2p"):
        subject.run_with_cache(TEXTS[0], names=["blocks.0.attn.hook_c2q"])
    if family == "v3":
        with pytest.raises(UserInputError, match="embed.hook_pos_embed"):
            subject.run_with_cache(TEXTS[0], names=["embed.hook_pos_embed"])


def test_per_block_names_follow_the_config():
    """Only the relative-position terms the config computes have a name."""
    def names(**kwargs):
        return per_block_names(DebertaV2Config(**kwargs))
    assert names(relative_attention=True, pos_att_type=["c2p"]) == (
        "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_c2p", "attn.hook_attn_scores",
        "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post",
        "hook_mlp_out", "hook_resid_post")
    assert "attn.hook_c2p" not in names(relative_attention=False, pos_att_type=["c2p", "p2c"])
    assert names(relative_attention=True, pos_att_type="p2c|c2p")[4:6] == ("attn.hook_c2p", "attn.hook_p2c")


def test_cached_forward_equals_plain_forward_with_padding(subject):
    batch = subject.tokenize(TEXTS)
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # the second text is padded
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        cache = subject.run_with_cache(batch)  # every name: the replacement attention forward runs
        alone = subject.forward(TEXTS[1]).last_hidden_state
    assert list(cache) == subject.hook_names
    # the replacement forward performs the same operations in the same order: bitwise equal
    assert torch.equal(cache.output.last_hidden_state, plain)
    assert _max_diff(cache["ln_final.hook_normalized"], plain) <= 1e-5
    assert _max_diff(cache["blocks.1.hook_resid_post"], plain) <= 1e-5
    n_real = int(mask[1].sum())  # padding changes nothing at the real tokens of the shorter text
    assert _max_diff(cache["blocks.1.hook_resid_post"][1, :n_real], alone[0]) <= 1e-5
    batch_size, n_pos = batch["input_ids"].shape
    for name in ("blocks.0.attn.hook_q", "blocks.1.attn.hook_k", "blocks.1.attn.hook_z"):
        assert cache[name].shape == (batch_size, n_pos, 4, 8), name
    for name in ("blocks.0.attn.hook_c2p", "blocks.1.attn.hook_p2c", "blocks.0.attn.hook_attn_scores"):
        assert cache[name].shape == (batch_size, 4, n_pos, n_pos), name
    pattern = cache.stack("attn.hook_pattern")  # [n_layers, batch, n_heads, q, k]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    real = mask[1] == 1
    assert pattern[:, 1][:, :, real][..., ~real].abs().max().item() == 0.0  # real queries ignore padding keys
    assert cache["blocks.0.hook_resid_pre"][1, ~real].abs().max().item() == 0.0  # the embedding is masked
    assert not any(t.requires_grad for t in cache.values())


def test_known_answers(subject, model_dirs, family):
    batch = subject.tokenize(TEXTS)
    inputs = subject.as_inputs(batch)
    mask = inputs["attention_mask"]
    reference = load_encoder(model_dirs[family]).model  # a separate plain model
    encoder = subject.encoder
    with torch.no_grad():
        own = reference(**inputs, output_attentions=True, output_hidden_states=True)
        cache = subject.run_with_cache(batch)
        assert len(own.attentions) == 2 and len(own.hidden_states) == 3
        assert _max_diff(cache["blocks.0.hook_resid_pre"], own.hidden_states[0]) <= 1e-6
        assert _max_diff(cache["ln_final.hook_normalized"], own.last_hidden_state) <= 1e-6
        pair_real = (mask[:, None, :, None] * mask[:, None, None, :]).bool().expand(-1, 4, -1, -1)  # [b, h, q, k]
        for i in range(2):
            b = f"blocks.{i}."
            layer = encoder.encoder.layer[i]
            assert _max_diff(cache[b + "attn.hook_pattern"], own.attentions[i]) <= 1e-6
            assert _max_diff(cache[b + "hook_resid_post"], own.hidden_states[i + 1]) <= 1e-6
            assert _max_diff(layer.attention.output.LayerNorm(cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"]),
                             cache[b + "hook_resid_mid"]) <= 1e-6
            block_out = layer.output.LayerNorm(cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"])
            if i == 0 and family == "biased_conv":  # the ConvLayer mixes a convolution of the block's input in
                assert _max_diff(block_out, cache[b + "hook_resid_post"]) > 1e-2
                block_out = encoder.encoder.conv(cache[b + "hook_resid_pre"], block_out, mask)
            assert _max_diff(block_out, cache[b + "hook_resid_post"]) <= 1e-6
            assert _max_diff(layer.attention.output.dense(cache[b + "attn.hook_z"].flatten(2)),
                             cache[b + "hook_attn_out"]) <= 1e-6
            assert _max_diff(layer.intermediate.intermediate_act_fn(cache[b + "mlp.hook_pre"]),
                             cache[b + "mlp.hook_post"]) <= 1e-6
            assert _max_diff(cache[b + "attn.hook_attn_scores"].softmax(-1), cache[b + "attn.hook_pattern"]) <= 1e-6
            q, k, v = (cache[b + f"attn.hook_{x}"] for x in "qkv")  # [batch, pos, n_heads, d_head]
            c2p, p2c = _relative_terms(encoder, i, q, k)
            assert _max_diff(c2p, cache[b + "attn.hook_c2p"]) <= 1e-5
            assert _max_diff(p2c, cache[b + "attn.hook_p2c"]) <= 1e-5
            assert c2p.abs().max() > 0.1 and p2c.abs().max() > 0.1  # the terms are not negligible
            content = q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2) / SCALE  # [batch, heads, q, k]
            scores = cache[b + "attn.hook_attn_scores"]
            assert _max_diff((content + c2p + p2c)[pair_real], scores[pair_real]) <= 1e-5
            assert (scores[~pair_real] == torch.finfo(scores.dtype).min).all()
            z = (cache[b + "attn.hook_pattern"] @ v.transpose(1, 2)).transpose(1, 2)  # [batch, pos, heads, d_head]
            assert _max_diff(z, cache[b + "attn.hook_z"]) <= 1e-5
        torch.testing.assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"],
                                   atol=0, rtol=0)


def test_embedding_names_and_token_types(subjects):
    """biased_conv: resid_pre_0 = LN(word + position + token type) * mask, from the hooked pieces; the token
    types of a pair reach the model."""
    subject = subjects["biased_conv"]
    batch = subject.tokenize(["The market fell.", "Shares rose."], ["It was Monday.", "Again."])
    inputs = subject.as_inputs(batch)
    assert inputs["token_type_ids"].max().item() == 1  # the second segment
    embeddings = subject.adapter.embedding_module()
    with torch.no_grad():
        cache = subject.run_with_cache(batch, ["embed.hook_embed", "embed.hook_pos_embed", "blocks.0.hook_resid_pre"])
        summed = (cache["embed.hook_embed"] + cache["embed.hook_pos_embed"]
                  + embeddings.token_type_embeddings(inputs["token_type_ids"]))
        expected = embeddings.LayerNorm(summed) * inputs["attention_mask"][..., None]
        without_types = subject.forward({**inputs, "token_type_ids": torch.zeros_like(inputs["token_type_ids"])})
    assert _max_diff(expected, cache["blocks.0.hook_resid_pre"]) <= 1e-6
    assert _max_diff(without_types.last_hidden_state, cache.output.last_hidden_state) > 1e-3


def test_hooks_are_removed_when_the_body_raises(subject):
    subject.forward(TEXTS)
    handles = {n: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for n, m in subject.encoder.named_modules()}
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with subject.hooks([(name, lambda act, hook: seen.append(hook.name)) for name in subject.hook_names]):
            assert all(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())
            subject.forward(TEXTS)
            raise RuntimeError("boom")
    # every bridge fired, once (share_att_key: q and k are not confused with the projected relative embeddings)
    assert Counter(seen) == Counter(subject.hook_names)
    after = {n: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for n, m in subject.encoder.named_modules()}
    assert after == handles
    assert all(not hooks and not pre for hooks, pre in after.values())
    assert not any("forward" in vars(m) for m in subject.encoder.modules())  # the replacement forward is gone
    assert len(ATTN_CALLBACKS) == 0
    assert not any(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())


def test_zeroing_a_head_equals_removing_it_from_the_output_projection(subject):
    """Zeroing head h's z equals zeroing the columns of W_O that read it, on a copy of the model with no hooks."""
    layer, head = 1, 2
    batch = subject.as_inputs(subject.tokenize(TEXTS))
    masked = copy.deepcopy(subject.encoder)
    with torch.no_grad():
        masked.encoder.layer[layer].attention.output.dense.weight[:, head * 8:(head + 1) * 8] = 0.0
        native = masked(**batch).last_hidden_state
        ablated = subject.forward(batch, head_ablation={layer: [head]}).last_hidden_state
        plain = subject.forward(batch).last_hidden_state
    assert _max_diff(native, ablated) <= 1e-5
    assert _max_diff(ablated, plain) > 1e-3


@pytest.mark.parametrize("name", ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.0.hook_resid_post"])
def test_patching_the_full_residual_stream_restores_the_clean_output(subject, name):
    """blocks.0.hook_resid_pre is the encoder's input, read by block 0 and (biased_conv) the ConvLayer: patching
    it restores everything."""
    clean, corrupted = "The market fell sharply on Monday.", "The market rose sharply on Friday."
    assert subject.tokenize(clean)["input_ids"].shape == subject.tokenize(corrupted)["input_ids"].shape
    result = subject.patch(clean, corrupted, name)
    assert torch.equal(result.patched_output.last_hidden_state, result.clean_output.last_hidden_state)
    assert not torch.allclose(result.corrupted_output.last_hidden_state, result.clean_output.last_hidden_state)


def test_every_hook_can_replace_its_activation(subject):
    """An identity replacement at every name leaves the output bitwise equal; a perturbation at any one name
    changes it."""
    inputs = subject.as_inputs(TEXTS[0])
    with torch.no_grad():
        plain = subject.forward(inputs).last_hidden_state
        with subject.hooks([(name, lambda act, hook: act.clone()) for name in subject.hook_names]):
            same = subject.forward(inputs).last_hidden_state
        assert torch.equal(same, plain)
        generator = torch.Generator().manual_seed(0)
        for name in subject.hook_names:
            def perturb(act, hook):
                return act + 0.5 * torch.randn(act.shape, generator=generator)
            with subject.hooks([(name, perturb)]):
                changed = subject.forward(inputs).last_hidden_state
            assert _max_diff(changed, plain) > 1e-4, name


def test_zeroing_the_relative_terms_leaves_content_attention(subject):
    """With c2p and p2c replaced by zeros, the scores are the content term q k^T / sqrt(3 d_head) alone, and
    a zero pattern gives zero z."""
    def zero(act, hook):
        return torch.zeros_like(act)
    names = ["blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_attn_scores"]
    with torch.no_grad(), subject.hooks([("blocks.0.attn.hook_c2p", zero), ("blocks.0.attn.hook_p2c", zero)]):
        cache = subject.run_with_cache(TEXTS[0], names=names)
    q, k = (cache[f"blocks.0.attn.hook_{x}"].transpose(1, 2) for x in "qk")  # [batch, heads, pos, d_head]
    assert _max_diff(q @ k.transpose(-1, -2) / SCALE, cache["blocks.0.attn.hook_attn_scores"]) <= 1e-5
    with subject.hooks([("blocks.0.attn.hook_pattern", zero)]):
        z = subject.run_with_cache(TEXTS[0], names=["blocks.0.attn.hook_z"])["blocks.0.attn.hook_z"]
    assert z.abs().max().item() == 0.0


def _rows_and_gradient(subject, rows, read=((0, 3), (2, 4))):
    """Last hidden state at fixed positions and d(random projection)/d(token embeddings), with the last block
    pruned to ``rows`` (None: the full forward pass)."""
    from workbench.pruned_forward import pruned_forward

    inputs = subject.as_inputs(TEXTS)
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
    weights = torch.randn(values.shape, generator=torch.Generator().manual_seed(0), dtype=values.dtype)
    (gradient,) = torch.autograd.grad((values * weights).sum(), embeds)  # not |values|^2: fixed by the LayerNorm
    return values.detach(), gradient, hidden[0, 1].detach()  # (the last: a row no one reads)


@pytest.mark.parametrize("n_layers", [2, 1])
def test_pruned_last_block_is_exact(model_dirs, family, n_layers, tmp_path, tiny_tokenizer):
    """The last block at the target's rows only (float64) gives the same values and input gradients; with one
    layer the last block is block 0, followed by the ConvLayer in biased_conv. Rows in any order; the second
    text's row 4 is padding."""
    from workbench.pruned_forward import can_prune

    path = model_dirs[family]
    if n_layers == 1:
        torch.manual_seed(0)
        path = tmp_path / "model"
        _model(family, len(tiny_tokenizer), n_layers=1).save_pretrained(path)
        save_tokenizer(tiny_tokenizer, path)
    subject = load_subject(path)
    subject.encoder.double()
    assert subject.n_layers == n_layers and can_prune(subject)
    full_values, full_gradient, full_unread = _rows_and_gradient(subject, None)
    values, gradient, unread = _rows_and_gradient(subject, torch.tensor([[3, 0], [4, 2]]))
    assert _max_diff(unread, full_unread) > 0.1  # the pruned block ran: it did not compute that row
    torch.testing.assert_close(values, full_values, atol=1e-12, rtol=0)
    torch.testing.assert_close(gradient, full_gradient, atol=1e-11, rtol=0)
    assert full_gradient.abs().max() > 1e-3
    assert "forward" not in vars(subject.adapter.blocks()[-1])  # the class's forward is back
    with subject.hooks([("blocks.0.attn.hook_c2p", lambda act, hook: None)]):
        assert can_prune(subject) == (n_layers == 2)  # a callback inside the last block blocks pruning


@pytest.mark.parametrize("legacy", [True, False])
def test_a_masked_lm_checkpoint_loads_as_an_encoder(tmp_path, tiny_tokenizer, legacy):
    """DeBERTa-v3's released checkpoints carry the MLM head (``lm_predictions``, or ``cls`` for a legacy
    config); the encoder loads without it and computes what the head model's own encoder computes."""
    from transformers import DebertaV2ForMaskedLM

    from workbench.lm import language_model

    torch.manual_seed(0)
    config = copy.deepcopy(_model("v3", len(tiny_tokenizer)).config)
    config.legacy = legacy
    model = DebertaV2ForMaskedLM(config).eval()
    model.save_pretrained(tmp_path / "model")
    save_tokenizer(tiny_tokenizer, tmp_path / "model")
    subject = load_subject(tmp_path / "model")
    assert isinstance(subject.adapter, DebertaV2Adapter)
    batch = subject.tokenize(TEXTS)
    with torch.no_grad():
        expected = model.deberta(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        cached = subject.run_with_cache(batch, ["ln_final.hook_normalized"])["ln_final.hook_normalized"]
    assert torch.equal(cached, expected)
    # the LM head around the subject's own modules: the checkpoint's logits, and hooks on the subject apply
    head, causal = subject.adapter.language_model_head(tmp_path / "model" / "model.safetensors")
    assert not causal and head.deberta is subject.encoder
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        logits = head(**inputs).logits  # [batch, pos, vocab]
        assert _max_diff(logits, model(**inputs).logits) <= 1e-5
        with subject.hooks([("blocks.1.hook_mlp_out", lambda act, hook: torch.zeros_like(act))]):
            assert _max_diff(head(**inputs).logits, logits) > 1e-3
        # the workbench's LM read-out (logit lens, SAE loss recovered) of the last residual state is the logits
        lm = language_model(subject)
        assert lm is not None and not lm.causal
        final = subject.run_with_cache(batch, ["ln_final.hook_normalized"])["ln_final.hook_normalized"]
        assert _max_diff(lm.unembed(final), logits) <= 1e-5


def test_a_checkpoint_without_an_lm_head_has_none(subjects, model_dirs):
    subject = subjects["v3"]
    assert subject.adapter.language_model_head(model_dirs["v3"] / "model.safetensors") is None
