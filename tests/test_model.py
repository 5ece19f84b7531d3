"""The Atinuke model: hook names, fast path == explicit path, masking invariances, sinusoids, save/load."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

import atinuke  # noqa: F401  (registers the Auto classes)
from atinuke.config import AtinukeConfig, preset_config
from atinuke.model import (
    AtinukeForCausalLM,
    AtinukeForMaskedLM,
    AtinukeModel,
    HookPoint,
    count_parameters,
    hook_point_names,
    sinusoidal_table,
)

VOCAB = 99
SMALL = dict(vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=64, dropout=0.0)

PER_BLOCK = ["hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
             "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre",
             "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]
# The golden list for a two-layer model, written out in full so that a renamed or reordered hook fails here.
GOLDEN_TWO_LAYERS = [
    "embed.hook_embed", "embed.hook_pos_embed",
    "blocks.0.hook_resid_pre", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v",
    "blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z",
    "blocks.0.hook_attn_out", "blocks.0.hook_resid_mid", "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post",
    "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post",
    "blocks.1.hook_resid_pre", "blocks.1.attn.hook_q", "blocks.1.attn.hook_k", "blocks.1.attn.hook_v",
    "blocks.1.attn.hook_attn_scores", "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z",
    "blocks.1.hook_attn_out", "blocks.1.hook_resid_mid", "blocks.1.mlp.hook_pre", "blocks.1.mlp.hook_post",
    "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post",
    "ln_final.hook_normalized",
]


def _model(cls=AtinukeModel, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return cls(AtinukeConfig(**{**SMALL, **overrides})).eval()


def _ids(batch: int = 3, n_pos: int = 10, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(5, VOCAB, (batch, n_pos), generator=generator)  # [batch, pos], no [PAD]


def _padding_mask(batch: int, n_pos: int) -> torch.Tensor:
    lengths = torch.tensor([n_pos, n_pos - 3, 4])[:batch]
    return (torch.arange(n_pos)[None, :] < lengths[:, None]).long()  # [batch, pos]


# ------------------------------------------------------------------------------------------ hook names

def test_hook_names_match_the_golden_list(tiny_config):
    model = AtinukeModel(tiny_config)
    assert tiny_config.n_layers == 2
    assert hook_point_names(model) == GOLDEN_TWO_LAYERS


def test_lm_heads_prefix_the_same_hook_names():
    model = _model(AtinukeForMaskedLM)
    assert hook_point_names(model) == [f"atinuke.{name}" for name in GOLDEN_TWO_LAYERS]


def test_hooks_fire_in_the_golden_order_with_documented_shapes():
    model = _model(n_layers=3)
    fired: list[tuple[str, tuple[int, ...]]] = []
    handles = [module.register_forward_hook(lambda m, i, o, name=name: fired.append((name, tuple(o.shape))))
               for name, module in model.named_modules() if isinstance(module, HookPoint)]
    try:
        model(_ids(2, 7))
    finally:
        for handle in handles:
            handle.remove()
    expected = ["embed.hook_embed", "embed.hook_pos_embed"] + [
        f"blocks.{i}.{name}" for i in range(3) for name in PER_BLOCK] + ["ln_final.hook_normalized"]
    assert [name for name, _ in fired] == expected
    shapes = dict(fired)
    assert shapes["blocks.0.attn.hook_q"] == (2, 7, 4, 8)  # [batch, pos, n_heads, d_head]
    assert shapes["blocks.2.attn.hook_pattern"] == (2, 4, 7, 7)  # [batch, n_heads, query_pos, key_pos]
    assert shapes["blocks.1.mlp.hook_post"] == (2, 7, 64)  # [batch, pos, d_ff]
    assert shapes["blocks.1.hook_resid_post"] == (2, 7, 32)  # [batch, pos, d_model]


# ------------------------------------------------------------------------------- fast == explicit path

@pytest.mark.parametrize("norm_placement", ["post", "pre"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_path_equals_explicit_path(norm_placement, causal, padded):
    model = _model(AtinukeForMaskedLM, norm_placement=norm_placement, causal=causal)
    ids = _ids(3, 12)
    mask = _padding_mask(3, 12) if padded else None
    with torch.no_grad():
        fast = model(ids, attention_mask=mask).logits  # SDPA: nothing asks for weights
        explicit = model(ids, attention_mask=mask, output_attentions=True)
        # A hook on the pattern also forces the explicit path (and must not change the result).
        pattern_block = model.atinuke.blocks[1].attn.hook_pattern
        handle = pattern_block.register_forward_hook(lambda m, i, o: None)
        try:
            hooked = model(ids, attention_mask=mask).logits
        finally:
            handle.remove()
    real = mask.bool() if padded else torch.ones(3, 12, dtype=torch.bool)
    assert (fast - explicit.logits)[real].abs().max() <= 1e-5
    assert (fast - hooked)[real].abs().max() <= 1e-5
    assert len(explicit.attentions) == 2
    pattern = explicit.attentions[0]  # [batch, n_heads, query_pos, key_pos]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(3, 4, 12))
    if padded:
        assert pattern[1, :, :, 9:].abs().max() == 0  # nobody attends to [PAD] keys
    if causal:
        assert torch.triu(pattern, diagonal=1).abs().max() == 0  # nobody attends to the future


def test_masked_positions_only_decoder_gives_the_full_loss():
    model = _model(AtinukeForMaskedLM)
    ids = _ids(4, 16)
    labels = torch.full_like(ids, -100)
    labels[:, ::5] = ids[:, ::5]
    with torch.no_grad():
        full = model(ids, labels=labels)
        fast = model(ids, labels=labels, logits_at_labels_only=True)
    assert fast.logits.shape == (int((labels != -100).sum()), VOCAB)
    torch.testing.assert_close(fast.loss, full.loss, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast.logits, full.logits[labels != -100], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------- invariances

@pytest.mark.parametrize("norm_placement", ["post", "pre"])
def test_causal_model_ignores_future_tokens(norm_placement):
    model = _model(causal=True, norm_placement=norm_placement)
    ids = _ids(2, 10)
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1 - 5) % (VOCAB - 5) + 5
    with torch.no_grad():
        before = model(ids).last_hidden_state
        after = model(changed).last_hidden_state
    assert (before[:, :6] - after[:, :6]).abs().max() == 0  # positions before 6 cannot see it
    assert (before[:, 6:] - after[:, 6:]).abs().max() > 1e-3  # position 6 and later do


def test_bidirectional_model_sees_future_tokens():
    model = _model()
    ids = _ids(1, 10)
    changed = ids.clone()
    changed[0, 9] = 5 if ids[0, 9] != 5 else 6
    with torch.no_grad():
        assert (model(ids).last_hidden_state[0, 0] - model(changed).last_hidden_state[0, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_change_real_tokens(causal):
    model = _model(causal=causal)
    real = _ids(1, 6)
    padded = torch.cat([real, torch.zeros(1, 4, dtype=torch.long)], dim=1)  # [1, 10]
    other_padding = torch.cat([real, _ids(1, 4, seed=7)], dim=1)  # different junk in the padded slots
    mask = torch.tensor([[1] * 6 + [0] * 4])
    with torch.no_grad():
        alone = model(real).last_hidden_state  # [1, 6, d_model]
        for ids in (padded, other_padding):
            for output_attentions in (False, True):
                out = model(ids, attention_mask=mask, output_attentions=output_attentions).last_hidden_state
                assert (out[:, :6] - alone).abs().max() <= 1e-5


# ---------------------------------------------------------------------------------------- embeddings

def test_sinusoidal_table_known_values():
    table = sinusoidal_table(50, 8)
    assert table.shape == (50, 8)
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0] * 4))
    assert table[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-6)
    assert table[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-6)
    # P[pos, 2i] = sin(pos / 10000^(2i/d)), P[pos, 2i+1] = cos(pos / 10000^(2i/d))
    assert table[7, 4].item() == pytest.approx(math.sin(7 / 10000 ** (4 / 8)), abs=1e-6)
    assert table[42, 3].item() == pytest.approx(math.cos(42 / 10000 ** (2 / 8)), abs=1e-6)
    odd = sinusoidal_table(5, 7)  # odd width: the last column is a sine
    assert odd[3, 6].item() == pytest.approx(math.sin(3 / 10000 ** (6 / 7)), abs=1e-6)


def test_embedding_is_scaled_token_embedding_plus_sinusoids():
    model = _model()
    ids = _ids(2, 5)
    cache = {}
    handles = [model.embed.hook_embed.register_forward_hook(lambda m, i, o: cache.__setitem__("embed", o)),
               model.embed.hook_pos_embed.register_forward_hook(lambda m, i, o: cache.__setitem__("pos", o))]
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(cache["embed"], model.embed.token.weight[ids] * math.sqrt(32))
    torch.testing.assert_close(cache["pos"][1], sinusoidal_table(64, 32)[:5])


def test_too_long_input_raises():
    with pytest.raises(ValueError, match="max_len=64"):
        _model()(_ids(1, 65))


# -------------------------------------------------------------------------------------- save and load

def test_masked_lm_round_trips_through_auto_classes(tmp_path):
    model = _model(AtinukeForMaskedLM, seed=3)
    model.save_pretrained(tmp_path)
    ids, mask = _ids(3, 12), _padding_mask(3, 12)
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
        expected_hidden = model.atinuke(ids, attention_mask=mask).last_hidden_state
        for loaded in (AtinukeForMaskedLM.from_pretrained(tmp_path), AutoModelForMaskedLM.from_pretrained(tmp_path)):
            assert isinstance(loaded, AtinukeForMaskedLM)
            assert torch.equal(loaded.eval()(ids, attention_mask=mask).logits, expected)
        base = AutoModel.from_pretrained(tmp_path).eval()
        assert isinstance(base, AtinukeModel)
        assert torch.equal(base(ids, attention_mask=mask).last_hidden_state, expected_hidden)


def test_causal_lm_round_trips_through_auto_class(tmp_path):
    model = _model(AtinukeForCausalLM, seed=4, causal=True, norm_placement="pre")
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, AtinukeForCausalLM)
    ids = _ids(2, 9)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
        assert torch.equal(loaded(ids, labels=ids).loss, model(ids, labels=ids).loss)


def test_tied_embeddings_stay_tied_after_loading(tmp_path):
    model = _model(AtinukeForMaskedLM, seed=5)
    assert model.lm_head.weight is model.atinuke.embed.token.weight
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight.data_ptr() == loaded.atinuke.embed.token.weight.data_ptr()
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    # Training one updates the other.
    loss = loaded(_ids(2, 6), labels=_ids(2, 6)).loss
    loss.backward()
    torch.optim.SGD(loaded.parameters(), lr=1.0).step()
    assert torch.equal(loaded.lm_head.weight, loaded.atinuke.embed.token.weight)
    # Tied matrices are counted once.
    counts = count_parameters(loaded)
    assert counts.total == sum(p.numel() for p in loaded.parameters())  # parameters() already deduplicates
    assert counts.embedding == VOCAB * 32


def test_untied_head_has_its_own_matrix(tmp_path):
    model = _model(AtinukeForMaskedLM, tie_word_embeddings=False)
    assert model.lm_head.weight is not model.atinuke.embed.token.weight
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight.data_ptr() != loaded.atinuke.embed.token.weight.data_ptr()
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_hidden_states_and_attentions_only_when_asked():
    model = _model()
    ids = _ids(2, 5)
    with torch.no_grad():
        plain = model(ids)
        full = model(ids, output_hidden_states=True, output_attentions=True)
    assert plain.hidden_states is None and plain.attentions is None
    assert len(full.hidden_states) == 3 and len(full.attentions) == 2
    assert torch.equal(full.hidden_states[-1], full.last_hidden_state)


def test_head_mask_zero_removes_a_heads_contribution():
    model = _model()
    ids = _ids(1, 6)
    cache = {}
    handle = model.blocks[0].attn.hook_z.register_forward_hook(lambda m, i, o: cache.__setitem__("z", o))
    try:
        with torch.no_grad():
            model(ids, head_mask=torch.tensor([1.0, 0.0, 1.0, 1.0]))
    finally:
        handle.remove()
    assert cache["z"][:, :, 1].abs().max() == 0  # [batch, pos, n_heads, d_head]: head 1 silenced
    assert cache["z"][:, :, 0].abs().max() > 0


# ------------------------------------------------------------------------------------------ bad config

@pytest.mark.parametrize("overrides, message", [
    (dict(d_model=30, n_heads=4), "divisible"),
    (dict(activation="swish"), "activation"),
    (dict(norm_placement="middle"), "norm_placement"),
    (dict(n_layers=0), "n_layers"),
    (dict(vocab_size=-1), "vocab_size"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_config_values_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        AtinukeConfig(**{**SMALL, **overrides})


def test_causal_lm_needs_a_causal_config():
    with pytest.raises(ValueError, match="causal"):
        AtinukeForCausalLM(AtinukeConfig(**SMALL))


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="huge"):
        preset_config("huge", vocab_size=100)
    config = preset_config("tiny", vocab_size=123, causal=True)
    assert (config.vocab_size, config.causal, config.d_model) == (123, True, 128)


def test_config_is_not_mutated_by_model_copies():
    config = AtinukeConfig(**SMALL)
    before = copy.deepcopy(config.to_dict())
    AtinukeForMaskedLM(config)
    assert config.to_dict() == before
