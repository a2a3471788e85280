"""Logging one training run to MLflow and registering its model as a new version."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
from mlflow.entities import Metric, Param

from pipeline.core.defaults import REGISTERED_MODEL
from pipeline.core.errors import MovierecError
from pipeline.core.settings import Settings
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.hybrid.fit import TrainingResult
from pipeline.registry.plots import evaluation_chart, learning_curve, tradeoff_chart
from pipeline.registry.pyfunc import SIGNATURE, HybridPyfunc, input_example, pip_requirements
from pipeline.registry.report import TRADEOFF_ARTIFACT
from pipeline.registry.store import (
    MODEL_ARTIFACT,
    MODEL_NAME,
    chunks,
    config_params,
    cutoff_text,
    experiment_id,
    flatten_metrics,
    metric_key,
    mlflow_client,
)


@dataclass(frozen=True)
class RunInfo:
    """What ``log_training_run`` produced. ``model_uri`` is the registry URI ``models:/NAME/VERSION``."""

    run_id: str
    model_uri: str
    registered_version: int


log = logging.getLogger(__name__)

TRAINING_TAGS = ("training", "training_reason", "full_cutoff", "warm_start", "replay")


def log_training_run(
    settings: Settings,
    published: PublishedBlend,
    result: TrainingResult,
    metrics: Mapping[str, Any],
    baselines: Mapping[str, Mapping[str, Any]],
    *,
    dataset: str,
    data_cutoff: datetime | None,
    artifacts: Mapping[str, Path] | None = None,
    plots: bool = True,
    protocol: str = "temporal",
    primary_metric: str = "ndcg_at_10",
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    tradeoff: Sequence[Mapping[str, float]] = (),
) -> RunInfo:
    """Log one training run in ``movierec-<dataset>`` and register its model as a new version.

    ``metrics``: the model's final figures, ``{"temporal": {"ndcg@10": x}}`` or flat
    ``{"temporal.ndcg@10": x}``; ``baselines``: baseline name -> the same shape. ``artifacts``: extra
    files or directories, logged under their key. ``protocol``/``primary_metric`` pick the figure of the
    evaluation chart. ``configs``: the other evaluated models' hyperparameters (model -> config), logged as
    params ``config.<model>.<field>`` beside the network's own. The new version is not promoted here: see
    ``promote_if_better``. ``tradeoff``: the diversity trade-off rows on the validation split
    (``weight_search.tradeoff_table``), logged as the table ``TRADEOFF_ARTIFACT`` and the plot
    ``plots/diversity_tradeoff.png``.
    """
    model = published.network
    final = flatten_metrics(metrics)
    for name, values in baselines.items():
        final.update(flatten_metrics(values, f"baseline.{metric_key(name.lower())}."))
    params = config_params(model.config)
    params.update(
        dataset=dataset,
        data_cutoff=cutoff_text(data_cutoff),
        device=str(model.device),
        n_users=str(len(model.user_map)),
        n_movies=str(len(model.item_map)),
        n_train=str(model.meta.get("n_train", "")),
        blend_weight=str(published.weights.weight),
        blend_rating_weight=str(published.weights.rating_weight),
        blend_rerank_weight=str(published.weights.rerank_weight),
        blend_als_weight=str(published.weights.als_weight),
        blend_autorec_weight=str(published.weights.autorec_weight),
    )
    params.update({f"blend_member_weight.{n}": str(w) for n, w in published.weights.members.items()})
    params.update({f"blend_member_started.{n}": str(m.started) for n, m in published.members.items()})
    for name, config in (configs or {}).items():
        params.update({f"config.{metric_key(name)}.{metric_key(k)}": str(v) for k, v in config.items()})
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    batch = [
        Metric(
            metric_key(k if k != "seconds" else "epoch_seconds"), float(v), now_ms, int(h.get("epoch", i + 1))
        )
        for i, h in enumerate(result.history)
        for k, v in h.items()
        if k != "epoch" and v is not None
    ]
    batch += [Metric(k, v, now_ms, 0) for k, v in final.items()]
    batch += [
        Metric(f"train.{k}", float(v), now_ms, 0)
        for k, v in (
            ("best_epoch", result.best_epoch),
            ("epochs_run", len(result.history)),
            ("seconds", result.seconds),
            ("samples_per_s", result.samples_per_s),
        )
    ]
    tags = {"movierec.dataset": dataset, "movierec.data_cutoff": cutoff_text(data_cutoff)}
    # How the network was trained (pipeline.models.hybrid.warm_start): warm or full, why, the chain's start.
    tags.update({f"movierec.{k}": str(model.meta[k]) for k in TRAINING_TAGS if model.meta.get(k)})

    with mlflow_client(settings) as client:
        uri = mlflow.get_tracking_uri()
        experiment = experiment_id(client, settings, uri, dataset)
        run_name = f"{dataset}-{data_cutoff.date().isoformat() if data_cutoff else 'all'}"
        with mlflow.start_run(experiment_id=experiment, run_name=run_name, tags=tags) as run:
            run_id = run.info.run_id
            for chunk in chunks([Param(k, v) for k, v in params.items()], 100):
                client.log_batch(run_id, params=chunk)
            for chunk in chunks(batch, 1000):
                client.log_batch(run_id, metrics=chunk)
            id_maps = {"user_ids": model.user_map.to_list(), "movie_ids": model.item_map.to_list()}
            client.log_dict(run_id, id_maps, "id_maps.json")
            if plots:
                if result.history:
                    client.log_figure(run_id, learning_curve(result.history), "plots/learning_curve.png")
                key = f"{protocol}.{metric_key(primary_metric)}"
                chart = {"hybrid": final[key]} if key in final else {}
                chart.update(
                    {
                        n: final[f"baseline.{metric_key(n.lower())}.{key}"]
                        for n in baselines
                        if f"baseline.{metric_key(n.lower())}.{key}" in final
                    }
                )
                if chart:
                    client.log_figure(run_id, evaluation_chart(chart, key), "plots/evaluation.png")
                if tradeoff:
                    client.log_figure(run_id, tradeoff_chart(tradeoff), "plots/diversity_tradeoff.png")
            if tradeoff:
                import pandas as pd

                client.log_table(run_id, pd.DataFrame(list(tradeoff)), TRADEOFF_ARTIFACT)
            for name, path in (artifacts or {}).items():
                path = Path(path)
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), name)
                else:
                    client.log_artifact(run_id, str(path), name)
            example = input_example(published)
            with tempfile.TemporaryDirectory(prefix="movierec-model-") as tmp:
                saved = published.save(Path(tmp) / MODEL_ARTIFACT)
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    python_model=HybridPyfunc(),
                    artifacts={MODEL_ARTIFACT: str(saved)},
                    signature=SIGNATURE,
                    input_example=example,
                    pip_requirements=pip_requirements(),
                    registered_model_name=REGISTERED_MODEL,
                    model_config={"device": "cpu"},
                )
        version = info.registered_model_version
        if version is None:  # log_model registers synchronously when given a name; be explicit if not
            raise MovierecError(f"MLflow did not register {REGISTERED_MODEL} for run {run_id}")
    log.info("logged run %s, %s version %s", run_id, REGISTERED_MODEL, version)
    return RunInfo(run_id, f"models:/{REGISTERED_MODEL}/{version}", int(version))
