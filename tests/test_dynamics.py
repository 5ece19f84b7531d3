"""Training dynamics: known answers of the measures, the planted phase change, the CLI's caching and resume."""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from atinuke.errors import UserInputError
from atinuke.pretrain_checkpoint import log_schedule, save_snapshot
from workbench.dynamics import half_crossing, headline_table, list_snapshots, run_dynamics
from workbench.dynamics_measures import (
    DynamicsConfig,
    effective_rank,
    head_types,
    positional_scores,
    read_conllu_upos,
    repeat_scores,
)


def test_effective_rank_known_answers():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    equal = np.concatenate([q[:, :3].T * 5, -q[:, :3].T * 5])  # 3 orthogonal directions, equal spread
    assert effective_rank(equal) == pytest.approx(3.0, abs=1e-9)
    line = np.outer(rng.normal(size=50), rng.normal(size=8))
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(np.ones((5, 4))) == 0.0


def test_positional_and_repeat_scores_on_planted_patterns():
    offset, length = 1, 5
    t = offset + 2 * length
    prev = np.zeros((t, t))
    prev[0, 0] = 1
    prev[np.arange(1, t), np.arange(t - 1)] = 1  # a perfect previous-token head
    induction = np.zeros((t, t))
    induction[np.arange(t), 0] = 1
    q = offset + length + np.arange(length - 1)
    induction[q, 0] = 0
    induction[q, offset + np.arange(length - 1) + 1] = 1  # second copy attends to the token after the first
    pattern = np.stack([prev, induction])[None, None].repeat(2, axis=1)  # [layers 1, batch 2, heads 2, T, T]
    scores = positional_scores(pattern, np.ones((2, t), bool))
    # the induction head's query 1 attends to [CLS] at 0, its previous position: 1 of 10 queries
    assert scores["prev_token"][0].tolist() == pytest.approx([1.0, 0.1]) and scores["next_token"][0, 0] == 0.0
    rep = repeat_scores(pattern, offset, length)
    assert rep["induction"][0].tolist() == [0.0, 1.0] and rep["duplicate"][0].tolist() == [0.0, 0.0]
    # the previous-token head of the first position still has its row sum of 1 (no leakage into the scores)
    assert pattern.sum(-1).min() == 1.0


def test_half_crossing_and_head_types():
    assert half_crossing([0, 1, 2, 4, 8], [0.0, 0.1, 0.2, 0.7, 1.0]) == 3
    assert half_crossing([0, 1, 2], [10.0, 6.0, 2.0]) == 1  # a falling loss: half of the way down
    assert half_crossing([0, 1], [3.0, 3.0]) is None
    stats = pd.DataFrame({"prev_token": [0.9, 0.1, 0.0], "next_token": [0, 0.6, 0], "attn_cls": [0, 0, 0.2],
                          "attn_sep": [0, 0, 0.1], "attn_punct": [0, 0, 0]})
    assert head_types(stats).tolist() == ["previous", "next", "other"]


def test_conllu_reader_skips_multiword_tokens_and_names_bad_lines(tmp_path):
    good = tmp_path / "a.conllu"
    good.write_text("# sent_id = 1\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n"
                    "2\tn't\tnot\tPART\t_\t_\t1\tadvmod\t_\t_\n\n1\tGo\tgo\tVERB\t_\t_\t0\troot\t_\t_\n")
    assert read_conllu_upos(good, 10) == [(["do", "n't"], ["AUX", "PART"]), (["Go"], ["VERB"])]
    bad = tmp_path / "b.conllu"
    bad.write_text("1\tdo\tdo\n")
    with pytest.raises(UserInputError, match="b.conllu:1"):
        read_conllu_upos(bad, 10)


# ------------------------------------------------------------------------------- the planted phase change

