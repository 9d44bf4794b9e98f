"""GPU benchmark: numba_ln vs torch's ``F.layer_norm`` vs a device-to-device copy, in TB/s.

``python -m numba_ln.cuda.bench`` (or ``python -m numba_ln.bench --device cuda``).  Needs a
CUDA GPU; torch is used when it is installed with CUDA.

Method: float32 ``layer_norm(x, weight, bias)`` over the last axis.  Every contender works
on the same device memory and runs on the same stream (the legacy default stream, which
torch's default stream also is).  Each round times a batch of back-to-back calls between two
CUDA events (batch long enough for ~20 ms of GPU work, after a warm-up batch); reported
seconds are the median over ``repeats`` rounds of the per-call time.  Bytes moved are
``2 * x.nbytes`` (read x, write y; weight and bias are cache hits), for all three lines.
numba_ln writes into a preallocated ``out=`` (Numba's allocator is cuMemAlloc, which no
one should call per step); torch allocates from its caching allocator.  Host-side cost
counts: a call the GPU finishes faster than Python issues it is timed at Python's pace,
which is what the (1, 768) case shows.
"""
import argparse
import statistics
import sys

import numpy as np

CASES = [(1, 768), (4096, 1024), (4096, 4096), (4096, 16384), (16384, 1024)]
TARGET_SECONDS = 0.02


def _parse_case(case):
    if isinstance(case, str):
        rows, _, cols = case.lower().partition("x")
        return int(rows), int(cols)
    rows, cols = case
    return int(rows), int(cols)


def _require_gpu():
    from ._compat import SIMULATOR, cuda

    if SIMULATOR:
        raise RuntimeError("the GPU benchmark cannot run under NUMBA_ENABLE_CUDASIM=1")
    if not cuda.is_available():
        raise RuntimeError("no CUDA GPU available (numba.cuda.is_available() is False)")
    return cuda


def _torch():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None, None
    if not torch.cuda.is_available():
        return None, None
    return torch, F


def _time_per_call(cuda, call, stream, repeats):
    """Median seconds per call over ``repeats`` event-timed batches."""
    call()
    stream.synchronize()
    start, stop = cuda.event(), cuda.event()
    n = 1
    while True:  # find a batch size worth ~TARGET_SECONDS of GPU time
        start.record(stream)
        for _ in range(n):
            call()
        stop.record(stream)
        stop.synchronize()
        seconds = cuda.event_elapsed_time(start, stop) / 1e3
        if seconds >= TARGET_SECONDS / 4 or n >= 1 << 16:
            break
        n *= 4
    n = max(1, int(n * TARGET_SECONDS / max(seconds, 1e-9)))
    times = []
    for _ in range(max(1, repeats)):
        start.record(stream)
        for _ in range(n):
            call()
        stop.record(stream)
        stop.synchronize()
        times.append(cuda.event_elapsed_time(start, stop) / 1e3 / n)
    return statistics.median(times)


def run(cases=None, repeats=7, progress=print):
    """Time every case; one dict per (case, library):
    ``case`` ("4096x1024"), ``library`` (numba_ln, torch, copy), ``seconds`` per call,
    ``tb_per_s`` (2 * x.nbytes / seconds / 1e12), ``fraction_of_copy``."""
    cuda = _require_gpu()
    import numba_ln

    torch, F = _torch()
    stream = cuda.default_stream()
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    progress(f"GPU: {name}; torch: {torch.__version__ if torch else 'not available'}")
    results = []
    rng = np.random.default_rng(0)
    for case in cases or CASES:
        rows, cols = _parse_case(case)
        label = f"{rows}x{cols}"
        progress(f"{label} float32")
        x = cuda.to_device(rng.standard_normal((rows, cols), dtype=np.float32) + 3)
        w = cuda.to_device(rng.standard_normal(cols, dtype=np.float32))
        b = cuda.to_device(rng.standard_normal(cols, dtype=np.float32))
        y = cuda.device_array_like(x)
        nbytes = 2 * x.nbytes
        calls = {
            "copy": lambda: y.copy_to_device(x, stream=stream),
            "numba_ln": lambda: numba_ln.layer_norm(x, w, b, out=y),
        }
        if torch is not None:
            xt, wt, bt = (torch.as_tensor(a, device="cuda") for a in (x, w, b))
            calls["torch"] = lambda: F.layer_norm(xt, (cols,), wt, bt, 1e-5)
        timed = {lib: _time_per_call(cuda, call, stream, repeats) for lib, call in calls.items()}
        for lib in ("numba_ln", "torch", "copy"):
            if lib not in timed:
                continue
            seconds = timed[lib]
            results.append({
                "case": label, "library": lib, "seconds": seconds,
                "tb_per_s": nbytes / seconds / 1e12,
                "fraction_of_copy": timed["copy"] / seconds,
            })
    return results


def format_table(results):
    """A plain-text table: one line per case, TB/s and fraction of the copy per library."""
    libraries = [lib for lib in ("numba_ln", "torch", "copy")
                 if any(r["library"] == lib for r in results)]
    head = f"{'case (float32)':<16}" + "".join(
        f"{lib + ' TB/s':>15}{'x copy':>8}" for lib in libraries)
    lines = [head, "-" * len(head)]
    for case in dict.fromkeys(r["case"] for r in results):
        row = {r["library"]: r for r in results if r["case"] == case}
        cells = "".join(
            f"{row[lib]['tb_per_s']:>15.3f}{row[lib]['fraction_of_copy']:>8.2f}" if lib in row
            else f"{'-':>15}{'-':>8}" for lib in libraries)
        lines.append(f"{case:<16}{cells}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m numba_ln.cuda.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", help="comma-separated ROWSxCOLS, default: "
                                   + ",".join(f"{r}x{c}" for r, c in CASES))
    p.add_argument("--repeats", type=int, default=7, help="timed rounds per contender")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c.strip()] if args.cases else None
    try:
        results = run(cases=cases, repeats=args.repeats,
                      progress=lambda m: print(m, file=sys.stderr, flush=True))
    except RuntimeError as exc:
        sys.exit(f"numba_ln.cuda.bench: {exc}")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
