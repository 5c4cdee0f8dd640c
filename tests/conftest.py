"""Shared fixtures: quiet TensorFlow, scratch run/export folders, fresh-process runners, and the
training runs that several tests inspect (one run per configuration for the whole session)."""

import json
import os
import subprocess
import sys
from pathlib import Path


def _share_the_cores_between_workers():
    """Each pytest-xdist worker's TensorFlow (and the processes its tests start) gets its share
    of the cores for its op thread pools, read before TensorFlow starts. Left to itself each
    worker sizes its pools to every core: two workers training at once on two cores then took
    73 s where one thread each took 66 s (three epochs of the segmentation default, twice)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)


_share_the_cores_between_workers()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402 (after the thread settings TensorFlow reads when it starts)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import zoo  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items):
    """Tests marked `long` first: pytest-xdist hands out ungrouped tests in collection order, so
    a long one collected last would keep one worker busy after the other has finished."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def run_python(code: str, *args: str, env: dict | None = None, timeout: int = 600):
    """Runs `code` in a fresh Python process at the repository root; returns the completed run."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def run_cli(*args: str, timeout: int = 600):
    """`python -m apps ARGS...` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "apps", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def cli_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """`python -m apps ARGS...` run in this process: (exit status, stdout, stderr). For errors
    that must come before any training, where a fresh process would only add TF's start-up."""
    from apps import APP_NAMES, get_app
    from apps.cli import main

    try:
        status = main(APP_NAMES, get_app, list(args))
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# Exports are called in a process of their own that imports TensorFlow alone (and the tokenizer
# ops text exports use), never the training code, as a server would; one such process per test
# worker loads every export it is sent, so each test does not pay TensorFlow's start-up again.
EXPORT_CALLER = """
import json, sys, traceback, numpy as np, tensorflow as tf
import tensorflow_text  # registers the tokenizer ops that text exports use
for line in sys.stdin:
    request = json.loads(line)
    try:
        loaded = tf.saved_model.load(request["export"])
        outputs = {}
        for name, (signature, inputs) in request["calls"].items():
            function = loaded.signatures[signature]
            specs = function.structured_input_signature[1]
            if isinstance(inputs, str):  # a .npy file for the signature's one input
                inputs = {next(iter(specs)): np.load(inputs, allow_pickle=True)}
            result = function(**{key: tf.constant(np.array(value, specs[key].dtype.as_numpy_dtype))
                                 for key, value in inputs.items()})
            outputs.update({f"{name}/{key}": value.numpy() for key, value in result.items()})
        np.savez(request["output"], **outputs)
        print("ok", flush=True)
    except Exception:
        print(json.dumps(traceback.format_exc()), flush=True)
"""
_export_caller = {}


