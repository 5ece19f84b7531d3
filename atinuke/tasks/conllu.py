"""CoNLL-U, the Universal Dependencies format (https://universaldependencies.org/format.html), and the gold UD
English Web Treebank (Silveira et al., 2014, "A Gold Standard Dependency Corpus for English", LREC) that the
probes read: UPOS and XPOS tags, dependency arcs and labels, trees for structural probes.

A sentence is a block of lines ended by a blank line: ``#`` comments (``# sent_id = ``, ``# text = ``), then
one row of 10 tab-separated columns per word: ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC. As UD says,
a multiword token range (ID ``1-2``, the surface form of the words that follow) and an empty node (ID ``8.1``,
enhanced graphs only) are not words of the basic tree: they are skipped, and words keep their integer IDs.

Splits of UD English EWT: ``en_ewt-ud-{train,dev,test}.conllu`` (12,544 / 2,001 / 2,077 sentences).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import open_text

logger = logging.getLogger(__name__)

UD_EWT_FILES = {"train": "en_ewt-ud-train.conllu", "dev": "en_ewt-ud-dev.conllu", "test": "en_ewt-ud-test.conllu"}
UD_EWT_SIZES = {"train": 12544, "dev": 2001, "test": 2077}
UD_EWT_DIR = "ud_ewt"
# Probing tasks that UD EWT gives gold labels for (probes.tasks), with what each reads.
UD_PROBING_TASKS = {"pos": "UPOS of each word", "xpos": "XPOS (Penn Treebank tag) of each word",
                    "dep": "dependency label of each head-dependent arc", "tree_distance": "tree distances "
                    "(structural probe)", "tree_depth": "tree depths (structural probe)"}
_WORD_ID = re.compile(r"[1-9]\d*")
_RANGE_ID = re.compile(r"[1-9]\d*-[1-9]\d*")
_EMPTY_ID = re.compile(r"\d+\.[1-9]\d*")


@dataclass
class UDWord:
    """One word (a row with an integer ID) of a CoNLL-U sentence; ``head`` is 0 for the root."""

    id: int
    form: str
    lemma: str
    upos: str
    xpos: str
    feats: str
    head: int
    deprel: str
    deps: str
    misc: str


@dataclass
class UDSentence:
    """A sentence: its words in order (``words[i].id == i + 1``), ``text`` from ``# text =`` (None when absent),
    ``line`` its first line in the file (for error messages)."""

    id: str
    words: list[UDWord]
    text: Optional[str]
    line: int
    comments: list[str] = field(default_factory=list)

    @property
    def heads(self) -> list[int]:
        """0-based head index of each word; the root points to itself (the structural probes' convention)."""
        return [w.head - 1 if w.head else i for i, w in enumerate(self.words)]


def _close(path: Path, rows: list[tuple[int, list[str]]], comments: list[str], start: int,
           count: int) -> UDSentence:
    """Check one sentence's words (IDs 1..n in order, heads in 0..n, one root) and build it."""
    words: list[UDWord] = []
    for line_no, cells in rows:
        if int(cells[0]) != len(words) + 1:
            raise UserInputError(f"{where(path, line_no)}: word ID {cells[0]} out of order (expected {len(words) + 1})")
        if not _WORD_ID.fullmatch(cells[6]) and cells[6] != "0":
            raise UserInputError(f"{where(path, line_no)}: HEAD {cells[6]!r} is not a word ID or 0")
        words.append(UDWord(int(cells[0]), cells[1], cells[2], cells[3], cells[4], cells[5], int(cells[6]), cells[7],
                            cells[8], cells[9]))
    for (line_no, _), word in zip(rows, words):
        if word.head > len(words) or word.head == word.id:
            raise UserInputError(f"{where(path, line_no)}: HEAD {word.head} is not another word of this "
                                 f"{len(words)}-word sentence")
    roots = [line_no for (line_no, _), word in zip(rows, words) if word.head == 0]
    if len(roots) != 1:
        raise UserInputError(f"{where(path, roots[1] if roots else start)}: a sentence has exactly one root "
                             f"(HEAD 0), this one has {len(roots)}")
    text = next((c.split("=", 1)[1].strip() for c in comments if re.match(r"#\s*text\s*=", c)), None)
    sid = next((c.split("=", 1)[1].strip() for c in comments if re.match(r"#\s*sent_id\s*=", c)), None)
    return UDSentence(sid or f"{path.stem}-{count}", words, text, start, comments)


def read_conllu(path: str | Path) -> list[UDSentence]:
    """The sentences of a CoNLL-U file (basic trees: multiword token ranges and empty nodes skipped).

    Raises:
        UserInputError: naming ``file:line`` for a row without 10 tab-separated columns, a malformed ID, word
            IDs out of order, a HEAD that is not a word of the sentence, or a sentence without exactly one root.
    """
    path = Path(path)
    sentences: list[UDSentence] = []
    rows: list[tuple[int, list[str]]] = []
    comments: list[str] = []
    start = 1
    with open_text(path) as handle:
        lines = handle.read().splitlines()
    for line_no, line in enumerate(lines + [""], start=1):
        if not line.strip():
            if rows:
                sentences.append(_close(path, rows, comments, start, len(sentences)))
            elif comments:
                raise UserInputError(f"{where(path, start)}: comment lines with no words after them")
            rows, comments, start = [], [], line_no + 1
            continue
        if not rows and not comments:
            start = line_no
        if line.startswith("#"):
            if rows:
                raise UserInputError(f"{where(path, line_no)}: comment line inside a sentence")
            comments.append(line)
            continue
        cells = line.split("\t")
        if len(cells) != 10:
            raise UserInputError(f"{where(path, line_no)}: expected 10 tab-separated CoNLL-U columns, found {len(cells)}")
        if cells[0].isdigit() and cells[0][0] != "0":
            rows.append((line_no, cells))
            continue
        if _RANGE_ID.fullmatch(cells[0]) or _EMPTY_ID.fullmatch(cells[0]):
            continue  # a multiword token's surface form or an empty node: not a word of the basic tree
        if not _WORD_ID.fullmatch(cells[0]):
            raise UserInputError(f"{where(path, line_no)}: ID {cells[0]!r} is not a word ID (N), range (N-M) or "
                                 "empty node (N.M)")
        rows.append((line_no, cells))
    logger.info("%s: %d sentences, %d words", path, len(sentences), sum(len(s.words) for s in sentences))
    return sentences


def ud_ewt_file(root: Path, split: str) -> Path:
    """The UD English EWT file of ``split`` under ``root`` (``root/ud_ewt/`` or ``root`` itself).

    Raises:
        UserInputError: an unknown split or a missing file.
    """
    if split not in UD_EWT_FILES:
        raise UserInputError(f"UD English EWT has splits {', '.join(UD_EWT_FILES)}, not {split!r}")
    for candidate in (root / UD_EWT_DIR / UD_EWT_FILES[split], root / UD_EWT_FILES[split]):
        if candidate.is_file():
            return candidate
    raise UserInputError(f"{root}: no {UD_EWT_FILES[split]} (UD English EWT {split}) found")


def ud_ewt_available(root: Optional[Path]) -> bool:
    """Whether ``root`` (``$ATINUKE_DATA``) holds the three UD English EWT files."""
    return root is not None and all((root / UD_EWT_DIR / name).is_file() for name in UD_EWT_FILES.values())


def describe(root: Optional[Path]) -> list[dict[str, Any]]:
    """The ``data list`` rows of the UD English EWT probing tasks (split sizes in sentences)."""
    present = ud_ewt_available(root)
    sizes: dict[str, int] = {}
    if present:
        assert root is not None
        for split, name in UD_EWT_FILES.items():  # every sentence has a word 1
            with (root / UD_EWT_DIR / name).open(encoding="utf-8") as handle:
                sizes[split] = sum(1 for line in handle if line.startswith("1\t"))
    provenance = ("UniversalDependencies/UD_English-EWT, en_ewt-ud-{train,dev,test}.conllu"
                  + (f" in {root / UD_EWT_DIR}" if present and root is not None else "; set ATINUKE_DATA"))
    return [{"task": f"probe:{task}", "family": "probing", "source": "real" if present else "missing",
             "dataset": f"UD English EWT: {what}", "splits": dict(sizes), "licence": "CC BY-SA 4.0",
             "provenance": provenance} for task, what in UD_PROBING_TASKS.items()]
