"""workbench report: a self-contained, escaped, offline HTML file with provenance and its data beside it."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from test_app import make_fixture_runs  # noqa: E402  (the shared runs-directory test fixture)

from atinuke.errors import UserInputError
from workbench import report

PAYLOAD = '<script>alert("pwned")</script>'


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory, tiny_atinuke_dir):
    """The fixture runs, with a <script> payload planted in a text, a gold label and a prediction."""
    root = make_fixture_runs(tmp_path_factory.mktemp("report_runs"), tiny_atinuke_dir, n=80)
    path = root / "finetune" / "tiny-test" / "sst2" / "predictions.parquet"
    table = pd.read_parquet(path)
    wrong = table.index[~table["correct"]][0]
    table.loc[wrong, "text"] = f"{PAYLOAD} and <img src=x onerror=alert(1)>\x00NUL\x07"
    table.loc[wrong, "score"] = 0.999  # the most confidently wrong: it lands in the worst-examples table
    table["meta_rule"] = table["meta_rule"].where(table.index != wrong, PAYLOAD)
    table.to_parquet(path, index=False)
    return root


def test_report_is_self_contained_escaped_and_has_provenance(hostile_runs, tmp_path):
    out = tmp_path / "out" / "report.html"
    result = report.build_report([hostile_runs], out, pdf=False, n_boot=100)
    page = out.read_text(encoding="utf-8")
    assert "\x00" not in page and "\x07" not in page and "NUL" in page  # control bytes never reach the HTML
    # Offline: plotly.js embedded exactly once, no CDN or remote script.
    assert page.count("plotly.js v") == 1  # the bundle is embedded once
    assert len(re.findall(r"<script[^>]*\bsrc=", page)) == 0
    assert page.count("Plotly.newPlot") >= 3
    # Escaped: the payload shows as text, and no script from data exists.
    assert re.search(r'&lt;script&gt;alert\((&quot;|")pwned(&quot;|")\)&lt;/script&gt;', page)
    assert PAYLOAD not in page and "<img src=x" not in page
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert all(s in ('<script type="text/javascript">', '<script>') for s in scripts), set(scripts)
    # Provenance: git commit, model hash, package versions, silver data flagged.
    assert "git commit" in page and "torch" in page and "SILVER" in page
    provenance = json.loads((result.data_dir / "provenance.json").read_text())
    pretrain = [r for r in provenance["runs"] if r["kind"] == "pretrain"][0]
    assert re.fullmatch(r"[0-9a-f]{64}", pretrain["model_hash"])
    assert {r["data_kind"] for r in provenance["runs"] if r["kind"] == "finetune"} == {"silver"}
    assert provenance["environment"]["packages"]["pandas"] == pd.__version__
    # Data beside it: tables that round-trip.
    comparisons = pd.read_csv(result.data_dir / "comparisons.csv")
    assert set(comparisons["metric"]) == {"accuracy", "example_f1"}
    slices = pd.read_parquet(result.data_dir / "slices_tiny-test_sst2.parquet")
    negated = slices[(slices["feature"] == "meta_negation") & (slices["slice"] == "True")]
    assert negated["value"].iloc[0] == 0.0  # the fixture model fails on every negated sentence
    assert (result.data_dir / "claims.csv").is_file() and result.pdf is None


def test_report_rejects_bad_paths_and_keeps_old_report(tmp_path, hostile_runs):
    out = tmp_path / "report.html"
    out.write_text("old report")
    with pytest.raises(UserInputError, match="no such run directory"):
        report.build_report([tmp_path / "nope"], out, pdf=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserInputError, match="no pretraining run"):
        report.build_report([empty], out, pdf=False)
    with pytest.raises(UserInputError, match=".html"):
        report.build_report([hostile_runs], tmp_path / "report.txt", pdf=False)
    assert out.read_text() == "old report"


def test_report_cli_exit_codes(hostile_runs, tmp_path, capsys):
    from workbench.cli import main

    assert main(["report", "--runs", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html"), "--no-pdf"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    single = hostile_runs / "finetune" / "minilm" / "sst2"
    assert main(["report", "--runs", str(single), "--out", str(tmp_path / "r.html"), "--no-pdf", "--n-boot", "50"]) == 0
    assert (tmp_path / "r.html").is_file() and (tmp_path / "r_data" / "provenance.json").is_file()


@pytest.mark.skipif(report.find_chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_pdf_through_headless_chromium(hostile_runs, tmp_path):
    single = hostile_runs / "finetune" / "minilm" / "sst2"
    result = report.build_report([single], tmp_path / "r.html", pdf=True, n_boot=50)
    assert result.pdf is not None and result.pdf.read_bytes()[:5] == b"%PDF-"


def test_report_of_an_experiment_carries_its_verdicts(tmp_path):
    from tests.claims_fixtures import write_experiment

    root = write_experiment(tmp_path / "experiment", accuracy=lambda arm, seed: {"atinuke": 0.7, "bert": 0.9}[arm])
    result = report.build_report([root], tmp_path / "report.html", pdf=False, n_boot=200)
    claims = pd.read_csv(result.data_dir / "claims.csv").set_index("claim")
    assert claims.loc["glue", "verdict"] == "contradicted" and claims.loc["glue", "comparator"] == "bert"
    assert "same size trained on the same tokens" in result.html.read_text()
    competence = pd.read_csv(result.data_dir / "competence.csv").set_index("arm")
    assert competence.loc["bert", "verdict"] == "learnt" and competence.loc["atinuke", "trivial_score"] == 0.5
    assert "Has each model learnt each task?" in result.html.read_text()
