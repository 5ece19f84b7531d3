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
