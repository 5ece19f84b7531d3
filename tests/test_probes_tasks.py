"""Probing tasks (probes/tasks.py): format parsers, gold excerpts, deterministic splits, clear errors."""
from __future__ import annotations

import pandas as pd
import pytest

from atinuke.errors import UserInputError
from atinuke.tasks.metrics import bio_to_spans
from probes.tasks import (
    ProbingData,
    _bracket_spans,
    _coref_spans,
    _read_conllu,
    load_probing_data,
    split_of,
)


def test_bracket_and_coref_columns():
    assert sorted(_bracket_spans(["(ARG0*", "*)", "(V*)", "(ARGM-TMP*)", "*"])) == [(0, 1, "ARG0"), (2, 2, "V"), (3, 3, "ARGM-TMP")]
    assert sorted(_coref_spans(["(10|(12)", "-", "10)", "(12)"])) == [(0, 0, "12"), (0, 2, "10"), (3, 3, "12")]
    # probes' gold NER reads CoNLL-2003's IOB1 tags with atinuke's BIO reader: I-X after O opens a span.
    assert bio_to_spans(["I-ORG", "O", "I-PER", "I-PER", "B-PER", "O"]) == [("ORG", 0, 0), ("PER", 2, 3), ("PER", 4, 4)]


def test_conllu_words_are_located_in_the_raw_text(tmp_path):
    path = tmp_path / "x.conllu"
    path.write_text("# sent_id = a\n# text = Hi, you!\n1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n"
                    "2\t,\t,\tPUNCT\t,\t_\t1\tpunct\t_\t_\n3\tyou\tyou\tPRON\tPRP\t_\t1\tvocative\t_\t_\n"
                    "4\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_\n\n")
    [(sentence, rows)] = _read_conllu(path)
    assert sentence.words == ["Hi", ",", "you", "!"] and sentence.word_spans[2] == (4, 7)
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tHi\thi\tINTJ\n\n")
    with pytest.raises(UserInputError, match=r"bad.conllu:1"):
        _read_conllu(bad)


def test_gold_tasks_read_the_real_excerpts():
    pos = load_probing_data("pos", "gold")
    assert pos.source == "gold: data/dependencies.conllu"
    first = pos.targets.iloc[:3]
    assert list(first["label"]) == ["PRON", "SCONJ", "PROPN"] and list(first["key"]) == ["what", "if", "google"]
    srl = load_probing_data("srl", "gold")
    assert "ARG0" in srl.labels and "ARG1" in srl.labels and "V" not in srl.labels
    row = srl.targets.iloc[0]
    words = srl.sentences[row["sentence"]].words
    assert words[row["a_start"]] == "love" and words[row["b_start"]:row["b_end"] + 1] == ["a", "person"]
    coref = load_probing_data("coref", "gold")
    assert set(coref.labels) == {"different", "same"}
    ner = load_probing_data("ner", "gold")
    assert {"ORG", "PER", "LOC"} <= set(ner.labels)


def test_splits_are_deterministic_and_by_group():
    assert split_of("wiki-0-0-s1") == split_of("wiki-0-0-s1")
    shares = pd.Series([split_of(f"s{i}") for i in range(5000)]).value_counts(normalize=True)
    assert 0.17 < shares["test"] < 0.23
    a = load_probing_data("pos", "gold").targets
    b = load_probing_data("pos", "gold").targets
    pd.testing.assert_frame_equal(a, b)
    assert a.groupby("sentence")["split"].nunique().max() == 1  # a sentence never straddles the split


def test_unknown_task_source_and_empty_split_are_clear_errors():
    with pytest.raises(UserInputError, match="unknown probing task 'postag'"):
        load_probing_data("postag")
    with pytest.raises(UserInputError, match="has no 'silver' labels"):
        load_probing_data("srl", "silver")
    data = ProbingData("x", "word", [], pd.DataFrame({"split": ["train"]}), "gold: f")
    with pytest.raises(UserInputError, match="no labelled targets in the 'test' split"):
        data.split("test")
