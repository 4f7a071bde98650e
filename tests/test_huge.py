"""Arrays of more than 2**31 elements: 64-bit indexing everywhere (about 11 GiB of memory).

Skipped unless asked for (tests/conftest.py):

    python -m pytest tests/test_huge.py --run-huge -p no:cacheprovider
    python -m pytest -m huge            FUSEDOPT_RUN_HUGE=1 python -m pytest tests/test_huge.py

N = 2.2e9 float32 logits (8.8 GB) with uint8 labels (2.2 GB).  The references are computed
in float64, chunk by chunk (never a float64 array of full size), while the data is
generated.  Where a second full-size operand is needed (an L1/L2 target, an SGD gradient)
it is np.zeros: pages the kernel only reads are never made resident, so it costs no memory,
and the few elements that are set make the result depend on indices past 2**31.

Each check would fail by far if any index were truncated to 32 bits: the elements past
2**31 (52.5 million) carry about 2.4 % of every sum, and single elements placed past 2**31
and at the very end must be seen.
"""
import math
import time

import numpy as np
import pytest

import fusedopt

pytestmark = pytest.mark.huge

N = 2_200_000_000                 # > 2**31 = 2_147_483_648; a multiple of 64 (and of COLS)
COLS = 64
CHUNK = 1 << 24                   # elements per reference chunk (a multiple of COLS)
PAST = 2 ** 31 + 12345            # an index past the 32-bit signed range
EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
NEED_GIB = 14


def _available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return math.inf


def _chunks():
    for i0 in range(0, N, CHUNK):
        yield i0, min(i0 + CHUNK, N)


