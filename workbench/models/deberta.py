"""The DeBERTa-v2 family (He et al., 2021, "DeBERTa: Decoding-enhanced BERT with Disentangled Attention",
arXiv 2006.03654; DeBERTa-v3, He et al., 2021, arXiv 2111.09543, uses the same module tree), ``DebertaV2Model``.

A post-norm encoder like BERT, but its attention is *disentangled*: besides the content-to-content score
Q K^T it adds a content-to-position term (c2p: each query against the projected relative-position embedding
of its distance to the key) and a position-to-content term (p2c: each key against the projected embedding of
the distance back to the query), all divided by sqrt(d_head * scale_factor), scale_factor = 1 + the number of
those terms in ``pos_att_type``. Relative distances are log-bucketed (``position_buckets``); the embeddings
of the distances are one table shared by all layers, ``encoder.rel_embeddings``, passed through the encoder's
LayerNorm when ``norm_rel_ebd`` has "layer_norm"; with ``share_att_key`` they are projected by the layer's own
``query_proj``/``key_proj``, otherwise by ``pos_query_proj``/``pos_key_proj``. Absolute position embeddings
are added to the input only with ``position_biased_input`` (DeBERTa-v1 style; v3 has none). With
``conv_kernel_size`` > 0 the encoder's ``ConvLayer`` mixes a convolution of the embedding output into the first
block's output: out_0 = LN_conv(layer_0(x) + tanh(conv(x)) masked) * mask, x = the embedding output.

Bridges. The per-module names are temporary forward (pre-)hooks. DeBERTa's attention does not go through
``ALL_ATTENTION_FUNCTIONS``, so the names inside it (q, k, v, c2p, p2c, scores, pattern) are reached by a
temporary replacement of ``DisentangledSelfAttention.forward`` (:func:`hooked_forward`), installed as an
instance attribute only while such a name is attached: it performs the operations of the original forward
and ``disentangled_attention_bias`` in the same order (results are bitwise equal, as the tests check) and runs
the callbacks of :data:`~workbench.models.bridges.ATTN_CALLBACKS` in between. (``hook_q``/``hook_k`` cannot be
forward hooks on ``query_proj``/``key_proj``: with ``share_att_key`` those layers also project the relative
embeddings.) What each name means:

=================================  ===================================================================
``embed.hook_embed``               ``embeddings.word_embeddings`` output [batch, pos, embedding_size]
``embed.hook_pos_embed``           ``embeddings.position_embeddings`` output expanded to [batch, pos, d],
                                   only with ``position_biased_input``: otherwise the model has no absolute
                                   positions (they are relative, inside attention) and the name is left out
                                   (token types, ``embed_proj`` and the embedding LayerNorm have no name)
``blocks.0.hook_resid_pre``        the embedding output (after LayerNorm and the multiplication by the
                                   attention mask: padding rows are 0) = the encoder's input, which block 0
                                   and the ConvLayer both read; replacing it replaces both
``blocks.i.hook_resid_pre``        (i > 0) input of ``encoder.layer[i]``
``blocks.i.attn.hook_q|k|v``       ``query_proj|key_proj|value_proj`` of the tokens, [batch, pos, n_heads, d_head]
                                   (not of the relative embeddings)
``blocks.i.attn.hook_c2p``         content-to-position term [batch, n_heads, q_pos, k_pos]:
                                   q_i . Kr[delta(i, j)] / sqrt(d_head * scale_factor), Kr the key projection of
                                   the relative embeddings, delta the clamped bucketed distance i - j
                                   (only when ``relative_attention`` and "c2p" in ``pos_att_type``)
``blocks.i.attn.hook_p2c``         position-to-content term [batch, n_heads, q_pos, k_pos]:
                                   k_j . Qr[delta(j, i)] / sqrt(d_head * scale_factor) (only with "p2c")
``blocks.i.attn.hook_attn_scores`` the full disentangled score, pre-softmax: Q K^T / sqrt(d_head * scale_factor)
                                   + c2p + p2c, masked (a pair with a padding query or key = dtype min)
``blocks.i.attn.hook_pattern``     softmax of the scores (before attention dropout) [batch, n_heads, q, k];
                                   a padding query's row is uniform (all its scores are masked)
``blocks.i.attn.hook_z``           per-head weighted values (``attention.self`` output) [batch, pos, n_heads, d_head]
``blocks.i.hook_attn_out``         ``attention.output.dense`` output (W_O z + b, before residual and LayerNorm)
``blocks.i.hook_resid_mid``        ``attention.output`` output = LN(resid_pre + attn_out)
``blocks.i.mlp.hook_pre|post``     ``intermediate.dense`` output / after the activation [batch, pos, d_ff]
``blocks.i.hook_mlp_out``          ``output.dense`` output (before residual and LayerNorm)
``blocks.i.hook_resid_post``       ``output`` output = LN(resid_mid + mlp_out), the block's output; for block 0
                                   with a ConvLayer, the ConvLayer's output (what block 1 reads and
                                   ``hidden_states[1]`` holds) = conv(resid_pre, LN(resid_mid + mlp_out), mask)
``ln_final.hook_normalized``       the model's ``last_hidden_state`` (post-norm: no extra LayerNorm)
=================================  ===================================================================

The masked-LM head of a checkpoint that has one (``lm_predictions``, or ``cls`` for a legacy config) is built
around the subject's own modules (:meth:`DebertaV2Adapter.language_model_head`); a non-legacy head is also
reachable as ``cls(hidden)`` (:class:`MaskedLMReadout`), the read-out the logit lens and SAE evaluation call.
Row pruning of the last block (:func:`pruned_layer_forward`) computes the queries of the target's rows only, with
c2p and p2c gathered at them.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import torch
from torch import nn

from atinuke.errors import UserInputError
from workbench.models.base import CurrentInputs, HookFn, HookInfo, ModelAdapter, Undo, block_hook_names
from workbench.models.bridges import (
    ATTN_CALLBACKS,
    first_input_hook,
    last_hidden_state_hook,
    output_hook,
    position_hook,
    run_callbacks,
    split_heads,
)
from workbench.models.rows import RowSlot, gather_rows, scatter_rows

if TYPE_CHECKING:
    from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Model

# Hook names inside DisentangledSelfAttention -> the callback key the replacement forward runs them under.
INSIDE_ATTENTION = {"attn.hook_q": "q", "attn.hook_k": "k", "attn.hook_v": "v", "attn.hook_c2p": "c2p",
                    "attn.hook_p2c": "p2c", "attn.hook_attn_scores": "scores", "attn.hook_pattern": "pattern"}


def per_block_names(config: Any) -> tuple[str, ...]:
    """The per-block hook names of a DeBERTa-v2 config, in forward order (c2p/p2c only where it has them)."""
    relative = getattr(config, "relative_attention", False)
    pos_att_type = (config.pos_att_type or []) if relative else []
    terms = tuple(f"attn.hook_{t}" for t in ("c2p", "p2c") if t in pos_att_type)
    return ("hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", *terms, "attn.hook_attn_scores",
            "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post",
            "hook_mlp_out", "hook_resid_post")


def _heads_view(callbacks: dict[str, list[Callable]], key: str, tensor: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``tensor`` [batch * n_heads, q, k] through the ``key`` callbacks, which see [batch, n_heads, q, k]."""
    if not callbacks.get(key):
        return tensor
    shown = tensor.view(-1, n_heads, tensor.size(-2), tensor.size(-1))  # [batch, n_heads, q, k]
    return run_callbacks(callbacks, key, shown).reshape(tensor.shape)


