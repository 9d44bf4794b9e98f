"""Benchmark cases, inputs and contenders, shared by ``benchmarks/`` (pytest-benchmark) and
``python -m numba_ln.bench``.

Not part of the public API.  Optional peers (torch, onnx + onnxruntime) are imported only
when a contender that needs them is built, and are skipped with a reason when missing.

A *contender* is a zero-argument callable that runs one forward pass on fixed inputs and
returns its outputs (``y``, or ``(y, s)`` for the residual variants), so that a harness can
time it and check it against :mod:`numba_ln.reference`.  Names:

``numba_ln-out``    numba_ln writing into preallocated ``out=`` (and ``residual_out=``)
``numba_ln-alloc``  numba_ln allocating its outputs
``numpy``           the plain NumPy expression (unfused for the residual variants)
``torch``           ``torch.nn.functional.layer_norm`` / ``rms_norm`` (``x + r`` first for the
                    residual variants), ``torch.set_num_threads(threads)``
``onnxruntime``     LayerNormalization (opset 17), SimplifiedLayerNormalization, and
                    com.microsoft SkipLayerNormalization / SkipSimplifiedLayerNormalization,
                    one-node models built in memory with ``onnx.helper``; run through an
                    IOBinding into preallocated outputs (its fastest way: no per-call feed
                    conversion, no output allocation); intra-op threads = threads, inter-op 1
``line-copyto``     ``np.copyto`` of the bytes the function moves (single-threaded)
``line-prange``     a Numba ``prange`` copy of the same bytes (all threads)

The *speed line* is the faster of the two copies: what any kernel that reads x (and the
residual) once and writes y (and s) once could at best reach on this machine.
"""
import importlib.util
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import numba
import numpy as np

import numba_ln
from numba_ln import reference

FUNCTIONS = ("layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm")
NUMBA_LN = ("numba_ln-out", "numba_ln-alloc")
PEERS = ("numpy", "torch", "onnxruntime")
LINES = ("line-copyto", "line-prange")
LIBRARIES = NUMBA_LN + PEERS + LINES

EPS = {"layer_norm": 1e-5, "add_layer_norm": 1e-5, "rms_norm": 1e-6, "add_rms_norm": 1e-6}

_ALL = FUNCTIONS
_LN = ("layer_norm",)


@dataclass(frozen=True)
class Case:
    """One input shape.  ``small`` is the reduced shape used when benchmarking is disabled
    (the normal test run) and by the CLI's ``--small``; it keeps the same kernel path."""

    name: str
    shape: tuple
    small: tuple
    dtype: str = "float32"
    axis: int = -1
    functions: tuple = _LN
    note: str = ""

    def shape_for(self, small=False):
        return self.small if small else self.shape

    @property
    def rows(self):
        return math.prod(self.shape) // self.shape[self.axis]

    @property
    def cols(self):
        return self.shape[self.axis]

    def describe(self):
        axis = "" if self.axis == -1 else f", axis={self.axis}"
        return f"({', '.join(map(str, self.shape))}) {self.dtype}{axis}"


CASES = (
    Case("1x768", (1, 768), (1, 768), functions=_ALL, note="one token"),
    Case("8x4096", (8, 4096), (8, 4096)),
    Case("4096x768", (4096, 768), (64, 768), functions=_ALL),
    Case("4096x1024", (4096, 1024), (64, 1024), functions=_ALL),
    Case("4096x4096", (4096, 4096), (16, 4096), functions=_ALL),
    Case("16384x1024", (16384, 1024), (64, 1024), functions=_ALL),
    Case("65536x64", (65536, 64), (1024, 64), note="many short rows"),
    Case("1x4194304", (1, 4194304), (1, 131072), note="one huge row (split across threads)"),
    Case("4096x1024-f64", (4096, 1024), (64, 1024), dtype="float64"),
    Case("32x256x56x56-axis1", (32, 256, 56, 56), (2, 256, 8, 8), axis=1,
         note="channels-first (NCHW, normalized over C)"),
)
CASE_BY_NAME = {c.name: c for c in CASES}


def benchmark_params(func):
    """``pytest.param(case, library)`` for ``func``'s benchmarks, a case's contenders next to
    each other (they share one set of inputs)."""
    import pytest

    return [pytest.param(case, lib, id=f"{case.name}-{lib}")
            for case in cases_for(func) for lib in LIBRARIES]


def cases_for(func, names=None):
    """The cases that ``func`` is benchmarked at (optionally restricted to ``names``)."""
    chosen = CASES if names is None else [CASE_BY_NAME[n] for n in names]
    return [c for c in chosen if func in c.functions]


