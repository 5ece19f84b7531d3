"""Structural probes for syntax trees (Hewitt & Manning, 2019, "A Structural Probe for Finding Syntax in Word
Representations", NAACL, https://aclanthology.org/N19-1419).

A linear map ``B`` (rank x d_model) is trained so that squared distances in the projected space match tree
distances (distance probe), or squared norms match depths in the tree (depth probe):

    d_B(h_i, h_j)^2 = (B (h_i - h_j))^T (B (h_i - h_j))  ~  d_T(w_i, w_j)
    ||B h_i||^2                                         ~  depth(w_i)

with the L1 loss averaged over word pairs (words) and normalised by the squared sentence length (length), as
in the paper. Evaluation: UUAS (undirected attachment score of the minimum spanning tree of the predicted
distances), mean Spearman correlation of distances (depths) per sentence for lengths 5..50, and root accuracy
(the shallowest predicted word is the gold root).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path
from scipy.stats import spearmanr

__all__ = ["tree_distances", "tree_depths", "StructuralProbe", "StructuralScores", "evaluate_structural"]

logger = logging.getLogger(__name__)


def tree_distances(heads: Sequence[int]) -> np.ndarray:
    """Path lengths between all words of a dependency tree.

    Args:
        heads: head index of each word (the root points to itself or is -1).

    Returns:
        Integer matrix [n_words, n_words].
    """
    n = len(heads)
    adjacency = np.zeros((n, n))
    for child, head in enumerate(heads):
        if 0 <= head < n and head != child:
            adjacency[child, head] = adjacency[head, child] = 1
    return shortest_path(adjacency, unweighted=True, directed=False).astype(np.int64)


def tree_depths(heads: Sequence[int]) -> np.ndarray:
    """Depth of each word (edges to the root), shape [n_words]."""
    roots = [i for i, h in enumerate(heads) if h == i or h < 0]
    if len(roots) != 1:
        raise ValueError(f"a dependency tree needs exactly one root, got {len(roots)}")
    return tree_distances(heads)[roots[0]]


@dataclass
class StructuralScores:
    """Evaluation of a structural probe.

    Attributes:
        uuas: undirected unlabelled attachment score of the predicted minimum spanning trees (distance probe).
        spearman: mean per-sentence Spearman correlation of predicted vs gold distances (depths).
        root_accuracy: share of sentences whose shallowest predicted word is the root (depth probe).
    """

    uuas: float
    spearman: float
    root_accuracy: float


class StructuralProbe:
    """Hewitt & Manning (2019) distance or depth probe.

    Args:
        kind: "distance" or "depth".
        rank: rows of B (the paper uses up to the full width; 64 is enough for English trees).
        epochs: passes over the training sentences.
        lr: Adam step size.
        random_state: seed of B's initialisation and the sentence order.
    """

    def __init__(self, kind: str = "distance", rank: int = 64, epochs: int = 30, lr: float = 1e-3,
                 random_state: Optional[int] = None) -> None:
        self.kind = kind
        self.rank = rank
        self.epochs = epochs
        self.lr = lr
        self.random_state = random_state

    def _predict_one(self, B: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z = h @ B.T  # [n_words, rank]
        if self.kind == "depth":
            return (z * z).sum(-1)  # [n_words]
        diff = z[:, None, :] - z[None, :, :]  # [n_words, n_words, rank]
        return (diff * diff).sum(-1)  # [n_words, n_words]

    def fit(self, sentences: Sequence[np.ndarray], heads: Sequence[Sequence[int]]) -> "StructuralProbe":
        """Fit B.

        Args:
            sentences: word vectors per sentence, each [n_words, d_model].
            heads: head index of each word per sentence.

        Returns:
            self, with ``B_`` [rank, d_model] and ``n_features_in_`` set.
        """
        if self.kind not in ("distance", "depth"):
            raise ValueError(f"unknown structural probe kind {self.kind!r}; choose 'distance' or 'depth'")
        if not sentences or len(sentences) != len(heads):
            raise ValueError(f"{len(sentences)} sentences but {len(heads)} head lists")
        generator = torch.Generator().manual_seed(self.random_state or 0)
        d = sentences[0].shape[1]
        B = torch.nn.Parameter(torch.empty(self.rank, d).uniform_(-0.05, 0.05, generator=generator))
        optimizer = torch.optim.Adam([B], lr=self.lr)
        inputs = [torch.as_tensor(np.asarray(h, np.float32)) for h in sentences]
        targets = [torch.as_tensor((tree_depths(t) if self.kind == "depth" else tree_distances(t)).astype(np.float32))
                   for t in heads]
        for _ in range(self.epochs):
            for i in torch.randperm(len(inputs), generator=generator).tolist():
                n = inputs[i].shape[0]
                error = (self._predict_one(B, inputs[i]) - targets[i]).abs().sum()
                # L1 normalised by the number of pairs (words) of the sentence, as in Hewitt & Manning.
                loss = error / (n * n if self.kind == "distance" else n)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.B_ = B.detach()
        self.n_features_in_ = d
        return self

    def predict(self, sentences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Predicted squared distances [n, n] (distance) or squared norms [n] (depth) per sentence."""
        if not hasattr(self, "B_"):
            raise ValueError("this StructuralProbe is not fitted yet; call fit first")
        with torch.no_grad():
            return [self._predict_one(self.B_, torch.as_tensor(np.asarray(h, np.float32))).numpy() for h in sentences]


def evaluate_structural(probe: StructuralProbe, sentences: Sequence[np.ndarray],
                        heads: Sequence[Sequence[int]]) -> StructuralScores:
    """UUAS / Spearman / root accuracy of a fitted probe (Hewitt & Manning, 2019, §3.2)."""
    predictions = probe.predict(sentences)
    correct = total = 0
    correlations, roots = [], []
    for predicted, tree in zip(predictions, heads):
        n = len(tree)
        if probe.kind == "distance":
            gold_edges = {frozenset((c, h)) for c, h in enumerate(tree) if 0 <= h < n and h != c}
            mst = minimum_spanning_tree(np.triu(predicted + 1e-9, 1)).tocoo()  # +eps: zero distances are edges too
            predicted_edges = {frozenset((int(a), int(b))) for a, b in zip(mst.row, mst.col)}
            correct += len(gold_edges & predicted_edges)
            total += len(gold_edges)
            if 5 <= n <= 50:
                gold = tree_distances(tree)
                rows = [spearmanr(predicted[i], gold[i]).statistic for i in range(n)]
                correlations.append(np.nanmean(rows))
        else:
            depths = tree_depths(tree)
            roots.append(int(np.argmin(predicted)) == int(np.argmin(depths)))
            if 5 <= n <= 50:
                correlations.append(spearmanr(predicted, depths).statistic)
    return StructuralScores(uuas=correct / total if total else float("nan"),
                            spearman=float(np.nanmean(correlations)) if correlations else float("nan"),
                            root_accuracy=float(np.mean(roots)) if roots else float("nan"))
