"""Softmax cross-entropy: against the exact loss, special values, bad input, frameworks.

Tolerances.  The kernel computes, per row, d_c = m - x_c in the logits' dtype (relative
error u = eps/2), e_c = exp(-d_c) within 2 ulp of exp of that d_c (tests/test_math.py),
so e_c is within (4 + d_c)*u of exp(x_c - m); the sums run in double, after pairs of
summands (all >= 0) are added in the logits' dtype (each pair within u of its sum: one
more u on each term, inside the margin below).  A row's loss
sum_c t_c*d_c + T*log1p(r) is then within u*sum_c t_c*d_c + T*u*(4 + sum_c p_c*d_c) plus
the double sums' and the last roundings.  We allow 8 eps times the row's scale
``lin + T*(1 + sum_c p_c*d_c)`` plus, for float64, the double accumulation
(C/16 + 8 additions per lane, each within eps of the partial sum).  An element of the
gradient, e_c*A - t_c*B with A = T*gs/s and B rounded once each, is within
(8 + d_c)*eps of T*p_c*gs plus 2 eps of t_c*gs (the scale below also has log(s):
frameworks compute p_c as exp(x_c - m - log s), whose error grows with log s), plus the error of T/s from the double
sums (twice the accumulation bound above).  The exact values come from
fusedopt.reference in long double.
"""
import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R

from conftest import CPU_PATHS, DTYPES, THREADS

LONG = np.longdouble
WIDE = np.finfo(LONG).eps < 1e-18
SHAPES = [(1, 1), (3, 1), (5, 10), (17, 33), (64, 1000), (3, 5000), (2, 4097), (0, 5),
          (1, 40000)]     # one row, fewer than the threads: split across them


def make(shape, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed + shape[0] * 31 + shape[1])
    n, c = shape
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    y = rng.integers(0, c, n)
    q = rng.random(shape) ** 3
    q = (q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)).astype(dtype)
    w = rng.uniform(0.2, 3.0, c).astype(dtype)
    return x, y, q, w


