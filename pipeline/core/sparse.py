"""scipy's CSR matrices as torch's: torch multiplies a sparse matrix by a dense one on all its threads,
scipy on one. Both sum each output row's products in the stored order; torch may fuse a multiply into its
add, so with values other than 0 and 1 the last bit of a sum can differ from scipy's (with ones, as in
biased MF's rated matrix, the floats are scipy's)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def torch_csr(matrix: sp.csr_matrix | sp.csr_array) -> torch.Tensor:
    """``matrix`` as a torch CSR tensor of the same dtype and shape (int64 indices; column indices sorted
    within each row, on a copy when they were not). The values are shared, not copied, where they can be."""
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data),
            matrix.shape,
            check_invariants=True,
        )
