"""Every app, end to end: its sample -> train (the app's tiny configuration) -> report ->
export -> the export called with raw input in a separate process that imports TensorFlow alone,
equal to the trained model -> `explain` and `predict` on files, answering what the export
computes.

Mechanics only: the quality of each app's default run is checked by its floors. Each app's raw
examples are declared once here; a new app adds one entry.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from apps import APP_NAMES, get_app
from apps.core.explain import methods_for
from apps.core.outputs import Generation
from tests.conftest import COLOURS, REPO_ROOT, cli_in_process, serve_in_separate_process


def mnist_examples(folder):
    from apps.core.sources.digits import SAMPLE_DIR, SAMPLE_TRAIN_SIZE, read_split

    images, labels = read_split(SAMPLE_DIR, "t10k")
    images, labels = images[SAMPLE_TRAIN_SIZE:][:8], labels[SAMPLE_TRAIN_SIZE:][:8]
    paths = []
    for index, image in enumerate(images):
        paths.append(folder / f"digit_{index}.png")
        paths[-1].write_bytes(tf.io.encode_png(image[..., np.newaxis]).numpy())
    return images, images.astype("float32")[..., np.newaxis], paths, [str(d) for d in labels]


def speech_examples(folder, corpus):
    from apps.core.sources.speech_commands import read_wav

    words = ("yes", "no", "left", "right", "stop")
    paths = [sorted((corpus / word).glob("*f3*.wav"))[0] for word in words]
    waveforms = np.stack([read_wav(path) for path in paths])
    return waveforms, waveforms, paths, list(words)


REVIEWS = {"An absolute delight, funny and warm from the first scene to the last.": "positive",
           "Dreary, overlong and badly acted; I regret buying a ticket.": "negative",
           "A boring, badly acted waste of time.": "negative"}


def sentiment_examples(folder):
    texts = np.array(list(REVIEWS), dtype=object)
    path = folder / "reviews.txt"
    path.write_text("\n".join(REVIEWS) + "\n\n")
    return texts, texts, [path], list(REVIEWS.values())


def forecast_examples(folder):
    from apps.forecast import SAMPLE_CSV

    values = np.array([float(line.split(",")[1]) for line in SAMPLE_CSV.read_text().split()[-60:]],
                      dtype="float32")
    windows = np.stack([values[start:start + 52] for start in range(0, 8, 2)])[..., np.newaxis]
    path = folder / "recent.csv"
    path.write_text("date,co2\n" + "".join(f"2001-{i},{v}\n" for i, v in enumerate(values[-52:])))
    return windows, windows, [path], None


def vision_examples(folder, image_folder):
    paths = [image_folder / colour / "3.png" for colour in COLOURS]
    pixels = np.stack([tf.image.resize(tf.io.decode_png(path.read_bytes()), (48, 48)).numpy()
                       for path in paths]).round().astype("uint8")
    model_input = tf.image.resize(pixels.astype("float32"), (32, 32)).numpy()
    return pixels, model_input, paths, list(COLOURS)


def segmentation_examples(folder):
    """Held-out scenes at the tiny model's size (32): the export resizes its answer back to the
    picture's size, here the same, so it equals the model's own output."""
    from apps.core.sources import digit_scenes
    from apps.core.sources.digits import SAMPLE_DIR, read_split

    images, labels = read_split(SAMPLE_DIR, "t10k")
    rng = np.random.default_rng(0)
    scenes = np.stack([digit_scenes.scene(images[8000 + 3 * i:8003 + 3 * i],
                                          labels[8000 + 3 * i:8003 + 3 * i], rng)[0]
                       for i in range(3)])
    pictures = tf.image.resize(scenes, (32, 32)).numpy().round().astype("uint8")
    paths = []
    for index, picture in enumerate(pictures):
        paths.append(folder / f"scene_{index}.png")
        paths[-1].write_bytes(tf.io.encode_png(picture).numpy())
    return pictures, pictures.astype("float32"), paths, None


EXAMPLES = {"mnist": mnist_examples, "speech": speech_examples, "sentiment": sentiment_examples,
            "forecast": forecast_examples, "vision": vision_examples,
            "segmentation": segmentation_examples}


# Apps whose export answers raw input with the model's own output; the generative app draws from
# seeds and the detection app answers boxes decoded from its model's maps, and each has its own
# end-to-end tests (tests/apps/test_generative.py, test_detection.py).
PREDICTING_APPS = [name for name in APP_NAMES if get_app(name).output.model_output_name
                   and not isinstance(get_app(name).output, Generation)]


def test_every_app_has_its_examples():
    assert set(EXAMPLES) == set(PREDICTING_APPS)


@pytest.fixture
def app_run(request, app_name, tiny_run, tmp_path):
    """(app name, config, metrics, raw batch, the model's input for it, files, their labels)
    for one app's shared tiny run."""
    config, metrics = tiny_run(app_name)
    if app_name in ("vision", "speech"):  # examples from the tiny run's own data
        examples = EXAMPLES[app_name](tmp_path, request.getfixturevalue(
            "image_folder" if app_name == "vision" else "small_speech_corpus"))
    else:
        examples = EXAMPLES[app_name](tmp_path)
    return app_name, config, metrics, *examples


@pytest.mark.parametrize("app_name", [pytest.param(name, marks=pytest.mark.xdist_group(name))
                                      for name in PREDICTING_APPS])
def test_sample_trains_reports_exports_and_serves_raw_input(app_run, tmp_path, capsys):
    name, config, metrics, raw, model_input, paths, expected = app_run
    app = get_app(name)
    run_dir = REPO_ROOT / config.run_dir
    for report_file in ("config.json", "history.csv", "metrics.json", "learning_curves.png",
                        "MODEL_CARD.md", "model.keras"):
        assert (run_dir / report_file).stat().st_size > 0, report_file
    assert metrics["export_path"].endswith("/1")
    assert "serving_default" in (run_dir / "MODEL_CARD.md").read_text()

    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=False)
    expected_output = model.predict(model_input, verbose=0)
    # A classifier's explanations are checked here on its tiny run; segmentation's, on a region
    # of its own, on its default run (tests/apps/test_segmentation.py).
    explained_classes = bool(app.explanation) and app.output.classifier
    signatures = ("serving_default", "explain") if explained_classes else ("serving_default",)
    called = serve_in_separate_process(metrics["export_path"], raw, tmp_path, signatures)
    served = called["serving_default"]
    np.testing.assert_allclose(served[app.output.model_output_name], expected_output, rtol=1e-4,
                               atol=1e-5)
    if app.output.class_names_in_export:
        labels = (REPO_ROOT / metrics["export_path"] / "assets" / "labels.txt").read_text().split()
        assert labels == metrics["class_names"]
    if "class_name" in served:
        assert [label.decode() for label in served["class_name"]] == [
            labels[index] for index in expected_output.argmax(axis=1)]

    if explained_classes:  # the report's figures, for each method, on the tiny run's examples
        assert set(metrics["explanations"]) == set(methods_for(model))
        assert metrics["explained_examples"] == config.explain_examples

    if explained_classes:  # the explain signature: same raw input, maps on its own grid
        explained = called["explain"]
        np.testing.assert_allclose(explained["probabilities"], expected_output, rtol=1e-4,
                                   atol=1e-5)
        if app.explanation.token_strings:  # one score per token, and the tokens
            assert explained["attributions"].shape == explained["tokens"].shape
            assert b"funny" in explained["tokens"][0]  # a word of the tiny vocabulary
        else:
            grid = (explained["explained_input"] if app.explanation.layer else raw).shape[1:3]
            assert explained["attributions"].shape == (len(raw), *grid)
        status, output, error = cli_in_process(
            capsys, name, "explain", "--model-dir", str(REPO_ROOT / config.export_dir),
            "--out", str(tmp_path / "why"), *map(str, paths[:2]))
        assert status == 0, error
        drawn = [json.loads(line)["out"] for line in output.splitlines()]
        assert len(drawn) == len(app.read_inputs(list(map(str, paths[:2])))[0])
        assert all(Path(path).stat().st_size > 0 for path in drawn)

    status, output, error = cli_in_process(
        capsys, name, "predict", "--model-dir", str(REPO_ROOT / config.export_dir),
        *map(str, paths))
    assert status == 0, error
    lines = [json.loads(line) for line in output.splitlines()]
    if expected is None:  # an answer per file, in order
        assert [line["input"] for line in lines] == list(map(str, paths))
    else:  # what the export answers for the same files (read alike by predict and the test)
        assert [line["class"] for line in lines] == [
            metrics["class_names"][index] for index in expected_output.argmax(axis=1)]
