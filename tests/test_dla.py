"""``workbench dla``: the tidy table sums to the model's own logit (pre-norm: exact; post-norm: last block only,
with the reason), the top read-out is the tied LM's prediction, and bad input is a one-line error."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from workbench.cli import main
from workbench.subject import load_subject

TEXT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def gpt2_dir(tiny_tokenizer, tmp_path_factory):
    from transformers import AutoModel, GPT2Config

    from atinuke.tokenizer import save_tokenizer

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tiny_tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0)
    path = tmp_path_factory.mktemp("gpt2") / "model"
    model = AutoModel.from_config(config).eval()
    with torch.no_grad():  # biases and gains away from 0 and 1, so every part enters the sum
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else 0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    save_tokenizer(tiny_tokenizer, path)
    return path


def test_dla_cli_on_a_tied_lm_splits_its_top_logit_exactly(gpt2_dir, tmp_path, capsys):
    out = tmp_path / "dla"
    assert main(["dla", "--model", str(gpt2_dir), "--text", TEXT, "--out", str(out)]) == 0
    frame = pd.read_parquet(out / "dla.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert list(frame.columns) == ["component", "layer", "head", "value"]
    # the model's own LM logit, computed apart: GPT-2 ties its LM head to wte, and "top" is the argmax token
    subject = load_subject(gpt2_dir)
    inputs = subject.tokenize([TEXT])
    with torch.no_grad():
        logits = subject.forward(inputs).last_hidden_state[0, -1] @ subject.input_embeddings.weight.T  # [vocab]
    assert summary["position"] == inputs["input_ids"].shape[1] - 1
    assert summary["logit"] == pytest.approx(float(logits.max()), abs=1e-5)
    assert frame["value"].sum() == pytest.approx(summary["logit"], abs=1e-5)
    assert summary["sum_of_parts"] == pytest.approx(summary["logit"], abs=1e-5)
    assert summary["exact"] is True and "pre-norm" in summary["why"]
    heads = frame.dropna(subset=["head"])
    assert len(heads) == 2 * 4 and set(heads["layer"]) == {0, 1}  # every head, with its layer and index
    assert set(frame.loc[frame["component"].str.startswith("MLP"), "layer"]) == {0, 1}
    assert (frame.loc[frame["component"] == "embed", "layer"] == -1).all()
    # a non-empty --out is refused; --overwrite replaces it; bad input is one line
    argv = ["dla", "--model", str(gpt2_dir), "--text", TEXT, "--out", str(out)]
    assert main(argv) == 2 and "already holds files" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--target", "token:the", "--position", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["position"] == 2 and "'the'" in summary["readout"]
    assert summary["sum_of_parts"] == pytest.approx(summary["logit"], abs=1e-5)
    for bad, message in ((["--target", "nonsense"], "--target"), (["--position", "99"], "--position"),
                         (["--target", "token:zzzzqq"], "not one token")):
        assert main(argv[:-1] + [str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad").exists()


def test_dla_cli_on_a_post_norm_model_splits_the_last_block_and_says_why(tiny_atinuke_dir, tmp_path):
    out = tmp_path / "post"
    assert main(["dla", "--model", str(tiny_atinuke_dir), "--text", TEXT, "--target", "random:3", "--position", "0",
                 "--out", str(out)]) == 0
    frame = pd.read_parquet(out / "dla.parquet")
    summary = json.loads((out / "summary.json").read_text())
    subject = load_subject(tiny_atinuke_dir)
    vector = torch.randn(subject.d_model, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = float(subject.forward(subject.tokenize([TEXT])).last_hidden_state[0, 0] @ (vector / vector.norm()))
    assert summary["logit"] == pytest.approx(expected, abs=1e-5)
    assert frame["value"].sum() == pytest.approx(expected, abs=1e-5)
    assert summary["exact"] is False and "post-norm" in summary["why"]
    assert "resid_pre" in set(frame["component"]) and "embed" not in set(frame["component"])
