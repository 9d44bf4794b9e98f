"""The small-call gates (numba_ln/_small_front.py, _small_backward_front.py) and their
kernels (cpu/small.py, cpu/small_backward.py): every form they take gives the bits of the
general path (the same kernel body, reached through the kind table: the axes as an int
subclass, _oracle.general_axes, are the same axes in a form the gates do not take), and a
call they decline reaches the general path, its errors included, with nothing written.

Shapes are small and the forms are those other tests use, so most kernel variants here
are compiled once for the whole suite."""
import numba
import numpy as np
import pytest
from _oracle import general_axes, same_bits as same

import numba_ln
from numba_ln import _config
from numba_ln.cpu.small_args import STACK_ROWS


def general_axis(x):
    return general_axes(x.ndim - 1)


# --- the backward ---------------------------------------------------------------------------

def _backward_forms(rng, x, dy):
    w = (rng.standard_normal(x.shape[-1]) + 1.0).astype(x.dtype)
    _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    _, rms_rstd = numba_ln.rms_norm(x, w, return_stats=True)
    return {
        "weight": lambda **kw: numba_ln.layer_norm_backward(dy, x, w, **kw),
        "no weight": lambda **kw: numba_ln.layer_norm_backward(dy, x, eps=np.float32(1e-3),
                                                               **kw),
        "float64 weight": lambda **kw: numba_ln.layer_norm_backward(dy, x, w.astype(np.float64),
                                                                    **kw),
        "statistics": lambda **kw: numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd,
                                                                **kw),
        "rms": lambda **kw: numba_ln.rms_norm_backward(dy, x, w, **kw),
        "rms statistics": lambda **kw: numba_ln.rms_norm_backward(dy, x, w, rstd=rms_rstd,
                                                                  **kw),
    }


@pytest.mark.parametrize("task_elements", [_config.TASK_ELEMENTS, 64])
def test_small_backward_gives_the_general_paths_bits(rng, small_ran, monkeypatch,
                                                     task_elements):
    # (TASK_ELEMENTS 64: 8 rows a task, so the 30 rows are 4 tasks and their partial rows
    # are added in task order; the gate reads the setting on every call, as the front does)
    monkeypatch.setattr(_config, "TASK_ELEMENTS", task_elements)
    x = (rng.standard_normal((30, 48)) * 3.0 + 100.0).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    forms = _backward_forms(rng, x, dy)
    small_ran.clear()  # (the forward calls that made the statistics)
    for name, form in forms.items():
        small = form()
        assert small_ran == ["small_backward"], name
        assert same(small, form(axis=general_axis(x))), name
        assert small_ran == ["small_backward"], name  # (the general path took the second)
        small_ran.clear()


def test_above_the_serial_bounds_the_threads_start_from_python(rng, small_ran, monkeypatch):
    """Above the backward's and the fused forms' serial bounds (_config.BACKWARD_COST,
    FUSED_COST; lowered here) the parallel kernels are launched from Python: by the
    general path for the fused forms, by the backward gate once small_backward_fits has
    checked the call.  A compiled small kernel that launched them itself crashed a
    later process that loaded it from Numba's cache (numba#8578).  The results are the
    bits of the serial small calls (the same tasks), with one thread or two."""
    monkeypatch.setattr(_config, "TASK_ELEMENTS", 64)  # (8 rows a task: 4 tasks)
    x = (rng.standard_normal((30, 48)) * 3.0 + 100.0).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    r = rng.standard_normal(x.shape).astype(np.float32)
    w, b = rng.standard_normal(48).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    backward = _backward_forms(rng, x, dy)
    forms = {"weight": backward["weight"], "rms statistics": backward["rms statistics"],
             "add layer": lambda: numba_ln.add_layer_norm(x, r, w, b),
             "add rms": lambda: numba_ln.add_rms_norm(x, r, w)}
    small_ran.clear()
    serial = {name: form() for name, form in forms.items()}
    assert small_ran == ["small_backward"] * 2 + ["small_add_norm"] * 2
    small_ran.clear()
    monkeypatch.setattr(_config, "SERIAL_MAX_ELEMENTS", 1024)  # (30 * 48 * the costs: above)
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            for name, form in forms.items():
                assert same(form(), serial[name]), name
            assert small_ran == ["small_backward in threads"] * 2
            small_ran.clear()
    finally:
        numba.set_num_threads(before)


