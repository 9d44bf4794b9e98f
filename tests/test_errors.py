"""Bad input: a ValueError/TypeError naming the argument, and nothing written."""
from fractions import Fraction

import numpy as np
import pytest

import numba_ln

X = np.arange(24, dtype=np.float32).reshape(4, 6)


BAD = [
    (dict(axis=2), ValueError, "axis"),
    (dict(axis=-3), ValueError, "axis"),
    (dict(axis=(0, 0)), ValueError, "axis"),
    (dict(axis=(1, -1)), ValueError, "axis"),
    (dict(axis=1.0), TypeError, "axis"),
    (dict(axis="0"), TypeError, "axis"),
    (dict(axis=True), TypeError, "axis"),
    (dict(axis=()), ValueError, "axis"),
    (dict(weight=np.ones(5)), ValueError, "weight"),
    (dict(bias=np.ones((2, 6))), ValueError, "bias"),
    (dict(weight=np.ones(6, complex)), TypeError, "weight"),
    (dict(weight=[[1, 2], [3]]), ValueError, "weight"),
    (dict(out=np.empty((4, 5), np.float32)), ValueError, "out"),
    (dict(out=np.empty((4, 6), np.float64)), TypeError, "out"),
    (dict(out=np.empty((4, 6), ">f4")), TypeError, "out"),
    (dict(out=[[0.0] * 6] * 4), TypeError, "out"),
    (dict(eps=-1e-5), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(eps=float("inf")), ValueError, "eps"),
    (dict(eps="1e-5"), TypeError, "eps"),
    (dict(eps=None), TypeError, "eps"),
    (dict(eps=10**400), ValueError, "eps"),  # (an int past float's range)
    (dict(eps=np.array([1e-5])), TypeError, "eps"),
    (dict(x=X.astype(np.longdouble)), TypeError, "x"),  # (16-bit: tests/test_half.py)
    (dict(x=X.astype(np.complex64)), TypeError, "x"),
    (dict(x=np.array([["a", "b"]])), TypeError, "x"),
    (dict(x=np.array([[1.0, None]], dtype=object)), TypeError, "x"),
    (dict(x=[[1.0, 2.0], [3.0]]), ValueError, "x"),
    (dict(x=np.float32(3.0)), ValueError, "axis"),
    (dict(x=np.zeros((), np.float32)), ValueError, "axis"),
    (dict(return_stats="no"), TypeError, "return_stats"),  # (truthy: it read as True)
    (dict(return_stats=None), TypeError, "return_stats"),
    (dict(return_stats=2), TypeError, "return_stats"),
    (dict(return_stats=np.array([True])), TypeError, "return_stats"),
    (dict(return_stats="no", out=np.full((4, 6), 7.0, np.float32)), TypeError, "return_stats"),
]


