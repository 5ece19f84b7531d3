"""workbench.models.distilbert (and ELECTRA on the BERT adapter): tiny random encoders saved to disk, loaded
through load_subject, with every hook name checked against the models' own outputs and module arithmetic."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import DistilBertConfig, DistilBertModel, ElectraConfig, ElectraModel

from atinuke.encoders import load_encoder
from atinuke.tokenizer import save_tokenizer
from workbench.models.bert import BertAdapter
from workbench.models.bridges import ATTN_CALLBACKS
from workbench.models.distilbert import DistilBertAdapter
from workbench.subject import load_subject

TEXTS = ["The market fell sharply on Monday.", "Shares rose."]  # different lengths: the second is padded
FAMILIES = ["distilbert", "electra", "electra_projected"]

# The golden per-block list, written out (not derived from the code under test).
PER_BLOCK = ["hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
             "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post",
             "hook_mlp_out", "hook_resid_post"]
GOLDEN = (["embed.hook_embed", "embed.hook_pos_embed"] + [f"blocks.0.{n}" for n in PER_BLOCK]
          + [f"blocks.1.{n}" for n in PER_BLOCK] + ["ln_final.hook_normalized"])


def _model(family: str, vocab_size: int) -> torch.nn.Module:
    if family == "distilbert":
        return DistilBertModel(DistilBertConfig(
            vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128,
            dropout=0.0, attention_dropout=0.0, pad_token_id=0))
    # ELECTRA's real checkpoints embed in a smaller width and project up (embeddings_project); test both.
    return ElectraModel(ElectraConfig(
        vocab_size=vocab_size, embedding_size=16 if family == "electra_projected" else 32, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0))


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    dirs = {}
    for family in FAMILIES:
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(family) / "model"
        _model(family, len(tiny_tokenizer)).eval().save_pretrained(path)
        save_tokenizer(tiny_tokenizer, path)
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


def _norms(encoder, i: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Block i's own two LayerNorms (after attention, after the MLP)."""
    if encoder.config.model_type == "distilbert":
        layer = encoder.transformer.layer[i]
        return layer.sa_layer_norm, layer.output_layer_norm
    layer = encoder.encoder.layer[i]
    return layer.attention.output.LayerNorm, layer.output.LayerNorm


def _out_projection(encoder, i: int) -> torch.nn.Linear:
    """Block i's W_O (reads the concatenated heads' z)."""
    if encoder.config.model_type == "distilbert":
        return encoder.transformer.layer[i].attention.out_lin
    return encoder.encoder.layer[i].attention.output.dense


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_golden_hook_names_and_adapter(subject, family):
    assert subject.hook_names == GOLDEN
    assert isinstance(subject.adapter, DistilBertAdapter if family == "distilbert" else BertAdapter)
    assert (subject.n_layers, subject.n_heads, subject.d_head, subject.d_model) == (2, 4, 8, 32)
    if family == "distilbert":
        assert subject.adapter.model_inputs == ("input_ids", "attention_mask")
        assert "token_type_ids" not in subject.as_inputs(TEXTS)


def test_cached_forward_equals_plain_forward_with_padding(subject):
    batch = subject.tokenize(TEXTS)
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # the second text is padded
    with torch.no_grad():
        plain = subject.forward(batch).last_hidden_state
        cache = subject.run_with_cache(batch)  # every name: attention runs the hooked implementation
        alone = subject.forward(TEXTS[1]).last_hidden_state
    assert list(cache) == GOLDEN
    assert _max_diff(cache.output.last_hidden_state, plain) <= 1e-5
    assert _max_diff(cache["ln_final.hook_normalized"], plain) <= 1e-5
    assert _max_diff(cache["blocks.1.hook_resid_post"], plain) <= 1e-5
    # padding changes nothing at the real tokens of the shorter text
    n_real = int(mask[1].sum())
    assert _max_diff(cache["blocks.1.hook_resid_post"][1, :n_real], alone[0]) <= 1e-5
    batch_size, n_pos = batch["input_ids"].shape
    for name, shape in [("blocks.0.attn.hook_q", (batch_size, n_pos, 4, 8)),
                        ("blocks.1.attn.hook_z", (batch_size, n_pos, 4, 8)),
                        ("blocks.0.attn.hook_pattern", (batch_size, 4, n_pos, n_pos)),
                        ("blocks.0.attn.hook_attn_scores", (batch_size, 4, n_pos, n_pos)),
                        ("blocks.0.mlp.hook_pre", (batch_size, n_pos, 64)),
                        ("blocks.0.mlp.hook_post", (batch_size, n_pos, 64)),
                        ("embed.hook_pos_embed", (batch_size, n_pos, cache["embed.hook_embed"].shape[-1]))]:
        assert cache[name].shape == shape, name
    pattern = cache.stack("attn.hook_pattern")  # [n_layers, batch, n_heads, q, k]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    assert pattern[:, 1, :, :, mask[1] == 0].abs().max().item() == 0.0  # padding keys get no attention
    assert not any(t.requires_grad for t in cache.values())


