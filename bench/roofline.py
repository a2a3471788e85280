"""How far a training step's arithmetic lets it go on this machine: its matrix products counted, then timed
alone at the machine's own rate.

``count_step(step)`` runs one step under ``torch.utils.flop_counter.FlopCounterMode`` and returns its
floating-point operations by part of the network. The counter's own ``mm`` formula would count the history
bags' sparse products (``hybrid.network._BagSum``: a users x movies matrix of ones) as dense, some 0.7 MFLOP
a sample too many at ML-1M shape; here a product with a sparse operand counts ``2 * nnz * n``. Elementwise
work, sorts and gathers are not counted: the figures are a floor on the step's work, so a rate derived
from them is a ceiling.

``gemm_seconds(shapes)`` times each of the step's dense products alone, on contiguous random inputs of the
same shapes, at the current torch thread count: the time the step would take if it did nothing but its
matrix products at the rate this machine gives them. A step can go no faster than that, whatever else is
made free.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

# FlopCounterMode's names for the network's modules (class names, nested with dots): the parts reported.
PARTS = {
    "ContentEncoder": "content encoder (candidates' content MLP)",
    "Sequential": "rating MLP",
}
SPARSE_PART = "history bags (sparse products)"
REST_PART = "the rest (logits, rating output, user features)"


def _sparse(t: Any) -> bool:
    import torch

    return isinstance(t, torch.Tensor) and t.layout != torch.strided


class _Products:
    """``mm``/``addmm`` formulas on the raw arguments: a sparse operand counts by its non-zeros, and each
    dense product's shape is kept."""

    def __init__(self) -> None:
        self.sparse_flops = 0
        self.dense: Counter[tuple[int, int, int]] = Counter()

    def _mm(self, a: Any, b: Any) -> int:
        if _sparse(a):
            flops = 2 * int(a._nnz()) * b.shape[1]
        elif _sparse(b):
            flops = 2 * int(b._nnz()) * a.shape[0]
        else:
            (m, k), n = a.shape, b.shape[1]
            self.dense[(m, k, n)] += 1
            return 2 * m * k * n
        self.sparse_flops += flops
        return flops

    def mapping(self) -> dict[Any, Any]:
        import torch

        def mm(a: Any, b: Any, *_: Any, **__: Any) -> int:
            return self._mm(a, b)

        def addmm(_bias: Any, a: Any, b: Any, *_: Any, **__: Any) -> int:
            return self._mm(a, b)

        for formula in (mm, addmm):
            formula._get_raw = True  # type: ignore[union-attr]  # FlopCounterMode then passes the tensors
        return {torch.ops.aten.mm: mm, torch.ops.aten.addmm: addmm}


def count_step(step: Callable[[], Any]) -> dict[str, Any]:
    """Floating-point operations of one call of ``step`` (forward, backward and optimiser), by part, and
    the shapes (m, k, n) of its dense products with how often each ran."""
    from torch.utils.flop_counter import FlopCounterMode

    products = _Products()
    with FlopCounterMode(display=False, depth=1, custom_mapping=products.mapping()) as counter:
        step()
    counts = counter.get_flop_counts()
    total = int(counter.get_total_flops())
    parts = {label: int(sum(counts.get(name, {}).values())) for name, label in PARTS.items()}
    parts[SPARSE_PART] = products.sparse_flops
    parts[REST_PART] = total - sum(parts.values())
    dense = sum(2 * m * k * n * times for (m, k, n), times in products.dense.items())
    return {
        "total": total,
        "parts": parts,
        "dense_shapes": dict(products.dense),
        # products the formulas above did not see (bmm, convolutions): counted, but not timed by gemm_seconds
        "other_products": total - dense - products.sparse_flops,
    }


def _timings(m: int, k: int, n: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` (m x k) @ (k x n) products of random contiguous inputs, after one untimed
    product (the first touch of the inputs and BLAS's buffers)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    a @ b
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        timings.append(time.perf_counter() - t0)
    return timings


def gemm_seconds(shapes: dict[tuple[int, int, int], int], repeats: int = 5) -> dict[str, Any]:
    """Seconds the dense products ``shapes`` ((m, k, n) -> times run) take alone at this machine's rate
    (the median of ``repeats`` timings of each shape), and that rate."""
    import statistics

    seconds = flops = 0.0
    for (m, k, n), times in shapes.items():
        seconds += statistics.median(_timings(m, k, n, repeats)) * times
        flops += 2.0 * m * k * n * times
    return {"seconds": seconds, "gflop_per_s": flops / seconds / 1e9 if seconds else None}


def peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 rate on one large square product at the current torch thread count (the best of
    ``repeats``): the most its matrix products reach."""
    return 2.0 * size**3 / min(_timings(size, size, size, repeats)) / 1e9


def ceiling(step: Callable[[], Any], rows: int, samples_per_s: float) -> dict[str, Any]:
    """The report: ``step``'s (one training step of ``rows`` samples) counted arithmetic per sample, its dense
    products timed alone, the samples/s that bounds, the machine's peak and the rate the step achieves at
    its measured ``samples_per_s``."""
    counted = count_step(step)
    gemm = gemm_seconds(counted["dense_shapes"])
    per_sample = counted["total"] / rows
    return {
        "flop_per_sample": round(per_sample),
        "flop_per_sample_by_part": {k: round(v / rows) for k, v in counted["parts"].items()},
        "dense_shapes": len(counted["dense_shapes"]),
        "other_products_flop": counted["other_products"],
        "gemm_seconds_per_step": round(gemm["seconds"], 4),
        "gemm_gflop_per_s": round(gemm["gflop_per_s"], 1),
        "ceiling_samples_per_s": round(rows / gemm["seconds"]),
        "peak_gflop_per_s": round(peak_gflops(), 1),
        "achieved_gflop_per_s": round(per_sample * samples_per_s / 1e9, 1),
        "what": "one step's matrix products counted (sparse ones by their non-zeros; elementwise work not "
        "counted), then each dense product timed alone at this thread count: no step of this arithmetic "
        "goes faster than ceiling_samples_per_s here; peak: a 2048^3 product",
    }
