"""scipy CSR matrices as torch CSR tensors: the products torch runs must give scipy's floats."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from pipeline.core.sparse import torch_csr


def test_the_product_equals_scipys_with_unsorted_indices_and_empty_rows() -> None:
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 300, 20_000), rng.integers(0, 400, 20_000)
    rows[rows == 7] = 8  # row 7 stays empty
    matrix = sp.csr_matrix((rng.normal(size=20_000), (rows, cols)), shape=(300, 400))
    binary = matrix.copy()
    binary.data[:] = 1.0
    shuffled = matrix.copy()
    for r in range(shuffled.shape[0]):  # each row's entries out of column order, as scipy allows
        lo, hi = shuffled.indptr[r], shuffled.indptr[r + 1]
        flip = np.arange(lo, hi)[::-1]
        shuffled.indices[lo:hi], shuffled.data[lo:hi] = shuffled.indices[flip], shuffled.data[flip]
    shuffled.has_sorted_indices = False
    dense = rng.normal(size=(400, 51))

    tensor = torch_csr(shuffled)
    assert tensor.layout == torch.sparse_csr and tensor.dtype == torch.float64 and tensor.shape == (300, 400)
    product = (tensor @ torch.from_numpy(dense)).numpy()
    # the same sums in the same order; a multiply may be fused into the add, so the last bit can differ
    np.testing.assert_allclose(product, matrix @ dense, rtol=1e-12, atol=1e-12)
    assert not product[7].any()
    # ones (biased MF's rated matrix): nothing to round in the multiplies, bit for bit scipy's floats
    np.testing.assert_array_equal((torch_csr(binary) @ torch.from_numpy(dense)).numpy(), binary @ dense)
    np.testing.assert_array_equal(
        shuffled.indices[shuffled.indptr[0] : shuffled.indptr[1]][::-1],
        matrix.indices[matrix.indptr[0] : matrix.indptr[1]],
    )  # input untouched


def test_the_dtype_is_kept() -> None:
    matrix = sp.csr_matrix(np.eye(3, dtype=np.float32))
    assert torch_csr(matrix).dtype == torch.float32