def test_bad_input_to_a_launching_small_kernel_raises_and_writes_nothing(rng, small_ran,
                                                                          monkeypatch):
    """Above the serial bounds (lowered here) the small fused and backward kernels check
    their arguments as their serial variants do, before any launch: the general path
    raises, and out, residual_out and the inputs are as they were."""
    monkeypatch.setattr(_config, "SERIAL_MAX_ELEMENTS", 64)
    x = rng.standard_normal((6, 32)).astype(np.float32)
    r, dy = x[::-1].copy(), x[:, ::-1].copy()
    inputs = [a.copy() for a in (x, r, dy)]
    out, res_out = np.zeros_like(x), np.zeros_like(x)
    errors = [
        (lambda: numba_ln.add_layer_norm(x, r, np.ones(31, np.float32), out=out,
                                         residual_out=res_out), "weight"),
        (lambda: numba_ln.add_rms_norm(x, r[:5], out=out, residual_out=res_out), "residual"),
        (lambda: numba_ln.add_layer_norm(x, r, eps=-1.0, out=out, residual_out=res_out), "eps"),
        (lambda: numba_ln.layer_norm_backward(dy, x, np.ones(31, np.float32), out=out),
         "weight of shape"),
        (lambda: numba_ln.rms_norm_backward(dy[:5], x, out=out), "dy has shape"),
    ]
    for call, match in errors:
        with pytest.raises(ValueError, match=match):
            call()
        assert not out.any() and not res_out.any(), match
        assert all(np.array_equal(a, b) for a, b in zip((x, r, dy), inputs)), match
    assert small_ran == []


def test_small_backward_outputs_in_place_and_float64(rng, small_ran):
    x = rng.standard_normal((2, 3, 48)).astype(np.float64)
    dy = rng.standard_normal(x.shape)
    w = rng.standard_normal(48)
    want = numba_ln.layer_norm_backward(dy, x, w, axis=general_axes(2))
    assert small_ran == []
    assert same(numba_ln.layer_norm_backward(dy, x, w), want)
    out = np.full_like(x, np.nan)
    got = numba_ln.layer_norm_backward(dy, x, w, out=out)
    assert got[0] is out and same(got, want)
    x32, dy32, w32 = x.astype(np.float32), dy.astype(np.float32), w.astype(np.float32)
    want32 = numba_ln.layer_norm_backward(dy32, x32, w32, axis=general_axes(2), out=dy32.copy())
    got = numba_ln.layer_norm_backward(dy32, x32, w32, out=dy32)  # in place over dy
    assert got[0] is dy32 and same(got, want32)
    assert small_ran == ["small_backward"] * 3


def test_declined_backward_calls_take_the_general_path(rng, small_ran):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    out = np.zeros_like(x)
    errors = [  # (call, what the general path's error names)
        (lambda: numba_ln.layer_norm_backward(dy, x, np.ones(7, np.float32), out=out),
         "weight of shape"),
        (lambda: numba_ln.layer_norm_backward(dy[:3], x, out=out), "dy has shape"),
        (lambda: numba_ln.layer_norm_backward(dy, x, eps=-1.0, out=out), "eps"),
        (lambda: numba_ln.layer_norm_backward(dy, x, mean=np.zeros((4, 1), np.float32),
                                              out=out), "without rstd"),
        (lambda: numba_ln.rms_norm_backward(dy, x, rstd=np.ones((1, 4), np.float32),
                                            out=out), "rstd has shape"),
    ]
    for call, match in errors:
        with pytest.raises(ValueError, match=match):
            call()
        assert not out.any()
    assert small_ran == []
    # odd but valid: out over x (read from a copy), a one-element axis (exact zeros)
    want = numba_ln.layer_norm_backward(dy, x, axis=general_axes(1))
    over_x = x.copy()
    assert same(numba_ln.layer_norm_backward(dy, over_x, out=over_x), want)
    dx, dweight, _ = numba_ln.layer_norm_backward(dy[:, :1].copy(), x[:, :1].copy())
    assert not dx.any() and not dweight.any()
    assert small_ran == []


