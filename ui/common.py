"""Shared helpers of the Streamlit pages: cached loading, friendly errors, missing-artifact notices.

Caching follows the house rule: models are shared by every session (``ui.sized_cache``, bounded by bytes:
``$ATINUKE_APP_MODELS_MB``, 4096 by default, and ``$ATINUKE_APP_MAPS_MB``, 256, for attention maps), keyed by
*every* setting that changes the result (model spec, device, and the weights' modification time so a retrained
run is reloaded);
``st.cache_data`` for tables, keyed by path and modification time. Nothing is cached under an argument
that starts with ``_``.

Every page calls :func:`page_header` first (the "still building" banner of a running ``atinuke experiment``)
and makes its pickers with :func:`linked_choice`, which reads and writes the URL's query parameters
(``?model=...&task=...&example=...``), so that a copied address reopens the same selection.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import pandas as pd
import streamlit as st

from atinuke.errors import UserInputError
from atinuke.paths import runs_dir
from ui import build_status
from ui.links import OPENED_PARAM, unlink
from ui.sized_cache import array_bytes, budget_from_env, module_bytes, sized_cache
from workbench import artifacts, catalog

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
DEVICE = "cpu"
MINILM_CHOICE = catalog.MINILM_NAME
SMOLLM2_CHOICE = catalog.SMOLLM2_NAME
ATTENTION_DEFAULT_TEXT = "The trophy does not fit in the suitcase because it is too big."
WARM_UP_ENV = "ATINUKE_APP_WARMUP"  # "0" turns off the background warm-up (see warm_up)
# What the model pages import on their first use; the warm-up imports them in the background.
WARM_UP_MODULES = ("torch", "transformers", "workbench.subject", "workbench.attention")


def root() -> Path:
    """The runs directory (``$ATINUKE_RUNS``), read on every rerun so tests can point it elsewhere."""
    return runs_dir()


def file_mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def read_predictions(path: str, mtime: float) -> pd.DataFrame:
    return artifacts.load_predictions(path)


def predictions(run: artifacts.FinetuneRun) -> pd.DataFrame:
    """The run's predictions table, cached by path and modification time."""
    return read_predictions(str(run.predictions_path), file_mtime(run.predictions_path))


@st.cache_data(show_spinner=False, max_entries=16)
def _metrics_csv(path: str, mtime: float) -> Optional[pd.DataFrame]:
    return artifacts.read_csv(Path(path)) if Path(path).is_file() else None


def pretrain_metrics(run: artifacts.PretrainRun) -> Optional[pd.DataFrame]:
    path = run.path / "metrics.csv"
    return _metrics_csv(str(path), file_mtime(path))


@st.cache_data(show_spinner=False, max_entries=8)
def _probe_results(root_dir: str, stamp: tuple) -> Optional[pd.DataFrame]:
    return artifacts.find_probe_results(Path(root_dir))


def probe_results() -> Optional[pd.DataFrame]:
    base = root() / "probes"
    stamp = tuple(sorted((str(p), file_mtime(p)) for p in base.rglob("results.*"))) if base.is_dir() else ()
    return _probe_results(str(root()), stamp)


# Loaded models and attention maps are bounded by bytes (ui.sized_cache), not by count: one 7B model weighs what
# thousands of tiny ones do. Every other cache here is st.cache_data of small tables, bounded by max_entries.
MODELS_MB_ENV, MAPS_MB_ENV = "ATINUKE_APP_MODELS_MB", "ATINUKE_APP_MAPS_MB"


@sized_cache(module_bytes, lambda: budget_from_env(MODELS_MB_ENV, 4096))
def _subject(spec: str, device: str, weights_mtime: float) -> Any:
    from workbench.subject import load_subject

    return load_subject(spec, device=device)


def model_catalog() -> list[catalog.ModelEntry]:
    """Every model of the runs directory, encoders then fine-tuned ones, each with its link key
    (:mod:`workbench.catalog`)."""
    return catalog.encoders(root(), opened_models()) + catalog.finetuned(root())


def model_choices() -> dict[str, str]:
    """Display name -> model spec: every finished pretraining run, MiniLM and every model the visitor opened
    (:func:`open_model_box`); names say what each is ("BERT: bert-seed0")."""
    return {entry.name: entry.spec for entry in catalog.encoders(root(), opened_models())}


