"""GAP (Webster et al., 2018): the official TSV reader, the official scorer's metrics on planted predictions,
the pair-classification head's windowing, and `atinuke finetune/evaluate --task gap` end to end."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from atinuke.cli import main
from atinuke.errors import UserInputError
from atinuke.tasks import get_task, load_task, score_task
from atinuke.tasks.base import ClassificationExample
from atinuke.tasks.gap import GAP_COLUMNS, GAP_SIZES, decisions, describe, gap_counts, gap_scores, read_gap

HEADER = "\t".join(GAP_COLUMNS)
REAL = Path(os.environ.get("ATINUKE_DATA", "/nonexistent"))
needs_real = pytest.mark.skipif(not (REAL / "gap" / "gap-test.tsv").is_file(),
                                reason="ATINUKE_DATA does not hold gap/ (the official GAP TSVs)")

# Real sentences with a pronoun and two names (short, so the tiny models see all of them).
_TEMPLATES = [
    ("Mary met Anna at the station and she thanked her friend.", "she", "Mary", "Anna", "A"),
    ("John called Peter because he wanted to apologise.", "he", "John", "Peter", "A"),
    ("Alice told Bob that his car was ready.", "his", "Alice", "Bob", "B"),
    ("Tom said that Kate lost her keys.", "her", "Tom", "Kate", "B"),
    ("Sarah and Emma visited Paris; later her brother came too.", "her", "Sarah", "Emma", "NEITHER"),
    ("David thanked Mark, and then he left the room.", "he", "David", "Mark", "A"),
]


def _row(key: str, text: str, pronoun: str, a: str, b: str, label: str, url: str = "http://en.wikipedia.org/wiki/X"):
    return "\t".join([key, text, pronoun, str(text.index(f" {pronoun} ") + 1 if f" {pronoun} " in text
                                                  else text.index(pronoun)), a, str(text.index(a)),
                      str(label == "A").upper(), b, str(text.index(b)), str(label == "B").upper(), url])


def write_gap_dir(path: Path, n: int = 12) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "gap-development.tsv"), ("dev", "gap-validation.tsv"), ("test", "gap-test.tsv")):
        rows = [_row(f"{split}-{i + 1}", *_TEMPLATES[i % len(_TEMPLATES)]) for i in range(n)]
        (path / name).write_text("\n".join([HEADER] + rows) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- the reader
def test_reader_spans_labels_and_slices(tmp_path):
    directory = write_gap_dir(tmp_path / "gap")
    examples = load_task("gap", str(directory), "dev").examples
    first = examples[0]
    assert first.id == "dev-1" and first.label == "A" and first.text_pair is None
    assert first.text[first.meta["pronoun_start"]:first.meta["pronoun_end"]] == "she"
    assert first.text[first.meta["a_start"]:first.meta["a_end"]] == "Mary"
    assert first.text[first.meta["b_start"]:first.meta["b_end"]] == "Anna"
    assert [e.label for e in examples[:6]] == ["A", "A", "B", "B", "NEITHER", "A"]
    assert [e.meta["gender"] for e in examples[:4]] == ["feminine", "masculine", "masculine", "feminine"]


@needs_real
def test_official_files_first_and_last_rows_and_sizes():
    sizes = {split: len(load_task("gap", str(REAL / "gap"), split).examples) for split in ("train", "dev", "test")}
    assert sizes == GAP_SIZES == {"train": 2000, "dev": 454, "test": 2000}
    assert describe(REAL)["splits"] == GAP_SIZES and describe(REAL)["source"] == "real"
    train = load_task("gap", str(REAL / "gap"), "train").examples
    first = train[0]
    assert (first.id, first.label, first.meta["pronoun"], first.meta["pronoun_start"]) == ("development-1", "A", "her", 274)
    assert (first.meta["a"], first.meta["a_start"], first.meta["b"], first.meta["b_start"]) == ("Cheryl Cassidy", 191,
                                                                                                "Pauline", 207)
    assert first.meta["gender"] == "feminine" and first.meta["page_context"] == "none"
    last = load_task("gap", str(REAL / "gap"), "test").examples[-1]
    assert (last.id, last.label, last.meta["a"], last.meta["b"]) == ("test-2000", "A", "Vicky Austin", "Polly O'Keefe")
    assert last.meta["page_context"] == "A" and last.meta["url"].endswith("/Vicky_Austin")


def test_real_data_is_the_default_under_atinuke_data(tmp_path, monkeypatch):
    write_gap_dir(tmp_path / "gap")
    monkeypatch.setenv("ATINUKE_DATA", str(tmp_path))
    loaded = load_task("gap", split="test")
    assert len(loaded.examples) == 12 and loaded.provenance.startswith("gold: gap-test.tsv (GAP")
    assert (loaded.source, loaded.dataset) == ("real", "GAP coreference (Webster et al., 2018)")
    monkeypatch.setenv("ATINUKE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(UserInputError, match="nowhere: no such directory \\(ATINUKE_DATA\\)"):
        load_task("gap", split="test")
    monkeypatch.delenv("ATINUKE_DATA")
    with pytest.raises(UserInputError, match="no diagnostic \\(silver\\) version; set ATINUKE_DATA"):
        load_task("gap", split="test")


@pytest.mark.parametrize("edit,message", [
    (lambda cells: cells[:10], "expected 11 tab-separated GAP columns, found 10"),
    (lambda cells: cells[:3] + ["5"] + cells[4:], "Pronoun-offset 5 does not point at 'he'"),
    (lambda cells: cells[:6] + ["yes"] + cells[7:], "A-coref 'yes' is not TRUE or FALSE"),
    (lambda cells: cells[:6] + ["TRUE"] + cells[7:9] + ["TRUE"] + cells[10:], "both TRUE"),
    (lambda cells: cells[:2] + ["they"] + cells[3:], "pronoun 'they' is not one of the GAP pronouns"),
])
def test_malformed_rows_exit_2_naming_file_and_line(tmp_path, tiny_atinuke_dir, capsys, edit, message):
    directory = write_gap_dir(tmp_path / "gap")
    path = directory / "gap-development.tsv"
    lines = path.read_text().splitlines()
    lines[2] = "\t".join(edit(lines[2].split("\t")))  # line 3: the second data row ("John ... he")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError, match=f"gap-development.tsv:3: .*{message}"):
        read_gap(path)
    out = tmp_path / "run"
    code = main(["finetune", "--model", str(tiny_atinuke_dir), "--task", "gap", "--data", str(directory), "--out",
                 str(out), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "gap-development.tsv:3:" in err[0]
    assert not out.exists()  # refused before anything was written


# ---------------------------------------------------------------------------------------------- the metrics
def test_scorer_counts_each_decision_as_the_official_scorer():
    # (gender, gold, prediction) -> (A decision, B decision):
    #   1 m  A  A       tp, tn
    #   2 m  B  A       fp, fn
    #   3 f  N  B       tn, fp
    #   4 f  A  None    fn, fn   (no system output is a false negative even where the gold is FALSE)
    #   5 f  B  B       tn, tp
    genders = ["masculine", "masculine", "feminine", "feminine", "feminine"]
    gold = ["A", "B", "NEITHER", "A", "B"]
    predicted = ["A", "A", "B", None, "B"]
    counts = gap_counts(genders, gold, predicted)
    assert dict(counts["overall"]) == {"tp": 2, "tn": 3, "fp": 2, "fn": 3}
    assert dict(counts["masculine"]) == {"tp": 1, "tn": 1, "fp": 1, "fn": 1}
    assert dict(counts["feminine"]) == {"tp": 1, "tn": 2, "fp": 1, "fn": 2}
    scores = gap_scores(genders, gold, predicted)
    assert scores["precision"] == pytest.approx(2 / 4) and scores["recall"] == pytest.approx(2 / 5)
    assert scores["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert scores["masculine_f1"] == pytest.approx(0.5)
    assert scores["feminine_precision"] == pytest.approx(0.5) and scores["feminine_recall"] == pytest.approx(1 / 3)
    assert scores["feminine_f1"] == pytest.approx(0.4) and scores["bias"] == pytest.approx(0.8)
    assert scores["accuracy"] == pytest.approx(2 / 5)  # examples 1 and 5 have the right label


def test_decisions_and_undefined_cases():
    assert decisions("A") == (True, False) and decisions("B") == (False, True)
    assert decisions("NEITHER") == (False, False) and decisions(None) == (None, None)
    assert decisions((True, True)) == (True, True)  # a system may claim both names: two positives
    with pytest.raises(UserInputError, match="'C'"):
        decisions("C")
    # Both names claimed for a gold "A": one tp, one fp.
    assert dict(gap_counts(["feminine"], ["A"], [(True, True)])["feminine"]) == {"tp": 1, "fp": 1}
    # No masculine positive ever: masculine F1 is 0 and the bias F/M is undefined, as the scorer prints "-".
    scores = gap_scores(["masculine", "feminine"], ["A", "B"], ["NEITHER", "B"])
    assert scores["masculine_f1"] == 0.0 and scores["feminine_f1"] == 1.0 and math.isnan(scores["bias"])


def test_score_task_dispatches_to_the_gap_kind(tmp_path):
    examples = load_task("gap", str(write_gap_dir(tmp_path / "gap")), "dev").examples
    gold = [e.label for e in examples]
    perfect = score_task("gap", examples, gold)
    assert perfect["f1"] == perfect["masculine_f1"] == perfect["feminine_f1"] == perfect["bias"] == 1.0
    assert score_task("gap", examples, ["NEITHER"] * len(examples))["f1"] == 0.0
    with pytest.raises(UserInputError, match="no pronoun gender"):
        score_task("gap", [ClassificationExample("x", "t", None, "A")], ["A"])


# ---------------------------------------------------------------------------------------------- the head
def test_window_keeps_the_spans_and_their_offsets(tiny_atinuke_dir, tmp_path):
    from atinuke.tasks.heads import build_task_model

    filler = "The weather in the valley was mild for most of that long and uneventful year . "
    text = filler * 6 + "Later Mary met Anna , and she smiled . " + filler * 6
    line = _row("long-1", text, "she", "Mary", "Anna", "A")
    (tmp_path / "g.tsv").write_text(HEADER + "\n" + line + "\n")
    example = read_gap(tmp_path / "g.tsv").examples[0]
    model = build_task_model(str(tiny_atinuke_dir), get_task("gap"), max_len=32)
    batch = model.encode([example])
    assert batch.n_truncated == 1 and batch.input_ids.shape[1] == 32
    assert batch.head_inputs["span_valid"].tolist() == [[1, 1, 1]]
    for k, name in enumerate(("pronoun", "a", "b")):
        first, last = batch.head_inputs["span_bounds"][0, k].tolist()
        start, end = example.meta[f"{name}_start"], example.meta[f"{name}_end"]
        # every sub-token of the span lies inside the name's characters and together they cover it
        assert batch.offsets[0, first, 0] == start and batch.offsets[0, last, 1] == end
    # a name that cannot share a window with the pronoun is masked: its label is never predicted
    far = "Zelda wrote it . " + filler * 8 + "Later Mary met Anna , and she smiled ."
    (tmp_path / "f.tsv").write_text(HEADER + "\n" + _row("far-1", far, "she", "Zelda", "Anna", "NEITHER") + "\n")
    masked = read_gap(tmp_path / "f.tsv").examples[0]
    batch = model.encode([masked])
    assert batch.head_inputs["span_valid"].tolist() == [[1, 0, 1]]
    logits = model(**batch.model_inputs(with_targets=False)).logits
    assert logits[0, get_task("gap").labels.index("A")] < -1e3


def test_finetune_and_evaluate_write_gap_metrics_and_slices(tmp_path, tiny_atinuke_dir, capsys):
    directory = write_gap_dir(tmp_path / "gap")
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(tiny_atinuke_dir), "--task", "gap", "--data", str(directory), "--out",
                 str(out), "--epochs", "1", "--batch-size", "4", "--max-len", "64"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    table = pd.read_parquet(out / "predictions.parquet")
    assert {"meta_gender", "meta_page_context", "meta_label"} <= set(table.columns)
    examples = load_task("gap", str(directory), "dev").examples
    by_id = dict(zip(table["id"], table["prediction"]))
    recomputed = gap_scores([e.meta["gender"] for e in examples], [e.label for e in examples],
                            [by_id[e.id] for e in examples])
    for key in ("f1", "masculine_f1", "feminine_f1", "precision", "recall"):
        assert metrics[key] == pytest.approx(recomputed[key])
    assert metrics["headline_metric"] == "f1" and metrics["provenance"].startswith("gold: gap-validation.tsv (GAP")
    assert main(["evaluate", "--model", str(out / "model"), "--task", "gap", "--data", str(directory), "--split",
                 "test", "--out", str(tmp_path / "eval")]) == 0


def test_attribution_reads_the_span_rows_not_only_cls(tmp_path, tiny_atinuke_dir):
    """The GAP head reads the pronoun's and names' rows: the engine must not prune the last block to [CLS]."""
    from atinuke.tasks.heads import build_task_model, save_task_model
    from workbench.attribution.engine import attribute
    from workbench.attribution.method import AttributionParams
    from workbench.subject import load_subject

    examples = load_task("gap", str(write_gap_dir(tmp_path / "gap")), "dev").examples[:3]
    save_task_model(build_task_model(str(tiny_atinuke_dir), get_task("gap"), max_len=64), tmp_path / "model")
    subject = load_subject(tmp_path / "model")
    pruned = attribute(subject, examples, "saliency", params=AttributionParams(final_block_rows=True))
    full = attribute(subject, examples, "saliency", params=AttributionParams(final_block_rows=False))
    for example in examples:
        assert pruned.scores(example.id) == pytest.approx(full.scores(example.id), rel=1e-5, abs=1e-7)
