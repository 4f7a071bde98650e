"""Adafactor: the kernel against fusedopt.reference bit for bit (every CPU path, thread
count, dtype, factored and full shapes across the kernels' unit rules, zeros, NaN), in
every form of the package (the functional step, the NumPy class, fusedopt.torch,
checkpoints), against torch.optim.Adafactor itself (trajectories with a learning-rate
change, an MLP with a scheduler, state dicts both ways), and its errors."""
import copy

import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R

from conftest import DTYPES, THREADS

# shapes across the kernels' unit rules (fo_driver.c): vectors of one and several work
# blocks, matrices of at most 16384 elements (whole matrices per unit: one, several,
# a partial last unit), larger ones cut into row blocks (64 rows; fewer, wider rows; a
# partial last block; several matrices), empty and 0-d tensors
SHAPES = [(), (1,), (7,), (1000,), (100003,), (0,), (1, 1), (5, 1), (1, 5), (13, 29),
          (3, 4, 6), (300, 3, 5), (7, 0), (0, 3), (20, 1000), (64 * 3 + 5, 300),
          (2, 9000, 3), (3, 130, 300)]
VARIANTS = [{}, dict(lr=0.5, weight_decay=0.1, maximize=True),
            dict(eps=(1e-3, 0.0), d=2.0, beta2_decay=-0.5), dict(eps=(0.0, 1e-3)),
            dict(convention="keras", eps=(1e-30, 1e-3)),
            dict(convention="keras", eps=(1e-30, 1e-3), lr=0.5, weight_decay=0.1, d=2.0,
                 beta2_decay=-0.5)]


def _stats(shape, dtype):
    """Zeros of torch's statistics for a parameter of this shape: (row_var, col_var,
    variance), None where it has none."""
    if len(shape) >= 2:
        return [np.zeros(shape[:-1] + (1,), dtype), np.zeros(shape[:-2] + (1,) + shape[-1:],
                                                             dtype), None]
    return [None, None, np.zeros(shape, dtype)]


def _grads(shape, dtype, rng, k=3):
    grads = []
    for _ in range(k):
        g = rng.standard_normal(shape).astype(dtype)
        if len(shape) >= 2 and shape[-2] > 2 and shape[-1] > 2:
            g[..., 1, :] = 0.0          # a zero row: its statistics, clamped at eps1
            g[..., :, 2] = 0.0          # and a zero column
        grads.append(g)
    return grads


def _kernel_equals_reference(p, grads, ours, theirs, threads, **kw):
    """Steps p (with statistics ours) by the kernel and a copy (theirs) by the reference
    over grads; the gradients stay unmodified, the results are equal bit for bit."""
    q = p.copy()
    with np.errstate(all="ignore"):
        for t, g in enumerate(grads, 1):
            g0 = g.copy()
            fusedopt.adafactor_step(p, g, *ours, step=t, n_threads=threads, **kw)
            R.adafactor_step(q, g, *theirs, step=t, **kw)
            assert np.array_equal(g, g0), "the gradient was modified"
    np.testing.assert_array_equal(p, q)
    for a, b in zip(ours, theirs):
        if a is not None:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kw", VARIANTS, ids=["plain", "wd-maximize", "eps-d-decay", "eps1=0",
                                              "keras", "keras-wd-d-decay"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("threads", THREADS)
def test_matches_reference_bit_for_bit(cpu_path, kw, dtype, shape, threads):
    rng = np.random.default_rng(sum(shape) + len(shape))
    p = rng.standard_normal(shape).astype(dtype)
    _kernel_equals_reference(p, _grads(shape, dtype, rng), _stats(shape, dtype),
                             _stats(shape, dtype), threads, **kw)
    # (eps1 = 0 divides 0 by 0 at a zero gradient; so does Keras' rule in float32 where a
    # zero row meets a zero column: (1e-30/mean)*1e-30 underflows to 0, and Keras'
    # own Adafactor gives NaN there too)
    keras_nan = kw.get("convention") == "keras" and dtype == np.float32 and \
        len(shape) >= 2 and shape[-2] > 2 and shape[-1] > 2
    assert p.size == 0 or np.isfinite(p).all() or kw.get("eps") == (0.0, 1e-3) or keras_nan


@pytest.mark.parametrize("threads", THREADS)
def test_many_units_and_rounds_match_reference(threads):
    """A matrix of more units than one round (256 in fo_driver.c) and a NaN gradient."""
    rng = np.random.default_rng(7)
    shape = (64 * 300 + 17, 40)
    p = rng.standard_normal(shape).astype(np.float32)
    q = p.copy()
    ours, theirs = _stats(shape, np.float32), _stats(shape, np.float32)
    for t in range(1, 3):
        g = rng.standard_normal(shape).astype(np.float32)
        fusedopt.adafactor_step(p, g, *ours, step=t, lr=0.1, n_threads=threads)
        R.adafactor_step(q, g, *theirs, step=t, lr=0.1)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(ours[1], theirs[1])
    g[5, 7] = np.nan                    # NaN spreads as in torch: its row, column and
    with np.errstate(invalid="ignore"):  # the norms (so the whole tensor)
        fusedopt.adafactor_step(p, g, *ours, step=3, n_threads=threads)
    assert np.isnan(ours[0][5, 0]) and np.isnan(ours[1][0, 7]) and np.isnan(p).all()


