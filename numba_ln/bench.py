"""``python -m numba_ln.bench``: numba_ln against NumPy, PyTorch and onnxruntime, as
fractions of the machine's speed line, with the project's performance targets.

Method
------
Every case times its contenders back to back in interleaved rounds (the order rotates each
round).  In a round each contender first gets a warm-up (repeated calls for at least
``--warmup-ms``: PyTorch's OpenMP and onnxruntime's pool threads keep spinning after a
call and steal cores from whatever runs next), then a timed batch of calls lasting about
``--batch-ms``.  The *speed line* of a round is the faster of ``np.copyto`` and a Numba
``prange`` copy of the bytes the function moves (x -> y; plus r -> s for the residual
variants).  Reported figures are medians over rounds of that round's ratios, so slow
drifts of a shared machine cancel out:

* ``x line``: line time / contender time (1.0 = as fast as copying the data);
* ``speedup``: contender time / numba_ln time, for numba_ln with ``out=`` and allocating;
* ``GB/s``: bytes moved (2 x bytes of x, 4 x for the residual variants) / median time.

torch and onnxruntime are imported only when installed (``pip install numba_ln[bench]``);
matplotlib only for ``--plot``.  ``--device cuda`` hands over to ``numba_ln.cuda.bench``.
"""
import argparse
import gc
import itertools
import json
import os
import platform
import sys
import time

import numba
import numpy as np

import numba_ln
from numba_ln import _bench_contenders as bc

QUICK = {"rounds": 3, "batch_ms": 4.0, "warmup_ms": 2.0, "startup_repeats": 2}
# --quick measures these (function: cases) unless --cases is given: every regime once, at
# sizes whose contenders take milliseconds, so that the run takes about 30 s.
QUICK_CASES = {
    "layer_norm": ("1x768", "8x4096", "4096x768", "4096x1024", "65536x64", "1x4194304",
                   "4096x1024-f64"),
    "rms_norm": ("1x768", "4096x1024"),
    "add_layer_norm": ("1x768", "4096x1024"),
    "add_rms_norm": ("4096x1024",),
}
FULL = {"rounds": 15, "batch_ms": 25.0, "warmup_ms": 5.0, "startup_repeats": 5}

SCALING_CASE = "1x4194304"
SINGLE_TOKEN_CASE = "1x768"


