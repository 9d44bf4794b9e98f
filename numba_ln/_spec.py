"""The call spec: one place turns the arguments of any public function into a validated
``Call`` -- arrays, axes, eps, result dtype, presence of each optional array -- with the
same rules, in the same order and with the same messages on every backend.

A backend supplies an *array adapter* (numpy's in _engine.py, the GPU's in cuda/_front.py)
that knows how to read its arrays; the rules here only look at shapes, dtypes and
read-only flags.  Everything runs before compiled code, raises ``TypeError``/``ValueError``
naming the argument, and writes nothing.

Adapter protocol (``arrays``):

``name``                           "numpy", "dask" or "cuda": the dtype table's backend
``input(a, name)``                 a as the backend's array (.shape, .dtype), or raise
``output(a, name)``                the same for out=/residual_out= (raise TypeError for a
                                   kind of array the backend cannot write)
``readonly(a)``                    whether the backend's array a may not be written
``param(p, name, shape, dtype)``   weight/bias ready for the kernels (flat, contiguous, in
                                   ``dtype``, broadcast to ``shape``), after the checks here;
                                   ``dtype`` is the work dtype (check_param)
``overlap(a, b)``                  whether two of the backend's arrays share memory
"""
import math
import numbers
import operator
from typing import NamedTuple

import numpy as np

from . import _dtypes, _rstd


class Call(NamedTuple):
    variant: object
    x: object
    residual: object  # None without a residual
    weight: object    # None when absent; else as the adapter's param() made it
    bias: object
    out: object       # None: allocate
    residual_out: object
    axes: tuple
    norm_shape: tuple
    eps: float
    dtype: np.dtype   # the result dtype
    work: np.dtype    # the kernels' precision, and the parameters' dtype
    want_stats: bool


def build(variant, arrays, x, residual, weight, bias, axis, eps, out, residual_out,
          want_stats):
    """Validate one call of `variant` (see _variants) for the backend of `arrays`."""
    if variant.residual and residual is None:
        # None would silently mean "no residual" below.
        raise TypeError("residual must be an array, got None")
    x = arrays.input(x, "x")
    dtype = _dtypes.result_dtype(x.dtype, "x", backend=arrays.name)  # before axis: x first
    if residual is not None:
        # a Python number is NumPy's weak scalar: x + 0.5 keeps float32 x's dtype (as an
        # array it would be float64), and it is added as a value of the result dtype
        number = type(residual) in (int, float, bool)
        if number:
            dtype = _dtypes.result_dtype(_dtypes.result_type(x.dtype, residual),
                                         backend=arrays.name)
            try:
                residual = np.asarray(residual, dtype=dtype)
            except OverflowError:  # (NumPy's own x + 10**400 raises it too, naming nothing;
                # past a Python float's range: one past float32's only is inf, as NumPy's)
                raise ValueError("residual is an int past float64's range") from None
        residual = arrays.input(residual, "residual")
        check_residual(residual.shape, residual.dtype, x.shape)
        if not number:
            dtype = _dtypes.result_dtype(_dtypes.result_type(x.dtype, residual.dtype),
                                         backend=arrays.name)
    axes = normalize_axes(axis, len(x.shape))
    work = _dtypes.work_dtype(dtype)
    eps = check_eps(eps, work=None if variant.centered else work)
    if out is not None:
        out = check_output(arrays, out, "out", x.shape, dtype)
    if residual_out is not None:
        residual_out = check_output(arrays, residual_out, "residual_out", x.shape, dtype)
        check_outputs_apart(arrays, out, residual_out)
    norm_shape = tuple(x.shape[a] for a in axes)
    weight = check_param(arrays, weight, "weight", norm_shape, dtype, silently=True)
    bias = check_param(arrays, bias, "bias", norm_shape, dtype, silently=True)
    if 0 in norm_shape:
        raise ValueError(f"the normalized shape {norm_shape} has no elements (axis={axes})")
    return Call(variant, x, residual, weight, bias, out, residual_out, axes, norm_shape, eps,
                dtype, work, want_stats)


