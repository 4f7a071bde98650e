"""The NumPy classes' held arrays (``_core.StepPlan``): after a step with every gradient,
the next steps reuse the parameters and states acquired then and acquire only the
gradients.  Whatever the user changes in between (a state array or dict replaced, a step
count, a parameter made read-only, hyper-parameters switching states on), a step gives
exactly what the general path gives, and a bad gradient is the same error with nothing
modified."""
import gc
import inspect
import weakref

import numpy as np
import pytest

import fusedopt

SHAPES = [(7,), (3, 5), (0,), (1000,), (33,)]


def _problem(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(6)]
    return params, grads


def _general(opt):
    """Forces the general path for the next step (no held arrays)."""
    opt._plan = None


@pytest.mark.parametrize("cls,kw", [(fusedopt.Adam, dict(lr=0.01, amsgrad=True)),
                                    (fusedopt.AdamW, dict(lr=0.01)),
                                    (fusedopt.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
                                    (fusedopt.SGD, dict(lr=0.1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_held_steps_equal_general_steps(cls, kw, dtype):
    params, grads = _problem(dtype)
    a = [p.copy() for p in params]
    b = [p.copy() for p in params]
    fast, slow = cls(a, **kw), cls(b, **kw)
    for g in grads:
        _general(slow)
        assert fast.step(g) and slow.step(g)
    assert fast._plan is not None             # (the held path was taken)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for i in fast.state:
        assert set(fast.state[i]) == set(slow.state[i])
        for k, v in fast.state[i].items():
            np.testing.assert_array_equal(v, slow.state[i][k])


def _twin(kw=None):
    """Two Adam optimizers on equal parameters, both past their first step."""
    kw = kw or dict(lr=0.01)
    params, grads = _problem()
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    fast, slow = fusedopt.Adam(a, **kw), fusedopt.Adam(b, **kw)
    for g in grads[:2]:
        fast.step(g)
        slow.step(g)
    return fast, slow, a, b, grads


def _same(fast, slow, a, b, grads):
    for g in grads[2:]:
        _general(slow)
        fast.step(g)
        slow.step(g)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for i in slow.state:
        for k, v in slow.state[i].items():
            np.testing.assert_array_equal(fast.state[i][k], v)


def test_replaced_state_array_is_used():
    fast, slow, a, b, grads = _twin()
    for opt in (fast, slow):
        opt.state[3]["exp_avg"] = np.full(1000, 0.5, np.float32)
        opt.state[0]["exp_avg_sq"] = np.ones(7, np.float32)
    held = fast.state[3]["exp_avg"]
    _same(fast, slow, a, b, grads)
    assert fast.state[3]["exp_avg"] is held and held[0] != 0.5   # updated in place


def test_replaced_state_dict_and_state():
    fast, slow, a, b, grads = _twin()
    for opt in (fast, slow):
        opt.state[1] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                        for k, v in opt.state[1].items()}
    _same(fast, slow, a, b, grads)
    for opt in (fast, slow):
        opt.state = {i: dict(s) for i, s in opt.state.items()}
    _same(fast, slow, a, b, grads)


def test_one_step_count_changed():
    fast, slow, a, b, grads = _twin()
    for opt in (fast, slow):
        opt.state[4]["step"] = 10
    _same(fast, slow, a, b, grads)
    assert fast.state[4]["step"] == 10 + len(grads) - 2
    assert fast.state[0]["step"] == len(grads)


def test_amsgrad_switched_on_between_steps():
    fast, slow, a, b, grads = _twin()
    for opt in (fast, slow):
        opt.param_groups[0]["amsgrad"] = True
    _same(fast, slow, a, b, grads)
    assert "max_exp_avg_sq" in fast.state[0]


def test_parameter_made_read_only_is_refused():
    fast, _, a, _, grads = _twin()
    a[2].flags.writeable = False          # an empty one: still refused, nothing written
    a[3].flags.writeable = False
    before = [p.copy() for p in a]
    states = {i: {k: np.copy(v) for k, v in s.items()} for i, s in fast.state.items()}
    with pytest.raises(ValueError, match=r"params\[2\] is read-only"):
        fast.step(grads[2])
    for x, y in zip(a, before):
        np.testing.assert_array_equal(x, y)
    for i, s in states.items():
        for k, v in s.items():
            np.testing.assert_array_equal(fast.state[i][k], v)


@pytest.mark.parametrize("bad,exc,pattern", [
    (lambda g, opt: g[:3] + [g[3].astype(np.float64)] + g[4:], TypeError,
     r"grad\[3\] must have the dtype of params\[3\]"),
    (lambda g, opt: g[:1] + [g[1].reshape(5, 3)] + g[2:], ValueError,
     r"grad\[1\] must have the shape of params\[1\]"),
    (lambda g, opt: g[:4] + [opt.state[4]["exp_avg"]], ValueError, r"share memory"),
    (lambda g, opt: g[:4] + [opt.params[4]], ValueError, r"share memory"),
    (lambda g, opt: g[:4] + [g[4][::2]], ValueError, r"grad\[4\] must be C-contiguous"),
])
def test_bad_gradient_on_the_held_path(bad, exc, pattern):
    fast, _, a, _, grads = _twin()
    assert fast._plan is not None
    g = bad(grads[2], fast)
    before = [p.copy() for p in a]
    states = {i: {k: np.copy(v) for k, v in s.items()} for i, s in fast.state.items()}
    with pytest.raises(exc, match=pattern):
        fast.step(g)
    for x, y in zip(a, before):
        np.testing.assert_array_equal(x, y)
    for i, s in states.items():
        for k, v in s.items():
            np.testing.assert_array_equal(fast.state[i][k], v)
    fast.step(grads[2])                    # and the optimizer goes on


def test_a_none_gradient_takes_the_general_path():
    fast, slow, a, b, grads = _twin()
    g = list(grads[2])
    g[1] = None
    for opt in (fast, slow):
        opt.step(g)
    assert fast.state[1]["step"] == 2 and fast.state[0]["step"] == 3
    _same(fast, slow, a, b, grads)


def test_gradients_are_not_held_after_a_step():
    fast, _, _, _, grads = _twin()
    g = [x.copy() for x in grads[2]]
    refs = [weakref.ref(x) for x in g]
    fast.step(g)
    fast.step(g)
    del g
    gc.collect()
    assert all(r() is None for r in refs)


def test_functional_signatures_come_from_the_descriptions():
    sig = inspect.signature(fusedopt.adam_step)
    assert sig.parameters["lr"].default == fusedopt.Adam.spec.defaults["lr"]
    assert sig.parameters["betas"].default == (0.9, 0.999)
    assert sig.parameters["step"].default is inspect.Parameter.empty
    assert sig.parameters["exp_avg"].default is inspect.Parameter.empty
    sig = inspect.signature(fusedopt.sgd_step)
    assert sig.parameters["lr"].default is inspect.Parameter.empty
    assert sig.parameters["momentum_buffer"].default is None
    with pytest.raises(TypeError, match="missing required keyword argument 'step'"):
        fusedopt.adam_step(np.ones(2), np.ones(2), np.zeros(2), np.zeros(2))
    with pytest.raises(TypeError, match="missing required keyword argument 'lr'"):
        fusedopt.sgd_step(np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="exp_avg_sq is required"):
        fusedopt.adam_step(np.ones(2), np.ones(2), np.zeros(2), step=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'lrr'"):
        fusedopt.adam_step(np.ones(2), np.ones(2), np.zeros(2), np.zeros(2), step=1, lrr=1)


@pytest.mark.parametrize("n", [100, 4096, 4097, 20000])
def test_small_and_large_steps_agree_with_the_reference(n):
    """Steps at and around the size below which the GIL is kept give the reference's
    bits (float64: one rounding order)."""
    from fusedopt import reference as R
    rng = np.random.default_rng(n)
    p = rng.standard_normal(n)
    g = rng.standard_normal(n)
    m, v = np.zeros(n), np.zeros(n)
    q, mm, vv = p.copy(), m.copy(), v.copy()
    fusedopt.adam_step(p, g, m, v, step=1, lr=0.1)
    R.adam_step(q, g, mm, vv, step=1, lr=0.1)
    np.testing.assert_allclose(p, q, rtol=4e-16, atol=0)


def _unchanged(opt, params):
    """A snapshot check: nothing of opt or params changed."""
    before = [p.copy() for p in params]
    states = {i: {k: np.copy(v) for k, v in s.items()} for i, s in opt.state.items()}

    def check():
        for x, y in zip(params, before):
            np.testing.assert_array_equal(x, y)
        for i, s in states.items():
            for k, v in s.items():
                np.testing.assert_array_equal(np.asarray(opt.state[i][k]), v)
    return check


@pytest.mark.parametrize("change,exc,pattern", [
    (lambda opt, a: opt.state[3]["exp_avg_sq"].setflags(write=False), ValueError,
     r"exp_avg_sq\[3\] is read-only"),
    (lambda opt, a: setattr(opt.state[0]["exp_avg"], "shape", (7, 1)), ValueError,
     r"exp_avg\[0\] must have the shape of params\[0\]"),
    (lambda opt, a: setattr(a[0], "dtype", np.int32), TypeError,
     r"params\[0\] must be float32 or float64"),
    (lambda opt, a: setattr(a[0], "dtype", np.dtype(">f4")), TypeError,
     r"params\[0\] must be float32 or float64"),
    (lambda opt, a: setattr(a[1], "shape", (5, 3)), ValueError,
     r"must have the shape of params\[1\]"),
])
def test_held_array_changed_in_place_is_refused(change, exc, pattern):
    """What the general path refuses, the held path refuses: an array resized, made
    read-only, reshaped or given another dtype in place between steps."""
    fast, _, a, _, grads = _twin()
    change(fast, a)
    g = list(grads[2])
    if a[1].shape == (5, 3):
        g[1] = g[1].reshape(5, 3)      # (the gradient follows its parameter)
    check = _unchanged(fast, [x for x in a if x.dtype.kind == "f"])
    with pytest.raises(exc, match=pattern):
        fast.step(g)
    check()


def test_held_state_resized_in_place_is_refused():
    """A state array of the user's own, held by the next steps and then resized in place
    (the packed arrays a step allocates cannot be: they do not own their data)."""
    fast, _, a, _, grads = _twin()
    with pytest.raises(ValueError, match="does not own its data"):
        fast.state[3]["exp_avg"].resize(8, refcheck=False)
    fast.state[3]["exp_avg"] = fast.state[3]["exp_avg"].copy()
    fast.step(grads[2])                 # the next steps hold the replaced array
    fast.state[3]["exp_avg"].resize(8, refcheck=False)
    check = _unchanged(fast, a)
    with pytest.raises(ValueError, match=r"exp_avg\[3\] must have the shape of params\[3\]"):
        fast.step(grads[3])
    check()


def test_replaced_param_group_is_used():
    fast, slow, a, b, grads = _twin()
    for opt in (fast, slow):
        opt.param_groups[0] = dict(opt.param_groups[0], lr=0.5)
    _same(fast, slow, a, b, grads)
    assert fast.param_groups[0]["lr"] == 0.5


def test_gradients_are_not_held_after_a_refused_or_skipped_step():
    fast, _, _, _, grads = _twin()
    fast.check_finite = True
    g = [x.copy() for x in grads[2]]
    g[4][0] = np.inf                               # skipped: not all finite
    refs = [weakref.ref(x) for x in g]
    assert fast.step(g) is False
    del g
    gc.collect()
    assert all(r() is None for r in refs)
    g = [x.copy() for x in grads[2]]
    g[4] = g[4].astype(np.float64)                 # refused
    refs = [weakref.ref(x) for x in g]
    with pytest.raises(TypeError):
        fast.step(g)
    del g
    gc.collect()
    assert all(r() is None for r in refs)
