"""SAEs in the SAELens layout: ``cfg.json`` + ``sae_weights.safetensors`` with ``W_enc`` [d_in, d_sae],
``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec`` [d_in] (and ``threshold`` [d_sae] for JumpReLU).

So SAEs trained here open in SAELens (and Neuronpedia's tooling), and SAEs trained there open here. A
BatchTopK SAE is exported for inference as SAELens does it: a JumpReLU with its learnt threshold. An SAE whose
``apply_b_dec_to_input`` is false gets ``b_enc + b_dec W_enc`` as its encoder bias, which computes the same
pre-activations with this module's (x - b_dec) convention. Activation normalisation other than "none" is
refused rather than silently ignored.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir
from workbench.features.sae import SAEConfig, SparseAutoencoder

WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
_ARCHITECTURE = {"topk": "topk", "batchtopk": "jumprelu", "relu": "standard", "jumprelu": "jumprelu"}


def _layer_of(hook: str) -> Any:
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else None


def export_saelens(sae: SparseAutoencoder, directory: Path, overwrite: bool = False) -> Path:
    """Write ``sae`` to ``directory`` in the SAELens layout (atomically; a non-empty directory needs
    ``overwrite``)."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise UserInputError(f"{directory} is not empty; choose another directory or --overwrite")
    c = sae.config
    tensors = {name: getattr(sae, name).detach().clone().contiguous() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if c.kind == "jumprelu":
        assert sae.log_threshold is not None  # a jumprelu SAE has one
        tensors["threshold"] = sae.log_threshold.detach().exp().clone()
    elif c.kind == "batchtopk":
        tensors["threshold"] = torch.full((c.width,), max(float(sae.batch_threshold), 0.0))
    architecture = _ARCHITECTURE[c.kind]
    cfg = {"architecture": architecture, "d_in": c.d_in, "d_sae": c.width, "dtype": "float32", "device": "cpu",
           "model_name": c.model, "hook_name": c.hook, "hook_layer": _layer_of(c.hook), "hook_head_index": None,
           "activation_fn_str": "topk" if architecture == "topk" else "relu",
           "activation_fn_kwargs": {"k": c.k} if architecture == "topk" else {},
           "apply_b_dec_to_input": True, "finetuning_scaling_factor": False, "normalize_activations": "none",
           "prepend_bos": True, "context_size": None, "dataset_path": "",
           "atinuke_workbench": c.to_dict()}
    if architecture == "topk":
        cfg["k"] = c.k
    with atomic_dir(directory) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return directory


def import_saelens(directory: Path) -> SparseAutoencoder:
    """Load an SAE from a SAELens-layout directory (ours or one trained elsewhere).

    Raises:
        UserInputError: naming the file for a missing or malformed config or weights, or an unsupported
            architecture or normalisation.
    """
    directory = Path(directory)
    cfg_path, weights_path = directory / CONFIG, directory / WEIGHTS
    if not cfg_path.is_file() or not weights_path.is_file():
        raise UserInputError(f"{directory}: not an SAE in the SAELens layout (needs {CONFIG} and {WEIGHTS})")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise UserInputError(f"{cfg_path}: not valid JSON ({error})") from error
    try:
        tensors = load_file(str(weights_path))
    except Exception as error:  # SafetensorError on truncated or foreign files
        raise UserInputError(f"{weights_path}: unreadable safetensors ({error})") from error
    missing = {"W_enc", "b_enc", "W_dec", "b_dec"} - set(tensors)
    if missing:
        raise UserInputError(f"{weights_path}: missing tensors {sorted(missing)}")
    if cfg.get("normalize_activations", "none") not in ("none", None):
        raise UserInputError(f"{cfg_path}: normalize_activations={cfg['normalize_activations']!r} is not supported")
    d_in, width = tensors["W_enc"].shape
    if tuple(tensors["W_dec"].shape) != (width, d_in):
        raise UserInputError(f"{weights_path}: W_dec is {tuple(tensors['W_dec'].shape)}, expected {(width, d_in)}")
    ours = cfg.get("atinuke_workbench")
    architecture = str(cfg.get("architecture") or cfg.get("activation_fn_str") or "standard")
    k = int(cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k") or 1)
    kind = {"topk": "topk", "jumprelu": "jumprelu", "standard": "relu", "relu": "relu"}.get(architecture)
    if kind is None:
        raise UserInputError(f"{cfg_path}: architecture {architecture!r} is not supported "
                             "(topk, jumprelu, standard)")
    fields = dict(ours) if isinstance(ours, dict) else {}
    fields.update(d_in=int(d_in), width=int(width), kind=kind, k=min(k, int(width)),
                  hook=str(cfg.get("hook_name") or fields.get("hook", "")),
                  model=str(cfg.get("model_name") or fields.get("model", "")))
    sae = SparseAutoencoder(SAEConfig(**fields))
    b_enc = tensors["b_enc"].float()
    if not cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc + tensors["b_dec"].float() @ tensors["W_enc"].float()
    with torch.no_grad():
        sae.W_enc.copy_(tensors["W_enc"].float())
        sae.W_dec.copy_(tensors["W_dec"].float())
        sae.b_dec.copy_(tensors["b_dec"].float())
        sae.b_enc.copy_(b_enc)
        if kind == "jumprelu":
            if "threshold" not in tensors:
                raise UserInputError(f"{weights_path}: a JumpReLU SAE needs a 'threshold' tensor")
            assert sae.log_threshold is not None  # built with kind="jumprelu" above
            sae.log_threshold.copy_(tensors["threshold"].float().clamp_min(1e-12).log())
    return sae.eval()
