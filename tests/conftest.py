"""Shared fixtures: every CPU path this machine can run, and thread counts."""
import numpy as np
import pytest

import fusedopt
from fusedopt import _runtime

# every CPU path this build and CPU run, slowest first; the kernel tests run on each, or
# only on the one FUSEDOPT_CPU chose when it is set
PATHS = fusedopt.cpu_info()["paths"]
CPU_PATHS = [fusedopt.cpu_info()["path"]] if fusedopt.cpu_info()["forced"] else PATHS
THREADS = [1, 2]
SIZES = [0, 1, 7, 15, 16, 17, 63, 64, 65, 1000, 100003]
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=CPU_PATHS)
def cpu_path(request):
    """Runs the test on one CPU path (each path this CPU supports, or the one FUSEDOPT_CPU
    chose), then restores."""
    before = fusedopt.cpu_info()["path"]
    _runtime._set_cpu_path(request.param)
    yield request.param
    _runtime._set_cpu_path(before)


@pytest.fixture(autouse=True)
def _small_parallel_threshold():
    """Lets 2-thread runs really split the work even at test sizes (restored after)."""
    from fusedopt import _core
    before = _core.runtime_info()["parallel_threshold"]
    _core.set_parallel_threshold(0)
    yield
    _core.set_parallel_threshold(before)


def ulp(x, dtype):
    """Spacing of dtype at |x| (at least the smallest normal's spacing)."""
    x = np.abs(np.asarray(x, dtype=np.float64)).astype(dtype)
    return np.spacing(np.maximum(x, np.finfo(dtype).tiny)).astype(np.float64)


# ----------------------------------------------------------------------------- hypothesis
# tests/test_properties.py: a derandomized, database-less profile ("ci", the default) so
# that every run draws the same examples (no flaky failures, no example database).  Set
# HYPOTHESIS_PROFILE=explore (or pass --hypothesis-profile=explore) for randomized runs
# with a local example database in .hypothesis/, and FUSEDOPT_HYPOTHESIS_SCALE=k to
# multiply each test's example count by k.
try:
    from hypothesis import HealthCheck, settings as _hyp_settings
except ImportError:  # hypothesis is a test dependency; test_properties.py skips without it
    pass
else:
    _hyp_settings.register_profile(
        "ci", derandomize=True, database=None, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    _hyp_settings.register_profile(
        "explore", derandomize=False, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    import os as _os
    _hyp_settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ----------------------------------------------------------------------------- huge tests
# Tests marked @pytest.mark.huge (tests/test_huge.py: arrays of more than 2**31 elements,
# about 11 GiB of memory) are skipped unless asked for with any of
#     python -m pytest --run-huge            FUSEDOPT_RUN_HUGE=1 python -m pytest
#     python -m pytest -m huge
def pytest_addoption(parser):
    parser.addoption("--run-huge", action="store_true", default=False,
                     help="run the tests marked huge (> 2**31 elements, ~11 GiB of memory)")


def _huge_requested(config):
    import os
    if config.getoption("--run-huge") or os.environ.get("FUSEDOPT_RUN_HUGE") == "1":
        return True
    expr = (config.getoption("-m") or "").replace(" ", "")
    return "huge" in expr and "nothuge" not in expr


def pytest_collection_modifyitems(config, items):
    if _huge_requested(config):
        return
    skip = pytest.mark.skip(reason="needs ~11 GiB: run with --run-huge, -m huge or "
                                   "FUSEDOPT_RUN_HUGE=1")
    for item in items:
        if item.get_closest_marker("huge") is not None:
            item.add_marker(skip)
