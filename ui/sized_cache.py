"""A process-wide cache bounded by bytes, not by count: the app's loaded models and attention maps.

``st.cache_resource(max_entries=4)`` bounds how many models stay loaded, not how much memory they take: four
7B-parameter models fit its bound as well as four tiny ones. :func:`sized_cache` keeps the least recently used
entries whose sizes sum to at most a budget (the newest entry is always kept, whatever its size), shares one
value per key across every session and thread (as ``st.cache_resource``), and computes a key once: a second
caller of a key being computed waits for it rather than computing it again.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

logger = logging.getLogger(__name__)


def budget_from_env(variable: str, default_mb: float) -> int:
    """A byte budget from ``$variable`` (megabytes), else ``default_mb``."""
    try:
        return int(float(os.environ.get(variable, default_mb)) * 2**20)
    except ValueError:
        logger.warning("$%s is not a number of megabytes; using %s", variable, default_mb)
        return int(default_mb * 2**20)


class SizedCache:
    """LRU entries key -> (value, bytes), at most ``budget()`` bytes in all (the newest entry always kept)."""

    def __init__(self, function: Callable[..., Any], size_of: Callable[[Any], int], budget: Callable[[], int]) -> None:
        self.function, self.size_of, self.budget = function, size_of, budget
        self.entries: "OrderedDict[Hashable, tuple[Any, int]]" = OrderedDict()
        self.computing: dict[Hashable, threading.Event] = {}
        self.lock = threading.Lock()
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any) -> Any:
        key = args
        while True:
            with self.lock:
                if key in self.entries:
                    self.entries.move_to_end(key)
                    return self.entries[key][0]
                pending = self.computing.get(key)
                if pending is None:
                    self.computing[key] = threading.Event()
                    break
            pending.wait()  # another thread computes it; then read it (or compute it, if that one failed)
        try:
            value = self.function(*args)
            size = int(self.size_of(value))
            with self.lock:
                self.entries[key] = (value, size)
                self._evict()
            return value
        finally:
            with self.lock:
                self.computing.pop(key).set()

    def _evict(self) -> None:
        budget = self.budget()
        while len(self.entries) > 1 and self.total_bytes() > budget:
            key, (_, size) = self.entries.popitem(last=False)
            logger.info("%s: evicted %r (%.1f MB) to stay within %.0f MB", self.function.__name__, key, size / 2**20,
                        budget / 2**20)

    def total_bytes(self) -> int:
        return sum(size for _, size in self.entries.values())

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


def sized_cache(size_of: Callable[[Any], int], budget: Callable[[], int]) -> Callable[[Callable[..., Any]], SizedCache]:
    """Decorator: cache a function of hashable positional arguments within ``budget()`` bytes (see module)."""
    return lambda function: SizedCache(function, size_of, budget)


def module_bytes(subject: Any) -> int:
    """Bytes of a loaded model's parameters and buffers (a Subject's outermost module)."""
    module = getattr(subject, "module", subject)
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def array_bytes(value: Any) -> int:
    """Bytes of the numpy arrays in a dict (an attention map's pattern), plus a small fixed overhead."""
    values = value.values() if isinstance(value, dict) else [value]
    return 1024 + sum(int(getattr(v, "nbytes", 0)) for v in values)


__all__ = ["SizedCache", "array_bytes", "budget_from_env", "module_bytes", "sized_cache"]
