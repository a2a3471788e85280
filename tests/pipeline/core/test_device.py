"""Torch settings a block of work runs under (``pipeline.core.device``)."""

from __future__ import annotations

import pytest
import torch

from pipeline.core.device import flush_denormals


def _denormal() -> float:
    return float(torch.tensor([1e-30]) * torch.tensor([1e-10]))  # 1e-40: below float32's normal range


def test_flush_denormals_flushes_inside_the_block_only():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals (not x86 with SSE3)")
    assert _denormal() > 0
    with flush_denormals():
        assert _denormal() == 0.0
    assert _denormal() > 0
