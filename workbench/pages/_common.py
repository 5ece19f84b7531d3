"""Shared helpers of the Streamlit pages: cached loading, friendly errors, missing-artifact notices.

Caching follows the house rule: ``st.cache_resource`` for models, keyed by *every* setting that changes the
result (model spec, device, and the weights' modification time so a retrained run is reloaded);
``st.cache_data`` for tables, keyed by path and modification time. Nothing is cached under an argument
that starts with ``_``.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import pandas as pd
import streamlit as st

from atinuke.errors import UserInputError
from atinuke.paths import runs_dir
from workbench import artifacts

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
DEVICE = "cpu"


def root() -> Path:
    """The runs directory (``$ATINUKE_RUNS``), read on every rerun so tests can point it elsewhere."""
    return runs_dir()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def _predictions(path: str, mtime: float) -> pd.DataFrame:
    return artifacts.load_predictions(path)


def predictions(run: artifacts.FinetuneRun) -> pd.DataFrame:
    """The run's predictions table, cached by path and modification time."""
    return _predictions(str(run.predictions_path), _mtime(run.predictions_path))


@st.cache_data(show_spinner=False, max_entries=16)
def _metrics_csv(path: str, mtime: float) -> Optional[pd.DataFrame]:
    return artifacts.read_csv(Path(path)) if Path(path).is_file() else None


def pretrain_metrics(run: artifacts.PretrainRun) -> Optional[pd.DataFrame]:
    path = run.path / "metrics.csv"
    return _metrics_csv(str(path), _mtime(path))


@st.cache_data(show_spinner=False, max_entries=8)
def _probe_results(root_dir: str, stamp: tuple) -> Optional[pd.DataFrame]:
    return artifacts.find_probe_results(Path(root_dir))


def probe_results() -> Optional[pd.DataFrame]:
    base = root() / "probes"
    stamp = tuple(sorted((str(p), _mtime(p)) for p in base.rglob("results.*"))) if base.is_dir() else ()
    return _probe_results(str(root()), stamp)


@st.cache_resource(show_spinner=False, max_entries=4)
def _subject(spec: str, device: str, weights_mtime: float) -> Any:
    from workbench.subject import load_subject

    return load_subject(spec, device=device)


def model_choices() -> dict[str, str]:
    """Display name -> model spec: MiniLM and every finished pretraining run (base encoders)."""
    choices = {}
    for run in artifacts.find_pretrain_runs(root()):
        if run.finished:
            choices[f"Atinuke: {run.name}"] = str(run.path)
    choices["MiniLM (all-MiniLM-L6-v2)"] = "minilm"
    return choices


def weights_stamp(spec: str) -> float:
    """Modification time of a model's weights (0 for MiniLM): part of every cache key of model outputs."""
    if spec == "minilm":
        return 0.0
    directory = Path(spec) / "model" if (Path(spec) / "model").is_dir() else Path(spec)
    return max((_mtime(p) for p in directory.glob("*.safetensors")), default=0.0)


@st.cache_data(show_spinner=False, max_entries=64)
def attribution_frame(spec: str, text: str, methods: tuple[str, ...], baseline: str, n_steps: int,
                      stamp: float, text_pair: Optional[str] = None) -> pd.DataFrame:
    """The tidy attribution table (workbench.attribution) of one input, cached by every setting and the weights."""
    from workbench.attribution import AttributionParams, attribute_many

    params = AttributionParams(baseline=baseline, n_steps=n_steps, n_samples=32)
    return attribute_many(subject(spec), [text], list(methods), params=params, example_ids=["input"],
                          text_pairs=None if text_pair is None else [text_pair]).frame


def subject(spec: str) -> Any:
    """The model behind ``spec`` ("minilm" or a run directory), loaded once per (spec, device, weights).

    Raises:
        UserInputError: for an unknown model.
    """
    if spec != "minilm" and not Path(spec).is_dir():
        raise UserInputError(f"unknown model {spec!r}: choose MiniLM or a run under {root()}")
    stamp = weights_stamp(spec)
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


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def example_texts(max_chars: int = 600, runs: int = 6, per_run: int = 15) -> dict[str, str]:
    """Dataset examples to pick from: "task · id: start of text" -> text, from the first fine-tuning runs."""
    examples: dict[str, str] = {}
    for run in finetune_runs()[:runs]:
        try:
            table = predictions(run)
        except Exception:  # a broken table must not break the page that offers examples
            logger.warning("cannot read the predictions of %s", run.path, exc_info=True)
            continue
        for row in table.head(per_run).itertuples():
            text = str(row.text)[:max_chars]
            examples.setdefault(f"{run.task} · {row.id}: {text[:60]}", text)
    return examples
