"""The user's own data: CSV, TSV, JSONL, parquet and Hugging Face datasets, read through a column mapping.

``--data reviews.csv --columns text=review,label=stars`` turns every row into a task example of one kind:

- classification: ``text=`` (alias ``text_a=``), optional ``text_b=`` for pairs, ``label=``;
- regression: ``score=`` (or ``label=`` with ``--kind regression``), same texts;
- span QA (SQuAD style): ``question=``, ``context=``, ``answer_text=`` (empty = unanswerable), optional
  ``answer_start=`` (else the first occurrence of the answer in the context);
- tagging: ``tokens=`` and ``tags=`` (BIO tags; list columns in JSONL/parquet, space-separated strings in CSV/TSV).

Any kind may map ``id=``; every column the mapping does not name is kept as example metadata (``meta_<column>`` in
the predictions table, which error analysis slices on). Label names are the user's, in a stable sorted order
(numeric labels numerically), and recorded with the fine-tuned model (``TaskSpec.labels`` and ``.columns``).

Sources (:func:`read_tables`): a ``.csv``/``.tsv``/``.jsonl``/``.parquet`` file (one split); a directory in the
Hugging Face hub layout (``data/<split>-*.parquet``, ``<config>/<split>-*.parquet`` or ``<config>/<split>/*.parquet``),
read with pyarrow, ``ClassLabel`` names taken from the parquet's ``huggingface`` metadata; a directory written by
``datasets.save_to_disk`` (``load_from_disk``); ``hf:NAME[/CONFIG]`` (``hf:ORG/NAME/CONFIG`` for a namespaced
repository) through ``datasets.load_dataset``, which honours the local cache and ``HF_HUB_OFFLINE``.

Bad rows are :class:`~atinuke.errors.UserInputError` naming ``file:line`` (``file:row N`` for tabular formats):
a missing column (naming the columns that exist), empty text, a bad number, unparseable JSON, invalid UTF-8,
a label in dev that training never saw.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from atinuke.errors import UserInputError
from atinuke.tasks import userdata_checks as checks
from atinuke.tasks._common import json_lines, open_text
from atinuke.tasks.base import Answer, ClassificationExample, Example, QAExample, SRLExample, TaskSpec
from atinuke.tasks.kinds.base import KINDS, TaskKind, get_kind
from atinuke.tasks.registry import TASKS, register_task

logger = logging.getLogger(__name__)

USER_FAMILY = "user"
FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
ALIASES = {"text_a": "text"}
DEV_SPLITS = ("validation", "dev", "valid", "test")
# role -> the usual column names of Hugging Face datasets, tried when --columns is left out.
GUESSES: dict[str, tuple[str, ...]] = {
    "text": ("text", "sentence", "sentence1", "premise", "question1"),
    "text_b": ("text_b", "sentence2", "hypothesis", "question2"), "label": ("label", "labels"),
    "tokens": ("tokens", "words"), "tags": ("tags", "ner_tags"), "id": ("id", "idx"),
}
Row = tuple[str, dict[str, Any]]  # (location "file:line" / "file:row N", record)


@dataclass
class Table:
    """One split of a source: its rows with their locations, its columns, and ``ClassLabel`` names."""

    source: str
    columns: list[str]
    rows: list[Row]
    class_names: dict[str, list[str]] = field(default_factory=dict)
    text_cells: bool = False  # CSV/TSV: every cell is text; extra columns of numbers are typed for slicing


@dataclass
class UserData:
    """A user's dataset as a task: the spec, both splits and where they came from.

    Attributes:
        spec: the task (family "user"; labels sorted; ``columns`` the role -> column mapping).
        train, dev: the examples.
        train_provenance, dev_provenance: "user: <source> [<mapping>]" (+ how dev was split off).
        record: what ``finetune_config.json`` keeps under "user_data" (sources, mapping, split rule, sizes).
    """

    spec: TaskSpec
    train: list[Example]
    dev: list[Example]
    train_provenance: str
    dev_provenance: str
    record: dict[str, Any]


def user_kinds() -> dict[str, TaskKind]:
    """The task kinds a user's dataset can have (those with ``TaskKind.user_roles``), by name."""
    return {name: kind for name, kind in KINDS.items() if kind.user_roles is not None}


