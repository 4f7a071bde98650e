"""Bad input: each raises TypeError/ValueError naming the argument, and no array changes."""
import numpy as np
import pytest

import fusedopt


def snapshot(arrays):
    return [a.copy() for a in arrays]


def unchanged(arrays, snap):
    for a, s in zip(arrays, snap):
        np.testing.assert_array_equal(a, s)


def adam_arrays(n=8, dtype=np.float32):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(n).astype(dtype) for _ in range(5)]


ADAM_BAD = [
    # (what to change, exception, message must contain)
    (lambda a: a.__setitem__(1, a[1].astype(np.float64)), TypeError, "grad"),
    (lambda a: a.__setitem__(0, a[0].astype(np.int32)), TypeError, "param"),
    (lambda a: a.__setitem__(0, a[0].astype(np.float16)), TypeError, "param"),
    (lambda a: a.__setitem__(2, a[2].astype(np.complex64)), TypeError, "exp_avg"),
    (lambda a: a.__setitem__(3, a[3][:4]), ValueError, "exp_avg_sq"),
    (lambda a: a.__setitem__(1, a[1].reshape(8, 1)), ValueError, "grad"),
    (lambda a: a.__setitem__(1, list(a[1])), TypeError, "grad"),
    (lambda a: a.__setitem__(1, None), TypeError, "grad"),
    (lambda a: a.__setitem__(2, np.zeros(16, np.float32)[::2]), ValueError, "exp_avg"),
    (lambda a: a.__setitem__(2, np.zeros(8, np.float32)[::-1]), ValueError, "exp_avg"),
    (lambda a: a.__setitem__(3, a[2]), ValueError, "share memory"),
    (lambda a: a.__setitem__(1, a[0]), ValueError, "share memory"),
    (lambda a: a[2].setflags(write=False), ValueError, "read-only"),
    (lambda a: a[0].setflags(write=False), ValueError, "read-only"),
]


@pytest.mark.parametrize("bad,exc,msg", ADAM_BAD)
def test_adam_bad_arrays(bad, exc, msg):
    arrays = adam_arrays()
    originals = list(arrays)
    snap = snapshot(originals)
    bad(arrays)
    with pytest.raises(exc, match=msg):
        fusedopt.adam_step(arrays[0], arrays[1], arrays[2], arrays[3], step=3, amsgrad=True,
                           max_exp_avg_sq=arrays[4])
    unchanged(originals, snap)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(lr=-1.0), ValueError, "Invalid learning rate"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=float("inf")), ValueError, "lr"),
    (dict(eps=-1e-8), ValueError, "epsilon"),
    (dict(betas=(1.0, 0.9)), ValueError, "beta parameter at index 0"),
    (dict(betas=(0.9, -0.1)), ValueError, "beta parameter at index 1"),
    (dict(betas=0.9), TypeError, "betas"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (dict(step=0), ValueError, "step"),
    (dict(step=1.5), TypeError, "step"),
    (dict(convention="pytorch"), ValueError, "convention"),
    (dict(n_threads=0), ValueError, "n_threads"),
    (dict(lr="0.1"), TypeError, "lr"),
])
def test_adam_bad_hyper_parameters(kw, exc, msg):
    arrays = adam_arrays()
    snap = snapshot(arrays)
    args = dict(step=1)
    args.update(kw)
    with pytest.raises(exc, match=msg):
        fusedopt.adam_step(arrays[0], arrays[1], arrays[2], arrays[3], **args)
    unchanged(arrays, snap)


def test_adam_amsgrad_needs_its_buffer():
    a = adam_arrays()
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        fusedopt.adam_step(a[0], a[1], a[2], a[3], step=1, amsgrad=True)


