"""The blend's weights as one value (``pipeline.models.blend.weights.BlendWeights``)."""

from __future__ import annotations

import json

import pytest

from pipeline.models.blend.weights import BlendWeights


def test_defaults_are_the_network_alone():
    weights = BlendWeights()
    assert weights.to_dict() == {
        "weight": 1.0,
        "rating_weight": 1.0,
        "rerank_weight": 0.0,
        "als_weight": 0.0,
        "members": {},
        "autorec_weight": 0.0,
    }
    assert weights.describe() == "ranking: network x 1.00; ratings: network x 1.00"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": -0.1},
        {"weight": 1.5},
        {"rating_weight": -1.0},
        {"rerank_weight": -0.5},
        {"als_weight": -0.1},
        {"als_weight": 1.2},
        {"weight": 0.6, "als_weight": 0.5},  # the network and ALS may not take more than the whole
        {"members": {"sasrec": -0.1}},
        {"weight": 0.5, "als_weight": 0.2, "members": {"sasrec": 0.4}},  # nor with a member
        {"autorec_weight": -0.1},
        {"rating_weight": 0.6, "autorec_weight": 0.5},  # the network and AutoRec share the ratings
    ],
)
def test_out_of_range_weights_are_refused(kwargs):
    with pytest.raises(ValueError, match="blend"):
        BlendWeights(**kwargs)


def test_json_round_trip_keeps_the_weights_and_leaves_the_figures_out():
    weights = BlendWeights(0.6, 0.3, 1.5, figures={"ndcg@10": {0.6: 0.31}})
    data = json.loads(json.dumps(weights.to_dict()))
    assert set(data) == {
        "weight",
        "rating_weight",
        "rerank_weight",
        "als_weight",
        "members",
        "autorec_weight",
    }
    again = BlendWeights.from_dict(data)
    assert again == weights and again.figures == {}  # figures do not take part in equality
    older = BlendWeights.from_dict({"weight": 0.5, "rating_weight": 1})  # a blend.json of earlier versions
    assert older == BlendWeights(0.5, 1.0, 0.0, 0.0) and older.ease_weight == 0.5
    assert weights.describe() == (
        "ranking: network x 0.60 + EASE + rating head x 1.50; ratings: network x 0.30 + biased MF"
    )


def test_the_cheap_terms_shares_sum_to_one():
    weights = BlendWeights(0.1, 0.5, 1.0, als_weight=0.6, figures={"als_ndcg@10": {0.6: 0.2}})
    assert weights.ease_weight == pytest.approx(0.3)
    assert BlendWeights.from_dict(json.loads(json.dumps(weights.to_dict()))) == weights
    assert weights.describe() == (
        "ranking: network x 0.10 + ALS x 0.60 + EASE x 0.30 + rating head x 1.00; ratings: network x 0.50 + biased MF"
    )
    # shares whose float sum is a hair off 1 leave EASE nothing, not a negative share
    for w, a in ((0.3, 0.7), (0.7, 0.3), (0.6, 0.4), (0.1, 0.9)):
        assert BlendWeights(w, als_weight=a).ease_weight == 0.0
    assert (
        BlendWeights(0.0, als_weight=1.0).describe()
        == "ranking: network x 0.00 + ALS x 1.00; ratings: network x 1.00"
    )


def test_members_take_their_shares_from_eases_and_leave_them_for_a_folded_in_user():
    weights = BlendWeights(0.1, 0.5, 0.0, als_weight=0.2, members={"sasrec": 0.5, "bpr": 0.0})
    assert weights.ease_weight == pytest.approx(0.2)
    assert weights.active_members == {"sasrec": 0.5}
    again = BlendWeights.from_dict(json.loads(json.dumps(weights.to_dict())))
    assert again == weights and again.members == {"sasrec": 0.5, "bpr": 0.0}
    assert weights.describe() == (
        "ranking: network x 0.10 + ALS x 0.20 + sasrec x 0.50 + EASE x 0.20; ratings: network x 0.50 + biased MF"
    )
    # without the members the others keep their proportions and sum to 1
    rest = weights.without_members()
    assert rest.members == {} and rest.rating_weight == 0.5
    assert (rest.weight, rest.als_weight, rest.ease_weight) == pytest.approx((0.2, 0.4, 0.4))
    assert BlendWeights(0.5).without_members() == BlendWeights(0.5)
    # keeping a member: only the others' shares go, the rest in proportion
    kept = BlendWeights(0.1, 0.5, als_weight=0.2, members={"sasrec": 0.5, "bpr": 0.2}).without_members(
        keep={"sasrec"}
    )
    assert kept.members == pytest.approx({"sasrec": 0.625})
    assert (kept.weight, kept.als_weight) == pytest.approx((0.125, 0.25)) and kept.ease_weight == 0.0
    assert weights.without_members(keep={"sasrec"}) == weights  # nothing to drop
    with pytest.raises(ValueError, match="those members alone"):
        BlendWeights(0.0, members={"sasrec": 1.0}).without_members()


def test_autorec_shares_the_ratings_with_the_network_and_biased_mf_has_the_rest():
    weights = BlendWeights(0.6, 0.3, autorec_weight=0.5)
    assert weights.mf_weight == pytest.approx(0.2)
    again = BlendWeights.from_dict(json.loads(json.dumps(weights.to_dict())))
    assert again == weights and again.autorec_weight == 0.5
    assert weights.describe().endswith("ratings: network x 0.30 + AutoRec x 0.50 + biased MF x 0.20")
    # a pair whose float sum is a hair off 1 leaves biased MF nothing
    assert BlendWeights(rating_weight=0.3, autorec_weight=0.7).mf_weight == 0.0
    assert (
        BlendWeights(rating_weight=0.3, autorec_weight=0.7)
        .describe()
        .endswith("network x 0.30 + AutoRec x 0.70")
    )
    # a folded-in user keeps the rating shares
    assert (
        BlendWeights(0.5, 0.3, members={"sasrec": 0.5}, autorec_weight=0.4).without_members().autorec_weight
        == 0.4
    )


def test_without_autorec_its_rating_share_goes_to_the_others_in_proportion():
    weights = BlendWeights(0.5, 0.3, autorec_weight=0.5, figures={"rmse": {0.3: 0.9}})
    rest = weights.without_autorec()
    assert rest.autorec_weight == 0.0 and rest.rating_weight == pytest.approx(0.6)
    assert rest.mf_weight == pytest.approx(0.4) and rest.weight == 0.5  # the ranking is untouched
    assert BlendWeights(rating_weight=0.0, autorec_weight=1.0).without_autorec().rating_weight == 1.0
    assert BlendWeights(0.5, 0.3).without_autorec() == BlendWeights(0.5, 0.3)
