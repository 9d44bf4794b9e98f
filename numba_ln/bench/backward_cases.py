"""``python -m numba_ln.bench --backward``: layer_norm_backward and rms_norm_backward
against torch and the NumPy formula, as fractions of their speed line.

Cases (``BACKWARD_CASES``): (4096, 768), (4096, 1024), (16384, 1024) and (4096, 4096)
float32, the forward suite's cases of those names (with their reduced shapes for
``--small`` and the normal test run), and (4096, 1024) in bfloat16 and float16, the
``--half`` suite's cases (x, dy and the weight in the 16-bit dtype, numba_ln's
statistics float32 as its forward returns them, torch's its own forward's).  Inputs: x
(offset 1), dy, a weight, and the forward's statistics (``return_stats=True``), as a
training step has them.

Contenders (``BACKWARD_CONTENDERS``; each returns ``(dx, dweight[, dbias])``):

``numba_ln-out``        ``layer_norm_backward(dy, x, w, mean=, rstd=, out=dx)``
``numba_ln-alloc``      the same, allocating dx
``numba_ln-recompute``  out=, the statistics recomputed from x (no mean/rstd passed)
``numpy``               the formula in float32 NumPy (``backward_numpy``; not for 16-bit)
``torch``               layer_norm: ``torch.ops.aten.native_layer_norm_backward`` with all
                        three outputs (``output_mask [True, True, True]``) and the forward's
                        mean/rstd; rms_norm: autograd of ``F.rms_norm``
                        (``torch.autograd.grad(y, (x, w), dy, retain_graph=True)``: only
                        the backward is timed)
``line-copyto``, ``line-prange``, ``line-stream``  copies of x (2 of the 3 arrays a
                        backward moves: lines.py); the speed line of a round is **1.5x the
                        fastest of the three**, as the backward reads x and dy and writes dx

The report and the result dicts have the forward suite's layout (report.format_case,
targets.BACKWARD_TARGETS read them); figures are medians over interleaved rounds of
per-round ratios (timing.measure).  torch is imported only when its contender is built.
"""
from dataclasses import dataclass, field
from functools import partial

import numpy as np

import numba_ln
from numba_ln import reference

from .base import Contender, Skip
from .cases import CASE_BY_NAME
from .half_cases import HALF_CASE_BY_NAME
from .lines import LINES, fastest_copies, prange_copy, stream_copy1
from .peers_torch import _import as _import_torch
from .timing import measure, median, ratio

BACKWARD_CASES = tuple(CASE_BY_NAME[n] for n in ("4096x768", "4096x1024", "16384x1024",
                                                  "4096x4096")) + tuple(
    HALF_CASE_BY_NAME[n] for n in ("4096x1024-bf16", "4096x1024-f16"))
BACKWARD_FUNCTIONS = {"layer_norm_backward": (True, 1e-5), "rms_norm_backward": (False, 1e-6)}
BACKWARD_CONTENDERS = ("numba_ln-out", "numba_ln-alloc", "numba_ln-recompute", "numpy",
                       "torch") + LINES
LINE_FACTOR = 1.5  # the backward moves 3 arrays, the forward's copy line 2
# A broken contender fails; accuracy itself is tested in tests/.  16-bit dx is rounded to
# 8 (bfloat16) or 11 (float16) significant bits, and torch's 16-bit dweight was off by 6%
# (bfloat16) and 0.7% (float16) of its largest element at (4096, 1024).
RTOL = {"float32": 1e-3, "bfloat16": 0.1, "float16": 2e-2}


@dataclass
class BackwardInputs:
    func: str
    case: object
    x: np.ndarray
    dy: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    stats: dict  # {"mean": ..., "rstd": ...} (rstd only for RMSNorm), keepdims
    eps: float
    small: bool = False
    expected: dict = field(default_factory=dict)

    @property
    def centered(self):
        return BACKWARD_FUNCTIONS[self.func][0]

    @property
    def nbytes(self):
        """Bytes one call must move: x and dy read, dx written."""
        return 3 * self.x.nbytes


def make_inputs(func, case, small=False, seed=0):
    centered, eps = BACKWARD_FUNCTIONS[func]
    rng = np.random.default_rng(seed)
    shape = case.shape_for(small)
    dtype = _numpy_dtype(case.dtype)
    x = (rng.standard_normal(shape, dtype=np.float32) + np.float32(1)).astype(dtype)
    dy = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    cols = shape[-1]
    weight = (1.0 + 0.1 * rng.standard_normal(cols)).astype(dtype)
    bias = (0.1 * rng.standard_normal(cols)).astype(np.float32)
    if centered:
        _, mean, rstd = numba_ln.layer_norm(x, weight, bias, eps=eps, return_stats=True)
        stats = {"mean": mean, "rstd": rstd}
    else:
        _, rstd = numba_ln.rms_norm(x, weight, eps=eps, return_stats=True)
        stats = {"rstd": rstd}
    return BackwardInputs(func, case, x, dy, weight, bias, stats, eps, small)


