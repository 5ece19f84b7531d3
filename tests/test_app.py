"""The Streamlit app, page by page, with streamlit.testing.v1.AppTest over a tmp runs directory.

The runs directory is a TEST FIXTURE built by :func:`make_fixture_runs`: a tiny seeded Atinuke trained for a
few real optimizer steps on PTB text (its metrics.csv and summary.json are real for that run), and
predictions tables over real sentences of the Lee corpus whose labels and predictions are made by rules
(negation -> "negative"; one "model" fails on every negated sentence). They exercise the app; they are not
results.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
NEGATION = re.compile(r"\b(not|no|never|n't|nobody|nothing|none)\b", re.IGNORECASE)
PAGES = ("models", "attention", "attribution", "probing", "errors", "comparison", "features", "mechanisms", "dynamics",
         "claims", "reports")


def _sentences(n: int) -> list[str]:
    from atinuke.corpus import lee_documents

    sentences = []
    for document in lee_documents():
        sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", document) if 4 <= len(s.split()) <= 40]
    return sentences[:n]


def _train_tiny(model_dir: Path, out: Path, steps: int = 6) -> None:
    """A few real MLM steps of the tiny model on PTB valid; writes model/, metrics.csv, summary.json."""
    import torch

    from atinuke.corpus import load_texts
    from atinuke.io import atomic_write_json
    from atinuke.model import AtinukeForMaskedLM, count_parameters
    from atinuke.tokenizer import load_tokenizer

    torch.manual_seed(0)
    model = AtinukeForMaskedLM.from_pretrained(str(model_dir))
    tokenizer = load_tokenizer(model_dir)
    texts = load_texts("ptb", "valid")
    batch = tokenizer(texts[:64], truncation=True, max_length=32, padding="max_length", return_tensors="pt")
    ids = batch["input_ids"]  # [64, 32]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rows, generator = [], torch.Generator().manual_seed(0)
    unigram = torch.bincount(ids[ids > 4], minlength=len(tokenizer)).float() + 1
    unigram_ppl = math.exp(-(unigram / unigram.sum()).log()[ids[ids > 4]].mean().item())
    for step in range(1, steps + 1):
        mask = (torch.rand(ids.shape, generator=generator) < 0.15) & (ids > 4)  # [64, 32]
        labels = torch.where(mask, ids, torch.full_like(ids, -100))
        loss = model(input_ids=ids.masked_fill(mask, tokenizer.mask_token_id), attention_mask=batch["attention_mask"],
                     labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rows.append(dict(step=step, epoch=0, lr=3e-3, loss=loss.item(), grad_norm=None, tokens=step * int(ids.numel()),
                         tokens_per_s=None, elapsed_s=None, val_ppl=math.exp(loss.item()) if step % 3 == 0 else None,
                         val_unigram_ppl=unigram_ppl if step % 3 == 0 else None))
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(str(out / "model"))
    pd.DataFrame(rows).to_csv(out / "metrics.csv", index=False)
    params = count_parameters(model)
    atomic_write_json(out / "summary.json", {
        "config": {"preset": "test-fixture", "steps": steps, "seed": 0, "sources": ["ptb"]},
        "model_config": model.config.to_diff_dict(), "objective": "mlm", "seed": 0,
        "parameters": {"total": params.total, "embedding": params.embedding, "non_embedding": params.non_embedding},
        "val_ppl": math.exp(rows[-1]["loss"]), "val_unigram_ppl": unigram_ppl, "test_ppl": math.exp(rows[-1]["loss"]),
        "tokens_per_s": 1000.0, "wall_time_s": 1.0, "device": "cpu", "note": "test fixture"})


def _classification(model: str, sentences: list[str], fail_on_negation: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    negation = np.array([bool(NEGATION.search(s)) for s in sentences])
    gold = np.where(negation, "negative", "positive")
    flip = negation if fail_on_negation else rng.random(len(sentences)) < 0.04
    prediction = np.where(flip, np.where(gold == "positive", "negative", "positive"), gold)
    score = np.round(rng.uniform(0.55, 0.99, len(sentences)), 4)
    probs = [json.dumps({p: float(s), ("negative" if p == "positive" else "positive"): float(1 - s)})
             for p, s in zip(prediction, score)]
    lengths = np.array([len(s.split()) for s in sentences])
    return pd.DataFrame(dict(
        id=[f"lee-{i}" for i in range(len(sentences))], task="sst2", model=model, split="dev",
        provenance="silver, derived", text=sentences, text_pair=None, gold=gold, prediction=prediction,
        score=score, probs=probs, correct=prediction == gold, example_f1=(prediction == gold).astype(float),
        rationale=[[] for _ in sentences], meta_length=lengths, meta_negation=negation,
        meta_rule=np.where(negation, "negation cue", "no cue")))


def make_fixture_runs(root: Path, model_dir: Path, n: int = 120) -> Path:
    """Populate ``root`` as a runs directory (see the module docstring); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    _train_tiny(model_dir, root / "pretrain" / "tiny-test")
    sentences = _sentences(n)
    for model, fail, seed in (("tiny-test", True, 0), ("minilm", False, 1)):
        out = root / "finetune" / model / "sst2"
        out.mkdir(parents=True, exist_ok=True)
        table = _classification(model, sentences, fail, seed)
        table.to_parquet(out / "predictions.parquet", index=False)
        (out / "metrics.json").write_text(json.dumps(dict(
            task="sst2", model=model, split="dev", provenance="silver, derived", n_examples=len(table), n_skipped=0,
            accuracy=float(table["correct"].mean()), seed=seed)))
    probes = root / "probes" / "fixture"
    probes.mkdir(parents=True, exist_ok=True)
    rows = [dict(model=m, task="pos", layer=l, metric="accuracy", value=v + 0.02 * s, seed=s, control=c, source="test fixture")
            for m, layers in (("tiny-test", 3), ("minilm", 7)) for l in range(layers) for s in range(2)
            for c, v in (("none", 0.5 + 0.4 * l / layers), ("control_task", 0.4 + 0.1 * l / layers))]
    pd.DataFrame(rows).to_parquet(probes / "results.parquet", index=False)
    try:  # a precomputed attribution table, as `workbench attribute` writes it
        from workbench.attribution import attribute_many
        from workbench.subject import load_subject

        subject = load_subject(root / "pretrain" / "tiny-test")
        table = attribute_many(subject, sentences[:4], ["integrated_gradients", "saliency", "attention"],
                               example_ids=[f"lee-{i}" for i in range(4)])
        table.to_parquet(root / "attributions" / "tiny-test" / "attributions.parquet")
    except ImportError:  # the attribution engine is optional for the other pages
        pass
    # A tiny SAE run (with its random-model control), as `workbench sae train` writes it; one context holds
    # a planted <script> token to check the page escapes what it shows.
    from workbench.cli import main as workbench_main

    corpus = root / "sae_corpus.txt"
    corpus.write_text("\n".join(sentences[:40]) + "\n")
    assert workbench_main(["sae", "train", "--model", str(root / "pretrain" / "tiny-test"), "--hook",
                           "blocks.0.hook_resid_post", "--corpus", str(corpus), "--width", "32", "--k", "4",
                           "--batch-size", "64", "--steps", "10", "--max-tokens", "1500", "--eval-texts", "5",
                           "--out", str(root / "sae" / "tiny-resid0"), "--no-progress"]) == 0
    contexts_path = root / "sae" / "tiny-resid0" / "contexts.parquet"
    contexts = pd.read_parquet(contexts_path)
    tokens = json.loads(contexts.loc[0, "tokens"])
    tokens[0] = "<script>alert(1)</script>"
    contexts.loc[0, "tokens"] = json.dumps(tokens)
    contexts.to_parquet(contexts_path, index=False)
    return root