# --------------------------------------------------------------------------- timing


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
    """
    before = before or {}
    names = list(calls)
    sizes = {}
    for name in names:  # callers have made one call already (compiled, outputs faulted in)
        if name in before:
            before[name]()
        sizes[name] = _calls_per_batch(calls[name], batch_s)
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
    return times, sizes


def _median(values):
    return float(np.median(values)) if len(values) else float("nan")


def run_case(func, case, threads, settings, libraries=bc.LIBRARIES, small=False, progress=None):
    """Build, check and time every contender of one (function, case).  Returns a dict."""
    inputs = bc.make_inputs(func, case, small=small)
    built, skipped = bc.build(inputs, threads, libraries)
    calls, checks, broken = {}, {}, {}
    for lib, contender in built.items():
        got = None
        try:
            got = contender.call()  # first call: compiles / loads / faults in outputs
            checks[lib] = bc.check_contender(inputs, lib, got)
            calls[lib] = contender.call
        except Exception as exc:  # a broken contender is reported, not timed
            broken[lib] = f"{type(exc).__name__}: {exc}"
        del got
    times, sizes = measure(calls, settings["rounds"], settings["batch_ms"] / 1e3,
                           settings["warmup_ms"] / 1e3, progress=progress)
    nbytes = inputs.nbytes
    lines = [times[k] for k in bc.LINES if k in times]
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
            "median_s": _median(line),
            "gbps": nbytes / _median(line) / 1e9 if line else None,
            "prange_wins": int(sum(p < c for p, c in zip(times.get("line-prange", []),
                                                         times.get("line-copyto", [])))),
        },
        "libraries": {},
        "skipped": {**skipped, **{k: f"broken: {v}" for k, v in broken.items()}},
    }
    for lib, ts in times.items():
        ts = np.asarray(ts)
        entry = {
            "description": built[lib].description,
            "median_s": _median(ts),
            "per_call_us": _median(ts) * 1e6,
            "min_s": float(ts.min()),  # best round: a hint when the machine was loaded
            "gbps": nbytes / _median(ts) / 1e9,
            "fraction_of_line": _median(np.asarray(line) / ts) if line else None,
            "batch_calls": sizes[lib],
            "check_error": checks[lib],
            "times_s": ts.tolist(),
        }
        for ours in bc.NUMBA_LN:
            if ours in times:
                key = "speedup_" + ours.split("-")[1]  # speedup_out / speedup_alloc
                entry[key] = _median(ts / np.asarray(times[ours]))
        result["libraries"][lib] = entry
    return result


def thread_scaling(threads, settings, small=False, progress=None):
    """numba_ln layer_norm (out=) on the one-huge-row case at 1 thread and at ``threads``:
    median over rounds of t(1 thread) / t(threads)."""
    case = bc.CASE_BY_NAME[SCALING_CASE]
    inputs = bc.make_inputs("layer_norm", case, small=small)
    call = bc.build(inputs, threads, ("numba_ln-out",))[0]["numba_ln-out"].call
    calls = {"1 thread": call, f"{threads} threads": call}
    before = {"1 thread": lambda: numba.set_num_threads(1),
              f"{threads} threads": lambda: numba.set_num_threads(threads)}
    try:
        times, _ = measure(calls, settings["rounds"], settings["batch_ms"] / 1e3,
                           settings["warmup_ms"] / 1e3, before=before, progress=progress)
    finally:
        numba.set_num_threads(threads)
    one, many = np.asarray(times["1 thread"]), np.asarray(times[f"{threads} threads"])
    return {"case": case.name, "shape": list(inputs.x.shape), "threads": threads,
            "one_thread_us": _median(one) * 1e6, "n_threads_us": _median(many) * 1e6,
            "speedup": _median(one / many)}


# --------------------------------------------------------------------------- targets


def _lib(results, func, case, lib):
    for r in results:
        if r["function"] == func and r["case"] == case:
            return r["libraries"].get(lib)
    return None


def _fraction(lib):
    """Value function: ``lib``'s fraction of the speed line."""
    return lambda r: (r["libraries"].get(lib) or {}).get("fraction_of_line")


def _speedup(ours, peer):
    """Value function: numba_ln (``ours``: "out" or "alloc") speedup over ``peer``."""
    return lambda r: (r["libraries"].get(peer) or {}).get("speedup_" + ours)


def _target(text, func, cases, value, op, threshold, results):
    """A target judged at each listed case that was measured: ``value(result)``."""
    values = []
    for r in results:
        if r["function"] == func and r["case"] in cases:
            v = value(r)
            if v is not None:
                values.append((r["case"], v))
    return _verdict(text, values, op, threshold)


def _verdict(text, values, op, threshold, fmt="{:.2f}"):
    """PASS when every (case, value) meets ``op threshold``; the worst value is quoted."""
    if not values:
        return {"target": text, "status": "SKIP", "measured": "not measured", "values": {}}
    ok = {"ge": lambda v: v >= threshold, "gt": lambda v: v > threshold,
          "le": lambda v: v <= threshold}[op]
    worst = (min if op in ("ge", "gt") else max)(values, key=lambda cv: cv[1])
    status = "PASS" if all(ok(v) for _, v in values) else "MISS"
    if len(values) == 1:
        measured = fmt.format(worst[1]) + f" ({worst[0]})"
    else:
        measured = (f"worst {fmt.format(worst[1])} at {worst[0]}; "
                    + ", ".join(f"{c} {fmt.format(v)}" for c, v in values))
    return {"target": text, "status": status, "measured": measured,
            "values": {c: v for c, v in values}, "threshold": threshold}