def is_user_source(data: Optional[str]) -> bool:
    """Whether ``--data`` names a user dataset rather than official files: ``hf:``, a saved dataset or a
    hub-layout directory (a bare CSV/TSV/JSONL/parquet file needs ``--columns`` to be read as user data)."""
    if not data or data in ("diag", "auto", "real", "registry"):  # the data setting's words (atinuke.tasks.sources)
        return False
    if data.startswith("hf:"):
        return True
    path = Path(data)
    return path.is_dir() and (_is_saved_dataset(path) or bool(_hub_splits(path)))


def parse_columns(text: str, kind: Optional[str] = None) -> tuple[str, dict[str, str]]:
    """``"text=review,label=stars"`` -> (kind, role -> column); the kind is inferred from the roles unless given.

    Raises:
        UserInputError: malformed pair, unknown role, missing required role, unknown kind.
    """
    kinds = user_kinds()
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        role, sep, column = part.partition("=")
        role, column = ALIASES.get(role.strip(), role.strip()), column.strip()
        if not sep or not role or not column:
            raise UserInputError(f"--columns {text!r}: {part!r} is not ROLE=COLUMN")
        known = {r for k in kinds.values() for r in k.user_role_names()} | {"id", "label"}
        if role not in known:
            raise UserInputError(f"--columns: unknown role {role!r}; roles: {', '.join(sorted(known | set(ALIASES)))}")
        if role in mapping:
            raise UserInputError(f"--columns {text!r}: role {role}= is given twice")
        mapping[role] = column
    if kind is None:  # the first kind, by ``user_priority``, whose signature roles are mapped
        ranked = sorted(kinds.values(), key=lambda k: k.user_priority)
        kind = next(k.name for k in ranked if not k.user_signature or set(k.user_signature) & set(mapping))
    if kind not in kinds:
        raise UserInputError(f"--kind {kind!r}: choose one of {', '.join(kinds)}")
    for alias, role in kinds[kind].user_role_aliases:
        if alias in mapping and role not in mapping:
            mapping[role] = mapping.pop(alias)
    required, optional = kinds[kind].user_roles or ((), ())
    missing = [r for r in required if r not in mapping]
    extra = [r for r in mapping if r not in required + optional + ("id",)]
    if missing or extra:
        raise UserInputError(f"--columns {text!r}: a {kind} task needs {', '.join(f'{r}=' for r in required)}"
                             f"{' (optional ' + ', '.join(f'{r}=' for r in optional) + ')' if optional else ''}"
                             f"{'; missing ' + ', '.join(missing) if missing else ''}"
                             f"{'; not used by ' + kind + ': ' + ', '.join(extra) if extra else ''}")
    return kind, mapping


def format_columns(mapping: dict[str, str]) -> str:
    """The ``--columns`` text of a mapping (the inverse of :func:`parse_columns`)."""
    return ",".join(f"{role}={column}" for role, column in mapping.items())


# ------------------------------------------------------------------------------------------------ reading

