"""Benchmarks of numba_ln against NumPy, PyTorch and onnxruntime, as fractions of the
machine's speed line, with the project's performance targets: ``python -m numba_ln.bench``
(see ``--help`` and docs/benchmarks.md), shared with the pytest-benchmark files in
``benchmarks/``.  Not part of the public API.

One job per module:

``cases``        the benchmarked functions (``FUNCTIONS``) and input shapes (``CASES``),
                 bytes moved, the inputs
``check``        outputs against the float64 oracle; the speed-line copies bit for bit
``base``         the contender record and the skip signal
``contenders``   numba_ln and NumPy builders, the ``BUILDERS`` registry, ``build()``
``peers_torch``  the PyTorch contender
``peers_onnx``   the onnxruntime contenders (IOBinding, and ``session.run``)
``lines``        the speed-line copies (``np.copyto``, Numba ``prange``)
``timing``       interleaved rounds, warm-up, batches, per-round ratios; thread scaling
``startup``      new-process start-up with a warm cache
``targets``      the table of performance targets, judged PASS / MISS / SKIP
``environment``  machine and versions
``report``       the text report
``plot``         the ``--plot`` bar chart
``cli``          argument parsing and the run
``dask_cases``   ``--dask``: numba_ln on dask arrays against dask's own expression on a
                 LocalCluster (dask and distributed imported only then)

Importing the package or any module imports neither torch, onnx/onnxruntime nor
matplotlib: each is imported when a contender (or the plot) that needs it is built, and a
missing one is skipped with a reason.  ``--device cuda`` hands over to
``numba_ln.cuda.bench``.
"""
