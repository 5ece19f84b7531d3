"""Sparse autoencoders over one activation of a model: TopK, BatchTopK, ReLU + L1 and JumpReLU.

x [batch, d_in] -> pre = (x - b_dec) W_enc + b_enc [batch, width] -> latents f (sparse) -> x_hat = f W_dec + b_dec.

- TopK keeps each row's k largest pre-activations (Gao et al. 2024, arXiv 2406.04093), with the auxiliary
  loss that makes dead latents model the residual error (their "AuxK", k_aux = d_in / 2).
- BatchTopK keeps the batch's k * batch largest (Bussmann et al. 2024, arXiv 2412.06410); at inference a
  single threshold, the running mean of the smallest kept activation, replaces the batch coupling.
- ReLU + L1 penalises sum_i f_i ||W_dec,i|| (Bricken et al. 2023, "Towards Monosemanticity").
- JumpReLU zeroes pre-activations below a learnt per-latent threshold, trained through a straight-through
  estimator with an L0 penalty (Rajamanoharan et al. 2024, arXiv 2407.14435).

Decoder rows are kept at unit norm after every step, and the gradient's component along each row is removed
first, so the optimiser does not fight the projection (as in Bricken et al. and SAELens).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from atinuke.errors import UserInputError

KINDS = ("topk", "batchtopk", "relu", "jumprelu")


@dataclass
class SAEConfig:
    """Settings of one sparse autoencoder (saved beside its weights).

    Attributes:
        d_in: width of the activation it reads.
        width: number of latents (the dictionary size).
        kind: one of ``KINDS``.
        k: active latents per token (topk, batchtopk).
        l1_coefficient: sparsity penalty (relu: L1; jumprelu: L0).
        jump_bandwidth: the straight-through estimator's kernel width (jumprelu).
        aux_coefficient: weight of the AuxK dead-latent loss (topk, batchtopk); 0 turns it off.
        dead_after: tokens without firing after which a latent counts as dead.
        lr, batch_size, seed: training settings.
        hook: the hook name it was trained on; model: the model's name (provenance).
    """

    d_in: int
    width: int = 4096
    kind: str = "topk"
    k: int = 32
    l1_coefficient: float = 1e-3
    jump_bandwidth: float = 1e-3
    aux_coefficient: float = 1 / 32
    dead_after: int = 100_000
    lr: float = 2e-4
    batch_size: int = 1024
    seed: int = 0
    hook: str = ""
    model: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserInputError(f"unknown SAE kind {self.kind!r}; choose from {', '.join(KINDS)}")
        for name in ("d_in", "width", "k", "batch_size", "dead_after"):
            if int(getattr(self, name)) < 1:
                raise UserInputError(f"SAE {name} must be positive, got {getattr(self, name)}")
        if self.kind in ("topk", "batchtopk") and self.k > self.width:
            raise UserInputError(f"SAE k={self.k} exceeds its width {self.width}")
        if not self.lr > 0 or self.l1_coefficient < 0 or self.aux_coefficient < 0:
            raise UserInputError(f"SAE lr must be > 0 and penalties >= 0 (lr={self.lr}, l1={self.l1_coefficient})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SAEOutput:
    """One forward pass: ``reconstruction`` [batch, d_in]; the active latents as (rows, columns, values)
    (``latents`` gives them dense, [batch, width]); ``pre`` [batch, width]; the loss terms of this batch
    (``mse``, ``sparsity``, ``aux``, ``loss``)."""

    reconstruction: torch.Tensor
    active: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | torch.Tensor  # sparse triple, or dense latents
    batch: int
    width: int
    pre: torch.Tensor
    mse: torch.Tensor
    sparsity: torch.Tensor
    aux: torch.Tensor
    loss: torch.Tensor

    @property
    def latents(self) -> torch.Tensor:
        if isinstance(self.active, torch.Tensor):
            return self.active
        rows, columns, values = self.active
        dense = torch.zeros(self.batch, self.width, dtype=values.dtype, device=values.device)
        return dense.index_put_((rows, columns), values)

    @property
    def l0(self) -> float:
        values = self.active if isinstance(self.active, torch.Tensor) else self.active[2]
        return float((values > 0).sum()) / max(self.batch, 1)


class _JumpStep(torch.autograd.Function):
    """Heaviside step H(pre - threshold) with a rectangular-kernel pseudo-derivative for the threshold."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, threshold = ctx.saved_tensors
        near = ((pre - threshold).abs() < ctx.bandwidth / 2).to(pre.dtype)
        return None, (-grad * near / ctx.bandwidth).sum(0), None


