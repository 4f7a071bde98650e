"""pytest-benchmark settings for bench/ (run: python -m pytest bench/ -p no:cacheprovider
--benchmark-only).  Not part of the test run (pyproject's testpaths is tests/).

Environment variables:
    FUSEDOPT_BENCH_SIZES    element counts, default "1e3,1e6" (e.g. "1e3,1e6,1e7")
    FUSEDOPT_BENCH_THREADS  thread counts, default "1,2"
Each benchmark runs for at most 0.25 s (at least 5 rounds) unless --benchmark-max-time
is given on the command line.
"""
import os

import pytest

DEFAULT_MAX_TIME = 0.25


def pytest_collection_modifyitems(config, items):
    args = list(config.invocation_params.args) + os.environ.get("PYTEST_ADDOPTS", "").split()
    if any(a.startswith("--benchmark-max-time") for a in args):
        return
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()) and \
                item.get_closest_marker("benchmark") is None:
            item.add_marker(pytest.mark.benchmark(max_time=DEFAULT_MAX_TIME, min_rounds=5))