def evaluate_targets(results, extras):
    """The issue's performance targets, each PASS / MISS / SKIP with its measured figure."""
    big_ln = ["4096x768", "4096x1024", "16384x1024", "4096x4096"]
    all_cases = [c.name for c in bc.CASES]
    rows4k = [c.name for c in bc.CASES if c.rows >= 4096]
    t = []
    t.append(_target("layer_norm out= >= 0.8x speed line at 4096x768, 4096x1024, 16384x1024, "
                     "4096x4096", "layer_norm", big_ln, _fraction("numba_ln-out"), "ge", 0.8,
                     results))
    t.append(_target("layer_norm faster than torch at every case (allocating numba_ln vs "
                     "F.layer_norm; speedup)", "layer_norm", all_cases,
                     _speedup("alloc", "torch"), "gt", 1.0, results))
    t.append(_target("layer_norm >= 1.2x onnxruntime at cases with >= 4096 rows (out= vs "
                     "IOBinding; speedup)", "layer_norm", rows4k,
                     _speedup("out", "onnxruntime"), "ge", 1.2, results))
    # single token: per-call time ratio numba_ln / torch
    single = None
    ours = _lib(results, "layer_norm", SINGLE_TOKEN_CASE, "numba_ln-alloc")
    torch_entry = _lib(results, "layer_norm", SINGLE_TOKEN_CASE, "torch")
    if ours and torch_entry:
        ratio = 1.0 / torch_entry["speedup_alloc"]
        single = _verdict("layer_norm (1, 768) per-call time <= 0.6x torch's",
                          [(SINGLE_TOKEN_CASE, ratio)], "le", 0.6)
        single["measured"] = (f"{ratio:.2f}x ({ours['per_call_us']:.2f} us vs torch "
                              f"{torch_entry['per_call_us']:.2f} us)")
    t.append(single or _verdict("layer_norm (1, 768) per-call time <= 0.6x torch's", [],
                                "le", 0.6))
    t.append(_target("layer_norm (65536, 64) out= >= 0.6x speed line", "layer_norm",
                     ["65536x64"], _fraction("numba_ln-out"), "ge", 0.6, results))
    scaling = extras.get("thread_scaling")
    text = "layer_norm (1, 4194304) >= 1.5x faster with N threads than with 1"
    if scaling and scaling["threads"] >= 2:
        v = _verdict(text, [(SCALING_CASE, scaling["speedup"])], "ge", 1.5)
        v["measured"] = (f"{scaling['speedup']:.2f}x at {scaling['threads']} threads "
                         f"({scaling['one_thread_us']:.0f} us -> {scaling['n_threads_us']:.0f} us)")
        t.append(v)
    else:
        t.append({"target": text, "status": "SKIP", "values": {},
                  "measured": "needs the case selected and >= 2 threads"})
    t.append(_target("layer_norm (32, 256, 56, 56) axis=1 out= >= 0.5x speed line",
                     "layer_norm", ["32x256x56x56-axis1"], _fraction("numba_ln-out"), "ge", 0.5,
                     results))
    startup = extras.get("startup")
    text = "new process, warm cache: import + first calls <= 1.0 s over `import numba`"
    if startup:
        v = _verdict(text, [("startup", startup["overhead_s"])], "le", 1.0)
        v["measured"] = (f"+{startup['overhead_s']:.2f} s ({startup['numba_ln_first_calls_s']:.2f}"
                         f" s vs {startup['import_numba_s']:.2f} s, median of "
                         f"{startup['repeats']})")
        t.append(v)
    else:
        t.append({"target": text, "status": "SKIP", "values": {}, "measured": "not measured"})
    t.append(_target("rms_norm out= >= 0.8x speed line at the large cases (>= 4096 rows)",
                     "rms_norm", rows4k, _fraction("numba_ln-out"), "ge", 0.8, results))
    t.append(_target("rms_norm >= 2x torch F.rms_norm at the large cases (allocating; "
                     "speedup)", "rms_norm", rows4k, _speedup("alloc", "torch"), "ge", 2.0,
                     results))
    t.append(_target("add_layer_norm out= >= 0.75x its speed line at >= 4096 rows",
                     "add_layer_norm", rows4k, _fraction("numba_ln-out"), "ge", 0.75, results))
    t.append(_target("add_layer_norm faster than torch x + r, F.layer_norm at >= 4096 rows "
                     "(allocating; speedup)", "add_layer_norm", rows4k,
                     _speedup("alloc", "torch"), "gt", 1.0, results))
    t.append(_target("add_layer_norm faster than onnxruntime SkipLayerNormalization at >= 4096 "
                     "rows (out= vs IOBinding; speedup)", "add_layer_norm", rows4k,
                     _speedup("out", "onnxruntime"), "gt", 1.0, results))
    return t