class _ChosenPre(torch.autograd.Function):
    """The chosen pre-activations pre[rows, columns], already computed without a graph, given a gradient
    that touches only them: n x d_in work in the backward pass instead of batch x width x d_in.

    pre[r, c] = (x - b_dec)[r] . W_enc[:, c] + b_enc[c], so with g the incoming gradient:
    dW_enc[:, c] = sum_{n: c_n = c} g_n (x - b_dec)[r_n] (an ``embedding_bag`` over rows grouped by column),
    db_enc = bincount(columns, g), and db_dec = -W_enc db_enc (every row's x - b_dec has the same b_dec).
    """

    @staticmethod
    def forward(ctx, centred, W_enc, b_enc, b_dec, chosen, rows, columns):
        ctx.save_for_backward(centred, W_enc, rows, columns)
        return chosen

    @staticmethod
    def backward(ctx, grad):
        centred, W_enc, rows, columns = ctx.saved_tensors
        width = W_enc.shape[1]
        order = columns.argsort()
        counts = torch.bincount(columns, minlength=width)
        offsets = counts.cumsum(0) - counts
        grad_w = F.embedding_bag(rows[order], centred, offsets, mode="sum",
                                 per_sample_weights=grad[order])  # [width, d_in]
        grad_b = torch.bincount(columns, weights=grad, minlength=width).to(grad.dtype)
        grad_b_dec = -(W_enc @ grad_b) if ctx.needs_input_grad[3] else None
        return None, grad_w.t(), grad_b, grad_b_dec, None, None, None


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder; parameters named as SAELens names them (``W_enc`` [d_in, width], ``b_enc``,
    ``W_dec`` [width, d_in], ``b_dec``)."""

    # Buffers registered in __init__ (nn.Module.__getattr__ would type them as Tensor | Module).
    batch_threshold: torch.Tensor
    tokens_since_fired: torch.Tensor

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        decoder = torch.randn(config.width, config.d_in, generator=generator)
        decoder = decoder / decoder.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(decoder)  # [width, d_in], unit rows
        self.W_enc = nn.Parameter(decoder.t().contiguous())  # [d_in, width]: tied at init (Gao et al. 2024)
        self.b_enc = nn.Parameter(torch.zeros(config.width))
        self.b_dec = nn.Parameter(torch.zeros(config.d_in))
        # JumpReLU's threshold, BatchTopK's inference threshold (a buffer, not trained by gradient).
        self.log_threshold = nn.Parameter(torch.full((config.width,), -3.0)) if config.kind == "jumprelu" else None
        self.register_buffer("batch_threshold", torch.tensor(-1.0))
        self.register_buffer("tokens_since_fired", torch.zeros(config.width, dtype=torch.long))

    # ---------------------------------------------------------------------------------------- encode/decode

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc  # [batch, width]

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Sparse latents from pre-activations (training-mode BatchTopK couples the batch)."""
        kind = self.config.kind
        if self._fast():  # TopK, or BatchTopK coupling the batch
            rows, columns, _ = self._select(pre.detach(), self.config.k)
            return torch.zeros_like(pre).index_put((rows, columns), F.relu(pre[rows, columns]))
        if kind == "batchtopk":  # inference: the learnt threshold
            return pre * (pre > self.batch_threshold)
        if kind == "relu":
            return F.relu(pre)
        assert self.log_threshold is not None  # kind is jumprelu here, and a jumprelu SAE has one
        threshold = self.log_threshold.exp()  # [width]
        return F.relu(pre) * _JumpStep.apply(pre, threshold, self.config.jump_bandwidth)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, d_in] -> [batch, width] sparse latents."""
        return self.activate(self.pre_activations(x))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[batch, width] -> [batch, d_in]."""
        return latents @ self.W_dec + self.b_dec

    def _select(self, pre: torch.Tensor, k: int, allowed: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, columns, offsets) of the latents TopK (or BatchTopK) keeps, grouped by row; chosen without
        gradient. ``allowed`` [width] restricts the choice (AuxK picks among dead latents)."""
        scores = pre if allowed is None else pre.masked_fill(~allowed, float("-inf"))
        batch = pre.shape[0]
        if self.config.kind == "batchtopk" and allowed is None:
            flat = F.relu(scores).flatten().topk(min(k * batch, scores.numel()), sorted=False).indices
            rows = torch.div(flat, pre.shape[1], rounding_mode="floor")
            order = rows.argsort(stable=True)
            rows, columns = rows[order], (flat % pre.shape[1])[order]
        else:
            columns = scores.topk(k, dim=-1, sorted=False).indices.flatten()  # [batch * k]
            rows = torch.arange(batch, device=pre.device).repeat_interleave(k)
        counts = torch.bincount(rows, minlength=batch)
        return rows, columns, counts.cumsum(0) - counts

    def _values(self, x: torch.Tensor, pre: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """pre[rows, columns] [n] with the gradient of :class:`_ChosenPre` (n x d_in work)."""
        centred = (x - self.b_dec).detach()  # [batch, d_in]; b_dec's gradient comes back analytically
        return _ChosenPre.apply(centred, self.W_enc, self.b_enc, self.b_dec, pre[rows, columns], rows, columns)

    def _fast(self) -> bool:
        kind = self.config.kind
        return kind == "topk" or (kind == "batchtopk" and (self.training or float(self.batch_threshold) < 0))

    def forward(self, x: torch.Tensor, sparse_decode: bool = True) -> SAEOutput:
        """Encode, decode and the loss terms.

        Args:
            x: [batch, d_in] activations.
            sparse_decode: for TopK/BatchTopK, the fused path: the winners are chosen without gradient,
                only their pre-activations are recomputed with it, and decoding sums only their decoder rows
                (``F.embedding_bag``). The encoder's backward pass and the decoder then cost n_active x d_in
                instead of batch x width x d_in. Output and gradients equal the dense path's up to rounding.
        """
        active: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | torch.Tensor
        if sparse_decode and self._fast():
            with torch.no_grad():
                pre = self.pre_activations(x)  # [batch, width], no graph
            k = self.config.k
            rows, columns, offsets = self._select(pre, k)
            values = F.relu(self._values(x, pre, rows, columns))  # [n]
            reconstruction = F.embedding_bag(columns, self.W_dec, offsets, mode="sum",
                                             per_sample_weights=values) + self.b_dec  # [batch, d_in]
            active = (rows, columns, values.detach())
        else:
            pre = self.pre_activations(x)  # [batch, width]
            latents = self.activate(pre)  # [batch, width]
            reconstruction = self.decode(latents)  # [batch, d_in]
            active = latents.detach()
        error = x - reconstruction
        mse = error.pow(2).sum(-1).mean()
        zero = x.new_zeros(())
        kind = self.config.kind
        if kind == "relu":
            sparsity = self.config.l1_coefficient * (latents * self.W_dec.norm(dim=1)).sum(-1).mean()
        elif kind == "jumprelu":
            assert self.log_threshold is not None  # a jumprelu SAE has one
            threshold = self.log_threshold.exp()
            sparsity = self.config.l1_coefficient * _JumpStep.apply(pre, threshold, self.config.jump_bandwidth).sum(-1).mean()
        else:
            sparsity = zero
        aux = self._aux_loss(x, pre.detach(), error) if self.training and kind in ("topk", "batchtopk") else zero
        if self.training:
            self._track(active, x.shape[0])
        return SAEOutput(reconstruction, active, x.shape[0], self.config.width, pre, mse, sparsity, aux,
                         mse + sparsity + aux)

    # ---------------------------------------------------------------------------------------- training aids

    def dead_mask(self) -> torch.Tensor:
        """[width] bool: latents that have not fired for ``dead_after`` tokens."""
        return self.tokens_since_fired >= self.config.dead_after

    @torch.no_grad()
    def _track(self, active: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | torch.Tensor, batch: int) -> None:
        self.tokens_since_fired += batch
        if isinstance(active, torch.Tensor):  # dense latents
            self.tokens_since_fired[(active > 0).any(0)] = 0
            values = active
        else:
            _, columns, values = active
            self.tokens_since_fired[columns[values > 0]] = 0
        if self.config.kind == "batchtopk":
            positive = values[values > 0]
            if positive.numel():
                smallest = positive.min()
                current = self.batch_threshold
                self.batch_threshold.copy_(smallest if current < 0 else 0.99 * current + 0.01 * smallest)

    def _aux_loss(self, x: torch.Tensor, pre: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
        """AuxK: the top-k_aux dead latents reconstruct the residual error (Gao et al. 2024, section A.2)."""
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0 or self.config.aux_coefficient == 0:
            return x.new_zeros(())
        k_aux = min(max(self.config.d_in // 2, 1), n_dead)
        rows, columns, offsets = self._select(pre, k_aux, allowed=dead)
        values = F.relu(self._values(x, pre, rows, columns))
        aux_reconstruction = F.embedding_bag(columns, self.W_dec, offsets, mode="sum",
                                             per_sample_weights=values)  # [batch, d_in]: the error, no bias
        target = error.detach()
        scale = target.pow(2).sum(-1).mean().clamp_min(1e-12)
        return self.config.aux_coefficient * (aux_reconstruction - target).pow(2).sum(-1).mean() / scale

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop each decoder row's gradient component along the row (the projection would undo it)."""
        if self.W_dec.grad is not None:
            rows = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
            self.W_dec.grad -= (self.W_dec.grad * rows).sum(1, keepdim=True) * rows

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Project decoder rows back to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def initialize_bias(self, sample: torch.Tensor) -> None:
        """Start ``b_dec`` at the sample's geometric median (approximated by the mean: Bricken et al. use
        the median; for the isotropic starts here the two agree closely)."""
        self.b_dec.copy_(sample.mean(0))


