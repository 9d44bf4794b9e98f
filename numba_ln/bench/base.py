"""The contender record shared by every builder, the exception a builder raises to skip,
and the test for an optional library being importable."""
import importlib.util
from dataclasses import dataclass

from .check import check


@dataclass
class Contender:
    """One way of computing a (function, case): ``call`` is a zero-argument callable that
    runs it on fixed inputs and returns its outputs (in the order of the function's
    ``writes``); ``check(inputs, got)`` raises AssertionError when they are wrong and
    returns the error otherwise."""

    library: str
    call: object
    description: str = ""
    check: object = check
    keep: object = None  # objects the call needs alive (an onnxruntime session, say)


class Skip(Exception):
    """Raised by a builder: this contender cannot run here (the message says why)."""


def missing(module):
    """True when ``module`` cannot be imported (not installed, or blocked).

    >>> missing("numpy"), missing("no_such_module_xyz")
    (False, True)
    """
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True
