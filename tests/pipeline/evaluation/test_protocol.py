"""The evaluation protocol (``pipeline.evaluation.protocol``): metrics of hand-made scores, and every baseline
run through ``run_evaluation`` on the real ML-100K slice."""

import json
import math

import numpy as np
import pytest

from pipeline.evaluation.protocol import (
    evaluate_model,
    evaluation_sample,
    run_evaluation,
    sample_users,
    stable_sample,
)
from pipeline.evaluation.splits import PROTOCOLS, make_split
from pipeline.features.interactions import Interactions
from pipeline.models.baselines import EASE, BiasedMF, GlobalMean, Popularity
from tests.support.ml100k_slice import load_ml100k_slice


class FixedScores:
    """A stand-in model whose scores and predictions are given arrays."""

    name = "Fixed"

    def __init__(self, scores: np.ndarray, predictions: np.ndarray | None = None) -> None:
        self.scores, self.predictions = scores.astype(np.float32), predictions

    def fit(self, train: Interactions) -> "FixedScores":
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.predictions is None:
            return np.full(len(users), np.nan, np.float32)
        return self.predictions.astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users]


def _interactions(rows: list[tuple[int, int, float, int]], n_users: int, n_items: int) -> Interactions:
    u, i, r, t = (np.array(col) for col in zip(*rows))
    return Interactions(
        u.astype(np.int64), i.astype(np.int64), r.astype(np.float32), t.astype(np.int64), n_users, n_items
    )


def test_random_protocol_rating_metrics():
    test = _interactions([(0, 0, 4.0, 1), (1, 1, 2.0, 2), (1, 2, 5.0, 3)], 2, 3)
    model = FixedScores(np.zeros((2, 3)), predictions=np.array([3.0, 2.0, 4.0]))
    # errors 1, 0, 1: RMSE sqrt(2/3), MAE 2/3
    result = evaluate_model(model, test, test, "random")
    assert result["rmse"] == pytest.approx(math.sqrt(2 / 3)) and result["mae"] == pytest.approx(2 / 3)
    assert result["ratings"] == 3
    assert evaluate_model(FixedScores(np.zeros((2, 3))), test, test, "random") == {}  # ranking-only
    with pytest.raises(ValueError, match="NaN"):
        evaluate_model(FixedScores(np.zeros((2, 3)), np.array([3.0, np.nan, 4.0])), test, test, "random")
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_model(model, test, test, "leave-one-out")


def test_temporal_protocol_reports_cold_users_and_long_tail_apart():
    # User 0 is warm (31 train ratings: items 0..30), user 1 cold (1 train rating: item 0).
    warm = [(0, i, 4, i) for i in range(31)]
    train = _interactions([*warm, (1, 0, 5, 1)], 2, 40)
    test = _interactions([(0, 35, 5, 50), (1, 36, 5, 50)], 2, 40)
    scores = np.zeros((2, 40))
    scores[0, [31, 32, 33]] = [3, 2, 1]  # user 0 misses its relevant 35: NDCG 0
    scores[1, [36, 1, 2]] = [3, 2, 1]  # user 1 hits 36 first: NDCG 1
    result = evaluate_model(FixedScores(scores), train, test, "temporal", k=3)
    assert result["ndcg@3"] == pytest.approx(0.5)
    assert result["cold_users"] == 1 and result["cold_ndcg@3"] == pytest.approx(1.0)
    # Train counts: item 0 twice, items 1..30 once (32 ratings); the head holding 80% (25.6) is items 0..24.
    # Listed rows: 31, 32, 33 | 36, 1, 2 -> four of six outside the head.
    assert result["long_tail@3"] == pytest.approx(4 / 6)


def test_temporal_protocol_evaluates_a_fixed_sample_of_users_above_the_cap():
    """Above ``max_users`` eligible users a fixed sample of that many is evaluated, the same on every call,
    and the figure is the mean over exactly those users; ``users_eligible`` says of how many."""
    n_users, n_items = 50, 12
    train = _interactions([(u, 0, 4, 1) for u in range(n_users)], n_users, n_items)
    # every user's relevant held-out movie is 1; users 0..24 rank it first (NDCG 1), the others miss it
    test = _interactions([(u, 1, 5, 2) for u in range(n_users)], n_users, n_items)
    scores = np.zeros((n_users, n_items))
    scores[:25, 1] = 1.0
    scores[25:, 2:5] = [3.0, 2.0, 1.0]
    full = evaluate_model(FixedScores(scores), train, test, "temporal", k=3)
    assert full["users"] == 50 and "users_eligible" not in full and full["ndcg@3"] == pytest.approx(0.5)

    sampled = evaluate_model(FixedScores(scores), train, test, "temporal", k=3, max_users=10)
    assert sampled["users"] == 10 and sampled["users_eligible"] == 50
    chosen = sample_users(np.arange(n_users), 10)
    assert len(np.unique(chosen)) == 10
    assert sampled["ndcg@3"] == pytest.approx(np.mean(chosen < 25))  # NDCG 1 for users 0..24, else 0
    assert evaluate_model(FixedScores(scores), train, test, "temporal", k=3, max_users=10) == sampled


