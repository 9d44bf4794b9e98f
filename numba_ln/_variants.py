"""The table of public functions: what each one computes and what it returns.  The fronts
(CPU, GPU, @njit overloads) read this instead of branching on function names.

centered  LayerNorm (subtract the mean) or RMSNorm
residual  a fused residual add: s = x + residual is formed, returned and normalized
stats     what ``return_stats`` (moments: always) adds: STATS_MEAN_RSTD, STATS_RSTD or
          STATS_MEAN_VAR
want_y    whether the call writes a normalized output (moments does not)

The STATS_* constants are the one vocabulary for the statistics a call returns, on every
backend: the CPU engine, the GPU kernels (compile-time constants there, hence ints), the
@njit overloads and dask.
"""
from typing import NamedTuple

STATS_NONE = 0       # no statistics
STATS_MEAN_RSTD = 1  # layer_norm: mean, rstd
STATS_RSTD = 2       # rms_norm: rstd
STATS_MEAN_VAR = 3   # moments: mean, var


class Variant(NamedTuple):
    name: str
    centered: bool
    residual: bool
    stats: int  # STATS_*
    want_y: bool = True

    def results(self, y, s, first, second, return_stats):
        """The public return value from the outputs and the statistics: first/second are
        (mean, rstd), (rstd, None) or (mean, var), per ``stats``."""
        head = (y, s) if self.residual else (y,)
        if not return_stats:
            return head if self.residual else y
        if self.stats == STATS_RSTD:
            return head + (first,)
        return head + (first, second)


LAYER_NORM = Variant("layer_norm", True, False, STATS_MEAN_RSTD)
RMS_NORM = Variant("rms_norm", False, False, STATS_RSTD)
ADD_LAYER_NORM = Variant("add_layer_norm", True, True, STATS_MEAN_RSTD)
ADD_RMS_NORM = Variant("add_rms_norm", False, True, STATS_RSTD)
MOMENTS = Variant("moments", True, False, STATS_MEAN_VAR, want_y=False)

VARIANTS = (LAYER_NORM, RMS_NORM, ADD_LAYER_NORM, ADD_RMS_NORM, MOMENTS)
