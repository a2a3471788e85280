"""POST /predict/new-movie: a movie that is not in the catalogue, scored from its content alone."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from model_server.deps import BatcherDep, ModelDep, model_user
from model_server.routes.responses import errors
from model_server.schemas import DEFAULT_LIMIT, MAX_LIMIT, NewMovieRequest, NewMovieResponse
from pipeline.models.hybrid.new_movies import NewMovie, UnknownGenre

router = APIRouter(prefix="/predict", tags=["predict"])


@router.post(
    "/new-movie",
    response_model=NewMovieResponse,
    response_model_exclude_none=True,
    responses=errors(404, 413, 422, 503),
)
async def predict_new_movie(
    body: NewMovieRequest,
    served: ModelDep,
    batcher: BatcherDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="without user_id: how many users")
    ] = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Featurise the movie as training featurised the catalogue (genres, MiniLM title embedding, the people
    the model knows, year and runtime) and score it with the champion's content path.

    With ``user_id``: that user's predicted rating. Without: the ``limit`` users with the highest predicted
    rating. People the model has no embedding for are ignored and listed under ``people.ignored``.
    """
    try:
        genres = served.scorer.featurizer.genres(body.genres)
    except UnknownGenre as exc:
        raise HTTPException(422, f"genres (body): {exc}") from None
    user = model_user(served, body.user_id) if body.user_id is not None else None
    movie = NewMovie(body.title, genres, body.directors, body.actors, body.writers, body.runtime, body.year)
    score = await batcher.score(served, movie, user, limit)
    answer: dict[str, Any] = {
        "model_version": served.version,
        "title": body.title,
        "genres": genres,
        "people": {"used": score.people.used, "ignored": score.people.ignored},
    }
    if user is not None:
        answer.update(user_id=body.user_id, predicted_rating=score.predicted_rating)
    else:
        answer["top_users"] = [{"user_id": u, "predicted_rating": r} for u, r in score.top_users or []]
    return answer