def read_tables(data: str) -> dict[str, Table]:
    """Every split of a source: ``{"": table}`` for a single file, split name -> table otherwise.

    Raises:
        UserInputError: unknown format, missing path, unreadable or malformed file, an uncached ``hf:`` dataset.
    """
    if data.startswith("hf:"):
        return _read_hf(data[3:])
    path = Path(data)
    if path.is_dir():
        if _is_saved_dataset(path):
            return _from_datasets(str(path), _load_from_disk(path))
        splits = _hub_splits(path)
        if not splits:
            raise UserInputError(f"{path}: neither a saved dataset (load_from_disk) nor parquet in the hub layout "
                                 "(data/<split>-*.parquet, <config>/<split>/*.parquet)")
        return {split: _read_parquet_files(files) for split, files in splits.items()}
    if not path.is_file():
        raise UserInputError(f"{path}: no such file or directory (--data)")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return {"": _read_delimited(path, "," if suffix == ".csv" else "\t")}
    if suffix == ".jsonl":
        rows = [(f"{path}:{line}", record) for line, record in json_lines(path)]
        columns = list(dict.fromkeys(k for _, record in rows for k in record))
        return {"": Table(str(path), columns, rows)}
    if suffix == ".parquet":
        return {"": _read_parquet_files([path])}
    raise UserInputError(f"{path}: unknown data format {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}, a saved "
                         "dataset directory or hf:NAME[/CONFIG]")


def _read_delimited(path: Path, delimiter: str) -> Table:
    reader = csv.reader(open_text(path), delimiter=delimiter)
    rows: list[Row] = []
    try:
        header = next(reader, None)
        if not header:
            raise UserInputError(f"{path}:1: empty file (expected a header line)")
        checks.check_header(f"{path}:1", header)
        line = reader.line_num + 1
        for values in reader:
            start, line = line, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            checks.check_quoted_field(path, start, line - 1, values, delimiter, len(header))
            if len(values) != len(header):
                raise UserInputError(f"{path}:{start}: {len(values)} fields, but the header has {len(header)}")
            rows.append((f"{path}:{start}", dict(zip(header, values))))
    except csv.Error as error:
        raise UserInputError(f"{path}:{reader.line_num}: {error}") from None
    return Table(str(path), header, rows, text_cells=True)


def _typed(rows: list[Row], columns: Sequence[str]) -> list[Row]:
    """Extra text columns whose non-empty cells are all numbers become ints/floats (error analysis slices them
    numerically); mapped columns stay as written (a text "007" is not the number 7)."""
    rows = [(location, dict(record)) for location, record in rows]
    for column in columns:
        values = [record[column] for _, record in rows if record[column].strip()]
        for kind in (int, float):
            try:
                parsed = [kind(v) for v in values]
            except ValueError:
                continue
            lookup = dict(zip(values, parsed))
            for _, record in rows:
                record[column] = lookup.get(record[column])  # an empty cell becomes None
            break
    return rows


def _read_parquet_files(files: Sequence[Path]) -> Table:
    import pyarrow.parquet as pq

    rows: list[Row] = []
    columns: list[str] = []
    class_names: dict[str, list[str]] = {}
    for file in files:
        try:
            table = pq.read_table(file)
        except Exception as error:  # pyarrow raises ArrowInvalid / OSError with multi-line messages
            raise UserInputError(f"{file}: cannot read parquet ({str(error).splitlines()[0]})") from None
        checks.check_header(str(file), table.column_names)
        columns = columns or list(table.column_names)
        metadata = table.schema.metadata or {}
        if b"huggingface" in metadata:  # what datasets writes: the features, ClassLabel names included
            features = json.loads(metadata[b"huggingface"]).get("info", {}).get("features", {})
            for key, feature in features.items():
                inner = feature.get("feature", feature) if isinstance(feature, dict) else {}  # a list of labels
                if isinstance(inner, dict) and inner.get("_type") == "ClassLabel":
                    class_names[key] = list(inner["names"])
        rows.extend((f"{file}:row {i}", record) for i, record in enumerate(table.to_pylist(), start=1))
    return Table(str(files[0] if len(files) == 1 else files[0].parent), columns, rows, class_names)


def _hub_splits(root: Path) -> dict[str, list[Path]]:
    """split -> parquet files of a hub-layout directory (``data/`` first, else the directory itself)."""
    for base in (root / "data", root):
        splits: dict[str, list[Path]] = {}
        for file in sorted(base.glob("*.parquet")) + sorted(base.glob("*/*.parquet")):
            split = file.parent.name if file.parent != base else re.split(r"[-.]", file.name)[0]
            splits.setdefault(split, []).append(file)
        if splits:
            return splits
    return {}


