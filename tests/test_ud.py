"""CoNLL-U and gold UD English EWT: the reader (multiword token ranges and empty nodes skipped, as UD says),
file:line errors, the official files' known answers, and gold UD probing end to end on the shipped tiny Atinuke."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from atinuke.errors import UserInputError
from atinuke.paths import REPO_ROOT
from atinuke.tasks.conllu import UD_EWT_FILES, UD_EWT_SIZES, describe, read_conllu
from probes.tasks import load_probing_data

REAL = Path(os.environ.get("ATINUKE_DATA", "/nonexistent"))
needs_real = pytest.mark.skipif(not (REAL / "ud_ewt" / "en_ewt-ud-test.conllu").is_file(),
                                reason="ATINUKE_DATA does not hold ud_ewt/ (UD English EWT CoNLL-U files)")

# A planted sentence with a multiword token (2-3 "don't") and an empty node (4.1, enhanced graph only).
PLANTED = """# sent_id = planted-1
# text = I don't know what happened.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t4:nsubj\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t4:aux\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t4:advmod\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t0:root\t_
4.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t4:conj\tCopyOf=4
5\twhat\twhat\tPRON\tWP\t_\t6\tnsubj\t6:nsubj\t_
6\thappened\thappen\tVERB\tVBD\t_\t4\tccomp\t4:ccomp\tSpaceAfter=No
7\t.\t.\tPUNCT\t.\t_\t4\tpunct\t4:punct\t_

# sent_id = planted-2
# text = Dogs bark at night.
1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t2:nsubj\t_
2\tbark\tbark\tVERB\tVBP\t_\t0\troot\t0:root\t_
3\tat\tat\tADP\tIN\t_\t4\tcase\t4:case\t_
4\tnight\tnight\tNOUN\tNN\t_\t2\tobl\t2:obl\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t2\tpunct\t2:punct\t_

