"""Edge attribution patching, EAP-IG, exact edge patching and circuit discovery: known answers.

On the planted model (workbench/planted.py) the answer is known by construction: head L1.H2 copies the token at
position 3 to [CLS] and alone decides the class; the contrast flows through exactly two edges. On tiny random
pre-norm models, exact edge patching is checked against independent node-level hooks: patching every edge into
a node is patching that node's input, whose effect the plain hooks give directly.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from atinuke.errors import UserInputError
from workbench import edges as edge_lib
from workbench.circuits import discover_circuit
from workbench.edges import edge_attribution, edge_graph, exact_edge_effects, patched_metric, split_forward
from workbench.planted import PlantedCircuit, head_rank_agreement, planted_metric, planted_model, planted_pairs
from workbench.subject import load_subject

PLANTED = PlantedCircuit()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is faster than two on a shared machine (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def planted():
    subject = load_subject(planted_model())
    clean, corrupted = planted_pairs(8)
    return (subject, subject.as_inputs(subject.tokenize(clean)), subject.as_inputs(subject.tokenize(corrupted)),
            planted_metric())


def test_planted_model_classifies_by_the_named_token(planted):
    subject, clean, corrupted, metric = planted
    with torch.no_grad():
        assert (subject.forward(clean).logits.argmax(-1) == 0).all()  # "red" at position 3
        assert (subject.forward(corrupted).logits.argmax(-1) == 1).all()  # "blue"
        pattern = subject.run_with_cache(clean, ["blocks.1.attn.hook_pattern"])["blocks.1.attn.hook_pattern"]
    assert (pattern[:, PLANTED.head, 0, PLANTED.position] > 0.999).all()  # [CLS] reads the named position


def test_head_patching_finds_the_planted_head(planted):
    from workbench.patching import exact_patching

    subject, clean, corrupted, metric = planted
    heads = exact_patching(subject, clean, corrupted, metric).set_index(["layer", "head"])["normalized"]
    assert heads.abs().idxmax() == (PLANTED.layer, PLANTED.head)
    assert heads.loc[(PLANTED.layer, PLANTED.head)] == pytest.approx(1.0, abs=1e-4)  # restores all of the metric
    assert heads.drop((PLANTED.layer, PLANTED.head)).abs().max() < 1e-4  # the noise heads change nothing


def test_head_attribution_patching_ranks_like_exact_patching_on_the_planted_model():
    assert head_rank_agreement(method="attribution") >= 0.9
    assert head_rank_agreement(method="eap_ig") >= 0.9


@pytest.mark.parametrize("method", ["eap", "eap_ig"])
def test_edge_scores_single_out_the_planted_edges(planted, method):
    subject, clean, corrupted, metric = planted
    edges = edge_attribution(subject, clean, corrupted, metric, method=method, n_steps=8)
    assert len(edges) == 110  # 27 from embed, 60 from layer-0 heads, 8 from layer-1 heads, 14 + 1 from the MLPs
    truth = edges[["upstream", "downstream"]].apply(tuple, axis=1).isin(PLANTED.edges)
    assert truth.sum() == 2
    assert roc_auc_score(truth, edges["score"].abs()) >= 0.95
    top = edges.loc[edges["score"].abs().nlargest(2).index]
    assert set(zip(top["upstream"], top["downstream"])) == set(PLANTED.edges)
    if method == "eap_ig":  # the integrated path removes most of the classifier's tanh saturation
        assert top["normalized"].min() > 0.9


def test_circuit_discovery_recovers_the_planted_edges_and_its_complement_changes_nothing(planted):
    subject, clean, corrupted, metric = planted
    circuit = discover_circuit(subject, clean, corrupted, metric, fraction=0.9)
    kept = circuit.edges[circuit.edges["in_circuit"]]
    assert set(zip(kept["upstream"], kept["downstream"])) == set(PLANTED.edges)
    assert circuit.summary["n_edges"] == 2 and circuit.summary["n_edges_total"] == 110
    # Exact patching of all 108 other edges from the corrupted run leaves the clean metric where it was.
    assert circuit.summary["metric_circuit"] == pytest.approx(circuit.summary["metric_clean"], abs=1e-4)
    assert circuit.summary["faithfulness"] == pytest.approx(1.0, abs=1e-5)
    assert circuit.summary["metric_ablated"] == pytest.approx(circuit.summary["metric_corrupted"], abs=1e-5)
    assert (circuit.curve.set_index("n_edges").loc[[0, 1], "faithfulness"].abs() < 1e-4).all()  # each alone: nothing


def test_exact_single_edge_patching_on_the_planted_model(planted):
    subject, clean, corrupted, metric = planted
    frame = edge_graph(subject).frame()
    # every edge into the read-out and into the planted head (the rest cannot reach the read-out differently)
    rows = frame.index[frame["downstream"].isin(["logits", f"{PLANTED.node}.q", f"{PLANTED.node}.k",
                                                 f"{PLANTED.node}.v"])].tolist()
    effects = exact_edge_effects(subject, clean, corrupted, metric, edges=rows)
    planted_rows = effects[["upstream", "downstream"]].apply(tuple, axis=1).isin(PLANTED.edges)
    assert effects.loc[planted_rows, "normalized"].to_numpy() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert effects.loc[~planted_rows, "normalized"].abs().max() < 1e-4


# --------------------------------------------------------------------------- tiny random pre-norm models

def _random_subject(tokenizer, n_layers: int, seed: int = 0):
    from atinuke.config import AtinukeConfig
    from atinuke.encoders import Encoder
    from atinuke.model import AtinukeModel

    torch.manual_seed(seed)
    config = AtinukeConfig(vocab_size=len(tokenizer), d_model=32, n_heads=4, n_layers=n_layers, d_ff=64,
                           max_len=64, dropout=0.0, norm_placement="pre")
    return load_subject(Encoder(name=f"random-{n_layers}", kind="atinuke", model=AtinukeModel(config).eval(),
                                tokenizer=tokenizer, path=Path(".")))


def _random_gpt2(tokenizer, directory: Path):
    from transformers import AutoModel, GPT2Config

    from atinuke.tokenizer import save_tokenizer

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0)
    AutoModel.from_config(config).eval().save_pretrained(directory)
    save_tokenizer(tokenizer, directory)
    return load_subject(directory)


@pytest.fixture(scope="module", params=[1, 2, "gpt2"], ids=["1-layer", "2-layer", "gpt2"])
def random_setup(request, tiny_tokenizer, tmp_path_factory):
    subject = (_random_gpt2(tiny_tokenizer, tmp_path_factory.mktemp("gpt2") / "model") if request.param == "gpt2"
               else _random_subject(tiny_tokenizer, request.param))
    clean = subject.as_inputs(subject.tokenize(["the cat sat on the mat", "stocks fell on monday again"]))
    corrupted = {k: v.clone() for k, v in clean.items()}
    corrupted["input_ids"][:, 2] = clean["input_ids"][:, 4]
    # the read position: [CLS] for the encoders, the last real token for the causal GPT-2
    read = (clean["attention_mask"].sum(1) - 1 if request.param == "gpt2" else torch.zeros(2, dtype=torch.long),
            torch.arange(2))[::-1]
    with torch.no_grad():
        direction = (subject.forward(clean).last_hidden_state[read]
                     - subject.forward(corrupted).last_hidden_state[read]).mean(0)

    def metric(output):
        return (output.last_hidden_state[read] @ direction).mean()

    return subject, clean, corrupted, metric


def _with_hooks(subject, clean, metric, hooks) -> float:
    with torch.no_grad(), subject.hooks(hooks):
        return float(metric(subject.forward(clean)))


def test_split_forward_without_patching_is_the_plain_forward(random_setup):
    subject, clean, corrupted, metric = random_setup
    graph = edge_graph(subject)
    with torch.no_grad():
        output, outputs = split_forward(subject, graph, clean, lambda indices, outs: None)
        plain = subject.forward(clean)
    assert torch.allclose(output.last_hidden_state, plain.last_hidden_state, atol=1e-5)
    assert sorted(outputs) == list(range(len(graph.upstream)))  # every upstream output was recorded


def test_patching_every_edge_into_a_node_is_patching_that_node(random_setup):
    subject, clean, corrupted, metric = random_setup
    graph = edge_graph(subject)
    reference = edge_lib.reference_outputs(subject, graph, clean, corrupted)
    last = subject.n_layers - 1
    with torch.no_grad():
        cache = subject.run_with_cache(corrupted, [f"blocks.{last}.hook_mlp_out", f"blocks.{last}.attn.hook_z"])
        clean_m, corrupted_m = float(metric(subject.forward(clean))), float(metric(subject.forward(corrupted)))

    def into(downstream: list[str]) -> torch.Tensor:
        return graph.mask([(u, d) for d in downstream for u in graph.upstream
                           if graph.valid[graph.upstream.index(u), graph.downstream.index(d)]])

    # every edge into the read-out: the final residual stream is the corrupted one, so the metric is too
    assert patched_metric(subject, graph, clean, reference, into(["logits"]), metric) == pytest.approx(corrupted_m,
                                                                                                      abs=1e-4)
    assert patched_metric(subject, graph, clean, reference, torch.zeros_like(graph.valid), metric) == pytest.approx(
        clean_m, abs=1e-4)
    # every edge into the last MLP = that MLP's output taken from the corrupted run (a plain hook)
    mlp = _with_hooks(subject, clean, metric, [(f"blocks.{last}.hook_mlp_out",
                                                lambda x, info: cache[f"blocks.{last}.hook_mlp_out"])])
    assert patched_metric(subject, graph, clean, reference, into([f"MLP{last}"]), metric) == pytest.approx(mlp, abs=1e-4)
    # every edge into head 1's q, k and v = that head's z taken from the corrupted run
    def z_from_corrupted(z, info):
        z = z.clone()
        z[:, :, 1] = cache[f"blocks.{last}.attn.hook_z"][:, :, 1]
        return z

    head = _with_hooks(subject, clean, metric, [(f"blocks.{last}.attn.hook_z", z_from_corrupted)])
    edges = into([f"L{last}.H1.{x}" for x in "qkv"])
    assert patched_metric(subject, graph, clean, reference, edges, metric) == pytest.approx(head, abs=1e-4)
    assert abs(head - clean_m) > 1e-3  # the check is not vacuous: this head matters


def test_eap_is_the_first_order_term_of_exact_edge_patching(random_setup):
    subject, clean, corrupted, metric = random_setup
    # A corrupted run that differs from the clean one only slightly: the same tokens, embeddings nudged by 1% of their scale.
    graph = edge_graph(subject)
    torch.manual_seed(1)
    with torch.no_grad():
        scale = float(subject.run_with_cache(clean, ["embed.hook_embed"])["embed.hook_embed"].std())
    noise = 1e-2 * scale * torch.randn(*clean["input_ids"].shape, subject.d_model)
    nudged_hooks = [("embed.hook_embed", lambda e, info: e + noise)]
    with subject.hooks(nudged_hooks):
        reference = edge_lib.reference_outputs(subject, graph, clean, clean)
        with torch.no_grad():
            nudged_m = float(metric(subject.forward(clean)))
    with torch.no_grad():
        clean_m = float(metric(subject.forward(clean)))
    assert abs(clean_m - nudged_m) > 1e-6
    mask = torch.zeros_like(graph.valid)
    mask[0, graph.logits] = True
    exact = clean_m - patched_metric(subject, graph, clean, reference, mask, metric)
    # EAP's estimate of the same edge: (clean - reference) . gradient at the clean run
    with torch.no_grad():
        diff = edge_lib.node_outputs(subject, graph, clean) - reference  # [U, batch, pos, d]
    probes = torch.zeros(len(graph.downstream), *diff.shape[1:], requires_grad=True)
    with subject.frozen():
        output, _ = split_forward(subject, graph, clean, lambda indices, outs: probes[indices])
        grad = torch.autograd.grad(metric(output), probes)[0]
    estimate = float((diff[0] * grad[graph.logits]).sum())
    assert estimate == pytest.approx(exact, rel=0.05)


def test_post_norm_models_are_refused_by_name(tiny_atinuke_dir):
    subject = load_subject(tiny_atinuke_dir)  # the paper's post-norm Atinuke
    with pytest.raises(UserInputError, match="post-norm"):
        edge_graph(subject)


def test_bad_edge_and_circuit_inputs_are_one_line_errors(planted):
    subject, clean, corrupted, metric = planted
    graph = edge_graph(subject)
    with pytest.raises(UserInputError, match="no edge L1.H2 -> L0.H0.q"):
        graph.mask([("L1.H2", "L0.H0.q")])  # an edge backwards in depth
    with pytest.raises(UserInputError, match="unknown edge method"):
        edge_attribution(subject, clean, corrupted, metric, method="acdc")
    with pytest.raises(UserInputError, match="fraction"):
        discover_circuit(subject, clean, corrupted, metric, fraction=1.5)
    with pytest.raises(UserInputError, match="same on the clean and corrupted"):
        edge_attribution(subject, clean, clean, metric, method="eap")


def test_circuit_cli_writes_tidy_tables_and_refuses_a_full_out(tmp_path, capsys, tiny_atinuke_dir):
    import pandas as pd

    from workbench.cli import main
    from workbench.planted import save_planted

    model = save_planted(tmp_path / "planted")
    out = tmp_path / "circuit"
    argv = ["circuit", "--model", str(model), "--clean", "the cat red dog sat", "--corrupted",
            "the cat blue dog sat", "--n-steps", "4", "--out", str(out)]
    assert main(argv) == 0
    edges = pd.read_parquet(out / "edges.parquet")
    assert {"edge", "upstream", "downstream", "score", "normalized", "rank", "in_circuit"} <= set(edges.columns)
    assert set(edges.loc[edges["in_circuit"], "edge"]) == {f"{u}->{d}" for u, d in PLANTED.edges}
    summary = pd.read_parquet(out / "summary.parquet").iloc[0]
    assert summary["n_edges"] == 2 and summary["faithfulness"] >= 0.9
    assert pd.read_parquet(out / "curve.parquet")["faithfulness"].max() == pytest.approx(1.0, abs=1e-5)
    assert main(argv) == 2 and "already holds files" in capsys.readouterr().err
    assert main(argv[:-1] + [str(tmp_path / "f"), "--fraction", "0"]) == 2
    assert "--fraction" in capsys.readouterr().err
    post_norm = ["circuit", "--model", str(tiny_atinuke_dir), "--clean", "the cat sat", "--corrupted", "the dog sat",
                 "--out", str(tmp_path / "post")]
    assert main(post_norm) == 2 and "post-norm" in capsys.readouterr().err
    assert not (tmp_path / "post").exists()  # refused before any work
