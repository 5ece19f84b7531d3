"""The GGUF route (``--model FILE.gguf``) on a tiny seeded Llama written as a float32 GGUF with ``gguf.GGUFWriter``:
the converted checkpoint gives the original model's logits, records its provenance, and is cached by sha256."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from atinuke.errors import UserInputError

gguf = pytest.importorskip("gguf", reason="the gguf package reads and writes GGUF files")


def _byte_alphabet() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return [bytes_to_unicode()[b] for b in range(256)]


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (convert_hf_to_gguf's ``permute``), which transformers undoes on reading."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_tiny_llama_gguf(path: Path, seed: int = 0):
    """A seeded 2-layer Llama (4 query / 2 key-value heads, tied embeddings) over a byte-level BPE vocabulary,
    written as an F32 GGUF; returns the model it was written from."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = _byte_alphabet() + ["Ġt", "he", "<|endoftext|>"]
    merges = ["Ġ t", "h e"]
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=len(tokens) - 1,
                         eos_token_id=len(tokens) - 1)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(128)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_feed_forward_length(96)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(16)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 1) + [3])  # the last one is a control token
    writer.add_token_merges(merges)
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for layer in range(2):
        names.update({f"model.layers.{layer}.{hf}.weight": f"blk.{layer}.{g}.weight" for hf, g in parts.items()})
    for hf, name in names.items():
        tensor = state[hf].astype(np.float32)
        if name.endswith("attn_q.weight"):
            tensor = _permute(tensor, 4)
        elif name.endswith("attn_k.weight"):
            tensor = _permute(tensor, 2)
        writer.add_tensor(name, np.ascontiguousarray(tensor))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    model = write_tiny_llama_gguf(root / "tiny-llama.F32.gguf")
    return root / "tiny-llama.F32.gguf", model


def test_gguf_file_loads_as_the_model_it_was_written_from(tiny_gguf, tmp_path, monkeypatch):
    from atinuke.pretrained import read_provenance, sha256_file
    from workbench.lm import language_model
    from workbench.subject import load_subject

    monkeypatch.setenv("ATINUKE_CACHE", str(tmp_path))
    path, model = tiny_gguf
    subject = load_subject(str(path))
    assert subject.name == "tiny-llama.F32" and subject.causal and subject.adapter.family == "llama"
    assert subject.path == tmp_path / "models" / f"gguf-{sha256_file(path)[:16]}"
    # safetensors only, no quantisation left in the config, provenance recorded
    files = {p.name for p in subject.path.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".gguf", ".pt")) for f in files)
    assert "quantization_config" not in json.loads((subject.path / "config.json").read_text())
    record = read_provenance(subject.path)
    assert record is not None and record["gguf_sha256"] == sha256_file(path)
    assert record["gguf_file_type"] == "ALL_F32" and record["four_bit_derived"] is False
    # the byte-level vocabulary and its merges came through: "the" is "Ġt" + "he"
    ids = subject.tokenizer(" the", add_special_tokens=False)["input_ids"]
    assert [subject.tokenizer.convert_ids_to_tokens(i) for i in ids] == ["Ġt", "he"]
    # float32 in, float32 out: the logits of the converted model are the written model's
    batch = torch.tensor([[5, 77, 256, 257, 40, 3]])
    with torch.no_grad():
        expected = model(input_ids=batch).logits
        got = language_model(subject).logits({"input_ids": batch, "attention_mask": torch.ones_like(batch)})
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # a second use reads the cache (the .complete marker) rather than converting again
    stamp = (subject.path / "model.safetensors").stat().st_mtime_ns
    assert load_subject(str(path)).path == subject.path
    assert (subject.path / "model.safetensors").stat().st_mtime_ns == stamp


def test_gguf_refusals(tmp_path, monkeypatch):
    from workbench.subject import load_subject

    monkeypatch.setenv("ATINUKE_CACHE", str(tmp_path))
    with pytest.raises(UserInputError, match="no such GGUF file"):
        load_subject(str(tmp_path / "absent.gguf"))
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGML" + bytes(64))
    with pytest.raises(UserInputError, match="not a readable GGUF"):
        load_subject(str(bad))
    other = tmp_path / "mamba.gguf"
    writer = gguf.GGUFWriter(str(other), "mamba")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserInputError, match="architecture 'mamba' is not supported"):
        load_subject(str(other))
