"""Probe curves (workbench/probe_curves.py): per-layer mean and t-interval over seeds, and selectivity."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from workbench.probe_curves import CURVE_COLUMNS, layer_curve, layer_selectivity, seed_interval


def _results() -> pd.DataFrame:
    return pd.DataFrame(dict(
        model="m", task="pos", layer=[0, 0, 1, 1, 0, 1, -1, 1], metric="accuracy",
        value=[0.5, 0.7, 0.8, 0.9, 0.4, 0.5, 1.0, 0.3], seed=[0, 1, 0, 1, 0, 0, 0, 0],
        control=["none", "none", "none", "none", "control_task", "control_task", "none", None], source="gold: f"))


def test_seed_interval_is_a_student_t_interval():
    mean, low, high = seed_interval([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9) and low == pytest.approx(0.9 - 4.302653 * 0.1 / math.sqrt(3))
    assert high - mean == pytest.approx(mean - low)
    assert math.isnan(seed_interval([0.5])[1])


def test_layer_curve_summarises_seeds_per_layer():
    curve = layer_curve(_results())
    assert list(curve.columns) == CURVE_COLUMNS
    assert list(zip(curve["control"], curve["layer"])) == [("control_task", 0), ("control_task", 1), ("none", 0),
                                                           ("none", 1)]  # layer -1 and the missing control left out
    real = curve[curve["control"] == "none"].set_index("layer")
    assert real.loc[1, "mean"] == pytest.approx(0.85) and real.loc[1, "n_seeds"] == 2
    assert real.loc[1, "std"] == pytest.approx(pd.Series([0.8, 0.9]).std())
    assert real.loc[1, "low"] < 0.85 < real.loc[1, "high"] and real.loc[1, "source"] == "gold: f"
    assert math.isnan(curve.iloc[0]["std"]) and math.isnan(curve.iloc[0]["low"])  # one control seed
    assert layer_curve(_results(), "uuas").empty


def test_layer_selectivity_subtracts_the_control_curve():
    selectivity = layer_selectivity(layer_curve(_results())).set_index("layer")
    assert selectivity.loc[0, "selectivity"] == pytest.approx(0.6 - 0.4)
    assert selectivity.loc[1, "selectivity"] == pytest.approx(0.85 - 0.5)
    assert set(selectivity["control_control"]) == {"control_task"}
    assert layer_selectivity(layer_curve(_results()), controls=("random_init",)).empty
