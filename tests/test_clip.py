"""Gradient clipping: fusedopt.clip_grad_norm_ (NumPy), fusedopt.torch.clip_grad_norm_, and
max_grad_norm= on every optimizer (the clip coefficient applied inside the update pass),
against fusedopt.reference, the exact norm, torch.nn.utils.clip_grad_norm_ and
torch.optim's steps after torch's clipping."""
import copy
import math

import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R
from fusedopt._spec import all_specs

from conftest import THREADS

NORMS = [2.0, 1.0, 3.0, 0.5, math.inf]
MIXES = {"f32": (np.float32,), "f64": (np.float64,), "mixed": (np.float32, np.float64)}
SHAPES = [(1000,), (5,), (200, 200), (0,), (17,), (3, 16385)]   # blocks of 16384: 3 here


def _grads(mix, seed, scale=10.0):
    rng = np.random.default_rng(seed)
    dts = MIXES[mix]
    return [(rng.standard_normal(s) * scale).astype(dts[k % len(dts)])
            for k, s in enumerate(SHAPES)]


def _exact_norm(arrays, p):
    v = np.concatenate([np.abs(a.astype(np.float64)).ravel() for a in arrays])
    if p == math.inf:
        return float(v.max())
    return math.fsum((v ** p).tolist()) ** (1 / p)


@pytest.mark.parametrize("p", NORMS)
@pytest.mark.parametrize("mix", list(MIXES))
@pytest.mark.parametrize("threads", THREADS)
def test_norm_and_scaling_match_the_reference(cpu_path, p, mix, threads):
    """The norm is accumulated in double in a fixed order: float32 results are the exact
    norm rounded (as the reference's, which sums exactly); float64 ones lie within the
    bound of that accumulation (1024 elements per lane and block, plus the blocks and
    lanes: ~1100 ulps of double at worst, 1e-13 relative)."""
    ours, ref = _grads(mix, 1), _grads(mix, 1)
    n = fusedopt.clip_grad_norm_(ours, 1.0, p, n_threads=threads)
    r = R.clip_grad_norm_(ref, 1.0, p)
    if mix == "f32":
        assert n == r
        assert n == float(np.float32(_exact_norm(_grads(mix, 1), p)))
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b)
    else:
        assert n == pytest.approx(r, rel=1e-13, abs=0)
        coef = min(1.0 / (n + 1e-6), 1.0)
        for a, g in zip(ours, _grads(mix, 1)):
            np.testing.assert_array_equal(a, g * g.dtype.type(coef))


def test_identical_for_every_thread_count_and_cpu_path(cpu_path):
    base = _grads("mixed", 2)
    results = []
    for threads in (1, 2):
        gs = [g.copy() for g in base]
        results.append((fusedopt.clip_grad_norm_(gs, 0.5, n_threads=threads), gs))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


