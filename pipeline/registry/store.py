"""Where MLflow is and how things are named there.

* Where: ``tracking_uri(settings)``: ``MLFLOW_TRACKING_URI`` when set; else the embedded server's ``mlflow``
  database; else (``DATABASE_URL`` set, no MLflow URI) a local ``sqlite:///<home>/mlflow.db``. For a database
  store, artifacts go under ``<home>/mlartifacts/<experiment>``; a tracking server keeps its own.
* One experiment per dataset (``movierec-<dataset>``), one registered model (``movierec-hybrid``) whose
  alias ``champion`` names the version the API serves.

Metric names: MLflow allows no ``@``, so ``ndcg@10`` is logged as ``ndcg_at_10``; final metrics carry
their protocol (``temporal.ndcg_at_10``, ``random.rmse``), baselines theirs too
(``baseline.ease.temporal.ndcg_at_10``).

Every public function of ``pipeline.registry`` sets MLflow's process-wide tracking/registry URI only for its
own duration (``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``, which ``Settings()`` would
then read as if the user had set it); so they are not meant for concurrent threads of one process.
``configure_mlflow`` is the explicit, lasting variant."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.core.errors import MovierecError
from pipeline.core.settings import Settings
from pipeline.models.hybrid.config import HybridConfig

MODEL_ARTIFACT = "published"  # key of the PublishedBlend.save directory among the pyfunc's artifacts
MODEL_NAME = "model"  # name of the logged model within its run
# The training run's artifact path of its evaluation's validation network (pipeline.evaluation
# .validation_chain): what next week's evaluation starts from.
EVALUATION_NETWORK_ARTIFACT = "evaluation-network"
# Metrics where a smaller figure is the better one; every other gate metric must grow.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "loss"})
_SERVER_SCHEMES = ("http://", "https://", "databricks")


def tracking_uri(settings: Settings) -> str:
    """The MLflow tracking (and registry) URI for ``settings``; may start the embedded server."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    if settings.embedded:
        from database import embedded
        from database.engine import sqlalchemy_url

        return sqlalchemy_url(embedded.url_for(settings, embedded.MLFLOW_DB))
    return f"sqlite:///{settings.home / 'mlflow.db'}"


def reader_tracking_uri(settings: Settings) -> str:
    """The registry URI the API server reads the champion through, as little privileged as the store allows:
    ``MLFLOW_READER_TRACKING_URI`` when set; else ``MLFLOW_TRACKING_URI`` as it is (a tracking server, or a
    store the user chose: set the reader variable for a database store with a privileged role); else the
    embedded server's ``mlflow`` database as the read-only role ``movierec_reader`` (``SELECT`` on MLflow's
    tables, nothing else); else the local sqlite file (no roles to narrow). May start the embedded server."""
    if settings.mlflow_reader_tracking_uri:
        return settings.mlflow_reader_tracking_uri
    if settings.mlflow_tracking_uri or not settings.embedded:
        return tracking_uri(settings)
    from database.engine import as_reader

    return as_reader(tracking_uri(settings), "postgresql+psycopg2")


def reader_settings(settings: Settings) -> Settings:
    """``settings`` with the registry at ``reader_tracking_uri``: what the API server passes to
    ``champion_version`` and ``load_champion``. Resolved once, so later calls start nothing."""
    return settings.model_copy(update={"mlflow_tracking_uri": reader_tracking_uri(settings)})


def _is_server(uri: str) -> bool:
    return uri.startswith(_SERVER_SCHEMES)


def _prepare_store(settings: Settings, uri: str) -> None:
    if uri.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)


def configure_mlflow(settings: Settings) -> str:
    """Point this process's MLflow (tracking and registry) at ``tracking_uri(settings)``; return the URI.

    Lasting and process-wide, unlike the functions below, and unlike ``mlflow.set_tracking_uri`` it
    leaves ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` in the environment as they were, so a later
    ``Settings()`` still reads what the user set.
    """
    uri = tracking_uri(settings)
    _prepare_store(settings, uri)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _restore_env(saved)
    return uri


def _restore_env(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def mlflow_client(settings: Settings) -> Iterator[MlflowClient]:
    """A client for ``settings``' store, with the fluent API pointed there for the duration only."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved = (getattr(tracking_utils, "_tracking_uri", None), getattr(registry_utils, "_registry_uri", None))
    uri = configure_mlflow(settings)
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(saved[0])  # type: ignore[arg-type]  # None restores "unset"
        mlflow.set_registry_uri(saved[1])  # type: ignore[arg-type]  # None restores "unset"
        _restore_env(saved_env)


def experiment_name(dataset: str) -> str:
    return f"movierec-{dataset}"


def experiment_id(client: MlflowClient, settings: Settings, uri: str, dataset: str) -> str:
    name = experiment_name(dataset)
    found = client.get_experiment_by_name(name)
    if found is None:
        # A tracking server keeps artifacts where it is configured to; a database store would default
        # to ./mlruns under whatever the working directory happens to be.
        location = None if _is_server(uri) else (settings.home / "mlartifacts" / name).as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:  # another process created it first
            found = client.get_experiment_by_name(name)
            if found is None:
                raise MovierecError(f"cannot create MLflow experiment {name}: {exc}") from exc
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


_INVALID_NAME_CHARS = re.compile(r"[^\w\-. :/]")


def metric_key(name: str) -> str:
    """An MLflow-safe metric name: ``ndcg@10`` -> ``ndcg_at_10``; other odd characters become ``_``."""
    return _INVALID_NAME_CHARS.sub("_", name.replace("@", "_at_"))


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"temporal": {"ndcg@10": x}}`` or ``{"temporal.ndcg@10": x}`` -> ``{"temporal.ndcg_at_10": x}``.

    None values are dropped; NaN is kept (MLflow stores it).
    """
    out: dict[str, float] = {}
    for name, value in metrics.items():
        key = f"{prefix}{metric_key(str(name))}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, key + "."))
        elif value is not None:
            out[key] = float(value)
    return out


def config_params(cfg: HybridConfig) -> dict[str, str]:
    """The whole config as MLflow params: tuples as ``"32,16"``, None as ``"None"``."""
    return {
        k: ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v) for k, v in cfg.to_dict().items()
    }


def cutoff_text(data_cutoff: datetime | None) -> str:
    return data_cutoff.isoformat() if data_cutoff is not None else "none"


def higher_is_better(metric: str) -> bool:
    return metric.split("_at_")[0] not in LOWER_IS_BETTER


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
