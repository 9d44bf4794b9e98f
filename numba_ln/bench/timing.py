"""Timing: interleaved rounds of warm-up + timed batch per contender, per-round ratios, one
(function, case) measured end to end (:func:`run_case`), and thread scaling.

Every case times its contenders back to back in interleaved rounds (the order rotates each
round).  In a round each contender first gets a warm-up (repeated calls for at least
``warmup_s``), then a timed batch of calls lasting about ``batch_s``.  Figures are medians
over rounds of that round's ratios, so that slow drifts of a shared machine cancel out.

PyTorch's OpenMP threads and onnxruntime's pool threads keep spinning after a call and
steal cores from whatever runs next.  Measured on the 2-core development machine with a
(1024, 1024) ``layer_norm`` run right after each: numba_ln's calls took 1.6-2x their time
for ~7 ms after torch's last call, and 1.5x for 30-40 ms after an onnxruntime session's.
A warm-up absorbed part of it at best, so the round idles (``SETTLE_S``) after those
peers' batches before the next contender starts.
"""
import gc
import itertools
import time

import numba
import numpy as np

from .cases import CASE_BY_NAME, make_inputs
from .contenders import LIBRARIES, LINES, NUMBA_LN, build
from .lines import fastest_copies

SCALING_CASE = "1x4194304"
# (contender-name prefix, seconds idled after its batch: twice the spinning measured)
SETTLE_S = (("torch", 0.015), ("onnxruntime", 0.08))
SETTLE_MAX_S = max(seconds for _, seconds in SETTLE_S)  # (after an unknown contender)


def settle_time(name):
    """How long a round idles after ``name``'s batch (0 for contenders that do not spin).

    >>> settle_time("onnxruntime-run"), settle_time("numba_ln-out")
    (0.08, 0.0)
    """
    return next((s for prefix, s in SETTLE_S if name.startswith(prefix)), 0.0)


def _warm(call, seconds):
    """Call until ``seconds`` have passed (at least once)."""
    end = time.perf_counter() + seconds
    call()
    while time.perf_counter() < end:
        call()


