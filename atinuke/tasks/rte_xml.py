"""RTE-1/2/3 in the PASCAL challenges' XML (Dagan et al., 2006, "The PASCAL Recognising Textual Entailment
Challenge"; Bar-Haim et al., 2006; Giampiccolo et al., 2007), read straight from ``rte.zip`` (the NLTK data
package) or from the ``rte{1,2,3}_{dev,test}.xml`` files.

Each ``<pair id=.. value="TRUE|FALSE">`` (RTE-1) or ``<pair id=.. entailment="YES|NO">`` (RTE-2/3) holds a
text ``<t>`` and a hypothesis ``<h>``; the label becomes GLUE's ``entailment`` / ``not_entailment``.
``meta`` keeps the challenge, its ``task`` attribute (IE, IR, QA, SUM, ...) and RTE-3's ``length``.

Split (chronological, no random cut): train = RTE-1 dev+test and RTE-2 dev+test (2,567 pairs); dev = RTE-3
dev (800); test = RTE-3 test (800). Ids: ``f"rte{challenge}_{part}-{pair id}"``.
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from xml.parsers import expat

from atinuke.errors import UserInputError, where
from atinuke.tasks._common import LoadedData
from atinuke.tasks.base import ClassificationExample

logger = logging.getLogger(__name__)

RTE_SPLITS = {
    "train": ("rte1_dev", "rte1_test", "rte2_dev", "rte2_test"),
    "dev": ("rte3_dev",),
    "test": ("rte3_test",),
}
_LABELS = {"TRUE": "entailment", "YES": "entailment", "FALSE": "not_entailment", "NO": "not_entailment"}


def parse_rte_xml(data: bytes, name: str, location: Path) -> list[ClassificationExample]:
    """The pairs of one RTE XML document.

    Args:
        data: the XML bytes.
        name: the file's stem, ``rte<challenge>_<part>`` (used in ids and meta).
        location: what errors name (``rte.zip/rte/rte1_dev.xml``).

    Raises:
        UserInputError: ``file:line`` for invalid XML, a pair without an id, a label other than
            TRUE/FALSE/YES/NO, a missing or empty ``<t>``/``<h>``, or a repeated id.
    """
    parser = expat.ParserCreate()
    examples: list[ClassificationExample] = []
    state: dict = {"pair": None, "field": None}
    seen: set[str] = set()

    def start(tag: str, attrs: dict[str, str]) -> None:
        line = parser.CurrentLineNumber
        if tag == "pair":
            value = (attrs.get("value") or attrs.get("entailment") or "").strip().upper()
            if value not in _LABELS:
                raise UserInputError(f"{where(location, line)}: RTE pair label {value!r} is not TRUE/FALSE/YES/NO")
            key = attrs.get("id", "").strip()
            if not key:
                raise UserInputError(f"{where(location, line)}: RTE pair without an id")
            if key in seen:
                raise UserInputError(f"{where(location, line)}: repeated RTE pair id {key!r}")
            seen.add(key)
            state["pair"] = {"id": key, "label": _LABELS[value], "line": line, "t": "", "h": "",
                             "task": attrs.get("task", ""), "length": attrs.get("length", "")}
        elif tag in ("t", "h") and state["pair"] is not None:
            state["field"] = tag

    def text(data: str) -> None:
        if state["field"] is not None:
            state["pair"][state["field"]] += data

    def end(tag: str) -> None:
        if tag in ("t", "h"):
            state["field"] = None
        elif tag == "pair" and state["pair"] is not None:
            pair = state["pair"]
            premise, hypothesis = " ".join(pair["t"].split()), " ".join(pair["h"].split())
            if not premise or not hypothesis:
                raise UserInputError(f"{where(location, pair['line'])}: RTE pair {pair['id']!r} lacks a text <t> or "
                                     "a hypothesis <h>")
            challenge, _, part = name.partition("_")
            meta = {"split": part, "challenge": challenge, "rte_task": pair["task"]}
            if pair["length"]:
                meta["length"] = pair["length"]
            examples.append(ClassificationExample(id=f"{name}-{pair['id']}", text=premise, text_pair=hypothesis,
                                                  label=pair["label"], meta=meta))
            state["pair"] = None

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise UserInputError(f"{where(location, error.lineno)}: invalid RTE XML ({expat.errors.messages[error.code]})"
                             ) from None
    return examples


def load_rte_split(path: Path, split: str) -> LoadedData:
    """One split of RTE-1/2/3 from ``rte.zip`` or a directory holding it (or the bare XML files).

    Raises:
        UserInputError: an unknown split, a missing file, an unreadable zip, or malformed XML (``file:line``).
    """
    if split not in RTE_SPLITS:
        raise UserInputError(f"RTE has splits {', '.join(RTE_SPLITS)}, not {split!r}")
    archive = path if path.is_file() else path / "rte.zip"
    loaded = LoadedData([], archive if archive.is_file() else path)
    for name in RTE_SPLITS[split]:
        data, location = _read_member(path, archive, name)
        loaded.examples.extend(parse_rte_xml(data, name, location))
    for example in loaded.examples:
        example.meta["part"], example.meta["split"] = example.meta["split"], split
    logger.info("%s: %d RTE pairs (%s)", loaded.path, len(loaded.examples), split)
    return loaded


def _read_member(path: Path, archive: Path, name: str) -> tuple[bytes, Path]:
    if archive.is_file():
        try:
            with zipfile.ZipFile(archive) as bundle:
                member = next((m for m in bundle.namelist() if Path(m).name == f"{name}.xml"), None)
                if member is None:
                    raise UserInputError(f"{archive}: no {name}.xml inside")
                return bundle.read(member), archive / member
        except zipfile.BadZipFile:
            raise UserInputError(f"{archive}: not a zip file") from None
    file = path / f"{name}.xml"
    if not file.is_file():
        raise UserInputError(f"{path}: neither rte.zip nor {name}.xml found")
    return file.read_bytes(), file
