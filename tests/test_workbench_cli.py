"""The ``workbench attribute`` command: output table, store reuse, one-line errors."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.attribution import COLUMNS
from workbench.cli import COMMANDS, main


@pytest.fixture()
def texts_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("the market fell last week .\nprices rose .\n\nanalysts expect a recovery .\nshares fell .\n")
    return path


def test_attribute_writes_the_table_and_reuses_the_store(tiny_atinuke_dir, texts_file, tmp_path, capsys):
    out, store = tmp_path / "out", tmp_path / "store"
    argv = ["attribute", "--model", str(tiny_atinuke_dir), "--data", str(texts_file), "--method",
            "saliency,integrated_gradients", "--n-steps", "4", "--limit", "3", "--out", str(out), "--store", str(store),
            "--no-progress"]
    assert main(argv) == 0
    table = pd.read_parquet(out / "attributions.parquet")
    assert tuple(table.columns) == COLUMNS
    assert set(table["method"]) == {"saliency", "integrated_gradients"}
    assert table["example_id"].nunique() == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_examples"] == 3 and summary["store_hits"] == 0
    assert main(argv) == 2  # a finished run is never replaced silently
    assert "already holds files" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0  # rerun: everything comes from the store
    assert json.loads((out / "summary.json").read_text())["store_hits"] == 6
    pd.testing.assert_frame_equal(pd.read_parquet(out / "attributions.parquet"), table)


@pytest.mark.parametrize("extra, message", [
    (["--method", "integrated_gradient"], "unknown method"),
    (["--target", "class=1"], "does not exist"),
    (["--baseline", "unk"], "unknown baseline"),
])
def test_bad_input_is_one_line_exit_2(tiny_atinuke_dir, texts_file, tmp_path, capsys, extra, message):
    argv = ["attribute", "--model", str(tiny_atinuke_dir), "--data", str(texts_file), "--limit", "2",
            "--out", str(tmp_path / "o"), "--no-store", "--no-progress", "--n-steps", "2"] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "attributions.parquet").exists()


def test_unknown_model_is_a_user_error(tmp_path, capsys):
    assert main(["attribute", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such model directory" in capsys.readouterr().err


def test_commands_table_is_extensible():
    assert COMMANDS["attribute"][0] == "workbench.cli"
