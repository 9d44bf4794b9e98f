"""``python -m numba_ln.bench --latency``: per-call time of the argument forms users write,
at (1, 768) (a decoded token) and (64, 1024), against torch at the same shape in the same
process.

Each form is timed in batches of calls, interleaved with torch's in every round; a row
reports the median per-call time and the median of the per-round ratios to torch doing
the same work: ``F.layer_norm`` (forward forms), ``x + r`` then ``F.layer_norm`` (the
fused forms, as the main table's peer for add_layer_norm) or
``torch.ops.aten.native_layer_norm_backward`` (backward forms), float32 (the 16-bit forms
too), with the same thread count.
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
# the torch call each form is compared with (torch_peers), and its name in the table
FORWARD, FUSED, BACKWARD = "forward", "fused", "backward"
PEER_NAMES = {FORWARD: "F.layer_norm", FUSED: "x + r, F.layer_norm",
              BACKWARD: "native_layer_norm_backward"}


def forms(shape, rng):
    """{name: (callable, peer)} for one shape, float32 data (peer: FORWARD, FUSED or
    BACKWARD)."""
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
    # the same elements as (rows, 16, cols / 16), normalized over the last two axes (a
    # torch-style LayerNorm([16, cols / 16])), parameters of that shape
    x3, dy3 = x.reshape(shape[0], 16, -1), dy.reshape(shape[0], 16, -1)
    g2, b2 = g.reshape(16, -1), b.reshape(16, -1)
    module2 = numba_ln.LayerNorm(g2.shape)
    xs, dys = x.reshape(1, *shape), dy.reshape(1, *shape)
    out = {
        "layer_norm(x, g, b)": (lambda: numba_ln.layer_norm(x, g, b), FORWARD),
        "eps=np.float32(1e-5)": (lambda: numba_ln.layer_norm(x, g, b, eps=eps32), FORWARD),
        "float64 g, b": (lambda: numba_ln.layer_norm(x, g64, b64), FORWARD),
        "return_stats=True": (lambda: numba_ln.layer_norm(x, g, b, return_stats=True), FORWARD),
        "axis=0, transposed": (lambda: numba_ln.layer_norm(xt, g, b, axis=0), FORWARD),
        "LayerNorm(cols)(x)": (lambda: module(x), FORWARD),
        "axis=(-2, -1), 16 x cols/16": (lambda: numba_ln.layer_norm(x3, g2, b2, axis=(-2, -1)),
                                        FORWARD),
        "LayerNorm((16, cols/16))(x)": (lambda: module2(x3), FORWARD),
        "moments(x)": (lambda: numba_ln.moments(x), FORWARD),
        "rms_norm(x, g)": (lambda: numba_ln.rms_norm(x, g), FORWARD),
        "add_layer_norm(x, r, g, b)": (lambda: numba_ln.add_layer_norm(x, r, g, b), FUSED),
        "add_layer_norm return_stats": (
            lambda: numba_ln.add_layer_norm(x, r, g, b, return_stats=True), FUSED),
        "axis=1": (lambda: numba_ln.layer_norm(x, g, b, axis=1), FORWARD),
        # (a batch of sequences, (B, T, C), as transformers hold activations: one of them)
        "x as (1, rows, cols)": (lambda: numba_ln.layer_norm(xs, g, b), FORWARD),
        "float16 x": (lambda xh=x.astype(np.float16): numba_ln.layer_norm(xh), FORWARD),
        "layer_norm_backward(dy, x, g)": (lambda: numba_ln.layer_norm_backward(dy, x, g),
                                          BACKWARD),
        "rms_norm_backward(dy, x, g)": (lambda: numba_ln.rms_norm_backward(dy, x, g),
                                        BACKWARD),
        "backward axis=(-2, -1)": (
            lambda: numba_ln.layer_norm_backward(dy3, x3, g2, axis=(-2, -1)), BACKWARD),
        # (training forms: the backward of add_layer_norm, and a frozen norm's)
        "grad_residual=r": (
            lambda: numba_ln.layer_norm_backward(dy, x, g, grad_residual=r), BACKWARD),
        "backward, x as (1, rows, cols)": (lambda: numba_ln.layer_norm_backward(dys, xs, g),
                                           BACKWARD),
        "param_grads=False": (
            lambda: numba_ln.layer_norm_backward(dy, x, g, param_grads=False), BACKWARD),
    }
    if shape[0] == 1:  # (a decoder's token as a vector: its residual stream's fused step)
        x1, r1 = x[0], r[0]
        out["add_layer_norm, x as (cols,)"] = (
            lambda: numba_ln.add_layer_norm(x1, r1, g, b), FUSED)
    if not missing("ml_dtypes"):
        import ml_dtypes

        xb, dyb = x.astype(ml_dtypes.bfloat16), dy.astype(ml_dtypes.bfloat16)
        out["bfloat16 x"] = (lambda: numba_ln.layer_norm(xb), FORWARD)
        out["bfloat16 layer_norm_backward"] = (
            lambda: numba_ln.layer_norm_backward(dyb, xb, g), BACKWARD)
    return out, (x, g, b, dy, r)


def torch_peers(x, g, b, dy, r):
    """{FORWARD, FUSED, BACKWARD: torch callable} at x's shape, or {} without torch."""
    if missing("torch"):
        return {}
    import torch
    import torch.nn.functional as F

    xt, gt, bt, dyt, rt = (torch.from_numpy(a) for a in (x, g, b, dy, r))
    cols = [x.shape[-1]]
    _, mean, rstd = torch.ops.aten.native_layer_norm(xt, cols, gt, bt, 1e-5)
    mask = [True, True, True]

    def forward():
        return F.layer_norm(xt, cols, gt, bt, 1e-5)

    def fused():  # (the sum is returned too, as add_layer_norm returns it)
        s = xt + rt
        return F.layer_norm(s, cols, gt, bt, 1e-5), s

    def backward():
        return torch.ops.aten.native_layer_norm_backward(dyt, xt, cols, mean, rstd, gt, bt,
                                                         mask)
    return {FORWARD: forward, FUSED: fused, BACKWARD: backward}


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
    """[{shape, form, us, ratio, backward, peer}] with medians over rounds."""
    rng = np.random.default_rng(0)
    rows = []
    for shape in shapes:
        table, arrays = forms(shape, rng)
        if names is not None:
            table = {k: v for k, v in table.items() if k in names}
        peers = torch_peers(*arrays)
        for f, _ in table.values():  # compile (or load) every form first
            f()
        times = {k: [] for k in table}
        ratios = {k: [] for k in table}
        for i in range(rounds):
            progress(f"latency {shape}: round {i + 1}/{rounds}")
            peer_times = {k: _per_call(f, batch_ms / 1e3) for k, f in peers.items()}
            time.sleep(settle_time("torch"))  # (its threads spin after a call: timing.py)
            for name, (f, peer) in table.items():
                t = _per_call(f, batch_ms / 1e3)
                times[name].append(t)
                if peer in peer_times:
                    ratios[name].append(t / peer_times[peer])
        for name, (_, peer) in table.items():
            rows.append({"shape": shape, "form": name, "backward": peer == BACKWARD, "peer": peer,
                         "us": float(np.median(times[name])) * 1e6,
                         "ratio": float(np.median(ratios[name])) if ratios[name] else None})
    return rows


