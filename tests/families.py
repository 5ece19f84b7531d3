"""Tiny seeded models of every family in the conformance suite (the ``test_models_*.py`` files), each built from
its ``transformers`` config (Atinuke from ``AtinukeConfig``) as those files build it, for the tests that run the
same check over every family (concurrency, the tokenizer a directory names)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import (
    AutoModel,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    ModernBertConfig,
    Qwen2Config,
)

from atinuke.config import AtinukeConfig
from atinuke.model import AtinukeForMaskedLM

DECODER = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3)
ROTARY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=128, attention_dropout=0.0, **DECODER)
# family -> its tiny config (vocab_size set from the tokenizer)
CONFIGS: dict[str, Callable[[], Any]] = {
    "atinuke": lambda: AtinukeConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=128, dropout=0.0),
    "bert": lambda: BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                               max_position_embeddings=128, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0, pad_token_id=0),
    "distilbert": lambda: DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128,
                                           dropout=0.0, attention_dropout=0.0, pad_token_id=0),
    "deberta-v2": lambda: DebertaV2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0, pad_token_id=0, relative_attention=True,
                                          pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                          norm_rel_ebd="layer_norm", share_att_key=True, position_buckets=8,
                                          type_vocab_size=0, initializer_range=0.2),
    "modernbert": lambda: ModernBertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, global_attn_every_n_layers=2, local_attention=8,
                                           max_position_embeddings=128, cls_token_id=2, sep_token_id=3, **DECODER),
    "gpt2": lambda: GPT2Config(n_positions=128, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
                               attn_pdrop=0.0, **DECODER),
    "gpt_neox": lambda: GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=128, max_position_embeddings=128, rotary_pct=0.25,
                                      hidden_dropout=0.0, attention_dropout=0.0, **DECODER),
    "llama": lambda: LlamaConfig(**ROTARY),
    "mistral": lambda: MistralConfig(sliding_window=4, **ROTARY),
    "qwen2": lambda: Qwen2Config(use_sliding_window=True, sliding_window=4, max_window_layers=1, **ROTARY),
}
FAMILIES = list(CONFIGS)


def save_family(family: str, directory: Path, vocab_size: int) -> Path:
    """Save a seeded tiny ``family`` model (weights and config only: the caller saves a tokenizer beside it) into
    ``directory``; norm gains are drawn away from 1 so that they enter every comparison."""
    torch.manual_seed(0)
    config = CONFIGS[family]()
    config.vocab_size = vocab_size
    with torch.no_grad():
        model = (AtinukeForMaskedLM(config) if family == "atinuke" else AutoModel.from_config(copy.deepcopy(config)))
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
    model.eval().save_pretrained(directory)
    return directory
