"""What the app and the report show is true (issue 29): one source of numbers for the claims' verdicts.

The Claims page, ``workbench claims``, ``workbench report`` and the report built from the app's Reports page
are the same function of the same runs: built on one planted experiment (tests/claims_fixtures.py: GLUE with a
planted advantage, SNLI with none, over two seeds, plus pretraining summaries, a learning-rate sweep and
probe results), their verdict tables are identical.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.claims_fixtures import write_experiment
from tests.test_app import APP
from workbench import verdicts
from workbench.cli import main

ACCURACY = {"mrpc": {"atinuke": 0.9, "bert": 0.7}, "snli": {"atinuke": 0.8, "bert": 0.8}}
SEEDS = 2  # the fewest that give a verdict; every fine-tuning run costs the reports a few seconds


def _accuracy(table: dict[str, float], arm: str, seed: int) -> float:
    return table[arm]


def _summary(arm: str, seed: int) -> dict:
    ppl = {"atinuke": 300.0, "bert": 200.0}[arm] + seed
    return {"seed": seed, "val_ppl": ppl, "test_ppl": ppl, "val_unigram_ppl": 700.0, "test_unigram_ppl": 680.0,
            "parameters": {"total": 1000, "non_embedding": 400}, "tokens_per_s": 5000.0 + seed, "device": "cpu",
            "model_config": {"n_layers": 2, "d_model": 8}, "config": {"seq_len": 16}}


@pytest.fixture(scope="module")
def experiment_runs(tmp_path_factory) -> Path:
    """A runs directory like the demo's: ``experiment/`` (two tasks, two arms, two seeds), ``lr-sweep/``
    and ``probes/``."""
    root = tmp_path_factory.mktemp("truth_runs")
    for task, accuracy in ACCURACY.items():  # each call writes its task's runs; experiment.json then names both
        write_experiment(root / "experiment" if task == "mrpc" else root / f"tmp-{task}", task=task,
                         seeds=SEEDS, pretrain=_summary if task == "mrpc" else None,
                         accuracy=functools.partial(_accuracy, accuracy))
    for arm in ("atinuke", "bert"):
        for seed in range(SEEDS):
            (root / f"tmp-snli/{arm}/seed{seed}/finetune/snli").rename(
                root / f"experiment/{arm}/seed{seed}/finetune/snli")
    spec = json.loads((root / "experiment" / "experiment.json").read_text())
    (root / "experiment" / "experiment.json").write_text(json.dumps(dict(spec, tasks=list(ACCURACY))))
    (root / "lr-sweep").mkdir()
    (root / "lr-sweep" / "best.json").write_text(json.dumps({"recipe_lr": 2e-3, "steps": 1200, "arms": {
        arm: {"best_lr": 2e-3, "best_val_ppl": 400.0, "recipe_val_ppl": 400.0, "complete": True, "at_grid_edge": False}
        for arm in ("atinuke", "bert")}}))
    rows = [dict(model=m, task="pos", layer=layer, metric="accuracy", value=0.5 + 0.1 * layer, seed=0, control=c,
                 source="silver: spaCy") for m in ("atinuke-seed0", "bert-seed0") for layer in range(3)
            for c in ("none", "control_task")]
    (root / "probes" / "fixture").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "probes" / "fixture" / "results.parquet", index=False)
    return root


def _same(table: pd.DataFrame) -> pd.DataFrame:
    """A verdict table through CSV, so that tables from JSON, CSV and the page compare cell by cell."""
    import io

    return pd.read_csv(io.StringIO(table.to_csv(index=False)))


def _app(page: str, root: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ATINUKE_RUNS", str(root))
    monkeypatch.setenv("ATINUKE_APP_WARMUP", "0")
    at = AppTest.from_file(APP, default_timeout=240)
    at.switch_page(f"ui/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_claims_page_cli_and_both_reports_show_identical_verdicts(experiment_runs, tmp_path, monkeypatch, capsys):
    root = experiment_runs
    # 1. workbench claims
    assert main(["claims", "--runs", str(root), "--format", "json"]) == 0
    cli = verdicts.verdict_table(pd.DataFrame(json.loads(capsys.readouterr().out)))
    # 2. workbench report (its --n-boot sets the report's intervals, never the verdicts)
    out = tmp_path / "cli" / "report.html"
    assert main(["report", "--runs", str(root), "--out", str(out), "--no-pdf", "--n-boot", "50"]) == 0
    cli_report = verdicts.verdict_table(pd.read_csv(out.parent / "report_data" / "claims.csv"))
    # 3. the Claims page
    at = _app("claims", root, monkeypatch)
    page = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    text = "\n".join(m.value for m in at.markdown)
    # 4. the report built from the Reports page, with its default selection
    at = _app("reports", root, monkeypatch)
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    html_path, data_dir, _ = at.session_state["report_result"]
    app_report = verdicts.verdict_table(pd.read_csv(Path(data_dir) / "claims.csv"))

    expected = _same(cli)
    for name, table in (("report (CLI)", cli_report), ("Claims page", page), ("report (app)", app_report)):
        pd.testing.assert_frame_equal(_same(table), expected, check_dtype=False, obj=name)
    by_claim = expected.set_index("claim")
    # Two planted seeds per arm: the run-level test (workbench.run_inference) has little power there, so both
    # open claims must carry the Holm p they were judged by beside the verdict.
    assert by_claim.loc["snli", "verdict"] == "inconclusive"
    assert by_claim.loc["snli", "reason"].startswith("no significant difference (Holm p = ")
    glue = by_claim.loc["glue"]
    assert glue["reason"].startswith("Holm p = " if glue["verdict"] == "supported" else "no significant difference")
    # Beside the verdict, never "nan", "seeds: 0" or this machine's paths
    html = Path(html_path).read_text(encoding="utf-8")
    html = html[html.index('<section id="findings'):html.index('<section id="models')]  # the findings section
    for shown in (text, html):
        assert "no controlled experiment under the runs directory" not in shown.lower()
        assert "Data: nan" not in shown and "data: *nan*" not in shown and "seeds: 0" not in shown
        assert str(root) not in shown
    assert "Verdict: :orange[inconclusive] — no significant difference (Holm p = " in text


def test_reports_page_includes_every_kind_of_run_by_default(experiment_runs, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(experiment_runs, root)
    for folder, files in (("attributions/tiny-test", ("attributions.parquet", "summary.json")),
                          ("sae/tiny-resid0", ("features.parquet", "metrics.json")),
                          ("lens/tiny", ("lens_layers.parquet", "summary.json")),
                          ("patching/tiny", ("patching.parquet", "summary.json")),
                          ("circuits/tiny", ("edges.parquet", "summary.json"))):
        (root / folder).mkdir(parents=True)
        for name in files:
            (root / folder / name).write_text("{}" if name.endswith(".json") else "")
    at = _app("reports", root, monkeypatch)
    chosen = at.multiselect(key="report_runs").value
    assert chosen == at.multiselect(key="report_runs").options  # everything, by default
    kinds = {label.split(" / ")[0].split(" (")[0] for label in chosen}
    assert {"controlled experiment", "probe results", "attribution", "SAE", "logit lens", "activation patching",
            "circuit"} <= kinds
