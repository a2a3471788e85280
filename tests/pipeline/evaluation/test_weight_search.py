"""The blend's weights chosen on validation data (``pipeline.evaluation.weight_search.choose_weights``), on real
ML-100K: the ranking weight, the rating weight and the rating-head weight, each the best of its grid."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.defaults import DEFAULT_CANDIDATES, TRADEOFF_PENALTIES, TRADEOFF_STRENGTHS
from pipeline.evaluation import weight_search
from pipeline.evaluation.protocol import evaluate_model
from pipeline.evaluation.splits import random_split, temporal_split
from pipeline.evaluation.weight_search import RERANK_GRID, choose_weights, tradeoff_table
from pipeline.models.autorec import AutoRec
from pipeline.models.baselines import EASE, BiasedMF, GlobalMean, Popularity
from pipeline.models.blend.scorer import BlendRecommender
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.recommender import HybridRecommender
from pipeline.models.implicit_mf import ALS, BPR, ALSConfig, BPRConfig
from pipeline.models.topn import mask_rows, top_k
from tests.support.configs import TINY
from tests.support.ml100k_slice import load_ml100k_slice

GRID = {round(w, 3) for w in np.linspace(0, 1, 11)}


def test_ranking_weight_is_chosen_on_validation_and_favours_the_better_member(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    chosen = choose_weights(Popularity, EASE, GlobalMean, train, rerank_grid=(0.0,))
    figures = chosen.figures["ndcg@10"]
    assert set(figures) == GRID
    assert figures[chosen.weight] == max(figures.values())
    assert figures[0.0] > figures[1.0]  # EASE alone beats popularity alone on this slice
    assert chosen.weight < 1.0
    # a rating-head grid of 0 only: no rating-head term is searched or chosen
    assert chosen.rerank_weight == 0.0 and chosen.figures["rerank_ndcg@10"] == {}


def test_a_network_already_fitted_on_the_validation_split_is_used_as_it_is(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    inner_train, _ = weight_search.validation_split(train)

    def no_second_network() -> Popularity:
        raise AssertionError("the search fitted a network of its own")

    given = choose_weights(
        no_second_network, EASE, GlobalMean, train, rerank_grid=(0.0,), network=Popularity().fit(inner_train)
    )
    fitted_here = choose_weights(Popularity, EASE, GlobalMean, train, rerank_grid=(0.0,))
    assert given.figures["ndcg@10"] == fitted_here.figures["ndcg@10"]
    assert given.weight == fitted_here.weight


def test_the_als_share_is_searched_with_the_network_share(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    small_als = lambda: ALS(ALSConfig(factors=16, iterations=5))  # noqa: E731
    chosen = choose_weights(Popularity, EASE, GlobalMean, train, rerank_grid=(0.0,), make_als=small_als)
    f = chosen.figures
    assert 0.0 <= chosen.als_weight <= 1.0 and chosen.weight + chosen.als_weight <= 1.0 + 1e-9
    # every point of the simplex at step 0.1 was tried: ALS share 0 under the old name, the others beside
    assert set(f["ndcg@10"]) == GRID and set(f["als_ndcg@10"]) == GRID
    points = {(w, 0.0): v for w, v in f["ndcg@10"].items()}
    for a in GRID - {0.0}:
        row = f[f"ndcg@10.als={a:g}"]
        assert set(row) == {w for w in GRID if w + a <= 1 + 1e-9}
        points.update({(w, a): v for w, v in row.items()})
    assert len(points) == 66
    # the chosen pair is the best point; the ALS profile is the best over the network shares
    assert points[(chosen.weight, chosen.als_weight)] == max(points.values())
    assert f["als_ndcg@10"][chosen.als_weight] == max(points.values())
    assert f["als_network_weight"][chosen.als_weight] == chosen.weight
    for a, best in f["als_ndcg@10"].items():
        assert best == max(v for (w, b), v in points.items() if b == a)
    assert f["als_ndcg@10"][0.0] == max(f["ndcg@10"].values())
    assert f["als_ndcg@10"][1.0] != f["als_ndcg@10"][0.0]  # ALS alone is another ranking
    # without an ALS factory, no ALS share and no ALS figures
    plain = choose_weights(Popularity, EASE, GlobalMean, train, rerank_grid=(0.0,))
    assert plain.als_weight == 0.0 and "als_ndcg@10" not in plain.figures
    assert plain.figures["ndcg@10"] == f["ndcg@10"]


def test_members_get_shares_by_coordinate_ascent_from_the_simplex_choice(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    small_als = lambda: ALS(ALSConfig(factors=16, iterations=5))  # noqa: E731
    small_bpr = lambda: BPR(BPRConfig(factors=16, iterations=20))  # noqa: E731
    plain = choose_weights(Popularity, EASE, GlobalMean, train, rerank_grid=(0.0,), make_als=small_als)
    inner_train, inner_test = weight_search.validation_split(train)
    members = {"bpr": small_bpr().fit(inner_train), "pop": Popularity().fit(inner_train)}
    chosen = choose_weights(
        Popularity, EASE, GlobalMean, train, rerank_grid=(0.0,), make_als=small_als, members=members
    )
    steps, cover = chosen.figures["members.ndcg@10"], chosen.figures["members.coverage@10"]
    # the ascent starts at the simplex's choice (its figure) and each step improves on it by the minimum gain
    assert steps[0.0] == max(plain.figures["als_ndcg@10"].values())
    figures = list(steps.values())
    assert all(
        later - earlier >= weight_search.ASCENT_MIN_GAIN for earlier, later in zip(figures, figures[1:])
    )
    assert set(cover) == set(steps)
    floor = plain.figures["coverage@10"][plain.figures["als_network_weight"][0.0]]
    assert min(cover.values()) >= floor - 1e-9
    # the shares are a valid blend; the one chosen is the last step's
    total = chosen.weight + chosen.als_weight + sum(chosen.members.values()) + chosen.ease_weight
    assert total == pytest.approx(1.0) and set(chosen.members) == {"bpr", "pop"}
    blend = BlendRecommender(
        Popularity().fit(inner_train),
        EASE().fit(inner_train),
        chosen,
        als=small_als().fit(inner_train),
        members=members,
    )
    got = weight_search.evaluate_model(blend, inner_train, inner_test, "temporal", 10)["ndcg@10"]
    assert got == pytest.approx(steps[max(steps)], abs=1e-6)


def test_rating_weight_is_chosen_on_validation_and_favours_the_better_predictor(ml100k_dir):
    train, _ = random_split(load_ml100k_slice(ml100k_dir))
    chosen = choose_weights(BiasedMF, EASE, GlobalMean, train, rerank_grid=(0.0,))
    errors = chosen.figures["rmse"]
    assert set(errors) == GRID
    assert errors[chosen.rating_weight] == min(errors.values())
    assert chosen.rating_weight > 0.5  # biased MF predicts ratings far better than the global mean
    assert errors[1.0] < errors[0.0]


def test_autorec_takes_a_share_of_the_ratings_chosen_over_the_simplex(ml100k_dir):
    train, _ = random_split(load_ml100k_slice(ml100k_dir))
    chosen = choose_weights(BiasedMF, EASE, GlobalMean, train, rerank_grid=(0.0,), make_autorec=AutoRec)
    rmse = {(0.0, w): value for w, value in chosen.figures["rmse"].items()}
    for series, values in chosen.figures.items():
        if series.startswith("rmse.autorec="):
            share = float(series.removeprefix("rmse.autorec="))
            assert all(w + share <= 1 + 1e-9 for w in values)
            rmse.update({(share, w): value for w, value in values.items()})
    assert len(rmse) == 66  # every (AutoRec, network) pair of the 0.1 grid summing to at most 1
    assert rmse[chosen.autorec_weight, chosen.rating_weight] == min(rmse.values())
    assert chosen.autorec_weight > 0 and chosen.mf_weight < 0.5  # the global mean is the weakest of three
    # the figure is what the blend with those weights predicts on the same held-out ratings
    inner_train, inner_test = weight_search.validation_split(train)
    blend = BlendRecommender(
        BiasedMF().fit(inner_train),
        None,
        BlendWeights(1.0, chosen.rating_weight, autorec_weight=chosen.autorec_weight),
        GlobalMean().fit(inner_train),
        autorec=AutoRec().fit(inner_train),
    )
    got = evaluate_model(blend, inner_train, inner_test, "random")["rmse"]
    assert got == pytest.approx(min(rmse.values()), rel=1e-5)


def test_rating_head_weight_is_chosen_on_validation(ml100k_data, first_300_users):
    chosen = choose_weights(
        lambda: HybridRecommender(ml100k_data, TINY, "cpu"), EASE, BiasedMF, first_300_users
    )
    figures = chosen.figures["rerank_ndcg@10"]
    assert set(figures) == {round(m, 3) for m in RERANK_GRID}
    assert figures[chosen.rerank_weight] == max(figures.values())
    assert chosen.figures["ndcg@10"][chosen.weight] == max(chosen.figures["ndcg@10"].values())
    # weight 0 is the blend without the term: its figure is the ranking search's best
    assert figures[0.0] == pytest.approx(chosen.figures["ndcg@10"][chosen.weight])


def _tiny_blend_at(tiny_blend, weight: float) -> BlendRecommender:
    network = HybridRecommender.from_artifact(tiny_blend.network)
    return BlendRecommender(
        network, tiny_blend.ease, BlendWeights(weight), rating_scale=tiny_blend.rating_scale
    )


def test_rating_head_search_samples_users_when_the_pairs_exceed_its_budget(
    tiny_blend, first_300_users, monkeypatch
):
    inner_train, inner_test = temporal_split(first_300_users)
    blend = _tiny_blend_at(tiny_blend, 0.6)
    pool, pool_test = weight_search._candidate_pool(blend, inner_train, inner_test)
    _, every_user = weight_search._rerank_figures(pool, inner_train, pool_test, (0.0, 1.0), 10)
    depth = min(DEFAULT_CANDIDATES, inner_train.n_items)
    monkeypatch.setattr(weight_search, "RERANK_SEARCH_PAIRS", 40 * depth)  # room for 40 users' candidates
    pool, pool_test = weight_search._candidate_pool(blend, inner_train, inner_test)
    assert len(pool.found) == 40 and len(np.unique(pool_test.users)) == 40
    best, sampled = weight_search._rerank_figures(pool, inner_train, pool_test, (0.0, 1.0), 10)
    assert sampled != every_user
    assert sampled[best] == max(sampled.values())
    assert all(0.0 <= v <= 1.0 for v in sampled.values())


def test_diversity_tradeoff_on_validation_reuses_the_candidates(ml100k_data, tiny_blend, first_300_users):
    inner_train, inner_test = temporal_split(first_300_users)
    blend = _tiny_blend_at(tiny_blend, 0.6)
    pool, pool_test = weight_search._candidate_pool(blend, inner_train, inner_test)
    figures = weight_search.diversity_figures(pool, 1.0, inner_train, pool_test, ml100k_data.movies, 10)
    rows = tradeoff_table(figures)
    assert [(r["strength"], r["popularity_penalty"]) for r in rows] == [
        *((s, 0.0) for s in TRADEOFF_STRENGTHS),
        *((0.0, b) for b in TRADEOFF_PENALTIES),
    ]
    # strength 0 is the blend's own top 10: the rating-head search's figure at the same weight
    _, rerank = weight_search._rerank_figures(pool, inner_train, pool_test, (1.0,), 10)
    assert rows[0]["ndcg@10"] == pytest.approx(rerank[1.0])
    strengths = rows[: len(TRADEOFF_STRENGTHS)]
    for name in ("intra_list_diversity", "coverage"):
        values = [r[name] for r in strengths]
        assert all(b > a for a, b in zip(values, values[1:], strict=False)), (name, values)
    strongest_penalty = rows[-1]
    assert strongest_penalty["long_tail_share"] > rows[0]["long_tail_share"]
    assert strongest_penalty["novelty"] > rows[0]["novelty"]
    assert tradeoff_table({}) == []


def test_the_searchs_candidates_list_what_their_scores_rank(tiny_blend, first_300_users):
    # The rating-head and diversity searches hand the evaluation their lists (top_k_lists) rather than
    # whole-catalogue rows: the same lists as ranking those rows.
    inner_train, inner_test = temporal_split(first_300_users)
    blend = _tiny_blend_at(tiny_blend, 0.6)
    pool, pool_test = weight_search._candidate_pool(blend, inner_train, inner_test)
    users = np.unique(pool_test.users)
    rated = inner_train.binary_matrix()

    def ranked(model):
        return top_k(mask_rows(model.score_users(users), rated[users]), 10)[0]

    for weight in (0.0, 1.0):
        candidates = weight_search._Candidates(
            pool.rows, pool.found, pool.cheap, pool.ratings, weight, pool.n_items
        )
        lists = candidates.top_k_lists(users, 10)
        np.testing.assert_array_equal(lists, ranked(candidates))
    fixed = weight_search._Lists(pool.rows, lists[:, :7], pool.n_items)
    np.testing.assert_array_equal(fixed.top_k_lists(users, 10), ranked(fixed))
    assert (fixed.top_k_lists(users, 10)[:, 7:] == -1).all()
