"""One validation layer for every command-line option, applied by ``atinuke.cli.run_cli`` before a command runs.

Options are validated by their ``argparse`` destination name, so the same rule holds in every CLI
(``atinuke``, ``workbench``, ``probes``): ``--batch-size 0``, ``--device tpu`` or ``--dtype float16`` on a CPU fail
the same way everywhere, with one line naming the option and the value, before any work is done or any file is
written.
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Mapping, Optional

from atinuke.errors import UserInputError

# Counts that must be at least 1 when given (None means "unset: use the default").
POSITIVE_INTS = frozenset({
    "batch_size", "eval_batch_size", "n_steps", "n_samples", "max_tokens_per_pass", "internal_batch_size", "limit",
    "eval_limit", "epochs", "steps", "seeds", "n_boot", "max_len", "grad_accum", "vocab_size", "keep_checkpoints",
    "eval_max_blocks", "stop_after", "words", "top_k", "n_examples", "width", "k", "max_tokens", "shard_tokens",
    "eval_texts", "max_length", "max_sentences", "seq_len", "randomization_limit", "log_checkpoint_first",
    "n_prompts", "n_heldout", "n_texts", "probe_sentences", "sae_k", "sae_width", "sae_steps",
})
# Worker counts in joblib's convention: N workers, -1 all cores, -2 all but one; 0 means nothing.
NON_ZERO_INTS = frozenset({"jobs"})
# Numbers that must be finite and > 0.
POSITIVE_FLOATS = frozenset({"lr", "head_lr", "tolerance", "scale", "finetune_scale", "C", "effect"})
# Numbers that must be finite and >= 0.
NON_NEGATIVE = frozenset({"l1", "warmup", "clip", "weight_decay", "eval_every", "checkpoint_every", "freeze_layers",
                          "warmup_ratio", "seed", "lens_steps", "doc_stride", "sae_layer"})
# Seeds reach numpy and scikit-learn (``random_state``), which take 0 .. 2**32 - 1.
SEEDS = frozenset({"seed"})
MAX_SEED = 2**32 - 1
# No integer option means anything beyond 64 bits (torch, numpy and the file formats stop there).
MAX_INT = 2**63 - 1
# Rates in [0, 1).
RATES = frozenset({"dropout", "mask_prob"})
# Shares in (0, 1): a held-out part that leaves some rows on both sides.
OPEN_SHARES = frozenset({"dev_fraction"})
# Shares in (0, 1]: the part of a metric a circuit must recover.
SHARES = frozenset({"fraction"})
# Thresholds on a correlation, in [0, 1].
CORRELATIONS = frozenset({"threshold"})


def check_device(spec: str) -> str:
    """``spec`` if this machine has it: "auto", "cpu", "cuda" or "cuda:N" (N < the number of GPUs), "mps".

    Raises:
        UserInputError: an unknown device, or a CUDA/MPS device this machine does not have.
    """
    import torch

    text = str(spec).strip()
    if text in ("auto", "cpu"):
        return text
    if text == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserInputError(f"--device {text}: MPS is not available on this machine")
        return text
    if text == "cuda" or text.startswith("cuda:"):
        index = text.partition(":")[2]
        if index and not index.isdigit():
            raise UserInputError(f"--device {text!r}: expected cuda or cuda:N")
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {text}: CUDA is not available on this machine (use cpu or auto)")
        if index and int(index) >= torch.cuda.device_count():
            raise UserInputError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return text
    raise UserInputError(f"--device {text!r}: unknown device; choose auto, cpu, cuda, cuda:N or mps")


DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(spec: str) -> str:
    """The device a ``--device`` value names on this machine: "auto" is "cuda" when CUDA is available, else "cpu".

    Raises:
        UserInputError: as :func:`check_device`.
    """
    import torch

    text = check_device(spec)
    return ("cuda" if torch.cuda.is_available() else "cpu") if text == "auto" else text


def check_dtype(spec: str, device: str = "cpu") -> str:
    """``spec`` if a model can run in it on ``device``: float32 anywhere, bfloat16 anywhere (CPUs have bfloat16
    kernels), float16 on a GPU only.

    Raises:
        UserInputError: an unknown dtype, or float16 on the CPU.
    """
    text = str(spec).strip()
    if text not in DTYPES:
        raise UserInputError(f"--dtype {text!r}: unknown dtype; choose {', '.join(DTYPES)}")
    if text == "float16" and resolve_device(device) == "cpu":
        raise UserInputError("--dtype float16 on the CPU: half-precision kernels are GPU-only; use bfloat16 or "
                             "float32 on the CPU (or --device cuda)")
    return text


def option_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Destination name -> the flag a user types, over ``parser`` and its subcommands' parsers.

    A command whose option means something else than the shared rule says (``workbench lens --steps 0``: no
    tuned lens) gives it its own destination (``lens_steps``); messages still name the flag the user typed.
    """
    flags: dict[str, str] = {}
    for action in parser._actions:  # argparse keeps no public list of a parser's options
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags.update(option_flags(sub))
        elif action.option_strings:
            flags.setdefault(action.dest, max(action.option_strings, key=len))
    return flags


