"""`atinuke finetune` / `atinuke evaluate` end to end on tiny data in the official formats."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from atinuke.cli import main
from atinuke.finetune_eval import TABLE_COLUMNS
from atinuke.tasks import get_task, load_task_data
from atinuke.tasks.base import Answer, QAExample
from atinuke.tasks.metrics import score_task

DOCUMENTED = ["id", "task", "model", "split", "provenance", "text", "text_pair", "gold", "prediction", "score",
              "probs", "correct", "example_f1", "rationale"]


def _ptb_sentences(n):
    from atinuke.corpus import load_texts

    sentences = [s.strip() for s in load_texts("ptb", "valid") if 6 <= len(s.split()) <= 20]
    return sentences[:n]


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    """MRPC-format TSVs: a sentence paired with itself minus its last words (1) or with another sentence (0)."""
    path = tmp_path_factory.mktemp("mrpc")
    sentences = _ptb_sentences(60)
    for split, chunk in (("train", sentences[:40]), ("dev", sentences[40:])):
        lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i, s in enumerate(chunk):
            other = chunk[(i + 7) % len(chunk)] if i % 2 else " ".join(s.split()[:-2])
            lines.append(f"{i % 2 ^ 1}\t{i}\t{i + 1000}\t{s}\t{other}")
        (path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory):
    """SQuAD v2 json from real sentences: "What follows <first word>?" plus unanswerable questions."""
    path = tmp_path_factory.mktemp("squad") / "train.json"
    paragraphs = []
    for i, s in enumerate(_ptb_sentences(30)):
        words = s.split()
        answer = " ".join(words[1:3])
        qas = [{"id": f"q{i}", "question": f"What follows {words[0]} ?", "is_impossible": False,
                "answers": [{"text": answer, "answer_start": s.index(answer)}]},
               {"id": f"u{i}", "question": "Who painted the Mona Lisa ?", "is_impossible": True, "answers": []}]
        paragraphs.append({"context": s, "qas": qas})
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "ptb", "paragraphs": paragraphs}]}))
    (path.parent / "dev.json").write_text(path.read_text())
    return path.parent


def _run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("task,data_fixture", [("mrpc", "mrpc_dir"), ("squad2", "squad_file")])
def test_finetune_writes_documented_outputs(tmp_path, tiny_atinuke_dir, capsys, request, task, data_fixture):
    data = request.getfixturevalue(data_fixture)
    out = tmp_path / "run"
    code, _ = _run(["finetune", "--model", str(tiny_atinuke_dir), "--task", task, "--data", str(data), "--out",
                    str(out), "--epochs", "1", "--limit", "24", "--batch-size", "8", "--max-len", "64"], capsys)
    assert code == 0
    for name in ("model/task_model.json", "metrics.csv", "finetune_config.json", "metrics.json", "predictions.parquet"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    metrics = json.loads((out / "metrics.json").read_text())
    table = pd.read_parquet(out / "predictions.parquet")
    assert list(table.columns[: len(DOCUMENTED)]) == DOCUMENTED == list(TABLE_COLUMNS)
    assert all(c.startswith("meta_") for c in table.columns[len(DOCUMENTED):]) and "meta_length" in table.columns
    n_dev = min(24, len(load_task_data(task, str(data), "dev")))
    assert metrics["n_examples"] == len(table) == n_dev and metrics["n_skipped"] == 0
    assert metrics["task"] == task and metrics["split"] == "dev" and metrics["provenance"].startswith("gold: ")
    assert set(table["task"]) == {task} and set(table["model"]) == {metrics["model"]}
    # The metrics are exactly score_task on the table's predictions.
    examples = {ex.id: ex for ex in load_task_data(task, str(data), "dev")}
    gold = [examples[i] for i in table["id"]]
    predictions = list(table["prediction"])
    expected = score_task(task, gold, predictions)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
    spec = get_task(task)
    assert spec.metric in metrics
    assert table["correct"].mean() == pytest.approx(expected["accuracy" if task == "mrpc" else "exact"])
    if task == "squad2":  # the null threshold was tuned on the 36 training questions the run did not see
        calibration = metrics["calibration"]
        assert calibration["parameter"] == "null_threshold" and calibration["n_examples"] == 60 - 24
        assert calibration["after"] >= calibration["before"]
        saved = json.loads((out / "model" / "task_model.json").read_text())["head"]
        assert saved["null_threshold"] == calibration["value"]
    else:
        assert "calibration" not in metrics  # a classifier has no threshold to tune
    if task == "mrpc":
        probs = table["probs"].map(json.loads)
        assert all(abs(sum(p.values()) - 1) < 1e-5 and max(p.values()) == pytest.approx(s)
                   for p, s in zip(probs, table["score"]))
    # `atinuke evaluate` on the saved run reproduces the metrics.
    code, _ = _run(["evaluate", "--model", str(out), "--data", str(data), "--limit", "24", "--out",
                    str(tmp_path / "eval")], capsys)
    assert code == 0
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again[spec.metric] == pytest.approx(metrics[spec.metric])
    assert pd.read_parquet(tmp_path / "eval" / "predictions.parquet")["prediction"].tolist() == predictions


def test_unscorable_examples_are_counted_not_scored(tiny_atinuke_dir):
    from atinuke.finetune_eval import evaluate_model
    from atinuke.tasks.heads import build_task_model

    model = build_task_model(tiny_atinuke_dir, get_task("squad2"), max_len=64, max_query_len=16, doc_stride=8)
    good = QAExample("a", "The cat sat on the mat .", "Where ?", [Answer("the mat", 15)])
    empty = QAExample("b", "   ", "Where ?", [])
    outside = QAExample("c", "Short .", "What ?", [Answer("nowhere", 40)])
    evaluation = evaluate_model(model, [good, empty, outside], split="dev", provenance="test")
    assert evaluation.metrics["n_examples"] == 1 and evaluation.metrics["n_skipped"] == 2
    assert evaluation.metrics["skipped"] == {"empty context": 1, "answer offsets outside the context": 1}
    assert evaluation.table["id"].tolist() == ["a"]


def test_bad_inputs_exit_2_with_one_line(tmp_path, tiny_atinuke_dir, mrpc_dir, capsys):
    base = ["finetune", "--model", str(tiny_atinuke_dir), "--data", str(mrpc_dir), "--out", str(tmp_path / "x"),
            "--limit", "4", "--epochs", "1"]
    code, err = _run(base + ["--task", "nosuchtask"], capsys)
    assert code == 2 and len(err) == 1 and "nosuchtask" in err[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.tsv").write_text((mrpc_dir / "train.tsv").read_text().replace("\n1\t", "\n7\t", 1))
    (bad / "dev.tsv").write_text((mrpc_dir / "dev.tsv").read_text())
    code, err = _run(["finetune", "--model", str(tiny_atinuke_dir), "--task", "mrpc", "--data", str(bad),
                      "--out", str(tmp_path / "y"), "--epochs", "1"], capsys)
    assert code == 2 and len(err) == 1 and "train.tsv" in err[0]
    code, err = _run(base + ["--task", "mrpc", "--epochs", "0"], capsys)
    assert code == 2 and len(err) == 1 and "--epochs" in err[0]
    code, err = _run(["evaluate", "--model", str(tmp_path / "missing"), "--task", "mrpc"], capsys)
    assert code == 2 and len(err) == 1 and "missing" in err[0]
    code, err = _run(base[:2] + ["nosuchmodel"] + base[3:] + ["--task", "mrpc"], capsys)
    assert code == 2 and len(err) == 1 and "nosuchmodel" in err[0]


def test_finetune_all_keeps_finished_runs_and_writes_the_summary(tmp_path):
    from atinuke.finetune_all import SUMMARY_COLUMNS, finetune_all

    for model, value in (("atinuke", 0.5), ("minilm", 0.75)):
        run = tmp_path / model / "mrpc"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({
            "task": "mrpc", "model": model, "headline_metric": "f1", "accuracy": value - 0.1, "f1": value,
            "n_examples": 10, "provenance": "silver, derived", "skipped": {}}))
    rows = finetune_all("no-such-model", tmp_path, ["mrpc"])  # nothing is trained: both runs are done
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert tuple(summary.columns) == SUMMARY_COLUMNS and len(rows) == len(summary) == 4
    assert summary["metric"].tolist() == ["f1", "accuracy", "f1", "accuracy"]  # headline metric first
    assert summary.loc[summary["metric"] == "f1", "value"].tolist() == [0.5, 0.75]
    assert set(summary["provenance"]) == {"silver, derived"}
    # A later sweep restricted to other tasks keeps the finished ones in the summary.
    done = tmp_path / "atinuke" / "cola"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text(json.dumps({
        "task": "cola", "model": "atinuke", "headline_metric": "mcc", "mcc": 0.25, "n_examples": 10,
        "provenance": "silver, derived", "skipped": {}}))
    finetune_all("no-such-model", tmp_path, ["cola"], models=("atinuke",))
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(set(summary["task"])) == ["cola", "mrpc"] and len(summary) == 5
