"""What a route needs from the app: the database, the served model, the new-movie batcher.

The dependencies are ``async`` only so that FastAPI calls them inline: a plain ``def`` would be sent to its
thread pool, a thread hop per dependency per request for a dictionary lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from model_server.champion import Champion, ServedModel
from model_server.db import Database
from model_server.errors import Unavailable
from model_server.scoring import NewMovieBatcher


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_batcher(request: Request) -> NewMovieBatcher:
    return request.app.state.batcher


async def get_model(request: Request) -> ServedModel:
    """The champion as of this request; a model swapped in meanwhile serves the next request."""
    champion = request.app.state.champion
    served = champion.current
    if served is None:
        why = f" ({champion.last_error})" if champion.last_error else ""
        raise Unavailable(
            f"no champion model loaded yet{why}; the server checks the registry again every "
            f"{request.app.state.poll_seconds:g} s"
        )
    return served


async def get_champion(request: Request) -> Champion:
    """The champion holder itself (what is served, when it was checked, the last error): for /health."""
    return request.app.state.champion


DbDep = Annotated[Database, Depends(get_db)]
BatcherDep = Annotated[NewMovieBatcher, Depends(get_batcher)]
ModelDep = Annotated[ServedModel, Depends(get_model)]
ChampionDep = Annotated[Champion, Depends(get_champion)]


def model_user(served: ServedModel, user_id: int) -> int:
    """The model's index of ``user_id``; 404 when the model has never seen that user rate anything."""
    idx = served.user_index.get(user_id)
    if idx is None:
        raise HTTPException(
            404, f"user {user_id} is not known to model v{served.version} (no ratings up to its data cut-off)"
        )
    return idx
