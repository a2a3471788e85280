"""The service itself: GET /health (database and model state), GET /metrics (Prometheus), GET /ping."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from model_server.db import DatabaseUnavailable
from model_server.deps import ChampionDep, DbDep
from model_server.errors import RETRY_AFTER_S
from model_server.schemas import Health, Pong

router = APIRouter(tags=["system"])

PONG = Pong()


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "degraded"}})
async def health(response: Response, db: DbDep, champion: ChampionDep) -> dict[str, Any]:
    """200 when the database answers with a published batch and a champion is loaded; otherwise 503 with
    what is missing, with ``Retry-After`` like every 503. Cheap enough for a readiness probe (two small
    queries)."""
    database: dict[str, Any]
    try:
        role = await db.whoami()
        batch = await db.published_batch()
        database = {"status": "ok", "role": role}
        if batch is None:
            database["detail"] = "no batch published yet"
        else:
            database.update(
                batch_id=batch.batch_id,
                batch_model_version=batch.model_version,
                generated_at=batch.generated_at,
                data_cutoff=batch.data_cutoff,
            )
    except DatabaseUnavailable as exc:
        batch, database = None, {"status": "unavailable", "detail": str(exc)}
    served = champion.current
    model: dict[str, Any] = {
        "status": "loaded" if served else "not_loaded",
        "last_check": champion.last_check,
        "last_error": champion.last_error,
    }
    if served is not None:
        model.update(
            version=served.version,
            loaded_at=served.loaded_at,
            users=served.model.n_users,
            movies=served.model.n_items,
        )
    ok = database["status"] == "ok" and batch is not None and served is not None
    if not ok:
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return {"status": "ok" if ok else "degraded", "database": database, "model": model}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    """Requests and latency histograms per route, and the model version served, for Prometheus."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/ping", response_model=Pong)
async def ping() -> Pong:
    """A constant answer: liveness, and the framework's own cost per request (touches nothing)."""
    return PONG