def scales(x, labels, weight, ls, ignore_index=-100, reduction="mean"):
    """(row loss scale, gradient scale) of the module docstring, and den for "mean"."""
    x64 = x.astype(np.float64)
    n, c = x.shape
    w = np.ones(c) if weight is None else weight.astype(np.float64)
    if labels.dtype.kind in "iu":
        keep = labels != ignore_index
        y = np.where(keep, labels, 0)
        t = (ls / c) * w[None, :] * keep[:, None]
        t[np.arange(n), y] += (1 - ls) * w[y] * keep
        den = (w[y] * keep).sum()
    else:
        t = w * (labels.astype(np.float64) * (1 - ls) + ls / c)
        den = n
    with np.errstate(invalid="ignore", over="ignore"):
        m = x64.max(axis=1, keepdims=True) if c else np.zeros((n, 1))
        d = m - x64
        p = np.exp(-d)
        logs = np.log(p.sum(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        T = t.sum(axis=1)
        lin = np.where(t != 0, t * d, 0).sum(axis=1)
        row = lin + T * (1 + (p * d).sum(axis=1))
        gs = 1 / den if reduction == "mean" and den else 1.0
        grad = (T[:, None] * p * (1 + d + logs) + t) * gs
    return row, grad, den


def tolerances(x, row, grad):
    eps = np.finfo(x.dtype).eps
    acc = (x.shape[1] / 16 + 8) * np.finfo(np.float64).eps
    return (8 * eps + acc) * row, (8 * eps + 2 * acc) * grad + np.finfo(x.dtype).tiny


def exact(x, labels, **kw):
    assert WIDE
    return R.softmax_cross_entropy_and_grad(x.astype(LONG), labels, **kw)


def check(x, labels, reduction="mean", n_threads=None, **kw):
    loss, grad = fusedopt.softmax_cross_entropy_and_grad(x, labels, reduction=reduction,
                                                         n_threads=n_threads, **kw)
    w = kw.get("weight")
    ekw = dict(kw)
    if w is not None:
        ekw["weight"] = w.astype(LONG)
    rows, egrad = exact(x, labels, reduction="none", **ekw)
    row_s, grad_s, den = scales(x, labels, w, kw.get("label_smoothing", 0.0),
                                kw.get("ignore_index", -100), reduction)
    ltol, gtol = tolerances(x, row_s, grad_s)
    assert grad.dtype == x.dtype and grad.shape == x.shape
    gs = 1 / den if reduction == "mean" and den else 1.0
    gerr = np.abs(grad.astype(LONG) - egrad * LONG(gs))
    bad = ~(gerr <= gtol)
    assert not bad.any(), (np.argwhere(bad)[:5], float(gerr[bad].max()))
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == x.dtype
        assert loss.shape == (x.shape[0],)
        err = np.abs(loss.astype(LONG) - rows)
        tol = ltol + np.spacing(np.abs(rows).astype(x.dtype)).astype(LONG)
        assert np.all(err <= tol), (float((err / tol).max()), int(np.argmax(err / tol)))
    else:
        assert isinstance(loss, float)
        total = rows.sum()
        tol = ltol.sum() + x.shape[0] * np.finfo(np.float64).eps * float(np.abs(rows).sum())
        if reduction == "mean":
            if den == 0:
                assert np.isnan(loss)
                return loss, grad
            total, tol = total / LONG(den), tol / den
        assert abs(LONG(loss) - total) <= tol + 1e-300, (loss, float(total), tol)
    only = fusedopt.softmax_cross_entropy(x, labels, reduction=reduction,
                                          n_threads=n_threads, **kw)
    np.testing.assert_array_equal(only, loss)
    return loss, grad


VARIANTS = {
    "plain": {},
    "weight": dict(weight="w"),
    "smoothing": dict(label_smoothing=0.1),
    "weight-smoothing": dict(weight="w", label_smoothing=0.25),
    "full-smoothing": dict(label_smoothing=1.0),
}


pytestmark = pytest.mark.skipif(not WIDE, reason="long double is not wider than float64")


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("labels", ["index", "ignore", "probs"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_against_exact(cpu_path, dtype, shape, variant, labels, n_threads):
    x, y, q, w = make(shape, dtype)
    kw = {k: (w if v == "w" else v) for k, v in VARIANTS[variant].items()}
    if labels == "ignore":
        y = y.copy()
        y[::3] = -100
    lab = q if labels == "probs" else y
    for reduction in ("mean", "sum", "none"):
        check(x, lab, reduction, n_threads, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_bits_on_every_path_and_thread_count(dtype):
    from fusedopt import _runtime
    x, y, q, w = make((300, 700), dtype)
    runs = []
    before = fusedopt.cpu_info()["path"]
    try:
        for path in CPU_PATHS:
            _runtime._set_cpu_path(path)
            for nt in (1, 2):
                for lab, kw in ((y, dict(weight=w, label_smoothing=0.1)), (q, {})):
                    for red in ("sum", "none"):
                        loss, g = fusedopt.softmax_cross_entropy_and_grad(
                            x, lab, reduction=red, n_threads=nt, **kw)
                        runs.append((path, nt, red, np.asarray(loss).tobytes(), g.tobytes()))
    finally:
        _runtime._set_cpu_path(before)
    first = runs[: 4]
    for k in range(4, len(runs), 4):
        for a, b in zip(first, runs[k: k + 4]):
            assert a[3:] == b[3:], (a[:3], b[:3])


@pytest.mark.parametrize("shape", [(1, 262144 + 123), (1, 33 * 1024)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_wide_rows_split_across_threads_give_one_threads_bits(cpu_path, dtype, shape):
    """Fewer rows than threads: each row is cut across the threads (its maximum, its
    chunks' sums added in row order, its gradient); the bits are those of one thread,
    with the label in any chunk, masked classes, an ignored row and every variant."""
    x, y, q, w = make(shape, dtype)
    x[0, ::97] = -np.inf
    c = shape[1]
    cases = [(np.array([k]), kw) for k in (0, c // 2, c - 1, -100)
             for kw in ({}, dict(weight=w, label_smoothing=0.2))]
    cases += [(q, {}), (q, dict(weight=w, label_smoothing=0.1))]
    for lab, kw in cases:
        runs = []
        for nt in THREADS:
            loss, g = fusedopt.softmax_cross_entropy_and_grad(x, lab, reduction="sum",
                                                             n_threads=nt, **kw)
            rows = fusedopt.softmax_cross_entropy(x, lab, reduction="none", n_threads=nt,
                                                  **kw)
            runs.append((np.asarray(loss).tobytes(), g.tobytes(), rows.tobytes()))
        assert all(r == runs[0] for r in runs[1:]), (lab[:1], sorted(kw))
        assert np.isfinite(g).all()


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                         np.uint32, np.int64, np.uint64])
def test_every_integer_label_dtype(label_dtype):
    x, y, _, _ = make((40, 7), np.float32)
    a = fusedopt.softmax_cross_entropy_and_grad(x, y.astype(label_dtype))
    b = fusedopt.softmax_cross_entropy_and_grad(x, y)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(cpu_path, dtype):
    inf, big = np.inf, dtype(1e20)
    x = np.array([[big, -big, 0.0], [0.0, -inf, 1.0], [-inf, -inf, -inf], [-inf, 2.0, -inf],
                  [np.nan, 0.0, 1.0], [3.0, 3.0, 3.0]], dtype=dtype)
    y = np.array([1, 0, 0, 1, 2, 1])
    loss, g = fusedopt.softmax_cross_entropy_and_grad(x, y, reduction="none")
    assert loss[0] == dtype(2e20)                        # exactly m - x_y
    np.testing.assert_array_equal(g[0], np.array([1, -1, 0], dtype))
    # a masked class: p = 0 there; the loss is that of the two others
    np.testing.assert_allclose(loss[1], 1 + np.log1p(np.exp(-1.0)), rtol=4 * np.finfo(dtype).eps)
    assert g[1, 1] == 0
    assert np.isnan(loss[2]) and np.isnan(g[2]).all()    # all -inf: NaN, as torch
    assert loss[3] == 0 and g[3, 1] == 0 and g[3, 0] == 0 and g[3, 2] == 0
    assert np.isnan(loss[4]) and np.isnan(g[4]).all()    # NaN stays in its row
    np.testing.assert_allclose(loss[5], np.log(3), rtol=2 * np.finfo(dtype).eps)
    np.testing.assert_allclose(g[5], np.array([1, -2, 1], dtype) / 3, rtol=2 * np.finfo(dtype).eps)
    # -inf logit of a class whose probability is 0 adds nothing
    q = np.array([[0.5, 0.0, 0.5]], dtype)
    lq, gq = fusedopt.softmax_cross_entropy_and_grad(x[1:2], q, reduction="none")
    assert np.isfinite(lq).all() and gq[0, 1] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_prediction_keeps_its_digits(dtype):
    # loss = log1p(exp(-30)) = 9.357622968840175e-14: log(sum exp) of a rounded sum is 0
    x = np.array([[0.0, -30.0]], dtype=dtype)
    loss, g = fusedopt.softmax_cross_entropy_and_grad(x, np.array([0]), reduction="sum")
    want = float(np.log1p(np.exp(LONG(-30))))
    assert loss == pytest.approx(want, rel=8 * float(np.finfo(dtype).eps))
    assert g[0, 0] == pytest.approx(-want, rel=8 * float(np.finfo(dtype).eps))  # p - 1, no cancellation


def test_mean_denominator_is_torchs():
    x, y, _, w = make((10, 4), np.float64)
    y[:4] = -1
    loss = fusedopt.softmax_cross_entropy(x, y, weight=w, ignore_index=-1)
    rows = fusedopt.softmax_cross_entropy(x, y, weight=w, ignore_index=-1, reduction="none")
    assert loss == pytest.approx(rows.sum() / w[y[4:]].sum(), rel=1e-15)
    assert np.isnan(fusedopt.softmax_cross_entropy(x, np.full(10, -100)))
    assert np.isnan(fusedopt.softmax_cross_entropy(x[:0], y[:0]))
    assert fusedopt.softmax_cross_entropy(x[:0], y[:0], reduction="sum") == 0.0


# ----------------------------------------------------------------------------- bad input

def _bad_cases():
    x, y, q, w = make((5, 4), np.float32)
    return [
        ("labels", dict(labels=np.array([0, 1, -2, 3, 0]))),
        ("labels", dict(labels=np.array([0, 1, 4, 3, 0]))),
        ("labels", dict(labels=np.array([0, 1, 2**63 + 5, 3, 0], dtype=np.uint64))),
        ("labels", dict(labels=q[:, :3])),
        ("labels", dict(labels=q.reshape(-1)[:5].copy())),
        ("labels", dict(labels=np.array([0, 1, 2, 3]))),
        ("labels", dict(labels=np.ones(5, bool))),
        ("labels", dict(labels=[0, 1, 2, 3, 0])),
        ("weight", dict(weight=w[:3])),
        ("weight", dict(weight=w.reshape(2, 2))),
        ("weight", dict(weight=[1.0, 2.0, 3.0, 4.0])),
        ("label_smoothing", dict(label_smoothing=float("nan"))),
        ("label_smoothing", dict(label_smoothing=1.5)),
        ("logits", dict(logits=x.reshape(-1))),
        ("logits", dict(logits=x.reshape(5, 2, 2))),
        ("logits", dict(logits=x[:, :0])),
        ("logits", dict(logits=x.astype(np.int32))),
        ("logits", dict(logits=np.asfortranarray(np.ones((5, 4), np.float32)))),
        ("ignore_index", dict(labels=q, ignore_index=0)),
        ("ignore_index", dict(ignore_index=1.5)),
        ("reduction", dict(reduction="avg")),
        ("out", dict(out=np.zeros((5, 3), np.float32))),
        ("out", dict(out=np.zeros((5, 4), np.float64))),
        ("share memory", dict(out="logits")),
    ]


@pytest.mark.parametrize("name,kw", _bad_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_names_the_argument_and_writes_nothing(name, kw):
    x, y, _, _ = make((5, 4), np.float32)
    args = dict(logits=x, labels=y)
    args.update(kw)
    out = args.pop("out", None)
    if isinstance(out, str):
        out = x
    sentinel = np.full((5, 4), 7.0, np.float32)
    target = sentinel.copy() if out is None else out
    before = target.copy()
    with pytest.raises((ValueError, TypeError)) as info:
        fusedopt.softmax_cross_entropy_and_grad(args.pop("logits"), args.pop("labels"),
                                                out=target, **args)
    assert name in str(info.value), str(info.value)
    np.testing.assert_array_equal(target, before)


def test_read_only_out_is_refused():
    x, y, _, _ = make((5, 4), np.float64)
    out = np.zeros_like(x)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        fusedopt.softmax_cross_entropy_and_grad(x, y, out=out)
    assert not out.any()


def test_out_receives_the_gradient():
    x, y, _, _ = make((6, 9), np.float32)
    out = np.empty_like(x)
    loss, g = fusedopt.softmax_cross_entropy_and_grad(x, y, out=out)
    assert g is out
    np.testing.assert_array_equal(out, fusedopt.softmax_cross_entropy_and_grad(x, y)[1])


# ----------------------------------------------------------------------------- frameworks
#
# Each framework evaluates the same formula in another order (torch, TF and optax with
# their sums in the logits' dtype), so each side is within about 8 eps of the row's scale
# (``scales``) and the two within 16 eps; we allow 32 eps of the scale (the largest
# difference measured, 16.3 eps, is scikit-learn's float64 gradient at C = 1000; a wrong
# weight, smoothing or denominator misses by 1e5 eps or more).

FW_K = 32
FW_SHAPES = [(64, 10), (32, 1000)]


def fw_close(ours, theirs, scale, dtype, what):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    err = np.abs(ours - theirs)
    tol = FW_K * np.finfo(dtype).eps * np.broadcast_to(scale, err.shape)
    bad = ~(err <= tol)
    assert not bad.any(), (what, err[bad][:3], tol[bad][:3], np.argwhere(bad)[:3])


def _fw_inputs(shape, dtype):
    x, y, q, w = make(shape, dtype, seed=11)
    y = y.copy()
    y[::5] = -100
    return x, y, q, w


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    return torch


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("kw", [{}, dict(weight=True), dict(label_smoothing=0.1),
                                dict(weight=True, label_smoothing=0.3)], ids=str)
@pytest.mark.parametrize("shape", FW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_vs_torch_cross_entropy(torch, dtype, shape, kw, kind, reduction):
    """torch.nn.functional.cross_entropy: value and autograd gradient, weight,
    ignore_index (every fifth row), label smoothing, every reduction."""
    import torch.nn.functional as F
    x, y, q, w = _fw_inputs(shape, dtype)
    lab = y if kind == "index" else q
    ours_kw = dict(kw)
    if kw.get("weight"):
        ours_kw["weight"] = w
    xt = torch.tensor(x, requires_grad=True)
    tkw = {k: (torch.tensor(w) if k == "weight" else v) for k, v in ours_kw.items()}
    lt = F.cross_entropy(xt, torch.tensor(lab), reduction=reduction, **tkw)
    (lt.sum() if reduction == "none" else lt).backward()
    loss, grad = fusedopt.softmax_cross_entropy_and_grad(x, lab, reduction=reduction,
                                                         **ours_kw)
    rows, gscale, den = scales(x, lab, ours_kw.get("weight"), kw.get("label_smoothing", 0.0),
                               reduction=reduction)
    what = f"torch {dtype.__name__} {shape} {kw} {kind} {reduction}"
    fw_close(grad, xt.grad.numpy(), gscale, dtype, what + " grad")
    if reduction == "none":
        fw_close(loss, lt.detach().numpy(), rows, dtype, what)
    else:
        scale = rows.sum() / (den if reduction == "mean" else 1)
        fw_close(loss, lt.item(), scale, dtype, what)


@pytest.mark.parametrize("shape", FW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_vs_tf_nn(dtype, shape):
    """tf.nn.sparse_softmax_cross_entropy_with_logits and softmax_cross_entropy_with_logits,
    values and GradientTape gradients."""
    tf = pytest.importorskip("tensorflow")
    x, y, q, _ = make(shape, dtype, seed=12)
    for lab, fn in ((y, tf.nn.sparse_softmax_cross_entropy_with_logits),
                    (q, tf.nn.softmax_cross_entropy_with_logits)):
        xv = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xv)
            lt = fn(labels=tf.constant(lab), logits=xv)
        gt = tape.gradient(lt, xv).numpy()
        loss, grad = fusedopt.softmax_cross_entropy_and_grad(x, lab, reduction="none")
        rows, gscale, _ = scales(x, lab, None, 0.0, reduction="none")
        fw_close(loss, lt.numpy(), rows, dtype, f"tf {fn.__name__}")
        fw_close(grad, gt, gscale, dtype, f"tf {fn.__name__} grad")


@pytest.mark.parametrize("ls", [0.0, 0.2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_vs_keras(dtype, ls):
    """keras.losses.categorical_crossentropy (from_logits, label_smoothing) and
    sparse_categorical_crossentropy (from_logits)."""
    import os
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("Keras is not on its TensorFlow backend")
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    x, y, q, _ = make((64, 10), dtype, seed=13)
    lk = keras.losses.categorical_crossentropy(tf.constant(q), tf.constant(x), from_logits=True,
                                               label_smoothing=ls)
    loss = fusedopt.softmax_cross_entropy(x, q, label_smoothing=ls, reduction="none")
    fw_close(loss, np.asarray(lk), scales(x, q, None, ls, reduction="none")[0], dtype,
             "keras categorical")
    if ls == 0.0:
        lk = keras.losses.sparse_categorical_crossentropy(tf.constant(y), tf.constant(x),
                                                          from_logits=True)
        loss = fusedopt.softmax_cross_entropy(x, y, reduction="none")
        fw_close(loss, np.asarray(lk), scales(x, y, None, 0.0, reduction="none")[0], dtype,
                 "keras sparse")


@pytest.mark.parametrize("dtype", DTYPES)
def test_vs_optax(dtype):
    """optax.softmax_cross_entropy and softmax_cross_entropy_with_integer_labels, values
    and jax.grad of their sums."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    x, y, q, _ = make((32, 1000), dtype, seed=14)
    with jax.enable_x64(dtype == np.float64):
        xj = jax.numpy.asarray(x)
        for lab, fn in ((q, optax.softmax_cross_entropy),
                        (y, optax.softmax_cross_entropy_with_integer_labels)):
            lj = jax.numpy.asarray(lab)
            lo = np.asarray(fn(xj, lj))
            go = np.asarray(jax.grad(lambda a: fn(a, lj).sum())(xj))
            assert lo.dtype == dtype
            loss, grad = fusedopt.softmax_cross_entropy_and_grad(x, lab, reduction="none")
            rows, gscale, _ = scales(x, lab, None, 0.0, reduction="none")
            fw_close(loss, lo, rows, dtype, f"optax {fn.__name__}")
            fw_close(grad, go, gscale, dtype, f"optax {fn.__name__} grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_vs_sklearn_half_multinomial(dtype):
    """scikit-learn's HalfMultinomialLoss.loss_gradient with sample_weight: our row losses
    and gradient (reduction "none", "sum" gives the same gradient) times the weight."""
    pytest.importorskip("sklearn")
    from sklearn._loss.loss import HalfMultinomialLoss
    x, y, _, _ = make((64, 12), dtype, seed=15)
    sw = np.random.default_rng(3).uniform(0.5, 2, 64).astype(dtype)
    sl, sg = HalfMultinomialLoss(n_classes=12).loss_gradient(
        y_true=y.astype(dtype), raw_prediction=x, sample_weight=sw)
    loss, grad = fusedopt.softmax_cross_entropy_and_grad(x, y, reduction="none")
    rows, gscale, _ = scales(x, y, None, 0.0, reduction="none")
    fw_close(loss * sw, sl, rows * sw, dtype, "sklearn loss")
    fw_close(grad * sw[:, None], sg, gscale * sw[:, None], dtype, "sklearn grad")