@pytest.fixture(scope="session")
def fixture_runs(tmp_path_factory, tiny_atinuke_dir) -> Path:
    return make_fixture_runs(tmp_path_factory.mktemp("runs"), tiny_atinuke_dir)


@pytest.fixture()
def app_env(fixture_runs, monkeypatch):
    monkeypatch.setenv("ATINUKE_RUNS", str(fixture_runs))
    return fixture_runs


def test_fixture_runs_are_readable(fixture_runs):
    from workbench import artifacts

    assert [r.name for r in artifacts.find_pretrain_runs(fixture_runs)] == ["tiny-test"]
    assert {r.label for r in artifacts.find_finetune_runs(fixture_runs)} == {"minilm / sst2", "tiny-test / sst2"}


def _run(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"ui/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _keys(at) -> set[str]:
    return {w.key for kind in ("selectbox", "multiselect", "slider", "radio", "checkbox", "toggle", "button",
                               "text_area", "text_input") for w in getattr(at, kind)}


def test_models_page(app_env):
    at = _run("models")
    assert at.title[0].value == "Models and training"
    assert {"models_run", "models_scale"} <= _keys(at)
    metrics = {m.label: m.value for m in at.metric}
    summary = json.loads((app_env / "pretrain" / "tiny-test" / "summary.json").read_text())
    assert metrics["Parameters"] == f"{summary['parameters']['total']:,}"
    assert metrics["MiniLM layers"] == "6"  # MiniLM's config, read from its files
    before = _charts(at)[0]["layout"]["yaxis2"]["type"]
    at.radio(key="models_scale").set_value("linear").run()
    assert not at.exception and before == "log" and _charts(at)[0]["layout"]["yaxis2"]["type"] == "linear"


def test_attention_page(app_env):
    at = _run("attention")
    assert {"attn_models", "attn_view", "attn_text", "attn_words"} <= _keys(at)
    grid = _charts(at)
    assert len(grid) == 2  # Atinuke and MiniLM side by side
    assert len(grid[1]["data"]) == 6 * 12  # MiniLM: one heatmap per layer and head
    at.radio(key="attn_view").set_value("Single head").run()
    assert not at.exception and len(_charts(at)[0]["data"]) == 1
    at.radio(key="attn_view").set_value("Rollout").run()
    assert not at.exception and "rollout" in _charts(at)[0]["layout"]["title"]["text"].lower()
    at.text_area(key="attn_text").set_value("   ").run()
    assert not at.exception and any("empty" in e.value for e in at.error)
    at.text_area(key="attn_text").set_value("word " * 600).run()
    assert not at.exception and any("limit" in e.value for e in at.error)
    at.text_area(key="attn_text").set_value("the market " * 80).run()  # under 2000 characters, over 128 tokens
    assert not at.exception and any("at most 128" in e.value for e in at.error)
    assert len(_charts(at)) == 1  # MiniLM (512 tokens) still shows its rollout beside the error


def test_attribution_page(app_env):
    pytest.importorskip("workbench.attribution")
    at = _run("attribution")
    assert {"attr_model", "attr_methods", "attr_baseline", "attr_steps", "attr_text"} <= _keys(at)
    rows = _charts(at)[0]["data"][0]["y"]
    assert sorted(rows) == sorted(["Integrated Gradients", "Saliency (gradient)", "Attention (last layer)"])
    at.multiselect(key="attr_methods").set_value(["saliency", "input_x_gradient"]).run()
    assert not at.exception and sorted(_charts(at)[0]["data"][0]["y"]) == ["Input × Gradient", "Saliency (gradient)"]
    at.text_area(key="attr_text").set_value("").run()
    assert any("empty" in e.value for e in at.error)
    at.radio(key="attr_mode").set_value("Precomputed runs").run()
    assert not at.exception and at.selectbox(key="attr_run").value == "attributions/tiny-test"
    charts = _charts(at)
    assert len(charts) == 2 and len(at.dataframe) == 1  # token heatmap + method agreement
    at.selectbox(key="attr_stored_example").set_value("lee-2").run()
    assert not at.exception and _charts(at)[0] != charts[0]


def test_probing_page(app_env):
    at = _run("probing")
    assert {"probe_task", "probe_metric", "probe_models", "probe_controls"} <= _keys(at)
    assert len(_charts(at)[0]["data"]) == 4 and len(at.dataframe) == 1  # 2 models x (task, control)
    at.checkbox(key="probe_controls").uncheck().run()
    assert not at.exception and len(_charts(at)[0]["data"]) == 2 and len(at.dataframe) == 0


def test_error_analysis_page(app_env):
    at = _run("errors")
    assert {"err_run", "err_feature", "err_bins", "err_depth", "err_cal_bins", "err_k", "err_drill"} <= _keys(at)
    at.selectbox(key="err_run").set_value("tiny-test / sst2").run()
    at.selectbox(key="err_feature").set_value("meta_negation").run()
    assert not at.exception
    slices = at.dataframe[0].value.set_index("slice")
    assert slices.loc["True", "value"] == 0.0 and slices.loc["False", "value"] == 1.0
    cohorts = at.dataframe[1].value
    assert cohorts.iloc[0]["error_rate"] == 1.0 and "meta_negation" in cohorts.iloc[0]["path"]
    first = at.selectbox(key="err_drill").value
    options = at.selectbox(key="err_drill").options
    at.selectbox(key="err_drill").set_value(options[1]).run()
    assert not at.exception and any(options[1] in m.value for m in at.markdown) and first != options[1]
    titles = [c["layout"].get("title", {}).get("text", "") for c in _charts(at)]
    assert any("rollout" in t.lower() for t in titles) and any("Token attributions" in t for t in titles)
    at.checkbox(key="err_signals").check().run()
    assert not at.exception
    assert any("signal_attention_entropy" in c.value for c in at.caption)  # the tree saw the internal signal


def test_comparison_page(app_env):
    at = _run("comparison")
    assert {"cmp_task", "cmp_a", "cmp_b", "cmp_outcome", "cka_a", "cka_b", "cka_go"} <= _keys(at)
    assert any("McNemar" in m.value for m in at.markdown)
    n_charts = len(_charts(at))
    at.button(key="cka_go").click().run()
    assert not at.exception
    charts = _charts(at)
    assert len(charts) == n_charts + 1 and "CKA" in charts[1]["layout"]["title"]["text"]
    assert any(len(df.value) and "similarity" in df.value.columns for df in at.dataframe)


def test_claims_page_without_an_experiment_gives_no_benchmark_verdict(app_env):
    at = _run("claims")
    text = "\n".join(m.value for m in at.markdown)
    assert "Atinuke improves the GLUE benchmark." in text and "Verdict: no evidence" in text
    assert "supported" not in text.replace("MiniLM is shown as a pretrained reference only", "")
    shown = sum("**Atinuke" in m.value for m in at.markdown)
    at.checkbox(key="claims_filter").check().run()
    assert not at.exception and sum("**Atinuke" in m.value for m in at.markdown) < shown


def test_claims_page_shows_the_experiments_verdicts(tmp_path, monkeypatch):
    from tests.claims_fixtures import write_experiment

    write_experiment(tmp_path / "experiment", arms=("atinuke", "bert", "minilm"),
                     accuracy=lambda arm, seed: {"atinuke": 0.9, "bert": 0.7, "minilm": 0.95}[arm])
    monkeypatch.setenv("ATINUKE_RUNS", str(tmp_path))
    at = _run("claims")
    text = "\n".join(m.value for m in at.markdown)
    assert "Verdict: :green[supported]" in text and "*against a same-size BERT" in text and "3 seed(s) per arm*" in text
    assert " · comparator: `bert` · seeds: 3 · p = " in text and "(Monte Carlo)" in text
    assert any("minilm (reference) 0.950" in c.value for c in at.caption)


def test_reports_page(app_env):
    at = _run("reports")
    assert {"report_runs", "report_title", "report_build"} <= _keys(at)
    if not at.checkbox(key="report_pdf").disabled:  # disabled where no chromium is installed
        at.checkbox(key="report_pdf").uncheck().run()
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.success and "report-" in at.success[0].value
    written = sorted((app_env / "reports").glob("report-*.html"))
    assert written and "Plotly.newPlot" in written[-1].read_text()
    # A side-by-side comparison report of two of the models it offers.
    assert {"tiny-test", "minilm"} <= set(at.multiselect(key="report_models").options)
    at.multiselect(key="report_models").set_value(["tiny-test", "minilm"]).run()
    at.checkbox(key="report_pair").check().run()
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    newest = max((app_env / "reports").glob("report-*.html"), key=lambda p: p.stat().st_mtime)
    assert '<div class="pair">' in newest.read_text() and "comparing tiny-test and minilm" in newest.read_text()
    at.multiselect(key="report_runs").set_value([]).run()
    at.button(key="report_build").click().run()
    assert any("at least one run" in e.value for e in at.error)


def test_features_page(app_env):
    at = _run("features")
    assert {"sae_run", "sae_query", "sae_feature", "sae_side"} <= _keys(at)
    frames = [f.value for f in at.dataframe]
    assert list(frames[0].columns) == ["trained model", "random-init control"]  # the control side by side
    assert frames[0].loc["l0", "trained model"] <= 4
    contexts = pd.read_parquet(app_env / "sae" / "tiny-resid0" / "contexts.parquet")
    at.selectbox(key="sae_feature").set_value(int(contexts.loc[0, "feature"])).run()
    assert not at.exception
    shown = " ".join(h.proto.body for h in at.get("html"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown and "<script>alert" not in shown
    assert _charts(at)  # the activation histogram
    at.text_input(key="sae_query").set_value("NOUN").run()  # search by silver label
    assert not at.exception and len(at.dataframe[1].value) > 0
    at.radio(key="sae_side").set_value("random-init control").run()
    assert not at.exception
    at.text_input(key="sae_query").set_value("zzzz-no-such-token").run()
    assert any("No feature matches" in i.value for i in at.info)


def test_mechanisms_page(app_env):
    at = _run("mechanisms")
    assert {"mech_model", "mech_text", "mech_clean", "mech_corrupted", "mech_component"} <= _keys(at)
    tiny = [o for o in at.selectbox(key="mech_model").options if "tiny-test" in o][0]
    at.selectbox(key="mech_model").set_value(tiny).run()
    assert not at.exception, [e.value for e in at.exception]
    charts = _charts(at)
    assert len(charts) == 3  # the lens curve and the two patching heatmaps
    assert charts[0]["layout"]["title"]["text"].startswith("KL to the final output")
    assert [c["layout"]["title"]["text"] for c in charts[1:]] == ["Exact activation patching", "Attribution patching"]
    assert any("No fine-tuned classification model" in i.value for i in at.info)  # the fixture keeps no weights
    at.text_input(key="mech_corrupted").set_value("A much longer corrupted sentence than the clean one here.").run()
    assert any("same length" in e.value for e in at.error)


def test_missing_artifacts_say_which_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ATINUKE_RUNS", str(tmp_path / "empty_runs"))
    for page in PAGES:
        at = _run(page)
        assert at.title, page
    at = _run("errors")
    assert "atinuke finetune" in at.info[0].value
    at = _run("probing")
    assert "probes" in at.info[0].value


def test_unknown_model_is_a_user_error():
    from atinuke.errors import UserInputError
    from ui import common

    with pytest.raises(UserInputError, match="unknown model"):
        common.subject("no-such-model")


def test_errors_page_uses_sae_features_as_cohort_signals(app_env):
    at = _run("errors")
    at.selectbox(key="err_run").set_value("tiny-test / sst2").run()
    at.checkbox(key="err_sae").check().run()  # the fixture's SAE run is on tiny-test
    assert not at.exception, [e.value for e in at.exception]
    top = next(df.value for df in at.dataframe if "auroc" in df.value.columns)
    separation = (top["auroc"] - 0.5).abs().to_numpy()
    assert len(top) == 5 and (separation[:-1] >= separation[1:] - 1e-12).all()  # most separating first
    assert ((top["auroc"] >= 0) & (top["auroc"] <= 1)).all() and "top_tokens" in top.columns
    tree_features = next(c.value for c in at.caption if c.value.startswith("Tree features"))
    assert f"signal_feature_{int(top.loc[0, 'feature'])}_active" in tree_features


def test_comparison_page_matches_dictionary_features(app_env):
    at = _run("comparison")
    at.checkbox(key="cmp_sep").check().run()  # which of tiny-test's SAE features separate "A wins"
    assert not at.exception, [e.value for e in at.exception]
    assert any("auroc" in df.value.columns for df in at.dataframe)
    options = at.selectbox(key="cmp_sae_a").options
    assert len(options) == 1 and "tiny-resid0" in options[0]
    at.button(key="cmp_sae_go").click().run()  # the same dictionary on both sides matches itself
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["A's live latents matched in B"] == "100%" and metrics["B's live latents matched in A"] == "100%"
    pairs = next(df.value for df in at.dataframe if {"feature_a", "feature_b", "correlation"} <= set(df.value.columns))
    live = pairs[pairs["correlation"] > 0]
    assert (live["feature_a"] == live["feature_b"]).all() and np.allclose(live["correlation"], 1.0, atol=1e-6)
    assert any("Only in A: 0 live latents" in s.value for s in at.subheader)


def test_features_page_attributes_an_output_and_searches_dependency_labels(app_env):
    at = _run("features")
    at.checkbox(key="sae_attr").check().run()
    assert not at.exception, [e.value for e in at.exception]
    line = next(m.value for m in at.markdown if m.value.startswith("Gradient x activation at the hook"))
    total, latents, error = (float(x) for x in re.findall(r"[+-]\d+\.\d+", line))
    assert total == pytest.approx(latents + error, abs=2e-4)  # completeness, as shown
    table = next(df.value for df in at.dataframe if "attribution" in df.value.columns)
    assert len(table) > 0 and (table["attribution"].abs().diff().dropna() <= 1e-12).all()  # largest first
    at.radio(key="sae_attr_mode").set_value("steer").run()
    at.slider(key="sae_attr_amount").set_value(0.0).run()
    assert any("(**+0.0000**)" in m.value for m in at.markdown)  # steering by nothing changes nothing
    at.radio(key="sae_attr_mode").set_value("ablate").run()
    assert not at.exception and any(m.value.startswith("Ablating latent") for m in at.markdown)
    labels = pd.read_parquet(app_env / "sae" / "tiny-resid0" / "labels.parquet")
    assert {"pos", "ner", "dep", "srl"} <= set(labels["kind"])
    at.text_input(key="sae_query").set_value("nsubj").run()
    assert not at.exception
    found = next(df.value for df in at.dataframe if "precision" in df.value.columns)
    assert (found["label"] == "nsubj").all() and found["precision"].is_monotonic_decreasing


def test_mechanisms_page_draws_a_discovered_circuit(app_env, tmp_path, monkeypatch):
    at = _run("mechanisms")
    at.toggle(key="mech_circuit").set_value(True).run()  # the planted model, computed on the page
    assert not at.exception, [e.value for e in at.exception]
    graphs = [c for c in _charts(at) if c["layout"]["title"]["text"].startswith("Circuit")]
    assert len(graphs) == 1
    lines = {d["text"].split(":")[0] for d in graphs[0]["data"] if d.get("mode") == "lines"}
    assert lines == {"L1.H2 → logits", "embed → L1.H2.v (v)"}  # exactly the planted edges
    # a `workbench circuit` run under the runs folder is listed and drawn
    from workbench.cli import main
    from workbench.planted import save_planted

    runs = tmp_path / "runs"
    assert main(["circuit", "--model", str(save_planted(tmp_path / "planted")), "--clean", "the cat red dog sat",
                 "--corrupted", "the cat blue dog sat", "--n-steps", "2", "--out", str(runs / "circuit" / "p")]) == 0
    monkeypatch.setenv("ATINUKE_RUNS", str(runs))
    at = _run("mechanisms")
    at.toggle(key="mech_circuit").set_value(True).run()
    at.selectbox(key="mech_circuit_source").set_value("circuit/p").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [c["layout"]["title"]["text"] for c in _charts(at)][-1] == "Circuit: planted/planted"


@pytest.fixture()
def decoder_env(tmp_path, tiny_tokenizer, monkeypatch):
    """A runs directory holding one pretraining run of a tiny causal Atinuke (``--objective clm``)."""
    from tests.decoders import clm_atinuke_dir

    clm_atinuke_dir(tmp_path / "pretrain" / "atinuke-clm", tiny_tokenizer)
    monkeypatch.setenv("ATINUKE_RUNS", str(tmp_path))
    return tmp_path


def test_attention_page_draws_a_decoder_causally(decoder_env):
    at = _run("attention")
    at.multiselect(key="attn_models").set_value(["Atinuke: atinuke-clm"]).run()
    assert not at.exception and any("upper triangle" in c.value for c in at.caption)
    at.radio(key="attn_view").set_value("Single head").run()
    z = _charts(at)[0]["data"][0]["z"]  # query x key, plotly's typed array or nested lists (null = NaN)
    if isinstance(z, dict):
        import base64

        shape = [int(n) for n in str(z["shape"]).split(",")]
        z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    z = np.array(z, dtype=float)
    above = np.triu(np.ones(z.shape, dtype=bool), k=1)
    assert np.isnan(z[above]).all() and not np.isnan(z[~above]).any()  # blank above the diagonal only
    assert np.allclose(np.nansum(z, 1), 1, atol=1e-4)  # each query's row still sums to one


def test_attribution_page_explains_a_decoders_next_token(decoder_env):
    at = _run("attribution")
    at.multiselect(key="attr_methods").set_value(["saliency", "input_x_gradient"]).run()
    assert not at.exception and at.text_input(key="attr_target").value == "next"
    assert any("Explained target: next=" in c.value and "decoder" in c.value for c in at.caption)
    at.text_input(key="attr_target").set_value("generate=2").run()
    assert not at.exception and len(_charts(at)) == 2  # one heatmap per generated token
    assert sum("Generated token" in c.value for c in at.caption) == 2
    at.text_input(key="attr_target").set_value("logitdiff=qqqzz xx,the").run()
    assert not at.exception and any("not one token" in e.value for e in at.error)
def test_mechanisms_page_draws_a_node_circuit(app_env):
    at = _run("mechanisms")
    at.toggle(key="mech_circuit").set_value(True).run()
    at.radio(key="mech_circuit_level").set_value("nodes").run()
    assert not at.exception, [e.value for e in at.exception]
    grids = [c for c in _charts(at) if c["layout"]["title"]["text"].startswith("Node circuit")]
    assert len(grids) == 1
    kept = next(d for d in grids[0]["data"] if d.get("mode") == "markers")
    assert set(zip(kept["x"], kept["y"])) == {("H2", "L1"), ("H0", "embed")}  # the planted head + its input
def test_mechanisms_page_direct_logit_attribution_parts_sum_to_the_logit(app_env):
    at = _run("mechanisms")
    assert not [c for c in _charts(at) if c["layout"]["title"]["text"].startswith("Direct logit")]  # off by default
    at.toggle(key="mech_dla").set_value(True).run()
    at.selectbox(key="mech_dla_source").set_value("planted-circuit model (pre-norm, built here)").run()
    assert not at.exception, [e.value for e in at.exception]

    def shown() -> tuple[dict[str, float], float]:
        chart = [c for c in _charts(at) if c["layout"]["title"]["text"].startswith("Direct logit")]
        assert len(chart) == 1
        bars = dict(zip(chart[0]["data"][0]["x"], chart[0]["data"][0]["y"]))
        logit = bars.pop("logit")
        assert bars.pop("sum of parts") == pytest.approx(logit, abs=1e-5)
        return bars, logit

    bars, logit = shown()  # pre-norm: every head and MLP is a bar, and the bars sum to the logit shown
    assert sum(bars.values()) == pytest.approx(logit, abs=1e-5) and abs(logit) > 1e-3
    assert {"embed", "L0.H0", "L1.H2", "MLP0", "MLP1"} <= set(bars)
    assert any("Exact" in c.value for c in at.caption), [c.value for c in at.caption]
    assert not at.warning
    tiny = [o for o in at.selectbox(key="mech_dla_source").options if "tiny-test" in o][0]
    at.selectbox(key="mech_dla_source").set_value(tiny).run()  # the post-norm fixture model: last block only
    assert not at.exception, [e.value for e in at.exception]
    bars, logit = shown()
    assert sum(bars.values()) == pytest.approx(logit, abs=1e-5) and "resid_pre" in bars
    assert any("post-norm" in w.value.lower() and "not exact" in w.value for w in at.warning), at.warning


def test_any_model_directory_opens_in_the_app(app_env, tmp_path, tiny_tokenizer):
    """A user's own model directory (here a GPT-2, a family the runs folder does not hold) typed into the
    sidebar is loaded, offered by the model pickers, drawn (causally), and kept in the address; a path that
    is not a model is one error line and is not offered."""
    from streamlit.testing.v1 import AppTest

    from tests.decoders import gpt2_dir

    path = str(gpt2_dir(tmp_path / "mine", tiny_tokenizer))
    at = _run("attention")
    at.sidebar.text_input(key="open_model").set_value(str(tmp_path / "nothing-here")).run()
    assert not at.exception and len(at.sidebar.error) == 1 and "unknown model" in at.sidebar.error[0].value
    assert not any(o.startswith("Opened") for o in at.multiselect(key="attn_models").options)
    at.sidebar.text_input(key="open_model").set_value(path).run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"Opened GPT-2: {path}" in at.multiselect(key="attn_models").options  # named from what it is
    assert at.query_params["open"] in (path, [path])  # AppTest gives a lone value as a string
    at.multiselect(key="attn_models").set_value([f"Opened GPT-2: {path}"]).run()
    assert not at.exception and any("upper triangle" in c.value for c in at.caption)
    # a deep link reopens it in a new session
    linked = AppTest.from_file(APP, default_timeout=120)
    linked.query_params["open"] = path
    linked.run()
    linked.switch_page("ui/attention.py").run()
    assert f"Opened GPT-2: {path}" in linked.multiselect(key="attn_models").options


def test_dynamics_page(app_env):
    import pandas as pd

    from workbench.dynamics import COLUMNS, headline_table

    rows = []
    for run, late in (("tiny-atinuke", 0.8), ("tiny-bert", 0.6)):
        for step, level in ((0, 0.0), (64, 0.1), (128, 1.0)):
            rows.append((run, step, step * 2048, "mlm_loss", -1, -1, 9.0 - 3 * level))
            rows += [(run, step, step * 2048, "induction", layer, head, late * level * (layer == 1 and head == 0))
                     for layer in range(2) for head in range(4)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    out = app_env / "dynamics" / "tiny"
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "dynamics.parquet", index=False)
    headline_table(table).to_csv(out / "headline.csv", index=False)
    at = _run("dynamics")
    charts = _charts(at)
    assert len(charts) == 2  # the curves and the per-head grid
    names = {trace.get("name") for trace in charts[0]["data"]}
    assert {"tiny-atinuke", "tiny-bert"} <= names
    shown = at.dataframe[0].value
    assert set(shown["half_step"]) == {128} and set(shown["run"]) == {"tiny-atinuke", "tiny-bert"}
