"""pytest-benchmark: fusedopt's kernels and the bandwidth ceiling of their access pattern.

Each group ("adam f32 n=1e6 1t", ...) holds fusedopt and the ``stream`` probe of the same
pattern on the same arrays (and, with bench/test_bench_peers.py, NumPy and torch), so
``--benchmark-group-by=group`` compares them.  The full report with ratios and the
roofline is ``python -m fusedopt bench``; these are for tracking the kernels over time.
"""

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from fusedopt import _core  # noqa: E402
from fusedopt.bench import _cases  # noqa: E402
from benchcommon import KERNELS, SIZES, THREADS, group, size_id  # noqa: E402


def _info(benchmark, kernel, n):
    spec = _cases.KERNELS[kernel]
    benchmark.extra_info.update(kernel=kernel, n=n, bytes_per_element=spec["bpe"])


@pytest.mark.parametrize("threads", THREADS, ids=lambda k: f"{k}t")
@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("kernel", KERNELS)
def test_fusedopt(benchmark, kernel, n, threads):
    spec = _cases.KERNELS[kernel]
    case = _cases.CASES[kernel](n, np.dtype(spec["dtype"]), np.random.default_rng(0))
    benchmark.group = group(kernel, n, threads)
    _info(benchmark, kernel, n)
    benchmark(case.fusedopt(threads))


@pytest.mark.parametrize("threads", THREADS, ids=lambda k: f"{k}t")
@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("kernel", KERNELS)
def test_ceiling(benchmark, kernel, n, threads):
    """The C stream loop with the kernel's reads and writes: the bandwidth bound."""
    spec = _cases.KERNELS[kernel]
    case = _cases.CASES[kernel](n, np.dtype(spec["dtype"]), np.random.default_rng(0))
    benchmark.group = group(kernel, n, threads)
    _info(benchmark, kernel, n)
    benchmark(_core.stream, spec["pattern"], *case.stream_args(), n_threads=threads)


@pytest.mark.parametrize("threads", THREADS, ids=lambda k: f"{k}t")
def test_multi_tensor_class_step(benchmark, threads):
    """fusedopt.Adam(...).step over 1000 tensors x 1000 elements (one C call)."""
    case = _cases.MultiCase(0, np.float32, np.random.default_rng(0))
    benchmark.group = group("multi", case.n, threads)
    _info(benchmark, "multi", case.n)
    benchmark(case.fusedopt(threads))


def test_adam_functional_call_overhead(benchmark):
    """adam_step at n=16: the per-call cost of validation and the Python->C crossing."""
    import fusedopt
    p, g, m, v = (np.zeros(16, np.float32) for _ in range(4))
    benchmark.group = "per-call overhead"
    benchmark(lambda: fusedopt.adam_step(p, g, m, v, step=1, n_threads=1))
