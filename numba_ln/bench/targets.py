"""The project's performance targets (issue "Exact at memory speed"), each judged PASS /
MISS / SKIP on what a run measured.

``TARGETS`` is the single table of targets: what is compared, where, against which
threshold.  A target is judged only on the cases of its selection that were measured (and
whose contenders ran); with none it is a SKIP.  ``{t:g}`` in a text is the threshold and
``{cases}`` the selection, so that the printed line always says what is checked.

>>> fake = [{"function": "layer_norm", "case": "65536x64",
...          "libraries": {"numba_ln-out": {"fraction_of_line": 0.7}}}]
>>> [(t["status"], t["measured"]) for t in evaluate_targets(fake, {})
...  if t["target"].startswith("layer_norm out= >= 0.6x")]
[('PASS', '0.70 (65536x64)')]
"""
import operator
from dataclasses import dataclass

from .cases import CASE_BY_NAME, CASES
from .half_cases import HALF_CASE_BY_NAME, HALF_CASES
from .timing import SCALING_CASE, ratio

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le}


@dataclass(frozen=True)
class Cases:
    """A selection of cases: ``text`` for the target line, ``keep(case)`` to filter."""

    text: str
    keep: object


def named(*names):
    assert all(n in CASE_BY_NAME for n in names), names
    return Cases("at " + ", ".join(names), lambda c: c.name in names)


EVERY = Cases("at every case of the suite", lambda c: True)
ROWS_4K = Cases("at every case with >= 4096 rows", lambda c: c.rows >= 4096)


def _times(r, lib):
    return (r["libraries"].get(lib) or {}).get("times_s")


class LineFraction:
    """``lib``'s fraction of the speed line (line time / its time)."""

    def __init__(self, lib):
        self.lib = lib

    def __call__(self, r):
        return (r["libraries"].get(self.lib) or {}).get("fraction_of_line")


class Speedup:
    """How many times faster ``ours`` is than ``peer``: median of t(peer) / t(ours)."""

    def __init__(self, ours, peer):
        self.ours, self.peer = ours, peer

    def __call__(self, r):
        a, b = _times(r, self.peer), _times(r, self.ours)
        return ratio(a, b) if a and b else None


class TimeRatio(Speedup):
    """``ours``'s time as a fraction of ``peer``'s: median of t(ours) / t(peer)."""

    def __call__(self, r):
        a, b = _times(r, self.ours), _times(r, self.peer)
        return ratio(a, b) if a and b else None

    def detail(self, r, value):
        us = {lib: r["libraries"][lib]["per_call_us"] for lib in (self.ours, self.peer)}
        return (f"{value:.2f}x ({us[self.ours]:.2f} us vs {self.peer} {us[self.peer]:.2f} us; "
                f"{r['case']})")


def _thread_scaling(extras):
    s = extras.get("thread_scaling")
    if not s or s["threads"] < 2:
        return None
    return (SCALING_CASE, s["speedup"],
            f"{s['speedup']:.2f}x at {s['threads']} threads "
            f"({s['one_thread_us']:.0f} us -> {s['n_threads_us']:.0f} us)")


def _startup(extras):
    s = extras.get("startup")
    if not s:
        return None
    return ("startup", s["overhead_s"],
            f"+{s['overhead_s']:.2f} s ({s['numba_ln_first_calls_s']:.2f} s vs "
            f"{s['import_numba_s']:.2f} s, median of {s['repeats']})")


@dataclass(frozen=True)
class Target:
    text: str
    op: str
    threshold: float
    func: str = None
    cases: Cases = None
    metric: object = None  # result -> value, or None where not measured
    extra: object = None  # extras -> (label, value, measured text), or None
    unmeasured: str = "not measured"


OUT, ALLOC = "numba_ln-out", "numba_ln-alloc"
LN, RMS, ADD_LN = "layer_norm", "rms_norm", "add_layer_norm"

