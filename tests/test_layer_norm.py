"""layer_norm against the float64 oracle: accuracy, axes, layouts, out=, stats, edge values."""
import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import reference as ref


@pytest.mark.parametrize("offset,scale", [(0.0, 1.0), (1e3, 1.0), (1e4, 1.0), (1e5, 1.0), (1e4, 1e-2)])
@pytest.mark.parametrize("shape", [(64, 1024), (3, 768), (2, 70000)])
def test_float32_accuracy_far_from_zero(rng, offset, scale, shape):
    x = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
    y, mean, rstd = numba_ln.layer_norm(x, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x)
    assert_close(y, y_ref)
    assert_close(mean, mean_ref, scale=abs(offset) + 1)  # relative to the mean's size
    assert np.all(np.abs(rstd / rstd_ref - 1) < 2e-6)


def test_float64_accuracy(rng):
    # Offset 3: at larger offsets the float64 oracle itself is no better than 1e-12.
    x = 3 + rng.standard_normal((50, 3000))
    w, b = rng.standard_normal(3000), rng.standard_normal(3000)
    y, mean, rstd = numba_ln.layer_norm(x, w, b, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w, b)
    assert_close(y, y_ref, scale=4)
    assert_close(mean, mean_ref)
    assert_close(rstd, rstd_ref)


def test_weight_and_bias(rng):
    x = rng.standard_normal((10, 32)).astype(np.float32)
    w, b = rng.standard_normal(32), rng.standard_normal(32)
    for weight, bias in [(w, b), (w, None), (None, b), (None, None)]:
        y = numba_ln.layer_norm(x, weight, bias)
        assert_close(y, ref.layer_norm(x, weight, bias)[0], scale=4)


def test_broadcast_parameters(rng):
    x = rng.standard_normal((4, 3, 5))
    y = numba_ln.layer_norm(x, 2.0, [[1.0], [2.0], [3.0]], axis=(1, 2))
    assert_close(y, ref.layer_norm(x, np.full((3, 5), 2.0), np.repeat([[1.0], [2.0], [3.0]], 5, 1),
                                   axis=(1, 2))[0])


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, (1, 2), (0, 2), (2, 3), (0, 1, 2, 3), (0, 3), [1, 3]])
@pytest.mark.parametrize("order", ["C", "F"])
def test_every_axis_choice(rng, axis, order):
    x = np.asarray(rng.standard_normal((3, 4, 5, 6)), order=order)
    norm_shape = tuple(x.shape[a] for a in sorted(np.atleast_1d(axis) % 4))
    w = rng.standard_normal(norm_shape)
    y, mean, rstd = numba_ln.layer_norm(x, w, axis=axis, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w, axis=axis)
    assert_close(y, y_ref, scale=4)
    assert_close(mean, mean_ref)
    assert_close(rstd, rstd_ref, scale=4)


def test_channels_first_nchw(rng):
    x = rng.standard_normal((2, 16, 7, 9)).astype(np.float32) + 100
    w, b = rng.standard_normal(16), rng.standard_normal(16)
    y, mean, rstd = numba_ln.layer_norm(x, w, b, axis=1, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w, b, axis=1)
    assert mean.shape == (2, 1, 7, 9)
    assert_close(y, y_ref, scale=4)
    assert_close(rstd, rstd_ref)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[:, ::-1],
        lambda a: a[::-1],
        lambda a: a[::-1, ::-1],
        lambda a: a[::2],
        lambda a: a[:, 3:40],
        lambda a: a[::2, ::3],
        lambda a: a.T,
        lambda a: a.T[::-1],
        lambda a: np.asfortranarray(a),
        lambda a: a.astype(a.dtype.newbyteorder()),
        lambda a: np.broadcast_to(a[:1], a.shape),
    ],
    ids=["cols-reversed", "rows-reversed", "both-reversed", "row-step", "col-slice", "2d-step",
         "transposed", "transposed-reversed", "fortran", "byteswapped", "broadcast"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts(rng, make, dtype):
    base = rng.standard_normal((20, 48)).astype(dtype)
    x = make(base)
    w = rng.standard_normal(x.shape[-1])
    b = rng.standard_normal(x.shape[-1])
    y = numba_ln.layer_norm(x, w, b)
    assert y.dtype == np.dtype(dtype)
    assert_close(y, ref.layer_norm(x, w, b)[0], scale=4)
    out = np.zeros_like(y)[::-1]
    assert numba_ln.layer_norm(x, w, b, out=out) is out
    assert_close(out, ref.layer_norm(x, w, b)[0], scale=4)


def test_nested_lists_memmap_and_readonly(tmp_path, rng):
    rows = [[1.0, 2.0, 4.0], [3.0, 3.0, 9.0]]
    assert_close(numba_ln.layer_norm(rows), ref.layer_norm(rows)[0])
    data = rng.standard_normal((8, 16)).astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=data.shape)
    mm[:] = data
    assert_close(numba_ln.layer_norm(mm), ref.layer_norm(data)[0])
    ro = data.copy()
    ro.flags.writeable = False
    w = np.ones(16, np.float32)
    w.flags.writeable = False
    assert_close(numba_ln.layer_norm(ro, w), ref.layer_norm(data)[0])


