"""The user's own data (atinuke.tasks.userdata): every format reads to the same examples, label names are
kept, every bad row is a one-line ``file:line`` error with exit 2 and nothing written, and a CSV with a planted
rule goes through fine-tuning, evaluation, attribution and error analysis."""
from __future__ import annotations

import csv
import json
import random

import pandas as pd
import pytest

from atinuke.cli import main as atinuke_main
from atinuke.errors import UserInputError
from atinuke.tasks import get_task, load_task_data
from atinuke.tasks.base import QAExample, SRLExample
from atinuke.tasks.userdata import held_out, load_user_data, parse_columns, read_tables, to_examples

TRAIN = pd.DataFrame({
    "review": ["a fine, \"quoted\" film", "dull plot", "café scenes\nover two lines", "007 stars", "so so"],
    "stars": ["good", "bad", "good", "good", "bad"],
    "source": ["web", "mail", "web", "web", "mail"],
    "votes": [3, 0, 12, 5, 1],
})
DEV = pd.DataFrame({"review": ["great cast", "weak ending"], "stars": ["good", "bad"], "source": ["mail", "web"],
                    "votes": [2, 7]})
COLUMNS = "text=review,label=stars"


@pytest.fixture(autouse=True)
def _registry_restored():
    """Loading user data registers its task; leave the registry as other tests expect it."""
    from atinuke.tasks.registry import TASKS

    saved = dict(TASKS)
    yield
    TASKS.clear()
    TASKS.update(saved)


def _view(examples):
    """What must survive every format: texts, labels and the extra columns (ids name the file's lines)."""
    return [(ex.text, ex.text_pair, ex.label, ex.meta) for ex in examples]


def _write_formats(tmp_path):
    """The same two splits in every format: name -> (--data, --dev-data)."""
    import datasets

    out = {}
    for suffix, write in ((".csv", lambda f, p: f.to_csv(p, index=False)),
                          (".tsv", lambda f, p: f.to_csv(p, sep="\t", index=False)),
                          (".jsonl", lambda f, p: f.to_json(p, orient="records", lines=True, force_ascii=False)),
                          (".parquet", lambda f, p: f.to_parquet(p, index=False))):
        for split, frame in (("train", TRAIN), ("dev", DEV)):
            write(frame, tmp_path / f"{split}{suffix}")
        out[suffix] = (str(tmp_path / f"train{suffix}"), str(tmp_path / f"dev{suffix}"))
    # The hub's layout and save_to_disk, written by datasets itself with the labels as a ClassLabel.
    features = datasets.Features({"review": datasets.Value("string"), "stars": datasets.ClassLabel(names=["bad", "good"]),
                                  "source": datasets.Value("string"), "votes": datasets.Value("int64")})
    parts = datasets.DatasetDict({split: datasets.Dataset.from_pandas(frame, features=features, preserve_index=False)
                                  for split, frame in (("train", TRAIN), ("validation", DEV))})
    hub = tmp_path / "hub_repo"
    for split, part in parts.items():
        (hub / "data").mkdir(parents=True, exist_ok=True)
        part.to_parquet(str(hub / "data" / f"{split}-00000-of-00001.parquet"))
    out["hub"] = (str(hub), None)
    parts.save_to_disk(str(tmp_path / "saved"))
    out["save_to_disk"] = (str(tmp_path / "saved"), None)
    return out


def test_every_format_reads_to_the_same_examples_with_the_label_names_kept(tmp_path):
    formats = _write_formats(tmp_path)
    expected_train = [(r.review, None, r.stars, {"source": r.source, "votes": r.votes}) for r in TRAIN.itertuples()]
    expected_dev = [(r.review, None, r.stars, {"source": r.source, "votes": r.votes}) for r in DEV.itertuples()]
    for name, (data, dev) in formats.items():
        user = load_user_data(data, COLUMNS, dev_data=dev, name="reviews")
        assert _view(user.train) == expected_train, name
        assert _view(user.dev) == expected_dev, name
        assert user.spec.labels == ("bad", "good") and user.spec.kind == "classification", name
        assert dict(user.spec.columns) == {"text": "review", "label": "stars"}
        assert get_task("reviews") == user.spec  # registered: metrics and evaluation find it by name
    # A CSV row's id is its first line (the header is line 1; the second row spans lines 3-4).
    assert [ex.id for ex in load_user_data(formats[".csv"][0], COLUMNS, formats[".csv"][1]).train] == [
        "train.csv:2", "train.csv:3", "train.csv:4", "train.csv:6", "train.csv:7"]


