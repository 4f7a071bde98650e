"""A few calls of every kernel at small sizes, for scripts/valgrind_smoke.sh (memcheck).

Sizes around the vector widths and one just over a 16 Ki block; misaligned views; both
dtypes; every CPU path valgrind can run (it emulates up to AVX2, so the AVX-512 path is
not reached under valgrind); one and two threads with the parallel threshold at 0 so that
the OpenMP split runs too.  Results are checked against fusedopt.reference (optimizers bit
for bit, losses loosely): the point is that memcheck sees every code path touch memory.
"""
import sys

import numpy as np

import fusedopt
from fusedopt import _core, _runtime, reference as R

SIZES = [0, 1, 7, 17, 33, 16384 + 3]


def check_losses(dtype, n, nt, rng):
    base = np.empty(n + 1, dtype)
    x = base[1:]                                     # misaligned by one element
    x[...] = rng.standard_normal(n) * 4
    y = (rng.random(n) > 0.5).astype(dtype)
    w = rng.uniform(0, 2, n).astype(dtype)
    for kw in ({}, dict(weight=w, pos_weight=2.0, label_smoothing=0.1)):
        for red in ("mean", "sum", "none"):
            loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(x, y, reduction=red,
                                                                 n_threads=nt, **kw)
            rloss, rgrad = R.sigmoid_cross_entropy_and_grad(x, y, reduction=red, **kw)
            np.testing.assert_allclose(grad, rgrad, rtol=1e-4, atol=1e-6)
            fusedopt.sigmoid_cross_entropy(x, y.astype(np.uint8), reduction=red, n_threads=nt)
    x2 = x[: n - n % 3].reshape(-1, 3) if n >= 3 else x.reshape(n, 1)
    pw = rng.uniform(0.5, 2, x2.shape[1]).astype(dtype)
    fusedopt.sigmoid_cross_entropy_and_grad(x2, (x2 > 0), pos_weight=pw, weight=pw,
                                            n_threads=nt)
    t = rng.standard_normal(n).astype(dtype)
    out = np.empty(n, dtype)
    for fn, ref in ((fusedopt.l1_loss_and_grad, R.l1_loss_and_grad),
                    (fusedopt.l2_loss_and_grad, R.l2_loss_and_grad)):
        for red in ("mean", "sum", "none"):
            _, grad = fn(x, t, weight=w, reduction=red, out=out, n_threads=nt)
            np.testing.assert_allclose(grad, ref(x, t, weight=w, reduction=red)[1],
                                       rtol=1e-5, atol=1e-30)
    fusedopt.l1_loss(x, t, n_threads=nt)
    fusedopt.l2_loss(x, t, weight=0.5, n_threads=nt)


ADAM = [("torch", dict(amsgrad=True, weight_decay=0.1)), ("torch", dict(
    weight_decay=0.1, decoupled_weight_decay=True, maximize=True)), ("tf1", {}),
    ("keras", dict(weight_decay=0.01, decoupled_weight_decay=True)),
    ("optax", dict(amsgrad=True, eps_root=1e-8)), ("sklearn", {})]
SGD = [("torch", dict(momentum=0.9, nesterov=True, weight_decay=0.1)), ("torch", {}),
       ("tf1", dict(momentum=0.9)), ("keras", dict(momentum=0.9, weight_decay=0.01)),
       ("optax", dict(momentum=0.9, nesterov=True)), ("sklearn", dict(momentum=0.9))]


def check_optimizers(dtype, n, nt, rng):
    p0 = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    for conv, kw in ADAM:
        a = [p0.copy()] + [np.zeros(n, dtype) for _ in range(3)]
        b = [x.copy() for x in a]
        for t in (1, 2):
            fusedopt.adam_step(a[0], g, a[1], a[2], step=t, convention=conv, n_threads=nt,
                               max_exp_avg_sq=a[3] if kw.get("amsgrad") else None, **kw)
            R.adam_step(b[0], g, b[1], b[2], step=t, convention=conv,
                        max_exp_avg_sq=b[3] if kw.get("amsgrad") else None, **kw)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    for conv, kw in SGD:
        a, b = [p0.copy(), np.zeros(n, dtype)], [p0.copy(), np.zeros(n, dtype)]
        for t in (1, 2):
            fusedopt.sgd_step(a[0], g, a[1], lr=0.1, step=t, convention=conv, n_threads=nt, **kw)
            R.sgd_step(b[0], g, b[1], lr=0.1, step=t, convention=conv, **kw)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    grads = [g.copy(), np.ones(3, dtype), np.zeros(0, dtype)]
    assert fusedopt.unscale_and_check(grads, 0.5, n_threads=nt) is False
    assert fusedopt.all_finite(grads, n_threads=nt)
    if n:
        grads[0][-1] = np.nan
        assert fusedopt.unscale_and_check(grads, None, n_threads=nt) is True


def check_classes(nt, rng):
    ps = [rng.standard_normal(s).astype(dt) for s, dt in
          (((3, 4), np.float32), ((17,), np.float64), ((16385,), np.float32), ((), np.float64))]
    f32 = [p for p in ps if p.dtype == np.float32]
    for params, make, scaled in (
            (ps, lambda: fusedopt.Adam(ps, lr=0.01, amsgrad=True), False),
            (ps, lambda: fusedopt.AdamW([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.1}]),
             False),
            (ps, lambda: fusedopt.SGD(ps, lr=0.01, momentum=0.9, nesterov=True), False),
            # (inv_scale / check_finite: one dtype, see tests/test_bad_input.py)
            (f32, lambda: fusedopt.Adam(f32, check_finite=True), True)):
        opt = make()
        for k in range(3):
            grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
            if k == 1:
                grads[1] = None
            opt.step(grads, inv_scale=0.5 if scaled and k == 2 else None, n_threads=nt)
        opt.load_state_dict(opt.state_dict())
    try:
        fusedopt.Adam(ps).step([np.ones(3)] * len(ps))
    except (TypeError, ValueError):
        pass
    else:
        raise AssertionError("a bad step was accepted")


def main():
    rng = np.random.default_rng(0)
    before = _core.runtime_info()["parallel_threshold"]
    _core.set_parallel_threshold(0)
    detected = fusedopt.cpu_info()["detected"]
    paths = ["baseline", "avx2", "avx512"]
    paths = paths[: paths.index(detected) + 1]
    for path in paths:
        _runtime._set_cpu_path(path)
        for nt in (1, 2):
            for dtype in (np.float32, np.float64):
                for n in SIZES:
                    check_losses(dtype, n, nt, rng)
                    check_optimizers(dtype, n, nt, rng)
            check_classes(nt, rng)
        print(f"valgrind smoke: path {path} done", flush=True)
    _runtime._set_cpu_path(None)
    _core.set_parallel_threshold(before)
    print(f"valgrind smoke: OK (paths {paths}, detected {detected})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
