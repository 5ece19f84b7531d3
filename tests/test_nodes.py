"""Node-level circuits and the default metrics of coreference heads and decoders: known answers.

The planted model (workbench/planted.py) has one head, L1.H2, that carries the contrast; on a post-norm tiny
Atinuke (the paper's blocks, where edges are refused) replacing every node gives the corrupted run exactly and
none the clean one. Decoder and coreference metrics are checked against independent computations (an LM head
with the same weights; the unrestricted coreference run) and against the position-patching identities.
"""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from atinuke.errors import UserInputError
from workbench.nodes import discover_node_circuit, node_frame, node_patched_metric, node_references, node_scores
from workbench.patching import default_metric, exact_patching, task_inputs
from workbench.planted import PlantedCircuit, planted_metric, planted_model, planted_pairs
from workbench.subject import load_subject

PLANTED = PlantedCircuit()
TEXT = "the cat sat on the mat and the dog barked at it"
SWAPPED = 2  # the token position the corrupted input changes


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _swap(subject, text=TEXT, position=SWAPPED):
    clean = dict(subject.tokenize([text]))
    corrupted = dict(clean, input_ids=clean["input_ids"].clone())
    corrupted["input_ids"][:, position] = clean["input_ids"][:, position + 3]
    return clean, corrupted


def test_planted_node_circuit_is_the_planted_head_and_the_embeddings():
    subject = load_subject(planted_model())
    clean, corrupted = (subject.tokenize(t) for t in planted_pairs(8))
    found = discover_node_circuit(subject, clean, corrupted, planted_metric(), fraction=0.9)
    assert set(found.summary["kept"]) == {PLANTED.node, "embed"}  # the head, and the token it reads
    assert found.summary["faithfulness"] == pytest.approx(1.0, abs=1e-5)
    assert found.summary["metric_ablated"] == pytest.approx(found.summary["metric_corrupted"], abs=1e-5)
    ranks = found.nodes.set_index("node")["rank"]
    assert {ranks[PLANTED.node], ranks["embed"]} == {1, 2}
    assert (found.nodes["level"] == "nodes").all() and found.summary["level"] == "nodes"
    # The head alone (embeddings patched) recovers nothing: the contrast only enters through the token.
    a, b = task_inputs(subject, clean), task_inputs(subject, corrupted)
    refs = node_references(subject, a, b)
    alone = node_patched_metric(subject, a, refs, {PLANTED.node}, planted_metric())
    assert alone == pytest.approx(found.summary["metric_corrupted"], abs=1e-5)


def test_post_norm_atinuke_all_nodes_patched_is_the_corrupted_run(tiny_atinuke_dir):
    subject = load_subject(tiny_atinuke_dir)
    assert not subject.adapter.residual_is_sum  # the paper's post-norm blocks: edges are refused here
    clean, corrupted = _swap(subject)
    metric, _ = default_metric(subject, clean, corrupted)
    a, b = task_inputs(subject, clean), task_inputs(subject, corrupted)
    with torch.no_grad():
        clean_m, corrupted_m = float(metric(subject.forward(a))), float(metric(subject.forward(b)))
    refs = node_references(subject, a, b)
    every = set(node_frame(subject)["node"])
    assert node_patched_metric(subject, a, refs, set(), metric) == pytest.approx(corrupted_m, abs=1e-5)
    assert node_patched_metric(subject, a, refs, every, metric) == clean_m  # no hook: bit-identical
    found = discover_node_circuit(subject, a, b, metric, fraction=1.0, method="attribution")
    assert found.summary["faithfulness"] >= 1.0 - 1e-9
    assert found.curve["n_nodes"].is_monotonic_increasing and found.curve["faithfulness"].iloc[0] == 0.0
    # Mean ablation of every node gives the same as running the clean mean activations: not the clean metric.
    mean = node_references(subject, a, b, ablation="mean")
    assert torch.equal(mean["blocks.0.attn.hook_z"], subject.run_with_cache(a, ["blocks.0.attn.hook_z"])
                       ["blocks.0.attn.hook_z"])  # one example: the mean over examples is the example


