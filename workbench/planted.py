"""A model with a planted circuit: weights set by hand so the answer to "which edges carry it" is known.

A tiny pre-norm ablation of Atinuke (``norm_placement="pre"``, learned positions, no sqrt(d_model) scale,
ReLU; 2 layers x 4 heads, d_model 32, d_head 8) plus a classification head, built so that one named head,
L1.H2 by default, copies the identity of the token at one named position (3: the third word) to the read-out
position ([CLS], position 0), and that head alone decides the class. It is the known answer against which
patching, attribution patching and circuit discovery are tested (the issue's "planted circuit"; in the
spirit of the hand-built models of Conmy et al. 2023, arXiv 2304.14997, and Lindner et al. 2023,
arXiv 2301.05062).

Construction. Every vector below lies in the subspace orthogonal to the all-ones vector, so each layer norm's
mean subtraction is the identity and LN(x) = x * sqrt(d) / |x| (gains 1, biases 0, all linear biases 0).
The residual stream is split into orthonormal subspaces:

* ``c`` (1 dim): the class direction. "red" embeds as +c, "blue" as -c; nothing else writes or reads it
  except the planted head's value.
* fillers (4 dims): every other token (the filler words, [CLS], [SEP]) embeds as a unit vector here.
* positions (``max_len`` dims): position i embeds as the unit vector p_i (a learned table set by hand).
* ``o`` (1 dim): written only by the planted head, read only by the classifier.
* noise (the rest): written by every other head and both MLPs.

The planted head's query reads p_0 and its key p_3 (scaled so that [CLS] attends to position 3 with
probability 1 - 1e-18), its value reads c, and its output writes the value onto o. The classifier reads o at
[CLS] after the final layer norm: logit(red) - logit(blue) has the sign of the named token. The other six heads
and both MLPs read fillers, positions and noise (random weights, seeded) and write random vectors into the noise
subspace: they carry real, input-dependent activity, but never read c or o. Since red and blue embeddings have
the same norm, every layer norm scales clean and corrupted runs alike, so on a clean/corrupted pair that differs
only in the named token these components' outputs are identical (up to float rounding), and their patching
effect is zero. The edges through which the contrast flows, the planted edges, are therefore exactly
``embed -> L1.H2.v`` (the token's identity into the head's value) and ``L1.H2 -> logits``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from atinuke.errors import UserInputError

FILLERS = ("the", "a", "cat", "dog", "sat", "ran", "on", "mat", "big", "small")
NAMED_TOKENS = ("red", "blue")  # class 0 and class 1
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB = SPECIAL + NAMED_TOKENS + FILLERS


@dataclass(frozen=True)
class PlantedCircuit:
    """Where the circuit sits.

    Attributes:
        layer, head: the planted head (default L1.H2).
        position: the token position it copies from ([CLS] is 0, so 3 is the third word).
        edges: the planted edges, as ``(upstream, downstream)`` node names of :mod:`workbench.edges`.
    """

    layer: int = 1
    head: int = 2
    position: int = 3

    @property
    def node(self) -> str:
        return f"L{self.layer}.H{self.head}"

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        return (("embed", f"{self.node}.v"), (self.node, "logits"))


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", VOCAB.index("[CLS]")), ("[SEP]", VOCAB.index("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "attention_mask"])


def _basis(d: int, generator: torch.Generator) -> torch.Tensor:
    """[d, d - 1]: an orthonormal basis of the vectors orthogonal to all-ones (so LN's centring is a no-op)."""
    raw = torch.cat([torch.ones(d, 1), torch.randn(d, d - 1, generator=generator)], dim=1)  # [d, d]
    q, _ = torch.linalg.qr(raw)
    return q[:, 1:]


def planted_state(circuit: PlantedCircuit, d_model: int = 32, n_heads: int = 4, n_layers: int = 2, d_ff: int = 32,
                  max_len: int = 8, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The hand-set weights: (encoder state dict in Atinuke's parameter names, classifier head state dict)."""
    g = torch.Generator().manual_seed(seed)
    d_head = d_model // n_heads
    basis = _basis(d_model, g)  # [d, d-1]
    c, fillers = basis[:, 0], basis[:, 1:5]  # [d], [d, 4]
    positions = basis[:, 5:5 + max_len]  # [d, max_len]
    o = basis[:, 5 + max_len]  # [d]
    noise = basis[:, 6 + max_len:]  # [d, n_noise]
    readable = torch.cat([fillers, positions, noise], dim=1)  # [d, r]: what noise components may read
    if noise.shape[1] < 4:
        raise UserInputError(f"d_model={d_model} leaves no noise subspace for max_len={max_len}")

    def unit(v: torch.Tensor) -> torch.Tensor:
        return v / v.norm()

    token = torch.zeros(len(VOCAB), d_model)
    token[VOCAB.index(NAMED_TOKENS[0])], token[VOCAB.index(NAMED_TOKENS[1])] = c, -c
    for name in ("[UNK]", "[CLS]", "[SEP]", "[MASK]") + FILLERS:  # [PAD] stays zero (padding_idx)
        token[VOCAB.index(name)] = unit(fillers @ torch.randn(4, generator=g))
    state: dict[str, torch.Tensor] = {"embed.token.weight": token, "embed.position.weight": positions.T.clone()}
    ln = {"weight": torch.ones(d_model), "bias": torch.zeros(d_model)}
    sharp = 6.0  # q.k / sqrt(d_head) ~ sharp^2 * 5.3^2 / sqrt(8) at the attended key: a one-hot pattern

    def random_read(rows: int, scale: float) -> torch.Tensor:  # [rows, d]: reads only the readable subspace
        return scale * torch.randn(rows, readable.shape[1], generator=g) @ readable.T / math.sqrt(readable.shape[1])

    def random_write(cols: int, scale: float) -> torch.Tensor:  # [d, cols]: writes only the noise subspace
        return scale * noise @ torch.randn(noise.shape[1], cols, generator=g) / math.sqrt(cols)

    for layer in range(n_layers):
        prefix = f"blocks.{layer}."
        weights = {name: torch.zeros(d_model, d_model) for name in ("W_Q", "W_K", "W_V", "W_O")}
        for head in range(n_heads):
            rows = slice(head * d_head, (head + 1) * d_head)
            if (layer, head) == (circuit.layer, circuit.head):
                weights["W_Q"][rows.start] = sharp * positions[:, 0]
                weights["W_K"][rows.start] = sharp * positions[:, circuit.position]
                weights["W_V"][rows.start] = c
                weights["W_O"][:, rows.start] = o
                continue
            for name in ("W_Q", "W_K", "W_V"):
                weights[name][rows] = random_read(d_head, 2.0)
            weights["W_O"][:, rows] = random_write(d_head, 0.3)
        for name, weight in weights.items():
            state[prefix + f"attn.{name}.weight"] = weight
            state[prefix + f"attn.{name}.bias"] = torch.zeros(d_model)
        state[prefix + "mlp.W_in.weight"] = random_read(d_ff, 2.0)
        state[prefix + "mlp.W_in.bias"] = torch.zeros(d_ff)
        state[prefix + "mlp.W_out.weight"] = random_write(d_ff, 0.3)
        state[prefix + "mlp.W_out.bias"] = torch.zeros(d_model)
        for norm in ("ln1", "ln2"):
            state.update({prefix + f"{norm}.{k}": v.clone() for k, v in ln.items()})
    state.update({f"ln_final.norm.{k}": v.clone() for k, v in ln.items()})
    # Classifier (BERT's pooler shape: tanh(dense(h_cls)) then a linear layer): unit 0 reads o, logits +-4 it.
    dense = torch.zeros(d_model, d_model)
    dense[0] = 0.5 * o
    out = torch.zeros(2, d_model)
    out[0, 0], out[1, 0] = 4.0, -4.0
    head_state = {"dense.weight": dense, "dense.bias": torch.zeros(d_model), "out.weight": out,
                  "out.bias": torch.zeros(2)}
    return state, head_state


def planted_model(circuit: PlantedCircuit = PlantedCircuit(), seed: int = 0) -> Any:
    """The planted model as a classification :class:`~atinuke.tasks.heads.model.TaskModel` (eval mode)."""
    from atinuke.config import AtinukeConfig
    from atinuke.encoders import Encoder
    from atinuke.model import AtinukeModel
    from atinuke.tasks.base import TaskSpec
    from atinuke.tasks.heads.common import HeadConfig
    from atinuke.tasks.heads.model import TaskModel

    config = AtinukeConfig(vocab_size=len(VOCAB), d_model=32, n_heads=4, n_layers=2, d_ff=32, max_len=8,
                           dropout=0.0, activation="relu", norm_placement="pre", positions="learned",
                           embed_scale="none")
    if not (0 <= circuit.layer < config.n_layers and 0 <= circuit.head < config.n_heads
            and 0 < circuit.position < config.max_len - 1):
        raise UserInputError(f"planted circuit {circuit} does not fit 2 layers x 4 heads x 8 positions")
    encoder_state, head_state = planted_state(circuit, seed=seed)
    encoder = AtinukeModel(config)
    encoder.load_state_dict(encoder_state, strict=True)
    spec = TaskSpec(name="planted", family="planted", kind="classification", labels=NAMED_TOKENS, metric="accuracy")
    model = TaskModel(Encoder(name="planted", kind="atinuke", model=encoder, tokenizer=_tokenizer(), path=Path(".")),
                      spec, HeadConfig(kind="classification", labels=NAMED_TOKENS, max_len=8, dropout=0.0))
    model.head.load_state_dict(head_state, strict=True)
    return model.eval()


def planted_pairs(n: int = 8, circuit: PlantedCircuit = PlantedCircuit(), n_words: int = 5,
                  seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` clean texts with "red" at the named position and their corrupted twins with "blue" (same fillers)."""
    if not 0 < circuit.position <= n_words:
        raise UserInputError(f"position {circuit.position} is not one of the {n_words} words")
    g = torch.Generator().manual_seed(seed)
    clean: list[str] = []
    corrupted: list[str] = []
    for _ in range(n):
        words = [FILLERS[int(i)] for i in torch.randint(len(FILLERS), (n_words,), generator=g)]
        for named, texts in zip(NAMED_TOKENS, (clean, corrupted)):
            texts.append(" ".join(words[:circuit.position - 1] + [named] + words[circuit.position:]))
    return clean, corrupted


def planted_metric() -> Callable[[Any], torch.Tensor]:
    """logit(red) - logit(blue), averaged over the batch: positive on clean inputs, negative on corrupted."""
    from workbench.patching import logit_difference

    return logit_difference(0, 1)


def save_planted(directory: str | Path, circuit: PlantedCircuit = PlantedCircuit(), seed: int = 0) -> Path:
    """Write the planted model as a task-model directory (loadable by ``--model DIR`` in every CLI)."""
    from atinuke.tasks.heads.model import save_task_model

    save_task_model(planted_model(circuit, seed), directory)
    return Path(directory)


NUMERICAL_ZERO = 1e-4  # |normalized effect| below this is float rounding of an effect that is exactly 0 here


def head_rank_agreement(n: int = 8, method: str = "attribution", seed: int = 0) -> float:
    """Spearman correlation of head-level attribution patching (``method``: "attribution" or "eap_ig") with
    exact activation patching on the planted model, over all 8 heads.

    Seven heads have an effect of exactly 0 by construction; float rounding leaves them at ~1e-7 of the
    metric's span in either method, and ranking rounding noise would measure nothing, so normalized effects
    below :data:`NUMERICAL_ZERO` are set to 0 (tied) before ranking.
    """
    from scipy.stats import spearmanr

    from workbench.patching import attribution_patching, exact_patching
    from workbench.subject import load_subject

    subject = load_subject(planted_model(seed=seed))
    clean, corrupted = (subject.tokenize(texts) for texts in planted_pairs(n, seed=seed))
    metric = planted_metric()
    exact = exact_patching(subject, clean, corrupted, metric)["normalized"]
    estimate = attribution_patching(subject, clean, corrupted, metric, method=method)["normalized"]
    return float(spearmanr(exact.where(exact.abs() >= NUMERICAL_ZERO, 0.0),
                           estimate.where(estimate.abs() >= NUMERICAL_ZERO, 0.0))[0])
