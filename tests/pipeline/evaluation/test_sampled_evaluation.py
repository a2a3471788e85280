"""Above ``MOVIEREC_EVALUATION_MAX_USERS`` users the weekly evaluation (``evaluate_all``) fits and scores a
fixed sample of the users' ratings, keyed on their database ids, and says so in its report."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.cli.render import print_evaluation
from pipeline.core.defaults import EVALUATION_MAX_USERS
from pipeline.core.settings import Settings
from pipeline.evaluation.benchmark import evaluate_all
from pipeline.evaluation.protocol import stable_sample
from pipeline.models.hybrid.config import HybridConfig


def test_the_setting_caps_the_evaluated_users_and_zero_means_every_one() -> None:
    assert Settings().evaluation_max_users == EVALUATION_MAX_USERS
    assert Settings(MOVIEREC_EVALUATION_MAX_USERS="0").evaluation_max_users == 0
    with pytest.raises(ValidationError):
        Settings(MOVIEREC_EVALUATION_MAX_USERS="-1")


def test_the_networks_and_the_blend_are_fitted_on_the_sampled_users_only(ml100k_data, capsys) -> None:
    data = ml100k_data
    outcome = evaluate_all(
        data,
        HybridConfig(epochs=1),
        device="cpu",
        protocols=("temporal",),
        cold_start=False,
        progress=False,
        max_users=120,
    )
    report = outcome.report
    rated = np.unique(data.interactions.users)
    chosen = rated[stable_sample(data.user_map.ids[rated], 120)]
    sampled = int(np.isin(data.interactions.users, chosen).sum())
    assert report.sample == {
        "users": 120,
        "of_users": len(rated),
        "ratings": sampled,
        "of_ratings": len(data.interactions),
    }
    assert sampled < len(data.interactions) / 4  # 120 of 943 users
    n_train = report.splits["temporal"]["n_train"]
    assert n_train < sampled
    networks = report.networks["temporal"]
    assert 0 < networks["validation"]["ratings"] < networks["protocol"]["ratings"] <= n_train
    rows = report.results["temporal"]
    assert rows["blend"]["users"] <= 120 and rows["hybrid"]["users"] == rows["blend"]["users"]
    assert rows["blend"]["ndcg@10"] > 0 and not report.failures
    print_evaluation(outcome.to_dict())  # what `movierec evaluate` prints
    assert f"fixed sample of 120 of {len(rated):,} users ({sampled:,} of" in capsys.readouterr().out
