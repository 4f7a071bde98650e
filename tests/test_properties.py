"""Property-based tests (hypothesis): every kernel against fusedopt.reference.

Strategies draw shapes (0-d, empty, up to three axes, and now and then 16 Ki - 60 Ki
elements across several blocks), dtypes, values (subnormals, +-0, huge, NaN, +-inf),
hyper-parameters and conventions, the CPU path and the thread count.  Optimizers must
agree with the reference bit for bit (same IEEE operations in the same order; NaN compares
equal to NaN whatever its payload, +0 and -0 differ); losses within the ulp bounds of
tests/test_losses.py (``bce_bounds``), with an absolute term for subnormal results.

Domains, and why:
- values are bounded where an intermediate of the kernel (computed in the input dtype)
  would overflow while the float64 reference does not, or where a sum of up to 65536
  elements would overflow the double accumulator: logits |x| <= max/2**40, L1
  |v| <= max/16 (float64: max/2**24), L2 |v| <= sqrt(max)/8 (float64: sqrt(max)/2**12),
  weights |w| <= 4.  "Huge" still means 1e26 (float32) / 1e296 (float64) for the logits.
- pos_weight in [0.25, 8] and labels in [0, 1]: where bce_bounds holds (lw = (pw-1)y'+1 is
  computed without cancellation); no infinite logits together with label smoothing (inf or
  NaN then hinges on y' rounding to exactly 1 in the dtype).
- with amsgrad, inputs are finite and bounded (and torch's coupled decay, which feeds a
  possibly NaN p into the next gradient, takes one step) so that v never becomes NaN: the
  kernel's max(vmax, v) does not propagate NaN as the reference's np.maximum does (see the
  strict xfail test at the end, a known core bug).

CI runs the derandomized "ci" profile of tests/conftest.py (the same examples every time,
no database); HYPOTHESIS_PROFILE=explore randomizes, FUSEDOPT_HYPOTHESIS_SCALE=k multiplies
every example count by k.
"""
import contextlib
import math
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fusedopt  # noqa: E402
from fusedopt import _runtime, reference as R  # noqa: E402

from conftest import CPU_PATHS  # noqa: E402
from test_losses import _bce64, bce_bounds  # noqa: E402

SCALE = int(os.environ.get("FUSEDOPT_HYPOTHESIS_SCALE", "1"))

# On a failure hypothesis formats the falsifying example with black (when installed), whose
# import of mypy_extensions warns: that must not turn the report into an INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


def examples(n):
    return settings(max_examples=n * SCALE)


# ----------------------------------------------------------------------------- strategies

DTYPES = st.sampled_from([np.float32, np.float64])
WIDTH = {np.float32: 32, np.float64: 64}
BIG_SIZES = [16383, 16384, 16385, 32767, 32768, 32769, 49157]


def rep(dtype, v):
    """v rounded toward zero to a value representable in dtype (a valid strategy bound)."""
    r = float(dtype(v))
    return r if abs(r) <= abs(v) else float(np.nextafter(dtype(v), dtype(0)))


def reals(dtype, lo, hi, nan=False, inf=False):
    """Floats of dtype in [lo, hi] (subnormals, +-0, the bounds included), optionally NaN
    and +-inf as well."""
    s = st.floats(rep(dtype, lo), rep(dtype, hi), width=WIDTH[dtype],
                  allow_subnormal=lo < float(np.finfo(dtype).tiny))
    extra = ([math.nan] if nan else []) + ([math.inf, -math.inf] if inf else [])
    return st.one_of(s, st.sampled_from(extra)) if extra else s


@st.composite
def shapes(draw, big=True):
    """Mostly small shapes of 0 to 3 axes (0-d and empty included); one example in 16 has
    16 Ki - 60 Ki elements (several blocks: the threads really split the work)."""
    if big and draw(st.integers(0, 15)) == 15:
        n = draw(st.one_of(st.sampled_from(BIG_SIZES), st.integers(16385, 60000)))
        c = draw(st.sampled_from([1, 2, 3, 7, 16]))
        return (n,) if c == 1 else (n // c, c)
    return draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7))


