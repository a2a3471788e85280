"""The blend's weights as one value (``pipeline.models.blend.weights.BlendWeights``)."""

from __future__ import annotations

import json

import pytest

from pipeline.models.blend.weights import BlendWeights


def test_defaults_are_the_network_alone():
    weights = BlendWeights()
    assert weights.to_dict() == {"weight": 1.0, "rating_weight": 1.0, "rerank_weight": 0.0}
    assert weights.describe() == "ranking: network x 1.00; ratings: network x 1.00"


@pytest.mark.parametrize(
    "kwargs", [{"weight": -0.1}, {"weight": 1.5}, {"rating_weight": -1.0}, {"rerank_weight": -0.5}]
)
def test_out_of_range_weights_are_refused(kwargs):
    with pytest.raises(ValueError, match="blend"):
        BlendWeights(**kwargs)


def test_json_round_trip_keeps_the_weights_and_leaves_the_figures_out():
    weights = BlendWeights(0.6, 0.3, 1.5, figures={"ndcg@10": {0.6: 0.31}})
    data = json.loads(json.dumps(weights.to_dict()))
    assert set(data) == {"weight", "rating_weight", "rerank_weight"}
    again = BlendWeights.from_dict(data)
    assert again == weights and again.figures == {}  # figures do not take part in equality
    assert (
        BlendWeights.from_dict({"weight": 0.5, "rating_weight": 1}).rerank_weight == 0.0
    )  # older blend.json
    assert weights.describe() == (
        "ranking: network x 0.60 + EASE + rating head x 1.50; ratings: network x 0.30 + biased MF"
    )
