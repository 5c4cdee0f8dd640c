"""SavedModel export in the TF Serving layout: `<export_dir>/<version>/`, written atomically.

The serving signatures take the app's raw input; class names travel as `assets/labels.txt`.
"""

import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from apps.core.app import App


def _versions(export_dir: Path) -> list[int]:
    return [int(path.name) for path in export_dir.iterdir() if path.name.isdigit()]


def _serving_module(model, app: App, class_names: list[str] | None, labels_path: Path,
                    explained: bool):
    """A tf.Module holding the model and the labels asset, and one concrete function per
    signature; the app's output kind turns the model's output into the signature's outputs. The
    functions are not attributes of the module: `tf.saved_model.save` would trace each of them
    again (3 of a tiny sentiment export's 4.5 s)."""
    module = tf.Module()
    module.model = model
    labels = None
    if app.output.class_names_in_export and class_names:
        labels_path.write_text("".join(f"{name}\n" for name in class_names))
        labels = module.labels = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                str(labels_path), tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
            default_value="")

    def serving_function(signature):
        def serve(*raw):
            if signature.outputs:
                return signature.outputs(module.model, *raw,
                                         **({"labels": labels} if signature.with_labels else {}))
            model_output = module.model(signature.to_model_input(raw[0], module.model),
                                        training=False)
            return app.output.serving_outputs(model_output, labels)

        return tf.function(serve, input_signature=list(signature.input_specs), autograph=False)

    signatures = {}
    for name, signature in app.signatures_for(model, explained).items():
        signatures[name] = serving_function(signature).get_concrete_function()
    return module, signatures


def export_saved_model(model, app: App, class_names: list[str] | None, export_dir: Path,
                       explained: bool = True) -> Path:
    """Writes the next integer version under `export_dir` and returns its path; `explained`:
    with the app's explain signatures.

    The SavedModel is written to a hidden temporary folder beside the versions and renamed into
    place only when complete, so a crash never leaves a half-written version for a server to load.
    """
    export_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=export_dir))
    try:
        module, signatures = _serving_module(model, app, class_names, staging / "labels.txt",
                                             explained)
        tf.saved_model.save(module, str(staging / "saved_model"), signatures=signatures)
        while True:
            version_dir = export_dir / str(max(_versions(export_dir), default=0) + 1)
            try:
                os.rename(staging / "saved_model", version_dir)
                return version_dir
            except OSError:
                if not version_dir.exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_version_dir(model_dir: str) -> Path:
    """A version folder as given, or the highest version under a base export folder."""
    path = Path(model_dir)
    if (path / "saved_model.pb").exists():
        return path
    versions = _versions(path) if path.is_dir() else []
    if not versions:
        raise FileNotFoundError(
            f"--model-dir {model_dir}: no SavedModel there (no saved_model.pb, no numbered version "
            f"folders). Point it at an export, e.g. saved_models/<app> or saved_models/<app>/1.")
    return path / str(max(versions))
