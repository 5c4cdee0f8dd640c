"""The exports a server answers from: `<root>/<name>/<version>/` SavedModels, polled for new
versions, loaded once complete, the newest N of each model kept."""

import dataclasses
import time
from pathlib import Path

import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

from serving.json_mapping import ServingError


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
    """The exports under `root` (`<name>/<version>/`), loaded as their folders become complete.
    Of each model the newest `keep_versions` versions stay loaded, older ones are unloaded (TF
    Serving's default policy serves the latest version alone)."""

    def __init__(self, root: Path, keep_versions: int = 1):
        self.root, self.keep_versions = root, keep_versions
        self.models: dict[str, dict[int, LoadedVersion]] = {}
        self._seen: dict[Path, tuple] = {}  # a version folder's files at the previous poll
        self._failed: dict[Path, tuple] = {}  # its files when it last failed to load

    def poll(self) -> None:
        """Of each model's newest `keep_versions` folders holding a saved_model.pb, loads those
        whose files did not change since the previous poll (or for two seconds); one that fails
        to load is reported and retried only once its files change."""
        if not self.root.is_dir():
            return
        for model_dir in sorted(path for path in self.root.iterdir() if path.is_dir()):
            newest = sorted((path for path in model_dir.iterdir() if path.name.isdigit()
                             and (path / "saved_model.pb").exists()),
                            key=lambda path: int(path.name))[-self.keep_versions:]
            for version_dir in newest:
                name, version = model_dir.name, int(version_dir.name)
                if version in self.models.get(name, {}):
                    continue
                state, previous = _files_state(version_dir), self._seen.get(version_dir)
                self._seen[version_dir] = state
                settled = state == previous or max(
                    (mtime for _, _, mtime in state), default=0) < time.time_ns() - 2e9
                if not settled or self._failed.get(version_dir) == state:
                    continue
                try:
                    loaded = LoadedVersion.load(version, version_dir)
                except Exception as error:  # a broken export must not stop the server
                    self._failed[version_dir] = state
                    print(f"[serve] could not load {version_dir}: {error}", flush=True)
                    continue
                self.models.setdefault(name, {})[version] = loaded
                print(f"[serve] loaded {name} version {version} from {version_dir}", flush=True)
                self._unload_old(name)

    def _unload_old(self, name: str) -> None:
        """Drops all but the newest `keep_versions` loaded versions of `name` (a request already
        holding an older one finishes on it)."""
        versions = self.models[name]
        for version in sorted(versions)[:-self.keep_versions]:
            del versions[version]
            print(f"[serve] unloaded {name} version {version}", flush=True)

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
