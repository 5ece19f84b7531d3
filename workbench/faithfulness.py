"""Do attributions tell the truth? Faithfulness, agreement, plausibility and sanity checks, with bootstrap CIs.

* ERASER comprehensiveness and sufficiency, and their AOPC over k in {1, 5, 10, 20, 50}% (DeYoung et al.,
  2020, "ERASER: A Benchmark to Evaluate Rationalized NLP Models", arXiv 1911.03429): comprehensiveness =
  f(x) - f(x without the top-k% tokens), sufficiency = f(x) - f(only the top-k% tokens); f is the predicted
  class probability for classification heads, else the target's value.
* Deletion and insertion curves (Petsiuk et al., 2018, "RISE", arXiv 1806.07421) with their areas.
* Rank agreement between methods: Kendall tau and top-k overlap (attention vs gradients: Jain & Wallace,
  2019, arXiv 1902.10186).
* Plausibility against gold rationales: token F1 of the top-|gold| tokens and AUPRC (DeYoung et al., 2020).
* Cascading model-parameter randomization (Adebayo et al., 2018, "Sanity Checks for Saliency Maps",
  arXiv 1810.03292): Spearman correlation between attributions of the trained and progressively
  randomised model.
* Percentile bootstrap confidence intervals over examples (Efron & Tibshirani, 1993) for every summary.

Erasing is token-level on the model input: ``erase="delete"`` removes the tokens (ERASER), "mask"/"pad"
replace them with [MASK]/[PAD] (positions kept). Special tokens and the target's own positions are never
erased.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from atinuke.errors import UserInputError
from workbench.attribution import Attribution, AttributionParams, attribute
from workbench.attribution.targets import (
    ClassTarget,
    Rows,
    Target,
    parse_target,
    rows_from_examples,
    rows_from_texts,
    unflatten_document,
)
from workbench.stats import mean_ci

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

ERASER_KS = (1, 5, 10, 20, 50)
ERASE_MODES = ("delete", "mask", "pad")


# ---------------------------------------------------------------------------------------------- utilities
def summarize(frame: pd.DataFrame, value_columns: Sequence[str], by: Sequence[str] = ("method",),
              n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Mean and bootstrap CI of each value column per group.

    Returns:
        DataFrame: the ``by`` columns, ``metric``, ``mean``, ``ci_low``, ``ci_high``, ``n``.
    """
    rows = []
    for keys, group in frame.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for column in value_columns:
            mean, low, high = mean_ci(group[column].tolist(), n_boot, alpha, seed)
            rows.append({**dict(zip(by, keys)), "metric": column, "mean": mean, "ci_low": low, "ci_high": high,
                         "n": int(group[column].notna().sum())})
    return pd.DataFrame(rows)


def _prepare(subject: Subject, inputs: Any, target: Any, text_pairs=None, example_ids=None) -> tuple[Rows, Target]:
    if isinstance(inputs, Rows):
        rows = inputs
    elif len(inputs) and isinstance(inputs[0], str):
        rows = rows_from_texts(subject, inputs, text_pairs, example_ids)
    else:
        rows = rows_from_examples(subject, inputs)
    target = parse_target(target, subject) if target is None or isinstance(target, str) else target
    if not isinstance(inputs, Rows):
        rows = target.prepare_rows(subject, rows)  # as attribute() prepared them (decoder targets)
    return rows, target


def _run(subject: Subject, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: Optional[torch.Tensor],
         head_inputs: dict[str, Any]) -> Any:
    return subject.forward({"input_ids": input_ids, "attention_mask": attention_mask,
                            "token_type_ids": token_type_ids}, **head_inputs)


def _values(subject: Subject, target: Target, output: Any, index: torch.Tensor, captured: dict) -> torch.Tensor:
    """[B] what faithfulness measures: class probability for classification heads, else the target value."""
    if isinstance(target, ClassTarget) and output.logits.dim() == 2:
        return output.logits.softmax(-1).gather(1, index[:, :1].to(output.logits.device)).squeeze(1)
    return target.select(output, index, captured)


