"""Identity that survives a link, and inputs that fit the model (issue 29).

The TEST FIXTURE is a demo-like runs directory: the controlled experiment's layout with the shipped tiny Atinuke
and same-size BERT pretraining runs (atinuke/checkpoints), and three fine-tuned models whose heads are fresh
(seeded, untrained: they exercise the pages, they are not results) -- Atinuke on SST-2 and SNLI, BERT on SNLI,
so that two models share ``finetune/snli`` as they do in the demo. Every page opened at an address made for
one model shows that model, and the example the address names.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Optional

import pandas as pd
import pytest

from tests.test_app import APP

CHECKPOINTS = Path(__file__).resolve().parent.parent / "atinuke" / "checkpoints"
FINETUNED = (("atinuke", "sst2"), ("atinuke", "snli"), ("bert", "snli"))
SST2 = [f"The {w} film was {'not ' if i % 3 == 0 else ''}{a}." for i, (w, a) in enumerate(
    [(w, a) for w in ("long", "short", "new", "old", "quiet", "loud") for a in ("good", "dull", "moving")])]
SNLI = [(f"A {p} is {v} in the park.", f"A {h} is {'not ' if i % 2 else ''}outside.")
        for i, (p, v, h) in enumerate([(p, v, h) for p in ("man", "woman", "child") for v in ("running", "sitting")
                                       for h in ("person", "human", "someone")])]


def _predictions(model: str, task: str) -> pd.DataFrame:
    pairs: list[Optional[str]]
    if task == "sst2":
        texts, pairs = SST2, [None] * len(SST2)
        gold = ["negative" if " not " in t else "positive" for t in texts]
    else:
        texts, pairs = [p for p, _ in SNLI], [h for _, h in SNLI]
        gold = ["contradiction" if " not " in str(h) else "entailment" for h in pairs]
    n = len(texts)
    prediction = [g if i % 4 else ("neutral" if task == "snli" else "positive") for i, g in enumerate(gold)]
    return pd.DataFrame(dict(
        id=[f"{task}-{i}" for i in range(n)], task=task, model=model, split="dev", provenance="test fixture",
        text=texts, text_pair=pairs, gold=gold, prediction=prediction, score=0.8, probs=None,
        correct=[p == g for p, g in zip(prediction, gold)],
        example_f1=[float(p == g) for p, g in zip(prediction, gold)], rationale=[[] for _ in range(n)],
        meta_length=[len(t.split()) for t in texts]))


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory) -> Path:
    import torch

    from atinuke.tasks import TASKS
    from atinuke.tasks.heads.model import build_task_model, save_task_model

    root = tmp_path_factory.mktemp("demo_runs")
    experiment = root / "experiment"
    for arm in ("atinuke", "bert"):
        shutil.copytree(CHECKPOINTS / f"tiny-{arm}-seed0", experiment / arm / "seed0" / "pretrain")
    (experiment / "experiment.json").write_text(json.dumps({"arms": ["atinuke", "bert"], "seeds": [0],
                                                           "tasks": ["sst2", "snli"], "scale": "tiny"}))
    for arm, task in FINETUNED:
        run = experiment / arm / "seed0" / "finetune" / task
        torch.manual_seed(0)
        save_task_model(build_task_model(experiment / arm / "seed0" / "pretrain", TASKS[task]).eval(), run / "model")
        _predictions(f"{arm}-seed0", task).to_parquet(run / "predictions.parquet", index=False)
        (run / "metrics.json").write_text(json.dumps({"task": task, "model": f"{arm}-seed0", "accuracy": 0.75}))
    return root


@pytest.fixture()
def demo_env(demo_runs, monkeypatch):
    monkeypatch.setenv("ATINUKE_RUNS", str(demo_runs))
    monkeypatch.setenv("ATINUKE_APP_WARMUP", "0")
    return demo_runs


def _open(page: str, **params: str):
    """A fresh session at ``page`` with the query string ``params`` (a copied address)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(f"ui/{page}.py")
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _address(at) -> dict[str, str]:
    return {k: v if isinstance(v, str) else v[0] for k, v in at.query_params.items()}