def smollm2_ready() -> bool:
    """Whether SmolLM2 was converted (``atinuke prepare-data`` / ``make models``): the pages never convert it."""
    return catalog.smollm2_ready()


def model_note(spec: str) -> Optional[str]:
    """What a converted checkpoint is (its provenance note: a 4-bit-quantised model dequantised to fp32), or None."""
    from atinuke.encoders import resolve_model_path
    from atinuke.pretrained import read_provenance

    if spec != "smollm2" and not spec.lower().endswith(".gguf"):
        return None
    record = read_provenance(resolve_model_path(spec))
    return None if record is None else str(record.get("note"))


def model_caption(name: str, spec: str) -> None:
    """One caption line saying what a converted checkpoint is (:func:`model_note`); nothing for other models."""
    note = model_note(spec)
    if note:
        st.caption(f"{name}: {note}.")




def opened_models() -> list[str]:
    """The models this visitor opened: any directory a family adapter reads, or a Hugging Face id."""
    if "opened_models" not in st.session_state:  # a deep link reopens them
        st.session_state["opened_models"] = [s for s in st.query_params.get_all(OPENED_PARAM) if s.strip()]
    return list(st.session_state["opened_models"])


def open_model_box() -> None:
    """The sidebar's "open a model" box: a model directory (any family with an adapter, a fine-tuned run) or a
    Hugging Face id (read from the local cache), loaded once to check it, then offered by every model picker."""
    spec = st.sidebar.text_input("Open a model", key="open_model", placeholder="a model directory or Hugging Face id",
                                 help="Any family with an adapter in workbench/models/ (BERT, RoBERTa, DistilBERT, "
                                      "DeBERTa, ModernBERT, GPT-2, Llama, Mistral, Qwen2, GPT-NeoX, Atinuke)")
    spec = (spec or "").strip()
    opened = opened_models()
    if not spec or spec in opened or spec in ("minilm", "smollm2"):
        return
    try:
        subject(spec)  # loads it into the pages' cache, or says in one line why it cannot
    except UserInputError as error:
        st.sidebar.error(str(error))
        return
    opened.append(spec)
    st.session_state["opened_models"] = opened
    st.query_params[OPENED_PARAM] = opened
    st.sidebar.success(f"Opened {spec}: pick it on any model page")


def default_models(choices: Mapping[str, str]) -> list[str]:
    """The model pages' default pick (names of ``choices``): the experiment's Atinuke arm (else the first Atinuke
    run) beside MiniLM; the same throughout the build (catalog.default_encoder)."""
    entries = [e for e in catalog.encoders(root(), opened_models()) if e.name in choices]
    first = catalog.default_encoder(entries)
    return ([first.name] if first is not None else []) + [MINILM_CHOICE]


_IMPORTS = threading.Lock()


def model_imports() -> None:
    """Import what the model pages need (:data:`WARM_UP_MODULES`), one thread at a time: transformers' lazy
    module is not safe to initialise from two threads at once (a page beside the warm-up got "cannot import name
    'BatchEncoding' from 'transformers'", and the half-imported module stayed broken for the process)."""
    import importlib

    with _IMPORTS:
        for module in WARM_UP_MODULES:
            importlib.import_module(module)


@dataclass
class WarmUp:
    """The background warm-up of one runs directory: what it loaded, and the error that stopped it if any."""

    specs: tuple[str, ...]
    thread: Optional[threading.Thread] = None
    subjects: dict[str, Any] = field(default_factory=dict)  # spec -> the model it loaded into subject's cache
    attention: list[str] = field(default_factory=list)  # specs whose default Attention view it computed
    error: Optional[str] = None

    def run(self) -> None:

        try:
            model_imports()
            for spec in self.specs:
                # the very cache entries the pages read: same functions, same (spec, device, weights) keys
                self.subjects[spec] = _subject(spec, DEVICE, weights_stamp(spec))
            for spec in self.specs:  # the Attention page's default view: its text, aggregated to words
                attention_maps(spec, ATTENTION_DEFAULT_TEXT, True, weights_stamp(spec))
                self.attention.append(spec)
        except Exception as error:  # best effort: the page that needs the model reports the failure itself
            self.error = f"{type(error).__name__}: {error}"
            logger.warning("app warm-up stopped: %s", self.error)


