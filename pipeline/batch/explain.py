"""Why a movie is on a user's list: the rated movies that drove it, what it shares with them, one sentence.

Shared by the batch (every published row, ``pipeline.batch.publish``) and the API's group route (each
member's share of a group list). Pure numpy over the published model, the user's rated movies and the
catalogue's attributes; no SQL.

* **Contributions, from the model's own terms.** Where the published blend has EASE, the score of movie i
  holds ``sum_j X[u, j] * B[j, i]`` over the user's rated movies j (binary X): rated movie j contributed
  ``B[j, i]`` (``EASE.item_weights``, by catalogue index; above EASE's cap a movie outside its kept ones
  has no weights, 0). Without EASE (the network has the whole ranking weight) the network has no history
  term (its user side is an id embedding and demographics), so the nearest the model comes is content: the
  cosine of the movies' text vectors from the network artefact. Each contribution is weighted by the user's
  rating of j when it is known (a 5 outweighs a 2 of equal weight); only positive contributions are named,
  and a row whose EASE contributions are all non-positive falls back to content similarity, so every
  explained row names at least one movie the user rated.
* ``because``: up to ``MAX_BECAUSE`` rated movies, best first. "rated highly" is said only when every named
  movie was rated at least ``RELEVANCE_THRESHOLD``; without ratings (the group route reads none) the
  sentence says "you rated".
* ``shared``: the genres, directors and actors the movie has in common with any of the named movies.
* ``reason``: ``Because you rated Fargo and Blood Simple highly; same director: Joel Coen``. The clause is the
  most specific attribute shared: a director, else an actor, else up to three genres.

Cost: one small dense block per user (rated x listed), then per row a cached lookup of its sentence and
JSON by (named movies, rated highly, shared attributes); bench/batch measures it against publishing without.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.defaults import RELEVANCE_THRESHOLD
from pipeline.models.blend.published import PublishedBlend

MAX_BECAUSE = 3
MAX_GENRES_SAID = 3
MAX_ACTORS = 8  # billing order: the leads
FALLBACK_REASON = "Popular with everyone: one of the most-rated movies"
NO_HISTORY_REASON = (
    "Recommended from your ratings"  # none of the user's rated movies is in the model's catalogue
)


@dataclass
class MovieAttributes:
    """What an explanation may name, by the model's movie index: titles, genres (a bit per genre), directors
    and actors (only movies that have some)."""

    titles: list[str]
    genre_names: list[str]
    genre_bits: np.ndarray  # int64 per movie
    directors: dict[int, frozenset[str]]
    actors: dict[int, frozenset[str]]

    @classmethod
    def build(
        cls,
        item_ids: np.ndarray,
        movies: Iterable[tuple[int, str, Sequence[str] | None]],
        people: Iterable[tuple[int, str, str]] = (),
    ) -> MovieAttributes:
        """From (movie id, title, genres) and (movie id, role, name) rows; ``item_ids``: the model's movie ids
        by index. Movies outside the model are ignored; model movies without a row get an empty title."""
        index = {int(m): k for k, m in enumerate(item_ids)}
        titles = [""] * len(item_ids)
        genres_of: dict[int, Sequence[str]] = {}
        for movie_id, title, genres in movies:
            k = index.get(int(movie_id))
            if k is not None:
                titles[k] = title
                genres_of[k] = genres or ()
        names = sorted({g for gs in genres_of.values() for g in gs})[:63]  # one int64 bit each
        bit = {g: 1 << b for b, g in enumerate(names)}
        genre_bits = np.zeros(len(item_ids), np.int64)
        for k, gs in genres_of.items():
            genre_bits[k] = sum(bit.get(g, 0) for g in set(gs))
        by_role: dict[str, dict[int, set[str]]] = {"director": {}, "actor": {}}
        for movie_id, role, name in people:
            k = index.get(int(movie_id))
            if k is not None and role in by_role and name:
                by_role[role].setdefault(k, set()).add(name)
        return cls(
            titles,
            names,
            genre_bits,
            {k: frozenset(v) for k, v in by_role["director"].items()},
            {k: frozenset(v) for k, v in by_role["actor"].items()},
        )

    def genres(self, bits: int) -> list[str]:
        return [g for b, g in enumerate(self.genre_names) if bits >> b & 1]


@dataclass
class Explanations:
    """The explanations of a block of list entries, row-aligned with them."""

    because: np.ndarray  # (rows, MAX_BECAUSE) model movie indices, best first, -1 pads
    counts: np.ndarray  # (rows,) how many of ``because`` are named
    shared: list[str]  # JSON objects
    reasons: list[str]


def contributions(model: PublishedBlend, rated: np.ndarray, items: np.ndarray) -> np.ndarray:
    """How much each rated movie (rows) contributed to each listed movie's score (columns), by the model's
    terms: EASE's item-item weights where the blend has EASE, else content similarity."""
    if model.ease is not None and model.ease.weights_ is not None:
        return np.asarray(model.ease.item_weights(rated, items), np.float64)
    return content_similarity(model, rated, items)


