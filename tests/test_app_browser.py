"""The real page in headless Chromium (Selenium): upload a crop, see the calibrated risk and the
Grad-CAM overlay; add metadata, see the stack's risk and the single-lesion warning; upload a text
file, see a sentence and no traceback.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
skips, saying so, where they or the Python packages are missing. Never downloads a browser.
``ISIC_APP_SCREENSHOT=<file.png>`` keeps a screenshot of the answered page.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from app_fixtures import make_clinic_artifacts
from browser_fixtures import chrome, free_port, missing
from PIL import Image

from isicstack.app.config import AppConfig
from isicstack.app.page import build, launch, load_clinic
from isicstack.data.crops import CropStore

pytestmark = pytest.mark.slow
WAIT = 90  # seconds: the first request loads torch models on a busy CI box


@pytest.fixture(scope="module")
def page_url(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory):
    reason = missing("gradio")
    if reason:
        pytest.skip(reason)
    art = make_clinic_artifacts(mini_isic, mini_artifacts,
                                tmp_path_factory.mktemp("browser") / "artifacts", calibrate=True)
    port = free_port()
    cfg = AppConfig(artifacts=str(art), port=port, cpu_threads=1, n_boot=20)
    page = launch(build(load_clinic(cfg), cfg), cfg, block=False)
    yield f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture()
def browser():
    yield from chrome("1280,1000")


def _upload(driver, url: str, path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT)
    driver.get(url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]"))
               ).send_keys(str(path))
    wait.until(ec.text_to_be_present_in_element((By.ID, "upload"), path.stem))


def _score(driver, expect: str) -> str:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "#score"))).click()
    try:
        WebDriverWait(driver, WAIT).until(
            ec.text_to_be_present_in_element((By.ID, "result"), expect))
    except TimeoutException as err:  # say what the page showed instead
        shown = driver.find_element(By.ID, "result").text
        raise AssertionError(f"{expect!r} not in the page after {WAIT}s; it shows {shown!r}"
                             ) from err
    return driver.find_element(By.ID, "result").text


def _submit(driver, url: str, path: Path, expect: str) -> str:
    _upload(driver, url, path)
    return _score(driver, expect)


@pytest.fixture(scope="module")
def lesion(mini_isic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with CropStore(mini_isic / "train-image.hdf5") as store:
        jpeg = store.read(store.keys()[0])
    path = tmp_path_factory.mktemp("lesion") / "lesion.jpg"
    Image.fromarray(jpeg).save(path, quality=95)
    return path


def test_upload_shows_calibrated_risk_and_overlay(page_url: str, browser, lesion: Path,
                                                  tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    text = _submit(browser, page_url, lesion, "Calibrated risk:")
    assert "sensitivity" in text and "specificity" in text and "Threshold" in text
    assert "model score" in text and "Single lesion" not in text  # image-only: no patient
    img = WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#overlay img"))[0]
    assert img.get_attribute("src") and img.size["width"] > 50
    shot = os.environ.get("ISIC_APP_SCREENSHOT")
    browser.save_screenshot(shot or str(tmp_path / "page.png"))


def test_bad_uploads_get_a_sentence(page_url: str, browser, tmp_path: Path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image")
    text = _submit(browser, page_url, path, "Cannot score this upload")
    assert "notes.jpg: not a JPEG or PNG image" in text and "Traceback" not in text
    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 4000)).save(huge)  # 20 Mpx in a small file
    text = _submit(browser, page_url, huge, "Cannot score this upload")
    assert "5000 x 4000 pixels is more than the 16,000,000 allowed" in text


def test_metadata_switches_to_the_stack(page_url: str, browser, lesion: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _upload(browser, page_url, lesion)
    browser.find_element(By.CSS_SELECTOR, "#metadata .label-wrap").click()
    age = WebDriverWait(browser, WAIT).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "#meta-age_approx input")))
    age.send_keys("abc")
    assert "age (years): 'abc' is not a number" in _score(browser, "Cannot score")
    age.send_keys(Keys.CONTROL, "a")  # select and overwrite: clear() may skip the input event
    age.send_keys("61")
    text = _score(browser, "Scored by the stack")
    assert "logistic over" in text and "1 field(s) given" in text
    assert "Calibrated risk:" in text and "Single lesion:" in text
    assert "patient-relative features" in text and "cannot be computed from one lesion" in text


def test_patient_csv_scored_together(page_url: str, browser, mini_isic: Path, tmp_path: Path):
    import polars as pl
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    test = pl.read_csv(mini_isic / "test-metadata.csv", infer_schema=False)
    rows = test.filter(pl.col("patient_id") == test["patient_id"][0]).head(4)
    rows.write_csv(tmp_path / "lesions.csv")
    with CropStore(mini_isic / "test-image.hdf5") as store:
        crops = []
        for isic_id in rows["isic_id"]:
            Image.fromarray(store.read(isic_id)).save(tmp_path / f"{isic_id}.png")
            crops.append(str(tmp_path / f"{isic_id}.png"))
    wait = WebDriverWait(browser, WAIT)
    browser.get(page_url)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#patient .label-wrap"))).click()
    csv = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, "#patient-csv input[type=file]")))
    csv.send_keys(str(tmp_path / "lesions.csv"))
    browser.find_element(By.CSS_SELECTOR, "#patient-crops input[type=file]").send_keys(
        "\n".join(crops))
    wait.until(ec.text_to_be_present_in_element((By.ID, "patient-crops"), Path(crops[-1]).stem))
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#score-patient"))).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "patient-result"), "scored together"))
    text = browser.find_element(By.ID, "patient-result").text
    assert text.count("ISIC_") == 4 and "calibrated risk" in text and "Traceback" not in text
