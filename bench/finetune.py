"""Fine-tuning throughput of every head kind: tiny Atinuke vs MiniLM, measured side by side in one run.

Examples are built from real text (PTB valid sentences) in each head's format; each (model, head) pair runs
a warm-up step and then timed AdamW steps of forward + backward on the CPU (or --device). The final line is
JSON: training examples/s per head for both models and their ratio (Atinuke / MiniLM).

    python bench/finetune.py --quick
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from atinuke.tasks import get_task
from atinuke.tasks.base import Answer, ClassificationExample, CorefDocument, QAExample, SRLExample

HEAD_TASKS = {"classification": "cola", "regression": "stsb", "span_qa": "squad2", "tagging": "srl", "coref": "coref"}


def _examples(kind: str, sentences: list[str], n: int) -> list:
    out = []
    for i in range(n):
        s = sentences[i % len(sentences)]
        words = s.split()
        if kind == "classification":
            out.append(ClassificationExample(f"c{i}", s, None, str(i % 2)))
        elif kind == "regression":
            out.append(ClassificationExample(f"r{i}", s, sentences[(i + 1) % len(sentences)], float(i % 6)))
        elif kind == "span_qa":
            context = " ".join(sentences[(i + k) % len(sentences)] for k in range(4))
            answer = " ".join(words[1:3])
            out.append(QAExample(f"q{i}", context, f"What follows {words[0]} ?", [Answer(answer, context.index(answer))]))
        elif kind == "tagging":
            tags = ["B-ARG0"] + ["I-ARG0"] * (len(words) // 2 - 1) + ["B-V"] + ["B-ARG1"] + ["I-ARG1"] * (len(words) - len(words) // 2 - 2)
            out.append(SRLExample(f"s{i}", words, len(words) // 2, tags[: len(words)]))
        else:
            doc, starts = [], []
            for k in range(5):
                starts.append(len(doc))
                doc += sentences[(i + k) % len(sentences)].split()[:20]
            first = {}
            for w, word in enumerate(doc):
                first.setdefault(word.lower(), []).append(w)
            clusters = [[(w, w) for w in ws] for word, ws in first.items() if len(ws) > 1 and len(word) > 3][:5]
            out.append(CorefDocument(f"d{i}", doc, starts, clusters))
    return out


def _tiny_atinuke(path: str | None) -> str:
    """The pretrained tiny run if given/present, else a fresh tiny preset saved under the cache."""
    from atinuke.config import preset_config
    from atinuke.corpus import load_texts
    from atinuke.model import AtinukeForMaskedLM
    from atinuke.paths import cache_dir, runs_dir
    from atinuke.tokenizer import save_tokenizer, train_tokenizer

    for candidate in (path, runs_dir() / "pretrain" / "tiny-mlm"):
        if candidate and (Path(candidate) / "model" / "config.json").is_file():
            return str(candidate)
    target = cache_dir() / "bench" / "tiny-untrained" / "model"
    if not (target / "config.json").is_file():
        tokenizer = train_tokenizer(load_texts("ptb", "train"), vocab_size=8000)
        torch.manual_seed(0)
        AtinukeForMaskedLM(preset_config("tiny", vocab_size=len(tokenizer))).save_pretrained(target)
        save_tokenizer(tokenizer, target)
    return str(target.parent)


def measure(model_spec: str, kind: str, examples: list, batch_size: int, steps: int, device: str) -> float:
    """Training examples/s of ``steps`` AdamW steps after one warm-up step."""
    from atinuke.tasks.heads import build_task_model

    torch.manual_seed(0)
    model = build_task_model(model_spec, get_task(HEAD_TASKS[kind]), device=device, max_len=128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(i: int) -> None:
        chunk = [examples[(i * batch_size + k) % len(examples)] for k in range(batch_size)]
        loss = model(**model.encode(chunk).to(device).model_inputs()).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed steps of batch 8 (default 10 of 16)")
    parser.add_argument("--atinuke", default=None, help="Atinuke run directory (default runs/pretrain/tiny-mlm)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from atinuke.corpus import load_texts

    steps, batch_size = (3, 8) if args.quick else (10, 16)
    sentences = [s.strip() for s in load_texts("ptb", "valid") if 8 <= len(s.split()) <= 30][:400]
    models = {"atinuke": _tiny_atinuke(args.atinuke), "minilm": "minilm"}
    figures: dict[str, dict[str, float]] = {name: {} for name in models}
    for kind in HEAD_TASKS:
        examples = _examples(kind, sentences, 64)
        for name, spec in models.items():  # interleaved, so both see the same machine load
            figures[name][kind] = round(measure(spec, kind, examples, batch_size, steps, args.device), 2)
            logging.warning("%s %s: %.2f train examples/s", name, kind, figures[name][kind])
    ratio = {kind: round(figures["atinuke"][kind] / figures["minilm"][kind], 2) for kind in HEAD_TASKS}
    print(json.dumps({"bench": "finetune", "unit": "train examples/s", "batch_size": batch_size, "steps": steps,
                      "device": args.device, "atinuke_model": models["atinuke"], "atinuke": figures["atinuke"],
                      "minilm": figures["minilm"], "atinuke_over_minilm": ratio}))


if __name__ == "__main__":
    main()