def is_residual(func):
    return func.startswith("add_")


def is_centered(func):
    return func in ("layer_norm", "add_layer_norm")


def bytes_moved(func, shape, dtype):
    """Bytes a forward pass must move: read x, write y (and read r, write s)."""
    n = math.prod(shape) * np.dtype(dtype).itemsize
    return 4 * n if is_residual(func) else 2 * n


# --------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    func: str
    case: Case
    x: np.ndarray
    r: np.ndarray = None
    weight: np.ndarray = None
    bias: np.ndarray = None
    eps: float = 1e-5
    small: bool = False
    nbytes: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def param_shape(self):
        """Shape that broadcasts weight/bias against x (NumPy expression)."""
        return tuple(n if a == self.case.axis % self.x.ndim else 1
                     for a, n in enumerate(self.x.shape))


def make_inputs(func, case, small=False, seed=0):
    """Random inputs (offset 1 so that centering matters), random weight and bias."""
    rng = np.random.default_rng(seed)
    shape = case.shape_for(small)
    dtype = np.dtype(case.dtype)
    x = rng.standard_normal(shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    x += 1.0
    cols = shape[case.axis]
    weight = (1.0 + 0.1 * rng.standard_normal(cols)).astype(dtype)
    bias = (0.1 * rng.standard_normal(cols)).astype(dtype) if is_centered(func) else None
    r = None
    if is_residual(func):
        r = rng.standard_normal(shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    return Inputs(func, case, x, r, weight, bias, EPS[func], small,
                  bytes_moved(func, shape, dtype))


# --------------------------------------------------------------------------- checking


def _head(a, case):
    """Leading complete rows (axis=-1) or images (channels-first): cheap to check."""
    a = np.asarray(a)
    return a[: (64 if case.axis == -1 else 1)]


def check(inputs, got, rtol=None):
    """Compare a contender's outputs (leading part) with the float64 oracle.

    Returns the largest error relative to ``max(1, |ref|)``; raises AssertionError past
    ``rtol`` (loose: 1e-3 for float32, 1e-9 for float64; this catches a broken contender,
    accuracy itself is tested in tests/).
    """
    case, func = inputs.case, inputs.func
    if rtol is None:
        rtol = 1e-9 if inputs.x.dtype == np.float64 else 1e-3
    x = _head(inputs.x, case)
    if is_residual(func):
        s_ref = x.astype(np.float64) + _head(inputs.r, case)
        src = s_ref
        y_got, s_got = got
        pairs = [("s", s_got, s_ref)]
    else:
        src = x
        y_got = got
        pairs = []
    if is_centered(func):
        y_ref = reference.layer_norm(src, inputs.weight, inputs.bias, case.axis, inputs.eps)[0]
    else:
        y_ref = reference.rms_norm(src, inputs.weight, case.axis, inputs.eps)[0]
    pairs.insert(0, ("y", y_got, y_ref))
    worst = 0.0
    for label, a, ref in pairs:
        a = _head(a, case).astype(np.float64)
        if a.shape != ref.shape:
            raise AssertionError(f"{func} {case.name}: {label} has shape {a.shape}, "
                                 f"expected {ref.shape}")
        err = float(np.max(np.abs(a - ref) / np.maximum(1.0, np.abs(ref)), initial=0.0))
        if not err <= rtol:  # also catches NaN
            raise AssertionError(f"{func} {case.name}: {label} off by {err:.3g} (> {rtol:g})")
        worst = max(worst, err)
    return worst


def check_line(inputs, got):
    """A speed-line copy must reproduce its sources exactly."""
    if is_residual(inputs.func):
        ok = np.array_equal(got[0], inputs.x) and np.array_equal(got[1], inputs.r)
    else:
        ok = np.array_equal(got, inputs.x)
    if not ok:
        raise AssertionError(f"speed-line copy for {inputs.func} {inputs.case.name} is wrong")
    return 0.0


# --------------------------------------------------------------------------- speed line

_COPY_BLOCK = 16384  # elements per prange task: 64 KiB of float32, large enough to stream


@numba.njit(parallel=True, cache=True)
def _prange_copy(dst, src):
    # Unsigned indices: Numba skips its negative-index wraparound, which stops vectorization.
    n = np.uint64(src.size)
    block = np.uint64(_COPY_BLOCK)
    for b in numba.prange((n + block - np.uint64(1)) // block):
        lo = np.uint64(b) * block
        hi = min(lo + block, n)
        for i in range(lo, hi):
            dst[i] = src[i]


@numba.njit(parallel=True, cache=True)
def _prange_copy2(y, x, s, r):
    n = np.uint64(x.size)
    block = np.uint64(_COPY_BLOCK)
    for b in numba.prange((n + block - np.uint64(1)) // block):
        lo = np.uint64(b) * block
        hi = min(lo + block, n)
        for i in range(lo, hi):
            y[i] = x[i]
        for i in range(lo, hi):
            s[i] = r[i]


def _flat(a):
    return a.reshape(-1)  # inputs are C-contiguous: a view


# --------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    library: str
    call: object  # zero-argument callable returning the outputs
    description: str = ""


def missing(module):
    """True when ``module`` cannot be imported (not installed, or blocked)."""
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def build(inputs, threads, libraries=LIBRARIES):
    """Contenders for ``inputs``: ``({library: Contender}, {library: skip reason})``."""
    built, skipped = {}, {}
    for lib in libraries:
        maker = _MAKERS[lib]
        try:
            c = maker(inputs, threads)
        except _Skip as exc:
            skipped[lib] = str(exc)
            continue
        built[lib] = c
    return built, skipped


class _Skip(Exception):
    pass


def _numba_ln_out(inp, threads):
    y = np.empty_like(inp.x)
    f = getattr(numba_ln, inp.func)
    if inp.func == "layer_norm":
        call = partial(f, inp.x, inp.weight, inp.bias, axis=inp.case.axis, eps=inp.eps, out=y)
    elif inp.func == "rms_norm":
        call = partial(f, inp.x, inp.weight, axis=inp.case.axis, eps=inp.eps, out=y)
    else:
        s = np.empty_like(inp.x)
        args = (inp.x, inp.r, inp.weight) + ((inp.bias,) if inp.bias is not None else ())
        call = partial(f, *args, axis=inp.case.axis, eps=inp.eps, out=y, residual_out=s)
    return Contender("numba_ln-out", call, f"numba_ln.{inp.func}(..., out=)")


def _numba_ln_alloc(inp, threads):
    f = getattr(numba_ln, inp.func)
    params = (inp.weight,) + ((inp.bias,) if inp.bias is not None else ())
    args = ((inp.x, inp.r) if is_residual(inp.func) else (inp.x,)) + params
    return Contender("numba_ln-alloc", partial(f, *args, axis=inp.case.axis, eps=inp.eps),
                     f"numba_ln.{inp.func}(...)")


def _numpy_ln(x, g, b, eps, axis):
    mean = x.mean(axis, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis, keepdims=True) + eps) * g + b


def _numpy_rms(x, g, eps, axis):
    return x / np.sqrt(np.mean(x * x, axis, keepdims=True) + eps) * g


def _numpy(inp, threads):
    shape = inp.param_shape
    g = inp.weight.reshape(shape)
    b = None if inp.bias is None else inp.bias.reshape(shape)
    x, r, eps, axis = inp.x, inp.r, inp.eps, inp.case.axis
    if inp.func == "layer_norm":
        call = partial(_numpy_ln, x, g, b, eps, axis)
        text = "(x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * g + b"
    elif inp.func == "rms_norm":
        call = partial(_numpy_rms, x, g, eps, axis)
        text = "x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * g"
    elif inp.func == "add_layer_norm":
        def call():
            s = x + r
            return _numpy_ln(s, g, b, eps, axis), s
        text = "s = x + r, then the layer_norm expression"
    else:
        def call():
            s = x + r
            return _numpy_rms(s, g, eps, axis), s
        text = "s = x + r, then the rms_norm expression"
    return Contender("numpy", call, text)


def _torch(inp, threads):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise _Skip("torch is not installed (pip install 'numba_ln[bench]')") from None

    torch.set_num_threads(threads)
    if inp.func in ("rms_norm", "add_rms_norm") and not hasattr(F, "rms_norm"):
        raise _Skip(f"torch {torch.__version__} has no F.rms_norm")
    x = torch.from_numpy(inp.x)
    r = None if inp.r is None else torch.from_numpy(inp.r)
    g = torch.from_numpy(inp.weight)
    b = None if inp.bias is None else torch.from_numpy(inp.bias)
    eps = inp.eps
    cols = (inp.x.shape[inp.case.axis],)
    channels_first = inp.case.axis != -1
    if channels_first and inp.func != "layer_norm":
        raise _Skip("channels-first only benchmarked for layer_norm")

    if inp.func == "layer_norm":
        if channels_first:
            # The usual idiom (ConvNeXt-style LayerNorm on NCHW): normalize the last axis of
            # an NHWC view; F.layer_norm copies the view to contiguous first.  The result is
            # returned as an NCHW view of NHWC memory, as torch code would use it.
            def call():
                return F.layer_norm(x.permute(0, 2, 3, 1), cols, g, b, eps).permute(0, 3, 1, 2)
            text = "F.layer_norm(x.permute(0, 2, 3, 1), ...).permute(0, 3, 1, 2)"
        else:
            call = partial(F.layer_norm, x, cols, g, b, eps)
            text = "F.layer_norm(x, ...)"
    elif inp.func == "rms_norm":
        call = partial(F.rms_norm, x, cols, g, eps)
        text = "F.rms_norm(x, ...)"
    elif inp.func == "add_layer_norm":
        def call():
            s = x + r
            return F.layer_norm(s, cols, g, b, eps), s
        text = "s = x + r; F.layer_norm(s, ...)"
    else:
        def call():
            s = x + r
            return F.rms_norm(s, cols, g, eps), s
        text = "s = x + r; F.rms_norm(s, ...)"
    return Contender("torch", call, f"torch {torch.__version__}: {text}")


_ORT_OPS = {
    "layer_norm": ("", "LayerNormalization"),
    "rms_norm": ("", "SimplifiedLayerNormalization"),
    "add_layer_norm": ("com.microsoft", "SkipLayerNormalization"),
    "add_rms_norm": ("com.microsoft", "SkipSimplifiedLayerNormalization"),
}


def _ort_model(inp):
    """A one-node (three for channels-first) ONNX model of the function, built in memory."""
    from onnx import TensorProto, helper

    elem = TensorProto.DOUBLE if inp.x.dtype == np.float64 else TensorProto.FLOAT
    shape = list(inp.x.shape)
    channels_first = inp.case.axis != -1
    domain, op = _ORT_OPS[inp.func]
    names = ["x"] + (["r"] if is_residual(inp.func) else []) + ["g"] + (
        ["b"] if inp.bias is not None else [])
    feeds = {"x": inp.x, "r": inp.r, "g": inp.weight, "b": inp.bias}
    value_info = [helper.make_tensor_value_info(n, elem, list(feeds[n].shape)) for n in names]
    nodes = []
    src, dst = "x", "y"
    if channels_first:
        if inp.func != "layer_norm":
            raise _Skip("channels-first only benchmarked for layer_norm")
        # LayerNormalization normalizes trailing axes: transpose NCHW -> NHWC and back, as
        # exporters emit for a channels-first LayerNorm.
        nodes.append(helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 3, 1]))
        src, dst = "xt", "yt"
    attrs = {"epsilon": inp.eps}
    if not is_residual(inp.func):
        attrs["axis"] = -1
        inputs = [src] + names[1:]
        outputs = [dst]
    else:
        inputs = names
        outputs = ["y", "", "", "s"]  # output, (mean), (inv_std_var), input_skip_bias_sum
    nodes.append(helper.make_node(op, inputs, outputs, domain=domain, **attrs))
    if channels_first:
        nodes.append(helper.make_node("Transpose", ["yt"], ["y"], perm=[0, 3, 1, 2]))
    out_info = [helper.make_tensor_value_info("y", elem, shape)]
    if is_residual(inp.func):
        out_info.append(helper.make_tensor_value_info("s", elem, shape))
    graph = helper.make_graph(nodes, f"numba_ln_bench_{inp.func}", value_info, out_info)
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    return model, names, feeds, op


def _onnxruntime(inp, threads):
    try:
        import onnx  # noqa: F401  (the model builder needs it)
        import onnxruntime as ort
    except ImportError as exc:
        raise _Skip(f"{exc.name or 'onnx/onnxruntime'} is not installed "
                    "(pip install 'numba_ln[bench]')") from None

    model, names, feeds, op = _ort_model(inp)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # e.g. the op is not in this build's CPU provider
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise _Skip(f"onnxruntime {ort.__version__} CPU cannot run {op}: {first}") from None
    binding = session.io_binding()
    for n in names:
        binding.bind_cpu_input(n, feeds[n])
    y = np.empty_like(inp.x)
    outs = [y]
    binding.bind_output("y", "cpu", 0, y.dtype, list(y.shape), y.ctypes.data)
    if is_residual(inp.func):
        s = np.empty_like(inp.x)
        outs.append(s)
        binding.bind_output("s", "cpu", 0, s.dtype, list(s.shape), s.ctypes.data)
    run = partial(session.run_with_iobinding, binding)
    result = tuple(outs) if is_residual(inp.func) else y

    def call():
        run()
        return result

    c = Contender("onnxruntime", call, f"onnxruntime {ort.__version__}: {op} (IOBinding)")
    c.session = session  # keep alive with the binding
    return c


def _line_copyto(inp, threads):
    y = np.empty_like(inp.x)
    if is_residual(inp.func):
        s = np.empty_like(inp.r)
        x, r = inp.x, inp.r

        def call():
            np.copyto(y, x)
            np.copyto(s, r)
            return y, s
        return Contender("line-copyto", call, "np.copyto(y, x); np.copyto(s, r)")
    x = inp.x

    def call():
        np.copyto(y, x)
        return y
    return Contender("line-copyto", call, "np.copyto(y, x)")


def _line_prange(inp, threads):
    y = np.empty_like(inp.x)
    if is_residual(inp.func):
        s = np.empty_like(inp.r)
        args = (_flat(y), _flat(inp.x), _flat(s), _flat(inp.r))

        def call():
            _prange_copy2(*args)
            return y, s
        return Contender("line-prange", call, "Numba prange copy of x -> y and r -> s")
    args = (_flat(y), _flat(inp.x))

    def call():
        _prange_copy(*args)
        return y
    return Contender("line-prange", call, "Numba prange copy x -> y")


_MAKERS = {
    "numba_ln-out": _numba_ln_out,
    "numba_ln-alloc": _numba_ln_alloc,
    "numpy": _numpy,
    "torch": _torch,
    "onnxruntime": _onnxruntime,
    "line-copyto": _line_copyto,
    "line-prange": _line_prange,
}


def check_contender(inputs, library, got):
    return check_line(inputs, got) if library in LINES else check(inputs, got)


# --------------------------------------------------------------------------- start-up

# What a new process pays before its first results: import numba_ln, then the first call
# of each public function on a small input (serial path) and a 256 x 1024 input (parallel
# path), which loads every kernel those paths use from Numba's cache (or compiles it).
FIRST_CALLS_SCRIPT = """\
import time
t0 = time.perf_counter()
import numpy as np
import numba_ln
t1 = time.perf_counter()
for shape in ((8, 768), (256, 1024)):
    x = np.ones(shape, np.float32)
    x[:, ::3] = 2.0
    w = np.ones(shape[-1], np.float32)
    numba_ln.layer_norm(x, w, w)
    numba_ln.rms_norm(x, w)
    numba_ln.add_layer_norm(x, x, w, w)
    numba_ln.add_rms_norm(x, x, w)
t2 = time.perf_counter()
print("IMPORT_S", t1 - t0, "FIRST_CALLS_S", t2 - t1)
"""
# One first call (layer_norm, serial path): the short cold-compile check of the normal,
# benchmark-disabled test run.
FIRST_CALL_SMALL_SCRIPT = """\
import time
t0 = time.perf_counter()
import numpy as np
import numba_ln
t1 = time.perf_counter()
numba_ln.layer_norm(np.arange(6.0, dtype=np.float32).reshape(2, 3))
t2 = time.perf_counter()
print("IMPORT_S", t1 - t0, "FIRST_CALLS_S", t2 - t1)
"""
BASELINE_SCRIPT = "import numba"


def _project_env(cache_dir=None):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(numba_ln.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return env


def run_script(script, cache_dir=None, timeout=300):
    """Run ``python -c script`` in a fresh process: (wall seconds, {key: float} it printed)."""
    env = _project_env(cache_dir)
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed ({done.returncode}):\n{done.stderr[-2000:]}")
    words = done.stdout.split()
    parsed = {}
    for key, value in zip(words[::2], words[1::2]):
        try:
            parsed[key] = float(value)
        except ValueError:
            pass
    return wall, parsed


def startup_overhead(repeats=5, progress=None):
    """Warm-cache start-up cost of numba_ln over ``python -c "import numba"``.

    One untimed priming run fills the cache (the user's normal cache location), then
    ``repeats`` interleaved pairs.  Returns a dict of medians (seconds).
    """
    run_script(FIRST_CALLS_SCRIPT)
    base, ours, inner = [], [], []
    for i in range(repeats):
        if progress:
            progress(f"start-up: run {i + 1}/{repeats}")
        base.append(run_script(BASELINE_SCRIPT)[0])
        wall, parsed = run_script(FIRST_CALLS_SCRIPT)
        ours.append(wall)
        inner.append(parsed)
    med = float(np.median(ours))
    med_base = float(np.median(base))
    return {
        "import_numba_s": med_base,
        "numba_ln_first_calls_s": med,
        "overhead_s": float(np.median(np.subtract(ours, base))),
        "in_process_import_s": float(np.median([p.get("IMPORT_S", np.nan) for p in inner])),
        "in_process_first_calls_s": float(np.median([p.get("FIRST_CALLS_S", np.nan)
                                                     for p in inner])),
        "repeats": repeats,
    }
