"""`python -m apps serve`: TF Serving's REST API over a folder of exports, in a real server
process on 127.0.0.1, called the way a TF Serving client calls it."""

import base64
import concurrent.futures
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import tensorflow as tf

from apps import get_app
from apps.core import DataSplits, resolve_config
from apps.core.export import export_saved_model
from apps.core.sources import texts
from serving import wait_ready
from tests.conftest import REPO_ROOT, run_cli
from tests.core.test_multiworker import free_ports

MAX_REQUEST_MB = 1
# One worker runs them all, so the module's server (six exports, one process) starts once.
pytestmark = pytest.mark.xdist_group("server")


def export_untrained(app_name: str, root, train_inputs=None, context=None, facts=None,
                     explained=True, adjust=None, **options):
    """An export of the app's model as built (untrained: the server is what is tested); the
    preprocessing its builder adapts is adapted on `train_inputs`; `explained`: with the explain
    signatures; `adjust(model)` changes the built model first."""
    app = get_app(app_name)
    config = resolve_config(app, **options)
    class_names = [str(index) for index in range(
        {"mnist": 10, "vision": 10, "segmentation": 11}.get(app_name, 12))]
    if app_name == "sentiment":
        class_names = ["negative", "positive"]
    train = None if train_inputs is None else tf.data.Dataset.from_tensor_slices(
        (train_inputs, np.zeros(len(train_inputs), np.int64)))
    splits = DataSplits(train=train, test=None, source="none", class_names=class_names,
                        context=context or {}, facts=facts or {})
    model = app.build_model(config, splits)
    if adjust:
        adjust(model)
    return export_saved_model(model, app,
                              class_names if app.output.class_names_in_export else None,
                              root / app_name, explained)


def write_half_plus_three(version_dir) -> None:
    """The toy model of TF Serving's REST API documentation and test data: y = 0.5 x + 3."""

    class HalfPlusThree(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, "x")])
        def serve(self, x):
            return {"y": 0.5 * x + 3.0}

    module = HalfPlusThree()
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.serve})


