"""Which torch device a run uses: ``auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from pipeline.core.errors import MovierecError


def resolve_device(requested: str = "auto") -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise MovierecError("--device cuda was asked for but no CUDA device is available")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested
