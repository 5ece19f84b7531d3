"""The controlled experiment on real data where it exists (issue 27): task presets by data availability, the
data source of every run in results and experiment.json, claims families and source labels, the demo's cost."""
from __future__ import annotations

import dataclasses
import json
import logging

import pandas as pd

from atinuke import experiment
from atinuke.finetune_all import TASK_DEFAULTS, estimated_cost
from atinuke.tasks import sources
from tests.claims_fixtures import write_experiment
from tests.test_pretrain import corpus_file, tokenizer_dir  # noqa: F401  (fixtures)
from workbench import claims
from workbench.artifacts import task_family

SILVER_SEVEN = ["cola", "mrpc", "stsb", "snli", "squad2", "srl", "coref"]  # the sweep before real data


def _registry(monkeypatch, fetched: bool) -> None:
    """Registry-real sets as fetched (a file that exists) or not, whatever this machine's cache holds."""
    for name, source in list(sources.SOURCES.items()):
        if source.kind == sources.REGISTRY_REAL:
            locate = (lambda fetch: sources.Path(__file__)) if fetched else (lambda fetch: None)
            monkeypatch.setitem(sources.SOURCES, name, dataclasses.replace(source, locate=locate))


def test_tasks_all_without_data_is_the_silver_suite_and_says_what_it_left_out(monkeypatch, caplog):
    monkeypatch.delenv("ATINUKE_DATA", raising=False)
    _registry(monkeypatch, fetched=False)
    with caplog.at_level(logging.INFO, logger="atinuke.experiment"):
        spec = experiment.parse_spec("atinuke,bert", 1, "all", "tiny")
    assert list(spec.tasks) == SILVER_SEVEN
    assert "leaves out sst2, rte, sick, gap, vader-movies: no data" in caplog.text
    _registry(monkeypatch, fetched=True)
    assert experiment.expand_tasks("all") == SILVER_SEVEN + ["vader-movies"]
    assert experiment.task_source("vader-movies")[0] == sources.REGISTRY_REAL
    assert experiment.expand_tasks("demo") == ["cola", "mrpc", "stsb", "snli", "squad2", "srl", "coref", "vader-movies"]


def test_tasks_all_with_the_official_data_takes_the_real_tasks(real_data, monkeypatch):
    _registry(monkeypatch, fetched=True)
    tasks = experiment.expand_tasks("all", data_dir=str(real_data))
    assert tasks == ["cola", "sst2", "mrpc", "sts", "rte", "sick", "snli", "squad2", "srl", "gap", "coref",
                     "vader-movies"]
    kinds = {t: experiment.task_source(t, data_dir=str(real_data))[0] for t in tasks}
    assert {t for t, k in kinds.items() if k == sources.REAL} == {"cola", "sst2", "mrpc", "sts", "rte", "sick", "gap"}
    assert {t for t, k in kinds.items() if k == sources.SILVER} == {"snli", "squad2", "srl", "coref"}
    assert experiment.task_source("sick", data_dir=str(real_data))[1].endswith("SNLI's real stand-in")
    assert experiment.expand_tasks("demo", data_dir=str(real_data)) == [
        "cola", "mrpc", "sts", "sick", "snli", "squad2", "srl", "gap", "vader-movies"]
    # --data diag forces the silver suite: the real-only tasks have no data then.
    assert experiment.expand_tasks("all", data="diag", data_dir=str(real_data)) == SILVER_SEVEN


def _cost(tasks: list[str]) -> float:  # the demo's arms: atinuke and bert from scratch, minilm pretrained
    return sum(2 * estimated_cost(t, "atinuke") + estimated_cost(t, "minilm") for t in tasks)


def test_the_demo_costs_at_most_ten_percent_more_than_the_silver_sweep():
    before = _cost(SILVER_SEVEN)
    with_data = _cost(["cola", "mrpc", "sts", "sick", "snli", "squad2", "srl", "gap", "vader-movies"])
    without = _cost(SILVER_SEVEN + ["vader-movies"])
    assert before < without <= with_data <= 1.10 * before
    # The sets the demo adds are budgeted like the rest: a seeded training sample, never more than 800.
    assert all(TASK_DEFAULTS[t].train <= 800 for t in ("sts", "sick", "gap", "vader-movies"))


def test_claims_families_of_the_real_tasks():
    families = {family: key for key, _, family in claims.PAPER_CLAIMS if family is not None}
    assert families[task_family("sick")] == "snli" and families[task_family("gap")] == "coref"
    assert families[task_family("sts")] == families[task_family("rte")] == "glue"
    assert task_family("vader-movies") not in families  # registry-real sentiment: no claim of the paper


