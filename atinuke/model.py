"""The full definition of the Atinuke Transformer, all of it in this single file.

Follows "Engineering A Large Language Model From Scratch" (Olawore et al., arXiv 2401.16736): token
embeddings E(X) scaled by sqrt(d_model), sinusoidal positional encodings P (Vaswani et al., 2017, arXiv
1706.03762), a stack of blocks of multi-head self-attention and a position-wise feed-forward network, each
inside a residual connection and layer normalisation, and a final projection onto the vocabulary.

Every activation worth inspecting passes through a named :class:`HookPoint` (TransformerLens style), so
names come from the module tree: ``hook_embed``, ``blocks.0.attn.hook_pattern``, ``blocks.1.hook_resid_post``.
Attention runs through ``scaled_dot_product_attention`` unless something needs the weights (a hook on
the scores or the pattern, ``output_attentions`` or a head mask); then it runs the explicit path, which
computes the same function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput, MaskedLMOutput

from atinuke.config import AtinukeConfig


class HookPoint(nn.Module):
    """Identity module that marks an activation; hooks attached to it can read or replace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def has_hooks(self) -> bool:
        return bool(self._forward_hooks or self._forward_pre_hooks)


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """P[pos, 2i] = sin(pos / 10000^(2i/d)), P[pos, 2i+1] = cos(...) (Vaswani et al., 2017, §3.5).

    Returns:
        Tensor of shape [max_len, d_model].
    """
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # [pos, 1]
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)  # [pos, d_model/2]
    table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])  # odd d_model drops the last cosine
    return table


