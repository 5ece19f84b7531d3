"""Frozen representations for probing: every layer from one forward pass, pooled into words, stored on disk.

One forward pass per batch (through :mod:`workbench.subject`, so Atinuke and Hugging Face encoders are read
at the same hook names) caches the residual stream at every layer: layer 0 is ``blocks.0.hook_resid_pre``
(the embedding output) and layer i is ``blocks.{i-1}.hook_resid_post``. Sub-word tokens are pooled into
words through the tokenizer's offset mappings (a token belongs to every word its characters overlap):
the mean, the first and the last sub-token. Spans are rebuilt exactly from these at read time: the
token-mean of a span is the token-count-weighted mean of its words' means, and the endpoint representation
is ``[first token of the first word; last token of the last word]`` (Tenney et al., 2019, arXiv 1905.06316,
pool spans, concatenate pairs). A sentence vector is the mean over its non-special tokens; for a decoder
(``subject.causal``), whose earlier positions have not read the rest of the sentence, it is the state of the last
non-special token, the one position that has read it all.

On-disk layout (written atomically as one directory; float16 ``.npy`` files opened as memory maps, so a
probe reads one layer at a time and memory stays bounded):

    meta.json                 model, kind, model_hash, n_layers (stored layers = model layers + 1), d_model, pools,
                              sentence_pool (mean, or last for a decoder)
    words.parquet             one row per word: sentence, word, char_start, char_end, n_tokens
    sentences.parquet         id, n_words, word_offset (index of the sentence's first word row)
    layer_{l}.{pool}.npy      [n_words, d_model] for pool in mean/first/last
    layer_{l}.sentence.npy    [n_sentences, d_model]
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir, atomic_write_json
from probes.tasks import ProbeSentence

logger = logging.getLogger(__name__)

__all__ = ["WORD_POOLS", "SPAN_POOLS", "FeatureStore", "extract_features", "open_store", "layer_hook_names",
           "target_features", "TargetFeatures", "sentences_fingerprint"]

WORD_POOLS = ("mean", "first", "last")
SPAN_POOLS = ("mean", "endpoints")
_FORMAT = 1


def layer_hook_names(n_layers: int) -> list[str]:
    """Hook names of layers 0..n_layers: the embedding output, then each block's output."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def sentences_fingerprint(sentences: Sequence[ProbeSentence]) -> str:
    """sha256 over the texts and word offsets (a store is reused only for the same words)."""
    digest = hashlib.sha256()
    for s in sentences:
        digest.update(json.dumps([s.text, s.text_pair, s.word_spans]).encode())
    return digest.hexdigest()


@dataclass
class FeatureStore:
    """A directory of stored representations (see the module docstring for the layout).

    Attributes:
        path: the directory.
        meta: the contents of meta.json.
        words: one row per word (sentence, word, char_start, char_end, n_tokens).
        sentences: one row per sentence (id, n_words, word_offset).
    """

    path: Path
    meta: dict
    words: pd.DataFrame
    sentences: pd.DataFrame

    @property
    def n_layers(self) -> int:
        """Number of stored layers (the model's blocks + the embedding layer 0)."""
        return int(self.meta["n_layers"])

    @property
    def d_model(self) -> int:
        return int(self.meta["d_model"])

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise UserInputError(f"layer {layer} out of range: {self.meta['model']} has layers 0..{self.n_layers - 1}")

    def layer(self, layer: int, pool: str = "mean") -> np.ndarray:
        """Word vectors of one layer, a read-only float16 memmap [n_words, d_model]."""
        self._check_layer(layer)
        if pool not in self.meta["pools"]:
            raise UserInputError(f"pool {pool!r} not stored in {self.path}; stored: {', '.join(self.meta['pools'])}")
        return np.load(self.path / f"layer_{layer}.{pool}.npy", mmap_mode="r")

    def sentence_layer(self, layer: int) -> np.ndarray:
        """Sentence vectors of one layer, a read-only float16 memmap [n_sentences, d_model]."""
        self._check_layer(layer)
        return np.load(self.path / f"layer_{layer}.sentence.npy", mmap_mode="r")


def open_store(path: Union[str, Path]) -> FeatureStore:
    """Open a stored feature directory.

    Raises:
        UserInputError: when the directory is not a complete feature store.
    """
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise UserInputError(f"{path}: not a feature store (no meta.json)")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("format") != _FORMAT:
        raise UserInputError(f"{meta_file}: unsupported feature-store format {meta.get('format')!r}")
    return FeatureStore(path, meta, pd.read_parquet(path / "words.parquet"), pd.read_parquet(path / "sentences.parquet"))


