"""The tokenizer a model directory names is the one used (issue 30, item 5).

A researcher who trains a small model from scratch with their own BERT WordPiece tokenizer saves it beside the
weights (``tokenizer_config.json``: ``BertTokenizer``). ``AutoTokenizer`` may instead open the model type's own
class (a Qwen2, Llama or Mistral directory opened as a byte-level tokenizer that splits "The quick brown fox" into
single characters): every activation would then be of the wrong text. Each family of the conformance suite is
saved with such a tokenizer and must split text exactly as that tokenizer does.
"""
from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer
from transformers import BertTokenizer, BertTokenizerFast

from atinuke.errors import UserInputError
from atinuke.tokenizer import load_tokenizer
from tests.families import FAMILIES, save_family
from workbench.subject import load_subject

TEXT = "The market fell sharply on Monday."


@pytest.fixture(scope="module")
def wordpiece(tiny_tokenizer) -> BertTokenizer:
    """A BERT WordPiece tokenizer (lower-cased, BERT's own pipeline) over the tiny tokenizer's vocabulary."""
    return BertTokenizer(vocab=dict(tiny_tokenizer.get_vocab()), do_lower_case=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_opens_with_the_tokenizer_its_directory_names(family, wordpiece, tmp_path):
    path = save_family(family, tmp_path / "model", len(wordpiece))
    wordpiece.save_pretrained(path)
    assert json.loads((path / "tokenizer_config.json").read_text())["tokenizer_class"].startswith("BertTokenizer")
    expected = wordpiece.tokenize(TEXT)
    assert expected[:3] == ["the", "market", "fell"]  # whole words: a character split would show here
    subject = load_subject(path)
    assert type(subject.tokenizer).__name__ == "BertTokenizer"
    assert subject.tokenizer.tokenize(TEXT) == expected
    ids = subject.tokenize(TEXT)["input_ids"][0].tolist()
    assert ids == Tokenizer.from_file(str(path / "tokenizer.json")).encode(TEXT).ids == wordpiece(TEXT)["input_ids"]


def test_a_tokenizer_no_class_reproduces_is_refused_in_one_line(tiny_tokenizer, tmp_path):
    """A cased WordPiece pipeline saved under the BertTokenizer name (whose own pipeline lower-cases): neither the
    model type's class nor the named one splits text as saved, so the directory is refused, not silently read."""
    path = save_family("qwen2", tmp_path / "model", len(tiny_tokenizer))
    BertTokenizerFast(tokenizer_object=tiny_tokenizer.backend_tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(path)
    with pytest.raises(UserInputError) as raised:
        load_tokenizer(path)
    message = str(raised.value)
    assert "\n" not in message and "BertTokenizer" in message and "tokenizer.json" in message


def test_a_directory_whose_auto_class_is_faithful_is_unchanged(tiny_atinuke_dir, tiny_tokenizer):
    """The common case: AutoTokenizer's class reproduces tokenizer.json, and is kept."""
    loaded = load_tokenizer(tiny_atinuke_dir)
    assert loaded.tokenize(TEXT) == tiny_tokenizer.tokenize(TEXT)
