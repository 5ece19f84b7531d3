"""Human names of the workbench's methods, metrics, table columns and tokens (the internal name in a tooltip).

The pages and the report show ``method_name("integrated_gradients")`` = "Integrated Gradients" and keep the
internal name where a reader needs it to reproduce a command (tooltips, CSV files). Attribution methods are
those of Captum (Kokhlikyan et al., 2020, arXiv 2009.07896) plus attention scores; see
``workbench.attribution`` for the papers behind each.
"""
from __future__ import annotations

from typing import Iterable

METHODS = {
    "integrated_gradients": "Integrated Gradients", "saliency": "Saliency (gradient)",
    "input_x_gradient": "Input × Gradient", "gradient_shap": "GradientSHAP", "deeplift": "DeepLIFT",
    "occlusion": "Occlusion", "feature_ablation": "Feature ablation", "lime": "LIME", "kernel_shap": "KernelSHAP",
    "attention": "Attention (last layer)", "rollout": "Attention rollout", "attention_x_gradient": "Attention × Gradient",
}
METRICS = {
    "kendall_tau": "Kendall's τ", "topk_overlap": "Top-k overlap", "k": "k", "fve": "Fraction of variance explained",
    "l0": "Active latents per token (L0)", "comprehensiveness": "Comprehensiveness", "sufficiency": "Sufficiency",
    "deletion_auc": "Deletion AUC", "insertion_auc": "Insertion AUC", "example_f1": "Example F1",
    "accuracy": "Accuracy", "error_rate": "Error rate", "mcc": "Matthews correlation", "f1": "F1",
    "method_a": "Method A", "method_b": "Method B", "p_value": "p-value", "p_adjusted": "Holm-adjusted p",
    "atinuke_score": "Atinuke score", "comparator_score": "Comparator score", "trivial_score": "Trivial baseline",
    "reference_score": "MiniLM (reference)", "n": "Examples", "value": "Value", "low": "CI low", "high": "CI high",
    "path": "Cohort", "coverage": "Share of examples", "error_coverage": "Share of errors", "slice": "Slice",
    "feature": "Feature", "metric": "Metric", "claim": "Claim", "verdict": "Verdict", "reason": "Why",
    "comparator": "Comparator", "seeds": "Seeds", "taxonomy": "Category",
}


def method_name(name: str) -> str:
    """The human name of an attribution method ("integrated_gradients" -> "Integrated Gradients")."""
    return METHODS.get(str(name), str(name).replace("_", " "))


def metric_name(name: str) -> str:
    """The human name of a metric or table column ("kendall_tau" -> "Kendall's τ"); others unchanged but for
    underscores."""
    return METRICS.get(str(name), METHODS.get(str(name), str(name).replace("_", " ")))


def column_help(columns: Iterable[str]) -> dict[str, str]:
    """{human column name: "internal name: <name>"}, for tooltips beside renamed columns."""
    return {metric_name(c): f"internal name: {c}" for c in columns}


UNKNOWN = ("<", "un", "##k", ">")  # PTB's "<unk>" as a WordPiece tokenizer without it in its vocabulary splits it


def merge_unknown(tokens: list[str], activations: list[float], center: int) -> tuple[list[str], list[float], int]:
    """``tokens`` with each split ``< un ##k >`` shown as one ``<unk>`` (its largest activation), and ``center``
    moved to match."""
    out: list[str] = []
    acts: list[float] = []
    new_center, i = center, 0
    while i < len(tokens):
        width = 4 if tuple(tokens[i:i + 4]) == UNKNOWN else 1
        if i <= center < i + width:
            new_center = len(out)
        out.append("<unk>" if width == 4 else tokens[i])
        acts.append(max(activations[i:i + width]))
        i += width
    return out, acts, new_center
