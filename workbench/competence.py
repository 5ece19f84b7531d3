"""Has each model of the experiment learnt each task? Every (arm, task) against its trivial baseline.

A comparison in which either model has not been shown to beat its task's trivial baseline is no evidence
(docs/experiment.md), so before any claim the workbench asks of every model, the same-budget baseline and the
pretrained reference included: is its headline metric (MCC, Pearson, micro F1, corpus-level CoNLL F1, SQuAD
F1, accuracy or binary F1, as the task reports it) above the trivial baseline's (majority class, mean score,
always abstain, all-O, no cluster) scored by the same metric on the same dev examples? The unit of replication
is the training run: a one-sided one-sample t test over the runs' differences from the floor, its standard
error including the example-level variance shared by the runs (``workbench.run_inference``; Dror et al., 2018;
Bouthillier et al., 2021). With one run the test is that run's example-level bootstrap. An arm "learnt" the task
when p < 0.05; otherwise it is "not shown above the floor" (which is not the same as being at the floor).
``workbench claims --competence`` prints the table; the Claims page and the report show it.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd

from workbench.experiment_runs import ALPHA, Experiment, expand_tasks
from workbench.headline_stats import TaskRuns, load_task_runs
from workbench.run_inference import N_BOOT, RunTest, run_level_test

COMPETENCE_COLUMNS = ("arm", "task", "seeds", "metric", "score", "trivial_score", "difference", "ci_low", "ci_high",
                      "p_value", "p_mc_error", "mde", "example_score", "verdict")
LEARNT = "learnt"
NOT_SHOWN = "not shown above the floor"
AT_FLOOR = NOT_SHOWN  # the old name: the test shows learning or fails to, never that a model is at the floor


def floor_test(runs: TaskRuns, arm: str, n_boot: int = N_BOOT) -> Optional[RunTest]:
    """The one-sided test of ``arm``'s run-level headline metric above the trivial baseline's (None: no run)."""
    seeds = runs.seeds(arm)
    if not seeds:
        return None
    floor = runs.trivial_value
    values = [runs.value(arm, s) - floor for s in seeds]

    def resampled(chunk: int) -> np.ndarray:
        return runs.resampled(arm, seeds, chunk) - runs.resampled_trivial(chunk)[:, None]

    return run_level_test(values, None, resampled, n_boot, alternative="greater")


def learnt(test: Optional[RunTest]) -> bool:
    """Whether a :func:`floor_test` shows the arm above the floor at ``ALPHA``."""
    return test is not None and test.p_value is not None and test.estimate > 0 and test.p_value < ALPHA


def competence(experiment: Experiment, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per (arm, task) with finished runs: the headline metric (mean over runs), the trivial baseline's
    on the same examples, and the run-level test of the difference.

    Returns:
        DataFrame with ``COMPETENCE_COLUMNS``; ``verdict`` is "learnt" or "not shown above the floor".
    """
    rows: list[dict[str, Any]] = []
    for task in expand_tasks(experiment):
        runs = load_task_runs(experiment, task)
        if runs is None:
            continue
        for arm in experiment.arms:
            test = floor_test(runs, arm, n_boot)
            if test is None:
                continue
            seeds = runs.seeds(arm)
            rows.append({"arm": arm, "task": task, "seeds": len(seeds), "metric": runs.metric,
                         "score": float(np.mean([runs.value(arm, s) for s in seeds])),
                         "trivial_score": runs.trivial_value, "difference": test.estimate, "ci_low": test.low,
                         "ci_high": test.high, "p_value": test.p_value, "p_mc_error": test.p_mc_error,
                         "mde": test.mde,
                         "example_score": float(np.mean([runs.example_means[arm][s] for s in seeds])),
                         "verdict": LEARNT if learnt(test) else NOT_SHOWN})
    return pd.DataFrame(rows, columns=list(COMPETENCE_COLUMNS))