def _is_saved_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _load_from_disk(path: Path) -> Any:
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises FileNotFoundError / its own errors with long messages
        raise UserInputError(f"{path}: cannot load the saved dataset ({str(error).splitlines()[0]})") from None


def _read_hf(name: str) -> dict[str, Table]:
    import datasets

    parts = name.split("/")
    repo, config = ("/".join(parts[:2]), parts[2] or None) if len(parts) == 3 else (parts[0], parts[1] if len(parts) == 2 else None)
    if not repo or len(parts) > 3:
        raise UserInputError(f"--data hf:{name}: expected hf:NAME, hf:NAME/CONFIG or hf:ORG/NAME/CONFIG")
    try:
        loaded = datasets.load_dataset(repo, config)
    except Exception as error:  # offline and uncached: ConnectionError; unknown config: ValueError; ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"hf:{name}: cannot load the dataset ({first}); offline (HF_HUB_OFFLINE=1) only "
                             "datasets in the local Hugging Face cache load; or give --data a local file") from None
    return _from_datasets(f"hf:{name}", loaded)


def _from_datasets(source: str, loaded: Any) -> dict[str, Table]:
    """Tables of a ``Dataset`` (one split, ``""``) or a ``DatasetDict``, with ``ClassLabel`` names kept."""
    import datasets

    parts = {"": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)
    tables = {}
    for split, part in parts.items():
        where = f"{source}[{split}]" if split else source
        names = {k: list(f.names) for k, v in part.features.items()  # a ClassLabel, or a list of them (tags)
                 for f in (getattr(v, "feature", v),) if isinstance(f, datasets.ClassLabel)}
        rows = [(f"{where}:row {i}", record) for i, record in enumerate(part.to_list(), start=1)]
        tables[split] = Table(where, list(part.column_names), rows, names)
    return tables


# ------------------------------------------------------------------------------------------------ examples

def _require_columns(table: Table, mapping: dict[str, str]) -> None:
    """Every mapped column exists: named at the header line (CSV/TSV), the first row without it (JSONL, whose
    rows may differ), or the source (parquet, datasets: one schema)."""
    for role, column in mapping.items():
        location, record = next(((loc, rec) for loc, rec in table.rows if column not in rec), ("", {}))
        if not location:
            continue
        if table.text_cells:
            location = f"{table.source}:1"  # the header line
        elif not table.source.endswith(".jsonl"):
            location = table.source
        raise UserInputError(f"{location}: no column {column!r} (for {role}=); the columns are "
                             f"{', '.join(list(record) or table.columns)}")


def cell_text(location: str, record: dict[str, Any], column: str, allow_empty: bool = False) -> str:
    value = record[column]
    checks.check_text_cell(location, column, value)
    text = "" if value is None else str(value)
    if not text.strip() and not allow_empty:
        raise UserInputError(f"{location}: empty text in column {column!r}")
    return text


def cell_number(location: str, record: dict[str, Any], column: str) -> float:
    value = record[column]
    try:
        number = float(value)
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError
    except (TypeError, ValueError):
        raise UserInputError(f"{location}: column {column!r}: {value!r} is not a number") from None
    return number


def cell_words(location: str, record: dict[str, Any], column: str, names: Optional[list[str]] = None) -> list[str]:
    value = record[column]
    words = (value.split() if isinstance(value, str) else None if not isinstance(value, (list, tuple))
             else [names[v] if names and isinstance(v, int) and 0 <= v < len(names) else str(v) for v in value])
    if words is None:
        raise UserInputError(f"{location}: column {column!r}: {value!r} is neither a list nor space-separated text")
    if not words:
        raise UserInputError(f"{location}: empty text in column {column!r}")
    return words


def cell_label(table: Table, location: str, record: dict[str, Any], column: str) -> str:
    value = record[column]
    names = table.class_names.get(column)
    if names is not None and isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    label = checks.label_text(location, column, value)
    if not label.strip():
        raise UserInputError(f"{location}: empty label in column {column!r}")
    return label


