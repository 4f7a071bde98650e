"""pytest-benchmark: the peers fusedopt is measured against, in the same groups as
bench/test_bench_kernels.py: careful NumPy (single-threaded: measured at 1 thread only),
torch fused Adam/SGD and autograd binary_cross_entropy_with_logits, DeepSpeed CPU Adam.
Peers that are not installed are skipped."""
import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from fusedopt.bench import _cases, _peers  # noqa: E402
from benchcommon import KERNELS, SIZES, THREADS, group, size_id  # noqa: E402


def make_case(kernel, n):
    spec = _cases.KERNELS[kernel]
    return _cases.CASES[kernel](n, np.dtype(spec["dtype"]), np.random.default_rng(0))


@pytest.fixture(scope="module")
def env():
    return _peers.Env(["torch", "deepspeed"])


@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("kernel", KERNELS + ["multi"])
def test_numpy(benchmark, kernel, n):
    if kernel == "multi" and n != SIZES[0]:
        pytest.skip("multi has one size")
    case = make_case(kernel, n)
    benchmark.group = group(kernel, case.n, 1)
    benchmark(case.numpy()[0])


@pytest.mark.parametrize("threads", THREADS, ids=lambda k: f"{k}t")
@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("kernel", KERNELS + ["multi"])
def test_torch(benchmark, env, kernel, n, threads):
    if not env.torch_ok():
        pytest.skip(f"torch {env.torch_reason}")
    if kernel == "multi" and n != SIZES[0]:
        pytest.skip("multi has one size")
    case = make_case(kernel, n)
    benchmark.group = group(kernel, case.n, threads)
    with env.torch_threads(threads):
        benchmark(case.torch(env)[0])


@pytest.mark.parametrize("threads", THREADS, ids=lambda k: f"{k}t")
@pytest.mark.parametrize("n", SIZES, ids=size_id)
@pytest.mark.parametrize("kernel", ["adam", "multi"])
def test_deepspeed(benchmark, env, kernel, n, threads):
    if not env.ds_ok():
        pytest.skip(f"DeepSpeed {env.ds_reason}")
    if kernel == "multi" and n != SIZES[0]:
        pytest.skip("multi has one size")
    case = make_case(kernel, n)
    benchmark.group = group(kernel, case.n, threads)
    with env.all_openmp_threads(threads):
        benchmark(case.deepspeed(env)[0])