# --- the forward: 16-bit data and moments ---------------------------------------------------

@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_small_16_bit_calls_give_the_general_paths_bits(rng, small_ran, dtype):
    # (The forms whose general-path kernels other tests compile anyway: each other form
    # would compile two kernel variants for this test alone, ~10 s each.  Every small
    # 16-bit form is checked against the oracle by tests/test_half.py.)
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x = (rng.standard_normal((5, 64)) * 3.0 + 20.0).astype(dtype)
    forms = {
        "plain": lambda axis: numba_ln.layer_norm(x, axis=axis),
        "statistics": lambda axis: numba_ln.layer_norm(x, axis=axis, return_stats=True),
    }
    for name, form in forms.items():
        small = form(-1)
        assert small_ran == ["small_norm"], name
        assert same(small, form(general_axis(x))), name
        small_ran.clear()
    _, mean, rstd = forms["statistics"](-1)
    assert mean.dtype == rstd.dtype == np.float32  # (as the general path: the stats dtype)
    y = x.copy()
    assert numba_ln.layer_norm(y, out=y) is y and same(y, forms["plain"](-1))
    mean, var = numba_ln.moments(x)
    assert small_ran[-1] == "small_moments" and mean.dtype == var.dtype == np.float32


def test_modules_take_the_small_call_with_the_functions_bits(rng, small_ran):
    x = (rng.standard_normal((3, 40)) + 10.0).astype(np.float32)
    ln, rms = numba_ln.LayerNorm(40), numba_ln.RMSNorm(40, elementwise_affine=False)
    ln.weight, ln.bias = 1.0 + rng.standard_normal(40), rng.standard_normal(40)
    assert same(ln(x, return_stats=True),
                numba_ln.layer_norm(x, ln.weight, ln.bias, return_stats=True))
    assert same(rms(x), numba_ln.rms_norm(x, eps=rms.eps))
    assert small_ran == ["small_norm"] * 4
    with pytest.raises(ValueError, match="normalized_shape"):  # (no weight to check it)
        rms(x[:, :39])
    assert small_ran == ["small_norm"] * 4


# 40 columns: both casts on the stack; 4100: weight and bias together over its budget
# (cpu/small_params.cast_buffer), a weight alone within it
@pytest.mark.parametrize("cols", [40, 4100])
def test_float64_parameters_on_float32_data_are_cast_in_the_kernel(rng, small_ran, cols):
    """float64 weight and bias from a checkpoint on float32 data: the small-call kernels
    cast them (cpu/small_params.work_param), as the general path casts them before its kernel:
    the same bits.  A value that float32 cannot hold exactly rounds the same either way."""
    x = (rng.standard_normal((3, cols)) + 100.0).astype(np.float32)
    w, b = 1.0 + rng.standard_normal(cols) / 3.0, rng.standard_normal(cols)
    w[0] = 1.0 + 2.0 ** -30  # (rounds to 1.0f)
    small = numba_ln.layer_norm(x, w, b)
    assert small_ran == ["small_norm"] and small.dtype == np.float32
    assert same(small, numba_ln.layer_norm(x, w, b, out=np.empty_like(x)))
    assert same(small, numba_ln.layer_norm(x, w.astype(np.float32), b.astype(np.float32)))
    r = rng.standard_normal(x.shape).astype(np.float32)  # the fused form casts them so too
    small_ran.clear()
    fused = numba_ln.add_layer_norm(x, r, w, b)
    assert small_ran == ["small_add_norm"]
    assert same(fused, numba_ln.add_layer_norm(x, r, w, b, out=np.empty_like(x)))
    small_ran.clear()
    assert same(numba_ln.rms_norm(x, w), numba_ln.rms_norm(x, w.astype(np.float32)))
    assert small_ran == ["small_norm"] * 2


