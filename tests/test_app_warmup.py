"""The app's background warm-up (ui.common.warm_up): started by app.py after the first page, it fills the very
cache entries the model pages read (no timing is asserted: what is asserted is where the pages' values come from)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_app import APP, app_env, fixture_runs  # noqa: F401  (fixtures)


def test_the_app_warms_the_attention_page_after_the_first_page(app_env, monkeypatch):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    import workbench.attention
    from ui import common

    started = []
    real = common.warm_up
    monkeypatch.setattr(common, "warm_up", lambda: started.append(real()) or started[-1])
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert at.title[0].value == "Models and training" and not at.exception
    assert len(started) == 1 and started[0] is not None  # app.py started it, after rendering the first page
    warm = started[0]
    warm.thread.join(timeout=300)
    assert warm.error is None, warm.error
    choices = common.model_choices()
    defaults = [choices[name] for name in common.default_models(choices)]
    assert list(warm.specs) == defaults == [str(app_env / "pretrain" / "tiny-test"), "minilm"]
    assert warm.attention == defaults
    for spec in defaults:  # keyed as the pages key it: they get the very model the warm-up loaded
        assert common.subject(spec) is warm.subjects[spec]
    subject = warm.subjects[defaults[0]]
    expected = workbench.attention.attention_maps(subject, common.ATTENTION_DEFAULT_TEXT).to_words()

    def no_computation(*args, **kwargs):
        raise AssertionError("the Attention page recomputed a map the warm-up had cached")

    monkeypatch.setattr(workbench.attention, "attention_maps", no_computation)
    at.switch_page("ui/attention.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 2  # both default models drawn, from the cache alone
    cached = common.attention_maps(defaults[0], common.ATTENTION_DEFAULT_TEXT, True, common.weights_stamp(defaults[0]))
    assert cached["labels"] == list(expected.tokens)
    np.testing.assert_allclose(cached["pattern"], expected.pattern, rtol=0, atol=1e-6)
    assert common.warm_up() is warm  # once per process and models, not once per session or rerun


def test_the_warm_up_can_be_turned_off(app_env, monkeypatch):  # noqa: F811
    from ui import common

    for value in ("0", "false"):
        monkeypatch.setenv(common.WARM_UP_ENV, value)
        assert common.warm_up() is None


@pytest.mark.parametrize("runs, expected", [("empty", ["minilm"])])
def test_without_a_pretraining_run_only_minilm_is_warmed(tmp_path, monkeypatch, runs, expected):
    from ui import common

    monkeypatch.setenv("ATINUKE_RUNS", str(tmp_path / runs))
    choices = common.model_choices()
    assert [choices[name] for name in common.default_models(choices)] == expected