def _fixed(rows: Rows, r: int) -> dict[str, torch.Tensor]:
    """Head inputs that are not row-aligned (coreference spans of document ``r``), else {}."""
    return rows.info[r].get("fixed_head_inputs", {}) if rows.info else {}


def _resolve(subject: Subject, rows: Rows, target: Target) -> torch.Tensor:
    indices = []
    # documents with their own span tensors run one by one; everything else in one batch
    groups = [[r] for r in range(len(rows))] if _fixed(rows, 0) else [list(range(len(rows)))]
    for group in groups:
        part = rows.select(group)
        captured: dict[str, torch.Tensor] = {}
        hooks = [] if target.capture is None else [(target.capture, lambda a, h: captured.__setitem__(h.name, a))]
        input_ids, attention_mask = part.input_ids, part.attention_mask
        layout = rows.info[group[0]].get("layout") if rows.info else None
        if layout is not None:
            input_ids, attention_mask, _ = unflatten_document(layout, input_ids)
        with torch.no_grad(), subject.hooks(hooks):
            output = _run(subject, input_ids, attention_mask, part.token_type_ids,
                          {**part.head_inputs, **_fixed(rows, group[0])})
        indices.append(target.resolve(subject, part, output, captured))
    return torch.cat(indices)


def _evaluate(subject: Subject, rows: Rows, target: Target, index: torch.Tensor, variants: list[tuple[int, np.ndarray]],
              erase: str, batch_size: int = 32) -> np.ndarray:
    """Target values of variant inputs: (row, keep mask over the row's real tokens) -> value."""
    if erase not in ERASE_MODES:
        raise UserInputError(f"unknown erase mode {erase!r}; choose from {', '.join(ERASE_MODES)}")
    if erase == "delete" and target.spec == "antecedent":
        raise UserInputError("coreference targets index spans; use erase='mask' or 'pad'")
    fill = subject.tokenizer.mask_token_id if erase == "mask" else subject.tokenizer.pad_token_id
    width = rows.input_ids.shape[1]
    positional = {k for k, v in rows.head_inputs.items() if v.dim() >= 2 and v.shape[1] == width}
    out = np.zeros(len(variants))
    if _fixed(rows, 0):
        batch_size = 1  # each variant carries its document's own span tensors
    for start in range(0, len(variants), batch_size):
        chunk = variants[start:start + batch_size]
        ids, types, indices = [], [], []
        heads: dict[str, list[torch.Tensor]] = {k: [] for k in rows.head_inputs}
        for r, keep in chunk:
            n = len(keep)
            if erase == "delete":
                where = torch.as_tensor(np.flatnonzero(keep))
                ids.append(rows.input_ids[r, where])
                types.append(None if rows.token_type_ids is None else rows.token_type_ids[r, where])
                for k, v in rows.head_inputs.items():
                    heads[k].append(v[r, where] if k in positional else v[r])
                new_position = np.cumsum(keep) - 1
                row_index = index[r].clone()
                for column in target.position_columns:
                    row_index[column] = int(new_position[int(row_index[column])])
                indices.append(row_index)
            else:
                row_ids = rows.input_ids[r, :n].clone()
                row_ids[torch.as_tensor(~keep)] = fill
                ids.append(row_ids)
                types.append(None if rows.token_type_ids is None else rows.token_type_ids[r, :n])
                for k, v in rows.head_inputs.items():
                    heads[k].append(v[r, :n] if k in positional else v[r])
                indices.append(index[r])
        longest = max(len(i) for i in ids)
        pad = lambda seqs, value: _pad_stack(seqs, longest, value)  # noqa: E731
        input_ids = pad(ids, subject.tokenizer.pad_token_id)
        attention_mask = pad([torch.ones(len(i), dtype=torch.long) for i in ids], 0)
        layout = rows.info[chunk[0][0]].get("layout") if rows.info else None
        if layout is not None:  # a coreference document row back into its segments
            input_ids, attention_mask, _ = unflatten_document(layout, input_ids)
        token_type_ids = None if types[0] is None else pad(types, 0)
        head_inputs = {k: (pad(v, 0) if k in positional else torch.stack(v)) for k, v in heads.items()}
        head_inputs.update(_fixed(rows, chunk[0][0]))
        captured: dict[str, torch.Tensor] = {}
        hooks = [] if target.capture is None else [(target.capture, lambda a, h: captured.__setitem__(h.name, a))]
        with torch.no_grad(), subject.hooks(hooks), target.context(subject, index):
            output = _run(subject, input_ids, attention_mask, token_type_ids, head_inputs)
            values = _values(subject, target, output, torch.stack(indices).to(subject.device), captured)
        out[start:start + len(chunk)] = values.float().cpu().numpy()
    return out


