"""``workbench sae train|inspect``: dictionary features at any hook of any model the workbench opens.

``workbench sae train --model M --hook blocks.1.hook_resid_post --width 4096 --k 32 --out DIR`` streams the
hook's activations over a corpus to ``DIR/store`` (bounded shards), trains the SAE (progress bar,
TensorBoard in ``DIR/tb``, checkpoints in ``DIR/checkpoint``; ``--resume`` continues exactly), evaluates it on
held-out text beside an SAE trained identically on a randomly re-initialised copy of the model (``DIR/control``),
and writes ``DIR/sae`` (SAELens layout), ``DIR/metrics.json`` and the feature tables (``features.parquet``,
``contexts.parquet``, ``histograms.parquet``).

``workbench sae inspect --sae PATH --model M --out DIR`` does the evaluation and the feature tables for an SAE
trained elsewhere (SAELens layout).

``workbench sae compare --model-a M --sae-a RUN --model-b N --sae-b RUN --out DIR`` matches two SAEs' latents by
activation correlation on the same held-out words (:func:`workbench.compare.compare_features`).
"""
from __future__ import annotations

import argparse
import logging
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from atinuke.errors import UserInputError
from atinuke.io import atomic_write_json, check_out_dir, write_with

if TYPE_CHECKING:
    import pandas as pd

    from workbench.subject import Subject

logger = logging.getLogger(__name__)

HELD_OUT_FRACTION = 0.1


