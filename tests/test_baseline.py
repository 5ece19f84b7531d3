"""The same-budget BERT baseline and the Atinuke ablation switches (issue 10)."""
from __future__ import annotations

import json

import pytest
import torch

from atinuke.baseline import bert_equivalent_config, build_bert_baseline, copy_bert_into_atinuke
from atinuke.cli import main
from atinuke.config import AtinukeConfig, preset_config
from atinuke.model import AtinukeForMaskedLM, AtinukeModel, count_parameters, hook_point_names, sinusoidal_table
from tests.test_pretrain import _metrics, corpus_file, quick_flags, tokenizer_dir  # noqa: F401  (fixtures)

VOCAB = 700


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_atinuke_in_bert_layout_has_exactly_berts_parameters(preset):
    config = preset_config(preset, vocab_size=VOCAB)
    bert = sum(p.numel() for p in build_bert_baseline(config).parameters())  # tied decoder listed once
    assert count_parameters(AtinukeForMaskedLM(bert_equivalent_config(config))).total == bert
    # The paper's switches alone (learned positions, no scale, post-norm) leave out exactly BERT's three
    # extras: 2 segment embeddings, the embedding layer norm and the MLM head transform (dense + layer norm).
    d = config.d_model
    ablated = AtinukeConfig(**{**config.to_dict(), "positions": "learned", "embed_scale": "none"})
    extras = 2 * d + 2 * d + (d * d + d) + 2 * d
    assert count_parameters(AtinukeForMaskedLM(ablated)).total == bert - extras
    # The sinusoidal table is not a parameter: learned positions add exactly max_len x d.
    paper = count_parameters(AtinukeForMaskedLM(config)).total
    assert count_parameters(AtinukeForMaskedLM(ablated)).total - paper == config.max_len * d


def test_atinuke_in_bert_layout_computes_berts_function():
    torch.manual_seed(0)
    config = preset_config("tiny", vocab_size=VOCAB, dropout=0.0)
    bert = build_bert_baseline(config).eval()
    atinuke = AtinukeForMaskedLM(bert_equivalent_config(config)).eval()
    copy_bert_into_atinuke(bert, atinuke)
    ids = torch.randint(5, VOCAB, (3, 21))
    mask = torch.ones_like(ids)
    mask[0, 15:] = 0
    segments = (torch.arange(21) > 10).long().expand(3, -1)
    expected = bert(ids, attention_mask=mask, token_type_ids=segments).logits
    got = atinuke(ids, attention_mask=mask, token_type_ids=segments).logits
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=2e-5, rtol=1e-5)
    # The labels-only shortcut gives BERT's own loss exactly.
    labels = torch.full_like(ids, -100)
    labels[:, [2, 7]] = ids[:, [2, 7]]
    torch.testing.assert_close(bert(ids, labels=labels, logits_at_labels_only=True).loss, bert(ids, labels=labels).loss)


def test_each_switch_changes_only_its_part():
    torch.manual_seed(0)
    base = AtinukeConfig(vocab_size=100, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=12, dropout=0.0)
    ids = torch.randint(1, 100, (1, 12))
    model = AtinukeModel(base).eval()
    with torch.no_grad():
        # Known answer of the paper's input layer: E(x) sqrt(d) + P.
        want = model.embed.token(ids) * 4.0 + sinusoidal_table(12, 16)
        torch.testing.assert_close(model.embed(ids), want)
        for change in ({"embed_scale": "none"}, {"positions": "learned"}, {"norm_placement": "pre"}):
            other = AtinukeModel(AtinukeConfig(**{**base.to_dict(), **change})).eval()
            missing, unexpected = other.load_state_dict(model.state_dict(), strict=False)
            assert not unexpected
            if change == {"embed_scale": "none"}:
                torch.testing.assert_close(other.embed(ids), model.embed.token(ids) + sinusoidal_table(12, 16))
            if change == {"positions": "learned"}:
                assert missing == ["embed.position.weight"]
            # The paper's hook names survive every switch (golden lists stay valid).
            assert hook_point_names(other) == hook_point_names(model)
    with pytest.raises(ValueError, match="positions"):
        AtinukeConfig(positions="rotary")
    with pytest.raises(ValueError, match="embed_scale"):
        AtinukeConfig(embed_scale="2")


def test_bert_arm_pretrains_resumes_and_loads_like_atinuke(tmp_path, quick_flags):  # noqa: F811
    flags = [*quick_flags, "--arch", "bert", "--steps", "8", "--checkpoint-every", "4", "--eval-every", "0"]
    assert main(["pretrain", "--out", str(tmp_path / "straight"), *flags]) == 0
    assert main(["pretrain", "--out", str(tmp_path / "split"), *flags, "--stop-after", "4"]) == 0
    assert main(["pretrain", "--out", str(tmp_path / "split"), "--resume"]) == 0
    assert [r["loss"] for r in _metrics(tmp_path / "split")] == [r["loss"] for r in _metrics(tmp_path / "straight")]
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["arch"] == "bert" and summary["model_config"]["model_type"] == "bert"
    assert summary["val_ppl"] > 1.0
    config = json.loads((tmp_path / "straight" / "model" / "config.json").read_text())
    assert config["hidden_size"] == 128 and config["num_hidden_layers"] == 2 and config["intermediate_size"] == 512
    from atinuke.encoders import load_encoder

    encoder = load_encoder(tmp_path / "straight")
    assert encoder.kind == "hf"
    # Same parameter count as the Atinuke run would have in BERT's layout.
    atinuke_like = AtinukeForMaskedLM(bert_equivalent_config(preset_config("tiny", vocab_size=config["vocab_size"])))
    assert summary["parameters"]["total"] == count_parameters(atinuke_like).total


@pytest.mark.parametrize("extra, needle", [
    (["--arch", "gpt"], "--arch 'gpt' is not one of atinuke, bert"),
    (["--arch", "bert", "--objective", "clm"], "--arch bert is an encoder"),
    (["--arch", "bert", "--positions", "learned"], "--positions is an Atinuke switch"),
    (["--positions", "rotary"], "--positions 'rotary'"),
    (["--norm-placement", "middle"], "--norm-placement 'middle'"),
])
def test_bad_architecture_flags_exit_2(tmp_path, capsys, quick_flags, extra, needle):  # noqa: F811
    out = tmp_path / "run"
    assert main(["pretrain", "--out", str(out), *quick_flags, *extra]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_ablation_flags_reach_the_saved_model(tmp_path, quick_flags):  # noqa: F811
    out = tmp_path / "ablate"
    assert main(["pretrain", "--out", str(out), *quick_flags, "--steps", "2", "--eval-every", "0",
                 "--checkpoint-every", "0", "--positions", "learned", "--norm-placement", "pre",
                 "--embed-scale", "none"]) == 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert (config["positions"], config["norm_placement"], config["embed_scale"]) == ("learned", "pre", "none")
    assert json.loads((out / "summary.json").read_text())["arch"] == "atinuke"
