"""Representation store (probes/features.py): pooling known answers, exactness against a plain forward."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from atinuke.errors import UserInputError
from probes.features import extract_features, layer_hook_names, open_store, target_features
from probes.tasks import ProbeSentence, _locate_words

TEXTS = [
    ["The", "unbelievably", "tall", "giraffes", "were", "eating", "acacia", "leaves", "."],
    ["Researchers", "in", "Lagos", "trained", "Atinuke", "on", "newswire", "."],
    ["It", "works", "."],
]


def _sentences():
    out = []
    for i, words in enumerate(TEXTS):
        text = " ".join(words[:-1]) + words[-1]  # no space before the full stop, as in real text
        out.append(ProbeSentence(f"s{i}", text, _locate_words(text, words, f"s{i}")))
    return out


@pytest.fixture(scope="module")
def tiny_store(tiny_atinuke_dir, tmp_path_factory):
    from workbench.subject import load_subject

    subject = load_subject(str(tiny_atinuke_dir))
    store = extract_features(subject, _sentences(), tmp_path_factory.mktemp("store") / "features", batch_size=2,
                             progress=False)
    return subject, store


def _reference_hidden(subject, text):
    """Plain forward (no hooks) of one unpadded sentence: hidden states [n_layers + 1, pos, d] and offsets."""
    encoded = subject.tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
    with torch.no_grad():
        output = subject.encoder(encoded["input_ids"], encoded["attention_mask"], output_hidden_states=True)
    return torch.stack(output.hidden_states)[:, 0].numpy(), encoded["offset_mapping"][0].numpy()


def test_word_pooling_matches_manual_subtoken_average_of_a_plain_forward(tiny_store):
    subject, store = tiny_store
    assert store.n_layers == subject.n_layers + 1
    for s, sentence in enumerate(_sentences()):
        hidden, offsets = _reference_hidden(subject, sentence.text)
        for w, (start, end) in enumerate(sentence.word_spans):
            tokens = [p for p, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
            assert tokens, sentence.words[w]
            row = int(store.sentences["word_offset"][s]) + w
            assert store.words["n_tokens"][row] == len(tokens)
            for layer in range(store.n_layers):
                expected_mean = hidden[layer, tokens].mean(0)
                np.testing.assert_allclose(store.layer(layer, "mean")[row], expected_mean, rtol=2e-2, atol=2e-2)
                np.testing.assert_allclose(store.layer(layer, "first")[row], hidden[layer, tokens[0]], rtol=2e-2, atol=2e-2)
                np.testing.assert_allclose(store.layer(layer, "last")[row], hidden[layer, tokens[-1]], rtol=2e-2, atol=2e-2)


def test_some_word_is_split_into_several_subtokens(tiny_store):
    # Otherwise the pooling test above would not test pooling at all.
    _, store = tiny_store
    assert store.words["n_tokens"].max() >= 2


def test_stored_memmap_equals_direct_run_with_cache(tiny_store):
    subject, store = tiny_store
    sentence = _sentences()[1]
    encoded = subject.tokenize([sentence.text])
    cache = subject.run_with_cache(encoded, names=layer_hook_names(subject.n_layers))
    special = encoded["special_tokens_mask"][0].bool()
    for layer, name in enumerate(layer_hook_names(subject.n_layers)):
        expected = cache[name][0][~special].float().mean(0).numpy()
        np.testing.assert_allclose(store.sentence_layer(layer)[1], expected, rtol=2e-2, atol=2e-2)
    assert isinstance(store.layer(0), np.memmap) and store.layer(0).dtype == np.float16


def test_span_mean_is_token_weighted_and_endpoints_concatenate(tiny_store):
    _, store = tiny_store
    targets = pd.DataFrame(dict(sentence=[0], a_start=[0], a_end=[3], b_start=[-1], b_end=[-1]))
    rows = np.arange(0, 4)
    n = store.words["n_tokens"].to_numpy()[rows].astype(np.float32)
    layer = store.layer(1, "mean")
    expected = (np.asarray(layer[rows], np.float32) * n[:, None]).sum(0) / n.sum()
    got = target_features(store, targets, 1, span_pool="mean")
    np.testing.assert_allclose(got.X[0], expected, rtol=1e-5, atol=1e-5)
    ends = target_features(store, targets, 1, span_pool="endpoints").X[0]
    np.testing.assert_array_equal(ends[: store.d_model], np.asarray(store.layer(1, "first")[0], np.float32))
    np.testing.assert_array_equal(ends[store.d_model:], np.asarray(store.layer(1, "last")[3], np.float32))
    edge = pd.DataFrame(dict(sentence=[2], a_start=[0], a_end=[0], b_start=[1], b_end=[1]))
    pair = target_features(store, edge, 2).X[0]
    offset = int(store.sentences["word_offset"][2])
    np.testing.assert_array_equal(pair, np.concatenate([store.layer(2)[offset], store.layer(2)[offset + 1]]).astype(np.float32))


def test_reopened_store_and_bad_layer(tiny_store):
    _, store = tiny_store
    again = open_store(store.path)
    assert again.meta == store.meta and len(again.words) == sum(len(t) for t in TEXTS)
    with pytest.raises(UserInputError, match="layer 99"):
        store.layer(99)


def test_tokenizer_without_offsets_is_a_clear_error(tiny_atinuke_dir, tmp_path):
    from workbench.subject import load_subject

    subject = load_subject(str(tiny_atinuke_dir))

    class SlowTokenizer:
        is_fast = False

    subject.tokenizer = SlowTokenizer()
    with pytest.raises(UserInputError, match="no offset"):
        extract_features(subject, _sentences(), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_a_decoders_sentence_vector_is_its_last_real_token(tiny_tokenizer, tmp_path):
    from tests.decoders import clm_atinuke_dir
    from workbench.subject import load_subject

    subject = load_subject(clm_atinuke_dir(tmp_path, tiny_tokenizer))
    store = extract_features(subject, _sentences(), tmp_path / "features", batch_size=2, progress=False)
    assert store.meta["sentence_pool"] == "last"
    for i, sentence in enumerate(_sentences()):
        encoded = subject.tokenize([sentence.text])  # alone: no padding
        cache = subject.run_with_cache(encoded, names=layer_hook_names(subject.n_layers))
        last = int((~encoded["special_tokens_mask"][0].bool()).nonzero().max())  # before the trailing [SEP]
        for layer, name in enumerate(layer_hook_names(subject.n_layers)):
            np.testing.assert_allclose(store.sentence_layer(layer)[i], cache[name][0, last].numpy(), rtol=2e-2,
                                       atol=2e-2)