def _numpy_dtype(name):
    if name == "bfloat16":
        import ml_dtypes  # (installed with numba_ln's bench extra, as for --half)

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


# --- checks -----------------------------------------------------------------------------------

def _expected(inp):
    """float64 dx of the first 64 rows and dweight (dbias) of all rows, computed once."""
    if not inp.expected:
        head = slice(0, 64)
        rstd = inp.stats["rstd"].astype(np.float64)
        x = inp.x.astype(np.float64)
        mean = inp.stats["mean"].astype(np.float64) if inp.centered else 0.0
        xhat = (x - mean) * rstd
        if inp.centered:
            dx = reference.layer_norm_backward(inp.dy[head], x[head], inp.weight,
                                               mean=mean[head], rstd=rstd[head])[0]
        else:
            dx = reference.rms_norm_backward(inp.dy[head], x[head], inp.weight,
                                             rstd=rstd[head])[0]
        inp.expected.update(dx=dx, dweight=np.einsum("ij,ij->j", inp.dy, xhat))
        if inp.centered:
            inp.expected["dbias"] = inp.dy.sum(0, dtype=np.float64)
    return inp.expected


def check(inp, got):
    """Largest error of (dx head, dweight, dbias) relative to max(1, |ref|); raises past RTOL."""
    want = _expected(inp)
    names = ("dx", "dweight", "dbias")[:2 + inp.centered]
    got = tuple(np.asarray(g) for g in got)
    if len(got) != len(names):
        raise AssertionError(f"{inp.func}: {len(got)} outputs, expected {len(names)}")
    worst = 0.0
    for name, a in zip(names, got):
        ref = want[name]
        a = a[:64] if name == "dx" else a
        if a.shape != ref.shape:
            raise AssertionError(f"{inp.func} {inp.case.name}: {name} has shape {a.shape}, "
                                 f"expected {ref.shape}")
        # dx element by element; dweight/dbias, sums over the rows, against their largest
        # element (torch's 16-bit backward rounds those sums to 16 bits)
        scale = np.maximum(1.0, np.abs(ref)) if name == "dx" else max(1.0, np.abs(ref).max())
        err = float(np.max(np.abs(a - ref) / scale, initial=0.0))
        if not err <= RTOL[inp.case.dtype]:
            raise AssertionError(f"{inp.func} {inp.case.name}: {name} off by {err:.3g}")
        worst = max(worst, err)
    return worst


def _check_copy(inp, got):
    if not np.array_equal(got, inp.x):
        raise AssertionError("speed-line copy is wrong")
    return 0.0


# --- contenders -------------------------------------------------------------------------------

def backward_numpy(dy, x, w, rstd, mean=None):
    """The formula in NumPy, in the data's dtype: (dx, dweight[, dbias])."""
    xhat = x * rstd if mean is None else (x - mean) * rstd
    g = dy * w
    inner = g - xhat * (g * xhat).mean(-1, keepdims=True)
    if mean is None:
        return rstd * inner, (dy * xhat).sum(0)
    return rstd * (inner - g.mean(-1, keepdims=True)), (dy * xhat).sum(0), dy.sum(0)


def _numba_ln(inp, kind):
    f = getattr(numba_ln, inp.func)
    kwargs = {"eps": inp.eps}
    if kind != "recompute":
        kwargs.update(inp.stats)
    if kind != "alloc":
        kwargs["out"] = np.empty_like(inp.x)
    stats = "" if kind == "recompute" else (", mean=, rstd=" if inp.centered else ", rstd=")
    out = "" if kind == "alloc" else ", out="
    return Contender(f"numba_ln-{kind}", partial(f, inp.dy, inp.x, inp.weight, **kwargs),
                     f"numba_ln.{inp.func}(dy, x, w{stats}{out})", check)


def _numpy(inp):
    if inp.case.dtype != "float32":
        raise Skip("NumPy has no 16-bit arithmetic worth timing (it computes per element)")
    return Contender("numpy", partial(backward_numpy, inp.dy, inp.x, inp.weight, **inp.stats),
                     "the formula in float32 NumPy (backward_cases.backward_numpy)", check)


def _torch(inp, threads):
    torch, F = _import_torch()
    torch.set_num_threads(threads)
    cols = inp.x.shape[-1]
    half = inp.case.dtype != "float32"
    tdtype = getattr(torch, inp.case.dtype)
    t = {k: torch.from_numpy(a.astype(np.float32)).to(tdtype)
         for k, a in (("x", inp.x), ("dy", inp.dy), ("w", inp.weight), ("b", inp.bias))}
    if inp.centered:
        op = torch.ops.aten.native_layer_norm_backward
        if half:  # torch's own statistics for its 16-bit backward
            _, mean, rstd = torch.native_layer_norm(t["x"], [cols], t["w"], t["b"], inp.eps)
        else:
            mean, rstd = (torch.from_numpy(inp.stats[k]) for k in ("mean", "rstd"))

        def call():
            return op(t["dy"], t["x"], [cols], mean, rstd, t["w"], t["b"], [True, True, True])
        text = "torch.ops.aten.native_layer_norm_backward(..., [True, True, True])"
    else:
        if not hasattr(F, "rms_norm"):
            raise Skip(f"torch {torch.__version__} has no F.rms_norm")
        x, w = t["x"].clone().requires_grad_(), t["w"].clone().requires_grad_()
        y = F.rms_norm(x, (cols,), w, inp.eps)

        def call():
            return torch.autograd.grad(y, (x, w), t["dy"], retain_graph=True)
        text = "torch.autograd.grad(F.rms_norm(x, ...), (x, w), dy, retain_graph=True)"
    return Contender("torch", call, f"torch {torch.__version__}: {text}", _check_tensors)


