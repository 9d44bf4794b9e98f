"""Forms the small-call gates take beyond the commonest ones (tests/test_small_calls.py):
the backward's ``grad_residual`` (the backward of the fused forward) and
``param_grads=False``, with or without statistics (numba_ln/_small_backward_front.py,
cpu/small_backward.small_backward_any), the fused forms' statistics, and the last axis
written as ``x.ndim - 1``.
Each gives the bits of the general path, serially and in threads; what the gate must not
take (an overlap it cannot read in place, a bad shape) reaches the general path, its
errors included, with nothing written."""
import numba
import numpy as np
import pytest
from _oracle import general_axes, assert_close
from _oracle import same_bits as same

import numba_ln
import numba_ln.reference as ref
from numba_ln import _config


def _forms(rng, x, dy):
    """{name: call(**kw)} of the forms the gate now takes beyond the commonest ones."""
    w = (rng.standard_normal(x.shape[-1]) + 1.0).astype(np.float32)
    gr = rng.standard_normal(x.shape).astype(x.dtype)
    _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    _, rms_rstd = numba_ln.rms_norm(x, w, return_stats=True)
    ln, rms = numba_ln.layer_norm_backward, numba_ln.rms_norm_backward
    return {
        "grad_residual": lambda **kw: ln(dy, x, w, grad_residual=gr, **kw),
        "grad_residual, statistics": lambda **kw: ln(dy, x, w, mean=mean, rstd=rstd,
                                                     grad_residual=gr, **kw),
        "no param grads": lambda **kw: ln(dy, x, w, param_grads=False, **kw),
        "rms grad_residual, statistics": lambda **kw: rms(dy, x, w, rstd=rms_rstd,
                                                          grad_residual=gr, **kw),
    }


def _data(rng, shape, dtype=np.float32):
    x = (rng.standard_normal(shape) * 3.0 + 100.0).astype(dtype)
    return x, rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("task_elements", [_config.TASK_ELEMENTS, 64])
def test_the_forms_give_the_general_paths_bits(rng, small_ran, monkeypatch, task_elements):
    # (TASK_ELEMENTS 64: 8 rows a task, so the 30 rows are 4 tasks, their partial rows
    # added in task order)
    monkeypatch.setattr(_config, "TASK_ELEMENTS", task_elements)
    x, dy = _data(rng, (30, 48))
    for name, form in _forms(rng, x, dy).items():
        small_ran.clear()
        small = form()
        assert small_ran == ["small_backward"], name
        general = form(axis=general_axes(1))
        assert small_ran == ["small_backward"], name  # (the general path took the second)
        assert same(small, general), name
        if "param grads" in name:
            assert all(g is None for g in small[1:]), name


def test_the_forms_in_threads_give_the_serial_bits(rng, small_ran, monkeypatch):
    """Above the backward's serial bound (lowered here) the gate checks the call
    (small_backward_fits) and launches the threads from Python, with the serial bits."""
    monkeypatch.setattr(_config, "TASK_ELEMENTS", 64)
    x, dy = _data(rng, (30, 48))
    forms = _forms(rng, x, dy)
    serial = {name: form() for name, form in forms.items()}
    monkeypatch.setattr(_config, "SERIAL_MAX_ELEMENTS", 1024)  # (30 * 48 * 3: above)
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            small_ran.clear()
            for name, form in forms.items():
                assert same(form(), serial[name]), name
            assert small_ran == ["small_backward in threads"] * len(forms)
    finally:
        numba.set_num_threads(before)


def test_other_ranks_and_out(rng, small_ran):
    """A 3-D x (as rows), out= given, and out=dy in place with grad_residual."""
    x, dy = _data(rng, (2, 5, 48))
    gr = rng.standard_normal(x.shape).astype(np.float32)
    w = np.linspace(0.5, 1.5, 48, dtype=np.float32)
    want = numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr, axis=general_axes(2))
    assert same(numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr), want)
    out = np.full_like(x, np.nan)
    got = numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr, out=out)
    assert got[0] is out and same(got, want)
    grad, general = dy.copy(), dy.copy()
    got = numba_ln.layer_norm_backward(grad, x, w, grad_residual=gr, out=grad)
    # (in place is a kernel variant of its own: its last bits may differ from out='s)
    in_place = numba_ln.layer_norm_backward(general, x, w, grad_residual=gr,
                                            axis=general_axes(2), out=general)
    assert got[0] is grad and same(got, in_place)
    assert small_ran == ["small_backward"] * 3


