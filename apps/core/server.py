"""A local model server speaking TF Serving's REST API, for every export under one folder.

`python -m apps serve --model-dir saved_models` serves `saved_models/<name>/<version>/` at
`/v1/models/<name>[/versions/<v>][/metadata | :predict]`, so a client written for TF Serving works
unchanged: the row (`instances`) and columnar (`inputs`) request formats, `signature_name`,
`{"b64": ...}` for bytes, and `{"error": ...}` bodies with a 4xx status for bad requests.

- Versions: the newest is the default, any loaded one can be named. The folder is polled
  (TF Serving's `file_system_poll_wait_seconds`); a version folder is loaded once it holds a
  `saved_model.pb` and its files have stopped changing, so a folder still being copied is not
  loaded (and one that fails to load is tried again when its files change).
- Batching: requests to the same signature with the same per-example shape that arrive while a
  call to it runs are stacked into the next call (up to `max_batch_size` examples), so a lone
  request never waits and a busy signature runs batches. The `X-Batch-Size` response header says
  how many examples the call that answered a request held.
- `/` is a demo page: a widget per served model, chosen by its signature's input (draw a digit,
  upload a photo or a WAV or record one, type a review, paste a series and see its forecast
  plotted), calling the same REST API from the browser.
- Built on Starlette, run by uvicorn; binds to 127.0.0.1 unless told otherwise.
"""

import asyncio
import contextlib
import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from tensorflow.core.protobuf import saved_model_pb2

from apps.core.serving_json import ServingError, ServingJSONResponse, read_request, write_response

DEFAULT_SIGNATURE = "serving_default"
DEMO_PAGE = Path(__file__).with_name("demo.html")
_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                   r"(?:/(?P<metadata>metadata)|:(?P<verb>[a-z]+))?$")


@dataclasses.dataclass
class LoadedVersion:
    version: int
    saved_model: object
    signature_defs: dict  # as TF Serving's metadata API returns them

    @classmethod
    def load(cls, version: int, path: Path) -> "LoadedVersion":
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
        signature_defs = {name: json_format.MessageToDict(definition,
                                                          preserving_proto_field_name=True)
                          for name, definition in saved_model.meta_graphs[0].signature_def.items()
                          if not name.startswith("__")}
        return cls(version, tf.saved_model.load(str(path)), signature_defs)

    def signature(self, name: str):
        signatures = self.saved_model.signatures
        if name not in signatures:
            raise ServingError(400, f"signature_name {name!r} is not in version {self.version}; "
                                    f"it has: {', '.join(sorted(signatures))}.")
        return signatures[name]


