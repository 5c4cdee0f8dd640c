"""Figure helpers for run reports and explanations (matplotlib, headless), and PNG writing.

Figures are matplotlib's `Figure` objects, not pyplot's: no global state or backend to choose
(savefig renders a PNG with Agg), safe in the server's threads, and matplotlib is imported on the
first figure, not by every module that imports this one (a fifth of a second, paid by the
command line's `--help` otherwise).
"""

from pathlib import Path

import numpy as np
import tensorflow as tf


def _figure(**options):
    from matplotlib.figure import Figure

    return Figure(**options)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(int), predictions.astype(int)), 1)
    return matrix


def plot_history(history: list[dict], path: Path) -> None:
    metrics = [key for key in history[0] if key != "epoch" and not key.startswith("val_")
               and key not in ("learning_rate", "epoch_seconds")]
    figure = _figure(figsize=(5 * len(metrics), 4))
    axes = figure.subplots(1, len(metrics), squeeze=False)
    epochs = [row["epoch"] + 1 for row in history]
    for axis, metric in zip(axes[0], metrics):
        axis.plot(epochs, [row.get(metric) for row in history], label="train")
        if f"val_{metric}" in history[0]:
            axis.plot(epochs, [row.get(f"val_{metric}") for row in history], label="validation")
        axis.set(xlabel="epoch", title=metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: Path) -> None:
    size = max(4, 0.5 * len(class_names) + 2)
    figure = _figure(figsize=(size, size))
    axis = figure.subplots()
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


