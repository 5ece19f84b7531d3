"""Benchmark: attribution patching against exact activation patching over every head, side by side.

Clean/corrupted pairs are PTB valid sentences with one content token replaced by the token three positions
later (aligned lengths, one minimal edit). The metric is the [CLS] state's projection on the clean-minus-
corrupted direction (a logit-difference analogue any encoder has). Exact patching runs one patched forward
pass per (layer, head); attribution patching (Nanda 2023; Syed et al. 2023) two forward passes and one
backward for all of them; EAP-IG (Hanna et al. 2024) ``--n-steps`` forward+backward passes.

Final JSON line: exact_s, attribution_s, speedup, spearman (head-level rank correlation of the attribution
estimate with exact patching, MiniLM), eap_ig_s and spearman_eap_ig, spearman_tiny_atinuke (the shipped
tiny Atinuke), and spearman_planted: the same head-level rank correlation on the planted-circuit model
(workbench/planted.py: head L1.H2 alone decides the class; effects below 1e-4 of the span count as 0, since the
seven other heads' true effect is exactly 0 and ranking their float rounding would measure nothing).

    python bench/patching.py
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]


def pairs(subject, n: int):
    from atinuke.corpus import load_texts

    texts = [t for t in load_texts("ptb", "valid") if 12 <= len(t.split()) <= 20][:n]
    clean = subject.tokenize(texts)
    corrupted = {k: v.clone() for k, v in clean.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    corrupted["input_ids"][:, 3] = clean["input_ids"][:, 6]
    with torch.no_grad():
        direction = (subject.forward(clean).last_hidden_state[:, 0]
                     - subject.forward(corrupted).last_hidden_state[:, 0]).mean(0)
    return clean, corrupted, lambda out: (out.last_hidden_state[:, 0] @ direction).mean()


def measure(spec: str, n: int, n_steps: int) -> dict:
    from workbench.patching import attribution_patching, exact_patching
    from workbench.subject import load_subject

    subject = load_subject(spec)
    clean, corrupted, metric = pairs(subject, n)
    attribution_patching(subject, clean, corrupted, metric)  # warm-up
    started = time.perf_counter()
    exact = exact_patching(subject, clean, corrupted, metric)
    exact_s = time.perf_counter() - started
    started = time.perf_counter()
    estimate = attribution_patching(subject, clean, corrupted, metric)
    attribution_s = time.perf_counter() - started
    started = time.perf_counter()
    integrated = attribution_patching(subject, clean, corrupted, metric, method="eap_ig", n_steps=n_steps)
    eap_ig_s = time.perf_counter() - started
    return {"exact_s": exact_s, "attribution_s": attribution_s, "eap_ig_s": eap_ig_s,
            "spearman": float(spearmanr(exact["effect"], estimate["effect"])[0]),
            "spearman_eap_ig": float(spearmanr(exact["effect"], integrated["effect"])[0]),
            "n_components": len(exact), "max_normalized": float(np.abs(exact["normalized"]).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=8)
    args = parser.parse_args()
    minilm = measure("minilm", args.examples, args.n_steps)
    tiny = measure(str(REPO / "atinuke" / "checkpoints" / "tiny-atinuke-seed0"), args.examples, args.n_steps)
    from workbench.planted import head_rank_agreement

    planted = head_rank_agreement(args.examples)
    print(json.dumps({"exact_s": round(minilm["exact_s"], 3), "attribution_s": round(minilm["attribution_s"], 3),
                      "speedup": round(minilm["exact_s"] / minilm["attribution_s"], 1),
                      "spearman": round(minilm["spearman"], 4), "eap_ig_s": round(minilm["eap_ig_s"], 3),
                      "spearman_eap_ig": round(minilm["spearman_eap_ig"], 4),
                      "spearman_tiny_atinuke": round(tiny["spearman"], 4), "spearman_planted": round(planted, 4),
                      "components": minilm["n_components"], "examples": args.examples}))


if __name__ == "__main__":
    main()