def test_node_scores_match_head_patching_estimates(tiny_atinuke_dir):
    from workbench.patching import attribution_patching

    subject = load_subject(tiny_atinuke_dir)
    clean, corrupted = _swap(subject)
    metric, _ = default_metric(subject, clean, corrupted)
    scores = node_scores(subject, clean, corrupted, metric, method="attribution").set_index("node")
    heads = attribution_patching(subject, clean, corrupted, metric, "heads")
    for row in heads.itertuples():
        assert scores.loc[f"L{row.layer}.H{row.head}", "score"] == row.effect
    with pytest.raises(UserInputError, match="unknown node method"):
        node_scores(subject, clean, corrupted, metric, method="exact")


# --------------------------------------------------------------------------------------------- decoders

@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, tiny_tokenizer):
    from transformers import AutoModel, GPT2Config

    from atinuke.tokenizer import save_tokenizer

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tiny_tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0)
    path = tmp_path_factory.mktemp("gpt2_nodes") / "model"
    AutoModel.from_config(config).eval().save_pretrained(path)
    save_tokenizer(tiny_tokenizer, path)
    return path


def test_decoder_metric_is_the_next_token_logit_difference(gpt2):
    from transformers import GPT2LMHeadModel

    from workbench.patch_metrics import is_causal

    subject = load_subject(gpt2)
    clean, corrupted = _swap(subject)
    a = task_inputs(subject, clean)
    assert is_causal(subject, a)
    metric, description = default_metric(subject, clean, corrupted)
    assert "next-token" in description
    lm = GPT2LMHeadModel.from_pretrained(gpt2).eval()  # the same weights, with the tied LM head
    last = int(a["attention_mask"].sum()) - 1
    with torch.no_grad():
        logits = lm(input_ids=a["input_ids"], attention_mask=a["attention_mask"]).logits[0, last]
        wrong = lm(input_ids=corrupted["input_ids"], attention_mask=a["attention_mask"]).logits[0, last].argmax()
        right = logits.argmax()
        if wrong == right:
            wrong = logits.topk(2).indices[1]
        assert float(metric(subject.forward(a))) == pytest.approx(float(logits[right] - logits[wrong]), abs=1e-4)
    # Restoring the changed token's embedding restores everything; every other position's changes nothing.
    table = exact_patching(subject, clean, corrupted, metric, component="positions")
    layer0 = table[table["layer"] == 0].set_index("position")["normalized"]
    assert layer0[SWAPPED] == pytest.approx(1.0, abs=1e-5)
    assert (layer0.drop(SWAPPED) == 0.0).all()


def test_causal_atinuke_metric_reads_its_own_lm_head(tmp_path, tiny_tokenizer, tiny_config):
    import dataclasses

    from atinuke.model import AtinukeForCausalLM
    from atinuke.tokenizer import save_tokenizer

    torch.manual_seed(0)
    lm = AtinukeForCausalLM(dataclasses.replace(tiny_config, causal=True)).eval()
    lm.save_pretrained(tmp_path / "lm")
    save_tokenizer(tiny_tokenizer, tmp_path / "lm")
    subject = load_subject(tmp_path / "lm")
    clean, corrupted = _swap(subject)
    metric, description = default_metric(subject, clean, corrupted)
    assert "next-token" in description
    last = int(clean["attention_mask"].sum()) - 1
    with torch.no_grad():
        a = lm(input_ids=clean["input_ids"], attention_mask=clean["attention_mask"]).logits[0, last]
        b = lm(input_ids=corrupted["input_ids"], attention_mask=clean["attention_mask"]).logits[0, last]
        right, wrong = a.argmax(), b.argmax()
        if wrong == right:
            wrong = a.topk(2).indices[1]
        assert float(metric(subject.forward(task_inputs(subject, clean)))) == pytest.approx(
            float(a[right] - a[wrong]), abs=1e-4)