def plot_series(panels: list[tuple[str, np.ndarray, dict]], path: Path) -> None:
    """One panel per (title, x, {label: y}), stacked vertically; the "truth" line in black."""
    figure = _figure(figsize=(10, 3.5 * len(panels)))
    axes = figure.subplots(len(panels), 1, squeeze=False)
    for axis, (title, x, lines) in zip(axes[:, 0], panels):
        for label, y in lines.items():
            axis.plot(x, y, label=label, **({"color": "black"} if label == "truth" else
                                            {"alpha": 0.8}))
        axis.set(title=title, xlabel="step")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_curve(x, y, xlabel: str, ylabel: str, marked_x: float, path: Path) -> None:
    """y against x on a logarithmic x axis, with a vertical line at `marked_x`."""
    figure = _figure(figsize=(6, 4))
    axis = figure.subplots()
    axis.plot(x, y)
    axis.axvline(marked_x, color="red", linestyle="--", label=f"{marked_x:.2g}")
    axis.set(xscale="log", xlabel=xlabel, ylabel=ylabel)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_precision_recall(recall, precisions: dict[str, np.ndarray], title: str,
                          path: Path) -> None:
    """Precision against recall, one line per name (the last drawn bold, black); negative
    precision (a class absent from the truth) is left out."""
    figure = _figure(figsize=(6, 4.5))
    axis = figure.subplots()
    for number, (name, precision) in enumerate(precisions.items()):
        last = number == len(precisions) - 1
        if (precision >= 0).any():
            axis.plot(recall, precision, label=name, linewidth=2.5 if last else 1,
                      color="black" if last else None)
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    axis.legend(fontsize=7, loc="lower left", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_heatmaps(maps, titles: list[str], xlabel: str, ylabel: str, path: Path) -> None:
    """2-D maps [rows, columns] side by side (e.g. spectrograms: bins x frames), origin below."""
    figure = _figure(figsize=(3 * len(maps), 3))
    axes = figure.subplots(1, len(maps), squeeze=False)
    for axis, values, title in zip(axes[0], maps, titles):
        axis.imshow(values, origin="lower", aspect="auto")
        axis.set(title=title, xlabel=xlabel, ylabel=ylabel)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_attention(maps, source_words: list[list[str]], output_words: list[list[str]],
                   path: Path) -> None:
    """Attention maps [output words, source words] side by side, each word on its axis."""
    figure = _figure(figsize=(4 * len(maps), 4))
    axes = figure.subplots(1, len(maps), squeeze=False)
    for axis, values, sources, outputs in zip(axes[0], maps, source_words, output_words):
        axis.imshow(values, cmap="viridis", vmin=0, aspect="auto")
        axis.set_xticks(range(len(sources)), sources, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(range(len(outputs)), outputs, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_image_grid(images, titles: list[str], colours: list[str], title: str,
                    path: Path) -> None:
    """uint8 RGB images in rows of four, each with its own title and title colour."""
    columns = 4
    rows = max(1, -(-len(images) // columns))
    figure = _figure(figsize=(2.6 * columns, 2.8 * rows + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, text, colour in zip(axes.flat, images, titles, colours):
        axis.imshow(image)
        axis.set_title(text, fontsize=8, color=colour)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_boxes(panels: list[tuple[np.ndarray, list[tuple], str]], title: str, path: Path) -> None:
    """Pictures with boxes drawn on them, in rows of four: each panel (uint8 picture, [(x_min,
    y_min, x_max, y_max) in its pixels, label, colour, label above the box (or below)], panel
    title)."""
    from matplotlib.patches import Rectangle

    columns = min(4, len(panels))
    rows = max(1, -(-len(panels) // columns))
    figure = _figure(figsize=(3.2 * columns, 3.4 * rows + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (picture, boxes, text) in zip(axes.flat, panels):
        axis.imshow(picture)
        for (x_min, y_min, x_max, y_max), label, colour, above in boxes:
            axis.add_patch(Rectangle((x_min - 0.5, y_min - 0.5), x_max - x_min, y_max - y_min,
                                     fill=False, edgecolor=colour, linewidth=1.5))
            axis.text(x_min - 0.5, y_min - 1.5 if above else y_max + 0.5, label, color="white",
                      fontsize=7, backgroundcolor=colour, va="bottom" if above else "top")
        axis.set_title(text, fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_attribution(background: np.ndarray, attributions: np.ndarray, title: str, path: Path,
                     spectrogram: bool = False) -> None:
    """The input beside the input under its attribution map (positive part, red-yellow):
    pixels as an image, a spectrogram [frames, bins] with time along the x axis."""
    figure = _figure(figsize=(9 if spectrogram else 7, 3.8))
    axes = figure.subplots(1, 2)
    evidence = np.clip(attributions, 0, None)
    evidence = evidence / (evidence.max() or 1.0)
    if spectrogram:
        background, evidence = background.T, evidence.T
        shown = {"origin": "lower", "aspect": "auto", "cmap": "gray"}
    else:
        background = background.squeeze()
        shown = {"cmap": "gray"} if background.ndim == 2 else {}
    for axis, overlay in zip(axes, (False, True)):
        axis.imshow(background, **shown)
        if overlay:
            axis.imshow(evidence, cmap="hot", alpha=0.55,
                        **({"origin": "lower", "aspect": "auto"} if spectrogram else {}))
        axis.set(xticks=[], yticks=[], title="attribution" if overlay else "input",
                 **({"xlabel": "time", "ylabel": "mel bin"} if spectrogram else {}))
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_token_page(tokens, attributions, text: str, verdict: str, path: Path) -> None:
    """An HTML page with each token shaded by its attribution: green for the predicted class,
    red against it (padding left out)."""
    import html

    scale = float(np.abs(attributions).max()) or 1.0
    spans = []
    for token, score in zip(tokens, attributions):
        token = token.decode() if isinstance(token, bytes) else str(token)
        if not token:
            continue
        colour = "0,160,60" if score >= 0 else "200,30,30"
        spans.append(f'<span title="{score:+.4f}" style="background: rgba({colour},'
                     f'{abs(score) / scale:.2f}); padding: 1px 2px">{html.escape(token)}</span>')
    Path(path).write_text(
        "<!doctype html><meta charset=utf-8><title>why: " + html.escape(verdict) + "</title>"
        "<body style=\"font: 16px sans-serif; max-width: 50em; margin: 2em auto\">"
        f"<p>{html.escape(text)}</p><h3>{html.escape(verdict)}</h3><p>{' '.join(spans)}</p>"
        "<p style=\"color: #666\">green: evidence for the predicted class; red: against it; "
        "hover a token for its score.</p></body>\n")


def plot_scatter(points: np.ndarray, labels: np.ndarray, title: str, path: Path) -> None:
    """2-D points coloured by their integer label, with a colour bar."""
    figure = _figure(figsize=(6, 5))
    axis = figure.subplots()
    scatter = axis.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4)
    figure.colorbar(scatter, ax=axis, label="class")
    axis.set(title=title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def tile_images(images: np.ndarray, columns: int = 8, scale: int = 2) -> np.ndarray:
    """uint8 images [n, h, w, c] -> one uint8 image of `columns` per row with 2-pixel gaps,
    each pixel repeated `scale` times each way (28-pixel digits stay legible)."""
    count, height, width, channels = images.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    tiled = np.full((rows * (height + 2), columns * (width + 2), channels), 255, np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        tiled[row * (height + 2):row * (height + 2) + height,
              column * (width + 2):column * (width + 2) + width] = image
    return tiled.repeat(scale, axis=0).repeat(scale, axis=1)


def write_png(image: np.ndarray, path) -> None:
    """A uint8 image [h, w, 1 or 3] as a PNG file."""
    Path(path).write_bytes(tf.io.encode_png(image).numpy())
