"""MLflow tracking and the model registry: log a training run, gate promotion, load the champion.

* Where: ``tracking_uri(settings)``: ``MLFLOW_TRACKING_URI`` when set; else the embedded server's ``mlflow``
  database; else (``DATABASE_URL`` set, no MLflow URI) a local ``sqlite:///<home>/mlflow.db``. For a database
  store, artifacts go under ``<home>/mlartifacts/<experiment>``; a tracking server keeps its own.
* One experiment per dataset (``movierec-<dataset>``), one registered model (``movierec-hybrid``) whose
  alias ``champion`` names the version the API serves.
* The model is the published blend (``pipeline.published.PublishedModel``: the network with its EASE and
  biased-MF partners), logged as a pyfunc (``HybridPyfunc``) whose only artifact is the directory written
  by ``PublishedModel.save``: ``mlflow.pytorch`` would save a ``torch.export`` graph of the network alone,
  not what the evaluation scored.
* ``promote_if_better`` moves ``champion`` only when the new version strictly beats the champion on the
  same protocol and metric, and records every decision both in MLflow (tags) and in ``model_versions``.

Metric names: MLflow allows no ``@``, so ``ndcg@10`` is logged as ``ndcg_at_10``; final metrics carry
their protocol (``temporal.ndcg_at_10``, ``random.rmse``), baselines theirs too
(``baseline.ease.temporal.ndcg_at_10``).

Every public function here sets MLflow's process-wide tracking/registry URI only for its own duration
(``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``, which ``Settings()`` would then read
as if the user had set it); so they are not meant for concurrent threads of one process.
``configure_mlflow`` is the explicit, lasting variant.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema
from sqlalchemy import Engine, text

from pipeline.errors import MovierecError
from pipeline.model import HybridConfig
from pipeline.published import PublishedModel
from pipeline.settings import Settings
from pipeline.train import TrainingResult, resolve_device

log = logging.getLogger(__name__)

__all__ = [
    "CHAMPION_ALIAS", "REGISTERED_MODEL", "HybridPyfunc", "PromotionDecision", "RunInfo", "champion_version",
    "config_params",
    "configure_mlflow", "experiment_name", "flatten_metrics", "json_safe", "load_champion", "log_training_run",
    "metric_key", "predict_ratings", "promote_if_better", "tracking_uri",
]

REGISTERED_MODEL = "movierec-hybrid"
CHAMPION_ALIAS = "champion"
MODEL_ARTIFACT = "published"  # key of the PublishedModel.save directory among the pyfunc's artifacts
MODEL_NAME = "model"       # name of the logged model within its run
# Metrics where a smaller figure is the better one; every other gate metric must grow.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "loss"})
# Distributions the pyfunc needs besides the movierec code itself (see HybridPyfunc).
_REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "scipy", "sqlalchemy", "cloudpickle")
_SERVER_SCHEMES = ("http://", "https://", "databricks")


# --- where --------------------------------------------------------------------------------------------------

def tracking_uri(settings: Settings) -> str:
    """The MLflow tracking (and registry) URI for ``settings``; may start the embedded server."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    if settings.embedded:
        from database import embedded
        from database.engine import sqlalchemy_url

        return sqlalchemy_url(embedded.url_for(settings, embedded.MLFLOW_DB))
    return f"sqlite:///{settings.home / 'mlflow.db'}"


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
def _mlflow(settings: Settings) -> Iterator[MlflowClient]:
    """A client for ``settings``' store, with the fluent API pointed there for the duration only."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved = (getattr(tracking_utils, "_tracking_uri", None), getattr(registry_utils, "_registry_uri", None))
    uri = configure_mlflow(settings)
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])  # type: ignore[arg-type]  # None restores "unset"
        _restore_env(saved_env)


def experiment_name(dataset: str) -> str:
    return f"movierec-{dataset}"


def _experiment_id(client: MlflowClient, settings: Settings, uri: str, dataset: str) -> str:
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


# --- names and values ---------------------------------------------------------------------------------------

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
    return {k: ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)
            for k, v in cfg.to_dict().items()}


def _cutoff_text(data_cutoff: datetime | None) -> str:
    return data_cutoff.isoformat() if data_cutoff is not None else "none"


def _higher_is_better(metric: str) -> bool:
    return metric.split("_at_")[0] not in LOWER_IS_BETTER


def json_safe(value: Any) -> Any:
    """Plain JSON values: NaN/Infinity become None (PostgreSQL's jsonb and some XCom backends reject them),
    numpy scalars Python numbers, mapping keys strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(x) for x in value]
    if isinstance(value, (np.floating, np.integer)):
        return json_safe(value.item())
    return value


