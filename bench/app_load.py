"""Benchmark: many visitors, one app. A real ``streamlit run app.py`` on 127.0.0.1 (a free port, nothing else is
contacted), K concurrent sessions, each a headless Chromium (the harness of tests/test_browser.py) that opens
Attention, Attribution and Mechanisms on its own model and its own sentence.

Each server is first opened once at its first page (as a visitor would), which starts the app's imports and
its background warm-up; then the sessions start. The runs directory holds the shipped tiny checkpoints
(``atinuke/checkpoints/tiny-atinuke-seed0`` and ``tiny-bert-seed0``, linked as pretraining runs); with MiniLM
that makes three models, and config c uses model c mod 3 and sentence c (session i of a round is config
i mod ``--configs``). Each K runs against a fresh server (empty caches), so models load while sessions wait:

1. K = 1: the sessions one after another, each alone: its page times, and its numbers -- every plotly figure's
   data and every caption (the explained target, the IG convergence delta, the patching metric) -- as reference;
2. K = 4, 8: that many sessions at once (a barrier starts them together); each compares its numbers with its
   own single-session reference (exactly: the same computation on one thread is deterministic).

A page's time is from opening its address to the last change of its content (a session types its sentence
after the page's first render; Streamlit reruns). ``errors`` counts exceptions and error boxes shown, and pages
that did not finish in ``--page-timeout``; ``wrong_results`` counts pages whose numbers differ from the reference
by more than 1e-6 (figure data; captions print rounded numbers, compared to 1e-3 relative) or whose text differs.
``peak_rss_mb`` is the server's peak resident memory (children included), sampled every 0.2 s.

    nice -n 10 python bench/app_load.py [--ks 1,4,8] [--page-timeout 240]

Final line, JSON: ``{"k": {"1": {"<page>": {"p50_s", "p95_s"}, "errors", "wrong_results", "peak_rss_mb"}, ...},
"errors", "wrong_results", "peak_rss_mb", "p95_ratio_8_over_1": {...}, "cache_budgets_mb": {...}}``.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHECKPOINTS = ("tiny-atinuke-seed0", "tiny-bert-seed0")
MODELS = ("tiny-atinuke-seed0", "tiny-bert-seed0", "minilm")  # link names; display names below
DISPLAY = {"tiny-atinuke-seed0": "Atinuke: tiny-atinuke-seed0", "tiny-bert-seed0": "Atinuke: tiny-bert-seed0",
           "minilm": "MiniLM (all-MiniLM-L6-v2)"}
TEXTS = ("The market fell sharply on Monday.", "Shares of the company rose in early trading.",
         "The board said it would meet next week.", "Prices were mixed in light trading yesterday.",
         "Analysts expect the bank to report a loss.", "The new plant will open next year.",
         "Investors sold bonds after the report.", "The chairman resigned last month.")
PAGES = {"attention": ("Attention explorer", "textarea"), "attribution": ("Attribution", "textarea"),
         "mechanisms": ("Mechanisms", "input")}
READ_NUMBERS = """
const plots = Array.from(document.querySelectorAll('.js-plotly-plot')).map(
    p => JSON.stringify((p.data || []).map(t => [t.x, t.y, t.z, t.text])));
const captions = Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"], [data-testid="stMetric"]'))
    .map(c => c.innerText);