# --------------------------------------------------------------------------- environment


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module):
    if bc.missing(module):
        return None
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "installed"


def _load():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(threads):
    return {
        "load_average": _load(),
        "numba_ln": numba_ln.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "threading_layer": _threading_layer(),
        "platform": platform.platform(),
        "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
    }


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        bc._prange_copy(np.empty(1), np.empty(1))
        return numba.threading_layer()


# --------------------------------------------------------------------------- output


def _fmt(v, spec):
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _bytes(n):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def format_case(r):
    head = (f"{r['function']}  {r['case']}  ({'x'.join(map(str, r['shape']))} {r['dtype']}"
            f"{'' if r['axis'] == -1 else ', axis=' + str(r['axis'])})  "
            f"{_bytes(r['bytes'])} moved")
    line = r["line"]
    if line["gbps"]:
        head += (f"   speed line {line['gbps']:.1f} GB/s ({line['median_s'] * 1e6:.1f} us; "
                 f"prange copy faster in {line['prange_wins']}/{r['rounds']} rounds)")
    out = [head, f"  {'library':<15} {'us/call':>10} {'GB/s':>7} {'x line':>7} "
                 f"{'out= speedup':>13} {'alloc speedup':>14}"]
    for lib, e in r["libraries"].items():
        sp_out = "" if lib in ("numba_ln-out",) + bc.LINES else _fmt(e.get("speedup_out"), ".2f")
        sp_alloc = ("" if lib in ("numba_ln-alloc",) + bc.LINES
                    else _fmt(e.get("speedup_alloc"), ".2f"))
        out.append(f"  {lib:<15} {e['per_call_us']:>10.2f} {e['gbps']:>7.2f} "
                   f"{_fmt(e['fraction_of_line'], '.2f'):>7} {sp_out:>13} {sp_alloc:>14}")
    for lib, why in r["skipped"].items():
        if why.startswith("broken: "):
            out.append(f"  {lib:<15} NOT TIMED, its result failed the check: {why[8:]}")
        else:
            out.append(f"  {lib:<15} skipped: {why}")
    return "\n".join(out)


def format_report(meta, results, extras, targets):
    s = []
    s.append("numba_ln benchmark report")
    s.append(f"  command: {meta['command']}")
    env = meta["environment"]
    s.append(f"  CPU: {env['cpu']} ({env['logical_cpus']} logical CPUs); threads: "
             f"{env['threads']} (numba.set_num_threads; torch.set_num_threads and onnxruntime "
             f"intra_op_num_threads the same, inter_op 1); threading layer: "
             f"{env['threading_layer']}")
    if env.get("load_average"):
        s.append(f"  load average (1, 5, 15 min) at start: "
                 f"{', '.join(map(str, env['load_average']))}; at end: "
                 f"{', '.join(map(str, meta.get('load_average_end') or []))}"
                 + ("  -- other work was running: figures are noisy"
                    if env["load_average"][0] > 0.5 else ""))
    s.append("  versions: " + ", ".join(
        f"{k} {env[k] or 'not installed'}"
        for k in ("numba_ln", "numba", "numpy", "torch", "onnxruntime", "python")))
    st = meta["settings"]
    s.append(f"  method: {st['rounds']} interleaved rounds per case, each contender a "
             f"{st['warmup_ms']:g} ms warm-up then a ~{st['batch_ms']:g} ms timed batch; "
             f"figures are medians over rounds of per-round ratios")
    s.append("  columns: x line = speed-line time / time (speed line = faster of np.copyto and "
             "a Numba prange copy of the bytes moved); out= / alloc speedup = this library's "
             "time / numba_ln's (with out= / allocating)")
    s.append("")
    for r in results:
        s.append(format_case(r))
        s.append("")
    scaling = extras.get("thread_scaling")
    if scaling:
        s.append(f"thread scaling, layer_norm {scaling['case']} out=: 1 thread "
                 f"{scaling['one_thread_us']:.0f} us, {scaling['threads']} threads "
                 f"{scaling['n_threads_us']:.0f} us (medians); speedup {scaling['speedup']:.2f}x "
                 f"(median of per-round ratios)")
    startup = extras.get("startup")
    if startup:
        s.append(f"start-up (new process, warm cache): python -c 'import numba' "
                 f"{startup['import_numba_s']:.2f} s; import numba_ln + first calls "
                 f"{startup['numba_ln_first_calls_s']:.2f} s (in process: import "
                 f"{startup['in_process_import_s']:.2f} s, first calls "
                 f"{startup['in_process_first_calls_s']:.2f} s); overhead "
                 f"+{startup['overhead_s']:.2f} s")
    if scaling or startup:
        s.append("")
    if targets:
        s.append("targets:")
        for t in targets:
            s.append(f"  {t['status']:<4}  {t['target']}: {t['measured']}")
        counts = {k: sum(t["status"] == k for t in targets) for k in ("PASS", "MISS", "SKIP")}
        s.append(f"  {counts['PASS']} PASS, {counts['MISS']} MISS, {counts['SKIP']} SKIP")
    return "\n".join(s)


