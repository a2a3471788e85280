"""A model that fails is a row with its error, not a gap; the evaluation-only models and which of them the
weekly run evaluates."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.core.defaults import (
    BLEND_MEMBER_MODELS,
    BLEND_MEMBERS,
    BLEND_MEMBERS_MAX_RATINGS,
    EVALUATION_ONLY_MODELS,
    WEEKLY_EVALUATION_MODELS,
)
from pipeline.core.errors import MovierecError
from pipeline.core.settings import Settings
from pipeline.evaluation import benchmark
from pipeline.evaluation.benchmark import EVALUATION_ONLY, EvaluationOutcome, evaluate_all
from pipeline.evaluation.protocol import run_evaluation
from pipeline.evaluation.report import EvaluationReport
from pipeline.models.baselines import Popularity
from pipeline.models.blend.members import MEMBERS
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.implicit_mf import ALS, ALSConfig
from pipeline.registry.report import blend_line, evaluation_rows
from tests.support.ml100k_slice import load_ml100k_slice


class _NaNScores(Popularity):
    """Fits, then scores NaN: the evaluation itself fails."""

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return np.full_like(super().score_users(users), np.nan)


def _broken(train, protocol):
    raise np.linalg.LinAlgError("singular matrix\nsecond line")


@pytest.fixture(scope="module")
def report(ml100k_dir) -> EvaluationReport:
    factories = {
        "popularity": lambda train, protocol: Popularity().fit(train),
        "broken": _broken,
        "nan_scores": lambda train, protocol: _NaNScores().fit(train),
        "als": lambda train, protocol: ALS(ALSConfig(factors=8, iterations=3)).fit(train),
    }
    return run_evaluation(load_ml100k_slice(ml100k_dir), factories, ("temporal",), progress=False)


def test_a_model_that_fails_keeps_its_row_with_the_error_and_the_others_run(report) -> None:
    rows = report.results["temporal"]
    assert list(rows) == ["popularity", "broken", "nan_scores", "als"]
    assert rows["broken"] == {} and rows["nan_scores"] == {}
    assert report.failures["temporal"] == {
        "broken": "LinAlgError: singular matrix",
        "nan_scores": "ValueError: scores contain NaN",
    }
    assert rows["popularity"]["ndcg@10"] > 0 and rows["als"]["ndcg@10"] > 0
    as_json = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_json["results"]["temporal"]["broken"]["error"] == "LinAlgError: singular matrix"
    assert "error" not in as_json["results"]["temporal"]["als"]
    assert as_json["results"]["temporal"]["broken"]["fit_seconds"] >= 0


def test_the_table_says_which_model_failed_and_why(report) -> None:
    cells = {row[1]: row for row in evaluation_rows(report.to_dict())}
    failed = cells["broken — failed: LinAlgError: singular matrix"]
    assert failed[0] == "temporal" and set(failed[2:-1]) == {"—"}
    assert cells["als"][4] != "—"  # NDCG@10 shown


def test_fitted_models_configs_are_reported(report) -> None:
    configs = report.to_dict()["configs"]
    assert configs["als"] == {
        "factors": 8,
        "regularization": ALSConfig().regularization,
        "alpha": ALSConfig().alpha,
        "min_rating": ALSConfig().min_rating,
        "iterations": 3,
        "seed": 42,
        "threads": ALSConfig().threads,
        "progress": False,
    }
    assert configs["popularity"] == {"damping": 5.0} and "broken" not in configs


def test_a_failed_member_of_the_published_blend_stops_the_weekly_run(report) -> None:
    outcome = EvaluationOutcome(report, BlendWeights())
    outcome.check_published()  # "broken" is no member: reported only
    report.failures["temporal"]["hybrid"] = "RuntimeError: out of memory"
    try:
        with pytest.raises(
            MovierecError, match=r"evaluation of hybrid failed \(temporal protocol\): Runtime"
        ):
            outcome.check_published()
    finally:
        del report.failures["temporal"]["hybrid"]


def test_evaluation_only_models_and_the_weekly_setting() -> None:
    assert tuple(EVALUATION_ONLY) == EVALUATION_ONLY_MODELS
    assert set(WEEKLY_EVALUATION_MODELS) <= set(EVALUATION_ONLY_MODELS)
    assert Settings().weekly_models == WEEKLY_EVALUATION_MODELS
    assert Settings(MOVIEREC_WEEKLY_MODELS=" bpr,als, bpr").weekly_models == ("bpr", "als")
    assert Settings(MOVIEREC_WEEKLY_MODELS="").weekly_models == ()
    with pytest.raises(ValidationError, match="unknown models \\['wide_deep'\\]"):
        Settings(MOVIEREC_WEEKLY_MODELS="als,wide_deep")
    with pytest.raises(ValueError, match="unknown evaluation-only models \\['wide_deep'\\]"):
        evaluate_all(None, None, extra=("wide_deep",))  # type: ignore[arg-type]  # refused before any work


def test_blend_members_and_their_setting() -> None:
    assert tuple(MEMBERS) == BLEND_MEMBER_MODELS  # the settings check against the defaults' names
    assert set(BLEND_MEMBERS) <= set(BLEND_MEMBER_MODELS)
    assert Settings().blend_members == BLEND_MEMBERS
    assert Settings(MOVIEREC_BLEND_MEMBERS="lightgcn, sasrec,lightgcn").blend_members == (
        "lightgcn",
        "sasrec",
    )
    assert Settings(MOVIEREC_BLEND_MEMBERS="").blend_members == ()
    # above the size cap no member is offered (their fits grow with the ratings)
    capped = Settings(MOVIEREC_BLEND_MEMBERS_MAX_RATINGS="1000")
    assert capped.members_for(1_000) == BLEND_MEMBERS and capped.members_for(1_001) == ()
    assert Settings().members_for(BLEND_MEMBERS_MAX_RATINGS + 1) == ()
    with pytest.raises(ValidationError):
        Settings(MOVIEREC_BLEND_MEMBERS_MAX_RATINGS="-1")
    with pytest.raises(ValidationError, match="unknown blend members \\['item_knn'\\]"):
        Settings(MOVIEREC_BLEND_MEMBERS="sasrec,item_knn")
    with pytest.raises(ValueError, match="unknown blend members \\['item_knn'\\]"):
        evaluate_all(None, None, members=("item_knn",))  # type: ignore[arg-type]  # refused before any work


def test_the_published_line_names_the_members_shares() -> None:
    report = {"blend_weight": 0.0, "rating_weight": 0.5, "rerank_weight": 0.0, "als_weight": 0.2}
    line = blend_line({**report, "member_weights": {"sasrec": 0.7}})
    assert "ALS x 0.20 + sasrec x 0.70 + EASE x 0.10" in line
    assert "sasrec" not in blend_line(report)  # a report of earlier versions: no members


def test_the_blend_row_names_the_row_it_is_built_from_that_failed(ml100k_data, monkeypatch) -> None:
    def singular(self, train):  # type: ignore[no-untyped-def]
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(benchmark.EASE, "fit", singular)
    outcome = evaluate_all(
        ml100k_data,
        HybridConfig(epochs=1),
        device="cpu",
        protocols=("temporal",),
        cold_start=False,
        progress=False,
        max_users=120,
    )
    failures = outcome.report.failures["temporal"]
    assert failures == {
        "ease": "LinAlgError: singular matrix",
        "blend": "MovierecError: the temporal protocol's ease did not fit",
    }
    assert outcome.report.results["temporal"]["hybrid"]["ndcg@10"] > 0
    with pytest.raises(MovierecError, match=r"evaluation of ease failed \(temporal protocol\)"):
        outcome.check_published()
