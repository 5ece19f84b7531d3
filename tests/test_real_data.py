"""Known answers on the real, human-labelled data: exact first/last rows and official split sizes per format,
``atinuke data list``'s rows, and the data source recorded by fine-tuning. Skipped without ``ATINUKE_DATA``
(or ``../shared/data``); the registry-real checks are skipped until ``atinuke prepare-data`` has fetched them."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from atinuke import fetch
from atinuke.cli import main
from atinuke.tasks import load_task
from atinuke.tasks.sst import parse_tree

SPLITS = ("train", "dev", "test")


def _splits(task, real_data):
    return {split: load_task(task, "real", split, data_dir=real_data) for split in SPLITS}


def _sizes(splits):
    return tuple(len(splits[split].examples) for split in SPLITS)


def test_cola_raw(real_data):
    cola = _splits("cola", real_data)
    assert _sizes(cola) == (8551, 527, 516)
    first, last = cola["train"].examples[0], cola["train"].examples[-1]
    assert (first.id, first.label, first.meta["source"], first.text) == (
        "train-0", "1", "gj04", "Our friends won't buy this analysis, let alone the next one we propose.")
    assert (last.label, last.text) == ("1", "What all did you get for Christmas?")
    assert cola["test"].examples[-1].text == "John talked to Bill about himself."  # the line without a newline
    assert {ex.meta["domain"] for ex in cola["test"].examples} == {"out"}
    assert all(data.source == "real" and data.dataset.startswith("CoLA 1.1") for data in cola.values())


def test_sst_trees_and_the_8544_cut(real_data):
    five, two = _splits("sst5", real_data), _splits("sst2", real_data)
    assert _sizes(five) == (8544, 1101, 2210) and _sizes(two) == (6920, 872, 1821)
    first = five["train"].examples[0]
    assert first.label == "3" and first.text.startswith("The Rock is destined to be the 21st Century 's new `` Conan ''")
    # "Hey Arnold !" is train tree 8177 and twice in dev: a set difference of train.txt minus dev would lose it.
    assert five["train"].examples[8177].text == "Hey Arnold !" and five["train"].examples[8177].label == "2"
    assert sum(ex.text == "Hey Arnold !" for ex in five["dev"].examples) == 2
    lines = (real_data / "sst" / "train.txt").read_text().splitlines()
    assert len(lines) == 8544 + 1101
    words, phrases = parse_tree(lines[8543], real_data / "sst" / "train.txt", 8544)
    assert five["train"].examples[-1].text.split() == [{"-LRB-": "(", "-RRB-": ")"}.get(w, w) for w in words]
    assert five["train"].examples[-1].meta["phrases"] == [list(p) for p in phrases]
    assert [ex.text for ex in five["dev"].examples[:3]] != [ex.text for ex in five["train"].examples[-3:]]
    assert Counter(ex.label for ex in two["dev"].examples) == Counter({"1": 444, "0": 428})  # GLUE SST-2 dev
    assert two["train"].skipped == {"SST-2 drops neutral sentences (root label 2)": 1624}


def test_mrpc_msr(real_data):
    mrpc = _splits("mrpc", real_data)
    assert _sizes(mrpc) == (3576, 500, 1725)
    first = mrpc["train"].examples[0]
    assert (first.label, first.text, first.meta["#1 ID"], first.meta["#2 ID"]) == (
        "1", 'Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.',
        "702876", "702977")
    assert mrpc["test"].examples[-1].text.startswith("Sobig.F spreads when unsuspecting computer users")


def test_sts_years_split_and_unrated_rows(real_data):
    sts = _splits("sts", real_data)
    assert _sizes(sts) == (10882, 1210, 1186) and sum(_sizes(sts)) == 13278
    first = sts["test"].examples[0]
    assert (first.id, first.label, first.meta["year"], first.meta["genre"]) == (
        "2016-answer-answer-test-8", 3.0, "2016", "answer-answer")
    assert first.text.startswith("I remained under the banyan tree")
    assert {ex.meta["year"] for ex in sts["train"].examples} == {"2012", "2013", "2014", "2015"}
    assert not {ex.id for ex in sts["train"].examples} & {ex.id for ex in sts["dev"].examples}
    assert {ex.meta["genre"] for ex in sts["test"].examples} == {
        "answer-answer", "headlines", "plagiarism", "postediting", "question-question"}
    assert all(0.0 <= ex.label <= 5.0 for data in sts.values() for ex in data.examples)


def test_rte_from_the_zip(real_data):
    rte = _splits("rte", real_data)
    assert _sizes(rte) == (2567, 800, 800) and rte["train"].path.name == "rte.zip"
    first = rte["train"].examples[0]
    assert (first.id, first.label, first.text, first.text_pair) == (
        "rte1_dev-8", "not_entailment", "Crude oil for April delivery traded at $37.80 a barrel, down 28 cents",
        "Crude oil prices rose to $37.80 per barrel")
    rte1_dev = [ex.label for ex in rte["train"].examples if ex.id.startswith("rte1_dev-")]
    assert Counter(rte1_dev) == Counter({"not_entailment": 284, "entailment": 283})
    assert {ex.meta["length"] for ex in rte["test"].examples} == {"short", "long"}


def test_sick_both_tasks(real_data):
    sick, related = _splits("sick", real_data), _splits("sick-r", real_data)
    assert _sizes(sick) == _sizes(related) == (4500, 500, 4927)
    first = sick["train"].examples[0]
    assert (first.id, first.label, first.meta["relatedness"]) == ("1", "neutral", 4.5)
    assert first.text == "A group of kids is playing in a yard and an old man is standing in the background"
    assert related["train"].examples[0].label == 4.5
    last = sick["test"].examples[-1]
    assert (last.id, last.label, related["test"].examples[-1].label) == ("9996", "neutral", 1.0)
    assert set(Counter(ex.label for ex in sick["test"].examples)) == {"entailment", "neutral", "contradiction"}


def test_registry_real_sentiment_sets():
    ratings, critics = fetch.vader_movie_ratings(fetch=False), fetch.rotten_tomatoes_critics(fetch=False)
    if ratings is None or critics is None:
        pytest.skip("the registry-real sets are not fetched here: run `atinuke prepare-data`")
    regression = {split: load_task("vader-movies-r", "registry", split) for split in SPLITS}
    assert sum(_sizes(regression)) == 10605 and regression["train"].source == "registry-real"
    everything = {ex.id: ex for data in regression.values() for ex in data.examples}
    assert everything["mr-1"].label == pytest.approx(2.26666666667)
    assert everything["mr-1"].text.startswith("The Rock is destined to be the 21st Century's new ''Conan''")
    binary = [ex for split in SPLITS for ex in load_task("vader-movies", "registry", split).examples]
    assert len(binary) == 10605 - 533 and all(abs(ex.meta["rating"]) >= 0.5 for ex in binary)
    rt = _splits_registry("rt-critics")
    assert Counter(ex.label for data in rt.values() for ex in data.examples) == Counter({"1": 7403, "0": 5405})


def _splits_registry(task):
    return {split: load_task(task, "registry", split) for split in SPLITS}


def test_data_list_rows(real_data, capsys, monkeypatch):
    assert main(["data", "list", "--format", "json", "--data-dir", str(real_data)]) == 0
    rows = {row["task"]: row for row in json.loads(capsys.readouterr().out)}
    expected = {"cola": (8551, 527, 516), "sst5": (8544, 1101, 2210), "sick": (4500, 500, 4927),
                "sick-r": (4500, 500, 4927), "sst2": (6920, 872, 1821), "mrpc": (3576, 500, 1725),
                "sts": (10882, 1210, 1186), "rte": (2567, 800, 800)}
    for task, sizes in expected.items():
        assert rows[task]["source"] == "real" and (rows[task]["train"], rows[task]["dev"], rows[task]["test"]) == sizes
        assert rows[task]["licence"] and rows[task]["provenance"] and rows[task]["dataset"]
    assert rows["vader-movies"]["source"] == "registry-real" and rows["stsb"]["source"] in ("silver", "none")
    monkeypatch.delenv("ATINUKE_DATA")
    assert main(["data", "list", "--task", "sst5", "--task", "rt-critics", "--task", "cola"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["task", "family", "source", "dataset"]
    by_task = {line.split()[0]: line.split()[2] for line in table[1:]}
    assert by_task["sst5"] == "none" and by_task["rt-critics"] == "registry-real"
    assert by_task["cola"] in ("silver", "none") and len(by_task) == 3


def test_finetune_records_its_data_source(real_data, tmp_path, tiny_atinuke_dir):
    from atinuke.finetune import FinetuneConfig, finetune

    result = finetune(FinetuneConfig(model=str(tiny_atinuke_dir), task="cola", data="auto", data_dir=str(real_data),
                                     out=str(tmp_path / "run"), epochs=1, limit=16, batch_size=8, max_len=32))
    assert result.metrics["data_source"] == "real" and result.metrics["dataset"].startswith("CoLA 1.1")
    assert result.metrics["provenance"].startswith("gold: in_domain_dev.tsv")
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["data_source"] == "real" and "mcc" in written
    config = json.loads((tmp_path / "run" / "finetune_config.json").read_text())
    assert config["data_source"] == "real" and config["data_dir"] == str(real_data)