def test_pairs_regression_qa_and_tagging(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in [
        {"a": "x y", "b": "y z", "sim": 4.5, "lab": 10}, {"a": "p", "b": "q", "sim": "0.5", "lab": 2},
        {"a": "m", "b": "n", "sim": 1, "lab": 1}]) + "\n")
    user = load_user_data(str(pairs), "text_a=a,text_b=b,label=lab", dev_data=str(pairs))
    assert user.spec.labels == ("1", "2", "10") and user.spec.pair  # numeric label names sort as numbers
    regression = load_user_data(str(pairs), "text=a,text_b=b,score=sim", dev_fraction=0.34, seed=3)
    assert regression.spec.kind == "regression" and regression.spec.metric == "pearson"
    assert sorted(ex.label for ex in regression.train + regression.dev) == [0.5, 1.0, 4.5]
    assert parse_columns("text=a,label=sim", "regression") == ("regression", {"text": "a", "score": "sim"})

    qa = tmp_path / "qa.csv"
    qa.write_text("q,c,ans,start\nwho won?,Ada won the race,Ada,0\nwhere?,in Lagos it rained,Lagos,\n"
                  "why?,no reason given,,\n")
    examples, _ = to_examples(read_tables(str(qa))[""], "span_qa",
                              parse_columns("question=q,context=c,answer_text=ans,answer_start=start")[1])
    assert all(isinstance(ex, QAExample) for ex in examples)
    assert [(a.text, a.start) for ex in examples for a in ex.answers] == [("Ada", 0), ("Lagos", 3)]  # found
    assert [ex.is_impossible for ex in examples] == [False, False, True]  # an empty answer: unanswerable

    tags_csv, tags_parquet = tmp_path / "ner.csv", tmp_path / "ner.parquet"
    rows = [{"toks": ["Ada", "met", "Bo", "Li"], "ner": ["B-PER", "O", "B-PER", "I-PER"]},
            {"toks": ["in", "Lagos"], "ner": ["O", "B-LOC"]}, {"toks": ["hi"], "ner": ["O"]}]
    pd.DataFrame(rows).to_parquet(tags_parquet)  # list columns
    pd.DataFrame([{k: " ".join(v) for k, v in r.items()} for r in rows]).to_csv(tags_csv, index=False)
    views = []
    for path in (tags_csv, tags_parquet):
        user = load_user_data(str(path), "tokens=toks,tags=ner", dev_data=str(path))
        assert user.spec.kind == "tagging" and user.spec.labels == ("B-LOC", "B-PER", "I-LOC", "I-PER", "O")
        views.append([(ex.words, ex.tags, ex.predicate_index) for ex in user.train
                      if isinstance(ex, SRLExample)])
    assert views[0] == views[1] and len(views[0]) == 3 and {p for _, _, p in views[0]} == {-1}


def test_held_out_split_is_seeded_and_recorded(tmp_path):
    TRAIN.to_csv(tmp_path / "all.csv", index=False)
    a = load_user_data(str(tmp_path / "all.csv"), COLUMNS, dev_fraction=0.4, seed=1)
    b = load_user_data(str(tmp_path / "all.csv"), COLUMNS, dev_fraction=0.4, seed=1)
    assert [ex.id for ex in a.dev] == [ex.id for ex in b.dev] and len(a.dev) == 2 and len(a.train) == 3
    assert not {ex.id for ex in a.dev} & {ex.id for ex in a.train}
    assert a.record["split"] == f"held-out 0.4 of {tmp_path / 'all.csv'} (seed 1)"
    assert "held-out 0.4 (seed 1)" in a.dev_provenance
    splits = {tuple(held_out(50, 0.2, seed)[1]) for seed in range(5)}
    assert len(splits) == 5 and all(len(s) == 10 for s in splits)


