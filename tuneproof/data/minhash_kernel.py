"""The MinHash min-reduction compiled with numba: for each text, the element-wise minimum of the
permuted hashes of its shingles.

numpy's ``minimum.reduceat`` over the gathered (windows x num_perm) matrix does the same but moves
every permuted hash through memory twice; the compiled loop reads each once and needs no gather.
Without numba (an install that lacks it) the numpy form is used; both give the same signatures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_kernel: Any = None


def _compiled() -> Any:
    global _kernel
    if _kernel is None:
        try:
            import numba
        except Exception:  # missing, or broken by its optional hooks (coverage): use numpy
            _kernel = False
            return _kernel

        @numba.njit(cache=True, nogil=True)
        def reduce_min(perm: Any, ids: Any, first_window: Any, n_windows: Any, out: Any) -> None:
            num_perm = perm.shape[1]
            for t in range(out.shape[0]):
                start = first_window[t]
                row = perm[ids[start]]
                for p in range(num_perm):
                    out[t, p] = row[p]
                for w in range(start + 1, start + n_windows[t]):
                    row = perm[ids[w]]
                    for p in range(num_perm):
                        if row[p] < out[t, p]:
                            out[t, p] = row[p]

        _kernel = reduce_min
    return _kernel


def min_reduce(
    perm: np.ndarray, ids: np.ndarray, first_window: np.ndarray, n_windows: np.ndarray, slice_texts: int
) -> np.ndarray:
    """Signatures (texts x num_perm): the minimum of ``perm[ids[w]]`` over each text's windows."""
    n = len(first_window)
    out = np.empty((n, perm.shape[1]), dtype=perm.dtype)
    kernel = _compiled()
    if kernel:
        kernel(perm, ids.astype(np.int64, copy=False), first_window, n_windows, out)
        return out
    for s in range(0, n, slice_texts):
        e = min(n, s + slice_texts)
        w0 = int(first_window[s])
        w1 = int(first_window[e]) if e < n else len(ids)
        out[s:e] = np.minimum.reduceat(perm[ids[w0:w1]], first_window[s:e] - w0, axis=0)
    return out


def use_numpy_only() -> None:
    """Make later calls take the numpy form (tests compare the two)."""
    global _kernel
    _kernel = False


def reset() -> None:
    global _kernel
    _kernel = None
