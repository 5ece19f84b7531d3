"""Build the whole diagnostic suite: select and parse text once, run every task's generator, write the
official formats plus rationale sidecars and a manifest. Everything is silver, derived data."""
from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from atinuke import paths
from atinuke.diagnostic import cola, coref, mrpc, nli, qa, srl, stsb
from atinuke.diagnostic.conll import ConllSentence, format_document
from atinuke.diagnostic.edits import entity_pool
from atinuke.diagnostic.records import Item
from atinuke.diagnostic.text import (
    Sentence,
    extract_sentences,
    merge_spans,
    model_meta,
    parse_documents,
    select_documents,
    source_files,
)
from atinuke.errors import UserInputError
from atinuke.io import atomic_dir, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0"
SPLITS = ("train", "dev")
TASK_FILES = {"qa": "json", "cola": "tsv", "mrpc": "tsv", "stsb": "tsv", "nli": "jsonl", "coref": "gold_conll", "srl": "gold_conll"}
WORDS_PER_EXAMPLE = 40  # words of source text parsed per requested train+dev example (measured yields, see docs)
PROVENANCE = "silver, derived"


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def _sidecar(path: Path, ids: list[str], items: list[Item]) -> None:
    lines = [_json({"id": i, "rationale": merge_spans(it.rationale), "meta": it.meta}) for i, it in zip(ids, items)]
    atomic_write_text(path.with_name(path.name + ".meta.jsonl"), "".join(line + "\n" for line in lines))


def _source_sentence(item: Item) -> Sentence:
    """The sentence a single-sentence item (CoLA, MRPC, STS-B, NLI) was made from."""
    assert item.sentence is not None, "single-sentence generators always record their source sentence"
    return item.sentence


def _write_qa(path: Path, split: str, items: list[Item]) -> None:
    by_doc: dict[str, list[Item]] = {}
    for it in items:
        by_doc.setdefault(it.extra["title"], []).append(it)
    data: list[dict[str, Any]] = []
    ids: list[str] = []
    ordered: list[Item] = []
    for title, group in by_doc.items():
        qas = []
        for it in group:
            qid = f"diag-{split}-{len(ids):05d}"
            ids.append(qid)
            ordered.append(it)
            qa_ = {"id": qid, "question": it.texts[1], "answers": it.extra["answers"], "is_impossible": it.label == "impossible"}
            if it.label == "impossible":
                qa_["plausible_answers"] = it.extra["plausible_answers"]
            qas.append(qa_)
        data.append({"title": title, "paragraphs": [{"context": group[0].texts[0], "qas": qas}]})
    atomic_write_text(path, json.dumps({"version": "v2.0", "provenance": PROVENANCE, "data": data}, ensure_ascii=False, indent=1) + "\n")
    _sidecar(path, ids, ordered)