def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture()
def bad_files(tmp_path):
    good = _csv(tmp_path / "good.csv", ["review", "stars"], [["fine", "good"], ["dull", "bad"], ["ok", "good"]])
    invalid = tmp_path / "latin1.csv"
    invalid.write_bytes(b"review,stars\nfine,good\ncaf\xe9 noir,bad\n")
    jsonl = tmp_path / "broken.jsonl"
    jsonl.write_text('{"review": "fine", "stars": "good"}\n{"review": "dull", "stars": \n')
    return {
        "missing": ([_csv(tmp_path / "m.csv", ["text", "source"], [["fine", "web"]]), "--columns", COLUMNS],
                    "m.csv:1: no column 'review' (for text=); the columns are text, source"),
        "empty": ([_csv(tmp_path / "e.csv", ["review", "stars"], [["fine", "good"], [" ", "bad"]]), "--columns", COLUMNS],
                  "e.csv:3: empty text in column 'review'"),
        "number": ([_csv(tmp_path / "n.csv", ["review", "score"], [["fine", "1.5"], ["dull", "abc"]]),
                    "--columns", "text=review,score=score"], "n.csv:3: column 'score': 'abc' is not a number"),
        "json": ([str(jsonl), "--columns", COLUMNS], "broken.jsonl:2: invalid JSON"),
        "utf8": ([str(invalid), "--columns", COLUMNS], "latin1.csv:3: not valid UTF-8 (byte 0xe9 at column 4)"),
        "dev_label": ([good, "--dev-data", _csv(tmp_path / "d.csv", ["review", "stars"], [["x", "bad"], ["y", "meh"]]),
                       "--columns", COLUMNS], "d.csv:3: label 'meh' was not seen in training (known: bad, good)"),
        "hf_uncached": (["hf:no_such_dataset_here/cfg"], "hf:no_such_dataset_here/cfg: cannot load the dataset"),
        "benchmark_name": ([good, "--columns", COLUMNS, "--task", "sst2"], "--task 'sst2' is a benchmark task"),
        "no_mapping": ([good], "give --task (a benchmark task) or --columns (your data's column mapping)"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "number", "json", "utf8", "dev_label", "hf_uncached",
                                  "benchmark_name", "no_mapping"])
