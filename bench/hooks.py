"""Benchmark: the cost of hooks, per model family, against the plain forward of the same model.

For every family with an adapter (``workbench.models.ADAPTERS``) a small random model is built from the family's
own ``transformers`` config class (Atinuke from ``AtinukeConfig``), 4 layers wide 256, saved, and loaded through
``workbench.subject.load_subject`` as a user's directory would be. On one batch (8 PTB valid sentences padded to
128 tokens, no gradients):

- ``overhead``: time of ``run_with_cache`` for one name (the middle block's ``hook_resid_post``) over the plain
  ``Subject.forward``, medians of alternating rounds so machine load falls on both alike (goal <= 1.1);
- ``overhead_pattern``: the same for the middle block's ``attn.hook_pattern``, which routes attention through
  the family's explicit (eager) path;
- ``memory_ratio``: peak tensor memory of that cached forward over (the plain forward's peak + the bytes of the
  cached tensor), both counted exactly by the PyTorch profiler's allocator events (goal <= 1.1).

Final JSON line: ``{"families": {"<family>": {"overhead": …, "overhead_pattern": …, "memory_ratio": …}, …},
"threads": …}``.

    OMP_NUM_THREADS=1 python bench/hooks.py
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

WIDTH, LAYERS, HEADS, FF, POSITIONS = 256, 4, 4, 1024, 256


def family_configs(vocab_size: int) -> dict[str, Callable[[], Any]]:
    """model_type -> a builder of its config (import deferred: a family missing from transformers is skipped)."""
    import transformers as tf

    from atinuke.config import AtinukeConfig

    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3)
    hf = dict(vocab_size=vocab_size, hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
              intermediate_size=FF, max_position_embeddings=POSITIONS, **ids)
    decoder = dict(hf, num_key_value_heads=HEADS // 2)
    return {
        "atinuke": lambda: AtinukeConfig(vocab_size=vocab_size, d_model=WIDTH, n_heads=HEADS, n_layers=LAYERS,
                                         d_ff=FF, max_len=POSITIONS, dropout=0.0),
        "bert": lambda: tf.BertConfig(**hf),
        "distilbert": lambda: tf.DistilBertConfig(vocab_size=vocab_size, dim=WIDTH, n_layers=LAYERS, n_heads=HEADS,
                                                  hidden_dim=FF, max_position_embeddings=POSITIONS, pad_token_id=0),
        "gpt2": lambda: tf.GPT2Config(vocab_size=vocab_size, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS,
                                      n_positions=POSITIONS, **ids),
        "llama": lambda: tf.LlamaConfig(**decoder),
        "mistral": lambda: tf.MistralConfig(**decoder),
        "qwen2": lambda: tf.Qwen2Config(**decoder),
        "gpt_neox": lambda: tf.GPTNeoXConfig(**hf),
        "deberta-v2": lambda: tf.DebertaV2Config(**hf, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                 position_biased_input=False, norm_rel_ebd="layer_norm",
                                                 share_att_key=True, position_buckets=64),
        "modernbert": lambda: tf.ModernBertConfig(**hf, local_attention=64, global_attn_every_n_layers=2),
    }


def build(model_type: str, config: Any, tokenizer: Any, out: Path) -> Path:
    """Save a seeded random model of ``config`` with ``tokenizer`` at ``out`` (a loadable model directory)."""
    from transformers import AutoModel

    from atinuke.model import AtinukeForMaskedLM
    from atinuke.tokenizer import save_tokenizer

    torch.manual_seed(0)
    model = AtinukeForMaskedLM(config) if model_type == "atinuke" else AutoModel.from_config(copy.deepcopy(config))
    model.eval().save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out


def peak_tensor_bytes(fn: Callable[[], Any]) -> int:
    """The peak of live tensor bytes allocated while ``fn`` runs (allocator events of the PyTorch profiler,
    replayed in time order), counted from zero at its start."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def timed(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(path: Path, texts: list[str], rounds: int, reps: int) -> dict[str, float]:
    from workbench.subject import load_subject

    subject = load_subject(path)
    batch = subject.tokenize(texts)
    middle = subject.n_layers // 2
    resid, pattern = f"blocks.{middle}.hook_resid_post", f"blocks.{middle}.attn.hook_pattern"
    with torch.no_grad():
        plain = lambda: subject.forward(batch)  # noqa: E731
        cached = {name: (lambda name=name: subject.run_with_cache(batch, names=[name])) for name in (resid, pattern)}
        for fn in (plain, *cached.values()):  # warm-up
            fn()
        ratios: dict[str, list[float]] = {resid: [], pattern: []}
        for _ in range(rounds):
            for name, fn in cached.items():
                base = timed(plain, reps)
                ratios[name].append(timed(fn, reps) / base)
        plain_peak = peak_tensor_bytes(plain)
        cache_peak = peak_tensor_bytes(cached[resid])
        cached_bytes = cached[resid]()[resid].numel() * subject.forward(batch).last_hidden_state.element_size()
    return {"overhead": round(statistics.median(ratios[resid]), 3),
            "overhead_pattern": round(statistics.median(ratios[pattern]), 3),
            "memory_ratio": round(cache_peak / (plain_peak + cached_bytes), 3),
            "plain_peak_mb": round(plain_peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per name")
    parser.add_argument("--reps", type=int, default=5, help="forwards per timing (median)")
    parser.add_argument("--families", default=None, help="comma-separated model types (default: every adapter)")
    args = parser.parse_args()

    from atinuke.corpus import load_texts
    from atinuke.tokenizer import train_tokenizer
    from workbench.models import ADAPTERS

    tokenizer = train_tokenizer(load_texts("ptb", "valid"), vocab_size=1000)
    texts = [t for t in load_texts("ptb", "valid") if len(t.split()) >= 20][:8]
    texts = [" ".join((t + " ") * 8).split()[:120] for t in texts]
    texts = [" ".join(words) for words in texts]
    builders = family_configs(len(tokenizer))
    wanted = args.families.split(",") if args.families else [f for f in builders if f in ADAPTERS]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in wanted:
            path = build(family, builders[family](), tokenizer, Path(tmp) / family)
            results[family] = measure(path, texts, args.rounds, args.reps)
            print(family, results[family], flush=True)
    print(json.dumps({"families": results, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
