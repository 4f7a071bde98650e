"""Losses against fusedopt.reference (float64), finite differences and special values.

Tolerances: the kernel computes each element in the input dtype with about eight
roundings plus exp and log1p accurate to 2 ulp (tests/test_math.py), so an element's loss
is within 8 eps of the magnitude of the terms it adds, |w|*(|x|*(|1-y'| + lw) + lw*(l+1)),
and its gradient within 8 eps of |w|*(|1-y'| + pw*|y'| + 1)*scale.  Reduced losses are
summed in double: their error is the sum of the elements' bounds plus n double roundings.
"""
import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R

from conftest import DTYPES, SIZES, THREADS

REDUCTIONS = ["mean", "sum", "none"]


def make(n, dtype, seed=0, scale=4.0, shape=None):
    rng = np.random.default_rng(seed + n)
    x = (rng.standard_normal(n) * scale).astype(dtype)
    y = (rng.random(n) > 0.5).astype(dtype)
    if shape is not None:
        x, y = x.reshape(shape), y.reshape(shape)
    return x, y


def bce_bounds(x, y, weight=None, pos_weight=None, ls=0.0, reduction="mean"):
    eps = np.finfo(x.dtype).eps
    x64 = x.astype(np.float64)
    y64 = y.astype(np.float64) * (1 - ls) + 0.5 * ls
    pw = 1.0 if pos_weight is None else np.abs(np.asarray(pos_weight, dtype=np.float64))
    w = 1.0 if weight is None else np.abs(np.asarray(weight, dtype=np.float64))
    lw = np.abs((pw - 1) * y64 + 1)
    loss_mag = np.broadcast_to(w * (np.abs(x64) * (np.abs(1 - y64) + lw) + lw * 2), x.shape)
    scale = 1.0 / x.size if reduction == "mean" and x.size else 1.0
    grad_tol = 8 * eps * w * (np.abs(1 - y64) + pw * np.abs(y64) + 1) * scale
    return 8 * eps * loss_mag, grad_tol


def check_bce(x, y, reduction="mean", n_threads=None, **kw):
    loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(x, y, reduction=reduction,
                                                         n_threads=n_threads, **kw)
    rloss, rgrad = R.sigmoid_cross_entropy_and_grad(x, y, reduction=reduction, **kw)
    ltol, gtol = bce_bounds(x, y, kw.get("weight"), kw.get("pos_weight"),
                            kw.get("label_smoothing", 0.0), reduction)
    assert grad.dtype == x.dtype and grad.shape == x.shape
    np.testing.assert_array_less(np.abs(grad.astype(np.float64) - rgrad.astype(np.float64)),
                                 np.broadcast_to(gtol, x.shape) + np.finfo(x.dtype).tiny)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == x.dtype and loss.shape == x.shape
        ref = R.sigmoid_cross_entropy_and_grad(x, y, reduction="sum", **kw)[0]
        ref_elems = np.asarray(rloss, dtype=np.float64)
        # rloss was rounded to the dtype by the reference: compare against float64 math
        ref64 = _bce64(x, y, **kw)
        np.testing.assert_array_less(np.abs(loss.astype(np.float64) - ref64),
                                     ltol + np.spacing(np.abs(ref_elems).astype(x.dtype)) + 1e-300)
        assert np.isfinite(ref)
    else:
        assert isinstance(loss, float)
        n = max(x.size, 1)
        tol = ltol.sum() + n * np.finfo(np.float64).eps * np.abs(_bce64(x, y, **kw)).sum()
        if reduction == "mean":
            tol /= n
        if x.size == 0 and reduction == "mean":
            assert np.isnan(loss) and np.isnan(rloss)
        else:
            assert abs(loss - rloss) <= tol + 1e-300, (loss, rloss, tol)
    # the loss-only function gives the same value, bit for bit
    only = fusedopt.sigmoid_cross_entropy(x, y, reduction=reduction, n_threads=n_threads, **kw)
    np.testing.assert_array_equal(only, loss)
    return loss, grad