@pytest.mark.parametrize("kwargs,error,name", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_raises_and_changes_nothing(kwargs, error, name):
    kwargs = dict(kwargs)
    x = kwargs.pop("x", X.copy())
    out = kwargs.get("out")
    x_before = np.array(x, copy=True, dtype=object) if not isinstance(x, np.ndarray) else x.copy()
    out_before = out.copy() if isinstance(out, np.ndarray) else None
    with pytest.raises(error, match=name):
        numba_ln.layer_norm(x, **kwargs)
    if isinstance(x, np.ndarray):
        assert np.array_equal(x, x_before, equal_nan=x.dtype.kind == "f")
    if out_before is not None:
        assert np.array_equal(out, out_before, equal_nan=True)


def test_read_only_out_is_rejected_and_untouched():
    out = np.zeros((4, 6), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        numba_ln.layer_norm(X, out=out)
    assert not out.any()


def test_bad_input_after_valid_out_leaves_out_untouched():
    out = np.full((4, 6), 7.0, np.float32)
    with pytest.raises(ValueError, match="weight"):
        numba_ln.layer_norm(X, np.ones(3), out=out)
    assert (out == 7.0).all()


_FLAG_CALLS = {
    "rms_norm": lambda x, v: numba_ln.rms_norm(x, return_stats=v),
    "add_layer_norm": lambda x, v: numba_ln.add_layer_norm(x, x, return_stats=v),
    "add_rms_norm": lambda x, v: numba_ln.add_rms_norm(x, x, return_stats=v),
    "LayerNorm": lambda x, v: numba_ln.LayerNorm(x.shape[-1])(x, return_stats=v),
    "moments": lambda x, v: numba_ln.moments(x, keepdims=v),
    # several axes that are rows in memory (_small_axes.py read a falsy flag as False)
    "layer_norm axes": lambda x, v: numba_ln.layer_norm(x.reshape(4, 2, 3), axis=(-2, -1),
                                                        return_stats=v),
    "rms_norm axes": lambda x, v: numba_ln.rms_norm(x, axis=(0, 1), return_stats=v),
    "LayerNorm axes": lambda x, v: numba_ln.LayerNorm((2, 3))(x.reshape(4, 2, 3),
                                                              return_stats=v),
}


@pytest.mark.parametrize("call", sorted(_FLAG_CALLS))
def test_flags_are_bools(call):
    """return_stats and keepdims take True/False (NumPy's bools, 0 and 1 too), and refuse
    anything else by name: truthiness read keepdims="no" as True."""
    x = X.copy()
    name = "keepdims" if call == "moments" else "return_stats"
    for value in ("no", None, 2, 1.5, [True], [], 0.0):
        with pytest.raises(TypeError, match=f"{name} must be True or False"):
            _FLAG_CALLS[call](x, value)
    for true, false in ((np.True_, np.False_), (1, 0)):
        with_flag, without = _FLAG_CALLS[call](x, true), _FLAG_CALLS[call](x, false)
        expected_with, expected_without = _FLAG_CALLS[call](x, True), _FLAG_CALLS[call](x, False)
        for got, expected in ((with_flag, expected_with), (without, expected_without)):
            got = got if isinstance(got, tuple) else (got,)
            expected = expected if isinstance(expected, tuple) else (expected,)
            assert [a.shape for a in got] == [a.shape for a in expected]
            assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert np.array_equal(x, X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_0d_arrays_are_an_axis_error_in_every_function(dtype):
    """A 0-d ndarray has no axis -1: the small-call gates index x.shape[-1] only after
    checking for one (moments and the backward raised IndexError)."""
    z = np.zeros((), dtype)
    calls = [numba_ln.layer_norm, numba_ln.rms_norm, numba_ln.moments,
             lambda a: numba_ln.moments(a, keepdims=True),
             lambda a: numba_ln.add_layer_norm(a, a), lambda a: numba_ln.add_rms_norm(a, a),
             lambda a: numba_ln.layer_norm_backward(a, a),
             lambda a: numba_ln.rms_norm_backward(a, a, param_grads=False)]
    for call in calls:
        with pytest.raises(ValueError, match="axis -1 is out of bounds"):
            call(z)


@pytest.mark.parametrize("func", [numba_ln.moments, numba_ln.rms_norm])
def test_other_functions_check_axis_and_dtype(func):
    with pytest.raises(ValueError, match="axis"):
        func(X, axis=5)
    with pytest.raises(TypeError, match="x"):
        func(X.astype(np.complex64))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_ndarray_subclasses_are_read_as_plain_arrays(tmp_path):
    """np.matrix reached compiled code and failed with a Numba TypingError; subclasses are
    read through a plain view, results are plain ndarrays, and out= keeps its type."""
    m = np.matrix([[1.0, 2.0, 3.0], [4.0, 4.0, 6.0]])
    expected = numba_ln.layer_norm(np.asarray(m))
    y = numba_ln.layer_norm(m, np.array([1.0, 2.0, 3.0]))
    assert type(y) is np.ndarray
    assert np.allclose(y, expected * [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="weight"):  # a (1, 3) matrix broadcasts as NumPy's
        numba_ln.layer_norm(m, np.matrix([1.0, 2.0, 3.0]))
    mean, var = numba_ln.moments(m)
    assert np.allclose(mean, [2.0, 14 / 3]) and type(mean) is np.ndarray
    out = np.memmap(tmp_path / "y.bin", dtype=np.float64, mode="w+", shape=(2, 3))
    assert numba_ln.layer_norm(m, out=out) is out
    assert np.array_equal(np.asarray(out), expected)
    ys = numba_ln.add_layer_norm(m, m)
    assert all(type(a) is np.ndarray for a in ys)


@pytest.mark.parametrize("where", ["x", "weight", "out", "residual"])
def test_masked_arrays_are_refused(where):
    masked = np.ma.masked_array(np.ones((4, 6)), mask=np.eye(4, 6, dtype=bool))
    x = X.astype(np.float64)
    before = x.copy()
    kwargs = {"weight": masked[0]} if where == "weight" else (
        {"out": masked} if where == "out" else {})
    with pytest.raises(TypeError, match=f"{where} is a masked array"):
        if where == "residual":
            numba_ln.add_layer_norm(x, masked)
        else:
            numba_ln.layer_norm(masked if where == "x" else x, **kwargs)
    assert np.array_equal(x, before) and masked.data.sum() == 24


def test_an_int_eps_past_floats_range_is_a_value_error_on_every_path():
    """The small-call gates turn an int eps into a float; one past float's range goes to
    the general path's ValueError naming eps (not float()'s OverflowError), before
    anything is written."""
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = np.full_like(x, 7.0)
    calls = [lambda e: numba_ln.layer_norm(x, eps=e, out=out),
             lambda e: numba_ln.rms_norm(x, axis=(-2, -1), eps=e, out=out),
             lambda e: numba_ln.add_layer_norm(x, x, eps=e, out=out),
             lambda e: numba_ln.layer_norm_backward(x, x, eps=e, out=out),
             lambda e: numba_ln.LayerNorm(4, eps=e)]
    for call in calls:
        with pytest.raises(ValueError, match="eps must be a finite number >= 0, got an int "
                                             "past float's range"):
            call(10**400)
    assert (out == 7.0).all()


def test_odd_scalars_name_their_argument():
    """An int residual past the dtype's range raised NumPy's OverflowError (as x + 10**400
    does), naming nothing; a timedelta64 eps (an np.signedinteger) was taken as its count
    of units, or raised float()'s TypeError."""
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = np.full_like(x, 7.0)
    for function in (numba_ln.add_layer_norm, numba_ln.add_rms_norm):
        with pytest.raises(ValueError, match="residual is an int past float64's range"):
            function(x, 10**400, out=out)
    for eps in (np.timedelta64(1, "ns"), np.timedelta64(1, "s"), np.array(1, "m8[h]")):
        with pytest.raises(TypeError, match="eps must be a real number, got timedelta64"):
            numba_ln.layer_norm(x, eps=eps, out=out)
        with pytest.raises(TypeError, match="eps must be a real number"):
            numba_ln.rms_norm(x, eps=eps)
    assert (out == 7.0).all()


def test_python_ints_past_int64_as_weight_or_bias_are_their_value(rng):
    """A weight or bias of 2**70 was "must be an array of real numbers, got int" (an object
    array), though smaller ints and a residual of 2**70 are taken, and NumPy's x * 2**70
    is float32: now the value in the work dtype; one past float's range names it."""
    x = rng.standard_normal((2, 8)).astype(np.float32)
    big = np.float32(2**70)
    assert np.array_equal(numba_ln.layer_norm(x, 2**70, -2**70),
                          numba_ln.layer_norm(x, np.full(8, big), np.full(8, -big)))
    assert np.array_equal(numba_ln.rms_norm(x, 2**64), numba_ln.rms_norm(x, np.float32(2**64)))
    got = numba_ln.layer_norm_backward(x, x, 2**70)
    want = numba_ln.layer_norm_backward(x, x, np.full(8, big))
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    for call in (lambda: numba_ln.layer_norm(x, 10**400), lambda: numba_ln.rms_norm(x, -10**400),
                 lambda: numba_ln.layer_norm_backward(x, x, 10**400)):
        with pytest.raises(ValueError, match="weight is an int past float64's range"):
            call()
    with pytest.raises(ValueError, match="bias is an int past float64's range"):
        numba_ln.layer_norm(x.astype(np.float64), None, 10**400)


def test_byte_swapped_bfloat16_and_float_views_with_fields_as_parameters(rng):
    """A big-endian bfloat16 residual, weight or bias was refused (as x it was taken);
    a float32 weight viewed with a field leaked llvmlite's error on the general path."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    x = rng.standard_normal((300, 1024)).astype(bf16)
    w = (1 + rng.standard_normal(1024)).astype(bf16)
    swapped = bf16.newbyteorder(">")
    assert np.array_equal(numba_ln.layer_norm(x, w.astype(swapped), w.astype(swapped)),
                          numba_ln.layer_norm(x, w, w))
    assert np.array_equal(numba_ln.add_layer_norm(x, x.astype(swapped))[0],
                          numba_ln.add_layer_norm(x, x)[0])
    field = np.dtype(("f4", [("x", "f4")]))
    x32 = x.astype(np.float32)
    with pytest.raises(TypeError, match="weight has dtype"):
        numba_ln.layer_norm(x32, w.astype(np.float32).view(field))
    with pytest.raises(TypeError, match="residual has dtype"):
        numba_ln.add_layer_norm(x32, x32.view(field))


def test_float_views_with_fields_are_refused_as_data_outputs_and_statistics(rng):
    """A float32 array viewed with a field compares equal to float32: the small calls took
    it as x (the general path refused it), and as out=, residual_out= or a given mean/rstd
    it reached the compiler (LLVM's "invalid vector element type")."""
    field = np.dtype(("f4", [("x", "f4")]))
    x = rng.standard_normal((2, 8)).astype(np.float32)
    _, mean, rstd = numba_ln.layer_norm(x, return_stats=True)
    calls = {
        "x": [lambda: numba_ln.layer_norm(x.view(field)),
              lambda: numba_ln.rms_norm(x.view(field)),
              lambda: numba_ln.add_layer_norm(x.view(field), x),
              lambda: numba_ln.moments(x.view(field)),
              lambda: numba_ln.LayerNorm(8)(x.view(field))],
        "out": [lambda: numba_ln.layer_norm(x, out=out),
                lambda: numba_ln.layer_norm(x, axis=0, out=out),
                lambda: numba_ln.layer_norm_backward(x, x, out=out),
                lambda: numba_ln.rms_norm_backward(x, x, out=out)],
        "residual_out": [lambda: numba_ln.add_layer_norm(x, x, residual_out=out)],
        "mean": [lambda: numba_ln.layer_norm_backward(x, x, mean=mean.view(field), rstd=rstd)],
        "rstd": [lambda: numba_ln.layer_norm_backward(x, x, mean=mean, rstd=rstd.view(field))],
    }
    for name, tries in calls.items():
        for call in tries:
            out = np.full(x.shape, 7.0, np.float32).view(field)
            with pytest.raises(TypeError, match=f"^{name} has dtype"):
                call()
            assert (out.view(np.float32) == 7.0).all()


def test_eps_of_any_real_scalar_type_is_its_value():
    """A bfloat16 scalar (a bfloat16 checkpoint's eps), a 0-d bfloat16 array and a Fraction
    are real numbers too (they were refused: "eps must be a real number, got bfloat16")."""
    import ml_dtypes

    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    half = ml_dtypes.bfloat16(0.5)
    for eps in (half, np.array(half), Fraction(1, 2), np.float16(0.5)):
        for func in (numba_ln.layer_norm, numba_ln.rms_norm):
            assert func(x, eps=eps).tobytes() == func(x, eps=0.5).tobytes()
        assert numba_ln.LayerNorm(6, eps=eps)(x).tobytes() == numba_ln.layer_norm(
            x, np.ones(6, np.float32), np.zeros(6, np.float32), eps=0.5).tobytes()
        got = numba_ln.layer_norm_backward(x, x, eps=eps)
        assert all(a.tobytes() == b.tobytes()
                   for a, b in zip(got, numba_ln.layer_norm_backward(x, x, eps=0.5)))
    for eps in (np.True_, np.complex64(0.5), "0.5"):
        with pytest.raises(TypeError, match="eps must be a real number"):
            numba_ln.layer_norm(x, eps=eps)


def test_module_flags_are_bools():
    """elementwise_affine and bias take True/False (NumPy's bools, 0 and 1 too): truthiness
    read LayerNorm(8, elementwise_affine="False") as an affine module."""
    for make in (lambda v: numba_ln.LayerNorm(8, elementwise_affine=v),
                 lambda v: numba_ln.LayerNorm(8, bias=v),
                 lambda v: numba_ln.RMSNorm(8, elementwise_affine=v)):
        for value in ("False", None, [], 2):
            with pytest.raises(TypeError, match="must be True or False"):
                make(value)
    plain = numba_ln.LayerNorm(8, elementwise_affine=np.False_, bias=0)
    assert plain.weight is None and plain.bias is None
    assert numba_ln.LayerNorm(8, bias=np.False_).bias is None
    assert numba_ln.RMSNorm(8, elementwise_affine=0).weight is None


def test_eps_as_a_0d_array_is_its_value():
    """A 0-d array (np.load of a saved scalar) is taken as the number it holds."""
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    for func in (numba_ln.layer_norm, numba_ln.rms_norm):
        assert func(x, eps=np.array(0.5)).tobytes() == func(x, eps=0.5).tobytes()
    got = numba_ln.layer_norm_backward(x, x, eps=np.array(0.5, np.float32))
    want = numba_ln.layer_norm_backward(x, x, eps=float(np.float32(0.5)))
    assert all(a.tobytes() == b.tobytes() for a, b in zip(got, want))
    norm = numba_ln.LayerNorm(6, eps=np.array(0.5))
    assert type(norm.eps) is np.float64 and norm.eps == 0.5  # (kept as its scalar)
    assert norm(x).tobytes() == numba_ln.layer_norm(x, np.ones(6, np.float32),
                                                    np.zeros(6, np.float32), eps=0.5).tobytes()
    with pytest.raises(TypeError, match="eps must be a real number"):
        numba_ln.layer_norm(x, eps=np.array(True))