"""


def test_multiword_ranges_and_empty_nodes_are_skipped(tmp_path):
    path = tmp_path / "planted.conllu"
    path.write_text(PLANTED)
    first, second = read_conllu(path)
    assert [w.form for w in first.words] == ["I", "do", "n't", "know", "what", "happened", "."]
    assert [w.id for w in first.words] == list(range(1, 8))
    assert first.heads == [3, 3, 3, 3, 5, 3, 3]  # 0-based; the root ("know") points to itself
    assert first.id == "planted-1" and first.text == "I don't know what happened." and first.line == 1
    assert second.line == 13 and [w.upos for w in second.words] == ["NOUN", "VERB", "ADP", "NOUN", "PUNCT"]


def test_probe_targets_from_ud_layout_are_located_in_the_text(tmp_path, monkeypatch):
    directory = tmp_path / "ud_ewt"
    directory.mkdir()
    for name in UD_EWT_FILES.values():
        (directory / name).write_text(PLANTED)
    monkeypatch.setenv("ATINUKE_DATA", str(tmp_path))
    pos = load_probing_data("pos", max_sentences=4)  # the default where ATINUKE_DATA holds ud_ewt/
    assert pos.source.startswith("gold (real): UD English EWT en_ewt-ud-train.conllu (2 of 2 sentences")
    assert "en_ewt-ud-test.conllu (1 of 2" in pos.source and "seed 0" in pos.source
    sizes = pos.targets.groupby("split").size().to_dict()
    assert sizes["train"] == 7 + 5 and sizes["test"] in (7, 5)  # both train sentences, one of the two test ones
    sentence = next(s for s in pos.sentences if s.id == "planted-1")
    assert sentence.words == ["I", "do", "n't", "know", "what", "happened", "."]  # "do" and "n't" inside "don't"
    assert sentence.word_spans[1:3] == [(2, 4), (4, 7)]
    depth = load_probing_data("tree_depth", max_sentences=4)
    planted = depth.targets[depth.targets["sentence"] == depth.sentences.index(
        next(s for s in depth.sentences if s.id == "planted-1"))]
    assert planted["label"].tolist() == ["3", "3", "3", "3", "5", "3", "3"]
    dep = load_probing_data("dep", "ud", max_sentences=4)
    assert {"nsubj", "aux", "advmod", "ccomp", "punct"} <= set(dep.labels) and "root" not in dep.labels


@pytest.mark.parametrize("edit,message", [
    (lambda lines: lines[:4] + ["3\tn't\tnot\tPART"] + lines[5:], r"planted.conllu:5: expected 10 tab-separated"),
    (lambda lines: lines[:5] + [lines[5].replace("\t4\tadvmod", "\t9\tadvmod")] + lines[6:],
     r"planted.conllu:6: HEAD 9 is not another word"),
    (lambda lines: lines[:6] + [lines[6].replace("\t0\troot", "\t2\troot")] + lines[7:],
     r"planted.conllu:1: a sentence has exactly one root .* has 0"),
    (lambda lines: lines[:2] + [lines[2].replace("1\tI", "1a\tI")] + lines[3:], r"planted.conllu:3: ID '1a'"),
    (lambda lines: lines[:4] + lines[5:], r"planted.conllu:5: word ID 3 out of order \(expected 2\)"),
])
def test_malformed_conllu_names_file_and_line_and_the_cli_exits_2(tmp_path, monkeypatch, capsys, edit, message):
    from probes.cli import main

    directory = tmp_path / "ud_ewt"
    directory.mkdir()
    lines = PLANTED.splitlines()
    bad = "\n".join(edit(lines)) + "\n"
    (directory / "planted.conllu").write_text(bad)
    with pytest.raises(UserInputError, match=message):
        read_conllu(directory / "planted.conllu")
    for name in UD_EWT_FILES.values():
        (directory / name).write_text(bad)
    monkeypatch.setenv("ATINUKE_DATA", str(tmp_path))
    out = tmp_path / "run"
    code = main(["run", "--model", str(REPO_ROOT / "atinuke" / "checkpoints" / "tiny-atinuke-seed0" / "model"),
                 "--task", "pos", "--data", "ud", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "en_ewt-ud-train.conllu:" in err[0]
    assert not out.exists() or not any(out.iterdir())


@needs_real
def test_official_files_sizes_and_first_and_last_rows():
    rows = describe(REAL)
    assert {row["task"] for row in rows} == {"probe:pos", "probe:xpos", "probe:dep", "probe:tree_distance",
                                             "probe:tree_depth"}
    assert all(row["splits"] == UD_EWT_SIZES == {"train": 12544, "dev": 2001, "test": 2077} and
               row["source"] == "real" for row in rows)
    dev = read_conllu(REAL / "ud_ewt" / "en_ewt-ud-dev.conllu")
    test = read_conllu(REAL / "ud_ewt" / "en_ewt-ud-test.conllu")
    assert (len(dev), len(test)) == (2001, 2077)
    first = dev[0].words[0]
    assert (dev[0].id, first.form, first.upos, first.xpos, first.head, first.deprel) == (
        "weblog-blogspot.com_nominations_20041117172713_ENG_20041117_172713-0001", "From", "ADP", "IN", 3, "case")
    assert dev[0].text == "From the AP comes this story :"
    last = test[-1].words[-1]
    assert (last.id, last.form, last.upos, last.head, last.deprel) == (20, ".", "PUNCT", 2, "punct")


@needs_real
def test_gold_ud_pos_probe_on_the_shipped_tiny_atinuke(tmp_path, monkeypatch):
    from probes.runner import ProbeRunConfig, run_probing

    monkeypatch.setenv("ATINUKE_DATA", str(REAL))
    model = str(REPO_ROOT / "atinuke" / "checkpoints" / "tiny-atinuke-seed0" / "model")
    run = run_probing(ProbeRunConfig(model=model, task="pos", max_sentences=40, controls=True, seeds=1,
                                     backend="threading"), tmp_path / "run")
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert set(results["source"]) == {run.source} and run.source.startswith("gold (real): UD English EWT")
    accuracy = results[(results["metric"] == "accuracy") & (results["control"] == "none")].set_index("layer")["value"]
    test = load_probing_data("pos", max_sentences=40).split("test")
    majority = test["label"].value_counts(normalize=True).max()
    assert accuracy.max() > majority + 0.2, (accuracy.to_dict(), majority)  # the probe reads real POS information
    selectivity = results[results["metric"] == "selectivity"]
    assert len(selectivity) == len(accuracy)
