"""Defaults a researcher would choose (issue 29): each test fails on the default the app had before.

Pages run over the shared runs-directory TEST FIXTURE of tests/test_app.py (one tiny Atinuke, MiniLM, SST-2
predictions made by rules, one SAE run); the slicing ranking is checked on a planted table.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tests.test_app import app_env, fixture_runs  # noqa: F401  (fixtures)
from workbench import slicing
from workbench.names import merge_unknown, method_name, metric_name


def _run(page: str):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP

    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(f"ui/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_slice_features_are_ranked_by_usefulness_and_ids_or_free_text_never_offered():
    rng = np.random.default_rng(0)
    n = 400
    hard = rng.random(n) < 0.5
    correct = np.where(hard, rng.random(n) < 0.4, rng.random(n) < 0.95)  # planted: failure depends on meta_hard
    table = pd.DataFrame(dict(
        correct=correct, meta_noise=rng.integers(0, 3, n).astype(str),  # independent of failure
        meta_captionID=[f"{i}.jpg#r1" for i in range(n)],  # an id
        meta_added=[" ".join(rng.choice(["tall", "red", "old", "young", "small", "happy", "blue"], 2)) + f" {i % 97}"
                    for i in range(n)],  # a generator's free text
        meta_hard=np.where(hard, "hard", "easy"), meta_length=rng.integers(3, 40, n),
        meta_rare=np.where(np.arange(n) < 5, "rare", "common")))  # one slice of 5: too small to compare
    ranks = slicing.rank_features(table)
    usable = [r.feature for r in ranks if r.usable]
    assert usable[0] == "meta_hard" and ranks[0].p_value < 1e-10
    assert set(usable) == {"meta_hard", "meta_noise", "meta_length"}
    by_name = {r.feature: r for r in ranks}
    assert by_name["meta_length"].kind == "binned" and by_name["meta_length"].n_slices == 4
    assert not by_name["meta_rare"].usable and "fewer than two slices" in by_name["meta_rare"].reason
    assert set(slicing.excluded_features(table)) == {"meta_captionID", "meta_added"}


def test_error_analysis_opens_on_the_most_useful_slice_feature(app_env):  # noqa: F811
    at = _run("errors")
    at.selectbox(key="err_run").set_value("tiny-test / sst2").run()
    # the fixture's model fails on every negated sentence: negation first, not the first column (meta_length)
    assert at.selectbox(key="err_feature").value == "meta_negation"


def test_comparison_never_silently_compares_a_dictionary_with_itself_and_warns_on_few_sentences(app_env):  # noqa: F811
    at = _run("comparison")
    assert at.selectbox(key="cmp_sae_a").value == at.selectbox(key="cmp_sae_b").value  # one SAE run only
    assert any("same dictionary" in w.value for w in at.warning)
    at.button(key="cka_go").click().run()  # the default three sentences
    assert not at.exception and any("CKA over 3 sentence(s)" in w.value for w in at.warning)


def test_dla_reads_out_the_predicted_token_and_the_lens_masks_and_refuses_over_long_input(app_env):  # noqa: F811
    at = _run("mechanisms")
    # an MLM's lens reads a [MASK]ed word by default (not its own unmasked input)
    assert at.selectbox(key="mech_mask").value == "2: fell"
    assert any("[MASK]" in str(c) for df in at.dataframe for c in df.value.columns)
    at.toggle(key="mech_dla").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="mech_dla_target").value == "top"
    chart = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    title = next(c["layout"]["title"]["text"] for c in chart if c["layout"]["title"]["text"].startswith("Direct"))
    assert "random" not in title
    at.text_input(key="mech_text").set_value("the market " * 80).run()  # under 2000 characters, over 128 tokens
    assert not at.exception and any("at most 128" in e.value for e in at.error)


def test_feature_search_opens_the_latent_it_ranked_first(app_env):  # noqa: F811
    at = _run("features")
    labels = pd.read_parquet(app_env / "sae" / "tiny-resid0" / "labels.parquet")
    query = labels.sort_values("count", ascending=False)["label"].iloc[0]
    at.text_input(key="sae_query").set_value(str(query)).run()
    assert not at.exception, [e.value for e in at.exception]
    found = next(df.value for df in at.dataframe if "precision" in df.value.columns)
    assert int(at.selectbox(key="sae_feature").value) == int(found["feature"].iloc[0])


def test_ptb_unknown_word_is_one_token_and_names_are_human():
    tokens, acts, center = merge_unknown(["the", "<", "un", "##k", ">", "rose"], [0.1, 0.2, 0.9, 0.3, 0.0, 0.5], 3)
    assert tokens == ["the", "<unk>", "rose"] and acts == [0.1, 0.9, 0.5] and center == 1
    assert merge_unknown(["a", "b"], [1.0, 2.0], 1) == (["a", "b"], [1.0, 2.0], 1)
    assert method_name("integrated_gradients") == "Integrated Gradients" and metric_name("kendall_tau") == "Kendall's τ"