@st.cache_resource(show_spinner=False, max_entries=8)
def _start_warm_up(specs: tuple[str, ...], stamps: tuple[float, ...]) -> WarmUp:
    """One warm-up per process and (models, weights): st.cache_resource is process-wide, unlike session state."""
    warm = WarmUp(specs)
    warm.thread = threading.Thread(target=warm.run, name="atinuke-app-warm-up", daemon=True)
    warm.thread.start()
    return warm


def warm_up() -> Optional[WarmUp]:
    """Import torch/transformers and load the default models in a background thread, once per process.

    The first page a visitor opens needs none of them; the model pages (Attention, Attribution, ...) need
    all of them, and their first visit in a fresh process paid several seconds of imports and loading. Started
    after the first page has rendered, the warm-up fills ``subject``'s own cache, so a visitor who opens
    Attention a few seconds later finds it warm; one who opens it at once waits on the same cache entry
    (Streamlit holds a lock per entry) rather than loading the model twice. ``$ATINUKE_APP_WARMUP=0`` turns
    it off.
    """
    if os.environ.get(WARM_UP_ENV, "1") in ("0", "false", ""):
        return None
    choices = model_choices()
    specs = tuple(choices[name] for name in default_models(choices))
    return _start_warm_up(specs, tuple(weights_stamp(spec) for spec in specs))


def weights_stamp(spec: str) -> float:
    """Modification time of a model's weights (0 for MiniLM): part of every cache key of model outputs."""
    if spec == "minilm":
        return 0.0
    if spec == "smollm2":
        from atinuke.paths import cache_dir

        directory = cache_dir() / "models" / "smollm2"
        return max((file_mtime(p) for p in directory.glob("*.safetensors")), default=0.0)
    directory = Path(spec) / "model" if (Path(spec) / "model").is_dir() else Path(spec)
    return max((file_mtime(p) for p in directory.glob("*.safetensors")), default=0.0)


@st.cache_data(show_spinner=False, max_entries=64)
def attribution_frame(spec: str, text: str, methods: tuple[str, ...], baseline: str, n_steps: int,
                      stamp: float, text_pair: Optional[str] = None, target: Optional[str] = None) -> pd.DataFrame:
    """The tidy attribution table (workbench.attribution) of one input, cached by every setting and the weights
    (``target``: a ``--target`` form, None for the subject's default)."""
    from workbench.attribution import AttributionParams, attribute_many

    params = AttributionParams(baseline=baseline, n_steps=n_steps, n_samples=32)
    return attribute_many(subject(spec), [text], list(methods), target, params=params, example_ids=["input"],
                          text_pairs=None if text_pair is None else [text_pair]).frame


@sized_cache(array_bytes, lambda: budget_from_env(MAPS_MB_ENV, 256))
def attention_maps(spec: str, text: str, words: bool, stamp: float) -> dict[str, Any]:
    """The Attention page's maps of one text (tokens or words) by one model, cached by every setting and the
    weights; here rather than in ui/attention.py so that :func:`warm_up` can fill the page's default view."""
    from workbench.attention import attention_maps as compute

    model = subject(spec)
    maps = compute(model, text)
    if words:
        maps = maps.to_words()
    pattern = maps.pattern
    if model.causal:  # a decoder never attends to later positions: draw that half blank, not as zeros
        pattern = causal_blank(pattern)
    return dict(labels=list(maps.tokens), pattern=pattern, causal=model.causal)


def causal_blank(pattern: np.ndarray) -> np.ndarray:
    """[..., query, key] with the cells above the diagonal (keys after the query) set to NaN."""
    above = np.triu(np.ones(pattern.shape[-2:], dtype=bool), k=1)
    return np.where(above, np.nan, pattern)


def subject(spec: str) -> Any:
    """The model behind ``spec`` ("minilm" or a run directory), loaded once per (spec, device, weights).

    Raises:
        UserInputError: for an unknown model.
    """
    if spec not in ("minilm", "smollm2") and not Path(spec).is_dir() and (Path(spec).exists() or spec.count("/") != 1):
        raise UserInputError(f"unknown model {spec!r}: choose MiniLM, a run under {root()}, a model directory "
                             "or a Hugging Face id (org/name)")
    stamp = weights_stamp(spec)
    model_imports()
    with st.spinner(f"Loading {Path(spec).name}…"):
        return _subject(spec, DEVICE, stamp)