def test_16_bit_grad_residual(rng, small_ran):
    dtype = np.float16  # (bfloat16 takes the same gate branch, as its bits)
    x, dy = _data(rng, (5, 64), dtype)
    gr = rng.standard_normal(x.shape).astype(dtype)
    w = (rng.standard_normal(64) + 1.0).astype(np.float32)
    small = numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr)
    assert small_ran == ["small_backward"]
    assert small[0].dtype == dtype and small[1].dtype == np.float32
    assert same(small, numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr,
                                                    axis=general_axes(1)))


def test_overlaps_it_cannot_read_in_place_take_the_general_path(rng, small_ran):
    """dx over grad_residual (out=grad_residual: the general path reads a copy), and out=dy
    with a grad_residual that overlaps dy shifted by an element: written in place, the
    kernel would read elements of grad_residual it had already overwritten."""
    x, dy = _data(rng, (6, 32))
    gr = rng.standard_normal(x.shape).astype(np.float32)
    want = numba_ln.layer_norm_backward(dy, x, grad_residual=gr)
    buffer = np.empty(dy.size + 1, np.float32)
    shared_dy = buffer[1:].reshape(dy.shape)
    shared_gr = buffer[:-1].reshape(dy.shape)
    shared_dy[...] = dy
    buffer[0] = 0.5
    gr_now = shared_gr.copy()  # (0.5 and dy's values shifted: what the call must read)
    want_shared = numba_ln.layer_norm_backward(dy, x, grad_residual=gr_now)
    small_ran.clear()
    over_gr = gr.copy()
    got = numba_ln.layer_norm_backward(dy, x, grad_residual=over_gr, out=over_gr)
    assert got[0] is over_gr and same(got, want)
    got = numba_ln.layer_norm_backward(shared_dy, x, grad_residual=shared_gr, out=shared_dy)
    assert got[0] is shared_dy and same(got, want_shared)
    assert small_ran == []


def test_bad_input_raises_and_writes_nothing(rng, small_ran):
    x, dy = _data(rng, (6, 32))
    out = np.zeros_like(x)
    inputs = (x.copy(), dy.copy())
    errors = [
        (lambda: numba_ln.layer_norm_backward(dy, x, grad_residual=dy[:5], out=out),
         ValueError, "grad_residual"),
        (lambda: numba_ln.rms_norm_backward(dy, x, np.ones(31, np.float32), out=out,
                                            param_grads=False), ValueError, "weight"),
        (lambda: numba_ln.layer_norm_backward(dy, x, out=out, param_grads=False, eps=-1.0),
         ValueError, "eps"),
        (lambda: numba_ln.layer_norm_backward(dy, x, out=out, param_grads=1), TypeError,
         "param_grads"),
    ]
    for call, error, match in errors:
        with pytest.raises(error, match=match):
            call()
        assert not out.any(), match
        assert np.array_equal(x, inputs[0]) and np.array_equal(dy, inputs[1]), match
    assert small_ran == []


def test_a_grad_residual_of_another_dtype_takes_the_general_path(rng, small_ran):
    """float64 grad_residual on float32 data: a float64 result (np.result_type, as the
    general path's dtype rule), which the gate leaves to the general path."""
    x, dy = _data(rng, (4, 40))
    gr = rng.standard_normal(x.shape)
    got = numba_ln.layer_norm_backward(dy, x, grad_residual=gr)
    assert small_ran == []
    want = ref.layer_norm_backward(dy, x, grad_residual=gr)
    for g, w in zip(got, want):
        assert_close(g, w, np.float64, scale=1.0)


def _less(axis):
    """axis 1 -> 0, (1,) -> (0,): the last axis of one dimension fewer (of the same type:
    general_axes' stay the general path's)."""
    return axis - 1 if type(axis) is int else (type(axis[0])(axis[0] - 1),)


