"""Checking a contender's outputs: against the float64 oracle (:mod:`numba_ln.reference`)
for the normalizations, and bit for bit against their sources for the speed-line copies.

A contender returns its outputs in the order of the function's ``writes`` (one array, or a
tuple).  ``ORACLES`` maps each function to the expected outputs, by name, of the leading
part of its inputs: a new function is a new entry there.
"""
import numpy as np

from numba_ln import reference

# Largest error relative to max(1, |ref|) accepted, by itemsize: loose, so that it catches a
# broken contender (accuracy itself is tested in tests/).  2: 16-bit floats.
RTOL = {8: 1e-9, 4: 1e-3, 2: 2e-2}


def _head(a, case):
    """Leading complete rows (axis=-1) or images (channels-first): cheap to check."""
    a = np.asarray(a)
    return a[: (64 if case.axis == -1 else 1)]


def _layer_norm(inputs, data):
    return {"y": reference.layer_norm(data["x"], inputs.weight, inputs.bias, inputs.case.axis,
                                      inputs.eps)[0]}


def _rms_norm(inputs, data):
    return {"y": reference.rms_norm(data["x"], inputs.weight, inputs.case.axis,
                                    inputs.eps)[0]}


def _add(norm):
    def oracle(inputs, data):
        s = data["x"].astype(np.float64) + data["r"]
        return {**norm(inputs, {"x": s}), "s": s}
    return oracle


ORACLES = {
    "layer_norm": _layer_norm,
    "rms_norm": _rms_norm,
    "add_layer_norm": _add(_layer_norm),
    "add_rms_norm": _add(_rms_norm),
}


def outputs(inputs, got):
    """A contender's result as {output name: array}."""
    names = inputs.spec.writes
    got = (got,) if len(names) == 1 else tuple(got)
    if len(got) != len(names):
        raise AssertionError(f"{inputs.func} {inputs.case.name}: {len(got)} outputs, "
                             f"expected {len(names)} ({', '.join(names)})")
    return dict(zip(names, got))


def check(inputs, got, rtol=None):
    """Compare a contender's outputs (leading part) with the float64 oracle.

    Returns the largest error relative to ``max(1, |ref|)``; raises AssertionError past
    ``rtol`` (default from ``RTOL`` by the inputs' itemsize).

    >>> from numba_ln.bench.cases import CASE_BY_NAME, make_inputs
    >>> inp = make_inputs("rms_norm", CASE_BY_NAME["1x768"])
    >>> check(inp, inp.x)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    AssertionError: rms_norm 1x768: y off by ...
    """
    case, func = inputs.case, inputs.func
    if rtol is None:
        rtol = RTOL[inputs.x.dtype.itemsize]
    data = {name: _head(a, case) for name, a in inputs.arrays.items()}
    expected = ORACLES[func](inputs, data)
    worst = 0.0
    for label, a in outputs(inputs, got).items():
        ref = expected[label]
        a = _head(a, case).astype(np.float64)
        if a.shape != ref.shape:
            raise AssertionError(f"{func} {case.name}: {label} has shape {a.shape}, "
                                 f"expected {ref.shape}")
        err = float(np.max(np.abs(a - ref) / np.maximum(1.0, np.abs(ref)), initial=0.0))
        if not err <= rtol:  # also catches NaN
            raise AssertionError(f"{func} {case.name}: {label} off by {err:.3g} (> {rtol:g})")
        worst = max(worst, err)
    return worst


def check_line(inputs, got):
    """A speed-line copy must reproduce its sources exactly (each output its read array)."""
    for src, dst in zip(inputs.reads, outputs(inputs, got).values()):
        if not np.array_equal(dst, src):
            raise AssertionError(f"speed-line copy for {inputs.func} {inputs.case.name} "
                                 "is wrong")
    return 0.0
