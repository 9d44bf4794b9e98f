"""Numba CPU kernels.  Private: the public functions in numba_ln validate and call these."""
