"""The text report: a header (command, machine, versions, method), one table per (function,
case), the extra measurements, and the target lines."""
import numpy as np

from .contenders import LINES, NUMBA_LN
from .timing import SETTLE_S

# (numba_ln contender, result key, column header): each speedup column names the numba_ln
# contender it is relative to.
SPEEDUP_COLUMNS = tuple((ours, "speedup_" + ours.split("-")[1], f"{ours} speedup")
                        for ours in NUMBA_LN)


def _fmt(v, spec):
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _bytes(n):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _fastest(counts):
    return ", ".join(f"{name[len('line-'):]} {n}" for name, n in counts.items() if n)


def format_case(r):
    head = (f"{r['function']}  {r['case']}  ({'x'.join(map(str, r['shape']))} {r['dtype']}"
            f"{'' if r['axis'] == -1 else ', axis=' + str(r['axis'])})  "
            f"{_bytes(r['bytes'])} moved")
    line = r["line"]
    if line["gbps"]:
        head += (f"   speed line {line['gbps']:.1f} GB/s ({line['median_s'] * 1e6:.1f} us; "
                 f"fastest copy per round: {_fastest(line['fastest'])})")
    widths = [len(h) + 2 for _, _, h in SPEEDUP_COLUMNS]
    # (the names' column as wide as the longest: "numba_ln-recompute" pushed its row out)
    n = max([16] + [len(lib) for lib in list(r["libraries"]) + list(r["skipped"])])
    out = [head, f"  {'library':<{n}} {'us/call':>10} {'GB/s':>7} {'x line':>7}"
                 + "".join(f"{h:>{w}}" for (_, _, h), w in zip(SPEEDUP_COLUMNS, widths))]
    for lib, e in r["libraries"].items():
        cells = ["" if lib == ours or lib in LINES else _fmt(e.get(key), ".2f")
                 for ours, key, _ in SPEEDUP_COLUMNS]
        out.append(f"  {lib:<{n}} {e['per_call_us']:>10.2f} {e['gbps']:>7.2f} "
                   f"{_fmt(e['fraction_of_line'], '.2f'):>7}"
                   + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    for lib, why in r["skipped"].items():
        if why.startswith("broken: "):
            out.append(f"  {lib:<{n}} NOT TIMED, its result failed the check: {why[8:]}")
        else:
            out.append(f"  {lib:<{n}} skipped: {why}")
    return "\n".join(out)


def _header(meta):
    s = ["numba_ln benchmark report", f"  command: {meta['command']}"]
    env = meta["environment"]
    bits = env.get("vector_bits")  # (absent from reports saved before it was recorded)
    width = f"{bits} bits" if bits else "LLVM's choice"
    s.append(f"  CPU: {env['cpu']} ({env['logical_cpus']} logical CPUs); threads: "
             f"{env['threads']} (numba.set_num_threads; torch.set_num_threads and onnxruntime "
             f"intra_op_num_threads the same, inter_op 1); threading layer: "
             f"{env['threading_layer']}; kernels' vector width: {width} "
             "(NUMBA_LN_VECTOR_BITS)")
    least = env.get("stream_min_bytes")  # (absent from reports saved before it was)
    if least is not None:
        s.append(f"  outputs streamed past the caches in calls that move at least "
                 f"{least / 2**20:g} MiB (NUMBA_LN_STREAM_MIN_BYTES)")
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
    settle = ", ".join(f"{name} {seconds * 1e3:g} ms" for name, seconds in SETTLE_S)
    s.append(f"  method: {st['rounds']} interleaved rounds per case, each contender a "
             f"{st['warmup_ms']:g} ms warm-up then a ~{st['batch_ms']:g} ms timed batch, the "
             f"round idling after spinning peers' batches ({settle}); figures are "
             f"medians over rounds of per-round ratios")
    s.append("  columns: x line = speed-line time / time (speed line = the fastest of np.copyto, "
             "a Numba prange copy and one with streamed stores, of the bytes moved); "
             "numba_ln-out speedup / numba_ln-alloc "
             "speedup = this library's time / the time of numba_ln with out= / allocating "
             "(> 1: numba_ln is faster)")
    return s


def _extras(extras):
    s = []
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
    return s + [""] if s else s


def format_targets(targets):
    s = ["targets:"]
    for t in targets:
        s.append(f"  {t['status']:<4}  {t['target']}: {t['measured']}")
    counts = {k: sum(t["status"] == k for t in targets) for k in ("PASS", "MISS", "SKIP")}
    s.append(f"  {counts['PASS']} PASS, {counts['MISS']} MISS, {counts['SKIP']} SKIP")
    return s


def format_report(meta, results, extras, targets):
    s = _header(meta) + [""]
    for r in results:
        s += [format_case(r), ""]
    s += _extras(extras)
    if targets:
        s += format_targets(targets)
    return "\n".join(s)
