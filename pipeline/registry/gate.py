"""The promotion gate: ``promote_if_better`` moves ``champion`` only when the new version strictly beats the
champion on the same protocol and metric and passes the release guardrails (``pipeline.evaluation.
guardrails``: coverage, long-tail share and cold users' NDCG no more than a margin below the champion's), and
records every decision both in MLflow (tags) and in ``model_versions``."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from sqlalchemy import Connection, Engine, text

from database.locks import PROMOTION, pipeline_lock
from pipeline.core.defaults import CHAMPION_ALIAS, REGISTERED_MODEL
from pipeline.core.errors import MovierecError
from pipeline.core.jsonsafe import json_text
from pipeline.core.settings import Settings
from pipeline.evaluation.guardrails import Guardrail, as_records, check_guardrails, failures, model_guardrails
from pipeline.registry.champion import champion_model_version
from pipeline.registry.store import flatten_metrics, higher_is_better, metric_key, mlflow_client
from pipeline.registry.tracking import RunInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict on one version. ``champion_*``: the champion it was compared with, if any."""

    promoted: bool
    new_value: float
    champion_value: float | None
    champion_version: int | None
    reason: str
    version: int | None = None
    guardrails: tuple[dict[str, Any], ...] = ()  # each guardrail's figures (``guardrails.as_records``)


def _champion_figure(
    client: MlflowClient, conn: Any, champion: Any, key: str, protocol: str, primary_metric: str
) -> float | None:
    """The champion's figure: its run's metric (full precision), else its model_versions row."""
    if champion.run_id:
        value = client.get_run(champion.run_id).data.metrics.get(key)
        if value is not None:
            return float(value)
    row = conn.execute(
        text(
            "SELECT metric_value FROM model_versions WHERE registered_model = :model "
            "AND registered_version = :version AND protocol = :protocol AND primary_metric = :metric "
            "AND metric_value IS NOT NULL "
            "ORDER BY model_version_id DESC LIMIT 1"
        ),
        {
            "model": REGISTERED_MODEL,
            "version": int(champion.version),
            "protocol": protocol,
            "metric": primary_metric,
        },
    ).first()
    return float(row[0]) if row else None


def _champion_metrics(client: MlflowClient, conn: Any, champion: Any) -> dict[str, float]:
    """Every flat figure of the champion: its run's metrics, else its latest model_versions row's."""
    if champion.run_id:
        metrics = client.get_run(champion.run_id).data.metrics
        if metrics:
            return {k: float(v) for k, v in metrics.items()}
    row = conn.execute(
        text(
            "SELECT metrics FROM model_versions WHERE registered_model = :model "
            "AND registered_version = :version ORDER BY model_version_id DESC LIMIT 1"
        ),
        {"model": REGISTERED_MODEL, "version": int(champion.version)},
    ).first()
    return flatten_metrics(row[0]) if row and row[0] else {}


def _guarded(
    promoted: bool,
    reason: str,
    new: Mapping[str, float],
    champion: Mapping[str, float] | None,
    guardrails: tuple[Guardrail, ...],
    force: bool,
) -> tuple[bool, str, tuple[dict[str, Any], ...]]:
    """The verdict after the guardrails: a promotion becomes a rejection when a guarded figure fell more than
    its margin below the champion's (unless forced); the checks' figures either way."""
    if champion is None:
        return promoted, reason, ()
    checks = check_guardrails(new, champion, guardrails)
    failed = failures(checks)
    if promoted and failed and not force:
        promoted = False
        reason = "rejected by guardrails: " + "; ".join(c.describe() for c in failed) + f" ({reason})"
    elif failed:
        reason += " (guardrails overridden: " + "; ".join(c.describe() for c in failed) + ")"
    return promoted, reason, tuple(as_records(checks))


def _verdict(
    new: float, champion: float | None, champion_version: int | None, key: str, higher: bool, force: bool
) -> tuple[bool, str]:
    better = ">" if higher else "<"
    if math.isnan(new):
        return False, f"rejected: {key} is NaN"
    if champion_version is None:
        return True, f"promoted: no champion yet ({key} = {new:.6g})"
    if champion is None or math.isnan(champion):
        if force:
            return True, f"promoted (forced): champion v{champion_version} has no {key} figure"
        return False, (
            f"rejected: champion v{champion_version} has no {key} figure to compare with "
            "(promote with force=True to replace it)"
        )
    wins = new > champion if higher else new < champion
    if wins:
        return True, f"promoted: {key} {new:.6g} {better} champion v{champion_version} {champion:.6g}"
    if force:
        return True, f"promoted (forced): {key} {new:.6g} vs champion v{champion_version} {champion:.6g}"
    return False, f"rejected: {key} {new:.6g} not {better} champion v{champion_version} {champion:.6g}"


