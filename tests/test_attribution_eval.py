"""``workbench attribute --evaluate``: the stored faithfulness and attention tables, checked against known answers."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.attribution.evaluate import EVALUATION_COLUMNS, EVALUATION_FILES
from workbench.cli import main

METHODS = ("integrated_gradients", "saliency", "attention")
N_EXAMPLES, N_RANDOMIZED, N_BOOT = 6, 3, 50


@pytest.fixture(scope="module")
def snli_model(tmp_path_factory, tiny_atinuke_dir):
    """An untrained, seeded tiny SNLI task model saved as a model directory (task_model.json)."""
    from atinuke.encoders import load_encoder
    from atinuke.tasks import get_task
    from atinuke.tasks.heads import build_task_model, save_task_model

    torch.manual_seed(0)
    model = build_task_model(load_encoder(tiny_atinuke_dir), get_task("snli"), dropout=0.0).eval()
    path = tmp_path_factory.mktemp("snli_model") / "model"
    save_task_model(model, path)
    return path


def _argv(model, out, store, *extra, methods=",".join(METHODS)):
    return ["attribute", "--model", str(model), "--task", "snli", "--method", methods, "--limit", str(N_EXAMPLES),
            "--n-steps", "4", "--out", str(out), "--store", str(store), "--no-progress", *extra]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, snli_model):
    """One ``--evaluate`` run of three methods on the first SNLI diagnostic examples."""
    root = tmp_path_factory.mktemp("evaluated")
    out, store = root / "out", root / "store"
    code = main(_argv(snli_model, out, store, "--evaluate", "--n-boot", str(N_BOOT),
                      "--randomization-limit", str(N_RANDOMIZED)))
    assert code == 0
    return out, store


@pytest.fixture(scope="module")
def inputs(snli_model):
    from atinuke.tasks import load_task_data
    from atinuke.tasks.heads import load_task_model
    from workbench.subject import load_subject

    model = load_task_model(snli_model)
    return model, load_subject(model), load_task_data("snli", "diag", "dev")[:N_EXAMPLES]


def _read(out, name):
    return pd.read_parquet(out / EVALUATION_FILES[name])


def test_every_table_is_written_with_its_documented_columns(evaluated):
    out, _ = evaluated
    for name, filename in EVALUATION_FILES.items():
        assert tuple(_read(out, name).columns) == EVALUATION_COLUMNS[name], name
    evaluation = json.loads((out / "summary.json").read_text())["evaluation"]
    assert evaluation["files"] == list(EVALUATION_FILES.values()) and evaluation["skipped"] == {}
    assert evaluation["n_examples"] == {"faithfulness": N_EXAMPLES, "curves": N_EXAMPLES, "agreement": N_EXAMPLES,
                                        "randomization": N_RANDOMIZED, "attention_heads": N_EXAMPLES, "rollout": 1}
    assert evaluation["randomization_method"] == "integrated_gradients" and evaluation["n_boot"] == N_BOOT
    assert evaluation["seconds"] >= 0 and set(evaluation["seconds_per_analysis"]) == set(EVALUATION_FILES)


def test_faithfulness_is_exactly_faithfulness_summary(evaluated, inputs):
    from workbench.attribution import Attribution
    from workbench.faithfulness import faithfulness_summary

    out, _ = evaluated
    table = _read(out, "faithfulness")
    metrics = {"comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc", "token_f1", "auprc"}
    assert set(zip(table["method"], table["metric"])) == {(m, k) for m in METHODS for k in metrics}
    assert len(table) == len(METHODS) * len(metrics) and (table["task"] == "snli").all()
    assert ((table["ci_low"] <= table["mean"] + 1e-12) & (table["mean"] <= table["ci_high"] + 1e-12)).all()
    assert (table.loc[table["metric"] == "comprehensiveness", "n"] == N_EXAMPLES).all()
    # The stored table reuses the deletion/insertion curves; it must equal the reference function's.
    _, subject, examples = inputs
    attribution = Attribution.read_parquet(out / "attributions.parquet")
    expected = faithfulness_summary(subject, examples, attribution, None, n_boot=N_BOOT, seed=0)
    pd.testing.assert_frame_equal(table, expected)


def test_curves_start_and_end_at_the_full_input_probability(evaluated, inputs):
    from workbench.figures import curves_figure

    out, _ = evaluated
    curves = _read(out, "curves")
    model, _, examples = inputs
    with torch.no_grad():
        logits = model(**model.encode(examples).model_inputs(with_targets=False)).logits
    full = float(logits.softmax(-1).max(-1).values.mean())  # f(x): the predicted class's probability
    assert list(dict.fromkeys(curves["method"])) == list(METHODS)
    for method, group in curves.groupby("method"):
        np.testing.assert_allclose(group["fraction"], np.linspace(0, 1, 11))
        assert group["deletion"].iloc[0] == pytest.approx(full, abs=1e-5)  # nothing deleted yet
        assert group["insertion"].iloc[-1] == pytest.approx(full, abs=1e-5)  # everything restored
        assert (group["n"] == N_EXAMPLES).all() and (group[["deletion_std", "insertion_std"]] >= 0).all().all()
    # Insertion at 0 keeps only the special tokens: the same input for every method.
    assert curves.loc[curves["fraction"] == 0, "insertion"].nunique() == 1
    figure = curves_figure(curves)
    assert len(figure.data) == 2 * len(METHODS)
    trace = next(t for t in figure.data if t.name == f"{METHODS[0]} deletion")
    assert list(trace.y) == pytest.approx(curves.loc[curves["method"] == METHODS[0], "deletion"].tolist())


def test_agreement_is_a_symmetric_matrix_with_a_unit_diagonal(evaluated):
    from scipy.stats import kendalltau

    from workbench.figures import agreement_figure

    out, _ = evaluated
    table = _read(out, "agreement")
    for metric in ("kendall_tau", "topk_overlap"):
        grid = table[table["metric"] == metric].pivot(index="method_a", columns="method_b", values="mean")
        assert sorted(grid.index) == sorted(METHODS) and sorted(grid.columns) == sorted(METHODS)
        grid = grid.loc[list(METHODS), list(METHODS)].to_numpy()
        np.testing.assert_allclose(grid, grid.T)
        np.testing.assert_allclose(np.diag(grid), 1.0)
    # Known answer: mean Kendall tau of |scores| over the word tokens, per example, from the stored attributions.
    frame = pd.read_parquet(out / "attributions.parquet")
    frame = frame[frame["word_index"] >= 0].sort_values("token_index")
    taus = [kendalltau(np.abs(g.loc[g["method"] == "integrated_gradients", "score"]),
                       np.abs(g.loc[g["method"] == "saliency", "score"])).statistic
            for _, g in frame.groupby("example_id")]
    stored = table[(table["metric"] == "kendall_tau") & (table["method_a"] == "saliency")
                   & (table["method_b"] == "integrated_gradients")]["mean"].item()
    assert stored == pytest.approx(float(np.mean(taus)))
    z = np.asarray(agreement_figure(table).data[0].z)
    np.testing.assert_allclose(z, z.T)


def test_rollout_rows_are_probability_distributions(evaluated):
    out, _ = evaluated
    rollout = _read(out, "rollout")
    n = rollout["query_index"].nunique()
    assert len(rollout) == n * n and rollout["example_id"].unique().tolist() == ["dev-0"]
    assert (rollout["weight"] >= 0).all()
    np.testing.assert_allclose(rollout.groupby("query_index")["weight"].sum(), 1.0, atol=1e-9)
    first = rollout[rollout["query_index"] == 0]
    assert first["query_token"].unique().tolist() == ["[CLS]"] and first["key_token"].iloc[0] == "[CLS]"
    assert rollout.sort_values(["query_index", "key_index"])["key_index"].tolist() == list(range(n)) * n


def test_randomization_cascade_and_head_statistics(evaluated):
    from workbench.figures import layer_head_grid, randomization_figure

    out, _ = evaluated
    table = _read(out, "randomization")
    stages = list(dict.fromkeys(table["stage"]))
    assert stages == ["none", "head", "blocks.1", "blocks.0", "embed"]
    assert (table.groupby("stage", sort=False)["n_randomized"].first().tolist() == list(range(len(stages))))
    assert table["example_id"].unique().tolist() == [f"dev-{i}" for i in range(N_RANDOMIZED)]
    np.testing.assert_allclose(table.loc[table["stage"] == "none", ["spearman", "spearman_abs"]], 1.0)
    assert (table["method"] == "integrated_gradients").all()
    assert len(randomization_figure(table).data) == 1
    heads = _read(out, "attention_heads")
    assert sorted(zip(heads["layer"], heads["head"])) == [(layer, h) for layer in range(2) for h in range(4)]
    longest = 128
    assert (heads["entropy"] >= 0).all() and (heads["entropy"] <= math.log(longest)).all()
    for column in ("attn_cls", "attn_sep", "attn_punct"):
        assert heads[column].between(0, 1 + 1e-9).all()
    assert (heads["attn_cls"] + heads["attn_sep"] <= 1 + 1e-9).all()  # disjoint token sets of one distribution
    assert heads["n_queries"].nunique() == 1 and heads["n_queries"].iloc[0] > N_EXAMPLES * 3
    assert np.asarray(layer_head_grid(heads, "entropy").data[0].z).shape == (2, 4)


def test_attention_only_rerun_skips_with_reasons_and_leaves_nothing_stale(evaluated, snli_model, tmp_path, capsys):
    out_before, store = evaluated
    out = tmp_path / "out"
    shutil.copytree(out_before, out)
    argv = _argv(snli_model, out, store, "--evaluate", "--n-boot", "20", methods="attention")
    assert main(argv) == 2  # a finished run is never replaced silently
    err = capsys.readouterr().err.strip()
    assert "already holds files" in err and len(err.splitlines()) == 1
    assert main([*argv, "--overwrite"]) == 0
    evaluation = json.loads((out / "summary.json").read_text())["evaluation"]
    assert set(evaluation["skipped"]) == {"randomization", "agreement"}
    assert "no gradient method" in evaluation["skipped"]["randomization"]
    assert evaluation["randomization_method"] is None
    # The earlier run's randomization and agreement tables described other attributions: they are gone.
    assert not (out / "randomization.parquet").exists() and not (out / "agreement.parquet").exists()
    assert set(_read(out, "faithfulness")["method"]) == {"attention"}
    assert sorted(p.name for p in out.iterdir()) == sorted(["attributions.parquet", "summary.json",
                                                            *evaluation["files"]])
    # Without --evaluate, --overwrite removes every evaluation table.
    assert main(_argv(snli_model, out, store, "--overwrite", methods="attention")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["attributions.parquet", "summary.json"]
    assert json.loads((out / "summary.json").read_text())["evaluation"] is None


@pytest.mark.parametrize("extra, message", [
    (["--randomization-limit", "0"], "--randomization-limit must be at least 1, got 0"),
    (["--randomization-limit", "-3"], "--randomization-limit must be at least 1, got -3"),
    (["--n-boot", "0"], "--n-boot must be at least 1"),
])
def test_bad_evaluation_flags_are_one_line_exit_2(snli_model, tmp_path, capsys, extra, message):
    out = tmp_path / "o"
    assert main(_argv(snli_model, out, tmp_path / "store", "--evaluate", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_evaluate_plain_texts_and_pooled_head_statistics(tiny_atinuke_dir):
    from workbench.attention import head_statistics
    from workbench.attribution import attribute
    from workbench.attribution.evaluate import evaluate_attributions, pooled_head_statistics
    from workbench.subject import load_subject

    subject = load_subject(tiny_atinuke_dir)
    texts = ["the market fell last week .", "prices rose sharply in early trading ."]
    ids = ["a", "b"]
    result = attribute(subject, texts, "saliency", example_ids=ids)
    tables = evaluate_attributions(subject, texts, result, example_ids=ids, n_boot=20, randomization_limit=1)
    assert list(tables) == ["faithfulness", "curves", "randomization", "attention_heads", "rollout"]
    assert "agreement" in tables.skipped and tables.n_examples["randomization"] == 1
    assert set(tables["faithfulness"]["metric"]) == {"comprehensiveness", "sufficiency", "deletion_auc",
                                                     "insertion_auc"}  # plain texts have no gold rationales
    assert tables["randomization"]["example_id"].unique().tolist() == ["a"]
    assert tables["rollout"]["example_id"].unique().tolist() == ["a"]
    pd.testing.assert_frame_equal(tables["attention_heads"], head_statistics(subject, texts))
    # Inputs with and without a second segment are pooled by query count; the pooled means of two
    # single-segment groups equal the statistics of all of them at once.
    third = "analysts expect a recovery ."
    pooled = pooled_head_statistics(subject, [texts[0], third, texts[1]], [None, "shares fell .", None])
    paired = head_statistics(subject, [third], ["shares fell ."])
    single = head_statistics(subject, [texts[0], texts[1]])
    assert (pooled["n_queries"] == paired["n_queries"] + single["n_queries"]).all()
    share = paired["n_queries"] / pooled["n_queries"]
    for column in ("entropy", "mean_distance", "attn_cls", "attn_sep", "attn_punct"):
        np.testing.assert_allclose(pooled[column], share * paired[column] + (1 - share) * single[column])
    one, two = head_statistics(subject, [texts[0]]), head_statistics(subject, [texts[1]])
    weights = one["n_queries"] / (one["n_queries"] + two["n_queries"])
    np.testing.assert_allclose(single["entropy"], weights * one["entropy"] + (1 - weights) * two["entropy"])