def _token_word_pairs(offsets: np.ndarray, sequence_ids: list, valid: np.ndarray,
                      word_spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(token position, word index) for every token of segment 0 that overlaps a word, in token order.

    Args:
        offsets: [pos, 2] character offsets of one sequence.
        sequence_ids: segment of each position (None for special tokens).
        valid: [pos] attention mask as bool.
        word_spans: ``(start, end)`` characters of each word, increasing.
    """
    positions = np.array([p for p, seg in enumerate(sequence_ids) if seg == 0 and valid[p]
                          and offsets[p, 1] > offsets[p, 0]], dtype=np.int64)
    if not word_spans or positions.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.array([s for s, _ in word_spans])
    ends = np.array([e for _, e in word_spans])
    tok_start, tok_end = offsets[positions, 0], offsets[positions, 1]
    lo = np.searchsorted(ends, tok_start, side="right")  # first word ending after the token starts
    hi = np.searchsorted(starts, tok_end, side="left")  # words starting before the token ends: < hi
    count = np.maximum(hi - lo, 0)
    token = np.repeat(positions, count)
    word = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi) if b > a]) if count.any() else np.zeros(0, np.int64)
    return token, word.astype(np.int64)


def _open_outputs(tmp: Path, n_layers: int, n_words: int, n_sentences: int, d_model: int,
                  pools: Sequence[str]) -> dict:
    out = {}
    for layer in range(n_layers):
        for pool in pools:
            out[(layer, pool)] = np.lib.format.open_memmap(tmp / f"layer_{layer}.{pool}.npy", mode="w+",
                                                            dtype=np.float16, shape=(n_words, d_model))
        out[(layer, "sentence")] = np.lib.format.open_memmap(tmp / f"layer_{layer}.sentence.npy", mode="w+",
                                                              dtype=np.float16, shape=(n_sentences, d_model))
    return out


def extract_features(subject, sentences: Sequence[ProbeSentence], out: Union[str, Path],
                     pools: Sequence[str] = WORD_POOLS, batch_size: int = 32, max_length: Optional[int] = None,
                     progress: bool = True) -> FeatureStore:
    """Encode ``sentences`` once and store pooled word and sentence vectors of every layer.

    Args:
        subject: a ``workbench.subject.Subject`` (or anything ``load_subject`` accepts: "minilm", a
            directory, an ``Encoder``).
        sentences: texts with word character offsets.
        out: the store directory (replaced atomically when complete).
        pools: word pools to store, from ``WORD_POOLS`` (span endpoints need "first" and "last").
        batch_size: sentences per forward pass.
        max_length: token limit (default the model's); longer inputs are truncated with a warning and
            their cut-off words get ``n_tokens == 0``.
        progress: show a tqdm bar.

    Returns:
        The opened :class:`FeatureStore`.

    Raises:
        UserInputError: no sentences, an unknown pool, or a tokenizer without offset mappings.
    """
    from workbench.subject import load_subject

    subject = load_subject(subject)
    if not sentences:
        raise UserInputError("no sentences to encode")
    unknown = [p for p in pools if p not in WORD_POOLS]
    if unknown:
        raise UserInputError(f"unknown word pool {unknown[0]!r}; choose from {WORD_POOLS}")
    if not getattr(subject.tokenizer, "is_fast", False):
        raise UserInputError(f"{subject.name}: its tokenizer ({type(subject.tokenizer).__name__}) gives no offset "
                             "mappings; probing needs a fast (Rust) tokenizer")
    names = layer_hook_names(subject.n_layers)
    n_layers, d_model = len(names), subject.d_model
    word_counts = np.array([len(s.word_spans) for s in sentences])
    word_offsets = np.concatenate([[0], np.cumsum(word_counts)])
    n_tokens = np.zeros(int(word_offsets[-1]), dtype=np.int32)
    out = Path(out)
    with atomic_dir(out) as tmp:
        arrays = _open_outputs(tmp, n_layers, int(word_offsets[-1]), len(sentences), d_model, pools)
        bar = tqdm(total=len(sentences), desc=f"encode {subject.name}", unit="sent", disable=not progress)
        for begin in range(0, len(sentences), batch_size):
            batch = sentences[begin:begin + batch_size]
            pairs = [s.text_pair for s in batch] if any(s.text_pair for s in batch) else None
            encoded = subject.tokenize([s.text for s in batch], pairs, max_length=max_length)
            if "offset_mapping" not in encoded:
                raise UserInputError(f"{subject.name}: the tokenizer returned no offset mappings")
            with torch.inference_mode():
                cache = subject.run_with_cache(encoded, names=names)
                hidden = torch.stack([cache[n] for n in names]).float()  # [n_layers, batch, pos, d_model]
                _pool_batch(hidden, encoded, batch, begin, word_offsets, n_tokens, arrays, pools,
                            causal=bool(getattr(subject, "causal", False)))
            bar.update(len(batch))
        bar.close()
        for array in arrays.values():
            array.flush()
        del arrays
        words = pd.DataFrame({
            "sentence": np.repeat(np.arange(len(sentences)), word_counts),
            "word": np.concatenate([np.arange(n) for n in word_counts]),
            "char_start": [s for sent in sentences for s, _ in sent.word_spans],
            "char_end": [e for sent in sentences for _, e in sent.word_spans],
            "n_tokens": n_tokens,
        })
        words.to_parquet(tmp / "words.parquet", index=False)
        pd.DataFrame({"id": [s.id for s in sentences], "n_words": word_counts,
                      "word_offset": word_offsets[:-1]}).to_parquet(tmp / "sentences.parquet", index=False)
        atomic_write_json(tmp / "meta.json", {
            "format": _FORMAT, "model": subject.name, "kind": subject.kind, "model_hash": subject.model_hash(),
            "n_layers": n_layers, "d_model": d_model, "pools": list(pools), "hook_names": names,
            "sentence_pool": "last" if getattr(subject, "causal", False) else "mean",
            "n_words": int(word_offsets[-1]), "n_sentences": len(sentences),
            "sentences_sha256": sentences_fingerprint(sentences), "dtype": "float16",
        })
    missing = int((n_tokens == 0).sum())
    if missing:
        logger.warning("%d of %d words got no sub-word token (truncated or dropped by the tokenizer)",
                       missing, len(n_tokens))
    return open_store(out)


def _pool_batch(hidden: torch.Tensor, encoded, batch: Sequence[ProbeSentence], begin: int, word_offsets: np.ndarray,
                n_tokens: np.ndarray, arrays: dict, pools: Sequence[str], causal: bool = False) -> None:
    """Pool one batch's hidden states into word and sentence vectors and write them to the memmaps (``causal``:
    the sentence vector is the last non-special token's state)."""
    n_layers, n_batch, n_pos, d_model = hidden.shape
    offsets = encoded["offset_mapping"].numpy()  # [batch, pos, 2]
    mask = encoded["attention_mask"].numpy().astype(bool)  # [batch, pos]
    tokens: list[np.ndarray] = []
    words: list[np.ndarray] = []
    for i, probe_sentence in enumerate(batch):
        pair_token, pair_word = _token_word_pairs(offsets[i], encoded.sequence_ids(i), mask[i], probe_sentence.word_spans)
        tokens.append(pair_token + i * n_pos)
        words.append(pair_word + word_offsets[begin + i] - word_offsets[begin])
    token = torch.from_numpy(np.concatenate(tokens)).to(hidden.device)
    word = torch.from_numpy(np.concatenate(words)).to(hidden.device)
    first_word, last_word = int(word_offsets[begin]), int(word_offsets[begin + len(batch)])
    n_words = last_word - first_word
    flat = hidden.reshape(n_layers, n_batch * n_pos, d_model)  # [n_layers, batch*pos, d_model]
    counts = torch.bincount(word, minlength=n_words)  # [words]
    n_tokens[first_word:last_word] = counts.cpu().numpy()
    pooled: dict[str, torch.Tensor] = {}
    if "mean" in pools:
        sums = torch.zeros(n_layers, n_words, d_model, device=hidden.device).index_add_(1, word, flat[:, token])
        pooled["mean"] = sums / counts.clamp(min=1).unsqueeze(-1)  # [n_layers, words, d_model]
    if "first" in pools or "last" in pools:
        # Pairs are in token order, so a word's first (last) token is its first (last) pair.
        position = torch.full((n_words,), -1, dtype=torch.long, device=hidden.device)
        if "first" in pools:
            first = position.clone().scatter_reduce_(0, word, token, reduce="amin", include_self=False)
            pooled["first"] = _gather_or_zero(flat, first)
        if "last" in pools:
            last = position.clone().scatter_reduce_(0, word, token, reduce="amax", include_self=False)
            pooled["last"] = _gather_or_zero(flat, last)
    special = encoded.get("special_tokens_mask")
    keep = torch.from_numpy(mask) if special is None else torch.from_numpy(mask) & (special == 0)
    keep = keep.to(hidden.device).float()  # [batch, pos]
    if causal:
        last = (keep * torch.arange(1, n_pos + 1, device=keep.device)).argmax(1)  # [batch] last kept position
        sentence = hidden[:, torch.arange(n_batch, device=hidden.device), last]  # [n_layers, batch, d]
    else:
        sentence = (hidden * keep[None, :, :, None]).sum(2) / keep.sum(1).clamp(min=1)[None, :, None]  # [n_layers, batch, d]
    sentence_half = sentence.half().cpu().numpy()
    pooled_half = {pool: value.half().cpu().numpy() for pool, value in pooled.items()}
    for layer in range(n_layers):
        for pool, value in pooled_half.items():
            arrays[(layer, pool)][first_word:last_word] = value[layer]
        arrays[(layer, "sentence")][begin:begin + n_batch] = sentence_half[layer]


def _gather_or_zero(flat: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """flat[:, position] with zeros where position == -1 (a word without tokens). Returns [n_layers, words, d]."""
    gathered = flat[:, position.clamp(min=0)]
    return gathered * (position >= 0).to(flat.dtype)[None, :, None]


@dataclass
class TargetFeatures:
    """Probe inputs of one layer.

    Attributes:
        X: float32 features, shape [n_targets, d] (word/sentence, span mean), [n, 2d] (span endpoints, or
            an edge of mean spans), [n, 4d] (an edge of endpoint spans).
        valid: bool [n_targets]; False where a span has a word without sub-word tokens (truncated).
    """

    X: np.ndarray
    valid: np.ndarray


def _span(store: FeatureStore, layer: int, start: np.ndarray, end: np.ndarray, pool: str,
          word_pool: str) -> tuple[np.ndarray, np.ndarray]:
    """Pooled spans of global word indices [start, end] (inclusive). Returns (vectors, valid)."""
    n_tok = store.words["n_tokens"].to_numpy()
    if pool == "endpoints":
        first, last = store.layer(layer, "first"), store.layer(layer, "last")
        valid = (n_tok[start] > 0) & (n_tok[end] > 0)
        return np.concatenate([np.asarray(first[start], np.float32), np.asarray(last[end], np.float32)], 1), valid
    if pool != "mean":
        raise UserInputError(f"unknown span pool {pool!r}; choose from {SPAN_POOLS}")
    vectors = store.layer(layer, word_pool if word_pool in ("first", "last") else "mean")
    if (start == end).all():  # single words: the stored word pool itself
        return np.asarray(vectors[start], np.float32), n_tok[start] > 0
    total = np.zeros((len(start), store.d_model), np.float32)
    weight = np.zeros(len(start), np.float32)
    valid = np.ones(len(start), bool)
    for k in range(int((end - start).max()) + 1):
        inside = start + k <= end
        index = np.where(inside, start + k, start)
        count = n_tok[index] * inside
        valid &= ~inside | (n_tok[index] > 0)
        # Token-mean of the span = sum over words of (word mean x word token count) / total tokens.
        total += np.asarray(vectors[index], np.float32) * count[:, None]
        weight += count
    return total / np.maximum(weight, 1)[:, None], valid


def target_features(store: FeatureStore, targets: pd.DataFrame, layer: int, span_pool: str = "mean",
                    word_pool: str = "mean") -> TargetFeatures:
    """Build probe inputs for targets (rows of ``ProbingData.targets``) from one stored layer.

    Word targets use ``word_pool``; multi-word spans use ``span_pool`` ("mean": token mean, "endpoints":
    first and last token concatenated); edges concatenate their two spans (Tenney et al., 2019); sentence
    targets (``a_start == -1``) use the sentence vector.

    Returns:
        :class:`TargetFeatures`.
    """
    if targets.empty:
        raise UserInputError("no targets to featurise")
    sentence = targets["sentence"].to_numpy()
    if (targets["a_start"] < 0).all():
        X = np.asarray(store.sentence_layer(layer)[sentence], np.float32)
        return TargetFeatures(X, np.ones(len(X), bool))
    base = store.sentences["word_offset"].to_numpy()[sentence]
    a, a_valid = _span(store, layer, base + targets["a_start"].to_numpy(), base + targets["a_end"].to_numpy(),
                       span_pool, word_pool)
    if (targets["b_start"] < 0).all():
        return TargetFeatures(a, a_valid)
    b, b_valid = _span(store, layer, base + targets["b_start"].to_numpy(), base + targets["b_end"].to_numpy(),
                       span_pool, word_pool)
    return TargetFeatures(np.concatenate([a, b], axis=1), a_valid & b_valid)  # [n, 2 * span dim]
