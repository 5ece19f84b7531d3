"""``atinuke experiment``: every (arm, seed) pretrained and fine-tuned, resumable, one tidy table (issue 10)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from atinuke import experiment, experiment_results
from atinuke.cli import main
from atinuke.experiment import ExperimentSpec, check_out, plan_units, pretrain_dir
from tests.test_finetune import mrpc_dir  # noqa: F401  (fixtures)
from tests.test_pretrain import corpus_file, tokenizer_dir  # noqa: F401  (fixtures)


@pytest.fixture()
def pretrain_flags(corpus_file, tokenizer_dir) -> str:  # noqa: F811
    return (f"--sources {corpus_file} --tokenizer {tokenizer_dir} --seq-len 32 --batch-size 8 --warmup 2 --steps 4 "
            f"--eval-max-blocks 4 --eval-batch-size 4 --eval-every 0 --checkpoint-every 2")


def _run(out: Path, *flags: str) -> int:
    return main(["experiment", "--out", str(out), *flags])


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_arms_two_seeds_build_one_tidy_table_and_rerun_is_a_no_op(tmp_path, pretrain_flags, mrpc_dir):  # noqa: F811
    out = tmp_path / "exp"
    flags = ["--arms", "atinuke,bert", "--seeds", "2", "--tasks", "mrpc", "--finetune-scale", "0.02",
             "--data", str(mrpc_dir),
             "--pretrain-flags", pretrain_flags]
    assert _run(out, *flags) == 0
    spec = json.loads((out / "experiment.json").read_text())
    assert {k: spec[k] for k in experiment.SPEC_KEYS} == {"arms": ["atinuke", "bert"], "seeds": [0, 1],
                                                          "tasks": ["mrpc"], "scale": "tiny"}
    assert spec["data"] == str(mrpc_dir) and spec["task_data"]["mrpc"]["source"] == "real"
    for arm in ("atinuke", "bert"):
        for seed in (0, 1):
            summary = json.loads((pretrain_dir(out, arm, seed) / "summary.json").read_text())
            assert summary["arch"] == arm and summary["seed"] == seed
    # Every arm and seed shares one tokenizer, so differences are architecture and initialisation only.
    vocabs = {(pretrain_dir(out, a, s) / "model" / "tokenizer.json").read_bytes()
              for a in ("atinuke", "bert") for s in (0, 1)}
    assert len(vocabs) == 1
    table = pd.read_parquet(out / "results.parquet")
    assert list(table.columns) == list(experiment_results.RESULT_COLUMNS)
    assert set(zip(table.arm, table.seed)) == {("atinuke", 0), ("atinuke", 1), ("bert", 0), ("bert", 1)}
    assert set(table.task) == {"mrpc"} and {"accuracy", "f1"} <= set(table.metric)
    for row in table.drop_duplicates("predictions").itertuples():
        assert set(pd.read_parquet(out / row.predictions)["model"]) == {f"{row.arm}-seed{row.seed}"}
    assert "| mrpc (f1; real) |" in (out / "summary.md").read_text()
    csv_table = pd.read_csv(out / "results.csv")
    assert len(csv_table) == len(table)
    progress = json.loads((out / "progress.json").read_text())
    assert progress["done"] == progress["total"] == 8 and progress["finished"] and not progress["pending"]
    # Different seeds give different models.
    a0 = json.loads((pretrain_dir(out, "atinuke", 0) / "summary.json").read_text())["final_loss"]
    a1 = json.loads((pretrain_dir(out, "atinuke", 1) / "summary.json").read_text())["final_loss"]
    assert a0 != a1
    before = _snapshot(out)
    assert _run(out, "--resume", "--data", str(mrpc_dir)) == 0
    after = _snapshot(out)
    changed = {k for k in before if before[k] != after.get(k)} - {"progress.json"}
    assert not changed, changed


def test_interrupted_pretraining_is_resumed_not_restarted(tmp_path, pretrain_flags, monkeypatch, mrpc_dir):  # noqa: F811
    out = tmp_path / "exp"
    # --stop-after stops the pretraining unit early, as a killed job would; the fine-tuning then has no model.
    with pytest.raises(experiment.UserInputError, match="stopped at a checkpoint"):
        experiment.run_experiment(experiment.parse_spec("bert", 1, "mrpc", "tiny"), out, data=str(mrpc_dir),
                                  pretrain_flags=(pretrain_flags + " --stop-after 2").split(), finetune_scale=0.02)
    assert (pretrain_dir(out, "bert", 0) / "checkpoints" / "step-2").is_dir()
    progress = json.loads((out / "progress.json").read_text())
    assert progress["done"] == 0 and "stopped at a checkpoint" in progress["error"]
    calls = []
    real = experiment._run_pretrain
    monkeypatch.setattr(experiment, "_run_pretrain", lambda argv: (calls.append(argv), real(argv)))
    assert _run(out, "--resume", "--data", str(mrpc_dir)) == 0
    assert calls and "--resume" in calls[0]
    summary = json.loads((pretrain_dir(out, "bert", 0) / "summary.json").read_text())
    assert summary["config"]["steps"] == 4


def test_plan_orders_pretraining_before_its_finetuning_and_skips_it_for_minilm():
    units = plan_units(ExperimentSpec(("atinuke", "minilm"), (0, 1), ("cola", "snli"), "tiny"))
    names = [u.name for u in units]
    assert names[:3] == ["atinuke/seed0/pretrain", "atinuke/seed0/finetune/cola", "atinuke/seed0/finetune/snli"]
    assert not any(n.startswith("minilm") and n.endswith("pretrain") for n in names)
    assert len(names) == 2 * 3 + 2 * 2


@pytest.mark.parametrize("flags, needle", [
    (["--arms", "atinuke,gpt2"], "unknown arm 'gpt2'"),
    (["--seeds", "0"], "--seeds must be at least 1, got 0"),
    (["--tasks", "squad3"], "unknown task(s) ['squad3']"),
    (["--scale", "huge"], "unknown --scale 'huge'"),
    (["--finetune-scale", "-1"], "--finetune-scale must be positive"),
])
def test_bad_values_exit_2_and_write_nothing(tmp_path, capsys, flags, needle):
    out = tmp_path / "exp"
    assert _run(out, *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists()


def test_a_directory_of_another_experiment_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps({"arms": ["atinuke"], "seeds": [0], "tasks": ["cola"],
                                                     "scale": "tiny"}))
    (out / "atinuke").mkdir()
    (out / "atinuke" / "keep.txt").write_text("built")
    before = _snapshot(out)
    assert _run(out, "--arms", "atinuke,bert", "--seeds", "1", "--tasks", "cola") == 2
    assert "describes arms=atinuke" in capsys.readouterr().err
    assert _run(out, "--arms", "atinuke", "--seeds", "1", "--tasks", "cola", "--scale", "small") == 2
    assert "is a tiny experiment" in capsys.readouterr().err
    assert _snapshot(out) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert _run(other) == 2
    assert "holds files but no experiment.json" in capsys.readouterr().err
    with pytest.raises(experiment.UserInputError, match="holds no experiment.json"):
        check_out(tmp_path / "fresh", None, resume=True, overwrite=False)


def test_experiment_runs_are_named_by_arm_and_seed():
    from atinuke.encoders import encoder_name

    assert encoder_name("runs/experiment/bert/seed2/pretrain") == "bert-seed2"
    assert encoder_name("runs/experiment/bert/seed2/pretrain/model") == "bert-seed2"
    assert encoder_name("runs/pretrain/tiny-mlm") == "tiny-mlm" and encoder_name("minilm") == "minilm"


def test_summary_table_known_answer():
    rows = [{"arm": "atinuke", "seed": s, "task": "mrpc", "metric": m, "value": v, "predictions": ""}
            for s, vals in enumerate([(0.6, 0.1), (0.8, 0.2)]) for m, v in zip(("f1", "accuracy"), vals)]
    rows.append({"arm": "bert", "seed": 0, "task": "mrpc", "metric": "f1", "value": 0.5, "predictions": ""})
    summary = experiment_results.summarise(rows)
    atinuke = next(r for r in summary if r["arm"] == "atinuke")
    # mean 0.7, sd 0.1414, t(0.975, 1) = 12.706: half-width 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert atinuke["metric"] == "f1" and atinuke["mean"] == pytest.approx(0.7)
    assert atinuke["ci_high"] - atinuke["mean"] == pytest.approx(1.2706, abs=1e-3)
    text = experiment_results.summary_markdown(summary)
    assert "| mrpc (f1) | 0.700 ± 1.271 (2 seeds) | 0.500 (1 seed) |" in text


def test_jobs_2_runs_units_in_worker_processes_and_builds_the_same_table(tmp_path, pretrain_flags, mrpc_dir):  # noqa: F811
    out = tmp_path / "exp"
    flags = ["--arms", "atinuke,bert", "--seeds", "1", "--tasks", "mrpc", "--finetune-scale", "0.02",
             "--data", str(mrpc_dir), "--pretrain-flags", pretrain_flags, "--jobs", "2"]
    assert _run(out, *flags) == 0
    table = pd.read_parquet(out / "results.parquet")
    assert set(zip(table.arm, table.seed)) == {("atinuke", 0), ("bert", 0)}
    progress = json.loads((out / "progress.json").read_text())
    assert progress["finished"] and progress["running"] == [] and progress["done"] == 4
    # The second pretraining run waited for the first one's tokenizer.
    vocabs = {(pretrain_dir(out, a, 0) / "model" / "tokenizer.json").read_bytes() for a in ("atinuke", "bert")}
    assert len(vocabs) == 1
    before = _snapshot(out)
    assert _run(out, "--resume", "--data", str(mrpc_dir), "--jobs", "2") == 0
    changed = {k for k in before if before[k] != _snapshot(out).get(k)} - {"progress.json"}
    assert not changed, changed


def test_pretrain_only_runs_the_pretraining_and_counts_every_unit(tmp_path, pretrain_flags, mrpc_dir):  # noqa: F811
    out = tmp_path / "exp"
    flags = ["--arms", "atinuke,bert", "--seeds", "1", "--tasks", "mrpc", "--finetune-scale", "0.02",
             "--data", str(mrpc_dir), "--pretrain-flags", pretrain_flags]
    assert _run(out, *flags, "--pretrain-only") == 0
    assert all((pretrain_dir(out, arm, 0) / "summary.json").is_file() for arm in ("atinuke", "bert"))
    assert not list(out.glob("*/seed0/finetune"))
    progress = json.loads((out / "progress.json").read_text())
    assert progress["done"] == 2 and progress["total"] == 4 and not progress["finished"]
    assert progress["pending"] == ["atinuke/seed0/finetune/mrpc", "bert/seed0/finetune/mrpc"]
    assert _run(out, *flags) == 0  # the same command without the flag finishes the experiment
    assert json.loads((out / "progress.json").read_text())["finished"]


def test_fine_tuning_runs_start_costliest_first(tmp_path, monkeypatch):
    from atinuke.finetune_all import estimated_cost

    started = []

    def fake_finetune(config):
        started.append(Path(config.out).name)
        Path(config.out).mkdir(parents=True)
        (Path(config.out) / "metrics.json").write_text(json.dumps({"headline_metric": "f1", "f1": 0.5}))

    monkeypatch.setattr(experiment, "_run_finetune", fake_finetune)
    spec = experiment.parse_spec("minilm", 1, "cola,squad2,snli,coref", "tiny")
    experiment.run_experiment(spec, tmp_path / "exp")
    costs = [estimated_cost(task, "minilm") for task in started]
    assert started[0] == "squad2" and costs == sorted(costs, reverse=True)