def test_encoders_are_not_causal(tiny_atinuke_dir):
    from workbench.patch_metrics import is_causal

    subject = load_subject(tiny_atinuke_dir)
    assert not is_causal(subject, task_inputs(subject, subject.tokenize([TEXT])))


# --------------------------------------------------------------------------------------------- coreference

WORDS = "the president saw the man . he liked the company a lot .".split()


@pytest.fixture(scope="module")
def coref_subject(tiny_atinuke_dir):
    from atinuke.encoders import load_encoder
    from atinuke.tasks import get_task
    from atinuke.tasks.heads import build_task_model

    torch.manual_seed(0)
    model = build_task_model(load_encoder(tiny_atinuke_dir), get_task("coref"), max_len=32,
                             max_span_width=3).eval()
    return load_subject(model)


def test_coref_metric_is_a_hand_checked_antecedent_margin(coref_subject):
    from atinuke.tasks.base import CorefDocument
    from workbench.coref_patching import coref_inputs

    subject = coref_subject
    inputs = coref_inputs(subject, WORDS)
    metric, description = default_metric(subject, inputs, inputs)
    assert description.startswith("antecedent score")
    # Independently: the full (unrestricted) run's scores, read by hand for the same spans.
    batch = subject.task_model.encode([CorefDocument("d", WORDS, [0], [])])
    head = {k: v for k, v in batch.head_inputs.items() if k != "gold_cluster_ids"}
    with torch.no_grad():
        full = subject.forward({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}, **head)
    scores = full.antecedent_scores.clone()
    valid = torch.cat([torch.ones(len(scores), 1, dtype=torch.bool), full.antecedent_indices >= 0], 1)
    scores[~valid] = float("-inf")
    best = scores[:, 1:].max(1).values
    runner = scores.clone()
    runner[torch.arange(len(scores)), scores[:, 1:].argmax(1) + 1] = float("-inf")
    margins = torch.where(valid[:, 1:].any(1), best - runner.max(1).values, torch.tensor(float("-inf")))
    with torch.no_grad():
        restricted = subject.forward({"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]},
                                     **{k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")})
    assert float(metric(restricted)) == pytest.approx(float(margins.max()), abs=1e-5)
    assert float(metric(restricted)) > 0  # the top antecedent beats its runner-up by construction


def test_coref_patching_identities(coref_subject):
    from workbench.coref_patching import coref_inputs

    subject = coref_subject
    clean = coref_inputs(subject, WORDS)
    changed = coref_inputs(subject, "the president saw the market . he liked the company a lot .".split())
    corrupted = dict(clean, input_ids=changed["input_ids"])
    position = int((clean["input_ids"] != corrupted["input_ids"]).nonzero()[0, 1])
    assert (clean["input_ids"] != corrupted["input_ids"]).sum() == 1  # one token differs
    metric, _ = default_metric(subject, clean, corrupted)
    table = exact_patching(subject, clean, corrupted, metric, component="positions")
    layer0 = table[table["layer"] == 0].set_index("position")["normalized"]
    assert layer0[position] == pytest.approx(1.0, abs=1e-5)
    assert (layer0.drop(position) == 0.0).all()
    found = discover_node_circuit(subject, clean, corrupted, metric, fraction=0.8, method="attribution")
    assert found.summary["metric_ablated"] == pytest.approx(found.summary["metric_corrupted"], abs=1e-5)
    assert found.summary["faithfulness"] >= 0.8


# --------------------------------------------------------------------------------------------- CLIs per head kind

HEAD_KINDS = {  # task, clean, corrupted, pair (clean, corrupted)
    "sst2": ("the market was up", "the market was down", None),
    "squad2": ("what did the company say", "what did the president say",
               ("the company said the market was up", "the company said the market was up")),
    "srl": ("the company saw the market", "the president saw the market", None),
    "coref": ("the president saw the man . he liked it .", "the president saw the market . he liked it .", None),
}


@pytest.mark.parametrize("task", sorted(HEAD_KINDS))
def test_patch_and_circuit_clis_on_every_head_kind(tmp_path, task, tiny_atinuke_dir):
    from atinuke.encoders import load_encoder
    from atinuke.tasks import get_task
    from atinuke.tasks.heads import build_task_model, save_task_model
    from workbench.cli import main

    torch.manual_seed(0)
    model = build_task_model(load_encoder(tiny_atinuke_dir), get_task(task), max_len=32, max_query_len=16,
                             doc_stride=8, max_span_width=3).eval()
    save_task_model(model, tmp_path / "model")
    clean, corrupted, pair = HEAD_KINDS[task]
    extra = [] if pair is None else ["--clean-pair", pair[0], "--corrupted-pair", pair[1]]
    common = ["--model", str(tmp_path / "model"), "--clean", clean, "--corrupted", corrupted, *extra]
    assert main(["patch", *common, "--method", "exact", "--out", str(tmp_path / "patch")]) == 0
    assert main(["circuit", *common, "--fraction", "0.8", "--method", "attribution",
                 "--out", str(tmp_path / "circuit")]) == 0
    summary = pd.read_json(tmp_path / "circuit" / "summary.json", typ="series")
    nodes = pd.read_parquet(tmp_path / "circuit" / "nodes.parquet")
    assert summary["level"] == "nodes" and (nodes["level"] == "nodes").all()  # post-norm: nodes
    assert summary["metric_ablated"] == pytest.approx(summary["metric_corrupted"], abs=1e-4)  # all patched
    assert summary["faithfulness"] >= 0.8 and nodes["in_circuit"].sum() == summary["n_nodes"]
    patched = pd.read_json(tmp_path / "patch" / "summary.json", typ="series")
    assert patched["metric"] == summary["metric"]  # the same default metric in both commands
    assert patched["metric_clean"] == pytest.approx(summary["metric_clean"], abs=1e-6)
    assert patched["metric_corrupted"] == pytest.approx(summary["metric_corrupted"], abs=1e-6)


def test_circuit_cli_levels(tmp_path, capsys, gpt2, tiny_atinuke_dir):
    from workbench.cli import main

    common = ["--clean", "the company said the market was up", "--corrupted", "the president said the market was up",
              "--method", "eap"]
    assert main(["patch", "--model", str(gpt2), *common[:4], "--component", "positions", "--method", "exact",
                 "--out", str(tmp_path / "p")]) == 0  # the decoder's next-token metric, through the CLI
    patch = pd.read_parquet(tmp_path / "p" / "patching.parquet")
    assert "next-token" in pd.read_json(tmp_path / "p" / "summary.json", typ="series")["metric"]
    layer0 = patch[patch["layer"] == 0].set_index("position")["normalized"]
    changed = int(layer0.abs().idxmax())
    assert layer0[changed] == pytest.approx(1.0, abs=1e-5) and (layer0.drop(changed) == 0.0).all()
    assert main(["circuit", "--model", str(gpt2), *common, "--out", str(tmp_path / "g")]) == 0  # pre-norm: edges
    assert pd.read_json(tmp_path / "g" / "summary.json", typ="series")["level"] == "edges"
    assert (pd.read_parquet(tmp_path / "g" / "edges.parquet")["level"] == "edges").all()
    assert main(["circuit", "--model", str(gpt2), *common, "--level", "nodes", "--out", str(tmp_path / "n")]) == 0
    summary = pd.read_json(tmp_path / "n" / "summary.json", typ="series")
    assert summary["level"] == "nodes" and summary["faithfulness"] >= 0.9
    assert main(["circuit", "--model", str(gpt2), *common, "--out", str(tmp_path / "n"), "--overwrite"]) == 0
    assert (tmp_path / "n" / "edges.parquet").is_file() and not (tmp_path / "n" / "nodes.parquet").exists()
    assert main(["circuit", "--model", str(tiny_atinuke_dir), *common, "--level", "edges",
                 "--out", str(tmp_path / "e")]) == 2
    assert "post-norm" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- drawing

def test_node_circuit_grid_outlines_the_kept_nodes_and_the_report_draws_it(tmp_path):
    from workbench import report
    from workbench.cli import main
    from workbench.figures import circuit_graph
    from workbench.planted import save_planted

    runs = tmp_path / "runs"
    assert main(["circuit", "--model", str(save_planted(tmp_path / "planted")), "--clean", "the cat red dog sat",
                 "--corrupted", "the cat blue dog sat", "--level", "nodes", "--n-steps", "2",
                 "--out", str(runs / "circuit" / "p")]) == 0
    nodes = pd.read_parquet(runs / "circuit" / "p" / "nodes.parquet")
    figure = circuit_graph(nodes, "Node circuit")  # dispatches on the table's level
    heat, kept = figure.data[0], figure.data[1]
    z = pd.DataFrame(heat.z, index=heat.y, columns=heat.x)
    assert z.loc["L1", "H2"] == pytest.approx(1.0, abs=0.05) and z.loc["L0"].abs().max() < 1e-3
    assert set(zip(kept.x, kept.y)) == {("H2", "L1"), ("H0", "embed")}
    result = report.build_report([runs], tmp_path / "r.html", pdf=False, n_boot=20)
    page = result.html.read_text(encoding="utf-8")
    part = page[page.index('id="mechanisms"'):page.index('id="error-analysis"')]
    assert "Circuit: planted/planted" in part and part.count("<figure") == 1
    assert "Node level: 2 of 11 nodes" in part and "<td>L1.H2</td>" in part and "<td>embed</td>" in part


def test_minilm_node_circuit(minilm):
    """The real MiniLM (post-norm BERT blocks): every node patched is the corrupted run; the circuit recovers 0.9."""
    subject = load_subject(minilm)
    clean = dict(subject.tokenize(["the company said the market was up sharply today"]))
    corrupted = dict(subject.tokenize(["the president said the market was up sharply today"]))
    metric, _ = default_metric(subject, clean, corrupted)
    found = discover_node_circuit(subject, clean, corrupted, metric, fraction=0.9, method="attribution")
    assert found.summary["metric_ablated"] == pytest.approx(found.summary["metric_corrupted"], abs=1e-4)
    assert found.summary["faithfulness"] >= 0.9 and found.summary["n_nodes_total"] == 1 + 6 * 13
    assert found.summary["n_nodes"] < found.summary["n_nodes_total"]


def test_coreference_task_head_lens_ends_at_the_models_own_links(coref_subject):
    """The task-head lens of a coreference head: every layer is read over the clean run's kept mentions; the last
    layer's top antecedents are the model's own (agreement exactly 1), and each layer's are those of the head
    applied to that layer's residual stream, computed here independently."""
    from workbench.coref_patching import coref_inputs
    from workbench.kinds.coref import top_antecedents
    from workbench.lens import task_lens
    from workbench.patching import run_task, run_task_with_cache

    subject = coref_subject
    other = "the board said it would meet the shareholders before they vote on the plan ."
    table = task_lens(subject, [" ".join(WORDS), other])
    assert sorted(table["example"].unique()) == [0, 1]
    assert list(table[table.example == 0]["layer"]) == list(range(subject.n_layers + 1))
    last = table[table.layer == subject.n_layers]
    assert (last["agrees"] == 1.0).all() and (last["mentions"] > 0).all()
    inputs = coref_inputs(subject, WORDS)
    head_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        own = top_antecedents(run_task(subject, inputs))
        cache = run_task_with_cache(subject, inputs, ["embed.hook_embed", "blocks.0.hook_resid_post"])
        layer1 = top_antecedents(subject.task_model.head(cache["blocks.0.hook_resid_post"], inputs["attention_mask"],
                                                         **head_inputs))
    row = table[(table.example == 0) & (table.layer == 1)].iloc[0]
    assert row["agrees"] == pytest.approx(float((layer1 == own).float().mean()))
    assert row["linked"] == pytest.approx(float((layer1 >= 0).float().mean()))
