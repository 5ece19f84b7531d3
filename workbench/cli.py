"""The ``workbench`` command: ``workbench attribute ...`` (and subcommands other modules register in COMMANDS).

``workbench attribute --model PATH|minilm [--task NAME] [--data diag|PATH|ptb] --method NAME --limit N --out DIR``
explains a model's predictions token by token and writes ``DIR/attributions.parquet`` (the tidy table of
:class:`workbench.attribution.Attribution`) and ``DIR/summary.json``. Results go through the
content-addressed store, so a rerun is free and an interrupted run resumes. Under
``torchrun --nproc_per_node N`` every rank attributes its shard of the examples (``examples[rank::N]``)
into the shared store; after a barrier rank 0 reads them all back and writes the merged table.

``--evaluate`` also runs the faithfulness and attention analyses on the result
(:func:`workbench.attribution.evaluate.evaluate_attributions`, on rank 0 only) and writes their tables beside it
(``faithfulness.parquet``, ``curves.parquet``, ``agreement.parquet``, ``randomization.parquet``,
``attention_heads.parquet``, ``rollout.parquet``: :data:`workbench.attribution.evaluate.EVALUATION_FILES`), so a
report can show them without loading the model; summary.json's "evaluation" says what was written, how long
it took and what was skipped and why. A rerun with ``--overwrite`` replaces them, and removes those the new
run does not write (so none is left stale beside new attributions).
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from atinuke.cli import run_cli
from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

# name -> (module with add_arguments(parser) and run(args), help line); other engineers add their commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "attribute": ("workbench.cli", "token attributions of a model's predictions (Captum), stored and resumable"),
    "report": ("workbench.report", "one self-contained HTML report (+ data, + PDF) of runs"),
    "sae": ("workbench.features.cli", "sparse autoencoders at any hook: train (with a random-model control), inspect"),
    "patch": ("workbench.patching", "activation and attribution patching of a clean/corrupted pair, per component"),
    "circuit": ("workbench.circuits", "circuit discovery: the fewest edges (pre-norm) or nodes, by EAP-IG, recovering the metric"),
    "dla": ("workbench.dla", "direct logit attribution of one text: embeddings, each head, each MLP (exact: pre-norm)"),
    "lens": ("workbench.lens", "logit lens and tuned lens of an LM per layer, on held-out text"),
    "dynamics": ("workbench.dynamics", "training dynamics over a run's log-spaced snapshots: loss, probes, heads, lens, rank, SAEs"),
    "claims": ("workbench.claims", "the paper's claims with verdicts from the controlled experiment (CSV/JSON)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``workbench attribute``."""
    from workbench.attribution import BASELINES, METHODS

    parser.add_argument("--model", required=True, help="'minilm', 'smollm2', a .gguf file, a model directory, or a fine-tuning run")
    parser.add_argument("--task", default=None, help="task registry name (sst2, squad2, srl, ...)")
    parser.add_argument("--data", default=None,
                        help="with --task: 'diag' (default) or official files; without: a text file or 'ptb'")
    parser.add_argument("--columns", default=None,
                        help="a run on your own data: --data's column mapping (default: the run's)")
    parser.add_argument("--split", default=None, help="data split (default: dev for tasks, valid for ptb)")
    parser.add_argument("--method", default="integrated_gradients", choices=None,
                        help=f"one of: {', '.join(METHODS)} (comma-separated for several)")
    parser.add_argument("--target", default=None, help="predicted (default), class=NAME, start|end|span, "
                                                      "tag@WORD, antecedent, norm@POS[:layer=L]; decoders: "
                                                      "next[=TOKEN][@POS] (default), logitdiff=A,B[@POS], "
                                                      "continuation=TEXT, generate=N")
    parser.add_argument("--chat", action="store_true",
                        help="decoders: wrap each text in the tokenizer's chat template (one user turn, answer next)")
    parser.add_argument("--baseline", default="pad", help=f"one of: {', '.join(BASELINES)}")
    parser.add_argument("--n-steps", type=int, default=32, help="integrated-gradients steps")
    parser.add_argument("--tolerance", type=float, default=None, help="adaptive IG: raise steps until |delta| < this")
    parser.add_argument("--n-samples", type=int, default=64, help="samples for gradient_shap / lime / kernel_shap")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per batch")
    parser.add_argument("--max-tokens-per-pass", type=int, default=2048,
                        help="memory bound: rows x length per forward pass (small passes stay in cache)")
    parser.add_argument("--internal-batch-size", type=int, default=None, help="fixed rows per forward pass")
    parser.add_argument("--limit", type=int, default=None, help="first N examples")
    parser.add_argument("--out", required=True, help="output directory (empty or new, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace attributions.parquet, summary.json and the evaluation tables in a non-empty --out")
    parser.add_argument("--store", default=None, help="store directory (default: <cache>/attribution_store)")
    parser.add_argument("--no-store", action="store_true", help="do not read or write the store")
    add_device_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--evaluate", action="store_true",
                        help="also write the faithfulness, agreement, randomization and attention tables to --out")
    parser.add_argument("--randomization-limit", type=int, default=8,
                        help="with --evaluate: examples of the (costly) model-randomization check")
    parser.add_argument("--n-boot", type=int, default=1000, help="with --evaluate: bootstrap resamples of the CIs")


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` of a command that loads a model (validated in ``atinuke.validation``)."""
    parser.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="float32",
                        help="float32 (default), bfloat16 (also on the CPU) or float16 (GPU only)")


def resolve_subject(model: str, task: Optional[str], device: str, dtype: str = "float32") -> Any:
    """The subject ``model`` names, and only that: a fine-tuned task model when the directory holds one
    (``task_model.json``), else the encoder (a directory, "minilm", "smollm2", a ``.gguf`` file, or a Hugging Face
    model id, read from the local cache first). A path that does not load is an error, never another run."""
    from atinuke.encoders import is_named_model, looks_like_hub_id
    from workbench.subject import load_subject

    path = Path(model)
    if not is_named_model(model) and not path.is_dir() and (path.exists() or not looks_like_hub_id(model)):
        raise UserInputError(f"--model {model}: no such model directory")
    if (path / "task_model.json").is_file() or (path / "model" / "task_model.json").is_file():
        subject = load_subject(path, device=device, dtype=dtype)
        if task is not None and subject.task.name != task:
            raise UserInputError(f"{path}: a {subject.task.name!r} model, not {task!r}")
        return subject
    subject = load_subject(model, device=device, dtype=dtype)
    if task is not None:
        logger.warning("no fine-tuned %r head in %s; explaining the encoder's [CLS] state norm on the task's texts",
                       task, model)
    return subject


def _load_inputs(subject: Subject, task: Optional[str], data: Optional[str], split: Optional[str],
                 limit: Optional[int], columns: Optional[str] = None) -> tuple[list, Optional[list], list[str]]:
    """(inputs, text pairs, example ids): task examples for task subjects, texts otherwise."""
    if task is not None:
        from atinuke.tasks import load_task_data
        from workbench.attribution.targets import segment_texts

        examples = load_task_data(task, data or "diag", split or "dev", columns)[:limit]
        ids = [str(e.id) for e in examples]
        if subject.task_model is not None:
            return examples, None, ids
        segments = [segment_texts(e) for e in examples]
        pairs = [s[1] if len(s) > 1 else None for s in segments]
        return [s[0] for s in segments], (pairs if any(p is not None for p in pairs) else None), ids
    from atinuke.corpus import load_texts

    source = data or "ptb"
    texts = [t for t in load_texts(source, split or ("valid" if source == "ptb" else "train")) if t.strip()][:limit]
    if not texts:
        raise UserInputError(f"{source}: no texts")
    return texts, None, [str(i) for i in range(len(texts))]


def _n_truncated(subject: Subject, inputs: list, pairs: Optional[list]) -> int:
    """How many inputs are cut to the model's positions: texts by the tokenizer, a task's examples by its head
    (which encodes them); a warning gives the number."""
    if subject.task_model is not None and not all(isinstance(t, str) for t in inputs):
        encode = subject.task_model.encode
        count = sum(encode(inputs[i: i + 64]).n_truncated for i in range(0, len(inputs), 64))
    else:
        count = len(subject.too_long(inputs, pairs))
    if count:
        logger.warning("%d of %d input(s) are longer than the model's %d positions and were cut", count, len(inputs),
                       subject.max_len)
    return count


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, with a gloo process group for the final barrier."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), world


def run(args: argparse.Namespace) -> int:
    """Run ``workbench attribute``."""
    from atinuke.io import atomic_write_json, check_out_dir, check_out_path
    from atinuke.paths import cache_dir
    from workbench.attribution import METHODS, Attribution, AttributionParams, attribute
    from workbench.store import AttributionStore

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if not methods:
        raise UserInputError(f"--method {args.method!r} names no method; choose from {', '.join(METHODS)}")
    for method in methods:
        if method not in METHODS:
            raise UserInputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if args.limit is not None and args.limit < 1:
        raise UserInputError(f"--limit must be positive, got {args.limit}")
    if args.randomization_limit < 1:
        raise UserInputError(f"--randomization-limit must be a positive number of examples, "
                             f"got {args.randomization_limit}")
    if args.n_boot < 1:
        raise UserInputError(f"--n-boot must be at least 1, got {args.n_boot}")
    if args.store and not args.no_store:
        check_out_path(args.store, "--store")
    # before any work: a finished run is never replaced silently; rank 0 claims --out for all ranks
    check_out_dir(args.out, overwrite=args.overwrite, claim=int(os.environ.get("RANK", "0")) == 0)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would break the one-line error contract
    rank, world = _distributed()
    subject = resolve_subject(args.model, args.task, args.device, args.dtype)
    task = args.task
    if task is None and subject.task_model is not None and subject.task_model.spec.family == "user":
        task = subject.task_model.spec.name  # a run on the user's data reads --data with its column mapping
    inputs, pairs, ids = _load_inputs(subject, task, args.data, args.split, args.limit, args.columns)
    if args.chat:
        from workbench.lm import chat_texts

        if task is not None or pairs is not None:
            raise UserInputError("--chat wraps plain texts for a decoder; drop --task or --chat")
        inputs = chat_texts(subject, inputs)
        # this run's texts are the template's: its markers (<|im_start|>, ...) are read as the special tokens they
        # are, not split as a user's typed text would be
        subject.tokenizer.split_special_tokens = False
    params = AttributionParams(baseline=args.baseline, n_steps=args.n_steps, tolerance=args.tolerance,
                               n_samples=args.n_samples, batch_size=args.batch_size,
                               max_tokens_per_pass=args.max_tokens_per_pass,
                               internal_batch_size=args.internal_batch_size)
    store = None if args.no_store else AttributionStore(args.store or cache_dir() / "attribution_store")
    if world > 1 and store is None:
        raise UserInputError("sharding across ranks merges through the store; drop --no-store")
    started = time.perf_counter()
    if world > 1:
        import torch.distributed as dist

        shard = list(range(rank, len(inputs), world))
        for method in methods:
            attribute(subject, [inputs[i] for i in shard], method, args.target, params,
                      text_pairs=None if pairs is None else [pairs[i] for i in shard],
                      example_ids=[ids[i] for i in shard], store=store, progress=not args.no_progress)
        dist.barrier()
        if rank != 0:
            dist.destroy_process_group()
            return 0
    parts = [attribute(subject, inputs, method, args.target, params, text_pairs=pairs, example_ids=ids,
                       store=store, progress=not args.no_progress and world == 1) for method in methods]
    result = Attribution.concat(parts)
    seconds = round(time.perf_counter() - started, 3)
    evaluation = None
    if args.evaluate:
        from workbench.attribution.evaluate import evaluate_attributions

        evaluation = evaluate_attributions(subject, inputs, result, target=args.target, text_pairs=pairs,
                                           example_ids=ids, n_boot=args.n_boot, seed=0,
                                           randomization_limit=args.randomization_limit, params=params)
    out = Path(args.out)
    written = _write_evaluation(out, evaluation)
    result.to_parquet(out / "attributions.parquet")
    summary = {"model": subject.name, "model_path": args.model, "task": task, "data": args.data, "chat": args.chat,
               "columns": args.columns, "methods": methods, "n_examples": len(ids),
               # inputs longer than the model's positions are cut to them (a warning says so as well)
               "n_truncated": _n_truncated(subject, inputs, pairs),
               "max_len": subject.max_len,
               "n_rows": len(result), "world_size": world, "seconds": seconds,
               "store": None if store is None else str(store.root),
               "store_hits": None if store is None else store.hits,
               "target": sorted(set(result.frame["target"]))[:20],
               "evaluation": None if evaluation is None else {**evaluation.summary(), "files": written,
                                                              "n_boot": args.n_boot, "seed": 0,
                                                              "randomization_limit": args.randomization_limit}}
    atomic_write_json(out / "summary.json", summary)
    logger.info("wrote %s (%d rows, %d examples)%s", out / "attributions.parquet", len(result), len(ids),
                f" and {len(written)} evaluation table(s)" if written else "")
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def _write_evaluation(out: Path, evaluation: Optional[dict]) -> list[str]:
    """Write the evaluation tables into ``out`` (each atomically) and remove any evaluation file an earlier
    run left that this one does not write (none, without --evaluate), so no table is kept stale beside new
    attributions. Returns the names of the files written."""
    from atinuke.io import write_with
    from workbench.attribution.evaluate import EVALUATION_FILES

    tables = evaluation or {}
    for name, filename in EVALUATION_FILES.items():
        if name not in tables and (out / filename).exists():
            logger.info("removing %s of an earlier run (not written by this one)", out / filename)
            (out / filename).unlink()
    written = []
    for name, table in tables.items():
        path = out / EVALUATION_FILES[name]
        write_with(path, functools.partial(table.to_parquet, index=False))
        written.append(path.name)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``workbench`` console script."""
    return run_cli("workbench", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
