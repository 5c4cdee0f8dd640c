"""The model server, a product of its own beside the training framework: TF Serving's REST API
(`serving.rest`) over a version repository (`serving.repository`), with request batching
(`serving.batching`), TF Serving's JSON mapping (`serving.json_mapping`) and a demo page. It reads
SavedModels and imports nothing of `apps` or `zoo`."""

from serving.rest import create_app, serve, wait_ready

__all__ = ["create_app", "serve", "wait_ready"]
