"""Benchmark: attributing a generated answer of SmolLM2-135M-Instruct, the workbench against Captum's own LLM tool.

Both sides explain a greedy answer of ``--new-tokens`` tokens (20) to a chat-formatted question with integrated
gradients (Sundararajan et al., 2017, arXiv 1703.01365) on the token embeddings, ``--n-steps`` (32) steps and the
Gauss-Legendre rule, generating the answer themselves:

- ``workbench``: ``workbench.attribution.attribute(subject, prompts, "integrated_gradients", "generate=N")``, one
  row per generated token (its logit, attributed to the prompt and the tokens generated before it; the last block
  computes only the rows a target reads, the LM head only the position it reads);
- ``captum``: ``captum.attr.LLMGradientAttribution(LayerIntegratedGradients(model, embed_tokens), tokenizer)`` on
  the ``LlamaForCausalLM`` itself (``TextTokenInput`` with the pad token as baseline; Captum's target is each
  generated token's log-probability, over the prompt tokens).

Their targets differ (logit vs log-probability, the generated prefix attributed or not), so ``max_abs_diff`` is
measured on a matched computation: the captum process also runs plain ``LayerIntegratedGradients`` with the
workbench's target and baseline (every token the tokenizer did not add itself -> pad; the chat template's markers
are text) for the first ``--diff-tokens``
generated tokens, and compares token by token. ``hooked_overhead`` is ``Subject.run_with_cache`` for one name
(the middle block's ``hook_resid_post``) over the plain forward of the same model, on the same batch.

Each side runs in its own subprocess, so ``*_peak_rss_mb`` is its own. The final line is JSON:
``workbench_s_per_example``, ``captum_s_per_example``, ``llm_attribution_ratio`` (captum / workbench; goal >= 2),
``max_abs_diff``, the same three in process CPU seconds (``*_cpu_*``: robust on a shared machine),
``workbench_peak_rss_mb``, ``captum_peak_rss_mb``, ``hooked_overhead`` (goal <= 1.1), settings.

    OMP_NUM_THREADS=1 nice -n 10 python bench/llm.py                 # 20 tokens, 32 steps, 2 questions
    OMP_NUM_THREADS=1 python bench/llm.py --new-tokens 4 --n-steps 8 --n-examples 1   # a quick look
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
from typing import Any

QUESTIONS = ("Explain in two sentences why the sky is blue.", "Give three tips for staying healthy.",
             "Describe how a bicycle works.", "What is photosynthesis? Answer briefly.")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _prompts(tokenizer, n: int) -> list[str]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                          tokenize=False) for q in QUESTIONS[:n]]


def _workbench(args: argparse.Namespace) -> dict:
    from workbench.attribution import AttributionParams, attribute
    from workbench.subject import load_subject

    subject = load_subject("smollm2")
    subject.tokenizer.split_special_tokens = False  # the chat template's markers are special tokens (as --chat)
    prompts = _prompts(subject.tokenizer, args.n_examples)
    params = AttributionParams(n_steps=args.n_steps, baseline="pad")
    attribute(subject, prompts[:1], "integrated_gradients", "generate=2", params)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    result = attribute(subject, prompts, "integrated_gradients", f"generate={args.new_tokens}", params,
                       example_ids=[str(i) for i in range(len(prompts))], progress=False)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    frame = result.frame
    rows = {eid: frame[frame["example_id"] == eid]["score"].tolist() for eid in dict.fromkeys(frame["example_id"])}
    # hooked-forward overhead: one cached name against the plain forward, alternated
    batch = subject.as_inputs(subject.tokenize(prompts))
    name = f"blocks.{subject.n_layers // 2}.hook_resid_post"
    plain, hooked = [], []
    import torch

    with torch.no_grad():
        for _ in range(args.reps):
            t = time.perf_counter()
            subject.encoder(**batch)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            subject.run_with_cache(batch, [name])
            hooked.append(time.perf_counter() - t)
    return {"seconds": seconds, "cpu_seconds": cpu, "n_examples": len(prompts), "rows": rows, "peak_rss_mb": _peak_rss_mb(),
            "plain_s": sorted(plain)[len(plain) // 2], "hooked_s": sorted(hooked)[len(hooked) // 2]}


def _captum(args: argparse.Namespace) -> dict:
    import torch
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atinuke.pretrained import smollm2_path

    path = smollm2_path()
    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    for p in model.parameters():
        p.requires_grad_(False)
    prompts = _prompts(tokenizer, args.n_examples)
    embed = model.get_input_embeddings()
    llm = LLMGradientAttribution(LayerIntegratedGradients(model, embed), tokenizer)
    gen = {"max_new_tokens": args.new_tokens, "do_sample": False, "temperature": None, "top_p": None}

    def explain(prompt: str, new_tokens: int) -> Any:
        inp = TextTokenInput(prompt, tokenizer, baselines=tokenizer.pad_token_id)
        return llm.attribute(inp, gen_args=dict(gen, max_new_tokens=new_tokens), n_steps=args.n_steps)

    explain(prompts[0], 2)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    results = [explain(p, args.new_tokens) for p in prompts]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = _peak_rss_mb()
    # the matched computation: the workbench's target (the logit of the j-th generated token at the last position
    # of prompt + first j generated tokens) and baseline (content tokens -> pad, special tokens kept)
    matched: dict[str, list[float]] = {}
    for i, prompt in enumerate(prompts):
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=args.diff_tokens, do_sample=False)
        generated = out[0, ids.shape[1]:].tolist()
        for j, token in enumerate(generated):
            full = torch.cat([ids, torch.tensor([generated[:j]], dtype=ids.dtype)], 1)
            # the workbench's "pad" baseline keeps only the tokens the tokenizer adds itself (none here: the chat
            # template's markers are part of the text) and replaces every other one with the pad token
            base = torch.full_like(full, tokenizer.pad_token_id)

            def logit(x: torch.Tensor, token: int = token) -> torch.Tensor:
                return model(input_ids=x).logits[:, -1, token]

            attr = LayerIntegratedGradients(logit, embed).attribute(full, baselines=base, n_steps=args.n_steps,
                                                                   method="gausslegendre")
            matched[f"{i}#{j}"] = attr.sum(-1)[0].tolist()
    return {"seconds": seconds, "cpu_seconds": cpu, "n_examples": len(prompts), "peak_rss_mb": peak, "matched": matched,
            "n_generated": [len(r.output_tokens) for r in results]}


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(0)
    result = _workbench(args) if args.child == "workbench" else _captum(args)
    Path(args.result).write_text(json.dumps(result))


def _run(side: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--child", side, "--result", str(out), "--n-steps", str(args.n_steps),
                   "--new-tokens", str(args.new_tokens), "--n-examples", str(args.n_examples),
                   "--diff-tokens", str(args.diff_tokens), "--reps", str(args.reps)]
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="268435456", MALLOC_TRIM_THRESHOLD_="1073741824")
        subprocess.run(command, check=True, env=env)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--n-examples", type=int, default=2)
    parser.add_argument("--diff-tokens", type=int, default=2, help="generated tokens compared in max_abs_diff")
    parser.add_argument("--reps", type=int, default=5, help="forward passes timed for the hooked overhead")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.n_examples <= len(QUESTIONS):
        parser.error(f"--n-examples must be in 1..{len(QUESTIONS)}")
    if args.child:
        _child(args)
        return
    workbench = _run("workbench", args)
    captum = _run("captum", args)
    diffs = [abs(a - b) for key, ref in captum["matched"].items() if key in workbench["rows"]
             for a, b in zip(workbench["rows"][key], ref)]
    wb_s = workbench["seconds"] / workbench["n_examples"]
    ca_s = captum["seconds"] / captum["n_examples"]
    print(json.dumps({
        "workbench_s_per_example": round(wb_s, 3), "captum_s_per_example": round(ca_s, 3),
        "llm_attribution_ratio": round(ca_s / wb_s, 3), "max_abs_diff": max(diffs) if diffs else None,
        # process CPU seconds: the comparison that holds on a machine shared with other work
        "workbench_cpu_s_per_example": round(workbench["cpu_seconds"] / workbench["n_examples"], 3),
        "captum_cpu_s_per_example": round(captum["cpu_seconds"] / captum["n_examples"], 3),
        "llm_attribution_cpu_ratio": round(captum["cpu_seconds"] / workbench["cpu_seconds"], 3),
        "n_compared_scores": len(diffs), "workbench_peak_rss_mb": round(workbench["peak_rss_mb"], 1),
        "captum_peak_rss_mb": round(captum["peak_rss_mb"], 1),
        "hooked_overhead": round(workbench["hooked_s"] / workbench["plain_s"], 3),
        "captum_n_generated": captum["n_generated"], "new_tokens": args.new_tokens, "n_steps": args.n_steps,
        "n_examples": args.n_examples, "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
        "model": "smollm2 (SmolLM2-135M-Instruct, 4-bit GGUF dequantised to fp32)"}))


if __name__ == "__main__":
    main()