def test_small_norms_are_left_alone_and_none_is_skipped():
    g = [np.array([0.3, 0.4], np.float32), None]
    before = g[0].copy()
    assert fusedopt.clip_grad_norm_(g, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(g[0], before)
    assert fusedopt.clip_grad_norm_([], 1.0) == 0.0
    assert fusedopt.clip_grad_norm_([np.zeros(0)], 1.0) == 0.0
    assert fusedopt.clip_grad_norm_(np.array([3.0, 4.0]), 1.0) == 5.0   # one array


def test_non_finite_norms_as_torch():
    g = [np.array([1.0, np.inf]), np.array([2.0])]
    assert fusedopt.clip_grad_norm_(g, 1.0) == math.inf
    assert np.isnan(g[0][1]) and g[0][0] == 0.0 and g[1][0] == 0.0     # scaled by 0
    g = [np.array([1.0, np.nan])]
    assert math.isnan(fusedopt.clip_grad_norm_(g, 1.0))
    assert np.isnan(g[0]).all()
    g = [np.array([1.0, np.nan]), np.array([5.0])]
    with pytest.raises(RuntimeError, match="non-finite"):
        fusedopt.clip_grad_norm_(g, 1.0, error_if_nonfinite=True)
    assert g[1][0] == 5.0 and g[0][0] == 1.0
    assert math.isnan(fusedopt.clip_grad_norm_([np.array([np.nan, 1.0])], 1.0, math.inf))


@pytest.mark.parametrize("args,kw,exc,pattern", [
    ((1.0,), dict(norm_type=0), ValueError, r"norm_type must be a positive"),
    ((1.0,), dict(norm_type=-2.0), ValueError, r"norm_type"),
    ((1.0,), dict(norm_type=float("nan")), ValueError, r"norm_type"),
    ((1.0,), dict(norm_type=-math.inf), ValueError, r"norm_type"),
    ((-1.0,), {}, ValueError, r"max_norm must be >= 0"),
    ((float("nan"),), {}, ValueError, r"max_norm must be >= 0"),
    (("1",), {}, TypeError, r"max_norm must be a real number"),
    ((1.0,), dict(error_if_nonfinite="no"), TypeError, r"error_if_nonfinite"),
])
def test_bad_arguments_change_nothing(args, kw, exc, pattern):
    g = [np.full(4, 10.0), np.full(3, 10.0, np.float32)]
    with pytest.raises(exc, match=pattern):
        fusedopt.clip_grad_norm_(g, *args, **kw)
    assert (g[0] == 10).all() and (g[1] == 10).all()


@pytest.mark.parametrize("make,exc,pattern", [
    (lambda: [np.full(4, 10.0), np.full(4, 10, np.int64)], TypeError, r"grads\[1\]"),
    (lambda: [np.full(4, 10.0), np.full(8, 10.0)[::2]], ValueError, r"C-contiguous"),
    (lambda: [np.full(4, 10.0), np.full(4, 10.0)], None, None),
    (lambda: "grads", TypeError, r"grads must be a list"),
])
def test_bad_arrays_change_nothing(make, exc, pattern):
    g = make()
    if exc is None:                        # read-only: refused before anything is scaled
        g[1].flags.writeable = False
        exc, pattern = ValueError, r"grads\[1\].*writeable|read-only"
    with pytest.raises(exc, match=pattern):
        fusedopt.clip_grad_norm_(g, 1.0)
    if isinstance(g, list):
        assert (g[0] == 10).all()


# ----------------------------------------------------------------------------- optimizers

def _optimizers():
    return [s.name for s in all_specs()]


def _kw(name):
    return {"SGD": dict(momentum=0.9), "Lion": dict(lr=1e-3)}.get(name, {})


@pytest.mark.parametrize("name", _optimizers())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_grad_norm_equals_clipping_then_stepping(cpu_path, name, dtype):
    """The coefficient inside the update pass gives the same bits as clip_grad_norm_
    followed by a step (a group mixing float32 and float64, a second unclipped group, a
    held StepPlan from the second step on, a gradient left out)."""
    rng = np.random.default_rng(3)
    shapes = [(30, 7), (5000,), (1,)]
    other = np.float64 if dtype == np.float32 else np.float32     # a mixed clipped group
    ps = [rng.standard_normal(s).astype(dtype) for s in shapes] + \
        [rng.standard_normal(9).astype(other), rng.standard_normal(4)]
    qs = [p.copy() for p in ps]
    cls = getattr(fusedopt, name)
    a = cls([{"params": ps[:4], "max_grad_norm": 1.0}, {"params": ps[4:]}], **_kw(name))
    b = cls([{"params": qs[:4]}, {"params": qs[4:]}], **_kw(name))
    clipped = 0
    for t in range(6):
        gs = [rng.standard_normal(p.shape).astype(p.dtype) * 0.1 * t for p in ps]
        if t == 4:
            gs[1] = None
        a.step([None if g is None else g.copy() for g in gs])
        mine = [None if g is None else g.copy() for g in gs]
        clipped += fusedopt.clip_grad_norm_(mine[:4], 1.0) > 1.0
        b.step(mine)
    assert clipped >= 3
    for x, y in zip(ps, qs):
        np.testing.assert_array_equal(x, y)


def test_max_grad_norm_is_the_finite_check_too():
    p = np.ones(3, np.float32)
    opt = fusedopt.Adam([p], lr=0.1, max_grad_norm=1.0, check_finite=True)
    assert opt.step([np.array([1.0, np.nan, 0.0], np.float32)]) is False
    assert opt.skipped_steps == 1 and (p == 1).all() and not opt.state
    assert opt.step([np.array([10.0, 0.0, 0.0], np.float32)]) is True
    assert p[0] < 1
    # finite gradients whose norm overflows float32 are stepped (clipped by 0, as torch)
    q = np.ones(3, np.float32)
    twin = fusedopt.Adam([q], lr=0.1)
    twin.step([np.array([10.0 / np.float32(10.0 + 1e-6), 0.0, 0.0], np.float32)])
    assert opt.step([np.array([3e38, 3e38, 0.0], np.float32)]) is True
    assert opt.skipped_steps == 1 and opt.state[0]["step"] == 2
    twin.step([np.zeros(3, np.float32)])
    np.testing.assert_allclose(p, q, rtol=1e-6)


@pytest.mark.parametrize("sizes", [
    [1000 * 16384, 100 * 16384 + 3, 5],     # a round of 1024 blocks fills inside a tensor
    [1024 * 16384, 0, 7],                   # ... exactly at a tensor's end
], ids=["mid-tensor", "tensor-end"])
def test_more_blocks_than_one_round(sizes):
    """The norm's blocks are taken 1024 at a time across tensors: past a round, every
    element still counts once, in order (the same result for 1 and 2 threads)."""
    rng = np.random.default_rng(7)
    gs = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
    n1 = fusedopt.clip_grad_norm_(gs, math.inf, n_threads=1)
    n2 = fusedopt.clip_grad_norm_(gs, math.inf, n_threads=2)
    assert n1 == n2
    exact = math.sqrt(sum(float(np.dot(g.astype(np.float64), g.astype(np.float64)))
                          for g in gs))
    assert abs(n1 - exact) <= np.spacing(np.float32(exact))
    assert fusedopt.clip_grad_norm_(gs, math.inf, math.inf) == max(
        float(np.abs(g).max()) for g in gs if g.size)


@pytest.mark.parametrize("value,exc,pattern", [
    (0.0, ValueError, r"Invalid max_grad_norm value: 0\.0"),
    (-1.0, ValueError, r"Invalid max_grad_norm value"),
    (float("nan"), ValueError, r"max_grad_norm must be finite"),
    (float("inf"), ValueError, r"max_grad_norm must be finite"),
    ("1", TypeError, r"max_grad_norm must be a real number"),
])
@pytest.mark.parametrize("name", _optimizers())
def test_bad_max_grad_norm_is_refused_and_changes_nothing(name, value, exc, pattern):
    cls = getattr(fusedopt, name)
    with pytest.raises(exc, match=pattern):
        cls([np.ones(3)], max_grad_norm=value)
    opt = cls([np.ones(3)], **_kw(name))
    opt.param_groups[0]["max_grad_norm"] = value
    with pytest.raises(exc, match=pattern):
        opt.step([np.ones(3)])
    assert (opt.params[0] == 1).all() and not opt.state


def test_state_dicts_without_max_grad_norm_still_load(tmp_path):
    opt = fusedopt.Adam([np.ones(3)], lr=0.1)
    opt.step([np.ones(3)])
    sd = opt.state_dict()
    for g in sd["param_groups"]:
        del g["max_grad_norm"]                 # as saved before the option existed
    other = fusedopt.Adam([np.ones(3)], max_grad_norm=2.0)
    other.load_state_dict(sd)
    assert other.param_groups[0]["max_grad_norm"] is None
    opt.param_groups[0]["max_grad_norm"] = 0.5
    opt.save(tmp_path / "c.ckpt")
    assert fusedopt.load_optimizer(tmp_path / "c.ckpt").param_groups[0]["max_grad_norm"] == 0.5


# ----------------------------------------------------------------------------- torch

@pytest.mark.parametrize("p", NORMS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_clip_grad_norm_matches_torch(p, dtype):
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    dt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    shapes = [(2000,), (1,), (300, 300), (33,)]

    def params():
        ps = [torch.nn.Parameter(torch.zeros(s, dtype=dt)) for s in shapes]
        for q in ps:
            q.grad = torch.randn(q.shape, generator=torch.Generator().manual_seed(q.numel()),
                                 dtype=dt) * 10
        return ps
    ours, theirs = params(), params()
    ours.append(torch.nn.Parameter(torch.zeros(3)))            # no gradient: skipped
    n_ours = ft.clip_grad_norm_(ours, 1.0, norm_type=p)
    n_theirs = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type=p)
    assert n_ours.dtype == n_theirs.dtype and n_ours.shape == ()
    # torch sums per-tensor norms in the gradients' dtype: a few ulps (float32 up to
    # ~100 for the 1-norm of 1e5 elements) from the exact norm, which ours rounds
    rtol = 2e-5 if dtype == "float32" else 1e-13
    torch.testing.assert_close(n_ours, n_theirs, rtol=rtol, atol=0)
    exact = _exact_norm([q.grad.numpy() for q in params()], p)
    assert abs(n_ours.item() - exact) <= np.spacing(np.dtype(dtype).type(exact)) * (
        1 if dtype == "float32" else 1100)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=rtol, atol=0)
    del gen


