"""numba_ln on dask arrays (numba_ln/dask/): lazy graphs whose values are the NumPy path's,
bit for bit where the normalized axes are in one chunk, exact far from zero where they are
split (a tree of Chan-merged partials), with no rechunk of x, argument errors at call
time, on an in-process LocalCluster (module fixture) and once on spawned worker processes.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import numba_ln  # noqa: E402
from numba_ln import reference  # noqa: E402
from numba_ln.dask import _budget  # noqa: E402
from _oracle import assert_close  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNCS = ("layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _data(shape, dtype=np.float32, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 2 + offset).astype(dtype)


def _call(func, x, r, w, b, axis, **kw):
    f = getattr(numba_ln, func)
    args = (x,) + ((r,) if func.startswith("add_") else ()) + (w,)
    if "layer" in func:
        args += (b,)
    return f(*args, axis=axis, **kw)


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _assert_lazy_graph(results):
    """Every result is a dask array, and no graph holds a rechunk layer."""
    for a in results:
        assert isinstance(a, da.Array), type(a)
        layers = list(a.dask.layers)
        assert not [n for n in layers if n.startswith("rechunk")], layers


# (shape, axis, chunks with the normalized axes in one chunk, chunks with them split)
LAYOUTS = {
    "trailing": ((96, 200), -1, (40, 200), (96, 64)),
    "tuple": ((12, 10, 30), (1, 2), (5, 10, 30), (12, 3, 30)),
    "channels-first": ((3, 40, 7, 6), 1, (2, 40, 4, 6), (3, 12, 7, 6)),
}


def _inputs(layout, func, dtype=np.float32, offset=0.0):
    shape, axis, whole, split = LAYOUTS[layout]
    x = _data(shape, dtype, offset)
    axes = (axis,) if isinstance(axis, int) else axis
    norm = tuple(shape[a] for a in axes)
    w = _data(norm, dtype, 1.0, seed=1)
    b = _data(norm, dtype, 0.0, seed=2)
    r = _data(shape, dtype, 0.0, seed=3) if func.startswith("add_") else None
    return x, r, w, b, axis, whole, split


def _per_block(func, x, r, w, b, axis, chunks):
    """y of the CPU path run on each block on its own, assembled: what the tasks compute.
    (With return_stats, as the tasks: another kernel variant may differ in the last bits
    when one was loaded from Numba's cache and the other compiled in this process.)"""
    y = np.empty(x.shape, numba_ln.layer_norm(x[:1, ...]).dtype)
    bounds = [np.cumsum((0,) + c) for c in chunks]
    for index in np.ndindex(*(len(c) for c in chunks)):
        sl = tuple(slice(e[i], e[i + 1]) for e, i in zip(bounds, index))
        y[sl] = _call(func, x[sl], None if r is None else r[sl], w, b, axis,
                      return_stats=True)[0]
    return y


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("func", FUNCS)
def test_whole_chunks_are_bit_identical_to_numpy(client, func, layout):
    x, r, w, b, axis, whole, _ = _inputs(layout, func)
    xd = da.from_array(x, chunks=whole)
    rd = None if r is None else da.from_array(r, chunks=whole)
    got = _as_tuple(_call(func, xd, rd, w, b, axis, return_stats=True))
    _assert_lazy_graph(got)
    want = _as_tuple(_call(func, x, r, w, b, axis, return_stats=True))
    # unweighted: the kernels' output for a row never depends on where it sits.  Bit for
    # bit only when the two calls run the same machine code: the small-call and the rows
    # kernels, one compiled here and one loaded from Numba's cache, may differ in the last
    # bits of a row's mean (README, "Same bits"; it depends on which tests ran first).
    plain = _as_tuple(_call(func, xd, rd, None, None, axis))
    for g, e in zip(dask.compute(*plain), _as_tuple(_call(func, x, r, None, None, axis))):
        assert g.dtype == e.dtype
        _assert_same_up_to_compilation(g, e)
    computed = dask.compute(*got)
    for g, e in zip(computed, want):
        assert g.shape == e.shape and g.dtype == e.dtype
    if r is not None:
        assert np.array_equal(computed[1], want[1])  # s: one rounding, in any kernel
    for g, e in zip(computed[1:], want[1:]):  # the statistics
        _assert_same_up_to_compilation(g, e)
    blocks = _per_block(func, x, r, w, b, axis, xd.chunks)
    assert np.array_equal(computed[0], blocks)  # each task is the CPU path on its block
    _assert_same_up_to_compilation(computed[0], want[0])


def _assert_same_up_to_compilation(got, want):
    """Equal, or within float32's accuracy bound of each other: two compilations of one
    kernel may sum a float32 row in another lane order (README, "Same bits")."""
    if not np.array_equal(got, want):
        assert_close(got, want.astype(np.float64), scale=4)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("func", FUNCS)
def test_split_axes_are_exact_far_from_zero(client, func, layout):
    x, r, w, b, axis, _, split = _inputs(layout, func, offset=1e4)
    xd = da.from_array(x, chunks=split)
    axes = (axis,) if isinstance(axis, int) else axis
    assert max(len(xd.chunks[a]) for a in axes) >= 3
    with dask.config.set(split_every=2):
        got = _as_tuple(_call(func, xd, r, w, b, axis, return_stats=True))
    _assert_lazy_graph(got)
    assert any("-stats-partial" in n for n in got[0].dask.layers)  # the combine step
    computed = dask.compute(*got)
    centered = "layer" in func
    s = x if r is None else (x + r)
    if centered:
        y_ref, mean_ref, rstd_ref = reference.layer_norm(s, w, b, axis=axis)
    else:
        y_ref, rstd_ref = reference.rms_norm(s, w, axis=axis)
    assert_close(computed[0], y_ref)  # float32 within 2e-6 at offset 1e4
    if r is not None:
        assert np.array_equal(computed[1], s)
    rstd = computed[-1]
    assert rstd.dtype == np.float32 and rstd.shape == rstd_ref.shape
    assert_close(rstd, rstd_ref, scale=0.0)
    if centered:
        np.testing.assert_allclose(computed[-2], mean_ref, rtol=1e-7)


@pytest.mark.parametrize("keepdims", [False, True])
def test_moments_whole_and_split(client, keepdims):
    x = _data((50, 4, 90), np.float64, offset=1e6)
    for chunks in ((20, 4, 90), (50, 2, 30)):
        xd = da.from_array(x, chunks=chunks)
        mean, var = numba_ln.moments(xd, axis=(1, 2), keepdims=keepdims)
        _assert_lazy_graph((mean, var))
        m, v = dask.compute(mean, var)
        em, ev = numba_ln.moments(x, axis=(1, 2), keepdims=keepdims)
        assert m.shape == em.shape and v.dtype == ev.dtype == np.float64
        if chunks[1] == 4:
            assert np.array_equal(m, em) and np.array_equal(v, ev)
        rm, rv = reference.moments(x, axis=(1, 2))
        np.testing.assert_allclose(m.reshape(rm.shape), rm, rtol=1e-15)
        np.testing.assert_allclose(v.reshape(rv.shape), rv, rtol=1e-11)


class _Counter:
    def __init__(self, func):
        self.func, self.calls = func, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.func(*args, **kwargs)


def test_nothing_runs_before_compute(monkeypatch):
    from numba_ln import _engine
    from numba_ln.cpu import given_stats
    from numba_ln.dask import _blocks

    counters = {}
    for module, name in ((_engine, "normalize"), (_blocks, "given_block"),
                         (given_stats, "given_parallel")):
        counters[name] = _Counter(getattr(module, name))
        monkeypatch.setattr(module, name, counters[name])
    x = _data((64, 300))
    results = []
    for chunks in ((16, 300), (64, 100)):
        xd = da.from_array(x, chunks=chunks)
        results += list(numba_ln.layer_norm(xd, np.ones(300, np.float32), return_stats=True))
        results += list(numba_ln.add_rms_norm(xd, xd, return_stats=True))
        results += list(numba_ln.moments(xd))
    assert sum(c.calls for c in counters.values()) == 0  # no kernel ran, not even on meta
    dask.compute(*results, scheduler="sync")
    assert counters["normalize"].calls > 0 and counters["given_block"].calls > 0


@pytest.mark.parametrize("kind", ["numpy", "dask-same-chunks", "dask-other-chunks"])
@pytest.mark.parametrize("chunks", [(32, 120), (32, 40)])
def test_weight_bias_numpy_or_dask_and_dask_residual(client, kind, chunks):
    x = _data((64, 120), offset=3.0)
    r = _data((64, 120), seed=5)
    w, b = _data(120, seed=6), _data(120, seed=7)
    xd, rd = da.from_array(x, chunks=chunks), da.from_array(r, chunks=chunks)
    if kind == "numpy":
        wd, bd = w, b
    else:
        c = chunks[1] if kind == "dask-same-chunks" else 50
        wd, bd = da.from_array(w, chunks=c), da.from_array(b, chunks=c)
    y, s = numba_ln.add_layer_norm(xd, rd, wd, bd)
    if kind != "dask-other-chunks":
        _assert_lazy_graph((y, s))
    ye, se = numba_ln.add_layer_norm(x, r, w, b)
    yc, sc = dask.compute(y, s)
    assert np.array_equal(sc, se)
    assert_close(yc, reference.layer_norm(se, w, b)[0])
    # a residual that broadcasts (NumPy or dask), and a weight that broadcasts
    y2, s2 = numba_ln.add_rms_norm(xd, da.from_array(r[:1]), np.float32(2.0))
    y2e, s2e = numba_ln.add_rms_norm(x, r[:1], np.float32(2.0))
    assert np.array_equal(s2.compute(), s2e)
    assert_close(y2.compute(), reference.rms_norm(s2e, 2.0)[0])


def test_mixed_dtypes_and_integers(client):
    x = np.arange(60 * 40).reshape(60, 40) % 17
    for chunks in ((20, 40), (20, 10)):
        xd = da.from_array(x, chunks=chunks)
        y = numba_ln.layer_norm(xd)
        assert y.dtype == np.float64
        assert_close(y.compute(), reference.layer_norm(x)[0])
        r = _data((60, 40))
        y, s = numba_ln.add_layer_norm(da.from_array(r, chunks=chunks), xd)
        assert y.dtype == s.dtype == np.float64
        assert np.array_equal(s.compute(), numba_ln.add_layer_norm(r, x)[1])


@pytest.mark.parametrize("chunks", [((0, 1), (8,)), ((0, 1), (3, 5))])
def test_one_row_in_several_chunks(client, chunks):
    """A length-1 axis in several chunks, as compute_chunk_sizes() leaves a filter that
    kept one row: dask's chunk unification made it one chunk broadcast over the others,
    and y came back with two rows (the declared shape one), or the graph lost a
    dependency (statistics, the fused forms, moments)."""
    xn = _data((1, 8))
    x = da.from_array(xn, chunks=chunks)
    for func in FUNCS:
        r = x if func.startswith("add_") else None
        results = dask.compute(*_as_tuple(_call(func, x, r, None, None, -1, return_stats=True)))
        expected = _call(func, xn, None if r is None else xn, None, None, -1, return_stats=True)
        for got, want in zip(results, expected):
            assert got.shape == want.shape
            assert_close(got, want)
    mean, var = dask.compute(*numba_ln.moments(x))
    assert_close(mean, xn.astype(np.float64).mean(-1))
    assert_close(var, xn.astype(np.float64).var(-1))


def test_a_parameter_of_one_element_in_several_chunks(client):
    """A dask weight of shape (1,) in chunks ((0, 1),) (compute_chunk_sizes() after a
    filter) broadcast to the normalized shape: da.broadcast_to refused it with NumPy's
    "could not be broadcast" at the call."""
    xn = _data((4, 6))
    w = da.from_array(np.array([3.0], np.float32), chunks=((0, 1),))
    for chunks in ((2, 6), (2, 3)):  # the whole and the split plans
        x = da.from_array(xn, chunks=chunks)
        assert_close(numba_ln.layer_norm(x, w, w).compute(),
                     numba_ln.layer_norm(xn, np.float32([3.0]), np.float32([3.0])))


@pytest.mark.parametrize("func", FUNCS)
def test_statistics_of_every_axis_when_split(client, func):
    """Every axis normalized and split over chunks: the statistics are 0-d per block, and
    rstd raised a TypeError at compute time (NumPy's ufuncs give scalars there)."""
    xn = _data((2, 6), offset=3.0)
    for x, axis in ((da.from_array(xn[0], chunks=2), -1),
                    (da.from_array(xn, chunks=(1, 3)), (0, 1))):
        results = _call(func, x, x if func.startswith("add_") else None, None, None, axis,
                        return_stats=True)
        host = x.compute()
        expected = _call(func, host, host if func.startswith("add_") else None, None, None,
                         axis, return_stats=True)
        for got, want in zip(dask.compute(*results), expected):
            assert got.shape == want.shape
            assert_close(got, want)


def test_nan_rows_propagate_when_split(client):
    x = _data((6, 90))
    x[2, 70] = np.nan
    y = numba_ln.layer_norm(da.from_array(x, chunks=(3, 30))).compute()
    assert np.isnan(y[2]).all() and not np.isnan(np.delete(y, 2, 0)).any()


def test_rows_holding_inf_when_split(client):
    """A row holding +inf has mean inf (NaN with -inf too), as NumPy's: the split plan's
    merge of partial statistics (Chan's form) gave NaN, and warned; and so did a chunk
    whose first element was the inf (its partial's shift)."""
    import warnings

    x = _data((4, 16))
    x[0, 8] = x[3, 3] = x[3, 5] = np.inf  # (x[0, 8]: the second chunk's first element)
    x[1, 3], x[1, 12], x[2, 3] = np.inf, -np.inf, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, var = numba_ln.moments(da.from_array(x, chunks=(4, 8)))
        mean, var = mean.compute(), var.compute()
    assert mean[0] == mean[3] == np.inf and np.isnan(mean[1:3]).all()
    assert np.isnan(var).all()


@pytest.mark.parametrize("chunks", [(2, 12), (2, 5)])  # whole rows; split rows
def test_eps_zero_constant_rows_are_silent(client, chunks):
    """A constant row with eps=0 has rstd inf and y NaN (README), without the division
    warning the NumPy path never gave (the dask blocks computed rstd in NumPy)."""
    import warnings

    x = np.ones((4, 12), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for func in ("layer_norm", "rms_norm"):
            got = getattr(numba_ln, func)(da.from_array(x * (func == "layer_norm"), chunks=chunks),
                                          eps=0.0, return_stats=True)
            y, rstd = (v.compute() for v in (got[0], got[-1]))
            assert np.isnan(y).all() and (rstd == np.inf).all()
        # the NumPy path's general path (other axes) too
        assert (numba_ln.layer_norm(x, axis=0, eps=0.0, return_stats=True)[2] == np.inf).all()


@pytest.mark.parametrize("chunks", [(4, 24), (4, 5)])  # whole rows; split rows
def test_numpy_parameters_are_read_at_the_call(client, chunks):
    """A NumPy weight updated in place after the call (a training step) is not read by
    the lazy result: one plan read the caller's array at compute time, the other a copy."""
    x = _data((8, 24))
    w = np.ones(24, np.float32)
    y = numba_ln.rms_norm(da.from_array(x, chunks=chunks), w)
    w[:] = 5.0
    assert_close(y.compute(), reference.rms_norm(x)[0])


@pytest.mark.parametrize("name", ["out", "residual_out"])
def test_out_arguments_are_refused_with_advice(name):
    xd = da.ones((4, 8), chunks=2)
    kwargs = {name: np.empty((4, 8))}
    with pytest.raises(TypeError, match=rf"{name}= cannot be used .* immutable.*"
                                        r"dask\.array\.store"):
        numba_ln.add_layer_norm(xd, xd, **kwargs)


BAD = [
    (dict(axis=2), ValueError),
    (dict(axis=(0, 0)), ValueError),
    (dict(axis=1.0), TypeError),
    (dict(eps=-1.0), ValueError),
    (dict(weight=np.ones(5)), ValueError),
    (dict(weight="dask-5"), ValueError),
    (dict(bias=np.ones(6, complex)), TypeError),
    (dict(x="complex"), TypeError),
    (dict(x="longdouble"), TypeError),
]


@pytest.mark.parametrize("kwargs,error", BAD, ids=[str(i) for i in range(len(BAD))])
def test_argument_errors_at_call_time_with_the_numpy_messages(kwargs, error):
    kwargs = dict(kwargs)
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    x = x.astype({"complex": np.complex64, "longdouble": np.longdouble}.get(kwargs.pop("x", None),
                                                                       x.dtype))
    dask_kwargs = dict(kwargs)
    if isinstance(kwargs.get("weight"), str):  # "dask-5": a dask weight of the wrong shape
        kwargs["weight"], dask_kwargs["weight"] = np.ones(5), da.ones(5)
    with pytest.raises(error) as numpy_error:
        numba_ln.layer_norm(x, **kwargs)
    with pytest.raises(error) as dask_error:
        numba_ln.layer_norm(da.from_array(x, chunks=2), **dask_kwargs)
    assert str(dask_error.value) == str(numpy_error.value)


def test_residual_shape_and_unknown_chunks_are_errors():
    xd = da.ones((4, 6), chunks=2)
    with pytest.raises(ValueError, match="residual of shape"):
        numba_ln.add_layer_norm(xd, da.ones((3, 6)))
    unknown = xd[xd[:, 0] > 0]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        numba_ln.layer_norm(unknown)


def test_thread_budget(client, monkeypatch):
    import numba

    # (until the first parallel launch in the process, whatever the layer, task_threads
    # leaves the threads alone (_threading.needs_lock): run alone, this test failed)
    numba_ln.layer_norm(np.ones((512, 512), np.float32))
    # in the fixture's worker (2 threads): cores // 2 numba threads per task
    cores = numba.config.NUMBA_NUM_THREADS
    assert client.submit(_budget.task_threads, pure=False).result() == max(1, cores // 2)
    assert _budget.task_threads() is None  # the main thread: left alone
    monkeypatch.setenv(_budget.ENV, "1")
    before = numba.get_num_threads()
    with _budget.budget():
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    monkeypatch.setenv(_budget.ENV, "inherit")
    assert _budget.task_threads() is None
    monkeypatch.setenv(_budget.ENV, "auto")
    monkeypatch.setattr(_budget._threading, "needs_lock", lambda: True)
    assert client.submit(_budget.task_threads, pure=False).result() is None  # no TBB
    monkeypatch.setenv(_budget.ENV, "many")
    with pytest.raises(ValueError, match=_budget.ENV):
        _budget.task_threads()


def test_spawned_worker_processes():
    x = _data((64, 96), offset=100.0)
    w = _data(96, seed=1)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        whole = numba_ln.layer_norm(da.from_array(x, chunks=(16, 96)))
        split = numba_ln.rms_norm(da.from_array(x, chunks=(32, 32)), w)
        got_whole, got_split = c.compute([whole, split], sync=True)
        threads = c.submit(_budget.task_threads, pure=False).result()
    # (Across processes: the worker may have compiled what this process loaded from the
    # cache, or the other way round; see _assert_same_up_to_compilation.)
    _assert_same_up_to_compilation(got_whole, numba_ln.layer_norm(x))
    assert_close(got_split, reference.rms_norm(x, w)[0])
    assert threads == 1  # a nanny's worker: dask's threads are the parallelism


def test_importing_numba_ln_does_not_import_dask():
    code = ("import sys, numpy as np, numba_ln\n"
            "numba_ln.layer_norm(np.ones((2, 4)), axis=(0, 1))\n"
            "print(sorted(m for m in ('dask', 'distributed', 'numba_ln.dask') "
            "if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_docs_example_runs():
    import re

    text = open(os.path.join(ROOT, "docs", "dask.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/dask.md block {i}", "exec"), {"__name__": "docs"})
