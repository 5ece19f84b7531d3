"""Which components carry a prediction: exact activation patching and attribution patching, for any target.

A metric is any scalar function of the model's output (a class-logit difference, a span score, a tag logit,
an antecedent score, a next-token log-probability); :func:`logit_difference` builds the usual one.
Effects are normalised so that 0 is the corrupted run and 1 the clean run:
(m_patched - m_corrupted) / (m_clean - m_corrupted) ("denoising": clean activations into the corrupted run).

- :func:`exact_patching`: one patched forward pass per component (each head's z, each layer's MLP output,
  or each (layer, position) of the residual stream), batched per layer (Meng et al. 2022; Wang et al. 2022).
- :func:`attribution_patching`: the first-order estimate (z_clean - z_corrupted) . dm/dz at the corrupted
  run for every component at once: two forward passes and one backward (Nanda 2023; Syed et al. 2023,
  arXiv 2310.10348).
- ``method="eap_ig"``: the gradient averaged over ``n_steps`` inputs interpolated between the corrupted and
  clean token embeddings (EAP-IG, Hanna et al. 2024, arXiv 2403.17806), which is less sensitive to the
  metric's curvature.

Gradients are taken through zero-valued additive probes on each activation, so no path between components
is cut (replacing an activation by a leaf tensor would drop every path through it).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import pandas as pd
import torch

from atinuke.errors import UserInputError

logger = logging.getLogger(__name__)

COMPONENTS = ("heads", "mlp", "positions")
METHODS = ("attribution", "eap_ig")


def logit_difference(correct: Sequence[int] | int, wrong: Sequence[int] | int) -> Callable[[Any], torch.Tensor]:
    """Metric: mean over examples of logit[correct] - logit[wrong] of a classification output."""

    def metric(output: Any) -> torch.Tensor:
        logits = output.logits if hasattr(output, "logits") else output[0]  # [batch, classes]
        rows = torch.arange(logits.shape[0])
        return (logits[rows, torch.as_tensor(correct).expand(len(rows))]
                - logits[rows, torch.as_tensor(wrong).expand(len(rows))]).mean()

    return metric


def _hook(component: str, layer: int) -> str:
    return {"heads": f"blocks.{layer}.attn.hook_z", "mlp": f"blocks.{layer}.hook_mlp_out",
            "positions": f"blocks.{layer}.hook_resid_pre"}[component]


def _check(subject: Any, clean: Any, corrupted: Any, component: str) -> tuple[dict, dict]:
    if component not in COMPONENTS:
        raise UserInputError(f"unknown component {component!r}; choose from {', '.join(COMPONENTS)}")
    a, b = subject._as_inputs(clean), subject._as_inputs(corrupted)
    if a["input_ids"].shape != b["input_ids"].shape:
        raise UserInputError(f"clean and corrupted inputs differ in shape: {tuple(a['input_ids'].shape)} vs "
                             f"{tuple(b['input_ids'].shape)}; patching needs aligned tokens")
    return a, b


def _frame(component: str, effects: torch.Tensor, clean_m: float, corrupted_m: float) -> pd.DataFrame:
    span = clean_m - corrupted_m
    if abs(span) < 1e-9:
        raise UserInputError("the metric is the same on the clean and corrupted inputs; nothing to patch")
    label = {"heads": "head", "mlp": "mlp", "positions": "position"}[component]
    rows = [dict(layer=layer, **({label: index} if component != "mlp" else {}), effect=float(value),
                 normalized=float(value) / span)
            for layer in range(effects.shape[0]) for index, value in enumerate(effects[layer])]
    frame = pd.DataFrame(rows)
    frame.attrs.update(clean=clean_m, corrupted=corrupted_m)
    return frame


@torch.no_grad()
def exact_patching(subject: Any, clean: Any, corrupted: Any, metric: Callable[[Any], torch.Tensor],
                   component: str = "heads", progress: bool = False) -> pd.DataFrame:
    """Patch each component from the clean run into the corrupted one, one at a time.

    Returns:
        DataFrame: ``layer``, ``head`` (or ``position``; nothing for ``mlp``), ``effect`` (m_patched -
        m_corrupted) and ``normalized`` (effect / (m_clean - m_corrupted)); ``attrs`` hold both metrics.
    """
    from tqdm.auto import tqdm

    clean, corrupted = _check(subject, clean, corrupted, component)
    names = [_hook(component, layer) for layer in range(subject.n_layers)]
    cache = subject.run_with_cache(clean, names)
    clean_m, corrupted_m = float(metric(cache.output)), float(metric(subject.forward(corrupted)))
    width = {"heads": subject.n_heads, "mlp": 1, "positions": corrupted["input_ids"].shape[1]}[component]
    effects = torch.zeros(subject.n_layers, width)
    for layer in tqdm(range(subject.n_layers), disable=not progress, desc=f"patching {component}"):
        source = cache[names[layer]]
        for index in range(width):
            def restore(activation: torch.Tensor, info: Any, index: int = index) -> torch.Tensor:
                out = activation.clone()
                if component == "heads":
                    out[:, :, index] = source[:, :, index]  # z: [batch, pos, heads, d_head]
                elif component == "positions":
                    out[:, index] = source[:, index]  # [batch, pos, d]
                else:
                    out = source.clone()
                return out

            with subject.hooks([(names[layer], restore)]):
                effects[layer, index] = float(metric(subject.forward(corrupted))) - corrupted_m
    return _frame(component, effects, clean_m, corrupted_m)


def attribution_patching(subject: Any, clean: Any, corrupted: Any, metric: Callable[[Any], torch.Tensor],
                         component: str = "heads", method: str = "attribution", n_steps: int = 8) -> pd.DataFrame:
    """Estimate every component's patching effect from gradients (same table as :func:`exact_patching`)."""
    if method not in METHODS:
        raise UserInputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if n_steps < 1:
        raise UserInputError(f"n_steps must be positive, got {n_steps}")
    clean, corrupted = _check(subject, clean, corrupted, component)
    names = [_hook(component, layer) for layer in range(subject.n_layers)]
    with torch.no_grad():
        clean_cache = subject.run_with_cache(clean, names + ["embed.hook_embed"])
        corrupted_cache = subject.run_with_cache(corrupted, names + ["embed.hook_embed"])
    clean_m, corrupted_m = float(metric(clean_cache.output)), float(metric(corrupted_cache.output))
    steps = [0.0] if method == "attribution" else [(k + 0.5) / n_steps for k in range(n_steps)]
    gradients = {name: torch.zeros_like(corrupted_cache[name]) for name in names}
    e_clean, e_corrupted = clean_cache["embed.hook_embed"], corrupted_cache["embed.hook_embed"]
    with subject.frozen():
        for alpha in steps:
            probes = {name: torch.zeros_like(corrupted_cache[name], requires_grad=True) for name in names}

            def add(activation: torch.Tensor, info: Any) -> torch.Tensor:
                return activation + probes[info.name]

            def interpolate(activation: torch.Tensor, info: Any, alpha: float = alpha) -> torch.Tensor:
                return e_corrupted + alpha * (e_clean - e_corrupted)  # [batch, pos, d]

            hooks = [(name, add) for name in names]
            if alpha > 0:
                hooks.insert(0, ("embed.hook_embed", interpolate))
            with subject.hooks(hooks):
                value = metric(subject.forward(corrupted))
            grads = torch.autograd.grad(value, [probes[n] for n in names])
            for name, grad in zip(names, grads):
                gradients[name] += grad / len(steps)
    width = {"heads": subject.n_heads, "mlp": 1, "positions": corrupted["input_ids"].shape[1]}[component]
    effects = torch.zeros(subject.n_layers, width)
    for layer, name in enumerate(names):
        product = (clean_cache[name] - corrupted_cache[name]) * gradients[name]
        if component == "heads":
            effects[layer] = product.sum((0, 1, 3))  # [heads]
        elif component == "positions":
            effects[layer] = product.sum((0, 2))  # [pos]
        else:
            effects[layer, 0] = product.sum()
    return _frame(component, effects.detach(), clean_m, corrupted_m)