def _batch(call, n):
    """Seconds per call over n back-to-back calls (garbage collector paused)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t = time.perf_counter()
        for _ in itertools.repeat(None, n):
            call()
        return (time.perf_counter() - t) / n
    finally:
        if enabled:
            gc.enable()


def _calls_per_batch(call, seconds):
    """How many calls make a batch of about ``seconds`` (at least one).  The per-call time
    is the best of three tries, so that a burst of other work while calibrating does not
    shrink every batch of the run to a single call."""
    n = 1
    while True:
        per = _batch(call, n)
        if per * n >= 0.25 * seconds or n >= 1 << 20:
            break
        n *= 4
    per = min(per, _batch(call, n), _batch(call, n))
    return max(1, int(round(seconds / max(per, 1e-9))))


def measure(calls, rounds, batch_s, warmup_s, before=None, progress=None):
    """Interleaved rounds.  ``calls``: {name: zero-argument callable}; ``before``: optional
    {name: callable run before that contender's warm-up} (e.g. setting the thread count).

    Returns ({name: [seconds per call, one per round]}, {name: calls per batch}).

    >>> times, sizes = measure({"a": lambda: None, "b": lambda: None}, 2, 1e-4, 0.0)
    >>> [len(times["a"]), len(times["b"])], sizes["a"] >= 1
    ([2, 2], True)
    """
    before = before or {}
    names = list(calls)
    sizes = {}
    for name in names:  # callers have made one call already (compiled, outputs faulted in)
        if name in before:
            before[name]()
        sizes[name] = _calls_per_batch(calls[name], batch_s)
        time.sleep(settle_time(name))
    times = {name: [] for name in names}
    for r in range(rounds):
        if progress:
            progress(f"round {r + 1}/{rounds}")
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if name in before:
                before[name]()
            _warm(calls[name], warmup_s)
            times[name].append(_batch(calls[name], sizes[name]))
            time.sleep(settle_time(name))
    return times, sizes


def median(values):
    return float(np.median(values)) if len(values) else float("nan")


def ratio(numerator, denominator):
    """Median over rounds of the per-round time ratio (lists of seconds, one per round)."""
    return median(np.asarray(numerator) / np.asarray(denominator))


def _first_calls(inputs, built):
    """Call and check each contender once: ({lib: call}, {lib: error}, {lib: why broken})."""
    calls, checks, broken = {}, {}, {}
    for lib, contender in built.items():
        got = None
        try:
            got = contender.call()  # first call: compiles / loads / faults in outputs
            checks[lib] = contender.check(inputs, got)
            calls[lib] = contender.call
        except Exception as exc:  # a broken contender is reported, not timed
            broken[lib] = f"{type(exc).__name__}: {exc}"
        del got
    return calls, checks, broken


def run_case(func, case, threads, settings, libraries=LIBRARIES, small=False, progress=None):
    """Build, check and time every contender of one (function, case).  Returns a dict."""
    inputs = make_inputs(func, case, small=small)
    built, skipped = build(inputs, threads, libraries)
    calls, checks, broken = _first_calls(inputs, built)
    times, sizes = measure(calls, settings["rounds"], settings["batch_ms"] / 1e3,
                           settings["warmup_ms"] / 1e3, progress=progress)
    nbytes = inputs.nbytes
    lines = [times[k] for k in LINES if k in times]
    line = [min(ts) for ts in zip(*lines)] if lines else []
    result = {
        "function": func,
        "case": case.name,
        "shape": list(inputs.x.shape),
        "dtype": case.dtype,
        "axis": case.axis,
        "rows": int(inputs.x.size // inputs.x.shape[case.axis]),
        "bytes": nbytes,
        "rounds": settings["rounds"],
        "line": {
            "median_s": median(line),
            "gbps": nbytes / median(line) / 1e9 if line else None,
            "fastest": fastest_copies(times),
        },
        "libraries": {},
        "skipped": {**skipped, **{k: f"broken: {v}" for k, v in broken.items()}},
    }
    for lib, ts in times.items():
        ts = np.asarray(ts)
        entry = {
            "description": built[lib].description,
            "median_s": median(ts),
            "per_call_us": median(ts) * 1e6,
            "min_s": float(ts.min()),  # best round: a hint when the machine was loaded
            "gbps": nbytes / median(ts) / 1e9,
            "fraction_of_line": ratio(line, ts) if line else None,
            "batch_calls": sizes[lib],
            "check_error": checks[lib],
            "times_s": ts.tolist(),
        }
        for ours in NUMBA_LN:
            if ours in times:  # speedup_out / speedup_alloc: this time / numba_ln's
                entry["speedup_" + ours.split("-")[1]] = ratio(ts, times[ours])
        result["libraries"][lib] = entry
    return result


def thread_scaling(threads, settings, small=False, progress=None):
    """numba_ln layer_norm (out=) on the one-huge-row case at 1 thread and at ``threads``:
    median over rounds of t(1 thread) / t(threads)."""
    case = CASE_BY_NAME[SCALING_CASE]
    inputs = make_inputs("layer_norm", case, small=small)
    call = build(inputs, threads, ("numba_ln-out",))[0]["numba_ln-out"].call
    calls = {"1 thread": call, f"{threads} threads": call}
    before = {"1 thread": lambda: numba.set_num_threads(1),
              f"{threads} threads": lambda: numba.set_num_threads(threads)}
    try:
        times, _ = measure(calls, settings["rounds"], settings["batch_ms"] / 1e3,
                           settings["warmup_ms"] / 1e3, before=before, progress=progress)
    finally:
        numba.set_num_threads(threads)
    one, many = times["1 thread"], times[f"{threads} threads"]
    return {"case": case.name, "shape": list(inputs.x.shape), "threads": threads,
            "one_thread_us": median(one) * 1e6, "n_threads_us": median(many) * 1e6,
            "speedup": ratio(one, many)}