def _bce64(x, y, weight=None, pos_weight=None, label_smoothing=0.0):
    return np.asarray(R.sigmoid_cross_entropy_and_grad(
        x.astype(np.float64), y, weight=None if weight is None else np.asarray(weight, np.float64),
        pos_weight=None if pos_weight is None else np.asarray(pos_weight, np.float64),
        label_smoothing=label_smoothing, reduction="none")[0], dtype=np.float64)


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_matches_reference(cpu_path, dtype, n, reduction, n_threads):
    x, y = make(n, dtype)
    check_bce(x, y, reduction, n_threads)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_weights_pos_weight_smoothing(cpu_path, dtype, reduction):
    rng = np.random.default_rng(1)
    x, y = make(17 * 65, dtype, shape=(17, 65))
    pw = rng.uniform(0.1, 5, 65).astype(dtype)
    w_full = rng.uniform(0, 2, (17, 65)).astype(dtype)
    w_col = rng.uniform(0, 2, 65).astype(dtype)
    w_row = rng.uniform(0, 2, (17, 1)).astype(dtype)
    for kw in [dict(pos_weight=pw), dict(weight=w_full), dict(weight=w_col),
               dict(weight=w_row), dict(weight=w_col, pos_weight=pw),
               dict(weight=w_full, pos_weight=pw, label_smoothing=0.1),
               dict(label_smoothing=0.2), dict(weight=2.5), dict(pos_weight=3.0),
               dict(weight=w_row, pos_weight=pw, label_smoothing=1.0)]:
        check_bce(x, y, reduction, **kw)


def test_bce_weight_forms_agree():
    # torch: weight of shape [C] == expanded [N, C]; pos_weight ones == None; [C] == [1, C]
    x, y = make(12 * 5, np.float64, shape=(12, 5))
    w = np.linspace(0.5, 2, 5)
    a = fusedopt.sigmoid_cross_entropy_and_grad(x, y, weight=w, reduction="sum")
    b = fusedopt.sigmoid_cross_entropy_and_grad(x, y, weight=np.tile(w, (12, 1)), reduction="sum")
    assert a[0] == pytest.approx(b[0], rel=1e-15)
    np.testing.assert_array_equal(a[1], b[1])
    c = fusedopt.sigmoid_cross_entropy_and_grad(x, y, pos_weight=np.ones(5))
    d = fusedopt.sigmoid_cross_entropy_and_grad(x, y)
    assert c[0] == d[0]
    np.testing.assert_array_equal(c[1], d[1])
    e = fusedopt.sigmoid_cross_entropy_and_grad(x, y, pos_weight=w.reshape(1, 5))
    f = fusedopt.sigmoid_cross_entropy_and_grad(x, y, pos_weight=w)
    assert e[0] == f[0]


