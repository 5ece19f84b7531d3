"""--device / --dtype on the workbench commands that load a model, validated once (atinuke.validation), and
Hugging Face model ids read from the local cache; a bfloat16 model's hooked forward is its own plain forward."""
from __future__ import annotations

import pytest
import torch

from atinuke.errors import UserInputError
from atinuke.validation import check_dtype, resolve_device
from tests.decoders import clm_atinuke_dir, gpt2_dir
from workbench.cli import main
from workbench.subject import load_subject

COMMANDS = [["attribute"], ["patch", "--clean", "a b", "--corrupted", "a c"], ["lens"], ["sae", "train", "--hook", "x"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("flags,message", [
    (["--dtype", "float16", "--device", "cpu"], "--dtype float16 on the CPU"),
    (["--dtype", "int8"], "--dtype 'int8': unknown dtype"),
    (["--device", "tpu"], "--device 'tpu': unknown device"),
])
def test_bad_device_or_dtype_is_one_line_exit_2(command, flags, message, tmp_path, capsys):
    argv = [*command, "--model", str(tmp_path / "never-read"), "--out", str(tmp_path / "o"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before any work


def test_dtype_rules():
    assert check_dtype("bfloat16", "cpu") == "bfloat16" and check_dtype("float32", "cpu") == "float32"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserInputError, match="GPU-only"):
            check_dtype("float16", "auto")  # auto is the CPU here


def test_bfloat16_hooked_forward_equals_its_plain_forward(tmp_path, tiny_tokenizer):
    texts = ["the market fell sharply on monday .", "shares rose ."]
    gpt2 = load_subject(gpt2_dir(tmp_path / "g", tiny_tokenizer), dtype="bfloat16")
    assert {p.dtype for p in gpt2.encoder.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        plain = gpt2.forward(texts).last_hidden_state
        cache = gpt2.run_with_cache(texts)  # every name, the attention bridge included: GPT-2's own ops
    assert plain.dtype == torch.bfloat16 and torch.equal(cache.output.last_hidden_state, plain)
    assert torch.equal(cache["ln_final.hook_normalized"], plain)
    clm = load_subject(clm_atinuke_dir(tmp_path / "a", tiny_tokenizer), dtype="bfloat16")
    outside_attention = [n for n in clm.hook_names if "attn_scores" not in n and "pattern" not in n]
    with torch.no_grad():
        plain = clm.forward(texts).last_hidden_state
        cache = clm.run_with_cache(texts, outside_attention)
    assert plain.dtype == torch.bfloat16 and torch.equal(cache.output.last_hidden_state, plain)
    assert torch.equal(cache["ln_final.hook_normalized"], plain)


def test_model_ids_come_from_the_local_cache(tmp_path, tiny_tokenizer, monkeypatch, capsys):
    source = gpt2_dir(tmp_path / "src", tiny_tokenizer)
    cache = tmp_path / "hub"
    repo = cache / "models--tiny-org--tiny-gpt2"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    subject = load_subject("tiny-org/tiny-gpt2")
    assert subject.path == snapshot and subject.causal
    reference = load_subject(source)
    with torch.no_grad():
        assert torch.equal(subject.forward("shares rose").last_hidden_state,
                           reference.forward("shares rose").last_hidden_state)
    capsys.readouterr()
    assert main(["lens", "--model", "tiny-org/not-cached", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown model 'tiny-org/not-cached'" in err and "HF_HUB_OFFLINE is set" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("family", ["gpt2", "atinuke"])
def test_device_map_auto_loads_through_accelerate_and_hooks_stay_exact(tmp_path, tiny_tokenizer, monkeypatch,
                                                                        family):
    """With several GPUs visible, --device auto loads with device_map="auto" (accelerate places whole blocks; here
    the one CPU is all there is, so every weight lands there); the workbench's hooks then see the same forward as
    a model loaded without a map."""
    import transformers

    from atinuke.model import AtinukeModel

    path = gpt2_dir(tmp_path, tiny_tokenizer) if family == "gpt2" else clm_atinuke_dir(tmp_path, tiny_tokenizer)
    plain = load_subject(path, device="cpu")
    seen: list = []
    owner = transformers.AutoModel if family == "gpt2" else AtinukeModel
    original = owner.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("device_map"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(owner, "from_pretrained", classmethod(spy))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # "several GPUs" (none is available: all on CPU)
    mapped = load_subject(path, device="auto")
    assert seen == ["auto"]
    assert {p.device.type for p in mapped.encoder.parameters()} == {"cpu"}
    batch = mapped.tokenize(["the market fell sharply on monday .", "shares rose ."])
    with torch.no_grad():
        reference = plain.forward(batch).last_hidden_state
        cache = mapped.run_with_cache(batch, ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern"])
    assert (cache.output.last_hidden_state - reference).abs().max().item() <= 1e-6
    rows = cache["blocks.1.attn.hook_pattern"].sum(-1).transpose(1, 2)[batch["attention_mask"].bool()]
    assert (rows - 1).abs().max() <= 1e-5  # [real queries, heads]: each row a distribution
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # one device: no map
    load_subject(path, device="auto")
    assert seen == ["auto", None]


def test_an_unknown_device_map_is_one_line(tmp_path, tiny_tokenizer):
    from atinuke.encoders import load_encoder

    with pytest.raises(UserInputError, match="device_map 'balanced_low_0': only 'auto'"):
        load_encoder(gpt2_dir(tmp_path, tiny_tokenizer), device_map="balanced_low_0")
