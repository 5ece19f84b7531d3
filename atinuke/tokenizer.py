"""Train and load Atinuke's tokenizer: a cased WordPiece model built with Hugging Face ``tokenizers``.

WordPiece (Schuster & Nakajima, 2012; as used by BERT, Devlin et al., 2019) with BERT-style
pre-tokenisation and [CLS]/[SEP] templates, so single sentences and pairs are encoded as MiniLM encodes
them and every token carries character offsets (span tasks and word-level attribution need them).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Optional, cast

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir

logger = logging.getLogger(__name__)

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]  # [PAD] first: the model's pad_token_id is 0


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a cased WordPiece tokenizer on ``texts``.

    Args:
        texts: training text, one document or line per item.
        vocab_size: target vocabulary size, special tokens included.
        min_frequency: minimum count for a merge.

    Returns:
        A fast tokenizer with [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4 and BERT-style templates.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise UserInputError(f"vocab_size={vocab_size} is too small for the {len(SPECIAL_TOKENS)} special tokens")
    backend = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=100))
    backend.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace("\u00a0", " ")])
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS, continuing_subword_prefix="##")
    backend.train_from_iterator(texts, trainer=trainer)
    # The trainer numbers tokens in hash-set order, which changes from process to process. WordPiece encodes
    # by vocabulary membership alone, so renumbering in a canonical order changes no segmentation and makes
    # the same text give the same tokenizer.json (and so the same seeded run) every time.
    learned = backend.get_vocab()
    ordered = SPECIAL_TOKENS + sorted(token for token in learned if token not in SPECIAL_TOKENS)
    backend.model = models.WordPiece(vocab={token: i for i, token in enumerate(ordered)}, unk_token=UNK,
                                     max_input_chars_per_word=100, continuing_subword_prefix="##")
    cls_id, sep_id = backend.token_to_id(CLS), backend.token_to_id(SEP)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, unk_token=UNK, cls_token=CLS,
                                        sep_token=SEP, mask_token=MASK, model_input_names=["input_ids", "attention_mask"])
    logger.info("trained a WordPiece tokenizer with %d tokens", tokenizer.vocab_size)
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    """Save ``tokenizer`` (tokenizer.json and its config) into ``directory`` atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_dir(directory / ".tokenizer") as tmp:
        tokenizer.save_pretrained(tmp)
    for path in (directory / ".tokenizer").iterdir():
        path.replace(directory / path.name)  # each rename is atomic; the files are consistent by then
    (directory / ".tokenizer").rmdir()


# Texts on which a loaded tokenizer must split exactly as the directory's own tokenizer.json does.
PROBES = ("The quick brown fox jumps over the lazy dog.", "Zoë paid $3.50 for 2 naïve café-crèmes, didn't she?")


def _saved_pipeline(path: Path) -> Tokenizer:
    """The directory's tokenizer.json as ``tokenizers`` runs it, without the padding or truncation a file may
    carry from its last use (transformers sets those per call)."""
    saved = Tokenizer.from_file(str(path / "tokenizer.json"))
    saved.no_padding()
    saved.no_truncation()
    return saved


def _same_as_saved(tokenizer: object, path: Path) -> bool:
    """Whether ``tokenizer`` gives the ids of the saved pipeline (``tokenizer.json`` run by ``tokenizers``) on
    :data:`PROBES`. ``AutoTokenizer`` may pick the class the config's model type registers over the one the
    directory names, and some of those classes rebuild their own pipeline: a Qwen2 directory saved with a BERT
    WordPiece tokenizer then opens as a byte-level ``Qwen2Tokenizer`` that splits text into characters."""
    saved = _saved_pipeline(path)
    return all(list(cast(PreTrainedTokenizerFast, tokenizer)(text)["input_ids"]) == saved.encode(text).ids
               for text in PROBES)


def _named_class(path: Path) -> Optional[str]:
    """The ``tokenizer_class`` that ``tokenizer_config.json`` names, or None."""
    config_file = path / "tokenizer_config.json"
    try:
        named = json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class") if config_file.is_file() else None
    except (OSError, ValueError, AttributeError) as error:
        raise UserInputError(f"{config_file}: unreadable ({error})") from error
    return str(named) if named else None


def _as_named(path: Path, named: str) -> Optional[PreTrainedTokenizerFast]:
    """The directory's tokenizer loaded as the class it names, or None when transformers has no such class."""
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    cls = tokenizer_class_from_name(named)
    return None if cls is None else cast(PreTrainedTokenizerFast, cls.from_pretrained(str(path)))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a fast tokenizer from a directory holding ``tokenizer.json``, as the class the directory names.

    ``AutoTokenizer`` may prefer the model type's own class over the one ``tokenizer_config.json`` names; the
    named class is then loaded instead whenever it reproduces the saved ``tokenizer.json`` on :data:`PROBES`
    (where it does not, e.g. a Llama-3 directory naming ``LlamaTokenizer`` over a byte-level tokenizer.json,
    AutoTokenizer's own correction is kept). Whatever is used must reproduce tokenizer.json, else the directory
    is refused: nothing that splits text differently is substituted.

    Raises:
        UserInputError: when the directory has no usable tokenizer, or none that splits text as it was saved.
    """
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise UserInputError(f"{path}: no tokenizer.json (train one with `atinuke pretrain`)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        chosen, named = type(tokenizer).__name__, _named_class(path)
        if named and chosen.removesuffix("Fast") != named.removesuffix("Fast"):
            candidate = _as_named(path, named)
            if candidate is not None and _same_as_saved(candidate, path):
                logger.info("%s: tokenizer loaded as the named %s (AutoTokenizer chose %s)", path, named, chosen)
                tokenizer = candidate
        if not _same_as_saved(tokenizer, path):
            probe = PROBES[0]
            saved = _saved_pipeline(path).encode(probe).tokens
            raise UserInputError(f"{path}: no tokenizer class splits {probe!r} as its tokenizer.json does ({saved}): "
                                 f"not {type(tokenizer).__name__}" + (f" nor the named {named}" if named else "")
                                 + "; re-save the tokenizer with its own class")
    except UserInputError:
        raise
    except Exception as error:  # the tokenizers library raises bare Exceptions on corrupt JSON
        raise UserInputError(f"{path / 'tokenizer.json'}: cannot load tokenizer ({error})") from error
    if not getattr(tokenizer, "is_fast", False):
        raise UserInputError(f"{path}: tokenizer is not a fast tokenizer; offsets are unavailable")
    # A user's text is text: a typed "[MASK]" or "[SEP]" is split into ordinary tokens, never read as the
    # special token (the [CLS]/[SEP] of the templates are still added by the post-processor).
    tokenizer.split_special_tokens = True
    return cast(PreTrainedTokenizerFast, tokenizer)  # is_fast, checked above: the tokenizers-backed class
