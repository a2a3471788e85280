"""POST /groups/recommendations: a list for users watching together, scored by the served champion."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import scipy.sparse as sp
from fastapi import APIRouter, HTTPException

from model_server.champion import ServedModel
from model_server.db import movie_fields
from model_server.deps import DbDep, ModelDep
from model_server.routes.responses import errors
from model_server.schemas import GroupRecommendations, GroupRequest
from pipeline.batch.explain import MAX_ACTORS, Explainer, MovieAttributes, top_contributors
from pipeline.models.group import GroupList, Strategy, candidates, recommend_group

router = APIRouter(prefix="/groups", tags=["groups"])

# Every rating of the members, after the model's cut-off too, and every movie a member dismissed ("not
# interested", as the batch and the list lookup exclude them): the reader may read these two columns of each.
# ``dismissed`` tells them apart: a dismissed movie is masked but never named in an explanation.
_MEMBER_RATINGS = (
    "SELECT user_id, movie_id, false AS dismissed FROM ratings WHERE user_id = ANY($1::integer[]) "
    "UNION ALL SELECT user_id, movie_id, true FROM dismissals WHERE user_id = ANY($1::integer[])"
)
# Movies looked at beyond ``limit``: the model may know a movie since removed from the catalogue.
_SLACK = 20


def _score(
    served: ServedModel,
    user_ids: list[int],
    pairs: list[tuple[int, int, bool]],
    limit: int,
    strategy: Strategy,
) -> tuple[GroupList, int, sp.csr_matrix]:
    """The group's list (``_SLACK`` movies longer), how many movies no member rated, and what each member
    rated (members x movies, dismissals left out); in a worker thread."""
    model = served.model
    users = np.asarray([served.user_index[u] for u in user_ids], np.int64)
    row = {u: k for k, u in enumerate(user_ids)}

    def matrix(of: list[tuple[int, int, bool]]) -> sp.csr_matrix:
        seen = np.asarray([(row[u], served.movie_index.get(m, -1)) for u, m, _ in of], np.int64).reshape(
            -1, 2
        )
        seen = seen[seen[:, 1] >= 0]  # movies the model does not know cannot be listed anyway
        return sp.csr_matrix(
            (np.ones(len(seen), np.float32), (seen[:, 0], seen[:, 1])), shape=(len(users), model.n_items)
        )

    # up to the cut-off (what the batch masks) and every rating since; then the dismissals too
    rated = sp.csr_matrix(model.rated[users] + matrix([p for p in pairs if not p[2]]))
    masked = rated + matrix([p for p in pairs if p[2]])
    # every term for every movie: the batch's ranking, exhaustive (a group mixes the members' candidates)
    scores = model.score_users(users)
    return recommend_group(scores, masked, limit + _SLACK, strategy), int(candidates(masked).sum()), rated


def _contributors(served: ServedModel, rated: sp.csr_matrix, items: np.ndarray) -> list[tuple[Any, ...]]:
    """Per member: (rated movies, top contributors, counts) for ``items``, by the batch's terms (no ratings:
    the reader cannot read them, so nothing is said to be rated highly); in a worker thread."""
    out = []
    for j in range(rated.shape[0]):
        mine = np.sort(rated[j].indices).astype(np.int64)
        out.append((mine, *top_contributors(served.model, mine, None, items)))
    return out


async def _explanations(
    served: ServedModel, db: DbDep, rated: sp.csr_matrix, items: np.ndarray
) -> list[list[dict[str, Any]]]:
    """Each member's explanation of each of ``items`` (model indices): ``[member][item]``."""
    per_member = await asyncio.to_thread(_contributors, served, rated, items)
    item_ids = served.model.network.item_map.ids
    named = {int(m) for mine, top, _ in per_member for m in mine[top[top >= 0]]} | set(items.tolist())
    ids = item_ids[sorted(named)].tolist()
    movies = await db.movies(ids)
    people = await db.movie_people(ids, MAX_ACTORS)
    attributes = MovieAttributes.build(
        item_ids, [(m, r["title"], r["genres"]) for m, r in movies.items()], people
    )
    explainer = Explainer(served.model, attributes)
    out = []
    for mine, top, counts in per_member:
        because, counts, shared, reasons = explainer.describe(mine, None, items, top, counts)
        out.append(
            [
                {
                    "because": [
                        {"movie_id": int(item_ids[b]), "title": attributes.titles[b]}
                        for b in because[k, : counts[k]]
                    ],
                    "shared": json.loads(shared[k]),
                    "reason": reasons[k],
                }
                for k in range(len(items))
            ]
        )
    return out


@router.post(
    "/recommendations",
    response_model=GroupRecommendations,
    responses=errors(404, 413, 422, 503),
)
async def group_recommendations(body: GroupRequest, served: ModelDep, db: DbDep) -> dict[str, Any]:
    """The ``limit`` movies no member has rated (or dismissed) that the group is predicted to like most.

    Each member scores every movie the model knows with the published ranking (as the weekly batch does);
    the scores are standardised per member over the movies no member has rated, then combined per movie:
    ``average`` takes their mean, ``least_misery`` their minimum. Each listed movie carries every member's
    standardised score and rank, and why the movie is up there for that member: the member's rated movies
    that contributed most (``pipeline.batch.explain``, the batch's terms). 404 names the members the model
    does not know.
    """
    unknown = [u for u in body.user_ids if u not in served.user_index]
    if unknown:
        raise HTTPException(
            404,
            f"user{'s' if len(unknown) > 1 else ''} {', '.join(map(str, unknown))} not known to model "
            f"v{served.version} (no ratings up to its data cut-off)",
        )
    pairs = [
        (r["user_id"], r["movie_id"], r["dismissed"]) for r in await db.fetch(_MEMBER_RATINGS, body.user_ids)
    ]
    found, n_candidates, rated = await asyncio.to_thread(
        _score, served, body.user_ids, pairs, body.limit, body.strategy
    )
    ids = served.model.network.item_map.ids[found.items].tolist()
    movies = await db.movies(ids)
    listed = [k for k, m in enumerate(ids) if m in movies][: body.limit]
    why = await _explanations(served, db, rated, found.items[listed])
    return {
        "user_ids": body.user_ids,
        "strategy": body.strategy,
        "model_version": served.version,
        "candidates": n_candidates,
        "items": [
            {
                "rank": rank,
                **movie_fields(movies[ids[k]]),
                "score": float(found.scores[k]),
                "members": [
                    {
                        "user_id": u,
                        "score": float(found.member_scores[j, k]),
                        "rank": int(found.member_ranks[j, k]),
                        "explanation": why[j][rank - 1],
                    }
                    for j, u in enumerate(body.user_ids)
                ],
            }
            for rank, k in enumerate(listed, 1)
        ],
    }
