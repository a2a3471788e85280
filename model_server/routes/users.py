"""GET /users/{user_id}/recommendations: the published list, or the labelled fallback list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from model_server.routes.responses import errors
from model_server.schemas import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT, UserRecommendations

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/{user_id}/recommendations", response_model=UserRecommendations, responses=errors(422, 503))
async def user_recommendations(
    request: Request,
    user_id: Annotated[int, Path(ge=1, le=MAX_ID, description="a user id", examples=[1])],
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="how many movies, best first")
    ] = DEFAULT_LIMIT,
) -> Response:
    """The user's list from the published batch (``current_recommendations``), best first.

    A user without a list in that batch (unknown, or new since it was published) gets the fallback list
    the batch gives users it cannot score: the most-rated movies up to the batch's data cut-off, labelled
    ``source: fallback_popularity`` and ``known_user: false``. Lists of a new batch are served within a
    second of its publication.
    """
    # No dependency: the hottest route reads its kept answers straight from the app (see bench/api).
    return Response(await request.app.state.lists.answer(user_id, limit), media_type="application/json")
