"""Issue 30, item 6, "truncation not reported": every input cut to the model's positions is counted (a warning
with the number, and the count in metrics.json / summary.json); a generation that cannot fit is refused."""
from __future__ import annotations

import json
import logging

import pytest

from atinuke.cli import main as atinuke_main
from tests.decoders import gpt2_dir
from tests.test_reliability import _call
from workbench.cli import main as workbench_main


@pytest.fixture(autouse=True)
def _registry_restored():
    from atinuke.tasks.registry import TASKS

    saved = dict(TASKS)
    yield
    TASKS.clear()
    TASKS.update(saved)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory, tiny_atinuke_dir):
    """A fine-tuned user-data run whose 4 of 16 training texts and 2 dev texts are longer than --max-len 32."""
    root = tmp_path_factory.mktemp("long")
    long_text = " ".join(["the market fell sharply"] * 20)  # ~80 words: far beyond 32 tokens
    train = root / "train.csv"
    train.write_text("review,trend\n" + "".join(
        f"{long_text if i < 4 else f'shares fell {i}'},{'up' if i % 2 else 'down'}\n" for i in range(16)))
    dev = root / "dev.csv"
    dev.write_text("review,trend\n" + f"{long_text},up\n{long_text},down\nshort one,up\n")
    out = root / "run"
    assert atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--data", str(train), "--dev-data", str(dev),
                         "--columns", "text=review,label=trend", "--epochs", "1", "--max-len", "32", "--out",
                         str(out)]) == 0
    return out, dev


def test_finetune_counts_the_training_texts_it_cut(long_run, caplog):
    out, _ = long_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_n_truncated"] == 4
    assert metrics["n_truncated"] == 2


def test_finetune_warns_with_the_number(tmp_path, tiny_atinuke_dir, caplog):
    data = tmp_path / "d.csv"
    data.write_text("review,trend\n" + "".join(
        f"{'word ' * 60 if i < 3 else 'short'} {i},{'up' if i % 2 else 'down'}\n" for i in range(12)))
    with caplog.at_level(logging.WARNING):
        assert atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--data", str(data), "--columns",
                             "text=review,label=trend", "--epochs", "1", "--max-len", "16", "--dev-fraction", "0.25",
                             "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    cut = metrics["train_n_truncated"]
    assert cut >= 1 and f"{cut} training example(s) longer than max_len=16 were cut" in caplog.text


def test_attribute_on_a_fine_tuned_user_run_counts_what_its_head_cuts(long_run, tmp_path, caplog):
    out, dev = long_run
    with caplog.at_level(logging.WARNING):
        assert workbench_main(["attribute", "--model", str(out), "--data", str(dev), "--method", "saliency",
                               "--out", str(tmp_path / "a"), "--no-store", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["n_examples"] == 3 and summary["n_truncated"] == 2  # was None
    assert "2 of 3 input(s) are longer than the model's" in caplog.text


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, tiny_tokenizer):
    return gpt2_dir(tmp_path_factory.mktemp("gpt2"), tiny_tokenizer)


def test_generate_beyond_the_positions_is_refused(gpt2, tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("shares rose\n")
    out = tmp_path / "o"
    code, lines = _call(workbench_main, ["attribute", "--model", str(gpt2), "--data", str(texts), "--method",
                                         "saliency", "--target", "generate=1000000", "--out", str(out), "--no-store",
                                         "--no-progress"])
    assert code == 2 and len(lines) == 1, lines
    assert "generate=1000000: " in lines[0] and "reads at most 128 positions, prompt included; generate at most 127" \
        in lines[0], lines
    assert not out.exists()


def test_generation_that_reaches_the_positions_is_counted(gpt2, caplog):
    from workbench.attribution.lm_targets import GenerationTarget
    from workbench.attribution.targets import rows_from_texts
    from workbench.subject import load_subject

    subject = load_subject(gpt2)
    rows = rows_from_texts(subject, ["word " * 120, "shares rose"])
    target = GenerationTarget(n_tokens=20)
    with caplog.at_level(logging.WARNING):
        prepared = target.prepare_rows(subject, rows)
    assert target.n_cut == 1 and "1 of 2 prompt(s) reach the model's 128 positions first" in caplog.text
    first = [i for i in prepared.example_ids if i.startswith("0#")]
    assert len(first) < 20  # the long prompt's generation stopped at the limit; the short one ran all 20
    assert sum(i.startswith("1#") for i in prepared.example_ids) == 20
