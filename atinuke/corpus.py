"""Offline pretraining and analysis text from real English sources.

- ``ptb``: the Penn Treebank language-modelling text (Mikolov et al., 2010 preprocessing: lower-cased,
  numbers as ``N``, rare words as ``<unk>``) from the ``treebank`` package; splits train/valid/test.
- ``wiki``: the English Wikipedia fragment in gensim 4.4.0's test data, with wiki markup stripped to plain
  paragraphs.
- ``lee``: the Lee news corpus (Lee, Pincombe & Welsh, 2005) in gensim's test data, one article a line.
- ``sotu``, ``wikiopen``, ``shakespeare`` (and ``python_doc``, ``linux_doc`` where Debian installed them): more
  running prose from :mod:`atinuke.corpus_registry`, cleaned, deduplicated, splits train/heldout by document.
- any path to a UTF-8 text file: one document per non-empty line.

The gensim wheel is fetched with pinned sha256 by :mod:`atinuke.fetch`; nothing is installed.
:func:`corpus_stats` counts words per source and split (``atinuke corpus stats``).
"""
from __future__ import annotations

import bz2
import html
import logging
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from atinuke.corpus_registry import SOURCE_NAMES, available_debian_sources, registry_texts
from atinuke.errors import UserInputError
from atinuke.fetch import gensim_test_data

if TYPE_CHECKING:  # annotations only
    import pandas as pd

logger = logging.getLogger(__name__)

BUILTIN_SOURCES = ("ptb", "wiki", "lee", *SOURCE_NAMES)
PTB_SPLITS = ("train", "valid", "test")
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_FILE = "lee_background.cor"


@dataclass(frozen=True)
class WikiArticle:
    """One Wikipedia article as plain text paragraphs."""

    title: str
    paragraphs: tuple[str, ...]


def _strip_nested(text: str, opening: str, closing: str) -> str:
    """Remove every (possibly nested) ``opening ... closing`` region, e.g. ``{{templates}}``."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(opening, i):
            depth += 1
            i += len(opening)
        elif depth and text.startswith(closing, i):
            depth -= 1
            i += len(closing)
        else:
            if depth == 0:
                out.append(text[i])
            i += 1
    return "".join(out)


_LINK_PREFIXES = ("file:", "image:", "category:", "media:")


def _replace_links(text: str) -> str:
    """[[target|label]] -> label, [[target]] -> target; file/category links dropped entirely."""
    def replace(match: re.Match) -> str:
        inner = match.group(1)
        if inner.lower().startswith(_LINK_PREFIXES) or re.match(r"^[a-z\-]{2,12}:", inner):
            return ""
        return inner.split("|")[-1]

    # Innermost links first, repeatedly, so links inside file captions resolve before the caption is dropped.
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\[\[([^\[\]]*)\]\]", replace, text)
    return text


def clean_wiki_markup(markup: str) -> list[str]:
    """Turn MediaWiki markup into plain-text paragraphs (headings, lists, tables and references dropped).

    Args:
        markup: the article's wikitext (already XML-unescaped).

    Returns:
        Paragraphs of at least 20 words, markup-free.
    """
    text = re.sub(r"<!--.*?-->", "", markup, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = _strip_nested(text, "{{", "}}")
    text = _strip_nested(text, "{|", "|}")
    text = _replace_links(text)
    text = re.sub(r"\[https?://[^\s\]]+\s*([^\]]*)\]", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = html.unescape(text)
    paragraphs = []
    for block in re.split(r"\n\s*\n|\n(?==)", text):
        lines = [line.strip() for line in block.splitlines()]
        lines = [line for line in lines if line and not line.startswith(("=", "*", "#", ":", ";", "|", "!"))]
        paragraph = re.sub(r"\s+", " ", " ".join(lines)).strip()
        paragraph = re.sub(r"\(\s*[,;]?\s*\)", "", paragraph).replace(" ,", ",").replace(" .", ".")
        if len(paragraph.split()) >= 20:
            paragraphs.append(paragraph)
    return paragraphs


@lru_cache(maxsize=1)
def wiki_articles() -> tuple[WikiArticle, ...]:
    """All non-redirect articles of the Wikipedia fragment, cleaned to plain paragraphs."""
    path = gensim_test_data() / WIKI_FILE
    articles = []
    with bz2.open(path, "rb") as handle:
        for _, element in ElementTree.iterparse(handle, events=("end",)):
            if not element.tag.endswith("}page"):
                continue
            namespace = element.tag[: -len("page")]
            title = element.findtext(f"{namespace}title") or ""
            text = element.findtext(f"{namespace}revision/{namespace}text") or ""
            element.clear()
            if text.lstrip().upper().startswith("#REDIRECT") or ":" in title:
                continue
            paragraphs = clean_wiki_markup(text)
            if paragraphs:
                articles.append(WikiArticle(title=title, paragraphs=tuple(paragraphs)))
    logger.info("read %d Wikipedia articles from %s", len(articles), path.name)
    return tuple(articles)


@lru_cache(maxsize=1)
def lee_documents() -> tuple[str, ...]:
    """The 300 articles of the Lee background corpus, one string each."""
    path = gensim_test_data() / LEE_FILE
    return tuple(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())


def ptb_lines(split: str) -> list[str]:
    """Penn Treebank LM text of ``split`` ("train", "valid" or "test"), one sentence a line."""
    if split not in PTB_SPLITS:
        raise UserInputError(f"unknown PTB split {split!r}; choose from {PTB_SPLITS}")
    import treebank

    return [line.strip() for line in treebank.penn[split].splitlines() if line.strip()]


def read_text_file(path: str | Path) -> list[str]:
    """Read a user's UTF-8 text file, one document per non-empty line.

    Raises:
        UserInputError: when the file is missing, unreadable, not UTF-8, or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserInputError(f"{path}: not UTF-8 text (byte {error.start})") from error
    except OSError as error:
        raise UserInputError(f"{path}: cannot read ({error.strerror})") from error
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserInputError(f"{path}: the file has no text")
    return lines