def test_known_answers(subject, model_dirs, family):
    batch = subject.tokenize(TEXTS)
    inputs = subject.as_inputs(batch)
    reference = load_encoder(model_dirs[family]).model  # a separate plain eager model
    with torch.no_grad():
        own = reference(**inputs, output_attentions=True, output_hidden_states=True)
        cache = subject.run_with_cache(batch)
        assert len(own.attentions) == 2 and len(own.hidden_states) == 3
        assert _max_diff(cache["blocks.0.hook_resid_pre"], own.hidden_states[0]) <= 1e-6
        assert _max_diff(cache["ln_final.hook_normalized"], own.last_hidden_state) <= 1e-6
        for i in range(2):
            assert _max_diff(cache[f"blocks.{i}.attn.hook_pattern"], own.attentions[i]) <= 1e-6
            assert _max_diff(cache[f"blocks.{i}.hook_resid_post"], own.hidden_states[i + 1]) <= 1e-6
            ln_attn, ln_mlp = _norms(subject.encoder, i)
            b = f"blocks.{i}."
            assert _max_diff(ln_attn(cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"]),
                             cache[b + "hook_resid_mid"]) <= 1e-6
            assert _max_diff(ln_mlp(cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"]),
                             cache[b + "hook_resid_post"]) <= 1e-6
            # z @ W_O + b = attn_out; softmax(scores) = pattern; scores = q k^T / sqrt(d_head) + mask
            assert _max_diff(_out_projection(subject.encoder, i)(cache[b + "attn.hook_z"].flatten(2)),
                             cache[b + "hook_attn_out"]) <= 1e-6
            assert _max_diff(cache[b + "attn.hook_attn_scores"].softmax(-1), cache[b + "attn.hook_pattern"]) <= 1e-6
            q, k, v = (cache[b + f"attn.hook_{x}"].transpose(1, 2) for x in "qkv")  # [batch, n_heads, pos, d_head]
            scores = cache[b + "attn.hook_attn_scores"]
            real = inputs["attention_mask"][:, None, None, :].bool().expand_as(scores)
            assert _max_diff((q @ k.transpose(-1, -2) / 8 ** 0.5)[real], scores[real]) <= 1e-5
            assert _max_diff((cache[b + "attn.hook_pattern"] @ v).transpose(1, 2), cache[b + "attn.hook_z"]) <= 1e-5
        torch.testing.assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"],
                                   atol=0, rtol=0)


def test_hooks_are_removed_when_the_body_raises(subject):
    subject.forward(TEXTS)
    handles = {n: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for n, m in subject.encoder.named_modules()}
    attn_impl = subject.encoder.config._attn_implementation
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with subject.hooks([(name, lambda act, hook: seen.append(hook.name)) for name in subject.hook_names]):
            assert all(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())
            subject.forward(TEXTS)
            raise RuntimeError("boom")
    assert set(seen) == set(subject.hook_names)  # every bridge fired
    after = {n: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for n, m in subject.encoder.named_modules()}
    assert after == handles
    assert all(not hooks and not pre for hooks, pre in after.values())
    assert subject.encoder.config._attn_implementation == attn_impl
    assert len(ATTN_CALLBACKS) == 0
    assert not any(subject.adapter.hooks_inside(block) for block in subject.adapter.blocks())


def test_zeroing_a_head_equals_removing_it_from_the_output_projection(subject):
    """Neither family's forward takes head_mask in transformers 5; zeroing head h's z is the same as zeroing
    the columns of W_O that read it, computed here on a copy of the model with no hooks."""
    layer, head = 1, 2
    batch = subject.as_inputs(subject.tokenize(TEXTS))
    masked = copy.deepcopy(subject.encoder)
    with torch.no_grad():
        projection = _out_projection(masked, layer)
        projection.weight[:, head * 8:(head + 1) * 8] = 0.0
        native = masked(**batch).last_hidden_state
        ablated = subject.forward(batch, head_ablation={layer: [head]}).last_hidden_state
        plain = subject.forward(batch).last_hidden_state
    assert _max_diff(native, ablated) <= 1e-5
    assert _max_diff(ablated, plain) > 1e-3


@pytest.mark.parametrize("name", ["blocks.1.hook_resid_post", "blocks.0.hook_resid_post"])
def test_patching_the_full_residual_stream_restores_the_clean_output(subject, name):
    clean, corrupted = "The market fell sharply on Monday.", "The market rose sharply on Friday."
    assert subject.tokenize(clean)["input_ids"].shape == subject.tokenize(corrupted)["input_ids"].shape
    result = subject.patch(clean, corrupted, name)
    assert torch.equal(result.patched_output.last_hidden_state, result.clean_output.last_hidden_state)
    assert not torch.allclose(result.corrupted_output.last_hidden_state, result.clean_output.last_hidden_state)


def test_hooks_can_replace_activations(subject):
    """A returned tensor replaces the activation downstream: zero pattern -> zero z; zero MLP hidden ->
    mlp_out is W_out's bias at every position."""
    def zero(activation, hook):
        return torch.zeros_like(activation)

    names = ["blocks.0.attn.hook_z", "blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre"]
    with subject.hooks([("blocks.0.attn.hook_pattern", zero), ("blocks.0.mlp.hook_post", zero)]):
        cache = subject.run_with_cache(TEXTS[0], names=names)
    assert cache["blocks.0.attn.hook_z"].abs().max().item() == 0.0
    mlp_out = cache["blocks.0.hook_mlp_out"][0]  # [pos, d_model]
    assert torch.equal(mlp_out, mlp_out[:1].expand_as(mlp_out))
    with subject.hooks([("blocks.1.hook_resid_pre", zero)]):
        zeroed = subject.run_with_cache(TEXTS[0], names=["blocks.1.hook_resid_pre"])
    assert zeroed["blocks.1.hook_resid_pre"].abs().max().item() == 0.0


def test_chunked_ffn_refuses_the_mlp_bridges(subjects):
    from atinuke.errors import UserInputError

    subject = subjects["distilbert"]
    ffn = subject.encoder.transformer.layer[0].ffn
    ffn.chunk_size_feed_forward = 1  # any length divides into chunks of one position
    try:
        with pytest.raises(UserInputError, match="chunk"):
            subject.run_with_cache(TEXTS[0], names=["blocks.0.mlp.hook_pre"])
        assert len(subject.run_with_cache(TEXTS[0], names=["blocks.0.hook_mlp_out"])) == 1  # the whole FFN output
    finally:
        ffn.chunk_size_feed_forward = 0


@pytest.mark.parametrize("head", ["distilbert_mlm", "electra_discriminator"])
def test_checkpoints_with_a_pretraining_head_load_as_encoders(tmp_path, tiny_tokenizer, head):
    """Released DistilBERT and ELECTRA checkpoints carry their pretraining head; the encoder loads without it
    and computes what the head model's own encoder computes."""
    from transformers import DistilBertForMaskedLM, ElectraForPreTraining

    torch.manual_seed(0)
    base = _model("distilbert" if head == "distilbert_mlm" else "electra", len(tiny_tokenizer))
    model = (DistilBertForMaskedLM if head == "distilbert_mlm" else ElectraForPreTraining)(copy.deepcopy(base.config)).eval()
    model.save_pretrained(tmp_path / "model")
    save_tokenizer(tiny_tokenizer, tmp_path / "model")
    subject = load_subject(tmp_path / "model")
    batch = subject.tokenize(TEXTS)
    with torch.no_grad():
        expected = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        cached = subject.run_with_cache(batch, ["ln_final.hook_normalized"])["ln_final.hook_normalized"]
    assert torch.allclose(cached, expected, atol=1e-6)
