"""``python -m numba_ln.bench``: the run (cases, extra measurements, targets, report,
``--json`` and ``--plot`` files) of a checked command line (arguments.py); ``--device
cuda`` hands over to :mod:`numba_ln.cuda.bench`."""
import json
import sys
import time

import numba

from .arguments import FULL, QUICK, backward_selection, checked, cuda_cases, selection
from .base import missing
from .environment import environment, load_average
from .report import format_report
from .startup import startup_overhead
from .targets import evaluate_targets
from .timing import SCALING_CASE, run_case, thread_scaling

DASK_ROUNDS, DASK_ROUNDS_QUICK = 7, 3  # --dask: each round is a second or more per case
_T0 = time.perf_counter()


def progress(message):
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _run_cuda(args, settings, cases):
    try:
        from numba_ln.cuda import bench as cuda_bench
    except Exception as exc:  # missing module, or CUDA itself unusable
        sys.exit(f"python -m numba_ln.bench --device cuda: numba_ln.cuda.bench is not "
                 f"available ({type(exc).__name__}: {exc})")
    try:
        results = cuda_bench.run(cases=cases, repeats=settings["rounds"], progress=progress)
    except RuntimeError as exc:  # no GPU, or the CUDA simulator
        sys.exit(f"python -m numba_ln.bench --device cuda: {exc}")
    print(cuda_bench.format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": {"command": " ".join(sys.argv), "device": "cuda"},
                       "results": results}, f, indent=1, default=str)
    return 0


def _run_dask(args):
    from .dask_cases import format_results, run

    absent = [m for m in ("dask", "distributed") if missing(m)]
    if absent:
        sys.exit(f"python -m numba_ln.bench --dask: {' and '.join(absent)} not installed "
                 "(pip install 'numba_ln[dask]')")
    rounds = args.rounds if args.rounds is not None else (
        DASK_ROUNDS_QUICK if args.quick else DASK_ROUNDS)
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


def _run_backward(args, settings, threads, cases, funcs):
    from . import backward_cases as bc
    from .targets import BACKWARD_TARGETS

    started = time.perf_counter()
    env = environment(threads)
    results = bc.run(settings, threads, cases, funcs, small=args.small, progress=progress)
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
    p, args, mode = checked(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("rounds", "batch_ms", "warmup_ms"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if mode == "--device cuda":
        return _run_cuda(args, settings, cuda_cases(p, args))
    if mode == "--dask":
        return _run_dask(args)
    if mode == "--backward":
        backward_cases, backward_funcs = backward_selection(p, args)
    elif mode is None:
        work, libs = selection(p, args)
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    if mode == "--backward":
        return _run_backward(args, settings, threads, backward_cases, backward_funcs)
    if mode == "--half":
        return _run_half(args, settings, threads)
    if mode == "--latency":
        from .latency import main as run_latency

        return run_latency(args, settings, threads, progress)
    return _run_forward(args, argv, settings, threads, work, libs)


def _run_forward(args, argv, settings, threads, work, libs):
    """The forward suite: every (function, case) of ``work``, then the targets, the report
    and the --json and --plot files."""
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
