"""Issue 30, item 6: "a different model than named" and "tracebacks and late errors" -- each is one line, exit 2,
before anything is written."""
from __future__ import annotations

import json
import shutil

import pytest

from atinuke.cli import main as atinuke_main
from atinuke.encoders import FAMILIES, load_encoder
from atinuke.errors import UserInputError
from tests.test_finetune import squad_file  # noqa: F401  (fixture)
from tests.test_reliability import _call
from workbench.cli import main as workbench_main


def test_the_family_list_is_the_adapters():
    from workbench.models import ADAPTERS

    assert set(FAMILIES) == set(ADAPTERS)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory, tiny_atinuke_dir):
    """A real unsupported family: a tiny T5 built from its transformers config and saved."""
    from transformers import T5Config, T5Model

    from atinuke.tokenizer import load_tokenizer

    path = tmp_path_factory.mktemp("t5") / "t5"
    tokenizer = load_tokenizer(tiny_atinuke_dir)
    T5Model(T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_an_unsupported_family_is_one_line_naming_it(tiny_t5, tmp_path):
    with pytest.raises(UserInputError, match=r"model family 't5' \(an encoder-decoder\) is not supported; supported: "
                                             r"atinuke, bert"):
        load_encoder(tiny_t5)
    code, lines = _call(workbench_main, ["attribute", "--model", str(tiny_t5), "--method", "saliency", "--limit", "1",
                                         "--out", str(tmp_path / "a")])
    assert code == 2 and len(lines) == 1 and "model family 't5'" in lines[0], lines
    assert not (tmp_path / "a").exists()


def test_a_width_mismatch_names_the_tensors_and_shapes(tmp_path, tiny_atinuke_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_atinuke_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["d_ff"] = 96  # the weights have 64
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError) as caught:
        load_encoder(model)
    message = str(caught.value)
    assert "look at the above report" not in message and "\n" not in message
    assert "mis-shaped" in message and "(checkpoint [64" in message and "config.json [96" in message, message


def test_a_model_beside_a_runs_model_dir_is_ambiguous(tmp_path, tiny_atinuke_dir, tiny_t5):
    both = tmp_path / "both"
    shutil.copytree(tiny_atinuke_dir, both)
    shutil.copytree(tiny_atinuke_dir, both / "model")
    with pytest.raises(UserInputError, match=r"holds a model \(config.json\) and a run's model/ beside it"):
        load_encoder(both)
    assert load_encoder(both / "model").path == both / "model"  # what is named is what opens


@pytest.mark.parametrize("flag, value, needle", [
    ("--seed", str(2**64 + 1), "--seed is beyond 64 bits"),
    ("--seed", str(2**40), "--seed must be at most 2**32 - 1"),
    ("--seed", "-1", "--seed must be >= 0"),
    ("--doc-stride", "-5", "--doc-stride must be >= 0, got -5"),
    ("--doc-stride", "100000", "--doc-stride 100000 does not fit the --max-len 64 window"),
    ("--batch-size", str(2**70), "--batch-size is beyond 64 bits"),
])
def test_finetune_numbers_are_refused_before_anything_is_written(tmp_path, tiny_atinuke_dir, squad_file,  # noqa: F811
                                                                  flag, value, needle):
    out = tmp_path / "out"
    code, lines = _call(atinuke_main, ["finetune", "--model", str(tiny_atinuke_dir), "--task", "squad2", "--data",
                                       str(squad_file), "--max-len", "64", "--epochs", "1", "--limit", "4",
                                       "--out", str(out), flag, value])
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines
    assert not out.exists()


def test_a_corrected_doc_stride_rerun_is_not_refused(tmp_path, tiny_atinuke_dir, squad_file):  # noqa: F811
    out = tmp_path / "out"
    argv = ["finetune", "--model", str(tiny_atinuke_dir), "--task", "squad2", "--data", str(squad_file), "--max-len",
            "64", "--epochs", "1", "--limit", "4", "--no-calibrate", "--out", str(out)]
    assert _call(atinuke_main, [*argv, "--doc-stride", "100000"])[0] == 2
    assert atinuke_main([*argv, "--doc-stride", "8"]) == 0


@pytest.mark.parametrize("layers, needle", [("5-2", "the range 5-2 is empty"), (",", "unknown layer ''")])
def test_probes_layers_backwards_is_one_line_before_features(tmp_path, tiny_atinuke_dir, layers, needle):
    from probes.cli import main as probes_main

    out = tmp_path / "p"
    code, lines = _call(probes_main, ["run", "--model", str(tiny_atinuke_dir), "--task", "length", "--max-sentences",
                                      "20", "--seeds", "1", "--layers", layers, "--out", str(out)])
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines
    assert not out.exists()


@pytest.mark.parametrize("method", ["", " , "])
def test_an_empty_method_is_refused(tmp_path, tiny_atinuke_dir, method):
    out = tmp_path / "a"
    code, lines = _call(workbench_main, ["attribute", "--model", str(tiny_atinuke_dir), "--method", method,
                                         "--limit", "1", "--out", str(out)])
    assert code == 2 and len(lines) == 1 and "names no method" in lines[0], lines
    assert not out.exists()
