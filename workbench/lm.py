"""A subject's own language model: its checkpoint's LM head around the subject's modules (so hooks apply).

:func:`language_model` finds the head through the family's adapter (``ModelAdapter.language_model_head``:
Atinuke's and BERT's MLM heads, Atinuke's causal head, and any ``*ForCausalLM`` that ``transformers`` builds
around the adapter's base model). :class:`LanguageModel` reads logits from the base model's last hidden state
(``readout``) or from a residual-stream state (``unembed``, for lenses), computes the model's own loss (SAE
evaluation), and generates greedily (decoder attribution targets).
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from atinuke.errors import UserInputError

if TYPE_CHECKING:
    from workbench.subject import Subject

MASK_RATE = 0.15


def special_ids(tokenizer: Any) -> torch.Tensor:
    ids = {getattr(tokenizer, f"{name}_token_id", None) for name in ("cls", "sep", "pad", "bos", "eos")}
    ids.discard(None)
    return torch.tensor(sorted(ids))


def content_mask(batch: Any, tokenizer: Any) -> torch.Tensor:
    """[batch, pos] True at real, non-special tokens: the positions an SAE reads and is spliced into."""
    return batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], special_ids(tokenizer))


class LanguageModel:
    """The subject's own language model, computed through the subject's modules (so its hooks apply).

    Attributes:
        subject: the subject whose base model the head wraps.
        model: the head module (``*ForMaskedLM`` / ``*ForCausalLM``) around ``subject.encoder``.
        causal: a next-token (decoder) LM rather than a masked one.
    """

    def __init__(self, subject: Subject, model: nn.Module, causal: bool) -> None:
        self.subject, self.model, self.causal = subject, model, causal

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., d_model] last hidden states (the base model's output, final norm included) -> [..., vocab]."""
        with self.subject.lock:
            return self.subject.adapter.readout(self.model, hidden)

    def _run(self, **inputs: torch.Tensor) -> Any:
        """The head model's output, holding the subject's lock (its encoder is the shared, hookable module)."""
        with self.subject.lock:
            return self.model(**inputs)

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., d_model] residual-stream states -> [..., vocab] logits through the model's own output path
        (the final norm of a pre-norm stack, the MLM transform if any, the vocabulary projection)."""
        return self.readout(self.subject.final_norm(hidden))

    def logits(self, batch: Any) -> torch.Tensor:
        """[batch, pos, vocab] logits of the unmasked input."""
        return self._run(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def loss(self, batch: Any, seed: int = 0) -> torch.Tensor:
        ids, attention = batch["input_ids"], batch["attention_mask"]
        mask_id = self.subject.tokenizer.mask_token_id
        if self.causal:
            labels = ids.masked_fill(~attention.bool(), -100)
            logits = self._run(input_ids=ids, attention_mask=attention).logits  # [batch, pos, vocab]
            return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        generator = torch.Generator().manual_seed(seed)
        chosen = (torch.rand(ids.shape, generator=generator) < MASK_RATE) & content_mask(batch, self.subject.tokenizer)
        if not chosen.any():
            chosen = content_mask(batch, self.subject.tokenizer)
        labels = ids.masked_fill(~chosen, -100)
        logits = self._run(input_ids=ids.masked_fill(chosen, mask_id), attention_mask=attention).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)

    def eos_token_id(self) -> Optional[int]:
        """The token that ends generation (the config's, else the tokenizer's), or None."""
        config: Any = getattr(self.model, "config", None)
        eos = getattr(config, "eos_token_id", None)
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        return int(eos) if eos is not None else self.subject.tokenizer.eos_token_id

    @torch.no_grad()
    def greedy(self, prompt: list[int], n_tokens: int) -> list[int]:
        """Greedy decoding (argmax at each step, the full prefix re-read every step: no cache to drift) of up to
        ``n_tokens`` tokens after ``prompt``; stops after an end-of-sequence token, as ``generate`` does.

        Returns:
            the generated token ids (without the prompt).
        """
        if not self.causal:
            raise UserInputError(f"{self.subject.name} is a masked LM; generation needs a causal (decoder) model")
        eos = self.eos_token_id()
        ids = torch.tensor([prompt], device=self.subject.device)  # [1, pos]
        generated: list[int] = []
        for _ in range(n_tokens):
            if ids.shape[1] >= self.subject.max_len:
                break
            logits = self._run(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]  # [vocab]
            token = int(logits.argmax())
            generated.append(token)
            ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)
            if eos is not None and token == eos:
                break
        return generated


def chat_texts(subject: Subject, texts: list[str]) -> list[str]:
    """Each text as one user turn of the tokenizer's chat template, ending where the assistant's answer begins
    (``add_generation_prompt``). The subject's tokenizer splits typed special tokens into plain text
    (``atinuke.tokenizer.load_tokenizer``); tokenise these strings with ``split_special_tokens=False`` (set on the
    tokenizer by ``workbench attribute --chat``) so that the template's markers are the special tokens they are.

    Raises:
        UserInputError: the tokenizer has no chat template (not an instruct/chat model).
    """
    tokenizer: Any = subject.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise UserInputError(f"{subject.name}: its tokenizer has no chat template; drop --chat")
    return [str(tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                              tokenize=False)) for text in texts]


_CACHE: "weakref.WeakKeyDictionary[Subject, Optional[LanguageModel]]" = weakref.WeakKeyDictionary()


def language_model(subject: Subject) -> Optional[LanguageModel]:
    """The subject's LM head around its own encoder modules, when its checkpoint has one; else None (read from
    disk once per subject)."""
    if subject in _CACHE:
        return _CACHE[subject]
    found: Optional[LanguageModel] = None
    weights = None if subject.task_model is not None or subject.path is None else subject.path / "model.safetensors"
    if weights is not None and not weights.is_file() and (subject.path / "model.safetensors.index.json").is_file():
        weights = subject.path / "model.safetensors.index.json"
    if weights is not None and weights.is_file():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars would break the one-line CLI contract
        head = subject.adapter.language_model_head(weights)
        if head is not None:
            found = LanguageModel(subject, head[0].eval(), head[1])
    _CACHE[subject] = found
    return found


def require_language_model(subject: Subject, purpose: str) -> LanguageModel:
    """:func:`language_model`, or a one-line error naming ``purpose`` when the subject has none."""
    lm = language_model(subject)
    if lm is None:
        raise UserInputError(f"{subject.name}: no language-model head for {purpose} (a pretraining run or an "
                             f"MLM/CLM checkpoint with its output projection is needed)")
    return lm
