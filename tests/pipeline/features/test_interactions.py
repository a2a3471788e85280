import numpy as np

from pipeline.features.interactions import IdMap, build_interactions


def test_id_map_round_trip_and_unknown_ids():
    m = IdMap.from_ids(np.array([30, 10, 20, 10]))
    assert m.to_list() == [10, 20, 30]
    assert m.index(np.array([20, 99, 10])).tolist() == [1, -1, 0]


def test_build_interactions_matrix():
    data, users, items = build_interactions(
        np.array([5, 5, 7]), np.array([100, 200, 200]), np.array([4.0, 3.0, 5.0]), np.array([1, 2, 3])
    )
    assert (data.n_users, data.n_items) == (2, 2)
    assert data.matrix().toarray().tolist() == [[4.0, 3.0], [0.0, 5.0]]
    assert data.subset(data.ratings > 3.5).binary_matrix().sum() == 2
