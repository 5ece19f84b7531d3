"""What a person sees in a real browser (issue 29): the model and example a copied address names, inputs that
fit the model's task, and the Claims page's verdict with its reason beside it.

Runs `streamlit run app.py` on a loopback port over the demo-like TEST FIXTURE of tests/test_app_identity.py
(the shipped tiny Atinuke and BERT runs in a one-seed experiment, fresh task heads), and drives headless
Chromium (the harness of tests/test_browser.py).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401  (the shared Chromium fixture)

from tests.test_app_identity import demo_runs  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parent.parent

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def served(demo_runs, tmp_path_factory):  # noqa: F811
    """The app over the demo-like runs (a one-seed experiment, as `make demo` builds)."""
    root = tmp_path_factory.mktemp("served") / "runs"
    shutil.copytree(demo_runs, root)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, ATINUKE_RUNS=str(root), OMP_NUM_THREADS="1", ATINUKE_APP_WARMUP="0")
    log = open(tmp_path_factory.mktemp("streamlit") / "server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port",
                                str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                                "--browser.gatherUsageStats", "false"], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        yield url, root
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_for(driver, needles: list[str], timeout: float = 120.0) -> str:
    """The page's visible text once every needle is in it and no spinner is left (fails after ``timeout``)."""
    from selenium.webdriver.common.by import By

    deadline, text = time.time() + timeout, ""
    while time.time() < deadline:
        try:
            text = driver.execute_script(  # what is shown, and the choices selectboxes show (not in innerText)
                "const main = document.querySelector('[data-testid=\"stMain\"]'); if (!main) return '';"
                "const picked = Array.from(main.querySelectorAll('[data-testid=\"stSelectbox\"]'))"
                ".map(e => e.textContent); return main.innerText + '\\n' + picked.join('\\n');")
            busy = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSpinner"], [data-testid="stSkeleton"]')
        except Exception:  # replaced while the script reruns
            time.sleep(0.3)
            continue
        if all(n in text for n in needles) and not busy:
            return text
        time.sleep(0.3)
    raise AssertionError(f"not shown within {timeout} s: {[n for n in needles if n not in text]}\n{text[:2000]}")


def test_a_copied_address_shows_the_model_its_example_and_a_pair_tasks_inputs(served, browser):  # noqa: F811
    url, _ = served
    browser.get(f"{url}/attribution?model=bert-seed0/snli&task=snli&example=snli-4")
    text = wait_for(browser, ["BERT: bert-seed0 fine-tuned on snli", "Premise:", "Hypothesis:", "the prediction",
                              "Explained target: class="])
    assert "Atinuke: atinuke-seed0" not in text  # the link's model, not the default
    assert "example=snli-4" in browser.current_url  # the link's example (its two segments shown below)
    assert "Premise: A man is sitting in the park." in text and "Hypothesis: A human is outside." in text
    assert "bert-seed0/snli" in browser.current_url


def test_claims_page_shows_the_reason_beside_each_verdict(served, browser):  # noqa: F811
    url, root = served
    browser.get(f"{url}/claims")
    text = wait_for(browser, ["Verdict: "])
    verdicts = [line for line in text.splitlines() if line.startswith("Verdict: ")]
    open_ones = [v for v in verdicts if v.startswith(("Verdict: inconclusive", "Verdict: not measurable"))]
    assert open_ones and all(" — " in v for v in open_ones), verdicts  # the reason beside it, not at the end
    assert any("one seed gives no verdict" in v for v in verdicts) or any("trivial baseline" in v for v in verdicts), \
        verdicts
    assert "data: nan" not in text.lower() and "seeds: 0" not in text and str(root) not in text
