"""Torch settings a block of work runs under (``pipeline.core.device``)."""

from __future__ import annotations

import ctypes
import platform

import pytest
import torch

from pipeline.core.device import (
    cores_beside_side_fits,
    flush_denormals,
    keep_freed_memory,
    one_torch_thread,
    side_thread,
)


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


def test_side_thread_runs_work_beside_the_caller_and_waits_for_it():
    import threading

    started = threading.Event()

    def work() -> str:
        started.set()
        return threading.current_thread().name

    with side_thread("fits") as side:
        future = side.submit(work)
        assert started.wait(10)  # under way while the block still runs
    assert future.done()
    assert future.result().startswith("fits") and future.result() != threading.current_thread().name
    with side_thread("fits") as side:
        failed = side.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # raised where the result is read
        failed.result()


def test_a_loop_beside_side_fits_steps_on_one_thread_only_while_one_is_pending():
    import threading

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        release = threading.Event()
        with cores_beside_side_fits() as share:
            share()
            assert torch.get_num_threads() == 3  # nothing pending
            with side_thread("fits") as side:
                first = side.submit(release.wait, 10)
                queued = side.submit(lambda: "second")  # waits behind the first: pending too
                share()
                assert torch.get_num_threads() == 1
                release.set()
                assert first.result(10) and queued.result(10) == "second"
                share()
                assert torch.get_num_threads() == 3  # both done: every thread again
                side.submit(release.wait, 10)
                share()
                assert torch.get_num_threads() == 1
            failed = threading.Event()
            with side_thread("fits") as side:
                side.submit(lambda: failed.wait(10) and 1 / 0)  # a failing fit is no longer pending either
                failed.set()
            share()
            assert torch.get_num_threads() == 3
            torch.set_num_threads(2)  # left at another count inside: restored on leaving
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


def _mallinfo() -> _Mallinfo2:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    return libc.mallinfo2()


def _mmapped_by_a_large_tensor() -> int:
    # 64 MiB (above any threshold glibc maps separately) more than the heap holds free: earlier work in this
    # process (a training with a fit in a side thread) can leave free heap chunks that would serve it.
    free = int(_mallinfo().fordblks)
    before = int(_mallinfo().hblkhd)
    tensor = torch.ones((free + 64 * 1024 * 1024) // 4)
    grown = int(_mallinfo().hblkhd) - before
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
