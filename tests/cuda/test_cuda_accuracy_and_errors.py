"""float32 accuracy far from zero (held and streamed rows), and bad arguments: the CPU's
errors, nothing written."""
import numpy as np
import pytest
from cuda_helpers import PATH_COLS, SIMULATOR, assert_close, dev, to_host

import numba_ln
from numba_ln import reference as ref


@pytest.mark.parametrize("offset", [1e3, 1e4, 1e5])
@pytest.mark.parametrize("path", ["narrow", "wide", "stream"])
def test_float32_within_2e6_of_the_oracle_far_from_zero(rng, path, offset):
    cols = PATH_COLS[path][0]
    x = (offset + rng.standard_normal((5, cols))).astype(np.float32)
    w, b = rng.standard_normal(cols), rng.standard_normal(cols)
    y, mean, rstd = numba_ln.layer_norm(dev(x), w, b, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w, b)
    assert_close(y, y_ref, scale=4)  # 2e-6 * max(4, |y|): |w*z + b| reaches ~4
    assert_close(numba_ln.layer_norm(dev(x)), ref.layer_norm(x)[0])  # 2e-6 * max(1, |y|)
    assert_close(mean, mean_ref, scale=offset)  # float32 rounding of the mean itself
    assert np.all(np.abs(to_host(rstd) / rstd_ref - 1) < 2e-6)
    mean, var = numba_ln.moments(dev(x))
    assert np.all(np.abs(to_host(var) / ref.moments(x)[1] - 1) < 2e-6)


@pytest.mark.parametrize("path", ["narrow", "wide", "stream"])
def test_an_outlier_first_in_the_row(rng, path):
    """The shift is the row's first element: far from the mean, x - shift was rounded to its
    precision for every element, and y was wrong by ~1e-3 of itself (4e-6 absolute at
    (1, 4096) on the simulator; the CPU's is right to 5e-9).  Now within the CPU's bound,
    for the fused form and moments too."""
    cols = PATH_COLS[path][0]
    x = (0.01 * rng.standard_normal((3, cols))).astype(np.float32)
    x[:, 0] = [1e4, -3e3, 7e2]
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x)
    y, mean, rstd = numba_ln.layer_norm(dev(x), return_stats=True)
    assert_close(y, y_ref, atol=2e-7)  # 2e-7 * max(1, |y|), where |y| ~ 0.02-0.1
    assert_close(mean, mean_ref, atol=2e-7)
    assert np.all(np.abs(to_host(rstd) / rstd_ref - 1) < 2e-6)
    r = (0.001 * rng.standard_normal((3, cols))).astype(np.float32)
    y, s = numba_ln.add_layer_norm(dev(x), dev(r))
    assert_close(y, ref.layer_norm(to_host(s))[0], atol=2e-7)
    mean, var = numba_ln.moments(dev(x))
    assert_close(mean, ref.moments(x)[0], atol=2e-7)
    assert np.all(np.abs(to_host(var) / ref.moments(x)[1] - 1) < 2e-6)


@pytest.mark.parametrize("offset", [1e4, 1e5])
def test_residual_add_far_from_zero(rng, offset):
    x = (offset + rng.standard_normal((3, 48))).astype(np.float32)
    r = rng.standard_normal((3, 48)).astype(np.float32)
    y, s = numba_ln.add_layer_norm(dev(x), dev(r))
    assert_close(y, ref.layer_norm(x + r)[0])


X = np.arange(24, dtype=np.float32).reshape(4, 6)


def _bad_cases():
    d = dev
    return [
        (dict(axis=2), ValueError, "axis"),
        (dict(axis=(0, 0)), ValueError, "axis"),
        (dict(axis=1.0), TypeError, "axis"),
        (dict(axis=()), ValueError, "axis"),
        (dict(weight=np.ones(5)), ValueError, "weight"),
        (dict(weight=d(np.ones(5, np.float32))), ValueError, "weight"),
        (dict(bias=np.ones((2, 6))), ValueError, "bias"),
        (dict(weight=np.ones(6, complex)), TypeError, "weight"),
        (dict(out=np.empty((4, 6), np.float32)), TypeError, "out"),
        (dict(out=d(np.empty((4, 5), np.float32))), ValueError, "out"),
        (dict(out=d(np.empty((4, 6), np.float64))), TypeError, "out"),
        (dict(eps=-1e-5), ValueError, "eps"),
        (dict(eps=float("nan")), ValueError, "eps"),
        (dict(eps="1e-5"), TypeError, "eps"),
        (dict(x=d(X.astype(np.complex64))), TypeError, "x"),
        (dict(x=d(np.zeros((4, 0), np.float32))), ValueError, "normalized shape"),
        (dict(x=d(np.float32(3.0).reshape(()))), ValueError, "axis"),
        # (the kernels load native numbers: a GPU read a byte-swapped array as garbage)
        (dict(x=d(X.astype(">f4"))), TypeError, "x is a GPU array of non-native byte order"),
        (dict(weight=d(np.ones(6, ">f4"))), TypeError, "weight is a GPU array of non-native"),
    ]