@st.composite
def arrays(draw, dtype, shape, elements, bulk=None):
    """An array whose every element is drawn (small shapes), or, for large ones, a seeded
    random background (bulk(rng, size)) with up to 12 drawn elements at drawn positions
    (block boundaries and both ends among them)."""
    size = int(np.prod(shape))
    if size <= 512:
        return draw(hnp.arrays(dtype, shape, elements=elements))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a = (bulk(rng, size) if bulk else rng.standard_normal(size)).astype(dtype)
    edges = [0, size - 1] + [b + d for b in range(16384, size, 16384) for d in (-1, 0)]
    where = draw(st.lists(st.one_of(st.sampled_from(edges), st.integers(0, size - 1)),
                          max_size=12))
    for i in where:
        a[i] = draw(elements)
    return a.reshape(shape)


@contextlib.contextmanager
def on_path(path):
    before = fusedopt.cpu_info()["path"]
    _runtime._set_cpu_path(path)
    try:
        yield
    finally:
        _runtime._set_cpu_path(before)


def run_on(draw):
    """The CPU path and thread count of an example."""
    return draw(st.sampled_from(CPU_PATHS)), draw(st.sampled_from([None, 1, 2, 3]))


# ----------------------------------------------------------------------------- comparisons

def same_bits(a, b):
    """Bit-identical arrays, where any NaN equals any NaN (payload and sign are not
    specified by IEEE for the results of invalid operations); +0 and -0 differ."""
    assert a.shape == b.shape and a.dtype == b.dtype
    an, bn = np.isnan(a), np.isnan(b)
    bad = (an != bn) | (~an & (a.view(f"u{a.itemsize}") != b.view(f"u{b.itemsize}")))
    if bad.any():
        i = np.flatnonzero(bad.ravel())[:5]
        raise AssertionError(f"{int(bad.sum())} elements differ, first at {i}: "
                             f"{a.ravel()[i]!r} vs {b.ravel()[i]!r}")