def call_export(export_dir, calls: dict, tmp_path) -> dict:
    """Calls signatures of an export in the export-calling process (started on first use):
    `calls` is {name: (signature, inputs)}, inputs a dict by input name or the path of a .npy
    file for the signature's only input; returns {name: {output name: array}}."""
    import atexit
    import tempfile

    caller = _export_caller.get("process")
    if caller is None or caller.poll() is not None:
        log = _export_caller["log"] = tempfile.NamedTemporaryFile("w+", suffix=".log")
        caller = _export_caller["process"] = subprocess.Popen(
            [sys.executable, "-c", EXPORT_CALLER], cwd=REPO_ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        atexit.register(caller.kill)
    output_path = tmp_path / "export_outputs.npz"
    caller.stdin.write(json.dumps({"export": str(export_dir), "output": str(output_path),
                                   "calls": {name: [signature, inputs] for name, (signature, inputs)
                                             in calls.items()}}) + "\n")
    caller.stdin.flush()
    answer = caller.stdout.readline().strip()
    if answer != "ok":
        _export_caller["log"].seek(0)
        raise AssertionError(json.loads(answer) if answer else _export_caller["log"].read()[-3000:])
    outputs = dict(np.load(output_path, allow_pickle=True))
    return {name: {key.split("/", 1)[1]: value for key, value in outputs.items()
                   if key.startswith(f"{name}/")} for name in calls}


def picture_through_both_signatures(export_dir, tmp_path) -> tuple:
    """A random uint8 picture 70 x 50 written as tmp_path/picture.png, sent to the export's
    `serving_default` as pixels and to its `serving_bytes` as the PNG's bytes: (the picture
    [1, 50, 70, 3], its path, {"pixels": outputs, "bytes": outputs})."""
    import tensorflow as tf

    picture = np.random.default_rng(0).integers(0, 255, (1, 50, 70, 3), dtype=np.uint8)
    path = tmp_path / "picture.png"
    path.write_bytes(tf.io.encode_png(picture[0]).numpy())
    np.save(tmp_path / "bytes.npy", np.array([path.read_bytes()], dtype=object))
    answers = call_export(export_dir, {
        "pixels": ("serving_default", {"pixels": picture.tolist()}),
        "bytes": ("serving_bytes", str(tmp_path / "bytes.npy"))}, tmp_path)
    return picture, path, answers


def serve_in_separate_process(export_dir, raw_inputs, tmp_path, signatures=("serving_default",)):
    """Calls an export's signatures on the same raw batch in the export-calling process:
    {signature: {output name: array}}."""
    input_path = tmp_path / "serve_input.npy"
    np.save(input_path, raw_inputs)
    return call_export(export_dir, {signature: (signature, str(input_path))
                                    for signature in signatures}, tmp_path)


def held_out_pictures(app_name: str, config, count: int, tmp_path) -> tuple:
    """The first `count` held-out pictures of a dense-vision app's data [count, h, w, 3], and
    the paths of their PNG copies in tmp_path/held_out/."""
    import tensorflow as tf

    from apps import get_app

    splits = get_app(app_name).load_data(config)
    pictures = np.stack([picture for picture, _ in splits.test.take(count).as_numpy_iterator()])
    (tmp_path / "held_out").mkdir()
    paths = [tmp_path / "held_out" / f"{index:02d}.png" for index in range(len(pictures))]
    for path, picture in zip(paths, pictures):
        path.write_bytes(tf.io.encode_png(picture).numpy())
    return pictures, paths


def held_out_through_every_export(app_name: str, config, metrics, tmp_path, capsys,
                                  predict_options=(), count: int = 64) -> dict:
    """The first `count` held-out pictures of a dense-vision run through its export every way a
    user has: `saved`, the SavedModel's serving_default on them as one batch (in the
    export-calling process); `predicted`, the JSON lines of `predict` on them as PNG files (with
    `predict_options`); and `litert` {quantize: report} of `export-litert` float16 and dynamic
    range, which compares them with the SavedModel picture by picture. Also `pictures`."""
    pictures, paths = held_out_pictures(app_name, config, count, tmp_path)
    saved = serve_in_separate_process(metrics["export_path"], pictures, tmp_path)
    capsys.readouterr()
    status, output, error = cli_in_process(
        capsys, app_name, "predict", "--model-dir", metrics["export_path"], "--out",
        str(tmp_path / "predicted"), *predict_options, *map(str, paths))
    assert status == 0, error
    litert = {}
    for quantize in ("float16", "dynamic"):
        status, litert_output, error = cli_in_process(
            capsys, app_name, "export-litert", "--model-dir", metrics["export_path"],
            "--quantize", quantize, "--data", config.data, "--max-examples", str(count))
        assert status == 0, error
        litert[quantize] = json.loads(litert_output.strip().splitlines()[-1])
        assert litert[quantize]["examples"] == count
    return {"pictures": pictures, "saved": saved["serving_default"],
            "predicted": [json.loads(line) for line in output.splitlines()], "litert": litert}


class BackboneAfterEachFit(keras.callbacks.Callback):
    """The backbone's weights at the end of each fit that trains a whole zoo.BackboneModel (the
    runner keeps the best-validation weights at the end, which may be those of an earlier
    phase; a head fitted alone on cached features is not recorded)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_end(self, logs=None):
        if isinstance(self.model, zoo.BackboneModel):
            self.weights.append([weight.copy() for weight in self.model.backbone.get_weights()])


def read_json(path: Path):
    return json.loads(Path(path).read_text())


@pytest.fixture
def run_paths(tmp_path):
    """Options that keep a test's run directory and exports inside its tmp_path, and skip
    explanations (tests check them in the shared runs: EXPLAINED_DEFAULT_RUNS)."""
    return {"run_dir": str(tmp_path / "run"), "export_dir": str(tmp_path / "exports"),
            "explain_examples": 0}


# Explanations (the export's explain signatures, the report's figures) are made in the runs the
# tests check them in: the default runs whose faithfulness floors are checked, and the tiny runs
# of the end-to-end test; the other runs skip them (--explain-examples 0).
# (For segmentation and detection, whose reports measure no explanations, only the signatures.)
EXPLAINED_DEFAULT_RUNS = {"mnist": 100, "sentiment": 8, "speech": 8, "segmentation": 1,
                          "detection": 1}

# The tiny configuration of each app for tests of mechanics (the fast tier): a few hundred
# examples, one epoch, small models; seconds each. Sentiment's uses a one-layer BERT preset
# (`tiny_bert_preset`), speech's a small espeak-ng corpus (`small_speech_corpus`) and vision's a
# folder of generated pictures (`image_folder`).
TINY_RUNS = {
    "mnist": {"model": "mnist_mlp", "epochs": 1, "max_examples": 500, "explain_examples": 4},
    "speech": {"epochs": 1, "explain_examples": 2},
    "forecast": {"epochs": 1, "model_arg": ["units=8"]},
    "generative": {"epochs": 1, "judge_epochs": 1, "max_examples": 512},
    "sentiment": {"epochs": 1, "fine_tune_epochs": 1, "explain_examples": 2},
    "segmentation": {"epochs": 1, "image_size": 32, "model_arg": ["filters=(8, 16, 32)"]},
    "detection": {"epochs": 1, "image_size": 32,
                  "model_arg": ["filters=(8, 16, 32)", "head_filters=8"]},
    "translate": {"train_values": 0, "max_examples": 600, "epochs": 1,
                  "model_arg": ["embedding_dim=16", "num_heads=2", "feed_forward_dim=16",
                                "num_layers=1"]},
    "textgen": {"data": "/usr/share/games/fortunes/fortunes", "epochs": 1, "vocabulary_size": 400,
                "sequence_length": 32,
                "model_arg": ["embedding_dim=16", "num_heads=2", "feed_forward_dim=16",
                              "num_layers=1"]},
}


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """`sample_run(app_name, **options)` trains the app on its shipped sample (or the options'
    --data) once per distinct configuration in the whole session and returns (config, metrics):
    each default run is shared by the floors checked on it, each tiny run by the mechanics."""
    from apps import get_app
    from apps.core import resolve_config, train

    runs = {}

    def run(app_name: str, **options):
        key = (app_name, repr(sorted(options.items())))
        if key not in runs:
            app = get_app(app_name)
            folder = tmp_path_factory.mktemp(app_name)
            config = resolve_config(app, **{
                "data": "sample", "run_dir": str(folder / "run"),
                "export_dir": str(folder / "exports"),
                "explain_examples": 0 if options else EXPLAINED_DEFAULT_RUNS.get(app_name, 0),
                **options})
            runs[key] = config, train(app, config)
        return runs[key]

    return run


def write_tiny_bert_preset(folder: Path, words) -> str:
    """A one-layer BERT whose vocabulary is `words`, saved as a KerasHub preset folder: the
    mechanics of a pretrained text backbone in seconds instead of MiniLM's minutes. Returns the
    `backbone` spelling for it."""
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64).save_to_preset(str(folder))
    keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True).save_to_preset(
        str(folder))
    return f"kerashub:{folder}"


COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Three classes of noisy colour pictures in assorted sizes and formats, and one corrupt
    file: the vision app's class-folder layout, generated in seconds (the app's own sample,
    digit pictures, takes longer to train on)."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (folder / name).mkdir()
        for index in range(40):
            height, width = rng.integers(40, 90, size=2)
            image = np.clip(np.array(colour) + rng.normal(0, 40, (height, width, 3)), 0, 255)
            encode = tf.io.encode_png if index % 2 else tf.io.encode_jpeg
            suffix = "png" if index % 2 else "jpg"
            (folder / name / f"{index}.{suffix}").write_bytes(
                encode(image.astype("uint8")).numpy())
    (folder / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


VISION_FOLDER_RUN = {"model": "small_cnn", "image_size": 32, "epochs": 6, "explain_examples": 8}


@pytest.fixture(scope="session")
def tiny_bert_preset(tmp_path_factory):
    """A one-layer BERT preset whose vocabulary is the sample reviews' words (as WordPiece splits
    them: punctuation apart)."""
    import csv

    from apps.core.sources import SAMPLES_DIR

    words = set()
    with (SAMPLES_DIR / "reviews" / "reviews.csv").open() as handle:
        for row in csv.DictReader(handle):
            words.update(word.strip(".,;:!?\"'()") for word in row["text"].lower().split())
    return write_tiny_bert_preset(tmp_path_factory.mktemp("tiny_bert"), words - {""})


@pytest.fixture(scope="session")
def small_speech_corpus(tmp_path_factory):
    """The espeak-ng corpus in the Speech Commands layout with one accent and two training
    variants (207 clips, seconds to speak) instead of the sample's 4,232."""
    from apps.core.sources import spoken_words

    return spoken_words.generate(tmp_path_factory.mktemp("speech") / "speech_commands",
                                 accents=("en-us",), train_variants=("m1", "f1"))


