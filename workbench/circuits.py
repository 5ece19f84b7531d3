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

CLI: ``workbench circuit --model M --clean TEXT --corrupted TEXT [--fraction 0.9] --out DIR`` writes
``edges.parquet`` (every edge: upstream, downstream, score, normalized, rank, in_circuit), ``curve.parquet``
(n_edges, faithfulness, metric for every circuit size evaluated) and ``summary.parquet`` / ``summary.json``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd
import torch

from atinuke.errors import UserInputError
from workbench.edges import EDGE_METHODS, edge_attribution, edge_graph, patched_metric, reference_outputs

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

ABLATIONS = ("patch", "mean")
CIRCUIT_FILES = ("edges.parquet", "curve.parquet", "summary.parquet", "summary.json")


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
                     progress: bool = False) -> Circuit:
    """Rank edges by EAP(-IG) and keep the smallest top-k whose exact faithfulness reaches ``fraction``."""
    from tqdm.auto import tqdm

    if not 0 < fraction <= 1:
        raise UserInputError(f"fraction must be in (0, 1], got {fraction}")
    if ablation not in ABLATIONS:
        raise UserInputError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
    graph = edge_graph(subject)
    a, b = subject.as_inputs(clean), subject.as_inputs(corrupted)
    edges = edge_attribution(subject, a, b, metric, method, n_steps)
    edges["rank"] = edges["score"].abs().rank(ascending=False, method="first").astype(int)
    order = edges.sort_values("rank")
    reference = reference_outputs(subject, graph, a, b, ablation)
    clean_m = edges.attrs["clean"]
    evaluated: dict[int, float] = {}
    bar = tqdm(disable=not progress, desc="circuit sizes", unit="eval")

    def evaluate(k: int) -> float:
        if k not in evaluated:
            keep = torch.zeros_like(graph.valid)
            top = order.head(k)
            keep[torch.tensor(top["up_index"].tolist(), dtype=torch.long),
                 torch.tensor(top["down_index"].tolist(), dtype=torch.long)] = True
            evaluated[k] = clean_m if k == len(order) else patched_metric(subject, graph, a, reference,
                                                                         graph.valid & ~keep, metric)
            bar.update(1)
        return evaluated[k]

    none_m = evaluate(0)
    span = clean_m - none_m
    if abs(span) < 1e-9:
        raise UserInputError("patching every edge leaves the metric unchanged; nothing to discover")

    def faithful(k: int) -> float:
        return (evaluate(k) - none_m) / span

    grid = [0] + [2 ** i for i in range(len(order).bit_length()) if 2 ** i < len(order)] + [len(order)]
    low, high = 0, len(order)
    for k in grid:
        if faithful(k) >= fraction:
            high = k
            break
        low = k
    while high - low > 1:  # bisection between the last size below the target and the first above it
        middle = (low + high) // 2
        if faithful(middle) >= fraction:
            high = middle
        else:
            low = middle
    bar.close()
    size = min(k for k in evaluated if faithful(k) >= fraction)
    edges["in_circuit"] = edges["rank"] <= size
    curve = pd.DataFrame({"n_edges": sorted(evaluated)})
    curve["metric"] = [evaluated[k] for k in curve["n_edges"]]
    curve["faithfulness"] = [faithful(k) for k in curve["n_edges"]]
    kept = edges[edges["in_circuit"]]
    summary = {"model": subject.name, "method": method, "n_steps": n_steps if method == "eap_ig" else 1,
               "ablation": ablation, "fraction": fraction, "n_edges": int(size), "n_edges_total": len(edges),
               "n_nodes": len(set(kept["upstream"]) | {d.rsplit(".", 1)[0] if d.count(".") == 2 else d
                                                        for d in kept["downstream"]}),
               "faithfulness": faithful(size), "metric_clean": clean_m, "metric_corrupted": edges.attrs["corrupted"],
               "metric_ablated": none_m, "metric_circuit": evaluated[size]}
    logger.info("circuit of %d/%d edges recovers %.3f of the metric", size, len(edges), summary["faithfulness"])
    return Circuit(edges, curve, summary)


# --------------------------------------------------------------------------------------------- CLI

def add_arguments(parser: Any) -> None:
    """``workbench circuit``: the edges that carry the difference between a clean and a corrupted input."""
    parser.add_argument("--model", required=True, help="a model directory or a fine-tuning run (pre-norm blocks)")
    parser.add_argument("--clean", required=True, help="the clean text")
    parser.add_argument("--corrupted", required=True, help="the corrupted text (the same number of tokens)")
    parser.add_argument("--clean-pair", default=None, help="second segment of the clean input (pair tasks)")
    parser.add_argument("--corrupted-pair", default=None, help="second segment of the corrupted input")
    parser.add_argument("--fraction", type=float, default=0.9, help="share of the metric the circuit must recover")
    parser.add_argument("--method", default="eap_ig", choices=EDGE_METHODS)
    parser.add_argument("--n-steps", type=int, default=8, help="EAP-IG interpolation steps")
    parser.add_argument("--ablation", default="patch", choices=ABLATIONS,
                        help="what edges outside the circuit carry: the corrupted run, or the clean mean")
    parser.add_argument("--out", required=True, help="output directory (empty or new, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true")


def run(args: Any) -> int:
    """Write ``edges.parquet``, ``curve.parquet``, ``summary.parquet`` and ``summary.json``."""
    from atinuke.io import atomic_write_json, check_out_dir, write_with
    from workbench.cli import resolve_subject
    from workbench.patching import default_metric

    out = check_out_dir(args.out, overwrite=args.overwrite)
    if not 0 < args.fraction <= 1:
        raise UserInputError(f"--fraction must be in (0, 1], got {args.fraction}")
    for text, flag in ((args.clean, "--clean"), (args.corrupted, "--corrupted")):
        if not text.strip():
            raise UserInputError(f"{flag}: empty text")
    subject = resolve_subject(args.model, None, "cpu")
    edge_graph(subject)  # refuse a post-norm model before any work
    clean = subject.tokenize([args.clean], None if args.clean_pair is None else [args.clean_pair])
    corrupted = subject.tokenize([args.corrupted], None if args.corrupted_pair is None else [args.corrupted_pair])
    if clean["input_ids"].shape != corrupted["input_ids"].shape:
        raise UserInputError(f"--clean has {clean['input_ids'].shape[1]} tokens and --corrupted "
                             f"{corrupted['input_ids'].shape[1]}; patching needs inputs of the same length")
    metric, description = default_metric(subject, clean, corrupted)
    circuit = discover_circuit(subject, clean, corrupted, metric, args.fraction, args.method, args.n_steps,
                               args.ablation, progress=True)
    summary = circuit.summary | {"metric": description, "clean": args.clean, "corrupted": args.corrupted}
    out.mkdir(parents=True, exist_ok=True)
    write_with(out / "edges.parquet", lambda tmp: circuit.edges.to_parquet(tmp, index=False))
    write_with(out / "curve.parquet", lambda tmp: circuit.curve.to_parquet(tmp, index=False))
    write_with(out / "summary.parquet", lambda tmp: pd.DataFrame([summary]).to_parquet(tmp, index=False))
    atomic_write_json(out / "summary.json", summary)
    print(f"{description}: clean {summary['metric_clean']:.4g}, corrupted {summary['metric_corrupted']:.4g}; "
          f"circuit of {summary['n_edges']}/{summary['n_edges_total']} edges recovers {summary['faithfulness']:.3f}")
    kept = circuit.edges[circuit.edges["in_circuit"]].sort_values("rank")
    print(kept[["edge", "score", "normalized"]].head(20).to_string(index=False))
    return 0
