"""``python -m numba_ln.bench --latency``: per-call time of the argument forms users write,
at (1, 768) (a decoded token) and (64, 1024), against torch at the same shape in the same
process.

Each form is timed in batches of calls, interleaved with torch's in every round; a row
reports the median per-call time and the median of the per-round ratios to torch's
``F.layer_norm`` (forward forms) or ``torch.ops.aten.native_layer_norm_backward``
(backward forms), float32 (the 16-bit forms too), with the same thread count.
"""
import time

import numpy as np

from .base import missing
from .timing import settle_time

SHAPES = ((1, 768), (64, 1024))
# Targets (issue "every call at kernel speed"): forward forms and modules at most 0.5x
# torch at (1, 768); backward at most 0.5x at (1, 768) and 1.0x at (64, 1024).
FORWARD_TARGET = {(1, 768): 0.5}
BACKWARD_TARGET = {(1, 768): 0.5, (64, 1024): 1.0}


def forms(shape, rng):
    """{name: (callable, is_backward)} for one shape, float32 data."""
    import numba_ln

    x = rng.standard_normal(shape).astype(np.float32)
    cols = shape[-1]
    g = (1 + 0.1 * rng.standard_normal(cols)).astype(np.float32)
    b = (0.1 * rng.standard_normal(cols)).astype(np.float32)
    g64, b64 = g.astype(np.float64), b.astype(np.float64)
    xt = np.ascontiguousarray(x.T)  # the normalized axis first
    r = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    module = numba_ln.LayerNorm(cols)
    eps32 = np.float32(1e-5)  # (made once, as a config's value is: its making is not the call)
    out = {
        "layer_norm(x, g, b)": (lambda: numba_ln.layer_norm(x, g, b), False),
        "eps=np.float32(1e-5)": (lambda: numba_ln.layer_norm(x, g, b, eps=eps32), False),
        "float64 g, b": (lambda: numba_ln.layer_norm(x, g64, b64), False),
        "return_stats=True": (lambda: numba_ln.layer_norm(x, g, b, return_stats=True), False),
        "axis=0, transposed": (lambda: numba_ln.layer_norm(xt, g, b, axis=0), False),
        "LayerNorm(cols)(x)": (lambda: module(x), False),
        "moments(x)": (lambda: numba_ln.moments(x), False),
        "rms_norm(x, g)": (lambda: numba_ln.rms_norm(x, g), False),
        "add_layer_norm(x, r, g, b)": (lambda: numba_ln.add_layer_norm(x, r, g, b), False),
        "add_layer_norm return_stats": (
            lambda: numba_ln.add_layer_norm(x, r, g, b, return_stats=True), False),
        "axis=1": (lambda: numba_ln.layer_norm(x, g, b, axis=1), False),
        "float16 x": (lambda xh=x.astype(np.float16): numba_ln.layer_norm(xh), False),
        "layer_norm_backward(dy, x, g)": (lambda: numba_ln.layer_norm_backward(dy, x, g), True),
        "rms_norm_backward(dy, x, g)": (lambda: numba_ln.rms_norm_backward(dy, x, g), True),
        # (training forms: the backward of add_layer_norm, and a frozen norm's)
        "grad_residual=r": (
            lambda: numba_ln.layer_norm_backward(dy, x, g, grad_residual=r), True),
        "param_grads=False": (
            lambda: numba_ln.layer_norm_backward(dy, x, g, param_grads=False), True),
    }
    if not missing("ml_dtypes"):
        import ml_dtypes

        xb, dyb = x.astype(ml_dtypes.bfloat16), dy.astype(ml_dtypes.bfloat16)
        out["bfloat16 x"] = (lambda: numba_ln.layer_norm(xb), False)
        out["bfloat16 layer_norm_backward"] = (
            lambda: numba_ln.layer_norm_backward(dyb, xb, g), True)
    return out, (x, g, b, dy)


def torch_peers(x, g, b, dy):
    """(forward, backward) torch callables at x's shape, or (None, None) without torch."""
    if missing("torch"):
        return None, None
    import torch
    import torch.nn.functional as F

    xt, gt, bt, dyt = (torch.from_numpy(a) for a in (x, g, b, dy))
    cols = [x.shape[-1]]
    _, mean, rstd = torch.ops.aten.native_layer_norm(xt, cols, gt, bt, 1e-5)
    mask = [True, True, True]

    def forward():
        return F.layer_norm(xt, cols, gt, bt, 1e-5)

    def backward():
        return torch.ops.aten.native_layer_norm_backward(dyt, xt, cols, mean, rstd, gt, bt,
                                                         mask)
    return forward, backward


def _per_call(f, batch_s):
    """Seconds per call of f over a batch of about batch_s seconds."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            f()
        n += 50
        elapsed = time.perf_counter() - start
        if elapsed >= batch_s:
            return elapsed / n


def measure(rounds, batch_ms, shapes=SHAPES, names=None, progress=lambda m: None):
    """[{shape, form, us, ratio, backward}] with medians over rounds."""
    rng = np.random.default_rng(0)
    rows = []
    for shape in shapes:
        table, arrays = forms(shape, rng)
        if names is not None:
            table = {k: v for k, v in table.items() if k in names}
        peer_fwd, peer_bwd = torch_peers(*arrays)
        for f, _ in table.values():  # compile (or load) every form first
            f()
        times = {k: [] for k in table}
        ratios = {k: [] for k in table}
        for i in range(rounds):
            progress(f"latency {shape}: round {i + 1}/{rounds}")
            peers = {False: peer_fwd and _per_call(peer_fwd, batch_ms / 1e3),
                     True: peer_bwd and _per_call(peer_bwd, batch_ms / 1e3)}
            time.sleep(settle_time("torch"))  # (its threads spin after a call: timing.py)
            for name, (f, backward) in table.items():
                t = _per_call(f, batch_ms / 1e3)
                times[name].append(t)
                if peers[backward]:
                    ratios[name].append(t / peers[backward])
        for name, (_, backward) in table.items():
            rows.append({"shape": shape, "form": name, "backward": backward,
                         "us": float(np.median(times[name])) * 1e6,
                         "ratio": float(np.median(ratios[name])) if ratios[name] else None})
    return rows


def verdict(row):
    """'PASS'/'MISS' against the targets, '' where none applies."""
    limit = (BACKWARD_TARGET if row["backward"] else FORWARD_TARGET).get(tuple(row["shape"]))
    if limit is None or row["ratio"] is None:
        return ""
    return f"{'PASS' if row['ratio'] <= limit else 'MISS'} (<= {limit}x)"


def format_table(rows):
    lines = ["| form | shape | us per call | x torch | target |", "|---|---|---:|---:|---|"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"| `{r['form']}` | {shape} | {r['us']:.2f} | {ratio} | {verdict(r)} |")
    return "\n".join(lines)


def main(args, settings, threads, progress):
    import json

    if not missing("torch"):
        import torch

        torch.set_num_threads(threads)
    rounds = settings["rounds"]
    batch_ms = min(settings["batch_ms"], 20.0)
    rows = measure(rounds, batch_ms, progress=progress)
    print(f"Per-call time, {threads} threads, medians of {rounds} interleaved rounds "
          "(torch: F.layer_norm / native_layer_norm_backward, float32, same shape)")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"latency": rows, "threads": threads, "rounds": rounds}, f, indent=1)
    return 0
