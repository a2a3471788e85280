"""The network's parts (``pipeline.models.hybrid.network``) on real ML-100K ratings."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.models.hybrid.network import UserHistory


def test_history_pooled_once_per_distinct_user_equals_pooling_every_row(ml100k_data):
    X = ml100k_data.interactions
    history = UserHistory.from_pairs(X.users, X.items, X.n_users, "cpu")
    rows = np.random.default_rng(0).choice(len(X), 2048, replace=False)  # a training batch: users repeat
    users, items = torch.as_tensor(X.users[rows]), torch.as_tensor(X.items[rows])
    assert len(torch.unique(users)) < len(users)
    torch.manual_seed(0)
    fast, slow = nn.Embedding(X.n_items, 8), nn.Embedding(X.n_items, 8)
    slow.load_state_dict(fast.state_dict())

    pooled = history.pooled(fast, users, items)
    expected = []
    for u, leave_out in zip(users.tolist(), items.tolist()):  # one bag per row, the definition
        bag = history.indices[history.indptr[u] : history.indptr[u + 1]]
        n = max(len(bag) - 1, 1)
        expected.append((slow(bag).sum(0) - slow.weight[leave_out]) / n**0.5)
    by_row = torch.stack(expected)
    torch.testing.assert_close(pooled, by_row, rtol=1e-5, atol=1e-6)

    weights = torch.randn_like(pooled)  # the same gradient reaches every movie's history embedding
    (pooled * weights).sum().backward()
    (by_row * weights).sum().backward()
    assert fast.weight.grad is not None and slow.weight.grad is not None
    torch.testing.assert_close(fast.weight.grad, slow.weight.grad, rtol=1e-4, atol=1e-5)
    assert fast.weight.grad.abs().sum() > 0
