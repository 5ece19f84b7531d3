"""Benchmark: the attribution engine against a plain per-example Captum LayerIntegratedGradients loop.

Both explain the same quantity (the l2 norm of the [CLS] hidden state, an MLM-free target any encoder has)
with integrated gradients on the token-embedding layer, equal ``n_steps`` and the Gauss-Legendre rule, on
real text (PTB valid sentences, or passages of ``--words`` consecutive words for long inputs). A third
side, "engine_full", is the engine with ``final_block_rows=False`` (every block computes every row), which
shows what pruning the last block to the target's rows contributes. Each side runs in its own subprocesses
(after a warm-up example) so its peak RSS is its own; the examples are split into ``--rounds`` chunks run
alternately (naive, engine, engine_full, naive, ...) so that load from other processes on a shared machine
falls on every side alike. The final line is JSON: engine_s, naive_s, ratio (naive / engine), max_abs_diff
(largest token-score difference, engine vs naive), peak_rss_mb (engine process), naive_peak_rss_mb,
engine_full_s, pruning_ratio (engine_full / engine), and the settings.

    python bench/attribution.py                        # tiny Atinuke (default)
    python bench/attribution.py --model minilm         # the pretrained MiniLM encoder
    python bench/attribution.py --model minilm --words 100   # ~128-token inputs
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PARTS = ("naive", "engine", "engine_full")


# glibc returns freed memory to the OS eagerly, so every pass page-faults its activations in again; these
# thresholds (measured here: +15% training throughput) are set for every side alike.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "268435456", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


def _texts(n: int, min_words: int, words: int = 0) -> list[str]:
    """PTB valid sentences of at least ``min_words`` words, or (``words`` > 0) passages of ``words``
    consecutive words."""
    from atinuke.corpus import load_texts

    sentences = load_texts("ptb", "valid")
    if words > 0:
        stream = " ".join(sentences).split()
        return [" ".join(stream[i * words:(i + 1) * words]) for i in range(min(n, len(stream) // words))]
    return [t for t in sentences if len(t.split()) >= min_words][:n]


def _model_path(spec: str) -> str:
    """"tiny": the pretrained runs/pretrain/tiny-mlm if built, else a seeded Atinuke of the "tiny" preset
    (d_model 128, 2 layers, 4 heads; untrained: speed does not depend on the weights) cached on disk."""
    if spec != "tiny":
        return spec
    from atinuke.paths import cache_dir, runs_dir

    trained = runs_dir() / "pretrain" / "tiny-mlm" / "model"
    if (trained / "config.json").is_file():
        return str(trained)
    path = cache_dir() / "bench" / "tiny-atinuke-seeded"
    if not (path / "config.json").is_file():
        import torch

        from atinuke.config import AtinukeConfig
        from atinuke.corpus import load_texts
        from atinuke.model import AtinukeForMaskedLM
        from atinuke.tokenizer import save_tokenizer, train_tokenizer

        tokenizer = train_tokenizer(load_texts("ptb", "train"), vocab_size=8000)
        torch.manual_seed(0)
        config = AtinukeConfig(vocab_size=len(tokenizer), d_model=128, n_heads=4, n_layers=2, d_ff=512,
                               max_len=128, dropout=0.0)
        AtinukeForMaskedLM(config).save_pretrained(path)
        save_tokenizer(tokenizer, path)
    return str(path)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(args: argparse.Namespace) -> None:
    import torch

    from workbench.attribution import AttributionParams, attribute
    from workbench.attribution.targets import HiddenNormTarget
    from workbench.subject import load_subject

    torch.set_num_threads(args.threads)
    subject = load_subject(_model_path(args.model))
    texts = _texts(args.n_examples, args.min_words, args.words)[args.offset:args.offset + args.count]
    scores: dict[str, np.ndarray] = {}
    if args.part in ("engine", "engine_full"):
        params = AttributionParams(n_steps=args.n_steps, batch_size=args.batch_size,
                                   max_tokens_per_pass=args.max_tokens_per_pass,
                                   final_block_rows=args.part == "engine")
        attribute(subject, texts[:1], "integrated_gradients", HiddenNormTarget(0), params)  # warm-up
        start = time.perf_counter()
        result = attribute(subject, texts, "integrated_gradients", HiddenNormTarget(0), params)
        seconds = time.perf_counter() - start
        for i in range(len(texts)):
            scores[str(args.offset + i)] = result.scores(str(i))
    else:
        from captum.attr import LayerIntegratedGradients

        model = subject.encoder

        def forward(ids, mask, *types):
            kwargs = {"token_type_ids": types[0]} if types else {}
            return model(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state[:, 0].norm(dim=-1)

        lig = LayerIntegratedGradients(forward, model.get_input_embeddings())

        def explain(text: str) -> np.ndarray:
            batch = subject.tokenize(text)  # truncated to the model's length, as the engine's rows are
            ids = batch["input_ids"]
            baseline = torch.where(batch["special_tokens_mask"].bool(), ids,
                                   torch.full_like(ids, subject.tokenizer.pad_token_id))
            extra = (batch["attention_mask"],) + ((batch["token_type_ids"],) if subject.kind == "hf" else ())
            attr = lig.attribute(ids, baselines=baseline, additional_forward_args=extra, n_steps=args.n_steps,
                                 method="gausslegendre")
            return attr.sum(-1)[0].detach().numpy()

        explain(texts[0])  # warm-up
        start = time.perf_counter()
        for i, text in enumerate(texts):
            scores[str(args.offset + i)] = explain(text)
        seconds = time.perf_counter() - start
    np.savez(args.scores_out, **scores)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "n_examples": len(texts)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (Atinuke), 'minilm', or a model directory")
    parser.add_argument("--n-examples", type=int, default=32)
    parser.add_argument("--min-words", type=int, default=8, help="skip shorter PTB sentences")
    parser.add_argument("--words", type=int, default=0,
                        help="passages of this many consecutive words instead of sentences (long inputs)")
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16, help="engine: examples per batch")
    parser.add_argument("--max-tokens-per-pass", type=int, default=2048, help="engine: memory bound per pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate naive and engine on this many chunks, so load drift hits both alike")
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=10 ** 9, help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=PARTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scores-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part is not None:
        _child(args)
        return
    model_path = _model_path(args.model)  # resolved once, so every child loads the very same model
    seconds = {part: 0.0 for part in PARTS}
    peak = {part: 0.0 for part in PARTS}
    scores: dict[str, dict[str, np.ndarray]] = {part: {} for part in PARTS}
    n_total = len(_texts(args.n_examples, args.min_words, args.words))
    env = {**os.environ, **_MALLOC_ENV}
    chunk = -(-n_total // max(1, args.rounds))
    with tempfile.TemporaryDirectory() as tmp:
        for offset in range(0, n_total, chunk):
            for part in PARTS:
                out = Path(tmp) / f"{part}-{offset}.npz"
                command = [sys.executable, __file__, *sys.argv[1:], "--model", model_path, "--part", part,
                           "--scores-out", str(out),
                           "--offset", str(offset), "--count", str(chunk)]
                completed = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
                result = json.loads(completed.stdout.strip().splitlines()[-1])
                seconds[part] += result["seconds"]
                peak[part] = max(peak[part], result["peak_rss_mb"])
                with np.load(out) as data:
                    scores[part].update({k: data[k] for k in data.files})
    results = {part: {"seconds": seconds[part], "peak_rss_mb": peak[part], "n_examples": len(scores[part])}
               for part in seconds}
    diff = max(float(np.abs(scores[part][k] - scores["naive"][k]).max()) for k in scores["naive"]
               for part in ("engine", "engine_full"))
    engine_s, naive_s = results["engine"]["seconds"], results["naive"]["seconds"]
    full_s = results["engine_full"]["seconds"]
    print(json.dumps({"engine_s": round(engine_s, 3), "naive_s": round(naive_s, 3),
                      "ratio": round(naive_s / engine_s, 3), "max_abs_diff": diff,
                      "peak_rss_mb": round(results["engine"]["peak_rss_mb"], 1),
                      "naive_peak_rss_mb": round(results["naive"]["peak_rss_mb"], 1),
                      "engine_full_s": round(full_s, 3), "pruning_ratio": round(full_s / engine_s, 3),
                      "model": args.model, "words": args.words, "max_tokens_per_pass": args.max_tokens_per_pass,
                      "n_examples": results["engine"]["n_examples"], "n_steps": args.n_steps,
                      "threads": args.threads}))


if __name__ == "__main__":
    main()