def _train_copy_toy(out: Path, steps: int = 400, length: int = 10, batch: int = 16) -> list[float]:
    """A 2-layer causal Atinuke on [CLS] r r (r: random letters), the setting where an induction head forms
    abruptly (Olsson et al., 2022); snapshots at log-spaced steps. Returns the per-step copying loss (the loss
    on the second copy after its first token, which only an induction mechanism can lower)."""
    from atinuke.config import AtinukeConfig
    from atinuke.model import AtinukeForCausalLM
    from atinuke.tokenizer import train_tokenizer

    tokenizer = train_tokenizer([" ".join(string.ascii_lowercase)] * 4, vocab_size=100)
    specials = set(tokenizer.all_special_ids)
    pool = torch.tensor([i for i in range(len(tokenizer)) if i not in specials])
    torch.manual_seed(0)
    config = AtinukeConfig(vocab_size=len(tokenizer), d_model=64, n_heads=2, n_layers=2, d_ff=128, max_len=64,
                           dropout=0.0, causal=True, pad_token_id=tokenizer.pad_token_id)
    model = AtinukeForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    schedule = set(log_schedule(steps, first=8, ratio=1.25))
    copy_loss = []
    for step in range(steps + 1):
        if step in schedule:
            save_snapshot(out, step, step * batch * (2 * length + 1), model, tokenizer)
        if step == steps:
            break
        r = pool[torch.randint(0, len(pool), (batch, length), generator=generator)]
        ids = torch.cat([torch.full((batch, 1), tokenizer.cls_token_id), r, r], 1)  # [batch, 2 length + 1]
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        per_token = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(),
                                                      reduction="none").view(batch, -1)  # [batch, 2 length]
        optimizer.zero_grad()
        per_token.mean().backward()
        optimizer.step()
        copy_loss.append(float(per_token[:, length + 1:].mean().detach()))
    return copy_loss


def test_planted_induction_phase_change_is_located_within_one_snapshot(tmp_path):
    run = tmp_path / "toy"
    copy_loss = _train_copy_toy(run)
    snapshots = [s.step for s in list_snapshots(run)]
    # The change, found independently from the loss curve: the first step where the smoothed copying loss is
    # half of the way down from its early plateau to its final level.
    smooth = np.convolve(copy_loss, np.ones(10) / 10, mode="valid")
    start, end = np.mean(copy_loss[:50]), np.mean(copy_loss[-20:])
    assert start - end > 1.5, "the toy must show a phase change"
    drop_step = int(np.flatnonzero(smooth <= (start + end) / 2)[0]) + 10  # steps done when the window closes
    expected = int(np.searchsorted(snapshots, drop_step))  # the first snapshot at or after the drop
    table = run_dynamics([run], tmp_path / "out", DynamicsConfig(parts=("repeat",), repeat_length=10, n_texts=4))
    headline = headline_table(table).set_index("metric")
    found = snapshots.index(int(headline.loc["induction", "half_step"]))
    assert abs(found - expected) <= 1, (drop_step, snapshots, found, expected)
    curve = table[table["metric"] == "induction"].groupby("step")["value"].max()
    assert curve.iloc[0] < 0.2 and curve.iloc[-1] > 0.5  # the score itself goes from chance to a clear head
    assert 100 < drop_step < 380  # the change is mid-run, not at the start or the end


# ------------------------------------------------------------------------------------------------- the CLI

WORDS = {"DET": ["the", "a", "every"], "ADJ": ["big", "red", "old"], "NOUN": ["dog", "cat", "house", "market"],
         "VERB": ["sees", "likes", "sells"]}


def _conllu(path: Path, n: int = 40) -> Path:
    """Sentences DET ADJ NOUN VERB DET NOUN of known tags (each word has one tag: a probe of word identity
    is exact, its control task is not)."""
    rng = np.random.default_rng(0)
    lines = []
    for s in range(n):
        tags = ["DET", "ADJ", "NOUN", "VERB", "DET", "NOUN"]
        lines.append(f"# sent_id = {s}")
        for i, tag in enumerate(tags, 1):
            word = WORDS[tag][rng.integers(len(WORDS[tag]))]
            lines.append(f"{i}\t{word}\t{word}\t{tag}\t_\t_\t0\tdep\t_\t_")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_tokenizer) -> Path:
    from atinuke.cli import main
    from atinuke.corpus import load_texts
    from atinuke.tokenizer import save_tokenizer

    root = tmp_path_factory.mktemp("dynamics")
    corpus = root / "ptb.txt"
    corpus.write_text("\n".join(load_texts("ptb", "train")[:400]) + "\n")
    save_tokenizer(tiny_tokenizer, root / "tokenizer")
    out = root / "tiny-run"
    assert main(["pretrain", "--out", str(out), "--preset", "tiny", "--sources", str(corpus), "--tokenizer",
                 str(root / "tokenizer"), "--seq-len", "32", "--batch-size", "4", "--steps", "8", "--warmup", "2",
                 "--eval-max-blocks", "2", "--eval-batch-size", "2", "--checkpoint-every", "0", "--eval-every", "0",
                 "--keep-log-checkpoints", "--log-checkpoint-first", "4"]) == 0
    return out