def test_forms_the_gate_passes_on_give_the_small_calls_bits(rng, small_ran):
    """The public functions hand small_call their arguments as given: a return_stats that
    is an int (truthy or falsy) is the general path's to read, with the small call's
    results; NumPy scalars are the small call's, through the retry that makes them
    Python ones (tests/test_numpy_scalars.py; a fused form's statistics are the small
    call's since 2026-12-05: tests/test_small_call_forms.py)."""
    x = (rng.standard_normal((3, 40)) + 10.0).astype(np.float32)
    r = rng.standard_normal(x.shape).astype(np.float32)
    w, b = (1.0 + rng.standard_normal(40)).astype(np.float32), np.zeros(40, np.float32)
    small = numba_ln.layer_norm(x, w, b, return_stats=True)
    fused = numba_ln.add_layer_norm(x, r, w, b)
    assert small_ran == ["small_norm", "small_add_norm"]
    small_ran.clear()
    assert same(numba_ln.layer_norm(x, w, b, return_stats=1), small)
    assert same(numba_ln.layer_norm(x, w, b, return_stats=0), small[0])
    assert small_ran == []
    assert same(numba_ln.layer_norm(x, w, b, axis=np.int64(-1), return_stats=True), small)
    assert same(numba_ln.layer_norm(x, w, b, return_stats=np.True_), small)
    assert small_ran == ["small_norm"] * 2
    small_ran.clear()
    y, s, mean, rstd = numba_ln.add_layer_norm(x, r, w, b, return_stats=True)
    assert same((y, s), fused)
    assert small_ran == ["small_add_norm"]
    assert same(mean, numba_ln.moments(s, keepdims=True)[0])


