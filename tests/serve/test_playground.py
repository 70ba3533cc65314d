"""The playground in a real headless browser (Debian's chromium and chromedriver, installed here when absent)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCREENSHOT_DIR = Path(os.environ.get("MOALIGN_SCREENSHOTS", "runs/screenshots"))


def _chromedriver() -> str:
    """The chromedriver path, installing Debian's ``chromium`` and ``chromium-driver`` when they are absent."""
    found = shutil.which("chromedriver")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium/chromedriver are not installed and this machine cannot install them (no apt-get, "
                    "or not root): apt-get install chromium chromium-driver")
    install = subprocess.run("apt-get update -q && apt-get install -y -q chromium chromium-driver", shell=True,
                             capture_output=True, text=True, timeout=900)
    found = shutil.which("chromedriver")
    if install.returncode != 0 or not found:
        pytest.skip(f"installing chromium failed: {install.stderr[-500:]}")
    return found


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    chromium = shutil.which("chromium")
    if chromium:
        options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(_chromedriver()), options=options)
    yield driver
    driver.quit()


def test_moving_a_slider_and_sending_shows_an_answer_and_marks_the_front(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    slider = wait.until(lambda d: d.find_element(By.ID, "w-helpful"))
    marker_before = wait.until(lambda d: d.find_element(By.ID, "current")).get_attribute("cx")
    slider.click()
    for _ in range(10):
        slider.send_keys(Keys.ARROW_RIGHT)  # a user dragging "helpful" up
    assert float(slider.get_attribute("value")) > 0.5
    assert "helpful 0." in browser.find_element(By.ID, "normalised").text
    assert browser.find_element(By.ID, "current").get_attribute("cx") != marker_before  # the marker followed
    browser.find_element(By.ID, "prompt").clear()
    browser.find_element(By.ID, "prompt").send_keys("Tell me about the river and the dog.")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-answered") == "1")
    answer = browser.find_element(By.ID, "answer").text
    assert answer.strip(), browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "status").text == ""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for folder in (tmp_path, SCREENSHOT_DIR):
        assert browser.save_screenshot(str(folder / "playground.png"))
    assert (tmp_path / "playground.png").stat().st_size > 10_000
