"""The calls a precompile task makes (numba_ln/_precompile.py runs them in its worker
processes): each public function on small and large arrays of one dtype (the norms and
their backward on a (B, T, C) batch too), and with --all the other argument forms, whose
kernels are variants of their own."""
import numpy as np

# the small-call/serial kernels; the parallel ones (and, for the backward, the gate's check
# of a threaded call, small_backward_fits)
_SMALL, _LARGE = (2, 768), (512, 1024)
_WIDE = (2, 200_000)  # split rows (--all)


def _dtype(name):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def run_task(function, dtype_name):
    """Make the calls of one task (weights as checkpoints hold them: in the data's dtype)."""
    import numba_ln

    dtype = _dtype(dtype_name)
    shapes = (_SMALL, _LARGE) + ((_WIDE,) if function == "all_forms" else ())
    for shape in shapes:
        x = np.linspace(-1, 1, shape[0] * shape[1]).reshape(shape).astype(dtype)
        w = np.ones(shape[-1], dtype)
        if function == "all_forms":  # the other argument forms, on every function
            numba_ln.layer_norm(x)
            numba_ln.layer_norm(x, w, w, return_stats=True)
            numba_ln.rms_norm(x, return_stats=True)
            numba_ln.rms_norm(x, w, return_stats=True)
            numba_ln.add_layer_norm(x, x, w, w, out=x.copy(), residual_out=x.copy())
            numba_ln.layer_norm(np.asfortranarray(x), w, w)  # the channels kernels
            # the channels-first backward: x and dy transposed into rows (cpu/transpose.py,
            # serial at the small shape, threaded at the large one)
            numba_ln.layer_norm_backward(x, x, np.ones(x.shape[0], dtype), axis=0)
            numba_ln.moments(x, axis=0)
            _other_forms(numba_ln, x, w)
            continue
        f = getattr(numba_ln, function)
        # (a batch of sequences, (B, T, C), too: the small calls read it as it is, kernel
        # variants of their own)
        for data in (x, x.reshape(1, *shape)) if shape == _SMALL else (x,):
            if function == "moments":
                f(data)
            elif function.endswith("_backward"):
                f(data, data, w)
            elif function.startswith("add_"):
                f(data, data, w) if "rms" in function else f(data, data, w, w)
            else:
                f(data, w) if "rms" in function else f(data, w, w)
            if function == "layer_norm_backward":  # (the forward's statistics given)
                _, mean, rstd = numba_ln.layer_norm(data, w, return_stats=True)
                f(data, data, w, mean=mean, rstd=rstd)


def _other_forms(numba_ln, x, w):
    """The forms whose small calls compile kernels of their own (first use ~0.3-3.6 s
    each, measured with the other tasks compiled): a weight without a bias, a token as a
    1-D array, strided rows (x[:, -1, :] of a batch), the fused forms' statistics,
    parameters of another dtype (a checkpoint's) and read-only ones, several trailing axes,
    a residual stream updated in place (residual_out=residual), and the training forms
    (grad_residual, param_grads=False, RMSNorm's given rstd)."""
    other = w.astype(np.float64 if w.dtype == np.float32 else np.float32)  # (16-bit: float32)
    frozen = w.copy()
    frozen.flags.writeable = False
    numba_ln.layer_norm(x, w)
    numba_ln.layer_norm(x[0], w, w)
    numba_ln.rms_norm(x[0], w)
    numba_ln.add_layer_norm(x[0], x[0], w, w)  # (a decoder's residual stream as a vector)
    numba_ln.add_rms_norm(x[0], x[0], w)
    numba_ln.layer_norm(np.concatenate([x, x], axis=1)[:, :x.shape[1]], w, w)
    numba_ln.add_layer_norm(x, x, w, w, return_stats=True)
    numba_ln.add_rms_norm(x, x, w, return_stats=True)
    numba_ln.layer_norm(x, other, other)
    numba_ln.layer_norm(x, frozen, frozen)
    # several trailing axes (a LayerNorm((2, cols / 2))): x and its parameters read as
    # rows as they are, a kernel variant for each rank (3-D here)
    x3, w2 = x.reshape(x.shape[0], 2, -1), w.reshape(2, -1)
    numba_ln.layer_norm(x3, w2, w2, axis=(-2, -1))
    numba_ln.rms_norm(x3, w2, axis=(-2, -1))
    numba_ln.layer_norm_backward(x3, x3, w2, axis=(-2, -1))
    numba_ln.rms_norm_backward(x3, x3, w2, axis=(-2, -1))
    # a pre-LN block's residual stream, updated in place (README, Transformer blocks)
    stream = x.copy()
    numba_ln.add_layer_norm(x, stream, w, w, residual_out=stream)
    numba_ln.add_rms_norm(x, stream, w, residual_out=stream)
    for backward in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward):
        backward(x, x, w, grad_residual=x)
        backward(x, x, w, param_grads=False)
        backward(x, x, frozen)
        backward(x, x, other)  # (float64 weights on float32 data: cpu/convert.narrow_serial)
    numba_ln.rms_norm_backward(x, x, w, rstd=numba_ln.rms_norm(x, w, return_stats=True)[1])
