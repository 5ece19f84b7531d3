"""Deep links (issue 15, item 10): a page opened by its address with ``?model=...&task=...&example=...`` shows that
model and that example, keeps them in its address, and says so in one warning when the link names what is not
there. The pages' own addresses (``/models`` included) are opened in a real browser by tests/test_browser.py."""
from __future__ import annotations

import pandas as pd

from tests.test_app import APP, app_env, fixture_runs  # noqa: F401  (fixtures)

MINILM = "MiniLM (all-MiniLM-L6-v2)"


def _open(page: str, **params: str):
    """A fresh session opened at ``page`` (an app.py page file; "" for the root) with the query string ``params``."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    if page:
        at.switch_page(page)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _example_id(runs, model: str = "minilm", row: int = 2) -> str:
    return str(pd.read_parquet(runs / "finetune" / model / "sst2" / "predictions.parquet")["id"].iloc[row])


def _params(at) -> dict[str, list[str]]:
    return {name: value if isinstance(value, list) else [value] for name, value in at.query_params.items()}


def test_attention_link_keeps_the_model_and_the_example(app_env):  # noqa: F811
    example = _example_id(app_env)
    at = _open("ui/attention.py", model="minilm", task="sst2", example=example)
    assert at.multiselect(key="attn_models").value == [MINILM]  # not the default pair
    assert at.radio(key="attn_source").value == "Dataset example"
    assert at.selectbox(key="attn_example").value.startswith(f"sst2 · {example}: ")
    assert not at.warning
    assert _params(at) == {"model": ["minilm"], "task": ["sst2"], "example": [example]}  # the address still says so
    assert len(at.get("plotly_chart")) == 1


def test_attribution_link_keeps_the_model_and_the_example(app_env):  # noqa: F811
    example = _example_id(app_env, "tiny-test", 4)
    at = _open("ui/attribution.py", model="tiny-test", task="sst2", example=example)
    assert at.selectbox(key="attr_model").value == "Atinuke: tiny-test"
    assert at.selectbox(key="attr_example").value.startswith(f"sst2 · {example}: ")
    assert _params(at)["model"] == ["tiny-test"] and _params(at)["example"] == [example]


def test_error_analysis_link_keeps_the_run(app_env):  # noqa: F811
    default = _open("ui/errors.py").selectbox(key="err_run").value
    at = _open("ui/errors.py", model="tiny-test", task="sst2")
    assert default == "minilm / sst2" and at.selectbox(key="err_run").value == "tiny-test / sst2"
    assert _params(at)["model"] == ["tiny-test"]


def test_the_root_forwards_to_the_first_page_with_its_link(app_env):  # noqa: F811
    at = _open("", model="tiny-test", task="sst2", example="lee-3")
    assert at.title[0].value == "Models and training"
    assert at.selectbox(key="models_run").value == "tiny-test"
    # the whole query string came through the forward (the page itself writes only "model")
    assert _params(at) == {"model": ["tiny-test"], "task": ["sst2"], "example": ["lee-3"]}


def test_a_link_to_what_is_not_there_says_so_and_shows_the_default(app_env):  # noqa: F811
    at = _open("ui/attention.py", model="no-such-model")
    assert at.multiselect(key="attn_models").value == ["Atinuke: tiny-test", MINILM]
    assert len(at.warning) == 1 and "model=no-such-model" in at.warning[0].value