def check_args(args: argparse.Namespace, flags: Optional[Mapping[str, str]] = None) -> None:
    """Validate every known option of a parsed command line.

    Args:
        args: the parsed command line.
        flags: destination name -> flag, for messages (default: the destination spelled as a flag).

    Raises:
        UserInputError: naming the first bad option and its value.
    """
    def _flag(name: str) -> str:
        return (flags or {}).get(name) or "--" + name.replace("_", "-")

    values: dict[str, Any] = vars(args)
    for name, value in values.items():
        if value is None or isinstance(value, bool) or name.startswith("_"):
            continue
        if name == "device":
            check_device(value)
            continue
        if name == "dtype":
            check_dtype(value, values.get("device") or "auto")
            continue
        if isinstance(value, list) and not value:
            # argparse (3.11-3.13) turns ``--flag=--`` into an empty list instead of refusing it.
            raise UserInputError(f"{_flag(name)} needs a value, got '--'")
        if not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"{_flag(name)} must be a finite number, got {value}")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise UserInputError(f"{_flag(name)} is beyond 64 bits, got {_short(value)}")
        if name in SEEDS and value > MAX_SEED:
            raise UserInputError(f"{_flag(name)} must be at most 2**32 - 1 = {MAX_SEED} (numpy's and scikit-learn's "
                                 f"seeds), got {_short(value)}")
        if name in POSITIVE_INTS and value < 1:
            raise UserInputError(f"{_flag(name)} must be at least 1, got {value}")
        if name in NON_ZERO_INTS and value == 0:
            raise UserInputError(f"{_flag(name)} must not be 0 (N workers, -1 for all cores), got {value}")
        if name in POSITIVE_FLOATS and not value > 0:
            raise UserInputError(f"{_flag(name)} must be positive, got {value}")
        if name in NON_NEGATIVE and value < 0:
            raise UserInputError(f"{_flag(name)} must be >= 0, got {value}")
        if name in RATES and not 0 <= value < 1:
            raise UserInputError(f"{_flag(name)} must be in [0, 1), got {value}")
        if name in OPEN_SHARES and not 0 < value < 1:
            raise UserInputError(f"{_flag(name)} must be in (0, 1), got {value}")
        if name in SHARES and not 0 < value <= 1:
            raise UserInputError(f"{_flag(name)} must be in (0, 1], got {value}")
        if name in CORRELATIONS and not 0 <= value <= 1:
            raise UserInputError(f"{_flag(name)} must be in [0, 1], got {value}")


def _short(value: int | float) -> str:
    """A huge integer as a message can show it (its first digits and its length)."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error printed as one line (``prog: error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        import sys

        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class RaisingArgumentParser(argparse.ArgumentParser):
    """argparse for a command line built in code (``atinuke experiment`` driving ``atinuke pretrain``):
    a usage error raises UserInputError instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserInputError(f"{self.prog}: {message}")
