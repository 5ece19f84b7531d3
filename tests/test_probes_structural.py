"""Structural probe (Hewitt & Manning, 2019): tree metrics and recovery of a planted tree embedding."""
from __future__ import annotations

import numpy as np

from probes.structural import StructuralProbe, evaluate_structural, tree_depths, tree_distances


def test_tree_distances_and_depths():
    heads = [1, 1, 1, 2]  # 0 <- 1 (root) -> 2 -> 3
    assert tree_distances(heads).tolist() == [[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1], [3, 2, 1, 0]]
    assert tree_depths(heads).tolist() == [1, 0, 1, 2]


def _random_trees(rng, n_sentences=60, d=24):
    """Trees embedded isometrically in squared L2 (each edge an orthogonal direction; a word = sum of the
    edges on its path from the root), rotated into ``d`` dimensions, plus noise dimensions."""
    sentences, heads, rotation = [], [], np.linalg.qr(rng.normal(size=(d, d)))[0]
    for _ in range(n_sentences):
        n = int(rng.integers(6, 12))
        tree = [0] + [int(rng.integers(0, i)) for i in range(1, n)]  # word i attaches to an earlier word
        edge = rng.permutation(d // 2)[:n]  # edge direction of word i (the edge to its head)
        vectors = np.zeros((n, d))
        for i in range(1, n):
            vectors[i] = vectors[tree[i]]
            vectors[i, edge[i]] += 1.0
        sentences.append(vectors @ rotation + 0.01 * rng.normal(size=(n, d)))
        heads.append(tree)
    return sentences, heads


def test_distance_probe_recovers_a_planted_tree_and_not_a_random_one():
    rng = np.random.default_rng(0)
    sentences, heads = _random_trees(rng)
    probe = StructuralProbe(kind="distance", rank=24, epochs=40, lr=1e-2, random_state=0)
    probe.fit(sentences[:40], heads[:40])
    planted = evaluate_structural(probe, sentences[40:], heads[40:])
    assert planted.uuas > 0.9 and planted.spearman > 0.9
    noise = [rng.normal(size=s.shape) for s in sentences]
    random = StructuralProbe(kind="distance", rank=24, epochs=40, lr=1e-2, random_state=0).fit(noise[:40], heads[:40])
    assert evaluate_structural(random, noise[40:], heads[40:]).uuas < 0.6


def test_depth_probe_finds_the_root():
    rng = np.random.default_rng(1)
    sentences, heads = _random_trees(rng)
    probe = StructuralProbe(kind="depth", rank=24, epochs=40, lr=1e-2, random_state=0).fit(sentences[:40], heads[:40])
    scores = evaluate_structural(probe, sentences[40:], heads[40:])
    assert scores.root_accuracy > 0.9 and scores.spearman > 0.8
