"""The same-budget baseline: a standard BERT encoder of Atinuke's exact size.

The paper (arXiv 2401.16736) claims Atinuke beats previous models; the controlled test of that claim is Atinuke
against a standard Transformer encoder of identical width, depth, heads, feed-forward width and vocabulary,
trained on the same tokens with the same recipe. The baseline is Hugging Face's ``BertForMaskedLM`` built
from its own config (Devlin et al., 2019, arXiv 1810.04805): learned absolute positions, no sqrt(d) scale on
the token embeddings, post-norm blocks, an embedding layer norm and the dense+GELU+LN MLM head transform.

:func:`bert_equivalent_config` gives the Atinuke config that has exactly BERT's parameters (the last three
differences are ``AtinukeConfig`` switches too), which is how the tests pin "same size" down exactly.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM
from transformers.modeling_outputs import MaskedLMOutput

from atinuke.config import AtinukeConfig

ARCHITECTURES = ("atinuke", "bert")
# BERT's two segments: pair tasks (SNLI, GLUE pairs) fine-tune with token_type_ids, as in Devlin et al.
BERT_TYPE_VOCAB = 2


def bert_config_for(config: AtinukeConfig, type_vocab_size: int = BERT_TYPE_VOCAB) -> BertConfig:
    """The ``BertConfig`` of the same width, depth, heads, FFN, vocabulary, length, dropout and epsilon."""
    return BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, intermediate_size=config.d_ff, hidden_act=config.activation,
        hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
        max_position_embeddings=config.max_len, type_vocab_size=type_vocab_size,
        layer_norm_eps=config.layer_norm_eps, pad_token_id=config.pad_token_id, tie_word_embeddings=True,
    )


def bert_equivalent_config(config: AtinukeConfig, type_vocab_size: int = BERT_TYPE_VOCAB) -> AtinukeConfig:
    """The Atinuke config with every switch set to BERT's layout (same parameters, same function)."""
    fields = config.to_dict()
    for key in ("positions", "embed_scale", "norm_placement", "embedding_norm", "type_vocab_size",
                "mlm_transform", "model_type", "transformers_version", "architectures"):
        fields.pop(key, None)
    return AtinukeConfig(**fields, positions="learned", embed_scale="none", norm_placement="post",
                         embedding_norm=True, type_vocab_size=type_vocab_size, mlm_transform=True)


class BertBaselineForMaskedLM(BertForMaskedLM):
    """``BertForMaskedLM`` with Atinuke's ``logits_at_labels_only`` shortcut, so both arms cost the same.

    Projecting only the masked positions onto the vocabulary gives the same loss and gradients as the full
    projection (the other positions carry label -100) and saves most of the decoder's FLOPs; without it
    the baseline would pay ~6x more decoder compute per step than Atinuke for nothing. It saves and loads
    as a plain BERT checkpoint (``model_type`` "bert").
    """

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        logits_at_labels_only: bool = False,
        **kwargs,
    ) -> MaskedLMOutput:
        if labels is None or not logits_at_labels_only:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [batch, pos, d]
        keep = labels != -100  # [batch, pos]
        logits = self.cls(hidden[keep])  # [n_labelled, vocab]
        loss = F.cross_entropy(logits.float(), labels[keep])
        return MaskedLMOutput(loss=loss, logits=logits)


def build_bert_baseline(config: AtinukeConfig) -> BertBaselineForMaskedLM:
    """A freshly initialised BERT MLM of ``config``'s size (BERT's own initialisation, std 0.02)."""
    if config.causal:
        raise ValueError("the BERT baseline is an encoder; pretrain it with --objective mlm")
    model = BertBaselineForMaskedLM(bert_config_for(config))
    model.config.architectures = ["BertForMaskedLM"]
    return model


def copy_bert_into_atinuke(bert: BertForMaskedLM, atinuke: torch.nn.Module) -> None:
    """Copy a BERT MLM's weights into an Atinuke MLM built from :func:`bert_equivalent_config`.

    Raises:
        ValueError: when a tensor has no counterpart or a different shape.
    """
    names = {
        "bert.embeddings.word_embeddings.weight": "atinuke.embed.token.weight",
        "bert.embeddings.position_embeddings.weight": "atinuke.embed.position.weight",
        "bert.embeddings.token_type_embeddings.weight": "atinuke.embed.token_type.weight",
        "bert.embeddings.LayerNorm.weight": "atinuke.embed.norm.weight",
        "bert.embeddings.LayerNorm.bias": "atinuke.embed.norm.bias",
        "cls.predictions.transform.dense.weight": "head_transform.0.weight",
        "cls.predictions.transform.dense.bias": "head_transform.0.bias",
        "cls.predictions.transform.LayerNorm.weight": "head_transform.2.weight",
        "cls.predictions.transform.LayerNorm.bias": "head_transform.2.bias",
        "cls.predictions.bias": "lm_head.bias",
    }
    layer_parts = {"attention.self.query": "attn.W_Q", "attention.self.key": "attn.W_K",
                   "attention.self.value": "attn.W_V", "attention.output.dense": "attn.W_O",
                   "attention.output.LayerNorm": "ln1", "intermediate.dense": "mlp.W_in",
                   "output.dense": "mlp.W_out", "output.LayerNorm": "ln2"}
    for i in range(bert.config.num_hidden_layers):
        for src, dst in layer_parts.items():
            for leaf in ("weight", "bias"):
                names[f"bert.encoder.layer.{i}.{src}.{leaf}"] = f"atinuke.blocks.{i}.{dst}.{leaf}"
    source = bert.state_dict()
    target = atinuke.state_dict()
    with torch.no_grad():
        for src, dst in names.items():
            if src not in source or dst not in target or source[src].shape != target[dst].shape:
                raise ValueError(f"cannot copy {src} -> {dst}")
            target[dst].copy_(source[src])
