"""Choosing the blend's weights on a temporal validation split carved out of the train data, never on the
test split the blend is reported on.

One network fitted on the validation split's train part serves every weight tried: the shares of the
ranking's cheap terms (network, implicit ALS, EASE) maximise NDCG@k of the held-out movies, then the
rating-head weight does the same (scored as the batch scores it: the rating head re-ranks each user's
retrieved candidates), and the rating weight minimises the RMSE of the same held-out ratings."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from pipeline.core.defaults import (
    DEFAULT_CANDIDATES,
    RELEVANCE_THRESHOLD,
    TRADEOFF_PENALTIES,
    TRADEOFF_STRENGTHS,
)
from pipeline.evaluation.list_metrics import LIST_METRIC_NAMES, list_set_metrics, popularity_counts
from pipeline.evaluation.metrics import rmse
from pipeline.evaluation.protocol import evaluate_model
from pipeline.evaluation.ranking_pool import FIXED_TERMS, RankingPool
from pipeline.evaluation.splits import Ids, temporal_split
from pipeline.features.interactions import Interactions
from pipeline.features.vocab import MovieContent
from pipeline.models.base import Recommender
from pipeline.models.blend.scorer import BlendRecommender, rating_scale
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.rerank import Diversifier, Rerank
from pipeline.models.topn import scatter_rows, top_k_among

_GRID = tuple(np.linspace(0, 1, 11))
_SLACK = 1e-9  # shares summing to a hair above 1 after float arithmetic sum to 1

log = logging.getLogger(__name__)


def _ranking_figures(
    pool: RankingPool,
    inner_train: Interactions,
    inner_test: Interactions,
    grid: Sequence[float],
    als_grid: Sequence[float],
    k: int,
) -> tuple[float, float, dict[str, dict[float, float]], float]:
    """NDCG@k of the cheap terms at every (network share from ``grid``, ALS share from ``als_grid``) pair
    summing to at most 1 (EASE has the rest; ALS share 0 only without ``als``), and the best pair (ties favour
    the network, then EASE over ALS) among those whose catalogue coverage@k is at least that of the best pair
    without ALS: ALS ranks more accurately than EASE but lists fewer movies (on ML-100K's temporal test
    coverage@10 0.218 at the unconstrained best, network 0, ALS 0.7, against 0.238 without ALS).

    Figures: ``ndcg@k`` per network share at ALS share 0 (the network with EASE alone); with ``als`` also
    ``ndcg@k.als=<share>`` per network share at each ALS share above 0 (with ``ndcg@k``: every point tried),
    ``als_ndcg@k`` per ALS share the best figure over the network shares tried with it (its best is the
    chosen pair's) and ``als_network_weight`` per ALS share that network share. The points rank ``pool``
    (``network``, ``ease`` and, when searched, ``als``: each term scored each validation user once), so a
    point costs the mix of the pool, not the members. ``coverage@k``
    (and ``coverage@k.als=<share>``) hold each point's coverage beside its NDCG. Last: the coverage floor."""
    als = "als" in pool.terms
    shares = sorted({round(float(a), 3) for a in als_grid} | {0.0}) if als else [0.0]
    points: dict[tuple[float, float], float] = {}
    cover: dict[tuple[float, float], float] = {}
    for a in shares:
        for w in (round(float(w), 3) for w in grid):
            if w + a > 1 + _SLACK:
                continue
            got = evaluate_model(
                pool.blend(BlendWeights(w, als_weight=a)), inner_train, inner_test, "temporal", k
            )
            points[(w, a)], cover[(w, a)] = got[f"ndcg@{k}"], got[f"coverage@{k}"]
    # The network with EASE alone sets the coverage floor: a point with ALS must list as much of the
    # catalogue as that blend's best point does (ALS's lists are more concentrated on popular movies).
    base = max((p for p in points if p[1] == 0), key=lambda p: (points[p], p[0]))
    allowed = [p for p in points if p[1] == 0 or cover[p] >= cover[base] - _SLACK]
    best = max(allowed, key=lambda p: (points[p], p[0], -p[1]))
    figures: dict[str, dict[float, float]] = {}
    profile: dict[float, float] = {}
    at: dict[float, float] = {}
    for a in shares:
        row = {w: f for (w, b), f in points.items() if b == a}
        suffix = "" if a == 0 else f".als={a:g}"
        figures[f"ndcg@{k}{suffix}"] = row
        figures[f"coverage@{k}{suffix}"] = {w: c for (w, b), c in cover.items() if b == a}
        at[a] = max(row, key=lambda w: (row[w], w))
        profile[a] = row[at[a]]
    if als:
        figures[f"als_ndcg@{k}"], figures["als_network_weight"] = profile, at
    return best[0], best[1], figures, cover[base]


# Relative weights the members' search tries for each ranking term, one term at a time (the shares are the
# weights over their sum), and at most this many passes over the terms.
ASCENT_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
ASCENT_SWEEPS = 3
# A change must raise the validation NDCG@k by at least this much. Smaller gains are the split's noise: on
# ML-100K two SASRec fits that differed only in floating-point rounding led an ascent taking every gain to
# other shares (the last steps gained 0.0001 to 0.001 each; on the test split 0.2159 against 0.2087), while
# from 0.001 both chose the same shares. The smallest such threshold is the one taken.
ASCENT_MIN_GAIN = 0.001


def _shares(raw: Mapping[str, float]) -> BlendWeights:
    """Relative weights of the ranking terms (``network``, ``als``, ``ease``, members by name) as shares."""
    total = sum(raw.values())
    members = {n: v / total for n, v in raw.items() if n not in FIXED_TERMS}
    return BlendWeights(raw["network"] / total, als_weight=raw["als"] / total, members=members)


def _member_figures(
    pool: RankingPool,
    start: BlendWeights,
    floor: float,
    inner_train: Interactions,
    inner_test: Interactions,
    k: int,
    grid: Sequence[float] = ASCENT_GRID,
) -> tuple[BlendWeights, dict[str, dict[float, float]]]:
    """The ranking terms' shares with the members (``pool``'s terms: ``network``, ``ease``, ``als`` when
    searched, and each member by name) by coordinate ascent on NDCG@k of the held-out movies: from
    ``start`` (the network/ALS/EASE simplex's choice, the members at 0), each term's relative weight in turn
    set to the best of ``grid`` with the others fixed, until a pass changes nothing (at most
    ``ASCENT_SWEEPS``). A point counts only when its coverage@k is at least ``floor`` (the simplex's floor),
    and a change only when it raises NDCG@k by ``ASCENT_MIN_GAIN`` or more. The points rank ``pool``.

    Figures: ``members.ndcg@k`` and ``members.coverage@k`` by step (0: ``start``, then each improvement)."""
    members = [name for name in pool.terms if name not in FIXED_TERMS]

    def judge(raw: Mapping[str, float]) -> tuple[float, float]:
        got = evaluate_model(pool.blend(_shares(raw)), inner_train, inner_test, "temporal", k)
        return got[f"ndcg@{k}"], got[f"coverage@{k}"]

    raw = {"network": start.weight, "als": start.als_weight, "ease": start.ease_weight}
    raw.update({name: 0.0 for name in members})
    best, cover = judge(raw)
    ndcgs, covers = {0.0: best}, {0.0: cover}  # by improving step
    for _ in range(ASCENT_SWEEPS):
        changed = False
        for name in raw:
            if name not in pool.terms:
                continue
            for value in grid:
                trial = {**raw, name: float(value)}
                if value == raw[name] or sum(trial.values()) <= 0:
                    continue
                ndcg, coverage = judge(trial)
                if ndcg >= best + ASCENT_MIN_GAIN and coverage >= floor - _SLACK:
                    raw, best, changed = trial, ndcg, True
                    step = float(len(ndcgs))
                    ndcgs[step], covers[step] = ndcg, coverage
        if not changed:
            break
    return _shares(raw), {f"members.ndcg@{k}": ndcgs, f"members.coverage@{k}": covers}


def _rating_figures(
    network: Recommender,
    partner: Recommender,
    autorec: Recommender | None,
    inner_test: Interactions,
    grid: Sequence[float],
) -> tuple[float, float, dict[str, dict[float, float]]]:
    """RMSE of the rating blend on ``inner_test`` at every network share in ``grid`` and, with ``autorec``,
    every AutoRec share in ``grid`` beside it (the pair summing to at most 1, biased MF the rest); the best
    ``(network share, AutoRec share)`` (ties favour the network, then less AutoRec) and the figures:
    ``"rmse"`` per network share with AutoRec at 0, ``"rmse.autorec=<share>"`` per network share at each
    other AutoRec share."""
    net = network.predict(inner_test.users, inner_test.items).astype(np.float64)
    other = partner.predict(inner_test.users, inner_test.items).astype(np.float64)
    third = np.zeros_like(net) if autorec is None else autorec.predict(inner_test.users, inner_test.items)
    third = np.asarray(third, np.float64)
    shares = [round(float(w), 3) for w in grid]
    errors = {  # (AutoRec share, network share) -> RMSE; at AutoRec 0 the same floats as the two-way mix
        (a, w): rmse(w * net + a * third + (1 - w - a) * other, inner_test.ratings)
        for a in (shares if autorec is not None else [0.0])
        for w in shares
        if w + a <= 1.0 + 1e-9
    }
    figures: dict[str, dict[float, float]] = {}
    for (a, w), value in errors.items():
        figures.setdefault("rmse" if a == 0 else f"rmse.autorec={a}", {})[w] = value
    autorec_weight, rating_weight = min(errors, key=lambda pair: (errors[pair], -pair[1], pair[0]))
    return rating_weight, autorec_weight, figures


# The rating-head term is in units of the ratings' standard deviation; the cheap terms are standardised.
RERANK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
# The search keeps each validation user's candidates and both their terms in memory: above this many
# (user, candidate) pairs (400 MB of float32 per term) it runs on a random sample of the validation users.
RERANK_SEARCH_PAIRS = 100_000_000


class _Candidates:
    """Retrieved candidates and their two terms behind the ``Recommender`` protocol, mixed at one
    rating-head weight: a weight search retrieves and runs the rating head once, mixes many times."""

    name = "candidates"

    def __init__(
        self,
        rows: np.ndarray,
        found: np.ndarray,
        cheap: np.ndarray,
        ratings: np.ndarray,
        weight: float,
        n_items: int,
    ) -> None:
        self.rows, self.found, self.cheap, self.ratings = rows, found, cheap, ratings  # rows[user] -> row
        self.weight, self.n_items = np.float32(weight), n_items
        # each row's candidates by movie index (padding last): a tie goes to the lower index
        self.order = np.argsort(np.where(found < 0, n_items, found), axis=1, kind="stable")

    def at(self, weight: float) -> _Candidates:
        """The same candidates mixed at another rating-head weight (nothing recomputed)."""
        other = copy.copy(self)
        other.weight = np.float32(weight)
        return other

    def fit(self, train: Interactions) -> _Candidates:
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        r = self.rows[users]
        return scatter_rows(self.found[r], self.cheap[r] + self.weight * self.ratings[r], self.n_items)

    def top_k_lists(self, users: np.ndarray, k: int) -> np.ndarray:
        r, order = self.rows[users], self.order[self.rows[users]]
        values = np.take_along_axis(self.cheap[r] + self.weight * self.ratings[r], order, 1)
        return top_k_among(np.take_along_axis(self.found[r], order, 1), values, k)[0]


def _candidate_pool(
    blend: BlendRecommender, inner_train: Interactions, inner_test: Interactions
) -> tuple[_Candidates, Interactions]:
    """Each validation user's candidates with both terms (the cheap ones; the rating head at weight 1), as
    the batch retrieves them; over a random sample of the users beyond ``RERANK_SEARCH_PAIRS`` pairs, with
    the held-out ratings of those users."""
    depth = min(DEFAULT_CANDIDATES, inner_train.n_items)
    users = np.unique(inner_test.users)
    cap = max(1, RERANK_SEARCH_PAIRS // depth)
    if len(users) > cap:
        users = np.sort(np.random.default_rng(0).choice(users, cap, replace=False))
        inner_test = inner_test.subset(np.flatnonzero(np.isin(inner_test.users, users)))
    rows = np.full(inner_train.n_users, -1, np.int64)
    rows[users] = np.arange(len(users))
    unit = BlendRecommender(
        blend.network,
        blend.partner,
        dataclasses.replace(blend.weights, rerank_weight=1.0),
        rating_scale=blend.rating_scale,
        candidates=depth,
        rated=inner_train.binary_matrix(),
        als=blend.als,
        members=blend.members,
    )
    found = np.empty((len(users), depth), np.int64)
    cheap, ratings = np.empty((len(users), depth), np.float32), np.empty((len(users), depth), np.float32)
    for lo in range(0, len(users), 1024):
        block = users[lo : lo + 1024]
        f, c = unit.retrieve(block)
        found[lo : lo + len(block)], cheap[lo : lo + len(block)] = f, c
        ratings[lo : lo + len(block)] = unit.rerank_scores(block, f)
    return _Candidates(rows, found, cheap, ratings, 0.0, inner_train.n_items), inner_test


def _rerank_figures(
    pool: _Candidates,
    inner_train: Interactions,
    inner_test: Interactions,
    grid: Sequence[float],
    k: int,
) -> tuple[float, dict[float, float]]:
    """NDCG@k of the blend at every rating-head weight, scored as the batch scores it (the rating head on
    each user's retrieved candidates, ``pool``), and the best weight (ties favour the smaller one: less
    re-ranking)."""
    figures = {
        round(float(m), 3): evaluate_model(
            pool.at(m),
            inner_train,
            inner_test,
            "temporal",
            k,
        )[f"ndcg@{k}"]
        for m in grid
    }
    return max(figures, key=lambda m: (figures[m], -m)), figures


class _Lists:
    """Fixed lists behind the ``Recommender`` protocol: each listed movie scores its list length minus its
    position, every other movie ``-inf``, so the top k is the list itself."""

    name = "lists"

    def __init__(self, rows: np.ndarray, lists: np.ndarray, n_items: int) -> None:
        self.rows, self.lists, self.n_items = rows, lists, n_items
        self.rank_scores = np.broadcast_to(
            np.arange(lists.shape[1], 0, -1, dtype=np.float32), lists.shape
        ).copy()

    def fit(self, train: Interactions) -> _Lists:
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        r = self.rows[users]
        return scatter_rows(self.lists[r], self.rank_scores[r], self.n_items)

    def top_k_lists(self, users: np.ndarray, k: int) -> np.ndarray:
        lists = np.full((len(users), k), -1, np.int64)
        width = min(k, self.lists.shape[1])
        lists[:, :width] = self.lists[self.rows[users], :width]
        return lists


def diversity_figures(
    pool: _Candidates,
    rerank_weight: float,
    inner_train: Interactions,
    inner_test: Interactions,
    movies: MovieContent,
    k: int,
    strengths: Sequence[float] = TRADEOFF_STRENGTHS,
    penalties: Sequence[float] = TRADEOFF_PENALTIES,
) -> dict[str, dict[float, float]]:
    """The diversity trade-off on the validation split: the candidates' lists re-ranked (``Diversifier``)
    at each strength (no penalty) and at each popularity penalty (strength 0), their NDCG@k beside the
    list-set figures of the top k (``list_set_metrics``, over every validation user's list).

    Returns ``{"diversity.<figure>": {strength: value}, "penalty.<figure>": {penalty: value}}``, figures
    ``ndcg@k`` and ``LIST_METRIC_NAMES``: the shape of ``BlendWeights.figures``."""
    counts = popularity_counts(inner_train.items, inner_train.n_items)
    scores = pool.cheap + np.float32(rerank_weight) * pool.ratings
    diversifier = Diversifier.build(Rerank(), movies, inner_train.binary_matrix())
    out: dict[str, dict[float, float]] = {}
    settings = [("diversity", s, Rerank(strength=s)) for s in strengths]
    settings += [("penalty", b, Rerank(popularity_penalty=b)) for b in penalties]
    for series, value, rerank in settings:
        diversifier.settings = rerank
        lists = np.empty((len(scores), k), np.int64)
        for lo in range(0, len(scores), 1024):
            block = slice(lo, lo + 1024)
            lists[block] = diversifier.apply(pool.found[block], scores[block], k)[0]
        figures = list_set_metrics(lists, counts, diversifier.vectors)
        ndcg = evaluate_model(_Lists(pool.rows, lists, pool.n_items), inner_train, inner_test, "temporal", k)
        figures[f"ndcg@{k}"] = ndcg[f"ndcg@{k}"]
        for name in (f"ndcg@{k}", *LIST_METRIC_NAMES):
            out.setdefault(f"{series}.{name}", {})[round(float(value), 3)] = float(figures[name])
    return out


def validation_split(train: Interactions, ids: Ids | None = None) -> tuple[Interactions, Interactions]:
    """The split every weight is chosen on: each user's latest 20% of ``train`` held out
    (``temporal_split``, ties by the database ``ids`` when given)."""
    return temporal_split(train, ids=ids)


def choose_weights(
    make_network: Callable[[], Recommender] | None,
    make_partner: Callable[[], Recommender],
    make_rating_partner: Callable[[], Recommender],
    train: Interactions,
    grid: Sequence[float] = _GRID,
    k: int = 10,
    rerank_grid: Sequence[float] = RERANK_GRID,
    movies: MovieContent | None = None,
    make_als: Callable[[], Recommender] | None = None,
    als_grid: Sequence[float] = _GRID,
    network: Recommender | None = None,
    members: Mapping[str, Recommender] | None = None,
    make_autorec: Callable[[], Recommender] | None = None,
    ids: Ids | None = None,
) -> BlendWeights:
    """Every blend weight from one temporal validation split of ``train`` and one network fitted on it.

    The cheap terms' shares maximise NDCG@k of the held-out movies: the network's from ``grid`` and, with
    ``make_als`` (implicit ALS as a third member), ALS's from ``als_grid`` at the same time, every pair
    summing to at most 1 (EASE has the rest): at step 0.1 a 66-point simplex, about 6 times the 11 points
    of the network share alone (measured on ML-100K: see ``docs/model.md``); each point costs one scoring of
    the validation users. Then, with those fixed, the rating-head weight does the same; the rating weight
    minimises the RMSE of the same held-out ratings, with ``make_autorec`` (AutoRec,
    the rating blend's third member) together with AutoRec's share over the same kind of simplex (biased MF
    has the rest). One network instead of one per weight keeps a weekly
    training at three network fits. ``rerank_grid`` (0,): no rating-head term. Without ``make_als`` the ALS
    share is 0. ``network``: one already fitted on ``validation_split(train, ids)``'s train part (the
    evaluation's protocol network starts from it; ``make_network`` is then None), else ``make_network()``
    is fitted here. ``ids``: the database ids the split breaks its ties by (``temporal_split``).

    Figures (``_ranking_figures``): {"ndcg@k": per network share with EASE alone; with ``make_als``
    "ndcg@k.als=<share>" per network share at each ALS share, "als_ndcg@k" per ALS share the best over the
    network shares and "als_network_weight" that network share; "rerank_ndcg@k": per rating-head weight,
    "rmse": per rating weight with AutoRec at 0, "rmse.autorec=<share>" per rating weight at each other
    AutoRec share}; with ``movies`` (the catalogue's content, by movie index) also the diversity
    trade-off of the chosen blend (``diversity_figures``: "diversity.*" per strength, "penalty.*" per
    penalty), from the same candidates.
    """
    inner_train, inner_test = validation_split(train, ids)
    if network is None:
        if make_network is None:
            raise ValueError("choose_weights needs a fitted network or make_network")
        network = make_network().fit(inner_train)
    started = time.perf_counter()
    partner = make_partner().fit(inner_train)
    als = make_als().fit(inner_train) if make_als is not None else None
    log.info(
        "the partners fitted on the validation split (%d ratings), %.1f s",
        len(inner_train),
        time.perf_counter() - started,
    )
    members = dict(members or {})
    started = time.perf_counter()
    terms: dict[str, Recommender] = {"network": network, "ease": partner, **members}
    if als is not None:
        terms["als"] = als
    ranked = np.unique(inner_test.users[inner_test.ratings >= RELEVANCE_THRESHOLD])
    ranking = RankingPool(terms, ranked, inner_train.binary_matrix())
    log.info(
        "ranking pool: %d validation users, %d movies each at most (%d terms' top %d), %.1f s",
        len(ranked),
        ranking.items.shape[1],
        len(terms),
        ranking.depth,
        time.perf_counter() - started,
    )
    started = time.perf_counter()
    weight, als_weight, figures, floor = _ranking_figures(ranking, inner_train, inner_test, grid, als_grid, k)
    log.info(
        "cheap-term shares: network %.2f, ALS %.2f (validation NDCG@%d over %d points, %.1f s)",
        weight,
        als_weight,
        k,
        sum(len(v) for name, v in figures.items() if name.startswith(f"ndcg@{k}")),
        time.perf_counter() - started,
    )
    shares = BlendWeights(weight, als_weight=als_weight)
    if members:
        started = time.perf_counter()
        shares, ascent = _member_figures(ranking, shares, floor, inner_train, inner_test, k)
        figures.update(ascent)
        log.info(
            "with the members: %s (validation NDCG@%d %.4f against %.4f, %.1f s)",
            shares.describe(),
            k,
            max(ascent[f"members.ndcg@{k}"].values()),
            ascent[f"members.ndcg@{k}"][0.0],
            time.perf_counter() - started,
        )
    log.info(
        "ranking pool: %d of %d lists scored over the whole catalogue", ranking.full_lists, ranking.listed
    )
    rerank_weight = 0.0
    figures[f"rerank_ndcg@{k}"] = {}
    search = any(m > 0 for m in rerank_grid)
    started = time.perf_counter()
    if search or movies is not None:
        blend = BlendRecommender(
            network,
            partner,
            shares,
            rating_scale=rating_scale(inner_train),
            als=als,
            members=members,
        )
        pool, pool_test = _candidate_pool(blend, inner_train, inner_test)
        if search:
            rerank_weight, figures[f"rerank_ndcg@{k}"] = _rerank_figures(
                pool, inner_train, pool_test, rerank_grid, k
            )
        if movies is not None:
            figures.update(diversity_figures(pool, rerank_weight, inner_train, pool_test, movies, k))
        log.info(
            "rating-head weight %.2f and the diversity trade-off from %d users' candidates, %.1f s",
            rerank_weight,
            len(pool.found),
            time.perf_counter() - started,
        )
    started = time.perf_counter()
    autorec = make_autorec().fit(inner_train) if make_autorec is not None else None
    rating_weight, autorec_weight, rating_figures = _rating_figures(
        network, make_rating_partner().fit(inner_train), autorec, inner_test, grid
    )
    figures.update(rating_figures)
    log.info(
        "rating weights: network %.2f, AutoRec %.2f, %.1f s",
        rating_weight,
        autorec_weight,
        time.perf_counter() - started,
    )
    return dataclasses.replace(
        shares,
        rating_weight=rating_weight,
        autorec_weight=autorec_weight,
        rerank_weight=rerank_weight,
        figures=figures,
    )


def tradeoff_table(figures: Mapping[str, Mapping[float, float]], k: int = 10) -> list[dict[str, float]]:
    """``diversity_figures``' output (inside ``BlendWeights.figures``) as table rows, one per setting tried:
    ``strength``, ``popularity_penalty``, ``ndcg@k`` and ``LIST_METRIC_NAMES``; empty without them."""
    rows = []
    for series, setting in (("diversity", "strength"), ("penalty", "popularity_penalty")):
        for value in figures.get(f"{series}.ndcg@{k}", {}):
            row = {"strength": 0.0, "popularity_penalty": 0.0, setting: float(value)}
            for name in (f"ndcg@{k}", *LIST_METRIC_NAMES):
                row[name] = float(figures[f"{series}.{name}"][value])
            rows.append(row)
    return rows