def test_first_step_by_hand():
    """At t = 1 the lerp weight is 1 (the statistics are this step's), rho = min(lr, 1)
    and a constant gradient gives U = 1 (|U| RMS 1: no clipping)."""
    p = np.full((2, 3), 2.0)
    r, c, _ = _stats(p.shape, np.float64)
    fusedopt.adafactor_step(p, np.full((2, 3), 0.5), r, c, step=1, lr=0.1)
    # the mean of g*g over a row (a column), as torch: the norm rounded, then squared
    np.testing.assert_array_equal(r, np.full((2, 1), np.sqrt(0.75) ** 2 / 3))
    np.testing.assert_array_equal(c, np.full((1, 3), np.sqrt(0.5) ** 2 / 2))
    np.testing.assert_allclose(p, 2.0 - 0.1 * 2.0)            # alpha = RMS(p) * rho
    # at t = 4: weight 4**-0.8, rho = min(lr, 1/2); RMS(p) below eps2 gives eps2
    p, v = np.zeros(4), np.zeros(4)
    fusedopt.adafactor_step(p, np.ones(4), variance=v, step=4, lr=1.0)
    np.testing.assert_allclose(v, 4 ** -0.8)
    np.testing.assert_allclose(p, -1e-3 * 0.5)


def test_update_clipped_to_rms_d():
    """denom = max(1, RMS(U)/d): a gradient far from its running statistics is clipped."""
    p, v = np.ones(2), np.full(2, 1e-4)
    fusedopt.adafactor_step(p, np.array([1.0, 1.0]), variance=v, step=2, lr=1.0, d=1.0)
    w = 2 ** -0.8
    u = 1 / np.sqrt(1e-4 + w * (1 - 1e-4))          # RMS(U) = u > 1
    np.testing.assert_allclose(v, 1e-4 + w * (1 - 1e-4))
    np.testing.assert_allclose(p, 1 - (2 ** -0.5) / (u / 1.0) * u)   # alpha/denom * U


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_equals_functional_over_many_tensors(dtype):
    shapes = [(3, 4), (0,), (17,), (), (5, 2, 300), (1000,)]
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = [p.copy() for p in params]
    kw = dict(lr=0.05, weight_decay=0.02, d=1.5)
    stats = [_stats(s, dtype) for s in shapes]
    opt = fusedopt.Adafactor(params, **kw)
    for t in range(1, 6):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        assert opt.step(grads)
        for p, g, st in zip(ref, grads, stats):
            fusedopt.adafactor_step(p, g, *st, step=t, **kw)
    for k, (p, r) in enumerate(zip(params, ref)):
        np.testing.assert_array_equal(p, r)
        names = ("row_var", "col_var") if len(shapes[k]) >= 2 else ("variance",)
        assert set(opt.state[k]) == {"step", *names}
        for name, a in zip(("row_var", "col_var", "variance"), stats[k]):
            if a is not None:
                np.testing.assert_array_equal(opt.state[k][name], a)
        assert opt.state[k]["step"] == 5


def test_statistics_are_torchs_rule_on_exact_sums():
    """The row and column statistics and the norms are summed in double: after a step of
    a 3000 x 300 float32 matrix they are torch's rule (the norm rounded to float32,
    squared, divided by the count) applied to the exact sums, to the ulp; torch's own
    float32 reductions over 3000 rows are off by up to ~2e-6 relative (~20 ulps)."""
    rng = np.random.default_rng(4)
    p = rng.standard_normal((3000, 300)).astype(np.float32)
    g = rng.standard_normal(p.shape).astype(np.float32)
    r, c, _ = _stats(p.shape, np.float32)
    fusedopt.adafactor_step(p, g, r, c, step=1)
    g64 = g.astype(np.float64) ** 2
    for got, total, n in ((r, g64.sum(axis=1, keepdims=True), 300),
                          (c, g64.sum(axis=0, keepdims=True), 3000)):
        nrm = np.sqrt(total).astype(np.float32)
        want = (nrm * nrm) / np.float32(n)
        assert (np.abs(got - want) <= np.spacing(want)).all()
        assert (got == want).mean() > 0.99