@pytest.fixture(scope="session")
def small_scene_folder(tmp_path_factory):
    """The digit scenes sample's layout with 80 training and 16 test scenes instead of 1,400."""
    from apps.core.sources import digit_scenes

    return digit_scenes.generate(tmp_path_factory.mktemp("scenes") / "digit_scenes",
                                 scenes={"train": 80, "test": 16})


@pytest.fixture(scope="session")
def tiny_run(sample_run, request):
    """`tiny_run(app_name)`: the app's shared tiny run (TINY_RUNS) on its sample, or for vision
    on `image_folder` and for segmentation and detection on `small_scene_folder`; (config,
    metrics)."""

    def run(app_name: str):
        if app_name == "vision":
            return sample_run("vision", data=str(request.getfixturevalue("image_folder")),
                              **VISION_FOLDER_RUN)
        options = dict(TINY_RUNS[app_name])
        if app_name == "speech":
            options["data"] = str(request.getfixturevalue("small_speech_corpus"))
        if app_name in ("segmentation", "detection"):
            options["data"] = str(request.getfixturevalue("small_scene_folder"))
        if app_name == "sentiment":
            options["model_arg"] = [f"backbone={request.getfixturevalue('tiny_bert_preset')}",
                                    "sequence_length=32"]
        return sample_run(app_name, **options)

    return run
