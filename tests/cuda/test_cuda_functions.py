"""The GPU functions against the float64 oracle, through ``numba_ln``'s public functions:
every function, every kernel path (narrow / wide / streamed rows, vector and scalar I/O),
odd row counts, strided and non-trailing layouts, out=, stats, dtypes, edge values."""
import sys

import numpy as np
import pytest
from cuda_helpers import PATH_COLS, SIMULATOR, assert_close, dev, strided, to_host

import numba_ln
from numba_ln import reference as ref

PATHS = [(path, vec) for path in PATH_COLS for vec in (True, False)]
PATH_IDS = [f"{path}-{'vec' if vec else 'scalar'}" for path, vec in PATHS]


def _cols(path, vec):
    return PATH_COLS[path][0 if vec else 1]


def _data(rng, shape, offset=0.0, dtype=np.float32):
    return (offset + rng.standard_normal(shape)).astype(dtype)


def test_each_path_is_reached():
    """The shapes below really reach the kernel paths they are named after."""
    from numba_ln.cuda import _config
    from numba_ln.cuda._front import _shape_kernel

    f32 = np.dtype(np.float32)
    for (path, vec) in PATHS:
        held, threads, groups, _, _ = _shape_kernel(5, _cols(path, vec), 4 if vec else 1, f32)
        assert held == (path != "stream"), path
        assert (threads == _config.NARROW_THREADS and groups > 1) == (path == "narrow"), path


def test_results_are_device_arrays_and_inputs_untouched(rng):
    x = _data(rng, (5, 8))
    xd, wd = dev(x), dev(np.ones(8, np.float32))
    y = numba_ln.layer_norm(xd, wd)
    assert not isinstance(y, np.ndarray) and hasattr(y, "copy_to_host")
    assert np.array_equal(to_host(xd), x)


@pytest.mark.parametrize("path,vec", PATHS, ids=PATH_IDS)
def test_layer_norm(rng, path, vec):
    cols = _cols(path, vec)
    x = _data(rng, (5, cols), offset=1e3)
    w, b = _data(rng, cols), _data(rng, cols)
    y, mean, rstd = numba_ln.layer_norm(dev(x), w, b, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w, b)
    assert_close(y, y_ref, scale=4)
    assert_close(mean, mean_ref, scale=1e3)
    assert_close(rstd, rstd_ref, scale=1e-6)
    assert_close(numba_ln.layer_norm(dev(x)), ref.layer_norm(x)[0])


@pytest.mark.parametrize("path,vec", PATHS, ids=PATH_IDS)
def test_rms_norm(rng, path, vec):
    cols = _cols(path, vec)
    x, w = _data(rng, (3, cols), offset=0.5), _data(rng, cols)
    y, rstd = numba_ln.rms_norm(dev(x), dev(w), return_stats=True)
    y_ref, rstd_ref = ref.rms_norm(x, w)
    assert_close(y, y_ref, scale=4)
    assert_close(rstd, rstd_ref)


@pytest.mark.parametrize("path,vec", PATHS, ids=PATH_IDS)
def test_add_layer_norm(rng, path, vec):
    cols = _cols(path, vec)
    x, r = _data(rng, (7, cols), offset=1e3), _data(rng, (7, cols))
    w, b = _data(rng, cols), _data(rng, cols)
    y, s, mean, rstd = numba_ln.add_layer_norm(dev(x), dev(r), dev(w), b, return_stats=True)
    s_ref = x + r  # float32 sum, as the kernel forms it
    y_ref, mean_ref, rstd_ref = ref.layer_norm(s_ref, w, b)
    assert np.array_equal(to_host(s), s_ref)
    assert_close(y, y_ref, scale=4)
    assert_close(mean, mean_ref, scale=1e3)
    assert_close(rstd, rstd_ref)


@pytest.mark.parametrize("path,vec", PATHS, ids=PATH_IDS)
def test_add_rms_norm(rng, path, vec):
    cols = _cols(path, vec)
    x, r, w = _data(rng, (3, cols)), _data(rng, (3, cols)), _data(rng, cols)
    y, s, rstd = numba_ln.add_rms_norm(dev(x), r, w, return_stats=True)  # host residual
    y_ref, rstd_ref = ref.rms_norm(x + r, w)
    assert np.array_equal(to_host(s), x + r)
    assert_close(y, y_ref, scale=4)
    assert_close(rstd, rstd_ref)


@pytest.mark.parametrize("path,vec", PATHS, ids=PATH_IDS)
def test_moments(rng, path, vec):
    cols = _cols(path, vec)
    x = _data(rng, (3, 1, cols), offset=1e4)
    mean, var = numba_ln.moments(dev(x))
    mean_ref, var_ref = ref.moments(x)
    assert mean.shape == (3, 1) and var.shape == (3, 1)
    assert_close(mean, mean_ref, scale=1e4)
    assert_close(var, var_ref)
    mean, var = numba_ln.moments(dev(x), axis=(0, 2), keepdims=True)
    assert mean.shape == (1, 1, 1)
    assert_close(var, ref.moments(x, axis=(0, 2))[1].reshape(1, 1, 1))


def test_moments_of_a_vector_are_scalars(rng):
    x = _data(rng, 8)
    mean, var = numba_ln.moments(dev(x))
    assert mean.shape == () and var.shape == ()
    assert_close(to_host(var), np.var(x.astype(np.float64)))


def test_residual_broadcast_and_dtype_promotion(rng):
    x, r = _data(rng, (5, 8)), _data(rng, 8, dtype=np.float64)
    y, s = numba_ln.add_layer_norm(dev(x), dev(r))
    s_ref = x.astype(np.float64) + r
    assert to_host(s).dtype == np.float64
    assert_close(s, s_ref)
    assert_close(y, ref.layer_norm(s_ref)[0])


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.bool_])
def test_float64_and_integer_inputs_give_float64(rng, dtype):
    x = (rng.standard_normal((5, 8)) * 4).astype(dtype)
    y, mean, rstd = numba_ln.layer_norm(dev(x), return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x)
    assert_close(y, y_ref, dtype=np.float64, scale=4)
    assert_close(mean, mean_ref, dtype=np.float64)
    assert_close(rstd, rstd_ref, dtype=np.float64)


@pytest.mark.parametrize("path", ["narrow", "stream"])
def test_float16_in_float16_out_stats_float32(rng, path):
    cols = PATH_COLS[path][0]
    x = _data(rng, (3, cols), offset=2.0, dtype=np.float16)
    w = _data(rng, cols)
    y, mean, rstd = numba_ln.layer_norm(dev(x), w, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w)
    assert_close(y, y_ref, dtype=np.float16, scale=4)
    assert_close(mean, mean_ref, dtype=np.float32)
    assert_close(rstd, rstd_ref, dtype=np.float32)
    y, s = numba_ln.add_rms_norm(dev(x), dev(x), dev(w.astype(np.float16)))
    s_ref = x + x
    assert np.array_equal(to_host(s), s_ref)
    assert_close(y, ref.rms_norm(s_ref, w.astype(np.float16))[0], dtype=np.float16, scale=4)
    mean, var = numba_ln.moments(dev(x))
    assert_close(var, ref.moments(x)[1], dtype=np.float32)


LAYOUTS = {
    "rows-step-2": (lambda a: a[::2], -1),
    "rows-reversed": (lambda a: a[::-1], -1),
    "cols-sliced": (lambda a: a[:, 4:-4], -1),
    "cols-reversed": (lambda a: a[:, ::-1], -1),
    "transposed": (lambda a: a.T, -1),
    "axis-0": (lambda a: a, 0),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_strided_inputs_and_other_axes(rng, layout):
    make_view, axis = LAYOUTS[layout]
    host = _data(rng, (9, 16), offset=10.0)
    xd = strided(host, make_view)
    x = make_view(host)
    norm = x.shape[axis]
    w, b = _data(rng, norm), _data(rng, norm)
    y, mean, rstd = numba_ln.layer_norm(xd, w, b, axis=axis, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w, b, axis=axis)
    assert_close(y, y_ref, scale=4)
    assert_close(mean, mean_ref, scale=10)
    assert_close(rstd, rstd_ref)
    assert np.array_equal(to_host(xd), x)


@pytest.mark.parametrize("axis", [(1, 2), (0, 2), 1, (0, 1, 2)])
def test_axes_of_a_3d_array(rng, axis):
    x = _data(rng, (3, 4, 6), offset=5.0)
    norm_shape = tuple(x.shape[a] for a in np.atleast_1d(axis))
    w = _data(rng, norm_shape)
    y, s = numba_ln.add_layer_norm(dev(x), dev(x), dev(w), axis=axis)
    assert_close(s, x + x)
    assert_close(y, ref.layer_norm(x + x, w, axis=axis)[0], scale=4)
    mean, var = numba_ln.moments(dev(x), axis=axis)
    assert_close(var, ref.moments(x, axis=axis)[1])


def test_broadcast_weight_on_device(rng):
    x = _data(rng, (4, 3, 8))
    w = _data(rng, (1, 8))  # broadcasts to the normalized shape (3, 8)
    y = numba_ln.layer_norm(dev(x), dev(w), axis=(1, 2))
    assert_close(y, ref.layer_norm(x, np.broadcast_to(w, (3, 8)), axis=(1, 2))[0], scale=4)


def test_out_in_place_and_strided_out(rng):
    x = _data(rng, (5, 8), offset=3.0)
    xd = dev(x)
    y = numba_ln.layer_norm(xd, out=xd)
    assert y is xd
    assert_close(xd, ref.layer_norm(x)[0])
    # out with a row view (every other row of a bigger array) and without one (transposed)
    big = dev(np.zeros((10, 8), np.float32))
    out = big[::2]
    assert numba_ln.layer_norm(dev(x), out=out) is out
    assert_close(to_host(big)[::2], ref.layer_norm(x)[0])
    assert not to_host(big)[1::2].any()
    t = strided(np.zeros((8, 5), np.float32), lambda a: a.T)
    numba_ln.rms_norm(dev(x), out=t)
    assert_close(t, ref.rms_norm(x)[0])


def test_residual_stream_updated_in_place(rng):
    x, r = _data(rng, (5, 8)), _data(rng, (5, 8))
    xd, rd = dev(x), dev(r)
    y, s = numba_ln.add_rms_norm(xd, rd, out=xd, residual_out=rd)
    assert y is xd and s is rd
    assert np.array_equal(to_host(rd), x + r)
    assert_close(xd, ref.rms_norm(x + r)[0])


def test_overlapping_out_reads_the_input_first(rng):
    x = _data(rng, (6, 8))
    xd = dev(x)
    out = xd[::-1]  # the same memory, rows in the other order
    numba_ln.layer_norm(xd, out=out)
    assert_close(to_host(xd)[::-1], ref.layer_norm(x)[0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's NumPy scalars: 1/0
def test_constant_rows_give_exactly_zero_plus_bias(rng):
    x = np.full((3, 8), 1e5, np.float32)
    x[1] = -3.25
    x[2] = 0.0
    b = _data(rng, 8)
    y, mean, rstd = numba_ln.layer_norm(dev(x), None, b, return_stats=True)
    assert np.array_equal(to_host(y), np.broadcast_to(b, x.shape))
    assert np.array_equal(to_host(mean).ravel(), x[:, 0])
    # eps=0: rstd inf and y NaN (0 x inf), as on the CPU (it gave b) and in torch
    y, mean, rstd = numba_ln.layer_norm(dev(x), None, b, eps=0.0, return_stats=True)
    assert np.isinf(to_host(rstd)).all() and np.isnan(to_host(y)).all()
    assert np.array_equal(to_host(mean).ravel(), x[:, 0])
    cpu = numba_ln.layer_norm(x, None, b, eps=0.0)
    assert np.isnan(cpu).all()
    y = numba_ln.rms_norm(dev(x[2:]), eps=0.0)
    assert np.isnan(to_host(y)).all() and np.isnan(numba_ln.rms_norm(x[2:], eps=0.0)).all()
    # a positive eps below float32's range (it rounded to 0: rstd inf, y NaN): still 0 + b
    y, mean, rstd = numba_ln.layer_norm(dev(x), None, b, eps=1e-50, return_stats=True)
    assert np.array_equal(to_host(y), np.broadcast_to(b, x.shape))
    assert np.isfinite(to_host(rstd)).all()
    assert not np.isnan(to_host(numba_ln.rms_norm(dev(x[2:]), eps=1e-50))).any()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's NumPy scalars: inf - inf
@pytest.mark.parametrize("path", ["narrow", "stream"])
def test_nan_and_inf_poison_only_their_row(rng, path):
    cols = PATH_COLS[path][0]
    x = _data(rng, (4, cols))
    x[1, 3] = np.nan
    x[2, 0] = np.inf
    x[3, -1] = -np.inf
    y = to_host(numba_ln.layer_norm(dev(x)))
    assert np.isnan(y[1:]).all()
    assert_close(y[:1], ref.layer_norm(x[:1])[0])
    y, s = numba_ln.add_rms_norm(dev(x), dev(np.zeros_like(x)))
    y = to_host(y)
    assert np.isnan(y[1]).all() and np.isfinite(y[0]).all()
    # RMSNorm of a row holding +-inf and no NaN: NaN at the inf, 0 elsewhere (rstd 0), as
    # on the CPU (the streamed kernel's compensated sum made the whole row NaN); the mean
    # of such a row is NumPy's, +-inf
    y, rstd = numba_ln.rms_norm(dev(x), return_stats=True)
    want, want_rstd = numba_ln.rms_norm(x, return_stats=True)
    np.testing.assert_array_equal(to_host(y)[1:], want[1:])
    np.testing.assert_array_equal(to_host(rstd)[1:], want_rstd[1:])
    mean = to_host(numba_ln.moments(dev(x))[0])
    assert np.isnan(mean[1]) and mean[2] == np.inf and mean[3] == -np.inf
    # a finite row whose float32 sum of squares overflows (the GPU's float32 limit,
    # docs/gpu.md): rstd 0 and y 0 on every kernel, as the held ones give (the streamed
    # kernel's compensation went inf, then NaN)
    big = np.full((2, x.shape[1]), 1e19, np.float32)
    y, rstd = numba_ln.rms_norm(dev(big), return_stats=True)
    assert not to_host(y).any() and not to_host(rstd).any()


def test_empty_batch():
    x = dev(np.zeros((0, 8), np.float32))
    y, mean, rstd = numba_ln.layer_norm(x, return_stats=True)
    assert y.shape == (0, 8) and mean.shape == (0, 1)
    y, s = numba_ln.add_layer_norm(x, x)
    assert s.shape == (0, 8)


def test_cupy_and_torch_are_never_imported():
    before = {m for m in ("cupy", "torch") if m in sys.modules}
    x = dev(np.arange(16, dtype=np.float32).reshape(2, 8))
    numba_ln.add_layer_norm(x, x)
    numba_ln.moments(x)
    assert {m for m in ("cupy", "torch") if m in sys.modules} == before


@pytest.mark.skipif(not SIMULATOR, reason="the simulator's arrays only")
def test_simulator_arrays_have_no_array_interface():
    x = dev(np.ones((2, 8), np.float32))
    assert not hasattr(x, "__cuda_array_interface__")
    assert np.allclose(to_host(numba_ln.layer_norm(x)), 0)
