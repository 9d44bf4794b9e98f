"""torch.nn-style callables holding their parameters as plain ndarrays."""
import math
import operator

import numpy as np

from ._api import layer_norm, rms_norm
from ._canonical import canonical_dtype, recast
from ._dtypes import F16, F32, F64, is_bfloat16, result_dtype
from ._small_axes import rows_call, rows_kernel_call
from ._small_front import small_call
from ._spec import check_eps
from ._validate import as_array, flag
from .cpu._stream import LINE

_DTYPES = (F32, F64, F16)  # and ml_dtypes.bfloat16 (is_bfloat16)


def _size(n):
    """One size of normalized_shape: an integer (operator.index, as torch takes it), not a
    bool, a float or a string."""
    if isinstance(n, (bool, np.bool_)):
        raise TypeError
    return operator.index(n)


def _shape(normalized_shape):
    """normalized_shape as a tuple of positive ints: an int or a sequence of ints."""
    try:
        try:
            shape = (_size(normalized_shape),)
        except TypeError:
            if isinstance(normalized_shape, (str, bytes)):
                raise
            shape = tuple(_size(n) for n in normalized_shape)
    except TypeError:
        raise TypeError(f"normalized_shape must be an int or a sequence of ints, got "
                        f"{normalized_shape!r}") from None
    if not shape or any(n <= 0 for n in shape):
        raise ValueError(f"normalized_shape must hold positive sizes, got {normalized_shape!r}")
    return shape


def _on_a_line(arr, dtype):
    """A C-contiguous copy of arr in dtype (NumPy's casting, as np.array's) that starts on
    a cache line.  The kernels read the parameters 64 bytes at a time, and NumPy starts a
    small array 16 bytes past one 3 times in 4, where each of those reads spans two lines.
    Measured (2 threads, float32, medians of interleaved rounds): layer_norm with weight
    and bias 16-48 bytes off a line took 1.10-1.14x the time of aligned ones at (64, 768)
    and (64, 1024), rms_norm 1.04-1.06x; (1, 768) and 4096 rows within noise.  Modules
    with these parameters against NumPy's ones, (64, 768) to (120, 1024): LayerNorm
    0.92-0.97 of the time, RMSNorm 0.92-0.98."""
    dtype = np.dtype(dtype)
    buf = np.empty(arr.size * dtype.itemsize + LINE, np.uint8)
    start = -buf.ctypes.data % LINE
    out = buf[start:start + arr.size * dtype.itemsize].view(dtype).reshape(arr.shape)
    out[...] = arr
    return out


