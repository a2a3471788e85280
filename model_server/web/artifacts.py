"""A model version's evaluation report and plots, read from its training run's MLflow artifacts.

The registry names the run (``get_model_version(name, version).run_id``); the report is the JSON file under
``evaluation.json/`` and the plots ``plots/<name>.png`` (``pipeline.registry.tracking.log_training_run``). The
store is read through ``reader_tracking_uri``, as the champion is: with the embedded server, as the read-only
role. A client with explicit URIs touches none of MLflow's process-wide state, so these reads may run in
worker threads beside the champion's refresh. Every call blocks (database, files, maybe HTTP): callers run
them off the event loop. A registered version's run never changes, so what was read is kept in memory.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.defaults import REGISTERED_MODEL
from pipeline.core.errors import one_line
from pipeline.core.settings import Settings
from pipeline.registry.report import (
    PLOT_NAMES,
    REPORT_ARTIFACT_DIR,
    blend_line,
    evaluation_headers,
    evaluation_rows,
)

MAX_ARTIFACT_BYTES = 8 << 20  # a report or a plot larger than this is not served (they are ~100 KiB)
CACHED_ITEMS = 64  # (version, what) entries kept, least recently used dropped first


_PASSWORD = re.compile(r"(//[^/:@\s]+):[^@\s/]+@")  # user:password@ in a URI an error may quote


def _why(exc: BaseException) -> str:
    """The error on one line, a password in a URI it quotes masked."""
    return _PASSWORD.sub(r"\1:***@", one_line(exc))


class VersionNotFound(Exception):
    """The registry has no such version of the registered model."""


class ArtifactMissing(Exception):
    """The version's run has no such artifact (or one over the size cap)."""


class RegistryUnavailable(Exception):
    """The registry or its artifact store could not be read; the message says why, on one line."""


@dataclass(frozen=True)
class Evaluation:
    """What the runs page shows of one version: its report as a table, the blend's weights, the plots its run
    holds."""

    version: int
    run_id: str
    k: int
    headers: list[str]
    rows: list[list[str]]
    blend: str | None  # None: a report without the blend's weights
    plots: tuple[str, ...]


class RunArtifacts:
    """Reads versions' reports and plots, once each (a bounded in-memory cache shared by all requests)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None  # an MlflowClient on the reader's URI, made on first use
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, str], Any] = OrderedDict()

    def evaluation(self, version: int) -> Evaluation:
        """The version's evaluation report and plot names; raises ``VersionNotFound``, ``ArtifactMissing`` or
        ``RegistryUnavailable``."""
        return self._cached((version, "evaluation"), lambda: self._read_evaluation(version))

    def plot(self, version: int, name: str) -> bytes:
        """The PNG of ``plots/<name>.png``; ``name`` must be one of ``PLOT_NAMES`` (checked by the caller)."""
        if name not in PLOT_NAMES:
            raise ArtifactMissing(f"no plot {name!r}")
        return self._cached((version, f"plot:{name}"), lambda: self._read_plot(version, name))

    def _cached(self, key: tuple[int, str], read: Any) -> Any:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = read()  # outside the lock: one slow read does not hold up the others; failures are not kept
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > CACHED_ITEMS:
                self._cache.popitem(last=False)
        return value

    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            from pipeline.registry.store import reader_tracking_uri

            uri = reader_tracking_uri(self.settings)  # may start the embedded server: resolved once
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client

    def _run_id(self, version: int) -> str:
        return self._cached((version, "run_id"), lambda: self._registry_run_id(version))

    def _registry_run_id(self, version: int) -> str:
        from mlflow.exceptions import MlflowException

        try:
            run_id = self._mlflow().get_model_version(REGISTERED_MODEL, str(version)).run_id
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise VersionNotFound(f"No model version {version} of {REGISTERED_MODEL}.") from None
            raise RegistryUnavailable(_why(exc)) from None
        except Exception as exc:  # the store unreachable, a role without SELECT, ...: say so, on one line
            raise RegistryUnavailable(_why(exc)) from None
        if not run_id:
            raise ArtifactMissing(f"{REGISTERED_MODEL} v{version} names no training run")
        return str(run_id)

    def _file(self, run_id: str, folder: str, pick: Any) -> str | None:
        """The path of the artifact ``pick`` chooses among ``folder``'s files (None: none fits)."""
        files = [f for f in self._mlflow().list_artifacts(run_id, folder) if not f.is_dir]
        chosen = next((f for f in sorted(files, key=lambda f: f.path) if pick(f.path)), None)
        if chosen is None:
            return None
        if chosen.file_size is not None and chosen.file_size > MAX_ARTIFACT_BYTES:
            raise ArtifactMissing(f"{chosen.path} is over {MAX_ARTIFACT_BYTES >> 20} MiB")
        return str(chosen.path)

    def _download(self, run_id: str, path: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="movierec-ui-") as tmp:
            local = Path(self._mlflow().download_artifacts(run_id, path, tmp))
            if local.stat().st_size > MAX_ARTIFACT_BYTES:  # the listing may not know sizes
                raise ArtifactMissing(f"{path} is over {MAX_ARTIFACT_BYTES >> 20} MiB")
            return local.read_bytes()

    def _guarded(self, read: Any) -> Any:
        try:
            return read()
        except (VersionNotFound, ArtifactMissing, RegistryUnavailable):
            raise
        except Exception as exc:
            raise RegistryUnavailable(_why(exc)) from None

    def _read_evaluation(self, version: int) -> Evaluation:
        run_id = self._run_id(version)

        def read() -> Evaluation:
            path = self._file(run_id, REPORT_ARTIFACT_DIR, lambda p: p.endswith(".json"))
            if path is None:
                raise ArtifactMissing(f"run {run_id} of v{version} logged no {REPORT_ARTIFACT_DIR}")
            raw = self._download(run_id, path)
            plots = {Path(f.path).name for f in self._mlflow().list_artifacts(run_id, "plots")}
            try:
                report = json.loads(raw)
                k, headers, rows = int(report["k"]), evaluation_headers(report["k"]), evaluation_rows(report)
                blend = blend_line(report) if "blend_weight" in report else None
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ArtifactMissing(f"{path} is not an evaluation report ({one_line(exc)})") from None
            shown = tuple(n for n in PLOT_NAMES if f"{n}.png" in plots)
            return Evaluation(version, run_id, k, headers, rows, blend, shown)

        return self._guarded(read)

    def _read_plot(self, version: int, name: str) -> bytes:
        run_id = self._run_id(version)

        def read() -> bytes:
            path = self._file(run_id, "plots", lambda p: Path(p).name == f"{name}.png")
            if path is None:
                raise ArtifactMissing(f"run {run_id} of v{version} logged no plots/{name}.png")
            return self._download(run_id, path)

        return self._guarded(read)
