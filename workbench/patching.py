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

import functools
import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import pandas as pd
import torch

from atinuke.errors import UserInputError
from workbench.kinds import task_workbench_kind

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

COMPONENTS = ("heads", "mlp", "positions")
METHODS = ("attribution", "eap_ig")


def logit_difference(correct: Sequence[int] | int | torch.Tensor, wrong: Sequence[int] | int | torch.Tensor
                     ) -> Callable[[Any], torch.Tensor]:
    """Metric: mean over examples of logit[correct] - logit[wrong] of a classification output."""

    def metric(output: Any) -> torch.Tensor:
        logits = output.logits if hasattr(output, "logits") else output[0]  # [batch, classes]
        rows = torch.arange(logits.shape[0])
        return (logits[rows, torch.as_tensor(correct).expand(len(rows))]
                - logits[rows, torch.as_tensor(wrong).expand(len(rows))]).mean()

    return metric


TOKENIZER_ONLY = ("offset_mapping", "special_tokens_mask", "token_type_ids", "input_ids", "attention_mask")


def task_inputs(subject: Subject, inputs: Any) -> dict[str, torch.Tensor]:
    """The model's inputs (:meth:`Subject.as_inputs`) plus any task-head tensors the mapping carries (a
    coreference head's candidate spans, an SRL head's predicate mask), which every patched run passes on."""
    batch = subject.as_inputs(inputs)
    if isinstance(inputs, Mapping):
        batch.update({k: v for k, v in inputs.items() if k not in TOKENIZER_ONLY and isinstance(v, torch.Tensor)})
    return batch


def run_task(subject: Subject, inputs: dict[str, torch.Tensor]) -> Any:
    """:meth:`Subject.forward` on :func:`task_inputs`, passing the task-head tensors to the head."""
    model = set(subject.adapter.model_inputs) | {"attention_mask", "input_ids"}
    head: dict[str, Any] = {k: v for k, v in inputs.items() if k not in model}
    return subject.forward({k: v for k, v in inputs.items() if k in model}, **head)


def run_task_with_cache(subject: Subject, inputs: dict[str, torch.Tensor], names: Sequence[str]) -> Any:
    """:meth:`Subject.run_with_cache` on :func:`task_inputs`."""
    model = set(subject.adapter.model_inputs) | {"attention_mask", "input_ids"}
    head: dict[str, Any] = {k: v for k, v in inputs.items() if k not in model}
    return subject.run_with_cache({k: v for k, v in inputs.items() if k in model}, names, **head)


def _hook(component: str, layer: int) -> str:
    return {"heads": f"blocks.{layer}.attn.hook_z", "mlp": f"blocks.{layer}.hook_mlp_out",
            "positions": f"blocks.{layer}.hook_resid_pre"}[component]


