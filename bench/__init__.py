"""speechkit benchmarks: one script per model family, each printing a table against named peers.

Run a script as a module from the repository root, e.g. ``python -m bench.codec --quick``.
Benchmarks are not tests; the shared helpers in :mod:`bench.common` are (tests/bench).
"""