def test_torch_clip_grad_norm_signature_and_errors():
    torch = pytest.importorskip("torch")
    import inspect
    import fusedopt.torch as ft
    po = inspect.signature(ft.clip_grad_norm_).parameters
    pt = inspect.signature(torch.nn.utils.clip_grad_norm_).parameters
    assert list(po) == list(pt)
    assert all(po[k].default == pt[k].default for k in po)
    w = torch.nn.Parameter(torch.zeros(2))
    w.grad = torch.tensor([3.0, 4.0])
    assert ft.clip_grad_norm_(w, 10.0).item() == 5.0             # one tensor
    assert ft.clip_grad_norm_(w, 10.0, norm_type="inf").item() == 4.0   # as torch reads it
    h = torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))
    h.grad = torch.tensor([3, 4], dtype=torch.float16)
    with pytest.raises(TypeError, match=r"grads\[1\] must be a dense CPU float32"):
        ft.clip_grad_norm_([w, h], 1.0)
    assert w.grad.tolist() == [3.0, 4.0]
    w.grad = torch.tensor([1.0, float("nan")])
    with pytest.raises(RuntimeError, match="non-finite"):
        ft.clip_grad_norm_([w], 1.0, error_if_nonfinite=True)
    assert w.grad[0].item() == 1.0


