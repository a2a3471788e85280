"""Which torch device a run uses: ``auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

import torch

from pipeline.core.errors import MovierecError


def resolve_device(requested: str = "auto") -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise MovierecError("--device cuda was asked for but no CUDA device is available")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


class _Shared:
    """A process-wide setting that overlapping blocks (in several threads) hold together: the first block in
    applies it (``apply`` returns how to undo it), the last one out undoes it."""

    def __init__(self, apply: Callable[[], Callable[[], None]]) -> None:
        self.lock, self.holders, self.apply = threading.Lock(), 0, apply
        self.undo: Callable[[], None] = lambda: None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.lock:
            if self.holders == 0:
                self.undo = self.apply()
            self.holders += 1
        try:
            yield
        finally:
            with self.lock:
                self.holders -= 1
                if self.holders == 0:
                    self.undo()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one intra-op thread inside the block, this thread's count restored after: the models trained
    by small-batch Adam (LightGCN, NeuMF, SASRec) give the same floats for the same seed only on one thread,
    and a fold-in's tiny ops run fastest on one. Torch keeps the count per thread (OpenMP's and MKL's
    settings are the calling thread's), so a block in one thread leaves the others' count alone, and each of
    several overlapping blocks (the API's fold-ins) sets its own."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_T = TypeVar("_T")


class _SideFits:
    """How many fits submitted to a ``side_thread`` have not finished yet, process-wide."""

    def __init__(self) -> None:
        self.lock, self.pending = threading.Lock(), 0

    def add(self, change: int) -> None:
        with self.lock:
            self.pending += change


_SIDE = _SideFits()


class SideThread:
    """``side_thread``'s worker: ``submit`` runs a fit there and counts it as pending until it ends."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Run ``fn(*args)`` on the worker with the caller's torch thread count (a new thread would start
        from torch's default), so it computes the floats it would in line."""
        # Counted from submission, not from when the worker picks it up: the caller's next training step
        # already leaves it a core.
        _SIDE.add(1)
        threads = torch.get_num_threads()

        def run() -> _T:
            try:
                torch.set_num_threads(threads)
                return fn(*args)
            finally:
                _SIDE.add(-1)

        try:
            return self._pool.submit(run)
        except BaseException:
            _SIDE.add(-1)
            raise


@contextmanager
def side_thread(name: str) -> Iterator[SideThread]:
    """One worker thread for work that runs while the network trains in the caller's thread (the blend's
    members' fits, the evaluation's weight search); on leaving, waits for what was submitted (a failure
    raises where the result is read).

    While work submitted here is pending, a training loop under ``cores_beside_side_fits`` steps on one
    torch thread and leaves the other core to it: on ML-100K the evaluation's validation network and the
    weight search's SASRec fit took 71.6 and 74.1 s side by side against 96.1 s one after the other, the
    same floats (``docs/model.md``, "Fits side by side")."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        yield SideThread(pool)


@contextmanager
def cores_beside_side_fits() -> Iterator[Callable[[], None]]:
    """For a training loop in this thread: the block yields ``share``, called before each step, which sets
    this thread's torch count to one while a ``side_thread`` fit is pending and back to the count at entry
    otherwise; that count is restored on leaving.

    Without it the network's threads and the side fit's one would compete for two cores, and each loses more
    than the other gains (the network's 60 s became 89 to 104 s beside SASRec). Safe for the network's floats
    because they do not depend on its thread count (``tests/pipeline/models/hybrid``, one against two
    threads: MKL's products in their strict reproducible mode, ``defaults.REPRODUCIBLE_MATH``, and gathers
    whose backward sums in index order); where they did, a run's last bits would depend on when the side fit
    ended."""
    full = torch.get_num_threads()

    def share() -> None:
        want = 1 if _SIDE.pending else full
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    try:
        yield share
    finally:
        torch.set_num_threads(full)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """CPU float arithmetic with denormal numbers flushed to zero inside the block (off again after).

    A trained ranking softmax puts probabilities of 1e-38 and below on most sampled movies; their gradients
    are denormals, on which x86 arithmetic runs many times slower: at ML-1M shape the logits' backward
    products took 85 ms a step instead of 1. Values that small change no weight."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


# glibc's mallopt parameters (malloc.h) and the values its dynamic thresholds settle at for large tensors.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MMAP_THRESHOLD_SETTLED = 32 * 1024 * 1024
_MMAP_MAX_DEFAULT = 65_536


@cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc; looked up on first use, not at import."""
    try:
        return ctypes.CDLL(None) if os.confstr("CS_GNU_LIBC_VERSION") else None
    except (ValueError, OSError):  # no such name: not glibc
        return None


def _keep_freed() -> Callable[[], None]:
    libc = _glibc()
    if libc is None:
        return lambda: None
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)

    def hand_back() -> None:
        libc.mallopt(_M_MMAP_MAX, _MMAP_MAX_DEFAULT)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_SETTLED)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_SETTLED)
        libc.malloc_trim(0)

    return hand_back


_HEAP = _Shared(_keep_freed)


@contextmanager
def keep_freed_memory() -> Iterator[None]:
    """Inside the block, memory freed by the process stays with it for the next allocation (glibc; a no-op
    elsewhere); after it, the allocator's settings are those it settles at and the free memory goes back.

    glibc serves every allocation over 32 MB with fresh pages from the kernel and returns them when freed, so
    each training step at ML-25M shape zero-filled and faulted in its dense id-table gradients and logits
    anew: a fifth of the step (``bench/README.md``); the batch's scoring chunks did the same with their score
    matrices. The heap without ``mmap`` or trimming reuses them, at the cost of a higher peak where blocks of
    different sizes cannot reuse each other's memory. The allocator is process-wide: overlapping blocks share
    the setting: the first block in applies it, the last one out restores it."""
    with _HEAP.held():
        yield