def test_state_dict_and_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (10,))]
    opt = fusedopt.Adafactor(params, lr=0.01, eps=(1e-20, 1e-3), weight_decay=0.1)
    opt.step([np.ones(p.shape, np.float32) for p in params])
    path = tmp_path / "adafactor.ckpt"
    opt.save(path)
    resumed = fusedopt.load_optimizer(path)
    assert type(resumed).__name__ == "Adafactor"
    assert resumed.param_groups[0]["eps"] == (1e-20, 1e-3)
    assert resumed.state[0]["row_var"].shape == (6, 1)
    g = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    opt.step(g)
    resumed.step(g)
    for a, b in zip(opt.params, resumed.params):
        np.testing.assert_array_equal(a, b)
    other = fusedopt.Adafactor([p.copy() for p in params], lr=0.5)
    other.load_state_dict(opt.state_dict())
    for name in ("row_var", "col_var"):
        np.testing.assert_array_equal(other.state[0][name], opt.state[0][name])
    bad = opt.state_dict()
    bad["state"][0]["row_var"] = np.zeros((6, 5), np.float32)    # not the factor's shape
    before = other.state_dict()
    with pytest.raises(ValueError, match=r"state\[0\]\['row_var'\] must be an array of "
                                         r"shape \(6, 1\)"):
        other.load_state_dict(bad)
    np.testing.assert_array_equal(other.state[0]["row_var"], before["state"][0]["row_var"])
    bad = opt.state_dict()
    bad["state"][1] = dict(bad["state"][1], row_var=np.zeros((10, 1), np.float32))
    with pytest.raises(ValueError, match=r"state\[1\] has entries"):
        other.load_state_dict(bad)


@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(lr=-1.0), ValueError, r"Invalid learning rate: -1\.0"),
    (dict(beta2_decay=0.5), ValueError, r"Invalid beta2_decay value: 0\.5"),
    (dict(beta2_decay=float("nan")), ValueError, r"beta2_decay must be finite"),
    (dict(eps=(-1.0, 1e-3)), ValueError, r"Invalid epsilon1 value"),
    (dict(eps=(None, -1e-3)), ValueError, r"Invalid epsilon2 value"),
    (dict(eps=1e-3), TypeError, r"eps must be a pair \(eps1 or None, eps2\)"),
    (dict(eps=(None, None)), TypeError, r"epsilon2 must be a real number"),
    (dict(d=0.5), ValueError, r"Invalid clipping threshold d value: 0\.5"),
    (dict(weight_decay=-0.1), ValueError, r"weight_decay"),
    (dict(maximize=1), TypeError, r"maximize"),
    (dict(convention="tf1"), ValueError, r"'tf1' has no Adafactor in fusedopt"),
    (dict(convention="jax"), ValueError, r"convention must be one of"),
    (dict(betas=(0.9, 0.99)), TypeError, r"unexpected keyword argument 'betas'"),
])
def test_bad_hyper_parameters_change_nothing(kw, exc, pattern):
    p, g, r, c = np.ones((3, 4)), np.ones((3, 4)), np.full((3, 1), 0.5), np.full((1, 4), 0.5)
    with pytest.raises(exc, match=pattern):
        fusedopt.adafactor_step(p, g, r, c, step=1, **kw)
    assert (p == 1).all() and (r == 0.5).all() and (c == 0.5).all()
    if "betas" not in kw:
        with pytest.raises(exc, match=pattern):
            fusedopt.Adafactor([p], **kw)


@pytest.mark.parametrize("make,exc,pattern", [
    # a vector given factored statistics, a matrix given a full variance
    (lambda p1, p2: (p1, np.ones(5), np.zeros(5), np.zeros(5), None), ValueError,
     r"param has 1 dimension\(s\): it is not factored .*pass variance, not row_var"),
    (lambda p1, p2: (p2, np.ones((3, 4)), None, None, np.zeros((3, 4))), ValueError,
     r"param has 2 dimensions: Adafactor factors its last two and needs row_var"),
    (lambda p1, p2: (p2, np.ones((3, 4)), np.zeros((3, 1)), np.zeros((1, 4)),
                     np.zeros((3, 4))), ValueError, r"pass row_var and col_var, not variance"),
    (lambda p1, p2: (p1, np.ones(5), None, None, None), ValueError,
     r"keeps its full variance"),
    (lambda p1, p2: (p2, np.ones((3, 4)), np.zeros((3, 4)), np.zeros((1, 4)), None),
     ValueError, r"row_var must have shape \(3, 1\)"),
    (lambda p1, p2: (p2, np.ones((3, 4)), np.zeros((3, 1)), np.zeros((4, 1)), None),
     ValueError, r"col_var must have shape \(1, 4\)"),
    (lambda p1, p2: (p2, np.ones((3, 4)), np.zeros((3, 1), np.float32), np.zeros((1, 4)),
                     None), TypeError, r"row_var must have the dtype of param"),
    (lambda p1, p2: (p2, np.ones((3, 4)), p2[:, :1], np.zeros((1, 4)), None),
     ValueError, r"C-contiguous"),
    (lambda p1, p2: (p2, np.ones((3, 4)), p2.reshape(-1)[:3].reshape(3, 1), np.zeros((1, 4)),
                     None), ValueError, r"share memory"),
    (lambda p1, p2: (p1, np.ones(4), None, None, np.zeros(5)), ValueError,
     r"grad must have the shape of param"),
])
def test_bad_arrays_change_nothing(make, exc, pattern):
    p1, p2 = np.ones(5), np.ones((3, 4))
    args = make(p1, p2)
    with pytest.raises(exc, match=pattern):
        fusedopt.adafactor_step(*args, step=1)
    assert (p1 == 1).all() and (p2 == 1).all()
    for a in args[2:]:
        if a is not None and not np.shares_memory(a, p2):
            assert not a.any()


