"""Fold-in of a new user to the published blend (``pipeline.models.foldin``), on the tiny blend trained on the
first 300 real ML-100K users: the blend's own terms, EASE exactly, the network's weights untouched."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.core.errors import InputError
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.scorer import standardise
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.foldin import METHODS, FoldedUser, FoldIn
from pipeline.models.topn import mask_rows, top_k

KNOWN = [0, 6, 12, 41, 99]  # users of the tiny blend's training data


def _own(first_300_users, user: int) -> tuple[np.ndarray, np.ndarray]:
    rows = first_300_users.users == user
    return first_300_users.items[rows], first_300_users.ratings[rows]


def test_scoring_a_known_users_own_vector_gives_the_published_blend_scores(tiny_blend, first_300_users):
    # the fold-in's scoring path is the blend's: a known user's own vector and bias reproduce score_users
    fold = FoldIn(tiny_blend)
    net = tiny_blend.network
    for user in KNOWN:
        items, ratings = _own(first_300_users, user)
        vector = net.user_vectors(np.array([user]))[1][0].cpu().numpy()
        bias = float(net.net.user_bias.weight[user, 0].detach())
        scores = fold.blend_scores(FoldedUser(vector, bias, items, ratings))
        assert scores == pytest.approx(tiny_blend.score_users(np.array([user]))[0], abs=1e-4)


def test_the_ease_term_is_exact(tiny_blend, first_300_users):
    ease_only = dataclasses.replace(tiny_blend, weights=BlendWeights(0.0, 1.0, 0.0))
    fold = FoldIn(ease_only)
    for user in KNOWN:
        items, ratings = _own(first_300_users, user)
        folded = fold.blend_scores(fold.user(items, ratings))
        assert folded == pytest.approx(ease_only.score_users(np.array([user]))[0], abs=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_a_known_users_own_ratings_rank_close_to_their_list(tiny_blend, first_300_users, method):
    fold = FoldIn(tiny_blend, method)
    users = np.arange(40)
    own = mask_rows(tiny_blend.score_users(users).astype(np.float64), tiny_blend.rated[users])
    overlaps = []
    for user in users:
        items, ratings = _own(first_300_users, int(user))
        found, _ = fold.recommend(items, ratings, 20)
        overlaps.append(len(set(found) & set(top_k(own[user : user + 1], 20)[0][0])) / 20)
    # measured on this tiny blend: fit 0.88 mean, history 0.84, neighbours 0.81; the EASE and history terms
    # are the user's own, the network's id part is what the fold-in stands in for
    assert np.mean(overlaps) >= 0.6, (method, overlaps)


def _rating_error(fold: FoldIn, items: np.ndarray, given: np.ndarray) -> float:
    """Mean squared error of the folded-in user's rating head on the given movies."""
    user = fold.user(items, given)
    with torch.no_grad():
        pred = fold.net.rating_given_bias(
            torch.full((len(items),), user.bias),
            torch.as_tensor(user.vector).expand(len(items), -1),
            fold.vec[items],
            fold.item_bias[items],
        )
    return float(np.mean((pred.numpy() - given) ** 2))


def test_fit_moves_the_rating_head_towards_the_given_ratings(tiny_blend):
    items = np.array([49, 180, 99, 257, 0])
    fitted, unfitted = FoldIn(tiny_blend, "fit"), FoldIn(tiny_blend, "history")
    for given in (np.full(5, 5.0), np.full(5, 1.0)):
        assert _rating_error(fitted, items, given) < _rating_error(unfitted, items, given)


def test_deterministic_and_the_networks_weights_untouched(tiny_blend):
    before = {k: v.clone() for k, v in tiny_blend.network.net.state_dict().items()}
    params = list(tiny_blend.network.net.parameters())
    grads = [None if p.grad is None else p.grad.clone() for p in params]  # training may have left some
    fold = FoldIn(tiny_blend)
    items, ratings = np.array([49, 180, 99, 257, 0]), np.array([5.0, 4.0, 5.0, 2.0, 4.0])
    first = fold.scores(fold.user(items, ratings))
    again = FoldIn(tiny_blend).scores(FoldIn(tiny_blend).user(items, ratings))
    assert np.array_equal(first, again)
    after = tiny_blend.network.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    for p, g in zip(params, grads, strict=True):  # the fold-in's gradients go to its own two tensors only
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)


def test_different_ratings_of_the_same_movies_give_different_lists(tiny_blend):
    fold = FoldIn(tiny_blend)
    items = np.array([49, 180, 99, 257, 0, 293, 285])
    loved, _ = fold.recommend(items, np.full(7, 5.0), 10)
    mixed, _ = fold.recommend(items, np.array([5.0, 5.0, 1.0, 1.0, 1.0, 5.0, 1.0]), 10)
    assert loved.tolist() != mixed.tolist()


def test_recommend_never_lists_a_given_or_excluded_movie(tiny_blend):
    fold = FoldIn(tiny_blend)
    items, ratings = np.array([49, 180, 99]), np.array([5.0, 4.0, 3.0])
    first, scores = fold.recommend(items, ratings, 10)
    assert len(first) == 10 and not set(first) & set(items)
    assert np.all(np.diff(scores) <= 0)
    again, _ = fold.recommend(items, ratings, 10, exclude=first[:3])
    assert not set(again) & (set(items) | set(first[:3]))
    assert again[:7].tolist() == first[3:].tolist()  # the rest keeps its order
    everything, _ = fold.recommend(items, ratings, tiny_blend.n_items + 5)
    assert len(everything) == tiny_blend.n_items - 3  # fewer when fewer are left


@pytest.mark.parametrize(
    "items, ratings, message",
    [
        ([], [], "at least one rated movie"),
        ([1, 2], [4.0], "do not pair up"),
        ([1, 1], [4.0, 5.0], "each movie once"),
        ([-1], [4.0], "movie indices must be within"),
        ([10**6], [4.0], "movie indices must be within"),
        ([1], [float("nan")], "finite"),
    ],
)
def test_bad_pairs_are_input_errors(tiny_blend, items, ratings, message):
    with pytest.raises(InputError, match=message):
        FoldIn(tiny_blend).user(np.array(items, np.int64), np.array(ratings))


def test_unknown_method_is_refused(tiny_blend):
    with pytest.raises(ValueError, match="unknown fold-in method 'svd'"):
        FoldIn(tiny_blend, "svd")  # type: ignore[arg-type]


def test_the_popularity_prior_leads_with_few_ratings_and_fades_with_more(tiny_blend):
    counts = np.bincount(tiny_blend.rated.indices, minlength=tiny_blend.n_items).astype(np.float64)
    items, ratings = np.array([49, 180, 99]), np.array([5.0, 4.0, 3.0])
    # a prior worth all the ratings in the world: the most-rated movies the user has not given, in order
    found, _ = FoldIn(tiny_blend, prior=1e12).recommend(items, ratings, 10)
    unrated = counts.copy()
    unrated[items] = -np.inf
    assert counts[found].tolist() == sorted(unrated[np.isfinite(unrated)], reverse=True)[:10]
    # its weight is c / (c + n): here 5 / (5 + 3), and less with more ratings
    fold = FoldIn(tiny_blend, prior=5.0)
    user = fold.user(items, ratings)
    popularity = standardise(np.log1p(counts)[None, :])[0]
    personal = standardise(fold.blend_scores(user)[None, :].astype(np.float64))[0]
    assert fold.scores(user) == pytest.approx(3 / 8 * personal + 5 / 8 * popularity)
    assert np.array_equal(FoldIn(tiny_blend, prior=0.0).scores(user), fold.blend_scores(user))
    with pytest.raises(ValueError, match="0 or more"):
        FoldIn(tiny_blend, prior=-1.0)