def _check_tensors(inp, got):
    """check() of torch's gradient tensors, as NumPy (16-bit ones through float32: the
    conversion is not timed)."""
    return check(inp, tuple(g.float().numpy() for g in got))


def _line(inp, name):
    dst = np.empty_like(inp.x)
    if name == "line-copyto":
        call, text = partial(np.copyto, dst, inp.x), "np.copyto(y, x)"
    else:  # (line-prange, line-stream: the forward's threaded copies, lines.py)
        flat = [a.reshape(-1).view(np.uint32) for a in (dst, inp.x)]
        kernel, what = ((stream_copy1, " with streamed stores") if name == "line-stream"
                        else (prange_copy, ""))
        call, text = partial(kernel, *flat), f"Numba prange copy{what} of x -> y"

    def run():
        call()
        return dst
    return Contender(name, run, f"{text} (the line: {LINE_FACTOR:g}x the fastest copy)",
                     _check_copy)


def build(inp, threads, contenders=BACKWARD_CONTENDERS):
    """({name: Contender}, {name: skip reason}) for one function and case."""
    built, skipped = {}, {}
    for name in contenders:
        try:
            if name.startswith("numba_ln-"):
                built[name] = _numba_ln(inp, name.split("-", 1)[1])
            elif name == "numpy":
                built[name] = _numpy(inp)
            elif name == "torch":
                built[name] = _torch(inp, threads)
            else:
                built[name] = _line(inp, name)
        except Skip as exc:
            skipped[name] = str(exc)
    return built, skipped


# --- a run ------------------------------------------------------------------------------------

def run_case(func, case, threads, settings, contenders=BACKWARD_CONTENDERS, small=False,
             progress=None):
    """Build, check and time every contender of one (function, case): a result dict with
    the forward suite's layout (timing.run_case)."""
    inp = make_inputs(func, case, small)
    built, skipped = build(inp, threads, contenders)
    calls, checks = {}, {}
    for name, c in built.items():
        try:
            checks[name] = c.check(inp, c.call())  # first call: compiles, faults in dx
            calls[name] = c.call
        except Exception as exc:  # a broken contender is reported, not timed
            skipped[name] = f"broken: {type(exc).__name__}: {exc}"
    times, sizes = measure(calls, settings["rounds"], settings["batch_ms"] / 1e3,
                           settings["warmup_ms"] / 1e3, progress=progress)
    copies = [times[k] for k in LINES if k in times]
    line = [LINE_FACTOR * min(ts) for ts in zip(*copies)] if copies else []
    nbytes = inp.nbytes
    result = {
        "function": func, "case": case.name, "shape": list(inp.x.shape), "dtype": case.dtype,
        "axis": -1, "rows": int(inp.x.shape[0]), "bytes": nbytes,
        "rounds": settings["rounds"],
        "line": {"median_s": median(line), "gbps": nbytes / median(line) / 1e9 if line else None,
                 "fastest": fastest_copies(times)},
        "libraries": {}, "skipped": skipped,
    }
    for name, ts in times.items():
        moved = nbytes * 2 // 3 if name in LINES else nbytes
        entry = {"description": built[name].description, "median_s": median(ts),
                 "per_call_us": median(ts) * 1e6, "min_s": float(min(ts)),
                 "gbps": moved / median(ts) / 1e9,
                 "fraction_of_line": ratio(line, ts) if line and name not in LINES else None,
                 "batch_calls": sizes[name], "check_error": checks[name], "times_s": list(ts)}
        for ours in ("numba_ln-out", "numba_ln-alloc"):
            if ours in times:
                entry["speedup_" + ours.split("-")[1]] = ratio(ts, times[ours])
        result["libraries"][name] = entry
    return result


def run(settings, threads, cases=BACKWARD_CASES, functions=tuple(BACKWARD_FUNCTIONS),
        contenders=BACKWARD_CONTENDERS, small=False, progress=None):
    results = []
    work = [(f, c) for f in functions for c in cases]
    for i, (func, case) in enumerate(work):
        tag = f"[{i + 1}/{len(work)}] {func} {case.name}"
        if progress:
            progress(f"{tag}: building and checking contenders")
        results.append(run_case(func, case, threads, settings, contenders, small,
                                progress=(lambda m, tag=tag: progress(f"{tag}: {m}"))
                                if progress else None))
    return results
