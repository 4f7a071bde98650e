"""Adagrad: the kernel against fusedopt.reference bit for bit (every CPU path, thread
count, dtype, size, convention, with NaN, zeros and an empty accumulator), in every form of
the package (the functional step, the NumPy class, fusedopt.torch with torch's eager state,
checkpoints), and its errors.  The frameworks' own Adagrad (torch.optim, TF1, Keras, optax)
are in test_frameworks.py and test_torch_adapter.py."""
import copy

import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R

from conftest import DTYPES, SIZES, THREADS

# convention -> the options it has (beyond lr and eps)
CONVENTIONS = {
    "torch": [{}, dict(lr_decay=0.05), dict(weight_decay=0.1, maximize=True)],
    "tf1": [dict(eps=0.0)],
    "keras": [dict(eps=1e-7), dict(eps=1e-7, weight_decay=0.1)],
    "optax": [dict(eps=1e-7), dict(eps=0.0)],
}
_CASES = [(c, kw) for c, kws in CONVENTIONS.items() for kw in kws]


def _inputs(n, dtype, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    if n >= 4:   # a zero gradient on an empty accumulator (optax: r = 0), NaN, tiny
        for g in grads:
            g[:4] = [0.0, -0.0, np.nan, 1e-30]
    return p, grads


@pytest.mark.parametrize("convention,kw", _CASES,
                         ids=[f"{c}-" + ("-".join(f"{k}{v}" for k, v in kw.items()) or "plain")
                              for c, kw in _CASES])
@pytest.mark.parametrize("iav", [0.0, 0.1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
def test_matches_reference_bit_for_bit(cpu_path, convention, kw, iav, dtype, n, threads):
    p, grads = _inputs(n, dtype, n)
    s = np.full_like(p, iav)
    q, ss = p.copy(), s.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        for t, g in enumerate(grads, start=1):
            fusedopt.adagrad_step(p, g, s, step=t, lr=0.05, convention=convention,
                                  n_threads=threads, **kw)
            R.adagrad_step(q, g, ss, step=t, lr=0.05, convention=convention, **kw)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(s, ss)
    if n >= 4:
        assert np.isnan(s[2])
        if not kw.get("weight_decay"):       # (decay adds wd*p to a zero gradient)
            assert (s[:2] == iav).all()


def test_tf1_is_torch_with_a_float32_lr():
    """torch.optim.Adagrad and TF1's ApplyAdagrad are one formula ((lr*g)/(sqrt(s)+eps));
    TF1's lr is a float32 tensor, so in float64 they differ by that rounding only."""
    p, grads = _inputs(1000, np.float64, 1)
    a, b, c = p.copy(), p.copy(), p.copy()
    sa, sb, sc = (np.full_like(p, 0.1) for _ in range(3))
    for t, g in enumerate(grads, start=1):
        fusedopt.adagrad_step(a, g, sa, step=t, lr=0.1, eps=0.0, convention="tf1")
        fusedopt.adagrad_step(b, g, sb, step=t, lr=float(np.float32(0.1)), eps=0.0)
        fusedopt.adagrad_step(c, g, sc, step=t, lr=0.1, eps=0.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_lr_decay_follows_torch_step():
    """clr = lr / (1 + (step - 1)*lr_decay): step 1 uses lr itself."""
    g = np.ones(4)
    p1, s1 = np.zeros(4), np.zeros(4)
    fusedopt.adagrad_step(p1, g, s1, step=1, lr=0.1, lr_decay=0.5, eps=0.0)
    assert (p1 == -0.1).all()
    p3, s3 = np.zeros(4), np.ones(4) * 2
    fusedopt.adagrad_step(p3, g, s3, step=3, lr=0.1, lr_decay=0.5, eps=0.0)
    assert (p3 == -(0.1 / 2.0) / np.sqrt(3.0)).all()
    with pytest.raises(ValueError, match="lr_decay needs step"):
        fusedopt.adagrad_step(p1, g, s1, lr=0.1, lr_decay=0.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_equals_functional_over_many_tensors(dtype):
    shapes = [(3, 4), (0,), (17,), (1000,)]
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = [p.copy() for p in params]
    sums = [np.full_like(p, 0.25) for p in params]
    opt = fusedopt.Adagrad(params, lr=0.05, lr_decay=0.01, weight_decay=0.02,
                           initial_accumulator_value=0.25)
    for t in range(1, 6):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        assert opt.step(grads)
        for p, g, s in zip(ref, grads, sums):
            fusedopt.adagrad_step(p, g, s, step=t, lr=0.05, lr_decay=0.01, weight_decay=0.02)
    for k, (p, r) in enumerate(zip(params, ref)):
        np.testing.assert_array_equal(p, r)
        np.testing.assert_array_equal(opt.state[k]["sum"], sums[k])
        assert opt.state[k]["step"] == 5


def test_each_group_starts_its_accumulator_at_its_own_value():
    a, b = np.zeros(3), np.zeros(3)
    opt = fusedopt.Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 3.0}],
                           lr=0.1, initial_accumulator_value=1.0)
    opt.step([np.ones(3), np.ones(3)])
    assert (opt.state[0]["sum"] == 2.0).all() and (opt.state[1]["sum"] == 4.0).all()


def test_state_dict_and_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(10).astype(np.float32) for _ in range(2)]
    opt = fusedopt.Adagrad(params, lr=0.01, eps=1e-7, initial_accumulator_value=0.1,
                           convention="keras")
    opt.step([np.ones(10, np.float32)] * 2)
    assert set(opt.state[0]) == {"step", "sum"}
    path = tmp_path / "adagrad.ckpt"
    opt.save(path)
    resumed = fusedopt.load_optimizer(path)
    assert type(resumed).__name__ == "Adagrad"
    assert resumed.param_groups[0]["convention"] == "keras"
    g = [rng.standard_normal(10).astype(np.float32) for _ in range(2)]
    opt.step(g)
    resumed.step(g)
    for a, b in zip(opt.params, resumed.params):
        np.testing.assert_array_equal(a, b)
    other = fusedopt.Adagrad([p.copy() for p in params], lr=0.5)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.01
    np.testing.assert_array_equal(other.state[1]["sum"], opt.state[1]["sum"])


@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(lr=-1.0), ValueError, r"Invalid learning rate: -1\.0"),
    (dict(lr_decay=-0.5), ValueError, r"Invalid lr_decay value: -0\.5"),
    (dict(lr_decay=float("nan")), ValueError, r"lr_decay must be finite"),
    (dict(weight_decay=-0.1), ValueError, r"weight_decay"),
    (dict(eps=-1e-10), ValueError, r"Invalid epsilon value"),
    (dict(maximize="yes"), TypeError, r"maximize"),
    (dict(convention="sklearn"), ValueError, r"'sklearn' has no Adagrad"),
    (dict(convention="tf1", lr_decay=0.1), ValueError, r"lr_decay is a torch option"),
    (dict(convention="optax", weight_decay=0.1), ValueError, r"no weight decay"),
    (dict(convention="keras", maximize=True), ValueError, r"maximize=True is a torch option"),
    (dict(convention="jax"), ValueError, r"convention must be one of"),
    (dict(betas=(0.9, 0.99)), TypeError, r"unexpected keyword argument 'betas'"),
])
def test_bad_hyper_parameters_change_nothing(kw, exc, pattern):
    p, g, s = np.ones(5), np.ones(5), np.full(5, 0.5)
    with pytest.raises(exc, match=pattern):
        fusedopt.adagrad_step(p, g, s, step=1, **kw)
    assert (p == 1).all() and (s == 0.5).all()
    with pytest.raises(exc, match=pattern):
        fusedopt.Adagrad([p], **kw)


