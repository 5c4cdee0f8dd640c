"""The run report: metrics.json, the learning curves and the output kind's plots, and
MODEL_CARD.md in the run directory."""

import json
from pathlib import Path

from apps.core import plots


def _signature_line(name: str, signature, app) -> str:
    inputs = ", ".join(f"`{spec.name}` {spec.dtype.name} "
                       f"{'any shape' if spec.shape.rank is None else list(spec.shape)}"
                       for spec in signature.input_specs)
    does = signature.description or f"returns {app.output.card_outputs}"
    return f"- `{name}` (inputs: {inputs}): {does}."


def optimizer_words(config) -> str:
    """The optimizer as the model card names it."""
    decay = f" (weight decay {config.weight_decay})" if config.weight_decay else ""
    if config.optimizer == "muon":
        ratio = config.muon_adam_lr_ratio
        return f"Muon with AdamW{f' at {ratio:g}x the rate' if ratio != 1 else ''}{decay}"
    return f"AdamW{decay}" if config.weight_decay else "Adam"


def _model_card(app, config, metrics: dict, signatures: dict) -> str:
    first_name = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    first = signatures[first_name]
    call = ", ".join(f"{spec.name}=..." for spec in first.input_specs)
    headline = {key: value for key, value in metrics.items()
                if key.startswith("test_") or key.endswith(("_mae", "_accuracy"))
                or key in app.output.card_metrics}
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
        *([f"- Backbone: {metrics['backbone']} ({metrics['backbone_choice']})."]
          if "backbone_choice" in metrics else []),
        f"- Trained {metrics['epochs_trained']} epochs, batch {config.batch_size}, "
        f"{optimizer_words(config)} "
        f"peak lr {config.learning_rate} ({config.schedule} schedule, {config.warmup_steps} "
        f"warm-up steps), seed {config.seed}, on {metrics['device']}.",
        "",
        "## Metrics (test split, never used for model selection)",
        *[f"- {key}: {value:.4f}" for key, value in headline.items()],
        "",
        *app.output.card_section(metrics),
        "## Using the export",
        f"SavedModel at `{metrics['export_path']}` (TF Serving layout), signatures:",
        *[_signature_line(name, signature, app) for name, signature in signatures.items()],
        *(["Class names: `assets/labels.txt`."] if app.output.class_names_in_export
          and metrics.get("class_names") else []),
        "",
        "```python",
        "import tensorflow as tf",
        f"serve = tf.saved_model.load(\"{metrics['export_path']}\").signatures[\"{first_name}\"]",
        f"outputs = serve({call})",
        "```",
        f"Or from the shell: `python -m apps {app.name} predict --model-dir "
        f"{metrics['export_path']} {app.output.predict_usage}`",
        "",
    ]
    return "\n".join(lines)


def write_report(run_dir: Path, app, config, metrics: dict, history: list[dict],
                 signatures: dict) -> None:
    if history:
        plots.plot_history(history, run_dir / "learning_curves.png")
    (run_dir / "MODEL_CARD.md").write_text(_model_card(app, config, metrics, signatures))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