def content_similarity(model: PublishedBlend, rated: np.ndarray, items: np.ndarray) -> np.ndarray:
    text = model.network.movies.text
    return np.asarray(text[rated] @ text[items].T, np.float64)


def top_contributors(
    model: PublishedBlend, rated: np.ndarray, ratings: np.ndarray | None, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For one user: (``len(items)`` x ``MAX_BECAUSE`` positions into ``rated``, best first, -1 pads; how many
    each row names)."""
    out = np.full((len(items), MAX_BECAUSE), -1, np.int64)
    if len(rated) == 0 or len(items) == 0:
        return out, np.zeros(len(items), np.int64)
    weight = np.ones(len(rated)) if ratings is None else np.asarray(ratings, np.float64)
    c = contributions(model, rated, items) * weight[:, None]
    c[c <= 0] = -np.inf  # only what pushed the movie up is a reason for it
    none = np.isneginf(c).all(axis=0)
    if none.any():  # no positive contribution in the model's terms: the nearest rated movies by content
        c[:, none] = content_similarity(model, rated, items[none]) * weight[:, None]
    k = min(MAX_BECAUSE, len(rated))
    top = np.argpartition(-c, k - 1, axis=0)[:k] if len(rated) > k else np.argsort(-c, axis=0, kind="stable")
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(c, top, axis=0), axis=0, kind="stable"), 0)
    named = ~np.isneginf(np.take_along_axis(c, top, axis=0))
    out[:, :k] = np.where(named, top, -1).T
    return out, named.sum(axis=0)


def _titles(titles: Sequence[str]) -> str:
    return titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"


class Explainer:
    """Explanations for list entries: one per scoring chunk (batch) or per request (group route)."""

    def __init__(self, model: PublishedBlend, attributes: MovieAttributes) -> None:
        self.model, self.attributes = model, attributes
        self._said: dict[tuple[Any, ...], tuple[str, str]] = {}

    def explain_user(
        self, rated: np.ndarray, ratings: np.ndarray | None, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """One user's listed movies ``items`` (model indices) from their ``rated`` movies (model indices) and
        ``ratings`` of them (None: unknown): (because as model indices, -1 pads; counts; shared JSON;
        reasons)."""
        top, counts = top_contributors(self.model, rated, ratings, items)
        return self.describe(rated, ratings, items, top, counts)

    def describe(
        self,
        rated: np.ndarray,
        ratings: np.ndarray | None,
        items: np.ndarray,
        top: np.ndarray,
        counts: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """``explain_user`` from ``top_contributors``' answer (the group route looks up the named movies'
        attributes in between)."""
        because = np.where(top >= 0, rated[np.maximum(top, 0)] if len(rated) else -1, -1)
        if ratings is None:
            highly = np.zeros(len(items), bool)
        else:
            high = np.append(np.asarray(ratings) >= RELEVANCE_THRESHOLD, True)  # the pad counts as high
            highly = high[np.where(top >= 0, top, len(rated))].all(axis=1) & (counts > 0)
        bits = self.attributes.genre_bits
        padded = np.where(because >= 0, because, 0)
        their_bits = np.bitwise_or.reduce(np.where(because >= 0, bits[padded], 0), axis=1)
        shared_bits = bits[items] & their_bits
        shared, reasons = [], []
        for r, item in enumerate(items.tolist()):
            named = tuple(because[r, : counts[r]].tolist())
            people = self._people(item, named)
            key = (named, bool(highly[r]), int(shared_bits[r]), people)
            said = self._said.get(key)
            if said is None:
                said = self._said[key] = self._say(named, bool(highly[r]), int(shared_bits[r]), people)
            shared.append(said[0])
            reasons.append(said[1])
        return because, counts, shared, reasons

    def _people(self, item: int, named: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        out = []
        for role in (self.attributes.directors, self.attributes.actors):
            mine = role.get(item)
            theirs = frozenset().union(*(role.get(j, frozenset()) for j in named)) if mine else frozenset()
            out.append(tuple(sorted(mine & theirs)) if mine else ())
        return out[0], out[1]

    def _say(
        self, named: tuple[int, ...], highly: bool, bits: int, people: tuple[tuple[str, ...], tuple[str, ...]]
    ) -> tuple[str, str]:
        directors, actors = people
        genres = self.attributes.genres(bits)
        shared = json.dumps({"genres": genres, "directors": list(directors), "actors": list(actors)})
        if not named:
            return shared, NO_HISTORY_REASON
        titles = [self.attributes.titles[j] or f"movie {j}" for j in named]
        reason = f"Because you rated {_titles(titles)}{' highly' if highly else ''}"
        if directors:
            reason += f"; same director: {_titles(list(directors[:2]))}"
        elif actors:
            reason += f"; also with {_titles(list(actors[:2]))}"
        elif genres:
            said = genres[:MAX_GENRES_SAID]
            reason += f"; same genre{'s' if len(said) > 1 else ''}: {', '.join(said)}"
        return shared, reason

    def explain_block(
        self,
        rows_rated: Sequence[tuple[np.ndarray, np.ndarray | None]],
        idx: np.ndarray,
    ) -> Explanations:
        """Row r of ``idx`` (model movie indices, -1 ends a short list) explained from ``rows_rated[r]``
        (that user's rated movies and ratings); the output's rows are the listed entries in order (row by
        row, -1s left out), as ``ListWriter`` writes them."""
        parts = [
            self.explain_user(rated, ratings, row[row >= 0]) for (rated, ratings), row in zip(rows_rated, idx)
        ]
        return Explanations(
            np.concatenate([p[0] for p in parts]) if parts else np.empty((0, MAX_BECAUSE), np.int64),
            np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64),
            [s for p in parts for s in p[2]],
            [s for p in parts for s in p[3]],
        )


class RatedBy:
    """Each user's rated movies (model indices) and ratings, looked up by database user id: built once per
    batch from the cut-off's ratings; movies outside the model's catalogue are left out (no term names
    them)."""

    def __init__(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray | None) -> None:
        known = items >= 0
        users, items = users[known], items[known]
        order = np.argsort(users, kind="stable")
        self._users, self._items = users[order], items[order]
        self._ratings = None if ratings is None else np.asarray(ratings)[known][order]

    def rows(self, user_ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        lo = np.searchsorted(self._users, user_ids, "left")
        hi = np.searchsorted(self._users, user_ids, "right")
        return [
            (self._items[a:b], None if self._ratings is None else self._ratings[a:b])
            for a, b in zip(lo.tolist(), hi.tolist(), strict=True)
        ]
