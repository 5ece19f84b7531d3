"""Configuration of the Atinuke Transformer (arXiv 2401.16736).

The paper describes token embeddings E(X), sinusoidal positional encodings P, a stack of Transformer blocks
(multi-head self-attention and a position-wise feed-forward network, each wrapped in a residual connection
and layer normalisation) and a final projection onto the vocabulary. Every architectural knob the paper
leaves open is a field here, with the paper's choice as the default.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from transformers import PretrainedConfig

ACTIVATIONS = ("gelu", "relu")
NORM_PLACEMENTS = ("post", "pre")
POSITIONS = ("sinusoidal", "learned")
EMBED_SCALES = ("sqrt", "none")


class AtinukeConfig(PretrainedConfig):
    """Configuration of an Atinuke model.

    Args:
        vocab_size (int, default 8000): size of the token vocabulary (the tokenizer decides it).
        d_model (int, default 256): width of the residual stream.
        n_heads (int, default 4): attention heads per block; must divide ``d_model``.
        n_layers (int, default 4): number of Transformer blocks.
        d_ff (int, default 1024): hidden width of the position-wise feed-forward network.
        max_len (int, default 512): longest sequence; sizes the sinusoidal table.
        dropout (float, default 0.1): dropout after embeddings, attention weights, and each sub-layer.
        activation (str, default "gelu"): "gelu" or "relu" in the feed-forward network.
        norm_placement (str, default "post"): "post" (the paper: ``LN(x + sublayer(x))``) or "pre"
            (``x + sublayer(LN(x))`` with a final layer norm, more stable for deep stacks).
        causal (bool, default False): mask attention to future positions (decoder-only language modelling).
        tie_word_embeddings (bool, default True): share the vocabulary projection with E (Hugging Face's
            name for it; configs saved before it was the only name also carry ``tie_embeddings``, read as it).
        layer_norm_eps (float, default 1e-5): epsilon of every layer norm.
        pad_token_id (int, default 0): id of [PAD]; padded keys are never attended to.
        positions (str, default "sinusoidal"): "sinusoidal" (the paper, a fixed table) or "learned"
            (a trained [max_len, d_model] table, as BERT; Devlin et al., 2019, arXiv 1810.04805).
        embed_scale (str, default "sqrt"): "sqrt" multiplies E(X) by sqrt(d_model) (the paper, after
            Vaswani et al., 2017, §3.4); "none" adds E(X) and P unscaled, as BERT.
        embedding_norm (bool, default False): layer-normalise E(X) + P before the first block (BERT's
            embedding LayerNorm; not in the paper).
        type_vocab_size (int, default 0): number of segment (token type) embeddings added to the input;
            0 (the paper) adds none. BERT uses 2; 1 is a learned constant offset.
        mlm_transform (bool, default False): pass the last hidden state through dense, GELU and layer norm
            before the vocabulary projection (BERT's MLM head transform; not in the paper).

    The last five switches exist for controlled comparisons: with ``positions="learned"``,
    ``embed_scale="none"``, ``norm_placement="post"``, ``embedding_norm=True``, ``mlm_transform=True`` and
    ``type_vocab_size`` as BERT's, Atinuke has exactly the parameters of ``BertForMaskedLM`` of the same size.
    """

    model_type = "atinuke"

    def __init__(
        self,
        vocab_size: int = 8000,
        d_model: int = 256,
        n_heads: int = 4,
        n_layers: int = 4,
        d_ff: int = 1024,
        max_len: int = 512,
        dropout: float = 0.1,
        activation: str = "gelu",
        norm_placement: str = "post",
        causal: bool = False,
        tie_word_embeddings: bool = True,
        layer_norm_eps: float = 1e-5,
        pad_token_id: int = 0,
        positions: str = "sinusoidal",
        embed_scale: str = "sqrt",
        embedding_norm: bool = False,
        type_vocab_size: int = 0,
        mlm_transform: bool = False,
        **kwargs: Any,
    ) -> None:
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {ACTIVATIONS}")
        if norm_placement not in NORM_PLACEMENTS:
            raise ValueError(f"unknown norm_placement {norm_placement!r}; choose from {NORM_PLACEMENTS}")
        if positions not in POSITIONS:
            raise ValueError(f"unknown positions {positions!r}; choose from {POSITIONS}")
        if embed_scale not in EMBED_SCALES:
            raise ValueError(f"unknown embed_scale {embed_scale!r}; choose from {EMBED_SCALES}")
        if int(type_vocab_size) < 0:
            raise ValueError(f"type_vocab_size must be >= 0, got {type_vocab_size}")
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                            ("d_ff", d_ff), ("max_len", max_len)):
            if int(value) <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.d_ff = d_ff
        self.max_len = max_len
        self.dropout = dropout
        self.activation = activation
        self.norm_placement = norm_placement
        self.causal = causal
        self.layer_norm_eps = layer_norm_eps
        self.positions = positions
        self.embed_scale = embed_scale
        self.embedding_norm = bool(embedding_norm)
        self.type_vocab_size = int(type_vocab_size)
        self.mlm_transform = bool(mlm_transform)
        legacy = kwargs.pop("tie_embeddings", None)  # the old second name of this setting
        if legacy is not None and legacy != tie_word_embeddings:
            raise ValueError(f"tie_embeddings={legacy} contradicts tie_word_embeddings={tie_word_embeddings}")
        # PreTrainedConfig stores extra keyword arguments as attributes, but its dataclass-style field
        # annotations (what mypy sees as __init__) do not declare these two.
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings,  # type: ignore[call-arg]
                         **kwargs)

    # HF utilities (generation, resizing, parallelism plans) look these names up.
    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class Preset:
    """Architecture sizes of a named preset (the vocabulary size comes from the tokenizer)."""

    d_model: int
    n_heads: int
    n_layers: int
    d_ff: int
    max_len: int
    dropout: float


PRESETS: dict[str, Preset] = {
    # Trains to a useful perplexity on 2 CPU cores in a few minutes.
    "tiny": Preset(d_model=128, n_heads=4, n_layers=2, d_ff=512, max_len=128, dropout=0.1),
    # The size of bench/train_throughput.py: an hour-scale CPU run, minutes on a GPU.
    "small": Preset(d_model=256, n_heads=4, n_layers=4, d_ff=1024, max_len=256, dropout=0.1),
    # The paper's "base" scale (Vaswani et al., 2017 base sizes); a GPU preset.
    "base": Preset(d_model=768, n_heads=12, n_layers=12, d_ff=3072, max_len=512, dropout=0.1),
}


def preset_config(name: str, vocab_size: int, **overrides: Any) -> AtinukeConfig:
    """Build an :class:`AtinukeConfig` from a named preset.

    Args:
        name: one of ``PRESETS`` ("tiny", "small", "base").
        vocab_size: size of the tokenizer's vocabulary.
        **overrides: any other config field (``causal=True``, ``norm_placement="pre"``...).

    Returns:
        The config.

    Raises:
        ValueError: for an unknown preset name.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    fields = asdict(PRESETS[name])
    fields.update(overrides)
    return AtinukeConfig(vocab_size=vocab_size, **fields)