def promote_if_better(
    settings: Settings,
    engine: Engine,
    run: RunInfo,
    *,
    dataset: str,
    data_cutoff: datetime | None,
    protocol: str = "temporal",
    primary_metric: str = "ndcg_at_10",
    metrics: Mapping[str, Any],
    params: Mapping[str, Any],
    force: bool = False,
    guardrails: tuple[Guardrail, ...] | None = None,
) -> PromotionDecision:
    """Move the ``champion`` alias to ``run``'s version if it beats the champion; record the decision.

    Better means strictly greater, or strictly smaller for error metrics (``LOWER_IS_BETTER``), on
    ``<protocol>.<primary_metric>`` of ``metrics`` (same shapes as ``log_training_run``). No champion: the
    new version wins. A champion without that figure (another protocol or metric) is kept unless
    ``force``. The decision lands in MLflow (``promotion.*`` tags on the version and its run) and in one
    ``model_versions`` row (``champion`` or ``rejected``; a replaced champion's row becomes ``retired``),
    in one transaction that also serialises concurrent promotions (the ``promotion`` row of
    ``pipeline_locks``, waited for at most ``settings.lock_timeout_s``).

    ``guardrails`` (default ``model_guardrails(protocol)``): figures of ``metrics`` that may fall at most a
    margin below the champion's; a version that wins on the primary metric but breaks one is rejected, with
    the figures in the reason. ``force`` overrides them too (the reason says so).
    """
    metric = metric_key(primary_metric)
    key = f"{protocol}.{metric}"
    flat = flatten_metrics(metrics)
    if key not in flat:
        raise MovierecError(f"metrics have no {key} (have: {', '.join(sorted(flat)) or 'none'})")
    new_value = flat[key]
    version = run.registered_version

    with mlflow_client(settings) as client, engine.connect() as conn:
        trans = conn.begin()
        try:
            # One promotion at a time, across processes, waited for at most the lock timeout.
            with pipeline_lock(conn, PROMOTION, settings.lock_timeout_s):
                champion = champion_model_version(client)
                champion_version = int(champion.version) if champion is not None else None
                if champion_version == version:
                    raise MovierecError(f"{REGISTERED_MODEL} v{version} is already the champion")
                champion_value = (
                    _champion_figure(client, conn, champion, key, protocol, metric)
                    if champion is not None
                    else None
                )
                promoted, reason = _verdict(
                    new_value, champion_value, champion_version, key, higher_is_better(metric), force
                )
                promoted, reason, checks = _guarded(
                    promoted,
                    reason,
                    flat,
                    _champion_metrics(client, conn, champion) if champion is not None else None,
                    model_guardrails(protocol) if guardrails is None else guardrails,
                    force,
                )
                decision = PromotionDecision(
                    promoted, new_value, champion_value, champion_version, reason, version, checks
                )
                started = client.get_run(run.run_id).info.start_time
                trained_at = datetime.fromtimestamp(started / 1000, UTC) if started else datetime.now(UTC)
                where = (dataset, data_cutoff, protocol, metric)
                _record_decision(conn, decision, run, where, flat, params, trained_at)
                # MLflow last, the alias move very last: if any of it fails, the rows above roll back and
                # nothing claims a promotion that did not happen.
                _tag_decision(client, decision, run, protocol=protocol, metric=metric)
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
    return decision


def _record_decision(
    conn: Connection,
    decision: PromotionDecision,
    run: RunInfo,
    where: tuple[str, datetime | None, str, str],
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    trained_at: datetime,
) -> None:
    """The decision as a ``model_versions`` row; a promotion retires the previous champion's row.
    ``where``: the dataset, data cut-off, protocol and metric the decision was taken on."""
    dataset, data_cutoff, protocol, metric = where
    if decision.promoted:
        conn.execute(
            text(
                "UPDATE model_versions SET status = 'retired' "
                "WHERE registered_model = :model AND status = 'champion'"
            ),
            {"model": REGISTERED_MODEL},
        )
    conn.execute(
        _INSERT_VERSION,
        {
            "model": REGISTERED_MODEL,
            "version": run.registered_version,
            "run_id": run.run_id,
            "dataset": dataset,
            "cutoff": data_cutoff,
            "protocol": protocol,
            "metric": metric,
            "value": decision.new_value if math.isfinite(decision.new_value) else None,
            "champion_value": decision.champion_value,
            "metrics": json_text(dict(metrics)),
            "params": json_text(dict(params)),
            "status": "champion" if decision.promoted else "rejected",
            "decision": decision.reason,
            "trained_at": trained_at,
        },
    )


def _tag_decision(
    client: MlflowClient, decision: PromotionDecision, run: RunInfo, *, protocol: str, metric: str
) -> None:
    """The decision as ``promotion.*`` tags on the run and the version; a promotion moves the alias last."""
    version, champion_version = run.registered_version, decision.champion_version
    tags = {
        "decision": "promoted" if decision.promoted else "rejected",
        "reason": decision.reason,
        "protocol": protocol,
        "metric": metric,
        "new_value": repr(decision.new_value),
        "champion_value": "none" if decision.champion_value is None else repr(decision.champion_value),
        "champion_version": "none" if champion_version is None else str(champion_version),
        "guardrails": json_text(list(decision.guardrails)),
    }
    tags = {f"promotion.{k}": v for k, v in tags.items()}
    client.log_batch(run.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    for name, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, str(version), name, value)
    if decision.promoted:
        if champion_version is not None:
            client.set_model_version_tag(
                REGISTERED_MODEL, str(champion_version), "promotion.retired_by", str(version)
            )
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, str(version))


_INSERT_VERSION = text(
    "INSERT INTO model_versions (registered_model, registered_version, mlflow_run_id, dataset, data_cutoff, "
    "protocol, primary_metric, metric_value, champion_metric_value, metrics, params, status, decision, "
    "trained_at) VALUES (:model, :version, :run_id, :dataset, :cutoff, :protocol, :metric, :value, "
    ":champion_value, CAST(:metrics AS jsonb), CAST(:params AS jsonb), :status, :decision, :trained_at)"
)


def _restore_alias(client: MlflowClient, version: int | None) -> None:
    try:
        if version is None:
            client.delete_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
        else:
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, str(version))
    except MlflowException:
        log.exception("could not move %s@%s back to %s", REGISTERED_MODEL, CHAMPION_ALIAS, version)
