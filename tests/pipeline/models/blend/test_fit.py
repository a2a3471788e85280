"""Training the blend to publish (``pipeline.models.blend.fit.train_published``): the members fit in a side
thread while the network trains, and each comes out as it would alone."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.models.blend.fit import train_published
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.train import train_hybrid
from pipeline.models.sasrec import SASRec, SASRecConfig
from tests.support.configs import TINY


def test_a_member_fitted_beside_the_network_is_the_member_fitted_alone(
    ml100k_data, first_300_users, tmp_path
):
    # A one-epoch start, as the evaluate step saves one for the train step (``members.save_starts``).
    start = SASRec.for_data(ml100k_data, SASRecConfig(epochs=1)).fit(first_300_users)
    path = start.save_network(tmp_path / "sasrec-network.npz")
    weights = BlendWeights(0.5, 1.0, 1.0, members={"sasrec": 0.3})

    published, result = train_published(
        ml100k_data,
        TINY,
        weights,
        device="cpu",
        progress=False,
        member_starts={"sasrec": str(path)},
        member_epochs=1,
    )

    alone = SASRec.for_data(ml100k_data).start_from(path, 1).fit(ml100k_data.interactions)
    member = published.members["sasrec"]
    assert isinstance(member, SASRec) and member.config.epochs == 1
    users = np.arange(50)
    np.testing.assert_array_equal(member.score_users(users), alone.score_users(users))
    network = train_hybrid(ml100k_data, None, TINY, device="cpu", progress=False).model
    trained = published.network.net.state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in network.net.state_dict().items())
    assert result.history and len(result.history) == TINY.epochs