class Huge:
    """The data and its float64 references (sums of per-chunk float64 sums, math.fsum)."""

    def __init__(self):
        t0 = time.perf_counter()
        self.x = np.empty(N, np.float32)
        self.y = np.empty(N, np.uint8)
        self.pw = np.linspace(0.5, 3.0, COLS)
        rng = np.random.default_rng(2 ** 31)
        parts = {k: [] for k in ("bce", "bce_tol", "pw", "pw_tol", "abs", "sq", "head")}
        for i0, i1 in _chunks():
            xc = self.x[i0:i1]
            rng.standard_normal(out=xc, dtype=np.float32)
            xc *= np.float32(3.0)
            yc = self.y[i0:i1]
            yc[...] = rng.random(i1 - i0) < 0.4
            if i0 <= PAST < i1:
                xc[PAST - i0], yc[PAST - i0] = 40.0, 0          # loss 40: a marked element
            if i1 == N:
                xc[-1], yc[-1] = -70.0, 1                       # loss 70
            self._reference(xc, yc, i0, parts)
        self.ref = {k: math.fsum(v) for k, v in parts.items()}
        self.fill_s = time.perf_counter() - t0

    def _reference(self, xc, yc, i0, parts):
        """torch's binary_cross_entropy_with_logits in float64 (the formula of
        fusedopt.reference, checked against it on some chunks by the test) and the bound of
        tests/test_losses.bce_bounds: 8 eps32 * (|x|(|1-y| + lw) + 2 lw) per element."""
        x = xc.astype(np.float64)
        y = yc.astype(np.float64)
        ax = np.abs(x)
        log_term = np.log1p(np.exp(-ax)) + np.maximum(-x, 0.0)
        plain = (1.0 - y) * x + log_term
        parts["bce"].append(float(plain.sum()))
        parts["bce_tol"].append(8 * EPS32 * float((ax * (1.0 - y + 1.0) + 2.0).sum()))
        pw = np.tile(self.pw, len(x) // COLS)
        lw = (pw - 1.0) * y + 1.0
        parts["pw"].append(float(((1.0 - y) * x + lw * log_term).sum()))
        parts["pw_tol"].append(8 * EPS32 * float((ax * (1.0 - y + lw) + 2.0 * lw).sum()))
        parts["abs"].append(float(ax.sum()))
        parts["sq"].append(float((x * x).sum()))
        if i0 < 2 ** 31:                                       # the first 2**31 elements
            parts["head"].append(float(plain[: max(0, min(len(x), 2 ** 31 - i0))].sum()))


@pytest.fixture(scope="module")
def huge():
    if _available_gib() < NEED_GIB:
        pytest.skip(f"needs {NEED_GIB} GiB of available memory, "
                    f"{_available_gib():.1f} GiB available")
    data = Huge()
    print(f"\nhuge: generated {N:,} elements and their float64 references in "
          f"{data.fill_s:.0f} s")
    yield data
    del data.x, data.y


def timed(label, fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    print(f"huge: {label}: {time.perf_counter() - t0:.2f} s")
    return out


def test_reference_formula_is_fusedopt_reference(huge):
    """The inline float64 formula equals fusedopt.reference on a few chunks."""
    from fusedopt import reference as R
    for i0 in (0, (2 ** 31 // CHUNK) * CHUNK, N - CHUNK):
        xc, yc = huge.x[i0:i0 + CHUNK], huge.y[i0:i0 + CHUNK]
        parts = {k: [] for k in ("bce", "bce_tol", "pw", "pw_tol", "abs", "sq", "head")}
        huge._reference(xc, yc, i0, parts)
        ref = R.sigmoid_cross_entropy_and_grad(xc.astype(np.float64), yc, reduction="sum")[0]
        assert parts["bce"][0] == pytest.approx(ref, rel=1e-12)


def test_sigmoid_cross_entropy_past_2_31(huge):
    total = timed("sigmoid_cross_entropy sum (default threads)",
                  fusedopt.sigmoid_cross_entropy, huge.x, huge.y, reduction="sum")
    tol = huge.ref["bce_tol"] + N * EPS64 * huge.ref["bce"]
    assert abs(total - huge.ref["bce"]) <= tol, (total, huge.ref["bce"], tol)
    # a kernel that stopped at 2**31 (or wrapped around) would be off by far more
    assert abs(huge.ref["bce"] - huge.ref["head"]) > 1000 * tol
    mean = timed("sigmoid_cross_entropy mean", fusedopt.sigmoid_cross_entropy,
                 huge.x, huge.y)
    assert mean == total / N
    one = timed("sigmoid_cross_entropy sum, n_threads=1", fusedopt.sigmoid_cross_entropy,
                huge.x, huge.y, reduction="sum", n_threads=1)
    assert one == total                     # fixed blocks: any thread count, same bits


def test_sigmoid_cross_entropy_pos_weight_columns_past_2_31(huge):
    """pos_weight along the last axis: the column of element i is i % 64, past 2**31 too."""
    x2 = huge.x.reshape(N // COLS, COLS)
    y2 = huge.y.reshape(N // COLS, COLS)
    total = timed("sigmoid_cross_entropy sum, pos_weight (64,)",
                  fusedopt.sigmoid_cross_entropy, x2, y2,
                  pos_weight=huge.pw.astype(np.float32), reduction="sum")
    # pos_weight rounded to float32: within 8 eps32 of the float64 values, as lw
    tol = huge.ref["pw_tol"] + N * EPS64 * huge.ref["pw"]
    assert abs(total - huge.ref["pw"]) <= tol, (total, huge.ref["pw"], tol)


def test_l1_l2_past_2_31(huge):
    target = np.zeros(N, np.float32)       # never written: costs no memory
    l1 = timed("l1_loss sum", fusedopt.l1_loss, huge.x, target, reduction="sum")
    # |x - 0| is exact; the sums in double differ by at most N eps64 relative
    assert abs(l1 - huge.ref["abs"]) <= (2 * EPS32 + N * EPS64) * huge.ref["abs"]
    l2 = timed("l2_loss sum", fusedopt.l2_loss, huge.x, target, reduction="sum")
    assert abs(l2 - huge.ref["sq"]) <= (4 * EPS32 + N * EPS64) * huge.ref["sq"]


def test_non_finite_check_past_2_31(huge):
    x = huge.x
    assert timed("all_finite", fusedopt.all_finite, [x]) is True
    for where in (PAST, N - 1):
        saved = x[where]
        x[where] = np.nan
        try:
            assert timed(f"all_finite, NaN at {where:,}", fusedopt.all_finite, [x]) is False
            assert fusedopt.unscale_and_check([x]) is True
        finally:
            x[where] = saved
    # in place, scale 1: every element rewritten with its own value
    assert timed("unscale_and_check(inv_scale=1)", fusedopt.unscale_and_check, [x], 1.0) \
        is False


def _checksum(a):
    """Per-chunk sums of the bit patterns: any changed element changes them."""
    return [int(a[i0:i1].view(np.uint32).sum(dtype=np.uint64)) for i0, i1 in _chunks()]


def test_sgd_step_past_2_31(huge):
    """p -= lr*g with g = 0 except at two elements (one past 2**31, the last): exactly those
    two move (p + (-lr)*0 == p bit for bit), everywhere else p is unchanged."""
    p = huge.x
    g = np.zeros(N, np.float32)
    g[PAST], g[N - 1] = 2.0, -4.0
    before = _checksum(p)
    saved = p[PAST], p[N - 1]
    timed("sgd_step", fusedopt.sgd_step, p, g, lr=0.5)
    try:
        assert p[PAST] == np.float32(saved[0] + np.float32(-0.5) * np.float32(2.0))
        assert p[N - 1] == np.float32(saved[1] + np.float32(-0.5) * np.float32(-4.0))
        after = _checksum(p)
        changed = [k for k, (a, b) in enumerate(zip(before, after)) if a != b]
        assert changed == sorted({PAST // CHUNK, (N - 1) // CHUNK})
        p[PAST], p[N - 1] = saved
        assert _checksum(p) == before
    finally:
        p[PAST], p[N - 1] = saved