def test_claim_evidence_labels_real_and_silver_tasks(tmp_path):
    root = tmp_path / "exp"
    accuracy = {"atinuke": 0.8, "bert": 0.7}
    for task in ("sick", "snli"):
        write_experiment(root, accuracy=lambda arm, seed: accuracy[arm], task=task)
    (root / "experiment.json").write_text(json.dumps({"arms": ["atinuke", "bert"], "seeds": [0, 1, 2],
                                                      "tasks": ["sick", "snli"], "scale": "tiny"}))
    for path in root.glob("*/seed*/finetune/*/metrics.json"):
        real = path.parent.name == "sick"
        metrics = json.loads(path.read_text()) | (
            {"data_source": "real", "dataset": sources.SOURCES["sick"].dataset} if real
            else {"data_source": "silver", "dataset": "diagnostic suite"})
        path.write_text(json.dumps(metrics))
    row = claims.evaluate_claims(root=root, n_boot=200).set_index("claim").loc["snli"]
    assert "sick [real: SICK entailment (Marelli et al., 2014), SNLI's real stand-in]" in row.evidence
    assert "snli [silver data]" in row.evidence
    assert "The data of snli are silver" in row.evidence and "The data of sick" not in row.evidence


def test_experiment_on_real_data_records_the_source_of_every_run(tmp_path, real_data, corpus_file,  # noqa: F811
                                                                 tokenizer_dir):  # noqa: F811
    flags = (f"--sources {corpus_file} --tokenizer {tokenizer_dir} --seq-len 32 --batch-size 8 --warmup 2 --steps 2 "
             f"--eval-max-blocks 4 --eval-batch-size 4 --eval-every 0 --checkpoint-every 2").split()
    spec = experiment.parse_spec("bert", 1, "sick,snli", "tiny", data_dir=str(real_data))
    out = tmp_path / "exp"
    experiment.run_experiment(spec, out, pretrain_flags=flags, finetune_scale=0.02, data_dir=str(real_data))
    table = pd.read_parquet(out / "results.parquet")
    assert dict(zip(table.task, table.source)) == {"sick": "real", "snli": "silver"}
    assert set(table[table.task == "sick"].dataset) == {sources.SOURCES["sick"].dataset}
    record = json.loads((out / "experiment.json").read_text())
    assert record["data"] == "auto" and record["task_data"]["sick"]["source"] == "real"
    assert record["task_data"]["snli"] == {"source": "silver",
                                           "dataset": "diagnostic suite (spaCy-rule labels on real text)"}
    metrics = json.loads((out / "bert/seed0/finetune/sick/metrics.json").read_text())
    assert metrics["data_source"] == "real" and metrics["n_examples"] == 10  # 500 trial pairs x 0.02
    summary = (out / "summary.md").read_text()
    assert "| sick (accuracy; real) |" in summary and "| snli (accuracy; silver) |" in summary


def test_probing_defaults_to_gold_ud_pos_under_atinuke_data(real_data):
    from probes.tasks import load_probing_data

    loaded = load_probing_data("pos", max_sentences=20)
    assert loaded.source.startswith("gold (real): UD English EWT en_ewt-ud-train.conllu (20 of ")
    assert set(loaded.labels) <= {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
                                  "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"}  # the 17 UPOS tags, not PTB's


def test_a_finished_run_on_other_data_is_run_again(tmp_path, real_data, monkeypatch):
    started = []

    def fake_finetune(config):
        started.append(config.task)
        (experiment.Path(config.out) / "metrics.json").write_text(json.dumps(
            {"task": config.task, "headline_metric": "accuracy", "accuracy": 0.5, "data_source": "real"}))

    monkeypatch.setattr(experiment, "_run_finetune", fake_finetune)
    out = tmp_path / "exp"
    for task in ("sick", "snli"):  # sick's run predates the official files: it read silver data
        run = experiment.finetune_dir(out, "minilm", 0, task)
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"task": task, "headline_metric": "accuracy", "accuracy": 0.4,
                                                      "data_source": "silver"}))
    spec = experiment.parse_spec("minilm", 1, "sick,snli", "tiny", data_dir=str(real_data))
    experiment.run_experiment(spec, out, data_dir=str(real_data))
    assert started == ["sick"]  # snli is silver either way: kept
    table = pd.read_csv(out / "results.csv")
    assert dict(zip(table.task, table.source)) == {"sick": "real", "snli": "silver"}
