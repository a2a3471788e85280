"""GET /movies/{movie_id}/similar: nearest catalogue movies by the champion's movie vectors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from model_server.db import movie_fields
from model_server.deps import DbDep, ModelDep
from model_server.routes.responses import errors
from model_server.schemas import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT, SimilarMovies

router = APIRouter(prefix="/movies", tags=["movies"])


@router.get("/{movie_id}/similar", response_model=SimilarMovies, responses=errors(404, 422, 503))
async def similar_movies(
    served: ModelDep,
    db: DbDep,
    movie_id: Annotated[int, Path(ge=1, le=MAX_ID, description="a catalogue movie id", examples=[50])],
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="how many movies, closest first")
    ] = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The movies whose vectors (content encoder plus learned movie embedding) have the highest cosine
    similarity with this movie's. 404 for a movie the model does not know."""
    index = served.movie_index.get(movie_id)
    if index is None:
        known = await db.movies([movie_id])
        why = (
            f"movie {movie_id} was added to the catalogue after model v{served.version} was trained"
            if known
            else f"no movie {movie_id} in the catalogue"
        )
        raise HTTPException(404, why)
    neighbours, sims = served.scorer.similar(index, limit)
    ids = served.model.network.item_map.ids[neighbours].tolist()
    movies = await db.movies([movie_id, *ids])
    this = movies.get(movie_id)
    return {
        "movie_id": movie_id,
        "title": this["title"] if this else "",
        "model_version": served.version,
        "items": [
            {**movie_fields(movies[m]), "similarity": float(s)} for m, s in zip(ids, sims) if m in movies
        ],
    }
