"""Benchmark: render time of every page of the Streamlit app (streamlit.testing.v1.AppTest), target < 2 s.

Pages read precomputed artifacts under a runs directory: ``--runs`` (default ``$ATINUKE_RUNS`` or
``runs/``) when it holds pretraining and fine-tuning runs, else the test-fixture runs directory of
tests/test_app.py built in a temporary folder (a tiny Atinuke trained a few steps, rule-made predictions
over real Lee-corpus sentences; labelled as a fixture in the output). Each page is rendered cold (first
visit in a fresh process-wide cache: model loading and on-demand computation included) and then warm (a
rerun, as after any widget change); the target applies to the warm render, which is what a user waits for
on every interaction.

Two more measurements each run in a fresh Python process, so nothing is preloaded, with the app's background
warm-up (``ui.common.warm_up``) off and on:

- ``fresh_first_page``: the first page (/models) in a new process: ``process_s`` from the interpreter's
  start to the rendered page (streamlit's and the app's own imports included), ``render_s`` the first
  ``AppTest.run`` alone;
- ``attention_after_pause``: a visitor opens the first page, reads it for ``--pause`` seconds (3), then opens
  Attention: ``attention_s`` is that render, with the default models (the first Atinuke run and MiniLM).

    python bench/app_pages.py [--runs runs] [--repeats 3] [--pause 3]

The final line is JSON: ``{"pages": {page: {"cold_s": .., "warm_s": ..}}, "max_warm_s": .., "target_s": 2.0,
"meets_target": .., "fresh_first_page": {"warm_up_off": {..}, "warm_up_on": {..}},
"attention_after_pause": {"pause_s": 3, "warm_up_off": {..}, "warm_up_on": {..}}, "runs": .., "fixture": ..}``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = ("models", "attention", "attribution", "probing", "errors", "comparison", "features", "mechanisms", "dynamics",
         "claims", "reports")
TARGET_S = 2.0
if sys.path and Path(sys.path[0]).resolve() == REPO / "bench":
    # run as a script, Python puts bench/ first on the path, where bench/probes.py shadows the probes package
    sys.path[0] = str(REPO)


def _has_artifacts(root: Path) -> bool:
    """Pretraining and fine-tuning runs, in the runs/ layout or the controlled experiment's."""
    pretrain = any(root.glob("pretrain/*/summary.json")) or any(root.glob("experiment/*/seed*/pretrain/summary.json"))
    finetune = (any(root.glob("finetune/*/*/predictions.parquet"))
                or any(root.glob("experiment/*/seed*/finetune/*/predictions.parquet")))
    return pretrain and finetune


def _fixture_runs(tmp: Path) -> Path:
    """Build the test-fixture runs directory (see tests/test_app.py) in ``tmp``."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from test_app import make_fixture_runs  # the shared fixture builder

    from atinuke.config import AtinukeConfig
    from atinuke.corpus import load_texts
    from atinuke.model import AtinukeForMaskedLM
    from atinuke.tokenizer import save_tokenizer, train_tokenizer

    tokenizer = train_tokenizer(load_texts("ptb", "valid"), vocab_size=1000)
    config = AtinukeConfig(vocab_size=len(tokenizer), d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=128,
                           dropout=0.0)
    torch.manual_seed(0)
    model_dir = tmp / "tiny_model"
    AtinukeForMaskedLM(config).eval().save_pretrained(model_dir)
    save_tokenizer(tokenizer, model_dir)
    return make_fixture_runs(tmp / "runs", model_dir)


def _render(page: str, repeats: int) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    start = time.perf_counter()
    at.run()  # renders the default page (models)
    if page != PAGES[0]:
        at.switch_page(f"ui/{page}.py")
        start = time.perf_counter()
        at.run()
    cold = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"page {page} raised: {at.exception[0].value}")
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - start)
    return {"cold_s": round(cold, 3), "warm_s": round(min(warm), 3)}


def _child(mode: str, pause: float, started: float) -> None:
    """In a fresh process: render the first page (and, for "attention", Attention after ``pause`` seconds)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    start = time.perf_counter()
    at.run()
    result = {"render_s": round(time.perf_counter() - start, 3), "process_s": round(time.perf_counter() - started, 3)}
    if mode == "attention":
        time.sleep(pause)
        at.switch_page("ui/attention.py")
        start = time.perf_counter()
        at.run()
        result = {"attention_s": round(time.perf_counter() - start, 3)}
    if at.exception:
        raise RuntimeError(f"{mode} raised: {at.exception[0].value}")
    print(json.dumps(result))


def _fresh(mode: str, root: Path, warm_up: bool, pause: float) -> dict[str, float]:
    """Run :func:`_child` in a new interpreter; ``process_s`` also counts the interpreter's own start."""
    env = dict(os.environ, ATINUKE_RUNS=str(root), ATINUKE_APP_WARMUP="1" if warm_up else "0",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--pause", str(pause), "--started",
                           str(time.time())], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{mode} in a fresh process failed: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["subprocess_wall_s"] = round(wall, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path(os.environ.get("ATINUKE_RUNS", REPO / "runs")))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pause", type=float, default=3.0, help="seconds on the first page before Attention")
    parser.add_argument("--child", choices=("first", "attention"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        # time.time() of the parent just before it started this interpreter: process_s includes its start
        _child(args.child, args.pause, time.perf_counter() - (time.time() - args.started))
        return
    with tempfile.TemporaryDirectory() as tmp:
        fixture = not _has_artifacts(args.runs)
        root = _fixture_runs(Path(tmp)) if fixture else args.runs
        os.environ["ATINUKE_RUNS"] = str(root)
        results = {}
        for page in PAGES:
            results[page] = _render(page, args.repeats)
            print(f"{page:12s} cold {results[page]['cold_s']:7.3f} s   warm {results[page]['warm_s']:7.3f} s",
                  file=sys.stderr)
        fresh = {f"warm_up_{state}": _fresh("first", root, state == "on", args.pause) for state in ("off", "on")}
        pause = {f"warm_up_{state}": _fresh("attention", root, state == "on", args.pause) for state in ("off", "on")}
        print(f"fresh first page {fresh}\nattention after {args.pause} s {pause}", file=sys.stderr)
    max_warm = max(r["warm_s"] for r in results.values())
    print(json.dumps({"pages": results, "max_warm_s": max_warm, "max_cold_s": max(r["cold_s"] for r in results.values()),
                      "target_s": TARGET_S, "meets_target": max_warm < TARGET_S, "fresh_first_page": fresh,
                      "attention_after_pause": {"pause_s": args.pause, **pause},
                      "runs": "test fixture (tests/test_app.py)" if fixture else str(args.runs), "fixture": fixture}))


if __name__ == "__main__":
    main()
