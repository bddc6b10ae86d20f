"""The web demo: the JSON API's answers to bad input (in process), the real server on
127.0.0.1 under concurrent requests, and the page driven in headless Chromium."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from scripts_helper import ROOT, free_port

from multimodal.data.sample import SAMPLE_DIR
from multimodal.serving.client import multipart

IMAGE = os.path.join(SAMPLE_DIR, "images", min(os.listdir(os.path.join(SAMPLE_DIR, "images"))))
with open(IMAGE, "rb") as _f:
    JPEG = _f.read()
LIMIT = 400_000  # the upload limit of the in-process app


@pytest.fixture(scope="module")
def run_dir(smoke_run):
    return smoke_run


@pytest.fixture(scope="module")
def client(run_dir):
    from fastapi.testclient import TestClient

    from multimodal.serving.app import create_app
    from multimodal.serving.predictor import Predictor

    app = create_app(Predictor.open(run_dir), max_upload_bytes=LIMIT, max_pixels=4_000_000,
                     saliency_steps=4)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def test_a_good_request(client):
    r = client.post("/predict", files={"image": ("x.jpg", JPEG, "image/jpeg")},
                    data={"age": "54", "sex": "female", "localization": "back"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["top_class"] in body["probabilities"]
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert body["metadata"] == {"age": 54.0, "sex": "female", "localization": "back"}
    assert body["explanation"]["method"] == "metadata_masking"
    assert body["saliency_png"].startswith("data:image/png;base64,")
    assert "not a diagnosis" in body["disclaimer"]
    plain = client.post("/predict", files={"image": ("x.jpg", JPEG, "image/jpeg")},
                        data={"saliency": "false", "explain": "false"}).json()
    assert "saliency_png" not in plain and "explanation" not in plain
    assert plain["metadata"] == {"age": None, "sex": None, "localization": None}


def _bomb() -> bytes:
    return _encoded(Image.new("1", (4000, 4000)), "PNG")  # 16 MP in ~2 kB


def _odd(mode: str) -> bytes:
    rgb = Image.open(IMAGE).convert("RGB").resize((60, 45))
    if mode == "I;16":
        return _encoded(Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257),
                        "PNG")
    return _encoded(rgb.convert(mode), "TIFF" if mode == "CMYK" else "PNG")


BAD = [  # (name, files, form data, status, words the error must hold)
    ("text file", {"image": ("notes.txt", b"just some text", "text/plain")}, {}, 415,
     ["not an image"]),
    ("pdf renamed .jpg", {"image": ("x.jpg", b"%PDF-1.7\n1 0 obj", "image/jpeg")}, {}, 415,
     ["not an image"]),
    ("empty file", {"image": ("x.jpg", b"", "image/jpeg")}, {}, 400, ["empty"]),
    ("truncated jpeg", {"image": ("x.jpg", JPEG[: len(JPEG) // 2], "image/jpeg")}, {}, 400,
     ["truncated"]),
    ("decompression bomb", {"image": ("x.png", _bomb(), "image/png")}, {}, 413, ["pixels"]),
    ("oversize upload", {"image": ("x.jpg", JPEG + b"\0" * LIMIT, "image/jpeg")}, {}, 413,
     ["upload limit"]),
    ("unknown category", {"image": ("x.jpg", JPEG, "image/jpeg")}, {"sex": "femal"}, 422,
     ["'femal'", "['female', 'male']"]),
    ("unknown site", {"image": ("x.jpg", JPEG, "image/jpeg")}, {"localization": "moon"}, 422,
     ["'moon'", "'back'"]),
    ("age not a number", {"image": ("x.jpg", JPEG, "image/jpeg")}, {"age": "old"}, 422,
     ["age", "not a number"]),
    ("age out of range", {"image": ("x.jpg", JPEG, "image/jpeg")}, {"age": "-3"}, 422,
     ["age", "out of range"]),
    ("missing image", {}, {"age": "50"}, 422, ["missing field 'image'"]),
    ("unknown field", {"image": ("x.jpg", JPEG, "image/jpeg")}, {"gender": "f"}, 422,
     ["unknown field", "'gender'", "'age', 'sex', 'localization'"]),
    ("bad flag", {"image": ("x.jpg", JPEG, "image/jpeg")}, {"saliency": "maybe"}, 422,
     ["saliency"]),
]


@pytest.mark.parametrize("name, files, data, status, needles", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_4xx(client, name, files, data, status, needles):
    r = client.post("/predict", files=files or None, data=data)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    for needle in needles:
        assert needle in message, message
    assert client.get("/health").json() == {"status": "ok"}  # and the server goes on


def test_no_multipart_body_and_path_like_names(client):
    r = client.post("/predict", content=b'{"image": "x"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "image" in r.json()["error"]
    r = client.post("/predict", headers={"content-length": "999999999999"}, content=b"")
    assert r.status_code == 413
    # a file name is never a path: traversal names change nothing
    r = client.post("/predict", files={"image": ("../../etc/passwd", JPEG, "image/jpeg")})
    assert r.status_code == 200


@pytest.mark.parametrize("mode", ["CMYK", "RGBA", "LA", "L", "P", "I;16", "1"])
def test_odd_image_modes_are_served(client, mode):
    r = client.post("/predict", files={"image": ("x", _odd(mode), "application/octet-stream")},
                    data={"saliency": "false"})
    assert r.status_code == 200, r.text


def test_openapi_describes_the_form(client):
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/model", "/health"} <= set(spec["paths"])
    ref = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema = spec["components"]["schemas"][ref["schema"]["$ref"].split("/")[-1]]
    assert schema["required"] == ["image"]
    assert schema["properties"]["sex"]["enum"] == ["female", "male"]
    assert {"age", "localization", "saliency", "explain"} <= set(schema["properties"])
    model = client.get("/model").json()
    assert model["metadata"]["sex"]["categories"] == ["female", "male"]
    assert "path" not in model["source"]
    page = client.get("/").text
    assert "not a diagnosis" in page and '"upper extremity"' in page


# -- the real server, on 127.0.0.1 ---------------------------------------------------------




def post(url: str, fields: dict, image: bytes = JPEG, timeout: float = 120):
    body, boundary = multipart(fields, image)
    req = urllib.request.Request(url + "/predict", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(run_dir):
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "serve.py"),
                             "--checkpoint", run_dir, "--host", "127.0.0.1", "--port", str(port),
                             "--max-upload-mb", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve.py exited {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("serve.py did not answer /health within 240 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_concurrent_requests_are_served_alike(server):
    fields = {"age": "61", "sex": "male", "localization": "face"}
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: post(server, fields), range(32)))
    assert all(status == 200 for status, _ in answers), answers[:2]
    first = answers[0][1]["probabilities"]
    for _, body in answers:
        assert body["probabilities"] == pytest.approx(first, abs=1e-6)
    status, body = post(server, {}, JPEG + b"\0" * (2 * 2**20))  # over --max-upload-mb 1
    assert status == 413 and "upload limit" in body["error"]
    status, _ = post(server, fields)
    assert status == 200


def _chromium():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        message = "needs Debian's chromium and chromium-driver (.ci/run installs them)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1180,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_page_in_a_real_browser(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = _chromium()
    try:
        driver.get(server + "/")
        assert "not a diagnosis" in driver.find_element(By.ID, "disclaimer").text
        driver.find_element(By.ID, "image").send_keys(IMAGE)
        driver.find_element(By.ID, "field-age").send_keys("54")
        Select(driver.find_element(By.ID, "field-sex")).select_by_visible_text("female")
        Select(driver.find_element(By.ID, "field-localization")).select_by_value("back")
        driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 120).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", \
            driver.find_element(By.ID, "error").text
        top = driver.find_element(By.ID, "top-class").text
        bars = [e.get_attribute("data-cls")
                for e in driver.find_elements(By.CSS_SELECTOR, "#bars .bar")]
        fields = [e.get_attribute("data-field")
                  for e in driver.find_elements(By.CSS_SELECTOR, "#contributions .contrib")]
        saliency = driver.find_element(By.ID, "saliency")
        loaded = driver.execute_script("return arguments[0].complete && "
                                       "arguments[0].naturalWidth", saliency)
        note = driver.find_element(By.ID, "result-note").text
        shot = os.environ.get("MULTIMODAL_SCREENSHOT") or str(tmp_path / "result.png")
        driver.save_screenshot(shot)
    finally:
        driver.quit()
    status, api = post(server, {"age": "54", "sex": "female", "localization": "back"})
    assert status == 200 and top == api["top_class"]
    assert sorted(bars) == sorted(api["probabilities"]) and bars[0] == top  # sorted, top first
    assert fields == ["age", "sex", "localization", "all metadata"]
    assert loaded and loaded > 0
    assert "sex = female" in note and "not a diagnosis" in note
    assert os.path.getsize(shot) > 10_000
