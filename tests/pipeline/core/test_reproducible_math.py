"""A process that imports the pipeline computes matrix products to the same floats on one thread as on two
(``defaults.REPRODUCIBLE_MATH``): the network's training switches between them while a side fit runs.

MKL reads the setting at its first call, so the check runs in a fresh interpreter without the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.core.defaults import REPRODUCIBLE_MATH

_ROOT = Path(__file__).resolve().parents[3]

# A product whose long inner dimension MKL split across two threads on AVX-512 CPUs unless told not to.
_PRODUCT = (
    "import os, torch; g = torch.Generator().manual_seed(0); "
    "a = torch.randn(448, 2048, generator=g); b = torch.randn(2048, 32, generator=g); "
    "torch.set_num_threads(1); one = a @ b; torch.set_num_threads(2); "
    "print(os.environ.get('MKL_CBWR'), torch.equal(one, a @ b))"
)


def test_a_product_is_the_same_on_one_thread_and_on_two_after_import_pipeline():
    env = {k: v for k, v in os.environ.items() if k not in REPRODUCIBLE_MATH}
    done = subprocess.run(
        [sys.executable, "-c", f"import pipeline; {_PRODUCT}"],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [REPRODUCIBLE_MATH["MKL_CBWR"], "True"]
