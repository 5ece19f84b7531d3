"""Issue 30, item 6, "silent wrong training data": a user's file either becomes exactly the examples it holds or
is refused with ``file:line`` (exit 2, nothing written); a fuzz suite over user-data files checks the same."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atinuke.cli import main as atinuke_main
from atinuke.errors import UserInputError
from atinuke.tasks.userdata import load_user_data, parse_columns, read_tables, sorted_labels, to_examples


@pytest.fixture(autouse=True)
def _registry_restored():
    """Loading user data registers its task; leave the registry as other tests expect it."""
    from atinuke.tasks.registry import TASKS

    saved = dict(TASKS)
    yield
    TASKS.clear()
    TASKS.update(saved)


def _tsv(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _rows(n=20):
    return ["text\tlabel"] + [f"review number {i}\t{'good' if i % 2 else 'bad'}" for i in range(1, n)]


def test_an_unclosed_quote_that_swallows_rows_is_refused(tmp_path):
    lines = _rows()
    lines[5] = '"a quote never closed\tgood'
    lines[9] = 'he said "no" twice\tbad'  # the csv module ends the runaway field at this quote
    path = _tsv(tmp_path / "reviews.tsv", lines)
    with pytest.raises(UserInputError, match=r"reviews.tsv:6: a quoted field runs over lines 6-10"):
        load_user_data(path, "text=text,label=label")


def test_a_real_multi_line_cell_is_kept(tmp_path):
    frame = pd.DataFrame({"text": ["one line", "two\nlines", "a \"quoted\" word"], "label": ["a", "b", "a"]})
    for sep, name in ((",", "x.csv"), ("\t", "x.tsv")):
        frame.to_csv(tmp_path / name, sep=sep, index=False)
        examples, _ = to_examples(read_tables(str(tmp_path / name))[""], "classification",
                                  {"text": "text", "label": "label"})
        assert [ex.text for ex in examples] == list(frame["text"])


def test_a_duplicate_header_is_refused(tmp_path):
    path = _tsv(tmp_path / "dup.tsv", ["text\ttext\tlabel", "first\tsecond\tgood", "third\tfourth\tbad"])
    with pytest.raises(UserInputError, match=r"dup.tsv:1: column 'text' appears twice in the header"):
        read_tables(path)


def test_a_repeated_role_is_refused():
    with pytest.raises(UserInputError, match=r"role text= is given twice"):
        parse_columns("text=review,label=stars,text=title")
    with pytest.raises(UserInputError, match=r"role text= is given twice"):
        parse_columns("text_a=review,label=stars,text=title")  # text_a is text


@pytest.mark.parametrize("value, what", [(["a", "b"], "a list"), ({"k": "v"}, "a mapping")])
def test_a_list_or_mapping_cell_is_not_text(tmp_path, value, what):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (
        {"text": "fine", "label": "good"}, {"text": value, "label": "bad"})) + "\n")
    with pytest.raises(UserInputError, match=fr"rows.jsonl:2: column 'text' holds {what}"):
        load_user_data(str(path), "text=text,label=label")
    pd.DataFrame({"text": [["x"], ["y", "z"]], "label": ["a", "b"]}).to_parquet(tmp_path / "rows.parquet")
    with pytest.raises(UserInputError, match=r"rows.parquet:row 1: column 'text' holds a list"):
        load_user_data(str(tmp_path / "rows.parquet"), "text=text,label=label")


def test_a_nan_label_is_refused(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n{"text": "dull", "label": NaN}\n{"text": "ok", "label": 0}\n')
    with pytest.raises(UserInputError, match=r"rows.jsonl:2: column 'label': label nan is not a class"):
        load_user_data(str(path), "text=text,label=label")
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1.0, float("nan"), 0.0]}).to_parquet(tmp_path / "n.parquet")
    with pytest.raises(UserInputError, match=r"n.parquet:row 2: (empty label|column 'label': label nan)"):
        load_user_data(str(tmp_path / "n.parquet"), "text=text,label=label")


def test_one_and_one_point_zero_are_one_class_and_said_so(tmp_path, caplog):
    lines = ["text\tlabel"] + [f"review {i}\t{['1', '1.0', '2', '2.0'][i % 4]}" for i in range(12)]
    path = _tsv(tmp_path / "num.tsv", lines)
    with caplog.at_level("WARNING"):
        user = load_user_data(path, "text=text,label=label")
    assert user.spec.labels == ("1", "2")
    assert {ex.label for ex in user.train + user.dev} == {"1", "2"}
    assert user.record["n_labels_rewritten"] == 6
    assert "6 label(s) written as a float" in caplog.text
    # JSON numbers: 1 and 1.0 are the same class too.
    jsonl = tmp_path / "num.jsonl"
    jsonl.write_text("".join(json.dumps({"text": f"t{i}", "label": [1, 1.0, 0][i % 3]}) + "\n" for i in range(9)))
    assert load_user_data(str(jsonl), "text=text,label=label").spec.labels == ("0", "1")


def test_label_order_is_sorted_whatever_the_row_order():
    import itertools

    values = ["10", "2", "2.5", "-1", "1e1"]
    orders = {sorted_labels(list(p)) for p in itertools.permutations(values)}
    assert orders == {("-1", "2", "2.5", "10", "1e1")}  # numerically, ties broken by the text
    assert sorted_labels(["b", "a", "B"]) == ("B", "a", "b")


def test_label_order_does_not_depend_on_the_hash_seed(tmp_path):
    """The same data gave another label order in another process (set order follows PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys

    path = _tsv(tmp_path / "l.tsv", ["text\tlabel"] + [f"r{i}\t{['1', '1.0', '01', '2'][i % 4]}" for i in range(16)])
    code = ("import sys; from atinuke.tasks.userdata import load_user_data; "
            f"print(load_user_data({path!r}, 'text=text,label=label').spec.labels)")
    seen = set()
    for seed in ("1", "2", "3", "4"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        seen.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)
    assert len(seen) == 1, seen


@pytest.mark.parametrize("lines, message", [
    (['text\tlabel', '"never closed\tgood', 'b\tbad', 'c\tgood', 'd "x" e\tbad', 'e\tgood'], "runs over lines 2-5"),
    (["text\ttext\tlabel", "a\tb\tgood"], "column 'text' appears twice"),
])
def test_the_cli_refuses_them_in_one_line_and_writes_nothing(tmp_path, capsys, tiny_atinuke_dir, lines, message):
    path = _tsv(tmp_path / "bad.tsv", lines)
    out = tmp_path / "out"
    assert atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--data", path, "--columns",
                         "text=text,label=label", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "bad.tsv:" in err[0], err
    assert not out.exists()


# Fuzz: a user's file reads to exactly its rows, or is refused with file:line -------------------------------

_cell = st.text(alphabet='ab1.0 "\t,\n{}[]', min_size=0, max_size=8)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".csv", ".tsv"]), body=st.lists(st.tuples(_cell, _cell), min_size=1, max_size=8))
def test_fuzz_delimited_files_read_back_exactly_or_are_refused(tmp_path_factory, suffix, body):
    """Any cells, written by pandas (which quotes what needs quoting), read back to the same texts and labels."""
    path = tmp_path_factory.mktemp("fuzz_user") / f"data{suffix}"
    frame = pd.DataFrame(body, columns=["text", "label"])
    frame.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
    try:
        examples, _ = to_examples(read_tables(str(path))[""], "classification", {"text": "text", "label": "label"})
    except UserInputError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        return
    from atinuke.tasks.userdata_checks import label_text

    kept = [(t, label_text("", "label", lab)) for t, lab in body if t.strip() or lab.strip()]  # a blank line is skipped, as documented
    assert [(ex.text, ex.label) for ex in examples] == kept  # no row merged into another, none dropped


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_fuzz_raw_user_files_raise_only_one_line_user_errors(tmp_path_factory, body, suffix):
    path = tmp_path_factory.mktemp("fuzz_raw") / f"data{suffix}"
    header = {".csv": b"text,label\n", ".tsv": b"text\tlabel\n", ".jsonl": b""}[suffix]
    path.write_bytes(header + body)
    try:
        examples, _ = to_examples(read_tables(str(path))[""], "classification", {"text": "text", "label": "label"})
    except UserInputError as error:
        assert str(error).strip() and "\n" not in str(error).strip()
        return
    for example in examples:  # whatever was accepted is text with a label that is a class
        assert isinstance(example.text, str) and example.text.strip()
        assert isinstance(example.label, str) and example.label.strip()


_json_value = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(max_size=5), st.lists(st.integers(0, 2), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(0, 2), max_size=1))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.fixed_dictionaries({"text": _json_value, "label": _json_value}), min_size=2, max_size=6))
def test_fuzz_jsonl_cells_are_text_and_classes_or_refused(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("fuzz_jsonl") / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    try:
        examples, _ = to_examples(read_tables(str(path))[""], "classification", {"text": "text", "label": "label"})
    except UserInputError as error:
        assert f"{path}:" in str(error) and "\n" not in str(error)
        return
    for record, example in zip(records, examples):
        assert not isinstance(record["text"], (list, dict)) and not isinstance(record["label"], (list, dict))
        assert not (isinstance(record["label"], float) and not math.isfinite(record["label"]))
        if isinstance(record["label"], float) and record["label"].is_integer():
            assert example.label == str(int(record["label"]))
