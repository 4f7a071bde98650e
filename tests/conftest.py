"""Shared fixtures: every CPU path this machine can run, and thread counts."""
import numpy as np
import pytest

import fusedopt
from fusedopt import _runtime

_ORDER = ["baseline", "avx2", "avx512"]
_BEST = fusedopt.cpu_info()["detected"]
CPU_PATHS = _ORDER[: _ORDER.index(_BEST) + 1]
THREADS = [1, 2]
SIZES = [0, 1, 7, 15, 16, 17, 63, 64, 65, 1000, 100003]
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=CPU_PATHS)
def cpu_path(request):
    """Runs the test on one CPU path (each path this CPU supports), then restores."""
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