def corpus_split(source: str, eval_texts: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): PTB's own valid split, else the last tenth of the documents."""
    from atinuke.corpus import load_texts

    if source == "ptb":
        train = [t for t in load_texts("ptb", "train") if t.strip()]
        held = [t for t in load_texts("ptb", "valid") if t.strip()]
    else:
        texts = [t for t in load_texts(source, "train") if t.strip()]
        if len(texts) < 2:
            raise UserInputError(f"--corpus {source}: needs at least two non-empty documents")
        cut = max(1, int(len(texts) * (1 - HELD_OUT_FRACTION)))
        train, held = texts[:cut], texts[cut:]
    if not train or not held:
        raise UserInputError(f"--corpus {source}: no texts")
    return train, held[:eval_texts]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="'minilm', a pretraining run, or a model directory")
    parser.add_argument("--corpus", default="ptb", help="ptb (default), wiki, lee, or a UTF-8 text file")
    parser.add_argument("--eval-texts", type=int, default=200, help="held-out texts for the metrics")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text")
    from workbench.cli import add_device_arguments

    add_device_arguments(parser)
    parser.add_argument("--out", required=True, help="output directory (empty or new, unless --resume/--overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace what this command writes in --out")
    parser.add_argument("--no-progress", action="store_true")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``workbench sae train`` and ``workbench sae inspect``."""
    from workbench.features.sae import KINDS

    sub = parser.add_subparsers(dest="sae_command", required=True)
    train = sub.add_parser("train", help="train an SAE at a hook, with the random-model control")
    _add_common(train)
    train.add_argument("--hook", required=True, help="hook name, e.g. blocks.1.hook_resid_post")
    train.add_argument("--kind", default="topk", choices=KINDS)
    train.add_argument("--width", type=int, default=4096, help="latents")
    train.add_argument("--k", type=int, default=32, help="active latents per token (topk, batchtopk)")
    train.add_argument("--l1", type=float, default=1e-3, help="sparsity coefficient (relu, jumprelu)")
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--batch-size", type=int, default=1024, help="tokens per step")
    train.add_argument("--steps", type=int, default=None, help="training steps (default: one pass over the tokens)")
    train.add_argument("--max-tokens", type=int, default=200_000, help="training tokens streamed from the corpus")
    train.add_argument("--shard-tokens", type=int, default=65_536, help="rows per on-disk shard (memory bound)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-control", action="store_true", help="skip the random-model control")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    inspect = sub.add_parser("inspect", help="metrics and feature tables of an SAE in the SAELens layout")
    _add_common(inspect)
    inspect.add_argument("--sae", required=True, help="directory with cfg.json and sae_weights.safetensors")
    inspect.add_argument("--hook", default=None, help="hook name (default: the SAE's hook_name)")
    inspect.add_argument("--max-tokens", type=int, default=20_000, help="held-out tokens for the feature tables")
    match = sub.add_parser("compare", help="match two SAEs' latents (two models, or two runs) by activation "
                                           "correlation on the same held-out words")
    for side in ("a", "b"):
        match.add_argument(f"--model-{side}", required=True, help=f"model {side.upper()}: 'minilm' or a model directory")
        match.add_argument(f"--sae-{side}", required=True, help=f"SAE {side.upper()}: an SAE run (with sae/) or an "
                                                              "SAELens directory")
    match.add_argument("--corpus", default="ptb", help="ptb (default), wiki, lee, or a UTF-8 text file")
    match.add_argument("--eval-texts", type=int, default=100, help="held-out texts whose words are compared")
    match.add_argument("--max-length", type=int, default=128, help="tokens per text")
    match.add_argument("--threshold", type=float, default=0.5, help="correlation a latent needs to count as shared")
    match.add_argument("--device", default="cpu")
    match.add_argument("--out", required=True, help="output directory (empty or new, unless --overwrite)")
    match.add_argument("--overwrite", action="store_true", help="replace what this command writes in --out")
    match.add_argument("--no-progress", action="store_true")


def _subject(model: str, device: str, dtype: str = "float32") -> Any:
    from workbench.cli import resolve_subject

    subject = resolve_subject(model, None, device, dtype)
    if subject.task_model is not None:
        raise UserInputError(f"--model {model}: a fine-tuned task model; give its encoder or a pretraining run")
    return subject


def train_run(subject: Subject, hook: str, out: Path, train_texts: Sequence[str], held_texts: Sequence[str],
              config: Any, steps: Optional[int], max_tokens: int, shard_tokens: int, max_length: int,
              resume: bool, progress: bool, lm: Any = "auto") -> tuple[dict[str, Any], Any]:
    """Store, train, evaluate and export one SAE into ``out``; returns (metrics and training figures, the SAE)."""
    from workbench.features.evaluate import evaluate_sae
    from workbench.features.saelens import export_saelens
    from workbench.features.store import build_store
    from workbench.features.train import train_sae

    store = build_store(subject, hook, train_texts, out / "store", shard_tokens=shard_tokens, max_tokens=max_tokens,
                        max_length=max_length, progress=progress)
    n_steps = steps or max(store.batches_per_epoch(config.batch_size), 1)
    result = train_sae(store, config, n_steps, out=out, resume=resume, progress=progress)
    metrics = evaluate_sae(result.sae, subject, hook, held_texts, max_length=max_length, seed=config.seed, lm=lm)
    export_saelens(result.sae, out / "sae", overwrite=True)
    return {"metrics": metrics.to_dict(), "train": {"steps": result.steps, "tokens": result.tokens,
                                                    "store_tokens": store.n_tokens, "seconds": round(result.seconds, 2),
                                                    "tokens_per_s": round(result.tokens_per_s, 1)}}, result.sae


def _write_parquet(frame: pd.DataFrame, tmp: Path) -> None:
    frame.to_parquet(tmp, index=False)


def _feature_tables(sae: Any, subject: Subject, hook: str, held_texts: Sequence[str], out: Path, max_tokens: int,
                    max_length: int, progress: bool, lm: Any) -> None:
    from workbench.features.dashboard import feature_tables, unembedding_of
    from workbench.features.store import build_store

    held = build_store(subject, hook, held_texts, out / "heldout", max_tokens=max_tokens, max_length=max_length,
                       progress=progress)
    tables = feature_tables(sae, held, subject.tokenizer, held_texts, unembedding=unembedding_of(lm),
                            max_length=max_length)
    for name, frame in tables.items():
        write_with(out / f"{name}.parquet", partial(_write_parquet, frame))


def compare_run(args: argparse.Namespace) -> int:
    """``workbench sae compare``: ``pairs.parquet`` (one-to-one matching), ``best_a.parquet``/``best_b.parquet``
    (each latent's best match) and ``summary.json`` (shares matched, the latents one side lacks)."""
    from workbench.compare import compare_features
    from workbench.features.saelens import import_saelens

    out = check_out_dir(args.out, overwrite=args.overwrite)
    _, held_texts = corpus_split(args.corpus, args.eval_texts)
    sides = []
    for side in ("a", "b"):
        subject = _subject(getattr(args, f"model_{side}"), args.device)
        folder = Path(getattr(args, f"sae_{side}"))
        sae = import_saelens(folder / "sae" if (folder / "sae" / "cfg.json").is_file() else folder)
        if not sae.config.hook:
            raise UserInputError(f"--sae-{side} {folder}: no hook_name in cfg.json")
        subject.check_hook_names([sae.config.hook])
        sides.append((subject, sae, sae.config.hook))
    (subject_a, sae_a, hook_a), (subject_b, sae_b, hook_b) = sides
    match = compare_features(subject_a, sae_a, hook_a, subject_b, sae_b, hook_b, held_texts,
                             threshold=args.threshold, max_length=args.max_length)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("pairs", match.pairs), ("best_a", match.best_a), ("best_b", match.best_b)):
        write_with(out / f"{name}.parquet", partial(_write_parquet, frame))
    live_a, live_b = match.best_a[match.best_a["frequency_a"] > 0], match.best_b[match.best_b["frequency_b"] > 0]
    summary = {"model_a": subject_a.name, "sae_a": str(args.sae_a), "hook_a": hook_a, "model_b": subject_b.name,
               "sae_b": str(args.sae_b), "hook_b": hook_b, "corpus": args.corpus, "n_words": match.n_units,
               "threshold": args.threshold, "live_a": len(live_a), "live_b": len(live_b),
               "matched_a": float(live_a["matched"].mean()) if len(live_a) else None,
               "matched_b": float(live_b["matched"].mean()) if len(live_b) else None,
               "mean_pair_correlation": float(match.pairs["correlation"].mean()),
               "only_a": match.only_a, "only_b": match.only_b}
    atomic_write_json(out / "summary.json", summary)
    print(f"{match.n_units} words: {summary['matched_a'] or 0:.1%} of A's {len(live_a)} live latents and "
          f"{summary['matched_b'] or 0:.1%} of B's {len(live_b)} have a match at r >= {args.threshold}; "
          f"{len(match.only_a)} only in A, {len(match.only_b)} only in B; written to {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``workbench sae train``, ``workbench sae inspect`` or ``workbench sae compare``."""
    from workbench.features.evaluate import evaluate_sae, randomized_copy
    from workbench.features.sae import SAEConfig
    from workbench.lm import language_model

    if args.sae_command == "compare":
        return compare_run(args)
    started = time.perf_counter()
    out = check_out_dir(args.out, resume=getattr(args, "resume", False), overwrite=args.overwrite)
    subject = _subject(args.model, args.device, args.dtype)
    train_texts, held_texts = corpus_split(args.corpus, args.eval_texts)
    progress = not args.no_progress
    lm = language_model(subject)
    if args.sae_command == "inspect":
        from workbench.features.saelens import import_saelens

        sae = import_saelens(Path(args.sae))
        hook = args.hook or sae.config.hook
        if not hook:
            raise UserInputError(f"{args.sae}: no hook_name in cfg.json; pass --hook")
        subject.check_hook_names([hook])
        if sae.config.d_in != subject.d_model:
            raise UserInputError(f"{args.sae}: an SAE of width {sae.config.d_in}, the model's {hook} is {subject.d_model}")
        out.mkdir(parents=True, exist_ok=True)
        metrics = evaluate_sae(sae, subject, hook, held_texts, max_length=args.max_length, lm=lm)
        _feature_tables(sae, subject, hook, held_texts, out, args.max_tokens, args.max_length, progress, lm)
        atomic_write_json(out / "metrics.json", {"sae": metrics.to_dict(), "config": sae.config.to_dict(),
                                                 "source": str(args.sae), "model": subject.name, "hook": hook})
        print(f"{args.sae}: L0 {metrics.l0:.1f}, FVE {metrics.fve:.3f}, {metrics.loss_kind} recovered "
              f"{metrics.loss_recovered:.3f}; tables in {out}")
        return 0
    subject.check_hook_names([args.hook])
    config = SAEConfig(d_in=subject.d_model, width=args.width, kind=args.kind, k=args.k, l1_coefficient=args.l1,
                       lr=args.lr, batch_size=args.batch_size, seed=args.seed, hook=args.hook, model=subject.name)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(steps=args.steps, max_tokens=args.max_tokens, shard_tokens=args.shard_tokens,
                  max_length=args.max_length, resume=args.resume, progress=progress)
    trained, sae = train_run(subject, args.hook, out, train_texts, held_texts, config, lm=lm, **common)
    summary: dict[str, Any] = {"model": subject.name, "hook": args.hook, "corpus": args.corpus,
                               "config": config.to_dict(), "sae": trained["metrics"], "train": trained["train"]}
    if not args.no_control:
        control, control_lm = randomized_copy(subject, seed=args.seed, lm=lm)
        controlled, control_sae = train_run(control, args.hook, out / "control", train_texts, held_texts, config,
                                  lm=control_lm, **common)
        summary["control"] = controlled["metrics"]
        summary["control_train"] = controlled["train"]
        _feature_tables(control_sae, control, args.hook, held_texts, out / "control", min(args.max_tokens, 20_000),
                        args.max_length, progress, control_lm)
    _feature_tables(sae, subject, args.hook, held_texts, out, min(args.max_tokens, 20_000), args.max_length,
                    progress, lm)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "metrics.json", summary)
    m = trained["metrics"]
    line = (f"{args.hook}: L0 {m['l0']:.1f}, FVE {m['fve']:.3f}, loss recovered {m['loss_recovered']:.3f}")
    if "control" in summary:
        c = summary["control"]
        line += f" (random-init control: FVE {c['fve']:.3f}, loss recovered {c['loss_recovered']:.3f})"
    print(line + f"; written to {out}")
    return 0