@pytest.mark.parametrize("dtype,expected", [(np.int32, np.float64), (np.int64, np.float64),
                                            (np.uint8, np.float64), (np.bool_, np.float64),
                                            (np.float32, np.float32), (np.float64, np.float64)])
def test_result_dtypes(dtype, expected):
    x = (np.arange(24).reshape(4, 6) % 5).astype(dtype)
    y = numba_ln.layer_norm(x, np.ones(6, np.float32))
    assert y.dtype == expected
    assert_close(y, ref.layer_norm(x)[0])


def test_out_and_in_place(rng):
    x = rng.standard_normal((40, 100)).astype(np.float32)
    expected = ref.layer_norm(x)[0]
    out = np.empty_like(x)
    assert numba_ln.layer_norm(x, out=out) is out
    assert_close(out, expected)
    y = x.copy()
    assert numba_ln.layer_norm(y, out=y) is y
    assert_close(y, expected)
    # out as a strided view, and in place over a non-trailing axis
    big = np.zeros((40, 200), np.float32)
    numba_ln.layer_norm(x, out=big[:, ::2])
    assert_close(big[:, ::2], expected)
    assert not big[:, 1::2].any()
    z = np.ascontiguousarray(x.T)
    numba_ln.layer_norm(z, axis=0, out=z)
    assert_close(z.T, expected)


def test_out_overlapping_input_differently(rng):
    base = rng.standard_normal((30, 64))
    x = base[:-1]
    expected = ref.layer_norm(x)[0]
    numba_ln.layer_norm(x, out=base[1:])  # shifted by one row: must read x before writing
    assert_close(base[1:], expected)


def test_nan_and_inf_only_poison_their_row(rng):
    x = rng.standard_normal((5, 33)).astype(np.float32)
    x[1, 7] = np.nan
    x[3, 0] = np.inf
    y = numba_ln.layer_norm(x)
    assert np.isnan(y[1]).all() and np.isnan(y[3]).all()
    keep = [0, 2, 4]
    assert_close(y[keep], ref.layer_norm(x[keep])[0])
    x2 = np.ones((2, 9))
    x2[0, 0] = -np.inf
    x2[0, 1] = np.inf
    assert np.isnan(numba_ln.layer_norm(x2)[0]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [0.1, -3.7e5, 1e-30, 123456.789])
@pytest.mark.parametrize("cols", [1, 5, 1000, 9000])
def test_constant_rows_are_exactly_zero(dtype, value, cols):
    x = np.full((3, cols), value, dtype)
    bias = np.linspace(-1, 1, cols).astype(dtype)
    y, mean, rstd = numba_ln.layer_norm(x, None, bias, return_stats=True)
    assert np.array_equal(y, np.broadcast_to(bias, y.shape))
    assert np.array_equal(mean, np.full((3, 1), value, dtype))
    assert np.allclose(rstd, 1 / np.sqrt(1e-5))


def test_zero_rows_and_empty_normalized_axis():
    y, mean, rstd = numba_ln.layer_norm(np.empty((0, 8), np.float32), return_stats=True)
    assert y.shape == (0, 8) and y.dtype == np.float32 and mean.shape == (0, 1)
    assert numba_ln.layer_norm(np.empty((3, 0, 4)), axis=0).shape == (3, 0, 4)
    with pytest.raises(ValueError, match="normalized"):
        numba_ln.layer_norm(np.empty((4, 0)))


def test_single_element_rows_and_scalars():
    y = numba_ln.layer_norm(np.array([[5.0], [7.0]]), bias=np.array([2.0]))
    assert np.array_equal(y, [[2.0], [2.0]])
    assert numba_ln.layer_norm(np.array([1.0, 2.0, 3.0])).shape == (3,)


def test_eps_is_applied(rng):
    x = rng.standard_normal((4, 10))
    for eps in (0.0, 1e-5, 0.5, 3):
        assert_close(numba_ln.layer_norm(x, eps=eps), ref.layer_norm(x, eps=eps)[0])


def test_long_rows_split_across_threads(rng):
    x = (1e4 + rng.standard_normal((1, 300_001))).astype(np.float32)
    w = rng.standard_normal(x.shape[1]).astype(np.float32)
    y, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w)
    assert_close(y, y_ref, scale=4)
    assert np.abs(rstd / rstd_ref - 1).max() < 2e-6