def test_the_last_axis_as_ndim_minus_1_takes_the_small_call(rng, small_ran):
    """axis=x.ndim - 1 (axis=1 on rows, axis=0 on a vector) is the last axis: the gates
    take it, forward, fused, moments and backward, with the bits of the general path's
    tuple form."""
    x, dy = _data(rng, (6, 40))
    r = rng.standard_normal(x.shape).astype(np.float32)
    w = np.linspace(0.5, 1.5, 40, dtype=np.float32)
    forms = {  # (one per gate: each reads the axis the same way)
        "layer_norm": lambda axis: numba_ln.layer_norm(x, w, w, axis=axis, return_stats=True),
        "vector": lambda axis: numba_ln.layer_norm(x[0], w, axis=_less(axis)),
        "add_layer_norm": lambda axis: numba_ln.add_layer_norm(x, r, w, axis=axis),
        "moments": lambda axis: numba_ln.moments(x, axis=axis, keepdims=True),
        "backward": lambda axis: numba_ln.layer_norm_backward(dy, x, w, axis=axis),
    }
    for name, form in forms.items():
        small_ran.clear()
        got = form(1)
        assert len(small_ran) == 1, name
        assert same(got, form(general_axes(1))), name
        assert len(small_ran) == 1, name  # (general_axes: the general path)
    with pytest.raises(ValueError, match="axis"):
        numba_ln.layer_norm(x, axis=2)
    with pytest.raises(ValueError, match="axis"):
        numba_ln.layer_norm_backward(dy, x, axis=2)


def test_the_fused_forms_statistics_take_the_small_call(rng, small_ran):
    """add_layer_norm / add_rms_norm with return_stats=True: (y, s, mean, rstd) / (y, s,
    rstd) from the fused small kernels, fresh outputs, out= and residual_out=residual
    (in place), 3-D and 2-D, with the general path's bits.  (float32: 16-bit data take
    the same gate branch as the statistics of test_small_calls' 16-bit test.)"""
    dtype = np.float32
    x, _ = _data(rng, (2, 3, 40), dtype)
    r = rng.standard_normal(x.shape).astype(dtype)
    w = np.linspace(0.5, 1.5, 40, dtype=np.float32)
    cases = {  # name: (function, x, r, params)
        "layer": (numba_ln.add_layer_norm, x, r, (w, w)),
        "rms, rows": (numba_ln.add_rms_norm, x[0], r[0], (w,)),
    }
    for name, (f, xc, rc, params) in cases.items():
        small_ran.clear()
        want = f(xc, rc, *params, axis=general_axes(xc.ndim - 1), return_stats=True)
        assert small_ran == [], name
        got = f(xc, rc, *params, return_stats=True)
        assert small_ran == ["small_add_norm"], name
        assert len(got) == (3 if name.startswith("rms") else 4) and same(got, want), name
        assert got[-1].shape == want[-1].shape and got[-1].dtype == np.float32, name
        out = np.empty_like(want[0])
        got = f(xc, rc, *params, out=out, return_stats=True)
        assert got[0] is out and same(got, want), name
        stream = rc.copy()
        got = f(xc, stream, *params, residual_out=stream, return_stats=True)
        assert got[1] is stream and same(got, want), name
        assert small_ran == ["small_add_norm"] * 3, name


