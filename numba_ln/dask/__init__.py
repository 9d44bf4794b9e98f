"""The dask backend: numba_ln's functions on ``dask.array.Array`` inputs, as lazy dask
graphs whose tasks run the CPU kernels, on the local schedulers or a dask.distributed
cluster (docs/dask.md).

The backend registry (numba_ln/_backends.py) sends dask arrays here; importing numba_ln
imports neither this package nor dask.  The package holds no kernels of its own:

``_front``     validation at call time (the call spec, through a dask adapter) and the
               plan: one task per chunk when the normalized axes are in one chunk, else a
               tree reduction of per-chunk partials and a blockwise normalize
``_blocks``    what a task runs on one block (the CPU path; normalize with given stats)
``_partials``  the reduction's chunk / combine / aggregate functions (Chan's merge)
``_budget``    Numba threads per task, so that worker threads x Numba threads fit the cores
"""
from ._front import is_dask_array, run

__all__ = ["run", "is_dask_array"]
