"""LAMB: the kernel against fusedopt.reference bit for bit (every CPU path, thread count,
dtype, size, convention, with NaN and zero norms), in every form of the package (the
functional step, the NumPy class, fusedopt.torch, checkpoints), and its errors.  The
frameworks' own LAMB (optax.lamb, keras.optimizers.Lamb) are in test_frameworks.py."""
import io
import math

import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R

from conftest import DTYPES, SIZES, THREADS

CONVENTIONS = ["torch", "optax", "keras"]
BLOCK = 16384


def _inputs(n, dtype, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) * 10.0 ** k for k in range(-2, 2)]
    return p, grads


def _run(fn, p, grads, m, v, **kw):
    for t, g in enumerate(grads, start=1):
        fn(p, g, m, v, step=t, **kw)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES + [3 * BLOCK + 5])
@pytest.mark.parametrize("threads", THREADS)
def test_matches_reference_bit_for_bit(cpu_path, convention, wd, dtype, n, threads):
    p, grads = _inputs(n, dtype, n)
    m, v = np.zeros_like(p), np.zeros_like(p)
    q, mm, vv = p.copy(), m.copy(), v.copy()
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=wd, convention=convention)
    _run(fusedopt.lamb_step, p, grads, m, v, n_threads=threads, **kw)
    _run(R.lamb_step, q, grads, mm, vv, **kw)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(m, mm)
    np.testing.assert_array_equal(v, vv)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_nan_and_zero_norms(convention):
    """A NaN gradient makes the whole tensor NaN (its norm is NaN) in optax's rule and
    leaves the ratio at 1 in Keras'; a zero parameter or a zero update has ratio 1."""
    p = np.zeros(21, np.float32)                    # ||p|| = 0: r = 1, the Adam step
    g = np.linspace(-1, 1, 21).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    fusedopt.lamb_step(p, g, m, v, step=1, lr=0.1, convention=convention)
    q, mm, vv = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    fusedopt.adam_step(q, g, mm, vv, step=1, lr=0.1, eps=1e-6, convention="optax")
    np.testing.assert_allclose(p, q, rtol=2e-7)
    assert (p != 0).sum() == 20 and p[10] == 0 and g[10] == 0
    w = np.ones(5)                                  # ||u|| = 0: r = 1, w unchanged
    fusedopt.lamb_step(w, np.zeros(5), np.zeros(5), np.zeros(5), step=1,
                       convention=convention)
    assert (w == 1).all()
    x, gx = np.ones(5), np.ones(5)
    gx[2] = np.nan
    qx = x.copy()
    fusedopt.lamb_step(x, gx, np.zeros(5), np.zeros(5), step=1, lr=0.1,
                       convention=convention)
    R.lamb_step(qx, gx, np.zeros(5), np.zeros(5), step=1, lr=0.1, convention=convention)
    np.testing.assert_array_equal(x, qx)
    assert np.isnan(x).all() if convention != "keras" else np.isnan(x).sum() == 1


def test_by_hand():
    """One step by hand: u = m_hat/(sqrt(v_hat) + eps) = g/(|g| + eps) at step 1, the
    trust ratio ||p||/||u||."""
    p = np.array([3.0, 4.0])
    g = np.array([0.5, -2.0])
    fusedopt.lamb_step(p, g, np.zeros(2), np.zeros(2), step=1, lr=0.1, eps=0.0)
    r = 5.0 / math.sqrt(2.0)
    np.testing.assert_allclose(p, [3.0 - 0.1 * r, 4.0 + 0.1 * r], rtol=1e-15)
    q = np.array([3.0, 4.0])                        # optax's decay inside the norm
    fusedopt.lamb_step(q, g, np.zeros(2), np.zeros(2), step=1, lr=0.1, eps=0.0,
                       weight_decay=0.5)
    u = np.array([1.0 + 1.5, -1.0 + 2.0])
    np.testing.assert_allclose(q, [3.0, 4.0] - 0.1 * (5.0 / np.linalg.norm(u)) * u,
                               rtol=1e-15)