def _write_tsv(path: Path, task: str, split: str, items: list[Item]) -> None:
    rows = []
    for i, it in enumerate(items):
        src = it.sentence.doc_id if it.sentence is not None else "diag"
        if task == "cola":
            rows.append(f"{_source_sentence(it).source}\t{it.label}\t{'' if it.label == 1 else '*'}\t{it.texts[0]}")
        elif task == "mrpc":
            rows.append(f"{it.label}\t{2 * i + 1}\t{2 * i + 2}\t{it.texts[0]}\t{it.texts[1]}")
        else:
            rows.append(f"{i}\tsilver-{_source_sentence(it).source}\tdiagnostic\tsilver\t{i}\t{src}\t{src}\t{it.texts[0]}\t{it.texts[1]}\t{it.label:.2f}")
    header = {"cola": [], "mrpc": ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"],
              "stsb": ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"]}[task]
    atomic_write_text(path, "".join(line + "\n" for line in header + rows))
    _sidecar(path, [f"{split}-{i}" for i in range(len(items))], items)


def _write_nli(path: Path, split: str, items: list[Item]) -> None:
    lines, ids = [], []
    for i, it in enumerate(items):
        pid = f"{split}-{i}"
        ids.append(pid)
        lines.append(_json({"pairID": pid, "captionID": _source_sentence(it).doc_id, "gold_label": it.label, "annotator_labels": [it.label],
                            "sentence1": it.texts[0], "sentence2": it.texts[1], "sentence1_parse": "", "sentence2_parse": ""}))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    _sidecar(path, ids, items)


def _write_conll(path: Path, items: list[Item], docs: dict[str, list[ConllSentence]]) -> None:
    atomic_write_text(path, "".join(format_document(doc_id, sents) for doc_id, sents in docs.items()))
    _sidecar(path, [it.extra["id"] for it in items], items)


def _score(item: Item) -> float:
    """The similarity score of an STS-B item."""
    assert isinstance(item.label, (int, float)), f"an STS-B label is a score, not {item.label!r}"
    return item.label


def _label_counts(task: str, items: list[Item]) -> dict:
    if task == "stsb":
        return {f"{b}-{b + 1}": n for b, n in sorted(Counter(min(4, int(_score(it))) for it in items).items())}
    if task == "srl":
        return dict(sorted(Counter(r for it in items for r in it.meta["roles"]).items()))
    if task == "coref":
        return {"clusters": sum(it.meta["n_clusters"] for it in items), "mentions": sum(it.meta["n_mentions"] for it in items)}
    return {str(k): v for k, v in sorted(Counter(str(it.label) for it in items).items())}


def build_suite(out_dir: Optional[Path] = None, force: bool = False, seed: int = 0, size: int = 3000,
                dev_size: Optional[int] = None, parse_cache: Optional[Path] = None) -> Path:
    """Generate the silver diagnostic suite in the official formats (see docs/diagnostic_suite.md).

    Args:
        out_dir: where to write; default ``paths.cache_dir() / "diagnostic"``.
        force: rebuild even when a manifest with the same generator version, seed and sizes exists.
        seed: seeds every random choice; the output is a pure function of (seed, sizes, sources, model).
        size: target train examples per task (coref: documents); dev gets ``dev_size`` (default size // 6).
        parse_cache: directory of the DocBin parse cache; default ``paths.cache_dir() / "diagnostic_parses"``.

    Returns:
        The suite directory, holding ``{qa,cola,mrpc,stsb,nli,coref,srl}/{train,dev}.*``, a
        ``*.meta.jsonl`` sidecar per data file, and ``manifest.json``.
    """
    if size < 6:
        raise UserInputError(f"diagnostic suite size must be at least 6, got {size}")
    dev_size = max(6, size // 6) if dev_size is None else dev_size
    out_dir = Path(out_dir) if out_dir is not None else paths.cache_dir() / "diagnostic"
    parse_cache = Path(parse_cache) if parse_cache is not None else paths.cache_dir() / "diagnostic_parses"
    key = {"generator_version": GENERATOR_VERSION, "seed": seed, "size": size, "dev_size": dev_size}
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists() and not force:
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
        if all(old.get(k) == v for k, v in key.items()):
            logger.info("diagnostic suite in %s is up to date (seed %d, size %d)", out_dir, seed, size)
            return out_dir
    started = time.perf_counter()
    docs = select_documents(max_words=(size + dev_size) * WORDS_PER_EXAMPLE)
    parsed = parse_documents(docs, parse_cache)
    sentences = extract_sentences(docs, parsed)
    coref_sentences = extract_sentences(docs, parsed, loose=True)
    logger.info("%d usable sentences (%d train, %d dev)", len(sentences), sum(s.split == "train" for s in sentences),
                sum(s.split == "dev" for s in sentences))
    counts: dict = {}
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            n = size if split == "train" else dev_size
            pool = entity_pool(sentences, split)
            pool["_NOUN"] = qa.noun_pool(sentences, split)

            def rng(task: str) -> random.Random:
                return random.Random(f"{seed}:{task}:{split}")

            made: dict[str, list[Item]] = {
                "qa": qa.generate(coref_sentences, split, n, rng("qa"), pool),
                "cola": cola.generate(sentences, split, n, rng("cola")),
                "mrpc": mrpc.generate(sentences, split, n, rng("mrpc"), pool),
                "stsb": stsb.generate(sentences, split, n, rng("stsb"), pool),
                "nli": nli.generate(sentences, split, n, rng("nli"), pool),
            }
            conll_docs: dict[str, dict[str, list[ConllSentence]]] = {}  # the CoNLL tasks' documents to write
            made["coref"], conll_docs["coref"] = coref.generate(coref_sentences, split, n, rng("coref"))
            made["srl"], conll_docs["srl"] = srl.generate(sentences, split, n, rng("srl"))
            for task, items in made.items():
                path = tmp / task / f"{split}.{TASK_FILES[task]}"
                if task == "qa":
                    _write_qa(path, split, items)
                elif task in ("cola", "mrpc", "stsb"):
                    _write_tsv(path, task, split, items)
                elif task == "nli":
                    _write_nli(path, split, items)
                else:
                    _write_conll(path, items, conll_docs[task])
                counts.setdefault(task, {})[split] = {"n": len(items), "labels": _label_counts(task, items)}
                if len(items) < n:
                    logger.warning("%s/%s: %d examples, fewer than the %d requested (not enough source text)", task, split, len(items), n)
        texts_sha = hashlib.sha256("\x00".join(d.text for d in docs).encode()).hexdigest()
        manifest = {**key, "provenance": PROVENANCE, "counts": counts, "spacy_model": model_meta(),
                    "sources": {"files_sha256": source_files(), "documents": {s: [d.doc_id for d in docs if d.split == s] for s in SPLITS},
                                "lee_documents": sum(d.source == "lee" for d in docs), "wiki_paragraphs": sum(d.source == "wiki" for d in docs),
                                "selected_text_sha256": texts_sha, "sentences": {s: sum(x.split == s for x in sentences) for s in SPLITS}}}
        atomic_write_json(tmp / "manifest.json", manifest)
    logger.info("built the diagnostic suite in %s in %.1f s", out_dir, time.perf_counter() - started)
    return out_dir
