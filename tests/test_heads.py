"""Task heads: decoding on hand-set scores, token alignment, save/load, and that learning works."""
from __future__ import annotations

import pytest
import torch

from atinuke.encoders import load_encoder
from atinuke.errors import UserInputError
from atinuke.tasks import get_task
from atinuke.tasks.base import Answer, ClassificationExample, CorefDocument, QAExample, SRLExample
from atinuke.tasks.heads import (
    HeadConfig,
    build_task_model,
    decode_clusters,
    decode_qa_example,
    enumerate_spans,
    load_task_model,
    save_task_model,
    span_candidates,
    viterbi_bio,
)


@pytest.fixture(scope="module")
def tiny_encoder(tiny_atinuke_dir):
    return load_encoder(tiny_atinuke_dir)


def _model(encoder, task, seed=0, **config):
    torch.manual_seed(seed)
    return build_task_model(encoder, get_task(task), **config).eval()


# ------------------------------------------------------------------------------------------------ QA decoding

def _chunk(n_pos, context_range, offsets):
    return {"context_range": context_range, "offsets": offsets}


def test_qa_decoding_picks_best_span_and_respects_max_answer_len():
    context = "aa bb cc dd ee"
    offsets = [(0, 0), (0, 2), (3, 5), (6, 8), (9, 11), (12, 14), (0, 0)]  # [CLS] 5 words [SEP]
    start = torch.full((7,), -5.0)
    end = torch.full((7,), -5.0)
    start[0] = end[0] = -10.0  # null unlikely
    start[1], end[5] = 4.0, 4.0  # "aa .. ee": score 8, width 5 tokens
    start[2], end[3] = 3.0, 3.5  # "bb cc": score 6.5
    end[1] = -20.0  # an end before its start never wins
    config = HeadConfig(kind="span_qa", max_answer_len=5, n_best=5)
    assert decode_qa_example([start], [end], [_chunk(7, (1, 5), offsets)], context, config).value == "aa bb cc dd ee"
    short = HeadConfig(kind="span_qa", max_answer_len=2, n_best=5)
    prediction = decode_qa_example([start], [end], [_chunk(7, (1, 5), offsets)], context, short)
    assert prediction.value == "bb cc"
    assert 0 < prediction.score <= 1
    spans = span_candidates(start, end, (1, 5), max_answer_len=2, n_best=5)
    assert all(s <= e < s + 2 for _, s, e in spans) and spans[0][1:] == (2, 3)


def test_qa_null_threshold():
    context = "aa bb"
    offsets = [(0, 0), (0, 2), (3, 5), (0, 0)]
    start = torch.tensor([2.0, 1.0, -3.0, -9.0])
    end = torch.tensor([2.0, -3.0, 1.5, -9.0])
    infos = [_chunk(4, (1, 2), offsets)]
    # null score 4.0 vs best span "aa bb" 2.5: null wins by 1.5
    assert decode_qa_example([start], [end], infos, context, HeadConfig(kind="span_qa")).value == ""
    assert decode_qa_example([start], [end], infos, context,
                             HeadConfig(kind="span_qa", null_threshold=2.0)).value == "aa bb"
    assert decode_qa_example([start], [end], infos, context,
                             HeadConfig(kind="span_qa", allow_null=False)).value == "aa bb"


def test_doc_stride_chunks_map_back_to_the_context(tiny_encoder):
    model = _model(tiny_encoder, "squad2", max_len=32, max_query_len=8, doc_stride=8)
    context = ("The company was founded in 1990 by John Smith in New York . It sold shares to investors and "
               "grew quickly through the decade , opening offices in London and Tokyo before the crash .")
    start = context.index("London")
    ex = QAExample("q", context, "Where were offices opened?", [Answer("London", start)])
    batch = model.encode([ex])
    assert len(batch) > 2  # the context needs several chunks
    covered = set()
    n_answer_chunks = 0
    for row in range(len(batch)):
        tokens = model.tokenizer.convert_ids_to_tokens(batch.input_ids[row].tolist())
        for pos, token in enumerate(tokens):
            if batch.segments[row, pos] != 0:
                continue
            a, b = batch.offsets[row, pos].tolist()
            assert context[a:b].lower() == token.removeprefix("##").lower() or token == "[UNK]"
            covered.update(range(a, b))
        s, e = batch.head_inputs["start_positions"][row].item(), batch.head_inputs["end_positions"][row].item()
        if s:
            n_answer_chunks += 1
            assert context[batch.offsets[row, s, 0]: batch.offsets[row, e, 1]] == "London"
    assert n_answer_chunks >= 1
    assert covered >= {i for i, c in enumerate(context) if not c.isspace()}  # every character is in some chunk


