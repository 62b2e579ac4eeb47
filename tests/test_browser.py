"""report.html and the served page in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (no browser download). Skipped with the reason where either is missing (.ci/run
installs them when apt works). Screenshots go to the test's temp folder."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import DRIVE_ENV, synthetic_fundus

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
MODEL = Path(__file__).resolve().parents[1] / "models" / "small"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("no chromium / chromedriver on PATH (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1600",
    ):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def wait_for(browser, script: str, what: str, timeout: float = 60.0):
    """Poll a JavaScript expression until it is truthy (a wait, not a timed assertion)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(f"return {script}"), message=what
    )


def column(browser, index: int) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#results tbody tr'))"
        f".filter(tr => !tr.hidden).map(tr => tr.cells[{index}].dataset.sort)"
    )


def test_report_sorts_filters_and_draws_the_chart(browser, tmp_path):
    from fundus_edge.bench.columns import columns
    from fundus_edge.bench.html_report import write_report
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tests.test_html_report import make_record

    page = write_report(make_record(tmp_path))
    browser.get(page.as_uri())
    wait_for(browser, "document.querySelector('#chart .main-svg') !== null", "the chart did not render")
    # one marker per scored row (4 ok + the wrong_output row is not ok: 4), the front's 3 rings, the seed's
    # star
    assert (
        browser.execute_script("return document.querySelectorAll('#chart .scatterlayer .point').length")
        == 4 + 3 + 1
    )

    p50 = [c.field for c in columns("html")].index("p50_ms")
    browser.find_elements(By.CSS_SELECTOR, "#results thead th")[p50].click()
    keys = column(browser, p50)
    nums = [float(k) for k in keys if k]
    assert nums == sorted(nums) and keys[-1] == "", "ascending, the untimed row last"
    browser.find_elements(By.CSS_SELECTOR, "#results thead th")[p50].click()
    nums = [float(k) for k in column(browser, p50) if k]
    assert nums == sorted(nums, reverse=True)

    box = browser.find_element(By.ID, "filter")
    box.send_keys("openvino")
    engines = column(browser, 1)
    assert engines == ["openvino", "openvino"]
    box.clear()
    box.send_keys(" ")  # an input event with no words: every row again
    assert len(column(browser, 1)) == 7

    # hovering a marker names its row (Plotly's hover label)
    point = browser.find_elements(By.CSS_SELECTOR, "#chart .scatterlayer .trace:first-child .point")[0]
    ActionChains(browser).move_to_element(point).perform()
    label = wait_for(
        browser,
        "document.querySelector('#chart .hoverlayer .hovertext') && "
        "document.querySelector('#chart .hoverlayer .hovertext').textContent",
        "no hover label",
    )
    assert "small / " in label and "p50" in label
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_report_leads_with_the_machine_and_the_front_and_shows_each_note_once(browser, tmp_path):
    from fundus_edge.bench.html_report import write_report

    from tests.test_html_report import make_record

    page = write_report(make_record(tmp_path))
    browser.get(page.as_uri())
    wait_for(browser, "document.querySelector('#chart .main-svg') !== null", "the chart did not render")
    top = browser.execute_script(
        "return ['#machine', '#targets', '#chart', '#front', '#results', '#notes']"
        ".map(s => document.querySelector(s).getBoundingClientRect().top + window.scrollY)"
    )
    assert top == sorted(top), f"machine, targets, chart, front, table, notes: {top}"
    text = browser.execute_script("return document.body.textContent")
    assert text.count("round p50s 30.1-41.0") == 1 and text.count("pir failed (boom)") == 1
    # the table scrolls in its own frame; its variant column stays put while it does
    frame = browser.find_element("css selector", ".tablewrap")
    assert browser.execute_script("return getComputedStyle(arguments[0]).overflowX", frame) == "auto"
    first = "return document.querySelector('#results tbody td').getBoundingClientRect().left"
    left = browser.execute_script(first)
    browser.execute_script("arguments[0].scrollLeft = 600", frame)
    assert browser.execute_script("return arguments[0].scrollLeft", frame) > 0, (
        "the table is wider than its frame"
    )
    assert browser.execute_script(first) == left
    heights = browser.execute_script(
        "return Array.from(document.querySelectorAll('#results tbody tr')).map(tr => tr.offsetHeight)"
    )
    assert len(set(heights)) == 1, f"rows of one height: {heights}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    """uvicorn on a loopback port in this process, over models/small."""
    uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fundus_edge.runtime.predictor import Predictor
    from fundus_edge.serve.app import create_app

    if not (MODEL / "manifest.yaml").is_file():
        pytest.fail("models/small is not shipped")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Predictor.load(MODEL, backend="onnxruntime", threads=1)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        pytest.fail("uvicorn did not start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(30)


def test_served_page_shows_an_overlay(browser, served, tmp_path):
    from selenium.webdriver.common.by import By

    drive = os.environ.get(DRIVE_ENV)
    image = Path(drive) / "test" / "images" / "01_test.tif" if drive else None
    if image is None or not image.is_file():  # a DRIVE-sized stand-in
        image = tmp_path / "eye_584x565.png"
        Image.fromarray(synthetic_fundus(5, 584, 565)[0]).save(image)
    browser.get(served + "/")
    wait_for(
        browser,
        "document.getElementById('model').textContent.includes('sha256')",
        "the model's facts did not load",
    )
    browser.find_element(By.ID, "file").send_keys(str(image))
    browser.find_element(By.ID, "go").click()
    wait_for(
        browser,
        "document.getElementById('overlay').complete && document.getElementById('overlay').naturalWidth > 0",
        "no overlay shown",
    )
    assert browser.execute_script(
        "return [document.getElementById('overlay').naturalWidth, "
        "document.getElementById('overlay').naturalHeight]"
    ) == [565, 584]
    table = browser.find_element(By.ID, "numbers").text
    assert "vessel share" in table and "% of the field of view" in table and "onnxruntime" in table
    assert browser.find_element(By.ID, "status").text == f"{image.name}: done"
    browser.save_screenshot(str(tmp_path / "served.png"))

    # a bad file: the server's one-line error shows on the page
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all" * 20)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    browser.find_element(By.ID, "go").click()
    wait_for(browser, "document.getElementById('status').className === 'error'", "no error shown")
    assert browser.find_element(By.ID, "status").text.startswith("400: broken.png: not a readable image")
