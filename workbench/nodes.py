"""Node-level circuit discovery: the fewest heads, MLPs (and the embeddings) that recover a chosen fraction of
the metric, for every model, post-norm blocks (the paper's Atinuke, BERT, MiniLM) included.

Edge patching (:mod:`workbench.edges`) needs a residual stream that is a sum of component outputs; a post-norm
block's layer norm sits on the stream itself, so there the unit of a circuit is a node. Nodes are the
embeddings (``blocks.0.hook_resid_pre``), every head (its slice of ``blocks.{l}.attn.hook_z``) and every MLP
(``blocks.{l}.hook_mlp_out``). They are ranked by |attribution patching| or |EAP-IG| over nodes
(:func:`workbench.patching.attribution_patching`; Nanda 2023, Syed et al. 2023 arXiv 2310.10348, Hanna et al.
2024 arXiv 2403.17806), and a circuit of the top k nodes is evaluated exactly through the hooks: the clean
input is run with every node outside the circuit set to its value on the corrupted run (or to the clean run's
mean over examples, mean ablation; Wang et al. 2022 arXiv 2211.00593). Its faithfulness is
(m_circuit - m_none) / (m_clean - m_none), m_none being the metric with every node replaced, which for
patching is the corrupted run's metric exactly (every input to the read-out is then the corrupted one).
k is searched as in :mod:`workbench.circuits` (:func:`smallest_size`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import pandas as pd
import torch

from atinuke.errors import UserInputError
from workbench.patching import run_task, run_task_with_cache, task_inputs

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

NODE_METHODS = ("attribution", "eap_ig")
NODE_ABLATIONS = ("patch", "mean")
EMBED = "embed"


@dataclass
class NodeCircuit:
    """A discovered node circuit.

    Attributes:
        nodes: one row per node: ``node`` ("embed", "L1.H2", "L0.MLP"), ``kind`` (embed / head / mlp), ``layer``
            (-1 for the embeddings), ``head`` (-1 unless a head), ``score``, ``normalized``, ``rank`` (1 = largest
            |score|), ``in_circuit`` and ``level`` ("nodes").
        curve: ``n_nodes``, ``metric``, ``faithfulness`` for every circuit size evaluated.
        summary: fraction asked, nodes kept and in total, faithfulness reached, the metrics, the settings.
    """

    nodes: pd.DataFrame
    curve: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def smallest_size(faithful: Callable[[int], float], total: int, fraction: float) -> int:
    """The smallest evaluated k with ``faithful(k) >= fraction``: a doubling grid, then bisection between the last
    grid point below the target and the first above it (faithfulness need not be monotone in k)."""
    grid = [0] + [2 ** i for i in range(total.bit_length()) if 2 ** i < total] + [total]
    low, high = 0, total
    for k in grid:
        if faithful(k) >= fraction:
            high = k
            break
        low = k
    while high - low > 1:
        middle = (low + high) // 2
        if faithful(middle) >= fraction:
            high = middle
        else:
            low = middle
    return high


@dataclass
class SizeSearch:
    """The smallest prefix of a ranked order that recovers ``fraction`` of the clean metric (every size tried)."""

    size: int
    evaluated: dict[int, float]  # prefix size -> metric with only that prefix kept
    ablated: float  # the metric with nothing kept
    span: float  # clean - ablated

    def faithfulness(self, k: int) -> float:
        return (self.evaluated[k] - self.ablated) / self.span

    def curve(self, column: str, level: str) -> pd.DataFrame:
        """Every evaluated size with its metric and faithfulness (``column`` names the size)."""
        sizes = sorted(self.evaluated)
        return pd.DataFrame({column: sizes, "metric": [self.evaluated[k] for k in sizes],
                             "faithfulness": [self.faithfulness(k) for k in sizes], "level": level})


def search_size(metric_at: Callable[[int], float], total: int, clean: float, fraction: float, unchanged: str,
                progress: bool = True) -> SizeSearch:
    """Find the smallest k whose ``metric_at(k)`` (the metric with the top-k units kept) recovers ``fraction`` of
    ``clean`` relative to keeping nothing, evaluating each size once (:func:`smallest_size`'s search).

    Raises:
        UserInputError: ``unchanged`` (a sentence) when keeping nothing leaves the metric at the clean value.
    """
    from tqdm.auto import tqdm

    evaluated: dict[int, float] = {}
    bar = tqdm(disable=not progress, desc="circuit sizes", unit="eval")

    def evaluate(k: int) -> float:
        if k not in evaluated:
            evaluated[k] = metric_at(k)
            bar.update(1)
        return evaluated[k]

    ablated = evaluate(0)
    span = clean - ablated
    if abs(span) < 1e-9:
        raise UserInputError(unchanged)
    smallest_size(lambda k: (evaluate(k) - ablated) / span, total, fraction)
    bar.close()
    search = SizeSearch(0, evaluated, ablated, span)
    search.size = min(k for k in evaluated if search.faithfulness(k) >= fraction)  # the smallest of every size tried
    return search


def node_frame(subject: Subject) -> pd.DataFrame:
    """The nodes in forward order: the embeddings, then per layer its heads and its MLP."""
    rows = [dict(node=EMBED, kind="embed", layer=-1, head=-1)]
    for layer in range(subject.n_layers):
        rows += [dict(node=f"L{layer}.H{h}", kind="head", layer=layer, head=h) for h in range(subject.n_heads)]
        rows.append(dict(node=f"L{layer}.MLP", kind="mlp", layer=layer, head=-1))
    return pd.DataFrame(rows)


def node_scores(subject: Subject, clean: dict, corrupted: dict, metric: Callable[[Any], torch.Tensor],
                method: str = "eap_ig", n_steps: int = 8) -> pd.DataFrame:
    """:func:`node_frame` with each node's attribution-patching (or EAP-IG) estimate of its effect."""
    from workbench.patching import attribution_patching

    if method not in NODE_METHODS:
        raise UserInputError(f"unknown node method {method!r}; choose from {', '.join(NODE_METHODS)}")
    heads = attribution_patching(subject, clean, corrupted, metric, "heads", method, n_steps)
    mlps = attribution_patching(subject, clean, corrupted, metric, "mlp", method, n_steps)
    positions = attribution_patching(subject, clean, corrupted, metric, "positions", method, n_steps)
    frame = node_frame(subject)
    by_head = heads.set_index(["layer", "head"])["effect"]
    by_mlp = mlps.set_index("layer")["effect"]
    embed = float(positions.loc[positions["layer"] == 0, "effect"].sum())  # the embeddings, every position
    frame["score"] = [embed if kind == "embed" else float(by_mlp[layer]) if kind == "mlp"
                      else float(by_head[(layer, head)])
                      for kind, layer, head in zip(frame["kind"], frame["layer"], frame["head"])]
    span = heads.attrs["clean"] - heads.attrs["corrupted"]
    frame["normalized"] = frame["score"] / span
    frame.attrs.update(clean=heads.attrs["clean"], corrupted=heads.attrs["corrupted"])
    return frame


def node_references(subject: Subject, clean: dict, corrupted: dict, ablation: str = "patch") -> dict[str, torch.Tensor]:
    """What a node outside the circuit carries, per hook: the corrupted run's activation ("patch") or the clean
    run's mean over examples at each position ("mean")."""
    if ablation not in NODE_ABLATIONS:
        raise UserInputError(f"unknown ablation {ablation!r}; choose from {', '.join(NODE_ABLATIONS)}")
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.{s}" for l in range(subject.n_layers)
                                           for s in ("attn.hook_z", "hook_mlp_out")]
    source = corrupted if ablation == "patch" else clean
    with torch.no_grad():
        cache = run_task_with_cache(subject, source, names)
    if ablation == "patch":
        return {name: cache[name] for name in names}
    return {name: cache[name].mean(0, keepdim=True).expand_as(cache[name]) for name in names}