def test_read_only_inputs_take_the_small_call(rng, small_ran, monkeypatch):
    """Read-only dy, x, weight, grad_residual and statistics (arrays from np.frombuffer,
    a safetensors checkpoint, a frozen model): the backward kernels only read them, and
    give the bits of the same values in writeable arrays (the general path's bits: the
    tests above), serially and, for a read-only weight, in threads.  A read-only out=dy
    is an error, with nothing written.  (Compared with writeable copies: the general path
    would compile read-only variants of the row kernels, seconds each.)"""
    x, dy = _data(rng, (6, 40))
    gr = rng.standard_normal(x.shape).astype(np.float32)
    w = np.linspace(0.5, 1.5, 40, dtype=np.float32)
    _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    writeable = [a.copy() for a in (x, dy, gr, w, mean, rstd)]
    for a in (x, dy, gr, w, mean, rstd):
        a.flags.writeable = False

    def forms(x, dy, gr, w, mean, rstd):
        return {
            "weight": lambda: numba_ln.layer_norm_backward(dy, x, w),
            "everything": lambda: numba_ln.layer_norm_backward(
                dy, x, w, mean=mean, rstd=rstd, grad_residual=gr),
            "rms": lambda: numba_ln.rms_norm_backward(dy, x, w, param_grads=False),
        }
    read_only = forms(x, dy, gr, w, mean, rstd)
    for name, form in forms(*writeable).items():
        small_ran.clear()
        assert same(read_only[name](), form()), name
        assert small_ran == ["small_backward"] * 2, name
    monkeypatch.setattr(_config, "SERIAL_MAX_ELEMENTS", 64)  # (in threads)
    small_ran.clear()
    x_, dy_, w_ = writeable[0], writeable[1], writeable[3]  # (a read-only weight alone)
    assert same(numba_ln.layer_norm_backward(dy_, x_, w),
                numba_ln.layer_norm_backward(dy_, x_, w_))
    assert small_ran == ["small_backward in threads"] * 2
    small_ran.clear()
    before = dy.copy()
    with pytest.raises(ValueError, match="out"):
        numba_ln.layer_norm_backward(dy, x, w, out=dy)
    assert np.array_equal(dy, before) and small_ran == []


def test_memory_mapped_parameters_take_the_small_call(rng, small_ran, tmp_path):
    """Weights loaded with np.load(path, mmap_mode="r") (np.memmap, read-only) are read
    where they lie, as the same values in an ndarray are: the same bits, forward and
    backward."""
    x, dy = _data(rng, (4, 40))
    w = np.linspace(0.5, 1.5, 40, dtype=np.float32)
    b = np.linspace(-1.0, 1.0, 40)  # (float64: cast in the kernel)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "b.npy", b)
    wm = np.load(tmp_path / "w.npy", mmap_mode="r")
    bm = np.load(tmp_path / "b.npy", mmap_mode="r")
    assert type(wm) is np.memmap and not wm.flags.writeable
    calls = [  # (the gates' other forms read weight and bias through the same helpers)
        lambda w, b: numba_ln.layer_norm(x, w, b),
        lambda w, b: numba_ln.layer_norm_backward(dy, x, w),
    ]
    for i, call in enumerate(calls):
        small_ran.clear()
        want = call(w, b)
        got = call(wm, bm)
        assert len(small_ran) == 2 and small_ran[0] == small_ran[1], i
        assert same(got, want), i


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_vector_goes_to_the_small_kernels_as_it_is(rng, small_ran, dtype):
    """One token held as a 1-D array (decoders that normalize a token at a time): passed
    to the small kernels without (1, cols) views, with the bits of the same row in 2-D,
    fresh, into out= and in place."""
    x = _data(rng, (1, 48), dtype)[0]
    w = np.linspace(0.5, 1.5, 48, dtype=np.float32)
    forms = {"layer": lambda a, **kw: numba_ln.layer_norm(a, w, w, **kw)}
    if dtype == np.float32:  # (16-bit data: the gate's other branch, once)
        forms["rms"] = lambda a, **kw: numba_ln.rms_norm(a, w, **kw)
    for name, form in forms.items():
        small_ran.clear()
        want = form(x)[0]
        got = form(x[0])
        assert got.shape == (48,) and same(got, want), name
        out = np.empty_like(x[0])
        assert form(x[0], out=out) is out and same(out, want), name
        vector = x[0].copy()
        assert form(vector, out=vector) is vector and same(vector, want), name
        assert small_ran == ["small_norm"] * 4, name
        with pytest.raises(ValueError, match="out"):
            form(x[0], out=np.empty(47, dtype))