def check_text(text: Optional[str], label: str = "text") -> str:
    """Validate user text: non-empty, at most ``MAX_TEXT_CHARS`` characters.

    Raises:
        UserInputError: with a message fit to show as is.
    """
    if text is None or not text.strip():
        raise UserInputError(f"The {label} is empty: type a sentence.")
    if len(text) > MAX_TEXT_CHARS:
        raise UserInputError(f"The {label} is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}.")
    return text.strip()


def check_length(spec: str, text: str, text_pair: Optional[str] = None) -> None:
    """Raise UserInputError when ``text`` is longer than the model ``spec`` takes (no silent truncation)."""
    model = subject(spec)
    n_tokens = len(model.tokenizer(text, text_pair)["input_ids"])
    if n_tokens > model.max_len:
        raise UserInputError(f"The text is {n_tokens} tokens long for {model.name}; it takes at most {model.max_len}. "
                             "Shorten it.")


@contextlib.contextmanager
def friendly_errors(context: str = "") -> Iterator[None]:
    """Show expected failures as one ``st.error`` line (never a traceback); log unexpected ones."""
    try:
        yield
    except UserInputError as error:
        st.error(str(error))
    except (FileNotFoundError, ValueError, KeyError, OSError) as error:
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        st.error(f"{context + ': ' if context else ''}{message.splitlines()[0] if message else type(error).__name__}")
    except Exception as error:  # the app must stay usable; the log keeps the traceback
        logger.exception("unexpected error in %s", context or "page")
        st.error(f"Something went wrong{' in ' + context if context else ''}: {type(error).__name__}: "
                 f"{str(error).splitlines()[0] if str(error) else ''}")


def missing(what: str, command_key: str) -> None:
    """Tell the user an artifact is missing and which command creates it."""
    st.info(f"No {what} under `{root()}` yet. Create it with:\n\n`{artifacts.HOW_TO_CREATE[command_key]}`")


def finetune_runs() -> list[artifacts.FinetuneRun]:
    return artifacts.find_finetune_runs(root())


def plot(fig: Any, key: Optional[str] = None) -> None:
    """Show a plotly figure at full width."""
    st.plotly_chart(fig, key=key)


def table(frame: pd.DataFrame, key: Optional[str] = None, **kwargs: Any) -> None:
    """A table whose columns show human names (workbench.names), with the internal name in each tooltip."""
    from workbench.names import metric_name

    config = {c: st.column_config.Column(metric_name(c), help=f"internal name: {c}") for c in frame.columns}
    st.dataframe(frame, hide_index=True, column_config=config, key=key, **kwargs)


@dataclass(frozen=True)
class Example:
    """A dataset example from a predictions table, with both segments of a pair task."""

    task: str
    id: str
    text: str
    text_pair: Optional[str] = None

    @property
    def label(self) -> str:
        """"task · id: start of text" (the picker's option; :func:`example_param` reads it back)."""
        return f"{self.task} · {self.id}: {self.text[:60]}"


def dataset_examples(task: Optional[str] = None, max_chars: int = 600, runs: int = 6,
                     per_run: int = 15) -> dict[str, Example]:
    """Dataset examples to pick from, by label: those of ``task`` only (a fine-tuned model's own task), else
    from the first fine-tuning runs; pair tasks keep their second segment (hypothesis, question...)."""
    examples: dict[str, Example] = {}
    chosen = [r for r in finetune_runs() if task is None or r.task == task]
    for run in chosen[:1 if task is not None else runs]:
        try:
            table = predictions(run)
        except Exception:  # a broken table must not break the page that offers examples
            logger.warning("cannot read the predictions of %s", run.path, exc_info=True)
            continue
        for row in table.head(per_run if task is None else 3 * per_run).itertuples():
            pair = getattr(row, "text_pair", None)
            pair = None if pair is None or (isinstance(pair, float) and np.isnan(pair)) else str(pair)[:max_chars]
            example = Example(str(run.task), str(row.id), str(row.text)[:max_chars], pair)
            examples.setdefault(example.label, example)
    return examples


def example_texts(max_chars: int = 600, runs: int = 6, per_run: int = 15) -> dict[str, str]:
    """Dataset examples to pick from: "task · id: start of text" -> text, from the first fine-tuning runs."""
    return {label: e.text for label, e in dataset_examples(None, max_chars, runs, per_run).items()}