def test_torch_convention_is_optax_lamb():
    """The default convention against optax.lamb itself (the "optax" convention is
    compared in test_frameworks.py): 30 float32 steps with weight decay."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp
    p, _ = _inputs(1000, np.float32, 1)
    rng = np.random.default_rng(5)
    grads = [rng.standard_normal(1000).astype(np.float32) for _ in range(30)]
    m, v = np.zeros_like(p), np.zeros_like(p)
    tx = optax.lamb(1e-2, weight_decay=0.01)
    params = jnp.asarray(p)
    state = tx.init(params)
    _run(fusedopt.lamb_step, p, grads, m, v, lr=1e-2, weight_decay=0.01)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(p, np.asarray(params), rtol=1e-6, atol=1e-6)
    assert np.abs(p - _inputs(1000, np.float32, 1)[0]).max() > 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", THREADS)
def test_class_equals_functional_over_many_tensors(dtype, threads):
    """Each tensor its own trust ratio, in one call."""
    shapes = [(3, 4), (0,), (17,), (2 * BLOCK + 3,), (1,)]
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = [p.copy() for p in params]
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    opt = fusedopt.LAMB(params, lr=0.01, betas=(0.8, 0.95), weight_decay=0.05)
    for t in range(1, 6):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        assert opt.step(grads, n_threads=threads)
        for p, g, m, v in zip(ref, grads, ms, vs):
            fusedopt.lamb_step(p, g, m, v, step=t, lr=0.01, betas=(0.8, 0.95),
                               weight_decay=0.05)
    for k, (p, r) in enumerate(zip(params, ref)):
        np.testing.assert_array_equal(p, r)
        np.testing.assert_array_equal(opt.state[k]["exp_avg"], ms[k])
        np.testing.assert_array_equal(opt.state[k]["exp_avg_sq"], vs[k])
        assert opt.state[k]["step"] == 5


def test_state_dict_and_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(10).astype(np.float32) for _ in range(2)]
    opt = fusedopt.LAMB(params, lr=0.01, convention="keras", eps=1e-7)
    opt.step([np.ones(10, np.float32)] * 2)
    assert set(opt.state[0]) == {"step", "exp_avg", "exp_avg_sq"}
    path = tmp_path / "lamb.ckpt"
    opt.save(path)
    resumed = fusedopt.load_optimizer(path)
    assert type(resumed).__name__ == "LAMB"
    assert resumed.param_groups[0]["convention"] == "keras"
    g = [rng.standard_normal(10).astype(np.float32) for _ in range(2)]
    opt.step(g)
    resumed.step(g)
    for a, b in zip(opt.params, resumed.params):
        np.testing.assert_array_equal(a, b)
    other = fusedopt.LAMB([p.copy() for p in params], lr=0.5)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(lr=-1.0), ValueError, r"Invalid learning rate: -1\.0"),
    (dict(lr=float("nan")), ValueError, r"lr must be finite"),
    (dict(betas=(0.9, 1.0)), ValueError, r"Invalid beta parameter at index 1"),
    (dict(betas=(-0.1, 0.9)), ValueError, r"Invalid beta parameter at index 0"),
    (dict(betas=0.9), TypeError, r"betas must be a pair"),
    (dict(eps=-1e-6), ValueError, r"epsilon"),
    (dict(weight_decay=-0.1), ValueError, r"weight_decay"),
    (dict(convention="tf1"), ValueError, r"'tf1' has no LAMB"),
    (dict(convention="sklearn"), ValueError, r"'sklearn' has no LAMB"),
    (dict(convention="jax"), ValueError, r"convention must be one of"),
    (dict(maximize=True), TypeError, r"unexpected keyword argument 'maximize'"),
])
def test_bad_hyper_parameters_change_nothing(kw, exc, pattern):
    p, g, m, v = np.ones(5), np.ones(5), np.full(5, 0.5), np.full(5, 0.25)
    with pytest.raises(exc, match=pattern):
        fusedopt.lamb_step(p, g, m, v, step=1, **kw)
    assert (p == 1).all() and (m == 0.5).all() and (v == 0.25).all()
    if "maximize" not in kw:
        with pytest.raises(exc, match=pattern):
            fusedopt.LAMB([p], **kw)


@pytest.mark.parametrize("make,exc,pattern", [
    (lambda p: (p, np.ones(4), np.zeros(5), np.zeros(5)), ValueError,
     r"grad must have the shape of param"),
    (lambda p: (p, np.ones(5, np.float32), np.zeros(5), np.zeros(5)), TypeError,
     r"grad must have the dtype"),
    (lambda p: (p, np.ones(5), p, np.zeros(5)), ValueError, r"share memory"),
    (lambda p: (p, np.ones(5), np.zeros(5), None), TypeError,
     r"exp_avg_sq must be a numpy\.ndarray"),
    (lambda p: (p, np.ones(5), np.zeros(5), np.zeros(10)[::2]), ValueError, r"C-contiguous"),
])
def test_bad_arrays_change_nothing(make, exc, pattern):
    p = np.ones(5)
    args = make(p)
    with pytest.raises(exc, match=pattern):
        fusedopt.lamb_step(*args, step=1, lr=0.1)
    assert (p == 1).all()
    with pytest.raises(TypeError, match="exp_avg is required"):
        fusedopt.lamb_step(p, np.ones(5), step=1)
    with pytest.raises(TypeError, match="missing required keyword argument 'step'"):
        fusedopt.lamb_step(p, np.ones(5), np.zeros(5), np.zeros(5))
    ro = np.zeros(5)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"exp_avg.*(writeable|read-only)"):
        fusedopt.lamb_step(p, np.ones(5), ro, np.zeros(5), step=1)
    assert (p == 1).all()


def test_torch_drop_in_matches_the_numpy_class_with_a_scheduler():
    """No torch.optim.LAMB exists: fusedopt.torch.LAMB on an MLP with StepLR equals the
    NumPy class fed the same gradients, bit for bit, through a state-dict round trip."""
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    X, y = torch.randn(64, 6), torch.randn(64, 1)
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    opt = ft.LAMB(model.parameters(), 1e-2, (0.9, 0.999), 1e-6, 0.01)  # torch-style
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    ours = fusedopt.LAMB(arrays, lr=1e-2, weight_decay=0.01)
    for i in range(12):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), y).backward()
        grads = [p.grad.numpy().copy() for p in model.parameters()]
        opt.step()
        ours.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
        ours.step(grads)
        sched.step()
        if i == 6:                                   # through a checkpoint
            buf = io.BytesIO()
            torch.save(opt.state_dict(), buf)
            buf.seek(0)
            opt.load_state_dict(torch.load(buf, weights_only=True))
    for p, a in zip(model.parameters(), arrays):
        np.testing.assert_array_equal(p.detach().numpy(), a)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert float(sd["state"][0]["step"]) == 12.0
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
