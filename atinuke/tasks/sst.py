"""The Stanford Sentiment Treebank in its PTB-tree release (Socher et al., 2013, "Recursive Deep Models for
Semantic Compositionality Over a Sentiment Treebank", EMNLP).

Each line of ``train.txt`` / ``dev.txt`` / ``test.txt`` is one sentence's binarised parse, every node labelled
0-4 (very negative .. very positive), e.g. ``(3 (2 The) (3 (3 good) (2 film)))``; the root's label is the
sentence's. Words are the leaves; ``-LRB-``/``-RRB-`` stand for brackets in the text.

Splits: the widely copied ``train.txt`` is the official train (8,544 trees) followed by the official dev (1,101
trees), in order; the official train is therefore its first :data:`SST_TRAIN_TREES` trees. Dev holds one tree
twice, so removing the dev trees as a set would drop a train tree as well: the cut is positional.

Tasks: ``sst5`` keeps the five root labels (accuracy); ``sst2`` drops neutral roots (2) and maps 0-1 -> "0",
3-4 -> "1", as GLUE's SST-2 does (Wang et al., 2019). Every example keeps its phrase-level labels for error
analysis: ``meta["phrases"]`` lists ``[first_word, end_word, label]`` for every node (end exclusive), and
``meta["fine_label"]`` the root's 0-4 label.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData, file_stamp, open_text
from atinuke.tasks.base import ClassificationExample

logger = logging.getLogger(__name__)

SST_TRAIN_TREES = 8544
SST_FILES = {"train": "train.txt", "dev": "dev.txt", "test": "test.txt"}
SKIP_NEUTRAL = "SST-2 drops neutral sentences (root label 2)"
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_BRACKETS = {"-LRB-": "(", "-RRB-": ")"}


def parse_tree(line: str, path: Path, line_no: int) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Words and labelled phrases of one PTB sentiment tree.

    Returns:
        ``(words, phrases)``: phrases as ``(first_word, end_word, label)`` (end exclusive), in post-order, so
        the last one is the root (the whole sentence).

    Raises:
        UserInputError: naming ``file:line`` for unbalanced brackets, a label outside 0-4, a node without a
            label or words, or text after the root.
    """
    tokens = _TOKEN.findall(line)
    words: list[str] = []
    phrases: list[tuple[int, int, int]] = []
    stack: list[tuple[int, int]] = []  # (label, first word) of the open nodes
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if token == "(":
            if not stack and phrases:
                raise UserInputError(f"{where(path, line_no)}: malformed SST tree (text after the root)")
            if position + 1 >= len(tokens) or tokens[position + 1] in ("(", ")"):
                raise UserInputError(f"{where(path, line_no)}: malformed SST tree (a node without a label)")
            label_text = tokens[position + 1]
            if label_text not in ("0", "1", "2", "3", "4"):
                raise UserInputError(f"{where(path, line_no)}: SST label {label_text!r} is not 0-4")
            stack.append((int(label_text), len(words)))
            position += 2
        elif token == ")":
            if not stack:
                raise UserInputError(f"{where(path, line_no)}: unbalanced ')' in SST tree")
            label, first = stack.pop()
            if first == len(words):
                raise UserInputError(f"{where(path, line_no)}: SST node with no words")
            phrases.append((first, len(words), label))
            position += 1
        else:
            if not stack:
                raise UserInputError(f"{where(path, line_no)}: word {token!r} outside the SST tree")
            words.append(token)
            position += 1
    if stack or not phrases:
        raise UserInputError(f"{where(path, line_no)}: unbalanced '(' in SST tree" if stack
                             else f"{where(path, line_no)}: empty SST tree")
    return words, phrases


def read_sst(path: str | Path, split: str, task: str = "sst5", limit: int | None = None) -> LoadedData:
    """Read one SST tree file as ``task`` ("sst5" or "sst2").

    Args:
        path: a file of one tree per line.
        split: split name used in ids (``f"{split}-{i}"``, i the 0-based tree index) and ``meta["split"]``.
        task: "sst5" (labels "0".."4") or "sst2" (neutral dropped, "0"/"1").
        limit: read only the first ``limit`` trees (the official train inside ``train.txt``).

    Raises:
        UserInputError: a malformed tree anywhere in the file (``file:line``), or fewer than ``limit`` trees.
    """
    path = Path(path)
    examples: list[ClassificationExample] = []
    neutral = 0
    trees = _parsed(file_stamp(path))
    n_trees = min(len(trees), limit) if limit is not None else len(trees)
    for index, (words, phrases) in enumerate(trees[:n_trees]):
        root = phrases[-1][2]
        if task == "sst2" and root == 2:
            neutral += 1
            continue
        label = str(root) if task == "sst5" else ("0" if root < 2 else "1")
        text = " ".join(_BRACKETS.get(word, word) for word in words)
        meta = {"split": split, "fine_label": root, "phrases": [list(p) for p in phrases]}
        examples.append(ClassificationExample(id=f"{split}-{index}", text=text, text_pair=None, label=label,
                                              meta=meta))
    if limit is not None and n_trees < limit:
        raise UserInputError(f"{path}: {n_trees} trees, but the official SST train is its first {limit}")
    logger.info("%s: %d SST trees -> %d %s examples", path, n_trees, len(examples), task)
    return LoadedData(list(examples), path, {SKIP_NEUTRAL: neutral} if neutral else {})


@lru_cache(maxsize=8)
def _parsed(stamp: tuple[str, int, int]) -> tuple[tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]], ...]:
    """Every tree of a file, parsed once per file version (sst2 and sst5 read the same files)."""
    path = Path(stamp[0])
    trees = []
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                words, phrases = parse_tree(line, path, line_no)
                trees.append((tuple(words), tuple(phrases)))
    return tuple(trees)


def load_sst_split(directory: Path, split: str, task: str) -> LoadedData:
    """One split of SST from the directory of ``train.txt``, ``dev.txt``, ``test.txt``; train is the first
    :data:`SST_TRAIN_TREES` trees of ``train.txt`` (see the module docstring)."""
    if split not in SST_FILES:
        raise UserInputError(f"SST has splits {', '.join(SST_FILES)}, not {split!r}")
    limit = SST_TRAIN_TREES if split == "train" else None
    return read_sst(directory / SST_FILES[split], split, task, limit=limit)
