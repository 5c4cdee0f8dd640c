"""Command line: `python -m apps list`, `python -m apps serve [options]`,
`python -m apps APP train|lr-find|tune|predict|explain|export-litert [options]`.

It knows the apps only through the `app_names` and `get_app` it is given.
"""

import argparse
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What the apps' modules import at their top and use only inside functions: loaded on first use,
# so reading every app to answer --help or a usage error takes a fraction of a second where
# TensorFlow alone takes several.
DEFERRED_MODULES = ("tensorflow", "keras", "zoo", "keras_tuner", "scipy.stats", "scipy.signal",
                    "PIL.Image")


class _DeferredModule(types.ModuleType):
    """A module whose code runs when an attribute it lacks is first looked up, then a plain
    module (the same object, so every name bound to it sees the real module). Unlike the
    standard library's LazyLoader, looking up `__spec__`, which every `import` statement of an
    imported module does, does not load it; `__path__` does, so a submodule's import loads its
    package first."""

    def __getattr__(self, attribute):
        spec = self.__spec__
        self.__class__ = types.ModuleType
        if spec.submodule_search_locations is not None:
            self.__path__ = spec.submodule_search_locations
        try:
            spec.loader.exec_module(self)
        except BaseException:
            sys.modules.pop(spec.name, None)  # as a failed import leaves it
            raise
        return getattr(self, attribute)


def defer_imports(names=DEFERRED_MODULES) -> None:
    """Puts each module of `names` not yet imported in sys.modules as a `_DeferredModule`:
    `import tensorflow as tf` binds it at once, and TensorFlow is imported on the first `tf.X`."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        module = importlib.util.module_from_spec(spec)
        module.__dict__.pop("__path__", None)
        module.__class__ = _DeferredModule
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:  # as an import of the submodule would (find_spec imported the parent)
            setattr(sys.modules[parent], child, module)


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow and looks for GPUs with the C++ start-up banner (INFO lines, and a
    cuInit error on machines without a GPU, that no log-level variable silences in TF 2.21) sent
    to /dev/null; an import error is still raised and shown."""
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved_stderr, 2)
        os.close(devnull)
        os.close(saved_stderr)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the flag, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _list(app_names, get_app) -> None:
    _import_tensorflow_quietly()
    import zoo

    for name in app_names:
        app = get_app(name)
        print(f"app   {name:24s} {app.summary}; models: {', '.join(app.models)}")
    for name in zoo.list_models():
        entry = zoo.get_entry(name)
        size = zoo.build(name).count_params()
        print(f"model {name:24s} {entry.task:22s} {size:>10,d} params  {entry.summary}")


def _model_defaults_text(app) -> str | None:
    """The run commands' epilog: the defaults that change with --model."""
    if not app.model_defaults:
        return None
    models = "; ".join(f"--model {model}: " + ", ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in options.items())
        for model, options in app.model_defaults.items())
    return (f"Defaults that change with the model ({models}). Give --model with --help to see "
            f"a model's own.")


def _predict(app, arguments) -> None:
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops that text exports use)

    from apps.core.export import resolve_version_dir

    app.output.predict(app, resolve_version_dir(arguments.model_dir), arguments)


def _export_litert(app, arguments) -> None:
    from apps.core.config import resolve_config
    from apps.core.export import resolve_version_dir
    from apps.core.litert import export_litert

    version_dir = resolve_version_dir(arguments.model_dir)
    splits = app.load_data(resolve_config(app, data=arguments.data))
    report = export_litert(app, version_dir, arguments.quantize, splits, arguments.max_examples)
    print(json.dumps(report))


def _serve(argv: list[str]) -> int:
    parser = _Parser(prog="python -m apps serve",
                     description="serve every export under --model-dir with TF Serving's REST API",
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", default="saved_models",
                        help="a folder of <name>/<version>/ SavedModels (polled for new versions)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; 0.0.0.0 opens the server to the network")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--batching", action=argparse.BooleanOptionalAction, default=True,
                        help="requests that arrive while a call to their signature runs share "
                             "the next call")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-request-mb", type=float, default=16.0,
                        help="larger request bodies are refused with 413")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="how often --model-dir is scanned for new versions")
    parser.add_argument("--keep-versions", type=int, default=1,
                        help="the newest N versions of each model stay loaded (TF Serving's "
                             "default: the latest alone); older ones are unloaded")
    arguments = parser.parse_args(argv)
    if (arguments.max_batch_size < 1 or arguments.max_request_mb <= 0
            or arguments.keep_versions < 1):
        parser.error("--max-batch-size and --keep-versions must be at least 1 and "
                     "--max-request-mb above 0")
    if not os.path.isdir(arguments.model_dir):
        parser.error(f"--model-dir {arguments.model_dir}: no such folder. Train an app first "
                     f"(make train-mnist writes saved_models/mnist/1) or give a folder of "
                     f"<name>/<version>/ exports")
    _import_tensorflow_quietly()
    from serving import serve

    serve(**vars(arguments))
    return 0