def load_texts(source: str, split: str = "train") -> list[str]:
    """Documents of one source.

    Args:
        source: "ptb", "wiki", "lee", a registry source (``atinuke.corpus_registry.SOURCE_NAMES``), or a path
            to a UTF-8 text file.
        split: for "ptb", the split (train/valid/test); registry sources have "train" and "heldout"; "wiki",
            "lee" and files have only "train" (their text is never used to measure perplexity).

    Returns:
        A list of documents (PTB: sentences; wiki: paragraphs; lee: articles; files: lines).
    """
    if source == "ptb":
        return ptb_lines(split)
    if source in SOURCE_NAMES:
        return registry_texts(source, split)
    if source in ("wiki", "lee") and split != "train":
        raise UserInputError(f"source {source!r} has only a 'train' split, not {split!r}")
    if source == "wiki":
        return [p for article in wiki_articles() for p in article.paragraphs]
    if source == "lee":
        return list(lee_documents())
    if "/" in source or source.endswith(".txt") or Path(source).exists():
        return read_text_file(source)
    raise UserInputError(f"unknown corpus source {source!r}; choose from {BUILTIN_SOURCES} or give a text file path")


def corpus_stats(sources: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Words (whitespace-separated) and units per source and split.

    Args:
        sources: the sources to count (default: the built-in ones, the registry texts and the Debian texts
            installed here).

    Returns:
        DataFrame with columns ``source``, ``split``, ``units``, ``words``, one row per source and split.
    """
    import pandas as pd

    if sources is None:
        sources = ["ptb", "wiki", "lee", "sotu", "wikiopen", "shakespeare", *available_debian_sources()]
    rows = []
    for source in sources:
        splits = PTB_SPLITS if source == "ptb" else ("train", "heldout") if source in SOURCE_NAMES else ("train",)
        for split in splits:
            texts = load_texts(source, split)
            rows.append(dict(source=source, split=split, units=len(texts), words=sum(len(t.split()) for t in texts)))
    return pd.DataFrame(rows, columns=["source", "split", "units", "words"])
