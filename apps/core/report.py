"""The run report: config.json, metrics.json, plots and MODEL_CARD.md in the run directory."""

import csv
import dataclasses
import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PACKAGES = ("tensorflow", "keras", "keras-hub", "tensorflow-datasets", "tensorflow-hub", "numpy",
            "jax")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def write_config(path: Path, app, config) -> None:
    path.write_text(json.dumps({
        "app": app.name,
        "options": dataclasses.asdict(config),
        "python": platform.python_version(),
        "packages": package_versions(),
    }, indent=2) + "\n")


def read_history(path: Path) -> list[dict]:
    """history.csv rows as dicts of numbers, one per epoch (a resumed epoch's last row wins)."""
    if not path.exists():
        return []
    with path.open() as handle:
        rows = {}
        for row in csv.DictReader(handle):
            parsed = {key: float(value) for key, value in row.items() if value not in ("", None)}
            parsed["epoch"] = int(parsed["epoch"])
            rows[parsed["epoch"]] = parsed
    return [rows[epoch] for epoch in sorted(rows)]


def write_history(path: Path, rows: list[dict]) -> None:
    """Rewrites history.csv with `rows`, in the columns CSVLogger wrote there, or for a new file
    those of the rows."""
    if path.exists():
        with path.open() as handle:
            columns = next(csv.reader(handle))
    else:
        columns = list(rows[0])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(int), predictions.astype(int)), 1)
    return matrix


def _plot_history(history: list[dict], path: Path) -> None:
    metrics = [key for key in history[0] if key != "epoch" and not key.startswith("val_")
               and key not in ("learning_rate", "epoch_seconds")]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    epochs = [row["epoch"] + 1 for row in history]
    for axis, metric in zip(axes[0], metrics):
        axis.plot(epochs, [row.get(metric) for row in history], label="train")
        if f"val_{metric}" in history[0]:
            axis.plot(epochs, [row.get(f"val_{metric}") for row in history], label="validation")
        axis.set(xlabel="epoch", title=metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: Path) -> None:
    size = max(4, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    axis.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true",
             title="confusion matrix (test)")
    axis.set_xticklabels(class_names, rotation=45, ha="right")
    axis.set_yticklabels(class_names)
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, count, ha="center", va="center", fontsize=8,
                  color="white" if count > matrix.max() / 2 else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def weights_digest(model) -> str:
    """A short SHA-256 of every weight's bytes: equal for models whose weights are identical."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def plot_series(panels: list[tuple[str, np.ndarray, dict]], path: Path) -> None:
    """One panel per (title, x, {label: y}), stacked vertically; the "truth" line in black."""
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 3.5 * len(panels)), squeeze=False)
    for axis, (title, x, lines) in zip(axes[:, 0], panels):
        for label, y in lines.items():
            axis.plot(x, y, label=label, **({"color": "black"} if label == "truth" else
                                            {"alpha": 0.8}))
        axis.set(title=title, xlabel="step")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_curve(x, y, xlabel: str, ylabel: str, marked_x: float, path: Path) -> None:
    """y against x on a logarithmic x axis, with a vertical line at `marked_x`."""
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(x, y)
    axis.axvline(marked_x, color="red", linestyle="--", label=f"{marked_x:.2g}")
    axis.set(xscale="log", xlabel=xlabel, ylabel=ylabel)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_heatmaps(maps, titles: list[str], xlabel: str, ylabel: str, path: Path) -> None:
    """2-D maps [rows, columns] side by side (e.g. spectrograms: bins x frames), origin below."""
    figure, axes = plt.subplots(1, len(maps), figsize=(3 * len(maps), 3), squeeze=False)
    for axis, values, title in zip(axes[0], maps, titles):
        axis.imshow(values, origin="lower", aspect="auto")
        axis.set(title=title, xlabel=xlabel, ylabel=ylabel)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_image_grid(images, titles: list[str], colours: list[str], title: str,
                    path: Path) -> None:
    """uint8 RGB images in rows of four, each with its own title and title colour."""
    columns = 4
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows + 0.4),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, text, colour in zip(axes.flat, images, titles, colours):
        axis.imshow(image)
        axis.set_title(text, fontsize=8, color=colour)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _model_card(app, config, metrics: dict) -> str:
    signature = app.signatures["serving_default"].input_spec
    headline = {key: value for key, value in metrics.items()
                if key.startswith("test_") or key.endswith(("_mae", "_accuracy"))}
    headline = {key: value for key, value in headline.items() if isinstance(value, (int, float))}
    lines = [
        f"# {app.name}: {config.model}",
        "",
        f"{app.summary}.",
        "",
        "## Data",
        f"- Source: {metrics['data_source']}",
        f"- Examples: {metrics['examples']}",
        "",
        "## Model",
        f"- Zoo model `{config.model}` with options {config.model_options() or 'default'}; "
        f"preprocessing inside the model.",
        f"- Trained {metrics['epochs_trained']} epochs, batch {config.batch_size}, "
        f"{'AdamW (weight decay ' + str(config.weight_decay) + ')' if config.weight_decay else 'Adam'} "
        f"peak lr {config.learning_rate} ({config.schedule} schedule, {config.warmup_steps} "
        f"warm-up steps), seed {config.seed}, on {metrics['device']}.",
        "",
        "## Metrics (test split, never used for model selection)",
        *[f"- {key}: {value:.4f}" for key, value in headline.items()],
        "",
        "## Using the export",
        f"SavedModel at `{metrics['export_path']}` (TF Serving layout).",
        f"`serving_default` takes `{signature.name}`: {signature.dtype.name} "
        f"{'any shape' if signature.shape.rank is None else list(signature.shape)} and returns "
        f"{app.output.card_outputs}." + (" Class names: `assets/labels.txt`."
                                         if app.output.has_labels else ""),
        "",
        "```python",
        "import tensorflow as tf",
        f"serve = tf.saved_model.load(\"{metrics['export_path']}\").signatures[\"serving_default\"]",
        f"outputs = serve({signature.name}=batch)",
        "```",
        f"Or from the shell: `python -m apps {app.name} predict --model-dir "
        f"{metrics['export_path']} INPUT...`",
        "",
    ]
    return "\n".join(lines)


def write_report(run_dir: Path, app, config, metrics: dict, history: list[dict]) -> None:
    if history:
        _plot_history(history, run_dir / "learning_curves.png")
    app.output.plot(metrics, run_dir)
    (run_dir / "MODEL_CARD.md").write_text(_model_card(app, config, metrics))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
