"""SAE latents as units: planted error-predictive latents become the top error cohort, planted shared and
model-specific latents are matched and reported, feature attribution equals activation times the decoder
direction's effect, and dependency/role labels find a planted nsubj latent."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from atinuke.errors import UserInputError
from workbench.features.sae import SAEConfig, SparseAutoencoder
from workbench.features.units import example_activations, feature_signals, match_features, separating_features
from workbench.lm import content_mask, language_model

TEXTS = ["the cat sat on the mat .", "a dog ran in the park and barked .", "stocks fell sharply on monday .",
         "the committee approved the new budget .", "she said that he would come later ."]
HOOK = "blocks.0.hook_resid_post"


def _sparse(rng: np.random.Generator, n: int, width: int, rate: float = 0.3) -> np.ndarray:
    return (rng.random((n, width)) < rate) * rng.uniform(0.5, 2.0, (n, width))


def _predictions(correct: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n = len(correct)
    return pd.DataFrame({"id": [f"x{i}" for i in range(n)], "task": "sst2", "model": "m", "gold": "pos",
                         "prediction": np.where(correct, "pos", "neg"), "score": 0.9, "correct": correct,
                         "meta_length": rng.integers(3, 30, n)})


def test_a_latent_firing_exactly_on_the_failures_is_the_top_cohort():
    from workbench.errors import error_cohorts

    rng = np.random.default_rng(3)
    correct = rng.random(200) > 0.3
    activations = _sparse(rng, 200, 24)
    activations[:, 13] = np.where(correct, 0.0, rng.uniform(0.5, 2.0, 200))  # planted: fires iff the model fails
    top = separating_features(activations, ~correct, k=3)
    assert top.loc[0, "feature"] == 13 and top.loc[0, "auroc"] == 1.0
    assert top.loc[0, "rate_in"] == 1.0 and top.loc[0, "rate_out"] == 0.0
    assert (np.abs(top["auroc"].iloc[1:] - 0.5) < 0.2).all()  # the random latents separate little
    signals = feature_signals(activations, [f"x{i}" for i in range(200)], correct, k=3)
    assert list(signals.columns)[:2] == ["id", "feature_13_active"]
    assert (signals["feature_13_active"].to_numpy() == ~correct).all()
    tree = error_cohorts(_predictions(correct, rng), signals=signals, max_depth=2, min_samples_leaf=5)
    worst = tree.cohorts().iloc[0]
    assert worst["path"] == "signal_feature_13_active = True"
    assert worst["error_rate"] == 1.0 and worst["error_coverage"] == 1.0
    assert tree.importances.index[0] == "signal_feature_13_active" and tree.importances.iloc[0] == 1.0
    numeric = feature_signals(activations, [f"x{i}" for i in range(200)], correct, k=1, values=True)
    assert list(numeric.columns) == ["id", "feature_13"] and np.array_equal(numeric["feature_13"], activations[:, 13])
    tree = error_cohorts(_predictions(correct, rng), signals=numeric, max_depth=1, min_samples_leaf=5)
    assert tree.cohorts().iloc[0]["path"].startswith("signal_feature_13 > ") and tree.cohorts().iloc[0]["error_rate"] == 1.0


def test_separating_features_refuses_a_one_sided_group():
    with pytest.raises(UserInputError, match="both sides"):
        separating_features(np.ones((4, 2)), [True] * 4)
    assert list(feature_signals(np.ones((4, 2)), list("abcd"), [True] * 4).columns) == ["id"]


def test_planted_shared_latents_match_and_model_specific_ones_are_unmatched():
    rng = np.random.default_rng(5)
    shared = _sparse(rng, 400, 6)
    only_a, only_b = _sparse(rng, 400, 1), _sparse(rng, 400, 1)
    permutation = [4, 0, 5, 2, 1, 3]
    a = np.hstack([shared, only_a, np.zeros((400, 1))])  # A: 6 shared, latent 6 its own, latent 7 dead
    b = np.hstack([only_b, 3.0 * shared[:, permutation]])  # B: latent 0 its own, then the shared ones, rescaled
    match = match_features(a, b, threshold=0.5)
    pairs = match.pairs.set_index("feature_a")
    for j, source in enumerate(permutation):
        assert pairs.loc[source, "feature_b"] == j + 1
        assert pairs.loc[source, "correlation"] == pytest.approx(1.0, abs=1e-12)
    assert match.only_a == [6] and match.only_b == [0]  # the dead latent is not "lacking" anything
    assert match.best_a.loc[6, "correlation"] < 0.2 and not match.best_a.loc[6, "matched"]
    assert match.best_a.loc[:5, "matched"].all()
    with pytest.raises(UserInputError, match="same units"):
        match_features(a, b[:10])


@pytest.fixture(scope="module")
def subject(tiny_atinuke_dir):
    from workbench.subject import load_subject

    return load_subject(tiny_atinuke_dir)


@pytest.fixture(scope="module")
def sae(subject):
    return SparseAutoencoder(SAEConfig(d_in=subject.d_model, width=48, k=4, seed=2, hook=HOOK)).eval()


def test_example_activations_pool_the_content_tokens(subject, sae):
    batch = subject.tokenize(TEXTS)
    mask = content_mask(batch, subject.tokenizer)
    with torch.no_grad():
        x = subject.run_with_cache(batch, [HOOK])[HOOK].float()  # [b, pos, d]
        latents = sae.encode(x.flatten(0, 1)).view(*mask.shape, -1)  # [b, pos, width]
    for pool in ("max", "mean", "last"):
        pooled = example_activations(subject, sae, HOOK, TEXTS, pool=pool, batch_size=2)
        for i in range(len(TEXTS)):
            rows = latents[i][mask[i]]
            expected = {"max": rows.max(0).values, "mean": rows.mean(0), "last": rows[-1]}[pool]
            assert np.allclose(pooled[i], expected.numpy(), atol=1e-5), pool
    mixed = example_activations(subject, sae, HOOK, TEXTS[:2], text_pairs=[None, TEXTS[2]])
    assert np.allclose(mixed[0], example_activations(subject, sae, HOOK, TEXTS[:1])[0], atol=1e-6)
    assert np.allclose(mixed[1], example_activations(subject, sae, HOOK, TEXTS[1:2], [TEXTS[2]])[0], atol=1e-6)
    assert not np.allclose(mixed[1], example_activations(subject, sae, HOOK, TEXTS[1:2])[0])  # the pair is read
    with pytest.raises(UserInputError, match="unknown pooling"):
        example_activations(subject, sae, HOOK, TEXTS, pool="first")


def test_internal_signals_find_the_planted_failures_through_the_model(subject, sae):
    from workbench.errors import internal_signals

    pooled = example_activations(subject, sae, HOOK, TEXTS * 4)
    live = np.flatnonzero(((pooled > 0).mean(0) > 0.2) & ((pooled > 0).mean(0) < 0.8))
    planted = int(live[0])
    correct = ~(pooled[:, planted] > 0)  # the model "fails" exactly where this latent fires
    table = _predictions(correct, np.random.default_rng(0)).assign(text=TEXTS * 4)
    signals = internal_signals(subject, table, attribution=False, sae=sae, n_features=3)
    assert {"id", "attention_entropy", f"feature_{planted}_active"} <= set(signals.columns)
    assert (signals[f"feature_{planted}_active"].to_numpy() == ~correct).all()


def test_the_same_dictionary_on_the_same_model_matches_itself(subject, sae):
    from workbench.compare import compare_features, word_feature_activations

    activations, words = word_feature_activations(subject, sae, HOOK, TEXTS)
    assert words == " ".join(TEXTS).split() and activations.shape == (len(words), 48)
    match = compare_features(subject, sae, HOOK, subject, sae, HOOK, TEXTS)
    live = match.best_a[match.best_a["frequency_a"] > 0]
    assert np.allclose(live["correlation"], 1.0, atol=1e-6) and match.only_a == [] and match.only_b == []
    other = SparseAutoencoder(SAEConfig(d_in=subject.d_model, width=48, k=4, seed=9)).eval()
    different = compare_features(subject, sae, HOOK, subject, other, HOOK, TEXTS, threshold=0.9)
    assert different.only_a  # another random dictionary lacks some of this one's latents


def test_feature_attribution_is_activation_times_the_decoder_directions_effect(subject, sae):
    from workbench.features.intervene import edit_features, feature_attribution, token_score

    lm = language_model(subject)
    assert lm is not None
    text = TEXTS[4]
    batch = subject.tokenize([text])
    position = 2
    target = int(batch["input_ids"][0, position])
    score = token_score(lm, position, target)
    result = feature_attribution(subject, sae, HOOK, [text], score=score)
    at = result.table[result.table["position"] == 1]  # the latents of the first content token
    assert len(at) > 0
    only = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
    only[0, 1] = True  # steer at that one position: the score moves by eps x (W_dec[f] . gradient)
    eps = 0.25  # large enough to rise above float32 rounding; the central difference is exact to O(eps^2)
    for row in at.itertuples():
        moved = []
        for sign in (1.0, -1.0):
            with edit_features(subject, sae, HOOK, only, steer={int(row.feature): sign * eps}):
                moved.append(float(score(subject.forward(batch))[0]))
        slope = (moved[0] - moved[1]) / (2 * eps)  # central difference along the decoder row
        assert row.attribution == pytest.approx(row.activation * slope, rel=2e-2, abs=1e-5)


def test_feature_effect_of_no_edit_is_zero_and_of_ablation_is_signed(subject, sae):
    from workbench.features.intervene import feature_attribution, feature_effect, token_score

    lm = language_model(subject)
    score = token_score(lm, 2, int(subject.tokenize([TEXTS[0]])["input_ids"][0, 2]))
    none = feature_effect(subject, sae, HOOK, TEXTS[:2], score)
    assert np.allclose(none["change"], 0.0, atol=1e-5)
    table = feature_attribution(subject, sae, HOOK, [TEXTS[0]], score=score).table
    top = table.groupby("feature")["attribution"].sum().abs().idxmax()
    ablated = feature_effect(subject, sae, HOOK, [TEXTS[0]], score, ablate=[int(top)])
    # To first order, removing a latent everywhere moves the score by minus its summed attribution.
    expected = -table[table["feature"] == top]["attribution"].sum()
    assert np.sign(ablated.loc[0, "change"]) == np.sign(expected)


def test_a_latent_on_exactly_the_nsubj_tokens_has_dependency_precision_one(subject):
    from workbench.features.dashboard import label_search, label_statistics, token_labels

    texts = ["she said that he would come later .", "the company sold the new shares .",
             "the plan was rejected by the board ."]
    batch = subject.tokenize(texts)
    mask = content_mask(batch, subject.tokenizer)
    doc, pos = (t.numpy() for t in mask.nonzero(as_tuple=True))
    labelled = token_labels(subject.tokenizer, texts, doc, pos)
    if labelled is None:
        pytest.skip("spaCy's model is not installed")
    words = subject.tokenizer.convert_ids_to_tokens(batch["input_ids"][mask].tolist())
    by_word = dict(zip(words, zip(labelled["dep"], labelled["srl"])))
    assert by_word["she"] == ("nsubj", "ARG0") and by_word["company"] == ("nsubj", "ARG0")
    assert by_word["would"][1] == "ARGM-MOD" and by_word["said"][1] == "V"
    assert by_word["shares"] == ("dobj", "ARG1") and by_word["plan"] == ("nsubjpass", "ARG1")
    assert by_word["board"][1] == "ARG0"  # the object of the passive's "by"
    nsubj = np.flatnonzero(labelled["dep"].to_numpy() == "nsubj")
    other = np.flatnonzero(labelled["dep"].to_numpy() != "nsubj")[:5]
    rows = np.concatenate([nsubj, other])  # latent 0 fires exactly on the nsubj tokens, latent 1 on others
    latents = np.array([0] * len(nsubj) + [1] * len(other))
    counts, summary = label_statistics(labelled, rows, latents, width=2)
    first = summary.set_index("feature").loc[0]
    assert first["top_dep"] == "nsubj" and first["dep_precision"] == 1.0
    assert first["dep_lift"] == pytest.approx(len(labelled) / len(nsubj))
    assert first["top_srl"] == "ARG0" and first["srl_precision"] == 1.0
    found = label_search(counts, "NSUBJ")
    assert found.loc[0, "feature"] == 0 and found.loc[0, "precision"] == 1.0 and 1 not in set(found["feature"])
    assert label_search(counts, "no-such-label").empty


def test_cli_compare_matches_a_dictionary_with_itself_and_refuses_a_full_out(subject, sae, tiny_atinuke_dir,
                                                                             tmp_path, capsys):
    import json

    from workbench.cli import main
    from workbench.features.saelens import export_saelens

    export_saelens(sae, tmp_path / "run" / "sae")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 4) + "\n")
    argv = ["sae", "compare", "--model-a", str(tiny_atinuke_dir), "--sae-a", str(tmp_path / "run"), "--model-b",
            str(tiny_atinuke_dir), "--sae-b", str(tmp_path / "run" / "sae"), "--corpus", str(corpus),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["matched_a"] == 1.0 and summary["matched_b"] == 1.0 and summary["only_a"] == []
    assert summary["hook_a"] == HOOK and summary["n_words"] > 0
    pairs = pd.read_parquet(tmp_path / "out" / "pairs.parquet")
    assert len(pairs) == 48 and "have a match" in capsys.readouterr().out
    assert main(argv) == 2 and "already holds files" in capsys.readouterr().err