@pytest.mark.parametrize("label_dtype", [np.bool_, np.uint8, np.int8, np.int32, np.int64,
                                         np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_label_dtypes(dtype, label_dtype):
    x, y = make(1000, dtype)
    labels = y.astype(label_dtype)
    loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(x, labels)
    loss2, grad2 = fusedopt.sigmoid_cross_entropy_and_grad(x, y)
    assert loss == loss2
    np.testing.assert_array_equal(grad, grad2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_extreme_logits_exact(dtype):
    big = dtype(1e20) if dtype == np.float64 else dtype(1e20)
    x = np.array([big, -big, big, -big, 100, -100, 0, 0], dtype=dtype)
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1], dtype=dtype)
    loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(x, y, reduction="none")
    expected_loss = np.array([big, 0, 0, big, 100, 100, np.log(2), np.log(2)], dtype=dtype)
    np.testing.assert_array_equal(loss[:4], expected_loss[:4])
    np.testing.assert_allclose(loss[4:], expected_loss[4:], rtol=2 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(grad[:4], np.array([1, 0, 0, -1], dtype=dtype))
    assert grad[6] == 0.5 and grad[7] == -0.5          # exactly, as torch and TF
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_nan_and_inf(dtype):
    x = np.array([np.nan, 1.0, np.inf, np.inf, -np.inf, -np.inf], dtype=dtype)
    y = np.array([1.0, np.nan, 0.0, 1.0, 0.0, 1.0], dtype=dtype)
    loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(x, y, reduction="none")
    assert np.isnan(loss[0]) and np.isnan(grad[0]) and np.isnan(loss[1]) and np.isnan(grad[1])
    # the limit where one exists: (+inf,0) -> +inf as torch (TF: NaN), (-inf,1) -> +inf as
    # TF (torch: NaN); (+inf,1) and (-inf,0) are 0*inf -> NaN, as in torch and TF
    assert loss[2] == np.inf and np.isnan(loss[3]) and np.isnan(loss[4]) and loss[5] == np.inf
    np.testing.assert_array_equal(grad[2:], np.array([1, 0, 0, -1], dtype=dtype))
    assert np.isnan(fusedopt.sigmoid_cross_entropy(x[:1], y[:1]))


# ----------------------------------------------------------------------------- soft labels
#
# Against the exact loss: for labels in [0, 1] the kernel adds only non-negative terms,
# so each element is accurate relative to its own value.  Counting roundings (u = eps/2;
# exp and log1p within 2 ulp each, tests/test_math.py, so log1p(exp(-|x|)) within 8u):
# without weights, smoothing or pos_weight, (1-y)*x or y*|x| is within 2u and the sum
# within 9u = 4.5 eps; in general y' and 1-y' (from the rounded 1-ls and ls/2) are within
# 4u, pw*y'*|x| and lw within 6u, lw*log1p(.) within 15u, the sum 16u and w*loss 17u =
# 8.5 eps.  The exact value is computed in long double from the same inputs (float64 is
# exact enough for float32), and checked against mpmath on a sample.

LONG = np.longdouble
WIDE_LONG_DOUBLE = np.finfo(LONG).eps < 1e-18


def _soft_inputs(dtype, n=60_000, seed=0):
    """Logits over the whole range (|x| from tiny to near overflow, dense in [0, 80]), both
    signs; labels uniform, log-uniform near 0 and near 1, strictly inside (0, 1)."""
    rng = np.random.default_rng(seed)
    lo, hi = (-30, 37) if dtype == np.float32 else (-300, 300)
    mag = 10 ** rng.uniform(lo, hi, n)
    mag[: n // 2] = rng.uniform(0, 80, n // 2)
    x = (mag * np.where(rng.random(n) < 0.5, -1, 1)).astype(dtype)
    y = rng.random(n)
    k = n // 4
    y[:k] = 10 ** rng.uniform(-8, -0.3, k)
    y[k:2 * k] = 1 - 10 ** rng.uniform(-7 if dtype == np.float32 else -15, -0.3, k)
    tiny_up, one_down = np.nextafter(dtype(0), dtype(1)), np.nextafter(dtype(1), dtype(0))
    return x, np.clip(y.astype(dtype), tiny_up, one_down)


def _soft_exact(x, y, weight=None, pos_weight=None, label_smoothing=0.0, lib=np):
    """The loss in the precision of x's elements (long double arrays, or mpmath numbers)."""
    ls = lib.mpf(label_smoothing) if lib is not np else LONG(label_smoothing)
    ys = y * (1 - ls) + ls / 2
    omy = (1 - y) * (1 - ls) + ls / 2
    pw = 1 if pos_weight is None else pos_weight
    w = 1 if weight is None else weight
    if lib is np:
        lin = np.where(x >= 0, omy * x, pw * ys * -x)
    else:
        lin = omy * x if x >= 0 else pw * ys * -x
    return w * (lin + (omy + pw * ys) * lib.log1p(lib.exp(-abs(x))))


SOFT_VARIANTS = {
    "plain": ({}, 4.5),
    "weight": (dict(weight="vector"), 8.5),
    "pos_weight": (dict(pos_weight=2.5), 8.5),
    "small_pos_weight": (dict(pos_weight=1e-3), 8.5),
    "smoothing": (dict(label_smoothing=0.1), 8.5),
    "all": (dict(weight=0.75, pos_weight="vector", label_smoothing=0.2), 8.5),
}


@pytest.mark.parametrize("variant", sorted(SOFT_VARIANTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_soft_labels_against_exact(cpu_path, dtype, variant):
    if dtype == np.float64 and not WIDE_LONG_DOUBLE:
        pytest.skip("long double is not wider than float64 here")
    kw, bound = SOFT_VARIANTS[variant]
    x, y = _soft_inputs(dtype)
    x, y = x.reshape(-1, 60), y.reshape(-1, 60)
    rng = np.random.default_rng(7)
    kw = {k: rng.uniform(0.1, 4, 60).astype(dtype) if v == "vector" else v
          for k, v in kw.items()}
    exact_kw = {k: np.asarray(v, dtype=dtype).astype(LONG) if k != "label_smoothing" else v
                for k, v in kw.items()}
    exact = _soft_exact(x.astype(LONG), y.astype(LONG), **exact_kw)
    eps = np.finfo(dtype).eps
    for impl in (fusedopt, R):
        loss = impl.sigmoid_cross_entropy(x, y, reduction="none", **kw)
        rel = np.abs(loss.astype(LONG) - exact) / exact
        worst = int(np.argmax(rel))
        assert rel.flat[worst] <= bound * eps, (
            impl.__name__, float(rel.flat[worst] / eps), x.flat[worst], y.flat[worst])


def test_bce_soft_exact_oracle_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    x, y = _soft_inputs(np.float64, n=400, seed=3)
    with mpmath.workdps(60):
        for xi, yi in zip(x, y):
            for kw in ({}, dict(weight=0.75, pos_weight=2.5, label_smoothing=0.2)):
                long_kw = {k: LONG(v) if k != "label_smoothing" else v for k, v in kw.items()}
                got = _soft_exact(LONG(xi), LONG(yi), **long_kw)
                mp_kw = {k: mpmath.mpf(v) for k, v in kw.items() if k != "label_smoothing"}
                want = _soft_exact(mpmath.mpf(float(xi)), mpmath.mpf(float(yi)), lib=mpmath,
                                   label_smoothing=kw.get("label_smoothing", 0.0), **mp_kw)
                # long double: a few of its own ulp (64-bit significand), far below float64's
                assert abs(mpmath.mpf(str(got)) - want) <= 1e-17 * want, (xi, yi, kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_soft_label_case_within_2_ulp(cpu_path, dtype):
    # logit -8.1078, label 7.95e-4: the textbook form lost 400 ulp in float32
    x, y = np.array([-8.1078], dtype), np.array([7.95e-4], dtype)
    exact = _soft_exact(x.astype(LONG)[0], y.astype(LONG)[0])
    loss = fusedopt.sigmoid_cross_entropy(x, y, reduction="none")[0]
    spacing = LONG(np.spacing(dtype(exact)))
    assert abs(LONG(loss) - exact) <= 2 * spacing
    if dtype == np.float64:
        assert abs(LONG(loss) - exact) <= LONG(1e-15) * exact


SKLEARN_BINOMIAL = [  # (y, raw, loss, grad) from scikit-learn's test_loss_on_specific_values
    (0.25, np.log(4), np.log1p(4) - 0.25 * np.log(4), None),
    (0, -1e20, 0, 0), (1, -1e20, 1e20, -1), (0, -1000, 0, 0), (1, -1000, 1000, -1),
    (1, -37.5, 37.5, -1), (1, -37, 37, 1e-16 - 1), (0, -37, 8.533047625744065e-17, 8.533047625744065e-17),
    (1, -36.9, 36.9, 1e-16 - 1), (0, -36.9, 9.430476078526806e-17, 9.430476078526806e-17),
    (0, 37, 37, 1 - 1e-16), (1, 37, 8.533047625744066e-17, -8.533047625744066e-17),
    (0, 37.5, 37.5, 1), (0, 232.8, 232.8, 1), (1, 1e20, 0, 0), (0, 1e20, 1e20, 1),
    (1, 232.8, 0, -1.4287342391028437e-101), (1, 232.9, 0, 0), (1, 1000, 0, 0), (0, 1000, 1000, 1),
]


@pytest.mark.parametrize("y,raw,loss,grad", SKLEARN_BINOMIAL)
def test_bce_sklearn_specific_values(y, raw, loss, grad):
    l, g = fusedopt.sigmoid_cross_entropy_and_grad(np.array([raw], dtype=np.float64), np.array([float(y)]),
                                                   reduction="none")
    assert l[0] == pytest.approx(loss, rel=1e-15, abs=1e-15)
    if grad is not None:
        assert g[0] == pytest.approx(grad, rel=1e-15, abs=1e-15)


@pytest.mark.parametrize("kw", [{}, {"pos_weight": np.array([0.5, 2.0, 3.0])},
                                {"weight": np.array([1.0, 0.3, 2.0])},
                                {"label_smoothing": 0.3}])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_gradient_finite_differences(kw, reduction):
    # 4th-order central differences, h = 1e-4: truncation O(h^4) ~ 1e-16, rounding ~ eps/h
    rng = np.random.default_rng(3)
    x = rng.uniform(-5, 5, (4, 3))
    y = rng.uniform(0, 1, (4, 3))
    _, grad = fusedopt.sigmoid_cross_entropy_and_grad(x, y, reduction=reduction, **kw)
    h = 1e-4
    f = lambda z: fusedopt.sigmoid_cross_entropy(z, y, reduction=reduction, **kw)
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        def at(d):
            z = x.copy()
            z[i] += d
            return f(z)
        num[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-8, atol=1e-10)


def test_bce_out_argument():
    x, y = make(100, np.float32)
    out = np.full(100, 7.0, dtype=np.float32)
    loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(x, y, out=out)
    assert grad is out
    np.testing.assert_array_equal(out, fusedopt.sigmoid_cross_entropy_and_grad(x, y)[1])


def test_bce_inputs_not_modified():
    x, y = make(1000, np.float32)
    x0, y0 = x.copy(), y.copy()
    fusedopt.sigmoid_cross_entropy_and_grad(x, y, weight=np.ones(1000, np.float32))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


def test_bce_read_only_inputs():
    x, y = make(100, np.float64)
    x.flags.writeable = False
    y.flags.writeable = False
    check_bce(x, y)


def test_bce_loss_independent_of_threads_and_paths():
    from fusedopt import _runtime
    from conftest import CPU_PATHS
    x, y = make(300_001, np.float32)
    before = fusedopt.cpu_info()["path"]
    try:
        results = set()
        grads = []
        for path in CPU_PATHS:
            _runtime._set_cpu_path(path)
            for nt in (1, 2, 3):
                loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(x, y, n_threads=nt)
                results.add(loss)
                grads.append(grad)
    finally:
        _runtime._set_cpu_path(before)
    assert len(results) == 1
    for g in grads[1:]:
        np.testing.assert_array_equal(g, grads[0])


# ----------------------------------------------------------------------------- L1 / L2

REG = [(fusedopt.l1_loss_and_grad, fusedopt.l1_loss, R.l1_loss_and_grad),
       (fusedopt.l2_loss_and_grad, fusedopt.l2_loss, R.l2_loss_and_grad)]


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", [0, 1], ids=["l1", "l2"])
def test_regression_matches_reference(cpu_path, which, dtype, n, reduction, n_threads):
    fn, only, ref = REG[which]
    rng = np.random.default_rng(n)
    p = rng.standard_normal(n).astype(dtype)
    t = rng.standard_normal(n).astype(dtype)
    t[::5] = p[::5]                                   # exact ties: sgn(0) = 0
    for weight in (None, rng.uniform(0, 2, n).astype(dtype), 0.5):
        loss, grad = fn(p, t, weight=weight, reduction=reduction, n_threads=n_threads)
        rloss, rgrad = ref(p, t, weight=weight, reduction=reduction)
        eps = np.finfo(dtype).eps
        # d = p - t is one rounding; |d|, d*d, *w, *scale a few more: 4 eps relative,
        # elementwise (no cancellation after d), and sums of positive terms in double.
        np.testing.assert_allclose(grad, rgrad, rtol=4 * eps, atol=0)
        if reduction == "none":
            np.testing.assert_allclose(loss, rloss, rtol=4 * eps, atol=0)
        elif n == 0 and reduction == "mean":
            assert np.isnan(loss)
        else:
            # (float(): pytest 9.2 accepts only Python numbers as tolerances)
            assert loss == pytest.approx(rloss, rel=float(4 * eps) + n * 1e-16, abs=1e-300)
        np.testing.assert_array_equal(only(p, t, weight=weight, reduction=reduction), loss)


def test_regression_sum_is_the_seed_norms():
    a = np.array([1.0, -2.0, 3.5])
    p = np.array([0.5, 1.0, 3.5])
    assert fusedopt.l1_loss(p, a, reduction="sum") == np.sum(np.abs(a - p))
    assert fusedopt.l2_loss(p, a, reduction="sum") == np.sum((a - p) ** 2)


def test_regression_nan_propagates():
    p = np.array([np.nan, 1.0])
    t = np.array([0.0, np.nan])
    for fn in (fusedopt.l1_loss_and_grad, fusedopt.l2_loss_and_grad):
        loss, grad = fn(p, t, reduction="none")
        assert np.isnan(loss).all() and np.isnan(grad).all()


@pytest.mark.parametrize("which", [0, 1], ids=["l1", "l2"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_regression_gradient_finite_differences(which, reduction):
    # 4th-order central differences; |pred - target| >= 0.1 keeps L1 away from its kink
    rng = np.random.default_rng(4)
    p = rng.uniform(-3, 3, 9)
    t = p + rng.choice([-1, 1], 9) * rng.uniform(0.1, 1, 9)
    w = rng.uniform(0.5, 2, 9)
    fn, only, _ = REG[which]
    _, grad = fn(p, t, weight=w, reduction=reduction)
    h = 1e-4
    num = np.zeros_like(p)
    for i in range(9):
        def at(d):
            z = p.copy()
            z[i] += d
            return only(z, t, weight=w, reduction=reduction)
        num[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-8, atol=1e-10)