return JSON.stringify({plots: plots, captions: captions});
"""


NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _values(obj: Any, out: list[float], words: list[str]) -> None:
    """Every number in a page's read-out (plotly's base64 arrays decoded, numbers in text parsed), and the text
    around them."""
    if isinstance(obj, dict) and "bdata" in obj and "dtype" in obj:
        out.extend(np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"]).astype(float).tolist())
    elif isinstance(obj, dict):
        for key in sorted(obj):
            words.append(str(key))
            _values(obj[key], out, words)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _values(item, out, words)
    elif isinstance(obj, bool) or obj is None:
        words.append(str(obj))
    elif isinstance(obj, (int, float)):
        out.append(float(obj))
    else:
        text = str(obj)
        out.extend(float(n) for n in NUMBER.findall(text))
        words.append(NUMBER.sub("#", text))


def differs(numbers: str, expected: Optional[str], atol: float = 1e-6, rtol: float = 1e-3) -> Optional[str]:
    """None when a page's read-out equals its single-session reference: the same text, and numbers within
    ``atol`` (figure data) or ``rtol`` (numbers printed in captions, rounded to a few digits); else why not."""
    if expected is None:
        return "no reference"
    got, want = json.loads(numbers), json.loads(expected)
    if len(got["plots"]) != len(want["plots"]) or len(got["captions"]) != len(want["captions"]):
        return f"{len(got['plots'])} plots / {len(got['captions'])} captions vs {len(want['plots'])} / {len(want['captions'])}"
    for key, tol in (("plots", (atol, 0.0)), ("captions", (atol, rtol))):
        a, b, wa, wb = [], [], [], []  # type: ignore[var-annotated]
        for x, y in zip(got[key], want[key]):
            _values(json.loads(x) if key == "plots" else x, a, wa)
            _values(json.loads(y) if key == "plots" else y, b, wb)
        if wa != wb or len(a) != len(b):
            return f"{key}: different text or count"
        if a and not np.allclose(a, b, atol=tol[0], rtol=tol[1], equal_nan=True):
            return f"{key}: max |diff| {float(np.nanmax(np.abs(np.subtract(a, b)))):.3g}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_runs(root: Path) -> Path:
    """A runs directory whose pretraining runs are the shipped tiny checkpoints (linked, not copied)."""
    (root / "pretrain").mkdir(parents=True)
    for name in CHECKPOINTS:
        (root / "pretrain" / name).symlink_to(REPO / "atinuke" / "checkpoints" / name)
    return root


class Server:
    """``streamlit run app.py`` on a loopback port, with its peak RSS sampled while it runs."""

    def __init__(self, runs: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, ATINUKE_RUNS=str(runs), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.peak_rss = 0
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(0.5)
        self.close()
        raise RuntimeError(f"streamlit did not start on {self.url}; see {log}")

    def _sample(self) -> None:
        import psutil

        process = psutil.Process(self.process.pid)
        while not self.stop.is_set():
            try:
                rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
                self.peak_rss = max(self.peak_rss, rss)
            except psutil.Error:
                return
            time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1800"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def wait_rendered(driver: Any, title: str, timeout: float, quiet: float = 1.5) -> float:
    """Wait until the page shows ``title``, nothing is running, and its content has not changed for ``quiet``
    seconds; returns the time of the last change (as tests/test_browser.py waits, timed)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By

    deadline, last, since = time.time() + timeout, None, time.time()
    while time.time() < deadline:
        try:
            headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1")]
            busy = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSkeleton"], [data-testid="stSpinner"], '
                                                         '[data-testid="stStatusWidget"]')
            snapshot = driver.execute_script("return document.querySelector('[data-testid=\"stMain\"]')?.innerText || ''")
        except (StaleElementReferenceException, WebDriverException):
            last, since = None, time.time()
            time.sleep(0.2)
            continue
        if snapshot != last or busy or not any(title in h for h in headings):
            last, since = snapshot, time.time()
        elif time.time() - since >= quiet:
            return since
        time.sleep(0.2)
    raise TimeoutError(f"page {title!r} did not finish rendering in {timeout:.0f} s")


