"""``atinuke pretrain``: artifacts, exact resume, torchrun/DDP equivalence, bad input, and the data pipeline."""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

import atinuke  # noqa: F401  (registers the Auto classes)
from atinuke.cli import main
from atinuke.config import PRESETS
from atinuke.corpus import load_texts
from atinuke.lm_data import (
    IGNORE_INDEX,
    BlockSampler,
    UnigramModel,
    eval_batches,
    generator_for,
    mask_tokens,
    pack_blocks,
)
from atinuke.model import AtinukeModel
from atinuke.pretrain import PretrainConfig, lr_lambda
from atinuke.tokenizer import save_tokenizer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    """2,000 real PTB training sentences as a user text file (keeps each run to a second or two)."""
    path = tmp_path_factory.mktemp("corpus") / "ptb2000.txt"
    path.write_text("\n".join(load_texts("ptb", "train")[:2000]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """One shared tokenizer: the WordPiece trainer's id order varies between processes, so exact
    comparisons between runs reuse it (``--tokenizer``)."""
    path = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(tiny_tokenizer, path)
    return path


@pytest.fixture(scope="session")
def quick_flags(corpus_file, tokenizer_dir) -> list[str]:
    return ["--preset", "tiny", "--sources", str(corpus_file), "--tokenizer", str(tokenizer_dir), "--seq-len", "32",
            "--batch-size", "8", "--warmup", "3", "--lr", "3e-3", "--eval-max-blocks", "8", "--eval-batch-size", "8"]


def _pretrain(out: Path, *flags: str) -> int:
    return main(["pretrain", "--out", str(out), *flags])


def _metrics(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, quick_flags) -> Path:
    """A complete 30-step MLM run with checkpoints every 10 steps and evaluation every 10."""
    out = tmp_path_factory.mktemp("runs") / "tiny-mlm"
    assert _pretrain(out, *quick_flags, "--steps", "30", "--checkpoint-every", "10", "--eval-every", "10") == 0
    return out


def test_run_writes_every_artifact(finished_run):
    out = finished_run
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "metrics.csv", "model", "summary.json", "tb"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-20", "step-30"]  # the last two
    for name in ("model/model.safetensors", "model/tokenizer.json", "optimizer.safetensors", "optimizer.json",
                 "rng.safetensors", "trainer_state.json"):
        assert (out / "checkpoints" / "step-30" / name).is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert not [p for p in out.rglob(".*") if p.name != ".gitignore"]  # no temporary leftovers

    rows = _metrics(out)
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert {r["step"] for r in rows if r["val_ppl"]} == {"10", "20", "30"}
    assert all(float(r["tokens"]) == 8 * 32 * int(r["step"]) for r in rows)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["steps"] == 30 and summary["seed"] == 0 and summary["world_size"] == 1
    assert summary["parameters"]["total"] > summary["parameters"]["non_embedding"] > 0
    for key in ("val_ppl", "test_ppl", "val_unigram_ppl", "test_unigram_ppl", "tokens_per_s", "wall_time_s"):
        assert math.isfinite(summary[key]) and summary[key] > 0, key
    assert float(rows[-1]["val_ppl"]) == pytest.approx(summary["val_ppl"])


def test_model_directory_loads_everywhere(finished_run):
    from atinuke.encoders import load_encoder

    encoder = load_encoder(finished_run)
    assert encoder.kind == "atinuke" and encoder.path == finished_run / "model"
    base = AutoModel.from_pretrained(finished_run / "model").eval()
    assert isinstance(base, AtinukeModel)
    ids = encoder.tokenizer(["the market rose sharply"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(base(**ids).last_hidden_state, encoder.model(**ids).last_hidden_state)
    assert encoder.model.config.d_model == PRESETS["tiny"].d_model


def test_loss_decreases(finished_run):
    losses = [float(r["loss"]) for r in _metrics(finished_run)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["final_loss"] == losses[-1]


def test_unigram_perplexity_is_recomputable(finished_run, tokenizer_dir, corpus_file):
    """The unigram baseline in the summary equals an add-one unigram fit here on the same tokens."""
    from atinuke.lm_data import encode_stream, special_token_ids
    from atinuke.tokenizer import load_tokenizer

    summary = json.loads((finished_run / "summary.json").read_text())
    tokenizer = load_tokenizer(tokenizer_dir)
    train = pack_blocks(encode_stream(tokenizer, load_texts(str(corpus_file))), 32, 2)
    valid = pack_blocks(encode_stream(tokenizer, load_texts("ptb", "valid")), 32, 2)[:8]
    (batch,) = eval_batches(valid, "mlm", 8, 0, 4, len(tokenizer), special_token_ids(tokenizer))
    targets = batch.targets("mlm")
    unigram = UnigramModel.fit(train.flatten(), len(tokenizer))
    assert unigram.perplexity(targets) == pytest.approx(summary["val_unigram_ppl"], rel=1e-9)
    assert summary["val_targets"] == targets.numel()


def test_resume_continues_bit_identically(tmp_path, quick_flags):
    # Dropout on, so the restored RNG state matters as much as the weights, optimizer and data position.
    flags = [*quick_flags, "--steps", "10", "--checkpoint-every", "4", "--eval-every", "0", "--dropout", "0.1"]
    assert _pretrain(tmp_path / "straight", *flags) == 0
    assert _pretrain(tmp_path / "split", *flags, "--stop-after", "6") == 0
    assert not (tmp_path / "split" / "model").exists() and not (tmp_path / "split" / "summary.json").exists()
    assert sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir()) == ["step-4", "step-6"]
    assert _pretrain(tmp_path / "split", "--resume") == 0
    straight, split = _metrics(tmp_path / "straight"), _metrics(tmp_path / "split")
    assert [r["step"] for r in split] == [str(s) for s in range(1, 11)]
    for column in ("loss", "grad_norm", "lr"):
        assert [r[column] for r in split] == [r[column] for r in straight], column  # exact decimal strings
    a = json.loads((tmp_path / "straight" / "summary.json").read_text())
    b = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert a["val_ppl"] == b["val_ppl"] and a["test_ppl"] == b["test_ppl"]


def test_clm_run_reports_true_perplexity(tmp_path, quick_flags):
    out = tmp_path / "clm"
    assert _pretrain(out, *quick_flags, "--objective", "clm", "--steps", "12", "--eval-every", "0",
                     "--checkpoint-every", "0") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["perplexity_kind"] == "causal" and summary["model_config"]["causal"] is True
    assert summary["val_targets"] == 8 * 31  # every position after the first of 8 blocks of 32
    losses = [float(r["loss"]) for r in _metrics(out)]
    assert losses[-1] < losses[0]


def test_two_process_torchrun_matches_single_process(tmp_path, quick_flags):
    """DDP (gloo) with 2 x 4 blocks gives the single-process loss of 8 blocks: same data, masks and gradient."""
    common = [*quick_flags, "--steps", "3", "--dropout", "0", "--eval-every", "0", "--checkpoint-every", "0"]
    common[common.index("--batch-size") + 1] = "4"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "atinuke.cli", "pretrain", "--out", str(tmp_path / "ddp"), *common, "--device", "cpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    single = [*common]
    single[single.index("--batch-size") + 1] = "8"
    assert _pretrain(tmp_path / "single", *single) == 0
    ddp, one = _metrics(tmp_path / "ddp"), _metrics(tmp_path / "single")
    assert abs(float(ddp[0]["loss"]) - float(one[0]["loss"])) <= 1e-5
    assert abs(float(ddp[0]["grad_norm"]) - float(one[0]["grad_norm"])) <= 1e-4
    assert abs(float(ddp[-1]["loss"]) - float(one[-1]["loss"])) <= 1e-4
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2


# ------------------------------------------------------------------------------------------- bad input

def _expect_error(capsys, out: Path, flags: list[str], needle: str) -> None:
    capsys.readouterr()
    assert _pretrain(out, *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("atinuke pretrain: error:"), err
    assert needle in err[0], err[0]


@pytest.mark.parametrize("extra, needle", [
    (["--preset", "huge"], "'huge'"),
    (["--objective", "mlmx"], "'mlmx'"),
    (["--seq-len", "129"], "--seq-len 129"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--sources", "ptb,nowhere.txt"], "nowhere.txt: no such text file"),
    (["--sources", "gutenberg"], "'gutenberg'"),
    (["--batch-size", "5000"], "fewer than one global batch"),
])
def test_bad_values_exit_2_with_one_line_and_no_files(tmp_path, capsys, quick_flags, extra, needle):
    out = tmp_path / "run"
    _expect_error(capsys, out, [*quick_flags, *extra], needle)
    assert not out.exists()


def test_unreadable_and_empty_corpus_files(tmp_path, capsys, quick_flags):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    _expect_error(capsys, tmp_path / "a", [*quick_flags, "--sources", str(bad)], "latin1.txt: not UTF-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    _expect_error(capsys, tmp_path / "b", [*quick_flags, "--sources", str(empty)], "empty.txt: the file has no text")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bad_resumes_exit_2_and_change_nothing(tmp_path, capsys, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    _expect_error(capsys, run, ["--resume", "--lr", "0.5"], "--lr 0.5 does not match the checkpoint's 0.003")
    _expect_error(capsys, tmp_path / "fresh", ["--resume"], "no checkpoint to resume from")
    _expect_error(capsys, run, [], "already holds files; pass --resume")

    weights = run / "checkpoints" / "step-30" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated mid-write
    before = _snapshot(run)
    _expect_error(capsys, run, ["--resume"], "model.safetensors: corrupt checkpoint file")
    state = run / "checkpoints" / "step-30" / "trainer_state.json"
    shutil.copy(finished_run / "checkpoints" / "step-30" / "model" / "model.safetensors", weights)
    state.write_text(state.read_text()[:50])
    before = _snapshot(run)
    _expect_error(capsys, run, ["--resume"], "trainer_state.json: corrupt checkpoint file")
    assert _snapshot(run) == before and not (tmp_path / "fresh").exists()


def test_resume_rejects_weights_of_another_model(tmp_path, capsys, finished_run):
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    weights = run / "checkpoints" / "step-30" / "model" / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["atinuke.blocks.0.mlp.W_in.weight"] = torch.zeros(7, 7)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    _expect_error(capsys, run, ["--resume"], "weights do not match")


def test_cli_subprocess_prints_one_line(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(REPO / ".venv" / "bin" / "atinuke"), "pretrain", "--out", str(tmp_path / "x"),
                             "--preset", "tiny", "--seq-len", "4096"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "atinuke pretrain: error: --seq-len 4096 is outside [2, 128] (the tiny preset's max_len)"]
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------- data pipeline

def test_pack_blocks_known_answer():
    blocks = pack_blocks(torch.arange(10, 21), seq_len=4, cls_id=2)
    assert blocks.tolist() == [[2, 10, 11, 12], [2, 13, 14, 15], [2, 16, 17, 18]]  # 19, 20 dropped


def test_block_sampler_visits_every_block_once_per_epoch():
    sampler = BlockSampler(n_blocks=10, global_batch=4, seed=3)
    seen = torch.cat([sampler.indices(g) for g in range(5)])  # 20 items = 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert seen[:10].tolist() != list(range(10))  # shuffled
    assert seen[:10].tolist() != seen[10:].tolist()  # reshuffled per epoch
    assert torch.equal(BlockSampler(10, 4, seed=3).indices(3), sampler.indices(3))  # addressable, resumable


def test_bert_masking_rates_and_determinism():
    blocks = torch.randint(5, 1000, (64, 128), generator=torch.Generator().manual_seed(0))
    blocks[:, 0] = 2  # [CLS]
    blocks[:, 64] = 3  # [SEP]
    batch = mask_tokens(blocks, generator_for(7, 1), mask_id=4, vocab_size=1000, special_ids=[0, 1, 2, 3, 4])
    chosen = batch.labels != IGNORE_INDEX
    assert abs(chosen.float().mean().item() - 0.15 * 126 / 128) < 0.01
    assert not chosen[:, 0].any() and not chosen[:, 64].any()  # specials are never targets
    assert torch.equal(batch.labels[chosen], blocks[chosen])
    assert torch.equal(batch.input_ids[~chosen], blocks[~chosen])  # untouched elsewhere
    replaced_by_mask = (batch.input_ids == 4)[chosen].float().mean().item()
    unchanged = (batch.input_ids == blocks)[chosen].float().mean().item()
    assert abs(replaced_by_mask - 0.8) < 0.02 and abs(unchanged - 0.1 - 0.9 / 995 * 0.1) < 0.02
    assert not ((batch.input_ids < 5) & chosen & (batch.input_ids != 4)).any()  # random ids are ordinary
    again = mask_tokens(blocks, generator_for(7, 1), 4, 1000, [0, 1, 2, 3, 4])
    assert torch.equal(again.input_ids, batch.input_ids) and torch.equal(again.labels, batch.labels)


def test_unigram_add_one_known_answer():
    unigram = UnigramModel.fit(torch.tensor([5, 5, 5, 6]), vocab_size=8)
    # p(5) = (3 + 1) / (4 + 8), p(6) = (1 + 1) / 12
    expected = math.exp(-(math.log(4 / 12) + math.log(2 / 12)) / 2)
    assert unigram.perplexity(torch.tensor([5, 6])) == pytest.approx(expected, rel=1e-12)


def test_learning_rate_schedule():
    factor = lr_lambda(PretrainConfig(out="x", steps=110, warmup=10))
    assert [round(factor(s), 6) for s in (0, 4, 9)] == [round(1 / 11, 6), round(5 / 11, 6), round(10 / 11, 6)]
    assert factor(10) == pytest.approx(1.0)  # peak after warmup
    assert factor(60) == pytest.approx(0.55)  # half-way down the cosine
    assert factor(110) == pytest.approx(0.1) and factor(500) == pytest.approx(0.1)  # floor at 10%


def test_log_schedule_known_answers():
    from atinuke.pretrain import log_schedule

    assert log_schedule(600) == [0, 64, 128, 256, 512, 600]
    assert log_schedule(512) == [0, 64, 128, 256, 512]
    assert log_schedule(20, first=4) == [0, 4, 8, 16, 20]


def test_log_snapshots_survive_resume_exactly(tmp_path, quick_flags):
    from safetensors.torch import load_file

    flags = [*quick_flags, "--steps", "20", "--checkpoint-every", "0", "--eval-every", "0", "--dropout", "0.1",
             "--keep-log-checkpoints", "--log-checkpoint-first", "4"]
    assert _pretrain(tmp_path / "straight", *flags) == 0
    assert _pretrain(tmp_path / "split", *flags, "--stop-after", "10") == 0
    assert sorted(p.name for p in (tmp_path / "split" / "snapshots").iterdir()) == ["step-0", "step-4", "step-8"]
    assert _pretrain(tmp_path / "split", "--resume") == 0
    names = ["step-0", "step-4", "step-8", "step-16", "step-20"]
    for root in ("straight", "split"):
        assert sorted((p.name for p in (tmp_path / root / "snapshots").iterdir()), key=lambda n: int(n[5:])) == names
    for name in names:
        a = load_file(str(tmp_path / "straight" / "snapshots" / name / "model.safetensors"))
        b = load_file(str(tmp_path / "split" / "snapshots" / name / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        meta = json.loads((tmp_path / "split" / "snapshots" / name / "snapshot.json").read_text())
        assert meta["step"] == int(name[5:]) and meta["tokens"] == meta["step"] * 8 * 32
    # The snapshots do not change training: the same losses as a run without them.
    plain = [f for f in flags if f not in ("--keep-log-checkpoints", "--log-checkpoint-first", "4")]
    assert _pretrain(tmp_path / "plain", *plain) == 0
    assert [r["loss"] for r in _metrics(tmp_path / "plain")] == [r["loss"] for r in _metrics(tmp_path / "straight")]
    last = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    final = load_file(str(tmp_path / "straight" / "snapshots" / "step-20" / "model.safetensors"))
    assert all(torch.equal(last[k], final[k]) for k in last)
