"""Torch settings a block of work runs under (``pipeline.core.device``)."""

from __future__ import annotations

import pytest
import torch

from pipeline.core.device import flush_denormals, one_torch_thread


def _denormal() -> float:
    return float(torch.tensor([1e-30]) * torch.tensor([1e-10]))  # 1e-40: below float32's normal range


def test_flush_denormals_flushes_inside_the_block_only():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals (not x86 with SSE3)")
    assert _denormal() > 0
    with flush_denormals():
        assert _denormal() == 0.0
    assert _denormal() > 0


def test_one_torch_thread_restores_the_count_when_the_last_of_overlapping_blocks_leaves():
    import threading

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen: dict[str, int] = {}

        def first() -> None:  # enters first, leaves while the second still holds the setting
            with one_torch_thread():
                first_in.set()
                second_in.wait(10)
            first_out.set()

        def second() -> None:
            first_in.wait(10)
            with one_torch_thread():
                second_in.set()
                first_out.wait(10)
                seen["after the first left"] = torch.get_num_threads()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen == {"after the first left": 1}  # the second block still runs on one thread
        assert torch.get_num_threads() == 3  # the count from before the first block, not the first's view
        with one_torch_thread(), one_torch_thread():  # nested in one thread too
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
