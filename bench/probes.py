"""Benchmark of probes/: cost of extracting every layer vs. a plain forward, and probe fitting time per layer.

Both passes run over the same sentences in the same batches with the same tokenisation, alternated
``--repeats`` times (the minimum of each is kept; on the CPU the clock is this process's CPU time, since a
shared machine's wall time also measures its other jobs):

- plain: ``subject.tokenize`` + the encoder's forward, nothing cached;
- extraction: :func:`probes.features.extract_features` (hooks on every layer, word/sentence pooling, float16
  memmap writes, metadata, atomic rename).

Prints a final JSON line: ``extraction_overhead_ratio`` (target <= 1.2), the times, and
``probe_fit_seconds_per_layer`` (CPU seconds of one linear-probe fit on silver POS, averaged over layers).

    python bench/probes.py [--sentences 200] [--model minilm] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the package it measures; drop its own directory from the path so that
# `import probes` finds the package, not this script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from probes.estimators import LinearProbe  # noqa: E402
from probes.features import extract_features, target_features  # noqa: E402
from probes.tasks import load_probing_data  # noqa: E402
from workbench.subject import load_subject  # noqa: E402


def _clock(device: str) -> float:
    """CPU time of this process on a CPU run (the machine is shared, so wall time measures the neighbours
    too); wall time on an accelerator, whose kernels do not count as process time."""
    return time.process_time() if device == "cpu" else time.perf_counter()


def _plain(subject, sentences, batch_size: int, device: str) -> float:
    start = _clock(device)
    with torch.inference_mode():
        for begin in range(0, len(sentences), batch_size):
            batch = sentences[begin:begin + batch_size]
            subject.forward(subject.tokenize([s.text for s in batch]))
    if subject.device.type == "cuda":
        torch.cuda.synchronize()
    return _clock(device) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    data = load_probing_data("pos", "silver", "wiki", args.sentences)
    subject = load_subject(args.model, device=args.device)
    _plain(subject, data.sentences[: args.batch_size], args.batch_size, args.device)  # warm-up (allocator, kernels)
    plain, extraction = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            plain.append(_plain(subject, data.sentences, args.batch_size, args.device))
            start = _clock(args.device)
            store = extract_features(subject, data.sentences, Path(tmp) / "features", pools=("mean",),
                                     batch_size=args.batch_size, progress=False)
            extraction.append(_clock(args.device) - start)
        train, test = data.split("train"), data.split("test")
        fit_seconds, accuracy = [], []
        for layer in range(store.n_layers):
            x_train, x_test = target_features(store, train, layer), target_features(store, test, layer)
            start = time.process_time()
            probe = LinearProbe().fit(x_train.X, train["label"].to_numpy())
            fit_seconds.append(time.process_time() - start)
            accuracy.append(round(float(probe.score(x_test.X, test["label"].to_numpy())), 4))
    figures = {
        "model": subject.name, "device": args.device, "sentences": len(data.sentences),
        "words": int(store.meta["n_words"]), "layers": store.n_layers, "batch_size": args.batch_size,
        "clock": "process CPU time" if args.device == "cpu" else "wall",
        "plain_forward_seconds": round(min(plain), 3), "extraction_seconds": round(min(extraction), 3),
        "extraction_overhead_ratio": round(min(extraction) / min(plain), 3),
        "probe_fit_seconds_per_layer": round(sum(fit_seconds) / len(fit_seconds), 3),
        "probe_fit_seconds_by_layer": [round(s, 3) for s in fit_seconds],
        "pos_accuracy_by_layer": accuracy, "n_train": len(train), "n_test": len(test),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
