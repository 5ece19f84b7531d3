"""ui.sized_cache: the app's shared caches are bounded by bytes (not by count) and compute a key once."""
from __future__ import annotations

import threading
import time

import numpy as np

from ui.sized_cache import SizedCache, array_bytes


def test_entries_are_evicted_by_size_least_recently_used_first():
    calls = []
    cache = SizedCache(lambda n: calls.append(n) or np.zeros(n, dtype=np.uint8), lambda a: a.nbytes, lambda: 1000)
    cache(400), cache(500)
    assert cache.total_bytes() == 900
    cache(400)  # a hit: 400 becomes the most recent
    cache(300)  # 1200 > 1000: the least recently used (500) goes, not the oldest inserted
    assert [k[0] for k in cache.entries] == [400, 300] and calls == [400, 500, 300]
    cache(5000)  # larger than the budget alone: kept (the newest entry always is), everything else evicted
    assert [k[0] for k in cache.entries] == [5000] and cache.total_bytes() == 5000
    cache.clear()
    assert not cache.entries


def test_a_key_is_computed_once_however_many_threads_ask():
    calls = []

    def slow(key):
        calls.append(key)
        time.sleep(0.2)
        return {"pattern": np.ones(10)}
    cache = SizedCache(slow, array_bytes, lambda: 10**6)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache("a"))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["a"] and len(results) == 6 and all(r is results[0] for r in results)


def test_a_failed_computation_is_not_cached_and_a_waiter_retries():
    attempts = []

    def flaky(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise ValueError("first try fails")
        return np.ones(3)
    cache = SizedCache(flaky, lambda a: a.nbytes, lambda: 10**6)
    try:
        cache("k")
    except ValueError:
        pass
    assert not cache.entries and cache("k").sum() == 3 and attempts == ["k", "k"]
