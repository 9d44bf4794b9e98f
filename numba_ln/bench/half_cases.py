"""``python -m numba_ln.bench --half``: layer_norm on bfloat16 and float16 data.

Cases (``HALF_CASES``): (4096, 1024), (16384, 1024) and (4096, 4096) in both dtypes.  The
contenders are the suite's (numba_ln/bench/contenders.py), in the data's dtype:

``numba_ln-out`` / ``numba_ln-alloc``  16-bit in and out, float32 math, one rounding
``numpy``        the NumPy expression on float32 copies, rounded back
``torch``        ``F.layer_norm`` on 16-bit tensors (bfloat16 shared through its bits)
``onnxruntime``  float16 LayerNormalization (its Python binding takes no bfloat16 arrays)
``line-*``       copying the same 16-bit bytes (the speed line)

Besides, numba_ln-out runs on the float32 cases of the same shapes (``FLOAT32_CASES``), for
the elements-per-second target: at the same element count, 16-bit data move half the
bytes.  Targets: ``targets.HALF_TARGETS``.
"""
from .cases import CASE_BY_NAME, Case
from .contenders import LIBRARIES, LINES
from .timing import ratio, run_case

SHAPES = {(4096, 1024): (64, 1024), (16384, 1024): (64, 1024), (4096, 4096): (16, 4096)}
TAGS = {"bfloat16": "bf16", "float16": "f16"}
HALF_CASES = tuple(Case(f"{r}x{c}-{tag}", (r, c), small, dtype=dtype)
                   for dtype, tag in TAGS.items() for (r, c), small in SHAPES.items())
HALF_CASE_BY_NAME = {c.name: c for c in HALF_CASES}
# every forward and 16-bit case by name (the pytest-benchmark files take names as parameters:
# pytest-benchmark saves a Case object as "UNSERIALIZABLE[...]")
CASE_OR_HALF_BY_NAME = {**CASE_BY_NAME, **HALF_CASE_BY_NAME}
# The float32 shapes of 64 MB (the elements-per-second target) and the cases they pair with.
FLOAT32_CASES = ("16384x1024", "4096x4096")


def run(settings, threads, small=False, progress=None, libraries=LIBRARIES):
    """(16-bit results, float32 results): run_case dicts, as the main suite's."""
    half = []
    for case in HALF_CASES:
        if progress:
            progress(f"half: layer_norm {case.name}")
        half.append(run_case("layer_norm", case, threads, settings, libraries, small=small))
    wide = []
    for name in FLOAT32_CASES:
        if progress:
            progress(f"half: layer_norm {name} (float32, numba_ln-out)")
        wide.append(run_case("layer_norm", CASE_BY_NAME[name], threads, settings,
                             ("numba_ln-out",) + LINES, small=small))
    return half, wide


def elements_per_second(half, wide, dtype="bfloat16"):
    """{shape name: numba_ln-out's float32 time / its 16-bit time} at the float32 cases'
    shapes (same element count: the elements-per-second ratio)."""
    by_name = {r["case"]: r for r in half}
    found = {}
    for r in wide:
        h = by_name.get(f"{r['case']}-{TAGS[dtype]}")
        t16 = h and (h["libraries"].get("numba_ln-out") or {}).get("times_s")
        t32 = (r["libraries"].get("numba_ln-out") or {}).get("times_s")
        if t16 and t32:
            found[r["case"]] = ratio(t32, t16)
    return found


def format_results(half, wide):
    cols = ("numba_ln-out", "numba_ln-alloc", "torch", "numpy", "onnxruntime")
    lines = ["layer_norm, 16-bit data: fraction of the 16-bit copy line (GB/s of the line); "
             "x torch = torch's time / numba_ln-alloc's",
             f"{'case':<16} {'line GB/s':>9} " + " ".join(f"{c:>14}" for c in cols)
             + f" {'x torch':>8}"]
    for r in half + wide:
        libs = r["libraries"]
        cells = []
        for c in cols:
            f = (libs.get(c) or {}).get("fraction_of_line")
            cells.append(f"{'-' if f is None else f'{f:.2f}':>14}")
        torch = (libs.get("torch") or {}).get("speedup_alloc")
        gbps = r["line"]["gbps"]
        lines.append(f"{r['case']:<16} {'-' if gbps is None else f'{gbps:9.1f}':>9} "
                     + " ".join(cells) + f" {'-' if torch is None else f'{torch:8.2f}':>8}")
    eps = elements_per_second(half, wide)
    if eps:
        lines.append("bfloat16 elements/s vs float32 (numba_ln-out): "
                     + ", ".join(f"{k} {v:.2f}x" for k, v in eps.items()))
    return "\n".join(lines)


def main(args, settings, threads, progress):
    """The --half run of the CLI (numba_ln/bench/cli.py): table, targets, --json."""
    import json
    import sys
    import time

    from .environment import environment, load_average
    from .report import format_report
    from .targets import HALF_TARGETS, evaluate_targets

    started = time.perf_counter()
    env = environment(threads)
    half, wide = run(settings, threads, small=args.small, progress=progress)
    extras = {"half_elements_per_second": elements_per_second(half, wide)}
    targets = [] if args.no_targets else evaluate_targets(half, extras, HALF_TARGETS)
    meta = {"command": " ".join(["python -m numba_ln.bench", *sys.argv[1:]]),
            "environment": env, "settings": settings, "small": args.small,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "elapsed_s": time.perf_counter() - started, "load_average_end": load_average()}
    print(format_report(meta, half + wide, {}, targets))
    print(format_results(half, wide))
    print(f"(took {meta['elapsed_s']:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "half": half, "float32": wide, "extras": extras,
                       "targets": targets}, f, indent=1)
        progress(f"saved {args.json}")
    return 0