def test_strided_rows_take_the_small_call(rng, small_ran):
    """Rows a whole number of elements apart, forwards -- the last token of each sequence,
    x[:, -1, :], every other row, rows broadcast from one -- are read where they lie by
    the small kernels (fresh outputs), with the general path's bits; a reversed, a
    Fortran-ordered or a column-strided x, and out= with strided rows, take the general
    path."""
    h = (rng.standard_normal((5, 4, 48)) * 3.0 + 100.0).astype(np.float32)
    w = np.linspace(0.5, 1.5, 48, dtype=np.float32)
    taken = {"last token": h[:, -1, :], "every other row": h[::2, 1, :],
             "broadcast rows": np.broadcast_to(h[0, 0], (3, 48)),
             "float16": h.astype(np.float16)[:, -1, :]}
    declined = {"reversed": h[::-1, 0, :], "fortran": np.asfortranarray(h[:, 0, :]),
                "column-strided": h[:, 0, ::2]}
    for name, x in {**taken, **declined}.items():
        wx = w[:x.shape[1]]
        forms = [lambda **kw: numba_ln.layer_norm(x, wx, wx, **kw)]
        if name == "last token":  # (with statistics: the same kernel body)
            forms.append(lambda **kw: numba_ln.layer_norm(x, wx, wx, return_stats=True, **kw))
        for form in forms:
            small_ran.clear()
            got = form()
            assert small_ran == (["small_norm"] if name in taken else []), name
            assert same(got, form(axis=general_axes(1))), name
    x = taken["last token"]
    small_ran.clear()
    out = np.empty(x.shape, np.float32)
    assert same(numba_ln.layer_norm(x, out=out), numba_ln.layer_norm(x, axis=general_axes(1)))
    assert small_ran == []


def test_the_overlap_checks_span_of_a_strided_array_is_numpys_byte_bounds():
    """small_args.span, which the kernels' overlap checks read, from the lowest to past
    the highest element's byte of any layout (as NumPy's byte_bounds)."""
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # (NumPy < 2)
        byte_bounds = np.byte_bounds
    from numba_ln.cpu.small_args import span

    span_of = numba.njit(lambda a: span(a))
    h = np.zeros((5, 4, 48), np.float32)
    for a in (h, h[:, -1, :], h[::-1, 0, :], h[:, 0, ::2], np.asfortranarray(h[:, 0, :]),
              h[:0, 0, :], np.broadcast_to(h[0, 0], (3, 48)), h[:, ::-1, ::-3]):
        assert span_of(a) == byte_bounds(a), (a.shape, a.strides)


def test_out_over_a_read_only_x_is_an_error_that_writes_nothing(rng, small_ran):
    """out=x over a read-only x (the small kernels once wrote it in place): the general
    path's ValueError naming out, x as it was, in every dtype and form the gate takes."""
    for dtype in (np.float32, np.float16):
        x = _data(rng, (3, 40), dtype)[0]
        x.flags.writeable = False
        before = x.copy()
        for call in (lambda: numba_ln.layer_norm(x, out=x),
                     lambda: numba_ln.rms_norm(x, out=x, return_stats=True),
                     lambda: numba_ln.layer_norm(x[0], out=x[0])):
            with pytest.raises(ValueError, match="out"):
                call()
            assert np.array_equal(x, before)
    assert small_ran == []


@pytest.mark.parametrize("wdtype", ["float16", "bfloat16"])
def test_16_bit_parameters_on_float32_data_take_the_small_call(rng, small_ran, wdtype):
    """A 16-bit checkpoint's weight and bias on float32 activations: widened exactly in
    the kernel, where the general path widens them in NumPy (the same values), so the
    same bits."""
    if wdtype == "bfloat16":
        wdtype = pytest.importorskip("ml_dtypes").bfloat16
    x = _data(rng, (3, 40))[0]
    w = (1.0 + 0.1 * rng.standard_normal(40)).astype(wdtype)
    b = (0.1 * rng.standard_normal(40)).astype(wdtype)
    got = numba_ln.layer_norm(x, w, b)
    assert small_ran == ["small_norm"] and got.dtype == np.float32
    assert same(got, numba_ln.layer_norm(x, w, b, axis=general_axes(1)))
    assert same(got, numba_ln.layer_norm(x, w.astype(np.float32), b.astype(np.float32)))