def test_every_model_has_one_key_and_a_name_from_what_it_is(demo_runs, monkeypatch):
    from workbench import catalog

    monkeypatch.setattr(catalog, "smollm2_ready", lambda: False)  # SmolLM2 is listed once converted (cache)

    entries = catalog.encoders(demo_runs) + catalog.finetuned(demo_runs)
    names = {e.key: e.name for e in entries}
    assert names == {
        "atinuke-seed0": "Atinuke: atinuke-seed0", "bert-seed0": "BERT: bert-seed0",
        "minilm": "MiniLM (all-MiniLM-L6-v2)", "atinuke-seed0/sst2": "Atinuke: atinuke-seed0 fine-tuned on sst2",
        "atinuke-seed0/snli": "Atinuke: atinuke-seed0 fine-tuned on snli",
        "bert-seed0/snli": "BERT: bert-seed0 fine-tuned on snli"}
    assert catalog.default_encoder(entries).key == "atinuke-seed0"
    assert catalog.default_finetuned([e for e in entries if e.task]).key == "atinuke-seed0/sst2"


ENCODERS = ("atinuke-seed0", "bert-seed0", "minilm")
MODELS = ENCODERS + tuple(f"{arm}-seed0/{task}" for arm, task in FINETUNED)


@pytest.mark.parametrize("key", MODELS)
def test_a_copied_address_reopens_the_model_and_example_on_every_page(demo_env, key):
    from workbench import catalog

    name = {e.key: e.name for e in catalog.encoders(demo_env) + catalog.finetuned(demo_env)}[key]
    base, _, task = key.partition("/")
    example = f"{task or 'sst2'}-5"
    # Attribution: the model, and an example of its own task
    at = _open("attribution", model=key, task=task or "sst2", example=example)
    assert at.selectbox(key="attr_model").value == name and not at.warning
    assert at.selectbox(key="attr_example").value.startswith(f"{task or 'sst2'} · {example}: ")
    assert _address(at)["model"] == key
    # Attention: the model alone (fine-tuned ones too), on the example
    at = _open("attention", model=key, task=task or "sst2", example=example)
    assert at.multiselect(key="attn_models").value == [name] and not at.warning
    assert at.selectbox(key="attn_example").value.startswith(f"{task or 'sst2'} · {example}: ")
    if not task:  # the pages of encoders
        assert _open("mechanisms", model=key).selectbox(key="mech_model").value == name
        if key != "minilm":
            assert _open("models", model=key).selectbox(key="models_run").value == key
    else:  # the pages of fine-tuning runs
        assert _open("errors", model=base, task=task).selectbox(key="err_run").value == f"{base} / {task}"
        assert _open("comparison", model=base, task=task).selectbox(key="cmp_a").value == base


def test_a_choice_then_a_reload_keeps_the_model(demo_env):
    at = _open("attribution")
    assert at.selectbox(key="attr_model").value == "Atinuke: atinuke-seed0 fine-tuned on sst2"  # the default
    at.selectbox(key="attr_model").set_value("BERT: bert-seed0 fine-tuned on snli").run()
    address = _address(at)
    assert address["model"] == "bert-seed0/snli"
    assert _open("attribution", **address).selectbox(key="attr_model").value == "BERT: bert-seed0 fine-tuned on snli"


def test_attribution_inputs_fit_the_models_task(demo_env):
    from plotly.graph_objects import Heatmap

    from workbench.figures import DIVERGING

    at = _open("attribution", model="bert-seed0/snli")
    at.radio(key="attr_source").set_value("Dataset example").run()
    options = at.selectbox(key="attr_example").options
    assert options and all(o.startswith("snli · ") for o in options)  # never an SST-2 sentence
    shown = "\n".join(c.value for c in at.caption)
    assert "**Premise:** A man is running in the park." in shown and "**Hypothesis:** A person is outside." in shown
    # The target: the prediction, with its probability
    explain = at.selectbox(key="attr_class")
    assert "the prediction" in explain.format_func(explain.value) and "p = " in explain.format_func(explain.value)
    probabilities = [float(re.search(r"p = ([0-9.]+)", o).group(1)) for o in explain.options]  # shown
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 0.02
    assert f"Explained target: class={explain.value}" in "\n".join(c.value for c in at.caption)
    # One colour convention: the computed heatmap uses the precomputed view's (red = for the target)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [c[1] for c in chart["data"][0]["colorscale"]] == [c[1] for c in Heatmap(colorscale=DIVERGING).colorscale]
    # A convergence delta over the tolerance is flagged, one within it is not
    delta = float(re.search(r"IG convergence delta: Integrated Gradients ([-+0-9.e]+)",
                            "\n".join(c.value for c in at.caption)).group(1))
    assert any("has not converged" in w.value for w in at.warning) == (abs(delta) > 0.05)
    # Typed input: a pair task has a second box
    at.radio(key="attr_source").set_value("Type a text").run()
    assert at.text_area(key="attr_text").label == "Premise" and at.text_area(key="attr_text_pair").label == "Hypothesis"
    at.text_area(key="attr_text_pair").set_value("").run()
    assert any("hypothesis is empty" in e.value for e in at.error)
