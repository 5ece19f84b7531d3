"""The models of a runs directory, each with one stable identifier and a name that says what it is.

The app's pickers and addresses (``?model=<key>``) use this catalog, so that a copied link reopens the model it
was made on: a pretraining run is keyed by its run name (``atinuke-seed0``, ``bert-seed0``, ``tiny-test``), a
fine-tuned model by its run and task (``bert-seed0/snli``), MiniLM by ``minilm``, and a model the visitor
opened by its path or Hugging Face id. Display names come from what the model is -- its architecture, read from
its saved config, and its run -- never from a fixed prefix (the same-size BERT baseline is "BERT: bert-seed0").
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from workbench import artifacts

logger = logging.getLogger(__name__)

MINILM_KEY = "minilm"
MINILM_NAME = "MiniLM (all-MiniLM-L6-v2)"
SMOLLM2_KEY = "smollm2"
# The label says what the weights are wherever the model is picked (atinuke.pretrained's provenance note).
SMOLLM2_NAME = "SmolLM2-135M-Instruct (decoder; 4-bit GGUF dequantised to fp32)"
# model_type (Hugging Face config) -> the architecture's usual name
ARCHITECTURES = {"atinuke": "Atinuke", "bert": "BERT", "roberta": "RoBERTa", "distilbert": "DistilBERT",
                 "deberta": "DeBERTa", "deberta-v2": "DeBERTa-v2", "modernbert": "ModernBERT", "gpt2": "GPT-2",
                 "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "gpt_neox": "GPT-NeoX"}
DEFAULT_SUBJECT = "atinuke-seed0"  # the experiment's Atinuke arm: the demo's default model on every page
DEFAULT_TASKS = ("sst2", "snli", "mrpc", "squad2")  # the fine-tuned model a page opens on, first found


@dataclass(frozen=True)
class ModelEntry:
    """One model of the catalog.

    Attributes:
        key: its identifier in links (unique in the catalog).
        spec: what ``workbench.subject.load_subject`` loads (a directory, "minilm" or a Hugging Face id).
        name: the display name ("BERT: bert-seed0", "Atinuke: atinuke-seed0 fine-tuned on snli").
        architecture: "Atinuke", "BERT", "MiniLM", ...
        task: the task of a fine-tuned model (None for an encoder).
        base: the key of the encoder a fine-tuned model was trained from (its run name).
    """

    key: str
    spec: str
    name: str
    architecture: str
    task: Optional[str] = None
    base: Optional[str] = None


def architecture(model_dir: Path) -> str:
    """The architecture's name from a model directory's ``config.json`` (``model/`` or ``encoder/`` inside a run
    directory are looked in too); "model" when none says."""
    for folder in (model_dir, model_dir / "model", model_dir / "model" / "encoder", model_dir / "encoder"):
        path = folder / "config.json"
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            name = str(config.get("model_type") or "")
            if "minilm" in str(config.get("_name_or_path", "")).lower():
                return "MiniLM"
            return ARCHITECTURES.get(name, name or "model")
    manifest = model_dir / "model" / "task_model.json"
    if manifest.is_file():
        try:
            encoder = json.loads(manifest.read_text(encoding="utf-8")).get("encoder", {})
        except (OSError, ValueError):
            encoder = {}
        if str(encoder.get("name", "")).lower() == MINILM_KEY:
            return "MiniLM"
    return "model"


def _finetune_architecture(run: artifacts.FinetuneRun) -> str:
    if run.model.split("-seed")[0] == MINILM_KEY:  # the pretrained reference fine-tuned: a BERT-type MiniLM
        return "MiniLM"
    return architecture(run.path)


def smollm2_ready() -> bool:
    """Whether SmolLM2 was converted (``atinuke prepare-data`` / ``make models``): pages never convert it."""
    from atinuke.paths import cache_dir

    return (cache_dir() / "models" / "smollm2" / ".complete").is_file()


def encoders(root: Path, opened: Sequence[str] = ()) -> list[ModelEntry]:
    """Every finished pretraining run, MiniLM, SmolLM2 once converted, and the opened models (directories or Hugging Face ids)."""
    entries: list[ModelEntry] = []
    for run in artifacts.find_pretrain_runs(root):
        if run.finished:
            arch = architecture(run.path)
            entries.append(ModelEntry(run.name, str(run.path), f"{arch}: {run.name}", arch))
    entries.append(ModelEntry(MINILM_KEY, MINILM_KEY, MINILM_NAME, "MiniLM"))
    if smollm2_ready():
        entries.append(ModelEntry(SMOLLM2_KEY, SMOLLM2_KEY, SMOLLM2_NAME, "Llama"))
    for spec in opened:
        arch = architecture(Path(spec)) if Path(spec).is_dir() else "Hugging Face"
        entries.append(ModelEntry(spec, spec, f"Opened {arch}: {spec}", arch))
    return _unique(entries)


def finetuned(root: Path) -> list[ModelEntry]:
    """Every fine-tuned model with its saved weights, keyed ``<run>/<task>``."""
    entries = []
    for run in artifacts.find_finetune_runs(root):
        if (run.path / "model" / "config.json").is_file() or (run.path / "model" / "task_model.json").is_file():
            arch = _finetune_architecture(run)
            note = f" ({run.data_note})" if run.data_note else ""
            entries.append(ModelEntry(f"{run.model}/{run.task}", str(run.path),
                                      f"{arch}: {run.model} fine-tuned on {run.task}{note}", arch, task=run.task,
                                      base=run.model))
    return _unique(entries)


def _unique(entries: list[ModelEntry]) -> list[ModelEntry]:
    """Entries with distinct keys and names (a repeated one gets its position appended)."""
    seen: set[str] = set()
    names: set[str] = set()
    out: list[ModelEntry] = []
    for entry in entries:
        key, name = entry.key, entry.name
        if key in seen:
            key = f"{key}~{len(out)}"
        if name in names:
            name = f"{name} ({entry.spec})"
        seen.add(key)
        names.add(name)
        out.append(ModelEntry(key, entry.spec, name, entry.architecture, entry.task, entry.base))
    return out


def default_encoder(entries: Sequence[ModelEntry]) -> Optional[ModelEntry]:
    """The pages' default model: the experiment's Atinuke arm when it exists, else the first Atinuke run.

    A run that appears later in the build (a toy decoder, another seed) never takes the default from it.
    """
    for entry in entries:
        if entry.key == DEFAULT_SUBJECT:
            return entry
    return next((e for e in entries if e.architecture == "Atinuke" and e.task is None), None)


def default_finetuned(entries: Sequence[ModelEntry]) -> Optional[ModelEntry]:
    """The default fine-tuned model: the default encoder's, on the first of :data:`DEFAULT_TASKS` it has."""
    if not entries:
        return None
    bases = [e.base for e in entries]
    base = DEFAULT_SUBJECT if DEFAULT_SUBJECT in bases else next(
        (e.base for e in entries if e.architecture == "Atinuke"), entries[0].base)
    mine = [e for e in entries if e.base == base]
    for task in DEFAULT_TASKS:
        for entry in mine:
            if entry.task == task:
                return entry
    return mine[0] if mine else entries[0]