def verdict(row):
    """'PASS'/'MISS' against the targets, '' where none applies."""
    limit = (BACKWARD_TARGET if row["backward"] else FORWARD_TARGET).get(tuple(row["shape"]))
    if limit is None or row["ratio"] is None:
        return ""
    return f"{'PASS' if row['ratio'] <= limit else 'MISS'} (<= {limit}x)"


def _ratio(value):
    """x.xx, or three significant digits below 0.1 ("0.00x" said nothing)."""
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.3g}x"


def format_table(rows):
    lines = ["| form | shape | us per call | x torch | torch's call | target |",
             "|---|---|---:|---:|---|---|"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else _ratio(r["ratio"])
        shape = "x".join(map(str, r["shape"]))
        peer = PEER_NAMES.get(r.get("peer"), "")
        lines.append(f"| `{r['form']}` | {shape} | {r['us']:.2f} | {ratio} | {peer} | "
                     f"{verdict(r)} |")
    return "\n".join(lines)


def main(args, settings, threads, progress):
    import json

    if not missing("torch"):
        import torch

        torch.set_num_threads(threads)
    rounds = settings["rounds"]
    # (the full run's 25 ms batches made the ~40 forms' table slow: 20 ms at most unless
    # --batch-ms asks for more)
    batch_ms = settings["batch_ms"] if args.batch_ms is not None else min(settings["batch_ms"],
                                                                          20.0)
    rows = measure(rounds, batch_ms, progress=progress)
    print(f"Per-call time, {threads} threads, medians of {rounds} interleaved rounds "
          "(torch: F.layer_norm, x + r then F.layer_norm for the fused forms, "
          "native_layer_norm_backward; float32, same shape)")
    print(format_table(rows))
    if args.json:
        import sys

        from .environment import environment, load_average

        # (the other modes' meta block: what ran, where, when)
        meta = {"command": " ".join(["python -m numba_ln.bench", *sys.argv[1:]]),
                "environment": environment(threads), "settings": settings,
                "batch_ms": batch_ms, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "load_average_end": load_average()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "latency": rows, "threads": threads, "rounds": rounds}, f,
                      indent=1)
    return 0
