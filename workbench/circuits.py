"""Circuit discovery: the smallest set of edges, ranked by EAP-IG, that recovers a chosen fraction of the metric.

Edges are ranked by the absolute EAP-IG score (Hanna et al. 2024, arXiv 2403.17806; or plain EAP, Syed et al.
2023, arXiv 2310.10348) of :mod:`workbench.edges`. A circuit of the top k edges is evaluated exactly: the clean
input is run with every edge outside the circuit patched from the corrupted run (or mean-ablated), and its
faithfulness is (m_circuit - m_none) / (m_clean - m_none), where m_none is the metric with every edge patched
(the corrupted run's metric, for patching), so 0 is "no circuit" and 1 the full model. k is searched on a
doubling grid and then bisected between the last grid point below the target and the first above it
(faithfulness need not be monotone in k; the result is the smallest k evaluated that reaches the target, and
every evaluated k is reported in the curve). Residual-stream edges need pre-norm blocks
(:func:`workbench.edges.edge_graph` refuses post-norm models by name).

:func:`run_ioi`: indirect-object identification end to end on a decoder (the prompts and metric of
:mod:`workbench.ioi`), its circuit found on discovery prompts and checked on held-out ones.

CLI: ``workbench circuit --model M --clean TEXT --corrupted TEXT [--fraction 0.9] --out DIR`` (or ``--preset ioi``:
:func:`run_ioi`, written by :func:`workbench.ioi.write_ioi`) writes
``edges.parquet`` (every edge: upstream, downstream, score, normalized, rank, in_circuit), ``curve.parquet``
(n_edges, faithfulness, metric for every circuit size evaluated) and ``summary.parquet`` / ``summary.json``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import pandas as pd
import torch

from atinuke.errors import UserInputError
from workbench.edges import edge_attribution, edge_graph, patched_metric, reference_outputs
from workbench.nodes import discover_node_circuit, node_scores, search_size

if TYPE_CHECKING:  # annotations only
    from workbench.ioi import IOIResult
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

ABLATIONS = ("patch", "mean")
CIRCUIT_FILES = ("edges.parquet", "nodes.parquet", "curve.parquet", "summary.parquet", "summary.json")


@dataclass
class Circuit:
    """A discovered circuit.

    Attributes:
        edges: every edge (:func:`workbench.edges.edge_attribution`'s table) with ``rank`` (1 = largest |score|)
            and ``in_circuit``.
        curve: ``n_edges``, ``metric``, ``faithfulness`` for every circuit size evaluated.
        summary: fraction asked, edges kept and in total, faithfulness reached, the three metrics, settings.
    """

    edges: pd.DataFrame
    curve: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def discover_circuit(subject: Subject, clean: Any, corrupted: Any, metric: Callable[[Any], torch.Tensor],
                     fraction: float = 0.9, method: str = "eap_ig", n_steps: int = 8, ablation: str = "patch",
                     progress: bool = False, scores: Optional[pd.DataFrame] = None) -> Circuit:
    """Rank edges by EAP(-IG) and keep the smallest top-k whose exact faithfulness reaches ``fraction``.

    Args:
        scores: an :func:`workbench.edges.edge_attribution` table computed before (a resumed run's).
    """
    if not 0 < fraction <= 1:
        raise UserInputError(f"fraction must be in (0, 1], got {fraction}")
    if ablation not in ABLATIONS:
        raise UserInputError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
    graph = edge_graph(subject)
    a, b = subject.as_inputs(clean), subject.as_inputs(corrupted)
    edges = edge_attribution(subject, a, b, metric, method, n_steps) if scores is None else scores.copy()
    edges["rank"] = edges["score"].abs().rank(ascending=False, method="first").astype(int)
    order = edges.sort_values("rank")
    reference = reference_outputs(subject, graph, a, b, ablation)
    clean_m = edges.attrs["clean"]

    def metric_at(k: int) -> float:
        if k == len(order):
            return clean_m
        keep = torch.zeros_like(graph.valid)
        top = order.head(k)
        keep[torch.tensor(top["up_index"].tolist(), dtype=torch.long),
             torch.tensor(top["down_index"].tolist(), dtype=torch.long)] = True
        return patched_metric(subject, graph, a, reference, graph.valid & ~keep, metric)

    search = search_size(metric_at, len(order), clean_m, fraction,
                         "patching every edge leaves the metric unchanged; nothing to discover", progress)
    size = search.size
    edges["in_circuit"] = edges["rank"] <= size
    edges["level"] = "edges"
    curve = search.curve("n_edges", "edges")
    kept = edges[edges["in_circuit"]]
    summary = {"model": subject.name, "level": "edges", "method": method, "n_steps": n_steps if method == "eap_ig" else 1,
               "ablation": ablation, "fraction": fraction, "n_edges": int(size), "n_edges_total": len(edges),
               "n_nodes": len(set(kept["upstream"]) | {d.rsplit(".", 1)[0] if d.count(".") == 2 else d
                                                        for d in kept["downstream"]}),
               "faithfulness": search.faithfulness(size), "metric_clean": clean_m,
               "metric_corrupted": edges.attrs["corrupted"], "metric_ablated": search.ablated,
               "metric_circuit": search.evaluated[size]}
    logger.info("circuit of %d/%d edges recovers %.3f of the metric", size, len(edges), summary["faithfulness"])
    return Circuit(edges, curve, summary)


def run_ioi(subject: Subject, n_discovery: int = 16, n_heldout: int = 16, fraction: float = 0.9,
            level: str = "nodes", method: str = "attribution", n_steps: int = 5, exact_heads: bool = False,
            seed: int = 0, progress: bool = False) -> "IOIResult":
    """Indirect-object identification end to end on a causal decoder (:mod:`workbench.ioi`; Wang et al. 2022):
    the logit difference of every prompt, each head's patching effect and a circuit found on discovery prompts,
    then patched in exactly on held-out prompts whose names were not used to find it.

    Args:
        n_discovery / n_heldout: prompt pairs used to find the circuit / to check it (disjoint name sets).
        fraction: share of the discovery metric (clean vs corrupted) the circuit must recover there.
        level: "nodes" (heads, MLPs, embeddings; one forward pass per circuit size) or "edges" (every edge
            between them; each pass runs ``2 + n_heads + 2 * n_kv_heads`` copies of the batch, 17 on SmolLM2).
        method: the ranking, "attribution" (attribution patching; EAP at edge level) or "eap_ig".
        exact_heads: also patch every head exactly (one forward pass per head) on the discovery set.

    Returns:
        An :class:`IOIResult`; its summary has ``share_positive`` (prompts with IO - S > 0), the mean logit
        differences, ``top_heads``, the circuit's size and discovery faithfulness, and on the held-out prompts
        ``heldout_faithfulness`` ((m_circuit - m_corrupted) / (m_clean - m_corrupted)) and
        ``heldout_recovered`` (m_circuit / m_clean).
    """
    from workbench.ioi import IOIResult, ioi_batch, ioi_prompts, logit_diff_metric, prompt_table, split_names
    from workbench.nodes import node_patched_metric, node_references
    from workbench.patching import attribution_patching, exact_patching

    if not subject.causal:
        raise UserInputError(f"{subject.name}: IOI needs a causal decoder (next-token logits)")
    if level not in ("nodes", "edges"):
        raise UserInputError(f"unknown level {level!r}; choose nodes or edges")
    discovery_names, heldout_names = split_names(subject.tokenizer, seed)
    found = ioi_prompts(subject.tokenizer, n_discovery, seed, exclude_names=heldout_names)
    held = ioi_prompts(subject.tokenizer, n_heldout, seed + 1, exclude_names=discovery_names)
    table = pd.concat([prompt_table(subject, found, "discovery"), prompt_table(subject, held, "heldout")],
                      ignore_index=True)
    clean, corrupted, io, s = ioi_batch(subject, found)
    metric = logit_diff_metric(subject, clean, io, s)
    heads = [attribution_patching(subject, clean, corrupted, metric, "heads", m, n_steps).assign(method=m)
             for m in dict.fromkeys((method if method != "eap" else "attribution", "attribution"))]
    if exact_heads:
        heads.insert(0, exact_patching(subject, clean, corrupted, metric, "heads", progress=progress)
                     .assign(method="exact"))
    head_table = pd.concat(heads, ignore_index=True)
    h_clean, h_corrupted, h_io, h_s = ioi_batch(subject, held)
    h_metric = logit_diff_metric(subject, h_clean, h_io, h_s)
    circuit: Any
    if level == "nodes":  # the same nodes, patched in exactly on the held-out prompts
        circuit = discover_node_circuit(subject, clean, corrupted, metric, fraction,
                                        "attribution" if method == "eap" else method, n_steps, progress=progress)
        keep = set(circuit.summary["kept"])
        m_circuit = node_patched_metric(subject, h_clean, node_references(subject, h_clean, h_corrupted), keep,
                                        h_metric)
        size, total = circuit.summary["n_nodes"], circuit.summary["n_nodes_total"]
    else:  # the same edges
        circuit = discover_circuit(subject, clean, corrupted, metric, fraction,
                                   "eap" if method == "attribution" else method, n_steps, progress=progress)
        graph = edge_graph(subject)
        kept = circuit.edges[circuit.edges["in_circuit"]]
        mask = torch.zeros_like(graph.valid)
        mask[torch.tensor(kept["up_index"].tolist(), dtype=torch.long),
             torch.tensor(kept["down_index"].tolist(), dtype=torch.long)] = True
        m_circuit = patched_metric(subject, graph, h_clean, reference_outputs(subject, graph, h_clean, h_corrupted),
                                   graph.valid & ~mask, h_metric)
        size, total = circuit.summary["n_edges"], circuit.summary["n_edges_total"]
    with torch.no_grad():
        m_clean = float(h_metric(subject.forward(h_clean)))
        m_corrupted = float(h_metric(subject.forward(h_corrupted)))
    ranked = head_table[head_table["method"] == head_table["method"].iloc[0]].sort_values("normalized", key=abs,
                                                                                          ascending=False)
    summary = {
        "model": subject.name, "n_discovery": len(found), "n_heldout": len(held),
        "discovery_names": sorted(discovery_names), "heldout_names": sorted(heldout_names),
        "share_positive": float((table["logit_diff"] > 0).mean()),
        "mean_logit_diff": float(table["logit_diff"].mean()),
        "mean_logit_diff_corrupted": float(table["logit_diff_corrupted"].mean()),
        "heads_method": str(head_table["method"].iloc[0]),
        "top_heads": [f"L{int(r.layer)}.H{int(r.head)}" for r in ranked.head(10).itertuples()],
        "top_heads_normalized": [round(float(v), 4) for v in ranked["normalized"].head(10)],
        "level": level, "circuit_method": circuit.summary["method"], "n_steps": n_steps, "fraction": fraction,
        "circuit_size": int(size), "circuit_size_total": int(total),
        "discovery_faithfulness": circuit.summary["faithfulness"],
        "heldout_metric_clean": m_clean, "heldout_metric_corrupted": m_corrupted, "heldout_metric_circuit": m_circuit,
        "heldout_faithfulness": (m_circuit - m_corrupted) / (m_clean - m_corrupted),
        "heldout_recovered": m_circuit / m_clean,
    }
    logger.info("IOI: IO - S > 0 on %.0f%% of prompts; a %d-%s circuit recovers %.3f (held-out %.3f)",
                100 * summary["share_positive"], size, level, summary["discovery_faithfulness"],
                summary["heldout_faithfulness"])
    return IOIResult(table, head_table, circuit, summary)


# --------------------------------------------------------------------------------------------- CLI

LEVELS = ("auto", "nodes", "edges")


def circuit_level(subject: Subject, inputs: dict[str, Any], level: str = "auto") -> str:
    """"edges" where the residual stream is a sum of component outputs (pre-norm blocks, a head's output
    weights known, no task-head span inputs), else "nodes"; ``level`` "nodes"/"edges" forces one (edges on a
    post-norm model are refused by :func:`workbench.edges.edge_graph`)."""
    if level not in LEVELS:
        raise UserInputError(f"unknown level {level!r}; choose from {', '.join(LEVELS)}")
    spans = any(k.startswith("span_") for k in inputs)
    if level == "edges":
        if spans:
            raise UserInputError("edge patching runs copies of the batch side by side, which span inputs (a "
                                 "coreference head's) do not allow; use --level nodes")
        edge_graph(subject)
        return "edges"
    if level == "nodes":
        return "nodes"
    decomposes = subject.adapter.residual_is_sum and all(
        subject.adapter.head_output_weights(layer) is not None for layer in range(subject.n_layers))
    return "edges" if decomposes and not spans else "nodes"


def add_arguments(parser: Any) -> None:
    """``workbench circuit``: the nodes or edges that carry the difference between a clean and a corrupted input."""
    parser.add_argument("--model", required=True, help="'smollm2', a .gguf file, a model directory or a fine-tuning run")
    parser.add_argument("--clean", default=None, help="the clean text (required without --preset)")
    parser.add_argument("--corrupted", default=None, help="the corrupted text (the same number of tokens)")
    parser.add_argument("--preset", default=None, choices=("ioi",),
                        help="ioi: built-in batches of indirect-object prompts with name-swapped partners (a decoder; "
                             "workbench.ioi), the circuit checked on held-out prompts")
    parser.add_argument("--n-prompts", type=int, default=16, help="with --preset ioi: discovery prompt pairs")
    parser.add_argument("--n-heldout", type=int, default=16, help="with --preset ioi: held-out prompt pairs")
    parser.add_argument("--exact-heads", action="store_true",
                        help="with --preset ioi: also patch every head exactly (one forward pass per head)")
    parser.add_argument("--clean-pair", default=None, help="second segment of the clean input (pair tasks)")
    parser.add_argument("--corrupted-pair", default=None, help="second segment of the corrupted input")
    parser.add_argument("--fraction", type=float, default=0.9, help="share of the metric the circuit must recover")
    parser.add_argument("--level", default="auto", choices=LEVELS,
                        help="edges where the residual stream is a sum of component outputs, nodes otherwise (auto)")
    parser.add_argument("--method", default="eap_ig", choices=("eap_ig", "eap", "attribution"),
                        help="ranking: EAP-IG, or first-order (EAP for edges, attribution patching for nodes)")
    parser.add_argument("--n-steps", type=int, default=8, help="EAP-IG interpolation steps")
    parser.add_argument("--ablation", default="patch", choices=ABLATIONS,
                        help="what edges or nodes outside the circuit carry: the corrupted run, or the clean mean")
    parser.add_argument("--out", required=True, help="output directory (empty or new, unless --overwrite/--resume)")
    parser.add_argument("--overwrite", action="store_true")
    from workbench.cli import add_device_arguments

    add_device_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out (the ranking is a resumable part; same settings only)")


def run(args: Any) -> int:
    """Write ``edges.parquet`` (edge level) or ``nodes.parquet`` (node level), ``curve.parquet``,
    ``summary.parquet`` and ``summary.json``; the ranking is a resumable part (:mod:`workbench.resume`)."""
    from atinuke.io import atomic_write_json, check_out_dir, write_with
    from workbench.cli import resolve_subject
    from workbench.patch_metrics import pair_inputs
    from workbench.patching import default_metric
    from workbench.resume import ResumableParts

    if args.preset is None and (args.clean is None or args.corrupted is None):
        raise UserInputError("--clean and --corrupted are required without --preset")
    if args.preset is not None and (args.clean is not None or args.corrupted is not None):
        raise UserInputError(f"--preset {args.preset} brings its own prompts; drop --clean/--corrupted")
    out = check_out_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    if not 0 < args.fraction <= 1:
        raise UserInputError(f"--fraction must be in (0, 1], got {args.fraction}")
    subject = resolve_subject(args.model, None, args.device, args.dtype)
    if args.preset == "ioi":
        return run_ioi_preset(subject, args, out)
    clean, corrupted = pair_inputs(subject, args.clean, args.corrupted, args.clean_pair, args.corrupted_pair)
    level = circuit_level(subject, clean, args.level)  # refuses edges on a post-norm model before any work
    method = {"eap": "attribution", "attribution": "attribution"}.get(args.method, "eap_ig") if level == "nodes" \
        else {"attribution": "eap", "eap": "eap"}.get(args.method, "eap_ig")
    metric, description = default_metric(subject, clean, corrupted)
    parts = ResumableParts(out, {"command": "circuit", "model": subject.model_hash(), "clean": args.clean,
                                 "corrupted": args.corrupted, "clean_pair": args.clean_pair,
                                 "corrupted_pair": args.corrupted_pair, "level": level, "method": method,
                                 "n_steps": args.n_steps, "metric": description}, resume=args.resume)
    if level == "nodes":
        scores = parts.table("node_scores", lambda: node_scores(subject, clean, corrupted, metric, method,
                                                                args.n_steps))
        found = discover_node_circuit(subject, clean, corrupted, metric, args.fraction, method, args.n_steps,
                                      args.ablation, scores=scores, progress=True)
        table, curve, summary, unit = found.nodes, found.curve, found.summary, "nodes"
    else:
        a, b = subject.as_inputs(clean), subject.as_inputs(corrupted)
        scores = parts.table("edge_scores", lambda: edge_attribution(subject, a, b, metric, method, args.n_steps))
        circuit = discover_circuit(subject, a, b, metric, args.fraction, method, args.n_steps, args.ablation,
                                   progress=True, scores=scores)
        table, curve, summary, unit = circuit.edges, circuit.curve, circuit.summary, "edges"
    summary = summary | {"metric": description, "clean": args.clean, "corrupted": args.corrupted,
                         "resumed_parts": parts.reused}
    write_with(out / f"{unit}.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    stale = out / ("edges.parquet" if unit == "nodes" else "nodes.parquet")
    if stale.exists():  # an --overwrite of a run at the other level: no table of it is left beside this one
        logger.info("removing %s of an earlier run at the other level", stale)
        stale.unlink()
    write_with(out / "curve.parquet", lambda tmp: curve.to_parquet(tmp, index=False))
    flat = {k: (", ".join(v) if isinstance(v, list) else v) for k, v in summary.items()}
    write_with(out / "summary.parquet", lambda tmp: pd.DataFrame([flat]).to_parquet(tmp, index=False))
    atomic_write_json(out / "summary.json", summary)
    size, total = summary[f"n_{unit}"], summary[f"n_{unit}_total"]
    print(f"{description}: clean {summary['metric_clean']:.4g}, corrupted {summary['metric_corrupted']:.4g}; "
          f"{level}-level circuit of {size}/{total} {unit} recovers {summary['faithfulness']:.3f}")
    kept = table[table["in_circuit"]].sort_values("rank")
    print(kept[["edge" if unit == "edges" else "node", "score", "normalized"]].head(20).to_string(index=False))
    return 0


def run_ioi_preset(subject: Subject, args: Any, out: Any) -> int:
    """``workbench circuit --preset ioi``: :func:`workbench.ioi.run_ioi` at ``--level`` (auto: nodes, the
    affordable one on a CPU) with ``--method`` (attribution patching unless eap_ig), written by
    :func:`workbench.ioi.write_ioi`."""
    from workbench.ioi import write_ioi

    level = "nodes" if args.level == "auto" else args.level
    method = "eap_ig" if args.method == "eap_ig" else "attribution"
    result = run_ioi(subject, args.n_prompts, args.n_heldout, args.fraction, level, method, args.n_steps,
                     args.exact_heads, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    write_ioi(out, result)
    found = result.summary
    print(f"IOI on {subject.name}: logit(IO) - logit(S) > 0 on {found['share_positive']:.0%} of "
          f"{found['n_discovery'] + found['n_heldout']} prompts (mean {found['mean_logit_diff']:.3f}; "
          f"name-swapped {found['mean_logit_diff_corrupted']:.3f})")
    print(f"top heads ({found['heads_method']}): " + ", ".join(
        f"{h} {v:+.3f}" for h, v in zip(found["top_heads"], found["top_heads_normalized"])))
    print(f"{level}-level circuit of {found['circuit_size']}/{found['circuit_size_total']} {level} recovers "
          f"{found['discovery_faithfulness']:.3f} on the discovery prompts and {found['heldout_faithfulness']:.3f} "
          f"on held-out prompts ({found['heldout_recovered']:.3f} of their clean logit difference)")
    return 0