def test_the_als_term_is_als_own_user_solve(tiny_blend, first_300_users):
    weights = BlendWeights(0.3, 1.0, 1.0, als_weight=0.4)
    with_als = PublishedBlend.from_training(tiny_blend.network, first_300_users, weights)
    p, q = with_als.als.factors()
    fold = FoldIn(with_als)
    als_only = FoldIn(dataclasses.replace(with_als, weights=BlendWeights(0.0, 1.0, 0.0, als_weight=1.0)))
    cosines, overlaps = [], []
    for user in KNOWN:
        items, ratings = _own(first_300_users, user)
        vector = with_als.als.user_vector(items, ratings)
        cosines.append(vector @ p[user] / (np.linalg.norm(vector) * np.linalg.norm(p[user])))
        # the ALS-only blend of the folded user ranks the catalogue as the trained user's factors do
        folded = als_only.blend_scores(als_only.user(items, ratings))
        own = q @ p[user]
        overlaps.append(len(set(top_k(folded[None, :], 20)[0][0]) & set(top_k(own[None, :], 20)[0][0])) / 20)
        folded_blend = fold.blend_scores(fold.user(items, ratings))
        assert np.isfinite(folded_blend).all()
    # measured: cosines above 0.9998, every top 20 the same (training stops at a few CG steps of the solve)
    assert min(cosines) > 0.99 and np.mean(overlaps) >= 0.9, (cosines, overlaps)
    # the ALS share moves the fold-in's scores
    user = fold.user(*_own(first_300_users, KNOWN[0]))
    without = FoldIn(dataclasses.replace(with_als, weights=BlendWeights(0.3, 1.0, 1.0))).blend_scores(user)
    assert not np.allclose(fold.blend_scores(user), without)
    # no positive among the given ratings: zero factors, a constant term that leaves the others' order
    assert not with_als.als.user_vector(np.array([1, 2]), np.array([1.0, 2.0])).any()


def test_the_sasrec_term_is_the_users_own_vector_and_survives_save_and_load(
    ml100k_data, tiny_blend, first_300_users, tmp_path
):
    from pipeline.models.sasrec import SASRec, SASRecConfig, user_sequences

    small = SASRecConfig(factors=16, max_length=20, epochs=2)
    weights = BlendWeights(0.3, 1.0, 1.0, members={"sasrec": 0.4})
    with_sasrec = PublishedBlend.from_training(
        tiny_blend.network,
        first_300_users,
        weights,
        members={"sasrec": lambda: SASRec.for_data(ml100k_data, small)},
    )
    loaded = PublishedBlend.load(with_sasrec.save(tmp_path / "blend"))
    sequences = user_sequences(first_300_users, small.min_rating)
    for model in (with_sasrec, loaded):  # the fitted network, then the one read back with the file
        sasrec = model.members["sasrec"]
        assert isinstance(sasrec, SASRec) and sasrec.folds_in
        users, _ = sasrec.fitted_vectors()
        for user in KNOWN:  # the user's own train sequence, oldest first: their trained vector
            np.testing.assert_allclose(sasrec.user_vector(sequences[user]), users[user], rtol=1e-4, atol=1e-5)
    user = FoldIn(loaded).user(sequences[KNOWN[0]], np.full(len(sequences[KNOWN[0]]), 4.0))
    with_term = FoldIn(loaded).blend_scores(user)
    without = FoldIn(dataclasses.replace(loaded, weights=weights.without_members())).blend_scores(user)
    assert np.isfinite(with_term).all() and not np.allclose(with_term, without)  # the SASRec term counts
    # an artefact saved before the network was kept: the member scores known users, folds in no one
    bare = SASRec.load(tmp_path / "blend" / "member-sasrec.npz")
    bare.reader_ = None
    assert not bare.folds_in
    older = dataclasses.replace(loaded, members={"sasrec": bare})
    assert np.allclose(FoldIn(older).blend_scores(user), without)
