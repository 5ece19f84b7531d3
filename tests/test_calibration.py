"""Decision-threshold calibration (atinuke/tasks/heads/calibration.py): known answers and exactness."""
from __future__ import annotations

import pytest
import torch

from atinuke.encoders import load_encoder
from atinuke.tasks import get_task
from atinuke.tasks.base import Answer, ClassificationExample, CorefDocument, QAExample
from atinuke.tasks.heads import build_task_model, decode_clusters
from atinuke.tasks.heads.calibration import best_threshold, calibrate
from atinuke.tasks.metrics import score_task


def test_a_ranking_below_the_dummy_links_once_the_threshold_is_lowered():
    """Scores that rank the right antecedent first but all below the dummy's 0: no cluster at the default,
    the planted clusters once the threshold sits under them."""
    spans = [(0, 0), (2, 2), (4, 4), (6, 6)]
    antecedents = [[-1, -1], [0, -1], [1, 0], [2, 1]]
    scores = torch.tensor([[0.0, -1e4, -1e4],
                           [0.0, -6.0, -1e4],  # (2, 2): weak, stays alone
                           [0.0, -5.0, -2.0],  # (4, 4) -> (0, 0)
                           [0.0, -1.5, -7.0]])  # (6, 6) -> (4, 4)
    assert decode_clusters(spans, antecedents, scores) == []
    assert decode_clusters(spans, antecedents, scores, link_threshold=-3.0) == [[(0, 0), (4, 4), (6, 6)]]
    assert decode_clusters(spans, antecedents, scores, link_threshold=-10.0) == [[(0, 0), (2, 2), (4, 4), (6, 6)]]
    assert scores[2, 0] == 0.0  # the caller's scores are not modified


def test_best_threshold_known_answer_and_ties():
    # A score peaked at 2 over the candidates; the default is always tried.
    assert best_threshold([-3, 1, 2, 5], lambda t: -abs(t - 2), default=0.0) == (2.0, 0.0)
    # A flat score keeps the default: calibration never moves without a gain.
    assert best_threshold([-3, 1, 5], lambda t: 0.5, default=0.0) == (0.0, 0.5)
    # Ties between non-default candidates go to the one nearest the default.
    assert best_threshold([-4, 1, 3], lambda t: 1.0 if t != 0 else 0.0, default=0.0)[0] == 1.0


def _qa_examples() -> list[QAExample]:
    contexts = ["The cat sat on the mat in the sun .", "John Smith founded the company in New York in 1990 .",
                "Rain fell over the hills for three days .", "The museum opened its doors to the public in May ."]
    questions = [("Where did the cat sit?", "the mat"), ("Who founded the company?", "John Smith"),
                 ("How long did rain fall?", "three days"), ("When did the museum open?", "May")]
    examples = []
    for i, (context, (question, answer)) in enumerate(zip(contexts, questions)):
        examples.append(QAExample(f"q{i}", context, question, [Answer(answer, context.index(answer))]))
        examples.append(QAExample(f"n{i}", context, "What colour was the dragon?", [], is_impossible=True))
    return examples


def _coref_documents() -> list[CorefDocument]:
    texts = [("John saw Mary . He liked her a lot .", [0, 4], [[(0, 0), (4, 4)], [(2, 2), (6, 6)]]),
             ("The company hired Ann . The company grew fast .", [0, 5], [[(0, 1), (5, 6)]]),
             ("A dog barked . The dog ran home and it slept .", [0, 4], [[(0, 1), (4, 5), (9, 9)]]),
             ("Paris is big . Many people visit the city .", [0, 4], [[(0, 0), (7, 8)]])]
    return [CorefDocument(f"d{i}", text.split(), starts, clusters) for i, (text, starts, clusters) in enumerate(texts)]


EXAMPLES = {"squad2": _qa_examples, "coref": _coref_documents}


@pytest.fixture(scope="module")
def tiny_encoder(tiny_atinuke_dir):
    return load_encoder(tiny_atinuke_dir)


@pytest.mark.parametrize("task,config", [("squad2", dict(max_len=64, max_query_len=16, doc_stride=16)),
                                         ("coref", dict(max_len=64, max_span_width=4))])
def test_calibration_is_exact_and_never_worse(tiny_encoder, task, config):
    """The chosen threshold's score on the calibration examples is what predicting with it gives (so the
    QA margins and the re-decoded clusters are exact), and it is at least the default's."""
    torch.manual_seed(0)
    model = build_task_model(tiny_encoder, get_task(task), **config).eval()
    examples = EXAMPLES[task]()
    parameter = "null_threshold" if task == "squad2" else "link_threshold"
    default_score = score_task(task, examples, [p.value for p in model.predict(examples)])[get_task(task).metric]
    result = calibrate(model, examples, batch_size=4)
    assert result is not None and result.parameter == parameter and result.n_examples == len(examples)
    assert result.before == pytest.approx(default_score) and result.after >= result.before
    assert getattr(model.config, parameter) == result.value
    again = score_task(task, examples, [p.value for p in model.predict(examples)])[get_task(task).metric]
    assert again == pytest.approx(result.after)
    assert not model.training


def test_heads_without_a_threshold_are_left_alone(tiny_encoder):
    model = build_task_model(tiny_encoder, get_task("mrpc"), max_len=32)
    before = model.config
    example = ClassificationExample("c", "The cat sat .", "A cat was sitting .", "1")
    assert calibrate(model, [example]) is None and model.config == before