def test_rows_statistics_and_fused_forms_in_every_output_form(rng, small_ran):
    """A 2-D float32 call with return_stats (fresh, out=, out=x) or a residual (fresh
    outputs, residual_out=residual) takes a small kernel whichever way its outputs come,
    with the general path's bits."""
    x = (rng.standard_normal((3, 40)) * 2.0 + 50.0).astype(np.float32)
    r = rng.standard_normal(x.shape).astype(np.float32)
    w = (1.0 + rng.standard_normal(40)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    want = numba_ln.layer_norm(x, w, b, axis=general_axes(1), return_stats=True)
    want_rms = numba_ln.rms_norm(x, w, axis=general_axes(1), return_stats=True)
    want_fused = numba_ln.add_layer_norm(x, r, w, b, axis=general_axes(1))
    small_ran.clear()
    assert same(numba_ln.layer_norm(x, w, b, return_stats=True), want)
    out = np.full_like(x, np.nan)
    got = numba_ln.layer_norm(x, w, b, out=out, return_stats=True)
    assert got[0] is out and same(got, want)
    over_x = x.copy()
    got = numba_ln.layer_norm(over_x, w, b, out=over_x, return_stats=True)
    assert got[0] is over_x and same(got, want)
    assert same(numba_ln.rms_norm(x, w, return_stats=True), want_rms)
    assert same(numba_ln.add_layer_norm(x, r, w, b), want_fused)
    stream = r.copy()
    got = numba_ln.add_layer_norm(x, stream, w, b, residual_out=stream)
    assert got[1] is stream and same(got, want_fused)
    assert small_ran == ["small_norm"] * 4 + ["small_add_norm"] * 2


def test_bad_fused_calls_with_fresh_outputs_raise_and_change_nothing(rng, small_ran):
    """The fused forms' short branch (2-D float32, fresh outputs) declines a bad call: the
    general path raises the error naming the argument, and the inputs are as they were."""
    x = rng.standard_normal((3, 40)).astype(np.float32)
    r, w = rng.standard_normal(x.shape).astype(np.float32), np.ones(40, np.float32)
    inputs = [a.copy() for a in (x, r, w)]
    errors = [
        (lambda: numba_ln.add_layer_norm(x, r[:2], w, w), "residual of shape"),
        (lambda: numba_ln.add_layer_norm(x, r, w[:5], w), "weight of shape"),
        (lambda: numba_ln.add_rms_norm(x, r, w, eps=-1.0), "eps"),
    ]
    for call, match in errors:
        with pytest.raises(ValueError, match=match):
            call()
        assert all(np.array_equal(a, b) for a, b in zip((x, r, w), inputs)), match
    assert small_ran == []


def test_scratch_statistics_on_the_stack_and_beyond_it(rng, small_ran):
    """A small call keeps its rows' statistics on the stack up to STACK_ROWS rows and
    allocates them beyond (cpu/small_args.scratch_stats): the general path's bits and
    statistics either way."""
    for rows in (STACK_ROWS, STACK_ROWS + 1):
        x = (rng.standard_normal((rows, 40)) * 3.0 + 1e3).astype(np.float32)
        small = numba_ln.layer_norm(x, return_stats=True)
        moments = numba_ln.moments(x)
        assert small_ran == ["small_norm", "small_moments"], rows
        assert same(small, numba_ln.layer_norm(x, axis=general_axes(1), return_stats=True)), rows
        assert same(moments, numba_ln.moments(x, axis=general_axes(1))), rows
        small_ran.clear()


# (float32 only: the gate's axis rule does not depend on the dtype, and float64 compiled
# general-path variants no other test needs, ~6 s of the suite's CPU)
@pytest.mark.parametrize("dtype", [np.float32])
def test_an_axis_followed_by_size_1_axes_takes_the_small_call(rng, small_ran, dtype):
    """A column (n, 1) over axis=0, or (b, c, 1, 1) over axis=1, is the last axis of x
    without its trailing size-1 axes: the small call (_small_axes.py), with the general
    path's bits and shapes, out= too."""
    w = (rng.standard_normal(40) + 1.0).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    for shape, axis in [((40, 1), 0), ((3, 40, 1, 1), -3)]:
        x = (rng.standard_normal(shape) * 3.0 + 1e3).astype(dtype)
        forms = [lambda **kw: numba_ln.layer_norm(x, w, b, **kw),
                 lambda **kw: numba_ln.rms_norm(x, w, return_stats=True, **kw)]
        for form in forms:
            small = form(axis=axis)
            assert small_ran == ["small_norm"]
            out = np.empty_like(x)
            into = form(axis=axis, out=out)
            assert small_ran == ["small_norm"] * 2
            general = form(axis=general_axes(axis))
            assert small_ran == ["small_norm"] * 2
            assert same(small, general) and same(into, general)
            assert (into if isinstance(into, np.ndarray) else into[0]) is out
            small_ran.clear()
        with pytest.raises(ValueError, match="weight"):
            numba_ln.layer_norm(x, w[:5], axis=axis)
    numba_ln.layer_norm(rng.standard_normal((40, 2)), axis=0)  # (not trailing size 1)
    assert small_ran == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_moments_give_the_general_paths_bits(rng, small_ran, dtype):
    x = (rng.standard_normal((2, 3, 40)) + 1e4).astype(dtype)
    for keepdims in (False, True):
        small = numba_ln.moments(x, keepdims=keepdims)
        assert small_ran == ["small_moments"]
        assert small[0].shape == ((2, 3, 1) if keepdims else (2, 3))
        assert same(small, numba_ln.moments(x, axis=general_axes(2), keepdims=keepdims))
        small_ran.clear()
    one = numba_ln.moments(x[0, 0])  # a 1-D x: 0-d results, as the general path's
    assert same(one, numba_ln.moments(x[0, 0], axis=general_axes(0)))
    assert one[0].shape == ()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_small_16_bit_backward_gives_the_general_paths_bits(rng, small_ran, dtype):
    # (A float32 weight and a 16-bit one widened to it: the kernel types
    # tests/test_half_backward.py compiles anyway)
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x = (rng.standard_normal((5, 64)) * 3.0 + 20.0).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    w = (rng.standard_normal(64) + 1.0).astype(np.float32)
    for weight in (w, w.astype(dtype)):
        small = numba_ln.layer_norm_backward(dy, x, weight)
        assert small_ran == ["small_backward"]
        assert small[0].dtype == dtype and small[1].dtype == small[2].dtype == np.float32
        assert same(small, numba_ln.layer_norm_backward(dy, x, weight, axis=general_axis(x)))
        assert small_ran == ["small_backward"]
        small_ran.clear()
    # (in place over dy: tests/test_half_backward.py; float64 statistics, which the gate
    # leaves to the general path, would compile one more variant)