def _rewritten_labels(table: Table, mapping: dict[str, str]) -> int:
    """How many of the table's labels were written as an integer (``1.0`` -> ``1``; :func:`label_text`)."""
    column = mapping.get("label")
    if column is None or column in table.class_names:
        return 0
    raw = [record.get(column) for _, record in table.rows]
    try:
        labels = [checks.label_text("", column, v) if isinstance(v, (str, float)) else v for v in raw]
        return checks.count_rewritten(raw, labels)
    except UserInputError:  # a regression score (NaN was refused by its own check): nothing was rewritten
        return 0


def to_examples(table: Table, kind: str, mapping: dict[str, str]) -> tuple[list[Example], list[str]]:
    """The table's rows as examples of ``kind`` (and each one's location), unmapped columns kept as ``meta``.

    Raises:
        UserInputError: ``location: what is wrong`` for the first bad row.
    """
    if not table.rows:
        raise UserInputError(f"{table.source}: no rows")
    _require_columns(table, mapping)
    used = set(mapping.values())
    rows = _typed(table.rows, [c for c in table.columns if c not in used]) if table.text_cells else table.rows
    examples: list[Example] = []
    locations: list[str] = []
    seen: dict[str, str] = {}
    for location, record in rows:
        meta = {k: v for k, v in record.items() if k not in used}
        key = cell_text(location, record, mapping["id"]) if "id" in mapping else location.rsplit("/", 1)[-1]
        if key in seen:
            raise UserInputError(f"{location}: duplicate id {key!r} (first at {seen[key]})")
        seen[key] = location
        examples_kind = get_kind(kind)
        example: Example = examples_kind.user_example(table, location, record, mapping, key, meta)
        examples.append(example)
        locations.append(location)
    return examples, locations


def qa_row_example(location: str, record: dict[str, Any], mapping: dict[str, str], key: str,
                meta: dict[str, Any]) -> QAExample:
    context = cell_text(location, record, mapping["context"])
    question = cell_text(location, record, mapping["question"])
    answer = cell_text(location, record, mapping["answer_text"], allow_empty=True)
    if not answer.strip():
        return QAExample(key, context, question, [], is_impossible=True, meta=meta)
    start_value = record.get(mapping["answer_start"]) if "answer_start" in mapping else None
    if start_value is None or (isinstance(start_value, str) and not start_value.strip()):
        start = context.find(answer)
        if start < 0:
            raise UserInputError(f"{location}: answer {answer!r} does not occur in the context")
    else:
        number = cell_number(location, record, mapping["answer_start"])
        if number != int(number):
            raise UserInputError(f"{location}: column {mapping['answer_start']!r}: {start_value!r} is not a whole number")
        start = int(number)
        if context[start: start + len(answer)] != answer:
            raise UserInputError(f"{location}: answer {answer!r} is not at character {start} of the context "
                                 f"(found {context[start: start + len(answer)]!r})")
    return QAExample(key, context, question, [Answer(answer, start)], meta=meta)


def sorted_labels(values: Sequence[str]) -> tuple[str, ...]:
    """Distinct labels in a stable order: numerically when every label is a number, else as text."""
    distinct = set(values)
    try:
        return tuple(sorted(distinct, key=lambda label: (float(label), label)))
    except ValueError:
        return tuple(sorted(distinct))


def label_set(kind: str, examples: Sequence[Example]) -> tuple[str, ...]:
    """Class names (classification) or the closed BIO tag set (tagging: B- and I- of every type seen, and O):
    the kind's ``TaskKind.label_set``."""
    return get_kind(kind).label_set(examples)