def test_read_only_statistic_and_missing_step():
    p, g = np.ones((3, 4)), np.ones((3, 4))
    r, c = np.zeros((3, 1)), np.zeros((1, 4))
    c.flags.writeable = False
    with pytest.raises(ValueError, match="col_var is read-only"):
        fusedopt.adafactor_step(p, g, r, c, step=1)
    assert (p == 1).all()
    with pytest.raises(TypeError, match="'step'"):
        fusedopt.adafactor_step(p, g, r, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="step must be >= 1"):
        fusedopt.adafactor_step(p, g, r, np.zeros((1, 4)), step=0)


# ----------------------------------------------------------------------------- torch

TORCH_SHAPES = [(13, 29), (40,), (3, 4, 6), (), (1, 7)]
TORCH_CONFIGS = [dict(), dict(lr=0.05, weight_decay=0.1), dict(maximize=True, d=2.0),
                 dict(beta2_decay=-0.5, eps=(1e-20, 1e-2))]


@pytest.mark.parametrize("cfg", TORCH_CONFIGS, ids=["default", "wd", "maximize-d",
                                                    "decay-eps"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_torch_optim_over_200_steps_with_an_lr_change(cfg, dtype):
    """fusedopt.Adafactor (NumPy) and fusedopt.torch.Adafactor against
    torch.optim.Adafactor, 200 steps, lr halved at step 100; the tolerance of
    test_frameworks.py (rtol = atol = 1e-6 in float32, 1e-12 in float64: a few ulps that
    random-walk).  torch's float32 norms are float32 reductions, so it is compared on
    tensors small enough that they are within a few ulps (see the accuracy test)."""
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    tdt = getattr(torch, dtype)
    rng = np.random.default_rng(11)
    p0 = [np.asarray(rng.standard_normal(s), dtype) for s in TORCH_SHAPES]
    theirs = [torch.nn.Parameter(torch.tensor(p)) for p in p0]
    mine = [torch.nn.Parameter(torch.tensor(p)) for p in p0]
    arrays = [p.copy() for p in p0]
    opts = [torch.optim.Adafactor(theirs, **cfg), ft.Adafactor(mine, **cfg),
            fusedopt.Adafactor(arrays, **cfg)]
    tol = 1e-6 if dtype == "float32" else 1e-12
    lr = opts[0].param_groups[0]["lr"]
    for step in range(200):
        if step == 100:
            for o in opts:
                o.param_groups[0]["lr"] = lr / 2
        grads = [np.asarray(rng.standard_normal(s) * np.exp(rng.standard_normal()), dtype)
                 for s in TORCH_SHAPES]
        for ps in (theirs, mine):
            for p, g in zip(ps, grads):
                p.grad = torch.tensor(g, dtype=tdt)
        opts[0].step()
        opts[1].step()
        opts[2].step(grads)
        for t, m, a in zip(theirs, mine, arrays):
            ref = t.detach().numpy()
            np.testing.assert_allclose(m.detach().numpy(), ref, rtol=tol, atol=tol,
                                       err_msg=f"fusedopt.torch, step {step + 1}")
            np.testing.assert_allclose(a, ref, rtol=tol, atol=tol,
                                       err_msg=f"fusedopt.Adafactor, step {step + 1}")
    st, sm = opts[0].state_dict()["state"], opts[1].state_dict()["state"]
    for k in st:
        assert st[k].keys() == sm[k].keys()
        for name in st[k]:
            assert st[k][name].shape == sm[k][name].shape
            # (the statistics depend on the gradients alone: only torch's float32 norms
            # differ, by a few ulps, and the averages do not amplify them)
            torch.testing.assert_close(sm[k][name], st[k][name], rtol=10 * tol, atol=tol)


def test_torch_drop_in_takes_torchs_positional_arguments():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    w = torch.nn.Parameter(torch.ones(4, 3))
    #                 lr    beta2_decay eps          d    weight_decay
    opt = ft.Adafactor([w], 0.02, -0.7, (None, 1e-2), 1.5, 0.1, maximize=True)
    assert opt.param_groups[0]["beta2_decay"] == -0.7
    assert opt.param_groups[0]["d"] == 1.5 and opt.param_groups[0]["maximize"] is True
    ref = torch.optim.Adafactor([torch.nn.Parameter(torch.ones(4, 3))], 0.02, -0.7,
                                (None, 1e-2), 1.5, 0.1, maximize=True)
    assert {k for k in ref.defaults} <= set(opt.defaults)
    with pytest.raises(ValueError, match="foreach=True is not supported"):
        ft.Adafactor([w], foreach=True)
    with pytest.raises(TypeError):
        ft.Adafactor([w], fused=True)         # torch.optim.Adafactor has no such argument


@pytest.mark.parametrize("cfg", [dict(), dict(lr=0.05, weight_decay=1e-2),
                                 dict(max_grad_norm=0.5)])
def test_torch_drop_in_with_a_scheduler_matches_torch(cfg):
    """An MLP (factored weights, full-variance biases) with StepLR, state dicts swapped
    both ways mid-training; max_grad_norm against torch's clip_grad_norm_ then step."""
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    torch.manual_seed(0)
    X, y = torch.randn(64, 5), torch.randn(64, 1)
    models = [torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(),
                                  torch.nn.Linear(8, 1)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    clip = cfg.get("max_grad_norm")
    tcfg = {k: v for k, v in cfg.items() if k != "max_grad_norm"}
    opts = [ft.Adafactor(models[0].parameters(), **cfg),
            torch.optim.Adafactor(models[1].parameters(), **tcfg)]
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=20, gamma=0.5) for o in opts]
    for i in range(100):
        if i == 50 and clip is None:     # state dicts both ways, mid-training
            sd = copy.deepcopy(opts[0].state_dict())
            opts[0].load_state_dict(copy.deepcopy(opts[1].state_dict()))
            opts[1].load_state_dict(sd)
        for k, (m, o, s) in enumerate(zip(models, opts, scheds)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(X), y).backward()
            if clip is not None and k == 1:
                torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
            o.step()
            s.step()
    assert opts[0].param_groups[0]["lr"] == opts[1].param_groups[0]["lr"]
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        assert opts[0].state[p].keys() == opts[1].state[q].keys()


def test_torch_drop_in_refuses_a_state_of_the_wrong_shape():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    w = torch.nn.Parameter(torch.ones(4, 3))
    opt = ft.Adafactor([w])
    w.grad = torch.ones(4, 3)
    opt.step()
    opt.state[w]["row_var"] = torch.zeros(4, 3)
    before = w.detach().clone()
    with pytest.raises(ValueError, match=r"row_var'\] must have the parameter's dtype "
                                         r"torch.float32 and shape \(4, 1\)"):
        opt.step()
    torch.testing.assert_close(w.detach(), before)


KERAS_SHAPES = [(13, 29), (40,), (3, 4, 6), (), (1, 7)]
# Keras' decimal defaults in float32; in float64 values exact in float32, since Keras on
# its TensorFlow backend casts Python floats through float32 (see test_frameworks.py)
KERAS_CONFIGS = [
    ("float32", dict(lr=1e-3, eps=(1e-30, 1e-3))),
    ("float32", dict(lr=0.05, eps=(1e-30, 1e-3), weight_decay=0.01, d=1.5)),
    ("float64", dict(lr=2.0 ** -6, eps=(2.0 ** -100, 2.0 ** -10), beta2_decay=-0.75,
                     weight_decay=2.0 ** -6, d=1.5)),
]


@pytest.mark.parametrize("dtype,cfg", KERAS_CONFIGS, ids=["f32-default", "f32-wd-clip",
                                                          "f64-exact-hp"])
def test_matches_keras_over_200_steps_with_an_lr_change(dtype, cfg):
    """convention="keras" against keras.optimizers.Adafactor (TF backend), 200 steps,
    the learning rate halved at step 100; fusedopt keeps torch's statistics layout
    (row_var (..., R, 1), col_var (..., 1, C)) for Keras' r (..., R) and c (..., C)."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(12)
    p0 = [np.asarray(rng.standard_normal(s), dtype) for s in KERAS_SHAPES]
    hp = dict(cfg)
    lr, (e1, e2) = hp["lr"], hp["eps"]
    kvars = [keras.Variable(p.copy(), dtype=dtype) for p in p0]
    kopt = keras.optimizers.Adafactor(
        learning_rate=lr, beta_2_decay=hp.get("beta2_decay", -0.8), epsilon_1=e1,
        epsilon_2=e2, clip_threshold=hp.get("d", 1.0),
        weight_decay=hp.get("weight_decay") or None)
    arrays = [p.copy() for p in p0]
    opt = fusedopt.Adafactor(arrays, convention="keras", **hp)
    tol = 1e-6 if dtype == "float32" else 1e-12
    for step in range(200):
        if step == 100:
            kopt.learning_rate = lr / 2
            opt.param_groups[0]["lr"] = lr / 2
        grads = [np.asarray(rng.standard_normal(s) * np.exp(rng.standard_normal()), dtype)
                 for s in KERAS_SHAPES]
        kopt.apply_gradients([(keras.ops.convert_to_tensor(g, dtype=dtype), v)
                              for g, v in zip(grads, kvars)])
        opt.step(grads)
        for a, v in zip(arrays, kvars):
            np.testing.assert_allclose(a, keras.ops.convert_to_numpy(v.value), rtol=tol,
                                       atol=tol, err_msg=f"step {step + 1}")
    assert np.abs(arrays[0] - p0[0]).max() > 1e-3          # the parameters really moved


def test_keras_and_optax_conventions_refuse_torch_only_options():
    p, g, v = np.ones(4), np.ones(4), np.zeros(4)
    for conv in ("keras", "optax"):
        with pytest.raises(ValueError, match=f"maximize=True is a torch option; convention "
                                             f"'{conv}'"):
            fusedopt.adafactor_step(p, g, variance=v, step=1, convention=conv, maximize=True)
    for conv in ("tf1", "sklearn"):
        with pytest.raises(ValueError, match=f"'{conv}' has no Adafactor"):
            fusedopt.adafactor_step(p, g, variance=v, step=1, convention=conv)
    assert (p == 1).all() and (v == 0).all()


def test_huge_gradients_take_torchs_formula():
    """row_var*col_var overflowing float32 makes torch's V infinite and its U = 0; the
    fast row formula (which would stay finite) is not taken then."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    p0 = rng.standard_normal((4, 5)).astype(np.float32)
    g = (rng.standard_normal((4, 5)) * 1e10).astype(np.float32)
    t = torch.nn.Parameter(torch.tensor(p0))
    t.grad = torch.tensor(g)
    torch.optim.Adafactor([t]).step()
    p = p0.copy()
    fusedopt.adafactor_step(p, g, np.zeros((4, 1), np.float32), np.zeros((1, 5), np.float32),
                            step=1)
    np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [[np.zeros((3, 1))], (np.zeros((3, 1)), np.zeros((3, 1))),
                                 np.zeros((3, 1))], ids=["short", "tuple", "array"])
