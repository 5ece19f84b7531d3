"""Nothing lost, nothing substituted, nothing unpickled (issue 15): one test per defect, then a fuzz suite."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atinuke.cli import main as atinuke_main
from atinuke.encoders import load_encoder
from atinuke.errors import UserInputError
from tests.test_finetune import mrpc_dir  # noqa: F401  (fixture)
from workbench.cli import main as workbench_main


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_exit_2(capsys, code: int, needle: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert needle in err[0], err[0]
    return err[0]


@pytest.fixture()
def model_copy(tmp_path, tiny_atinuke_dir) -> Path:
    path = tmp_path / "model"
    shutil.copytree(tiny_atinuke_dir, path)
    return path


@pytest.fixture(scope="module")
def finetuned_run(tmp_path_factory, tiny_atinuke_dir, mrpc_dir) -> Path:  # noqa: F811
    """A fine-tuned task model (8 MRPC pairs, one epoch), for ``atinuke evaluate``."""
    out = tmp_path_factory.mktemp("finetuned") / "run"
    assert atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--task", "mrpc", "--data", str(mrpc_dir),
                         "--out", str(out), "--limit", "8", "--epochs", "1", "--no-calibrate"]) == 0
    return out


# 1. Data loss -------------------------------------------------------------------------------------------


def test_finetune_refuses_a_directory_holding_a_run(tmp_path, capsys, tiny_atinuke_dir, mrpc_dir):  # noqa: F811
    out = tmp_path / "pretrain-run"
    shutil.copytree(tiny_atinuke_dir, out / "model")
    (out / "model" / "my-notes.txt").write_text("mine")
    (out / "metrics.csv").write_text("step,loss\n1,2.0\n")
    before = _snapshot(out)
    code = atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--task", "mrpc", "--data", str(mrpc_dir),
                         "--out", str(out), "--limit", "8", "--epochs", "1"])
    _one_line_exit_2(capsys, code, "already holds files")
    assert _snapshot(out) == before


def test_attribute_refuses_a_finished_run(tmp_path, capsys, tiny_atinuke_dir):
    out = tmp_path / "attr"
    out.mkdir()
    (out / "attributions.parquet").write_bytes(b"earlier result")
    code = workbench_main(["attribute", "--model", str(tiny_atinuke_dir), "--method", "saliency", "--limit", "1",
                           "--out", str(out)])
    _one_line_exit_2(capsys, code, "already holds files")
    assert (out / "attributions.parquet").read_bytes() == b"earlier result"


def test_report_never_deletes_a_data_folder_it_did_not_write(tmp_path):
    from tests.claims_fixtures import write_experiment
    from workbench import report

    runs = write_experiment(tmp_path / "exp", accuracy=lambda arm, seed: 0.8, seeds=1)
    data = tmp_path / "results_data"
    data.mkdir()
    (data / "thesis.tex").write_text("mine")
    with pytest.raises(UserInputError, match="did not write"):
        report.build_report([runs], tmp_path / "results.html", pdf=False, n_boot=50)
    assert (data / "thesis.tex").read_text() == "mine"
    # A folder an earlier report wrote is replaced (its manifest lists the files).
    first = report.build_report([runs], tmp_path / "again.html", pdf=False, n_boot=50)
    second = report.build_report([runs], tmp_path / "again.html", pdf=False, n_boot=50)
    assert first.data_dir == second.data_dir and (second.data_dir / "claims.csv").is_file()


# 2. The wrong model, silently -----------------------------------------------------------------------------


def test_a_named_path_that_does_not_exist_is_an_error_not_another_run(tmp_path, capsys):
    code = workbench_main(["attribute", "--model", "/no/such/dir/minilm", "--task", "snli", "--method", "saliency",
                           "--limit", "1", "--out", str(tmp_path / "a")])
    _one_line_exit_2(capsys, code, "/no/such/dir/minilm: no such model directory")
    assert not (tmp_path / "a").exists()


# 3-5. Pickle, corrupt weights, config/weights mismatch ----------------------------------------------------


def test_pickle_only_checkpoints_are_refused(model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "pytorch_model.bin")
    with pytest.raises(UserInputError, match="pytorch_model.bin: weights load from safetensors only"):
        load_encoder(model_copy)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_corrupt_safetensors_is_one_line(model_copy, capsys, tmp_path, damage, finetuned_run):
    weights = model_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\xff" * 64}[damage])
    with pytest.raises(UserInputError, match="corrupt or truncated safetensors"):
        load_encoder(model_copy)
    code = workbench_main(["attribute", "--model", str(model_copy), "--method", "saliency", "--limit", "1",
                           "--out", str(tmp_path / "a")])
    _one_line_exit_2(capsys, code, "model.safetensors: corrupt or truncated")
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    weights = next(p for p in sorted(run.rglob("*.safetensors")) if p.name == "model.safetensors")
    weights.write_bytes(model_copy.joinpath("model.safetensors").read_bytes())  # the same damage
    code = atinuke_main(["evaluate", "--model", str(run), "--task", "mrpc", "--out", str(tmp_path / "e")])
    _one_line_exit_2(capsys, code, "model.safetensors: corrupt or truncated")
    from probes.cli import main as probes_main

    code = probes_main(["run", "--model", str(model_copy), "--task", "length", "--max-sentences", "20", "--seeds", "1",
                        "--out", str(tmp_path / "p")])
    _one_line_exit_2(capsys, code, "model.safetensors: corrupt or truncated")
    assert not (tmp_path / "p").exists() and not (tmp_path / "e").exists()


@pytest.mark.parametrize("layers, needle", [(3, "missing blocks.2"), (1, "unexpected atinuke.blocks.1")])
def test_config_that_does_not_match_its_weights_is_refused(model_copy, layers, needle):
    config = json.loads((model_copy / "config.json").read_text())
    config["n_layers"] = layers
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError, match=f"weights do not match config.json: {needle}"):
        load_encoder(model_copy)


# 4, 6, 7. Bad values at the CLI boundary ------------------------------------------------------------------


@pytest.mark.parametrize("flags, needle", [
    (["--device", "tpu"], "--device 'tpu': unknown device"),
    (["--device", "cuda:7"], "--device cuda:7"),
    (["--n-steps", "0"], "--n-steps must be at least 1, got 0"),
    (["--n-steps", "-3"], "--n-steps must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--n-samples", "0"], "--n-samples must be at least 1"),
    (["--max-tokens-per-pass", "0"], "--max-tokens-per-pass must be at least 1"),
    (["--internal-batch-size", "0"], "--internal-batch-size must be at least 1"),
    (["--tolerance", "-0.1"], "--tolerance must be positive"),
    (["--tolerance", "nan"], "--tolerance must be a finite number"),
    (["--n-steps", "many"], "argument --n-steps: invalid int value: 'many'"),
])
def test_bad_numbers_and_devices_fail_before_any_work(tmp_path, capsys, tiny_atinuke_dir, flags, needle):
    if flags == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    out = tmp_path / "a"
    code = workbench_main(["attribute", "--model", str(tiny_atinuke_dir), "--method", "lime", "--limit", "1",
                           "--out", str(out), *flags])
    _one_line_exit_2(capsys, code, needle)
    assert not out.exists()


def test_finetune_max_len_beyond_the_models_positions(tmp_path, capsys, tiny_atinuke_dir, mrpc_dir):  # noqa: F811
    code = atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--task", "mrpc", "--data", str(mrpc_dir),
                         "--out", str(tmp_path / "f"), "--max-len", "100000", "--limit", "8"])
    _one_line_exit_2(capsys, code, "--max-len 100000 is longer than the model's 128 positions")


def test_invalid_utf8_in_a_dataset_names_the_file(tmp_path, capsys, tiny_atinuke_dir, mrpc_dir):  # noqa: F811
    bad = tmp_path / "mrpc"
    shutil.copytree(mrpc_dir, bad)
    (bad / "train.tsv").write_bytes((mrpc_dir / "train.tsv").read_bytes() + b"1\t1\t2\t\xff\xfe bad\tother\n")
    code = atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--task", "mrpc", "--data", str(bad),
                         "--out", str(tmp_path / "f"), "--limit", "8"])
    line = _one_line_exit_2(capsys, code, str(bad / "train.tsv"))
    assert "utf-8" in line.lower() or "UTF-8" in line


# Fuzz: anything invalid is one line, exit 2, nothing written -------------------------------------------------

_NUMERIC_FLAGS = ["--n-steps", "--batch-size", "--n-samples", "--max-tokens-per-pass", "--internal-batch-size",
                  "--limit", "--tolerance"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(_NUMERIC_FLAGS),
       value=st.one_of(st.integers(max_value=0).map(str), st.sampled_from(["nan", "inf", "-inf", "", "1e999", "x"]),
                       st.text(alphabet="abc-+.%", min_size=1, max_size=5)))
def test_fuzz_attribute_numeric_options(tmp_path_factory, tiny_atinuke_dir, flag, value):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("fuzz") / "out"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            code = workbench_main(["attribute", "--model", str(tiny_atinuke_dir), "--method", "saliency",
                                   "--out", str(out), f"{flag}={value}"])
        except SystemExit as exit_:
            code = exit_.code
    if flag == "--tolerance" and value in ("inf", "1e999"):  # a huge tolerance is valid: one step suffices
        return
    lines = stderr.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1, (flag, value, lines)
    assert not out.exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400))
def test_fuzz_glue_loader_raises_only_user_errors(tmp_path_factory, body):
    from atinuke.tasks import load_task

    path = tmp_path_factory.mktemp("glue")
    (path / "train.tsv").write_bytes(b"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + body)
    try:
        load_task("mrpc", str(path), "train")
    except UserInputError as error:
        assert str(error).strip() and "\n" not in str(error).strip()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_fuzz_squad_loader_raises_only_user_errors(tmp_path_factory, body):
    from atinuke.tasks import load_task

    path = tmp_path_factory.mktemp("squad") / "train.json"
    path.write_bytes(body)
    try:
        load_task("squad2", str(path), "train")
    except UserInputError as error:
        assert str(path) in str(error)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200))
def test_fuzz_safetensors_loader_raises_only_user_errors(tmp_path_factory, tiny_atinuke_dir, body):
    path = tmp_path_factory.mktemp("st") / "model"
    shutil.copytree(tiny_atinuke_dir, path)
    (path / "model.safetensors").write_bytes(body)
    with pytest.raises(UserInputError, match="model.safetensors"):
        load_encoder(path)


def test_typed_special_tokens_are_text(tiny_atinuke_dir):
    from atinuke.encoders import minilm_path
    from atinuke.tokenizer import load_tokenizer

    for path in (tiny_atinuke_dir, minilm_path()):
        tokenizer = load_tokenizer(path)
        ids = tokenizer("a [MASK] b [SEP] [PAD] [CLS]")["input_ids"]
        specials = {tokenizer.mask_token_id, tokenizer.pad_token_id}
        assert not specials & set(ids), path
        assert ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 1  # the template's own
        pair = tokenizer("a", "b")["input_ids"]
        assert pair.count(tokenizer.sep_token_id) == 2


def test_a_sweep_default_beyond_the_models_positions_is_capped_and_recorded(tmp_path, tiny_atinuke_dir, mrpc_dir):  # noqa: F811
    from atinuke.finetune import FinetuneConfig, finetune

    out = tmp_path / "run"
    finetune(FinetuneConfig(model=str(tiny_atinuke_dir), task="mrpc", data=str(mrpc_dir), out=str(out), epochs=1,
                            limit=8, max_len=512))
    assert json.loads((out / "finetune_config.json").read_text())["max_len"] == 128


def test_over_long_input_is_bounded_before_tokenising(tiny_atinuke_dir, monkeypatch):
    from workbench.subject import MAX_CHARS_PER_TOKEN, load_subject

    subject = load_subject(tiny_atinuke_dir)
    seen = []
    real = subject.tokenizer.__class__.__call__
    monkeypatch.setattr(subject.tokenizer.__class__, "__call__",
                        lambda self, texts, *a, **k: (seen.append(max(map(len, texts))), real(self, texts, *a, **k))[1])
    huge = "word " * 2_000_000  # 10 MB on one line
    with pytest.raises(UserInputError, match="more than max_length=128"):
        subject.tokenize(huge, truncate=False)
    batch = subject.tokenize(huge)
    assert batch["input_ids"].shape == (1, 128)
    assert max(seen) <= 128 * MAX_CHARS_PER_TOKEN
    # A text that fits is untouched by the bound.
    assert subject.tokenize("a short sentence .")["input_ids"].shape[1] < 10


@pytest.mark.parametrize("flag", ["--n-steps", "--internal-batch-size"])
def test_an_option_given_as_double_dash_is_refused(tmp_path, tiny_atinuke_dir, capsys, flag):
    """argparse turns ``--n-steps=--`` into an empty list; the validation layer refuses it (found by the fuzz suite)."""
    out = tmp_path / "out"
    code = workbench_main(["attribute", "--model", str(tiny_atinuke_dir), "--method", "saliency", "--out", str(out),
                           f"{flag}=--"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [f"workbench attribute: error: {flag} needs a value, got '--'"]
    assert not out.exists()


# The commands merged after the policy: circuit, patch, lens, sae, finetune on a user's file -------------------


@pytest.fixture(scope="module")
def new_commands(tmp_path_factory, tiny_atinuke_dir) -> dict[str, tuple]:
    """Each command's valid arguments (all but --out), and its numeric flags with what makes them invalid."""
    root = tmp_path_factory.mktemp("new_commands")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"the market fell {i} points last week .\n" for i in range(30)))
    data = root / "reviews.csv"
    data.write_text("review,trend\n" + "".join(f"shares fell {i},{'up' if i % 2 else 'down'}\n" for i in range(20)))
    model = str(tiny_atinuke_dir)
    pair = ["--model", model, "--clean", "prices rose .", "--corrupted", "prices fell ."]
    below_1 = st.integers(max_value=0).map(str)  # counts: 0 and negatives
    not_positive = st.one_of(st.integers(max_value=0).map(str), st.sampled_from(["-1e-9", "-0.5", "0.0"]))
    from probes.cli import main as probes_main

    return {
        "probes": (probes_main, ["run", "--model", model, "--task", "length", "--max-sentences", "20", "--seeds", "1",
                                 "--layers", "0"],
                   {"--max-sentences": below_1, "--seeds": below_1, "--batch-size": below_1, "--jobs": st.just("0"),
                    "--C": not_positive}),
        "circuit": (workbench_main, ["circuit", *pair],
                    {"--n-steps": below_1, "--fraction": st.one_of(not_positive, st.sampled_from(["1.5", "2"]))}),
        "patch": (workbench_main, ["patch", *pair], {"--n-steps": below_1}),
        "lens": (workbench_main, ["lens", "--model", model, "--corpus", str(corpus), "--steps", "2", "--eval-texts", "2"],
                 {"--steps": st.integers(max_value=-1).map(str), "--batch-size": below_1, "--lr": not_positive,
                  "--eval-texts": below_1, "--max-length": below_1}),
        "sae": (workbench_main, ["sae", "train", "--model", model, "--corpus", str(corpus), "--hook",
                                 "blocks.0.hook_resid_post", "--width", "8", "--k", "2", "--max-tokens", "200",
                                 "--batch-size", "16", "--eval-texts", "2", "--no-control", "--no-progress"],
                {"--width": below_1, "--k": below_1, "--batch-size": below_1, "--steps": below_1,
                 "--max-tokens": below_1, "--shard-tokens": below_1, "--max-length": below_1, "--lr": not_positive}),
        "finetune": (atinuke_main, ["finetune", "--model", model, "--data", str(data), "--columns",
                                    "text=review,label=trend", "--epochs", "1", "--max-len", "64"],
                     {"--epochs": not_positive, "--batch-size": below_1, "--max-len": below_1, "--lr": not_positive,
                      "--head-lr": not_positive, "--dev-fraction": st.one_of(not_positive, st.just("1")),
                      "--limit": below_1}),
    }


