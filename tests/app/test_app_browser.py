"""`vidrec app` in a real browser (issue 26): headless Chromium uploads a generated video, and the page
shows the class the model predicts, the per-window timeline and the marked video.

Skips with the reason where Chromium, its driver or Selenium is missing (`make test` installs them:
the Makefile's `browser` target). With ``VIDREC_APP_SCREENSHOT=path.png`` the test saves the page there
(docs/images/app.png is taken this way), so a normal run never rewrites a tracked file.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no Chromium / chromedriver on this machine (`make browser` installs Debian's as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip: .[test])")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1300"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(DRIVER))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(served, tmp_path):
    """The app `vidrec app RUNS` serves (the same `build_app` and uvicorn), in a thread of this process:
    the test does not pay for a second import of torch and Gradio."""
    import uvicorn

    from vidrec.app.catalog import Catalog
    from vidrec.app.server import Workspace, build_app

    app = build_app(Catalog.from_sources([served["runs"]]), Workspace(tmp_path), max_bytes=50_000_000)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the app did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{server.config.port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_browser_uploads_a_video_and_sees_class_and_timeline(served, app_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser()
    try:
        driver.get(app_url)
        wait = WebDriverWait(driver, 150)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        # a file that is no video: one line on the page, naming the upload
        notes = tmp_path / "notes.mp4"
        notes.write_text("not a video\n")
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(notes))
        wait.until(lambda d: "notes" in d.find_element(By.ID, "upload").text)
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: "error" in _text(d, "status"))
        line = _text(driver, "status")
        assert "\n" not in line and "'notes.mp4' is not a video vidrec can decode" in line, line
        assert "vidrec-app" not in line and str(tmp_path) not in line  # no server paths shown
        driver.find_element(By.CSS_SELECTOR, "#upload button[aria-label=Clear]").click()
        # the generated video of class orbit_ccw: its class, the timeline, the marked video
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        video = served["videos"]["orbit_ccw"]
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(video))
        wait.until(lambda d: video.stem in d.find_element(By.ID, "upload").text)  # uploaded
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#topk") and "orbit_ccw" in _text(d, "topk"))
        status = _text(driver, "status")
        assert "error" not in status and "orbit_ccw" in status, status
        # the top class is the label's heading; the timeline table has one row per window
        assert _text(driver, "topk").split("\n")[1] == "orbit_ccw", _text(driver, "topk")  # after "top-5"
        cells = _text(driver, "timeline").split("\n")
        cells = cells[cells.index("p") + 1 :]  # after the header: from s, to s, class, p per window
        rows = [cells[i : i + 4] for i in range(0, len(cells), 4)]
        assert [r[:3] for r in rows] == [
            ["0", "1", "orbit_ccw"],
            ["0.5", "1.5", "orbit_ccw"],
            ["1", "2", "orbit_ccw"],
        ]
        plot = driver.find_element(By.CSS_SELECTOR, "#timeline-plot img")
        assert plot.get_attribute("naturalWidth") not in (None, "0")
        assert driver.find_element(By.CSS_SELECTOR, "#result-video video").get_attribute("src")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gradcam-sheet img"))
        if os.environ.get("VIDREC_APP_SCREENSHOT"):
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1400, min(height + 40, 4000))  # the whole page in one picture
            time.sleep(1)  # let the images finish drawing
            driver.save_screenshot(os.environ["VIDREC_APP_SCREENSHOT"])
    finally:
        driver.quit()


def _text(driver, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, elem_id).text
