"""``probes report`` writes only into a new or empty --out, or replaces its own files with --overwrite."""
from __future__ import annotations

import pandas as pd

from probes.cli import main
from probes.runner import RESULT_COLUMNS


def _results(folder):
    folder.mkdir(parents=True)
    rows = [{"model": "m", "task": "pos", "layer": layer, "metric": "accuracy", "value": 0.5 + 0.1 * layer,
             "seed": 0, "control": "none", "source": "silver", "probe": "linear"} for layer in range(3)]
    pd.DataFrame(rows, columns=RESULT_COLUMNS).to_parquet(folder / "results.parquet", index=False)
    return folder


def test_report_refuses_a_non_empty_out_and_keeps_it(tmp_path, capsys):
    runs = _results(tmp_path / "run")
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["report", "--runs", str(runs), "--out", str(out)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main(["report", "--runs", str(runs), "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert pd.read_csv(out / "summary.csv").shape[0] >= 1
    file_out = tmp_path / "file.txt"
    file_out.write_text("x")
    assert main(["report", "--runs", str(runs), "--out", str(file_out)]) == 2
    assert file_out.read_text() == "x"