@pytest.mark.parametrize("kw,pattern", [
    (dict(initial_accumulator_value=-0.1), r"Invalid initial_accumulator_value value"),
    (dict(initial_accumulator_value=float("inf")), r"initial_accumulator_value must be finite"),
])
def test_bad_initial_accumulator_value(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        fusedopt.Adagrad([np.ones(3)], **kw)
    opt = fusedopt.Adagrad([np.ones(3)])
    opt.param_groups[0].update(kw)
    p = opt.params[0].copy()
    with pytest.raises(ValueError, match=pattern):
        opt.step([np.ones(3)])
    np.testing.assert_array_equal(opt.params[0], p)
    assert not opt.state


@pytest.mark.parametrize("make,exc,pattern", [
    (lambda p: (p, np.ones(4), np.zeros(5)), ValueError,
     r"grad must have the shape of param"),
    (lambda p: (p, np.ones(5, np.float32), np.zeros(5)), TypeError, r"grad must have the dtype"),
    (lambda p: (p, np.ones(5), p), ValueError, r"share memory"),
    (lambda p: (p, np.ones(5), None), TypeError, r"state_sum must be a numpy\.ndarray"),
    (lambda p: (p, np.ones(5), np.zeros(10)[::2]), ValueError, r"C-contiguous"),
])
def test_bad_arrays_change_nothing(make, exc, pattern):
    p = np.ones(5)
    args = make(p)
    with pytest.raises(exc, match=pattern):
        fusedopt.adagrad_step(*args, lr=0.1)
    assert (p == 1).all()
    with pytest.raises(TypeError, match="state_sum is required"):
        fusedopt.adagrad_step(p, np.ones(5), lr=0.1)


# ----------------------------------------------------------------------------- torch

def test_torch_drop_in_state_exists_at_construction_as_torch():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft

    def make(cls):
        w = torch.nn.Parameter(torch.ones(4, 3))
        b = torch.nn.Parameter(torch.zeros(3))
        return cls([{"params": [w]}, {"params": [b], "initial_accumulator_value": 5.0}],
                   0.1, 0.0, 0.0,
                   0.25, 1e-10, None)      # torch's positional arguments, foreach included
    ours, theirs = make(ft.Adagrad), make(torch.optim.Adagrad)
    so, st = ours.state_dict(), theirs.state_dict()
    assert so["state"].keys() == st["state"].keys() == {0, 1}
    for k in (0, 1):
        assert so["state"][k].keys() == st["state"][k].keys() == {"step", "sum"}
        assert so["state"][k]["step"].dtype == torch.float32
        assert float(so["state"][k]["step"]) == 0.0
        # torch starts every group at the constructor's value (a group's own is unused)
        torch.testing.assert_close(so["state"][k]["sum"], st["state"][k]["sum"], rtol=0,
                                   atol=0)
    # an unstepped torch state dict loads into ours and steps as torch
    again = make(ft.Adagrad)
    again.load_state_dict(copy.deepcopy(theirs.state_dict()))   # (torch's are not copies)
    for opt in (again, theirs):
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.full_like(p, 0.5)
        opt.step()
    for a, b in zip(again.param_groups, theirs.param_groups):
        for p, q in zip(a["params"], b["params"]):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)


