"""Per-call time of mid-sized calls against torch, forward and backward, in the forms users
write.

    python benchmarks/mid_sizes.py [--threads 2] [--rounds 9]

Between the serial bounds and ~1M elements threads start and the Python front is still a
visible share of a call.  Per shape (float32 unless named), against torch in the same
process: layer_norm allocating, with out=, with return_stats, and on bfloat16 data
against F.layer_norm (bfloat16 against torch's bfloat16), moments too (as the bench's
--latency table has it: torch.var_mean took 20-30x F.layer_norm's time here);
layer_norm_backward allocating, with out= and with the forward's mean and rstd given
against native_layer_norm_backward.  Each cell is the median over rounds of
the per-round ratio (the contenders interleaved in every round; < 1: numba_ln is
faster).
"""
import argparse
import time
import timeit

import numba
import numpy as np

import numba_ln

SHAPES = [(64, 1024), (192, 1024), (256, 768), (400, 1024), (1100, 300)]


def contenders(torch, x, dy, out):
    """{name: call}: torch's (named "torch ...") and ours, each ours named by the table's
    column."""
    import ml_dtypes

    cols = x.shape[1]
    g, b = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    xt, dyt, gt, bt = map(torch.from_numpy, (x, dy, g, b))
    mean = xt.mean(1, keepdim=True)
    rstd = 1 / torch.sqrt(xt.var(1, unbiased=False, keepdim=True) + 1e-5)
    _, our_mean, our_rstd = numba_ln.layer_norm(x, g, b, return_stats=True)
    x16 = x.astype(ml_dtypes.bfloat16)
    x16t, g16t, b16t = xt.to(torch.bfloat16), gt.to(torch.bfloat16), bt.to(torch.bfloat16)
    return {
        "torch forward": lambda: torch.nn.functional.layer_norm(xt, (cols,), gt, bt),
        "torch bfloat16": lambda: torch.nn.functional.layer_norm(x16t, (cols,), g16t, b16t),
        "torch backward": lambda: torch.ops.aten.native_layer_norm_backward(
            dyt, xt, [cols], mean, rstd, gt, bt, [True, True, True]),
        "forward alloc": lambda: numba_ln.layer_norm(x, g, b),
        "forward out=": lambda: numba_ln.layer_norm(x, g, b, out=out),
        "forward return_stats": lambda: numba_ln.layer_norm(x, g, b, return_stats=True),
        "bfloat16 alloc": lambda: numba_ln.layer_norm(x16, g, b),
        "moments": lambda: numba_ln.moments(x),
        "backward alloc": lambda: numba_ln.layer_norm_backward(dy, x, g),
        "backward out=": lambda: numba_ln.layer_norm_backward(dy, x, g, out=out),
        "backward stats given": lambda: numba_ln.layer_norm_backward(
            dy, x, g, mean=our_mean, rstd=our_rstd),
    }


# (our contender, torch's): the table's columns
COLUMNS = [("forward alloc", "torch forward"), ("forward out=", "torch forward"),
           ("forward return_stats", "torch forward"), ("bfloat16 alloc", "torch bfloat16"),
           ("moments", "torch forward"), ("backward alloc", "torch backward"),
           ("backward out=", "torch backward"), ("backward stats given", "torch backward")]


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
    print("| shape | " + " | ".join(ours for ours, _ in COLUMNS)
          + " | torch forward / backward us |")
    print("|---|" + "---:|" * (len(COLUMNS) + 1))
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
                if name.startswith("torch"):
                    # (torch's threads spin on after its calls: the contender timed next
                    # ran up to 1.3x slower; the bench idles as long, numba_ln/bench/timing)
                    time.sleep(0.015)
        times = {name: np.array(t) for name, t in times.items()}
        cells = " | ".join(f"{np.median(times[ours] / times[peer]):.2f}"
                           for ours, peer in COLUMNS)
        print(f"| ({rows}, {cols}) | {cells} | {np.median(times['torch forward']) * 1e6:.1f} / "
              f"{np.median(times['torch backward']) * 1e6:.1f} |")


if __name__ == "__main__":
    main()
