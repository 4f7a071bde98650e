"""pytest-benchmark: the peers fusedopt is measured against, in the same groups as
bench/test_bench_kernels.py: careful NumPy (single-threaded: measured at 1 thread only),
torch fused Adam/SGD and autograd binary_cross_entropy_with_logits, DeepSpeed CPU Adam.
Peers that are not installed are skipped."""
import os

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from fusedopt import _bench  # noqa: E402


def _ints(var, default):
    return [int(float(x)) for x in os.environ.get(var, default).split(",") if x.strip()]


SIZES = _ints("FUSEDOPT_BENCH_SIZES", "1e3,1e6")
THREADS = _ints("FUSEDOPT_BENCH_THREADS", "1,2")
KERNELS = ["adam", "adam64", "sgd", "ce"]


def size_id(n):
    return _bench._fmt_n("", n)


def group(kernel, n, k):
    spec = _bench.KERNELS[kernel]
    return f"{spec['label']} n={_bench._fmt_n(kernel, n)} {k}t"


def make_case(kernel, n):
    spec = _bench.KERNELS[kernel]
    return _bench.CASES[kernel](n, np.dtype(spec["dtype"]), np.random.default_rng(0))


@pytest.fixture(scope="module")
def env():
    return _bench.Env(["torch", "deepspeed"])


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