def test_list_call_checks_its_lists_before_reading_them(bad):
    """The binding's list entry (what the classes call) refuses a statistics list that is
    not a list of one entry per parameter, before touching anything."""
    from fusedopt import _core, _spec
    ps = [np.ones((3, 4)), np.ones((3, 4))]
    gs = [np.ones((3, 4)), np.ones((3, 4))]
    cols = [np.zeros((1, 4)), np.zeros((1, 4))]
    with pytest.raises(TypeError, match="row_vars must be None or a list of 2 entries"):
        _core.adafactor([ps, gs, bad, cols, None], {}, _spec.ADAFACTOR.class_defaults, 1)
    assert all((p == 1).all() for p in ps) and all((c == 0).all() for c in cols)


def test_eps1_none_is_each_parameters_own_dtype_epsilon():
    """eps=(None, ...) in a group mixing float32 and float64: fusedopt takes each
    parameter's own machine epsilon (torch takes the first parameter's for the whole
    group; documented on the conventions page)."""
    rng = np.random.default_rng(14)
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5)
    mixed = [a.copy(), b.copy()]
    opt = fusedopt.Adafactor(mixed)
    alone = [fusedopt.Adafactor([a.copy()]), fusedopt.Adafactor([b.copy()])]
    for _ in range(3):
        ga = (rng.standard_normal((3, 4)) * 1e-9).astype(np.float32)
        gb = rng.standard_normal(5) * 1e-9
        opt.step([ga, gb])
        alone[0].step([ga])
        alone[1].step([gb])
    np.testing.assert_array_equal(mixed[0], alone[0].params[0])
    np.testing.assert_array_equal(mixed[1], alone[1].params[0])
    one = fusedopt.Adafactor([b.copy()], eps=(float(np.finfo(np.float32).eps), 1e-3))
    one.step([np.full(5, 1e-9)])
    twin = fusedopt.Adafactor([b.copy()])
    twin.step([np.full(5, 1e-9)])
    assert not np.array_equal(one.params[0], twin.params[0])   # the epsilon matters here


