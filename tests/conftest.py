"""Shared fixtures: tiny seeded models and tokenizers, built once per test session on the CPU."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from atinuke.config import AtinukeConfig
from atinuke.model import AtinukeForMaskedLM
from atinuke.tokenizer import save_tokenizer, train_tokenizer

# Real benchmark data (atinuke.tasks.sources): ../shared/data beside the repository, unless ATINUKE_DATA is set.
_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get("ATINUKE_DATA") and _SHARED_DATA.is_dir():
    os.environ["ATINUKE_DATA"] = str(_SHARED_DATA)


@pytest.fixture
def real_data() -> Path:
    """The directory of official layouts (``$ATINUKE_DATA``); skips the test when there is none."""
    value = os.environ.get("ATINUKE_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("no real benchmark data: set ATINUKE_DATA (or put ../shared/data beside the repository)")
    return Path(value)


# A tiny configuration in the spirit of HF's model tests: big enough to have several heads and layers,
# small enough that a forward pass costs microseconds.
TINY = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=128, dropout=0.0)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A WordPiece tokenizer trained on real text (PTB valid), vocab 1000."""
    from atinuke.corpus import load_texts

    return train_tokenizer(load_texts("ptb", "valid"), vocab_size=1000)


@pytest.fixture(scope="session")
def tiny_config(tiny_tokenizer) -> AtinukeConfig:
    return AtinukeConfig(vocab_size=len(tiny_tokenizer), **TINY)


@pytest.fixture(scope="session")
def tiny_atinuke_dir(tmp_path_factory, tiny_tokenizer, tiny_config) -> Path:
    """An untrained, seeded tiny AtinukeForMaskedLM saved with its tokenizer (a loadable model directory)."""
    torch.manual_seed(0)
    model = AtinukeForMaskedLM(tiny_config).eval()
    path = tmp_path_factory.mktemp("tiny_atinuke") / "model"
    model.save_pretrained(path)
    save_tokenizer(tiny_tokenizer, path)
    return path


@pytest.fixture(scope="session")
def minilm():
    """The real pretrained MiniLM encoder (eager attention), loaded once."""
    from atinuke.encoders import load_encoder

    return load_encoder("minilm")