def pair_labels(task: Optional[str]) -> Optional[tuple[str, str]]:
    """The names of a pair task's two segments as its predictions table stores them (None: one text)."""
    from atinuke.tasks import TASKS

    spec = TASKS.get(task or "")
    if spec is None or not spec.pair:
        return None
    from workbench.experiment_runs import task_kind

    if task_kind(str(task)).pair_inputs:  # question answering: the table keeps the context first
        return ("Context", "Question")
    if spec.family == "nli" or task in ("mnli", "rte", "ax", "wnli"):
        return ("Premise", "Hypothesis")
    if task == "qnli":
        return ("Question", "Sentence")
    return ("First sentence", "Second sentence")


def example_param(label: str) -> dict[str, str]:
    """Link parameters of an :func:`example_texts` label ("task · id: text"): ``{"task": ..., "example": id}``."""
    head = label.split(": ", 1)[0]
    task, _, example = head.partition(" · ")
    return {"task": task, "example": example} if example else {"example": head}


def model_param(name: str, choices: Mapping[str, str]) -> str:
    """The stable key of a model choice in links (workbench.catalog): "minilm", "bert-seed0", "bert-seed0/snli",
    or an opened model's path or id."""
    spec = choices.get(name, name)
    for entry in model_catalog():
        if entry.spec == spec:
            return entry.key
    return "minilm" if spec == "minilm" else str(spec)


def input_source(key: str, has_examples: bool) -> str:
    """The "Type a text" / "Dataset example" radio: a link with ``example=`` opens the dataset example, and
    choosing "Type a text" removes the example's ``task``/``example`` parameters from the URL."""
    sources = ["Type a text", "Dataset example"]
    index = 1 if has_examples and "example" in st.query_params else 0
    source = st.radio("Input", sources, index=index, horizontal=True, key=key)
    if source == sources[0]:
        unlink("task", "example")
    return source


def page_header() -> None:
    """What every page shows first: what the background build is still making, and how far it is (nothing once
    everything is built)."""
    message = build_status.status_message(root())
    if message:
        st.info(message + ". Pages show the units finished so far.", icon=":material/construction:")


@st.cache_data(show_spinner=False, max_entries=32)
def _weights_hash(model_dir: str, stamp: float) -> Optional[str]:
    return artifacts.model_hash(Path(model_dir))


def weights_hash(model_dir: Path) -> Optional[str]:
    """sha256 of a model directory's weights (artifacts.model_hash), hashed once per weights modification time."""
    return _weights_hash(str(model_dir), weights_stamp(str(model_dir)))


def encoder_spec(model: str) -> Optional[str]:
    """The loadable spec of a model name as runs record it: MiniLM, or a pretraining run under the root (its own
    folder or the experiment's ``<arm>/seed<k>/pretrain``, named ``<arm>-seed<k>``)."""
    if model == "minilm" or model.split("-seed")[0] == "minilm":
        return "minilm"
    if model == "smollm2":
        return model
    for entry in catalog.encoders(root()):
        if entry.key == model:
            return entry.spec
    return None


def sae_runs_for(model: str) -> dict[str, Path]:
    """The SAE runs (``workbench sae train|inspect``) on ``model`` that kept their dictionary: name -> folder."""
    found = {}
    for path in artifacts.find_sae_runs(root()):
        try:
            named = json.loads((path / "metrics.json").read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError):
            continue
        if named == model and (path / "sae" / "cfg.json").is_file():
            found[path.name] = path
    return found


@st.cache_resource(show_spinner=False, max_entries=4)
def _sae(folder: str, stamp: float) -> Any:
    from workbench.features.saelens import import_saelens

    return import_saelens(Path(folder))


def sae(run: Path) -> tuple[Any, str]:
    """(the sparse autoencoder of an SAE run, the hook it reads), loaded once per weights file."""
    folder = Path(run) / "sae"
    loaded = _sae(str(folder), file_mtime(folder / "sae_weights.safetensors"))
    hook = json.loads((Path(run) / "metrics.json").read_text(encoding="utf-8")).get("hook") or loaded.config.hook
    if not hook:
        raise UserInputError(f"{run}: the SAE names no hook")
    return loaded, str(hook)
