"""SNLI and MultiNLI jsonl (Bowman et al., 2015, arXiv 1508.05326; Williams et al., 2018, arXiv 1704.05426).

One JSON object a line with ``sentence1`` (premise), ``sentence2`` (hypothesis), ``gold_label`` and
``pairID`` (the example id). Pairs whose annotators reached no majority carry ``gold_label "-"``: they are
dropped, counted in ``LoadedData.skipped`` and logged, as every published SNLI/MNLI number does.
"""
from __future__ import annotations

import logging
from pathlib import Path

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData, json_lines
from atinuke.tasks.base import ClassificationExample

logger = logging.getLogger(__name__)

NLI_LABELS = ("entailment", "neutral", "contradiction")
NO_CONSENSUS = "-"
SKIP_NO_CONSENSUS = 'gold_label "-" (no annotator consensus)'
_META_KEYS = ("genre", "promptID", "captionID")


def read_nli_jsonl(path: str | Path) -> LoadedData:
    """Read an SNLI / MultiNLI jsonl file.

    Args:
        path: the ``.jsonl`` file (``.gz`` accepted).

    Returns:
        LoadedData of :class:`ClassificationExample` (text = premise, text_pair = hypothesis, label in
        ``NLI_LABELS``); ``meta`` keeps genre/promptID/captionID when present and the annotator label count.

    Raises:
        UserInputError: naming ``file:line`` for invalid JSON, a missing field, an empty sentence, an unknown
            label or a repeated pairID.
    """
    path = Path(path)
    examples: list[ClassificationExample] = []
    seen: set[str] = set()
    dropped = 0
    for line_no, record in json_lines(path):
        for key in ("sentence1", "sentence2", "gold_label", "pairID"):
            if not isinstance(record.get(key), str):
                raise UserInputError(f"{where(path, line_no)}: missing or non-string field {key!r}")
        label = record["gold_label"]
        if label == NO_CONSENSUS:
            dropped += 1
            continue
        if label not in NLI_LABELS:
            raise UserInputError(f"{where(path, line_no)}: unknown gold_label {label!r} "
                                 f"(expected one of {', '.join(NLI_LABELS)} or '-')")
        premise, hypothesis = record["sentence1"], record["sentence2"]
        if not premise.strip() or not hypothesis.strip():
            raise UserInputError(f"{where(path, line_no)}: empty sentence1 or sentence2")
        pair_id = record["pairID"]
        if pair_id in seen:
            raise UserInputError(f"{where(path, line_no)}: duplicate pairID {pair_id!r}")
        seen.add(pair_id)
        meta = {key: record[key] for key in _META_KEYS if key in record}
        if isinstance(record.get("annotator_labels"), list):
            meta["n_annotators"] = len(record["annotator_labels"])
        examples.append(ClassificationExample(id=pair_id, text=premise, text_pair=hypothesis, label=label,
                                              meta=meta))
    skipped = {SKIP_NO_CONSENSUS: dropped} if dropped else {}
    if dropped:
        logger.info("%s: dropped %d pair(s) with gold_label '-'", path, dropped)
    return LoadedData(list(examples), path, skipped)