TARGETS = (
    Target("layer_norm out= >= {t:g}x the speed line {cases}", ">=", 0.8, LN,
           named("4096x768", "4096x1024", "16384x1024", "4096x4096"), LineFraction(OUT)),
    Target("layer_norm allocating faster than torch F.layer_norm {cases} (speedup)", ">", 1.0,
           LN, EVERY, Speedup(ALLOC, "torch")),
    Target("layer_norm allocating >= {t:g}x onnxruntime-run (session.run) {cases} (speedup)",
           ">=", 1.2, LN, ROWS_4K, Speedup(ALLOC, "onnxruntime-run")),
    Target("layer_norm allocating time <= {t:g}x the out= time {cases} (64 MB inputs)", "<=",
           1.15, LN, named("4096x4096", "16384x1024"), TimeRatio(ALLOC, OUT)),
    Target("layer_norm allocating per-call time <= {t:g}x torch's {cases}", "<=", 0.6, LN,
           named("1x768"), TimeRatio(ALLOC, "torch")),
    Target("layer_norm out= >= {t:g}x the speed line {cases}", ">=", 0.6, LN,
           named("65536x64"), LineFraction(OUT)),
    Target("layer_norm out= >= {t:g}x the speed line {cases} (channels-first)", ">=", 0.5, LN,
           named("32x256x56x56-axis1"), LineFraction(OUT)),
    Target("layer_norm 1x4194304 out= >= {t:g}x faster with N threads than with 1", ">=", 1.5,
           extra=_thread_scaling, unmeasured="needs the case selected and >= 2 threads"),
    Target("rms_norm out= >= {t:g}x the speed line {cases}", ">=", 0.8, RMS, ROWS_4K,
           LineFraction(OUT)),
    Target("rms_norm allocating >= {t:g}x torch F.rms_norm {cases} (speedup)", ">=", 2.0, RMS,
           ROWS_4K, Speedup(ALLOC, "torch")),
    Target("add_layer_norm out= >= {t:g}x its speed line {cases}", ">=", 0.75, ADD_LN, ROWS_4K,
           LineFraction(OUT)),
    Target("add_layer_norm allocating faster than torch x + r, F.layer_norm {cases} (speedup)",
           ">", 1.0, ADD_LN, ROWS_4K, Speedup(ALLOC, "torch")),
    Target("add_layer_norm out= faster than onnxruntime SkipLayerNormalization (IOBinding) "
           "{cases} (speedup)", ">", 1.0, ADD_LN, ROWS_4K, Speedup(OUT, "onnxruntime")),
    Target("add_layer_norm allocating per-call time <= {t:g}x torch's {cases}", "<=", 0.6,
           ADD_LN, named("1x768"), TimeRatio(ALLOC, "torch")),
    Target("new process, warm cache: import + first calls <= {t:g} s over `import numba`",
           "<=", 1.0, extra=_startup),
)

# python -m numba_ln.bench --backward (backward_cases.py): the line is 1.5x the forward's.
# The speedups are those of the allocating call: torch allocates its gradients too.
LN_BW, RMS_BW = "layer_norm_backward", "rms_norm_backward"
# (issue 17's thresholds: out= 0.6 of the line at the 64 MB shapes, allocating 1.5x torch at
# every case; the older 0.7 of the line at every case and 2x torch were the stretch)
BACKWARD = named("4096x768", "4096x1024", "16384x1024", "4096x4096")
BACKWARD_LARGE = named("16384x1024", "4096x4096")
BACKWARD_TARGETS = (
    Target("layer_norm_backward out= >= {t:g}x its speed line (1.5x the forward's) {cases}",
           ">=", 0.6, LN_BW, BACKWARD_LARGE, LineFraction(OUT)),
    Target("layer_norm_backward allocating >= {t:g}x torch native_layer_norm_backward "
           "{cases} (speedup)", ">=", 1.5, LN_BW, BACKWARD, Speedup(ALLOC, "torch")),
    Target("rms_norm_backward allocating >= {t:g}x torch autograd of F.rms_norm {cases} "
           "(speedup)", ">=", 3.0, RMS_BW, BACKWARD, Speedup(ALLOC, "torch")),
    Target("layer_norm_backward bfloat16 allocating >= {t:g}x torch's bfloat16 "
           "native_layer_norm_backward {cases} (speedup)", ">=", 3.0, LN_BW,
           Cases("at 4096x1024-bf16", lambda c: c.name == "4096x1024-bf16"),
           Speedup(ALLOC, "torch")),
)