def test_bad_input_raises_and_writes_nothing():
    for kwargs, error, name in _bad_cases():
        label = {k: getattr(v, "shape", v) for k, v in kwargs.items()}
        kwargs = dict(kwargs)
        x = kwargs.pop("x", dev(X))
        before = to_host(x)
        out = kwargs.get("out")
        out_before = to_host(out) if out is not None and not isinstance(out, np.ndarray) else None
        with pytest.raises(error, match=name):
            numba_ln.layer_norm(x, **kwargs)
            pytest.fail(f"no {error.__name__} for {label}")
        assert np.array_equal(to_host(x), before)
        if out_before is not None:
            assert np.array_equal(to_host(out), out_before, equal_nan=True)


def test_byte_swapped_host_arrays_are_copied_native():
    """Host residual, weight and bias of another byte order are copied to the device as
    native numbers (the residual's copy kept its byte order, which a GPU's kernels misread;
    the simulator's NumPy loads read it right, so the copy's dtype is what is checked)."""
    from numba_ln.cuda import _arrays

    assert _arrays.to_device(np.ones(3, ">f4"), None)[1].dtype.isnative
    r = X[::-1].astype(">f4")
    y, s = numba_ln.add_layer_norm(dev(X), r, np.full(6, 2.0, ">f8"), np.ones(6, ">f4"))
    assert_close(y, ref.layer_norm(X + X[::-1], np.full(6, 2.0), np.ones(6))[0])
    assert np.array_equal(to_host(s), X + X[::-1])


def _misaligned(fill):
    """A float32 (4, 6) host array one byte into its buffer, rows 25 bytes apart (NumPy
    and __cuda_array_interface__ allow both)."""
    a = np.ndarray((4, 6), np.float32, buffer=np.zeros(4 * 25 + 8, np.uint8), offset=1,
                   strides=(25, 4))
    a[...] = fill
    return a