# ------------------------------------------------------------------------------------------------ SRL

def test_srl_first_subtoken_labelled_and_predicate_marked(tiny_encoder):
    model = _model(tiny_encoder, "srl", max_len=64)
    words = ["stockholders", "ate", "the", "fish"]
    ex = SRLExample("s", words, 1, ["B-ARG0", "B-V", "B-ARG1", "I-ARG1"])
    batch = model.encode([ex])
    n_sub = [len(model.tokenizer(w, add_special_tokens=False)["input_ids"]) for w in words]
    assert n_sub[0] > 1
    labels = batch.head_inputs["tag_labels"][0].tolist()
    names = model.label_names
    expected, predicate, first = [-100], [0], []
    for w, (tag, n) in enumerate(zip(ex.tags, n_sub)):
        first.append(len(expected))
        expected += [names.index(tag)] + [-100] * (n - 1)
        predicate += [int(w == 1)] * n
    assert labels == expected + [-100]
    assert batch.head_inputs["predicate_mask"][0].tolist() == predicate + [0]
    for w, position in enumerate(first):
        a, b = batch.offsets[0, position].tolist()
        assert ex.text[a:].startswith(ex.text[a:b]) and ex.text.split(" ")[w].startswith(ex.text[a:b])
    # The indicator changes the encoder's states only through the marked token's embedding.
    plain = model(**{k: v for k, v in batch.model_inputs(False).items() if k != "predicate_mask"}).tag_logits
    marked = model(**batch.model_inputs(False)).tag_logits
    assert not torch.allclose(plain, marked)


def test_viterbi_respects_bio_constraints():
    labels = ("O", "B-ARG0", "I-ARG0", "B-ARG1", "I-ARG1")
    scores = torch.full((3, 5), -5.0)
    scores[0, 2] = 0.0  # I-ARG0 first: forbidden
    scores[0, 1] = -1.0
    scores[1, 4] = 0.0  # I-ARG1 after B-ARG0: forbidden
    scores[1, 2] = -1.0
    scores[2, 0] = 0.0
    assert viterbi_bio(scores, labels) == [1, 2, 0]


# ------------------------------------------------------------------------------------------------ coreference

def test_span_enumeration_counts():
    # Sentences of 4 and 3 words, width <= 2: 4 + 3 singles, 3 + 2 pairs.
    assert len(enumerate_spans(7, [0, 4], 2)) == 12
    spans = enumerate_spans(7, [0, 4], 10)
    assert len(spans) == 4 * 5 // 2 + 3 * 4 // 2
    assert (3, 4) not in spans and (4, 6) in spans


def test_cluster_decoding_on_hand_set_scores():
    spans = [(0, 0), (2, 3), (5, 5), (7, 7)]
    antecedents = [[-1, -1], [0, -1], [1, 0], [2, 1]]
    scores = torch.tensor([[0.0, -1e4, -1e4],
                           [0.0, -2.0, -1e4],   # dummy wins: (2, 3) starts nothing
                           [0.0, -1.0, 3.0],    # (5, 5) -> (0, 0)
                           [0.0, 1.0, 0.5]])    # (7, 7) -> (5, 5), joins the same cluster
    assert decode_clusters(spans, antecedents, scores) == [[(0, 0), (5, 5), (7, 7)]]


def test_coref_forward_shapes_and_loss(tiny_encoder):
    model = _model(tiny_encoder, "coref", max_len=16, max_span_width=3)
    doc = CorefDocument("d", "John saw Mary . He liked her a lot .".split(), [0, 4], [[(0, 0), (4, 4)], [(2, 2), (6, 6)]])
    batch = model.encode([doc])
    assert len(batch) >= 1
    assert batch.head_inputs["span_starts"].numel() == len(enumerate_spans(len(doc.words), [0, 4], 3))
    out = model(**batch.model_inputs())
    assert out.loss is not None and torch.isfinite(out.loss)
    n_top = out.top_span_indices.numel()
    assert n_top == int(0.4 * len(doc.words))
    assert out.antecedent_scores.shape == (n_top, out.antecedent_indices.shape[1] + 1)
    # Antecedents always precede their span.
    top = out.top_span_indices.tolist()
    for row, candidates in enumerate(out.antecedent_indices.tolist()):
        assert all(c < 0 or c < top[row] for c in candidates)