# python -m numba_ln.bench --half (half_cases.py): the line copies the same 16-bit bytes.
def _half_cases(keep):
    return Cases("at " + ", ".join(c.name for c in HALF_CASES if keep(c)),
                 lambda c: c in HALF_CASES and keep(c))


# (issue 22's thresholds: 0.7 at the 32 MB shapes, 0.5 at (4096, 1024), whose 8 MB in
# and out the copy line moves within the caches)
HALF_LARGE = _half_cases(lambda c: c.shape != (4096, 1024))
HALF_IN_CACHE = _half_cases(lambda c: c.shape == (4096, 1024))
HALF_BF16 = _half_cases(lambda c: c.dtype == "bfloat16")


def _half_elements(extras):
    found = extras.get("half_elements_per_second")
    if not found:
        return None
    worst = min(found, key=found.get)
    return (worst, found[worst], f"worst {found[worst]:.2f}x at {worst}; "
            + ", ".join(f"{k} {v:.2f}x" for k, v in found.items()))


HALF_TARGETS = (
    Target("layer_norm 16-bit out= >= {t:g}x the 16-bit speed line {cases}", ">=", 0.7, LN,
           HALF_LARGE, LineFraction(OUT)),
    Target("layer_norm 16-bit out= in cache >= {t:g}x the 16-bit speed line {cases}", ">=",
           0.5, LN, HALF_IN_CACHE, LineFraction(OUT)),
    Target("layer_norm bfloat16 allocating >= {t:g}x torch's bfloat16 F.layer_norm {cases} "
           "(speedup)", ">=", 3.0, LN, HALF_BF16, Speedup(ALLOC, "torch")),
    Target("layer_norm bfloat16 elements/s >= {t:g}x numba_ln float32's (out=, same shape) "
           "at 16384x1024, 4096x4096", ">=", 1.6, extra=_half_elements,
           unmeasured="needs the float32 cases"),
)


def target_text(target):
    return target.text.format(t=target.threshold,
                              cases=target.cases.text if target.cases else "")


def _values(target, results):
    """[(case name, value, result)] for the measured cases of ``target``'s selection."""
    found = []
    for r in results:
        case = CASE_BY_NAME.get(r["case"]) or HALF_CASE_BY_NAME.get(r["case"])
        if r["function"] == target.func and case is not None and target.cases.keep(case):
            v = target.metric(r)
            if v is not None:
                found.append((r["case"], v, r))
    return found


def verdict(text, values, op, threshold, fmt="{:.2f}"):
    """PASS when every (case, value) meets ``op threshold``; the worst value is quoted."""
    if not values:
        return {"target": text, "status": "SKIP", "measured": "not measured", "values": {}}
    ok = OPS[op]
    worst = (max if op == "<=" else min)(values, key=lambda cv: cv[1])
    status = "PASS" if all(ok(v, threshold) for _, v in values) else "MISS"
    if len(values) == 1:
        measured = fmt.format(worst[1]) + f" ({worst[0]})"
    else:
        measured = (f"worst {fmt.format(worst[1])} at {worst[0]}; "
                    + ", ".join(f"{c} {fmt.format(v)}" for c, v in values))
    return {"target": text, "status": status, "measured": measured,
            "values": {c: v for c, v in values}, "threshold": threshold}


def evaluate(target, results, extras):
    text = target_text(target)
    if target.extra is not None:
        got = target.extra(extras)
        if got is None:
            return {"target": text, "status": "SKIP", "measured": target.unmeasured,
                    "values": {}}
        label, value, measured = got
        v = verdict(text, [(label, value)], target.op, target.threshold)
        v["measured"] = measured
        return v
    found = _values(target, results)
    v = verdict(text, [(c, x) for c, x, _ in found], target.op, target.threshold)
    if len(found) == 1 and hasattr(target.metric, "detail"):
        v["measured"] = target.metric.detail(found[0][2], found[0][1])
    return v


def evaluate_targets(results, extras, targets=TARGETS):
    """Every target, PASS / MISS / SKIP with its measured figure, in table order."""
    return [evaluate(t, results, extras) for t in targets]


assert all(t.func is None or any(t.func in c.functions and t.cases.keep(c) for c in CASES)
           for t in TARGETS), "a target selects no case of its function"
