"""The bar chart of ``--plot``: each library's fraction of the speed line, one panel per
function.  matplotlib is imported only when a plot is drawn."""
import numpy as np

from .cases import FUNCTIONS

PLOT_LIBRARIES = ("numba_ln-out", "numba_ln-alloc", "numpy", "torch", "onnxruntime",
                  "onnxruntime-run")


def plot(results, path, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    funcs = [f for f in FUNCTIONS if any(r["function"] == f for r in results)]
    # the libraries measured somewhere (one left out by --libraries or skipped everywhere
    # was drawn as bars at 0, like a measured value near 0)
    libs = [lib for lib in PLOT_LIBRARIES if any(lib in r["libraries"] for r in results)]
    fig, axes = plt.subplots(len(funcs), 1, figsize=(12, 3.2 * len(funcs)), squeeze=False)
    width = 0.8 / max(1, len(libs))
    for ax, func in zip(axes[:, 0], funcs):
        rs = [r for r in results if r["function"] == func]
        xs = np.arange(len(rs))
        for i, lib in enumerate(libs):
            vals = [(r["libraries"].get(lib) or {}).get("fraction_of_line") or 0.0 for r in rs]
            ax.bar(xs + (i - (len(libs) - 1) / 2) * width, vals, width, label=lib)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlim(-0.6, max(len(rs), 5) - 0.4)  # same bar width in every panel
        ax.set_xticks(xs, [r["case"] for r in rs], rotation=20, fontsize=8)
        ax.set_ylabel("fraction of speed line")
        ax.set_title(func, fontsize=10)
        ax.legend(fontsize=7, ncol=max(1, len(libs)))
    env = meta["environment"]
    fig.suptitle(f"numba_ln {env['numba_ln']} — {env['cpu']}, {env['threads']} threads "
                 f"(higher is better; 1.0 = copying the bytes)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