class _Norm:
    """Shared parameter handling (shape-checked assignment) and the call: the small-call
    gate, else the checked public function (_checked_call, one per module)."""

    _param_names = ()

    def __init__(self, normalized_shape, eps, dtype):
        self.normalized_shape = _shape(normalized_shape)
        try:  # (None: torch's default, float32; np.dtype(None) is float64)
            # (NumPy's own object: an equal copy, the dtype of an unpickled array, would
            # fail the small-call gates' identity tests on every call, _canonical.py)
            self.dtype = canonical_dtype(np.dtype(np.float32 if dtype is None else dtype))
        except TypeError:
            raise TypeError(f"dtype must be float32, float64, float16 or bfloat16, got "
                            f"{dtype!r}") from None
        if self.dtype not in _DTYPES and not is_bfloat16(self.dtype):
            raise TypeError(f"dtype must be float32, float64, float16 or bfloat16 "
                            f"(ml_dtypes.bfloat16), got {self.dtype}")
        # (NumPy's own error for a parameter too big for any array did not name it)
        if math.prod(self.normalized_shape) * self.dtype.itemsize > np.iinfo(np.intp).max:
            raise ValueError(f"normalized_shape holds more bytes of {self.dtype} than an "
                             f"array can, got {normalized_shape!r}")
        # (a bad eps is refused here, not at the first call; kept as given.  RMSNorm's None
        # is torch's: the machine epsilon of the dtype a call computes in, found per call)
        if eps is not None or self._centered:
            check_eps(eps)
        # (a 0-d array as its scalar: a NumPy number takes the small-call gates, an array
        # the general path's ~20 us on every call)
        self.eps = eps[()] if type(eps) is np.ndarray else eps
        # an int for one axis: the form the small-call kernels take (_small_front.small_call)
        self._axis = (-1 if len(self.normalized_shape) == 1
                      else tuple(range(-len(self.normalized_shape), 0)))
        # the row length a one-axis module's small calls check x against (else None)
        self._cols = self.normalized_shape[0] if self._axis == -1 else None
        # a several-axis module's rows: the first normalized axis from the end, their length
        self._first, self._row_cols = -len(self.normalized_shape), math.prod(self.normalized_shape)

    _weight = _bias = None  # (RMSNorm has no bias; the properties set their own)
    _params_check_cols = False
    _weight_row = _bias_row = None

    def _parameters_changed(self):
        # A one-axis module's weight or bias has normalized_shape, so the small-call
        # kernels, which check their lengths against x's last axis, check x's too.
        self._params_check_cols = self._cols is not None and (
            self._weight is not None or self._bias is not None)
        if self._cols is None:  # several axes: the parameters as rows, made once (views:
            # an update in place, as a training step makes, is read by the next call)
            self._weight_row = None if self._weight is None else self._weight.reshape(-1)
            self._bias_row = None if self._bias is None else self._bias.reshape(-1)

    def __getstate__(self):
        # (the parameters' row views are made again from the copied parameters: a deep
        # copy or a pickle made them arrays of their own, which an update of the weight
        # in place left stale)
        state = dict(self.__dict__)
        state.pop("_weight_row", None)
        state.pop("_bias_row", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # unpickled arrays' dtypes are equal copies of NumPy's objects, which the
        # small-call gates do not know (_canonical.py): the module's own, viewed under them
        self.dtype = canonical_dtype(self.dtype)
        for name in ("_weight", "_bias"):
            param = getattr(self, name, None)
            if param is not None:
                param = recast(param)
                # (an unpickled array lies where NumPy put it; a shallow copy's is the
                # original's, shared as torch's modules share theirs)
                setattr(self, name, param if param.ctypes.data % LINE == 0
                        else _on_a_line(param, self.dtype))
        self._parameters_changed()

    def __call__(self, x, *, out=None, return_stats=False):
        # The small-call gate straight from the module, for an ndarray whose last axis is
        # the normalized one: skips _check_input's and the public function's Python (~0.4 us
        # of a ~1.5 us call); anything else (None back) takes the checked path.
        # With a weight or a bias the kernels check x's last axis against its length
        # themselves (~90 ns of Python less a call); without, it is checked here.
        if self._params_check_cols or (type(x) is np.ndarray and x.ndim
                                       and x.shape[-1] == self._cols):
            y = small_call(x, self._weight, self._bias, self.eps, self._centered, out,
                           return_stats)
            if y is not None:
                return y
        elif (self._cols is None and type(x) is np.ndarray and x.flags.c_contiguous
              and x.shape[self._first:] == self.normalized_shape
              and (self._weight is None or (self._weight.shape == self.normalized_shape
                                            and self._weight.dtype is self.dtype))
              and (self._bias is None or (self._bias.shape == self.normalized_shape
                                          and self._bias.dtype is self.dtype))):
            # several axes: x's trailing ones as rows of _row_cols (_small_axes.py), read
            # as they are without statistics (the rows are views made when the parameters
            # were set: a parameter reshaped or retyped in place since, ``m.weight.shape =
            # ...``, takes the checked path, which reads it as it is now, as for any x)
            if return_stats is False:
                y = rows_kernel_call(x, self._row_cols, self._weight_row, self._bias_row,
                                     self.eps, self._centered, out)
            else:
                y = rows_call(x, x.ndim + self._first, self._row_cols, self._weight_row,
                              self._bias_row, self.eps, self._centered, out, return_stats)
            if y is not None:
                return y
        self._check_input(x)
        return self._checked_call(x, out, return_stats)

    def _check_param(self, name, value):
        """weight/bias as the module holds them: a C-contiguous copy in its dtype (its rows
        are views, _parameters_changed), or the array it holds when given back unchanged in
        shape and dtype: ``m.weight -= lr * g`` updates it in place and assigns it, and it
        stays the object an optimizer or a shallow copy holds, as torch's parameter does."""
        if value is None:
            return None
        held = getattr(self, "_" + name)
        if (value is held and value.shape == self.normalized_shape
                and value.dtype == self.dtype and value.flags.c_contiguous):
            return held
        arr = as_array(value, name)  # (a masked array refused, as by the functions)
        result_dtype(arr.dtype, name, backend="numpy")
        if arr.shape != self.normalized_shape:
            raise ValueError(
                f"{name} must have shape {self.normalized_shape}, got {arr.shape}"
            )
        # (C order: a Fortran-ordered copy's rows, made by reshape, were copies, so an
        # update in place of the weight was not read by a module of several axes)
        return _on_a_line(arr, self.dtype)

    def _check_input(self, x):
        if not hasattr(x, "shape"):  # lists, and non-arrays refused naming x
            x = as_array(x, "x")
        shape = x.shape
        k = len(self.normalized_shape)
        if len(shape) < k or tuple(shape[-k:]) != self.normalized_shape:
            raise ValueError(
                f"x of shape {shape} does not end in normalized_shape {self.normalized_shape}"
            )


def _param_property(name):
    attr = "_" + name

    def get(self):
        return getattr(self, attr)

    def set(self, value):
        setattr(self, attr, self._check_param(name, value))
        self._parameters_changed()

    return property(get, set, doc=f"{name} (ndarray of normalized_shape, or None)")


class LayerNorm(_Norm):
    """Like ``torch.nn.LayerNorm``: normalizes the trailing ``len(normalized_shape)`` axes.

    ``normalized_shape`` is an int or a sequence of ints (anything ``operator.index``
    takes, as torch does); floats, strings and bools raise ``TypeError``.

    ``weight`` (ones) and ``bias`` (zeros) are plain ndarrays; assign new values (e.g. from
    a checkpoint) and they are shape-checked and copied in ``dtype``.

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> ln = numba_ln.LayerNorm(4)
    >>> ln
    LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True, dtype=float32)
    >>> ln(np.arange(8, dtype=np.float32).reshape(2, 4)).round(3)
    array([[-1.342, -0.447,  0.447,  1.342],
           [-1.342, -0.447,  0.447,  1.342]], dtype=float32)
    """

    weight = _param_property("weight")
    bias = _param_property("bias")

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype=np.float32):
        # (bools: "False" read by truthiness was True)
        elementwise_affine = flag(elementwise_affine, "elementwise_affine")
        bias = flag(bias, "bias")
        super().__init__(normalized_shape, eps, dtype)
        self.elementwise_affine = elementwise_affine
        self.has_bias = bias and elementwise_affine
        self.weight = np.ones(self.normalized_shape, self.dtype) if self.elementwise_affine else None
        self.bias = np.zeros(self.normalized_shape, self.dtype) if self.has_bias else None

    _centered = True

    def _checked_call(self, x, out, return_stats):
        return layer_norm(x, self.weight, self.bias, axis=self._axis, eps=self.eps, out=out,
                          return_stats=return_stats)

    def __repr__(self):
        return (f"LayerNorm({self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.has_bias}, "
                f"dtype={self.dtype})")


class RMSNorm(_Norm):
    """Like ``torch.nn.RMSNorm``: ``x / sqrt(mean(x**2) + eps) * weight`` over the trailing
    ``len(normalized_shape)`` axes; ``weight`` (ones) is a plain ndarray.  ``eps=None`` is
    torch's default (see :func:`numba_ln.rms_norm`); numba_ln's is 1e-6.

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> numba_ln.RMSNorm(2, eps=0.0)(np.array([3.0, 4.0], dtype=np.float32))
    array([0.84852815, 1.1313709 ], dtype=float32)
    """

    weight = _param_property("weight")

    def __init__(self, normalized_shape, eps=1e-6, elementwise_affine=True, dtype=np.float32):
        elementwise_affine = flag(elementwise_affine, "elementwise_affine")
        super().__init__(normalized_shape, eps, dtype)
        self.elementwise_affine = elementwise_affine
        self.weight = np.ones(self.normalized_shape, self.dtype) if self.elementwise_affine else None

    _centered = False

    def _checked_call(self, x, out, return_stats):
        return rms_norm(x, self.weight, axis=self._axis, eps=self.eps, out=out,
                        return_stats=return_stats)

    def __repr__(self):
        return (f"RMSNorm({self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, dtype={self.dtype})")
