"""One shared Subject, many threads (issue 30): the app keeps one loaded model per (spec, device, weights) in
``st.cache_resource``, shared by every browser session and by the background warm-up, and Streamlit runs each
session's script in its own thread. Every operation that hooks, ablates, patches or attributes must then return
exactly what the same call returns alone, and leave no hook behind.

Each family of the conformance suite (``tests/families.py``: the ``test_models_*.py`` files' tiny random models) is
saved with the tiny WordPiece tokenizer and loaded through ``load_subject``.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np
import pytest
import torch

from atinuke.tokenizer import save_tokenizer
from tests.families import FAMILIES, save_family
from workbench.attribution import AttributionParams, attribute
from workbench.models.bridges import ATTN_CALLBACKS
from workbench.models.llama import NORM_CALLBACKS
from workbench.subject import Subject, load_subject

N_THREADS, ROUNDS = 4, 3
TEXTS = ["The market fell sharply on Monday.", "Shares rose.", "The company said it would cut costs by ten percent.",
         "Prices of bonds were mixed in light trading yesterday."]  # four lengths: a mixed-up result shows


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread each, so that the test threads, not torch's pool, interleave."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", params=FAMILIES)
def subject(request, tmp_path_factory, tiny_tokenizer) -> Subject:
    path = save_family(request.param, tmp_path_factory.mktemp(request.param) / "model", len(tiny_tokenizer))
    save_tokenizer(tiny_tokenizer, path)
    return load_subject(path)


def _hook_state(subject: Subject) -> list[str]:
    """Everything a hook leaves on the shared model: torch hooks, swapped forwards, callbacks, attention switch."""
    left = []
    for name, module in subject.module.named_modules():
        if module._forward_hooks or module._forward_pre_hooks:
            left.append(f"torch hook on {name or 'root'}")
        if "forward" in vars(module):
            left.append(f"forward replaced on {name or 'root'}")
        if module in ATTN_CALLBACKS or module in NORM_CALLBACKS:
            left.append(f"callbacks on {name or 'root'}")
    return left


def _calls(subject: Subject, k: int) -> dict[str, Callable[[], Any]]:
    """The four operations of thread ``k``, each on its own sentence and hook names: name -> call returning
    tensors to compare."""
    text = TEXTS[k % len(TEXTS)]
    names = [f"blocks.{k % subject.n_layers}.attn.hook_pattern", f"blocks.{(k + 1) % subject.n_layers}.hook_resid_post"]
    names = [n for n in names if n in subject.hook_names] or [subject.hook_names[-1]]
    clean = subject.tokenize(text)
    corrupted = {key: value.clone() for key, value in clean.items()}
    corrupted["input_ids"][0, 1] = int(clean["input_ids"][0, 2])  # same length, one token changed
    patched = f"blocks.{k % subject.n_layers}.hook_resid_pre"
    ablated = {k % subject.n_layers: [k % subject.n_heads, (k + 1) % subject.n_heads]}
    params = AttributionParams(n_steps=4, batch_size=1)

    def cache() -> list[torch.Tensor]:
        with torch.no_grad():
            run = subject.run_with_cache(text, names)
        return [run[n] for n in names]

    def ablation() -> list[torch.Tensor]:
        with torch.no_grad(), subject.ablate_heads(ablated):
            out = subject.forward(text)
        return [out.last_hidden_state]

    def patch() -> list[torch.Tensor]:
        result = subject.patch(clean, corrupted, patched, positions=[1])
        return [result.patched_output.last_hidden_state, result.corrupted_output.last_hidden_state]

    def integrated_gradients() -> list[torch.Tensor]:
        frame = attribute(subject, [text], "integrated_gradients", params=params).frame
        return [torch.as_tensor(frame["score"].to_numpy().copy())]

    return {"cache": cache, "ablation": ablation, "patch": patch, "ig": integrated_gradients}


def _run_threads(work: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work))

    def run(job: Callable[[], None]) -> None:
        try:
            barrier.wait()
            job()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_threads_sharing_one_subject_get_what_they_get_alone(subject):
    alone = {(k, op): call() for k in range(N_THREADS) for op, call in _calls(subject, k).items()}
    assert not _hook_state(subject)
    wrong: list[str] = []

    def job(k: int) -> Callable[[], None]:
        def body() -> None:
            calls = _calls(subject, k)
            for r in range(ROUNDS):
                for op in sorted(calls, key=lambda o: hash((o, k, r))):  # each thread its own order
                    got = calls[op]()
                    expected = alone[(k, op)]
                    if (len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected))
                            or any(float((g - e).abs().max()) > 1e-6 for g, e in zip(got, expected))):
                        wrong.append(f"thread {k} round {r} {op}")
        return body

    errors = _run_threads([job(k) for k in range(N_THREADS)])
    assert not errors, errors
    assert not wrong, f"{len(wrong)} of {N_THREADS * ROUNDS * 4} calls differ from the same call alone: {wrong[:5]}"
    assert not _hook_state(subject)


def test_a_hook_left_open_in_one_thread_is_not_seen_by_another(subject):
    """A thread inside ``hooks()`` holds the model: another thread's plain forward pass waits, then runs clean."""
    text = TEXTS[0]
    with torch.no_grad():
        expected = subject.forward(text).last_hidden_state
    inside, release = threading.Event(), threading.Event()
    zero = next(n for n in subject.hook_names if n.endswith("hook_resid_post"))

    def hold() -> None:
        with subject.hooks([(zero, lambda act, hook: torch.zeros_like(act))]):
            inside.set()
            release.wait(timeout=30)
    results: list[torch.Tensor] = []

    def other() -> None:
        inside.wait(timeout=30)
        with torch.no_grad():
            results.append(subject.forward(text).last_hidden_state)
    threads = [threading.Thread(target=hold), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=30)
    threads[1].join(timeout=0.5)
    assert not results, "a forward pass ran while another thread's hook was attached"
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 1 and float((results[0] - expected).abs().max()) <= 1e-6
    assert not _hook_state(subject)


