"""The record every generator returns before it is written in its task's official format."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from atinuke.diagnostic.text import Sentence

# A class label (int/str), a similarity score (float), BIO tags (SRL) or clusters of inclusive word spans (coref).
Label = Union[int, float, str, list[str], list[list[tuple[int, int]]], None]


@dataclass
class Item:
    """One generated example.

    Attributes:
        label: class label (int/str), similarity score (float), BIO tags (SRL: list of str) or clusters of
            inclusive ``(start, end)`` word spans (coreference).
        texts: the example's text segments (segment 0 first, then segment 1).
        rationale: ``(segment, char_start, char_end)`` spans of the evidence that decides the label.
        sentence: the source :class:`~atinuke.diagnostic.text.Sentence` (None for multi-sentence items).
        meta: generation rule and slicing features, written to the sidecar.
        extra: format-specific fields (e.g. the source ids written in a TSV).
    """

    label: Label
    texts: tuple[str, ...]
    rationale: list[tuple[int, int, int]]
    sentence: Optional[Sentence] = None
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def pair_rationale(a: str, b: str) -> list[tuple[int, int, int]]:
    """Rationale of a sentence pair: the changed tokens of ``a`` (segment 0) and of ``b`` (segment 1)."""
    from atinuke.diagnostic.text import diff_spans

    spans_a, spans_b = diff_spans(a, b)
    return [(0, s, e) for s, e in spans_a] + [(1, s, e) for s, e in spans_b]


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the lower-cased word sets of ``a`` and ``b`` (a slicing feature)."""
    from atinuke.diagnostic.text import tokens_with_offsets

    wa = {t.lower() for t, _, _ in tokens_with_offsets(a) if t.isalnum()}
    wb = {t.lower() for t, _, _ in tokens_with_offsets(b) if t.isalnum()}
    return round(len(wa & wb) / max(1, len(wa | wb)), 4)


def balance(items: list[Item]) -> list[Item]:
    """Drop the latest items of over-represented labels so every label has the same count (order kept)."""
    counts: dict[Label, int] = {}
    for it in items:
        counts[it.label] = counts.get(it.label, 0) + 1
    if not counts:
        return items
    keep = min(counts.values())
    seen: dict[Label, int] = {}
    out = []
    for it in items:
        seen[it.label] = seen.get(it.label, 0) + 1
        if seen[it.label] <= keep:
            out.append(it)
    return out
