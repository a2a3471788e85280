"""bench.roofline's count: what the training benchmark's ceiling on samples/s rests on."""

import pytest
import torch

from bench.roofline import PARTS, REST_PART, SPARSE_PART, count_step, gemm_seconds
from pipeline.models.hybrid.network import _sparse_ones


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")  # as the network's module does
def test_a_sparse_product_counts_its_non_zeros_and_a_dense_one_its_shape() -> None:
    dense, right = torch.randn(8, 5), torch.randn(5, 3)
    # a 4 x 5 matrix of ones with 6 non-zeros, as the history bags' sums build theirs
    ones = _sparse_ones(
        torch.tensor([0, 2, 3, 3, 6]), torch.tensor([0, 4, 1, 0, 2, 3]), torch.ones(6), (4, 5)
    )
    counted = count_step(lambda: (dense @ right, ones @ right))
    assert counted["dense_shapes"] == {(8, 5, 3): 1}
    assert counted["parts"][SPARSE_PART] == 2 * 6 * 3
    assert counted["total"] == 2 * 8 * 5 * 3 + 2 * 6 * 3
    assert counted["other_products"] == 0


def test_the_rating_mlp_and_the_backward_are_counted_in_their_parts() -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 2))  # named like the network's rating MLP
    x = torch.randn(10, 4, requires_grad=True)

    def step() -> None:
        (mlp(x).sum() + (x @ torch.randn(4, 3)).sum()).backward()

    counted = count_step(step)
    forward = 2 * 10 * 4 * 2
    # the backward's two products (the input's and the weight's gradients) cost the forward's twice
    assert counted["parts"][PARTS["Sequential"]] == 3 * forward
    # a constant right-hand side takes no gradient: the forward product and the input's gradient only
    assert counted["parts"][REST_PART] == 2 * 2 * 10 * 4 * 3
    assert counted["total"] == sum(counted["parts"].values())


def test_products_timed_alone_give_a_rate() -> None:
    timed = gemm_seconds({(64, 32, 16): 3})
    assert timed["seconds"] > 0
    assert timed["gflop_per_s"] == 2 * 64 * 32 * 16 * 3 / timed["seconds"] / 1e9
