"""Format loaders and the task registry, on the real allennlp 0.9.0 fixture excerpts and on small files in the
official formats (GLUE TSVs, CoNLL-2005) written here, including malformed ones."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atinuke.errors import UserInputError
from atinuke.fetch import allennlp_fixtures
from atinuke.tasks import (
    DIAGNOSTIC_TASKS,
    TASKS,
    get_task,
    load_task,
    load_task_data,
    provenance,
)
from atinuke.tasks.conll2005 import load_conll2005
from atinuke.tasks.conll2012 import read_coref, read_srl
from atinuke.tasks.glue import read_glue
from atinuke.tasks.nli import SKIP_NO_CONSENSUS, read_nli_jsonl
from atinuke.tasks.squad import read_squad


@pytest.fixture(scope="module")
def fixtures() -> Path:
    return allennlp_fixtures()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def tsv(*rows: list[str]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


# ------------------------------------------------------------------------------------------------ registry

def test_registry_names_and_kinds():
    for name in ("squad", "squad2", "cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "ax",
                 "snli", "srl", "srl2005", "coref"):
        assert get_task(name).name == name
    assert get_task("stsb").kind == "regression" and get_task("coref").kind == "coref"
    assert get_task("srl").kind == "tagging" and "B-ARG0" in get_task("srl").labels
    assert get_task("srl2005").labels[0] == "O" and "I-AM-TMP" in get_task("srl2005").labels
    assert DIAGNOSTIC_TASKS == ("squad2", "cola", "mrpc", "stsb", "snli", "coref", "srl")
    assert all(TASKS[name].metric for name in TASKS)


def test_unknown_task_lists_known_names():
    with pytest.raises(UserInputError, match="unknown task 'sst7'.*squad2.*coref"):
        get_task("sst7")


def test_diag_missing_says_prepare_data(tmp_path, monkeypatch):
    monkeypatch.setenv("ATINUKE_CACHE", str(tmp_path))
    with pytest.raises(UserInputError, match="atinuke prepare-data"):
        load_task_data("cola", "diag", "train")
    with pytest.raises(UserInputError, match="no diagnostic data"):
        load_task_data("qnli", "diag", "train")


def test_diag_reads_cache_layout_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("ATINUKE_CACHE", str(tmp_path))
    file = write(tmp_path / "diagnostic" / "cola" / "dev.tsv", tsv(["diag", "1", "", "The cat sat."],
                                                                   ["diag", "0", "*", "Cat the sat."]))
    data = load_task("cola", "diag", "dev")
    assert data.path == file and data.provenance == "silver, derived" == provenance("cola", "diag")
    assert [(e.id, e.label) for e in data.examples] == [("dev-0", "1"), ("dev-1", "0")]
    assert provenance("cola", str(file)) == "gold: dev.tsv"


# --------------------------------------------------------------------------------------------------- SQuAD

def test_squad_fixture_answers_and_offsets(fixtures):
    examples = read_squad(fixtures / "data" / "squad.json", version="1.1").examples
    assert len(examples) == 5
    by_id = {e.id: e for e in examples}
    statue = by_id["5733be284776f4190066117e"]
    assert statue.question == "What sits on top of the Main Building at Notre Dame?"
    assert [(a.text, a.start) for a in statue.answers][:2] == [("a golden statue of the Virgin Mary", 92)] * 2
    assert len(statue.answers) == 3 and statue.answers[2].start == 0  # the whole paragraph, as released
    year = by_id["5733b1da4776f41900661068"]
    assert (year.answers[0].text, year.answers[0].start, year.answers[0].end) == ("1882", 3, 7)
    assert all(e.context[a.start:a.end] == a.text for e in examples for a in e.answers)
    assert statue.title == "University_of_Notre_Dame" and not any(e.is_impossible for e in examples)


def squad_file(tmp_path: Path, qas: list[dict], context: str = "Paris is the capital of France.") -> Path:
    data = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}
    return write(tmp_path / "squad.json", json.dumps(data, indent=1))


def test_squad_v2_unanswerable(tmp_path):
    path = squad_file(tmp_path, [
        {"id": "q1", "question": "What is the capital of France?", "answers": [{"text": "Paris", "answer_start": 0}],
         "is_impossible": False},
        {"id": "q2", "question": "What is the capital of Spain?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "France", "answer_start": 24}]}])
    first, second = load_task_data("squad2", str(path))
    assert first.answers[0].end == 5 and not first.is_impossible
    assert second.is_impossible and second.answers == [] and second.meta["plausible_answers"] == ["France"]
    with pytest.raises(UserInputError, match="squad2"):
        load_task_data("squad", str(path))


@pytest.mark.parametrize("answer, message", [
    ({"text": "Paris", "answer_start": 40}, "outside the context"),
    ({"text": "Paris", "answer_start": 1}, "does not match"),
])
def test_squad_bad_offsets_name_file_and_line(tmp_path, answer, message):
    path = squad_file(tmp_path, [{"id": "q1", "question": "Capital?", "answers": [answer]}])
    with pytest.raises(UserInputError, match=rf"squad.json:\d+: .*{message}"):
        read_squad(path)


def test_squad_empty_context_and_invalid_json(tmp_path):
    with pytest.raises(UserInputError, match="empty context"):
        read_squad(squad_file(tmp_path, [{"id": "q", "question": "Q?", "answers": []}], context="  "))
    bad = write(tmp_path / "bad.json", '{"data": [\n{"title": "x",\n "paragraphs": [}\n]}')
    with pytest.raises(UserInputError, match=r"bad.json:3: invalid JSON"):
        read_squad(bad)


# ----------------------------------------------------------------------------------------------------- NLI

def test_snli_fixture(fixtures):
    loaded = read_nli_jsonl(fixtures / "data" / "snli.jsonl")
    assert [(e.id, e.label) for e in loaded.examples] == [
        ("3416050480.jpg#4r1n", "neutral"), ("3416050480.jpg#4r1c", "contradiction"),
        ("3416050480.jpg#4r1e", "entailment")]
    assert loaded.examples[2].text == "A person on a horse jumps over a broken down airplane."
    assert loaded.examples[2].text_pair == "A person is outdoors, on a horse."
    assert loaded.skipped == {}


def nli_line(pair_id: str, label: str) -> str:
    return json.dumps({"pairID": pair_id, "gold_label": label, "sentence1": "A man sleeps.",
                       "sentence2": "A person rests.", "genre": "fiction"}) + "\n"


def test_nli_drops_and_counts_no_consensus(tmp_path, caplog):
    path = write(tmp_path / "dev.jsonl", nli_line("a", "entailment") + nli_line("b", "-") + nli_line("c", "-")
                 + nli_line("d", "neutral"))
    with caplog.at_level("INFO"):
        data = load_task("snli", str(path), "dev")
    assert [e.id for e in data.examples] == ["a", "d"] and data.examples[0].meta["genre"] == "fiction"
    assert data.skipped == {SKIP_NO_CONSENSUS: 2}
    assert "skipped 2" in caplog.text


def test_multinli_jsonl_release(tmp_path):
    write(tmp_path / "multinli_1.0_dev_mismatched.jsonl", nli_line("7n", "neutral") + nli_line("8c", "-"))
    data = load_task("mnli", str(tmp_path), "dev_mismatched")
    assert [(e.id, e.meta["split"]) for e in data.examples] == [("7n", "dev_mismatched")]
    assert data.skipped == {SKIP_NO_CONSENSUS: 1}


@pytest.mark.parametrize("text, message", [
    (nli_line("a", "entailment") + '{"pairID": "b",\n', r"x.jsonl:2: invalid JSON"),
    (nli_line("a", "entailment") + nli_line("b", "maybe"), r"x.jsonl:2: unknown gold_label 'maybe'"),
    (nli_line("a", "entailment") + nli_line("a", "neutral"), r"x.jsonl:2: duplicate pairID"),
])
def test_nli_malformed(tmp_path, text, message):
    with pytest.raises(UserInputError, match=message):
        read_nli_jsonl(write(tmp_path / "x.jsonl", text))


# ---------------------------------------------------------------------------------------------------- GLUE

def test_glue_every_task_format(tmp_path):
    cola = read_glue("cola", write(tmp_path / "cola" / "train.tsv", tsv(["gj04", "1", "", 'He said "hi".'],
                                                                        ["gj04", "0", "*", "Him said hi."])))
    assert [(e.id, e.label, e.text) for e in cola.examples] == [("train-0", "1", 'He said "hi".'),
                                                                ("train-1", "0", "Him said hi.")]
    cola_test = read_glue("cola", write(tmp_path / "cola" / "test.tsv", tsv(["index", "sentence"], ["7", "Hi."])))
    assert [(e.id, e.label) for e in cola_test.examples] == [("test-7", None)]
    mrpc = read_glue("mrpc", write(tmp_path / "mrpc" / "dev.tsv", tsv(
        ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], ["1", "11", "12", "A b.", "B a."])))
    assert (mrpc.examples[0].text, mrpc.examples[0].text_pair, mrpc.examples[0].label) == ("A b.", "B a.", "1")
    assert mrpc.examples[0].meta["#1 ID"] == "11"
    stsb = read_glue("stsb", write(tmp_path / "stsb" / "dev.tsv", tsv(
        ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"],
        ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane.", "An air plane.", "5.000"])))
    assert stsb.examples[0].label == 5.0 and stsb.examples[0].meta["genre"] == "main-captions"
    header = ["index", "promptID", "pairID", "genre", "s1b", "s2b", "s1p", "s2p", "sentence1", "sentence2",
              "label1", "label2", "label3", "label4", "label5", "gold_label"]
    mnli = load_task("mnli", str(write(tmp_path / "MNLI" / "dev_mismatched.tsv", tsv(
        header, ["0", "1", "1n", "letters", *"abcd", "P.", "H.", *["neutral"] * 6]))), "dev")
    assert mnli.examples[0].id == "dev_mismatched-0" and mnli.examples[0].meta["split"] == "dev_mismatched"
    short = read_glue("mnli", write(tmp_path / "MNLI" / "dev_matched.tsv", tsv(
        header, ["0", "1", "1n", "letters", *"abcd", "P.", "H.", "neutral", "contradiction"])))
    assert short.examples[0].label == "contradiction"  # fewer annotator labels: gold_label is the last cell
    qnli = read_glue("qnli", write(tmp_path / "q.tsv", tsv(["index", "question", "sentence", "label"],
                                                          ["0", "Why?", "Because.", "not_entailment"])))
    assert (qnli.examples[0].text, qnli.examples[0].label) == ("Why?", "not_entailment")
    for task, label in (("rte", "entailment"), ("wnli", "1")):
        loaded = read_glue(task, write(tmp_path / f"{task}.tsv", tsv(["index", "sentence1", "sentence2", "label"],
                                                                    ["0", "A.", "B.", label])))
        assert loaded.examples[0].label == label
    ax = read_glue("ax", write(tmp_path / "AX.tsv", tsv(["index", "sentence1", "sentence2"], ["3", "A.", "B."])),
                   split="test")
    assert (ax.examples[0].id, ax.examples[0].label) == ("test-3", None)
    sst = read_glue("sst2", write(tmp_path / "sst.tsv", tsv(["sentence", "label"], ["it 's good ", "1"])))
    assert sst.examples[0].text_pair is None and sst.examples[0].label == "1"


def test_glue_directory_split_lookup(tmp_path):
    directory = tmp_path / "MRPC"
    write(directory / "train.tsv", tsv(["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                                       ["0", "1", "2", "X.", "Y."]))
    write(directory / "test.tsv", tsv(["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                                      ["5", "1", "2", "X.", "Y."]))
    assert load_task_data("mrpc", str(directory), "train")[0].label == "0"
    assert load_task_data("mrpc", str(directory), "test")[0].id == "test-5"
    with pytest.raises(UserInputError, match="dev.tsv"):
        load_task_data("mrpc", str(directory), "dev")


def test_qqp_missing_fields_skipped_and_counted(tmp_path):
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    path = write(tmp_path / "train.tsv", tsv(header, ["0", "1", "2", "How?", "How so?", "1"],
                                             ["1", "3", "4", "Why?"], ["2", "5", "6", "When?", "", "0"],
                                             ["3", "7", "8", "Who?", "Whom?", "0"]))
    data = load_task("qqp", str(path))
    assert [e.id for e in data.examples] == ["train-0", "train-3"]  # ids keep the row index
    assert sum(data.skipped.values()) == 2


def test_quora_fixture_is_not_glue_qqp(fixtures):
    # allennlp's quora_paraphrase.tsv is the BiMPM layout (label, q1, q2, id; no header), not GLUE's QQP.
    with pytest.raises(UserInputError, match=r"quora_paraphrase.tsv:1: the qqp header lacks column 'question1'"):
        read_glue("qqp", fixtures / "data" / "quora_paraphrase.tsv")


@pytest.mark.parametrize("task, rows, message", [
    ("cola", [["gj04", "1", "", "Fine."], ["gj04", "1", "Bad row."]], r"t.tsv:2: expected 4 .*found 3"),
    ("cola", [["gj04", "2", "", "Two."]], r"t.tsv:1: unknown cola label '2'"),
    ("rte", [["index", "sentence1", "sentence2", "label"], ["0", "A.", "B.", "neutral"]],
     r"t.tsv:2: unknown rte label 'neutral'"),
    ("stsb", [["sentence1", "sentence2", "score"], ["A.", "B.", "7.5"]], r"t.tsv:2: .*outside"),
    ("sst2", [["sentence", "label"], ["", "1"]], r"t.tsv:2: empty sentence"),
    ("mrpc", [["Quality", "#1 String"], ["1", "A."]], r"t.tsv:1: .*lacks column '#2 String'"),
])
def test_glue_malformed_rows(tmp_path, task, rows, message):
    with pytest.raises(UserInputError, match=message):
        read_glue(task, write(tmp_path / "t.tsv", tsv(*rows)))


# ------------------------------------------------------------------------------------------------ sidecars

def test_sidecar_attaches_rationale_and_meta(tmp_path):
    path = write(tmp_path / "train.tsv", tsv(["src", "1", "", "The cat sat."], ["src", "0", "*", "Cat the sat."]))
    write(tmp_path / "train.tsv.meta.jsonl",
          json.dumps({"id": "train-1", "rationale": [[0, 0, 7]], "meta": {"rule": "swap"}}) + "\n")
    first, second = load_task_data("cola", str(path))
    assert second.rationale == ((0, 0, 7),) and second.meta["rule"] == "swap" and second.meta["split"] == "train"
    assert first.rationale == () and "rule" not in first.meta


@pytest.mark.parametrize("line, message", [
    ({"id": "train-9", "rationale": []}, r"train.tsv.meta.jsonl:2: id 'train-9' matches no example"),
    ({"id": "train-1", "rationale": [[0, 3, 99]]}, r"train.tsv.meta.jsonl:2: .*outside segment 0"),
    ({"id": "train-1", "rationale": [[1, 0, 1]]}, r"train.tsv.meta.jsonl:2: .*outside segment 1"),
    ({"id": "train-0"}, r"train.tsv.meta.jsonl:2: repeated id 'train-0'"),
])
def test_sidecar_errors_name_its_line(tmp_path, line, message):
    path = write(tmp_path / "train.tsv", tsv(["src", "1", "", "The cat sat."], ["src", "1", "", "A dog ran."]))
    write(tmp_path / "train.tsv.meta.jsonl", json.dumps({"id": "train-0"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(UserInputError, match=message):
        load_task_data("cola", str(path))


# ----------------------------------------------------------------------------------------------- CoNLL-2012

def test_srl_fixture_predicates_and_tags(fixtures):
    examples = read_srl(fixtures / "data" / "srl" / "nt_6401.gold_conll").examples
    assert len(examples) == 80 and sum(t == "B-V" for e in examples for t in e.tags) == 80
    by_id = {e.id: e for e in examples}
    love = by_id["pt/nt/64/nt_6401:0:1:10"]
    assert love.words[love.predicate_index] == "love"
    assert love.tags == ["O"] * 6 + ["B-ARG1", "I-ARG1", "B-ARG0", "B-ARGM-ADV", "B-V", "O"]
    know = by_id["pt/nt/64/nt_6401:0:2:5"]
    assert know.tags == ["B-ARGM-DIS", "I-ARGM-DIS", "I-ARGM-DIS", "O", "B-ARG0", "B-V"] + ["B-ARG1"] + \
        ["I-ARG1"] * 5 + ["O"]
    assert know.meta["predicate_lemma"] == "know" and know.meta["predicate_sense"] == "01"


def test_conll2012_subdomain_fixtures(fixtures):
    first = read_srl(fixtures / "conll_2012" / "subdomain" / "example.gold_conll").examples
    assert [e.id for e in first] == ["bn/cnn/01/cnn_0115:0:0:3", "bn/cnn/01/cnn_0115:0:0:8",
                                     "bn/cnn/01/cnn_0115:0:1:2", "bn/cnn/01/cnn_0115:0:1:11",
                                     "bn/cnn/01/cnn_0115:0:3:3", "bn/cnn/01/cnn_0115:0:3:10"]
    (doc,) = read_coref(fixtures / "conll_2012" / "subdomain" / "example.gold_conll").examples
    assert doc.sentence_starts == [0, 11, 24, 29]  # the third sentence skips word numbers 2, 3 and 6
    assert [" ".join(doc.words[s:e + 1]) for s, e in doc.clusters[2]] == ["The prosecution", "its", "Denise Dillon"]
    assert len(read_srl(fixtures / "conll_2012" / "subdomain2" / "example.gold_conll").examples) == 2
    # both files claim document bn/cnn/01/cnn_0115 part 0: reading them together is refused, not merged
    with pytest.raises(UserInputError, match="duplicate id"):
        load_task_data("srl", str(fixtures / "conll_2012"))


def test_coref_fixture_clusters(fixtures):
    docs = load_task_data("coref", str(fixtures / "coref" / "coref.gold_conll"))
    assert [d.id for d in docs] == ["bc/cctv/00/cctv_0000:0", "bc/cctv/00/cctv_0000:3"]
    first = docs[0]
    assert first.clusters == [[(23, 24), (41, 42)], [(28, 28), (32, 37)]]
    assert [" ".join(first.words[s:e + 1]) for s, e in first.clusters[1]] == [
        "their", "these well - known cartoon images"]
    assert first.sentence_starts == [0, 27, 51] and first.speakers[0] == "Speaker#1"
    assert len(first.words) == len(first.speakers) == 65
    assert [" ".join(docs[1].words[s:e + 1]) for s, e in docs[1].clusters[1]] == [
        "the clever Hong Kong people", "they"]


CONLL_HEAD = "#begin document (x/doc); part 001\n"


def conll_row(i: int, word: str, srl: str = "(V*)", coref: str = "-") -> str:
    return f"x/doc 1 {i} {word} NN * go 01 - spk * {srl} {coref}\n"


@pytest.mark.parametrize("body, message", [
    (conll_row(0, "a", "(ARG0*") + conll_row(1, "b", "(V*)"), r"doc.gold_conll:3: span 'V' opens inside"),
    (conll_row(0, "a", "(ARG0*") + conll_row(1, "b", "*"), r"doc.gold_conll:2: unbalanced brackets"),
    (conll_row(0, "a", "(ARG9*)") + conll_row(1, "b", "(V*)"), r"doc.gold_conll:2: unknown role label 'ARG9'"),
    (conll_row(0, "a") + "x/doc 1 1 b NN * - - - spk *\n", r"doc.gold_conll:3: 11 columns"),
    (conll_row(0, "a") + conll_row(0, "b"), r"doc.gold_conll:3: word number '0'"),
    (conll_row(0, "a", coref="(3") + conll_row(1, "b"), r"doc.gold_conll:2: unbalanced brackets"),
])
def test_conll2012_malformed(tmp_path, body, message):
    path = write(tmp_path / "doc.gold_conll", CONLL_HEAD + body + "\n#end document\n")
    reader = read_coref if "(3" in body else read_srl
    with pytest.raises(UserInputError, match=message):
        reader(path)


def test_conll2012_part_and_ids(tmp_path):
    write(tmp_path / "d" / "train" / "a.gold_conll", CONLL_HEAD + conll_row(0, "Kim", "(ARG0*)", "(7)")
                 + conll_row(1, "runs") + "\n" + conll_row(0, "She", "(ARG0*)", "(7)") + conll_row(1, "won")
                 + "#end document\n")
    write(tmp_path / "d" / "train" / "a.gold_conll.meta.jsonl",
          json.dumps({"id": "x/doc:1:1:1", "rationale": [[0, 0, 3]], "meta": {"rule": "subject"}}) + "\n"
          + json.dumps({"id": "x/doc:1", "rationale": [[0, 0, 3], [0, 9, 12]], "meta": {"rule": "repeat"}}) + "\n")
    srl = load_task_data("srl", str(tmp_path / "d"), "train")
    assert [e.id for e in srl] == ["x/doc:1:0:1", "x/doc:1:1:1"] and srl[1].meta["rule"] == "subject"
    (doc,) = load_task_data("coref", str(tmp_path / "d"), "train")
    assert doc.id == "x/doc:1" and doc.clusters == [[(0, 0), (2, 2)]]
    assert doc.meta["rule"] == "repeat" and doc.rationale == ((0, 0, 3), (0, 9, 12))  # "Kim", "She"
    assert doc.text[0:3] == "Kim" and doc.text[9:12] == "She"


# ----------------------------------------------------------------------------------------------- CoNLL-2005

WORDS = "The\ncat\nchased\nmice\n.\n\nIt\nslept\n\n"
PROPS = ("-       (A0*       \n-          *)     \nchase    (V*V)     \n-       (A1*)    \n-          *   \n\n"
         "-   (A0*)\nsleep   (V*)\n\n")


def test_conll2005_words_and_props(tmp_path):
    write(tmp_path / "test.wsj.words", WORDS)
    write(tmp_path / "test.wsj.props", PROPS)
    examples = load_conll2005(tmp_path, "test").examples
    assert [(e.id, e.predicate_index) for e in examples] == [("0:2", 2), ("1:1", 1)]
    assert examples[0].tags == ["B-A0", "I-A0", "B-V", "B-A1", "O"] and examples[1].words == ["It", "slept"]
    assert examples[0].meta["predicate_lemma"] == "chase"


def test_conll2005_combined_format(tmp_path):
    combined = "".join(f"{w}  NN  (S*  *  {p}\n" if w else "\n" for w, p in zip(
        WORDS.split("\n"), PROPS.replace("  ", " ").split("\n")))
    path = write(tmp_path / "dev.txt", combined)
    examples = load_task_data("srl2005", str(path))
    assert [e.tags for e in examples] == [["B-A0", "I-A0", "B-V", "B-A1", "O"], ["B-A0", "B-V"]]


def test_conll2005_target_count_mismatch(tmp_path):
    write(tmp_path / "x.words", "a\nb\n")
    write(tmp_path / "x.props", "-  (A0*)  *\ngo  (V*)  *\n")
    with pytest.raises(UserInputError, match=r"x.props:1: 1 target verbs but 2 argument columns"):
        load_conll2005(tmp_path / "x.words")