def main(app_names, get_app, argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _Parser(prog="python -m apps", description=__doc__.split("\n")[0])
    parser.add_argument("app", choices=("list", "serve", *app_names),
                        help="an app, list (apps and models) or serve (the REST model server)")
    if not argv or argv[0] in ("-h", "--help") or argv[0] == "list":
        parser.parse_args(argv[:1] or ["--help"])
        _list(app_names, get_app)
        return 0
    if argv[0] == "serve":
        return _serve(argv[1:])
    if argv[0] not in app_names:
        parser.error(f"unknown app {argv[0]!r}; choose one of: list, serve, {', '.join(app_names)}")

    from apps.core.config import app_defaults, build_parser, from_namespace, read_config_file
    from apps.core.errors import DataError, RunError
    from apps.core.litert import QUANTIZATIONS

    app = get_app(argv[0])
    command = argv[1] if len(argv) > 1 else ""
    try:
        # The config file and the model decide which defaults the flags show and take.
        preparse = argparse.ArgumentParser(add_help=False)
        preparse.add_argument("--config")
        preparse.add_argument("--model")
        chosen = preparse.parse_known_args(argv[2:])[0]
        file_options = (read_config_file(chosen.config, app.name, app.config_class)
                        if chosen.config and command in RUN_COMMANDS else {})
    except RunError as error:
        print(f"python -m apps {app.name} {command}: error: {error}", file=sys.stderr)
        return 2
    app_parser = _Parser(prog=f"python -m apps {app.name}", description=app.summary)
    commands = app_parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    defaults = {**app_defaults(app, chosen.model or file_options.get("model")), **file_options}
    epilog = _model_defaults_text(app)
    for name, text in RUN_COMMANDS.items():
        # build_parser writes each option's default into its help itself.
        run_parser = commands.add_parser(name, help=text, description=text, epilog=epilog)
        build_parser(app.config_class, defaults, run_parser)
        run_parser.add_argument("--config", metavar="FILE",
                                help="YAML or JSON file of options (a run's config.json too); "
                                     "the flags given here override it")
        if name == "lr-find":
            run_parser.add_argument("--start-lr", type=float, default=1e-7,
                                    help="the first step's learning rate (default: %(default)s)")
            run_parser.add_argument("--end-lr", type=float, default=10.0,
                                    help="the last step's learning rate (default: %(default)s)")
            run_parser.add_argument("--num-steps", type=int, default=100,
                                    help="training steps, each at a higher learning rate "
                                         "(default: %(default)s)")
        if name == "tune":
            run_parser.add_argument("--max-trials", type=int, default=10,
                                    help="configurations to train (KerasTuner random search) "
                                         "(default: %(default)s)")
    predict_parser = commands.add_parser("predict", help="run an exported SavedModel on inputs")
    predict_parser.add_argument("--model-dir", required=True,
                                help="an export: saved_models/<app> (latest version) or a version")
    app.output.add_predict_arguments(predict_parser)
    if app.explanation:
        explain_parser = commands.add_parser(
            "explain", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
            help="why the export answers as it does: attribution maps drawn over the inputs")
        explain_parser.add_argument("--model-dir", required=True,
                                    help="an export: saved_models/<app> (latest version) or a "
                                         "version")
        explain_parser.add_argument("--method", choices=EXPLAIN_METHODS,
                                    default=EXPLAIN_METHODS[0])
        explain_parser.add_argument("--out", default="explanations",
                                    help="folder for the pictures (created)")
        if app.explanation.choice:
            explain_parser.add_argument("--class", dest="chosen_class", default=None,
                                        help="the class whose pixels to explain (default: the "
                                             "object class covering most of each picture)")
        explain_parser.add_argument("inputs", nargs="+", metavar="INPUT")
    litert_parser = commands.add_parser(
        "export-litert", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="convert an export to LiteRT (.tflite) and compare it with the SavedModel on the "
             "test split")
    litert_parser.add_argument("--model-dir", required=True,
                               help="an export: saved_models/<app> (latest version) or a version")
    litert_parser.add_argument("--quantize", choices=QUANTIZATIONS, default="none")
    litert_parser.add_argument("--data", default="auto",
                               help="the data the model was trained on, as for train (int8 "
                                    "calibrates on its training split; the test split compares)")
    litert_parser.add_argument("--max-examples", type=int, default=1000,
                               help="test examples compared")
    arguments = app_parser.parse_args(argv[1:])
    _import_tensorflow_quietly()
    try:
        if arguments.command == "predict":
            _predict(app, arguments)
            return 0
        if arguments.command == "explain":
            from apps.core.explain_report import explain_files
            from apps.core.export import resolve_version_dir

            explain_files(app, resolve_version_dir(arguments.model_dir), arguments.method,
                          arguments.inputs, Path(arguments.out),
                          getattr(arguments, "chosen_class", None))
            return 0
        if arguments.command == "export-litert":
            _export_litert(app, arguments)
            return 0
        config = from_namespace(app.config_class, arguments)
        if arguments.command == "train":
            from apps.core.runner import train

            train(app, config)
        elif arguments.command == "lr-find":
            from apps.core.lr_find import find_learning_rate

            find_learning_rate(app, config, arguments.start_lr, arguments.end_lr,
                               arguments.num_steps)
        else:
            from apps.core.tune import tune

            tune(app, config, arguments.max_trials)
    except (RunError, DataError, FileNotFoundError, ValueError) as error:
        print(f"python -m apps {app.name} {arguments.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


EXPLAIN_METHODS = ("integrated_gradients", "gradcam", "saliency")  # = apps.core.explain.METHODS
RUN_COMMANDS = {
    "train": "train, evaluate, report and export",
    "lr-find": "the learning-rate range test: a loss-vs-learning-rate plot and a suggested rate",
    "tune": "hyperparameter search with KerasTuner; writes the best options as a --config file",
}