@pytest.mark.skipif(not SIMULATOR, reason="a misaligned device array: the simulator's")
def test_misaligned_gpu_arrays_are_refused_before_any_write():
    """A GPU out whose strides are not whole elements was refused only after the launch,
    in words naming nothing, with residual_out already written (a GPU's aligned loads
    would fault on such arrays): now a ValueError naming it, before anything runs."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    residual_out = dev(np.full((4, 6), 7.0, np.float32))
    out = FakeCUDAArray(_misaligned(7.0))
    with pytest.raises(ValueError, match="out is a GPU array whose data pointer or strides"):
        numba_ln.add_layer_norm(dev(X), dev(X), out=out, residual_out=residual_out)
    assert np.all(to_host(residual_out) == 7.0) and np.all(out._ary == 7.0)
    with pytest.raises(ValueError, match="x is a GPU array whose data pointer"):
        numba_ln.layer_norm(FakeCUDAArray(_misaligned(X)))


def test_residual_errors():
    x = dev(X)
    with pytest.raises(ValueError, match="residual"):
        numba_ln.add_layer_norm(x, dev(np.ones((4, 5), np.float32)))
    with pytest.raises(TypeError, match="residual_out"):
        numba_ln.add_rms_norm(x, x, residual_out=np.empty((4, 6), np.float32))
    both = dev(np.zeros((4, 6), np.float32))
    with pytest.raises(ValueError, match="overlap"):
        numba_ln.add_layer_norm(x, x, out=both, residual_out=both)
    assert not to_host(both).any()


@pytest.mark.parametrize("func", [numba_ln.moments, numba_ln.rms_norm])
def test_other_functions_check_axis_and_dtype(func):
    with pytest.raises(ValueError, match="axis"):
        func(dev(X), axis=5)
    with pytest.raises(TypeError, match="x"):
        func(dev(X.astype(np.complex128)))
    # (bytes and text of odd item sizes: the alignment check said "copy it into an aligned
    # array", which cannot help, before the dtype check could speak)
    for dtype in ("S10", "U3", "S6"):
        with pytest.raises(TypeError, match="x has dtype"):
            func(dev(np.zeros((2, 3), dtype)))


@pytest.mark.skipif(not SIMULATOR, reason="simulator only: other arrays cannot reach it")
def test_simulator_rejects_foreign_out():
    class NotOurs:
        __cuda_array_interface__ = {}

    with pytest.raises(TypeError, match="out"):
        numba_ln.layer_norm(dev(X), out=NotOurs())


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_backward_refuses_gpu_arrays(dtype):
    """The backward functions take NumPy arrays only: a GPU dy, x, grad_residual, weight or
    statistic is a TypeError naming it, beside 16-bit NumPy data too (their route converted
    the inputs first, copying a device array to the host; a GPU weight or statistic was
    copied on every path until 2026-12-06)."""
    host, w = X.astype(dtype), np.ones(X.shape[1], np.float32)
    _, mean, rstd = numba_ln.layer_norm(X, return_stats=True)
    for kwargs, name in ((dict(dy=dev(host), x=host), "dy"), (dict(dy=host, x=dev(host)), "x"),
                         (dict(dy=host, x=host, grad_residual=dev(host)), "grad_residual"),
                         (dict(dy=host, x=host, weight=dev(w)), "weight"),
                         (dict(dy=host, x=host, rstd=dev(rstd)), "rstd")):
        with pytest.raises(TypeError, match=f"NumPy arrays only.*{name} is a GPU array"):
            numba_ln.layer_norm_backward(**kwargs)
        with pytest.raises(TypeError, match=f"{name} is a GPU array"):
            numba_ln.rms_norm_backward(**kwargs)
    with pytest.raises(TypeError, match="mean is a GPU array"):
        numba_ln.layer_norm_backward(host, host, mean=dev(mean), rstd=rstd)


@pytest.mark.skipif(not SIMULATOR, reason="simulator only: no bfloat16 GPU arrays otherwise")
def test_bfloat16_device_partners_are_refused():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    half = X.astype(ml_dtypes.bfloat16)
    for kwargs, name in ((dict(weight=dev(half[0])), "weight"), (dict(bias=dev(half[0])), "bias"),
                         (dict(residual=dev(half)), "residual")):
        function = numba_ln.add_layer_norm if name == "residual" else numba_ln.layer_norm
        with pytest.raises(TypeError, match=f"{name} has dtype bfloat16"):
            function(dev(X), **kwargs)


def test_bfloat16_host_residual_is_refused_in_either_byte_order():
    """A byte-swapped bfloat16 residual from the host was copied to the GPU as bfloat16
    (the check read its host dtype) and failed inside the kernel."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    for dtype in (bf16, bf16.newbyteorder(">")):
        with pytest.raises(TypeError, match="residual has dtype bfloat16"):
            numba_ln.add_layer_norm(dev(X), X[0].astype(dtype))


@pytest.mark.parametrize("setting", ["NARROW_THREADS", "STREAM_THREADS", "MAX_ROW_THREADS"])
def test_launch_settings_must_be_powers_of_two(monkeypatch, setting):
    """Another thread count lost partial sums in the row reduction (wrong by O(1))."""
    from numba_ln.cuda import _config

    monkeypatch.setattr(_config, setting, 48)
    with pytest.raises(ValueError, match=f"{setting} must be a power of two, got 48"):
        numba_ln.layer_norm(dev(X))


def test_eps_beyond_float32_is_inf_silently():
    """eps in float32 work: one beyond the range is inf (every rstd 0, as the CPU's tends
    to for ever larger eps), without NumPy's overflow warning from numba_ln's own cast."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, _, rstd = numba_ln.layer_norm(dev(X), eps=1e39, return_stats=True)
    assert np.all(to_host(rstd) == 0) and np.all(to_host(y) == 0)


@pytest.mark.parametrize("setting", [np.int64(16), 16])
def test_launch_settings_may_be_numpy_integers(monkeypatch, setting):
    from numba_ln.cuda import _config

    monkeypatch.setattr(_config, "MAX_ROW_THREADS", setting)
    assert_close(numba_ln.layer_norm(dev(X)), ref.layer_norm(X)[0])