def _torch_classes():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    pairs = [(name, getattr(ft, name), getattr(torch.optim, name, None))
             for name in ft.FRONT_END]
    return [(n, a, b) for n, a, b in pairs if b is not None]   # (torch has no Lion)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clipped_training_equals_torch_clip_then_step(dtype):
    """max_grad_norm=1.0 on every drop-in that torch.optim has against
    torch.nn.utils.clip_grad_norm_(..., 1.0) + torch.optim.X, step for step, on the
    adapter tests' MLP (clipping active at most steps: asserted)."""
    torch = pytest.importorskip("torch")
    from test_torch_adapter import TOL, loss_fn, make_data, make_model
    dt = getattr(torch, dtype)
    X, y = make_data(dt)
    for name, ours_cls, torch_cls in _torch_classes():
        kw = {"lr": 0.01, **({"momentum": 0.9} if name == "SGD" else {})}
        ma, mb = make_model(dt), make_model(dt)
        oa = ours_cls(ma.parameters(), max_grad_norm=0.05, **kw)
        ob = torch_cls(mb.parameters(), **kw)
        sched = torch.optim.lr_scheduler.StepLR(oa, 20, 0.5), \
            torch.optim.lr_scheduler.StepLR(ob, 20, 0.5)
        active = 0
        for i in range(60):
            for m, o in ((ma, oa), (mb, ob)):
                o.zero_grad()
                loss_fn(m, X, y, i).backward()
            active += torch.nn.utils.clip_grad_norm_(mb.parameters(), 0.05).item() > 0.05
            oa.step()
            ob.step()
            for s in sched:
                s.step()
            for a, b in zip(ma.parameters(), mb.parameters()):
                torch.testing.assert_close(a, b, **TOL[dt], msg=f"{name} step {i + 1}")
        assert active >= 40, name
        # the option travels in state dicts (torch's own ignores it)
        sd = copy.deepcopy(oa.state_dict())
        assert sd["param_groups"][0]["max_grad_norm"] == 0.05
        again = ours_cls(make_model(dt).parameters(), **kw)
        again.load_state_dict(sd)
        assert again.param_groups[0]["max_grad_norm"] == 0.05


def test_torch_bad_max_grad_norm():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    w = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="Invalid max_grad_norm value"):
        ft.Adam([w], max_grad_norm=0.0)
    opt = ft.RMSprop([w])
    with pytest.raises(ValueError, match="max_grad_norm must be finite"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))],
                             "max_grad_norm": float("nan")})
    assert len(opt.param_groups) == 1
