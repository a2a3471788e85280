"""Why a movie is on a user's list: the rated movies that drove it, what it shares with them, one sentence.

Shared by the batch (every published row, ``pipeline.batch.publish``) and the API's group route (each
member's share of a group list). Numpy over the published model, the user's rated movies and the
catalogue's attributes (its credits, a million rows at ML-32M size, as one pandas frame); no SQL.

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

What the batch stores (migration 0012): ``because``, ``rated_highly`` and a ``shared_key`` per row, and each
distinct (shared JSON, clause) once per batch and writer in ``batch_shared_attributes``; the views assemble
``shared`` and the sentence from them, exactly as ``Explainer.say`` does for the group route (which stores
nothing). Per row that is 22 bytes instead of some 120 of JSON and text.

Cost: the (listed x rated) contributions of a group of users in one gather and one top-3 selection
(``pipeline.models.topn.top_k``, the lists' own tie rule); the people each row shares with its named movies
for a whole block at once (sparse movie x person products); the JSON and clause once per distinct shared
attributes. bench/batch measures it against publishing without.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.core.defaults import RELEVANCE_THRESHOLD
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.topn import top_k

MAX_BECAUSE = 3
MAX_GENRES_SAID = 3
MAX_ACTORS = 8  # billing order: the leads
_BLOCK_ELEMENTS = 4_000_000  # users x listed x rated contributions gathered at once (float32: 16 MB)
_CACHE_ENTRIES = 200_000  # an Explainer's caches are emptied past this (a batch explains millions of rows)
_CREDITS = ["movie_id", "role", "name"]  # MovieAttributes.build's people columns
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
    # movie x person (one per role), one row more than movies (a zero row: what -1 pads index); columns in
    # the order of the names, so a row's people come out sorted
    directors: sp.csr_matrix
    director_names: list[str]
    actors: sp.csr_matrix
    actor_names: list[str]

    @classmethod
    def build(
        cls,
        item_ids: np.ndarray,
        movies: Iterable[tuple[int, str, Sequence[str] | None]],
        people: Iterable[tuple[int, str, str]] | pd.DataFrame = (),
    ) -> MovieAttributes:
        """From (movie id, title, genres) and (movie id, role, name) rows (``people`` also as a frame of those
        three columns: a catalogue's credits are not walked in Python); ``item_ids``: the model's movie
        ids by index. Movies outside the model are ignored; model movies without a row get an empty title."""
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
        credits = people if isinstance(people, pd.DataFrame) else pd.DataFrame(list(people), columns=_CREDITS)
        movie, role, name = (credits[c].to_numpy() for c in _CREDITS)
        rows = pd.Index(np.asarray(item_ids, np.int64)).get_indexer(pd.Index(movie.astype(np.int64)))
        named = (rows >= 0) & pd.notna(name)
        named[named] = name[named] != ""
        directors, director_names = _person_matrix(rows, name, named & (role == "director"), len(item_ids))
        actors, actor_names = _person_matrix(rows, name, named & (role == "actor"), len(item_ids))
        return cls(titles, names, genre_bits, directors, director_names, actors, actor_names)

    def genres(self, bits: int) -> list[str]:
        return [g for b, g in enumerate(self.genre_names) if bits >> b & 1]


def _person_matrix(
    rows: np.ndarray, name: np.ndarray, mine: np.ndarray, n_items: int
) -> tuple[sp.csr_matrix, list[str]]:
    """Movie index x person from the credits ``mine`` selects (``rows``: their movie indices; columns in the
    order of the sorted names), one zero row more than movies, and the names."""
    cols, names = pd.factorize(name[mine].astype(str), sort=True)
    m = sp.csr_matrix(
        (np.ones(len(cols), np.int8), (rows[mine], cols)),
        shape=(n_items + 1, max(len(names), 1)),
        dtype=np.int8,
    )
    m.data[:] = 1  # a person credited twice in one role is one credit
    m.sort_indices()
    return m, names.tolist()


def shared_people(
    matrix: sp.csr_matrix, names: list[str], items: np.ndarray, because: np.ndarray
) -> list[tuple[str, ...]]:
    """Per row: the people of ``matrix`` (one role) that movie ``items[r]`` shares with any of
    ``because[r]`` (-1 pads), by name, sorted."""
    pad = matrix.shape[0] - 1
    theirs = matrix[np.where(because[:, 0] >= 0, because[:, 0], pad)]
    for k in range(1, because.shape[1]):
        theirs = theirs + matrix[np.where(because[:, k] >= 0, because[:, k], pad)]
    both = matrix[items].multiply(theirs).tocsr()
    both.eliminate_zeros()
    both.sort_indices()
    out: list[tuple[str, ...]] = [()] * len(items)
    indptr, indices = both.indptr.tolist(), both.indices.tolist()
    for r in np.flatnonzero(np.diff(both.indptr)).tolist():
        out[r] = tuple(names[c] for c in indices[indptr[r] : indptr[r + 1]])
    return out


@dataclass
class Explanations:
    """The explanations of a block of list entries, row-aligned with them, as the batch stores them: the
    named movies, whether they were all rated highly, and a key to what the row shares with them."""

    because: np.ndarray  # (rows, MAX_BECAUSE) model movie indices, best first, -1 pads
    counts: np.ndarray  # (rows,) how many of ``because`` are named
    highly: np.ndarray  # (rows,) every named movie rated at least RELEVANCE_THRESHOLD
    shared_keys: np.ndarray  # (rows,) int64 key of the shared attributes; 0: none (nothing named)
    parts: dict[int, tuple[str, str]]  # key -> (shared JSON, clause), for keys not handed out before


def shared_key(shared: str) -> int:
    """A 64-bit key for shared attributes' JSON, the same in any process; never 0, which marks a row without
    parts."""
    return int.from_bytes(hashlib.blake2b(shared.encode(), digest_size=8).digest(), "big", signed=True) or 1


def contributions(model: PublishedBlend, rated: np.ndarray, items: np.ndarray) -> np.ndarray:
    """How much each rated movie (rows) contributed to each listed movie's score (columns), by the model's
    terms: EASE's item-item weights where the blend has EASE, else content similarity."""
    return _contributions(model, np.asarray(rated)[None, :], np.asarray(items)[None, :])[0].T


def _contributions(model: PublishedBlend, rated: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``contributions`` of many users at once, listed movies first: ``rated`` (users x L), ``items``
    (users x N) -> (users x N x L), float32 (the selection over a user's rated movies runs along the last,
    contiguous axis)."""
    if model.ease is not None and model.ease.weights_ is not None:
        return np.asarray(model.ease.pair_weights(rated[:, None, :], items[:, :, None]), np.float32)
    return _content_similarity(model, rated, items)


def _content_similarity(model: PublishedBlend, rated: np.ndarray, items: np.ndarray) -> np.ndarray:
    text = model.network.movies.text
    return np.asarray(text[items] @ text[rated].transpose(0, 2, 1), np.float32)


def top_contributors(
    model: PublishedBlend, rated: np.ndarray, ratings: np.ndarray | None, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For one user: (``len(items)`` x ``MAX_BECAUSE`` positions into ``rated``, best first, -1 pads; how many
    each row names)."""
    return contributors(model, [(np.asarray(rated, np.int64), ratings)], [np.asarray(items, np.int64)])


def contributors(
    model: PublishedBlend,
    rows_rated: Sequence[tuple[np.ndarray, np.ndarray | None]],
    listed: Sequence[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """``top_contributors`` of many users at once (user u: ``rows_rated[u]``, its movies ``listed[u]``); the
    rows are every user's listed movies in order. Users are taken in groups of similar history length, each
    group's (users x rated x listed) contributions gathered at once within ``_BLOCK_ELEMENTS``."""
    sizes = np.array([len(items) for items in listed], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    top = np.full((int(starts[-1]), MAX_BECAUSE), -1, np.int64)
    counts = np.zeros(int(starts[-1]), np.int64)
    lengths = np.array([len(rated) for rated, _ in rows_rated], np.int64)
    order = np.argsort(lengths, kind="stable")
    width = max(int(sizes.max(initial=0)), 1)
    lo = 0
    while lo < len(order):
        hi = lo + 1  # users sorted by history length: the group's longest is its last
        while hi < len(order) and (hi - lo + 1) * max(int(lengths[order[hi]]), 1) * width <= _BLOCK_ELEMENTS:
            hi += 1
        _group(model, order[lo:hi], rows_rated, listed, lengths, starts, top, counts)
        lo = hi
    return top, counts


def _group(
    model: PublishedBlend,
    users: np.ndarray,
    rows_rated: Sequence[tuple[np.ndarray, np.ndarray | None]],
    listed: Sequence[np.ndarray],
    lengths: np.ndarray,
    starts: np.ndarray,
    top: np.ndarray,
    counts: np.ndarray,
) -> None:
    """``contributors`` for one group of users, written into ``top`` and ``counts``."""
    depth = max(int(lengths[users].max()), MAX_BECAUSE)  # at least as deep as what is named: -inf pads
    width = max(int(max(len(listed[u]) for u in users)), 1)
    rated = np.zeros((len(users), depth), np.int64)
    weight = np.zeros((len(users), depth), np.float32)  # 0 pads: a pad never contributes
    items = np.zeros((len(users), width), np.int64)
    for g, u in enumerate(users.tolist()):
        mine, ratings = rows_rated[u]
        rated[g, : len(mine)] = mine
        weight[g, : len(mine)] = 1.0 if ratings is None else ratings
        items[g, : len(listed[u])] = listed[u]
    c = _contributions(model, rated, items)  # (users x listed x rated)
    c *= weight[:, None, :]
    positive = c > 0  # only what pushed the movie up is a reason for it
    none = ~positive.any(axis=2) & (lengths[users] > 0)[:, None]
    np.putmask(c, ~positive, -np.inf)
    for g in np.flatnonzero(none.any(axis=1)).tolist():
        # no positive contribution in the model's terms: the nearest rated movies by content
        n, cols = int(lengths[users[g]]), np.flatnonzero(none[g])
        c[g, cols, :n] = (
            _content_similarity(model, rated[None, g, :n], items[None, g, cols])[0] * weight[g, :n]
        )
    # the lists' own top-N rule: ties to the earlier rated movie, -inf (nothing pushed it up) never named
    found, _ = top_k(c.reshape(-1, depth), MAX_BECAUSE)
    best = found.reshape(len(users), width, MAX_BECAUSE)
    named = best >= 0
    for g, u in enumerate(users.tolist()):
        n = len(listed[u])
        top[starts[u] : starts[u] + n] = best[g, :n]
        counts[starts[u] : starts[u] + n] = named[g, :n].sum(axis=1)


def _named(
    rated: np.ndarray, ratings: np.ndarray | None, top: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``top_contributors``' positions as movie indices (-1 pads), and whether every named movie was rated
    highly (never without ratings)."""
    because = np.where(top >= 0, rated[np.maximum(top, 0)] if len(rated) else -1, -1)
    if ratings is None:
        return because, np.zeros(len(top), bool)
    high = np.append(np.asarray(ratings) >= RELEVANCE_THRESHOLD, True)  # the pad counts as high
    return because, high[np.where(top >= 0, top, len(rated))].all(axis=1) & (counts > 0)


@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _quoted(name: str) -> str:
    return json.dumps(name)


def _json_list(names: Sequence[str]) -> str:
    """``json.dumps(list(names))``, each name escaped once per batch, not once per row."""
    return f"[{', '.join(map(_quoted, names))}]"


def _titles(titles: Sequence[str]) -> str:
    return titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"


Said = tuple[str, str, int]  # the shared JSON, the sentence's clause, their shared_key


class Explainer:
    """Explanations for list entries: one per scoring chunk (batch) or per request (group route)."""

    def __init__(self, model: PublishedBlend, attributes: MovieAttributes) -> None:
        self.model, self.attributes = model, attributes
        self._said: dict[tuple[Any, ...], Said] = {}  # (genre bits, directors, actors) -> what is said
        self._titles: np.ndarray | None = None
        self._written: set[int] = set()  # shared keys already handed out with their parts

    def describe(
        self,
        rated: np.ndarray,
        ratings: np.ndarray | None,
        items: np.ndarray,
        top: np.ndarray,
        counts: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """One user's listed movies ``items`` (model indices) explained from ``top_contributors``' answer for
        their ``rated`` movies and ``ratings`` (None: unknown): (because as model indices, -1 pads; counts;
        shared JSON; reasons). The group route looks up the named movies' attributes in between."""
        because, highly = _named(rated, ratings, top, counts)
        shared, reasons = self.say(items, because, counts, highly)
        return because, counts, shared, reasons

    def say(
        self, items: np.ndarray, because: np.ndarray, counts: np.ndarray, highly: np.ndarray
    ) -> tuple[list[str], list[str]]:
        """The shared JSON and the whole sentence of each row (the group route, which stores nothing); the
        batch stores the parts instead (``explain_block``) and the views assemble the same sentence."""
        at, said = self._shared(items, because)
        shared = np.array([j for j, _, _ in said], object)[at]
        clause = np.array([c for _, c, _ in said], object)[at]
        # "Because you rated A[, B] and C[ highly]": element-wise string sums over the named movies' titles
        # (index -1, a pad, is the empty title at the end)
        titles = self._title_array()
        named = [titles[because[:, k]] for k in range(because.shape[1])]
        listed = named[0].copy()
        for k in range(1, because.shape[1]):
            more = counts > k
            last = counts == k + 1
            listed[more & ~last] += ", " + named[k][more & ~last]
            listed[last] += " and " + named[k][last]
        reasons = "Because you rated " + listed + np.where(highly, " highly", "").astype(object) + clause
        reasons[counts == 0] = NO_HISTORY_REASON
        return shared.tolist(), reasons.tolist()

    def _shared(self, items: np.ndarray, because: np.ndarray) -> tuple[np.ndarray, list[Said]]:
        """What each row's movie shares with the movies that explain it: per row, an index into the block's
        distinct (JSON, clause, key) triples, and those. The people shared are found for the whole block in a
        few sparse products; JSON and clause are built once per distinct (genre bits, directors, actors)."""
        a = self.attributes
        padded = np.where(because >= 0, because, 0)
        their_bits = np.bitwise_or.reduce(np.where(because >= 0, a.genre_bits[padded], 0), axis=1)
        shared_bits = a.genre_bits[items] & their_bits
        directors = shared_people(a.directors, a.director_names, items, because)
        actors = shared_people(a.actors, a.actor_names, items, because)
        if len(self._said) > _CACHE_ENTRIES:
            self._said.clear()
        # Most rows share no person with the movies they name: their key is their genres alone.
        people = np.fromiter((bool(d or p) for d, p in zip(directors, actors, strict=True)), bool, len(items))
        by_genres, by_people = np.flatnonzero(~people), np.flatnonzero(people)
        bits, at = np.unique(shared_bits[by_genres], return_inverse=True)
        index: dict[tuple[Any, ...], int] = {(b, (), ()): k for k, b in enumerate(bits.tolist())}
        row_at = np.empty(len(items), np.int64)
        row_at[by_genres] = at.ravel()
        row_at[by_people] = [
            index.setdefault((b, directors[r], actors[r]), len(index))
            for r, b in zip(by_people.tolist(), shared_bits[by_people].tolist(), strict=True)
        ]
        return row_at, [self._say_shared(k) for k in index]  # in the order of the indices

    def _title_array(self) -> np.ndarray:
        """The titles by model index as an object array, an empty one last (what -1 picks)."""
        if self._titles is None:
            named = [t or f"movie {j}" for j, t in enumerate(self.attributes.titles)]
            self._titles = np.array([*named, ""], object)
        return self._titles

    def _say_shared(self, key: tuple[int, tuple[str, ...], tuple[str, ...]]) -> Said:
        """The shared JSON, the clause and their key for (genre bits, directors, actors), cached."""
        said = self._said.get(key)
        if said is None:
            bits, directors, actors = key
            shared = (
                f'{{"genres": {_json_list(self.attributes.genres(bits))}, '
                f'"directors": {_json_list(directors)}, "actors": {_json_list(actors)}}}'
            )
            said = self._said[key] = (shared, self._say_clause(*key), shared_key(shared))
        return said

    def _say_clause(self, bits: int, directors: tuple[str, ...], actors: tuple[str, ...]) -> str:
        if directors:
            return f"; same director: {_titles(list(directors[:2]))}"
        if actors:
            return f"; also with {_titles(list(actors[:2]))}"
        genres = self.attributes.genres(bits)[:MAX_GENRES_SAID]
        return f"; same genre{'s' if len(genres) > 1 else ''}: {', '.join(genres)}" if genres else ""

    def explain_block(
        self,
        rows_rated: Sequence[tuple[np.ndarray, np.ndarray | None]],
        idx: np.ndarray,
    ) -> Explanations:
        """Row r of ``idx`` (model movie indices, -1 ends a short list) explained from ``rows_rated[r]``
        (that user's rated movies and ratings); the output's rows are the listed entries in order (row by
        row, -1s left out), as ``ListWriter`` writes them."""
        listed = [row[row >= 0] for row in idx]
        if not listed:
            empty = np.empty(0, np.int64)
            return Explanations(np.empty((0, MAX_BECAUSE), np.int64), empty, empty.astype(bool), empty, {})
        top, counts = contributors(self.model, rows_rated, listed)
        ends = np.cumsum([len(items) for items in listed])
        named = [
            _named(rated, ratings, top[end - len(items) : end], counts[end - len(items) : end])
            for (rated, ratings), items, end in zip(rows_rated, listed, ends.tolist(), strict=True)
        ]
        because = np.concatenate([b for b, _ in named])
        highly = np.concatenate([h for _, h in named])
        at, said = self._shared(np.concatenate(listed), because)
        keys = np.array([k for _, _, k in said], np.int64)[at]
        keys[counts == 0] = 0  # nothing named: the row says NO_HISTORY_REASON itself
        parts = {k: (j, c) for j, c, k in said if k not in self._written}
        self._written.update(parts)
        return Explanations(because, counts, highly, keys, parts)


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
