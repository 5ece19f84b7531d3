"""Benchmark: SAE training throughput against a plain PyTorch loop, planted recovery, metrics and memory.

- ``ratio``: training tokens/s of ``workbench.features.train`` (TopK with sparse decoding through
  ``F.embedding_bag``, batches streamed from the on-disk activation store) over a plain reference loop of the
  same SAE (dense ``latents @ W_dec`` decoding, the same activations held in memory), same steps, same seed,
  measured side by side in alternating rounds so machine load falls on both alike.
- ``planted_recovery``: mean best cosine between a planted sparse dictionary and the learnt decoder rows.
- ``fve``, ``l0``, ``loss_recovered`` (and the random-init control's): an SAE on tiny Atinuke's
  ``blocks.1.hook_resid_post`` over PTB, evaluated on PTB valid.
- ``peak_rss_mb``: peak memory of a child process that streams the hook over the whole PTB training corpus
  (~887k words) into the store and trains one pass; ``store_mb`` is what it wrote to disk.

    python bench/sae.py --quick
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "atinuke" / "checkpoints" / "tiny-atinuke-seed0"
HOOK = "blocks.1.hook_resid_post"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def whole_corpus(out: Path, width: int, k: int) -> None:
    """Child process: store the whole PTB training corpus at the hook and train one pass over it."""
    from atinuke.corpus import load_texts
    from workbench.features.sae import SAEConfig
    from workbench.features.store import build_store
    from workbench.features.train import train_sae
    from workbench.subject import load_subject

    subject = load_subject(MODEL)
    texts = [t for t in load_texts("ptb", "train") if t.strip()]
    started = time.perf_counter()
    store = build_store(subject, HOOK, texts, out / "store", batch_size=64)
    built = time.perf_counter() - started
    config = SAEConfig(d_in=store.d_in, width=width, k=k, batch_size=4096, lr=1e-3)
    result = train_sae(store, config, steps=store.batches_per_epoch(4096), out=out, tensorboard=False)
    size = sum(p.stat().st_size for p in (out / "store").glob("*.npy"))
    print(json.dumps({"tokens": store.n_tokens, "build_s": round(built, 1), "train_s": round(result.seconds, 1),
                      "store_mb": round(size / 2**20, 1), "peak_rss_mb": round(_peak_rss_mb(), 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and no whole-corpus run")
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=60, help="steps per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        whole_corpus(args.child, args.width, args.k)
        return

    from workbench.features.cli import corpus_split
    from workbench.features.evaluate import evaluate_sae, randomized_copy
    from workbench.features.sae import (
        SAEConfig,
        SparseAutoencoder,
        planted_recovery,
        reference_sae_step,
        synthetic_activations,
    )
    from workbench.features.store import build_store
    from workbench.features.train import train_sae
    from workbench.subject import load_subject

    steps = max(args.steps // (3 if args.quick else 1), 5)
    subject = load_subject(MODEL)
    train_texts, held_texts = corpus_split("ptb", 200)
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(subject, HOOK, train_texts, Path(tmp) / "store", max_tokens=120_000)
        memory = torch.cat(list(store.batches(args.batch_size, seed=0)))  # the reference's in-memory copy
        config = SAEConfig(d_in=store.d_in, width=args.width, k=args.k, batch_size=args.batch_size, lr=1e-3)
        ours_s = reference_s = 0.0
        for round_ in range(args.rounds):
            for side in ((0, 1) if round_ % 2 == 0 else (1, 0)):
                if side == 0:
                    result = train_sae(store, config, steps=steps, tensorboard=False)
                    ours_s += result.seconds
                else:
                    torch.manual_seed(config.seed)
                    sae = SparseAutoencoder(config).train()
                    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr)
                    started = time.perf_counter()
                    for step in range(steps):
                        start = (step * args.batch_size) % (len(memory) - args.batch_size)
                        reference_sae_step(sae, optimizer, memory[start:start + args.batch_size])
                    reference_s += time.perf_counter() - started
        tokens = steps * args.batch_size * args.rounds
        ours, reference = tokens / ours_s, tokens / reference_s

        # Metrics of a longer-trained SAE beside the random-model control.
        metric_config = SAEConfig(d_in=store.d_in, width=1024, k=16, batch_size=512, lr=1e-3)
        metric_steps = 150 if args.quick else 600
        trained = train_sae(store, metric_config, steps=metric_steps, tensorboard=False).sae
        metrics = evaluate_sae(trained, subject, HOOK, held_texts)
        control, control_lm = randomized_copy(subject)
        control_store = build_store(control, HOOK, train_texts, Path(tmp) / "control", max_tokens=120_000)
        control_sae = train_sae(control_store, metric_config, steps=metric_steps, tensorboard=False).sae
        control_metrics = evaluate_sae(control_sae, control, HOOK, held_texts, lm=control_lm)

    x, planted = synthetic_activations(40_000, 64, 256, 4, seed=11)
    planted_config = SAEConfig(d_in=64, width=512, k=4, batch_size=1024, lr=3e-3, dead_after=20_000)
    generator = torch.Generator().manual_seed(1)
    stream = (x[torch.randint(0, len(x), (1024,), generator=generator)] for _ in iter(int, 1))
    planted_sae = train_sae(stream, planted_config, steps=400 if args.quick else 1500, tensorboard=False).sae
    recovery = planted_recovery(planted_sae.W_dec.detach(), planted)

    whole = None
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            child = subprocess.run([sys.executable, __file__, "--child", tmp, "--width", str(args.width),
                                    "--k", str(args.k)], capture_output=True, text=True, check=True)
            whole = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps({"ratio": round(ours / reference, 2), "ours_tok_s": round(ours), "reference_tok_s": round(reference),
                      "planted_recovery": round(recovery, 4), "fve": round(metrics.fve, 4), "l0": round(metrics.l0, 2),
                      "loss_recovered": round(metrics.loss_recovered, 4),
                      "control_fve": round(control_metrics.fve, 4), "control_loss_recovered":
                          None if control_metrics.loss_recovered != control_metrics.loss_recovered
                          else round(control_metrics.loss_recovered, 4),
                      "peak_rss_mb": whole["peak_rss_mb"] if whole else None, "whole_corpus": whole,
                      "width": args.width, "k": args.k, "batch_size": args.batch_size, "steps": steps,
                      "rounds": args.rounds}))


if __name__ == "__main__":
    main()