# ------------------------------------------------------------------------------------------------ save / load

EXAMPLES = {
    "mrpc": [ClassificationExample("c", "The cat sat .", "A cat was sitting .", "1")],
    "stsb": [ClassificationExample("r", "The cat sat .", "A dog ran .", 1.5)],
    "squad2": [QAExample("q", "The cat sat on the mat .", "Where did the cat sit?", [Answer("the mat", 15)])],
    "srl": [SRLExample("s", "The cat ate the fish".split(), 2, ["B-ARG0", "I-ARG0", "B-V", "B-ARG1", "I-ARG1"])],
    "coref": [CorefDocument("d", "John saw Mary . He liked her .".split(), [0, 4], [[(0, 0), (4, 4)]])],
}


@pytest.mark.parametrize("task", sorted(EXAMPLES))
def test_save_load_round_trip(tmp_path, tiny_encoder, task):
    model = _model(tiny_encoder, task, max_len=64, max_query_len=16, doc_stride=8)
    save_task_model(model, tmp_path / "model")
    loaded = load_task_model(tmp_path)  # a run directory resolves to model/
    assert loaded.spec == model.spec and loaded.config == model.config and loaded.encoder_name == model.encoder_name
    batch = model.encode(EXAMPLES[task])
    with torch.no_grad():
        a, b = model(**batch.model_inputs()), loaded(**batch.model_inputs())
    for field in ("loss", "logits", "start_logits", "end_logits", "tag_logits", "antecedent_scores"):
        if getattr(a, field) is not None:
            assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert [p.value for p in model.predict(EXAMPLES[task])] == [p.value for p in loaded.predict(EXAMPLES[task])]


def test_load_rejects_corrupt_and_mismatched_files(tmp_path, tiny_encoder):
    model = _model(tiny_encoder, "mrpc")
    save_task_model(model, tmp_path / "m")
    (tmp_path / "m" / "head.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserInputError, match="head.safetensors"):
        load_task_model(tmp_path / "m")
    other = _model(tiny_encoder, "snli")  # three labels: a head of a different shape
    save_task_model(other, tmp_path / "o")
    (tmp_path / "o" / "head.safetensors").replace(tmp_path / "m" / "head.safetensors")
    with pytest.raises(UserInputError, match="head.safetensors"):
        load_task_model(tmp_path / "m")
    (tmp_path / "m" / "task_model.json").write_text("{broken")
    with pytest.raises(UserInputError, match="task_model.json"):
        load_task_model(tmp_path / "m")


def test_bad_examples_are_rejected(tiny_encoder):
    model = _model(tiny_encoder, "mrpc")
    with pytest.raises(UserInputError, match="unknown label"):
        model.encode([ClassificationExample("x", "a b", "c d", "maybe")])
    with pytest.raises(UserInputError, match="empty text"):
        model.encode([ClassificationExample("x", "  ", "c d", "1")])


# ------------------------------------------------------------------------------------------------ learning works

def test_classification_head_learns_a_separable_real_text_problem(tiny_encoder):
    """PTB sentences with a number (the token "N") vs. without: separable from the words alone."""
    from atinuke.corpus import load_texts

    sentences = [s.strip() for s in load_texts("ptb", "valid") if 5 <= len(s.split()) <= 25]
    with_n = [s for s in sentences if " N " in f" {s} "][:80]
    without = [s for s in sentences if " N " not in f" {s} "][:80]
    data = [ClassificationExample(f"a{i}", s, None, "1") for i, s in enumerate(with_n)]
    data += [ClassificationExample(f"b{i}", s, None, "0") for i, s in enumerate(without)]
    data = [data[i] for i in torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()]
    train, held_out = data[:120], data[120:]
    model = _model(tiny_encoder, "sst2", pooling="mean", dropout=0.0, max_len=48).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(45):
        chunk = [train[(step * 16 + k) % len(train)] for k in range(16)]
        loss = model(**model.encode(chunk).model_inputs()).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = sum(p.value == ex.label for p, ex in zip(model.predict(held_out), held_out)) / len(held_out)
    assert accuracy >= 0.85
    assert model.training  # predict restores the mode
