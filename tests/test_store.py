"""workbench.store: reruns are free, killed runs resume losing nothing, results identical."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.attribution import AttributionParams, attribute
from workbench.store import AttributionStore
from workbench.subject import load_subject

TEXTS = ["the market fell last week .", "prices rose .", "analysts expect a recovery next year .",
         "shares of the company closed lower .", "the index gained in early trading ."]


@pytest.fixture(scope="module")
def subject(tiny_atinuke_dir):
    return load_subject(tiny_atinuke_dir)


class Killed(RuntimeError):
    pass


def test_killed_run_resumes_and_matches(subject, tmp_path):
    params = AttributionParams(n_steps=4, batch_size=2)
    reference = attribute(subject, TEXTS, "integrated_gradients", params=params)

    store = AttributionStore(tmp_path / "store")
    batches = []

    def kill_after_two(ids):
        batches.append(ids)
        if len(batches) == 2:
            raise Killed("simulated kill")

    with pytest.raises(Killed):
        attribute(subject, TEXTS, "integrated_gradients", params=params, store=store, on_batch=kill_after_two)
    done = [i for batch in batches for i in batch]
    assert len(store) == len(done) and 0 < len(done) < len(TEXTS)  # all finished before the kill was written

    rerun = AttributionStore(tmp_path / "store")
    computed = []
    result = attribute(subject, TEXTS, "integrated_gradients", params=params, store=rerun, on_batch=computed.extend)
    assert sorted(computed) == sorted(set(map(str, range(len(TEXTS)))) - set(done))  # only the rest
    assert rerun.hits == len(done) and rerun.writes == len(TEXTS) - len(done)
    pd.testing.assert_frame_equal(result.frame, reference.frame)

    again = AttributionStore(tmp_path / "store")
    free = []
    attribute(subject, TEXTS, "integrated_gradients", params=params, store=again, on_batch=free.extend)
    assert free == [] and again.hits == len(TEXTS)


def test_key_changes_with_every_input(subject):
    base = ("hash", "0", ["a text"], "saliency", "{}", "norm")
    keys = {AttributionStore.key(*base)}
    for i, value in enumerate([("other",), ("1",), (["b text"],), ("lime",), ('{"n": 1}',), ("class=1",)]):
        changed = list(base)
        changed[i] = value[0]
        keys.add(AttributionStore.key(*changed))
    assert len(keys) == 7
    assert AttributionStore.key(*base) == AttributionStore.key(*base)


def test_params_and_model_enter_the_key(subject, tmp_path):
    store = AttributionStore(tmp_path / "s")
    attribute(subject, TEXTS[:2], "integrated_gradients", params=AttributionParams(n_steps=4), store=store)
    attribute(subject, TEXTS[:2], "integrated_gradients", params=AttributionParams(n_steps=6), store=store)
    attribute(subject, TEXTS[:2], "integrated_gradients", params=AttributionParams(n_steps=6, batch_size=1),
              store=store)  # batch size does not change results, so it is not in the key
    assert len(store) == 4 and store.hits == 2


def test_corrupt_entry_is_recomputed(subject, tmp_path):
    store = AttributionStore(tmp_path / "s")
    first = attribute(subject, TEXTS[:1], "saliency", store=store)
    (entry,) = list((tmp_path / "s").glob("*/*.parquet"))
    entry.write_bytes(b"not parquet")
    again = AttributionStore(tmp_path / "s")
    second = attribute(subject, TEXTS[:1], "saliency", store=again)
    assert again.hits == 0 and again.writes == 1
    pd.testing.assert_frame_equal(first.frame, second.frame)
