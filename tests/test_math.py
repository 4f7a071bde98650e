"""The kernels' own exp(-a) and log1p(e), in ulps against long double NumPy."""
import numpy as np
import pytest

from fusedopt import _core

from conftest import CPU_PATHS

HI = {np.float32: 110.0, np.float64: 760.0}


def max_ulps(got, ref, dtype):
    ref = np.asarray(ref, dtype=np.longdouble)
    spacing = np.spacing(np.abs(ref).astype(dtype)).astype(np.longdouble)
    spacing = np.maximum(spacing, np.longdouble(np.finfo(dtype).smallest_subnormal))
    err = np.abs(got.astype(np.longdouble) - ref) / spacing
    return float(err.max()), int(err.argmax())


def exp_grid(dtype):
    """Dense grid over the whole range the loss uses, plus tiny and special values."""
    return np.concatenate([
        np.linspace(0.0, HI[dtype], 1_000_001),
        np.geomspace(1e-30, 1.0, 20_001),
        # where results become subnormal, then underflow
        np.linspace(85.0 if dtype == np.float32 else 700.0, HI[dtype], 20_001),
        [0.0, 1e-45 if dtype == np.float32 else 5e-324, np.log(2) / 2, np.log(2)],
    ]).astype(dtype)


def log1p_grid(dtype):
    tiny = 1e-38 if dtype == np.float32 else 1e-300
    return np.concatenate([
        np.linspace(0.0, 1.0, 1_000_001), np.geomspace(tiny, 1.0, 20_001),
        np.linspace(0.49, 0.51, 20_001),  # the branch point
        [0.0, 0.5, 1.0, np.nextafter(dtype(0.5), dtype(0)), np.finfo(dtype).smallest_subnormal],
    ]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_neg_within_2_ulp(cpu_path, dtype):
    a = exp_grid(dtype)
    got = _core._elementwise(0, a)
    worst, at = max_ulps(got, np.exp(-a.astype(np.longdouble)), dtype)
    assert worst <= 2.0, f"exp(-{a[at]!r}) off by {worst} ulp on {cpu_path}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_unit_within_2_ulp(cpu_path, dtype):
    e = log1p_grid(dtype)
    got = _core._elementwise(1, e)
    worst, at = max_ulps(got, np.log1p(e.astype(np.longdouble)), dtype)
    assert worst <= 2.0, f"log1p({e[at]!r}) off by {worst} ulp on {cpu_path}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    a = np.array([0.0, np.inf, np.nan, 1e30], dtype=dtype)
    got = _core._elementwise(0, a)
    assert got[0] == 1.0 and got[1] == 0.0 and np.isnan(got[2]) and got[3] == 0.0
    e = np.array([0.0, 1.0, np.nan], dtype=dtype)
    got = _core._elementwise(1, e)
    assert got[0] == 0.0 and np.isnan(got[2])
    assert got[1] == dtype(np.log(2.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_across_cpu_paths(dtype):
    from fusedopt import _runtime
    import fusedopt
    before = fusedopt.cpu_info()["path"]
    a, e = exp_grid(dtype)[::7].copy(), log1p_grid(dtype)[::7].copy()
    results = []
    try:
        for path in CPU_PATHS:
            _runtime._set_cpu_path(path)
            results.append((_core._elementwise(0, a), _core._elementwise(1, e)))
    finally:
        _runtime._set_cpu_path(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r[0], results[0][0])
        np.testing.assert_array_equal(r[1], results[0][1])