# --- the rules ------------------------------------------------------------------------------

def normalize_axes(axis, ndim, name="axis"):
    """NumPy's axis argument -> sorted tuple of non-negative axes."""
    if isinstance(axis, (tuple, list)):
        items = list(axis)
        if not items:
            raise ValueError(f"{name} must name at least one axis, got {axis!r}")
    else:
        items = [axis]
    axes = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            raise TypeError(f"{name} must be an integer or a tuple of integers, got {axis!r}")
        try:
            a = operator.index(item)
        except TypeError:
            raise TypeError(
                f"{name} must be an integer or a tuple of integers, got {axis!r}"
            ) from None
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} {a} is out of bounds for an array of dimension {ndim}")
        axes.append(a % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name} contains a repeated axis: {axis!r}")
    return tuple(sorted(axes))


def check_eps(eps, name="eps", work=None):
    """eps as a float: a finite number >= 0; or, where work (the dtype an RMSNorm call
    computes in) is given, None: that dtype's machine epsilon, as torch's ``rms_norm``
    and ``RMSNorm`` take ``eps=None`` (float32's for float32 and 16-bit data)."""
    if type(eps) is float and 0.0 <= eps < math.inf:
        return eps  # (the commonest eps, without the tests below: ~0.3 us a call)
    if eps is None and work is not None:
        return float(np.finfo(work).eps)
    if type(eps) is np.ndarray and eps.ndim == 0:
        eps = eps[()]  # (a 0-d array, as np.load gives a saved scalar: its scalar)
    # (np.timedelta64 is an np.signedinteger: a duration, not a number)
    if isinstance(eps, (bool, np.bool_, np.timedelta64)) or not (
            isinstance(eps, (int, float, np.integer, np.floating)) or _other_real(eps)):
        raise TypeError(f"{name} must be a real number, got {type(eps).__name__}")
    try:
        value = float(eps)
    except OverflowError:
        raise ValueError(f"{name} must be a finite number >= 0, got an int past float's "
                         "range") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {eps!r}")
    return value


def _other_real(eps):
    """Whether eps is a real number of a rarer type: a Fraction (numbers.Real), a bfloat16
    scalar (ml_dtypes registers none as numbers.Real).  (Tested after the common types:
    an ABC's isinstance costs ~1 us.)"""
    return isinstance(eps, numbers.Real) or (isinstance(eps, np.generic)
                                             and _dtypes.is_real(eps.dtype))


def broadcasts_to(shape, target):
    """Whether an array of ``shape`` broadcasts to exactly ``target`` (NumPy's rule; written
    out because np.broadcast_shapes takes at most 32 dimensions, and NumPy arrays 64)."""
    shape, target = tuple(shape), tuple(target)
    if len(shape) > len(target):
        return False
    return all(n == 1 or n == t for n, t in zip(shape, target[len(target) - len(shape):]))


def check_residual(shape, dtype, x_shape):
    if not _dtypes.is_real(dtype):
        raise TypeError(f"residual has dtype {dtype}, which numba_ln does not support")
    if not broadcasts_to(shape, x_shape):
        raise ValueError(f"residual of shape {tuple(shape)} does not broadcast to x's shape "
                         f"{tuple(x_shape)}")


