"""pytest-benchmark suite (a package so that its conftest does not clash with tests/conftest.py
when --doctest-modules imports both)."""