def _call(main, argv: list[str]) -> tuple[int, list[str]]:
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, stderr.getvalue().strip().splitlines()


@pytest.mark.parametrize("command", ["probes", "circuit", "patch", "lens", "sae", "finetune"])
def test_new_commands_refuse_a_non_empty_out(new_commands, tmp_path, command):
    main, argv, _ = new_commands[command]
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "notes.txt").write_text("mine")
    (out / "summary.json").write_text("{}")
    before = _snapshot(out)
    code, lines = _call(main, [*argv, "--out", str(out)])
    assert code == 2 and len(lines) == 1 and "already holds files" in lines[0], lines
    assert _snapshot(out) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_new_commands_numeric_options(tmp_path_factory, new_commands, data):
    """Any command, any of its numeric flags, an invalid value (0, negative, out of range, not finite, not a
    number): one line, exit 2, nothing written, before the model is loaded."""
    command = data.draw(st.sampled_from(sorted(new_commands)), label="command")
    main, argv, flags = new_commands[command]
    flag = data.draw(st.sampled_from(sorted(flags)), label="flag")
    value = data.draw(st.one_of(flags[flag], st.sampled_from(["nan", "-inf", "x", "", "--"])), label="value")
    out = tmp_path_factory.mktemp("fuzz_new") / "out"
    code, lines = _call(main, [*argv, "--out", str(out), f"{flag}={value}"])
    assert code == 2 and len(lines) == 1, (command, flag, value, lines)
    assert not out.exists()


