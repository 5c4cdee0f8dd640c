"""The command line's answers to user mistakes: one line naming the flag, exit status 2, and
nothing trained; and what `--help` and `list` print."""

import subprocess
import sys

import pytest

from apps import APP_NAMES
from tests.conftest import REPO_ROOT, cli_in_process


def one_error_line(capsys, *args) -> str:
    status, _, err = cli_in_process(capsys, *args)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_app_and_flag(capsys):
    assert one_error_line(capsys, "imagenet", "train") == (
        f"python -m apps: error: unknown app 'imagenet'; choose one of: list, serve, "
        f"{', '.join(APP_NAMES)} (see --help)")
    assert "unrecognized arguments: --epochz 3" in one_error_line(capsys, "mnist", "train",
                                                                   "--epochz", "3")


def test_unknown_model_lists_the_apps_models(capsys):
    assert one_error_line(capsys, "mnist", "train", "--model", "resnet9000") == (
        "python -m apps mnist train: error: --model resnet9000: not a model for the mnist app. "
        "Choose one of: mnist_cnn, mnist_mlp, small_cnn.")


def test_missing_data_path_names_the_flag(capsys):
    assert "--data /no/such/mnist: no such file or folder" in one_error_line(
        capsys, "mnist", "train", "--data", "/no/such/mnist")


@pytest.mark.parametrize("model_arg,message", [
    ("num_classes=5", "--model-arg num_classes=5: the mnist app sets num_classes itself (from "
                      "the ten digits); leave it out."),
    ("dropout_rate=abc", "--model-arg dropout_rate=abc: expected a number, like the default 0.5."),
    ("filters=32", "--model-arg filters=32: expected a tuple such as (32, 64), like the default "
                   "(32, 64)."),
    ("width=3", "--model-arg width=3: mnist_cnn has no option width. Its options: input_shape, "
                "num_classes, filters, dropout_rate."),
    ("dropout_rate", "--model-arg dropout_rate: expected key=value, e.g. dropout_rate=0.3."),
])
def test_model_args_are_checked_against_the_builder(capsys, tmp_path, model_arg, message):
    line = one_error_line(capsys, "mnist", "train", "--model-arg", model_arg,
                          "--run-dir", str(tmp_path / "run"))
    assert line == f"python -m apps mnist train: error: {message}"
    assert not (tmp_path / "run").exists()


def test_offline_imagenet_weights_are_explained_in_flags(capsys, image_folder, tmp_path):
    # 96 pixels, a size MobileNetV2 has ImageNet weights for: at others Keras warns first, once
    # a process, so the line count would hang on which test built one before.
    line = one_error_line(capsys, "vision", "train", "--data", str(image_folder),
                          "--backbone", "mobilenet_v2", "--image-size", "96",
                          "--run-dir", str(tmp_path / "run"))
    assert "ImageNet weights of mobilenet_v2 could not be downloaded" in line
    assert "pass --weights PATH to a local weights file, --weights none" in line
    assert "or --backbone efficientnet_lite0, whose ImageNet weights install offline" in line
    assert "weights=" not in line
    missing = one_error_line(capsys, "vision", "train", "--data", str(image_folder),
                             "--weights", "/no/such.h5", "--run-dir", str(tmp_path / "run2"))
    assert "--weights /no/such.h5: no such file. Give --weights imagenet, --weights none" in missing
    backbone = one_error_line(capsys, "vision", "train", "--data", str(image_folder),
                              "--backbone", "vgg99", "--run-dir", str(tmp_path / "run3"))
    assert "--backbone vgg99: unknown backbone. Choose one of: mobilenet_v2," in backbone


def test_help_lists_every_shared_option_with_its_default(capsys):
    status, out, _ = cli_in_process(capsys, "mnist", "train", "--help")
    assert status == 0
    for flag in ("--model", "--data", "--epochs", "--batch-size", "--learning-rate", "--seed",
                 "--run-dir", "--export-dir", "--model-arg"):
        assert flag in out
    flat = " ".join(out.split())
    assert flat.count("(default: 'mnist_cnn')") == 1 and "(default: mnist_cnn)" not in flat
    assert "(default: --no-augment)" in flat and "(default: --mixed-precision)" in flat


def test_a_models_own_defaults_apply_when_it_is_chosen(capsys, tmp_path):
    """mnist_mlp's 8 epochs replace the app's 12 when --model (or a --config file) names it;
    a flag or the file's own value still wins."""
    from apps import get_app
    from apps.core import resolve_config

    def epochs_default(*args):
        status, out, _ = cli_in_process(capsys, "mnist", "train", *args, "--help")
        assert status == 0
        flat = " ".join(out.split())
        return flat.split("--epochs EPOCHS ")[1].split("(default: ")[1].split(")")[0], flat

    default, flat = epochs_default()
    assert default == "12"
    assert "Defaults that change with the model (--model mnist_mlp: --epochs 8)" in flat
    assert epochs_default("--model", "mnist_mlp")[0] == epochs_default("--model=mnist_mlp")[0] == "8"
    (tmp_path / "mlp.yaml").write_text("model: mnist_mlp\n")
    (tmp_path / "mlp_3.yaml").write_text("model: mnist_mlp\nepochs: 3\n")
    assert epochs_default("--config", str(tmp_path / "mlp.yaml"))[0] == "8"
    assert epochs_default("--config", str(tmp_path / "mlp_3.yaml"))[0] == "3"
    app = get_app("mnist")
    assert resolve_config(app).epochs == 12 and resolve_config(app, model="mnist_cnn").epochs == 12
    assert resolve_config(app, model="mnist_mlp").epochs == 8
    assert resolve_config(app, model="mnist_mlp", epochs=3).epochs == 3


@pytest.mark.parametrize("app", APP_NAMES)
def test_help_names_each_default_once(capsys, app):
    status, out, _ = cli_in_process(capsys, app, "train", "--help")
    assert status == 0
    options = " ".join(out.split()).split(" --")
    assert all(option.count("(default:") <= 1 for option in options), [
        option for option in options if option.count("(default:") > 1]


WITHOUT_TENSORFLOW = """
import contextlib, io, sys
from apps.cli import defer_imports, main
defer_imports()
from apps import APP_NAMES, get_app
for app in APP_NAMES:
    for argv in ([app, "--help"], [app, "train", "--help"], [app, "train", "--epochs", "x"],
                 [app, "predict"]):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                status = main(APP_NAMES, get_app, argv)
            except SystemExit as exit_:
                status = exit_.code
        print(" ".join(argv), status, "tensorflow.python" in sys.modules, flush=True)
"""


def test_help_and_usage_errors_answer_from_the_declarations_without_tensorflow():
    """Every app's help, a run command's help and two usage errors, in one fresh process as
    `python -m apps` sets it up: answered (0 for help, 2 for an error) before TensorFlow is
    ever imported. bench.startup times them."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answers = [line.rsplit(" ", 2) for line in result.stdout.splitlines()]
    assert len(answers) == 4 * len(APP_NAMES)
    for command, status, imported in answers:
        assert (status, imported) == ("0" if command.endswith("--help") else "2", "False"), command


def test_list_names_apps_and_models_with_task_and_size(capsys):
    status, out, _ = cli_in_process(capsys, "list")
    assert status == 0
    assert "app   mnist" in out
    assert any(line.startswith("model mnist_mlp") and "101,770 params" in line
               for line in out.splitlines())
