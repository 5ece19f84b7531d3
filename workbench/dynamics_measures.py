"""The measurements of :mod:`workbench.dynamics` on one snapshot: held-out loss, probes with their control task,
attention head statistics and scores, logit-lens KL, effective rank, and a small SAE's latents.

The references of each measure are in :mod:`workbench.dynamics`'s docstring (Clark et al., 2019; Olsson et al.,
2022; Hewitt & Liang, 2019; Roy & Vetterli, 2007; nostalgebraist, 2020).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

HEAD_TYPES = ("previous", "next", "cls", "sep", "punctuation", "other")
ALL_PARTS = ("loss", "probe", "heads", "repeat", "lens", "rank", "sae")


@dataclass(frozen=True)
class DynamicsConfig:
    """Settings of a dynamics analysis (all enter the cache key).

    Attributes:
        n_texts: held-out texts for the loss, heads, lens and rank; max_length: their tokens.
        text_source: where the held-out texts come from ("ptb": PTB valid; a registry source: its held-out split).
        probe_data: a CoNLL-U file with gold UPOS ("" = none: no probe rows); probe_sentences: how many.
        repeat_sequences, repeat_length: the random-token sequences (each repeated once) of the induction score.
        sae_width, sae_k, sae_steps: the per-snapshot SAE; sae_layer: its layer (None = the middle one).
        parts: which measurements to make (a subset of ``ALL_PARTS``).
        seed: masks, probe split, random sequences, SAEs.
    """

    n_texts: int = 64
    max_length: int = 64
    text_source: str = "ptb"
    probe_data: str = ""
    probe_sentences: int = 400
    repeat_sequences: int = 32
    repeat_length: int = 24
    sae_width: int = 256
    sae_k: int = 8
    sae_steps: int = 300
    sae_layer: Optional[int] = None
    parts: tuple[str, ...] = ALL_PARTS
    seed: int = 0

    def key(self) -> str:
        """A short hash of the settings (and the probe file's size and time), naming the cache directory."""
        settings = asdict(self)
        if self.probe_data and Path(self.probe_data).is_file():
            stat = Path(self.probe_data).stat()
            settings["probe_file"] = [stat.st_size, int(stat.st_mtime)]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def effective_rank(x: np.ndarray) -> float:
    """Roy & Vetterli (2007): exp of the Shannon entropy of the normalised singular values of centred ``x``
    [n, d]; d equal orthogonal directions give d, one direction gives 1."""
    centred = np.asarray(x, dtype=np.float64) - np.asarray(x, dtype=np.float64).mean(0)
    s = np.linalg.svd(centred, compute_uv=False)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def repeat_batch(tokenizer: Any, n: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` sequences [CLS] r r (r: ``length`` random non-special tokens) as a batch, seeded."""
    specials = set(tokenizer.all_special_ids)
    pool = torch.tensor([i for i in range(len(tokenizer)) if i not in specials])
    generator = torch.Generator().manual_seed(seed)
    r = pool[torch.randint(0, len(pool), (n, length), generator=generator)]  # [n, length]
    prefix = [] if tokenizer.cls_token_id is None else [torch.full((n, 1), tokenizer.cls_token_id)]
    ids = torch.cat([*prefix, r, r], dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def positional_scores(pattern: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Mean attention to the previous and to the next position, per layer and head.

    Args:
        pattern: [layers, batch, heads, T, T]; mask: [batch, T] real tokens.

    Returns:
        ``prev_token`` and ``next_token``: [layers, heads].
    """
    sums = {"prev_token": 0.0, "next_token": 0.0}
    counts = {"prev_token": 0, "next_token": 0}
    for b in range(pattern.shape[1]):
        n = int(mask[b].sum())
        if n < 2:
            continue
        p = pattern[:, b, :, :n, :n]
        q = np.arange(1, n)
        sums["prev_token"] = sums["prev_token"] + p[..., q, q - 1].sum(-1)
        sums["next_token"] = sums["next_token"] + p[..., q - 1, q].sum(-1)
        counts["prev_token"] += n - 1
        counts["next_token"] += n - 1
    return {k: np.asarray(sums[k]) / max(counts[k], 1) for k in sums}


def repeat_scores(pattern: np.ndarray, offset: int, length: int) -> dict[str, np.ndarray]:
    """Induction and duplicate-token scores on [prefix] r r (Olsson et al., 2022).

    Args:
        pattern: [layers, batch, heads, T, T] with T = offset + 2 * length.
        offset: tokens before the first copy; length: tokens of each copy.

    Returns:
        ``induction`` (attention from the second copy's token j to the first copy's token j + 1) and
        ``duplicate`` (to the first copy's token j), each [layers, heads], mean over queries and sequences.
    """
    j = np.arange(length - 1)
    queries = offset + length + j
    induction = pattern[..., queries, offset + j + 1].mean(-1).mean(1)  # [layers, heads]
    duplicate = pattern[..., queries, offset + j].mean(-1).mean(1)
    return {"induction": induction, "duplicate": duplicate}


def head_types(stats: pd.DataFrame) -> pd.Series:
    """Each head's type: the first behaviour holding at least half its attention mass (previous / next token,
    [CLS], [SEP], punctuation), else "other" (Clark et al., 2019's broad categories)."""
    columns = (("previous", "prev_token"), ("next", "next_token"), ("cls", "attn_cls"), ("sep", "attn_sep"),
               ("punctuation", "attn_punct"))

    def kind(row: pd.Series) -> str:
        return next((name for name, column in columns if float(row.get(column, 0) or 0) >= 0.5), "other")
    return stats.apply(kind, axis=1)


def read_conllu_upos(path: Path, limit: int) -> list[tuple[list[str], list[str]]]:
    """The first ``limit`` sentences of a CoNLL-U file as (words, UPOS tags); multiword-token and empty-node
    lines are skipped (the syntactic words carry the tags).

    Raises:
        UserInputError: for a missing file or a malformed line (``file:line``).
    """
    if not path.is_file():
        raise UserInputError(f"--probe-data {path}: no such CoNLL-U file")
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                    if len(sentences) >= limit:
                        break
                continue
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                raise UserInputError(f"{path}:{number}: a CoNLL-U line needs 10 tab-separated fields, has {len(fields)}")
            if "-" in fields[0] or "." in fields[0]:
                continue
            words.append(fields[1])
            tags.append(fields[3])
    if words and len(sentences) < limit:
        sentences.append((words, tags))
    if not sentences:
        raise UserInputError(f"--probe-data {path}: no sentences")
    return sentences


def default_probe_data() -> str:
    """UD English EWT dev under ``$ATINUKE_DATA`` when present, else "" (no probe)."""
    root = os.environ.get("ATINUKE_DATA")
    path = Path(root) / "ud_ewt" / "en_ewt-ud-dev.conllu" if root else None
    return str(path) if path is not None and path.is_file() else ""


def word_states(subject: Subject, sentences: Sequence[Sequence[str]], max_length: int
                ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The residual stream at every depth (embeddings, then each block) on each word's first sub-token.

    Returns:
        (per depth an array [n_words, d_model], each word's sentence index, each word's index in its sentence);
        words cut off by ``max_length`` are left out.
    """
    from workbench.compare import token_to_word, word_spans
    from workbench.lens import layer_names

    names = layer_names(subject)
    per_layer: list[list[np.ndarray]] = [[] for _ in names]
    sentence_of: list[int] = []
    word_of: list[int] = []
    for start in range(0, len(sentences), 32):
        chunk = [" ".join(words) for words in sentences[start:start + 32]]
        batch = subject.tokenize(chunk, max_length=max_length)
        with torch.no_grad():
            cache = subject.run_with_cache(batch, names)
        for b, text in enumerate(chunk):
            owner = token_to_word([tuple(o) for o in batch["offset_mapping"][b].tolist()], word_spans(text))
            real = batch["attention_mask"][b].bool().numpy()
            first: dict[int, int] = {}
            for position in np.flatnonzero((owner >= 0) & real):
                first.setdefault(int(owner[position]), int(position))
            kept = sorted(first)
            for depth, name in enumerate(names):
                per_layer[depth].append(cache[name][b, [first[w] for w in kept]].float().cpu().numpy())
            sentence_of += [start + b] * len(kept)
            word_of += kept
    return [np.concatenate(blocks) for blocks in per_layer], np.array(sentence_of), np.array(word_of)


def probe_rows(subject: Subject, sentences: Sequence[tuple[list[str], list[str]]], max_length: int, seed: int
               ) -> list[dict[str, Any]]:
    """Per depth: accuracy of a logistic-regression UPOS probe, of the same probe on the control task
    (:func:`workbench.probe_curves.control_labels`: one random tag per word type), and their difference.
    Sentences are split 80/20 into train and test (seeded)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from workbench.probe_curves import control_labels

    states, sentence_of, word_of = word_states(subject, [words for words, _ in sentences], max_length)
    labels = np.array([sentences[s][1][w] for s, w in zip(sentence_of, word_of)])
    types = [sentences[s][0][w].lower() for s, w in zip(sentence_of, word_of)]
    control = control_labels(types, labels.tolist(), seed=seed)
    order = np.random.default_rng(seed).permutation(len(sentences))
    test = np.isin(sentence_of, order[: max(1, len(sentences) // 5)])
    rows = []
    for depth, x in enumerate(states):
        x = StandardScaler().fit(x[~test]).transform(x)
        scores = {}
        for name, y in (("probe_accuracy", labels), ("probe_control", control)):
            probe = LogisticRegression(max_iter=300, C=1.0).fit(x[~test], y[~test])
            scores[name] = float((probe.predict(x[test]) == y[test]).mean())
        scores["probe_selectivity"] = scores["probe_accuracy"] - scores["probe_control"]
        rows += [dict(metric=name, layer=depth, head=-1, value=value) for name, value in scores.items()]
    return rows


def head_rows(subject: Subject, texts: Sequence[str], config: DynamicsConfig) -> list[dict[str, Any]]:
    """Per head: Clark et al.'s statistics and the previous/next-token scores on ``texts``, the induction and
    duplicate scores on repeated random tokens ("repeat" in ``config.parts``), the head types' shares."""
    from workbench.attention import head_statistics

    names = [f"blocks.{i}.attn.hook_pattern" for i in range(subject.n_layers)]
    stats = pd.DataFrame()
    if "heads" in config.parts:
        stats = head_statistics(subject, texts)
        batch = subject.tokenize(list(texts), max_length=config.max_length)
        with torch.no_grad():
            pattern = subject.run_with_cache(batch, names).stack("attn.hook_pattern").double().cpu().numpy()
        for name, value in positional_scores(pattern, batch["attention_mask"].numpy().astype(bool)).items():
            stats[name] = value.reshape(-1)  # head_statistics' rows run layer-major, as reshape does
    if "repeat" in config.parts:
        repeated = repeat_batch(subject.tokenizer, config.repeat_sequences, config.repeat_length, config.seed)
        offset = repeated["input_ids"].shape[1] - 2 * config.repeat_length
        with torch.no_grad():
            pattern = subject.run_with_cache(repeated, names).stack("attn.hook_pattern").double().cpu().numpy()
        scores = repeat_scores(pattern, offset, config.repeat_length)
        if stats.empty:
            stats = pd.DataFrame({"layer": np.repeat(np.arange(subject.n_layers), subject.n_heads),
                                  "head": np.tile(np.arange(subject.n_heads), subject.n_layers)})
        for name, value in scores.items():
            stats[name] = value.reshape(-1)
    rows = []
    metrics = [c for c in stats.columns if c not in ("layer", "head", "n_queries")]
    for record in stats.to_dict("records"):
        rows += [dict(metric=m, layer=int(record["layer"]), head=int(record["head"]), value=float(record[m]))
                 for m in metrics]
    if "heads" in config.parts:
        shares = head_types(stats).value_counts(normalize=True)
        rows += [dict(metric=f"share_{kind}", layer=-1, head=-1, value=float(shares.get(kind, 0.0)))
                 for kind in HEAD_TYPES]
    return rows


def residual_rows(subject: Subject, lm: Any, texts: Sequence[str], config: DynamicsConfig) -> list[dict[str, Any]]:
    """Held-out loss, logit-lens KL per depth and the effective rank of the residual stream per depth."""
    from workbench.lens import evaluate_lens, layer_names
    from workbench.lm import content_mask

    rows: list[dict[str, Any]] = []
    batch = subject.tokenize(list(texts), max_length=config.max_length)
    if "loss" in config.parts and lm is not None:
        with torch.no_grad():
            rows.append(dict(metric="mlm_loss", layer=-1, head=-1, value=float(lm.loss(batch, seed=config.seed))))
    if "lens" in config.parts and lm is not None:
        lens = evaluate_lens(subject, list(texts), lm, max_length=config.max_length)
        rows += [dict(metric="lens_kl", layer=int(r.layer), head=-1, value=float(r.kl_logit_lens))
                 for r in lens.layers.itertuples()]
    if "rank" in config.parts:
        names = layer_names(subject)
        with torch.no_grad():
            cache = subject.run_with_cache(batch, names)
        mask = content_mask(batch, subject.tokenizer)
        rows += [dict(metric="effective_rank", layer=depth, head=-1,
                      value=effective_rank(cache[name][mask].float().cpu().numpy()))
                 for depth, name in enumerate(names)]
    return rows


def sae_activations(subject: Subject, texts: Sequence[str], config: DynamicsConfig) -> tuple[np.ndarray, int]:
    """Train a small top-k SAE on one layer's residual stream over ``texts`` and return its latents on every
    content token of ``texts`` [n_tokens, width] (the same tokens at every snapshot of a run), and the layer."""
    from workbench.features.sae import SAEConfig
    from workbench.features.train import train_sae
    from workbench.lm import content_mask

    layer = config.sae_layer if config.sae_layer is not None else max(subject.n_layers // 2 - 1, 0)
    if not 0 <= layer < subject.n_layers:
        raise UserInputError(f"--sae-layer {layer} is outside the model's {subject.n_layers} layers")
    hook = f"blocks.{layer}.hook_resid_post"
    batch = subject.tokenize(list(texts), max_length=config.max_length)
    with torch.no_grad():
        x = subject.run_with_cache(batch, [hook])[hook][content_mask(batch, subject.tokenizer)].float().cpu()
    generator = torch.Generator().manual_seed(config.seed)
    size = min(256, len(x))
    batches = (x[torch.randint(0, len(x), (size,), generator=generator)] for _ in range(config.sae_steps))
    sae_config = SAEConfig(d_in=x.shape[1], width=config.sae_width, kind="topk", k=config.sae_k, lr=1e-3,
                           batch_size=size, seed=config.seed, hook=hook, model=subject.name)
    sae = train_sae(batches, sae_config, config.sae_steps, tensorboard=False).sae
    with torch.no_grad():
        return sae.encode(x).numpy(), layer


def analyse_snapshot(subject: Subject, texts: Sequence[str], config: DynamicsConfig,
                     probe: Optional[Sequence[tuple[list[str], list[str]]]] = None) -> list[dict[str, Any]]:
    """Every measurement but the SAE match for one snapshot: rows of ``metric, layer, head, value``."""
    from workbench.lm import language_model

    lm = language_model(subject)
    if lm is None and {"loss", "lens"} & set(config.parts):
        logger.warning("%s: no language-model head; no loss or lens rows", subject.name)
    rows = residual_rows(subject, lm, texts, config)
    if {"heads", "repeat"} & set(config.parts):
        rows += head_rows(subject, texts, config)
    if "probe" in config.parts and probe:
        rows += probe_rows(subject, probe, config.max_length, config.seed)
    return rows
