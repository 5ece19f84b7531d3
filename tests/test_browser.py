"""The real app in a real browser: `streamlit run app.py` on a loopback port, driven by headless Chromium.

Visits every page, waits for it to finish rendering, asserts that no Streamlit exception block
(``[data-testid="stException"]``) appears, and saves a screenshot per page under artifacts/screenshots/.
Runs over the test-fixture runs directory of tests/test_app.py.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_app import make_fixture_runs  # noqa: E402  (the shared runs-directory test fixture)

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
PAGES = {"models": "Models and training", "attention": "Attention explorer", "attribution": "Attribution",
         "probing": "Probing", "errors": "Error analysis", "comparison": "Model comparison", "features": "Features",
         "mechanisms": "Mechanisms", "dynamics": "Training dynamics",
         "claims": "The paper's claims, checked", "reports": "Reports"}

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_atinuke_dir):
    runs = make_fixture_runs(tmp_path_factory.mktemp("browser_runs"), tiny_atinuke_dir)
    port = _free_port()
    env = dict(os.environ, ATINUKE_RUNS=str(runs), OMP_NUM_THREADS="1")
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
        else:
            pytest.fail(f"streamlit did not start on {url}; see {log.name}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_rendered(driver, title: str, timeout: float = 90.0, quiet: float = 2.0) -> None:
    """Wait until the page's title is shown and the page has stopped changing for ``quiet`` seconds.

    Streamlit streams elements while the script runs (skeletons, spinners, then charts), so a page is done
    when its title is there, no skeleton or spinner is left, and the DOM is unchanged for a while.
    """
    from selenium.webdriver.common.by import By

    deadline, last, since = time.time() + timeout, None, time.time()
    from selenium.common.exceptions import StaleElementReferenceException

    while time.time() < deadline:
        try:  # elements are replaced while the script reruns: a stale read just means "still changing"
            headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1")]
            busy = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSkeleton"], [data-testid="stSpinner"], '
                                                         '[data-testid="stStatusWidget"]')
            snapshot = driver.execute_script("return document.querySelector('[data-testid=\"stMain\"]')?.innerText || ''")
        except StaleElementReferenceException:
            last, since = None, time.time()
            time.sleep(0.25)
            continue
        if snapshot != last or busy or not any(title in h for h in headings):
            last, since = snapshot, time.time()
        elif time.time() - since >= quiet:
            return
        time.sleep(0.25)
    raise AssertionError(f"page {title!r} did not finish rendering in {timeout} s")


def test_every_page_renders_without_exception(server, browser):
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(server)  # the default page lives at the root URL
    for index, (path, title) in enumerate(PAGES.items()):
        if index:  # navigate as a user does, through the sidebar (one session, like a real visit)
            from selenium.webdriver.support import expected_conditions
            from selenium.webdriver.support.ui import WebDriverWait

            selector = (By.CSS_SELECTOR, f'[data-testid="stSidebarNav"] a[href$="/{path}"]')
            WebDriverWait(browser, 30).until(expected_conditions.element_to_be_clickable(selector)).click()
        _wait_rendered(browser, title)
        errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
        browser.save_screenshot(str(SCREENSHOTS / f"{path}.png"))
        assert not errors, f"{path}: {errors[0].text[:500]}"
        assert not browser.find_elements(By.XPATH, "//*[contains(text(), 'Page not found')]"), path
        assert (SCREENSHOTS / f"{path}.png").stat().st_size > 10_000
    links = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')
    assert len(links) == len(PAGES)


def test_every_page_opens_by_its_own_address_and_a_deep_link_keeps_its_selection(server, browser):
    """Typing a page's address (``/models``, the first page, included) opens that page, not "Page not found";
    ``/attention?model=minilm`` shows MiniLM alone and the address keeps the link after the page has run."""
    from selenium.webdriver.common.by import By

    for path, title in PAGES.items():
        browser.get(f"{server}/{path}")  # a new page load: what typing the address or following a link does
        _wait_rendered(browser, title)
        assert not browser.find_elements(By.XPATH, "//*[contains(text(), 'Page not found')]"), path
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), path
        assert browser.current_url.split("?")[0].rstrip("/").endswith(f"/{path}"), browser.current_url
    browser.get(f"{server}/attention?model=minilm")
    _wait_rendered(browser, PAGES["attention"])
    subheaders = [h.text for h in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] h3')]
    assert any("MiniLM" in h for h in subheaders) and not any("Atinuke" in h for h in subheaders), subheaders
    assert "model=minilm" in browser.current_url
