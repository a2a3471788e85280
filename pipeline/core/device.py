"""Which torch device a run uses: ``auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pipeline.core.errors import MovierecError


def resolve_device(requested: str = "auto") -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise MovierecError("--device cuda was asked for but no CUDA device is available")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


class _OneThread:
    """How many blocks hold torch to one thread now, and the count to restore when the last one leaves."""

    lock = threading.Lock()
    holders = 0
    restore = 0


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one intra-op thread inside the block, the count restored after: the models trained by
    small-batch Adam (LightGCN, NeuMF, SASRec) give the same floats for the same seed only on one thread, and
    a fold-in's tiny ops run fastest on one. The count is process-wide, so blocks in several threads at once
    (the API's fold-ins) share one setting: the first to enter saves the count, the last to leave restores
    it."""
    with _OneThread.lock:
        if _OneThread.holders == 0:
            _OneThread.restore = torch.get_num_threads()
            torch.set_num_threads(1)
        _OneThread.holders += 1
    try:
        yield
    finally:
        with _OneThread.lock:
            _OneThread.holders -= 1
            if _OneThread.holders == 0:
                torch.set_num_threads(_OneThread.restore)


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
