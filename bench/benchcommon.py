"""What the two pytest-benchmark modules share: sizes, threads, kernels and group names
(one group per kernel, size and thread count, so fusedopt, the ceiling and the peers
line up with --benchmark-group-by=group)."""
import os

from fusedopt.bench._cases import KERNELS as SPECS
from fusedopt.bench._report import fmt_n


def _ints(var, default):
    return [int(float(x)) for x in os.environ.get(var, default).split(",") if x.strip()]


SIZES = _ints("FUSEDOPT_BENCH_SIZES", "1e3,1e6")
THREADS = _ints("FUSEDOPT_BENCH_THREADS", "1,2")
KERNELS = ["adam", "adam64", "sgd", "ce"]


def size_id(n):
    return fmt_n("", n)


def group(kernel, n, k):
    spec = SPECS[kernel]
    return f"{spec['label']} n={fmt_n(kernel, n)} {k}t"
