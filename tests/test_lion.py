"""Lion: the kernel against fusedopt.reference bit for bit (every CPU path, thread count,
dtype, size, convention, with NaN and signed zeros), in every form of the package (the
functional step, the NumPy class, fusedopt.torch, checkpoints), and its errors.  The
frameworks' own Lion (optax.lion, keras.optimizers.Lion) are in test_frameworks.py."""
import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R

from conftest import DTYPES, SIZES, THREADS

CONVENTIONS = ["torch", "optax", "keras"]


def _inputs(n, dtype, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    if n >= 4:   # sign(0) = 0 with its sign, sign(NaN) = NaN
        grads[0][:4] = [0.0, -0.0, np.nan, 1e-30]
    return p, grads


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
def test_matches_reference_bit_for_bit(cpu_path, convention, wd, dtype, n, threads):
    p, grads = _inputs(n, dtype, n)
    m = np.zeros_like(p)
    q, mm = p.copy(), m.copy()
    for g in grads:
        fusedopt.lion_step(p, g, m, lr=0.01, betas=(0.9, 0.99), weight_decay=wd,
                           convention=convention, n_threads=threads)
        R.lion_step(q, g, mm, lr=0.01, betas=(0.9, 0.99), weight_decay=wd,
                    convention=convention)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(m, mm)
    if n >= 4:
        assert np.isnan(p[2]) and np.isnan(m[2])


def test_torch_convention_is_optax_rule():
    p, grads = _inputs(1000, np.float32, 1)
    a, b = p.copy(), p.copy()
    ma, mb = np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        fusedopt.lion_step(a, g, ma, lr=1e-3, weight_decay=1e-3)
        fusedopt.lion_step(b, g, mb, lr=1e-3, weight_decay=1e-3, convention="optax")
    np.testing.assert_array_equal(a, b)


def test_keras_rounds_one_minus_beta_in_the_variable_dtype():
    """keras: 1 - float32(0.99) = 0.00999999f, optax: float32(1 - 0.99) = 0.01f; the
    momentum differs in the last bits (and only there)."""
    g = np.full(8, 3.0, np.float32)
    mk, mo = np.zeros(8, np.float32), np.zeros(8, np.float32)
    fusedopt.lion_step(np.zeros(8, np.float32), g, mk, convention="keras")
    fusedopt.lion_step(np.zeros(8, np.float32), g, mo, convention="optax")
    assert mk[0] == np.float32(1 - np.float32(0.99)) * np.float32(3)
    assert mo[0] == np.float32(1 - 0.99) * np.float32(3)
    assert mk[0] != mo[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_equals_functional_over_many_tensors(dtype):
    shapes = [(3, 4), (0,), (17,), (1000,)]
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = [p.copy() for p in params]
    moms = [np.zeros_like(p) for p in params]
    opt = fusedopt.Lion(params, lr=0.01, betas=(0.8, 0.95), weight_decay=0.05)
    for _ in range(5):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        assert opt.step(grads)
        for p, g, m in zip(ref, grads, moms):
            fusedopt.lion_step(p, g, m, lr=0.01, betas=(0.8, 0.95), weight_decay=0.05)
    for k, (p, r) in enumerate(zip(params, ref)):
        np.testing.assert_array_equal(p, r)
        np.testing.assert_array_equal(opt.state[k]["exp_avg"], moms[k])
        assert opt.state[k]["step"] == 5


def test_state_dict_and_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(10).astype(np.float32) for _ in range(2)]
    opt = fusedopt.Lion(params, lr=0.01, convention="keras")
    opt.step([np.ones(10, np.float32)] * 2)
    assert set(opt.state[0]) == {"step", "exp_avg"}
    path = tmp_path / "lion.ckpt"
    opt.save(path)
    resumed = fusedopt.load_optimizer(path)
    assert type(resumed).__name__ == "Lion"
    assert resumed.param_groups[0]["convention"] == "keras"
    g = [rng.standard_normal(10).astype(np.float32) for _ in range(2)]
    opt.step(g)
    resumed.step(g)
    for a, b in zip(opt.params, resumed.params):
        np.testing.assert_array_equal(a, b)
    other = fusedopt.Lion([p.copy() for p in params], lr=0.5)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(lr=-1.0), ValueError, r"Invalid learning rate: -1\.0"),
    (dict(betas=(0.9, 1.0)), ValueError, r"Invalid beta parameter at index 1"),
    (dict(betas=0.9), TypeError, r"betas must be a pair"),
    (dict(weight_decay=-0.1), ValueError, r"weight_decay"),
    (dict(convention="tf1"), ValueError, r"'tf1' has no Lion"),
    (dict(convention="sklearn"), ValueError, r"'sklearn' has no Lion"),
    (dict(convention="jax"), ValueError, r"convention must be one of"),
    (dict(eps=1e-8), TypeError, r"unexpected keyword argument 'eps'"),
])
def test_bad_hyper_parameters_change_nothing(kw, exc, pattern):
    p, g, m = np.ones(5), np.ones(5), np.full(5, 0.5)
    with pytest.raises(exc, match=pattern):
        fusedopt.lion_step(p, g, m, **kw)
    assert (p == 1).all() and (m == 0.5).all()
    if "eps" not in kw:
        with pytest.raises(exc, match=pattern):
            fusedopt.Lion([p], **kw)


@pytest.mark.parametrize("make,exc,pattern", [
    (lambda p: (p, np.ones(4), np.zeros(5)), ValueError,
     r"grad must have the shape of param"),
    (lambda p: (p, np.ones(5, np.float32), np.zeros(5)), TypeError, r"grad must have the dtype"),
    (lambda p: (p, np.ones(5), p), ValueError, r"share memory"),
    (lambda p: (p, np.ones(5), None), TypeError, r"exp_avg must be a numpy\.ndarray"),
    (lambda p: (p, np.ones(5), np.zeros(5)[::-1].copy()[::2]), ValueError, r"C-contiguous"),
])
def test_bad_arrays_change_nothing(make, exc, pattern):
    p = np.ones(5)
    args = make(p)
    with pytest.raises(exc, match=pattern):
        fusedopt.lion_step(*args, lr=0.1)
    assert (p == 1).all()
    with pytest.raises(TypeError, match="exp_avg is required"):
        fusedopt.lion_step(p, np.ones(5), lr=0.1)


def test_torch_drop_in():
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    rng = np.random.default_rng(4)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    w = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = ft.Lion([w], 1e-2, (0.9, 0.99), 0.1)          # torch-style positional arguments
    p, m = w0.copy(), np.zeros_like(w0)
    for _ in range(3):
        g = rng.standard_normal((4, 3)).astype(np.float32)
        w.grad = torch.from_numpy(g.copy())
        opt.step()
        fusedopt.lion_step(p, g, m, lr=1e-2, weight_decay=0.1)
    np.testing.assert_array_equal(w.detach().numpy(), p)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "exp_avg"}
    assert float(sd["state"][0]["step"]) == 3.0
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"].numpy(), m)
    assert sd["param_groups"][0]["betas"] == (0.9, 0.99)
    again = ft.Lion([torch.nn.Parameter(torch.from_numpy(w0.copy()))], lr=1.0)
    again.load_state_dict(sd)
    assert again.param_groups[0]["lr"] == 1e-2
