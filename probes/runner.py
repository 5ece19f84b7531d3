"""Run a probing experiment: features once per model, a probe per layer, controls, seeds; a tidy table out.

The results table (``results.parquet``) has one row per measurement:

=========  ==========================================================================================
model      the encoder probed ("minilm", a run name); the random-initialisation baseline keeps this name
task       probing task name
layer      0 = embeddings, i = output of block i; -1 for whole-curve metrics (expected_layer)
metric     accuracy (test), train_accuracy, uuas / spearman / root_accuracy (structural probe, Hewitt &
           Manning 2019), selectivity (task - control accuracy, Hewitt & Liang 2019),
           codelength_bits / compression (online code MDL, Voita & Titov 2020), expected_layer (Tenney
           et al. 2019b)
value      the number
seed       probe / control-task / re-initialisation seed
control    "none" (the task on the trained model), "control_task" (Hewitt & Liang control labels),
           "random_init" (same architecture, re-initialised weights)
source     where the labels come from ("gold: file", "silver: spaCy ... on corpus")
probe      "linear" or "mlp"
=========  ==========================================================================================
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_json, write_with
from probes.controls import control_labels, expected_layer, online_codelength, random_init_encoder
from probes.estimators import PROBE_KINDS, make_probe
from probes.features import SPAN_POOLS, WORD_POOLS, extract_features, open_store, sentences_fingerprint, target_features
from probes.tasks import ProbingData, load_probing_data

logger = logging.getLogger(__name__)

__all__ = ["ProbeRunConfig", "ProbeRun", "RESULT_COLUMNS", "run_probing", "parse_layers", "probe_layers",
           "headline_metric"]

RESULT_COLUMNS = ["model", "task", "layer", "metric", "value", "seed", "control", "source", "probe"]


@dataclass
class ProbeRunConfig:
    """Settings of one ``probes run`` (CLI flags map onto these fields).

    Attributes:
        model: "minilm" or a model/run directory.
        task: probing task name (see ``probes.tasks.TASKS``).
        layers: "all", or a comma list / range of layer numbers ("0,3,6", "1-4").
        data: label source ("gold"/"silver"/"diag"; default: the task's).
        corpus: real text for silver labels.
        max_sentences: cap on silver/diagnostic sentences.
        probe: "linear" or "mlp".
        seeds: number of seeds (probe init, control-task draw, re-initialisation).
        controls: also fit the control task and the random-initialisation model.
        mdl: also compute the online codelength (costs ~10 fits per layer).
        word_pool: "mean" / "first" / "last" sub-token pooling for word targets.
        span_pool: "mean" or "endpoints" for multi-word spans.
        batch_size: sentences per forward pass.
        n_jobs: layers fitted in parallel (joblib).
        backend: joblib backend: "loky" (processes; each opens the memmaps itself) or "threading" (no worker
            start-up cost; scikit-learn's solvers release the GIL in BLAS).
        device: where the model runs.
        C: inverse L2 strength of the linear probe.
    """

    model: str = "minilm"
    task: str = "pos"
    layers: str = "all"
    data: Optional[str] = None
    corpus: str = "wiki"
    max_sentences: int = 500
    probe: str = "linear"
    seeds: int = 1
    controls: bool = False
    mdl: bool = False
    word_pool: str = "mean"
    span_pool: str = "mean"
    batch_size: int = 32
    n_jobs: int = 1
    backend: str = "loky"
    device: str = "cpu"
    C: float = 1.0


@dataclass
class ProbeRun:
    """What :func:`run_probing` returns: the tidy results table and run facts."""

    results: pd.DataFrame
    source: str
    n_train: int
    n_test: int
    labels: tuple[str, ...]
    out: Optional[Path] = None
    extra: dict = field(default_factory=dict)


def parse_layers(spec: Union[str, Sequence[int]], n_layers: int) -> list[int]:
    """Parse "all", "0,3,6" or "1-4" against a model with layers 0..n_layers-1.

    Raises:
        UserInputError: an unparsable or out-of-range layer.
    """
    if not isinstance(spec, str):
        layers = [int(x) for x in spec]
    elif spec.strip().lower() == "all":
        return list(range(n_layers))
    else:
        layers = []
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part[1:]:
                    lo, hi = part.split("-", 1)
                    if int(lo) > int(hi):
                        raise UserInputError(f"--layers {spec!r}: the range {part} is empty (write it {hi}-{lo})")
                    layers += list(range(int(lo), int(hi) + 1))
                else:
                    layers.append(int(part))
            except UserInputError:
                raise
            except ValueError:
                raise UserInputError(f"unknown layer {part!r}: use 'all', numbers like 0,3,6 or a range 1-4") from None
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if not layers:
        raise UserInputError(f"--layers {spec!r} names no layer: use 'all', numbers like 0,3,6 or a range 1-4")
    if bad:
        raise UserInputError(f"unknown layer {bad[0]}: the model has layers 0..{n_layers - 1}")
    return sorted(set(layers))


def _n_layers(model: str) -> int:
    """Number of blocks of a model, read from its config.json (or from the object itself)."""
    if not isinstance(model, (str, Path)):
        return int(getattr(model, "n_layers"))
    from transformers import AutoConfig

    from atinuke.encoders import resolve_model_path

    path = resolve_model_path(model)
    try:
        return int(AutoConfig.from_pretrained(str(path)).num_hidden_layers)
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path / 'config.json'}: cannot read model config ({error})") from error


def _store_for(subject, data: ProbingData, directory: Path, config: ProbeRunConfig):
    """Reuse a matching stored extraction, else extract."""
    pools = list(dict.fromkeys(["mean", "first", "last"] if config.span_pool == "endpoints" or config.word_pool != "mean"
                               else ["mean"]))
    if (directory / "meta.json").is_file():
        store = open_store(directory)
        meta = store.meta
        if (meta.get("sentences_sha256") == sentences_fingerprint(data.sentences)
                and meta.get("model_hash") == subject.model_hash() and set(pools) <= set(meta["pools"])):
            logger.info("reusing stored features in %s", directory)
            return store
    return extract_features(subject, data.sentences, directory, pools=pools, batch_size=config.batch_size)


def _fit_one(store_path: str, layer: int, train: pd.DataFrame, test: pd.DataFrame, labelings: list[tuple],
             config: ProbeRunConfig) -> list[dict]:
    """Fit every labelling (control, seed, y_train, y_test) on one layer; runs in a joblib worker."""
    store = open_store(store_path)
    x_train = target_features(store, train, layer, config.span_pool, config.word_pool)
    x_test = target_features(store, test, layer, config.span_pool, config.word_pool)
    rows = []
    # L-BFGS logistic regression is deterministic: the seeds of one labelling (the task on the trained model)
    # give one fit, reported under every seed, instead of identical refits. The MDL code depends on the seeded
    # data order, so it is still computed per seed.
    deterministic = config.probe == "linear"
    fitted: dict[tuple[str, int, int], tuple[float, float]] = {}
    for control, seed, y_train, y_test in labelings:
        keep_train, keep_test = x_train.valid, x_test.valid
        key = (control, id(y_train), id(y_test))
        if deterministic and key in fitted:
            accuracy, train_accuracy = fitted[key]
        else:
            probe = make_probe(config.probe, random_state=seed,
                               **({"C": config.C} if config.probe == "linear" else {}))
            probe.fit(x_train.X[keep_train], y_train[keep_train])
            accuracy = float(probe.score(x_test.X[keep_test], y_test[keep_test]))
            train_accuracy = float(probe.score(x_train.X[keep_train], y_train[keep_train]))
            fitted[key] = (accuracy, train_accuracy)
        base = dict(layer=layer, seed=seed, control=control)
        rows.append(dict(base, metric="accuracy", value=accuracy))
        rows.append(dict(base, metric="train_accuracy", value=train_accuracy))
        if config.mdl:
            code = online_codelength(x_train.X[keep_train], y_train[keep_train],
                                     lambda: make_probe(config.probe, random_state=seed), seed=seed)
            rows.append(dict(base, metric="codelength_bits", value=code.codelength))
            rows.append(dict(base, metric="compression", value=code.compression))
    return rows


def probe_layers(store, data: ProbingData, layers: Sequence[int], labelings: list[tuple], config: ProbeRunConfig,
                 desc: str = "probe") -> list[dict]:
    """Fit the probes of every layer (in parallel with joblib when ``config.n_jobs`` > 1).

    Args:
        store: an opened FeatureStore.
        data: the task (its train/test targets).
        layers: layer numbers.
        labelings: (control, seed, y_train [n_train], y_test [n_test]) tuples fitted on each layer.

    Returns:
        Result rows without model/task/source/probe columns.
    """
    train, test = data.split("train"), data.split("test")
    jobs = (delayed(_fit_one)(str(store.path), layer, train, test, labelings, config) for layer in layers)
    rows: list[dict] = []
    parallel = Parallel(n_jobs=config.n_jobs, backend=config.backend, return_as="generator_unordered")
    for part in tqdm(parallel(jobs), total=len(layers), desc=desc, unit="layer"):
        rows += part
    return rows


def run_probing(config: ProbeRunConfig, out: Optional[Union[str, Path]] = None) -> ProbeRun:
    """Probe every requested layer of a model for one task, with controls and seeds.

    Writes (when ``out`` is given): ``results.parquet`` (columns :data:`RESULT_COLUMNS`) and ``summary.json``
    (config, source, sizes, best layer), atomically (``probes report`` draws the figures); the
    extracted features go to ``out/features/<model>/`` (``$TMPDIR/probes-features/`` without ``out``) and are
    reused by a later run over the same words with the same weights.

    Returns:
        A :class:`ProbeRun`.
    """
    from workbench.subject import load_subject

    if config.probe not in PROBE_KINDS:
        raise UserInputError(f"unknown probe {config.probe!r}; choose from {PROBE_KINDS}")
    if config.span_pool not in SPAN_POOLS or config.word_pool not in WORD_POOLS:
        raise UserInputError(f"unknown pool: span {config.span_pool!r} (choose {SPAN_POOLS}), "
                             f"word {config.word_pool!r} (choose {WORD_POOLS})")
    if config.backend not in ("loky", "threading"):
        raise UserInputError(f"unknown joblib backend {config.backend!r}; choose 'loky' or 'threading'")
    if config.seeds < 1:
        raise UserInputError(f"--seeds must be at least 1, got {config.seeds}")
    data = load_probing_data(config.task, config.data, config.corpus, config.max_sentences)
    train, test = data.split("train"), data.split("test")
    if train["label"].nunique() < 2:
        raise UserInputError(f"task {config.task!r} ({data.source}) has fewer than 2 labels in its train split")
    layers = parse_layers(config.layers, _n_layers(config.model) + 1)  # before the (slow) model load
    subject = load_subject(config.model, device=config.device)
    root = Path(out) if out is not None else Path(os.environ.get("TMPDIR", "/tmp")) / "probes-features"
    store = _store_for(subject, data, root / "features" / subject.name, config)

    seeds = list(range(config.seeds))
    if data.unit == "tree":
        rows = _structural_layers(store, data, layers, seeds, "none", config)
        if config.controls:
            for seed in seeds:
                random_store = _random_store(subject, data, root, seed, store, config)
                rows += _structural_layers(random_store, data, layers, [seed], "random_init", config)
        return _done(pd.DataFrame(rows), subject.name, config, data, out)
    y_train, y_test = train["label"].to_numpy(), test["label"].to_numpy()
    labelings = [("none", seed, y_train, y_test) for seed in seeds]
    if config.controls:
        keys = data.targets["key"].to_numpy()
        for seed in seeds:
            control = control_labels(keys, data.targets["label"].to_numpy(), seed=seed)
            control = pd.Series(control, index=data.targets.index)
            labelings.append(("control_task", seed, control[train.index].to_numpy(), control[test.index].to_numpy()))
    rows = probe_layers(store, data, layers, labelings, config, desc=f"probe {subject.name}/{config.task}")
    if config.controls:
        for seed in seeds:
            random_store = _random_store(subject, data, root, seed, store, config)
            rows += probe_layers(random_store, data, layers, [("random_init", seed, y_train, y_test)], config,
                                 desc=f"probe random-init seed {seed}")
    return _done(pd.DataFrame(rows), subject.name, config, data, out)


def _done(rows: pd.DataFrame, model: str, config: ProbeRunConfig, data: ProbingData, out) -> ProbeRun:
    results = _finish(rows, model, config, data.source)
    run = ProbeRun(results, data.source, len(data.split("train")), len(data.split("test")), data.labels,
                   Path(out) if out else None)
    if out is not None:
        _write(run, config, Path(out))
    return run


def _random_store(subject, data: ProbingData, root: Path, seed: int, store, config: ProbeRunConfig):
    """Features of the same architecture with re-initialised weights (seeded)."""
    from atinuke.encoders import Encoder
    from workbench.subject import load_subject

    encoder = Encoder(subject.name, subject.kind, subject.encoder, subject.tokenizer, subject.path)
    random_subject = load_subject(random_init_encoder(encoder, seed=seed))
    return _store_for(random_subject, data, root / "features" / f"{subject.name}-random-init-{seed}", config)


def _structural_layers(store, data: ProbingData, layers: Sequence[int], seeds: Sequence[int], control: str,
                       config: ProbeRunConfig) -> list[dict]:
    """Hewitt & Manning (2019) structural probe per layer: uuas/spearman (distance), root_accuracy/spearman (depth)."""
    from probes.structural import StructuralProbe, evaluate_structural

    kind = "distance" if data.task == "tree_distance" else "depth"
    offsets = store.sentences["word_offset"].to_numpy()
    parts = {}
    for split in ("train", "test"):
        targets = data.split(split).sort_values(["sentence", "a_start"])
        groups = [group for _, group in targets.groupby("sentence")]
        parts[split] = ([offsets[g["sentence"].iloc[0]] + g["a_start"].to_numpy() for g in groups],
                        [g["label"].astype(int).tolist() for g in groups])
    rows = []
    for layer in tqdm(layers, desc=f"structural probe ({control})", unit="layer"):
        vectors = store.layer(layer, config.word_pool)
        (train_idx, train_heads), (test_idx, test_heads) = parts["train"], parts["test"]
        for seed in seeds:
            probe = StructuralProbe(kind=kind, random_state=seed)
            probe.fit([np.asarray(vectors[i], np.float32) for i in train_idx], train_heads)
            scores = evaluate_structural(probe, [np.asarray(vectors[i], np.float32) for i in test_idx], test_heads)
            metrics = {"uuas": scores.uuas, "spearman": scores.spearman} if kind == "distance" else \
                {"root_accuracy": scores.root_accuracy, "spearman": scores.spearman}
            rows += [dict(layer=layer, seed=seed, control=control, metric=m, value=float(v)) for m, v in metrics.items()]
    return rows


def headline_metric(results: pd.DataFrame) -> str:
    """The metric a run is judged by: accuracy, or UUAS / root accuracy for the structural probes."""
    present = set(results["metric"])
    return next((m for m in ("accuracy", "uuas", "root_accuracy") if m in present), "accuracy")


def _finish(frame: pd.DataFrame, model: str, config: ProbeRunConfig, source: str) -> pd.DataFrame:
    """Add selectivity and expected-layer rows and the identifying columns."""
    extra = []
    accuracy = frame[frame["metric"] == headline_metric(frame)]
    task = accuracy[accuracy["control"] == "none"].set_index(["layer", "seed"])["value"]
    control = accuracy[accuracy["control"] == "control_task"].set_index(["layer", "seed"])["value"]
    for (layer, seed), value in task.items():
        if (layer, seed) in control.index:
            extra.append(dict(layer=layer, seed=seed, control="none", metric="selectivity",
                              value=float(value - control[(layer, seed)])))
    for (name, seed), group in accuracy.groupby(["control", "seed"]):
        group = group.sort_values("layer")
        if len(group) > 1:
            extra.append(dict(layer=-1, seed=seed, control=name, metric="expected_layer",
                              value=expected_layer(group["value"].to_numpy(), group["layer"].to_numpy())))
    frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    frame["model"], frame["task"], frame["source"], frame["probe"] = model, config.task, source, config.probe
    frame["layer"] = frame["layer"].astype("int64")
    frame["seed"] = frame["seed"].astype("int64")
    return frame[RESULT_COLUMNS].sort_values(["control", "metric", "layer", "seed"]).reset_index(drop=True)


def _write(run: ProbeRun, config: ProbeRunConfig, out: Path) -> None:
    write_with(out / "results.parquet", lambda tmp: run.results.to_parquet(tmp, index=False))
    metric = headline_metric(run.results)
    headline = run.results[(run.results["metric"] == metric) & (run.results["control"] == "none")]
    mean = headline.groupby("layer")["value"].mean()
    atomic_write_json(out / "summary.json", {
        "config": asdict(config), "source": run.source, "n_train": run.n_train, "n_test": run.n_test,
        "labels": [] if config.task.startswith("tree_") else list(run.labels), "metric": metric,
        "best_layer": int(mean.idxmax()), f"best_{metric}": float(mean.max()),
    })
