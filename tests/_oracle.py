"""Shared test helpers: comparison against the float64 oracle with per-dtype tolerances."""
import numpy as np

# The small-call kernels (numba_ln/cpu/small.py, small_backward.py) by the family name
# the tests assert: one dispatcher per form, each running the one body of its family.
SMALL_KERNELS = {
    "small_layer_norm": "small_norm", "small_layer_norm_stats": "small_norm",
    "small_rms_norm": "small_norm", "small_rms_norm_stats": "small_norm",
    # (several trailing axes read as rows, called from _small_axes)
    "small_layer_norm_rows": "small_norm", "small_rms_norm_rows": "small_norm",
    "small_add_layer_norm": "small_add_norm", "small_add_rms_norm": "small_add_norm",
    "small_add_layer_norm_stats": "small_add_norm", "small_add_rms_norm_stats": "small_add_norm",
    "small_moments": "small_moments",
    "small_layer_norm_backward": "small_backward",
    "small_layer_norm_backward_stats": "small_backward",
    "small_rms_norm_backward": "small_backward",
    "small_rms_norm_backward_stats": "small_backward",
    "small_backward_any": "small_backward",  # (grad_residual, param_grads=False)
    "small_layer_norm_backward_rows": "small_backward",  # (several trailing axes)
    "small_rms_norm_backward_rows": "small_backward",
    # (the check of a backward call above the serial bound, which the front then runs in
    # threads)
    "small_backward_fits": "small_backward in threads",
}


def small_kernel_callers(families=None):
    """(module, name, family) of each small-call kernel whose family starts with one of
    families (all when None), the module being the front that calls it."""
    from numba_ln import _small_axes, _small_backward_front, _small_front, _small_moments

    def callers(name, family):
        if family.startswith("small_backward"):
            return (_small_backward_front,)
        if family == "small_moments":
            return (_small_moments,)
        # (the rows kernels: several axes)
        return (_small_axes,) if name.endswith("_rows") else (_small_front,)

    return [(module, name, family) for name, family in SMALL_KERNELS.items()
            if families is None or family.startswith(families)
            for module in callers(name, family)]


class _GeneralAxis(int):
    """An int that only the general path takes as an axis: the small-call gates take Python
    ints (and NumPy integers, made Python ints by _canonical's retry), not a subclass."""


def general_axes(*axes):
    """The axes as _GeneralAxis: the same axes in a form that only the general path (the
    kind table) takes, so a test can compare a small call with the general path's bits."""
    return tuple(_GeneralAxis(a) for a in axes)


def record_calls(monkeypatch, targets):
    """Spy on kernels, each (module, name, label): the returned list gets a kernel's label
    whenever a call of it returns 0 (it ran; 1, or a block key, means it declined)."""
    calls = []
    for module, name, label in targets:
        def spy(*args, kernel=getattr(module, name), label=label):
            result = kernel(*args)
            if not result:
                calls.append(label)
            return result
        monkeypatch.setattr(module, name, spy)
    return calls


# Absolute tolerance against the float64 oracle, per result dtype (issue: float32 within
# 2e-6 at offsets up to 1e5; float64 within 1e-12 relative).
ATOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}


def assert_close(actual, expected, dtype=None, scale=1.0):
    """actual (any dtype) vs a float64 reference: |a - e| <= tol * max(scale, |e|)."""
    actual = np.asarray(actual)
    dtype = np.dtype(dtype or actual.dtype)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == np.shape(expected)
    expected = np.asarray(expected, dtype=np.float64)
    bound = ATOL[dtype] * np.maximum(scale, np.abs(expected))
    err = np.abs(actual.astype(np.float64) - expected)
    both_nan = np.isnan(actual) & np.isnan(expected)
    bad = ~((err <= bound) | both_nan)
    assert not bad.any(), f"max error {np.nanmax(np.where(both_nan, 0, err))} at {np.argwhere(bad)[:3]}"


def same_bits(a, b):
    """Bitwise equality of results: arrays (dtype, shape and bytes), tuples of them, None."""
    if isinstance(a, tuple):
        return (isinstance(b, tuple) and len(a) == len(b)
                and all(same_bits(p, q) for p, q in zip(a, b)))
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def x_ranks(monkeypatch, module, names, at):
    """The rank of x (the call's argument at position `at`) in each call of the kernels
    `names` of module that took the call (returned 0): whether the front passed x as it
    is or as (rows, cols) rows."""
    ranks = []
    for name in names:
        def spy(*args, kernel=getattr(module, name)):
            status = kernel(*args)
            if not status:
                ranks.append(args[at].ndim)
            return status
        monkeypatch.setattr(module, name, spy)
    return ranks
