"""The segmentation app: the digit scenes (no digit in both splits, masks on the ink), the
image/mask folder checks (bad pairs skipped, counted and named), masks resized by nearest
neighbour only, per-class IoU against Keras' own, the export answering at the picture's own size,
`predict` writing masks, and the floor on the default run."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from apps import get_app
from apps.core import DataError, resolve_config
from apps.core.outputs.segmentation import iou_report, scene_object_iou
from apps.core.sources import digit_scenes
from apps.core.sources.masks import mask_folder_splits, resized_mask
from tests.conftest import (
    REPO_ROOT,
    call_export,
    cli_in_process,
    held_out_pictures,
    held_out_through_every_export,
    picture_through_both_signatures,
    serve_in_separate_process,
)

APP = get_app("segmentation")
pytestmark = pytest.mark.xdist_group("segmentation")


def test_scenes_draw_each_split_from_its_own_digits_and_mask_their_ink(tmp_path):
    folder = digit_scenes.generate(tmp_path / "scenes", scenes={"train": 6, "test": 3})
    assert (folder / "classes.txt").read_text().split() == digit_scenes.SEGMENT_NAMES
    for split, count in (("train", 6), ("test", 3)):
        images = sorted((folder / split / "images").iterdir())
        assert [path.name for path in images] == sorted(
            path.name for path in (folder / split / "masks").iterdir())
        assert len(images) == count
        for path in images:
            picture = tf.io.decode_png(path.read_bytes()).numpy()
            mask = tf.io.decode_png((folder / split / "masks" / path.name).read_bytes()).numpy()
            assert picture.shape == (96, 96, 3) and mask.shape == (96, 96, 1)
            ink, paper = mask[..., 0] > 0, mask[..., 0] == 0
            assert 1 <= mask.max() <= 10 and ink.any()
            assert picture[ink].mean() < picture[paper].mean() - 60  # dark ink on light paper

    # Scenes are drawn from the digits they are given: held-out digits make held-out scenes.
    rng = np.random.default_rng(0)
    digits = np.zeros((2, 28, 28), "uint8")
    digits[:, 8:20, 8:20] = 255
    _, mask, _ = digit_scenes.scene(digits, np.array([3, 7]), rng)
    assert set(np.unique(mask)) == {0, 4, 8}


def write_pairs(folder, count, size=(40, 30), classes=3):
    """`count` image/mask pairs of random pixels and class ids below `classes`."""
    rng = np.random.default_rng(1)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index in range(count):
        picture = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        mask = rng.integers(0, classes, (*size, 1), dtype=np.uint8)
        (folder / "images" / f"{index}.png").write_bytes(tf.io.encode_png(picture).numpy())
        (folder / "masks" / f"{index}.png").write_bytes(tf.io.encode_png(mask).numpy())


def test_oxford_pets_trimaps_become_background_pet_and_outline_classes():
    import tensorflow_datasets as tfds

    trimap = np.array([[1, 2, 3, 2]] * 4, np.uint8)[..., None]  # 1 pet, 2 background, 3 outline

    def pets(*args, **kwargs):
        return tf.data.Dataset.from_tensor_slices({
            "image": np.zeros((3, 4, 4, 3), np.uint8), "segmentation_mask": np.stack([trimap] * 3),
            "file_name": np.array([b"cat.jpg"] * 3), "label": np.zeros(3, np.int64),
            "species": np.zeros(3, np.int64), "head_bbox": np.zeros((3, 4), np.float32)})

    with tfds.testing.mock_data(num_examples=3, as_dataset_fn=pets):
        splits = APP.load_data(resolve_config(APP, data="tfds", image_size=8))
        _, masks = next(iter(splits.test.batch(3)))
    assert splits.class_names == ["background", "pet", "outline"]
    assert splits.source == "TFDS oxford_iiit_pet (--data tfds)"
    np.testing.assert_array_equal(masks[0], np.repeat(np.repeat([[1, 0, 2, 0]] * 4, 2, 0), 2, 1))
    with pytest.raises(DataError, match="--dataset voc/2007: the segmentation app reads the "
                                         "TFDS datasets oxford_iiit_pet; give --data PATH"):
        APP.load_data(resolve_config(APP, data="tfds", dataset="voc/2007"))


def test_bad_pairs_are_skipped_counted_and_named(tmp_path, capsys):
    folder = tmp_path / "pairs"
    write_pairs(folder, 12)
    (folder / "classes.txt").write_text("background\ncat\ndog\n")
    (folder / "masks" / "0.png").unlink()  # an image without its mask
    (folder / "masks" / "1.png").write_bytes(  # a mask of another size
        tf.io.encode_png(np.zeros((10, 10, 1), np.uint8)).numpy())
    (folder / "masks" / "2.png").write_bytes(  # a class beyond classes.txt
        tf.io.encode_png(np.full((40, 30, 1), 7, np.uint8)).numpy())
    (folder / "images" / "3.png").write_bytes(b"not a png")
    splits = mask_folder_splits(folder, 16, seed=0, reason="test")
    output = capsys.readouterr().out
    assert splits.facts["skipped_files"] == 4
    assert f"{folder / 'images' / '0.png'}: no mask 0.png" in output
    assert (f"{folder / 'masks' / '1.png'}: mask (10, 10) is not one channel of the image's "
            f"size (30, 40)") in output
    assert f"{folder / 'masks' / '2.png'}: class id 7 but classes.txt names 3 classes" in output
    assert f"{folder / 'images' / '3.png'}: unreadable" in output
    assert splits.class_names == ["background", "cat", "dog"]
    pictures = list(splits.train.concatenate(splits.test).as_numpy_iterator())
    assert len(pictures) == 8
    assert pictures[0][0].shape == (16, 16, 3) and pictures[0][1].shape == (16, 16)

    (tmp_path / "no_masks" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="no_masks has no masks/"):
        mask_folder_splits(tmp_path / "no_masks", 16, 0, "test")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(DataError, match="0 training and 0 test image/mask pairs"):
        mask_folder_splits(tmp_path / "empty", 16, 0, "test")


def test_masks_are_resized_by_nearest_neighbour_only():
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 10
    assert set(np.unique(resized_mask(tf.constant(mask), 17).numpy())) == {0, 10}
    bilinear = tf.image.resize(mask[..., None].astype("float32"), (17, 17))[..., 0].numpy()
    assert len(np.unique(np.round(bilinear))) > 2  # what bilinear would have invented


def test_per_class_iou_is_keras_iou_and_foreground_iou_counts_object_pixels():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (3, 8, 8))
    probabilities = rng.random((3, 8, 8, 4)).astype("float32")
    report = iou_report(truth, probabilities, ["background", "a", "b", "c"])
    found, present = probabilities.argmax(-1) > 0, truth > 0
    assert report["foreground_iou"] == pytest.approx((found & present).sum()
                                                     / (found | present).sum())
    assert report["background_pixel_accuracy"] == pytest.approx(1 - present.mean())
    assert report["pixel_accuracy"] == pytest.approx((probabilities.argmax(-1) == truth).mean())
    for index, name in enumerate(["background", "a", "b", "c"]):
        expected = keras.metrics.IoU(num_classes=4, target_class_ids=[index],
                                     sparse_y_pred=False)
        expected.update_state(truth, probabilities)
        assert report["class_iou"][name] == pytest.approx(float(expected.result()), abs=1e-4)
    mean = keras.metrics.MeanIoU(num_classes=4, sparse_y_pred=False)
    mean.update_state(truth, probabilities)
    assert report["mean_iou"] == pytest.approx(float(mean.result()))

    # Per picture, a digit of the wrong class is wrong (its foreground IoU would say right).
    truth, predicted = np.zeros((3, 4, 4), int), np.zeros((3, 4, 4), int)
    truth[0, :2], predicted[0, :2] = 3, 3
    truth[1, :2], predicted[1, :1], predicted[1, 1] = 3, 3, 5
    np.testing.assert_allclose(scene_object_iou(truth, predicted), [1.0, 0.5, 1.0])


def test_unet_refuses_sizes_its_levels_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 8"):
        zoo.build("unet", input_shape=(100, 100, 3))


def test_the_export_answers_at_the_pictures_own_size_and_predict_writes_masks(
        tiny_run, tmp_path, capsys):
    config, metrics = tiny_run("segmentation")
    picture, path, answers = picture_through_both_signatures(metrics["export_path"], tmp_path)
    served = answers["pixels"]
    np.testing.assert_array_equal(answers["bytes"]["mask"], served["mask"])
    assert served["mask"].shape == (1, 50, 70) and served["mask"].dtype == np.uint8
    assert served["probabilities"].shape == (1, 50, 70, 11)
    np.testing.assert_array_equal(served["mask"], served["probabilities"].argmax(axis=-1))
    for picture in ("segmentation_examples.png", "segmentation_worst.png"):
        assert (REPO_ROOT / config.run_dir / picture).stat().st_size > 0
    assert len(metrics["worst_test_pictures"]) == 4
    assert "Intersection over union per class" in (REPO_ROOT / config.run_dir
                                                   / "MODEL_CARD.md").read_text()

    capsys.readouterr()  # the tiny run's own output
    status, output, error = cli_in_process(
        capsys, "segmentation", "predict", "--model-dir", str(REPO_ROOT / config.export_dir),
        "--out", str(tmp_path / "masks"), str(path))
    assert status == 0, error
    line = json.loads(output)
    written = tf.io.decode_png((tmp_path / "masks" / "picture_mask.png").read_bytes()).numpy()
    np.testing.assert_array_equal(written[..., 0], served["mask"][0])
    assert line["mask"] == str(tmp_path / "masks" / "picture_mask.png")
    assert sum(line["pixels"].values()) == 50 * 70


def test_the_sample_is_composed_once_where_the_app_looks(tmp_path, monkeypatch, capsys):
    from apps.core import resolve_config

    monkeypatch.setattr(digit_scenes, "DEFAULT_DIR", tmp_path / "digit_scenes")
    monkeypatch.setattr(digit_scenes, "SCENES", {"train": 4, "test": 2})
    splits = APP.load_data(resolve_config(APP, data="sample"))
    assert "composing the digit scenes sample" in capsys.readouterr().out
    assert splits.source.startswith(f"generated digit scenes sample {tmp_path / 'digit_scenes'}")
    assert splits.class_names == digit_scenes.SEGMENT_NAMES
    APP.load_data(resolve_config(APP, data="sample"))
    assert "composing" not in capsys.readouterr().out


@pytest.mark.full_tier  # on the default run the floor test trains
def test_savedmodel_predict_and_litert_give_the_same_masks_on_64_held_out_scenes(
        sample_run, tmp_path, capsys):
    config, metrics = sample_run("segmentation")
    answers = held_out_through_every_export("segmentation", config, metrics, tmp_path, capsys)
    for index, line in enumerate(answers["predicted"]):
        written = tf.io.decode_png(Path(line["mask"]).read_bytes()).numpy()[..., 0]
        np.testing.assert_array_equal(written, answers["saved"]["mask"][index])
    for report in answers["litert"].values():
        assert report["pixel_agreement"] >= 0.995, report


@pytest.mark.full_tier  # on the default run the floor test trains
def test_explanations_point_at_the_pixels_of_the_class_they_explain(sample_run, tmp_path,
                                                                    capsys):
    from scipy import ndimage

    config, metrics = sample_run("segmentation")
    pictures, paths = held_out_pictures("segmentation", config, 32, tmp_path)
    served = serve_in_separate_process(metrics["export_path"], pictures, tmp_path)
    mask, probabilities = served["serving_default"]["mask"], served["serving_default"][
        "probabilities"]
    counts = np.stack([np.bincount(one.ravel(), minlength=11) for one in mask])
    most = counts[:, 1:].argmax(axis=1) + 1
    # The least predicted object class present in each picture, asked for by id: -1 asks for
    # the default, the most predicted one.
    least = np.array([np.flatnonzero(row[1:])[row[1:][row[1:] > 0].argmin()] + 1
                      for row in counts])
    inputs = {"pixels": pictures.tolist(), "class_id": [-1] * len(pictures)}
    answers = call_export(metrics["export_path"], {
        "explain": ("explain", inputs), "explain_gradcam": ("explain_gradcam", inputs),
        "least": ("explain_gradcam", {**inputs, "class_id": least.tolist()})}, tmp_path)
    np.testing.assert_array_equal(answers["least"]["explained_class"], least)
    for name, chosen in (("explain", most), ("explain_gradcam", most), ("least", least)):
        explained = answers[name]
        np.testing.assert_array_equal(explained["explained_class"], chosen)
        np.testing.assert_allclose(explained["explained_score"], [
            probabilities[index][mask[index] == chosen[index]][:, chosen[index]].mean()
            for index in range(len(mask))], atol=1e-5)
        # The positive attributions fall on the explained digit's pixels (2 px around them),
        # about 8% of each picture: 30% of integrated gradients' mass, 96% of Grad-CAM's; for
        # the least predicted class (another digit than the default's in 78% of the scenes),
        # 64% of Grad-CAM's on 4% of the picture.
        regions = [ndimage.binary_dilation(one == label, iterations=2)
                   for one, label in zip(mask, chosen)]
        positive = np.clip(explained["attributions"], 0, None)
        mass = np.mean([part[region].sum() / max(part.sum(), 1e-12)
                        for part, region in zip(positive, regions)])
        area = np.mean([region.mean() for region in regions])
        assert mass >= {"explain": 2.5, "explain_gradcam": 6.0, "least": 4.0}[name] * area, (
            name, mass, area)

    capsys.readouterr()
    status, output, error = cli_in_process(
        capsys, "segmentation", "explain", "--model-dir", metrics["export_path"], "--method",
        "gradcam", "--class", str(least[0] - 1), "--out", str(tmp_path / "explained"),
        str(paths[0]))
    assert status == 0, error
    line = json.loads(output)
    assert line["class"] == str(least[0] - 1) and line["out"] == str(
        tmp_path / "explained" / "00_gradcam.png")
    assert (tmp_path / "explained" / "00_gradcam.png").stat().st_size > 0
    status, _, error = cli_in_process(
        capsys, "segmentation", "explain", "--model-dir", metrics["export_path"], "--class",
        "cat", str(paths[0]))
    assert status == 2 and error.strip() == (
        "python -m apps segmentation explain: error: --class cat: not a class of this export "
        "(its classes: background, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9).")


@pytest.mark.floor
def test_unet_segments_held_out_digit_scenes(sample_run):
    config, metrics = sample_run("segmentation")
    assert config.model == "unet"
    assert metrics["mean_iou"] >= 0.80, metrics
    assert metrics["foreground_iou"] >= 0.90, metrics
    assert metrics["pixel_accuracy"] > metrics["background_pixel_accuracy"]
