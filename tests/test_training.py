"""The training example of docs/training.md runs as written (its loss falls), and the
gradients it computes for the whole two-layer model agree with central finite
differences (in float64, where those are accurate to ~1e-9)."""
import re
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "training.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
EXAMPLE = next(b for b in BLOCKS if "def loss_and_grads" in b)


def run_example():
    namespace = {"__name__": "training_example"}
    exec(compile(EXAMPLE, "docs/training.md example", "exec"), namespace)
    return namespace


def test_example_trains():
    ns = run_example()
    losses = ns["losses"]
    assert len(losses) >= 10 and losses[-1] < 0.5 * losses[0]
    assert all(np.isfinite(losses))
    assert all(p.dtype == np.float32 for p in ns["params"].values())


def test_model_gradients_match_finite_differences():
    ns = run_example()
    rng = np.random.default_rng(7)
    p64 = {k: rng.standard_normal(v.shape) * (0.3 if v.ndim == 2 else 1.0) + (k == "g")
           for k, v in ns["params"].items()}
    x, target = (ns[k][:16].astype(np.float64) for k in ("x", "target"))
    loss, grads = ns["loss_and_grads"](p64, x, target)
    h = 1e-6
    for name, p in p64.items():
        assert grads[name].shape == p.shape and grads[name].dtype == np.float64
        fd = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            up = ns["loss_and_grads"](p64, x, target)[0]
            p[i] = old - h
            down = ns["loss_and_grads"](p64, x, target)[0]
            p[i] = old
            fd[i] = (up - down) / (2 * h)
        scale = max(1e-3, np.max(np.abs(fd)))
        assert np.max(np.abs(grads[name] - fd)) <= 1e-6 * scale, name