def _files_state(folder: Path) -> tuple:
    return tuple(sorted((str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
                        for path in folder.rglob("*") if path.is_file()))


class ModelRepository:
    """The exports under `root` (`<name>/<version>/`), loaded as their folders become complete."""

    def __init__(self, root: Path):
        self.root = root
        self.models: dict[str, dict[int, LoadedVersion]] = {}
        self._seen: dict[Path, tuple] = {}  # a version folder's files at the previous poll
        self._failed: dict[Path, tuple] = {}  # its files when it last failed to load

    def poll(self) -> None:
        """Loads every version folder that holds a saved_model.pb and whose files did not
        change since the previous poll (or for two seconds); one that fails to load is reported
        and retried only once its files change."""
        if not self.root.is_dir():
            return
        for model_dir in sorted(path for path in self.root.iterdir() if path.is_dir()):
            for version_dir in sorted(path for path in model_dir.iterdir()
                                      if path.is_dir() and path.name.isdigit()):
                name, version = model_dir.name, int(version_dir.name)
                if version in self.models.get(name, {}):
                    continue
                state, previous = _files_state(version_dir), self._seen.get(version_dir)
                self._seen[version_dir] = state
                settled = state == previous or max(
                    (mtime for _, _, mtime in state), default=0) < time.time_ns() - 2e9
                if (not settled or not (version_dir / "saved_model.pb").exists()
                        or self._failed.get(version_dir) == state):
                    continue
                try:
                    loaded = LoadedVersion.load(version, version_dir)
                except Exception as error:  # a broken export must not stop the server
                    self._failed[version_dir] = state
                    print(f"[serve] could not load {version_dir}: {error}", flush=True)
                    continue
                self.models.setdefault(name, {})[version] = loaded
                print(f"[serve] loaded {name} version {version} from {version_dir}", flush=True)

    def get(self, name: str, version: str | None) -> LoadedVersion:
        versions = self.models.get(name)
        if not versions:
            raise ServingError(404, f"Servable not found for request: Latest({name}). Models "
                                    f"served: {', '.join(sorted(self.models)) or 'none'}.")
        if version is None:
            return versions[max(versions)]
        if not version.isdigit() or int(version) not in versions:
            raise ServingError(404, f"Servable not found for request: Specific({name}, {version})."
                                    f" Versions loaded: {', '.join(map(str, sorted(versions)))}.")
        return versions[int(version)]


class Batcher:
    """Stacks concurrent requests to one signature (same per-example shapes) into one call: a
    request that finds no call running starts one at once; those arriving while it runs wait and
    go together, up to `max_batch_size` examples, into the next."""

    def __init__(self, max_batch_size: int):
        self.max_batch_size = max_batch_size
        self.waiting: dict[tuple, list] = {}
        self.running: set[tuple] = set()

    async def run(self, key: tuple, function, arrays: dict) -> tuple:
        """The outputs for `arrays`, and the size of the batch they were computed in."""
        shapes = tuple((name, array.shape[1:], array.dtype.str) for name, array in
                       sorted(arrays.items()))
        queue_key = (*key, shapes)
        future = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(queue_key, []).append((arrays, future))
        if queue_key not in self.running:
            self._start(queue_key, function)
        return await future

    def _start(self, queue_key, function) -> None:
        waiting = self.waiting.get(queue_key)
        if not waiting:
            self.running.discard(queue_key)
            return
        batch, size = [], 0
        while waiting and (not batch or size + _examples(waiting[0][0]) <= self.max_batch_size):
            batch.append(waiting.pop(0))
            size += _examples(batch[-1][0])
        self.running.add(queue_key)
        task = asyncio.get_running_loop().create_task(self._call(batch, function))
        task.add_done_callback(lambda _: self._start(queue_key, function))

    async def _call(self, queue, function) -> None:
        sizes = [_examples(arrays) for arrays, _ in queue]
        stacked = {name: np.concatenate([arrays[name] for arrays, _ in queue])
                   for name in queue[0][0]}
        try:
            outputs = await asyncio.to_thread(call_signature, function, stacked)
        except Exception as error:
            outputs = error
        if len(queue) > 1 and (isinstance(outputs, Exception) or any(
                len(value) != sum(sizes) for value in outputs.values())):
            for arrays, future in queue:  # one request's fault, or outputs not row by row
                await self._call([(arrays, future)], function)
            return
        if isinstance(outputs, Exception):
            queue[0][1].set_exception(outputs)
            return
        start = 0
        for (_, future), size in zip(queue, sizes):
            future.set_result(({name: value[start:start + size]
                                for name, value in outputs.items()}, sum(sizes)))
            start += size


def _examples(arrays: dict) -> int:
    return len(next(iter(arrays.values())))


def call_signature(function, arrays: dict) -> dict[str, np.ndarray]:
    specs = function.structured_input_signature[1]
    try:
        outputs = function(**{name: tf.constant(array, dtype=specs[name].dtype)
                              for name, array in arrays.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
        # TF's message: a header, the node's Python stack (indented), the reason, the op.
        reasons = [line for line in str(error).splitlines() if line.strip() and not
                   line[0].isspace() and not line.startswith(("Graph execution error",
                                                              "Detected at node"))]
        message = (reasons[-1] if reasons else str(error))[:300]
        raise ServingError(400, f"the model could not run on this input: {message}")
    return {name: value.numpy() for name, value in outputs.items()}


def create_app(model_dir: Path, batching: bool = True, max_batch_size: int = 64,
               max_request_mb: float = 16.0, poll_seconds: float = 1.0) -> Starlette:
    """The ASGI application: the REST API over the exports under `model_dir`."""
    repository = ModelRepository(model_dir)
    repository.poll()
    batcher = Batcher(max_batch_size) if batching else None
    max_bytes = int(max_request_mb * 2**20)

    async def poll_forever():
        while True:
            await asyncio.sleep(poll_seconds)
            await asyncio.to_thread(repository.poll)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(poll_forever())
        yield
        task.cancel()

    async def status(name: str, version: str | None) -> dict:
        repository.get(name, version)
        versions = sorted(repository.models[name], reverse=True)
        if version is not None:
            versions = [int(version)]
        return {"model_version_status": [
            {"version": str(number), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}} for number in versions]}

    async def metadata(name: str, version: str | None) -> dict:
        loaded = repository.get(name, version)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(loaded.version)},
                "metadata": {"signature_def": {
                    "signature_def": loaded.signature_defs,
                    "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap"}}}

    async def predict(request: Request, name: str, version: str | None) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise ServingError(413, f"request body of {int(declared)} bytes is over the server's "
                                    f"limit of {max_bytes} (--max-request-mb {max_request_mb:g}).")
        body_bytes = bytearray()
        async for chunk in request.stream():
            body_bytes.extend(chunk)
            if len(body_bytes) > max_bytes:
                raise ServingError(413, f"request body is over the server's limit of {max_bytes} "
                                        f"bytes (--max-request-mb {max_request_mb:g}).")
        try:
            body = json.loads(body_bytes)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ServingError(400, f"the request body is not valid JSON: {error}.")
        if not isinstance(body, dict):
            raise ServingError(400, "the request body must be a JSON object.")
        loaded = repository.get(name, version)
        signature_name = body.get("signature_name") or DEFAULT_SIGNATURE
        function = loaded.signature(signature_name)
        arrays, row_format = read_request(body, function)
        if batcher:
            outputs, batch_size = await batcher.run((name, loaded.version, signature_name),
                                                    function, arrays)
        else:
            outputs = await asyncio.to_thread(call_signature, function, arrays)
            batch_size = _examples(arrays)
        return ServingJSONResponse(write_response(outputs, row_format),
                                   headers={"X-Batch-Size": str(batch_size)})

    async def models_endpoint(request: Request) -> JSONResponse:
        match = _PATH.match(request.path_params["rest"])
        if not match:
            raise ServingError(404, f"unknown path {request.url.path}; the API is "
                                    f"/v1/models/<name>[/versions/<v>][/metadata | :predict].")
        name, version = match["name"], match["version"]
        if match["verb"]:
            if match["verb"] != "predict":
                raise ServingError(404, f"only :predict is served, not :{match['verb']}.")
            if request.method != "POST":
                raise ServingError(405, ":predict takes a POST request.")
            return await predict(request, name, version)
        if request.method != "GET":
            raise ServingError(405, "model status and metadata take a GET request.")
        answer = await (metadata if match["metadata"] else status)(name, version)
        return ServingJSONResponse(answer)

    async def serving_error(request, error: ServingError):
        return ServingJSONResponse({"error": str(error)}, status_code=error.status)

    async def http_error(request, error: HTTPException):
        return ServingJSONResponse({"error": error.detail}, status_code=error.status_code)

    async def unexpected_error(request, error: Exception):
        return ServingJSONResponse(
            {"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    async def demo_page(request: Request) -> HTMLResponse:
        return HTMLResponse(DEMO_PAGE.read_text().replace(
            "__MODELS__", json.dumps(sorted(repository.models))))

    app = Starlette(routes=[Route("/v1/models/{rest:path}", models_endpoint,
                                  methods=["GET", "POST"]),
                            Route("/", demo_page)],
                    exception_handlers={ServingError: serving_error, HTTPException: http_error,
                                        Exception: unexpected_error},
                    lifespan=lifespan)
    app.state.repository = repository
    return app


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8501, **options) -> None:
    """Runs the server until interrupted."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops that text exports use)
    import uvicorn

    root = Path(model_dir)
    app = create_app(root, **options)
    served = ", ".join(f"{name} (versions {', '.join(map(str, sorted(versions)))})"
                       for name, versions in sorted(app.state.repository.models.items()))
    print(f"[serve] serving {served or 'nothing yet'} from {root} (polled for new versions) at "
          f"http://{host}:{port}/v1/models/<name>", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def wait_ready(url: str, timeout: float = 60.0) -> None:
    """Waits until `url` answers (for tests and benchmarks that start a server process)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