class AtinukeEmbeddings(nn.Module):
    """E(X) * sqrt(d_model) + P, then dropout (the paper's input layer).

    The controlled-comparison switches of :class:`AtinukeConfig` change it one at a time: a learned P
    (``positions="learned"``), no sqrt(d_model) scale (``embed_scale="none"``), segment embeddings added to
    P (``type_vocab_size > 0``) and a layer norm of the sum (``embedding_norm``), as BERT's input layer.
    """

    # Exactly one of the two exists, as ``learned_positions`` says: a learned table or a registered buffer.
    position: nn.Embedding
    positional: torch.Tensor

    def __init__(self, config: AtinukeConfig) -> None:
        super().__init__()
        self.d_model = config.d_model
        self.max_len = config.max_len
        self.scale = math.sqrt(config.d_model) if config.embed_scale == "sqrt" else 1.0
        self.token = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.learned_positions = config.positions == "learned"
        if self.learned_positions:
            self.position = nn.Embedding(config.max_len, config.d_model)
        else:
            # Not saved: the table is a function of (max_len, d_model), and recomputing it keeps checkpoints small.
            self.register_buffer("positional", sinusoidal_table(config.max_len, config.d_model), persistent=False)
        self.token_type = (nn.Embedding(config.type_vocab_size, config.d_model)
                           if config.type_vocab_size > 0 else None)
        self.norm = (nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
                     if config.embedding_norm else nn.Identity())
        self.dropout = nn.Dropout(config.dropout)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]

    def forward(self, input_ids: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        n_pos = input_ids.shape[1]
        if n_pos > self.max_len:
            raise ValueError(f"sequence of {n_pos} tokens is longer than max_len={self.max_len}")
        embed = self.hook_embed(self.token(input_ids) * self.scale)  # [batch, pos, d_model]
        table = self.position.weight if self.learned_positions else self.positional  # [max_len, d_model]
        positional = table[:n_pos].unsqueeze(0).expand_as(embed)  # [batch, pos, d_model]
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            # BERT adds segments to the positions; the hook sees everything that is not the token itself.
            positional = positional + self.token_type(token_type_ids)  # [batch, pos, d_model]
        pos_embed = self.hook_pos_embed(positional)  # [batch, pos, d_model]
        return self.dropout(self.norm(embed + pos_embed))  # [batch, pos, d_model]


class AtinukeAttention(nn.Module):
    """Multi-head self-attention: softmax(Q K^T / sqrt(d_head) + mask) V, heads concatenated, then W_O."""

    def __init__(self, config: AtinukeConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.d_head = config.d_head
        self.causal = config.causal
        self.dropout_p = config.dropout
        self.W_Q = nn.Linear(config.d_model, config.d_model)
        self.W_K = nn.Linear(config.d_model, config.d_model)
        self.W_V = nn.Linear(config.d_model, config.d_model)
        self.W_O = nn.Linear(config.d_model, config.d_model)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.hook_q = HookPoint()  # [batch, pos, n_heads, d_head]
        self.hook_k = HookPoint()  # [batch, pos, n_heads, d_head]
        self.hook_v = HookPoint()  # [batch, pos, n_heads, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, n_heads, query_pos, key_pos], after masking
        self.hook_pattern = HookPoint()  # [batch, n_heads, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, n_heads, d_head]

    def forward(
        self,
        x: torch.Tensor,
        key_mask: Optional[torch.Tensor],
        head_mask: Optional[torch.Tensor] = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Args:
            x: [batch, pos, d_model].
            key_mask: bool [batch, 1, query_pos or 1, key_pos], True where attending is allowed; None for all.
            head_mask: [n_heads] multiplier on each head's pattern (1 keeps, 0 ablates), or None.
            output_attentions: also return the pattern.

        Returns:
            (attention output [batch, pos, d_model], pattern [batch, n_heads, pos, pos] or None).
        """
        batch, n_pos, d_model = x.shape
        q = self.hook_q(self.W_Q(x).view(batch, n_pos, self.n_heads, self.d_head))  # [batch, pos, n_heads, d_head]
        k = self.hook_k(self.W_K(x).view(batch, n_pos, self.n_heads, self.d_head))  # [batch, pos, n_heads, d_head]
        v = self.hook_v(self.W_V(x).view(batch, n_pos, self.n_heads, self.d_head))  # [batch, pos, n_heads, d_head]
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [batch, n_heads, pos, d_head]
        mask = key_mask
        if self.causal:
            causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=x.device).tril()  # [query_pos, key_pos]
            mask = causal if mask is None else mask & causal
        needs_weights = (output_attentions or head_mask is not None
                         or self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks())
        pattern = None
        if needs_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # [batch, n_heads, query_pos, key_pos]
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            scores = self.hook_attn_scores(scores)
            pattern = self.hook_pattern(scores.softmax(dim=-1))  # [batch, n_heads, query_pos, key_pos]
            weights = self.attn_dropout(pattern)
            if head_mask is not None:
                weights = weights * head_mask.view(1, -1, 1, 1).to(weights.dtype)
            z = weights @ v  # [batch, n_heads, pos, d_head]
        else:
            z = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
            )  # [batch, n_heads, pos, d_head]
        z = self.hook_z(z.transpose(1, 2))  # [batch, pos, n_heads, d_head]
        return self.W_O(z.reshape(batch, n_pos, d_model)), pattern  # [batch, pos, d_model]


class AtinukeFeedForward(nn.Module):
    """Position-wise feed-forward network: W_2 act(W_1 x + b_1) + b_2."""

    def __init__(self, config: AtinukeConfig) -> None:
        super().__init__()
        self.W_in = nn.Linear(config.d_model, config.d_ff)
        self.W_out = nn.Linear(config.d_ff, config.d_model)
        self.act = nn.GELU() if config.activation == "gelu" else nn.ReLU()
        self.hook_pre = HookPoint()  # [batch, pos, d_ff]
        self.hook_post = HookPoint()  # [batch, pos, d_ff]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(self.W_in(x))  # [batch, pos, d_ff]
        post = self.hook_post(self.act(pre))  # [batch, pos, d_ff]
        return self.W_out(post)  # [batch, pos, d_model]


class AtinukeBlock(nn.Module):
    """One Transformer block: attention and feed-forward sub-layers, each with residual + layer norm.

    Post-norm (the paper): ``x = LN(x + Attn(x)); x = LN(x + FFN(x))``.
    Pre-norm (option): ``x = x + Attn(LN(x)); x = x + FFN(LN(x))``.
    """

    def __init__(self, config: AtinukeConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.dropout = nn.Dropout(config.dropout)
        # Registered in forward order, so the module tree lists hook points in the order they fire.
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.ln1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attn = AtinukeAttention(config)
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.ln2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.mlp = AtinukeFeedForward(config)
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(
        self,
        x: torch.Tensor,
        key_mask: Optional[torch.Tensor],
        head_mask: Optional[torch.Tensor] = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        resid_pre = self.hook_resid_pre(x)  # [batch, pos, d_model]
        attn_in = self.ln1(resid_pre) if self.pre_norm else resid_pre
        attn_out, pattern = self.attn(attn_in, key_mask, head_mask, output_attentions)
        attn_out = self.hook_attn_out(self.dropout(attn_out))  # [batch, pos, d_model]
        resid_mid = resid_pre + attn_out if self.pre_norm else self.ln1(resid_pre + attn_out)
        resid_mid = self.hook_resid_mid(resid_mid)  # [batch, pos, d_model]
        mlp_in = self.ln2(resid_mid) if self.pre_norm else resid_mid
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(mlp_in)))  # [batch, pos, d_model]
        resid_post = resid_mid + mlp_out if self.pre_norm else self.ln2(resid_mid + mlp_out)
        return self.hook_resid_post(resid_post), pattern  # [batch, pos, d_model]


class AtinukeFinalNorm(nn.Module):
    """The final layer norm of a pre-norm stack; identity for post-norm (each block already ends in LN)."""

    def __init__(self, config: AtinukeConfig) -> None:
        super().__init__()
        self.norm = (nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
                     if config.norm_placement == "pre" else nn.Identity())
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(self.norm(x))


class AtinukePreTrainedModel(PreTrainedModel):
    """Weight initialisation and the Hugging Face save/load plumbing shared by every Atinuke model."""

    config_class = AtinukeConfig
    base_model_prefix = "atinuke"
    main_input_name = "input_ids"
    _no_split_modules = ["AtinukeBlock"]  # device_map="auto" places whole blocks (their residual stays on one device)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Embeddings are multiplied by sqrt(d_model), so std d_model^-0.5 gives unit-variance inputs and a
        # tied decoder with logits of unit scale (Vaswani et al., 2017, §3.4). Without the scale (the BERT
        # layout) BERT's own std 0.02 is used, so that the ablation changes one thing, not the input's scale.
        if isinstance(module, nn.Embedding):
            std = module.embedding_dim ** -0.5 if self.config.embed_scale == "sqrt" else 0.02
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, AtinukeEmbeddings) and not module.learned_positions:
            # A non-persistent buffer is not loaded from checkpoints, so it must be rebuilt here too.
            module.positional.copy_(sinusoidal_table(*module.positional.shape))


def _key_mask(attention_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """[batch, key_pos] of 1/0 -> bool [batch, 1, 1, key_pos] (True = may attend), or None."""
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]


class AtinukeModel(AtinukePreTrainedModel):
    """The Atinuke encoder (or decoder, with ``config.causal``): embeddings and the stack of blocks.

    ``forward`` returns a :class:`~transformers.modeling_outputs.BaseModelOutput` with
    ``last_hidden_state`` [batch, pos, d_model]; ``hidden_states`` (n_layers + 1 tensors of that shape:
    the embedding output, then every block's output) and ``attentions`` (n_layers tensors
    [batch, n_heads, pos, pos]) only when asked.
    """

    def __init__(self, config: AtinukeConfig) -> None:
        super().__init__(config)
        self.embed = AtinukeEmbeddings(config)
        self.blocks = nn.ModuleList([AtinukeBlock(config) for _ in range(config.n_layers)])
        self.ln_final = AtinukeFinalNorm(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed.token

    def set_input_embeddings(self, value: nn.Module) -> None:
        # The supertype takes any module; Hugging Face (resize_token_embeddings) passes an nn.Embedding.
        self.embed.token = cast(nn.Embedding, value)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        token_type_ids: Optional[torch.Tensor] = None,
        return_dict: Optional[bool] = None,
    ) -> BaseModelOutput:
        """Args:
            input_ids: [batch, pos] token ids.
            attention_mask: [batch, pos], 1 for real tokens and 0 for padding; None means no padding.
            head_mask: [n_layers, n_heads] (or [n_heads], broadcast over layers) multipliers on attention.
            output_attentions: return every layer's pattern.
            output_hidden_states: return the embedding output and every block's output.
            token_type_ids: [batch, pos] segment ids; used only when ``config.type_vocab_size > 0``.
            return_dict: accepted for Hugging Face callers; the output is always a ``BaseModelOutput``.
        """
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [batch, pos] with pos > 0, got shape {tuple(input_ids.shape)}")
        key_mask = _key_mask(attention_mask)
        if head_mask is not None and head_mask.dim() == 1:
            head_mask = head_mask.unsqueeze(0).expand(len(self.blocks), -1)
        x = self.embed(input_ids, token_type_ids)  # [batch, pos, d_model]
        all_hidden: list[torch.Tensor] = [x]
        all_attentions: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x, pattern = block(x, key_mask, None if head_mask is None else head_mask[i], output_attentions)
            if output_hidden_states:
                all_hidden.append(x)
            if output_attentions:
                all_attentions.append(pattern)
        x = self.ln_final(x)  # [batch, pos, d_model]
        if output_hidden_states and self.config.norm_placement == "pre":
            # The last hidden state a head sees is the normalised one.
            all_hidden[-1] = x
        return BaseModelOutput(last_hidden_state=x, hidden_states=tuple(all_hidden) if output_hidden_states else None,
                               attentions=tuple(all_attentions) if output_attentions else None)


class _AtinukeLMHeadModel(AtinukePreTrainedModel):
    """Shared body of the language-model heads: the encoder plus the vocabulary projection."""

    _tied_weights_keys = {"lm_head.weight": "atinuke.embed.token.weight"}

    def __init__(self, config: AtinukeConfig) -> None:
        super().__init__(config)
        self.atinuke = AtinukeModel(config)
        # BERT's MLM head transform (dense, activation, layer norm) when asked; the paper projects directly.
        self.head_transform = (nn.Sequential(nn.Linear(config.d_model, config.d_model),
                                             nn.GELU() if config.activation == "gelu" else nn.ReLU(),
                                             nn.LayerNorm(config.d_model, eps=config.layer_norm_eps))
                               if config.mlm_transform else nn.Identity())
        self.lm_head = nn.Linear(config.d_model, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value


class AtinukeForMaskedLM(_AtinukeLMHeadModel):
    """Atinuke with the vocabulary projection, trained with masked language modelling (Devlin et al., 2019)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        logits_at_labels_only: bool = False,
        token_type_ids: Optional[torch.Tensor] = None,
        return_dict: Optional[bool] = None,
    ) -> MaskedLMOutput:
        """Args:
            labels: [batch, pos] target ids, -100 where no loss is taken.
            logits_at_labels_only: project only the labelled positions onto the vocabulary (the loss is
                the same; with 15% masking this saves most of the decoder's FLOPs). Then ``logits`` is
                [n_labelled, vocab] instead of [batch, pos, vocab].
        """
        out = self.atinuke(input_ids, attention_mask, head_mask, output_attentions, output_hidden_states,
                           token_type_ids=token_type_ids)
        hidden = self.head_transform(out.last_hidden_state)  # [batch, pos, d_model]
        loss = None
        if labels is not None and logits_at_labels_only:
            keep = labels != -100  # [batch, pos]
            logits = self.lm_head(hidden[keep])  # [n_labelled, vocab]
            loss = F.cross_entropy(logits.float(), labels[keep])
        else:
            logits = self.lm_head(hidden)  # [batch, pos, vocab]
            if labels is not None:
                loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


class AtinukeForCausalLM(_AtinukeLMHeadModel):
    """Atinuke as a decoder-only language model (``config.causal`` must be True)."""

    def __init__(self, config: AtinukeConfig) -> None:
        if not config.causal:
            raise ValueError("AtinukeForCausalLM needs a config with causal=True")
        super().__init__(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        token_type_ids: Optional[torch.Tensor] = None,
        return_dict: Optional[bool] = None,
    ) -> CausalLMOutput:
        """Args:
            labels: [batch, pos]; position t is predicted from positions < t (shifted inside), -100 ignored.
        """
        out = self.atinuke(input_ids, attention_mask, head_mask, output_attentions, output_hidden_states,
                           token_type_ids=token_type_ids)
        logits = self.lm_head(self.head_transform(out.last_hidden_state))  # [batch, pos, vocab]
        loss = None
        if labels is not None:
            shifted = logits[:, :-1].float().flatten(0, 1)  # [batch * (pos - 1), vocab]
            loss = F.cross_entropy(shifted, labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


def hook_point_names(model: nn.Module) -> list[str]:
    """Names of every :class:`HookPoint` in ``model``, in forward order, relative to ``model``."""
    return [name for name, module in model.named_modules() if isinstance(module, HookPoint)]


@dataclass(frozen=True)
class ParameterCount:
    """Trainable parameters of a model, with the tied ones counted once."""

    total: int
    embedding: int
    non_embedding: int


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count unique parameters (tied matrices once) and those outside the token embedding."""
    seen: set[int] = set()
    total = embedding = 0
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if name.endswith(("embed.token.weight", "embeddings.word_embeddings.weight")):
            embedding += param.numel()
    return ParameterCount(total=total, embedding=embedding, non_embedding=total - embedding)


def _register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModel*.from_pretrained`` load Atinuke checkpoints (``model_type`` "atinuke").

    Done here, where the classes are defined, so that ``import atinuke`` (or ``atinuke.errors``) stays free of
    torch/transformers while every code path that holds an Atinuke class also has the Auto* registration.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    AutoConfig.register("atinuke", AtinukeConfig, exist_ok=True)
    AutoModel.register(AtinukeConfig, AtinukeModel, exist_ok=True)
    AutoModelForMaskedLM.register(AtinukeConfig, AtinukeForMaskedLM, exist_ok=True)
    AutoModelForCausalLM.register(AtinukeConfig, AtinukeForCausalLM, exist_ok=True)


_register_auto_classes()
