"""A property-based fuzz test over every public function and the modules: random odd but
valid arguments (layouts: C, F, strided, reversed, byte-swapped, read-only, broadcast,
np.matrix; dtypes; axes; optional arrays; out= aliasing) and bad ones.

Each call either matches the float64 oracle (and returns the given ``out`` itself), or
raises a TypeError/ValueError naming the argument at fault and leaves every input and
output unchanged.  Arrays stay small (the serial kernels) and the dtypes are those whose
kernels other tests compile anyway (float32, float64; int16 is converted to float64):
each new type combination compiles, and CI time counts.  16-bit data have their own tests
(tests/test_half.py)."""
import numpy as np
import pytest
from _oracle import assert_close
from hypothesis import event, given, settings
from hypothesis import strategies as st

import numba_ln
from numba_ln import reference as ref

FORWARD = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "moments"]
BACKWARD = ["layer_norm_backward", "rms_norm_backward"]
MODULES = ["LayerNorm", "RMSNorm"]
LAYOUTS = ["C", "F", "strided", "reversed", "byteswapped", "readonly", "broadcast", "matrix"]
DTYPES = [np.float32, np.float64, np.int16]
OUT_MODES = ["none", "fresh", "fortran", "in-place", "over-weight", "matrix", "stream"]
# One bad argument per call, or none: (argument named in the message, value).
BAD = [("eps", -1.0), ("eps", float("nan")), ("eps", "1e-5"), ("axis", 7),
       ("axis", 1.5), ("axis", (0, 0)), ("weight", "shape"), ("weight", "complex"),
       ("x", None), ("x", "abc"), ("out", "shape"), ("out", "dtype"), ("out", "readonly"),
       ("out", "broadcast"), ("residual", "shape"), ("dy", "shape"), ("mean", "alone"),
       ("param_grads", "yes"), ("normalized_shape", "12")]


def _layout(values, layout, dtype, rng):
    """An array of `values` (float64) cast to dtype, laid out as `layout`."""
    a = values.astype(dtype)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(tuple(2 * n for n in a.shape), dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        return np.ascontiguousarray(a[flip])[flip]
    if layout == "byteswapped":
        return a.astype(a.dtype.newbyteorder())
    if layout == "readonly":
        a.flags.writeable = False
        return a
    if layout == "broadcast" and a.ndim:  # a zero stride on a random axis
        k = int(rng.integers(a.ndim))
        one = a.take([0], axis=k)
        return np.broadcast_to(one, a.shape)
    if layout == "matrix" and a.ndim == 2:
        return np.asmatrix(a)
    return np.ascontiguousarray(a)


def _plain(a):
    return None if a is None else np.array(a, dtype=np.float64)  # (a matrix too)


@st.composite
def calls(draw):
    func = draw(st.sampled_from(FORWARD + BACKWARD + MODULES))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.sampled_from([1, 2, 3, 5, 8]), min_size=ndim,
                                max_size=ndim)))
    if func in MODULES:
        axes = tuple(range(ndim - draw(st.integers(1, ndim)), ndim))
    else:
        axes = tuple(sorted(draw(st.lists(st.integers(0, ndim - 1), min_size=1,
                                          max_size=ndim, unique=True))))
    return dict(
        func=func, shape=shape, axes=axes,
        axis=axes[0] - ndim if len(axes) == 1 and draw(st.booleans()) else axes,
        dtype=draw(st.sampled_from(DTYPES)),
        layouts={name: draw(st.sampled_from(LAYOUTS))
                 for name in ("x", "other", "weight", "bias")},
        other_dtype=draw(st.sampled_from([None, np.float32, np.float64])),
        weight=draw(st.booleans()), bias=draw(st.booleans()),
        stats=draw(st.booleans()), grad_residual=draw(st.booleans()),
        eps=draw(st.sampled_from([1e-5, 0.1, np.float32(1e-3), 0])),
        offset=draw(st.sampled_from([0.0, 100.0])),
        out=draw(st.sampled_from(OUT_MODES)),
        bad=draw(st.one_of(st.none(), st.sampled_from(BAD))),  # half the calls valid
        seed=draw(st.integers(0, 2**16)))


def _as_float(dtype):
    return np.dtype(np.float64) if np.dtype(dtype).kind in "iub" else np.dtype(dtype)


def _result_dtype(backward, *dtypes):
    """The documented promotion: the forward takes np.result_type of x and residual, then
    integers give float64 (int16 + float32 is float32); the backward maps each array's
    dtype first (int16 + float32 is float64)."""
    dtypes = [d for d in dtypes if d is not None]
    if backward:
        return np.result_type(*(_as_float(d) for d in dtypes))
    return _as_float(np.result_type(*dtypes))


