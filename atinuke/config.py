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
        tie_embeddings (bool, default True): share the vocabulary projection with E.
        layer_norm_eps (float, default 1e-5): epsilon of every layer norm.
        pad_token_id (int, default 0): id of [PAD]; padded keys are never attended to.
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
        tie_embeddings: bool = True,
        layer_norm_eps: float = 1e-5,
        pad_token_id: int = 0,
        **kwargs: Any,
    ) -> None:
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {ACTIVATIONS}")
        if norm_placement not in NORM_PLACEMENTS:
            raise ValueError(f"unknown norm_placement {norm_placement!r}; choose from {NORM_PLACEMENTS}")
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
        self.tie_embeddings = tie_embeddings
        self.layer_norm_eps = layer_norm_eps
        kwargs.setdefault("tie_word_embeddings", tie_embeddings)
        super().__init__(pad_token_id=pad_token_id, **kwargs)

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