def _pad_stack(seqs: list[torch.Tensor], length: int, value: int) -> torch.Tensor:
    """Stack [pos, ...] tensors right-padded along pos to ``length``."""
    out = seqs[0].new_full((len(seqs), length, *seqs[0].shape[1:]), value)
    for i, seq in enumerate(seqs):
        out[i, :len(seq)] = seq
    return out


def _protected(rows: Rows, r: int, index: torch.Tensor, target: Target) -> np.ndarray:
    n = int(rows.attention_mask[r].sum())
    protected = (rows.segments[r, :n] < 0).numpy().copy()
    for column in target.position_columns:
        protected[int(index[r, column])] = True
    return protected


def _without_and_only(top: np.ndarray, protected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep-masks for erasing the ``top`` tokens (all others kept) and for keeping only them (plus the
    protected special tokens): the two inputs of comprehensiveness/sufficiency and of deletion/insertion."""
    without = np.ones(len(protected), dtype=bool)
    without[top] = False
    only = protected.copy()
    only[top] = True
    return without, only


def _ranked(scores: np.ndarray, protected: np.ndarray, absolute: bool) -> np.ndarray:
    """Erasable positions, most important first (ties broken by position)."""
    values = np.abs(scores) if absolute else scores
    candidates = np.flatnonzero(~protected)
    return candidates[np.argsort(-values[candidates], kind="stable")]


def _scores_for(attribution: Attribution, example_id: str, method: str, n: int) -> np.ndarray:
    scores = attribution.scores(example_id, method)
    if len(scores) != n:
        raise UserInputError(f"attribution of example {example_id} has {len(scores)} tokens, the input has {n}; "
                             f"were they computed on the same inputs and model?")
    return scores


# ---------------------------------------------------------------------------------------------- ERASER
def eraser(subject: Subject, inputs: Any, attribution: Attribution, target: Any = None,
           ks: Sequence[float] = ERASER_KS, erase: str = "delete", absolute: bool = False,
           text_pairs: Optional[Sequence[str]] = None, example_ids: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """ERASER comprehensiveness and sufficiency at each k% (DeYoung et al., 2020).

    Args:
        subject: the model the attributions explain.
        inputs: the same inputs given to :func:`~workbench.attribution.attribute`.
        attribution: its result (any number of methods).
        target: the same target.
        ks: percentages of the erasable tokens (rounded up, at least one token).
        erase: "delete" (ERASER), "mask" or "pad".
        absolute: rank by |score| instead of the signed score.

    Returns:
        DataFrame per (example, method, k): ``example_id``, ``method``, ``target``, ``k``, ``full`` (f(x)),
        ``comprehensiveness``, ``sufficiency``. AOPC = the mean over k (see :func:`aopc`).
    """
    rows, target = _prepare(subject, inputs, target, text_pairs, example_ids)
    index = _resolve(subject, rows, target)
    methods = list(dict.fromkeys(attribution.frame["method"]))
    variants: list[tuple[int, np.ndarray]] = []
    meta: list[tuple[int, Optional[str], Optional[float], str]] = []  # (row, method, k, kind)
    for r in range(len(rows)):
        n = int(rows.attention_mask[r].sum())
        protected = _protected(rows, r, index, target)
        variants.append((r, np.ones(n, dtype=bool)))
        meta.append((r, None, None, "full"))
        for method in methods:
            order = _ranked(_scores_for(attribution, rows.example_ids[r], method, n), protected, absolute)
            for k in ks:
                top = order[:max(1, math.ceil(k / 100 * len(order)))] if len(order) else order
                variants += [(r, mask) for mask in _without_and_only(top, protected)]
                meta += [(r, method, k, "without"), (r, method, k, "only")]
    values = _evaluate(subject, rows, target, index, variants, erase)
    full = {r: v for (r, _, _, kind), v in zip(meta, values) if kind == "full"}
    table: dict[tuple, dict] = {}
    for (r, method, percent, kind), value in zip(meta, values):
        if kind == "full":
            continue
        entry = table.setdefault((r, method, percent), {"example_id": rows.example_ids[r], "method": method,
                                                        "target": target.spec, "k": percent, "full": full[r]})
        entry["comprehensiveness" if kind == "without" else "sufficiency"] = full[r] - value
    return pd.DataFrame(list(table.values()))


def aopc(eraser_table: pd.DataFrame) -> pd.DataFrame:
    """Area over the perturbation curve: mean comprehensiveness and sufficiency over k, per example and method.

    Returns:
        DataFrame: ``example_id``, ``method``, ``target``, ``comprehensiveness``, ``sufficiency``.
    """
    return (eraser_table.groupby(["example_id", "method", "target"], sort=False)[["comprehensiveness", "sufficiency"]]
            .mean().reset_index())


def deletion_insertion(subject: Subject, inputs: Any, attribution: Attribution, target: Any = None,
                       n_points: int = 11, erase: str = "mask", absolute: bool = False,
                       text_pairs: Optional[Sequence[str]] = None,
                       example_ids: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Deletion and insertion curves (Petsiuk et al., 2018): f as the most important tokens are erased from the
    input (deletion) or restored into a fully erased input (insertion), at evenly spaced fractions.

    Returns:
        DataFrame per (example, method, fraction): ``example_id``, ``method``, ``fraction``, ``deletion``,
        ``insertion``. :func:`curve_areas` integrates them (deletion: lower is better; insertion: higher).
    """
    rows, target = _prepare(subject, inputs, target, text_pairs, example_ids)
    index = _resolve(subject, rows, target)
    methods = list(dict.fromkeys(attribution.frame["method"]))
    fractions = np.linspace(0.0, 1.0, n_points)
    variants, meta = [], []
    for r in range(len(rows)):
        n = int(rows.attention_mask[r].sum())
        protected = _protected(rows, r, index, target)
        for method in methods:
            order = _ranked(_scores_for(attribution, rows.example_ids[r], method, n), protected, absolute)
            for fraction in fractions:
                top = order[:int(round(fraction * len(order)))]
                variants += [(r, mask) for mask in _without_and_only(top, protected)]
                meta += [(r, method, fraction, "deletion"), (r, method, fraction, "insertion")]
    values = _evaluate(subject, rows, target, index, variants, erase)
    table: dict[tuple, dict] = {}
    for (r, method, fraction, kind), value in zip(meta, values):
        table.setdefault((r, method, fraction), {"example_id": rows.example_ids[r], "method": method,
                                                 "fraction": float(fraction)})[kind] = value
    return pd.DataFrame(list(table.values()))


def curve_areas(curves: pd.DataFrame) -> pd.DataFrame:
    """Trapezoid areas under the deletion and insertion curves, per example and method."""
    def area(group: pd.DataFrame) -> pd.Series:
        group = group.sort_values("fraction")
        x = group["fraction"].to_numpy()
        return pd.Series({"deletion_auc": float(np.trapezoid(group["deletion"].to_numpy(), x)),
                          "insertion_auc": float(np.trapezoid(group["insertion"].to_numpy(), x))})
    return curves.groupby(["example_id", "method"], sort=False)[["fraction", "deletion", "insertion"]].apply(
        area).reset_index()


# ---------------------------------------------------------------------------------------------- agreement
def rank_agreement(attribution: Attribution, method_a: str, method_b: str, k: int = 5,
                   absolute: bool = True) -> pd.DataFrame:
    """Kendall tau and top-k overlap between two methods' rankings of each example's non-special tokens.

    Returns:
        DataFrame per example: ``example_id``, ``method_a``, ``method_b``, ``kendall_tau``, ``topk_overlap``
        (|top-k(a) ∩ top-k(b)| / k, k capped by the token count), ``k``.
    """
    from scipy.stats import kendalltau

    frame = attribution.frame[attribution.frame["word_index"] >= 0]
    out = []
    for example_id, group in frame.groupby("example_id", sort=False):
        a = group[group["method"] == method_a].sort_values("token_index")["score"].to_numpy()
        b = group[group["method"] == method_b].sort_values("token_index")["score"].to_numpy()
        if len(a) == 0 or len(a) != len(b):
            raise UserInputError(f"example {example_id}: methods {method_a!r} and {method_b!r} are not both present")
        if absolute:
            a, b = np.abs(a), np.abs(b)
        tau = float(kendalltau(a, b).statistic) if len(a) > 1 else float("nan")
        kk = min(k, len(a))
        top_a = set(np.argsort(-a, kind="stable")[:kk])
        top_b = set(np.argsort(-b, kind="stable")[:kk])
        out.append({"example_id": example_id, "method_a": method_a, "method_b": method_b, "kendall_tau": tau,
                    "topk_overlap": len(top_a & top_b) / kk, "k": kk})
    return pd.DataFrame(out)


def agreement_matrix(attribution: Attribution, methods: Optional[Sequence[str]] = None, k: int = 5,
                     absolute: bool = True) -> pd.DataFrame:
    """Mean Kendall tau for every pair of methods (e.g. attention vs gradients), with bootstrap CIs.

    Returns:
        DataFrame: ``method_a``, ``method_b``, ``metric`` (kendall_tau / topk_overlap), ``mean``, ``ci_low``,
        ``ci_high``, ``n``.
    """
    methods = list(methods or dict.fromkeys(attribution.frame["method"]))
    parts = [rank_agreement(attribution, a, b, k, absolute) for i, a in enumerate(methods) for b in methods[i + 1:]]
    if not parts:
        raise UserInputError("agreement needs at least two methods")
    return summarize(pd.concat(parts, ignore_index=True), ["kendall_tau", "topk_overlap"], by=("method_a", "method_b"))


# ---------------------------------------------------------------------------------------------- plausibility
def gold_token_mask(rows: Rows, r: int, rationale: Sequence[Sequence[int]]) -> np.ndarray:
    """[T_real] True for tokens whose characters overlap a gold span ``(segment, start, end)``."""
    n = int(rows.attention_mask[r].sum())
    gold = np.zeros(n, dtype=bool)
    for t in range(n):
        segment = int(rows.segments[r, t])
        start, end = (int(x) for x in rows.offsets[r, t])
        if segment < 0 or end <= start:
            continue
        gold[t] = any(s == segment and start < e_end and b_start < end for s, b_start, e_end in rationale)
    return gold


def plausibility(subject: Subject, inputs: Any, attribution: Attribution,
                 rationales: Optional[Sequence[Sequence[Sequence[int]]]] = None, absolute: bool = False,
                 text_pairs: Optional[Sequence[str]] = None,
                 example_ids: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Agreement with human rationales: token F1 of the top-|gold| tokens and AUPRC (DeYoung et al., 2020).

    Args:
        rationales: per input, gold ``(segment, char_start, char_end)`` spans; default: each example's
            ``rationale`` attribute. Examples with no gold tokens are skipped.

    Returns:
        DataFrame per (example, method): ``example_id``, ``method``, ``token_f1``, ``auprc``, ``n_gold``.
    """
    from sklearn.metrics import average_precision_score

    rows, _ = _prepare(subject, inputs, "predicted", text_pairs, example_ids)
    if rationales is None:
        if rows.examples is None:
            raise UserInputError("plain texts need rationales=[(segment, start, end), ...] per text")
        rationales = [getattr(e, "rationale", ()) for e in rows.examples]
    methods = list(dict.fromkeys(attribution.frame["method"]))
    out = []
    for r in range(len(rows)):
        gold_all = gold_token_mask(rows, r, rationales[r])
        n = len(gold_all)
        content = (rows.segments[r, :n] >= 0).numpy()
        gold = gold_all[content]
        if not gold.any():
            continue
        for method in methods:
            scores = _scores_for(attribution, rows.example_ids[r], method, n)[content]
            scores = np.abs(scores) if absolute else scores
            predicted = np.zeros_like(gold)
            predicted[np.argsort(-scores, kind="stable")[:gold.sum()]] = True
            true_positive = float((predicted & gold).sum())
            precision, recall = true_positive / predicted.sum(), true_positive / gold.sum()
            f1 = 0.0 if true_positive == 0 else 2 * precision * recall / (precision + recall)
            out.append({"example_id": rows.example_ids[r], "method": method, "token_f1": f1,
                        "auprc": float(average_precision_score(gold, scores)), "n_gold": int(gold.sum())})
    return pd.DataFrame(out, columns=["example_id", "method", "token_f1", "auprc", "n_gold"])


# ---------------------------------------------------------------------------------------------- sanity check
def _randomize_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Replace every parameter by Gaussian noise with the parameter's own mean and std (scale kept)."""
    with torch.no_grad():
        for param in module.parameters():
            std = float(param.std()) if param.numel() > 1 else 0.0
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype).to(param.device)
            param.copy_(param.mean() + std * noise)


def randomization_stages(subject: Subject) -> list[str]:
    """Stages of the cascade, top (output side) first: ``head`` (task models), ``blocks.L-1`` ... ``blocks.0``,
    ``embed``."""
    stages = ["head"] if subject.task_model is not None else []
    return stages + [f"blocks.{i}" for i in reversed(range(subject.n_layers))] + ["embed"]


def _stage_modules(subject: Subject, stage: str) -> list[torch.nn.Module]:
    encoder = subject.encoder
    if stage == "head":
        encoder_params = {id(p) for p in encoder.parameters()}
        return [m for m in subject.module.children()
                if m is not encoder and any(id(p) not in encoder_params for p in m.parameters())]
    if stage == "embed":
        return [subject.adapter.embedding_module()]
    return [subject.adapter.blocks()[int(stage.split(".")[1])]]


def randomization_check(subject: Subject, inputs: Any, method: str = "integrated_gradients", target: Any = None,
                        params: Optional[AttributionParams] = None, seed: int = 0,
                        stages: Optional[Sequence[str]] = None, **kwargs: Any) -> pd.DataFrame:
    """Cascading model-parameter randomization (Adebayo et al., 2018).

    Starting from the output, each stage's parameters are randomised in turn (on a deep copy of the model;
    the subject is untouched) and the attributions recomputed; a method that is sensitive to the model
    shows falling correlations. The target indices (e.g. the class) stay those of the trained model.

    Returns:
        DataFrame per (stage, example): ``stage`` ("none" first), ``n_randomized`` (stages so far),
        ``example_id``, ``method``, ``spearman`` and ``spearman_abs`` (rank correlation of the signed and
        absolute scores with the trained model's).
    """
    from scipy.stats import spearmanr

    from workbench.subject import Subject, task_subject

    params = params or AttributionParams()
    rows, target = _prepare(subject, inputs, target, kwargs.get("text_pairs"), kwargs.get("example_ids"))
    index = _resolve(subject, rows, target)
    fixed = _FixedTarget(target, index, rows.example_ids)
    original = attribute(subject, rows, method, fixed, params)
    if subject.task_model is not None:
        clone = task_subject(copy.deepcopy(subject.task_model))
    else:
        from atinuke.encoders import Encoder

        clone = Subject(Encoder(f"{subject.name}-randomized", subject.kind, copy.deepcopy(subject.encoder),
                                subject.tokenizer, subject.path))
    generator = torch.Generator().manual_seed(seed)
    out = []
    for step, stage in enumerate(["none"] + list(stages or randomization_stages(subject))):
        if stage != "none":
            for module in _stage_modules(clone, stage):
                _randomize_(module, generator)
        result = original if stage == "none" else attribute(clone, rows, method, fixed, params)
        for example_id in rows.example_ids:
            a, b = original.scores(example_id), result.scores(example_id)
            out.append({"stage": stage, "n_randomized": step, "example_id": example_id, "method": method,
                        "spearman": float(spearmanr(a, b).statistic),
                        "spearman_abs": float(spearmanr(np.abs(a), np.abs(b)).statistic)})
    return pd.DataFrame(out)


class _FixedTarget(Target):
    """A target whose per-row indices were resolved once (on the trained model) and are reused."""

    def __init__(self, inner: Target, index: torch.Tensor, example_ids: Sequence[str]) -> None:
        self.inner, self.index = inner, index
        self.by_id = {e: i for i, e in enumerate(example_ids)}
        self.spec, self.capture, self.position_columns = inner.spec, inner.capture, inner.position_columns

    def context(self, subject, index):
        return self.inner.context(subject, index)

    def resolve(self, subject, rows, output, captured):
        return self.index[[self.by_id[e] for e in rows.example_ids]]

    def select(self, output, index, captured):
        return self.inner.select(output, index, captured)

    def label(self, subject, index):
        return self.inner.label(subject, index)

    def query_position(self, index):
        return self.inner.query_position(index)


def faithfulness_summary(subject: Subject, inputs: Any, attribution: Attribution, target: Any = None,
                         rationales: Optional[Sequence[Sequence[Sequence[int]]]] = None, erase: str = "delete",
                         n_boot: int = 1000, seed: int = 0, **kwargs: Any) -> pd.DataFrame:
    """One table per model and task: every faithfulness and plausibility measure per method, with CIs.

    Runs :func:`eraser` (AOPC comprehensiveness / sufficiency), :func:`deletion_insertion` (curve areas) and,
    when gold rationales exist, :func:`plausibility`.

    Returns:
        DataFrame: ``task`` (the task name, or "encoder"), ``method``, ``metric``, ``mean``, ``ci_low``,
        ``ci_high``, ``n`` (examples).
    """
    task = getattr(subject.task, "name", None) or "encoder"
    per_example = aopc(eraser(subject, inputs, attribution, target, erase=erase, **kwargs))
    areas = curve_areas(deletion_insertion(subject, inputs, attribution, target, **kwargs))
    parts = [summarize(per_example, ["comprehensiveness", "sufficiency"], n_boot=n_boot, seed=seed),
             summarize(areas, ["deletion_auc", "insertion_auc"], n_boot=n_boot, seed=seed)]
    has_gold = rationales is not None or (not (len(inputs) and isinstance(inputs[0], str))
                                          and any(getattr(e, "rationale", ()) for e in inputs))
    if has_gold:
        plausible = plausibility(subject, inputs, attribution, rationales, **kwargs)
        if len(plausible):
            parts.append(summarize(plausible, ["token_f1", "auprc"], n_boot=n_boot, seed=seed))
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "task", task)
    return table
