"""Training throughput: Atinuke MLM against Hugging Face ``BertForMaskedLM`` (SDPA) of identical size.

Both models (d_model 256, 4 layers, 4 heads, d_ff 1024, vocab 8000; batch 16 x 128) train on the same
masked batches with AdamW, in the same process, in interleaved rounds (the order flips every round), so
machine load affects both alike. Atinuke uses its masked-positions-only decoder (``logits_at_labels_only``).
MFU is Atinuke's model FLOPs per second (the PaLM convention, Chowdhery et al., 2022, arXiv 2204.02311,
appendix B: 6 x matmul parameters x tokens, plus attention, plus the decoder on masked positions only)
over the peak of a large square matmul measured here, in the run's dtype.

Prints a final JSON line: {"atinuke_tok_s", "hf_tok_s", "ratio", "mfu", "matmul_gflops", ...}.

    python bench/train_throughput.py --quick
    python bench/train_throughput.py --device cuda --dtype bf16
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import time

import torch
from transformers import BertConfig, BertForMaskedLM

from atinuke.config import AtinukeConfig
from atinuke.lm_data import generator_for, mask_tokens
from atinuke.model import AtinukeForMaskedLM

logger = logging.getLogger("bench.train_throughput")

SIZE = dict(vocab=8000, d_model=256, n_layers=4, n_heads=4, d_ff=1024, max_len=512, dropout=0.1)


def measure_matmul_gflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best GFLOP/s of an [n, n] @ [n, n] matmul (2 n^3 FLOPs) over ``repeats`` timed runs."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        _sync(device)
        tick = time.perf_counter()
        a @ b
        _sync(device)
        if i:  # the first run warms up kernels and caches
            best = min(best, time.perf_counter() - tick)
    return 2 * n ** 3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_models(device: torch.device) -> tuple[AtinukeForMaskedLM, BertForMaskedLM]:
    """Atinuke (post-norm, GELU, tied decoder) and BERT of the same widths, both seeded."""
    torch.manual_seed(0)
    atinuke = AtinukeForMaskedLM(AtinukeConfig(
        vocab_size=SIZE["vocab"], d_model=SIZE["d_model"], n_heads=SIZE["n_heads"], n_layers=SIZE["n_layers"],
        d_ff=SIZE["d_ff"], max_len=SIZE["max_len"], dropout=SIZE["dropout"]))
    bert_config = BertConfig(vocab_size=SIZE["vocab"], hidden_size=SIZE["d_model"], num_hidden_layers=SIZE["n_layers"],
                             num_attention_heads=SIZE["n_heads"], intermediate_size=SIZE["d_ff"],
                             max_position_embeddings=SIZE["max_len"], hidden_dropout_prob=SIZE["dropout"],
                             attention_probs_dropout_prob=SIZE["dropout"])
    # transformers 5 mutates the config it is given (attn_implementation), so it gets a copy.
    bert = BertForMaskedLM._from_config(copy.deepcopy(bert_config), attn_implementation="sdpa")
    return atinuke.to(device).train(), bert.to(device).train()


def atinuke_step_flops(batch: int, seq_len: int, n_masked: int) -> float:
    """Training FLOPs (forward + backward = 3 x forward) of one Atinuke MLM step at SIZE.

    Matmul weights: 4 d^2 (Q, K, V, O) + 2 d d_ff per layer; attention scores and values: 2 x 2 seq d per
    token per layer; decoder: d x vocab on the masked positions only.
    """
    d, d_ff, layers, vocab = SIZE["d_model"], SIZE["d_ff"], SIZE["n_layers"], SIZE["vocab"]
    tokens = batch * seq_len
    forward = 2 * tokens * layers * (4 * d * d + 2 * d * d_ff)
    forward += 2 * tokens * layers * 2 * seq_len * d
    forward += 2 * n_masked * d * vocab
    return 3.0 * forward


def hf_step_flops(batch: int, seq_len: int) -> float:
    """Training FLOPs of one HF BertForMaskedLM step: the same encoder, plus its transform and decoder on every position."""
    d, vocab = SIZE["d_model"], SIZE["vocab"]
    tokens = batch * seq_len
    encoder = atinuke_step_flops(batch, seq_len, 0)
    return encoder + 3.0 * 2 * tokens * (d * d + d * vocab)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute on 2 CPU cores)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 autocast (CUDA)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 8; 3 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="steps per model per round (default 5; 2 quick)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    device = torch.device(args.device)
    rounds = args.rounds or (3 if args.quick else 8)
    steps = args.steps or (2 if args.quick else 5)
    gpu = device.type == "cuda"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if args.dtype == "bf16" else contextlib.nullcontext

    peak = measure_matmul_gflops(device, dtype, n=8192 if gpu else 2048, repeats=5 if gpu else 3)
    logger.info("%s matmul peak: %.1f GFLOP/s", args.dtype, peak)
    atinuke, bert = build_models(device)
    runners = {"atinuke": atinuke, "hf": bert}
    if args.compile:
        runners = {name: torch.compile(model) for name, model in runners.items()}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4, fused=gpu) for name, model in
                  (("atinuke", atinuke), ("hf", bert))}

    # One fixed pool of masked batches, used by both models in the same order.
    pool = []
    for i in range(4):
        ids = torch.randint(5, SIZE["vocab"], (args.batch_size, args.seq_len), generator=generator_for(0, i))
        ids[:, 0] = 2
        batch = mask_tokens(ids, generator_for(1, i), 4, SIZE["vocab"], [0, 1, 2, 3, 4])
        pool.append((batch.input_ids.to(device), batch.labels.to(device)))
    n_masked = sum(int((labels != -100).sum()) for _, labels in pool) / len(pool)

    def train_steps(name: str, n: int) -> float:
        model, optimizer = runners[name], optimizers[name]
        extra = {"logits_at_labels_only": True} if name == "atinuke" else {}
        _sync(device)
        tick = time.perf_counter()
        for step in range(n):
            input_ids, labels = pool[step % len(pool)]
            with autocast():
                loss = model(input_ids=input_ids, labels=labels, **extra).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - tick

    for name in runners:  # warm-up: allocator, kernels, compilation
        train_steps(name, 2 if args.compile or gpu else 1)
    elapsed = {"atinuke": 0.0, "hf": 0.0}
    for r in range(rounds):
        for name in (("atinuke", "hf") if r % 2 == 0 else ("hf", "atinuke")):
            elapsed[name] += train_steps(name, steps)
        logger.info("round %d/%d: atinuke %.0f tok/s, hf %.0f tok/s", r + 1, rounds,
                    (r + 1) * steps * args.batch_size * args.seq_len / elapsed["atinuke"],
                    (r + 1) * steps * args.batch_size * args.seq_len / elapsed["hf"])
    tokens = rounds * steps * args.batch_size * args.seq_len
    atinuke_tok_s, hf_tok_s = tokens / elapsed["atinuke"], tokens / elapsed["hf"]
    step_seconds = elapsed["atinuke"] / (rounds * steps)
    mfu = atinuke_step_flops(args.batch_size, args.seq_len, int(n_masked)) / step_seconds / (peak * 1e9)
    hf_mfu = hf_step_flops(args.batch_size, args.seq_len) / (elapsed["hf"] / (rounds * steps)) / (peak * 1e9)
    print(json.dumps({
        "atinuke_tok_s": round(atinuke_tok_s, 1), "hf_tok_s": round(hf_tok_s, 1),
        "ratio": round(atinuke_tok_s / hf_tok_s, 3), "mfu": round(mfu, 4), "matmul_gflops": round(peak, 1),
        "hf_mfu": round(hf_mfu, 4), "device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(),
        "batch": [args.batch_size, args.seq_len], "rounds": rounds, "steps_per_round": steps,
        "masked_per_batch": n_masked,
    }))


if __name__ == "__main__":
    main()
