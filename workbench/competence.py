"""Has each model of the experiment learnt each task? Every (arm, task) against its trivial baseline.

A comparison in which either model sits at its task's trivial baseline is no evidence (docs/experiment.md), so
before any claim the workbench asks of every model, the same-budget baseline and the pretrained reference
included: does its per-example score beat the task's trivial baseline (majority class, the mean score, always
abstain, all-O, no cluster) on the same dev examples? The test is the claims' two-stage paired bootstrap over
seeds and examples (Davison and Hinkley, 1997); a model "learnt" the task when the difference is positive with
p < 0.05, and is "at the floor" otherwise. ``workbench claims --competence`` prints the table; the Claims
page and the README show it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench.experiment_runs import ALPHA, Experiment, expand_tasks, headline, trivial_example_scores
from workbench.stats import N_BOOT, hierarchical_bootstrap

COMPETENCE_COLUMNS = ("arm", "task", "seeds", "metric", "score", "example_score", "trivial_score", "difference",
                      "p_value", "p_resolution", "verdict")
LEARNT = "learnt"
AT_FLOOR = "at the floor"


def competence(experiment: Experiment, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per (arm, task) with finished runs: headline metric (mean over seeds), mean per-example score, the
    trivial baseline's, and the paired test of the difference.

    Returns:
        DataFrame with ``COMPETENCE_COLUMNS``; ``verdict`` is "learnt" or "at the floor".
    """
    rows: list[dict[str, Any]] = []
    for arm in experiment.arms:
        for task in expand_tasks(experiment):
            differences, scores, trivial_scores, seeds = [], [], [], []
            for seed in experiment.seeds:
                table = experiment.predictions(arm, seed, task)
                if table is None or table.empty:
                    continue
                score = table["example_f1"].to_numpy(float)
                trivial = trivial_example_scores(task, table["gold"])
                differences.append(score - trivial)
                scores.append(score.mean())
                trivial_scores.append(trivial.mean())
                seeds.append(seed)
            if not seeds:
                continue
            test = hierarchical_bootstrap([differences], n_boot, seed=0)
            metric, values = headline(experiment, arm, task)
            learnt = test.estimate > 0 and test.p_value < ALPHA
            rows.append({"arm": arm, "task": task, "seeds": len(seeds), "metric": metric,
                         "score": float(np.mean(values)) if values else None,
                         "example_score": float(np.mean(scores)), "trivial_score": float(np.mean(trivial_scores)),
                         "difference": test.estimate, "p_value": test.p_value, "p_resolution": test.resolution,
                         "verdict": LEARNT if learnt else AT_FLOOR})
    return pd.DataFrame(rows, columns=list(COMPETENCE_COLUMNS))
