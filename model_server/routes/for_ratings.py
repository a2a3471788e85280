"""POST /recommendations/for-ratings: a list for a new user from a handful of ratings, by fold-in to the
served champion (``pipeline.models.foldin``), no retraining."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException

from model_server.champion import ServedModel
from model_server.db import movie_fields
from model_server.deps import DbDep, ModelDep
from model_server.routes.responses import errors
from model_server.schemas import ForRatingsRecommendations, ForRatingsRequest
from pipeline.models.foldin import FoldIn

router = APIRouter(prefix="/recommendations", tags=["recommendations"])

# Movies looked at beyond ``limit``: the model may know a movie since removed from the catalogue.
_SLACK = 20

_lock = threading.Lock()
_fold: tuple[ServedModel, FoldIn] | None = None  # the served model's fold-in constants, built once per model


def _fold_in(served: ServedModel) -> FoldIn:
    global _fold
    with _lock:
        if _fold is None or _fold[0] is not served:
            _fold = (served, FoldIn(served.model))
        return _fold[1]


def _score(
    served: ServedModel, items: np.ndarray, ratings: np.ndarray, n: int, exclude: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Movie indices and scores, best first; in a worker thread (the fold-in runs a few dozen small steps)."""
    return _fold_in(served).recommend(items, ratings, n, exclude)


@router.post(
    "/for-ratings",
    response_model=ForRatingsRecommendations,
    responses=errors(404, 413, 422, 503),
)
async def recommend_for_ratings(body: ForRatingsRequest, served: ModelDep, db: DbDep) -> dict[str, Any]:
    """The ``limit`` movies a new user who gave these ratings is predicted to like most, never one of them
    nor one in ``exclude``.

    The user is folded in to the served champion without retraining: EASE's term from the rated movies
    exactly, the network's through a user vector fitted to the given ratings with every weight of the model
    frozen (the average user plus the history term of those movies, then a few gradient steps on the
    training objective), mixed as the published ranking is. Ratings outside the model's rating range are a
    422; movies the model does not know are ignored and listed; 404 when it knows none of them.
    """
    lo, hi = served.model.network.rating_range
    outside = [r.movie_id for r in body.ratings if not lo <= r.rating <= hi]
    if outside:
        raise HTTPException(
            422,
            f"ratings (body): the rating of movie{'s' if len(outside) > 1 else ''} "
            f"{', '.join(map(str, outside[:20]))} is outside model v{served.version}'s scale "
            f"{lo:g} to {hi:g}",
        )
    last = {r.movie_id: r.rating for r in body.ratings}  # a movie given twice counts with its last rating
    duplicates = sorted(m for m, c in Counter(r.movie_id for r in body.ratings).items() if c > 1)
    known = {m: r for m, r in last.items() if m in served.movie_index}
    ignored = sorted(m for m in last if m not in known)
    if not known:
        raise HTTPException(
            404,
            f"none of the movies is in model v{served.version}'s catalogue: "
            + ", ".join(map(str, ignored[:20]))
            + (f" and {len(ignored) - 20} more" if len(ignored) > 20 else ""),
        )
    items = np.asarray([served.movie_index[m] for m in known], np.int64)
    ratings = np.asarray(list(known.values()), np.float32)
    exclude = np.asarray([served.movie_index[m] for m in body.exclude if m in served.movie_index], np.int64)
    found, scores = await asyncio.to_thread(_score, served, items, ratings, body.limit + _SLACK, exclude)
    ids = served.model.network.item_map.ids[found].tolist()
    movies = await db.movies(ids)
    listed = [k for k, m in enumerate(ids) if m in movies][: body.limit]
    return {
        "model_version": served.version,
        "used": len(known),
        "ignored": ignored,
        "duplicates": duplicates,
        "items": [
            {"rank": rank, **movie_fields(movies[ids[k]]), "score": float(scores[k])}
            for rank, k in enumerate(listed, 1)
        ],
    }