def _json(value: Any) -> str:
    """JSON for a jsonb column."""
    return json.dumps(json_safe(value), default=str)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- the pyfunc ---------------------------------------------------------------------------------------------

def predict_ratings(model: PublishedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Predicted ratings (the blend's) of ``frame``'s (user_id, movie_id) rows, as a ``rating`` column.

    A user or movie the model has never seen gets NaN, not a guess: the caller knows better whether
    the global mean, a popularity prior or the content-only path (``predict_content_index``) fits.
    """
    net = model.network
    missing = {"user_id", "movie_id"} - set(frame.columns)
    if missing:
        raise MovierecError(f"input lacks column(s) {sorted(missing)}; expected user_id, movie_id")
    users = net.user_map.index(frame["user_id"].to_numpy(np.int64))
    items = net.item_map.index(frame["movie_id"].to_numpy(np.int64))
    known = (users >= 0) & (items >= 0)
    out = np.full(len(frame), np.nan, np.float64)
    if known.any():
        out[known] = model.predict_index(users[known], items[known])
    return pd.DataFrame({"rating": out}, index=frame.index)


class HybridPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around ``PublishedModel``: DataFrame (user_id, movie_id) -> DataFrame (rating).

    Unknown users or movies get NaN (see ``predict_ratings``). The device comes from the load-time
    ``model_config={"device": ...}`` (default cpu). Loading needs the movierec package importable (it
    is not on PyPI, so it is not among the logged pip requirements); the weights travel as the
    ``published`` artifact, never inside the pickle.
    """

    def __init__(self) -> None:
        self.model: PublishedModel | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        device = (context.model_config or {}).get("device", "cpu")
        self.model = PublishedModel.load(Path(context.artifacts[MODEL_ARTIFACT]), device=device)

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.model is None:
            raise MovierecError("HybridPyfunc.predict before load_context")
        return predict_ratings(self.model, pd.DataFrame(model_input))


def _pip_requirements() -> list[str]:
    reqs = []
    for dist in _REQUIREMENTS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        reqs.append(f"{dist}=={version.split('+')[0]}")  # torch 2.x+cpu: any build of that release
    return reqs


# Declared, not inferred: ids are integers (inference would also warn that ints cannot hold NaN).
_SIGNATURE = ModelSignature(inputs=Schema([ColSpec("long", "user_id"), ColSpec("long", "movie_id")]),
                            outputs=Schema([ColSpec("double", "rating")]))


def _input_example(model: PublishedModel, n: int = 5) -> pd.DataFrame:
    model = model.network  # type: ignore[assignment]
    k = min(n, len(model.user_map), len(model.item_map))
    return pd.DataFrame({"user_id": model.user_map.ids[:k].astype(np.int64),
                         "movie_id": model.item_map.ids[::max(len(model.item_map) // max(k, 1), 1)][:k]
                         .astype(np.int64)})


# --- logging a run ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunInfo:
    """What ``log_training_run`` produced. ``model_uri`` is the registry URI ``models:/NAME/VERSION``."""

    run_id: str
    model_uri: str
    registered_version: int


def _learning_curve(history: list[dict[str, float]]) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas on save
    from matplotlib.ticker import MaxNLocator

    epochs = [int(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    panels = [("total loss", ("loss",)), ("rating MSE", ("mse", "val_mse")),
              ("ranking cross-entropy", ("ranking_ce", "val_ranking_ce"))]
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    for ax, (title, keys) in zip(fig.subplots(1, len(panels)), panels):
        for key in keys:
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return fig


def _evaluation_chart(values: dict[str, float], metric: str) -> Any:
    from matplotlib.figure import Figure

    names = list(values)
    fig = Figure(figsize=(max(4.0, 1.2 * len(names)), 3.6), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(names, [values[n] for n in names],
                  color=["tab:orange" if n == "hybrid" else "tab:blue" for n in names])
    ax.bar_label(bars, fmt="%.4f")
    ax.set_title(metric)
    return fig


def log_training_run(settings: Settings, published: PublishedModel, result: TrainingResult,
                     metrics: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]], *,
                     dataset: str, data_cutoff: datetime | None, artifacts: Mapping[str, Path] | None = None,
                     plots: bool = True, protocol: str = "temporal",
                     primary_metric: str = "ndcg_at_10") -> RunInfo:
    """Log one training run in ``movierec-<dataset>`` and register its model as a new version.

    ``metrics``: the model's final figures, ``{"temporal": {"ndcg@10": x}}`` or flat
    ``{"temporal.ndcg@10": x}``; ``baselines``: baseline name -> the same shape. ``artifacts``: extra
    files or directories, logged under their key. ``protocol``/``primary_metric`` pick the figure of the
    evaluation chart. The new version is not promoted here: see ``promote_if_better``.
    """
    model = published.network
    final = flatten_metrics(metrics)
    for name, values in baselines.items():
        final.update(flatten_metrics(values, f"baseline.{metric_key(name.lower())}."))
    params = config_params(model.config)
    params.update(dataset=dataset, data_cutoff=_cutoff_text(data_cutoff), device=str(model.device),
                  n_users=str(len(model.user_map)), n_movies=str(len(model.item_map)),
                  n_train=str(model.meta.get("n_train", "")), blend_weight=str(published.weight),
                  blend_rating_weight=str(published.rating_weight),
                  blend_rerank_weight=str(published.rerank_weight))
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    batch = [Metric(metric_key(k if k != "seconds" else "epoch_seconds"), float(v), now_ms,
                    int(h.get("epoch", i + 1)))
             for i, h in enumerate(result.history) for k, v in h.items() if k != "epoch" and v is not None]
    batch += [Metric(k, v, now_ms, 0) for k, v in final.items()]
    batch += [Metric(f"train.{k}", float(v), now_ms, 0) for k, v in (
        ("best_epoch", result.best_epoch), ("epochs_run", len(result.history)), ("seconds", result.seconds),
        ("samples_per_s", result.samples_per_s))]
    tags = {"movierec.dataset": dataset, "movierec.data_cutoff": _cutoff_text(data_cutoff)}

    with _mlflow(settings) as client:
        uri = mlflow.get_tracking_uri()
        experiment_id = _experiment_id(client, settings, uri, dataset)
        run_name = f"{dataset}-{data_cutoff.date().isoformat() if data_cutoff else 'all'}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            run_id = run.info.run_id
            for chunk in _chunks([Param(k, v) for k, v in params.items()], 100):
                client.log_batch(run_id, params=chunk)
            for chunk in _chunks(batch, 1000):
                client.log_batch(run_id, metrics=chunk)
            id_maps = {"user_ids": model.user_map.to_list(), "movie_ids": model.item_map.to_list()}
            client.log_dict(run_id, id_maps, "id_maps.json")
            if plots:
                if result.history:
                    client.log_figure(run_id, _learning_curve(result.history), "plots/learning_curve.png")
                key = f"{protocol}.{metric_key(primary_metric)}"
                chart = {"hybrid": final[key]} if key in final else {}
                chart.update({n: final[f"baseline.{metric_key(n.lower())}.{key}"] for n in baselines
                              if f"baseline.{metric_key(n.lower())}.{key}" in final})
                if chart:
                    client.log_figure(run_id, _evaluation_chart(chart, key), "plots/evaluation.png")
            for name, path in (artifacts or {}).items():
                path = Path(path)
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), name)
                else:
                    client.log_artifact(run_id, str(path), name)
            example = _input_example(published)
            with tempfile.TemporaryDirectory(prefix="movierec-model-") as tmp:
                saved = published.save(Path(tmp) / MODEL_ARTIFACT)
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME, python_model=HybridPyfunc(), artifacts={MODEL_ARTIFACT: str(saved)},
                    signature=_SIGNATURE, input_example=example, pip_requirements=_pip_requirements(),
                    registered_model_name=REGISTERED_MODEL, model_config={"device": "cpu"})
        version = info.registered_model_version
        if version is None:  # log_model registers synchronously when given a name; be explicit if not
            raise MovierecError(f"MLflow did not register {REGISTERED_MODEL} for run {run_id}")
    log.info("logged run %s, %s version %s", run_id, REGISTERED_MODEL, version)
    return RunInfo(run_id, f"models:/{REGISTERED_MODEL}/{version}", int(version))


# --- promotion ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict on one version. ``champion_*``: the champion it was compared with, if any."""

    promoted: bool
    new_value: float
    champion_value: float | None
    champion_version: int | None
    reason: str
    version: int | None = None


def _champion(client: MlflowClient) -> Any | None:
    """The champion ModelVersion, or None when there is no registered model or no alias yet."""
    try:
        registered = client.get_registered_model(REGISTERED_MODEL)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = (registered.aliases or {}).get(CHAMPION_ALIAS)
    return client.get_model_version(REGISTERED_MODEL, str(version)) if version is not None else None


def _champion_figure(client: MlflowClient, conn: Any, champion: Any, key: str, protocol: str,
                     primary_metric: str) -> float | None:
    """The champion's figure: its run's metric (full precision), else its model_versions row."""
    if champion.run_id:
        value = client.get_run(champion.run_id).data.metrics.get(key)
        if value is not None:
            return float(value)
    row = conn.execute(text(
        "SELECT metric_value FROM model_versions WHERE registered_model = :model "
        "AND registered_version = :version AND protocol = :protocol AND primary_metric = :metric "
        "AND metric_value IS NOT NULL "
        "ORDER BY model_version_id DESC LIMIT 1"),
        {"model": REGISTERED_MODEL, "version": int(champion.version), "protocol": protocol,
         "metric": primary_metric}).first()
    return float(row[0]) if row else None


def _verdict(new: float, champion: float | None, champion_version: int | None, key: str,
             higher: bool, force: bool) -> tuple[bool, str]:
    better = ">" if higher else "<"
    if math.isnan(new):
        return False, f"rejected: {key} is NaN"
    if champion_version is None:
        return True, f"promoted: no champion yet ({key} = {new:.6g})"
    if champion is None or math.isnan(champion):
        if force:
            return True, f"promoted (forced): champion v{champion_version} has no {key} figure"
        return False, (f"rejected: champion v{champion_version} has no {key} figure to compare with "
                       "(promote with force=True to replace it)")
    wins = new > champion if higher else new < champion
    if wins:
        return True, f"promoted: {key} {new:.6g} {better} champion v{champion_version} {champion:.6g}"
    if force:
        return True, f"promoted (forced): {key} {new:.6g} vs champion v{champion_version} {champion:.6g}"
    return False, f"rejected: {key} {new:.6g} not {better} champion v{champion_version} {champion:.6g}"


def promote_if_better(settings: Settings, engine: Engine, run: RunInfo, *, dataset: str,
                      data_cutoff: datetime | None, protocol: str = "temporal",
                      primary_metric: str = "ndcg_at_10", metrics: Mapping[str, Any],
                      params: Mapping[str, Any], force: bool = False) -> PromotionDecision:
    """Move the ``champion`` alias to ``run``'s version if it beats the champion; record the decision.

    Better means strictly greater, or strictly smaller for error metrics (``LOWER_IS_BETTER``), on
    ``<protocol>.<primary_metric>`` of ``metrics`` (same shapes as ``log_training_run``). No champion: the
    new version wins. A champion without that figure (another protocol or metric) is kept unless
    ``force``. The decision lands in MLflow (``promotion.*`` tags on the version and its run) and in one
    ``model_versions`` row (``champion`` or ``rejected``; a replaced champion's row becomes ``retired``),
    in one transaction that also serialises concurrent promotions.
    """
    metric = metric_key(primary_metric)
    key = f"{protocol}.{metric}"
    flat = flatten_metrics(metrics)
    if key not in flat:
        raise MovierecError(f"metrics have no {key} (have: {', '.join(sorted(flat)) or 'none'})")
    new_value = flat[key]
    version = run.registered_version

    with _mlflow(settings) as client, engine.connect() as conn:
        trans = conn.begin()
        try:
            # One promotion at a time per registered model, across processes.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:lock))"),
                         {"lock": f"movierec.promotion.{REGISTERED_MODEL}"})
            champion = _champion(client)
            champion_version = int(champion.version) if champion is not None else None
            if champion_version == version:
                raise MovierecError(f"{REGISTERED_MODEL} v{version} is already the champion")
            champion_value = (_champion_figure(client, conn, champion, key, protocol, metric)
                              if champion is not None else None)
            promoted, reason = _verdict(new_value, champion_value, champion_version, key,
                                        _higher_is_better(metric), force)
            started = client.get_run(run.run_id).info.start_time
            trained_at = datetime.fromtimestamp(started / 1000, UTC) if started else datetime.now(UTC)
            if promoted:
                conn.execute(text("UPDATE model_versions SET status = 'retired' "
                                  "WHERE registered_model = :model AND status = 'champion'"),
                             {"model": REGISTERED_MODEL})
            conn.execute(_INSERT_VERSION, {
                "model": REGISTERED_MODEL, "version": version, "run_id": run.run_id, "dataset": dataset,
                "cutoff": data_cutoff, "protocol": protocol, "metric": metric,
                "value": new_value if math.isfinite(new_value) else None, "champion_value": champion_value,
                "metrics": _json(flat), "params": _json(dict(params)),
                "status": "champion" if promoted else "rejected", "decision": reason,
                "trained_at": trained_at})

            # MLflow last, the alias move very last: if any of it fails, the rows above roll back and
            # nothing claims a promotion that did not happen.
            tags = {"decision": "promoted" if promoted else "rejected", "reason": reason,
                    "protocol": protocol, "metric": metric, "new_value": repr(new_value),
                    "champion_value": "none" if champion_value is None else repr(champion_value),
                    "champion_version": "none" if champion_version is None else str(champion_version)}
            tags = {f"promotion.{k}": v for k, v in tags.items()}
            client.log_batch(run.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            for name, value in tags.items():
                client.set_model_version_tag(REGISTERED_MODEL, str(version), name, value)
            if promoted:
                if champion_version is not None:
                    client.set_model_version_tag(REGISTERED_MODEL, str(champion_version),
                                                 "promotion.retired_by", str(version))
                client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, str(version))
        except BaseException:
            trans.rollback()
            raise
        try:
            trans.commit()
        except BaseException:
            if promoted:  # keep MLflow and the table telling the same story
                _restore_alias(client, champion_version)
            raise
    log.info("%s v%s: %s", REGISTERED_MODEL, version, reason)
    return PromotionDecision(promoted, new_value, champion_value, champion_version, reason, version)


_INSERT_VERSION = text(
    "INSERT INTO model_versions (registered_model, registered_version, mlflow_run_id, dataset, data_cutoff, "
    "protocol, primary_metric, metric_value, champion_metric_value, metrics, params, status, decision, "
    "trained_at) VALUES (:model, :version, :run_id, :dataset, :cutoff, :protocol, :metric, :value, "
    ":champion_value, CAST(:metrics AS jsonb), CAST(:params AS jsonb), :status, :decision, :trained_at)")


def _restore_alias(client: MlflowClient, version: int | None) -> None:
    try:
        if version is None:
            client.delete_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
        else:
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, str(version))
    except MlflowException:
        log.exception("could not move %s@%s back to %s", REGISTERED_MODEL, CHAMPION_ALIAS, version)