def test_max_length_zero_or_negative_is_refused(new_commands, tmp_path):
    """``--max-length 0`` ran with the model's full length and ``-1`` ended in an OverflowError traceback."""
    for command, value in (("lens", "0"), ("sae", "-1")):
        main, argv, _ = new_commands[command]
        code, lines = _call(main, [*argv, "--out", str(tmp_path / command), "--max-length", value])
        assert code == 2 and lines == [f"workbench {command}: error: --max-length must be at least 1, got {value}"]
        assert not (tmp_path / command).exists()


def test_lens_steps_zero_is_the_logit_lens_alone(new_commands, tmp_path):
    """``--steps 0`` is documented as "logit lens only" (it was refused by the shared rule for ``steps``);
    a negative count is still refused, by the flag the user typed."""
    import pandas as pd

    main, argv, _ = new_commands["lens"]
    code, lines = _call(main, [*argv, "--out", str(tmp_path / "bad"), "--steps", "-2"])
    assert code == 2 and lines == ["workbench lens: error: --steps must be >= 0, got -2"]
    assert main([*argv, "--out", str(tmp_path / "lens"), "--steps", "0"]) == 0
    assert not (tmp_path / "lens" / "tuned_lens.safetensors").exists()
    layers = pd.read_parquet(tmp_path / "lens" / "lens_layers.parquet")
    assert json.loads((tmp_path / "lens" / "summary.json").read_text())["steps"] == 0
    assert layers["kl_logit_lens"].iloc[-1] == pytest.approx(0.0, abs=1e-6)  # the last layer is the model itself
    assert layers["kl_tuned_lens"].isna().all()  # no tuned lens was trained


