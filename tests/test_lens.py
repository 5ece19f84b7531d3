"""Logit and tuned lens: the last layer is the model's output, and the tuned lens is never worse."""
from __future__ import annotations

import pytest
import torch

from atinuke.errors import UserInputError
from workbench.lens import evaluate_lens, layer_names, load_tuned_lens, save_tuned_lens, train_tuned_lens
from workbench.lm import language_model

TRAIN = ["the cat sat on the mat .", "a dog ran in the park .", "stocks fell sharply on monday .",
         "the committee approved the budget .", "she said he would come later .", "prices rose in june ."] * 4
HELD = ["the dog sat in the park .", "the budget fell on monday ."]


@pytest.fixture(scope="module")
def subject(tiny_atinuke_dir):
    from workbench.subject import load_subject

    return load_subject(tiny_atinuke_dir)


def test_last_layer_lens_is_the_model_output(subject):
    lm = language_model(subject)
    batch = subject.tokenize(HELD)
    with torch.no_grad():
        hidden = subject.run_with_cache(batch, layer_names(subject))[layer_names(subject)[-1]]
        assert float((lm.unembed(hidden) - lm.logits(batch)).abs().max()) <= 1e-5
    result = evaluate_lens(subject, HELD)
    last = result.layers.iloc[-1]
    assert last["kl_logit_lens"] == pytest.approx(0.0, abs=1e-6) and last["top1_logit_lens"] == 1.0
    assert len(result.layers) == subject.n_layers + 1
    assert set(result.tokens["layer"]) == set(range(subject.n_layers + 1))


def test_tuned_lens_is_at_most_the_logit_lens_on_held_out_text(subject, tmp_path):
    tuned = train_tuned_lens(subject, TRAIN, steps=60, batch_size=8, lr=3e-3)
    result = evaluate_lens(subject, HELD, tuned=tuned)
    layers = result.layers
    assert (layers["kl_tuned_lens"] <= layers["kl_logit_lens"] + 1e-6).all()
    assert layers["kl_tuned_lens"].iloc[0] < layers["kl_logit_lens"].iloc[0]  # it learnt something
    save_tuned_lens(tuned, tmp_path / "lens.safetensors")
    again = load_tuned_lens(tmp_path / "lens.safetensors", subject.n_layers, subject.d_model)
    assert evaluate_lens(subject, HELD, tuned=again).layers.equals(layers)
    with pytest.raises(UserInputError, match="another model shape"):
        load_tuned_lens(tmp_path / "lens.safetensors", subject.n_layers, subject.d_model * 2)


def test_an_encoder_without_lm_head_is_a_one_line_error(minilm):
    from workbench.subject import load_subject

    with pytest.raises(UserInputError, match="no language-model head"):
        evaluate_lens(load_subject(minilm), HELD)


def test_lens_cli(tiny_atinuke_dir, tmp_path, capsys):
    import pandas as pd

    from workbench.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TRAIN + HELD * 3) + "\n")
    argv = ["lens", "--model", str(tiny_atinuke_dir), "--corpus", str(corpus), "--steps", "5", "--eval-texts", "4",
            "--out", str(tmp_path / "lens")]
    assert main(argv) == 0
    layers = pd.read_parquet(tmp_path / "lens" / "lens_layers.parquet")
    assert list(layers["layer"]) == [0, 1, 2] and (tmp_path / "lens" / "tuned_lens.safetensors").is_file()
    assert main(argv) == 2 and "already holds files" in capsys.readouterr().err
    assert main(["lens", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "no such model directory" in capsys.readouterr().err


def test_task_head_lens_ends_at_the_model_prediction(tiny_atinuke_dir):
    from atinuke.encoders import load_encoder
    from atinuke.tasks import get_task
    from atinuke.tasks.heads import build_task_model
    from workbench.lens import task_lens
    from workbench.subject import load_subject

    model = build_task_model(load_encoder(tiny_atinuke_dir), get_task("snli"), dropout=0.0).eval()
    subject = load_subject(model)
    table = task_lens(subject, HELD, text_pairs=["a dog is outside .", "prices fell ."])
    labels = list(model.config.labels)
    last = table[table["layer"] == table["layer"].max()].sort_values("example")
    batch = subject.tokenize(HELD, ["a dog is outside .", "prices fell ."])
    with torch.no_grad():
        probs = subject.forward(batch).logits.softmax(-1)
    for row, p in zip(last.itertuples(), probs):
        assert row.agrees and row.prediction == labels[int(p.argmax())]
        assert getattr(row, f"p_{labels[0]}") == pytest.approx(float(p[0]), abs=1e-6)
    assert set(table["layer"]) == set(range(subject.n_layers + 1))
    rows = table[[f"p_{label}" for label in labels]].sum(axis=1)
    assert rows.to_numpy() == pytest.approx(1.0, abs=1e-5)  # probabilities at every layer
    with pytest.raises(UserInputError, match="not a fine-tuned task model"):
        task_lens(load_subject(tiny_atinuke_dir), HELD)