def _projected(callbacks: dict[str, list[Callable]], key: str, tensor: torch.Tensor, n_heads: int) -> torch.Tensor:
    """A projection output [batch, pos, n_heads * d_head] through the ``key`` callbacks, which see it per head."""
    if not callbacks.get(key):
        return tensor
    shown = tensor.view(*tensor.shape[:-1], n_heads, -1)  # [batch, pos, n_heads, d_head]
    return run_callbacks(callbacks, key, shown).reshape(tensor.shape)


def hooked_forward(module: Any) -> Callable[..., tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """``DisentangledSelfAttention.forward`` of ``module`` with the callbacks of :data:`ATTN_CALLBACKS` run
    between its operations, which are those of transformers' forward and ``disentangled_attention_bias``, in
    the same order (so with no callback attached, or callbacks that return what they get, it is bitwise equal)."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import scaled_size_sqrt

    n_heads = module.num_attention_heads

    def forward(hidden_states: torch.Tensor, attention_mask: torch.Tensor, output_attentions: bool = False,
                query_states: Optional[torch.Tensor] = None, relative_pos: Optional[torch.Tensor] = None,
                rel_embeddings: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        callbacks = ATTN_CALLBACKS.get(module, {})
        if query_states is None:
            query_states = hidden_states
        query_layer = module.transpose_for_scores(
            _projected(callbacks, "q", module.query_proj(query_states), n_heads), n_heads)  # [batch*heads, pos, d_head]
        key_layer = module.transpose_for_scores(
            _projected(callbacks, "k", module.key_proj(hidden_states), n_heads), n_heads)
        value_layer = module.transpose_for_scores(
            _projected(callbacks, "v", module.value_proj(hidden_states), n_heads), n_heads)

        rel_att: Any = None
        scale_factor = 1 + ("c2p" in module.pos_att_type) + ("p2c" in module.pos_att_type)
        scale = scaled_size_sqrt(query_layer, scale_factor)
        attention_scores = torch.bmm(query_layer, key_layer.transpose(-1, -2) / scale.to(dtype=query_layer.dtype))
        if module.relative_attention:
            rel_embeddings = module.pos_dropout(rel_embeddings)
            rel_att = _disentangled_bias(module, callbacks, query_layer, key_layer, relative_pos, rel_embeddings,
                                         scale_factor)
        if rel_att is not None:
            attention_scores = attention_scores + rel_att
        attention_scores = attention_scores.view(-1, n_heads, attention_scores.size(-2),
                                                 attention_scores.size(-1))  # [batch, heads, q, k]
        attention_scores = attention_scores.masked_fill(~(attention_mask.bool()), torch.finfo(query_layer.dtype).min)
        attention_scores = run_callbacks(callbacks, "scores", attention_scores)
        attention_probs = nn.functional.softmax(attention_scores, dim=-1)  # [batch, heads, q, k]
        attention_probs = run_callbacks(callbacks, "pattern", attention_probs)
        attention_probs = module.dropout(attention_probs)
        context_layer = torch.bmm(attention_probs.reshape(-1, attention_probs.size(-2), attention_probs.size(-1)),
                                  value_layer)  # [batch*heads, q, d_head]
        context_layer = (context_layer.view(-1, n_heads, context_layer.size(-2), context_layer.size(-1))
                         .permute(0, 2, 1, 3).contiguous())  # [batch, q, heads, d_head]
        context_layer = context_layer.view(context_layer.size()[:-2] + (-1,))  # [batch, q, heads * d_head]
        return (context_layer, attention_probs if output_attentions else None)

    return forward


def _disentangled_bias(module: Any, callbacks: dict[str, list[Callable]], query_layer: torch.Tensor,
                       key_layer: torch.Tensor, relative_pos: Optional[torch.Tensor], rel_embeddings: torch.Tensor,
                       scale_factor: int) -> Any:
    """``DisentangledSelfAttention.disentangled_attention_bias``, op for op, with the c2p and p2c callbacks on
    the two terms. The original adds p2c to the c2p tensor in place; here the sum is out of place (the same
    float addition), so a cached c2p is not overwritten."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position, build_rpos, scaled_size_sqrt

    n_heads = module.num_attention_heads
    if relative_pos is None:
        relative_pos = build_relative_position(query_layer, key_layer, bucket_size=module.position_buckets,
                                               max_position=module.max_relative_positions)
    if relative_pos.dim() == 2:
        relative_pos = relative_pos.unsqueeze(0).unsqueeze(0)
    elif relative_pos.dim() == 3:
        relative_pos = relative_pos.unsqueeze(1)
    elif relative_pos.dim() != 4:
        raise ValueError(f"Relative position ids must be of dim 2 or 3 or 4. {relative_pos.dim()}")
    att_span = module.pos_ebd_size
    relative_pos = relative_pos.to(device=query_layer.device, dtype=torch.long)
    rel_embeddings = rel_embeddings[0: att_span * 2, :].unsqueeze(0)  # [1, 2 * att_span, d_model]
    repeat = query_layer.size(0) // n_heads  # the batch size
    if module.share_att_key:
        pos_query_layer = module.transpose_for_scores(module.query_proj(rel_embeddings), n_heads).repeat(repeat, 1, 1)
        pos_key_layer = module.transpose_for_scores(module.key_proj(rel_embeddings), n_heads).repeat(repeat, 1, 1)
    else:
        if "c2p" in module.pos_att_type:
            pos_key_layer = module.transpose_for_scores(module.pos_key_proj(rel_embeddings), n_heads).repeat(repeat, 1, 1)
        if "p2c" in module.pos_att_type:
            pos_query_layer = module.transpose_for_scores(module.pos_query_proj(rel_embeddings),
                                                          n_heads).repeat(repeat, 1, 1)
    score: Any = 0
    if "c2p" in module.pos_att_type:
        scale = scaled_size_sqrt(pos_key_layer, scale_factor)
        c2p_att = torch.bmm(query_layer, pos_key_layer.transpose(-1, -2))  # [batch*heads, q, 2 * att_span]
        c2p_pos = torch.clamp(relative_pos + att_span, 0, att_span * 2 - 1)
        c2p_att = torch.gather(c2p_att, dim=-1, index=c2p_pos.squeeze(0).expand(
            [query_layer.size(0), query_layer.size(1), relative_pos.size(-1)]))  # [batch*heads, q, k]
        score = score + _heads_view(callbacks, "c2p", c2p_att / scale.to(dtype=c2p_att.dtype), n_heads)
    if "p2c" in module.pos_att_type:
        scale = scaled_size_sqrt(pos_query_layer, scale_factor)
        # transformers passes max_relative_positions and position_buckets in this order (the reverse of
        # build_rpos's parameters); it matters only when keys and queries differ in length. Kept as it is.
        r_pos = build_rpos(query_layer, key_layer, relative_pos, module.max_relative_positions, module.position_buckets)
        p2c_pos = torch.clamp(-r_pos + att_span, 0, att_span * 2 - 1)
        p2c_att = torch.bmm(key_layer, pos_query_layer.transpose(-1, -2))  # [batch*heads, k, 2 * att_span]
        p2c_att = torch.gather(p2c_att, dim=-1, index=p2c_pos.squeeze(0).expand(
            [query_layer.size(0), key_layer.size(-2), key_layer.size(-2)])).transpose(-1, -2)  # [batch*heads, q, k]
        score = score + _heads_view(callbacks, "p2c", p2c_att / scale.to(dtype=p2c_att.dtype), n_heads)
    return score


def attention_callback(attention: nn.Module, key: str, fn: HookFn, info: HookInfo) -> Undo:
    """Show ``fn`` the ``key`` activation inside ``attention`` (a DisentangledSelfAttention) by installing
    :func:`hooked_forward` as its forward while any callback is attached; returns what detaches it."""
    def callback(tensor: torch.Tensor) -> torch.Tensor:
        new = fn(tensor, info)
        return tensor if new is None else new
    entry = ATTN_CALLBACKS.setdefault(attention, {})
    entry.setdefault(key, []).append(callback)
    if "forward" not in vars(attention):  # an instance attribute shadows the class's forward
        attention.forward = hooked_forward(attention)

    def remove() -> None:
        entry.get(key, []).remove(callback)
        if not any(entry.values()):
            ATTN_CALLBACKS.pop(attention, None)
            vars(attention).pop("forward", None)
    return remove


class MaskedLMReadout(nn.Module):
    """A non-legacy DeBERTa-v2 MLM head (``lm_predictions``, which takes the word embeddings as a second
    argument) as a one-argument module: hidden [..., d_model] -> logits [..., vocab]. It holds the head's and the
    encoder's own modules (shared, not copied)."""

    def __init__(self, lm_predictions: nn.Module, word_embeddings: nn.Module) -> None:
        super().__init__()
        self.lm_predictions = lm_predictions
        self.word_embeddings = word_embeddings

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_predictions(hidden, self.word_embeddings)


class DebertaV2Adapter(ModelAdapter):
    family = "deberta-v2"
    kind = "hf"

    def __init__(self, model: nn.Module, n_heads: int, d_head: int) -> None:
        for attribute in ("embeddings", "encoder"):
            if not hasattr(model, attribute):
                name = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
                raise UserInputError(f"{name}: not a DeBERTa-v2 encoder (no .{attribute})")
        config: Any = model.config
        head_size = getattr(config, "attention_head_size", d_head)
        if head_size != d_head:
            raise UserInputError(f"{config.model_type}: attention_head_size={head_size} is not hidden_size / "
                                 f"num_attention_heads = {d_head}; the workbench splits d_model into heads")
        super().__init__(model, n_heads, d_head)
        self.embeddings: Any = model.get_submodule("embeddings")
        self.encoder: Any = model.get_submodule("encoder")
        self.layers: list[Any] = list(model.get_submodule("encoder.layer").children())
        self.per_block = per_block_names(config)

    def hook_names(self) -> list[str]:
        names = block_hook_names(len(self.layers), self.per_block)
        if self.embeddings.position_embeddings is None:  # relative positions only (DeBERTa-v3)
            names.remove("embed.hook_pos_embed")
        return names

    def embedding_module(self) -> nn.Module:
        return self.embeddings

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def self_attention(self, block: nn.Module) -> nn.Module:
        """The DisentangledSelfAttention of ``block`` (its callbacks live on it)."""
        return block.get_submodule("attention.self")

    def hooks_inside(self, block: nn.Module) -> bool:
        return bool(ATTN_CALLBACKS.get(self.self_attention(block)))

    def prune_refusal(self, block: nn.Module) -> Optional[str]:
        return None

    def pruned_forward(self, block: nn.Module, slot: RowSlot) -> Callable[..., object]:
        return pruned_layer_forward(block, slot)

    def language_model_head(self, weights: Path) -> Optional[tuple[nn.Module, bool]]:
        from safetensors import safe_open
        from transformers import DebertaV2ForMaskedLM

        with safe_open(str(weights), "pt") as handle:
            if not any(k.startswith(("lm_predictions.", "cls.predictions.")) for k in handle.keys()):
                return None
        config: Any = self.model.config
        head = DebertaV2ForMaskedLM.from_pretrained(str(weights.parent), config=copy.deepcopy(config),
                                                    use_safetensors=True)
        head.deberta = cast("DebertaV2Model", self.model)  # the subject's modules: hooks attached to them apply
        if not config.legacy:  # the workbench's LM read-out calls ``cls(hidden)``, as BERT's head has it
            loaded: Any = head  # its ``cls`` attribute is typed as the legacy head
            loaded.cls = MaskedLMReadout(loaded.lm_predictions, loaded.get_input_embeddings())
        return head, False

    def readout(self, head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """DeBERTa's MLM head (transform, layer norm, tied decoder): ``cls`` (legacy, or the v3 head's wrapper)."""
        return cast(nn.Module, head.cls)(hidden)

    def attach(self, name: str, fn: HookFn, info: HookInfo, current: CurrentInputs) -> list[Undo]:
        if name == "embed.hook_embed":
            return [self.embeddings.word_embeddings.register_forward_hook(output_hook(fn, info)).remove]
        if name == "embed.hook_pos_embed":
            return [self.embeddings.position_embeddings.register_forward_hook(position_hook(fn, info, current)).remove]
        if name == "ln_final.hook_normalized":
            # DebertaV2Model returns hidden_states[-1] as its last_hidden_state, not the encoder's
            # last_hidden_state, so the bridge is on the model's own output.
            return [self.model.register_forward_hook(last_hidden_state_hook(fn, info)).remove]
        assert info.layer is not None, name
        layer = self.layers[info.layer]
        suffix = name.split(".", 2)[2]
        if suffix == "hook_resid_pre":
            # Block 0's input is the encoder's, which the ConvLayer reads too.
            module = self.encoder if info.layer == 0 else layer
            return [module.register_forward_pre_hook(first_input_hook(fn, info, "hidden_states"), with_kwargs=True).remove]
        if suffix in INSIDE_ATTENTION:
            return [attention_callback(self.self_attention(layer), INSIDE_ATTENTION[suffix], fn, info)]
        if suffix == "attn.hook_z":
            per_head = split_heads(fn, self.n_heads, self.d_head)

            def z_hook(module: nn.Module, args: tuple, out: tuple) -> Optional[tuple]:  # (z [batch, pos, d], probs)
                new = per_head(out[0], info)
                return None if new is None else (new, *out[1:])
            return [self.self_attention(layer).register_forward_hook(z_hook).remove]
        if suffix == "hook_resid_post" and info.layer == 0 and self.encoder.conv is not None:
            return [self.encoder.conv.register_forward_hook(output_hook(fn, info)).remove]
        module = {"hook_attn_out": layer.attention.output.dense, "hook_resid_mid": layer.attention.output,
                  "mlp.hook_pre": layer.intermediate.dense, "mlp.hook_post": layer.intermediate,
                  "hook_mlp_out": layer.output.dense, "hook_resid_post": layer.output}[suffix]
        return [module.register_forward_hook(output_hook(fn, info)).remove]


def pruned_layer_forward(layer: Any, slot: RowSlot) -> Callable[..., tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """``DebertaV2Layer.forward`` computing only ``slot.rows`` [batch, k]: their queries against every key, with
    the c2p and p2c terms gathered at those query rows (the same operations as the layer, on those rows; float
    summation order aside). Other rows of the output are 0. The layer's own forward runs when no rows are set
    or for the cases the workbench never uses (``query_states``, attention weights requested)."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position, scaled_size_sqrt

    original = layer.forward
    attention = layer.attention.self
    n_heads, d_head = attention.num_attention_heads, attention.attention_head_size

    def heads(x: torch.Tensor) -> torch.Tensor:  # [batch, pos, n_heads * d_head] -> [batch, n_heads, pos, d_head]
        return x.view(*x.shape[:-1], n_heads, d_head).transpose(-3, -2)

    def forward(hidden_states: torch.Tensor, attention_mask: torch.Tensor, query_states: Optional[torch.Tensor] = None,
                relative_pos: Optional[torch.Tensor] = None, rel_embeddings: Optional[torch.Tensor] = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        rows = slot.rows
        if rows is None or query_states is not None or output_attentions:
            return original(hidden_states, attention_mask, query_states=query_states, relative_pos=relative_pos,
                            rel_embeddings=rel_embeddings, output_attentions=output_attentions)
        batch, n_pos, _ = hidden_states.shape
        k = rows.shape[1]
        rows_in = gather_rows(hidden_states, rows)  # [batch, k, d_model]
        q = heads(attention.query_proj(rows_in))  # [batch, n_heads, k, d_head]
        keys = heads(attention.key_proj(hidden_states))  # [batch, n_heads, pos, d_head]
        values = heads(attention.value_proj(hidden_states))
        scale_factor = 1 + ("c2p" in attention.pos_att_type) + ("p2c" in attention.pos_att_type)
        # sqrt(d_head * scale_factor) computed as DeBERTa does (in float32, then cast), so the values agree
        scale = scaled_size_sqrt(q, scale_factor).to(dtype=q.dtype)
        scores = q @ (keys.transpose(-1, -2) / scale)  # [batch, n_heads, k, pos]
        if attention.relative_attention:
            if relative_pos is None:
                relative_pos = build_relative_position(hidden_states, hidden_states, bucket_size=attention.position_buckets,
                                                       max_position=attention.max_relative_positions)
            distance = relative_pos.reshape(n_pos, n_pos).to(hidden_states.device)  # [q, k]: bucketed q - k
            span = attention.pos_ebd_size
            table = attention.pos_dropout(rel_embeddings)[: 2 * span]  # [2 span, d_model]
            bias = torch.zeros_like(scores)
            if "c2p" in attention.pos_att_type:
                pos_keys = heads((attention.key_proj if attention.share_att_key else attention.pos_key_proj)(table))
                index = (distance[rows] + span).clamp(0, 2 * span - 1)  # [batch, k, pos]
                c2p = (q @ pos_keys.transpose(-1, -2)).gather(-1, index[:, None].expand(-1, n_heads, -1, -1))
                bias = bias + c2p / scale  # [batch, n_heads, k, pos]
            if "p2c" in attention.pos_att_type:
                pos_queries = heads((attention.query_proj if attention.share_att_key else attention.pos_query_proj)(table))
                index = (-distance.T[rows] + span).clamp(0, 2 * span - 1)  # [batch, k, pos]: from key j to row i
                p2c = (keys @ pos_queries.transpose(-1, -2)).gather(
                    -1, index.transpose(1, 2)[:, None].expand(-1, n_heads, -1, -1))  # [batch, n_heads, pos, k]
                bias = bias + p2c.transpose(-1, -2) / scale
            scores = scores + bias
        mask = attention_mask.bool()  # [batch, 1, pos, pos]
        mask = mask.gather(2, rows[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[3]))  # [batch, 1, k, pos]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        probs = attention.dropout(nn.functional.softmax(scores, dim=-1))  # [batch, n_heads, k, pos]
        z = (probs @ values).transpose(1, 2).reshape(batch, k, n_heads * d_head)  # [batch, k, d_model]
        attention_output = layer.attention.output(z, rows_in)
        layer_output = layer.output(layer.intermediate(attention_output), attention_output)  # [batch, k, d_model]
        return scatter_rows(hidden_states, rows, layer_output), None  # [batch, pos, d_model]

    return forward