# ----------------------------------------------------------------------------- optax

# factored over the last two, the first two, the outer two (axes between them and
# after), ties; whole-matrix units and row units (a matrix above 16384 elements);
# unfactored matrices (second largest < 128) and vectors
OPTAX_SHAPES = [(), (7,), (300, 64), (200, 130), (130, 200), (128, 128), (130, 3, 140),
                (140, 3, 130), (140, 130, 3), (4, 129, 130), (2, 150, 5, 160, 3),
                (3, 140, 130, 2), (128, 0, 130), (0, 200)]
OPTAX_VARIANTS = [dict(eps=(1e-30, 1e-3)),
                  dict(eps=(1e-30, 1e-3), lr=0.5, weight_decay=0.1, d=2.0, beta2_decay=-0.5),
                  dict(eps=(None, 0.0), lr=1.0)]


def _optax_stats(shape, dtype):
    """Zeros of the statistics fusedopt keeps for a parameter of this shape under the
    optax convention (row_var, col_var, variance), None where it has none."""
    f = R.optax_factored_axes(shape)
    if f is None:
        return [None, None, np.zeros(shape, dtype)]
    a, b, _ = f
    return [np.zeros(tuple(1 if i == b else n for i, n in enumerate(shape)), dtype),
            np.zeros(tuple(1 if i == a else n for i, n in enumerate(shape)), dtype), None]


