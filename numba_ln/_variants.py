"""The table of public functions: what each one computes and what it returns.  The fronts
(CPU, GPU, @njit overloads) read this instead of branching on function names.

centered  LayerNorm (subtract the mean) or RMSNorm
residual  a fused residual add: s = x + residual is formed, returned and normalized
stats     what ``return_stats`` (moments: always) adds: "mean_rstd", "rstd" or "mean_var"
want_y    whether the call writes a normalized output (moments does not)
"""
from typing import NamedTuple


class Variant(NamedTuple):
    name: str
    centered: bool
    residual: bool
    stats: str
    want_y: bool = True

    def results(self, y, s, first, second, return_stats):
        """The public return value from the outputs and the statistics: first/second are
        (mean, rstd), (rstd, None) or (mean, var), per ``stats``."""
        head = (y, s) if self.residual else (y,)
        if not return_stats:
            return head if self.residual else y
        if self.stats == "rstd":
            return head + (first,)
        return head + (first, second)


LAYER_NORM = Variant("layer_norm", True, False, "mean_rstd")
RMS_NORM = Variant("rms_norm", False, False, "rstd")
ADD_LAYER_NORM = Variant("add_layer_norm", True, True, "mean_rstd")
ADD_RMS_NORM = Variant("add_rms_norm", False, True, "rstd")
MOMENTS = Variant("moments", True, False, "mean_var", want_y=False)

VARIANTS = (LAYER_NORM, RMS_NORM, ADD_LAYER_NORM, ADD_RMS_NORM, MOMENTS)
