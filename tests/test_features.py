"""Sparse autoencoders: planted dictionaries recovered, exact splicing, bounded reproducible activation
stores, exact resume, the SAELens layout round-trip, the random-model control and the CLI's errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from atinuke.errors import UserInputError
from workbench.features.evaluate import evaluate_sae, randomized_copy, splice
from workbench.features.sae import (
    SAEConfig,
    SparseAutoencoder,
    fraction_variance_explained,
    planted_recovery,
    synthetic_activations,
)
from workbench.features.saelens import export_saelens, import_saelens
from workbench.features.store import build_store
from workbench.features.train import train_sae
from workbench.lm import content_mask, language_model

TEXTS = ["the cat sat on the mat .", "a dog ran in the park and barked .", "stocks fell sharply on monday .",
         "the committee approved the new budget .", "she said that he would come later ."] * 8


def _stream(x: torch.Tensor, batch: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield x[torch.randint(0, len(x), (batch,), generator=generator)]


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_planted_dictionary_is_recovered(kind):
    x, planted = synthetic_activations(20_000, 16, 32, 2, seed=7)  # not the SAE init seed
    config = SAEConfig(d_in=16, width=64, kind=kind, k=2, lr=1e-2, batch_size=256, dead_after=5_000)
    result = train_sae(_stream(x, 256), config, steps=400, tensorboard=False)
    assert planted_recovery(result.sae.W_dec.detach(), planted) >= 0.9
    with torch.no_grad():
        out = result.sae(x[:2000])
    assert fraction_variance_explained(x[:2000], out.reconstruction) > 0.8
    assert torch.allclose(result.sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)  # unit decoder rows


def test_untrained_sae_does_not_recover_the_planted_dictionary():
    _, planted = synthetic_activations(100, 16, 32, 2, seed=7)
    assert planted_recovery(SparseAutoencoder(SAEConfig(d_in=16, width=64, k=2)).W_dec.detach(), planted) < 0.7


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_sparse_decoding_equals_the_dense_product(kind):
    sae = SparseAutoencoder(SAEConfig(d_in=24, width=96, kind=kind, k=5, seed=3)).train()
    x = torch.randn(64, 24)
    fast, dense = sae(x), sae(x, sparse_decode=False)
    assert torch.allclose(fast.reconstruction, dense.reconstruction, atol=1e-5)
    assert torch.allclose(fast.latents, dense.latents, atol=1e-5)
    assert ((fast.latents > 0).sum(-1) <= 5).all() if kind == "topk" else int((fast.latents > 0).sum()) <= 5 * 64
    # The fused path's gradients (winners chosen without gradient, recomputed by gather) equal the dense ones.
    sae.tokens_since_fired[:40] = 10**9  # some dead latents, so the AuxK term is in the loss too
    state = sae.tokens_since_fired.clone()
    fast = sae(x)
    sae.tokens_since_fired.copy_(state)  # a forward pass updates the dead-latent counters
    dense = sae(x, sparse_decode=False)
    assert float(fast.aux.detach()) > 0
    fast_grads = torch.autograd.grad(fast.loss, list(sae.parameters()), allow_unused=True)
    dense_grads = torch.autograd.grad(dense.loss, list(sae.parameters()), allow_unused=True)
    for (name, _), a, b in zip(sae.named_parameters(), fast_grads, dense_grads):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-5), name


def test_parallel_gradient_is_removed():
    sae = SparseAutoencoder(SAEConfig(d_in=8, width=16, k=3))
    sae(torch.randn(32, 8)).loss.backward()
    sae.remove_parallel_gradient()
    assert float((sae.W_dec.grad * sae.W_dec.detach()).sum(1).abs().max()) < 1e-5


def test_bad_settings_are_one_line_errors():
    with pytest.raises(UserInputError, match="unknown SAE kind 'gated'"):
        SAEConfig(d_in=8, kind="gated")
    with pytest.raises(UserInputError, match="k=64 exceeds its width 32"):
        SAEConfig(d_in=8, width=32, k=64)


@pytest.fixture(scope="module")
def subject(tiny_atinuke_dir):
    from workbench.subject import load_subject

    return load_subject(tiny_atinuke_dir)


def test_splicing_a_perfect_reconstruction_changes_nothing(subject):
    batch = subject.tokenize(TEXTS[:4])
    mask = content_mask(batch, subject.tokenizer)
    hook = "blocks.0.hook_resid_post"
    lm = language_model(subject)
    assert lm is not None and not lm.causal
    with torch.no_grad():
        clean, clean_loss = subject.forward(batch).last_hidden_state, lm.loss(batch)
        with splice(subject, hook, lambda rows: rows.clone(), mask):
            same, same_loss = subject.forward(batch).last_hidden_state, lm.loss(batch)
        with splice(subject, hook, torch.zeros_like, mask):
            zeroed = subject.forward(batch).last_hidden_state
    assert float((clean - same).abs().max()) <= 1e-5 and abs(float(clean_loss - same_loss)) <= 1e-5
    assert float((clean - zeroed).abs().max()) > 1e-2  # the splice does reach the model


def test_store_is_bounded_reproducible_and_resumes(subject, tmp_path):
    hook = "blocks.1.hook_resid_post"
    store = build_store(subject, hook, TEXTS, tmp_path / "a", shard_tokens=50, batch_size=4)
    assert len(store.shards) > 3 and max(s["rows"] for s in store.shards) < 50 + 4 * 12  # one text batch over
    build_store(subject, hook, TEXTS, tmp_path / "b", shard_tokens=50, batch_size=4)  # a second build
    for s in store.shards:
        a = np.load(tmp_path / "a" / f"{s['name']}.activations.npy")
        assert np.array_equal(a, np.load(tmp_path / "b" / f"{s['name']}.activations.npy"))
    # Rows match a direct forward pass, special tokens excluded.
    batch = subject.tokenize(TEXTS[:1])
    direct = subject.run_with_cache(batch, [hook])[hook][content_mask(batch, subject.tokenizer)]
    first = store.shard(0)
    assert np.allclose(np.asarray(first.activations[:len(direct)]), direct.numpy(), atol=1e-6)
    assert (np.asarray(first.doc[:len(direct)]) == 0).all()
    # A build killed after two shards resumes to the same store.
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    next_text = 0
    kept = manifest["shards"][:2]
    rows = sum(s["rows"] for s in kept)
    docs = np.concatenate([np.load(tmp_path / "b" / f"{s['name']}.doc.npy") for s in kept])
    next_text = int(docs.max()) + 1
    assert rows == sum(1 for d in docs if d < next_text)
    manifest.update(shards=kept, next_text=next_text, complete=False)
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    resumed = build_store(subject, hook, TEXTS, tmp_path / "b", shard_tokens=50, batch_size=4)
    assert resumed.n_tokens == store.n_tokens
    with pytest.raises(UserInputError, match="other settings"):
        build_store(subject, hook, TEXTS, tmp_path / "b", shard_tokens=99)


def test_batches_cover_each_row_once_per_epoch_and_skip_exactly(subject, tmp_path):
    store = build_store(subject, "blocks.0.hook_resid_post", TEXTS, tmp_path / "s", shard_tokens=40, batch_size=4)
    plan = list(store.plan(32, seed=5, epoch=0))
    seen = [(s, r) for pieces in plan for s, rows in pieces for r in rows.tolist()]
    assert len(plan) == store.batches_per_epoch(32) and len(seen) == len(set(seen)) == 32 * len(plan)
    assert list(store.plan(32, 5, 1))[0][0][1].tolist() != plan[0][0][1].tolist()  # a new order each epoch
    full = list(store.batches(32, seed=5))
    skipped = list(store.batches(32, seed=5, skip=3))
    assert len(skipped) == len(full) - 3 and all(torch.equal(a, b) for a, b in zip(full[3:], skipped))


def test_resumed_training_ends_bit_identical(subject, tmp_path):
    store = build_store(subject, "blocks.1.hook_resid_post", TEXTS, tmp_path / "store", shard_tokens=60)
    config = SAEConfig(d_in=subject.d_model, width=64, k=4, batch_size=32, lr=1e-3)
    whole = train_sae(store, config, steps=30, out=tmp_path / "whole", tensorboard=False)
    train_sae(store, config, steps=30, out=tmp_path / "cut", tensorboard=False, max_steps=13, checkpoint_every=5)
    resumed = train_sae(store, config, steps=30, out=tmp_path / "cut", tensorboard=False, resume=True)
    for name, tensor in whole.sae.state_dict().items():
        assert torch.equal(tensor, resumed.sae.state_dict()[name]), name
    other = SAEConfig(d_in=subject.d_model, width=32, k=4, batch_size=32)
    with pytest.raises(UserInputError, match="other SAE settings"):
        train_sae(store, other, steps=30, out=tmp_path / "cut", resume=True, tensorboard=False)


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu", "jumprelu"])
def test_saelens_layout_round_trips(kind, tmp_path):
    x = torch.randn(200, 12)
    config = SAEConfig(d_in=12, width=40, kind=kind, k=4, batch_size=50, lr=1e-2, hook="blocks.0.hook_resid_post")
    sae = train_sae(_stream(x, 50), config, steps=20, tensorboard=False).sae
    export_saelens(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["d_sae"] == 40 and cfg["hook_name"] == "blocks.0.hook_resid_post" and cfg["hook_layer"] == 0
    loaded = import_saelens(tmp_path / "sae")
    with torch.no_grad():
        assert torch.allclose(sae(x).reconstruction, loaded(x).reconstruction, atol=1e-5)
    with pytest.raises(UserInputError, match="not empty"):
        export_saelens(sae, tmp_path / "sae")


def test_saelens_without_decoder_bias_on_the_input(tmp_path):
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    w_enc, b_enc = torch.randn(6, 10, generator=generator), torch.randn(10, generator=generator)
    w_dec, b_dec = torch.randn(10, 6, generator=generator), torch.randn(6, generator=generator)
    (tmp_path / "s").mkdir()
    save_file({"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": b_dec}, str(tmp_path / "s" / "sae_weights.safetensors"))
    (tmp_path / "s" / "cfg.json").write_text(json.dumps({"architecture": "standard", "apply_b_dec_to_input": False,
                                                         "hook_name": "blocks.0.hook_resid_post"}))
    sae = import_saelens(tmp_path / "s")
    x = torch.randn(5, 6, generator=generator)
    expected = torch.relu(x @ w_enc + b_enc) @ w_dec + b_dec  # SAELens' standard SAE, written out
    assert torch.allclose(sae(x).reconstruction, expected, atol=1e-4)
    (tmp_path / "s" / "sae_weights.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserInputError, match="unreadable safetensors"):
        import_saelens(tmp_path / "s")


def test_random_control_shares_the_architecture_not_the_weights(subject):
    control, control_lm = randomized_copy(subject, seed=0)
    assert control.hook_names == subject.hook_names and control_lm is not None
    trained = dict(subject.encoder.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in control.encoder.named_parameters())
    assert subject.encoder is not control.encoder


def test_cli_trains_with_control_and_writes_feature_tables(tiny_atinuke_dir, tmp_path, capsys):
    from workbench.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 3) + "\n")
    out = tmp_path / "run"
    argv = ["sae", "train", "--model", str(tiny_atinuke_dir), "--hook", "blocks.1.hook_resid_post", "--corpus",
            str(corpus), "--width", "48", "--k", "4", "--batch-size", "64", "--steps", "15", "--max-tokens", "2000",
            "--eval-texts", "8", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sae"]["l0"] <= 4 + 1e-9 and "control" in metrics
    assert metrics["sae"]["loss_kind"].startswith("MLM") and metrics["control"]["loss_kind"].startswith("MLM")
    features = pd.read_parquet(out / "features.parquet")
    contexts = pd.read_parquet(out / "contexts.parquet")
    assert list(features["feature"]) == list(range(48))
    for row in contexts.head(20).itertuples():  # the centre token carries the activation the row reports
        assert json.loads(row.activations)[row.center] == pytest.approx(row.activation, rel=1e-5)
    assert (out / "sae" / "cfg.json").is_file() and (out / "control" / "sae" / "cfg.json").is_file()
    assert (out / "control" / "features.parquet").is_file()  # the control gets feature pages too
    labels = pd.read_parquet(out / "labels.parquet")
    assert set(labels["kind"]) == {"pos", "ner", "dep", "srl"} and {"NOUN", "nsubj", "ARG0"} <= set(labels["label"])
    assert {"top_pos", "pos_precision", "pos_lift", "top_ner", "top_dep", "dep_lift", "top_srl"} <= set(features.columns)
    shares = labels.groupby(["feature", "kind"])["precision"].sum()
    assert np.allclose(shares, 1.0)  # each latent's activations split over the labels of each kind
    assert main(argv) == 2 and "already holds files" in capsys.readouterr().err
    bad = argv[:]
    bad[bad.index("blocks.1.hook_resid_post")] = "blocks.1.hook_resid_psot"
    assert main(bad[:-3] + ["--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "blocks.1.hook_resid_post" in capsys.readouterr().err  # the closest name is suggested
    assert main(["sae", "inspect", "--model", str(tiny_atinuke_dir), "--sae", str(out / "sae"), "--corpus",
                 str(corpus), "--eval-texts", "8", "--max-tokens", "500", "--out", str(tmp_path / "insp"),
                 "--no-progress"]) == 0
    inspected = json.loads((tmp_path / "insp" / "metrics.json").read_text())
    assert inspected["sae"]["fve"] == pytest.approx(metrics["sae"]["fve"], abs=1e-6)


def test_evaluate_counts_dead_latents(subject):
    sae = SparseAutoencoder(SAEConfig(d_in=subject.d_model, width=32, kind="topk", k=2))
    with torch.no_grad():
        sae.b_enc[16:] = -1e4  # half the latents can never win the top-k
    metrics = evaluate_sae(sae, subject, "blocks.0.hook_resid_post", TEXTS[:5])
    assert metrics.dead_fraction >= 0.5 and metrics.l0 == pytest.approx(2.0)


def _trained_sae(subject, hook):
    x = subject.run_with_cache(subject.tokenize(TEXTS[:10]), [hook])[hook].flatten(0, 1)
    return train_sae(_stream(x, 64), SAEConfig(d_in=subject.d_model, width=48, k=4, batch_size=64, lr=1e-2),
                     steps=20, tensorboard=False).sae


def test_feature_edits_keep_the_error_and_move_by_the_decoder_row(subject):
    from workbench.features.intervene import edit_features

    hook = "blocks.0.hook_resid_post"
    sae = _trained_sae(subject, hook)
    batch = subject.tokenize(TEXTS[:3])
    mask = content_mask(batch, subject.tokenizer)
    with torch.no_grad():
        clean = subject.forward(batch).last_hidden_state
        before = subject.run_with_cache(batch, [hook])[hook]
    with edit_features(subject, sae, hook, mask):  # no edit: exactly the model, SAE error kept
        assert torch.allclose(subject.forward(batch).last_hidden_state, clean, atol=1e-5)
    with edit_features(subject, sae, hook, mask, steer={7: 2.5}):
        after = subject.run_with_cache(batch, ["blocks.1.hook_resid_pre"])["blocks.1.hook_resid_pre"]
    assert torch.allclose(after[mask] - before[mask], (2.5 * sae.W_dec[7]).expand(int(mask.sum()), -1), atol=1e-4)
    assert torch.equal(after[~mask], before[~mask])  # special tokens and padding untouched
    active = int(sae.encode(before[mask]).gt(0).sum(0).argmax())
    with edit_features(subject, sae, hook, mask, ablate=[active]):
        assert not torch.allclose(subject.forward(batch).last_hidden_state, clean, atol=1e-4)
    with pytest.raises(UserInputError, match="feature 48 is not a latent"):
        with edit_features(subject, sae, hook, mask, ablate=[48]):
            pass


def test_feature_attribution_is_complete(subject):
    from workbench.features.intervene import feature_attribution

    hook = "blocks.0.hook_resid_post"
    sae = _trained_sae(subject, hook)
    result = feature_attribution(subject, sae, hook, TEXTS[:3],
                                 score=lambda out: out.last_hidden_state[:, 0].pow(2).sum(-1))
    per_position = result.table.groupby(["example", "position"])["attribution"].sum()
    merged = result.residual.set_index(["example", "position"]).join(per_position).fillna({"attribution": 0.0})
    assert np.allclose(merged["attribution"] + merged["error_term"], merged["total"], atol=1e-4)
    assert (result.table["activation"] > 0).all() and len(result.table) > 0


def test_label_statistics_find_a_planted_label():
    from workbench.features.dashboard import label_statistics

    labelled = pd.DataFrame({"pos": ["NOUN", "VERB", "NOUN", "DET", "NOUN", "VERB"],
                             "ner": ["GPE", "O", "O", "O", "GPE", "O"]})
    rows = np.array([0, 2, 4, 1, 3, 5])  # latent 0 fires on the nouns, latent 1 on the rest
    latents = np.array([0, 0, 0, 1, 1, 1])
    counts, summary = label_statistics(labelled, rows, latents, width=3)
    first = summary.set_index("feature").loc[0]
    assert first["top_pos"] == "NOUN" and first["pos_precision"] == 1.0 and first["pos_lift"] == pytest.approx(2.0)
    assert first["top_ner"] == "GPE" and first["ner_precision"] == pytest.approx(2 / 3)
    assert pd.isna(summary.set_index("feature").loc[2, "top_pos"])  # a latent that never fires has no label
    assert counts[(counts["kind"] == "pos") & (counts["feature"] == 1)]["count"].sum() == 3