def test_the_app_warm_up_beside_a_page_call(tiny_atinuke_dir, tmp_path, monkeypatch):
    """The app's warm-up thread fills the shared model's cache while a visitor's page computes on the same model:
    both get the values they get alone."""
    from ui import common

    monkeypatch.setenv("ATINUKE_RUNS", str(tmp_path))
    spec = str(tiny_atinuke_dir)
    stamp = common.weights_stamp(spec)
    model = common.subject(spec)
    expected_maps = common.attention_maps.__wrapped__(spec, common.ATTENTION_DEFAULT_TEXT, True, stamp)
    page_text = TEXTS[2]
    expected_page = common.attribution_frame.__wrapped__(spec, page_text, ("integrated_gradients",), "pad", 4, stamp)
    with torch.no_grad():
        expected_cache = model.run_with_cache(TEXTS[3], ["blocks.1.attn.hook_pattern"])["blocks.1.attn.hook_pattern"]
    common.attention_maps.clear()
    common.attribution_frame.clear()
    for _ in range(2):
        warm = common.WarmUp((spec,))
        warm.thread = threading.Thread(target=warm.run)
        pages: list[Any] = []

        def page() -> None:
            pages.append(common.attribution_frame(spec, page_text, ("integrated_gradients",), "pad", 4, stamp))
            with torch.no_grad():
                pages.append(model.run_with_cache(TEXTS[3], ["blocks.1.attn.hook_pattern"]))
        visitor = threading.Thread(target=page)
        warm.thread.start()
        visitor.start()
        warm.thread.join(timeout=120)
        visitor.join(timeout=120)
        assert warm.error is None and warm.subjects[spec] is model
        maps = common.attention_maps(spec, common.ATTENTION_DEFAULT_TEXT, True, stamp)
        assert maps["labels"] == expected_maps["labels"]
        np.testing.assert_allclose(maps["pattern"], expected_maps["pattern"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(pages[0]["score"], expected_page["score"], rtol=0, atol=1e-6)
        assert float((pages[1]["blocks.1.attn.hook_pattern"] - expected_cache).abs().max()) <= 1e-6
        common.attention_maps.clear()
        common.attribution_frame.clear()
    assert not _hook_state(model)