def test_attribute_states_truncation_in_its_output(tmp_path, tiny_atinuke_dir):
    """Item 8: an input cut to the model's positions is counted in summary.json, not only in a log line."""
    data = tmp_path / "texts.txt"
    data.write_text("prices rose .\n" + "the market fell " * 200 + "\nshares fell .\n")
    out = tmp_path / "out"
    assert workbench_main(["attribute", "--model", str(tiny_atinuke_dir), "--data", str(data), "--method", "saliency",
                           "--out", str(out), "--no-store", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_examples"] == 3 and summary["n_truncated"] == 1 and summary["max_len"] == 128
    import pandas as pd

    table = pd.read_parquet(out / "attributions.parquet")
    assert table.groupby("example_id").size().max() <= 128  # the cut input has at most the model's positions


def test_probes_run_follows_the_output_policy(new_commands, tmp_path):
    """``probes run`` wrote into a non-empty --out (exit 0), ``--jobs 0`` was a ValueError traceback after the
    work, and ``--max-sentences 0`` blamed the task's data; --resume continues in a non-empty --out and keeps
    what it did not write."""
    main, argv, _ = new_commands["probes"]
    for flag, value, needle in (("--jobs", "0", "--jobs must not be 0"),
                                ("--max-sentences", "0", "--max-sentences must be at least 1, got 0")):
        code, lines = _call(main, [*argv, "--out", str(tmp_path / "bad"), flag, value])
        assert code == 2 and lines == [f"probes run: error: {needle}" + lines[0].split(needle, 1)[1]], lines
        assert not (tmp_path / "bad").exists()
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "results.parquet").is_file()


@pytest.mark.parametrize("command", ["attribute", "probes", "circuit", "patch", "lens", "sae", "finetune"])
def test_an_out_that_is_a_file_is_refused_before_any_work(new_commands, tiny_atinuke_dir, tmp_path, command):
    """Item 6: an --out that is a file was found only after all the work was done."""
    main, argv, _ = new_commands.get(command) or (
        workbench_main, ["attribute", "--model", str(tiny_atinuke_dir), "--method", "saliency", "--limit", "1"], {})
    out = tmp_path / "results.txt"
    out.write_text("mine")
    code, lines = _call(main, [*argv, "--out", str(out)])
    assert code == 2 and len(lines) == 1 and f"--out {out} is a file, not a directory" in lines[0], lines
    assert out.read_text() == "mine"


def test_a_fine_tuned_run_with_a_corrupt_head_is_an_error_not_another_model(finetuned_run, tmp_path, capsys):
    """Item 2: a fine-tuned run whose head file is corrupt was replaced by the demo's model of the same name."""
    run = tmp_path / "snli-run"
    shutil.copytree(finetuned_run, run)
    head = next(run.rglob("head.safetensors"))
    head.write_bytes(b"\x00" * 40)
    code, lines = _call(workbench_main, ["attribute", "--model", str(run), "--method", "saliency", "--limit", "1",
                                         "--out", str(tmp_path / "a")])
    assert code == 2 and len(lines) == 1 and "head.safetensors" in lines[0], lines
    assert not (tmp_path / "a").exists()


def test_evaluate_never_replaces_the_runs_own_metrics(finetuned_run, tmp_path, capsys):
    """Item 1 for ``atinuke evaluate``: by default it wrote into the run directory, replacing the metrics.json
    and predictions.parquet fine-tuning wrote, and wrote into a non-empty --out. Both now need --overwrite."""
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    before = _snapshot(run)
    code = atinuke_main(["evaluate", "--model", str(run), "--limit", "4"])
    _one_line_exit_2(capsys, code, "already holds files")
    assert _snapshot(run) == before
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = atinuke_main(["evaluate", "--model", str(run), "--out", str(out)])
    _one_line_exit_2(capsys, code, "already holds files")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert atinuke_main(["evaluate", "--model", str(run), "--out", str(out), "--limit", "4", "--overwrite"]) == 0
    assert {p.name for p in out.iterdir()} == {"notes.txt", "metrics.json", "predictions.parquet"}
    assert atinuke_main(["evaluate", "--model", str(run), "--limit", "4", "--overwrite"]) == 0
