"""The weight search's members fit in a side thread beside the evaluation's validation network, then their
warm protocol fits, and the weight search runs there beside the protocol network (``evaluate_all``): the
blend and the members' own rows take those fits, which are the fits made in line."""

from __future__ import annotations

import threading

from pipeline.evaluation import benchmark
from pipeline.evaluation.benchmark import evaluate_all
from pipeline.evaluation.protocol import evaluate_model, evaluation_sample
from pipeline.evaluation.splits import make_split
from pipeline.evaluation.weight_search import validation_split
from pipeline.models.autorec import AutoRec
from pipeline.models.baselines import EASE, BiasedMF
from pipeline.models.blend.members import member_factories, warm_start_of
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.recommender import HybridRecommender
from pipeline.models.implicit_mf import ALS
from pipeline.models.sasrec import SASRec


def test_the_member_row_takes_the_warm_fit_made_beside_the_network(ml100k_data, monkeypatch) -> None:
    data = ml100k_data
    fits: list[tuple[str, int]] = []  # (thread, ratings) of every SASRec fit
    fit = SASRec.fit

    def recorded(self: SASRec, train):  # type: ignore[no-untyped-def]
        fits.append((threading.current_thread().name, len(train)))
        return fit(self, train)

    monkeypatch.setattr(SASRec, "fit", recorded)
    searches: list[str] = []  # the thread of each weight search
    search = benchmark.choose_weights

    def recorded_search(*args, **kwargs):  # type: ignore[no-untyped-def]
        searches.append(threading.current_thread().name)
        return search(*args, **kwargs)

    monkeypatch.setattr(benchmark, "choose_weights", recorded_search)
    outcome = evaluate_all(
        data,
        HybridConfig(epochs=1),
        device="cpu",
        protocols=("temporal",),
        cold_start=False,
        progress=False,
        members=("sasrec",),
        max_users=120,
        warm_epochs=1,
    )
    monkeypatch.undo()
    row = outcome.report.results["temporal"]["sasrec"]
    # two fits, the search's and the protocol's warm one, both beside the network: the row fitted nothing
    assert [name.startswith("members") for name, _ in fits] == [True, True]
    assert [name.startswith("members") for name in searches] == [True]

    # The same fits in line, on the same sample and splits: the search's, then the protocol's from it.
    ids = data.ids
    sample, _ = evaluation_sample(data.interactions, 120, data.user_map.ids)
    train, test = make_split(sample, "temporal", ids)
    inner, _ = validation_split(train, ids)
    searched = member_factories(("sasrec",), data)["sasrec"]().fit(inner)
    warm = warm_start_of(searched, 1)
    assert warm is not None
    assert [n for _, n in fits] == [len(inner), len(train)]
    assert row == evaluate_model(warm.fit(train), train, test, "temporal")
    network = HybridRecommender(data, HybridConfig(epochs=1), "cpu").fit(inner)
    weights = search(
        None,
        EASE,
        BiasedMF,
        train,
        movies=data.movies,
        make_als=ALS,
        network=network,
        members={"sasrec": searched},
        make_autorec=AutoRec,
        ids=ids,
    )
    assert outcome.weights == weights  # the same weights and figures as chosen in line