def check_labels(spec: TaskSpec, examples: Sequence[Example], locations: Sequence[str]) -> None:
    """Raise naming the first row whose label (or tag) the task's training data never had."""
    if not spec.labels:
        return
    known = set(spec.labels)
    for example, location in zip(examples, locations):
        values = ([str(example.label)] if isinstance(example, ClassificationExample)
                  else example.tags if isinstance(example, SRLExample) else [])
        unknown = next((v for v in values if v not in known), None)
        if unknown is not None:
            what = "label" if isinstance(example, ClassificationExample) else "tag"
            raise UserInputError(f"{location}: {what} {unknown!r} was not seen in training (known: "
                                 f"{', '.join(spec.labels)})")


def task_name(data: str, name: Optional[str] = None) -> str:
    """The task's name: ``name``, else the data's stem (``reviews.csv`` -> ``reviews``, ``hf:glue/sst2`` ->
    ``glue-sst2``); a benchmark task's name gets a ``user-`` prefix. A given name may not be a benchmark's."""
    if name is not None:
        if name in TASKS and TASKS[name].family != USER_FAMILY:
            raise UserInputError(f"--task {name!r} is a benchmark task; name your data's task otherwise "
                                 "(or leave --task out to name it after the file)")
        return name
    stem = data[3:] if data.startswith("hf:") else Path(data).stem or Path(data).name
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem.strip("/")).strip("-") or "data"
    return f"user-{stem}" if stem in TASKS and TASKS[stem].family != USER_FAMILY else stem


