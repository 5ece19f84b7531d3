"""Activation patching and attribution patching: known answers, agreement, and one-line errors."""
from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr

from atinuke.errors import UserInputError
from workbench.patching import attribution_patching, exact_patching, logit_difference

TEXTS = ["the cat sat on the mat and the dog barked at it", "stocks fell sharply on monday after the report"]
SWAPPED = 2  # the token position the corrupted input changes


@pytest.fixture(scope="module")
def setup(tiny_atinuke_dir):
    from workbench.subject import load_subject

    subject = load_subject(tiny_atinuke_dir)
    clean = subject.tokenize(TEXTS)
    corrupted = {k: v.clone() for k, v in clean.items() if k in ("input_ids", "attention_mask")}
    corrupted["input_ids"][:, SWAPPED] = clean["input_ids"][:, SWAPPED + 3]
    with torch.no_grad():
        direction = (subject.forward(clean).last_hidden_state[:, 0]
                     - subject.forward(corrupted).last_hidden_state[:, 0]).mean(0)

    def metric(output):  # how far the [CLS] state sits along the clean-minus-corrupted direction
        return (output.last_hidden_state[:, 0] @ direction).mean()

    return subject, clean, corrupted, metric


def test_restoring_the_changed_token_at_the_input_restores_everything(setup):
    subject, clean, corrupted, metric = setup
    table = exact_patching(subject, clean, corrupted, metric, component="positions")
    first = table[table["layer"] == 0].set_index("position")["normalized"]
    assert first.loc[SWAPPED] == pytest.approx(1.0, abs=1e-5)  # the only difference, restored before layer 0
    assert first.drop(SWAPPED).abs().max() < 1e-6  # identical positions change nothing
    assert table.attrs["clean"] > table.attrs["corrupted"]


def test_patching_every_head_of_a_layer_at_once_bounds_the_heads(setup):
    subject, clean, corrupted, metric = setup
    heads = exact_patching(subject, clean, corrupted, metric, component="heads")
    assert len(heads) == subject.n_layers * subject.n_heads and set(heads.columns) >= {"layer", "head", "normalized"}
    mlp = exact_patching(subject, clean, corrupted, metric, component="mlp")
    assert len(mlp) == subject.n_layers and mlp["normalized"].abs().max() > 0


@pytest.mark.parametrize("component", ["heads", "positions"])
def test_attribution_patching_ranks_like_exact_patching(setup, component):
    subject, clean, corrupted, metric = setup
    exact = exact_patching(subject, clean, corrupted, metric, component=component)
    estimate = attribution_patching(subject, clean, corrupted, metric, component=component)
    assert spearmanr(exact["effect"], estimate["effect"])[0] >= 0.9
    assert estimate.attrs == exact.attrs  # the same clean and corrupted metrics


def test_eap_ig_differs_from_attribution_patching_but_ranks_alike(setup):
    subject, clean, corrupted, metric = setup
    plain = attribution_patching(subject, clean, corrupted, metric)
    integrated = attribution_patching(subject, clean, corrupted, metric, method="eap_ig", n_steps=16)
    assert not plain["effect"].equals(integrated["effect"])
    assert spearmanr(plain["effect"], integrated["effect"])[0] > 0.5


def test_bad_patching_inputs_are_one_line_errors(setup):
    subject, clean, corrupted, metric = setup
    with pytest.raises(UserInputError, match="unknown component 'neurons'"):
        exact_patching(subject, clean, corrupted, metric, component="neurons")
    with pytest.raises(UserInputError, match="same on the clean and corrupted"):
        exact_patching(subject, clean, clean, metric)
    short = subject.tokenize(["a short one"])
    with pytest.raises(UserInputError, match="differ in shape"):
        attribution_patching(subject, clean, short, metric)
    with pytest.raises(UserInputError, match="unknown method 'acdc'"):
        attribution_patching(subject, clean, corrupted, metric, method="acdc")


def test_logit_difference_metric():
    class Output:
        logits = torch.tensor([[1.0, 3.0, 0.0], [2.0, -1.0, 5.0]])

    assert float(logit_difference(1, 0)(Output())) == pytest.approx(((3 - 1) + (-1 - 2)) / 2)


def test_patch_cli_on_a_task_model(tmp_path, capsys, tiny_atinuke_dir):
    import pandas as pd

    from workbench.cli import main
    from workbench.subject import load_subject

    out = tmp_path / "patch"
    argv = ["patch", "--model", str(tiny_atinuke_dir), "--clean", "the cat sat on the mat", "--corrupted",
            "the dog sat on the mat", "--component", "heads", "--out", str(out)]
    assert main(argv) == 0
    table = pd.read_parquet(out / "patching.parquet")
    subject = load_subject(tiny_atinuke_dir)
    assert set(table["method"]) == {"exact", "attribution", "eap_ig"}
    assert len(table) == 3 * subject.n_layers * subject.n_heads
    assert main(argv) == 2 and "already holds files" in capsys.readouterr().err
    bad = argv[:6] + ["the dog sat on the big red mat"] + argv[7:-1] + [str(tmp_path / "bad")]
    assert main(bad) == 2 and "same length" in capsys.readouterr().err
