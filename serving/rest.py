"""A local model server speaking TF Serving's REST API, for every export under one folder.

`python -m apps serve --model-dir saved_models` (or `serving.serve`) serves
`saved_models/<name>/<version>/` at `/v1/models/<name>[/versions/<v>][/metadata | :predict]`, so a
client written for TF Serving works unchanged: the row (`instances`) and columnar (`inputs`)
request formats, `signature_name`, `{"b64": ...}` for bytes, and `{"error": ...}` bodies with a
4xx status for bad requests.

- Versions: the newest `keep_versions` of each model stay loaded (1 by default, as TF Serving);
  the newest is the default, any loaded one can be named. The folder is polled
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
import json
import re
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from serving.batching import Batcher, call_signature, examples_in
from serving.json_mapping import ServingError, ServingJSONResponse, read_request, write_response
from serving.repository import ModelRepository

DEFAULT_SIGNATURE = "serving_default"
DEMO_PAGE = Path(__file__).with_name("demo.html")
_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                   r"(?:/(?P<metadata>metadata)|:(?P<verb>[a-z]+))?$")


def create_app(model_dir: Path, batching: bool = True, max_batch_size: int = 64,
               max_request_mb: float = 16.0, poll_seconds: float = 1.0,
               keep_versions: int = 1) -> Starlette:
    """The ASGI application: the REST API over the exports under `model_dir`."""
    repository = ModelRepository(model_dir, keep_versions)
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
        except RecursionError:  # Python's parser gives up on arrays nested ~1,000 deep
            raise ServingError(400, "the request body nests its JSON arrays or objects too deep "
                                    "to read; send each example as a flat or shallow list.")
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
            batch_size = examples_in(arrays)
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
