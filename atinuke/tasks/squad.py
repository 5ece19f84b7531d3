"""SQuAD v1.1 and v2.0 JSON (Rajpurkar et al., 2016, arXiv 1606.05250; 2018, arXiv 1806.03822).

Layout: ``{"version": ..., "data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"?, "plausible_answers"?}]}]}]}``. One
:class:`QAExample` per question, with id = the question's ``"id"``. Every answer's character offset is
checked against the context (``context[start:start+len(text)] == text``); v1.1 dev questions keep all their
(possibly repeated) gold answers, v2.0 unanswerable questions have none.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from atinuke.errors import UserInputError
from atinuke.tasks._common import LoadedData, open_text
from atinuke.tasks.base import Answer, QAExample

logger = logging.getLogger(__name__)


def _line_of(text: str, needle: str) -> Optional[int]:
    """1-based line of the first occurrence of ``needle`` in the raw file (for error messages)."""
    position = text.find(needle)
    return None if position < 0 else text.count("\n", 0, position) + 1


def read_squad(path: str | Path, version: Optional[str] = None) -> LoadedData:
    """Read a SQuAD json file.

    Args:
        path: the json file.
        version: "1.1" (unanswerable questions are an error), "2.0", or None (accept both).

    Returns:
        LoadedData of :class:`QAExample` in file order; ``meta`` holds ``title`` and, for unanswerable
        questions, ``plausible_answers`` (texts).

    Raises:
        UserInputError: naming ``file:line`` for invalid JSON, a missing field, an empty context or question,
            an answer offset outside the context or not matching the answer text, a repeated id, an
            unanswerable question in v1.1 data, or an answerable one without answers.
    """
    path = Path(path)
    with open_text(path) as handle:
        raw = handle.read()
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise UserInputError(f"{path}: not a SQuAD file (expected an object with a \"data\" list)")

    examples: list[QAExample] = []
    seen: set[str] = set()
    for article in document["data"]:
        title = str(article.get("title", "")) if isinstance(article, dict) else ""
        for paragraph in _field(article, "paragraphs", list, path, raw, title):
            context = _field(paragraph, "context", str, path, raw, title)
            if not context.strip():
                raise UserInputError(f"{path}:{_line_of(raw, json.dumps(context)[:40]) or '?'}: empty context "
                                     f"in article {title!r}")
            for qa in _field(paragraph, "qas", list, path, raw, title):
                examples.append(_question(qa, context, title, version, path, raw, seen))
    logger.info("%s: %d questions (%d unanswerable)", path, len(examples),
                sum(example.is_impossible for example in examples))
    return LoadedData(list(examples), path)


def _field(record: Any, key: str, kind: type, path: Path, raw: str, where_hint: str) -> Any:
    if not isinstance(record, dict) or not isinstance(record.get(key), kind):
        hint = record.get("id") if isinstance(record, dict) else None
        line = _line_of(raw, json.dumps(hint)) if hint else None
        raise UserInputError(f"{path}:{line or '?'}: missing or malformed {key!r} (near {hint or where_hint!r})")
    return record[key]


def _question(qa: Any, context: str, title: str, version: Optional[str], path: Path, raw: str,
              seen: set[str]) -> QAExample:
    qid = _field(qa, "id", str, path, raw, title)
    line = _line_of(raw, json.dumps(qid))
    place = f"{path}:{line or '?'}"
    if qid in seen:
        raise UserInputError(f"{place}: duplicate question id {qid!r}")
    seen.add(qid)
    question = _field(qa, "question", str, path, raw, title)
    if not question.strip():
        raise UserInputError(f"{place}: empty question (id {qid!r})")
    impossible = bool(qa.get("is_impossible", False))
    if impossible and version == "1.1":
        raise UserInputError(f"{place}: unanswerable question {qid!r} in SQuAD v1.1 data; use task squad2")
    answers = [_answer(a, context, qid, place) for a in _field(qa, "answers", list, path, raw, title)]
    if impossible and answers:
        raise UserInputError(f"{place}: question {qid!r} is marked is_impossible but has answers")
    if not impossible and not answers:
        raise UserInputError(f"{place}: answerable question {qid!r} has no answers")
    meta: dict[str, Any] = {"title": title}
    if impossible:
        plausible = [_answer(a, context, qid, place) for a in qa.get("plausible_answers") or []]
        meta["plausible_answers"] = [answer.text for answer in plausible]
    return QAExample(id=qid, context=context, question=question, answers=answers, is_impossible=impossible,
                     title=title, meta=meta)


def _answer(record: Any, context: str, qid: str, place: str) -> Answer:
    if (not isinstance(record, dict) or not isinstance(record.get("text"), str)
            or not isinstance(record.get("answer_start"), int) or isinstance(record.get("answer_start"), bool)):
        raise UserInputError(f"{place}: malformed answer {record!r} of question {qid!r}")
    answer = Answer(text=record["text"], start=record["answer_start"])
    if not answer.text:
        raise UserInputError(f"{place}: empty answer text in question {qid!r}")
    if not 0 <= answer.start or answer.end > len(context):
        raise UserInputError(f"{place}: answer {answer.text!r} of question {qid!r} at [{answer.start}, "
                             f"{answer.end}) lies outside the context ({len(context)} characters)")
    if context[answer.start:answer.end] != answer.text:
        raise UserInputError(f"{place}: answer {answer.text!r} of question {qid!r} does not match the context "
                             f"at offset {answer.start} ({context[answer.start:answer.end]!r})")
    return answer
