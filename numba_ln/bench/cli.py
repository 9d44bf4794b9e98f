"""``python -m numba_ln.bench``: argument parsing and the run (cases, extra measurements,
targets, report, ``--json`` and ``--plot`` files); ``--device cuda`` hands over to
:mod:`numba_ln.cuda.bench`."""
import argparse
import json
import sys
import textwrap
import time

import numba

from .cases import CASE_BY_NAME, CASES, FUNCTIONS, cases_for
from .contenders import LIBRARIES, LINES, NUMBA_LN, PEERS
from .environment import environment, load_average
from .report import format_report
from .startup import startup_overhead
from .targets import evaluate_targets
from .timing import SCALING_CASE, run_case, thread_scaling

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
DASK_ROUNDS, DASK_ROUNDS_QUICK = 7, 3  # --dask: each round is a second or more per case
CHOOSABLE = NUMBA_LN + PEERS  # --libraries; the speed-line copies always run


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps option help at spaces only: case and library names stay whole."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False,
                             break_long_words=False)


def parser():
    cases = "\n".join(f"  {c.name:<20} {c.describe()}: {', '.join(c.functions)}"
                      + (f"  [{c.note}]" if c.note else "") for c in CASES)
    p = argparse.ArgumentParser(
        prog="python -m numba_ln.bench",
        description="Benchmark numba_ln against NumPy, PyTorch and onnxruntime as fractions "
                    "of the speed line (a copy of the same bytes), and check the project's "
                    "performance targets.",
        formatter_class=_Formatter,
        epilog=f"cases (name, shape, functions that run at it):\n{cases}\n\n"
               "Results are printed to stdout, progress to stderr.",
    )
    p.add_argument("--quick", action="store_true",
                   help="about 30 s in all: 3 short rounds, and (unless --cases is given) "
                        "only these cases: " + "; ".join(f"{f} {', '.join(c)}"
                                                        for f, c in QUICK_CASES.items()))
    p.add_argument("--cases", help="comma-separated case names (default: all; see below)")
    p.add_argument("--functions", default=",".join(FUNCTIONS),
                   help="comma-separated, from " + ", ".join(FUNCTIONS))
    p.add_argument("--libraries",
                   help="comma-separated contenders (default all; the speed-line copies always "
                        "run): " + ", ".join(CHOOSABLE))
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
    p.add_argument("--dask", action="store_true",
                   help="run the dask cases instead (numba_ln on dask arrays against dask's "
                        "own expression on LocalCluster(n_workers=1, threads_per_worker=2, "
                        "processes=False); see numba_ln.bench.dask_cases); honours --rounds, "
                        "--quick, --small and --json")
    p.add_argument("--backward", action="store_true",
                   help="run the backward cases instead (layer_norm_backward and "
                        "rms_norm_backward against torch's native_layer_norm_backward and "
                        "autograd of F.rms_norm, the NumPy formula and a line 1.5x the "
                        "forward's; see numba_ln.bench.backward_cases); honours --cases, "
                        "--functions, --threads, --rounds, --quick, --small, --no-targets and "
                        "--json")
    p.add_argument("--half", action="store_true",
                   help="run the 16-bit cases instead (layer_norm on bfloat16 and float16 "
                        "against torch in that dtype, NumPy through float32 and onnxruntime "
                        "float16, as fractions of a 16-bit copy; see "
                        "numba_ln.bench.half_cases); honours --threads, --rounds, --quick, "
                        "--small, --no-targets and --json")
    p.add_argument("--latency", action="store_true",
                   help="measure per-call time instead: the argument forms users write "
                        "(NumPy-scalar eps, float64 weights, return_stats, another axis, the "
                        "module, 16-bit, fused, backward) at (1, 768) and (64, 1024), in us "
                        "and as a ratio to torch; see numba_ln.bench.latency; honours "
                        "--threads, --rounds, --quick and --json")
    return p


def _split(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


_T0 = time.perf_counter()


def progress(message):
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _run_cuda(args, settings):
    try:
        from numba_ln.cuda import bench as cuda_bench
    except Exception as exc:  # missing module, or CUDA itself unusable
        sys.exit(f"python -m numba_ln.bench --device cuda: numba_ln.cuda.bench is not "
                 f"available ({type(exc).__name__}: {exc})")
    try:
        results = cuda_bench.run(cases=_split(args.cases), repeats=settings["rounds"],
                                 progress=progress)
    except RuntimeError as exc:  # no GPU, or the CUDA simulator
        sys.exit(f"python -m numba_ln.bench --device cuda: {exc}")
    print(cuda_bench.format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": {"command": " ".join(sys.argv), "device": "cuda"},
                       "results": results}, f, indent=1, default=str)
    return 0