@pytest.mark.parametrize("kw", OPTAX_VARIANTS, ids=["default", "wd-d-decay", "lr1-eps"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", OPTAX_SHAPES, ids=str)
@pytest.mark.parametrize("threads", THREADS)
def test_optax_matches_reference_bit_for_bit(cpu_path, kw, dtype, shape, threads):
    rng = np.random.default_rng(sum(shape) + len(shape))
    p = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
    for g in grads:
        if p.ndim >= 2 and min(shape) > 2:
            g[1] = 0.0                          # a zero slab: eps1 keeps it finite
    _kernel_equals_reference(p, grads, _optax_stats(shape, dtype), _optax_stats(shape, dtype),
                             threads, convention="optax", **kw)
    assert np.isfinite(p).all()


def test_optax_factoring_is_optaxs_own():
    """Which parameters optax factors and over which axes (its _factored_dims, numpy's
    argsort of the shape, ties included, where numpy's order is not a stable sort's):
    fusedopt's statistics are optax's v_row and v_col with the reduced axis kept as 1."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    from fusedopt import _core, _spec
    shapes = [(5,), (127, 300), (128, 300), (300, 128), (256, 256), (4, 256, 256),
              (256, 128, 256, 3), (128, 128, 2, 2, 1, 1, 1), (300, 2, 256, 256, 1),
              (1, 256, 256, 2, 128, 128), (3, 300, 128, 300, 1, 3)]
    tx = optax.adafactor(1e-2)
    state = tx.init([jax.numpy.zeros(s) for s in shapes])[0]
    group = dict(convention="optax")
    for k, shape in enumerate(shapes):
        names = _spec.ADAFACTOR.param_states(group, shape)
        vr, vc = state.v_row[k].shape, state.v_col[k].shape
        f = _core.adafactor_factoring(shape, "optax")
        assert f == R.optax_factored_axes(shape)
        if state.v[k].shape == shape:
            assert f is None and names == ("variance",), shape
            continue
        assert names == ("row_var", "col_var"), shape
        a, b, norm_cols = f
        row = _spec.ADAFACTOR.shape_of(group, "row_var", shape)
        col = _spec.ADAFACTOR.shape_of(group, "col_var", shape)
        assert row[:b] + row[b + 1:] == (vc if norm_cols else vr), shape
        assert col[:a] + col[a + 1:] == (vr if norm_cols else vc), shape


OPTAX_TRAJ_SHAPES = [(), (7,), (64, 300), (130, 140), (150, 130), (2, 130, 3, 129, 2)]


@pytest.mark.parametrize("dtype,cfg", [
    ("float32", dict(lr=1e-2, eps=(1e-30, 1e-3))),
    ("float32", dict(lr=0.05, eps=(1e-30, 1e-3), weight_decay=0.01, d=1.5)),
    ("float64", dict(lr=2.0 ** -6, eps=(2.0 ** -100, 2.0 ** -10), beta2_decay=-0.75,
                     weight_decay=2.0 ** -6, d=1.5)),
], ids=["f32-default", "f32-wd-clip", "f64-exact-hp"])
def test_matches_optax_over_200_steps_with_an_lr_change(dtype, cfg):
    """convention="optax" against optax.adafactor itself (un-jitted), 200 steps, the
    learning rate halved at step 100: the parameters and the statistics."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    rng = np.random.default_rng(15)
    hp = dict(cfg)
    lr, (e1, e2) = hp["lr"], hp["eps"]

    def make(lr):
        # (multiply_by_parameter_scale's min_scale is optax's fixed 1e-3; fusedopt's
        # eps2 sets it, and this test passes optax's own transformations for another)
        tx = [optax.scale_by_factored_rms(decay_rate=-hp.get("beta2_decay", -0.8),
                                          epsilon=e1),
              optax.clip_by_block_rms(hp.get("d", 1.0)), optax.scale(lr),
              optax.scale_by_param_block_rms(e2)]
        if hp.get("weight_decay"):
            tx.append(optax.add_decayed_weights(hp["weight_decay"]))
        return optax.chain(*tx, optax.scale(-1.0))

    with jax.enable_x64(dtype == "float64"):
        p0 = [np.asarray(rng.standard_normal(s), dtype) for s in OPTAX_TRAJ_SHAPES]
        if e2 == 1e-3 and dtype == "float32":          # optax.adafactor itself, too
            kw = dict(clipping_threshold=hp.get("d", 1.0), eps=e1,
                      weight_decay_rate=hp.get("weight_decay"))
            make = lambda lr: optax.adafactor(lr, **kw)       # noqa: E731
        tx = make(lr)
        params = [jnp.asarray(p) for p in p0]
        state = tx.init(params)
        arrays = [p.copy() for p in p0]
        opt = fusedopt.Adafactor(arrays, convention="optax", **hp)
        tol = 1e-5 if dtype == "float32" else 1e-10
        for step in range(200):
            if step == 100:
                tx = make(lr / 2)
                opt.param_groups[0]["lr"] = lr / 2
            grads = [np.asarray(rng.standard_normal(s) * np.exp(rng.standard_normal()), dtype)
                     for s in OPTAX_TRAJ_SHAPES]
            updates, state = tx.update([jnp.asarray(g) for g in grads], state, params)
            params = optax.apply_updates(params, updates)
            opt.step(grads)
            for a, v in zip(arrays, params):
                assert np.asarray(v).dtype == a.dtype
                np.testing.assert_allclose(a, np.asarray(v), rtol=tol, atol=tol,
                                           err_msg=f"step {step + 1}")
        fs = state[0]
        for k, shape in enumerate(OPTAX_TRAJ_SHAPES):
            st = opt.state[k]
            f = R.optax_factored_axes(shape)
            if f is None:
                np.testing.assert_allclose(st["variance"], np.asarray(fs.v[k]), rtol=tol)
                continue
            a, b, norm_cols = f
            rows, cols = st["row_var"].squeeze(b), st["col_var"].squeeze(a)
            vr, vc = np.asarray(fs.v_row[k]), np.asarray(fs.v_col[k])
            np.testing.assert_allclose(cols if norm_cols else rows, vr, rtol=tol)
            np.testing.assert_allclose(rows if norm_cols else cols, vc, rtol=tol)
    assert np.abs(arrays[3] - p0[3]).max() > 1e-3          # the parameters really moved


@pytest.mark.parametrize("make,pattern", [
    (lambda: (np.ones((130, 140)), None, None, np.zeros((130, 140))),
     r"param of shape \(130, 140\) is factored over its axes 0 and 1 \(optax's rule"),
    (lambda: (np.ones((100, 140)), np.zeros((100, 1)), np.zeros((1, 140)), None),
     r"param of shape \(100, 140\) is not factored \(optax factors a tensor whose second "
     r"largest dimension is at least 128\)"),
    (lambda: (np.ones((140, 3, 130)), np.zeros((140, 3, 130)), np.zeros((1, 3, 130)), None),
     r"row_var must have shape \(140, 3, 1\)"),
    (lambda: (np.ones((140, 3, 130)), np.zeros((140, 3, 1)), np.zeros((140, 1, 130)), None),
     r"col_var must have shape \(1, 3, 130\)"),
])
def test_optax_bad_statistics_change_nothing(make, pattern):
    p, *stats = make()
    with pytest.raises(ValueError, match=pattern):
        fusedopt.adafactor_step(p, np.ones_like(p), *stats, step=1, convention="optax")
    assert (p == 1).all() and not any(a.any() for a in stats if a is not None)


def test_optax_torch_drop_in_equals_the_numpy_class_and_checkpoints(tmp_path):
    """fusedopt.torch.Adafactor(convention="optax") under a scheduler equals the NumPy
    class bit for bit; its state (optax's factoring, fusedopt's layout) goes through
    state_dict and the checkpoint format, and training continues identically."""
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    rng = np.random.default_rng(16)
    shapes = [(130, 3, 140), (64, 300), (5,)]
    p0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ws = [torch.nn.Parameter(torch.tensor(p)) for p in p0]
    hp = dict(lr=0.02, eps=(1e-30, 1e-3), weight_decay=1e-3, convention="optax")
    topt = ft.Adafactor(ws, **hp)
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.5)
    arrays = [p.copy() for p in p0]
    nopt = fusedopt.Adafactor(arrays, **hp)

    def step(grads):
        for w, g in zip(ws, grads):
            w.grad = torch.tensor(g)
        topt.step()
        nopt.param_groups[0]["lr"] = topt.param_groups[0]["lr"]
        nopt.step(grads)
        sched.step()

    for _ in range(3):
        step([rng.standard_normal(s).astype(np.float32) for s in shapes])
    for w, a in zip(ws, arrays):
        np.testing.assert_array_equal(w.detach().numpy(), a)
    st = topt.state[ws[0]]
    assert st["row_var"].shape == (130, 3, 1) and st["col_var"].shape == (1, 3, 140)
    assert sorted(topt.state[ws[1]]) == ["step", "variance"]
    path = tmp_path / "af.ckpt"
    nopt.save(path)
    again = fusedopt.load_optimizer(path)
    ws2 = [torch.nn.Parameter(w.detach().clone()) for w in ws]
    topt2 = ft.Adafactor(ws2, **hp)
    topt2.load_state_dict(copy.deepcopy(topt.state_dict()))
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for w, g in zip(ws2, grads):
        w.grad = torch.tensor(g)
    topt2.step()
    step(grads)
    again.param_groups[0]["lr"] = nopt.param_groups[0]["lr"]
    again.step(grads)
    for w, w2, a, b in zip(ws, ws2, arrays, again.params):
        np.testing.assert_array_equal(w2.detach().numpy(), w.detach().numpy())
        np.testing.assert_array_equal(b, a)