@torch.no_grad()
def node_patched_metric(subject: Subject, clean: dict, references: dict[str, torch.Tensor], keep: set[str],
                        metric: Callable[[Any], torch.Tensor]) -> float:
    """The metric of the clean run with every node not in ``keep`` (node names) set to its reference value."""
    hooks: list[tuple[str, Any]] = []
    if EMBED not in keep:
        hooks.append(("blocks.0.hook_resid_pre", lambda x, info: references["blocks.0.hook_resid_pre"]))
    for layer in range(subject.n_layers):
        patched = [h for h in range(subject.n_heads) if f"L{layer}.H{h}" not in keep]
        if patched:
            def heads(z: torch.Tensor, info: Any, patched: list[int] = patched) -> torch.Tensor:
                out = z.clone()  # z: [batch, pos, n_heads, d_head]
                out[:, :, patched] = references[info.name][:, :, patched]
                return out

            hooks.append((f"blocks.{layer}.attn.hook_z", heads))
        if f"L{layer}.MLP" not in keep:
            name = f"blocks.{layer}.hook_mlp_out"
            hooks.append((name, lambda y, info: references[info.name]))  # [batch, pos, d_model]
    with subject.hooks(hooks):
        return float(metric(run_task(subject, clean)))


def discover_node_circuit(subject: Subject, clean: Any, corrupted: Any, metric: Callable[[Any], torch.Tensor],
                          fraction: float = 0.9, method: str = "eap_ig", n_steps: int = 8, ablation: str = "patch",
                          scores: Optional[pd.DataFrame] = None, progress: bool = False) -> NodeCircuit:
    """Rank nodes by |attribution patching| or |EAP-IG| and keep the smallest top k whose exact faithfulness
    reaches ``fraction`` (see the module docstring).

    Args:
        scores: a :func:`node_scores` table computed before (e.g. read back from a resumed run).
    """

    if not 0 < fraction <= 1:
        raise UserInputError(f"fraction must be in (0, 1], got {fraction}")
    a, b = task_inputs(subject, clean), task_inputs(subject, corrupted)
    if a["input_ids"].shape != b["input_ids"].shape:
        raise UserInputError(f"clean and corrupted inputs differ in shape: {tuple(a['input_ids'].shape)} vs "
                             f"{tuple(b['input_ids'].shape)}; patching needs aligned tokens")
    nodes = node_scores(subject, a, b, metric, method, n_steps) if scores is None else scores.copy()
    nodes["rank"] = nodes["score"].abs().rank(ascending=False, method="first").astype(int)
    order = nodes.sort_values("rank")["node"].tolist()
    references = node_references(subject, a, b, ablation)
    with torch.no_grad():
        clean_m = float(metric(run_task(subject, a)))
    search = search_size(lambda k: node_patched_metric(subject, a, references, set(order[:k]), metric), len(order),
                         clean_m, fraction, "replacing every node leaves the metric unchanged; nothing to discover",
                         progress)
    size = search.size
    nodes["in_circuit"] = nodes["rank"] <= size
    nodes["level"] = "nodes"
    curve = search.curve("n_nodes", "nodes")
    summary = {"model": subject.name, "level": "nodes", "method": method,
               "n_steps": n_steps if method == "eap_ig" else 1, "ablation": ablation, "fraction": fraction,
               "n_nodes": int(size), "n_nodes_total": len(nodes), "faithfulness": search.faithfulness(size),
               "metric_clean": clean_m, "metric_corrupted": float(nodes.attrs.get("corrupted", float("nan"))),
               "metric_ablated": search.ablated, "metric_circuit": search.evaluated[size],
               "kept": order[:size]}
    logger.info("node circuit of %d/%d nodes recovers %.3f of the metric", size, len(nodes), summary["faithfulness"])
    return NodeCircuit(nodes, curve, summary)