class _Call:
    """One drawn call: its arguments, what to expect, and the arrays to watch."""

    def __init__(self, c):
        rng = np.random.default_rng(c["seed"])
        self.c, self.func = c, c["func"]
        shape, axes = c["shape"], c["axes"]
        norm_shape = tuple(shape[a] for a in axes)
        values = c["offset"] + 3 * rng.standard_normal(shape)
        x = _layout(values, c["layouts"]["x"], c["dtype"], rng)
        self.backward = self.func in BACKWARD
        self.centered = self.func in ("layer_norm", "add_layer_norm", "moments", "LayerNorm",
                                      "layer_norm_backward")
        self.residual = self.func.startswith("add_")
        other = None
        if self.residual or self.backward:  # residual, or dy
            other = _layout(rng.standard_normal(shape), c["layouts"]["other"],
                            c["other_dtype"] or c["dtype"], rng)
        gr = None
        if self.backward and c["grad_residual"]:
            gr = rng.standard_normal(shape).astype(c["other_dtype"] or c["dtype"])
        dtype = _result_dtype(self.backward, c["dtype"],
                              None if other is None else other.dtype,
                              None if gr is None else gr.dtype)
        has_params = self.func not in ("moments",) and self.func not in MODULES
        weight = bias = None
        if has_params and c["weight"]:
            weight = _layout(1 + rng.standard_normal(norm_shape), c["layouts"]["weight"],
                             np.float64, rng)
        if has_params and c["bias"] and self.centered and not self.backward:
            bias = _layout(rng.standard_normal(norm_shape), c["layouts"]["bias"],
                           np.float32, rng)
        self.x, self.other, self.gr, self.weight, self.bias = x, other, gr, weight, bias
        self.dtype, self.norm_shape = dtype, norm_shape
        self.kwargs = {"axis": c["axis"], "eps": c["eps"]}
        if self.func == "moments":
            self.kwargs = {"axis": c["axis"]}
        if self.func in MODULES:
            self.kwargs = {}
        self.mean = self.rstd = self.residual_out = None
        if self.backward and c["stats"]:
            plain = _plain(x)
            if self.centered:
                _, self.mean, self.rstd = ref.layer_norm(plain, _plain(weight), axis=axes,
                                                         eps=float(c["eps"]))
            else:
                _, self.rstd = ref.rms_norm(plain, _plain(weight), axis=axes,
                                            eps=float(c["eps"]))
            self.mean = None if self.mean is None else self.mean.astype(dtype)
            self.rstd = self.rstd.astype(dtype)
        self.out = self._out(c["out"], rng)

    def _out(self, mode, rng):
        if self.func == "moments" or mode == "none":
            return None
        shape = self.c["shape"]
        if mode == "fresh":
            return np.full(shape, np.nan, self.dtype)
        if mode == "fortran":
            return np.asfortranarray(np.full(shape, np.nan, self.dtype))
        if mode == "matrix" and len(shape) == 2:
            return np.asmatrix(np.full(shape, np.nan, self.dtype))
        if mode == "stream" and self.residual:  # residual_out=residual, when it can be
            r = self.other
            if (type(r) is np.ndarray and r.dtype == self.dtype and r.flags.writeable
                    and 0 not in r.strides):
                self.residual_out = r
            return None
        if mode == "in-place":  # the promised forms: out=x, out=dy
            target = self.other if self.backward else self.x
            if (type(target) is np.ndarray and target.dtype == self.dtype
                    and target.flags.writeable and 0 not in target.strides):
                return target
            return None
        if mode == "over-weight" and self.weight is not None and self.weight.size <= np.prod(
                shape):
            # weight lives in out's memory: it must be read before out is written
            out = np.zeros(shape, self.dtype)
            flat = out.reshape(-1)[: self.weight.size]
            flat[...] = np.asarray(self.weight).reshape(-1)
            self.weight = flat.reshape(self.norm_shape)
            return out
        return None

    def spoil(self, bad):
        """Make argument `name` bad; returns the name the error must carry, or None when
        this bad value does not apply to the call."""
        name, what = bad
        shape = self.c["shape"]
        if name == "normalized_shape":
            if self.func not in MODULES:
                return None
            self.normalized_shape = what
            return name
        if self.func in MODULES and name not in ("x", "out"):
            return None
        if name == "eps":
            if self.func == "moments":
                return None
            self.kwargs["eps"] = what
        elif name == "axis":
            self.kwargs["axis"] = what
        elif name == "weight":
            if self.func == "moments":
                return None
            self.weight = (np.ones(self.norm_shape + (2,)) if what == "shape"
                           else np.ones(self.norm_shape, complex))
        elif name == "x":
            self.x = what
        elif name == "out":
            if self.func == "moments":
                return None
            if what == "shape":
                self.out = np.zeros(shape + (1,), self.dtype)
            elif what == "dtype":
                self.out = np.zeros(shape, np.float16)
            elif what == "readonly":
                self.out = np.zeros(shape, self.dtype)
                self.out.flags.writeable = False
            elif np.prod(shape) > 1:
                self.out = np.lib.stride_tricks.as_strided(
                    np.zeros(1, self.dtype), shape, (0,) * len(shape), writeable=True)
            else:
                return None
        elif name == "residual" and self.residual:
            self.other = np.ones(shape + (2,))
        elif name == "dy" and self.backward:
            self.other = np.ones(shape + (2,))
        elif name == "mean" and self.func == "layer_norm_backward":
            self.mean, self.rstd = np.zeros(1), None
            return "rstd"  # "mean was given without rstd"
        elif name == "param_grads" and self.backward:
            self.kwargs["param_grads"] = what
        else:
            return None
        return name

    def watched(self):
        """Every array argument, for the unchanged-after-a-refusal check."""
        arrays = [self.x, self.other, self.gr, self.weight, self.bias, self.mean, self.rstd,
                  self.out, self.residual_out]
        return [a for a in arrays if isinstance(a, np.ndarray)]

    def invoke(self):
        f = getattr(numba_ln, self.func)
        kw = dict(self.kwargs)
        if self.func in MODULES:
            module = f(getattr(self, "normalized_shape", self.norm_shape),
                       dtype=self.dtype if self.dtype != np.int16 else np.float64)
            return module(self.x, out=self.out)
        if self.func == "moments":
            return f(self.x, **kw)
        if self.out is not None:
            kw["out"] = self.out
        if self.residual_out is not None:
            kw["residual_out"] = self.residual_out
        if self.backward:
            if self.func == "layer_norm_backward":
                kw["mean"] = self.mean
            return f(self.other, self.x, self.weight, rstd=self.rstd,
                     grad_residual=self.gr, **kw)
        if self.residual:
            if self.centered:
                return f(self.x, self.other, self.weight, self.bias, **kw)
            return f(self.x, self.other, self.weight, **kw)
        if self.centered:
            return f(self.x, self.weight, self.bias, **kw)
        return f(self.x, self.weight, **kw)

    def check(self, got, x, other, weight, bias):
        """Compare with the oracle; x, other, weight, bias as they were before the call."""
        axes, eps = self.c["axes"], float(self.kwargs.get("eps", 1e-5))
        if self.func in MODULES:
            eps = 1e-5 if self.func == "LayerNorm" else 1e-6
        if self.func == "moments":
            mean, var = got
            want_mean, want_var = ref.moments(x, axis=axes)
            assert_close(mean, want_mean, dtype=self.dtype, scale=1e3)
            assert_close(var, want_var, dtype=self.dtype, scale=max(1.0, np.abs(want_var).max()))
            return
        if self.backward:
            stats = {"rstd": _plain(self.rstd)}
            if self.centered:
                stats["mean"] = _plain(self.mean)
                want = ref.layer_norm_backward(other, x, weight, axis=axes, eps=eps,
                                               grad_residual=_plain(self.gr), **stats)
            else:
                want = ref.rms_norm_backward(other, x, weight, axis=axes, eps=eps,
                                             grad_residual=_plain(self.gr), **stats)
            got = got[:len(want)]
            rstd = self.rstd if self.rstd is not None else 1 / np.sqrt(eps)
            scale = 10 * (1 + np.abs(x).max()) * np.max(np.abs(_plain(rstd))) * (
                1 + (0 if weight is None else np.abs(weight).max()))
            if self.dtype == np.float64:
                scale *= 1e3  # float64 results: the oracle's own rounding, magnified
            for g, e in zip(got, want):
                assert_close(g, e, dtype=self.dtype, scale=scale)
            return
        y = got[0] if isinstance(got, tuple) else got
        s = x
        if self.residual:
            s = x + other
            assert np.array_equal(got[1], s.astype(self.dtype))
            s = _plain(got[1])  # y normalizes the rounded sum
        if self.centered:
            want, _, rstd = ref.layer_norm(s, weight, bias, axis=axes, eps=eps)
        else:
            want, rstd = ref.rms_norm(s, weight, axis=axes, eps=eps)
        scale = 4 * (1 + (0 if weight is None else np.abs(weight).max())) + (
            0 if bias is None else np.abs(bias).max())
        if self.dtype == np.float64:
            scale *= max(1.0, float(np.abs(s).max() * np.nanmax(rstd)))
        assert_close(y, want, dtype=self.dtype, scale=scale)


@settings(max_examples=80, deadline=None)  # each new type combination compiles (CI time)
@given(calls())
@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")  # (a bad weight)
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # (the oracle at eps=0)
def test_fuzz_public_functions(c):
    call = _Call(c)
    name = call.spoil(c["bad"]) if c["bad"] is not None else None
    before = [np.array(a, copy=True) for a in call.watched()]
    snapshot = (_plain(call.x) if isinstance(call.x, np.ndarray) else None,  # (complex: bad)
                _plain(call.other), _plain(call.weight), _plain(call.bias))
    try:
        got = call.invoke()
    except (TypeError, ValueError) as exc:
        event(f"{c['func']} refused: {name}")
        assert name is not None, f"valid call refused: {exc!r}"
        assert name in str(exc), f"{exc!r} does not name {name}"
        for a, b in zip(call.watched(), before):
            assert np.array_equal(np.asarray(a), b, equal_nan=True), "a refused call wrote"
        return
    assert name is None, f"{name} was bad but the call ran"
    event(f"{c['func']} ran, out={c['out']}")
    if call.out is not None:
        head = got[0] if isinstance(got, tuple) else got
        assert head is call.out
    if call.residual_out is not None:
        assert got[1] is call.residual_out
    call.check(got, *snapshot)