def load_state(sae: SparseAutoencoder, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights, naming the file and the first mismatch on failure."""
    try:
        sae.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise UserInputError(f"{source}: weights do not fit this SAE ({str(error).splitlines()[0]})") from error
    missing = {"W_enc", "b_enc", "W_dec", "b_dec"} - set(state)
    if missing:
        raise UserInputError(f"{source}: missing SAE tensors {sorted(missing)}")


def fraction_variance_explained(x: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over a batch of tokens."""
    residual = (x - reconstruction).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
    return float(1 - residual / total)


def planted_recovery(decoder: torch.Tensor, planted: torch.Tensor) -> float:
    """Mean over planted directions of the best cosine with any learnt decoder row (1 = all recovered)."""
    learnt = F.normalize(decoder, dim=1)
    truth = F.normalize(planted, dim=1)
    return float((truth @ learnt.t()).max(dim=1).values.mean())


def synthetic_activations(n: int, d_in: int, n_features: int, active: int, seed: int = 0,
                          noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations made from a planted sparse dictionary: each token is a non-negative combination of
    ``active`` random unit directions out of ``n_features``. Returns (activations [n, d_in], directions)."""
    generator = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(n_features, d_in, generator=generator), dim=1)  # [n_features, d_in]
    which = torch.rand(n, n_features, generator=generator).argsort(dim=1)[:, :active]  # [n, active]
    coefficients = torch.zeros(n, n_features)
    coefficients.scatter_(1, which, torch.rand(n, active, generator=generator) * 2 + 0.5)
    x = coefficients @ directions + noise * torch.randn(n, d_in, generator=generator)
    return x, directions


def reference_sae_step(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> float:
    """One plain training step (no fused kernels, no activation reuse): the benchmark's reference."""
    optimizer.zero_grad(set_to_none=True)
    out = sae(x, sparse_decode=False)
    out.loss.backward()
    sae.remove_parallel_gradient()
    optimizer.step()
    sae.normalize_decoder()
    return float(out.loss.detach())