def _run_dask(args):
    from .base import missing
    from .dask_cases import format_results, run

    absent = [m for m in ("dask", "distributed") if missing(m)]
    if absent:
        sys.exit(f"python -m numba_ln.bench --dask: {' and '.join(absent)} not installed "
                 "(pip install 'numba_ln[dask]')")
    rounds = args.rounds if args.rounds is not None else (
        DASK_ROUNDS_QUICK if args.quick else DASK_ROUNDS)
    if rounds < 1:
        sys.exit("--rounds must be at least 1")
    started = time.perf_counter()
    results = run(rounds=rounds, small=args.small, progress=progress)
    print(format_results(results))
    print(f"(took {time.perf_counter() - started:.1f} s)")
    if args.json:
        meta = {"command": " ".join(["python -m numba_ln.bench", *sys.argv[1:]]),
                "environment": environment(numba.get_num_threads()), "rounds": rounds,
                "small": args.small, "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "dask": results}, f, indent=1)
        progress(f"saved {args.json}")
    return 0


def _run_backward(args, settings, threads):
    from . import backward_cases as bc
    from .targets import BACKWARD_TARGETS

    names = _split(args.cases) or [c.name for c in bc.BACKWARD_CASES]
    by_name = {c.name: c for c in bc.BACKWARD_CASES}
    funcs = [f for f in (_split(args.functions) or ()) if f in bc.BACKWARD_FUNCTIONS]
    bad = [n for n in names if n not in by_name]
    if bad:
        sys.exit(f"--backward: unknown case(s) {', '.join(bad)}; choose from "
                 f"{', '.join(by_name)}")
    started = time.perf_counter()
    env = environment(threads)
    results = bc.run(settings, threads, [by_name[n] for n in names],
                     funcs or tuple(bc.BACKWARD_FUNCTIONS), small=args.small,
                     progress=progress)
    targets = [] if args.no_targets else evaluate_targets(results, {}, BACKWARD_TARGETS)
    meta = {"command": " ".join(["python -m numba_ln.bench", *sys.argv[1:]]),
            "environment": env, "settings": settings, "small": args.small,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "elapsed_s": time.perf_counter() - started, "load_average_end": load_average()}
    print(format_report(meta, results, {}, targets))
    print(f"(took {meta['elapsed_s']:.1f} s; the line is {bc.LINE_FACTOR:g}x the fastest copy "
          "of x, and the copies' GB/s count the 2 arrays they move)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "backward": results, "targets": targets}, f, indent=1)
        progress(f"saved {args.json}")
    return 0


def _run_half(args, settings, threads):
    from .half_cases import main as run_half

    return run_half(args, settings, threads, progress)


def _selection(args):
    """(work: [(function, Case)], libraries) from the arguments; exits on a bad name."""
    names = _split(args.cases)
    unknown = [n for n in names or () if n not in CASE_BY_NAME]
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASE_BY_NAME)}")
    funcs = _split(args.functions) or list(FUNCTIONS)
    bad = [f for f in funcs if f not in FUNCTIONS]
    if bad:
        sys.exit(f"unknown function(s) {', '.join(bad)}; choose from {', '.join(FUNCTIONS)}")
    libs = _split(args.libraries)
    if libs:
        bad = [lib for lib in libs if lib not in LIBRARIES]
        if bad:
            sys.exit(f"unknown librar(ies) {', '.join(bad)}; choose from {', '.join(CHOOSABLE)}")
        libs = tuple(lib for lib in LIBRARIES if lib in libs or lib in LINES)
    else:
        libs = LIBRARIES
    if args.quick and names is None:
        work = [(f, c) for f in funcs for c in cases_for(f, QUICK_CASES.get(f, ()))]
    else:
        work = [(f, c) for f in funcs for c in cases_for(f, names)]
    if not work:
        sys.exit("no (function, case) pair selected: see --help for which cases each function "
                 "runs at")
    return work, libs


def _extras_and_targets(args, work, threads, settings, results):
    extras, targets = {}, []
    if args.no_targets:
        return extras, targets
    if threads >= 2 and any(f == "layer_norm" and c.name == SCALING_CASE for f, c in work):
        progress(f"thread scaling: layer_norm {SCALING_CASE} at 1 and {threads} threads")
        extras["thread_scaling"] = thread_scaling(threads, settings, small=args.small)
    progress("start-up: fresh processes with a warm cache")
    extras["startup"] = startup_overhead(settings["startup_repeats"], progress)
    return extras, evaluate_targets(results, extras)


def main(argv=None):
    args = parser().parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("rounds", "batch_ms", "warmup_ms"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if settings["rounds"] < 1:
        sys.exit("--rounds must be at least 1")
    if args.device == "cuda":
        return _run_cuda(args, settings)
    if args.dask:
        return _run_dask(args)
    special = args.backward or args.half or args.latency
    work, libs = _selection(args) if not special else (None, None)
    if args.threads is not None:
        if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
            sys.exit(f"--threads must be between 1 and NUMBA_NUM_THREADS="
                     f"{numba.config.NUMBA_NUM_THREADS} (set that variable to allow more)")
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    if args.backward:
        return _run_backward(args, settings, threads)
    if args.half:
        return _run_half(args, settings, threads)
    if args.latency:
        from .latency import main as run_latency

        return run_latency(args, settings, threads, progress)

    started = time.perf_counter()
    env = environment(threads)
    results = []
    for i, (func, case) in enumerate(work):
        tag = f"[{i + 1}/{len(work)}] {func} {case.name}"
        progress(f"{tag}: building and checking contenders")
        results.append(run_case(func, case, threads, settings, libs, small=args.small,
                                progress=lambda m, tag=tag: progress(f"{tag}: {m}")))
    extras, targets = _extras_and_targets(args, work, threads, settings, results)
    meta = {
        "command": " ".join(["python -m numba_ln.bench",
                             *(sys.argv[1:] if argv is None else argv)]),
        "environment": env,
        "settings": settings,
        "small": args.small,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "elapsed_s": time.perf_counter() - started,
        "load_average_end": load_average(),
    }
    print(format_report(meta, results, extras, targets))
    print(f"(took {meta['elapsed_s']:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "extras": extras, "targets": targets},
                      f, indent=1)
        progress(f"saved {args.json}")
    if args.plot:
        from .plot import plot

        plot(results, args.plot, meta)
        progress(f"saved {args.plot}")
    return 0