def confident_heatmaps(model) -> None:
    """An untrained detector whose heatmaps start near 0.95 instead of 0.01 (the bias of their
    last convolution raised), so its peaks score above the export's threshold: boxes to draw."""
    from zoo.detection import PRIOR

    heatmaps = model.get_layer("heatmaps")
    kernel, bias = heatmaps.get_weights()
    heatmaps.set_weights([kernel, bias + np.log(0.95 / 0.05) - np.log(PRIOR / (1 - PRIOR))])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server process over untrained exports of the eight predicting apps (the explain
    signatures where the tests call them: mnist's and vision's)."""
    root = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(0)
    export_untrained("mnist", root, model="mnist_mlp")
    export_untrained("vision", root, model="small_cnn", image_size=32)
    export_untrained("sentiment", root, np.array(["a fine film", "a dull film"]),
                     explained=False, model="transformer_classifier")
    export_untrained("speech", root, rng.normal(0, 0.1, (4, 16000)).astype("float32"),
                     explained=False)
    export_untrained("forecast", root, context={"series": np.arange(60, dtype="float32")},
                     facts={"split_steps": [40, 50]}, model_arg=["units=8"])
    export_untrained("segmentation", root, explained=False, image_size=16,
                     model_arg=["filters=(4, 8)"])
    export_untrained("detection", root, explained=False, adjust=confident_heatmaps,
                     image_size=16, model_arg=["filters=(4, 8)", "head_filters=4"])
    export_untrained("translate", root, {"text": np.array(["one", "two hundred"]),
                                         "target": np.array(["uno", "doscientos"])},
                     model_arg=["embedding_dim=8", "num_heads=2", "feed_forward_dim=8",
                                "num_layers=1"])
    export_untrained("textgen", root, context={"tokenizer_proto": texts.sentence_piece_proto(
                         texts.read_documents(texts.FORTUNES_DIR / "fortunes"), 400)},
                     model_arg=["embedding_dim=8", "num_heads=2", "feed_forward_dim=8",
                                "num_layers=1"])
    write_half_plus_three(root / "half_plus_three" / "123")
    port = free_ports(1)[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "apps", "serve", "--model-dir", str(root), "--port", str(port),
         "--poll-seconds", "0.2", "--max-request-mb", str(MAX_REQUEST_MB)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1/models"
    try:
        wait_ready(f"{url}/mnist")
        yield url, root
    finally:
        process.terminate()
        process.wait(timeout=30)


def digits(count: int) -> np.ndarray:
    from apps.core.sources.digits import SAMPLE_DIR, read_split

    return read_split(SAMPLE_DIR, "t10k")[0][:count]


def direct(version_dir, signature: str, **inputs) -> dict:
    outputs = tf.saved_model.load(str(version_dir)).signatures[signature](
        **{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def test_the_documented_half_plus_three_example_answers_as_documented(server):
    url, _ = server
    assert requests.get(f"{url}/half_plus_three").json() == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]}
    assert requests.post(f"{url}/half_plus_three:predict",
                         json={"instances": [1.0, 2.0, 5.0]}).json() == {
        "predictions": [3.5, 4.0, 5.5]}
    assert requests.post(f"{url}/half_plus_three/versions/123:predict",
                         json={"inputs": {"x": [1.0, 2.0]}}).json() == {"outputs": [3.5, 4.0]}
    answer = requests.post(f"{url}/half_plus_three:predict",
                           data='{"instances": [NaN, Infinity]}').json()["predictions"]
    assert np.isnan(answer[0]) and answer[1] == float("inf")
    missing = requests.post(f"{url}/half:predict", json={"instances": [1.0, 5.0]})
    assert missing.status_code == 404
    assert missing.json()["error"].startswith("Servable not found for request: Latest(half)")


def test_status_and_metadata_as_tf_serving_reports_them(server):
    url, _ = server
    assert requests.get(f"{url}/mnist").json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    metadata = requests.get(f"{url}/vision/metadata").json()
    assert metadata["model_spec"] == {"name": "vision", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_bytes", "explain", "explain_saliency"} <= set(signatures)
    assert set(signatures["explain"]["outputs"]) == {"attributions", "probabilities"}
    pixels = signatures["serving_default"]["inputs"]["pixels"]
    assert pixels["dtype"] == "DT_UINT8"
    assert [dim["size"] for dim in pixels["tensor_shape"]["dim"]] == ["-1", "-1", "-1", "3"]
    assert set(signatures["serving_default"]["outputs"]) == {"probabilities", "class_id",
                                                             "class_name"}
    assert signatures["serving_bytes"]["method_name"] == "tensorflow/serving/predict"


def test_row_and_columnar_requests_answer_what_the_export_computes(server):
    url, root = server
    images = digits(3)
    expected = direct(root / "mnist" / "1", "serving_default", pixels=images)

    rows = requests.post(f"{url}/mnist:predict", json={"instances": images.tolist()})
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert len(predictions) == 3 and set(predictions[0]) == {"probabilities", "class_id",
                                                             "class_name"}
    np.testing.assert_allclose([row["probabilities"] for row in predictions],
                               expected["probabilities"], rtol=1e-5, atol=1e-6)
    assert [row["class_name"] for row in predictions] == [
        name.decode() for name in expected["class_name"]]

    columns = requests.post(f"{url}/mnist/versions/1:predict",
                            json={"signature_name": "serving_default",
                                  "inputs": {"pixels": images.tolist()}}).json()["outputs"]
    np.testing.assert_allclose(columns["probabilities"], expected["probabilities"], rtol=1e-5,
                               atol=1e-6)
    assert columns["class_id"] == expected["class_id"].tolist()

    why = requests.post(f"{url}/mnist:predict", json={"signature_name": "explain",
                                                      "instances": images.tolist()}).json()
    assert np.array(why["predictions"][0]["attributions"]).shape == (28, 28)


def test_bytes_travel_as_b64(server):
    url, root = server
    png = tf.io.encode_png(np.full((40, 30, 3), 200, np.uint8)).numpy()
    response = requests.post(f"{url}/vision:predict", json={
        "signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(png).decode()}]})
    assert response.status_code == 200, response.text
    expected = direct(root / "vision" / "1", "serving_bytes", image_bytes=[png])
    np.testing.assert_allclose(response.json()["predictions"][0]["probabilities"],
                               expected["probabilities"][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method, path, body, status, message", [
    ("GET", "/nosuch", None, 404, "Servable not found for request: Latest(nosuch)"),
    ("GET", "/mnist/versions/7", None, 404, "Versions loaded: 1"),
    ("POST", "/mnist:predict", b"{not json", 400, "not valid JSON"),
    ("POST", "/mnist:predict", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400,
     "nests its JSON arrays or objects too deep"),
    ("POST", "/mnist:predict", b'{"instances": ' + b"[" * 900 + b"0" + b"]" * 900 + b"}", 400,
     "cannot be read as DT_UINT8"),
    ("POST", "/mnist:predict", {"pixels": []}, 400, "exactly one of \"instances\""),
    ("POST", "/vision:predict", {"instances": [[[1, 2]]]}, 400, "expected shape [-1, -1, -1, 3]"),
    ("POST", "/mnist:predict", {"instances": [["a"] * 784]}, 400, "cannot be read as DT_UINT8"),
    ("POST", "/mnist:predict", {"instances": [[300] * 784]}, 400, "whole numbers in [0, 255]"),
    ("POST", "/mnist:predict", {"instances": [[1, 2]]}, 400,
     "Input to reshape is a tensor with 2 values, but the requested shape requires a multiple"),
    ("POST", "/mnist:predict", {"signature_name": "classify", "instances": [[0] * 784]}, 400,
     "signature_name 'classify' is not in version 1"),
    ("POST", "/vision:predict", {"signature_name": "serving_bytes",
                                 "instances": [{"b64": "%%%"}]}, 400, "invalid base64"),
    ("POST", "/mnist:predict", {"instances": [[0] * 784] * 800}, 413, "--max-request-mb 1"),
    ("GET", "/mnist:predict", None, 405, "takes a POST"),
    ("POST", "/mnist:classify", {}, 404, "only :predict"),
    ("POST", "/textgen:predict", {"instances": [{"prompt": "The", "max_new_tokens": 0,
                                                 "temperature": 1.0, "top_k": 0, "seed": 1}]},
     400, "max_new_tokens must be at least 1"),
])
def test_bad_requests_get_a_json_error_and_the_server_stays_up(server, method, path, body,
                                                                  status, message):
    url, _ = server
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
    response = requests.request(method, url + path, data=data)
    assert response.status_code == status, response.text
    assert message in response.json()["error"] and "\n" not in response.json()["error"]
    assert requests.post(f"{url}/mnist:predict",
                         json={"instances": digits(1).tolist()}).status_code == 200


def test_a_new_version_replaces_the_old_without_a_restart_but_a_half_copied_one_never(server):
    """Versions 124 (copied in and renamed, as `export` writes) and 125 (no saved_model.pb yet)
    appear beside 123: 124 is loaded and, as in TF Serving, 123 unloaded; 125 never."""
    url, root = server
    model = root / "half_plus_three"
    partial = model / "125"
    shutil.copytree(model / "123" / "variables", partial / "variables")
    write_half_plus_three(model / ".124-copying")
    (model / ".124-copying").rename(model / "124")
    deadline = time.monotonic() + 30
    while requests.get(f"{url}/half_plus_three").json()["model_version_status"][0]["version"] != "124":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1)  # several polls: version 125 stays out while it lacks its saved_model.pb
    versions = [entry["version"] for entry in
                requests.get(f"{url}/half_plus_three").json()["model_version_status"]]
    assert versions == ["124"]
    assert requests.post(f"{url}/half_plus_three:predict",
                         json={"instances": [1.0]}).json() == {"predictions": [3.5]}
    old = requests.post(f"{url}/half_plus_three/versions/123:predict", json={"instances": [1.0]})
    assert old.status_code == 404 and "Versions loaded: 124" in old.json()["error"]


def test_concurrent_callers_share_batches(server):
    url, root = server
    images = digits(32)
    expected = direct(root / "mnist" / "1", "serving_default", pixels=images)["probabilities"]

    def call(index):
        response = requests.post(f"{url}/mnist/versions/1:predict",
                                 json={"instances": images[index:index + 1].tolist()})
        return response.json()["predictions"][0]["probabilities"], int(
            response.headers["X-Batch-Size"])

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(call, range(32)))
    np.testing.assert_allclose([probabilities for probabilities, _ in answers], expected,
                               rtol=1e-5, atol=1e-6)
    assert max(batch for _, batch in answers) > 1


def test_serve_names_a_missing_folder_in_flags(tmp_path):
    result = run_cli("serve", "--model-dir", str(tmp_path / "none"))
    assert result.returncode == 2
    assert f"--model-dir {tmp_path / 'none'}: no such folder" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1200,3000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def test_the_demo_page_calls_every_model_from_a_real_browser(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from apps.core.sources.spoken_words import write_wav

    url, _ = server
    browser.get(url.removesuffix("/v1/models") + "/")
    WebDriverWait(browser, 30).until(
        lambda driver: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))

    def section(name):
        return browser.find_element(By.ID, f"model-{name}")

    def predicted(name, selector):
        section(name).find_element(By.CLASS_NAME, "predict").click()
        WebDriverWait(browser, 30).until(
            lambda driver: section(name).find_elements(By.CSS_SELECTOR, f"{selector}, .error"))
        assert not section(name).find_elements(By.CLASS_NAME, "error"), section(name).text
        return section(name).find_element(By.CSS_SELECTOR, selector)

    canvas = section("mnist").find_element(By.CSS_SELECTOR, "canvas.digit")
    ActionChains(browser).move_to_element_with_offset(canvas, 0, -80).click_and_hold() \
        .move_by_offset(0, 160).release().perform()  # a "1"
    assert predicted("mnist", "[data-class-name]").get_attribute("data-class-name") in \
        [str(digit) for digit in range(10)]
    assert len(section("mnist").find_elements(By.CLASS_NAME, "probability")) == 5

    picture = tmp_path / "picture.png"
    picture.write_bytes(tf.io.encode_png(np.full((40, 30, 3), 200, np.uint8)).numpy())
    section("vision").find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(picture))
    expected = requests.post(f"{url}/vision:predict", json={
        "signature_name": "serving_bytes",
        "instances": [{"b64": base64.b64encode(picture.read_bytes()).decode()}]}).json()
    assert predicted("vision", "[data-class-name]").get_attribute("data-class-name") == \
        expected["predictions"][0]["class_name"]

    review = "A warm, funny and moving film."
    section("sentiment").find_element(By.TAG_NAME, "textarea").send_keys(review)
    expected = requests.post(f"{url}/sentiment:predict", json={"instances": [review]}).json()
    assert predicted("sentiment", "[data-class-name]").get_attribute("data-class-name") == \
        expected["predictions"][0]["class_name"]

    clip = tmp_path / "clip.wav"
    write_wav(clip, 0.3 * np.sin(np.linspace(0, 2000, 16000)))
    section("speech").find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(clip))
    assert predicted("speech", "[data-class-name]").get_attribute("data-class-name")

    history = [float(value) for value in range(52)]
    section("forecast").find_element(By.TAG_NAME, "textarea").send_keys(
        ", ".join(map(str, history)))
    forecast = json.loads(predicted("forecast", "[data-forecast]").get_attribute("data-forecast"))
    expected = requests.post(f"{url}/forecast:predict",
                             json={"instances": [[[value] for value in history]]}).json()
    np.testing.assert_allclose(forecast, expected["predictions"][0], rtol=1e-5)
    assert section("forecast").find_elements(By.CSS_SELECTOR, "canvas.plot")

    scene = tmp_path / "scene.png"  # scaled to 256 pixels wide by the page before it is sent
    scene.write_bytes(tf.io.encode_png(np.full((100, 512, 3), 200, np.uint8)).numpy())
    section("segmentation").find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(
        str(scene))
    pixels = json.loads(predicted("segmentation", "[data-mask-pixels]").get_attribute(
        "data-mask-pixels"))
    assert sum(pixels.values()) == 256 * 50
    assert section("segmentation").find_elements(By.CSS_SELECTOR, "canvas.mask")

    section("detection").find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(scene))
    drawn = json.loads(predicted("detection", "[data-boxes]").get_attribute("data-boxes"))
    served = requests.post(f"{url}/detection:predict", json={
        "signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(
            tf.io.encode_png(tf.image.resize(tf.io.decode_png(scene.read_bytes()), (50, 256))
                             .numpy().round().astype(np.uint8)).numpy()).decode()}]}).json()
    answer = served["predictions"][0]
    assert 0 < len(drawn) == answer["num_detections"]  # the boxes above the threshold, drawn
    assert [box["class_name"] for box in drawn] == answer["class_name"][:len(drawn)]
    assert all(0 <= x_min <= x_max <= 256 and 0 <= y_min <= y_max <= 50
               for x_min, y_min, x_max, y_max in (box["box"] for box in drawn))
    assert section("detection").find_elements(By.CSS_SELECTOR, "canvas.boxes")

    section("textgen").find_element(By.TAG_NAME, "textarea").send_keys("The cat")
    expected = requests.post(f"{url}/textgen:predict", json={"instances": [
        {"prompt": "The cat", "max_new_tokens": 40, "temperature": 0.8, "top_k": 40,
         "seed": 0}]}).json()
    assert predicted("textgen", "[data-generated]").get_attribute("data-generated") == \
        expected["predictions"][0]["text"]

    sentence = "two hundred and one"
    section("translate").find_element(By.TAG_NAME, "textarea").send_keys(sentence)
    expected = requests.post(f"{url}/translate:predict", json={"instances": [sentence]}).json()
    assert predicted("translate", "[data-translation]").get_attribute("data-translation") == \
        expected["predictions"][0]