PLOT_LIBRARIES = ("numba_ln-out", "numba_ln-alloc", "numpy", "torch", "onnxruntime")


def plot(results, path, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    funcs = [f for f in bc.FUNCTIONS if any(r["function"] == f for r in results)]
    fig, axes = plt.subplots(len(funcs), 1, figsize=(12, 3.2 * len(funcs)), squeeze=False)
    width = 0.8 / len(PLOT_LIBRARIES)
    for ax, func in zip(axes[:, 0], funcs):
        rs = [r for r in results if r["function"] == func]
        xs = np.arange(len(rs))
        for i, lib in enumerate(PLOT_LIBRARIES):
            vals = [(r["libraries"].get(lib) or {}).get("fraction_of_line") or 0.0 for r in rs]
            ax.bar(xs + (i - (len(PLOT_LIBRARIES) - 1) / 2) * width, vals, width, label=lib)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlim(-0.6, max(len(rs), 5) - 0.4)  # same bar width in every panel
        ax.set_xticks(xs, [r["case"] for r in rs], rotation=20, fontsize=8)
        ax.set_ylabel("fraction of speed line")
        ax.set_title(func, fontsize=10)
        ax.legend(fontsize=7, ncol=len(PLOT_LIBRARIES))
    env = meta["environment"]
    fig.suptitle(f"numba_ln {env['numba_ln']} — {env['cpu']}, {env['threads']} threads "
                 f"(higher is better; 1.0 = copying the bytes)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def _parser():
    cases = "\n".join(f"  {c.name:<20} {c.describe()}: {', '.join(c.functions)}"
                      + (f"  [{c.note}]" if c.note else "") for c in bc.CASES)
    p = argparse.ArgumentParser(
        prog="python -m numba_ln.bench",
        description="Benchmark numba_ln against NumPy, PyTorch and onnxruntime as fractions "
                    "of the speed line (a copy of the same bytes), and check the project's "
                    "performance targets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"cases (name, shape, functions that run at it):\n{cases}\n\n"
               "Results are printed to stdout, progress to stderr.",
    )
    p.add_argument("--quick", action="store_true",
                   help="about 30 s in all: 3 short rounds, and (unless --cases is given) "
                        "only these cases: " + "; ".join(f"{f} {','.join(c)}"
                                                        for f, c in QUICK_CASES.items()))
    p.add_argument("--cases", help="comma-separated case names (default: all; see below)")
    p.add_argument("--functions", default=",".join(bc.FUNCTIONS),
                   help="comma-separated, from " + ",".join(bc.FUNCTIONS))
    p.add_argument("--libraries",
                   help="comma-separated contenders (default all; the speed-line copies always "
                        "run): " + ",".join(bc.NUMBA_LN + bc.PEERS))
    p.add_argument("--threads", type=int,
                   help="threads for numba_ln (numba.set_num_threads) and the peers "
                        "(default: numba's current count, NUMBA_NUM_THREADS)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per case")
    p.add_argument("--batch-ms", type=float, help="timed batch length per contender per round")
    p.add_argument("--warmup-ms", type=float, help="warm-up length before each timed batch")
    p.add_argument("--small", action="store_true",
                   help="use each case's reduced shape (smoke test, not a measurement)")
    p.add_argument("--no-targets", action="store_true",
                   help="skip the target checks and their extra measurements (thread scaling "
                        "and start-up subprocesses)")
    p.add_argument("--json", metavar="FILE", help="save all results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of fraction of speed line")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: run numba_ln.cuda.bench instead")
    return p


def _split(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


_T0 = time.perf_counter()


def _progress(message):
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _run_cuda(args, settings):
    try:
        from numba_ln.cuda import bench as cuda_bench
    except Exception as exc:  # missing module, or CUDA itself unusable
        sys.exit(f"python -m numba_ln.bench --device cuda: numba_ln.cuda.bench is not "
                 f"available ({type(exc).__name__}: {exc})")
    try:
        results = cuda_bench.run(cases=_split(args.cases), repeats=settings["rounds"],
                                 progress=_progress)
    except RuntimeError as exc:  # no GPU, or the CUDA simulator
        sys.exit(f"python -m numba_ln.bench --device cuda: {exc}")
    print(cuda_bench.format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": {"command": " ".join(sys.argv), "device": "cuda"},
                       "results": results}, f, indent=1, default=str)
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("rounds", "batch_ms", "warmup_ms"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if settings["rounds"] < 1:
        sys.exit("--rounds must be at least 1")
    if args.device == "cuda":
        return _run_cuda(args, settings)

    names = _split(args.cases)
    unknown = [n for n in names or () if n not in bc.CASE_BY_NAME]
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; choose from "
                 f"{', '.join(bc.CASE_BY_NAME)}")
    funcs = _split(args.functions) or list(bc.FUNCTIONS)
    bad = [f for f in funcs if f not in bc.FUNCTIONS]
    if bad:
        sys.exit(f"unknown function(s) {', '.join(bad)}; choose from {', '.join(bc.FUNCTIONS)}")
    libs = _split(args.libraries)
    if libs:
        bad = [lib for lib in libs if lib not in bc.LIBRARIES]
        if bad:
            sys.exit(f"unknown librar(ies) {', '.join(bad)}; choose from "
                     f"{', '.join(bc.NUMBA_LN + bc.PEERS)}")
        libs = tuple(lib for lib in bc.LIBRARIES if lib in libs or lib in bc.LINES)
    else:
        libs = bc.LIBRARIES

    if args.threads is not None:
        if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
            sys.exit(f"--threads must be between 1 and NUMBA_NUM_THREADS="
                     f"{numba.config.NUMBA_NUM_THREADS} (set that variable to allow more)")
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()

    if args.quick and names is None:
        work = [(f, c) for f in funcs for c in bc.cases_for(f, QUICK_CASES[f])]
    else:
        work = [(f, c) for f in funcs for c in bc.cases_for(f, names)]
    if not work:
        sys.exit("no (function, case) pair selected: see --help for which cases each function "
                 "runs at")
    started = time.perf_counter()
    env = environment(threads)
    results = []
    for i, (func, case) in enumerate(work):
        tag = f"[{i + 1}/{len(work)}] {func} {case.name}"
        _progress(f"{tag}: building and checking contenders")
        results.append(run_case(func, case, threads, settings, libs, small=args.small,
                                progress=lambda m, tag=tag: _progress(f"{tag}: {m}")))
    extras = {}
    targets = []
    if not args.no_targets:
        if threads >= 2 and "layer_norm" in funcs and any(c.name == SCALING_CASE
                                                          for _, c in work):
            _progress("thread scaling: layer_norm 1x4194304 at 1 and "
                      f"{threads} threads")
            extras["thread_scaling"] = thread_scaling(threads, settings, small=args.small)
        _progress("start-up: fresh processes with a warm cache")
        extras["startup"] = bc.startup_overhead(settings["startup_repeats"], _progress)
        targets = evaluate_targets(results, extras)

    meta = {
        "command": " ".join(["python -m numba_ln.bench",
                             *(sys.argv[1:] if argv is None else argv)]),
        "environment": env,
        "settings": settings,
        "small": args.small,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "elapsed_s": None,
    }
    meta["elapsed_s"] = time.perf_counter() - started
    meta["load_average_end"] = _load()
    print(format_report(meta, results, extras, targets))
    print(f"(took {meta['elapsed_s']:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "extras": extras, "targets": targets},
                      f, indent=1)
        _progress(f"saved {args.json}")
    if args.plot:
        plot(results, args.plot, meta)
        _progress(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
