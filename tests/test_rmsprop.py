"""RMSprop: the kernel against fusedopt.reference bit for bit (every CPU path, thread
count, dtype, size, convention, plain, with momentum, centered, with NaN and zeros), in
every form of the package (the functional step, the NumPy class, fusedopt.torch,
checkpoints), and its errors.  The frameworks' own RMSprop (torch.optim, TF1, Keras,
optax) are in test_frameworks.py and test_torch_adapter.py."""
import copy

import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R

from conftest import DTYPES, SIZES, THREADS

# convention -> the options it has (beyond lr, alpha and eps)
_VARIANTS = [{}, dict(momentum=0.9), dict(centered=True), dict(centered=True, momentum=0.5)]
CONVENTIONS = {
    "torch": _VARIANTS + [dict(weight_decay=0.1, maximize=True),
                          dict(weight_decay=0.1, centered=True, momentum=0.9, alpha=0.3)],
    "tf1": _VARIANTS,
    "keras": _VARIANTS + [dict(weight_decay=0.1, momentum=0.9)],
    "optax": _VARIANTS,
}
_CASES = [(c, kw) for c, kws in CONVENTIONS.items() for kw in kws]


def _inputs(n, dtype, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    if n >= 4:   # zeros (0/eps, or 0/0 with eps=0), NaN, tiny
        for g in grads:
            g[:4] = [0.0, -0.0, np.nan, 1e-30]
    return p, grads


def _states(p, kw, init):
    v = np.full_like(p, init)
    b = np.zeros_like(p) if kw.get("momentum") else None
    ga = np.zeros_like(p) if kw.get("centered") else None
    return v, b, ga


@pytest.mark.parametrize("convention,kw", _CASES,
                         ids=[f"{c}-" + ("-".join(f"{k}{v}" for k, v in kw.items()) or "plain")
                              for c, kw in _CASES])
@pytest.mark.parametrize("init", [0.0, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
def test_matches_reference_bit_for_bit(cpu_path, convention, kw, init, dtype, n, threads):
    p, grads = _inputs(n, dtype, n)
    ours = _states(p, kw, init)
    theirs = [None if a is None else a.copy() for a in ours]
    q = p.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        for g in grads:
            fusedopt.rmsprop_step(p, g, *ours, lr=0.05, convention=convention,
                                  n_threads=threads, **kw)
            R.rmsprop_step(q, g, *theirs, lr=0.05, convention=convention, **kw)
    np.testing.assert_array_equal(p, q)
    for a, b in zip(ours, theirs):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    if n >= 4:
        assert np.isnan(ours[0][2]) and np.isnan(p[2])
        if not kw.get("weight_decay") and init == 0:   # (decay adds wd*p to a zero g)
            assert (ours[0][:2] == 0).all()


def test_eps_placement_and_lr_against_the_buffer():
    """torch: eps outside the square root, lr applied after the momentum buffer; TF1,
    Keras and optax: eps inside, lr inside the buffer.  With lr constant the two buffers
    differ by the factor lr; with a changed lr the torch buffer's history is rescaled."""
    g = np.array([2.0])
    p, v, b = np.zeros(1), np.zeros(1), np.zeros(1)
    fusedopt.rmsprop_step(p, g, v, b, lr=0.1, alpha=0.75, eps=0.5, momentum=0.5)
    assert v[0] == 1.0 and b[0] == 2.0 / (1.0 + 0.5) and p[0] == -0.1 * b[0]
    p, v, b = np.zeros(1), np.zeros(1), np.zeros(1)
    fusedopt.rmsprop_step(p, g, v, b, lr=0.1, alpha=0.75, eps=3.0, momentum=0.5,
                          convention="keras")
    assert v[0] == 1.0 and b[0] == (np.float32(0.1) * 2.0) / 2.0 and p[0] == -b[0]
    for conv in ("torch", "tf1", "keras", "optax"):   # a second step with another lr
        p, v, b = np.zeros(1), np.zeros(1), np.zeros(1)
        fusedopt.rmsprop_step(p, g, v, b, lr=0.5, alpha=0.75, eps=0.0, momentum=0.5,
                              convention=conv)
        fusedopt.rmsprop_step(p, g, v, b, lr=0.25, alpha=0.75, eps=0.0, momentum=0.5,
                              convention=conv)
        # g = 2: sqrt(v) is 1, then d = sqrt(0.75*1 + 0.25*4)
        d = np.sqrt(1.75)
        if conv == "torch":     # b1 = g/1, p1 = -lr1*b1; b2 = mu*b1 + g/d, p2 = p1 - lr2*b2
            expect = -0.5 * 2.0 - 0.25 * (0.5 * 2.0 + 2.0 / d)
        else:                   # b1 = lr1*g/1, p1 = -b1; b2 = mu*b1 + lr2*g/d, p2 = p1 - b2
            expect = -0.5 * 2.0 - (0.5 * (0.5 * 2.0) + 0.25 * 2.0 / d)
        assert p[0] == pytest.approx(expect, rel=1e-6), conv


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_equals_functional_over_many_tensors(dtype):
    shapes = [(3, 4), (0,), (17,), (1000,)]
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = [p.copy() for p in params]
    kw = dict(lr=0.01, alpha=0.9, momentum=0.8, centered=True, weight_decay=0.02)
    states = [_states(p, kw, 0.5) for p in params]
    opt = fusedopt.RMSprop(params, initial_square_avg=0.5, **kw)
    for t in range(1, 6):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        assert opt.step(grads)
        for p, g, st in zip(ref, grads, states):
            fusedopt.rmsprop_step(p, g, *st, **kw)
    for k, (p, r) in enumerate(zip(params, ref)):
        np.testing.assert_array_equal(p, r)
        assert set(opt.state[k]) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
        for name, a in zip(("square_avg", "momentum_buffer", "grad_avg"), states[k]):
            np.testing.assert_array_equal(opt.state[k][name], a)
        assert opt.state[k]["step"] == 5


def test_states_follow_the_group_and_start_where_they_should():
    a, b = np.zeros(3), np.zeros(3)
    opt = fusedopt.RMSprop([{"params": [a]}, {"params": [b], "initial_square_avg": 2.0}],
                           lr=0.1, alpha=0.5, initial_square_avg=1.0)
    opt.step([np.ones(3), np.ones(3)])
    assert set(opt.state[0]) == {"step", "square_avg"}
    assert (opt.state[0]["square_avg"] == 1.0).all()          # 0.5*1 + 0.5*1
    assert (opt.state[1]["square_avg"] == 1.5).all()          # 0.5*2 + 0.5*1
    # momentum and centering switched on later: their states start at zero
    opt.param_groups[1].update(momentum=0.9, centered=True)
    before = b.copy()
    opt.step([np.ones(3), np.ones(3)])
    assert set(opt.state[1]) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
    assert (opt.state[1]["grad_avg"] == 0.5).all()             # lerp(0, 1, 0.5)
    d = np.sqrt(1.25 - 0.25) + 1e-8
    np.testing.assert_array_equal(opt.state[1]["momentum_buffer"], np.full(3, 1 / d))
    np.testing.assert_array_equal(b, before - 0.1 * (1 / d))


def test_state_dict_and_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(10).astype(np.float32) for _ in range(2)]
    opt = fusedopt.RMSprop(params, lr=0.01, alpha=0.9, eps=1e-10, momentum=0.9,
                           centered=True, initial_square_avg=1.0, convention="tf1")
    opt.step([np.ones(10, np.float32)] * 2)
    path = tmp_path / "rmsprop.ckpt"
    opt.save(path)
    resumed = fusedopt.load_optimizer(path)
    assert type(resumed).__name__ == "RMSprop"
    assert resumed.param_groups[0]["convention"] == "tf1"
    g = [rng.standard_normal(10).astype(np.float32) for _ in range(2)]
    opt.step(g)
    resumed.step(g)
    for a, b in zip(opt.params, resumed.params):
        np.testing.assert_array_equal(a, b)
    other = fusedopt.RMSprop([p.copy() for p in params], lr=0.5)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["momentum"] == 0.9
    for name in ("square_avg", "momentum_buffer", "grad_avg"):
        np.testing.assert_array_equal(other.state[1][name], opt.state[1][name])


@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(lr=-1.0), ValueError, r"Invalid learning rate: -1\.0"),
    (dict(alpha=1.0), ValueError, r"Invalid alpha value: 1\.0 \(expected \[0, 1\)\)"),
    (dict(alpha=-0.1), ValueError, r"Invalid alpha value: -0\.1"),
    (dict(alpha=float("nan")), ValueError, r"alpha must be finite"),
    (dict(eps=-1e-10), ValueError, r"Invalid epsilon value"),
    (dict(momentum=-0.5), ValueError, r"Invalid momentum value"),
    (dict(weight_decay=-0.1), ValueError, r"weight_decay"),
    (dict(centered="yes"), TypeError, r"centered must be a bool"),
    (dict(maximize=1), TypeError, r"maximize"),
    (dict(convention="sklearn"), ValueError, r"'sklearn' has no RMSprop"),
    (dict(convention="tf1", weight_decay=0.1), ValueError, r"no weight decay"),
    (dict(convention="optax", maximize=True), ValueError, r"maximize=True is a torch option"),
    (dict(convention="jax"), ValueError, r"convention must be one of"),
    (dict(betas=(0.9, 0.99)), TypeError, r"unexpected keyword argument 'betas'"),
])
def test_bad_hyper_parameters_change_nothing(kw, exc, pattern):
    p, g, v, b, ga = np.ones(5), np.ones(5), np.full(5, 0.5), np.zeros(5), np.zeros(5)
    with pytest.raises(exc, match=pattern):
        fusedopt.rmsprop_step(p, g, v, b, ga, **dict(dict(momentum=0.9, centered=True), **kw))
    assert (p == 1).all() and (v == 0.5).all() and (b == 0).all() and (ga == 0).all()
    with pytest.raises(exc, match=pattern):
        fusedopt.RMSprop([p], **kw)