def test_temporal_protocol_masks_train_items_and_skips_users_without_relevant_items():
    # 3 users, 6 items. User 0 rated items 0, 1 in train; its held-out 4 is relevant, held-out 5 is not (3 stars).
    # User 1's only held-out rating is 2 stars: skipped. User 2: held-out 3 and 5 relevant.
    train = _interactions([(0, 0, 5, 1), (0, 1, 5, 2), (1, 2, 4, 1), (2, 0, 4, 1)], 3, 6)
    test = _interactions([(0, 4, 4, 3), (0, 5, 3, 4), (1, 3, 2, 2), (2, 3, 5, 2), (2, 5, 4, 3)], 3, 6)
    # Every user scores train items 0 and 1 highest: the evaluator must mask them.
    scores = np.array(
        [
            [9, 9, 1, 2, 5, 3],  # after masking 0, 1: ranking 4, 5, 3, 2 -> hit at rank 1
            [9, 9, 1, 2, 5, 3],
            [9, 9, 1, 2, 5, 3],
        ]
    )  # masking 0: 1, 4, 5, 3, 2 -> hits at ranks 3, 4
    result = evaluate_model(FixedScores(scores), train, test, "temporal", k=3)
    assert result["users"] == 2
    # user 0: NDCG 1, recall 1, precision 1/3, MRR 1, HR 1
    # user 2 (k=3): hit at rank 3 only: DCG = 1/log2(4) = 0.5; ideal 1 + 1/log2(3); recall 1/2; precision 1/3;
    # MRR 1/3
    ndcg_2 = 0.5 / (1 + 1 / math.log2(3))
    assert result["ndcg@3"] == pytest.approx((1 + ndcg_2) / 2)
    assert result["recall@3"] == pytest.approx((1 + 0.5) / 2)
    assert result["precision@3"] == pytest.approx(1 / 3)
    assert result["mrr@3"] == pytest.approx((1 + 1 / 3) / 2)
    assert result["hr@3"] == pytest.approx(1.0)
    # top-3 lists: user 0 {4, 5, 3}, user 2 {1, 4, 5} -> 4 distinct of 6 items
    assert result["coverage@3"] == pytest.approx(4 / 6)
    # Batching does not change anything.
    assert evaluate_model(FixedScores(scores), train, test, "temporal", k=3, batch_size=1) == result


def test_score_users_shape_is_checked():
    train = _interactions([(0, 0, 5, 1)], 1, 3)
    test = _interactions([(0, 1, 5, 2)], 1, 3)
    with pytest.raises(ValueError, match="score_users"):
        evaluate_model(FixedScores(np.zeros((1, 2))), train, test, "temporal")


@pytest.fixture(scope="module")
def slice_report(ml100k_dir):
    data = load_ml100k_slice(ml100k_dir)
    calls: list[tuple[str, str, int]] = []

    def recording(name, make):
        def factory(train: Interactions, protocol: str):
            calls.append((name, protocol, len(train)))
            return make().fit(train)

        return factory

    factories = {
        "GlobalMean": recording("GlobalMean", GlobalMean),
        "Popularity": recording("Popularity", Popularity),
        "BiasedMF": recording("BiasedMF", BiasedMF),  # the defaults, as the full-data report uses them
        "EASE": recording("EASE", EASE),
    }
    return data, run_evaluation(data, factories, progress=False), calls


def test_models_beat_their_baselines_on_real_ml100k_slice(slice_report):
    _, report, _ = slice_report
    random, temporal = report.results["random"], report.results["temporal"]
    assert random["BiasedMF"]["rmse"] < random["GlobalMean"]["rmse"] - 0.05
    assert random["Popularity"]["rmse"] < random["GlobalMean"]["rmse"]
    assert "rmse" not in random["EASE"]  # ranking-only: skipped, not NaN
    assert temporal["EASE"]["ndcg@10"] > temporal["Popularity"]["ndcg@10"]
    assert temporal["Popularity"]["ndcg@10"] > temporal["GlobalMean"]["ndcg@10"]
    assert len({m["users"] for m in temporal.values()}) == 1  # every model ranked for the same users


