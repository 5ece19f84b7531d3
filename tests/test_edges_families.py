"""Edge patching and direct logit attribution on the Llama/Qwen2, GPT-NeoX (parallel and sequential residual) and
ModernBERT adapters: tiny random float32 models built from each family's own config class, saved, and loaded
through load_subject.

Each check has an independent answer: the split forward against the plain forward; patching every edge into a
node against a plain hook on that node (the read-out: the corrupted metric; a head's q/k/v: that head's z from
the corrupted run; an MLP's input: that MLP's output from the corrupted run, which for the parallel residual holds
only if the MLP's copy is fed resid_pre); DLA's parts against the family's own last_hidden_state (its final norm)
read by its tied embeddings or a random vector; EAP against exact edge patching for a small nudge.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, GPTNeoXConfig, LlamaConfig, ModernBertConfig, Qwen2Config

from atinuke.errors import UserInputError
from atinuke.tokenizer import save_tokenizer
from workbench import edges as edge_lib
from workbench.decompose import direct_logit_attribution
from workbench.edges import edge_graph, patched_metric, split_forward
from workbench.subject import Subject, load_subject

TEXTS = ["the cat sat on the mat", "stocks fell on monday again"]
COMMON = {"vocab_size": 0, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
# family id -> (config class, its options, whether it is causal)
FAMILIES = {
    "llama": (LlamaConfig, {"intermediate_size": 64, "num_key_value_heads": 4, "tie_word_embeddings": True}, True),
    "llama-gqa": (LlamaConfig, {"intermediate_size": 64, "num_key_value_heads": 2}, True),  # 2 query heads per K/V
    "qwen2": (Qwen2Config, {"intermediate_size": 64, "num_key_value_heads": 4}, True),
    "neox-parallel": (GPTNeoXConfig, {"intermediate_size": 64, "use_parallel_residual": True, "rotary_pct": 0.5,
                                      "hidden_dropout": 0.0, "attention_dropout": 0.0}, True),
    "neox-sequential": (GPTNeoXConfig, {"intermediate_size": 64, "use_parallel_residual": False,
                                        "hidden_dropout": 0.0, "attention_dropout": 0.0}, True),
    "modernbert": (ModernBertConfig, {"intermediate_size": 64, "global_attn_every_n_layers": 2, "local_attention": 8,
                                      "cls_token_id": 2, "sep_token_id": 3, "norm_bias": True, "initializer_range": 0.3}, False),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _save(family: str, directory: Path, tokenizer, **extra) -> Path:
    cls, options, _ = FAMILIES[family]
    config = cls(**(COMMON | options | extra | {"vocab_size": len(tokenizer)}))
    torch.manual_seed(0)
    model = AutoModel.from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    with torch.no_grad():  # gains and biases away from 1 and 0, so that they enter every sum
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.copy_(torch.rand_like(parameter) + 0.5 if name.endswith("weight")
                                else 0.1 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)
    return directory


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def setup(request, tiny_tokenizer, tmp_path_factory):
    family = request.param
    subject = load_subject(_save(family, tmp_path_factory.mktemp(family) / "model", tiny_tokenizer))
    clean = subject.as_inputs(subject.tokenize(TEXTS))
    corrupted = {k: v.clone() for k, v in clean.items()}
    corrupted["input_ids"][:, 2] = clean["input_ids"][:, 4]
    # the read position: the last real token of a causal decoder, [CLS] of the encoder
    position = clean["attention_mask"].sum(1) - 1 if FAMILIES[family][2] else torch.zeros(2, dtype=torch.long)
    read = (torch.arange(2), position)
    with torch.no_grad():
        direction = (subject.forward(clean).last_hidden_state[read]
                     - subject.forward(corrupted).last_hidden_state[read]).mean(0)

    def metric(output):
        return (output.last_hidden_state[read] @ direction).mean()

    return family, subject, clean, corrupted, metric, position


def _with_hooks(subject: Subject, inputs, metric, hooks) -> float:
    with torch.no_grad(), subject.hooks(hooks):
        return float(metric(subject.forward(inputs)))


def test_split_forward_is_the_plain_forward(setup):
    family, subject, clean, corrupted, metric, position = setup
    graph = edge_graph(subject)
    assert graph.parallel == (family == "neox-parallel")
    with torch.no_grad():
        output, outputs = split_forward(subject, graph, clean, lambda indices, outs: None)
        plain = subject.forward(clean)
    assert torch.allclose(output.last_hidden_state, plain.last_hidden_state, atol=1e-5)
    assert sorted(outputs) == list(range(len(graph.upstream)))
    # the parallel residual: block l's MLP reads resid_pre, so it has no edge from block l's heads
    frame = graph.frame()
    same_block = frame[(frame["downstream"] == "MLP1") & frame["upstream"].str.startswith("L1.H")]
    assert len(same_block) == (0 if graph.parallel else subject.n_heads)


def test_patching_every_edge_into_a_node_is_patching_that_node(setup):
    family, subject, clean, corrupted, metric, position = setup
    graph = edge_graph(subject)
    reference = edge_lib.reference_outputs(subject, graph, clean, corrupted)
    with torch.no_grad():
        clean_m, corrupted_m = float(metric(subject.forward(clean))), float(metric(subject.forward(corrupted)))
        names = [f"blocks.{l}.{s}" for l in range(2) for s in ("hook_mlp_out", "attn.hook_z", "attn.hook_q",
                                                                "attn.hook_k", "attn.hook_v")]
        cache = subject.run_with_cache(corrupted, names)

    def into(downstream: list[str]) -> torch.Tensor:
        return graph.mask([(u, d) for d in downstream for u in graph.upstream
                           if graph.valid[graph.upstream.index(u), graph.downstream.index(d)]])

    assert abs(clean_m - corrupted_m) > 1e-3
    assert patched_metric(subject, graph, clean, reference, into(["logits"]), metric) == pytest.approx(corrupted_m,
                                                                                                      abs=1e-4)
    assert patched_metric(subject, graph, clean, reference, torch.zeros_like(graph.valid), metric) == pytest.approx(
        clean_m, abs=1e-4)
    effects = []
    grouped = graph.grouped
    for layer in range(2):
        def from_corrupted(name: str, head: int):
            def hook(t, info):  # t: [batch, pos, heads, d_head]; one head's slice from the corrupted run
                t = t.clone()
                t[:, :, head] = cache[name][:, :, head]
                return t
            return hook

        if grouped:  # a query head's input, then one key/value head's two inputs (shared by its query heads)
            names = [f"blocks.{layer}.attn.hook_{x}" for x in "qkv"]
            query = _with_hooks(subject, clean, metric, [(names[0], from_corrupted(names[0], 1))])
            assert patched_metric(subject, graph, clean, reference, into([f"L{layer}.H1.q"]), metric) == pytest.approx(
                query, abs=1e-4)
            kv = _with_hooks(subject, clean, metric, [(n, from_corrupted(n, 1)) for n in names[1:]])
            edges = into([f"L{layer}.KV1.k", f"L{layer}.KV1.v"])
            assert patched_metric(subject, graph, clean, reference, edges, metric) == pytest.approx(kv, abs=1e-4)
            effects += [abs(query - clean_m), abs(kv - clean_m)]
        else:  # every input of head 1 = that head's z from the corrupted run
            name = f"blocks.{layer}.attn.hook_z"
            head = _with_hooks(subject, clean, metric, [(name, from_corrupted(name, 1))])
            edges = into([f"L{layer}.H1.{x}" for x in "qkv"])
            assert patched_metric(subject, graph, clean, reference, edges, metric) == pytest.approx(head, abs=1e-4)
            effects.append(abs(head - clean_m))
        mlp = _with_hooks(subject, clean, metric, [(f"blocks.{layer}.hook_mlp_out",
                                                    lambda x, info, layer=layer: cache[f"blocks.{layer}.hook_mlp_out"])])
        assert patched_metric(subject, graph, clean, reference, into([f"MLP{layer}"]), metric) == pytest.approx(
            mlp, abs=1e-4)
        effects.append(abs(mlp - clean_m))
    assert min(effects) > 1e-5 and max(effects) > 1e-3, effects  # not vacuous: the patched nodes move the metric


def test_eap_is_the_first_order_term_of_exact_edge_patching(setup):
    family, subject, clean, corrupted, metric, position = setup
    graph = edge_graph(subject)
    torch.manual_seed(1)
    with torch.no_grad():
        scale = float(subject.run_with_cache(clean, ["embed.hook_embed"])["embed.hook_embed"].std())
    noise = 3e-3 * scale * torch.randn(*clean["input_ids"].shape, subject.d_model)
    with subject.hooks([("embed.hook_embed", lambda e, info: e + noise)]):
        reference = edge_lib.reference_outputs(subject, graph, clean, clean)
    with torch.no_grad():
        clean_m = float(metric(subject.forward(clean)))
        diff = edge_lib.node_outputs(subject, graph, clean) - reference  # [U, batch, pos, d_model]
    probes = torch.zeros(len(graph.downstream), *diff.shape[1:], requires_grad=True)
    with subject.frozen():
        output, _ = split_forward(subject, graph, clean, lambda indices, outs: probes[indices])
        grad = torch.autograd.grad(metric(output), probes)[0]  # [D, batch, pos, d_model]
    checked = 0
    value = "L1.KV1.v" if graph.grouped else "L1.H1.v"
    for up, down in (("embed", "logits"), ("embed", "MLP1"), ("MLP0", value), ("L0.H2", "logits")):
        u, d = graph.upstream.index(up), graph.downstream.index(down)
        mask = torch.zeros_like(graph.valid)
        mask[u, d] = True
        exact = clean_m - patched_metric(subject, graph, clean, reference, mask, metric)
        estimate = float((diff[u] * grad[d]).sum())
        if abs(exact) > 1e-6:  # an edge whose effect is below float32 noise says nothing about the estimate
            assert estimate == pytest.approx(exact, rel=0.05, abs=1e-7), (up, down)
            checked += 1
    assert checked >= 3


def test_dla_parts_sum_to_the_familys_own_logit(setup):
    family, subject, clean, corrupted, metric, position = setup
    with torch.no_grad():
        hidden = subject.forward(clean).last_hidden_state[torch.arange(2), position]  # after the final norm
    if family == "llama":  # tied embeddings: the LM head's row of a token is its embedding
        direction = subject.adapter.embedding_module().weight[17].detach()
    else:
        direction = torch.randn(subject.d_model, generator=torch.Generator().manual_seed(0))
    frame = direct_logit_attribution(subject, clean, direction, position, bias=0.25)
    expected = hidden @ direction + 0.25
    assert frame.groupby("example")["contribution"].sum().to_numpy() == pytest.approx(expected.numpy(), abs=1e-5)
    components = set(frame["component"])
    assert {"embed", "L0.H0", "L1.H3", "MLP0", "MLP1", "readout bias"} <= components
    norm = subject.adapter.norm_parameters("ln_final")
    assert norm is not None and norm.kind == ("rms" if family in ("llama", "llama-gqa", "qwen2") else "layer")
    assert ("ln_final bias" in components) == (norm.bias is not None)  # RMSNorm has no bias part
    per_part = frame.groupby("component")["contribution"].apply(lambda v: v.abs().max())
    biases = [c for c in per_part.index if c.endswith("attn_bias")]
    assert per_part.drop(["readout bias", *biases]).min() > 1e-4  # no embedding, head or MLP part is vacuous
    if family in ("llama", "llama-gqa", "qwen2", "modernbert"):  # no bias on the output projection: float noise around 0
        assert per_part[biases].max() < 1e-5
    else:
        assert per_part[biases].min() > 1e-4


def test_grouped_query_attention_gives_each_key_value_head_its_own_input_nodes(setup):
    family, subject, clean, corrupted, metric, position = setup
    graph = edge_graph(subject)
    assert graph.grouped == (family == "llama-gqa")
    if not graph.grouped:
        return
    # per block: 4 query inputs, then k and v of 2 key/value heads; every head and MLP before feeds them
    assert graph.downstream[:8] == ["L0.H0.q", "L0.H1.q", "L0.H2.q", "L0.H3.q", "L0.KV0.k", "L0.KV0.v", "L0.KV1.k",
                                    "L0.KV1.v"]
    frame = graph.frame()
    assert set(frame.loc[frame["downstream"] == "L1.KV1.k", "upstream"]) == {"embed", "MLP0", *[f"L0.H{h}" for h in
                                                                                               range(4)]}
    # into block 0's inputs (embed), MLP0 (embed, 4 heads), block 1's inputs (embed, 4 heads, MLP0), MLP1, logits
    assert len(frame) == 1 * 8 + 5 + 6 * 8 + 10 + 11


def test_deberta_v2_stays_refused_with_its_reason(tiny_tokenizer, tmp_path):
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(0)
    DebertaV2Model(DebertaV2Config(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0)
                   ).eval().save_pretrained(tmp_path / "deberta")
    save_tokenizer(tiny_tokenizer, tmp_path / "deberta")
    subject = load_subject(tmp_path / "deberta")
    inputs = subject.as_inputs(subject.tokenize(TEXTS))
    with pytest.raises(UserInputError, match="post-norm"):
        edge_graph(subject)
    with pytest.raises(UserInputError, match="post-norm"):
        direct_logit_attribution(subject, inputs, torch.ones(subject.d_model))
    from workbench.dla import dla

    with pytest.raises(UserInputError, match="does not split heads"):  # nor its last block: no per-head W_O
        dla(subject, TEXTS[0], "random:0", "0")


def test_circuit_graph_draws_key_value_head_nodes():
    import pandas as pd

    from workbench.figures import circuit_graph

    edges = pd.DataFrame({"upstream": ["embed", "L0.H2"], "downstream": ["L0.KV1.v", "L1.KV0.k"],
                          "normalized": [0.8, -0.3], "in_circuit": [True, True]})
    figure = circuit_graph(edges)
    nodes = {t: (x, y) for t, x, y in zip(figure.data[-1].text, figure.data[-1].x, figure.data[-1].y)}
    assert nodes == {"embed": (0.0, 0.0), "L0.KV1": (1.0, 1.5), "L0.H2": (1.0, 2.0), "L1.KV0": (3.0, 0.5)}
    assert [d.text.split(":")[0] for d in figure.data[:-1]] == ["embed → L0.KV1.v (v)", "L0.H2 → L1.KV0.k (k)"]


@pytest.mark.parametrize("family", ["neox-parallel", "llama-gqa"])
def test_circuit_cli_on_a_decoder_reads_the_last_token_and_recovers_the_metric(family, tiny_tokenizer, tmp_path):
    import json

    import pandas as pd

    from workbench.cli import main

    model = _save(family, tmp_path / family, tiny_tokenizer)
    out = tmp_path / "circuit"
    # the texts differ at token 2: a decoder's position 0 cannot see it, so the metric must read the last token
    assert main(["circuit", "--model", str(model), "--clean", "the cat sat on the mat", "--corrupted",
                 "the dog sat on the mat", "--n-steps", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    edges = pd.read_parquet(out / "edges.parquet")
    assert summary["metric"].startswith("last token's state")
    assert summary["faithfulness"] >= 0.9 and summary["metric_circuit"] != summary["metric_corrupted"]
    assert summary["metric_ablated"] == pytest.approx(summary["metric_corrupted"], abs=1e-4)  # every edge patched
    kept = edges[edges["in_circuit"]]
    assert 0 < len(kept) < len(edges) == summary["n_edges_total"]
    if family == "neox-parallel":  # no edge from a block's heads into its own MLP exists, so none is kept
        assert not ((edges["downstream"] == "MLP1") & edges["upstream"].str.startswith("L1.")).any()
    else:
        # 4 key/value inputs per block: from embed in block 0; from embed, 4 heads and MLP0 in block 1
        assert edges["downstream"].str.contains(r"\.KV\d\.[kv]$").sum() == 4 * 1 + 4 * 6
