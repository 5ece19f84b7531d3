"""Synthetic controlled experiments with planted structure, for the claims tests (no training)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

N_DEV = 200


def _table(arm: str, task: str, gold: list[str], correct: np.ndarray) -> pd.DataFrame:
    prediction = [g if c else ("0" if g == "1" else "1") for g, c in zip(gold, correct)]
    return pd.DataFrame({
        "id": [f"ex{i}" for i in range(len(gold))], "task": task, "model": arm, "split": "dev",
        "provenance": "silver, derived from PTB", "text": "a sentence", "text_pair": "another", "gold": gold,
        "prediction": prediction, "score": 0.9, "probs": None, "correct": correct.astype(bool),
        "example_f1": correct.astype(float), "rationale": [[] for _ in gold]})


def write_experiment(root: Path, accuracy: Callable[[str, int], float], seeds: int = 3, task: str = "sst2",
                     arms: tuple[str, ...] = ("atinuke", "bert"), majority: float = 0.5,
                     pretrain: Optional[Callable[[str, int], dict]] = None) -> Path:
    """Write ``root/experiment.json`` and, per (arm, seed), a predictions table whose accuracy is
    ``accuracy(arm, seed)`` (exactly, in a seeded random order) on a dev set with ``majority`` of label "1"."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "experiment.json").write_text(json.dumps({"arms": list(arms), "seeds": list(range(seeds)),
                                                      "tasks": [task], "scale": "tiny"}))
    n_major = int(round(majority * N_DEV))
    gold = ["1"] * n_major + ["0"] * (N_DEV - n_major)
    for a, arm in enumerate(arms):
        for seed in range(seeds):
            rng = np.random.default_rng(1000 * a + seed + 7)
            correct = np.zeros(N_DEV, dtype=bool)
            correct[rng.permutation(N_DEV)[:int(round(accuracy(arm, seed) * N_DEV))]] = True
            run = root / arm / f"seed{seed}" / "finetune" / task
            run.mkdir(parents=True)
            _table(arm, task, gold, correct).to_parquet(run / "predictions.parquet", index=False)
            (run / "metrics.json").write_text(json.dumps({"task": task, "model": arm, "headline_metric": "accuracy",
                                                          "accuracy": float(correct.mean())}))  # sst2's headline
            if pretrain is not None and arm != "minilm":
                (root / arm / f"seed{seed}" / "pretrain").mkdir(parents=True)
                (root / arm / f"seed{seed}" / "pretrain" / "summary.json").write_text(json.dumps(pretrain(arm, seed)))
    return root


def write_task_runs(root: Path, task: str, runs: dict[tuple[str, int], tuple[list[str], list[str], list[float]]],
                    headline: str) -> Path:
    """Write an experiment of one task whose run (arm, seed) predicted ``prediction`` for ``gold`` with per-example
    scores ``example_f1`` (``runs[(arm, seed)] = (gold, prediction, example_f1)``)."""
    root.mkdir(parents=True, exist_ok=True)
    arms = list(dict.fromkeys(arm for arm, _ in runs))
    seeds = sorted({seed for _, seed in runs})
    (root / "experiment.json").write_text(json.dumps({"arms": arms, "seeds": seeds, "tasks": [task], "scale": "tiny"}))
    for (arm, seed), (gold, prediction, example_f1) in runs.items():
        n = len(gold)
        table = pd.DataFrame({
            "id": [f"ex{i}" for i in range(n)], "task": task, "model": arm, "split": "dev",
            "provenance": "silver, derived from PTB", "text": "a sentence", "text_pair": None, "gold": gold,
            "prediction": prediction, "score": 0.9, "probs": None,
            "correct": [g == p for g, p in zip(gold, prediction)], "example_f1": np.asarray(example_f1, dtype=float),
            "rationale": [[] for _ in gold]})
        run = root / arm / f"seed{seed}" / "finetune" / task
        run.mkdir(parents=True)
        table.to_parquet(run / "predictions.parquet", index=False)
        (run / "metrics.json").write_text(json.dumps({"task": task, "model": arm, "headline_metric": headline}))
    return root