def test_every_factory_gets_each_protocols_train_split(slice_report):
    data, report, calls = slice_report
    sizes = {p: len(make_split(data, p)[0]) for p in ("random", "temporal")}
    assert sorted(calls) == sorted((name, p, sizes[p]) for name in report.results["random"] for p in sizes)
    assert report.splits["random"] == {"n_train": sizes["random"], "n_test": len(data) - sizes["random"]}


def test_report_to_dict_is_strict_json_with_protocols_and_timings(slice_report):
    _, report, _ = slice_report
    as_dict = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strictly JSON
    assert set(as_dict["protocols"]) == {"random", "temporal"}
    assert as_dict["protocols"]["temporal"]["definition"] == PROTOCOLS["temporal"]
    assert as_dict["results"]["temporal"]["EASE"]["ndcg@10"] == pytest.approx(
        report.results["temporal"]["EASE"]["ndcg@10"]
    )
    assert as_dict["results"]["random"]["BiasedMF"]["fit_seconds"] >= 0
    assert as_dict["results"]["random"]["EASE"] == {  # ranking-only: timings, no rating figures
        "fit_seconds": pytest.approx(report.timings["random"]["EASE"]["fit_seconds"], abs=1e-3),
        "eval_seconds": pytest.approx(report.timings["random"]["EASE"]["eval_seconds"], abs=1e-3),
    }


def test_run_evaluation_rejects_unknown_protocol_and_non_models(slice_report):
    data, _, _ = slice_report
    with pytest.raises(ValueError, match="unknown protocol"):
        run_evaluation(data, {}, protocols=("nope",), progress=False)
    with pytest.raises(TypeError, match="not a Recommender"):
        run_evaluation(data, {"bad": lambda train, protocol: object()}, protocols=("random",), progress=False)


def test_the_stable_sample_keeps_last_weeks_users_but_for_those_new_ones_displace():
    ids = np.random.default_rng(0).choice(10**7, size=5_000, replace=False)
    week = ids[stable_sample(ids, 500)]
    assert len(np.unique(week)) == 500 and np.array_equal(ids[stable_sample(ids, 500)], week)
    assert set(ids[stable_sample(ids[::-1], 500)]) != set(week)  # keyed on the ids, not their positions...
    assert set(ids[::-1][stable_sample(ids[::-1], 500)]) == set(week)  # ...so their order does not matter
    new = np.setdiff1d(np.random.default_rng(1).choice(10**7, size=600, replace=False), ids)
    grown = np.concatenate([ids, new])
    next_week = set(grown[stable_sample(grown, 500)].tolist())
    kept = next_week & set(ids.tolist())
    assert kept <= set(week.tolist())  # an old user is sampled next week only if it was this week
    assert len(kept) + len(next_week - kept) == 500 and len(kept) > 400  # a tenth more users: few displaced
    assert len(stable_sample(ids, 5_000)) == 5_000 and len(stable_sample(ids, 9_999)) == 5_000


def test_above_the_cap_every_fit_and_figure_is_on_the_sampled_users_ratings(ml100k_dir):
    data = load_ml100k_slice(ml100k_dir)
    db_ids = np.arange(data.n_users) * 7 + 1000  # database ids by dense index
    seen: list[tuple[str, set[int]]] = []

    def recording(train: Interactions, protocol: str) -> Popularity:
        seen.append((protocol, set(np.unique(train.users).tolist())))
        return Popularity().fit(train)

    report = run_evaluation(data, {"Popularity": recording}, progress=False, max_users=40, user_ids=db_ids)
    rated = np.unique(data.users)
    chosen = set(rated[stable_sample(db_ids[rated], 40)].tolist())
    kept = np.isin(data.users, list(chosen))
    assert report.sample == {
        "users": 40,
        "of_users": len(rated),
        "ratings": int(kept.sum()),
        "of_ratings": len(data),
    }
    assert [p for p, _ in seen] == ["random", "temporal"] and all(users <= chosen for _, users in seen)
    sampled = data.subset(kept)
    assert report.splits["temporal"]["n_train"] == len(make_split(sampled, "temporal")[0])
    assert report.results["temporal"]["Popularity"]["users"] <= 40
    assert report.to_dict()["sample"] == report.sample
    assert (report.n_users, report.n_ratings) == (data.n_users, len(data))  # the dataset, whole

    # at or below the cap, and with no cap: everything, and no ``sample`` in the report
    for cap in (len(rated), None):
        same, sample = evaluation_sample(data, cap, db_ids)
        assert same is data and sample is None
    whole = run_evaluation(data, {"Popularity": recording}, ("temporal",), progress=False)
    assert whole.sample is None and "sample" not in whole.to_dict()