@pytest.mark.parametrize("kw,pattern", [
    (dict(initial_square_avg=-0.1), r"Invalid initial_square_avg value"),
    (dict(initial_square_avg=float("inf")), r"initial_square_avg must be finite"),
])
def test_bad_initial_square_avg(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        fusedopt.RMSprop([np.ones(3)], **kw)
    opt = fusedopt.RMSprop([np.ones(3)])
    opt.param_groups[0].update(kw)
    p = opt.params[0].copy()
    with pytest.raises(ValueError, match=pattern):
        opt.step([np.ones(3)])
    np.testing.assert_array_equal(opt.params[0], p)
    assert not opt.state


@pytest.mark.parametrize("make,kw,exc,pattern", [
    (lambda p: (p, np.ones(4), np.zeros(5)), {}, ValueError,
     r"grad must have the shape of param"),
    (lambda p: (p, np.ones(5, np.float32), np.zeros(5)), {}, TypeError,
     r"grad must have the dtype"),
    (lambda p: (p, np.ones(5), p), {}, ValueError, r"share memory"),
    (lambda p: (p, np.ones(5), np.zeros(10)[::2]), {}, ValueError, r"C-contiguous"),
    (lambda p: (p, np.ones(5), np.zeros(5)), dict(momentum=0.9), ValueError,
     r"momentum > 0 needs momentum_buffer"),
    (lambda p: (p, np.ones(5), np.zeros(5), None, None), dict(centered=True), ValueError,
     r"centered=True needs grad_avg"),
    (lambda p: (p, np.ones(5), np.zeros(5), np.zeros(6)), dict(momentum=0.9), ValueError,
     r"momentum_buffer must have the shape of param"),
    (lambda p: (p, np.ones(5), np.zeros(5), None, [0.0] * 5), dict(centered=True), TypeError,
     r"grad_avg must be a numpy\.ndarray"),
    (lambda p: (lambda v: (p, np.ones(5), v, None, v))(np.zeros(5)), dict(centered=True),
     ValueError, r"share memory"),
])
def test_bad_arrays_change_nothing(make, kw, exc, pattern):
    p = np.ones(5)
    args = make(p)
    with pytest.raises(exc, match=pattern):
        fusedopt.rmsprop_step(*args, lr=0.1, **kw)
    assert (p == 1).all()
    with pytest.raises(TypeError, match="square_avg is required"):
        fusedopt.rmsprop_step(p, np.ones(5), lr=0.1)


# ----------------------------------------------------------------------------- torch

def test_torch_drop_in_takes_torchs_positional_arguments_and_state():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft

    def make(cls):
        w = torch.nn.Parameter(torch.ones(4, 3))
        #            lr    alpha eps   wd   mom  centered capturable foreach maximize
        return w, cls([w], 0.01, 0.9, 1e-6, 0.1, 0.5, True, False, None, True)
    (wo, ours), (wt, theirs) = make(ft.RMSprop), make(torch.optim.RMSprop)
    assert ours.param_groups[0]["maximize"] is True and not ours.state
    for _ in range(3):
        for w, opt in ((wo, ours), (wt, theirs)):
            w.grad = torch.linspace(-1, 1, 12).reshape(4, 3)
            opt.step()
    so, st = ours.state_dict(), theirs.state_dict()
    assert so["state"][0].keys() == st["state"][0].keys() == \
        {"step", "square_avg", "momentum_buffer", "grad_avg"}
    for k in st["state"][0]:
        torch.testing.assert_close(so["state"][0][k], st["state"][0][k])
    torch.testing.assert_close(wo.detach(), wt.detach())
    with pytest.raises(ValueError, match="capturable=True is not supported"):
        ft.RMSprop([wo], capturable=True)
    with pytest.raises(TypeError):
        ft.RMSprop([wo], fused=True)         # torch.optim.RMSprop has no such argument


@pytest.mark.parametrize("cfg", [dict(), dict(momentum=0.9, lr=1e-3),
                                 dict(centered=True, weight_decay=1e-3),
                                 dict(centered=True, momentum=0.5, maximize=False)])
def test_torch_drop_in_with_a_scheduler_matches_torch(cfg):
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    torch.manual_seed(0)
    X, y = torch.randn(64, 5), torch.randn(64, 1)
    models = [torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(),
                                  torch.nn.Linear(8, 1)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [cls(m.parameters(), **cfg) for cls, m in zip((ft.RMSprop, torch.optim.RMSprop),
                                                         models)]
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=20, gamma=0.5) for o in opts]
    for i in range(100):
        if i == 50:     # state dicts both ways, mid-training
            sd = copy.deepcopy(opts[0].state_dict())
            opts[0].load_state_dict(copy.deepcopy(opts[1].state_dict()))
            opts[1].load_state_dict(sd)
        for m, o, s in zip(models, opts, scheds):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(X), y).backward()
            o.step()
            s.step()
    assert opts[0].param_groups[0]["lr"] == opts[1].param_groups[0]["lr"]
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_torch_drop_in_groups_start_at_their_own_initial_square_avg():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    opt = ft.RMSprop([{"params": [a]}, {"params": [b], "initial_square_avg": 2.0}],
                     alpha=0.5, initial_square_avg=1.0)
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    opt.step()       # as the NumPy class: 0.5*1 + 0.5*1 and 0.5*2 + 0.5*1
    torch.testing.assert_close(opt.state[a]["square_avg"], torch.full((3,), 1.0))
    torch.testing.assert_close(opt.state[b]["square_avg"], torch.full((3,), 1.5))
