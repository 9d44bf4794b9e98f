"""Per-call time of mid-sized float32 calls against torch, forward and backward.

    python benchmarks/mid_sizes.py [--threads 2] [--rounds 9]

Between the serial bounds and ~1M elements threads start and the Python front is still a
visible share of a call.  Per shape: layer_norm allocating and with out= against torch's
F.layer_norm, layer_norm_backward allocating and with out= against torch's
native_layer_norm_backward, each the median over rounds of the per-round ratio (the
contenders interleaved in every round; < 1: numba_ln is faster).
"""
import argparse
import timeit

import numba
import numpy as np

import numba_ln

SHAPES = [(64, 1024), (192, 1024), (256, 768), (400, 1024), (1100, 300)]


def contenders(torch, x, dy, out):
    cols = x.shape[1]
    g, b = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    xt, dyt, gt, bt = map(torch.from_numpy, (x, dy, g, b))
    mean = xt.mean(1, keepdim=True)
    rstd = 1 / torch.sqrt(xt.var(1, unbiased=False, keepdim=True) + 1e-5)
    return {
        "torch forward": lambda: torch.nn.functional.layer_norm(xt, (cols,), gt, bt),
        "torch backward": lambda: torch.ops.aten.native_layer_norm_backward(
            dyt, xt, [cols], mean, rstd, gt, bt, [True, True, True]),
        "forward alloc": lambda: numba_ln.layer_norm(x, g, b),
        "forward out=": lambda: numba_ln.layer_norm(x, g, b, out=out),
        "backward alloc": lambda: numba_ln.layer_norm_backward(dy, x, g),
        "backward out=": lambda: numba_ln.layer_norm_backward(dy, x, g, out=out),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
        parser.error(f"--threads must be between 1 and NUMBA_NUM_THREADS="
                     f"{numba.config.NUMBA_NUM_THREADS}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    import torch

    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"float32, {args.threads} threads, x torch (medians of {args.rounds} per-round "
          "ratios)")
    print("| shape | forward alloc | forward out= | backward alloc | backward out= | torch "
          "forward / backward us |")
    print("|---|---:|---:|---:|---:|---:|")
    for rows, cols in SHAPES:
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        dy = rng.standard_normal((rows, cols)).astype(np.float32)
        calls = contenders(torch, x, dy, np.empty_like(x))
        times = {name: [] for name in calls}
        for call in calls.values():
            call()
        number = max(3, int(3000 / (rows * cols / 65536 * 10)))
        for _ in range(args.rounds):
            for name, call in calls.items():
                times[name].append(min(timeit.repeat(call, number=number, repeat=2)) / number)
        times = {name: np.array(t) for name, t in times.items()}

        def ratio(name):
            peer = times["torch " + name.split()[0]]
            return np.median(times[name] / peer)
        cells = " | ".join(f"{ratio(name):.2f}" for name in
                           ("forward alloc", "forward out=", "backward alloc", "backward out="))
        print(f"| ({rows}, {cols}) | {cells} | {np.median(times['torch forward']) * 1e6:.1f} / "
              f"{np.median(times['torch backward']) * 1e6:.1f} |")


if __name__ == "__main__":
    main()
