"""Entry point of ``python -m numba_ln.bench`` (see :mod:`numba_ln.bench.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