def enter_text(driver: Any, kind: str, text: str, timeout: float) -> None:
    """Replace the page's "Text" box with ``text`` and submit it as a visitor does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    # The page may still be importing torch (no spinner shows for that): wait for its box to appear.
    box = WebDriverWait(driver, timeout).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, f'{kind}[aria-label="Text"]')))
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    box.send_keys(Keys.CONTROL, Keys.ENTER) if kind == "textarea" else box.send_keys(Keys.ENTER)


def shown_errors(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    found += [a for a in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stAlert"]')
              if "stAlertContentError" in (a.get_attribute("innerHTML") or "")]
    return [e.text[:300] for e in found]


def session(url: str, index: int, timeout: float, start: Optional[threading.Barrier]) -> dict[str, Any]:
    """One visitor: the three pages on model ``index`` mod 3 and sentence ``index``; times, numbers, errors."""
    model, text = MODELS[index % len(MODELS)], TEXTS[index % len(TEXTS)]
    out: dict[str, Any] = {"times": {}, "numbers": {}, "errors": []}
    driver = browser()
    try:
        if start is not None:
            start.wait()
        for page, (title, kind) in PAGES.items():
            param = DISPLAY[model] if page == "mechanisms" else model
            began = time.time()
            try:
                driver.get(f"{url}/{page}?model={urllib.parse.quote(param)}")
                wait_rendered(driver, title, timeout)
                enter_text(driver, kind, text, timeout)
                time.sleep(0.5)  # let the rerun start before waiting for it to settle
                done = wait_rendered(driver, title, timeout)
                out["times"][page] = done - began
                out["numbers"][page] = driver.execute_script(READ_NUMBERS)
                out["errors"] += [f"{page}: {e}" for e in shown_errors(driver)]
            except Exception as error:  # a timeout or a lost page counts as an error of that page
                out["errors"].append(f"{page}: {type(error).__name__}: {str(error)[:200]}")
    finally:
        driver.quit()
    return out


def run_k(runs: Path, k: int, sessions: list[int], timeout: float, log: Path) -> tuple[list[dict], int]:
    server = Server(runs, log)
    try:
        first = browser()  # a visitor opened the first page: the app's imports and warm-up have begun
        try:
            first.get(server.url)
            wait_rendered(first, "Models and training", timeout)
        finally:
            first.quit()
        if k == 1:
            results = [session(server.url, i, timeout, None) for i in sessions]
        else:
            barrier = threading.Barrier(k)
            results = [{} for _ in sessions]

            def visit(slot: int, i: int) -> None:
                try:
                    results[slot] = session(server.url, i, timeout, barrier)
                except Exception as error:
                    results[slot] = {"times": {}, "numbers": {}, "errors": [f"session: {error}"]}
            threads = [threading.Thread(target=visit, args=(slot, i)) for slot, i in enumerate(sessions)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return results, server.peak_rss
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,4,8", help="concurrent sessions per round (1 first: the reference)")
    parser.add_argument("--page-timeout", type=float, default=240.0, help="seconds a page may take")
    parser.add_argument("--configs", type=int, default=8, help="distinct (model, sentence) sessions; session i of "
                        "a round uses config i mod this, and the K = 1 round runs each once")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    if ks[0] != 1:
        raise SystemExit("--ks must start with 1: the single-session run is the reference")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise SystemExit("needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)")
    n_configs = args.configs
    summary: dict[str, Any] = {"k": {}}
    reference: dict[int, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(Path(tmp) / "runs")
        for k in ks:
            sessions = list(range(n_configs)) if k == 1 else [i % n_configs for i in range(k)]
            started = time.time()
            results, peak = run_k(runs, k, sessions, args.page_timeout, Path(tmp) / f"server_k{k}.log")
            if k == 1:
                reference = {i: r["numbers"] for i, r in zip(sessions, results)}
            wrong = [f"session {i} {page}: {why}" for i, r in zip(sessions, results)
                     for page, numbers in r["numbers"].items()
                     if (why := differs(numbers, reference.get(i, {}).get(page))) is not None]
            errors = [f"session {i} {e}" for i, r in zip(sessions, results) for e in r["errors"]]
            pages = {page: [r["times"][page] for r in results if page in r["times"]] for page in PAGES}
            summary["k"][str(k)] = {
                **{page: {"p50_s": round(float(np.percentile(t, 50)), 2) if t else None,
                          "p95_s": round(float(np.percentile(t, 95)), 2) if t else None, "n": len(t)}
                   for page, t in pages.items()},
                "errors": len(errors), "wrong_results": len(wrong), "peak_rss_mb": round(peak / 2**20),
                "wall_s": round(time.time() - started, 1),
                "pages_with_numbers": sum(1 for r in results for n in r["numbers"].values()
                                          if json.loads(n)["plots"] or json.loads(n)["captions"]), "error_examples": errors[:3], "wrong_examples": wrong[:3]}
            print(f"K={k}", json.dumps(summary["k"][str(k)]), flush=True)
    last, first = summary["k"][str(ks[-1])], summary["k"]["1"]
    summary["p95_ratio_max_k_over_1"] = {page: (round(last[page]["p95_s"] / first[page]["p95_s"], 2)
                                                if last[page]["p95_s"] and first[page]["p95_s"] else None)
                                         for page in PAGES}
    summary["errors"] = sum(v["errors"] for v in summary["k"].values())
    summary["wrong_results"] = sum(v["wrong_results"] for v in summary["k"].values())
    summary["peak_rss_mb"] = max(v["peak_rss_mb"] for v in summary["k"].values())
    from ui.common import MAPS_MB_ENV, MODELS_MB_ENV
    from ui.sized_cache import budget_from_env

    summary["cache_budgets_mb"] = {"models": budget_from_env(MODELS_MB_ENV, 4096) // 2**20,
                                   "attention_maps": budget_from_env(MAPS_MB_ENV, 256) // 2**20}
    print(json.dumps(summary))


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == REPO / "bench":
        sys.path[0] = str(REPO)  # bench/probes.py would shadow the probes package
    main()