@pytest.mark.parametrize("bad,exc,msg", [
    (lambda a: a.__setitem__(1, a[1].astype(np.float64)), TypeError, "grad"),
    (lambda a: a.__setitem__(2, a[2][:3]), ValueError, "momentum_buffer"),
    (lambda a: a.__setitem__(2, a[0]), ValueError, "share memory"),
    (lambda a: a[2].setflags(write=False), ValueError, "read-only"),
    (lambda a: a.__setitem__(0, np.ones(8, np.float32)[::1].reshape(2, 4).T), ValueError, "param"),
])
def test_sgd_bad_arrays(bad, exc, msg):
    arrays = adam_arrays()[:3]
    originals = list(arrays)
    snap = snapshot(originals)
    bad(arrays)
    with pytest.raises(exc, match=msg):
        fusedopt.sgd_step(arrays[0], arrays[1], arrays[2], lr=0.1, momentum=0.9, step=2)
    unchanged(originals, snap)


@pytest.mark.parametrize("fn", [fusedopt.sigmoid_cross_entropy_and_grad,
                                fusedopt.l1_loss_and_grad, fusedopt.l2_loss_and_grad])
def test_loss_bad_inputs(fn):
    x = np.linspace(-2, 2, 12).astype(np.float32)
    y = (x > 0).astype(np.float32)
    first = "logits" if fn is fusedopt.sigmoid_cross_entropy_and_grad else "pred"
    second = "labels" if fn is fusedopt.sigmoid_cross_entropy_and_grad else "target"
    snap = snapshot([x, y])
    cases = [
        (dict(), (x.astype(np.int64), y), TypeError, first),
        (dict(), (x.astype(np.float16), y), TypeError, first),
        (dict(), (list(x), y), TypeError, first),
        (dict(), (x, y[:6]), ValueError, second),
        (dict(), (x.reshape(12, 1), y), ValueError, second),
        (dict(), (x[::2], y[::2]), ValueError, first),
        (dict(reduction="avg"), (x, y), ValueError, "reduction"),
        (dict(out=np.zeros(12, np.float64)), (x, y), TypeError, "out"),
        (dict(out=np.zeros(6, np.float32)), (x, y), ValueError, "out"),
        (dict(out=np.zeros(24, np.float32)[::2]), (x, y), ValueError, "out"),
        (dict(out=x), (x, y), ValueError, "share memory"),
        (dict(out=y), (x, y), ValueError, "share memory"),
        (dict(weight=np.ones(5, np.float32)), (x, y), ValueError, "weight"),
    ]
    ro = np.zeros(12, np.float32)
    ro.setflags(write=False)
    cases.append((dict(out=ro), (x, y), ValueError, "read-only"))
    if fn is fusedopt.sigmoid_cross_entropy_and_grad:
        cases += [
            (dict(label_smoothing=1.5), (x, y), ValueError, "label_smoothing"),
            (dict(pos_weight=np.ones((12, 12), np.float32)), (x, y), ValueError, "pos_weight"),
            (dict(), (x, y.astype(np.complex64)), TypeError, "labels"),
            (dict(), (x, y.astype(object)), TypeError, "labels"),
        ]
    for kw, args, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn(*args, **kw)
        unchanged([x, y], snap)
        if "out" in kw and isinstance(kw["out"], np.ndarray) and kw["out"] is not x \
                and kw["out"] is not y:
            assert not np.any(kw["out"]), "out was written although the call failed"


def test_empty_and_zero_d_arrays():
    e = np.zeros(0, np.float32)
    assert np.isnan(fusedopt.sigmoid_cross_entropy(e, e))
    assert fusedopt.sigmoid_cross_entropy(e, e, reduction="sum") == 0.0
    loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(e, e, reduction="none")
    assert loss.shape == (0,) and grad.shape == (0,)
    fusedopt.adam_step(e, e.copy(), e.copy(), e.copy(), step=1)
    z = np.array(2.0)
    m, v = np.zeros(()), np.zeros(())
    fusedopt.adam_step(z, np.array(1.0), m, v, step=1, lr=0.5)
    assert z.shape == () and z == pytest.approx(1.5)
    loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(np.array(0.0), np.array(1.0))
    assert grad.shape == () and grad == -0.5