def test_bad_rows_are_one_line_file_line_errors_with_exit_2(case, bad_files, tiny_atinuke_dir, tmp_path, capsys,
                                                             monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # no network: only the local cache answers
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    data, message = bad_files[case]
    out = tmp_path / "out"
    assert atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--data", *data, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()  # refused before anything was written


def test_a_planted_word_is_learned_attributed_and_sliced(tiny_atinuke_dir, tmp_path, capsys):
    """Label = whether the review contains "profit": the fine-tuned tiny Atinuke beats the majority class,
    integrated gradients put the largest attribution on "profit", and error analysis slices by ``source``."""
    from atinuke.tasks.heads import load_task_model
    from atinuke.tasks.registry import TASKS
    from workbench.artifacts import finetune_run_from_dir, provenance_kind
    from workbench.cli import main as workbench_main
    from workbench.compare import compare_runs
    from workbench.errors import analyze
    from workbench.experiment_runs import trivial_example_scores

    rng = random.Random(0)
    pool = "the market fell last week prices rose analysts expect a shares company said year new million sales".split()

    def rows(n):
        out = []
        for _ in range(n):
            words = [rng.choice(pool) for _ in range(rng.randint(4, 8))]
            planted = rng.random() < 0.4
            if planted:
                words.insert(rng.randrange(len(words) + 1), "profit")
            out.append([" ".join(words), "up" if planted else "flat", rng.choice(["web", "mail"])])
        return out

    train = _csv(tmp_path / "reviews.csv", ["review", "trend", "source"], rows(128))
    dev_rows = rows(30)
    dev = _csv(tmp_path / "reviews_dev.csv", ["review", "trend", "source"], dev_rows)
    run = tmp_path / "run"
    assert atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--data", train, "--dev-data", dev,
                         "--columns", "text=review,label=trend", "--out", str(run), "--epochs", "3",
                         "--batch-size", "16", "--max-len", "24", "--lr", "3e-3"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    majority = max(sum(r[1] == "up" for r in dev_rows), sum(r[1] == "flat" for r in dev_rows)) / len(dev_rows)
    assert metrics["task"] == "reviews" and metrics["accuracy"] > majority and metrics["accuracy"] >= 0.9
    assert metrics["provenance"] == f"user: {dev} [text=review,label=trend]"
    recorded = json.loads((run / "finetune_config.json").read_text())["user_data"]
    assert recorded["columns"] == "text=review,label=trend" and recorded["dev_data"] == dev
    model = load_task_model(run)
    assert model.label_names == ("flat", "up") and dict(model.spec.columns) == {"text": "review", "label": "trend"}

    # evaluate reads a new file with the run's mapping and reproduces the run's dev score
    assert atinuke_main(["evaluate", "--model", str(run), "--data", dev, "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    assert load_task_data("reviews", dev, "dev")[0].text == dev_rows[0][0]

    attr = tmp_path / "attr"
    assert workbench_main(["attribute", "--model", str(run), "--data", dev, "--columns", "text=review,label=trend",
                           "--out", str(attr), "--no-store", "--no-progress", "--n-steps", "8"]) == 0
    table = pd.read_parquet(attr / "attributions.parquet")
    with_word = table.groupby("example_id").filter(lambda g: (g["token"] == "profit").any())
    top = with_word.loc[with_word.groupby("example_id")["score"].apply(lambda s: s.abs().idxmax())]
    assert len(top) >= 5 and (top["token"] == "profit").mean() >= 0.8
    assert json.loads((attr / "summary.json").read_text())["task"] == "reviews"

    predictions = pd.read_parquet(run / "predictions.parquet")
    assert predictions["text"].tolist() == [r[0] for r in dev_rows]  # the user's text, in file order
    assert set(predictions["meta_source"]) == {"web", "mail"}
    slices = analyze(predictions, n_boot=50).slices
    sources = slices[slices["feature"] == "meta_source"]
    assert set(sources["slice"]) == {"web", "mail"} and sources["n"].sum() == len(dev_rows)

    # comparison pairs the run with its re-evaluation by the ids of the user's rows; the app shows the data
    comparison = compare_runs(predictions, pd.read_parquet(tmp_path / "eval" / "predictions.parquet"), n_boot=50)
    assert comparison.n == len(dev_rows) and comparison.bootstrap["accuracy"].delta == 0.0
    TASKS.pop("reviews")  # as in a fresh process that reads the run's files only (the report, the app)
    found = finetune_run_from_dir(run)
    assert get_task("reviews").labels == ("flat", "up")  # the run brought its task back
    assert trivial_example_scores("reviews", predictions["gold"]).mean() == majority
    assert found.data_note == f"your data: {train} [text=review,label=trend], dev: dev split {dev}"
    assert provenance_kind(metrics["provenance"]) == "user"


def test_parse_columns_refuses_what_no_kind_uses():
    with pytest.raises(UserInputError, match="unknown role 'txt'"):
        parse_columns("txt=review,label=stars")
    with pytest.raises(UserInputError, match="missing label"):
        parse_columns("text=review")
    with pytest.raises(UserInputError, match="not ROLE=COLUMN"):
        parse_columns("text review")


@pytest.mark.parametrize("content, columns, message", [
    ("t,g\na b,O X\n", "tokens=t,tags=g", "f.csv:2: tag 'X' in column 'g' is not BIO (O, B-X, I-X)"),
    ("t,g\na b,O\n", "tokens=t,tags=g", "f.csv:2: 1 tags for 2 tokens"),
    ("q,c,a,s\nwho?,Ada ran,Ada,2\n", "question=q,context=c,answer_text=a,answer_start=s",
     "f.csv:2: answer 'Ada' is not at character 2 of the context (found 'a r')"),
    ("q,c,a\nwho?,Ada ran,Bo\n", "question=q,context=c,answer_text=a", "f.csv:2: answer 'Bo' does not occur"),
    ("k,x,y\n1,a,p\n1,b,q\n", "id=k,text=x,label=y", "f.csv:3: duplicate id '1' (first at "),
    ("x,y\na,p,extra\n", "text=x,label=y", "f.csv:2: 3 fields, but the header has 2"),
])
def test_malformed_rows_name_their_line(tmp_path, content, columns, message):
    path = tmp_path / "f.csv"
    path.write_text(content)
    kind, mapping = parse_columns(columns)
    with pytest.raises(UserInputError) as caught:
        to_examples(read_tables(str(path))[""], kind, mapping)
    assert str(caught.value).startswith(f"{tmp_path}/") and message in str(caught.value)


def test_a_missing_column_names_the_columns_there_are(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"x": "a", "y": "p"}\n\n{"x": "b", "z": "q"}\n')
    with pytest.raises(UserInputError, match=r"f.jsonl:3: no column 'y' \(for label=\); the columns are x, z"):
        to_examples(read_tables(str(path))[""], *parse_columns("text=x,label=y"))
    pd.DataFrame({"x": ["a"], "w": ["p"]}).to_parquet(tmp_path / "f.parquet")
    with pytest.raises(UserInputError, match=r"f.parquet: no column 'y' \(for label=\); the columns are x, w$"):
        to_examples(read_tables(str(tmp_path / "f.parquet"))[""], *parse_columns("text=x,label=y"))


def test_a_tagger_without_predicate_learns_the_users_tags(tiny_atinuke_dir, tmp_path):
    """Tagging data has no predicate: the head's indicator stays off (index -1) and the user's BIO types are
    learned and scored (a name always first, a place always fourth)."""
    rng = random.Random(0)
    rows = [{"toks": [rng.choice(["Ada", "Bo", "Chen"]), "went", "to", rng.choice(["Lagos", "Paris"]), "."],
             "ner": ["B-PER", "O", "O", "B-LOC", "O"], "src": rng.choice("ab")} for _ in range(60)]
    pd.DataFrame(rows).to_parquet(tmp_path / "ner.parquet")
    run = tmp_path / "ner"
    assert atinuke_main(["finetune", "--model", str(tiny_atinuke_dir), "--data", str(tmp_path / "ner.parquet"),
                         "--columns", "tokens=toks,tags=ner", "--out", str(run), "--epochs", "2",
                         "--batch-size", "16", "--max-len", "16", "--lr", "3e-3"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_examples"] == 12 and metrics["f1"] >= 0.9  # 12 = the held-out 0.2 of 60 rows
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert set(predictions["gold"]) == {json.dumps(["B-PER", "O", "O", "B-LOC", "O"])}
    assert set(predictions["meta_src"]) <= {"a", "b"}


def test_hub_configs_and_usual_column_names_need_no_mapping(tmp_path):
    """``<config>/<split>/*.parquet`` is read per split, ``ClassLabel`` names come from the parquet metadata and
    ``sentence``/``label`` columns map themselves; dev is the validation split."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"), "idx": datasets.Value("int64"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    for split, rows in (("train", [("good", 1), ("bad", 0), ("fine", 1)]), ("validation", [("awful", 0)])):
        part = datasets.Dataset.from_dict({"sentence": [t for t, _ in rows], "idx": list(range(len(rows))),
                                           "label": [y for _, y in rows]}, features=features)
        (tmp_path / "repo" / "sst2" / split).mkdir(parents=True)
        part.to_parquet(str(tmp_path / "repo" / "sst2" / split / "0000.parquet"))
    user = load_user_data(str(tmp_path / "repo" / "sst2"), None)
    assert user.record["columns"] == "text=sentence,label=label,id=idx"
    assert user.spec.labels == ("negative", "positive") and user.spec.name == "user-sst2"  # not the benchmark's
    assert [(ex.text, ex.label) for ex in user.dev] == [("awful", "negative")]
    assert user.record["split"].startswith("dev split ") and len(user.train) == 3