def held_out(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, dev rows): a seeded ``fraction`` of ``n`` rows held out (at least 1 of each), in order."""
    if n < 2:
        raise UserInputError(f"{n} row(s): too few to hold out a dev split; give --dev-data")
    n_dev = min(n - 1, max(1, round(n * fraction)))
    dev = sorted(random.Random(seed).sample(range(n), n_dev))
    chosen = set(dev)
    return [i for i in range(n) if i not in chosen], dev


def _pick_split(tables: dict[str, Table], split: str) -> Optional[Table]:
    """The table of ``split`` ("train", "dev"; dev also "validation"/"valid"/"test"), or None."""
    if "" in tables:
        return tables[""]
    for name in (split,) + (DEV_SPLITS if split == "dev" else ()):
        if name in tables:
            return tables[name]
    return None


def guess_columns(table: Table) -> str:
    """A mapping for a table whose columns carry the usual names (``sentence``/``label``, ``sentence1``/
    ``sentence2``/``label``, ``tokens``/``ner_tags``, ...), as Hugging Face datasets do.

    Raises:
        UserInputError: no text and label (or tokens and tags) columns among the table's columns.
    """
    found = {role: next((c for c in names if c in table.columns), None) for role, names in GUESSES.items()}
    roles: tuple[str, ...]
    if found["tokens"] and found["tags"]:
        roles = ("tokens", "tags", "id")
    elif found["text"] and found["label"]:
        roles = ("text", "text_b", "label", "id")
    else:
        raise UserInputError(f"{table.source}: give --columns (e.g. text=COL,label=COL); the columns are "
                             f"{', '.join(table.columns)}")
    mapping = format_columns({role: column for role in roles if (column := found[role])})
    logger.info("%s: no --columns given; using %s", table.source, mapping)
    return mapping


def load_user_data(data: str, columns: Optional[str], dev_data: Optional[str] = None, kind: Optional[str] = None,
                   name: Optional[str] = None, dev_fraction: float = 0.2, seed: int = 0) -> UserData:
    """Read a user's dataset as a task and register its spec (see the module docstring).

    Without ``columns`` the mapping is guessed from the usual column names (:func:`guess_columns`). Dev is
    ``dev_data`` when given, else the source's validation split, else a seeded held-out
    ``dev_fraction`` of the training rows (recorded in ``UserData.record``).
    """
    if not 0 < dev_fraction < 1:
        raise UserInputError(f"--dev-fraction must be in (0, 1), got {dev_fraction}")
    name = task_name(data, name)  # a benchmark's name is refused before any file is read
    tables = read_tables(data)
    train_table = _pick_split(tables, "train")
    if train_table is None:
        raise UserInputError(f"{data}: no train split (splits: {', '.join(tables)})")
    kind, mapping = parse_columns(columns or guess_columns(train_table), kind)
    train, train_locations = to_examples(train_table, kind, mapping)
    dev_table = (_pick_split(read_tables(dev_data), "dev") if dev_data
                 else None if "" in tables else _pick_split({k: v for k, v in tables.items() if k != "train"}, "dev"))
    mapped = format_columns(mapping)
    if dev_table is not None:
        dev, dev_locations = to_examples(dev_table, kind, mapping)
        split_rule = f"dev split {dev_table.source}"
        dev_provenance = f"user: {dev_table.source} [{mapped}]"
    else:
        train_rows, dev_rows = held_out(len(train), dev_fraction, seed)
        dev, dev_locations = [train[i] for i in dev_rows], [train_locations[i] for i in dev_rows]
        train, train_locations = [train[i] for i in train_rows], [train_locations[i] for i in train_rows]
        split_rule = f"held-out {dev_fraction:g} of {train_table.source} (seed {seed})"
        dev_provenance = f"user: {train_table.source} [{mapped}], held-out {dev_fraction:g} (seed {seed})"
    rewritten = _rewritten_labels(train_table, mapping) + (_rewritten_labels(dev_table, mapping) if dev_table else 0)
    checks.log_rewritten(train_table.source, rewritten)
    labels = label_set(kind, train)
    if len(labels) < get_kind(kind).user_min_labels:
        raise UserInputError(f"{train_table.source}: only one label in training ({', '.join(labels)}); "
                             "a classifier needs at least two")
    user_metric = get_kind(kind).user_metric
    assert user_metric is not None  # parse_columns accepts only kinds with user roles, which name their metric
    spec = TaskSpec(name, USER_FAMILY, kind, labels, user_metric,
                    pair="text_b" in mapping or get_kind(kind).pair_inputs, columns=tuple(mapping.items()))
    check_labels(spec, dev, dev_locations)
    register_task(spec)
    record = {"data": data, "dev_data": dev_data, "columns": mapped, "kind": kind, "split": split_rule,
              "n_train_rows": len(train), "n_dev_rows": len(dev), "labels": list(labels),
              "n_labels_rewritten": rewritten}
    logger.info("%s: %d train / %d dev %s examples (%s)", spec.name, len(train), len(dev), kind, split_rule)
    return UserData(spec, train, dev, f"user: {train_table.source} [{mapped}]", dev_provenance, record)


def load_user_split(spec: TaskSpec, data: str, split: str = "dev",
                    columns: Optional[str] = None) -> tuple[list[Example], str]:
    """Examples of a fine-tuned user task read from ``data`` (a file is read whole; a multi-split source
    gives ``split``), with the run's column mapping unless ``columns`` is given; returns (examples, provenance).

    Raises:
        UserInputError: as :func:`to_examples`, a mapping of another kind, a label training never saw.
    """
    kind, mapping = parse_columns(columns, spec.kind) if columns else (spec.kind, dict(spec.columns))
    if not mapping:
        raise UserInputError(f"task {spec.name!r} records no column mapping; give --columns")
    tables = read_tables(data)
    table = _pick_split(tables, split)
    if table is None:
        raise UserInputError(f"{data}: no {split} split (splits: {', '.join(tables)})")
    examples, locations = to_examples(table, kind, mapping)
    check_labels(spec, examples, locations)
    return examples, f"user: {table.source} [{format_columns(mapping)}]"


__all__ = [
    "FILE_SUFFIXES", "USER_FAMILY", "Table", "UserData", "check_labels", "format_columns", "guess_columns",
    "held_out", "is_user_source", "label_set", "load_user_data", "load_user_split", "parse_columns", "read_tables",
    "sorted_labels", "task_name", "to_examples", "user_kinds", "cell_label", "cell_number", "cell_text", "cell_words",
    "qa_row_example",
]