def within(actual, expected, tol, what):
    """actual (any dtype) against the float64 expected: NaN exactly where expected is NaN,
    equal infinities, elsewhere |actual - expected| <= tol."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), e.shape)
    assert a.shape == e.shape, what
    nan = np.isnan(e)
    inf = np.isinf(e)
    fin = ~nan & ~inf
    with np.errstate(invalid="ignore"):
        bad = (np.isnan(a) != nan) | (inf & (a != e)) | (fin & ~(np.abs(a - e) <= tol))
    if bad.any():
        i = np.flatnonzero(bad.ravel())[:5]
        raise AssertionError(f"{what}: {int(bad.sum())} elements out of bounds, first at {i}: "
                             f"got {a.ravel()[i]!r}, expected {e.ravel()[i]!r} "
                             f"+- {tol.ravel()[i]!r}")


def reduced(ref64_elems, elem_tol, n, reduction, dtype):
    """Expected value and bound of a mean/sum of elements computed in the kernel's dtype
    and added in double in any order."""
    e = np.asarray(ref64_elems, np.float64).ravel()
    if np.isfinite(e).all() or not e.size:
        total = math.fsum(e)
        tol = float(np.sum(elem_tol)) + n * np.finfo(np.float64).eps * float(np.abs(e).sum()) \
            + n * float(np.finfo(dtype).smallest_subnormal)
    else:
        with np.errstate(all="ignore"):
            total, tol = float(np.sum(e)), math.inf
    if reduction == "mean":
        return (total / n, tol / n) if n else (math.nan, 0.0)
    return total, tol


# ----------------------------------------------------------------------------- sigmoid CE

@st.composite
def bce_case(draw):
    dtype = draw(DTYPES)
    shape = draw(shapes())
    big = float(np.finfo(dtype).max) / 2 ** 40
    kw = {}
    if draw(st.booleans()):
        kw["label_smoothing"] = draw(st.floats(0.0, 1.0))
    # (with smoothing, an infinite logit gives inf or NaN = 0*inf depending on whether
    # y' = y(1-ls) + ls/2 rounds to exactly 1 in the dtype: both are right, not compared)
    x = draw(arrays(dtype, shape, reals(dtype, -big, big, nan=True,
                                        inf="label_smoothing" not in kw),
                    lambda rng, n: rng.standard_normal(n) * 5))
    kind = draw(st.sampled_from(["hard", "soft", "soft+nan"]))
    if kind == "hard":
        ldt = draw(st.sampled_from([dtype, np.bool_, np.uint8, np.int32]))
        y = draw(arrays(np.float64, shape, st.sampled_from([0.0, 1.0]),
                        lambda rng, n: rng.random(n) > 0.5)).astype(ldt)
    else:
        y = draw(arrays(dtype, shape, reals(dtype, 0.0, 1.0, nan=kind == "soft+nan"),
                        lambda rng, n: rng.random(n)))
    wvals = reals(dtype, -4.0, 4.0, nan=draw(st.integers(0, 9)) == 9)
    forms = ["none", "scalar", "full"] + (["last"] if len(shape) else []) + \
        (["row"] if len(shape) >= 2 else [])
    form = draw(st.sampled_from(forms))
    if form == "scalar":
        kw["weight"] = draw(reals(dtype, -4.0, 4.0))
    elif form != "none":
        wshape = {"full": shape, "last": shape[-1:], "row": shape[:-1] + (1,)}[form]
        kw["weight"] = draw(arrays(dtype, wshape, wvals, lambda rng, n: rng.uniform(0, 2, n)))
    pform = draw(st.sampled_from(["none", "scalar"] + (["last"] if len(shape) else [])))
    if pform == "scalar":
        kw["pos_weight"] = draw(reals(dtype, 0.25, 8.0))
    elif pform == "last":
        kw["pos_weight"] = draw(arrays(dtype, shape[-1:], reals(dtype, 0.25, 8.0),
                                       lambda rng, n: rng.uniform(0.25, 8, n)))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    return x, y, kw, reduction, run_on(draw), draw(st.booleans())


@examples(1200)
@given(bce_case())
def test_sigmoid_cross_entropy_matches_reference(case):
    x, y, kw, reduction, (path, nt), use_out = case
    note(f"dtype={x.dtype} shape={x.shape} labels={y.dtype} path={path} n_threads={nt}")
    out = np.full(x.shape, 7, x.dtype) if use_out else None
    with on_path(path):
        loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(
            x, y, reduction=reduction, n_threads=nt, out=out, **kw)
        only = fusedopt.sigmoid_cross_entropy(x, y, reduction=reduction, n_threads=nt, **kw)
    if use_out:
        assert grad is out
    assert grad.dtype == x.dtype and grad.shape == x.shape
    w = kw.get("weight")
    pw = kw.get("pos_weight")
    ls = kw.get("label_smoothing", 0.0)
    with np.errstate(all="ignore"):
        ref64 = _bce64(x, y, weight=w, pos_weight=pw, label_smoothing=ls)
        rgrad = R.sigmoid_cross_entropy_and_grad(
            x.astype(np.float64), y, weight=None if w is None else np.asarray(w, np.float64),
            pos_weight=None if pw is None else np.asarray(pw, np.float64),
            label_smoothing=ls, reduction=reduction)[1]
        ltol, gtol = bce_bounds(x, y, w, pw, ls, reduction)
    tiny = float(np.finfo(x.dtype).tiny)
    within(grad, rgrad, gtol + tiny, "grad")
    elem_tol = ltol + np.spacing(np.abs(ref64).astype(x.dtype)).astype(np.float64) + tiny
    if reduction == "none":
        assert loss.dtype == x.dtype and loss.shape == x.shape
        within(loss, ref64, elem_tol, "loss")
    else:
        expected, tol = reduced(ref64, elem_tol, x.size, reduction, x.dtype)
        within(loss, expected, tol, "loss")
    np.testing.assert_array_equal(only, loss)          # loss-only: the same, bit for bit


# ----------------------------------------------------------------------------- L1 / L2

@st.composite
def regression_case(draw):
    dtype = draw(DTYPES)
    kind = draw(st.sampled_from(["l1", "l2"]))
    shape = draw(shapes())
    mx = float(np.finfo(dtype).max)
    if dtype == np.float32:     # elements far below float32's max: no overflow in double sums
        bound = mx / 16 if kind == "l1" else math.sqrt(mx) / 8
    else:                       # <= 65536 elements of at most max / 2**17: sums stay finite
        bound = mx / 2 ** 24 if kind == "l1" else math.sqrt(mx) / 2 ** 12
    vals = reals(dtype, -bound, bound, nan=True, inf=True)
    p = draw(arrays(dtype, shape, vals))
    t = draw(arrays(dtype, shape, vals))
    if draw(st.booleans()) and p.size:                  # exact ties: sgn(0) = 0
        t.ravel()[::3] = p.ravel()[::3]
    form = draw(st.sampled_from(["none", "scalar", "full"] + (["last"] if len(shape) else [])))
    w = None
    if form == "scalar":
        w = draw(reals(dtype, -4.0, 4.0))
    elif form != "none":
        wshape = shape if form == "full" else shape[-1:]
        w = draw(arrays(dtype, wshape, reals(dtype, -4.0, 4.0, nan=True),
                        lambda rng, n: rng.uniform(0, 2, n)))
    return kind, p, t, w, draw(st.sampled_from(["mean", "sum", "none"])), run_on(draw), \
        draw(st.booleans())


@examples(1000)
@given(regression_case())
def test_l1_l2_match_reference(case):
    kind, p, t, w, reduction, (path, nt), use_out = case
    note(f"dtype={p.dtype} shape={p.shape} path={path} n_threads={nt}")
    fn = fusedopt.l1_loss_and_grad if kind == "l1" else fusedopt.l2_loss_and_grad
    only = fusedopt.l1_loss if kind == "l1" else fusedopt.l2_loss
    ref = R.l1_loss_and_grad if kind == "l1" else R.l2_loss_and_grad
    out = np.full(p.shape, 7, p.dtype) if use_out else None
    with on_path(path):
        loss, grad = fn(p, t, weight=w, reduction=reduction, out=out, n_threads=nt)
        loss_only = only(p, t, weight=w, reduction=reduction, n_threads=nt)
    w64 = None if w is None else np.asarray(w, np.float64)
    with np.errstate(all="ignore"):
        ref64 = ref(p.astype(np.float64), t.astype(np.float64), weight=w64, reduction="none")[0]
        rgrad = ref(p.astype(np.float64), t.astype(np.float64), weight=w64,
                    reduction=reduction)[1]
    # d = p - t, |d| or d*d, *w, *scale: at most four roundings in the dtype (eps = 2u),
    # each subnormal result off by half the smallest subnormal, scaled by |w| <= 4 later.
    eps = float(np.finfo(p.dtype).eps)
    sub = 16 * float(np.finfo(p.dtype).smallest_subnormal)
    within(grad, rgrad, 4 * eps * np.abs(rgrad) + sub, "grad")
    elem_tol = 4 * eps * np.abs(ref64) + sub
    if reduction == "none":
        within(loss, ref64, elem_tol, "loss")
    else:
        expected, tol = reduced(ref64, elem_tol, p.size, reduction, p.dtype)
        within(loss, expected, tol, "loss")
    np.testing.assert_array_equal(loss_only, loss)


# ----------------------------------------------------------------------------- Adam

@st.composite
def adam_case(draw):
    dtype = draw(DTYPES)
    shape = draw(shapes())
    conv = draw(st.sampled_from(fusedopt.CONVENTIONS))
    kw = dict(lr=draw(st.one_of(st.just(0.0), st.floats(0, 10))),
              betas=(draw(st.floats(0, 1, exclude_max=True)),
                     draw(st.floats(0, 1, exclude_max=True))),
              eps=draw(st.one_of(st.just(0.0), st.floats(0, 1))))
    if conv in ("torch", "keras", "optax") and draw(st.booleans()):
        kw["weight_decay"] = draw(st.floats(0, 1))
        kw["decoupled_weight_decay"] = conv != "torch" or draw(st.booleans())
    if conv in ("torch", "keras", "optax"):
        kw["amsgrad"] = draw(st.booleans())
    if conv == "torch":
        kw["maximize"] = draw(st.booleans())
    if conv == "optax" and draw(st.booleans()):
        kw["eps_root"] = draw(st.floats(0, 1e-3))
    mx = float(np.finfo(dtype).max)
    if kw.get("amsgrad"):
        # finite and bounded: v cannot become NaN (see the module notes)
        big, gbig = mx / 4, math.sqrt(mx) / 2
        val, gval = reals(dtype, -big, big), reals(dtype, -gbig, gbig)
        nonneg = reals(dtype, 0.0, big)
    else:
        val = gval = reals(dtype, -mx, mx, nan=True, inf=True)
        nonneg = reals(dtype, 0.0, mx, nan=True, inf=True)
    state = [draw(arrays(dtype, shape, e, b)) for e, b in (
        (val, None), (val, lambda rng, n: rng.standard_normal(n) * 0.1),
        (nonneg, lambda rng, n: rng.random(n) * 0.01), (nonneg, lambda rng, n: rng.random(n)))]
    state = [s if k < 2 else np.asarray(np.abs(s)) for k, s in enumerate(state)]
    # (amsgrad with torch's coupled decay: p feeds the next gradient, and a NaN p (0/0 with
    # eps = 0, or inf - inf) would make v NaN: one step only)
    coupled = conv == "torch" and kw.get("weight_decay") and not kw["decoupled_weight_decay"]
    nsteps = 1 if kw.get("amsgrad") and coupled else draw(st.integers(1, 3))
    grads = [draw(arrays(dtype, shape, gval)) for _ in range(nsteps)]
    step = draw(st.integers(1, 3000 if conv == "tf1" else 10 ** 6))
    return conv, kw, state, grads, step, run_on(draw)


@examples(1000)
@given(adam_case())
def test_adam_step_bit_identical_to_reference(case):
    conv, kw, state, grads, step, (path, nt) = case
    note(f"dtype={state[0].dtype} shape={state[0].shape} path={path} n_threads={nt}")
    ams = kw.get("amsgrad", False)
    got = [s.copy() for s in state]
    ref = [s.copy() for s in state]
    for t, g in enumerate(grads, step):
        with on_path(path):
            fusedopt.adam_step(got[0], g, got[1], got[2], step=t, convention=conv,
                               max_exp_avg_sq=got[3] if ams else None, n_threads=nt, **kw)
        with np.errstate(all="ignore"):
            R.adam_step(ref[0], g, ref[1], ref[2], step=t, convention=conv,
                        max_exp_avg_sq=ref[3] if ams else None, **kw)
    for a, b in zip(got, ref):
        same_bits(a, b)


# ----------------------------------------------------------------------------- SGD

@st.composite
def sgd_case(draw):
    dtype = draw(DTYPES)
    shape = draw(shapes())
    conv = draw(st.sampled_from(fusedopt.CONVENTIONS))
    kw = dict(lr=draw(st.one_of(st.just(0.0), st.floats(0, 10))))
    if draw(st.booleans()):
        kw["momentum"] = draw(st.floats(0, 2))
    if kw.get("momentum", 0) > 0 and draw(st.booleans()):
        kw["nesterov"] = True
    elif conv == "torch" and kw.get("momentum", 0) > 0 and draw(st.booleans()):
        kw["dampening"] = draw(st.floats(0, 1))
    if conv in ("torch", "keras") and draw(st.booleans()):
        kw["weight_decay"] = draw(st.floats(0, 1))
    if conv == "torch":
        kw["maximize"] = draw(st.booleans())
    mx = float(np.finfo(dtype).max)
    val = reals(dtype, -mx, mx, nan=True, inf=True)
    p = draw(arrays(dtype, shape, val))
    buf = draw(arrays(dtype, shape, val, lambda rng, n: rng.standard_normal(n) * 0.1))
    grads = [draw(arrays(dtype, shape, val)) for _ in range(draw(st.integers(1, 3)))]
    step = draw(st.one_of(st.just(1), st.integers(1, 10 ** 6)))
    return conv, kw, [p, buf], grads, step, run_on(draw)


@examples(800)
@given(sgd_case())
def test_sgd_step_bit_identical_to_reference(case):
    conv, kw, state, grads, step, (path, nt) = case
    note(f"dtype={state[0].dtype} shape={state[0].shape} path={path} n_threads={nt}")
    mom = kw.get("momentum", 0) != 0
    got = [s.copy() for s in state]
    ref = [s.copy() for s in state]
    for t, g in enumerate(grads, step):
        with on_path(path):
            fusedopt.sgd_step(got[0], g, got[1] if mom else None, step=t, convention=conv,
                              n_threads=nt, **kw)
        with np.errstate(all="ignore"):
            R.sgd_step(ref[0], g, ref[1] if mom else None, step=t, convention=conv, **kw)
    for a, b in zip(got, ref):
        same_bits(a, b)


# ----------------------------------------------------------------------------- classes

@st.composite
def class_case(draw):
    n = draw(st.integers(1, 6))
    dts = [draw(DTYPES) for _ in range(n)]
    shps = [draw(shapes(big=False)) for _ in range(n)]
    conv = draw(st.sampled_from(fusedopt.CONVENTIONS))
    which = draw(st.sampled_from(["Adam", "AdamW", "SGD"] if conv not in ("tf1", "sklearn")
                                 else ["Adam", "SGD"]))
    if which == "SGD":
        kw = dict(lr=draw(st.floats(0, 1)), momentum=draw(st.sampled_from([0.0, 0.5, 0.9])))
        if kw["momentum"] and draw(st.booleans()):
            kw["nesterov"] = True
    else:
        kw = dict(lr=draw(st.floats(0, 1)), betas=(draw(st.floats(0, 0.99)),
                                                   draw(st.floats(0, 0.999))))
        if conv in ("torch", "keras", "optax"):
            kw["amsgrad"] = draw(st.booleans())
    params = [draw(arrays(dt, s, reals(dt, -100.0, 100.0))) for dt, s in zip(dts, shps)]
    steps = []
    for _ in range(draw(st.integers(1, 5))):
        steps.append([None if draw(st.integers(0, 4)) == 0 else
                      draw(arrays(dt, s, reals(dt, -10.0, 10.0))) for dt, s in zip(dts, shps)])
    split = draw(st.integers(0, n))                      # two param groups
    lr2 = draw(st.floats(0, 1))
    return which, conv, kw, params, steps, split, lr2, run_on(draw)


@examples(300)
@given(class_case())
def test_optimizer_classes_match_per_tensor_reference(case):
    """Multi-tensor class steps (groups, mixed dtypes, None gradients, lazily created
    state) equal the reference stepping each tensor with its own step count."""
    which, conv, kw, params, steps, split, lr2, (path, nt) = case
    cls = getattr(fusedopt, which)
    ps = [p.copy() for p in params]
    groups = [{"params": ps[:split]}, {"params": ps[split:], "lr": lr2}]
    opt = cls([g for g in groups if g["params"]], convention=conv, **kw)
    ref = [p.copy() for p in params]
    rstate = [None] * len(ps)
    decoupled = which == "AdamW" or (conv == "keras" and opt.defaults["weight_decay"] != 0)
    for grads in steps:
        with on_path(path):
            assert opt.step(grads, n_threads=nt) is True
        for i, g in enumerate(grads):
            if g is None:
                continue
            if rstate[i] is None:
                rstate[i] = [0] + [np.zeros_like(ref[i]) for _ in range(3)]
            rstate[i][0] += 1
            lr = kw["lr"] if i < split else lr2
            if which == "SGD":
                R.sgd_step(ref[i], g, rstate[i][1] if kw["momentum"] else None, lr=lr,
                           momentum=kw["momentum"], nesterov=kw.get("nesterov", False),
                           step=rstate[i][0], convention=conv)
            else:
                R.adam_step(ref[i], g, rstate[i][1], rstate[i][2], step=rstate[i][0], lr=lr,
                            betas=kw["betas"], amsgrad=kw.get("amsgrad", False),
                            weight_decay=opt.defaults["weight_decay"],
                            decoupled_weight_decay=decoupled, max_exp_avg_sq=rstate[i][3],
                            convention=conv)
    for a, b in zip(ps, ref):
        same_bits(a, b)
    for i, s in opt.state.items():
        assert s["step"] == rstate[i][0]


# ----------------------------------------------------------------------------- non-finite

@st.composite
def grad_lists(draw):
    dtype = draw(DTYPES)
    mx = float(np.finfo(dtype).max)
    special = draw(st.integers(0, 2))        # 0: finite only, 1: +-inf too, 2: NaN too
    vals = reals(dtype, -mx, mx, nan=special == 2, inf=special >= 1)
    grads = [draw(arrays(dtype, draw(shapes()), vals))
             for _ in range(draw(st.integers(0, 4)))]
    scale = draw(st.one_of(st.none(), st.just(0.0), st.floats(0, 1e4),
                           st.floats(0, 1e-30, allow_subnormal=True)))
    return grads, scale, run_on(draw)


@examples(600)
@given(grad_lists())
def test_unscale_and_check_and_all_finite(case):
    grads, scale, (path, nt) = case
    with on_path(path):
        finite = fusedopt.all_finite(grads, n_threads=nt)
    assert finite is all(bool(np.isfinite(g).all()) for g in grads)
    got = [g.copy() for g in grads]
    with on_path(path):
        found = fusedopt.unscale_and_check(got, scale, n_threads=nt)
    with np.errstate(all="ignore"):
        ref = [g if scale is None else g * g.dtype.type(scale) for g in grads]
    for a, b in zip(got, ref):
        same_bits(a, b)
    assert found is (not all(bool(np.isfinite(g).all()) for g in ref))


# ----------------------------------------------------------------------------- known bug

@pytest.mark.parametrize("conv", ["torch", "keras", "optax"])
def test_amsgrad_max_propagates_nan(conv):
    kw = dict(eps=1e-7) if conv == "keras" else {}
    g = np.array([np.nan, 1.0, np.inf, 0.0])
    got = [np.ones(4), np.zeros(4), np.zeros(4), np.full(4, 0.5)]
    ref = [a.copy() for a in got]
    fusedopt.adam_step(got[0], g, got[1], got[2], step=1, amsgrad=True,
                       max_exp_avg_sq=got[3], convention=conv, **kw)
    with np.errstate(all="ignore"):
        R.adam_step(ref[0], g, ref[1], ref[2], step=1, amsgrad=True, max_exp_avg_sq=ref[3],
                    convention=conv, **kw)
    for a, b in zip(got, ref):
        same_bits(a, b)
