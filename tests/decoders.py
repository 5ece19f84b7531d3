"""Tiny seeded decoders saved to disk for the decoder tests: a causal Atinuke and GPT-2 (tied, untied, base only)."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import AutoModel, GPT2Config, GPT2LMHeadModel

from atinuke.config import AtinukeConfig
from atinuke.model import AtinukeForCausalLM
from atinuke.tokenizer import save_tokenizer

TINY = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=128, dropout=0.0)


def clm_atinuke_dir(root: Path, tokenizer, norm_placement: str = "pre", dtype: torch.dtype = torch.float32) -> Path:
    """An untrained seeded AtinukeForCausalLM (``causal=True``, as ``atinuke pretrain --objective clm`` builds it)."""
    torch.manual_seed(0)
    config = AtinukeConfig(vocab_size=len(tokenizer), causal=True, norm_placement=norm_placement, **TINY)
    path = root / "model"
    AtinukeForCausalLM(config).to(dtype).eval().save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return path


def gpt2_config(vocab_size: int, **overrides) -> GPT2Config:
    return GPT2Config(vocab_size=vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, bos_token_id=2, eos_token_id=3, **overrides)


def gpt2_dir(root: Path, tokenizer, head: bool = True, tied: bool = True, seed: int = 0) -> Path:
    """A seeded GPT-2 saved as ``GPT2LMHeadModel`` (``head``) or as the bare ``GPT2Model``."""
    torch.manual_seed(seed)
    config = gpt2_config(len(tokenizer), tie_word_embeddings=tied)
    model = GPT2LMHeadModel(copy.deepcopy(config)) if head else AutoModel.from_config(copy.deepcopy(config))
    if head and not tied:  # an output projection that differs from the embeddings, so a wrong tie shows
        with torch.no_grad():
            model.lm_head.weight.normal_(0, 0.5)
    path = root / "model"
    model.eval().save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return path
