"""POST /recommendations/existing: the champion's predicted ratings of catalogue movies for one user."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException

from model_server.deps import DbDep, ModelDep, model_user
from model_server.routes.responses import errors
from model_server.schemas import ExistingMoviesRequest, ExistingMoviesResponse

router = APIRouter(prefix="/recommendations", tags=["recommendations"])


@router.post("/existing", response_model=ExistingMoviesResponse, responses=errors(404, 413, 422, 503))
async def predict_existing(
    body: ExistingMoviesRequest,
    served: ModelDep,
    db: DbDep,
) -> dict[str, Any]:
    """Predicted ratings (the published rating blend) of ``movie_ids`` for ``user_id``, in the order asked.

    404 when the model does not know the user or any of the movies (the answer lists which).
    """
    user = model_user(served, body.user_id)
    ids = np.asarray(body.movie_ids, np.int64)
    items = served.model.network.item_map.index(ids)
    if (items < 0).any():
        unknown = sorted(set(ids[items < 0].tolist()))
        shown = ", ".join(map(str, unknown[:20])) + (
            f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        )
        raise HTTPException(
            404, f"movie{'s' if len(unknown) > 1 else ''} not in model v{served.version}'s catalogue: {shown}"
        )
    ratings = served.model.predict_index(np.full(len(items), user, np.int64), items)
    rated = served.model.rated[user].toarray().ravel()[items] > 0
    titles = await db.movies(sorted(set(body.movie_ids)))
    return {
        "user_id": body.user_id,
        "model_version": served.version,
        "predictions": [
            {
                "movie_id": m,
                "title": titles[m]["title"] if m in titles else "",
                "predicted_rating": float(r),
                "rated": bool(s),
            }
            for m, r, s in zip(body.movie_ids, ratings, rated)
        ],
    }