def _check(subject: Subject, clean: Any, corrupted: Any, component: str) -> tuple[dict, dict]:
    if component not in COMPONENTS:
        raise UserInputError(f"unknown component {component!r}; choose from {', '.join(COMPONENTS)}")
    a, b = task_inputs(subject, clean), task_inputs(subject, corrupted)
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
def exact_patching(subject: Subject, clean: Any, corrupted: Any, metric: Callable[[Any], torch.Tensor],
                   component: str = "heads", progress: bool = False,
                   layers: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Patch each component from the clean run into the corrupted one, one at a time.

    Args:
        layers: only these layers' components (default: all); the rows are those of the full table.

    Returns:
        DataFrame: ``layer``, ``head`` (or ``position``; nothing for ``mlp``), ``effect`` (m_patched -
        m_corrupted) and ``normalized`` (effect / (m_clean - m_corrupted)); ``attrs`` hold both metrics.
    """
    from tqdm.auto import tqdm

    clean, corrupted = _check(subject, clean, corrupted, component)
    chosen = list(range(subject.n_layers)) if layers is None else sorted(set(layers))
    if any(not 0 <= layer < subject.n_layers for layer in chosen):
        raise UserInputError(f"layers {chosen}: the model has layers 0..{subject.n_layers - 1}")
    names = [_hook(component, layer) for layer in range(subject.n_layers)]
    cache = run_task_with_cache(subject, clean, [names[layer] for layer in chosen])
    clean_m, corrupted_m = float(metric(cache.output)), float(metric(run_task(subject, corrupted)))
    width = {"heads": subject.n_heads, "mlp": 1, "positions": corrupted["input_ids"].shape[1]}[component]
    effects = torch.zeros(subject.n_layers, width)
    for layer in tqdm(chosen, disable=not progress, desc=f"patching {component}"):
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
                effects[layer, index] = float(metric(run_task(subject, corrupted))) - corrupted_m
    frame = _frame(component, effects, clean_m, corrupted_m)
    if layers is None:
        return frame
    part = frame[frame["layer"].isin(chosen)].reset_index(drop=True)
    part.attrs.update(frame.attrs)
    return part


def attribution_patching(subject: Subject, clean: Any, corrupted: Any, metric: Callable[[Any], torch.Tensor],
                         component: str = "heads", method: str = "attribution", n_steps: int = 8) -> pd.DataFrame:
    """Estimate every component's patching effect from gradients (same table as :func:`exact_patching`)."""
    if method not in METHODS:
        raise UserInputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if n_steps < 1:
        raise UserInputError(f"n_steps must be positive, got {n_steps}")
    clean, corrupted = _check(subject, clean, corrupted, component)
    names = [_hook(component, layer) for layer in range(subject.n_layers)]
    with torch.no_grad():
        clean_cache = run_task_with_cache(subject, clean, names + ["embed.hook_embed"])
        corrupted_cache = run_task_with_cache(subject, corrupted, names + ["embed.hook_embed"])
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
                value = metric(run_task(subject, corrupted))
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


def default_metric(subject: Subject, clean: Any, corrupted: Any) -> tuple[Callable[[Any], torch.Tensor], str]:
    """The metric a user means for this subject, and its description.

    Classification: the logit of the clean prediction minus that of the corrupted prediction (or the clean
    runner-up when both agree). Regression: the predicted score. Span QA: the start + end logit of the clean
    best span. Tagging: the mean logit of the clean predicted tags. Coreference: a mention's clean top
    antecedent score minus its runner-up (:func:`workbench.coref_patching.coref_metric`; pass inputs built by
    :func:`workbench.coref_patching.coref_inputs`). A causal decoder: the next-token logit difference at the
    last real position (:func:`workbench.patch_metrics.next_token_metric`). A plain encoder: the [CLS] state's
    projection on the clean-minus-corrupted direction.
    """
    from workbench.lm import language_model
    from workbench.patch_metrics import is_causal, next_token_metric

    clean, corrupted = task_inputs(subject, clean), task_inputs(subject, corrupted)
    kind = task_workbench_kind(subject.task)
    if kind is None and is_causal(subject, clean) and language_model(subject) is not None:
        return next_token_metric(subject, clean, corrupted)
    with torch.no_grad():
        a, b = run_task(subject, clean), run_task(subject, corrupted)
    if kind is not None and kind.patching_metric is not None:  # a kind that brings its own default (coreference)
        return kind.patching_metric(a, b)
    logits = getattr(a, "logits", None)
    if logits is not None and logits.dim() == 2:
        right = logits.argmax(-1)
        other = b.logits.argmax(-1)
        runner_up = logits.topk(2, dim=-1).indices[:, 1]
        wrong = torch.where(other == right, runner_up, other)
        return logit_difference(right, wrong), "logit(clean prediction) - logit(corrupted prediction or runner-up)"
    if logits is not None and logits.dim() == 1:
        return (lambda out: out.logits.mean()), "predicted score"
    if getattr(a, "start_logits", None) is not None:
        start, end = a.start_logits.argmax(-1), a.end_logits.argmax(-1)
        rows = torch.arange(len(start))
        return (lambda out: (out.start_logits[rows, start] + out.end_logits[rows, end]).mean(),
                "start + end logit of the clean best span")
    if getattr(a, "tag_logits", None) is not None:
        tags = a.tag_logits.argmax(-1, keepdim=True)  # [batch, pos, 1]
        return (lambda out: out.tag_logits.gather(-1, tags).mean()), "mean logit of the clean predicted tags"
    if getattr(a, "last_hidden_state", None) is not None:
        mask = subject.as_inputs(clean)["attention_mask"]  # [batch, pos]
        # a decoder's first position sees only the first token: read its last real token instead of [CLS]
        read = (torch.arange(mask.shape[0]), mask.sum(1) - 1 if subject.causal else torch.zeros_like(mask[:, 0]))
        direction = (a.last_hidden_state[read] - b.last_hidden_state[read]).mean(0)
        where = "last token's" if subject.causal else "[CLS]"
        return (lambda out: (out.last_hidden_state[read] @ direction).mean(),
                f"{where} state along the clean-minus-corrupted direction")
    raise UserInputError(f"{subject.name}: no default patching metric for this head; pass a metric in Python")


# --------------------------------------------------------------------------------------------- CLI

def add_arguments(parser: Any) -> None:
    """``workbench patch``: which components carry the difference between a clean and a corrupted input."""
    parser.add_argument("--model", required=True, help="'minilm', a model directory or a fine-tuning run")
    parser.add_argument("--clean", required=True, help="the clean text")
    parser.add_argument("--corrupted", required=True, help="the corrupted text (the same number of tokens)")
    parser.add_argument("--clean-pair", default=None, help="second segment of the clean input (pair tasks)")
    parser.add_argument("--corrupted-pair", default=None, help="second segment of the corrupted input")
    parser.add_argument("--component", default="heads", choices=COMPONENTS)
    parser.add_argument("--method", default="all", choices=("exact", *METHODS, "all"))
    parser.add_argument("--n-steps", type=int, default=8, help="EAP-IG interpolation steps")
    parser.add_argument("--out", required=True, help="output directory (empty or new, unless --overwrite/--resume)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out (a part per exact layer and per method; same settings)")
    from workbench.cli import add_device_arguments

    add_device_arguments(parser)


def run(args: Any) -> int:
    """Write ``patching.parquet`` (one row per component and method) and ``summary.json``; each method's table
    is a resumable part (:mod:`workbench.resume`)."""
    from atinuke.io import atomic_write_json, check_out_dir, write_with
    from workbench.cli import resolve_subject
    from workbench.patch_metrics import pair_inputs
    from workbench.resume import ResumableParts

    out = check_out_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    subject = resolve_subject(args.model, None, args.device, args.dtype)
    clean, corrupted = pair_inputs(subject, args.clean, args.corrupted, args.clean_pair, args.corrupted_pair)
    metric, description = default_metric(subject, clean, corrupted)
    methods = ["exact", *METHODS] if args.method == "all" else [args.method]
    parts = ResumableParts(out, {"command": "patch", "model": subject.model_hash(), "clean": args.clean,
                                 "corrupted": args.corrupted, "clean_pair": args.clean_pair,
                                 "corrupted_pair": args.corrupted_pair, "component": args.component,
                                 "methods": methods, "n_steps": args.n_steps, "metric": description},
                           resume=args.resume)
    frames = []
    for method in methods:
        if method == "exact":  # one forward pass per component: one part per layer
            def layer_part(layer: int) -> pd.DataFrame:
                return exact_patching(subject, clean, corrupted, metric, args.component,
                                      layers=[layer]).assign(method="exact")

            layer_frames = [parts.table(f"exact-L{layer}", functools.partial(layer_part, layer))
                            for layer in range(subject.n_layers)]
            frame = pd.concat(layer_frames, ignore_index=True)
            frame.attrs.update(layer_frames[0].attrs)
            frames.append(frame)
            continue

        def compute(method: str = method) -> pd.DataFrame:
            return attribution_patching(subject, clean, corrupted, metric, args.component, method,
                                        args.n_steps).assign(method=method)

        frames.append(parts.table(method, compute))
    table = pd.concat(frames, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    write_with(out / "patching.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write_json(out / "summary.json", {"model": subject.name, "component": args.component, "metric": description,
                                             "clean": args.clean, "corrupted": args.corrupted, "methods": methods,
                                             "metric_clean": frames[0].attrs["clean"],
                                             "metric_corrupted": frames[0].attrs["corrupted"],
                                             "resumed_parts": parts.reused})
    top = table[table["method"] == methods[0]].sort_values("normalized", key=abs, ascending=False).head(5)
    print(f"{description}: clean {frames[0].attrs['clean']:.4g}, corrupted {frames[0].attrs['corrupted']:.4g}")
    print(top.to_string(index=False))
    return 0
