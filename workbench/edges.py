"""Edges between components: edge attribution patching (EAP), EAP-IG, and exact edge patching.

The computational graph (Elhage et al. 2021's residual-stream view; the graph of ACDC, Conmy et al. 2023,
arXiv 2304.14997): upstream nodes are the embeddings (``embed``: block 0's input), each head's output
(``L{l}.H{h}``: ``z_h @ W_O[h]``) and each MLP's output (``MLP{l}``); downstream nodes are each head's query,
key and value inputs (``L{l}.H{h}.q|k|v``), each MLP's input (``MLP{l}``) and the read-out (``logits``: the
final residual stream, which the final norm and the model's head read). In a pre-norm block the input of every
downstream node is the sum of the outputs of the upstream nodes before it (plus constant biases), so an edge
u -> d is one term of that sum: patching it adds ``(reference - current)`` of u's output to d's input only.

- :func:`edge_attribution`: every edge's effect at once, from gradients at each downstream input.
  ``method="eap"`` (Syed et al. 2023, arXiv 2310.10348): ``(out_u(clean) - out_u(corrupted)) . dm/d in_d`` at
  the clean run, a first-order estimate of how much the metric drops when the edge is patched from the
  corrupted run; two forward passes and one backward. ``method="eap_ig"`` (Hanna et al. 2024, arXiv
  2403.17806): the gradient averaged over ``n_steps`` runs whose input embeddings are interpolated from
  corrupted to clean (k / n_steps, k = 1..n_steps), an integrated-gradients path that is less sensitive to the
  metric's saturation.
- :func:`patched_metric`: exact edge patching, the metric of the clean run with a set of edges patched from a
  reference (the corrupted run, or the clean run's mean over examples); :func:`exact_edge_effects` patches one
  edge at a time (one forward pass per edge: for verifying the estimates on small models).

How one forward pass gives every head its own input: the batch is copied ``2 + 3 * n_heads`` times. Copy 0 is
the real run; at each block's input, copy ``1 + 3h + k`` receives the real residual stream plus whatever is
patched into (or probed at) head h's query (k=0), key (1) or value (2) input, and the real run takes head h's
q, k and v from those copies; the last copy does the same for the MLP's input (at ``hook_resid_mid``), and the
real run takes its MLP output from it. The copies' own streams are overwritten at every block, so they never
influence the real run except through these per-head, per-input slots. Only hook names are used; the family's
adapter supplies each head's output projection (``head_output_weights``), which exists where the residual
stream is a sum (pre-norm: a pre-norm Atinuke, GPT-2, Llama/Mistral/Qwen2, GPT-NeoX, ModernBERT); post-norm blocks
(the paper's Atinuke, BERT, DeBERTa-v2) are refused. Under grouped-query attention (Llama-family configs with
fewer key/value heads) a key/value head's input is shared by the query heads of its group, so the key and value
inputs are nodes of their own (``L{l}.KV{g}.k|v``) and the batch is copied ``2 + n_heads + 2 * n_kv_heads``
times (:meth:`EdgeGraph.slot`). With GPT-NeoX's parallel residual (Pythia) block l's MLP reads
``ln2(resid_pre)``: its copy's input is set at ``hook_resid_pre`` and its upstream set excludes block l's heads.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import pandas as pd
import torch

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

EDGE_METHODS = ("eap", "eap_ig")
QKV = ("q", "k", "v")
# Given the up-to-now outputs of the real run (upstream index -> [batch, pos, d_model]) and the downstream
# indices of one hook, what to add to each of those inputs ([len(indices), batch, pos, d_model]) or None.
Inject = Callable[[list[int], dict[int, torch.Tensor]], Optional[torch.Tensor]]


@dataclass(frozen=True)
class EdgeGraph:
    """The nodes and edges of a model with ``n_layers`` blocks of ``n_heads`` heads (indices as documented);
    ``parallel``: each MLP reads its block's input (GPT-NeoX's parallel residual), so block l's heads do not feed
    block l's MLP; ``n_kv_heads`` (grouped-query attention, Ainslie et al. 2023): fewer key/value heads than query
    heads, so the key and value inputs are nodes of their own, ``L{l}.KV{g}.k|v``, one per key/value head g (read
    by query heads g * n_heads / n_kv_heads onwards)."""

    n_layers: int
    n_heads: int
    parallel: bool = False
    n_kv_heads: Optional[int] = None

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def grouped(self) -> bool:
        return self.kv_heads != self.n_heads

    @property
    def per_layer(self) -> int:
        """Head inputs per block: 3 * n_heads, or n_heads queries + 2 * n_kv_heads keys and values."""
        return self.n_heads + 2 * self.kv_heads

    @property
    def upstream(self) -> list[str]:
        """0: ``embed``; 1 + l * n_heads + h: ``L{l}.H{h}``; 1 + n_layers * n_heads + l: ``MLP{l}``."""
        return (["embed"] + [f"L{l}.H{h}" for l in range(self.n_layers) for h in range(self.n_heads)]
                + [f"MLP{l}" for l in range(self.n_layers)])

    def _layer_inputs(self, l: int) -> list[str]:
        if not self.grouped:
            return [f"L{l}.H{h}.{x}" for h in range(self.n_heads) for x in QKV]
        return ([f"L{l}.H{h}.q" for h in range(self.n_heads)]
                + [f"L{l}.KV{g}.{x}" for g in range(self.kv_heads) for x in QKV[1:]])

    @property
    def downstream(self) -> list[str]:
        """l * per_layer + :meth:`head_input`'s slot: block l's head inputs (``L{l}.H{h}.{q,k,v}``, or with grouped
        keys and values ``L{l}.H{h}.q`` then ``L{l}.KV{g}.{k,v}``); n_layers * per_layer + l: ``MLP{l}``; last:
        logits."""
        return ([n for l in range(self.n_layers) for n in self._layer_inputs(l)]
                + [f"MLP{l}" for l in range(self.n_layers)] + ["logits"])

    def head(self, layer: int, head: int) -> int:
        return 1 + layer * self.n_heads + head

    def mlp(self, layer: int) -> int:
        return 1 + self.n_layers * self.n_heads + layer

    def slot(self, head: int, kind: int) -> int:
        """Where the input ``kind`` (0 q, 1 k, 2 v) of ``head`` sits among its block's head inputs; for k and v
        under grouped-query attention ``head`` is the key/value head."""
        if not self.grouped:
            return 3 * head + kind
        return head if kind == 0 else self.n_heads + 2 * head + kind - 1

    def head_input(self, layer: int, head: int, kind: int) -> int:
        return layer * self.per_layer + self.slot(head, kind)

    def mlp_input(self, layer: int) -> int:
        return self.n_layers * self.per_layer + layer

    @property
    def logits(self) -> int:
        return self.n_layers * self.per_layer + self.n_layers

    def _order(self, upstream: bool) -> torch.Tensor:
        heads = [2 * l for l in range(self.n_layers) for _ in range(self.n_heads)]
        if upstream:  # the embeddings come first; a head feeds its own block's MLP
            return torch.tensor([-1] + heads + [2 * l + 1 for l in range(self.n_layers)])
        mlp_inputs = [2 * l if self.parallel else 2 * l + 1 for l in range(self.n_layers)]  # parallel: = heads'
        inputs = [2 * l for l in range(self.n_layers) for _ in range(self.per_layer)]
        return torch.tensor(inputs + mlp_inputs + [2 * self.n_layers])

    @property
    def valid(self) -> torch.Tensor:
        """bool [n_upstream, n_downstream]: u feeds d (u is computed before d's block step)."""
        return self._order(True)[:, None] < self._order(False)[None, :]

    def mask(self, edges: Iterable[tuple[str, str]]) -> torch.Tensor:
        """bool [n_upstream, n_downstream] with the named edges set; unknown or impossible edges are refused."""
        up, down = {n: i for i, n in enumerate(self.upstream)}, {n: i for i, n in enumerate(self.downstream)}
        mask = torch.zeros(len(up), len(down), dtype=torch.bool)
        valid = self.valid
        for u, d in edges:
            if u not in up or d not in down or not valid[up[u], down[d]]:
                raise UserInputError(f"no edge {u} -> {d} in a {self.n_layers}-layer, {self.n_heads}-head model")
            mask[up[u], down[d]] = True
        return mask

    def frame(self) -> pd.DataFrame:
        """One row per edge: ``edge`` ("u->d"), ``upstream``, ``downstream``, their indices and block layers."""
        valid = self.valid.nonzero().tolist()
        up, down = self.upstream, self.downstream
        order_u, order_d = self._order(True), self._order(False)
        return pd.DataFrame({"edge": [f"{up[u]}->{down[d]}" for u, d in valid],
                             "upstream": [up[u] for u, _ in valid], "downstream": [down[d] for _, d in valid],
                             "up_index": [u for u, _ in valid], "down_index": [d for _, d in valid],
                             "up_layer": [int(order_u[u]) // 2 if order_u[u] >= 0 else -1 for u, _ in valid],
                             "down_layer": [int(order_d[d]) // 2 for _, d in valid]})


def edge_graph(subject: Subject) -> EdgeGraph:
    """The subject's graph, after checking that its residual stream decomposes into component outputs."""
    adapter = subject.adapter
    for layer in range(subject.n_layers):
        if not adapter.residual_is_sum or adapter.head_output_weights(layer) is None:
            raise UserInputError(
                f"{subject.name}: edge patching needs a residual stream that is a sum of component outputs "
                f"(pre-norm blocks); the {adapter.family} blocks here are post-norm, so use node patching "
                "(`workbench patch`) instead")
    kv = adapter.n_kv_heads
    return EdgeGraph(subject.n_layers, subject.n_heads, adapter.parallel_residual,
                     None if kv is None or kv == subject.n_heads else kv)


def _rows(output: Any, n: int, total: int) -> Any:
    """The first ``n`` examples of a batched model output (tensors whose first dimension is ``total``)."""
    def take(value: Any) -> Any:
        return value[:n] if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == total else value

    if isinstance(output, torch.Tensor):
        return take(output)
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return dataclasses.replace(output, **{f.name: take(getattr(output, f.name)) for f in dataclasses.fields(output)
                                              if f.init})
    if isinstance(output, dict):  # transformers' ModelOutput is an OrderedDict
        return type(output)(**{k: take(v) for k, v in output.items()})
    if isinstance(output, tuple):
        return tuple(take(v) for v in output)
    return output


def split_forward(subject: Subject, graph: EdgeGraph, inputs: dict[str, torch.Tensor], inject: Inject,
                  embed: Optional[torch.Tensor] = None) -> tuple[Any, dict[int, torch.Tensor]]:
    """One forward pass in which every downstream node has its own input (see the module docstring).

    Args:
        inputs: the model's inputs [batch, pos] (the real run).
        inject: what to add to downstream inputs, given the real run's upstream outputs so far.
        embed: replaces ``embed.hook_embed`` of the real run ([batch, pos, d_model]; EAP-IG's interpolation).

    Returns:
        (the real run's output, its upstream outputs by index: [batch, pos, d_model] each).
    """
    L, H = graph.n_layers, graph.n_heads
    n = inputs["input_ids"].shape[0]
    S = graph.per_layer
    copies = 2 + S
    mlp_row = (1 + S) * n
    weights = [subject.adapter.head_output_weights(layer) for layer in range(L)]
    outputs: dict[int, torch.Tensor] = {}

    def resid_pre(x: torch.Tensor, info: Any) -> torch.Tensor:  # [copies * batch, pos, d_model]
        base = x[:n]
        if info.layer == 0:
            outputs[0] = base
        wanted = [info.layer * S + j for j in range(S)]
        extra = inject(wanted, outputs)  # [S, batch, pos, d_model] or None
        heads = base.unsqueeze(0).expand(S, *base.shape) if extra is None else base.unsqueeze(0) + extra
        mlp = x[mlp_row:]
        if graph.parallel:  # the MLP reads ln2(resid_pre): its copy's input is set here, before any head runs
            mlp_extra = inject([graph.mlp_input(info.layer)], outputs)
            mlp = base if mlp_extra is None else base + mlp_extra[0]
        return torch.cat([base, heads.reshape(-1, *base.shape[1:]), mlp])

    def mix(kind: int) -> Callable[[torch.Tensor, Any], torch.Tensor]:
        def hook(t: torch.Tensor, info: Any) -> torch.Tensor:  # [copies * batch, pos, n_heads (or n_kv), d_head]
            slots = [1 + graph.slot(h, kind) for h in range(t.shape[2])]
            own = [t[j * n:(j + 1) * n, :, h] for h, j in enumerate(slots)]
            return torch.cat([torch.stack(own, dim=2), t[n:]])
        return hook

    def z_out(z: torch.Tensor, info: Any) -> None:  # [copies * batch, pos, n_heads, d_head]
        W = weights[info.layer]
        assert W is not None  # edge_graph checked every layer
        per_head = torch.einsum("bphd,hdm->hbpm", z[:n], W.to(z.dtype))  # [n_heads, batch, pos, d_model]
        for h in range(H):
            outputs[graph.head(info.layer, h)] = per_head[h]

    def resid_mid(x: torch.Tensor, info: Any) -> torch.Tensor:  # [copies * batch, pos, d_model]
        base = x[:n]
        extra = inject([graph.mlp_input(info.layer)], outputs)
        return torch.cat([x[:mlp_row], base if extra is None else base + extra[0]])

    def mlp_out(y: torch.Tensor, info: Any) -> torch.Tensor:  # [copies * batch, pos, d_model]
        own = y[mlp_row:]
        outputs[graph.mlp(info.layer)] = own
        return torch.cat([own, y[n:]])

    def final(x: torch.Tensor, info: Any) -> Optional[torch.Tensor]:  # [copies * batch, pos, d_model]
        extra = inject([graph.logits], outputs)
        return None if extra is None else torch.cat([x[:n] + extra[0], x[n:]])

    hooks: list[tuple[str, Any]] = []
    if embed is not None:
        hooks.append(("embed.hook_embed", lambda e, info: torch.cat([embed, e[n:]])))
    for layer in range(L):
        prefix = f"blocks.{layer}."
        hooks += [(prefix + "hook_resid_pre", resid_pre), (prefix + "attn.hook_q", mix(0)),
                  (prefix + "attn.hook_k", mix(1)), (prefix + "attn.hook_v", mix(2)), (prefix + "attn.hook_z", z_out),
                  (prefix + "hook_mlp_out", mlp_out)]
        if not graph.parallel:  # a parallel block has no resid_mid: its MLP's input was set at resid_pre
            hooks.append((prefix + "hook_resid_mid", resid_mid))
    hooks.append((f"blocks.{L - 1}.hook_resid_post", final))
    batch = {k: v.repeat(copies, *([1] * (v.dim() - 1))) for k, v in inputs.items()}
    with subject.hooks(hooks):
        output = subject.forward(batch)
    return _rows(output, n, copies * n), outputs


def node_outputs(subject: Subject, graph: EdgeGraph, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every upstream node's output on a plain run: [n_upstream, batch, pos, d_model]."""
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.{s}" for l in range(graph.n_layers)
                                           for s in ("attn.hook_z", "hook_mlp_out")]
    with torch.no_grad():
        cache = subject.run_with_cache(inputs, names)
    heads = []
    for layer in range(graph.n_layers):
        W = subject.adapter.head_output_weights(layer)
        assert W is not None
        heads.append(torch.einsum("bphd,hdm->hbpm", cache[f"blocks.{layer}.attn.hook_z"], W))  # [H, batch, pos, d]
    mlps = [cache[f"blocks.{layer}.hook_mlp_out"] for layer in range(graph.n_layers)]
    return torch.stack([cache["blocks.0.hook_resid_pre"], *torch.cat(heads), *mlps]).detach()


def _prepare(subject: Subject, clean: Any, corrupted: Any) -> tuple[dict, dict]:
    a, b = subject.as_inputs(clean), subject.as_inputs(corrupted)
    if a["input_ids"].shape != b["input_ids"].shape:
        raise UserInputError(f"clean and corrupted inputs differ in shape: {tuple(a['input_ids'].shape)} vs "
                             f"{tuple(b['input_ids'].shape)}; patching needs aligned tokens")
    return a, b


def edge_attribution(subject: Subject, clean: Any, corrupted: Any, metric: Callable[[Any], torch.Tensor],
                     method: str = "eap_ig", n_steps: int = 8) -> pd.DataFrame:
    """Score every edge by EAP or EAP-IG (see the module docstring).

    Returns:
        :meth:`EdgeGraph.frame` plus ``score`` (estimated m_clean - m_edge_patched) and ``normalized``
        (score / (m_clean - m_corrupted)); ``attrs`` hold ``clean`` and ``corrupted`` metrics.
    """
    if method not in EDGE_METHODS:
        raise UserInputError(f"unknown edge method {method!r}; choose from {', '.join(EDGE_METHODS)}")
    if n_steps < 1:
        raise UserInputError(f"n_steps must be positive, got {n_steps}")
    graph = edge_graph(subject)
    clean, corrupted = _prepare(subject, clean, corrupted)
    with torch.no_grad():
        clean_m, corrupted_m = float(metric(subject.forward(clean))), float(metric(subject.forward(corrupted)))
        _scored(graph, torch.zeros(len(graph.upstream), len(graph.downstream)), clean_m, corrupted_m)  # span check
        embeds = [subject.run_with_cache(x, ["embed.hook_embed"])["embed.hook_embed"] for x in (clean, corrupted)]
    diff = node_outputs(subject, graph, clean) - node_outputs(subject, graph, corrupted)  # [U, batch, pos, d]
    steps = [1.0] if method == "eap" else [k / n_steps for k in range(1, n_steps + 1)]
    grads = torch.zeros(len(graph.downstream), *diff.shape[1:])  # [D, batch, pos, d_model]
    with subject.frozen():
        for alpha in steps:
            probes = torch.zeros_like(grads, requires_grad=True)

            def inject(indices: list[int], outputs: dict[int, torch.Tensor]) -> torch.Tensor:
                return probes[indices]

            embed = None if alpha == 1.0 else embeds[1] + alpha * (embeds[0] - embeds[1])  # [batch, pos, d]
            output, _ = split_forward(subject, graph, clean, inject, embed)
            grads += torch.autograd.grad(metric(output), probes)[0] / len(steps)
    scores = torch.einsum("ubpm,dbpm->ud", diff, grads)  # [U, D]
    return _scored(graph, scores, clean_m, corrupted_m)


def _scored(graph: EdgeGraph, scores: torch.Tensor, clean_m: float, corrupted_m: float) -> pd.DataFrame:
    span = clean_m - corrupted_m
    if abs(span) < 1e-9:
        raise UserInputError("the metric is the same on the clean and corrupted inputs; nothing to patch")
    frame = graph.frame()
    picked = scores[torch.tensor(frame["up_index"].tolist()), torch.tensor(frame["down_index"].tolist())]
    values = picked.detach().double().numpy()
    frame["score"] = values
    frame["normalized"] = values / span
    frame.attrs.update(clean=clean_m, corrupted=corrupted_m)
    return frame


def reference_outputs(subject: Subject, graph: EdgeGraph, clean: dict, corrupted: dict,
                      ablation: str = "patch") -> torch.Tensor:
    """What a patched edge carries: the corrupted run's outputs ("patch") or the clean run's mean over
    examples at each position ("mean", mean ablation; Wang et al. 2022). [U, batch, pos, d_model]."""
    if ablation == "patch":
        return node_outputs(subject, graph, corrupted)
    if ablation == "mean":
        outputs = node_outputs(subject, graph, clean)
        return outputs.mean(1, keepdim=True).expand_as(outputs)
    raise UserInputError(f"unknown ablation {ablation!r}; choose 'patch' or 'mean'")


@torch.no_grad()
def patched_metric(subject: Subject, graph: EdgeGraph, clean: dict, reference: torch.Tensor,
                   patched: torch.Tensor, metric: Callable[[Any], torch.Tensor]) -> float:
    """The metric of the clean run with every edge in ``patched`` (bool [U, D]) carrying ``reference``."""
    if patched.shape != (len(graph.upstream), len(graph.downstream)):
        raise UserInputError(f"edge mask of shape {tuple(patched.shape)}; expected "
                             f"{(len(graph.upstream), len(graph.downstream))}")
    patched = patched & graph.valid

    def inject(indices: list[int], outputs: dict[int, torch.Tensor]) -> Optional[torch.Tensor]:
        known = sorted(outputs)
        mask = patched[known][:, indices]  # [n_known, n_indices]
        if not mask.any():
            return None
        delta = torch.stack([reference[u] - outputs[u] for u in known])  # [n_known, batch, pos, d_model]
        return torch.einsum("ud,ubpm->dbpm", mask.to(delta.dtype), delta)

    output, _ = split_forward(subject, graph, clean, inject)
    return float(metric(output))


def exact_edge_effects(subject: Subject, clean: Any, corrupted: Any, metric: Callable[[Any], torch.Tensor],
                       edges: Optional[Sequence[int]] = None, progress: bool = False) -> pd.DataFrame:
    """Patch each edge alone from the corrupted run into the clean one: one forward pass per edge.

    Args:
        edges: row numbers of :meth:`EdgeGraph.frame` to patch (default: all).

    Returns:
        The edge frame (those rows) with ``score`` = m_clean - m_patched and ``normalized`` as in
        :func:`edge_attribution`.
    """
    from tqdm.auto import tqdm

    graph = edge_graph(subject)
    clean, corrupted = _prepare(subject, clean, corrupted)
    with torch.no_grad():
        clean_m, corrupted_m = float(metric(subject.forward(clean))), float(metric(subject.forward(corrupted)))
    reference = reference_outputs(subject, graph, clean, corrupted)
    frame = graph.frame()
    rows = list(range(len(frame))) if edges is None else list(edges)
    scores = torch.zeros(len(graph.upstream), len(graph.downstream), dtype=torch.float64)
    for row in tqdm(rows, disable=not progress, desc="patching edges"):
        u, d = int(frame.at[row, "up_index"]), int(frame.at[row, "down_index"])
        mask = torch.zeros_like(graph.valid)
        mask[u, d] = True
        scores[u, d] = clean_m - patched_metric(subject, graph, clean, reference, mask, metric)
    return _scored(graph, scores, clean_m, corrupted_m).iloc[rows].reset_index(drop=True)
