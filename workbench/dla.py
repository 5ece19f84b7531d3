"""Direct logit attribution of one text, as a tidy table: the read-out, the split and whether it is exact.

:func:`dla` picks the read-out (``--target``), runs :func:`workbench.decompose.direct_logit_attribution` on a
pre-norm model (every embedding, head, attention bias, MLP and norm bias; exact with the final norm's scale
frozen; Elhage et al. 2021) or :func:`workbench.decompose.last_block_decomposition` on a post-norm one (only the
last block is split; why is in ``summary["why"]``), and checks the parts against the logit computed apart, by the
model's own forward pass: ``direction . final_norm(resid_post)[position] + bias``.

Read-outs (``target``): ``top`` (default), the model's top token at the position through its tied embeddings;
``token:WORD``, that token's tied embedding row (both need ``tie_word_embeddings``: the unembedding is the
embedding table); ``random:SEED``, a fixed random unit vector (a control that needs no LM head).

CLI: ``workbench dla --model M --text TEXT [--target top|token:WORD|random:SEED] [--position last|N] --out DIR``
writes ``dla.parquet`` (component, layer, head, value) and ``summary.json`` (logit, sum_of_parts, exact, why,
read-out, position).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import pandas as pd
import torch

from atinuke.errors import UserInputError
from workbench.decompose import direct_logit_attribution, last_block_decomposition

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

DLA_FILES = ("dla.parquet", "summary.json")
EXACT_WHY = ("pre-norm blocks: the final stream is the sum of the parts, and with the final norm's scale frozen at "
             "its value the read-out is linear in them, so the parts sum to the logit")
POST_NORM_WHY = ("post-norm blocks: a layer norm acts on the whole stream after every block, so earlier components "
                 "reach the read-out only through every later norm and no exact per-component split exists; only "
                 "the last block is split (its two norms' scales frozen), everything before it is one part, "
                 "resid_pre")


@dataclass
class DirectLogitAttribution:
    """One text's split.

    Attributes:
        frame: ``component``, ``layer`` (-1 for the embeddings, norms and read-out bias), ``head`` (nullable),
            ``value``.
        summary: ``logit`` (the model's own), ``sum_of_parts``, ``exact``, ``why``, ``readout``, ``position``, ...
    """

    frame: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def _tied_embeddings(subject: Subject, target: str) -> torch.Tensor:
    config = getattr(subject.encoder, "config", None)
    if not getattr(config, "tie_word_embeddings", False):
        raise UserInputError(f"--target {target}: {subject.name} does not tie its output to its input embeddings, so "
                             "no token row is its unembedding; use --target random:SEED")
    weight: torch.Tensor = getattr(subject.input_embeddings, "weight")
    return weight.detach()  # [vocab, d_model]


def readout(subject: Subject, target: str, final: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The read-out direction [d_model] named by ``target`` and its description; ``final`` [d_model] is the
    final state at the read position (for ``top``)."""
    if target == "top":
        table = _tied_embeddings(subject, target)
        token = int((table @ final).argmax())
        return table[token], f"tied embedding of the top token {subject.tokenizer.convert_ids_to_tokens(token)!r}"
    if target.startswith("token:"):
        word = target.split(":", 1)[1]
        table = _tied_embeddings(subject, target)
        found = subject.tokenizer.convert_tokens_to_ids(word)
        if not isinstance(found, int) or found == subject.tokenizer.unk_token_id or found >= len(table):
            raise UserInputError(f"--target {target}: {word!r} is not one token of this model's vocabulary")
        return table[found], f"tied embedding of the token {word!r}"
    match = re.fullmatch(r"random:(\d+)", target)
    if match:
        vector = torch.randn(final.shape[-1], generator=torch.Generator().manual_seed(int(match.group(1))))
        return vector / vector.norm(), f"random unit vector (seed {match.group(1)})"
    raise UserInputError(f"--target {target!r}: use top, token:WORD or random:SEED")


def _position(position: str, length: int) -> int:
    if position == "last":
        return length - 1
    if not re.fullmatch(r"-?\d+", position) or not -length <= int(position) < length:
        raise UserInputError(f"--position {position!r}: use 'last' or a position in 0..{length - 1}")
    return int(position) % length


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    names = frame["component"]
    layer = names.str.extract(r"^(?:L|MLP)(\d+)")[0].astype("Int64").fillna(-1)
    head = names.str.extract(r"^L\d+\.H(\d+)$")[0].astype("Int64")
    return pd.DataFrame({"component": names, "layer": layer.astype(int), "head": head,
                         "value": frame["contribution"].astype(float)})


@torch.no_grad()
def dla(subject: Subject, text: str, target: str = "top", position: str = "last") -> DirectLogitAttribution:
    """Split one text's read-out at ``position`` into components (see the module docstring)."""
    if not text.strip():
        raise UserInputError("--text: empty text")
    inputs = subject.as_inputs(subject.tokenize([text]))
    pos = _position(position, int(inputs["attention_mask"][0].sum()))
    last = f"blocks.{subject.n_layers - 1}.hook_resid_post"
    final = subject.final_norm(subject.run_with_cache(inputs, [last])[last])[0, pos]  # [d_model]
    direction, description = readout(subject, target, final)
    logit = float(final @ direction)
    exact = bool(subject.adapter.residual_is_sum)
    split = (direct_logit_attribution if exact else last_block_decomposition)(subject, inputs, direction, pos)
    frame = _tidy(split)
    total = float(frame["value"].sum())
    summary = {"model": subject.name, "family": subject.adapter.family, "text": text, "position": pos,
               "token": subject.tokenizer.convert_ids_to_tokens(int(inputs["input_ids"][0, pos])),
               "readout": description, "target": target, "logit": logit, "sum_of_parts": total,
               "exact": exact, "why": EXACT_WHY if exact else POST_NORM_WHY}
    logger.info("DLA of %s at %d: logit %.5g, parts sum to %.5g", subject.name, pos, logit, total)
    return DirectLogitAttribution(frame, summary)


# --------------------------------------------------------------------------------------------- CLI

def add_arguments(parser: Any) -> None:
    """``workbench dla``: one text's read-out split into the embeddings, every head and every MLP."""
    parser.add_argument("--model", required=True, help="a model directory or a fine-tuning run")
    parser.add_argument("--text", required=True, help="the text")
    parser.add_argument("--target", default="top", help="top (default), token:WORD (tied embeddings) or random:SEED")
    parser.add_argument("--position", default="last", help="the position read: 'last' (default) or an index")
    parser.add_argument("--out", required=True, help="output directory (empty or new, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true")
    from workbench.cli import add_device_arguments

    add_device_arguments(parser)


def run(args: Any) -> int:
    """Write ``dla.parquet`` and ``summary.json``."""
    from atinuke.io import atomic_write_json, check_out_dir, write_with
    from workbench.cli import resolve_subject

    out = check_out_dir(args.out, overwrite=args.overwrite)
    if not args.text.strip():
        raise UserInputError("--text: empty text")
    result = dla(resolve_subject(args.model, None, args.device, args.dtype), args.text, args.target, args.position)
    out.mkdir(parents=True, exist_ok=True)
    write_with(out / "dla.parquet", lambda tmp: result.frame.to_parquet(tmp, index=False))
    atomic_write_json(out / "summary.json", result.summary)
    s = result.summary
    print(f"{s['readout']} at position {s['position']} ({s['token']}): logit {s['logit']:.5g}, parts sum to "
          f"{s['sum_of_parts']:.5g}; exact: {s['exact']} ({s['why']})")
    print(largest(result.frame, 15).to_string(index=False))
    return 0


def largest(frame: pd.DataFrame, n: Optional[int] = None) -> pd.DataFrame:
    """The parts ordered by |value| (the first ``n``)."""
    ordered = frame.reindex(frame["value"].abs().sort_values(ascending=False).index)
    return ordered if n is None else ordered.head(n)