def check_param(arrays, p, name, norm_shape, result, silently=False):
    """weight/bias: None, or real and broadcastable to the normalized shape; silently: a
    value past the work dtype's range is inf without NumPy's overflow warning."""
    if p is None:
        return None
    if type(p) is int and not -2**63 <= p < 2**63:
        # (np.asarray makes an object array of it: taken as the weak scalar it is, in the
        # work dtype, as NumPy's x * p takes it, and as a residual's)
        work = _dtypes.work_dtype(result)
        try:
            p = np.asarray(p, dtype=work)
        except OverflowError:  # (past a Python float's: one past float32's only is inf)
            raise ValueError(f"{name} is an int past float64's range") from None
    arr = arrays.input(p, name)
    if not _dtypes.is_real(arr.dtype):
        raise TypeError(f"{name} has dtype {arr.dtype}; it must be real (float, int or bool)")
    if tuple(arr.shape) != norm_shape and not broadcasts_to(arr.shape, norm_shape):
        raise ValueError(f"{name} of shape {tuple(arr.shape)} does not broadcast to the "
                         f"normalized shape {norm_shape}")
    # In the work dtype, float32 for 16-bit data: 16-bit parameters widened once per call,
    # exactly (read as 16-bit in every row, they cost 11-14% of a (4096, 1024) pass), and
    # float64 ones rounded once, as for float32 data (read as float64 until 2026-12-06,
    # their kernel variant summed a batch's rows in other vector lanes than a row alone,
    # so a row's statistics depended on the batch around it).
    # (silently: the forward's, whose small calls round a float64 1e300 to inf in compiled
    # code; only the cast, not the reading of a lazily computed array, above)
    work = _dtypes.work_dtype(result)
    with _rstd.narrowing((arr,) if silently else (), work):
        return arrays.param(arr, name, norm_shape, work)


def check_output(arrays, out, name, shape, dtype):
    """out=/residual_out=: an array of the backend's kind, x's shape, the result dtype,
    writeable."""
    out = arrays.output(out, name)
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if out.dtype != dtype or out.dtype.fields is not None:  # (a float viewed with fields
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")  # equals it)
    check_writable(arrays, out, name)
    return out


# np.shares_memory's effort bound for out against residual_out (its max_work): strided
# views of one buffer settle in a few steps; a problem past it is taken as an overlap
_OVERLAP_WORK = 10000


def numpy_overlap(a, b):
    """The NumPy backend's overlap: whether ndarrays a and b have an element in common,
    by NumPy's exact test where their address ranges overlap (two halves, or the even and
    odd rows, of one buffer do not), and True where that test would take too long."""
    if not np.may_share_memory(a, b):
        return False
    try:
        return np.shares_memory(a, b, max_work=_OVERLAP_WORK)
    except np.exceptions.TooHardError:
        return True


def check_outputs_apart(arrays, out, residual_out):
    if out is not None and arrays.overlap(out, residual_out):
        raise ValueError("out and residual_out must not overlap")


def check_writable(arrays, out, name):
    """An output's memory may take a result: writeable, one location per element."""
    if arrays.readonly(out):
        raise ValueError(f"{name} is read-only")
    if 0 not in out.strides:
        return  # (no zero stride: the test below, a generator, cost ~0.5 us a call)
    # (an empty array has no elements to share a location: NumPy gives it zero strides)
    if 0 not in out.shape and any(step == 0 and n > 1 for n, step in zip(out.shape,
                                                                         out.strides)):
        raise ValueError(f"{name} has a zero stride (a broadcast view): several of its "
                         "elements are one memory location, so it cannot hold a result")


# Where an output may *be* an input: the functions' promised in-place forms.  Each element
# of that input is read before the kernel writes the output's element at the same place.
FORWARD_IN_PLACE = {"out": "x", "residual_out": "residual"}
BACKWARD_IN_PLACE = {"out": "dy"}


def inputs_to_copy(inputs, outputs, in_place, overlap, same):
    """The one overlap rule of the CPU fronts, forward (_engine) and backward
    (_backward_front): the names of the inputs the kernels must read from a copy.  An input that shares memory with an output is copied,
    unless that output *is* the input element for element (``same``) in a form ``in_place``
    promises (output name -> input name: out=x, residual_out=residual, out=dy).  inputs and
    outputs are dicts of name -> array or None, as the kernels will read and write them
    (after any dtype conversion: a converted input is a fresh array)."""
    copy = set()
    for out_name, o in outputs.items():
        if o is None:
            continue
        for name, a in inputs.items():
            if (a is not None and name not in copy and overlap(a, o)
                    and not (in_place.get(out_name) == name and same(a, o))):
                copy.add(name)
    return copy
