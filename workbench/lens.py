"""What the model would output at each layer: the logit lens and the tuned lens.

- Logit lens (nostalgebraist 2020): every layer's residual stream (the embeddings, then each block's output)
  through the model's own output path (final norm for pre-norm stacks, MLM transform, vocabulary projection).
  The last layer's lens is the model's output exactly.
- Tuned lens (Belrose et al. 2023, arXiv 2303.08112): one affine translator per layer, initialised to the
  identity and trained so that the translated state's output matches the final output distribution
  (KL(final || lens)); the last layer keeps the identity, as in the paper.

Both are evaluated on held-out text by their KL to the final distribution and by how often their top token
is the model's, per layer.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, cast

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)


def layer_names(subject: Subject) -> list[str]:
    """The residual stream at each depth: the embeddings (``blocks.0.hook_resid_pre``), then every block."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(subject.n_layers)]


class TunedLens(nn.Module):
    """One affine translator per layer but the last (identity there)."""

    def __init__(self, n_layers: int, d_model: int) -> None:
        super().__init__()
        translators = [nn.Linear(d_model, d_model) for _ in range(n_layers)]
        for translator in translators:
            nn.init.eye_(translator.weight)
            nn.init.zeros_(translator.bias)
        self.translators = nn.ModuleList(translators)

    def forward(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        if layer >= len(self.translators):
            return hidden
        return self.translators[layer](hidden)


@dataclass
class LensResult:
    """``layers``: per depth ``layer`` (0 = embeddings), ``kl_logit_lens``, ``kl_tuned_lens`` (nats, mean per
    real token; NaN without a tuned lens), ``top1_logit_lens``, ``top1_tuned_lens`` (agreement with the
    model's top token). ``tokens``: per depth and position of the first text, the lens's top tokens."""

    layers: pd.DataFrame
    tokens: pd.DataFrame


def _language_model(subject: Subject, lm: Any) -> Any:
    from workbench.lm import language_model

    lm = language_model(subject) if lm is None else lm
    if lm is None:
        raise UserInputError(f"{subject.name}: no language-model head to read the lens through (a pretraining "
                             "run or an MLM/CLM checkpoint is needed)")
    return lm


def _states(subject: Subject, lm: Any, texts: Sequence[str], max_length: int,
            mask_positions: Sequence[int] = ()):
    batch = subject.tokenize(list(texts), max_length=max_length)
    if mask_positions:  # a masked LM predicts at [MASK]: replace these token positions of the first text
        ids = batch["input_ids"].clone()  # [batch, pos]
        ids[0, list(mask_positions)] = subject.tokenizer.mask_token_id
        batch["input_ids"] = ids
    names = layer_names(subject)
    with torch.no_grad():
        cache = subject.run_with_cache(batch, names)
        final = lm.logits(batch)  # [batch, pos, vocab]
    mask = batch["attention_mask"].bool()
    return batch, [cache[n] for n in names], final, mask


def _kl(final: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(final || lens) per row, in nats."""
    return F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(final.float(), -1), log_target=True,
                    reduction="none").sum(-1)


def train_tuned_lens(subject: Subject, texts: Sequence[str], lm: Any = None, steps: int = 200, batch_size: int = 16,
                     lr: float = 1e-3, max_length: int = 128, seed: int = 0) -> TunedLens:
    """Fit the translators on ``texts`` (SGD over batches of texts, Adam)."""
    if steps < 1 or not texts:
        raise UserInputError("the tuned lens needs texts and a positive number of steps")
    lm = _language_model(subject, lm)
    torch.manual_seed(seed)
    lens = TunedLens(subject.n_layers, subject.d_model)
    optimizer = torch.optim.Adam(lens.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    with subject.frozen():
        for _ in range(steps):
            chosen = torch.randint(0, len(texts), (min(batch_size, len(texts)),), generator=generator).tolist()
            _, states, final, mask = _states(subject, lm, [texts[i] for i in chosen], max_length)
            loss = cast(torch.Tensor, sum(_kl(final[mask], lm.unembed(lens(h[mask], layer))).mean()
                                          for layer, h in enumerate(states[:-1])))  # sum() starts from int 0
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return lens.eval()


@torch.no_grad()
def evaluate_lens(subject: Subject, texts: Sequence[str], lm: Any = None, tuned: Optional[TunedLens] = None,
                  max_length: int = 128, top_k: int = 3, mask_positions: Sequence[int] = ()) -> LensResult:
    """Logit (and tuned) lens on held-out ``texts``: KL and top-1 agreement per layer, top tokens per position.

    ``mask_positions``: token positions of the first text replaced by the mask token, so that a masked LM is
    read where it has to predict (Devlin et al., 2019) rather than where it copies its input.
    """
    lm = _language_model(subject, lm)
    batch, states, final, mask = _states(subject, lm, texts, max_length, mask_positions)
    target, top = final[mask], final[mask].argmax(-1)
    rows, token_rows = [], []
    first = mask[0]
    words = subject.tokenizer.convert_ids_to_tokens(batch["input_ids"][0][first].tolist())
    for layer, hidden in enumerate(states):
        plain = lm.unembed(hidden[mask])
        row = dict(layer=layer, kl_logit_lens=float(_kl(target, plain).mean()),
                   top1_logit_lens=float((plain.argmax(-1) == top).float().mean()),
                   kl_tuned_lens=float("nan"), top1_tuned_lens=float("nan"))
        if tuned is not None:
            translated = lm.unembed(tuned(hidden[mask], layer))
            row.update(kl_tuned_lens=float(_kl(target, translated).mean()),
                       top1_tuned_lens=float((translated.argmax(-1) == top).float().mean()))
        rows.append(row)
        best = lm.unembed(hidden[0][first]).topk(top_k, dim=-1).indices  # [pos, k]
        for position, (word, ids) in enumerate(zip(words, best.tolist())):
            token_rows.append(dict(layer=layer, position=position, token=word,
                                   top_tokens=" ".join(subject.tokenizer.convert_ids_to_tokens(ids))))
    return LensResult(pd.DataFrame(rows), pd.DataFrame(token_rows))


def save_tuned_lens(lens: TunedLens, path: Path) -> None:
    """The translators as safetensors (atomically)."""
    from safetensors.torch import save_file

    from atinuke.io import write_with

    tensors = {k: v.detach().contiguous() for k, v in lens.state_dict().items()}
    write_with(path, lambda tmp: save_file(tensors, str(tmp)))


def load_tuned_lens(path: Path, n_layers: int, d_model: int) -> TunedLens:
    """Translators written by :func:`save_tuned_lens`, checked against the model's shape."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as error:  # SafetensorError, OSError
        raise UserInputError(f"{path}: unreadable tuned lens ({error})") from error
    lens = TunedLens(n_layers, d_model)
    try:
        lens.load_state_dict(tensors)
    except RuntimeError as error:
        raise UserInputError(f"{path}: a tuned lens of another model shape ({str(error).splitlines()[0]})") from error
    return lens.eval()


# --------------------------------------------------------------------------------------------- task heads

@torch.no_grad()
def task_lens(subject: Subject, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None,
              max_length: int = 128) -> pd.DataFrame:
    """The task head applied to every layer's residual stream: "what would the classifier say at layer k".

    For classification (and regression) heads: per layer and example the head's prediction, its probability
    (regression: the score) and each class's probability; for span-QA and tagging heads: per layer the share
    of positions whose argmax agrees with the final layer's; for coreference heads (each text a document, its
    words split on whitespace, read over the clean run's kept mentions) per layer and document the share of
    mentions whose top antecedent agrees with the final layer's. The last layer is the model's output exactly.

    Returns:
        DataFrame: ``layer``, ``example``, ``prediction``, ``agrees`` (with the last layer), ``score``,
        and ``p_<label>`` columns for classification.
    """
    head = getattr(subject.task_model, "head", None)
    if head is None:
        raise UserInputError(f"{subject.name}: not a fine-tuned task model; the task-head lens needs its head")
    from workbench.kinds import get_workbench_kind

    config = subject.task_model.config
    kind = get_workbench_kind(config.kind)
    if kind.lens is None:
        raise UserInputError(kind.lens_refusal or f"the task-head lens does not read {config.kind} heads")
    names = layer_names(subject)
    if kind.rows_by_document:  # coreference: each text is a document, read over its clean run's kept mentions
        from workbench.coref_patching import coref_inputs
        from workbench.patching import run_task_with_cache

        rows: list[dict[str, Any]] = []
        for example, text in enumerate(texts):
            inputs = coref_inputs(subject, text.split())
            head_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
            cache = run_task_with_cache(subject, inputs, names)
            outputs = [head(subject.final_norm(cache[name]), inputs["attention_mask"], **head_inputs)
                       for name in names]
            for layer, output in enumerate(outputs):
                rows.extend(dict(row, example=example)
                            for row in kind.lens(config, output, outputs[-1], inputs["attention_mask"], layer))
        return pd.DataFrame(rows)
    batch = subject.tokenize(list(texts), None if text_pairs is None else list(text_pairs), max_length=max_length)
    cache = subject.run_with_cache(batch, names)
    outputs = [head(subject.final_norm(cache[name]), batch["attention_mask"]) for name in names]
    rows = []
    last = outputs[-1]
    for layer, output in enumerate(outputs):
        rows.extend(kind.lens(config, output, last, batch["attention_mask"], layer))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- CLI

def add_arguments(parser: Any) -> None:
    """``workbench lens``: the logit lens and a tuned lens of an LM, evaluated on held-out text."""
    parser.add_argument("--model", required=True, help="a pretraining run or MLM/CLM checkpoint directory")
    parser.add_argument("--corpus", default="ptb", help="ptb (default), wiki, lee, or a UTF-8 text file")
    # its own destination: 0 is valid here (logit lens only), where the shared rule for "steps" wants >= 1
    parser.add_argument("--steps", dest="lens_steps", type=int, default=300,
                        help="tuned-lens training steps (0: logit lens only)")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per tuned-lens step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-texts", type=int, default=200, help="held-out texts")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory (empty or new, unless --overwrite/--resume)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out (the tuned lens and each table are parts)")
    from workbench.cli import add_device_arguments

    add_device_arguments(parser)


def run(args: Any) -> int:
    """Write ``lens_layers.parquet``, ``lens_tokens.parquet`` and (with steps) ``tuned_lens.safetensors``; the
    trained lens and the evaluation are resumable parts (:mod:`workbench.resume`)."""
    import shutil

    from atinuke.io import atomic_write_json, check_out_dir, write_with
    from workbench.cli import resolve_subject
    from workbench.features.cli import corpus_split
    from workbench.resume import ResumableParts

    if args.lens_steps < 0:
        raise UserInputError(f"--steps must be >= 0, got {args.lens_steps}")
    out = check_out_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    subject = resolve_subject(args.model, None, args.device, args.dtype)
    if subject.task_model is not None:
        raise UserInputError(f"--model {args.model}: a fine-tuned task model; give a pretraining run or LM checkpoint")
    parts = ResumableParts(out, {"command": "lens", "model": subject.model_hash(), "corpus": args.corpus,
                                 "steps": args.lens_steps, "batch_size": args.batch_size, "lr": args.lr,
                                 "eval_texts": args.eval_texts, "max_length": args.max_length, "seed": args.seed},
                           resume=args.resume)
    train, held = corpus_split(args.corpus, args.eval_texts)
    tuned = None
    if args.lens_steps:
        stored = parts.file("tuned_lens", ".safetensors")
        if stored.is_file():
            tuned = load_tuned_lens(stored, subject.n_layers, subject.d_model)
            parts.reused.append("tuned_lens")
        else:
            tuned = train_tuned_lens(subject, train, steps=args.lens_steps, batch_size=args.batch_size, lr=args.lr,
                                     max_length=args.max_length, seed=args.seed)
            save_tuned_lens(tuned, stored)
        copy: Any = functools.partial(shutil.copyfile, stored)  # returns the path; write_with ignores it
        write_with(out / "tuned_lens.safetensors", copy)
    result: dict[str, LensResult] = {}

    def evaluate() -> LensResult:
        if "result" not in result:
            result["result"] = evaluate_lens(subject, held, tuned=tuned, max_length=args.max_length)
        return result["result"]

    layers = parts.table("lens_layers", lambda: evaluate().layers)
    tokens = parts.table("lens_tokens", lambda: evaluate().tokens)
    for name, frame in (("lens_layers", layers), ("lens_tokens", tokens)):
        write_with(out / f"{name}.parquet", functools.partial(frame.to_parquet, index=False))
    atomic_write_json(out / "summary.json", {"model": subject.name, "corpus": args.corpus, "steps": args.lens_steps,
                                             "layers": layers.to_dict(orient="records"),
                                             "resumed_parts": parts.reused})
    print(layers.to_string(index=False))
    return 0
