"""Model families: one adapter file each, registered here by ``config.model_type``.

Adding a family: write ``workbench/models/<family>.py`` with a :class:`~workbench.models.base.ModelAdapter`
subclass, add its model types to :data:`ADAPTERS`, and add it to the parametrised tests in
``tests/test_subject.py`` (docs/architecture.md walks through it).
"""
from __future__ import annotations

from torch import nn

from atinuke.errors import UserInputError
from workbench.models.atinuke import AtinukeAdapter
from workbench.models.base import HOOK_NAMES_PER_BLOCK, HookFn, HookInfo, ModelAdapter, layer_of
from workbench.models.bert import BertAdapter
from workbench.models.deberta import DebertaV2Adapter
from workbench.models.distilbert import DistilBertAdapter
from workbench.models.gpt2 import GPT2Adapter
from workbench.models.gpt_neox import GPTNeoXAdapter
from workbench.models.llama import LlamaAdapter
from workbench.models.modernbert import ModernBertAdapter

# config.model_type -> the adapter of its family.
ADAPTERS: dict[str, type[ModelAdapter]] = {
    "atinuke": AtinukeAdapter,
    "bert": BertAdapter,
    "roberta": BertAdapter,
    "xlm-roberta": BertAdapter,
    "camembert": BertAdapter,
    "electra": BertAdapter,
    "distilbert": DistilBertAdapter,
    "gpt2": GPT2Adapter,
    "gpt_neox": GPTNeoXAdapter,
    "modernbert": ModernBertAdapter,
    "deberta-v2": DebertaV2Adapter,
    "llama": LlamaAdapter,
    "mistral": LlamaAdapter,
    "qwen2": LlamaAdapter,
}


def adapter_for(model: nn.Module, n_heads: int, d_head: int) -> ModelAdapter:
    """The adapter of ``model``'s family. A Hugging Face model type without its own entry is tried with the
    BERT layout, which many encoders share; it is refused there if its module tree differs.

    Raises:
        UserInputError: the model's module tree is not one the adapters know.
    """
    model_type = str(getattr(getattr(model, "config", None), "model_type", None))
    if model_type in ADAPTERS:
        return ADAPTERS[model_type](model, n_heads, d_head)
    try:
        return BertAdapter(model, n_heads, d_head)
    except UserInputError:
        raise UserInputError(f"model family {model_type!r} ({type(model).__name__}) has no adapter in workbench/models/; "
                             f"supported: {', '.join(sorted(ADAPTERS))}") from None


__all__ = ["ADAPTERS", "HOOK_NAMES_PER_BLOCK", "HookFn", "HookInfo", "ModelAdapter", "adapter_for", "layer_of"]
