"""Torch settings a block of work runs under (``pipeline.core.device``)."""

from __future__ import annotations

import ctypes
import platform

import pytest
import torch

from pipeline.core.device import flush_denormals, keep_freed_memory, one_torch_thread


def _denormal() -> float:
    return float(torch.tensor([1e-30]) * torch.tensor([1e-10]))  # 1e-40: below float32's normal range


def test_flush_denormals_flushes_inside_the_block_only():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals (not x86 with SSE3)")
    assert _denormal() > 0
    with flush_denormals():
        assert _denormal() == 0.0
    assert _denormal() > 0


def test_one_torch_thread_sets_the_count_of_the_thread_it_runs_in_only():
    import threading

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        both_in, main_checked = threading.Barrier(3), threading.Event()
        seen: dict[str, int] = {}

        def block(name: str) -> None:
            torch.set_num_threads(2)  # each thread's own count, set before either block starts
            with one_torch_thread():
                both_in.wait(10)  # both blocks held at once
                main_checked.wait(10)
                seen[f"{name} inside"] = torch.get_num_threads()
            seen[f"{name} after"] = torch.get_num_threads()

        threads = [threading.Thread(target=block, args=(name,)) for name in ("first", "second")]
        for t in threads:
            t.start()
        both_in.wait(10)
        seen["main while both hold"] = torch.get_num_threads()
        main_checked.set()
        for t in threads:
            t.join(10)
        assert seen == {
            "first inside": 1,
            "second inside": 1,  # a block entered while another holds its own: one thread too
            "first after": 2,
            "second after": 2,
            "main while both hold": 3,  # another thread's count is left alone
        }
        with one_torch_thread(), one_torch_thread():  # nested in one thread too
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mmapped_bytes() -> int:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    return int(libc.mallinfo2().hblkhd)


def _mmapped_by_a_large_tensor() -> int:
    before = _mmapped_bytes()
    tensor = torch.ones(16 * 1024 * 1024)  # 64 MiB: above any threshold glibc maps separately
    grown = _mmapped_bytes() - before
    del tensor
    return grown


def test_keep_freed_memory_serves_large_tensors_from_the_heap_inside_the_block_only():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator settings are glibc's")
    with keep_freed_memory():
        with keep_freed_memory():  # nested: the outer block's setting holds until it leaves
            pass
        inside = _mmapped_by_a_large_tensor()
    after = _mmapped_by_a_large_tensor()
    assert inside == 0
    assert after >= 64 * 1024 * 1024