def _dynamics(run: Path, out: Path, conllu: Path, *extra: str) -> int:
    from workbench.cli import main

    return main(["dynamics", "--run", str(run), "--out", str(out), "--probe-data", str(conllu), "--n-texts", "6",
                 "--max-length", "32", "--probe-sentences", "40", "--sae-width", "32", "--sae-k", "4",
                 "--sae-steps", "20", *extra])


def test_dynamics_cli_measures_every_snapshot_and_resumes(tmp_path, tiny_run, capsys):
    conllu = _conllu(tmp_path / "pos.conllu")
    out = tmp_path / "out"
    assert _dynamics(tiny_run, out, conllu) == 0
    table = pd.read_parquet(out / "dynamics.parquet")
    assert sorted(table["step"].unique()) == [0, 4, 8] and set(table["run"]) == {"tiny-run"}
    assert sorted(table.loc[table["step"] == 8, "tokens"].unique()) == [8 * 4 * 32]
    metrics = set(table["metric"])
    for metric in ("mlm_loss", "probe_accuracy", "probe_control", "probe_selectivity", "entropy", "attn_cls",
                   "prev_token", "next_token", "induction", "duplicate", "lens_kl", "effective_rank", "sae_match"):
        assert metric in metrics, metric
    assert sorted(table.loc[table["metric"] == "sae_match", "step"]) == [4, 8]  # matched to the previous snapshot
    probe = table[table["metric"] == "probe_accuracy"]
    assert sorted(probe["layer"].unique()) == [0, 1, 2] and probe["value"].min() >= 0.95  # word identity: exact
    wide = table[table["metric"].str.startswith("probe_")].pivot_table(index=["step", "layer"], columns="metric",
                                                                          values="value")
    assert np.allclose(wide["probe_selectivity"], wide["probe_accuracy"] - wide["probe_control"])
    assert wide["probe_control"].between(0, 1).all() and wide["probe_control"].nunique() >= 1
    shares = table[table["metric"].str.startswith("share_")].groupby("step")["value"].sum()
    assert np.allclose(shares, 1.0)
    headline = pd.read_csv(out / "headline.csv")
    assert {"mlm_loss", "induction", "probe_selectivity"} <= set(headline["metric"])
    assert (out / "dynamics.html").stat().st_size > 1000

    # Resume: every snapshot is read from the cache, nothing is recomputed.
    cached = sorted((out / "cache").glob("*/step-*.parquet"))
    assert len(cached) == 3
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert _dynamics(tiny_run, out, conllu) == 2  # a non-empty --out needs --resume
    assert "already holds files" in capsys.readouterr().err
    assert _dynamics(tiny_run, out, conllu, "--resume") == 0
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    pd.testing.assert_frame_equal(pd.read_parquet(out / "dynamics.parquet"), table)
    # A lost snapshot is recomputed alone, to the same values (everything is seeded).
    cached[1].unlink()
    assert _dynamics(tiny_run, out, conllu, "--resume") == 0
    assert [p.stat().st_mtime_ns for i, p in enumerate(cached) if i != 1] == [s for i, s in enumerate(stamps) if i != 1]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "dynamics.parquet"), table, rtol=1e-5)


def test_dynamics_cli_refuses_a_run_without_snapshots(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert _dynamics(tmp_path / "run", tmp_path / "out", _conllu(tmp_path / "p.conllu")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--keep-log-checkpoints" in err[0] and not (tmp_path / "out").exists()
