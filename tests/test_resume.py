"""Resumable `workbench patch|circuit|lens`: a run interrupted after its first unit (a planted exception, or a
deleted part) resumes to exactly the tables of an uninterrupted run; other settings are refused in one line."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from workbench.cli import main

CLEAN, CORRUPTED = "the company said the market was up", "the president said the market was up"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class Planted(RuntimeError):
    """The planted interruption."""


def _same(a, b, names):
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name), check_exact=True)


def _summary(path):
    return json.loads((path / "summary.json").read_text(encoding="utf-8"))


def test_patch_resumes_after_an_interruption(tmp_path, capsys, monkeypatch, tiny_atinuke_dir):
    from workbench import patching

    argv = ["patch", "--model", str(tiny_atinuke_dir), "--clean", CLEAN, "--corrupted", CORRUPTED,
            "--component", "mlp", "--n-steps", "2", "--out"]
    assert main(argv + [str(tmp_path / "full")]) == 0
    real = patching.attribution_patching

    def interrupted(*args, **kwargs):
        if args[5] == "eap_ig":
            raise Planted("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(patching, "attribution_patching", interrupted)
    with pytest.raises(Planted):
        main(argv + [str(tmp_path / "cut")])
    assert not (tmp_path / "cut" / "patching.parquet").exists()
    assert len(list((tmp_path / "cut" / "parts").glob("*.parquet"))) == 3  # exact per layer (2), attribution
    monkeypatch.setattr(patching, "attribution_patching", real)
    assert main(argv + [str(tmp_path / "cut")]) == 2 and "already holds files" in capsys.readouterr().err
    assert main(argv + [str(tmp_path / "cut"), "--resume"]) == 0
    _same(tmp_path / "full", tmp_path / "cut", ["patching.parquet"])
    assert _summary(tmp_path / "cut")["resumed_parts"] == ["exact-L0", "exact-L1", "attribution"]
    for part in (tmp_path / "cut" / "parts").glob("*.parquet"):  # killed after the first exact layer
        if not part.name.startswith("exact-L0-"):
            part.unlink()
    assert main(argv + [str(tmp_path / "cut"), "--resume"]) == 0
    _same(tmp_path / "full", tmp_path / "cut", ["patching.parquet"])
    assert _summary(tmp_path / "cut")["resumed_parts"] == ["exact-L0"]
    assert _summary(tmp_path / "full")["metric_clean"] == _summary(tmp_path / "cut")["metric_clean"]
    other = ["patch", "--model", str(tiny_atinuke_dir), "--clean", CLEAN, "--corrupted", CORRUPTED,
             "--component", "mlp", "--n-steps", "3", "--out", str(tmp_path / "cut"), "--resume"]
    assert main(other) == 2
    error = capsys.readouterr().err.strip()
    assert "other settings (n_steps: 2 there, 3 now)" in error and len(error.splitlines()) == 1


def test_circuit_resumes_from_its_ranking(tmp_path, monkeypatch, tiny_atinuke_dir):
    from workbench import circuits

    argv = ["circuit", "--model", str(tiny_atinuke_dir), "--clean", CLEAN, "--corrupted", CORRUPTED,
            "--method", "attribution", "--fraction", "0.8", "--out"]
    assert main(argv + [str(tmp_path / "full")]) == 0
    real = circuits.discover_node_circuit

    def interrupted(*args, **kwargs):
        raise Planted("killed after the ranking")

    monkeypatch.setattr(circuits, "discover_node_circuit", interrupted)
    with pytest.raises(Planted):
        main(argv + [str(tmp_path / "cut")])
    monkeypatch.setattr(circuits, "discover_node_circuit", real)
    assert main(argv + [str(tmp_path / "cut"), "--resume"]) == 0
    _same(tmp_path / "full", tmp_path / "cut", ["nodes.parquet", "curve.parquet"])
    assert _summary(tmp_path / "cut")["resumed_parts"] == ["node_scores"]
    assert _summary(tmp_path / "full")["faithfulness"] == _summary(tmp_path / "cut")["faithfulness"]


def test_lens_resumes_after_its_last_part_is_deleted(tmp_path, tiny_atinuke_dir):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the market was up {i} points on the day" for i in range(12)), encoding="utf-8")
    argv = ["lens", "--model", str(tiny_atinuke_dir), "--corpus", str(corpus), "--steps", "3", "--eval-texts", "4",
            "--out"]
    assert main(argv + [str(tmp_path / "full")]) == 0
    assert main(argv + [str(tmp_path / "cut")]) == 0
    last = next((tmp_path / "cut" / "parts").glob("lens_tokens-*.parquet"))
    last.unlink()  # as if killed before the last unit was written
    assert main(argv + [str(tmp_path / "cut"), "--resume"]) == 0
    _same(tmp_path / "full", tmp_path / "cut", ["lens_layers.parquet", "lens_tokens.parquet"])
    assert _summary(tmp_path / "cut")["resumed_parts"] == ["tuned_lens", "lens_layers"]
    assert (tmp_path / "cut" / "tuned_lens.safetensors").read_bytes() == \
        (tmp_path / "full" / "tuned_lens.safetensors").read_bytes()