def test_torch_drop_in_param_group_added_later_gets_its_state_lazily():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    w = torch.nn.Parameter(torch.ones(3))
    opt = ft.Adagrad([w], lr=0.1, initial_accumulator_value=1.0)
    b = torch.nn.Parameter(torch.ones(2))
    opt.add_param_group({"params": [b], "initial_accumulator_value": 7.0})
    assert b not in opt.state
    w.grad, b.grad = torch.ones(3), torch.ones(2)
    opt.step()
    assert float(opt.state[b]["step"]) == 1.0
    # started at the constructor's value, as torch.optim.Adagrad's _init_group does
    torch.testing.assert_close(opt.state[b]["sum"], torch.full((2,), 2.0))


def test_torch_drop_in_with_a_scheduler_matches_torch():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    torch.manual_seed(0)
    X, y = torch.randn(64, 5), torch.randn(64, 1)
    models = [torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(),
                                  torch.nn.Linear(8, 1)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [cls(m.parameters(), lr=0.1, lr_decay=0.01, weight_decay=1e-3)
            for cls, m in zip((ft.Adagrad, torch.optim.Adagrad), models)]
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=20, gamma=0.5) for o in opts]
    for _ in range(100):
        for m, o, s in zip(models, opts, scheds):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(X), y).backward()
            o.step()
            s.step()
    assert opts[0].param_groups[0]["lr"] == opts[1].param_groups[0]["lr"] == 0.1 * 0.5 ** 5
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-6)
