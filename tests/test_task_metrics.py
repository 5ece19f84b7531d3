"""Official metrics pinned against hand-computed values, published worked examples, and reference libraries
(scikit-learn, scipy) on fixed predictions."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from atinuke.errors import UserInputError
from atinuke.fetch import allennlp_fixtures
from atinuke.tasks import load_task_data
from atinuke.tasks.base import Answer, ClassificationExample, CorefDocument, QAExample, SRLExample
from atinuke.tasks.metrics import (
    bio_to_spans,
    ceafe_counts,
    coref_scores,
    normalize_answer,
    per_example_correct,
    per_example_f1,
    qa_f1,
    score_task,
    srl_arguments,
)


def pair(i: int, label) -> ClassificationExample:
    return ClassificationExample(id=str(i), text="a", text_pair="b", label=label)


# --------------------------------------------------------------------------------------------------- SQuAD

@pytest.mark.parametrize("raw, normalised", [
    ("The  Cat!", "cat"),
    ("An apple, the pie.", "apple pie"),
    ("theater of the absurd", "theater of absurd"),  # articles are whole words only
    ("  Saint-Bernadette's  ", "saintbernadettes"),
    ("A", ""),
])
def test_squad_normalisation(raw, normalised):
    assert normalize_answer(raw) == normalised


def qa(qid: str, answers: list[str], impossible: bool = False) -> QAExample:
    context = " ".join(answers) or "Nothing here."
    return QAExample(id=qid, context=context, question="q?", is_impossible=impossible,
                     answers=[Answer(text, context.index(text)) for text in answers])


def test_squad_v1_exact_f1_max_over_gold():
    examples = [qa("1", ["a golden statue", "statue of Mary"]), qa("2", ["the cat sat down"]), qa("3", ["1882"])]
    scores = score_task("squad", examples, ["Statue", "a cat sat", ""])
    # "statue" vs "golden statue": P=1 R=1/2 F=2/3; vs "statue of mary": F=1/2; "cat sat" vs "cat sat down": 0.8
    assert scores["f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert scores["exact"] == 0.0
    assert score_task("squad", examples[:1], ["the golden statue."])["exact"] == 1.0


def test_squad_v2_hasans_noans():
    examples = [qa("1", ["Paris"]), qa("2", [], True), qa("3", [], True), qa("4", ["the Eiffel Tower"])]
    scores = score_task("squad2", examples, ["paris.", "", "Madrid", "Eiffel"])
    assert scores["HasAns_exact"] == 0.5 and scores["HasAns_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["NoAns_exact"] == 0.5 and scores["NoAns_f1"] == 0.5
    assert scores["exact"] == 0.5 and scores["f1"] == pytest.approx((1 + 1 + 0 + 2 / 3) / 4)
    assert (scores["total"], scores["HasAns_total"], scores["NoAns_total"]) == (4, 2, 2)
    assert "NoAns_exact" not in score_task("squad2", examples[:1], ["Paris"])  # as the official script


def test_empty_answer_v1_vs_v2():
    assert qa_f1("", "", v2=True) == 1.0 and qa_f1("", "", v2=False) == 0.0
    assert qa_f1("the", "Paris", v2=True) == 0.0


# -------------------------------------------------------------------------------------------- classification

GOLD = ["1", "1", "0", "0", "1", "0", "1", "1"]
PRED = ["1", "0", "0", "1", "1", "0", "1", "0"]


def test_mrpc_f1_accuracy_hand_and_sklearn():
    scores = score_task("mrpc", [pair(i, g) for i, g in enumerate(GOLD)], PRED)
    # TP=3 FP=1 FN=2 TN=2
    assert scores["f1"] == pytest.approx(6 / 9) == pytest.approx(f1_score(GOLD, PRED, pos_label="1"))
    assert scores["accuracy"] == 5 / 8


def test_cola_mcc_hand_and_sklearn():
    scores = score_task("cola", [pair(i, g) for i, g in enumerate(GOLD)], PRED)
    hand = (3 * 2 - 1 * 2) / np.sqrt((3 + 1) * (3 + 2) * (2 + 1) * (2 + 2))
    assert scores["mcc"] == pytest.approx(hand) == pytest.approx(matthews_corrcoef(GOLD, PRED))
    assert score_task("cola", [pair(0, "1"), pair(1, "0")], ["1", "1"])["mcc"] == 0.0  # constant prediction


def test_ax_multiclass_mcc_matches_sklearn():
    rng = random.Random(0)
    labels = ("entailment", "neutral", "contradiction")
    gold = [rng.choice(labels) for _ in range(60)]
    pred = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    scores = score_task("ax", [pair(i, g) for i, g in enumerate(gold)], pred)
    assert scores["mcc"] == pytest.approx(matthews_corrcoef(gold, pred))


def test_stsb_pearson_spearman_match_scipy():
    gold = [0.0, 1.2, 2.5, 2.5, 3.0, 4.8, 5.0, 1.0]
    pred = [0.3, 1.0, 2.0, 3.1, 3.1, 4.0, 4.2, 2.2]  # ties on both sides
    scores = score_task("stsb", [pair(i, g) for i, g in enumerate(gold)], pred)
    assert scores["pearson"] == pytest.approx(pearsonr(gold, pred)[0])
    assert scores["spearman"] == pytest.approx(spearmanr(gold, pred)[0])
    assert score_task("stsb", [pair(0, 1.0), pair(1, 2.0)], [3.0, 3.0])["pearson"] == 0.0


def test_mnli_matched_mismatched_by_split():
    examples = [pair(i, "neutral") for i in range(4)]
    for example, split in zip(examples, ["dev_matched", "dev_matched", "dev_mismatched", "dev_mismatched"]):
        example.meta["split"] = split
    scores = score_task("mnli", examples, ["neutral", "neutral", "neutral", "entailment"])
    assert scores == {"accuracy": 0.75, "accuracy_matched": 1.0, "accuracy_mismatched": 0.5}


def test_score_task_rejects_bad_input():
    with pytest.raises(UserInputError, match="2 predictions for 1 examples"):
        score_task("sst2", [pair(0, "1")], ["1", "0"])
    with pytest.raises(UserInputError, match="not in 0, 1"):
        score_task("sst2", [pair(0, "1")], ["positive"])
    with pytest.raises(UserInputError, match="no gold label"):
        score_task("sst2", [pair(0, None)], ["1"])
    with pytest.raises(UserInputError, match="unknown task"):
        score_task("glue", [], [])


# ------------------------------------------------------------------------------------------------------- SRL

def srl(tags: list[str]) -> SRLExample:
    return SRLExample(id="s", words=[f"w{i}" for i in range(len(tags))], predicate_index=tags.index("B-V"),
                      tags=tags)


def test_bio_spans_conlleval_style():
    assert bio_to_spans(["I-ARG0", "I-ARG0", "B-V", "I-ARG1", "B-ARG1", "O"]) == [
        ("ARG0", 0, 1), ("V", 2, 2), ("ARG1", 3, 3), ("ARG1", 4, 4)]


def test_srl_continuation_and_v_excluded():
    gold = srl(["B-ARG1", "I-ARG1", "B-V", "B-C-ARG1", "O", "B-ARGM-TMP"])
    assert srl_arguments(gold.tags) == {("ARG1", ((0, 1), (3, 3))), ("V", ((2, 2),)), ("ARGM-TMP", ((5, 5),))}
    # the discontinuous ARG1 is wrong unless all its pieces are right; V is never counted
    partial = ["B-ARG1", "I-ARG1", "O", "O", "O", "B-ARGM-TMP"]
    assert score_task("srl", [gold], [partial]) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    full = ["B-ARG1", "I-ARG1", "O", "B-C-ARG1", "O", "B-ARGM-TMP"]
    assert score_task("srl", [gold], [full])["f1"] == 1.0
    assert per_example_f1("srl", gold, full) == 1.0 and not per_example_correct("srl", gold, full)


def test_srl_micro_average_hand_computed():
    gold = [srl(["B-ARG0", "B-V", "B-ARG1", "I-ARG1"]), srl(["B-ARG0", "I-ARG0", "B-V", "B-ARGM-LOC"])]
    pred = [["B-ARG0", "B-V", "B-ARG1", "O"], ["B-ARG0", "I-ARG0", "B-V", "B-ARGM-TMP"]]
    # correct: ARG0 (s1), ARG0 (s2) = 2; predicted 4; gold 4
    assert score_task("srl", gold, pred) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert per_example_f1("srl", gold[0], pred[0]) == 0.5
    with pytest.raises(UserInputError, match="3 tags for 4 words"):
        score_task("srl", gold[:1], [pred[0][:3]])


def test_srl_gold_on_fixture_scores_one():
    examples = load_task_data("srl", str(allennlp_fixtures() / "data" / "srl" / "nt_6401.gold_conll"))
    assert score_task("srl", examples, [e.tags for e in examples])["f1"] == 1.0
    only_v = [["B-V" if t == "B-V" else "O" for t in e.tags] for e in examples]
    assert score_task("srl", examples, only_v) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


# ----------------------------------------------------------------------------------------------- coreference

def clusters(*groups: str) -> list[list[tuple[int, int]]]:
    """Mentions named by letters a, b, ... as single-word spans."""
    return [[(ord(m) - 97, ord(m) - 97) for m in group] for group in groups]


def test_pradhan_2014_worked_example():
    # Pradhan et al. (2014), Section 3: key {a,b,c},{d,e,f,g}; response {a,b},{c,d},{f,g,h,i}.
    scores = coref_scores([clusters("abc", "defg")], [clusters("ab", "cd", "fghi")])
    assert (scores["muc_r"], scores["muc_p"], scores["muc_f1"]) == pytest.approx((0.4, 0.4, 0.4))
    assert (scores["b3_r"], scores["b3_p"], scores["b3_f1"]) == pytest.approx((5 / 12, 1 / 2, 5 / 11))
    assert (scores["ceafe_r"], scores["ceafe_p"], scores["ceafe_f1"]) == pytest.approx((0.65, 1.3 / 3, 0.52))
    assert scores["conll_f1"] == pytest.approx((0.4 + 5 / 11 + 0.52) / 3)


def test_b_cubed_counts_singletons_as_the_reference_scorer():
    # key {a,b},{c}; response {a,b,c}: R = (4/2 + 1/1) / 3 = 1, P = (4/3 + 1/3) / 3 = 5/9 (MUC ignores singletons)
    scores = coref_scores([clusters("ab", "c")], [clusters("abc")])
    assert (scores["b3_r"], scores["b3_p"]) == pytest.approx((1.0, 5 / 9))
    assert (scores["muc_r"], scores["muc_p"]) == pytest.approx((1.0, 1 / 2))


def test_muc_vilain_and_perfect():
    scores = coref_scores([clusters("abcd")], [clusters("ab", "cd")])
    assert (scores["muc_r"], scores["muc_p"]) == pytest.approx((2 / 3, 1.0))
    perfect = coref_scores([clusters("abc", "de")], [clusters("de", "cba")])
    assert all(value == pytest.approx(1.0) for value in perfect.values())
    assert coref_scores([clusters("ab")], [[]])["conll_f1"] == 0.0
    with pytest.raises(UserInputError, match="two clusters"):
        coref_scores([clusters("ab")], [clusters("ab", "bc")])


def test_ceafe_hungarian_equals_brute_force():
    rng = random.Random(1)
    for _ in range(20):
        key = [[(i, i) for i in rng.sample(range(12), rng.randint(1, 4))] for _ in range(3)]
        key = [c for j, c in enumerate(key) if not any(set(c) & set(o) for o in key[:j])]
        response = [[(i, i) for i in rng.sample(range(12), rng.randint(1, 4))] for _ in range(4)]
        response = [c for j, c in enumerate(response) if not any(set(c) & set(o) for o in response[:j])]
        phi = [[2 * len(set(k) & set(r)) / (len(k) + len(r)) for r in response] for k in key]
        small, large = (key, response) if len(key) <= len(response) else (response, key)
        best = max(sum((phi[i][p] if small is key else phi[p][i]) for i, p in enumerate(perm))
                   for perm in itertools.permutations(range(len(large)), len(small)))
        assert ceafe_counts(key, response)[0] == pytest.approx(best)


def test_coref_corpus_level_sums_documents():
    one = coref_scores([clusters("abcd")], [clusters("ab", "cd")])
    both = coref_scores([clusters("abcd"), clusters("ab")], [clusters("ab", "cd"), clusters("ab")])
    # MUC recall pools numerators/denominators: (2 + 1) / (3 + 1), not the mean of 2/3 and 1
    assert both["muc_r"] == pytest.approx(3 / 4) and one["muc_r"] == pytest.approx(2 / 3)


def test_coref_task_on_fixture_and_per_example():
    docs = load_task_data("coref", str(allennlp_fixtures() / "coref" / "coref.gold_conll"))
    assert score_task("coref", docs, [d.clusters for d in docs])["conll_f1"] == pytest.approx(1.0)
    merged = [[m for c in docs[0].clusters for m in c]]  # everything in one entity
    f1 = per_example_f1("coref", docs[0], merged)
    assert 0.0 < f1 < 1.0 and f1 == pytest.approx(coref_scores([docs[0].clusters], [merged])["conll_f1"])
    assert per_example_correct("coref", docs[0], list(reversed(docs[0].clusters)))


def test_per_example_classification_and_qa():
    assert per_example_f1("sst2", pair(0, "1"), "1") == 1.0 and per_example_f1("sst2", pair(0, "1"), "0") == 0.0
    assert per_example_f1("squad2", qa("1", ["the Eiffel Tower"]), "Eiffel") == pytest.approx(2 / 3)
    assert per_example_correct("squad2", qa("2", [], True), "")
    assert per_example_correct("stsb", pair(0, 3.0), 3.4) and not per_example_correct("stsb", pair(0, 3.0), 3.6)
    doc = CorefDocument(id="d", words=["a"], sentence_starts=[0], clusters=[])
    assert per_example_f1("coref", doc, []) == 0.0