# --- loading ------------------------------------------------------------------------------------------------

def _model_dir(settings: Settings, version: Any) -> Path:
    """The champion's ``PublishedModel.save`` directory, downloaded once into ``<home>/models``."""
    target = settings.home / "models" / f"{REGISTERED_MODEL}-v{version.version}-{version.run_id or 'norun'}"
    if not (target / MODEL_ARTIFACT / "blend.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
            local = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{REGISTERED_MODEL}/{version.version}", dst_path=tmp))
            from mlflow.models import Model

            flavor = Model.load(str(local / "MLmodel")).flavors["python_function"]
            source = local / flavor["artifacts"][MODEL_ARTIFACT]["path"]
            staged = Path(tmp) / "staged"
            staged.mkdir()
            shutil.move(str(source), staged / MODEL_ARTIFACT)
            try:
                staged.rename(target)  # atomic: a concurrent loader sees all or nothing
            except OSError:
                if not (target / MODEL_ARTIFACT / "blend.json").exists():
                    raise
    return target / MODEL_ARTIFACT


def champion_version(settings: Settings) -> int | None:
    """The version the ``champion`` alias names now (None: no champion yet); no download, for pollers."""
    with _mlflow(settings) as client:
        champion = _champion(client)
    return int(champion.version) if champion is not None else None


def load_champion(settings: Settings, device: str = "cpu") -> tuple[PublishedModel, int]:
    """The model behind ``models:/movierec-hybrid@champion`` and its version number."""
    with _mlflow(settings) as client:
        champion = _champion(client)
        if champion is None:
            # The URI may hold a password: name its scheme only.
            scheme = mlflow.get_tracking_uri().split(":", 1)[0]
            raise MovierecError(f"no {REGISTERED_MODEL}@{CHAMPION_ALIAS} yet in the MLflow registry "
                                f"({scheme} store): train a model and let the promotion gate accept it")
        directory = _model_dir(settings, champion)
    return PublishedModel.load(directory, device=resolve_device(device)), int(champion.version)
