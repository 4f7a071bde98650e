"""Optimizer kernels against fusedopt.reference: trajectories, sizes, CPU paths, threads,
and the stateful classes.

The kernels and the reference perform the same IEEE operations in the same order in the
parameter's dtype (contraction is off in the C build), so results are compared bit for
bit: any difference is a real divergence of formula or order, not noise.
"""
import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R

from conftest import CPU_PATHS, DTYPES, SIZES, THREADS

ADAM_CASES = [
    ("torch", {}),
    ("torch", dict(lr=0.01)),
    ("torch", dict(weight_decay=0.1)),
    ("torch", dict(weight_decay=0.1, maximize=True)),
    ("torch", dict(weight_decay=0.1, amsgrad=True)),
    ("torch", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("torch", dict(weight_decay=0.1, decoupled_weight_decay=True, amsgrad=True)),
    ("torch", dict(betas=(0.6, 0.9), eps=0.1)),           # lerp weight >= 0.5 branch
    ("torch", dict(betas=(0.0, 0.5))),
    ("tf1", {}),
    ("tf1", dict(eps=0.1, lr=0.05)),
    ("keras", dict(eps=1e-7)),
    ("keras", dict(eps=1e-7, amsgrad=True)),
    ("keras", dict(eps=1e-7, weight_decay=0.004, decoupled_weight_decay=True)),
    ("optax", {}),
    ("optax", dict(eps_root=1e-8)),
    ("optax", dict(amsgrad=True)),
    ("optax", dict(weight_decay=1e-4, decoupled_weight_decay=True)),
    ("optax", dict(weight_decay=1e-2, decoupled_weight_decay=True, amsgrad=True)),
    ("sklearn", {}),
]

SGD_CASES = [
    ("torch", dict(lr=1e-3)),
    ("torch", dict(lr=1e-2)),
    ("torch", dict(lr=0.01, momentum=0.9)),
    ("torch", dict(lr=0.01, momentum=0.9, dampening=0.5)),
    ("torch", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("torch", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("torch", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("torch", dict(lr=0.01, momentum=0.9, weight_decay=0.1, maximize=True)),
    ("tf1", dict(lr=0.01)),
    ("tf1", dict(lr=0.01, momentum=0.9)),
    ("tf1", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("keras", dict(lr=0.01)),
    ("keras", dict(lr=0.01, momentum=0.9)),
    ("keras", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("keras", dict(lr=0.01, weight_decay=0.01)),
    ("optax", dict(lr=0.01)),
    ("optax", dict(lr=0.01, momentum=0.9)),
    ("optax", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("sklearn", dict(lr=0.01, momentum=0.9)),
    ("sklearn", dict(lr=0.01, momentum=0.9, nesterov=True)),
]


def case_id(case):
    conv, kw = case
    return conv + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "")


def adam_run(mod, p0, grads, conv, kw, **extra):
    p = p0.copy()
    m, v, vm = (np.zeros_like(p0) for _ in range(3))
    ams = kw.get("amsgrad", False)
    for t, g in enumerate(grads, 1):
        mod.adam_step(p, g, m, v, step=t, convention=conv,
                      max_exp_avg_sq=vm if ams else None, **kw, **extra)
    return p, m, v, vm


def sgd_run(mod, p0, grads, conv, kw, **extra):
    p = p0.copy()
    buf = np.zeros_like(p0)
    mom = kw.get("momentum", 0) != 0
    for t, g in enumerate(grads, 1):
        mod.sgd_step(p, g, buf if mom else None, step=t, convention=conv, **kw, **extra)
    return p, buf


def data(n, dtype, steps, seed=0):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(steps)]
    if n:
        for g in grads[::7]:
            g[: max(1, n // 10)] = 0          # zero gradients: the eps path
    return p0, grads


def assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ADAM_CASES, ids=case_id)
def test_adam_trajectory(case, dtype):
    conv, kw = case
    p0, grads = data(1000, dtype, 150)
    assert_same(adam_run(fusedopt, p0, grads, conv, kw), adam_run(R, p0, grads, conv, kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SGD_CASES, ids=case_id)
def test_sgd_trajectory(case, dtype):
    conv, kw = case
    p0, grads = data(1000, dtype, 150)
    assert_same(sgd_run(fusedopt, p0, grads, conv, kw), sgd_run(R, p0, grads, conv, kw))


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_sizes_paths_threads(cpu_path, dtype, n, n_threads):
    p0, grads = data(n, dtype, 3)
    for conv, kw in (ADAM_CASES[6], ADAM_CASES[9], ADAM_CASES[18]):
        assert_same(adam_run(fusedopt, p0, grads, conv, kw, n_threads=n_threads),
                    adam_run(R, p0, grads, conv, kw))


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_sizes_paths_threads(cpu_path, dtype, n, n_threads):
    p0, grads = data(n, dtype, 3)
    for conv, kw in (SGD_CASES[5], SGD_CASES[3], SGD_CASES[13], SGD_CASES[1]):
        assert_same(sgd_run(fusedopt, p0, grads, conv, kw, n_threads=n_threads),
                    sgd_run(R, p0, grads, conv, kw))


def test_adam_step_is_noop_for_zero_grads():
    # torch's test_step_is_noop_for_zero_grads: m = v = 0 gives 0/(0 + eps) = 0
    p = np.linspace(-1, 1, 50)
    p0 = p.copy()
    for conv in ("torch", "tf1", "keras", "optax", "sklearn"):
        adam_run(fusedopt, p, [np.zeros_like(p)] * 3, conv, {})
        np.testing.assert_array_equal(p, p0)


def test_adam_first_step_is_about_sign():
    # Keras test_single_step: lr=0.5, g=[1,6,7,2], p=[1,2,3,4] -> [0.5,1.5,2.5,3.5]
    for conv in ("torch", "tf1", "keras", "optax", "sklearn"):
        p = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
        fusedopt.adam_step(p, np.array([1, 6, 7, 2], np.float32), np.zeros(4, np.float32),
                           np.zeros(4, np.float32), step=1, lr=0.5, convention=conv)
        np.testing.assert_allclose(p, [0.5, 1.5, 2.5, 3.5], rtol=1e-4)


def test_large_step_counts():
    # b^t underflows to 0: bias corrections become exactly 1
    for conv in ("torch", "tf1", "keras", "optax", "sklearn"):
        p0, grads = data(33, np.float64, 1)
        a = [p0.copy()] + [np.full(33, 0.1) for _ in range(2)]
        b = [x.copy() for x in a]
        fusedopt.adam_step(a[0], grads[0], a[1], a[2], step=10**6, convention=conv)
        R.adam_step(b[0], grads[0], b[1], b[2], step=10**6, convention=conv)
        assert_same(a, b)


@pytest.mark.parametrize("conv,kw,msg", [
    ("tf1", dict(weight_decay=0.1), "weight decay"),
    ("tf1", dict(amsgrad=True), "amsgrad"),
    ("sklearn", dict(weight_decay=0.1), "weight decay"),
    ("keras", dict(weight_decay=0.1), "decoupled"),
    ("optax", dict(weight_decay=0.1), "decoupled"),
    ("keras", dict(maximize=True), "maximize"),
    ("torch", dict(eps_root=1e-8), "eps_root"),
    ("jax", {}, "convention"),
])
def test_adam_convention_options_rejected(conv, kw, msg):
    p = np.ones(3)
    state = [np.zeros(3) for _ in range(3)]
    with pytest.raises(ValueError, match=msg):
        fusedopt.adam_step(p, np.ones(3), state[0], state[1], step=1, convention=conv,
                           max_exp_avg_sq=state[2], **kw)
    np.testing.assert_array_equal(p, 1.0)


@pytest.mark.parametrize("conv,kw,msg", [
    ("keras", dict(momentum=0.9, dampening=0.5), "dampening"),
    ("tf1", dict(weight_decay=0.1), "weight decay"),
    ("optax", dict(maximize=True), "maximize"),
    ("torch", dict(nesterov=True), "Nesterov"),
    ("torch", dict(momentum=0.9, nesterov=True, dampening=0.1), "Nesterov"),
])
def test_sgd_convention_options_rejected(conv, kw, msg):
    p = np.ones(3)
    with pytest.raises(ValueError, match=msg):
        fusedopt.sgd_step(p, np.ones(3), np.zeros(3), lr=0.1, step=1, convention=conv, **kw)
    np.testing.assert_array_equal(p, 1.0)


def test_torch_momentum_needs_step():
    with pytest.raises(ValueError, match="step"):
        fusedopt.sgd_step(np.ones(3), np.ones(3), np.zeros(3), lr=0.1, momentum=0.9)


# ----------------------------------------------------------------------------- classes

def class_vs_reference(make_opt, ref_step, params0, grads_seq):
    params = [p.copy() for p in params0]
    opt = make_opt(params)
    ref = [p.copy() for p in params0]
    ref_state = [None] * len(params0)
    for grads in grads_seq:
        opt.step(grads)
        ref_step(ref, grads, ref_state)
    return params, ref, opt


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ADAM_CASES, ids=case_id)
def test_adam_class_matches_functional_reference(case, dtype):
    conv, kw = dict(case[0:1] and [case]) and case
    kw = dict(kw)
    decoupled = kw.pop("decoupled_weight_decay", False)
    cls = fusedopt.AdamW if decoupled else fusedopt.Adam
    if cls is fusedopt.AdamW and "weight_decay" not in kw:
        kw["weight_decay"] = 1e-2
    rng = np.random.default_rng(5)
    params0 = [rng.standard_normal(s).astype(dtype) for s in ((3, 4), (17,), (2, 2, 2))]
    grads_seq = []
    for k in range(40):
        gs = [rng.standard_normal(p.shape).astype(dtype) for p in params0]
        if k % 5 == 2:
            gs[1] = None                   # skipped: no state change, no step count
        grads_seq.append(gs)

    def ref_step(ref, grads, state):
        for i, g in enumerate(grads):
            if g is None:
                continue
            if state[i] is None:
                state[i] = [0] + [np.zeros_like(ref[i]) for _ in range(3)]
            state[i][0] += 1
            R.adam_step(ref[i], g, state[i][1], state[i][2], step=state[i][0],
                        decoupled_weight_decay=decoupled or (conv == "keras" and
                                                             kw.get("weight_decay", 0) != 0),
                        max_exp_avg_sq=state[i][3], convention=conv, **kw)

    params, ref, opt = class_vs_reference(lambda ps: cls(ps, convention=conv, **kw), ref_step,
                                          params0, grads_seq)
    assert_same(params, ref)
    assert opt.state[0]["step"] == 40 and opt.state[1]["step"] == 32


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SGD_CASES, ids=case_id)
def test_sgd_class_matches_functional_reference(case, dtype):
    conv, kw = case
    rng = np.random.default_rng(6)
    params0 = [rng.standard_normal(s).astype(dtype) for s in ((5,), (3, 3))]
    grads_seq = [[rng.standard_normal(p.shape).astype(dtype) if k % 4 != 1 or i == 0 else None
                  for i, p in enumerate(params0)] for k in range(30)]

    def ref_step(ref, grads, state):
        for i, g in enumerate(grads):
            if g is None:
                continue
            if state[i] is None:
                state[i] = [0, np.zeros_like(ref[i])]
            state[i][0] += 1
            R.sgd_step(ref[i], g, state[i][1], step=state[i][0], convention=conv, **kw)

    params, ref, _ = class_vs_reference(lambda ps: fusedopt.SGD(ps, convention=conv, **kw),
                                        ref_step, params0, grads_seq)
    assert_same(params, ref)


def test_lr_schedule_between_steps():
    p = np.ones(10)
    r = np.ones(10)
    opt = fusedopt.Adam([p], lr=0.1)
    m, v = np.zeros(10), np.zeros(10)
    for t in range(1, 21):
        g = np.full(10, np.sin(t))
        opt.param_groups[0]["lr"] = 0.1 * 0.9 ** t
        opt.step([g])
        R.adam_step(r, g, m, v, step=t, lr=0.1 * 0.9 ** t)
    np.testing.assert_array_equal(p, r)


@pytest.mark.parametrize("make", [
    lambda ps: fusedopt.Adam(ps, lr=0.01, amsgrad=True),
    lambda ps: fusedopt.AdamW(ps, lr=0.01, convention="optax"),
    lambda ps: fusedopt.SGD(ps, lr=0.01, momentum=0.9, nesterov=True),
    lambda ps: fusedopt.SGD(ps, lr=0.01),
], ids=["adam-amsgrad", "adamw-optax", "sgd-nesterov", "sgd-plain"])
def test_state_dict_round_trip_continues_identically(make):
    rng = np.random.default_rng(7)
    p0 = [rng.standard_normal(8).astype(np.float32), rng.standard_normal((2, 3))]
    gseq = [[rng.standard_normal(p.shape).astype(p.dtype) for p in p0] for _ in range(20)]
    a = [p.copy() for p in p0]
    oa = make(a)
    for g in gseq[:10]:
        oa.step(g)
    sd = oa.state_dict()
    b = [p.copy() for p in a]
    ob = make(b)
    ob.load_state_dict(sd)
    for g in gseq[10:]:
        oa.step(g)
        ob.step(g)
    assert_same(a, b)
    # the state dict is a copy: later steps do not change it
    sd2 = ob.state_dict()
    assert sd2["state"][0]["step"] == 20 and sd["state"][0]["step"] == 10


def test_load_state_dict_rejects_mismatches():
    p = [np.ones(4), np.ones(3)]
    opt = fusedopt.Adam(p)
    opt.step([np.ones(4), np.ones(3)])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="kind|SGD"):
        fusedopt.SGD([np.ones(4), np.ones(3)]).load_state_dict(sd)
    bad = opt.state_dict()
    bad["state"][1]["exp_avg"] = np.zeros(5)
    with pytest.raises(ValueError, match="shape"):
        fusedopt.Adam([np.ones(4), np.ones(3)]).load_state_dict(bad)
    bad = opt.state_dict()
    del bad["state"][0]["exp_avg_sq"]
    with pytest.raises(ValueError, match="entries"):
        fusedopt.Adam([np.ones(4), np.ones(3)]).load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"][0]["extra"] = np.zeros(4)
    with pytest.raises(ValueError, match="entries"):
        fusedopt.Adam([np.ones(4), np.ones(3)]).load_state_dict(bad)
    fresh = fusedopt.Adam([np.ones(4), np.ones(3)])
    before = fresh.state_dict()
    bad = opt.state_dict()
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate"):
        fresh.load_state_dict(bad)
    assert fresh.state_dict()["param_groups"] == before["param_groups"]


def test_param_groups_have_their_own_hyper_parameters():
    a, b = np.ones(4), np.ones(4)
    opt = fusedopt.SGD([{"params": [a], "lr": 0.5}, {"params": [b]}], lr=0.1)
    opt.step([np.ones(4), np.ones(4)])
    np.testing.assert_array_equal(a, 0.5)
    np.testing.assert_allclose(b, 0.9)


def test_class_step_failure_changes_nothing():
    ps = [np.ones(4, np.float32), np.ones(3), np.ones(2, np.float32), np.ones(5),
          np.ones(6, np.float32)]
    opt = fusedopt.Adam(ps, lr=0.1)
    good = [np.ones_like(p) for p in ps]
    opt.step(good)
    snap = [p.copy() for p in ps]
    sd = opt.state_dict()
    bad = list(good)
    bad[4] = np.ones(6, np.float64)        # the 5th tensor (second float32 batch) is wrong
    with pytest.raises(TypeError, match=r"grad\[2\]|dtype"):
        opt.step(bad)
    assert_same(ps, snap)
    after = opt.state_dict()
    for i in sd["state"]:
        assert after["state"][i]["step"] == sd["state"][i]["step"]
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(after["state"][i][k], sd["state"][i][k])


def test_class_rejects_bad_params_and_hyper_parameters():
    with pytest.raises(TypeError, match="float32 or float64"):
        fusedopt.Adam([np.ones(3, dtype=np.int64)])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        fusedopt.Adam([np.ones(3)], lr=-1)
    with pytest.raises(ValueError, match="beta parameter at index 0"):
        fusedopt.Adam([np.ones(3)], betas=(1.0, 0.0))
    with pytest.raises(ValueError, match="weight_decay"):
        fusedopt.SGD([np.ones(3)], weight_decay=-1)
    with pytest.raises(ValueError, match="convention"):
        fusedopt.SGD([np.ones(3)], convention="mxnet")
    with pytest.raises(ValueError, match="weight decay"):
        fusedopt.AdamW([np.ones(3)], convention="tf1")
    with pytest.raises(ValueError, match="gradients"):
        fusedopt.SGD([np.ones(3)]).step([np.ones(3), np.ones(3)])


@pytest.mark.parametrize("shift", [0, 1, 3, 7, 15])
@pytest.mark.parametrize("dtype", DTYPES)
def test_misaligned_arrays_across_blocks(dtype, shift):
    # Block boundaries follow the parameter's cache-line alignment: every element is still
    # updated exactly once, on any thread count.
    n = 3 * 16384 + 5
    rng = np.random.default_rng(shift)

    def view():
        base = np.empty(n + 16, dtype)
        a = base[shift:shift + n]
        a[...] = rng.standard_normal(n)
        return a

    p, g = view(), view()
    m, v = view(), view()
    v[...] = np.abs(v)
    ref = [x.copy() for x in (p, g, m, v)]
    fusedopt.adam_step(p, g, m, v, step=4, n_threads=2)
    R.adam_step(ref[0], ref[1], ref[2], ref[3], step=4)
    assert_same((p, m, v), (ref[0], ref[2], ref[3]))
    buf = view()
    rb = buf.copy()
    fusedopt.sgd_step(p, g, buf, lr=0.1, momentum=0.9, step=2, n_threads=2)
    R.sgd_step(ref[0], ref[1], rb, lr=0.1, momentum=0.9, step=2)
    assert_same((p, buf), (ref[0], rb))


# ----------------------------------------------------------------------------- non-finite

@pytest.mark.parametrize("dtype", DTYPES)
def test_unscale_and_check(dtype):
    rng = np.random.default_rng(9)
    grads = [rng.standard_normal(n).astype(dtype) for n in (1, 17, 100003, 64)]
    ref = [g * dtype(0.125) for g in grads]
    assert fusedopt.unscale_and_check(grads, 0.125, n_threads=2) is False
    assert_same(grads, ref)
    assert fusedopt.all_finite(grads)
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, 50000, 100002):
            g = [x.copy() for x in grads]
            g[2][where] = bad
            assert fusedopt.unscale_and_check(g, 1.0, n_threads=2) is True
            assert not fusedopt.all_finite(g)
    # overflow by the scale itself counts as non-finite
    big = [np.full(4, np.finfo(dtype).max / 2, dtype)]
    assert fusedopt.unscale_and_check(big, 4.0) is True


def test_check_finite_skips_the_whole_step():
    ps = [np.ones(5), np.ones(70000)]
    opt = fusedopt.Adam(ps, lr=0.1, check_finite=True)
    assert opt.step([np.ones(5), np.ones(70000)]) is True
    snap, sd = [p.copy() for p in ps], opt.state_dict()
    g = [np.ones(5), np.ones(70000)]
    g[1][-1] = np.nan
    assert opt.step(g) is False
    assert opt.skipped_steps == 1
    assert_same(ps, snap)
    assert opt.state_dict()["state"][1]["step"] == sd["state"][1]["step"]
    # default: IEEE propagation, as the frameworks do
    q = [np.ones(3)]
    fusedopt.Adam(q).step([np.array([np.nan, 1.0, 1.0])])
    assert np.isnan(q[0][0]) and np.isfinite(q[0][1:]).all()


def test_inv_scale_unscales_before_the_step():
    a, b = [np.ones(4)], [np.ones(4)]
    oa, ob = fusedopt.SGD(a, lr=0.1), fusedopt.SGD(b, lr=0.1)
    g = np.full(4, 512.0)
    oa.step([g.copy()], inv_scale=1 / 512)
    ob.step([np.ones(4)])
    assert_same(a, b)


def test_inv_scale_is_not_applied_when_the_step_is_invalid():
    p = [np.ones(4), np.ones(3)]
    opt = fusedopt.Adam(p)
    g = [np.full(4, 2.0), np.full(3, 2.0, np.float32)]     # second grad: wrong dtype
    with pytest.raises(TypeError):
        opt.step(g, inv_scale=0.5)
    np.testing.assert_array_equal(g[0], 2.0)


def test_multi_tensor_aliasing_is_rejected():
    ps = [np.ones(4), np.ones(4)]
    with pytest.raises(ValueError, match="share memory"):
        fusedopt.Adam([ps[0], ps[0][:2]])
    opt = fusedopt.Adam(ps)
    with pytest.raises(ValueError, match=r"params\[0\] and grad\[1\]|grad\[1\] and params\[0\]"):
        opt.step([np.ones(4), ps[0]])
    np.testing.assert_array_equal(ps[0], 1.0)
    with pytest.raises(ValueError, match="share memory"):
        fusedopt.unscale_and_check([ps[0], ps[0]], 2.0)
    np.testing.assert_array_equal(ps[0], 1.0)
    # read-only gradients may share memory with each other
    g = np.ones(4)
    fusedopt.SGD(ps, lr=0.1).step([g, g])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tf1_running_product_any_step_order(dtype):
    # TF1's beta^t is a float32 running product; the kernel caches it per beta and must
    # give the reference's value for any step, in any order, including past the point
    # where the product stops changing (a subnormal fixed point).
    for t in (1, 3000, 5, 2_000_000, 150_000, 1024, 1025, 99_999, 7):
        for betas in ((0.9, 0.999), (0.5, 0.99999)):
            a = [np.full(5, 0.5, dtype) for _ in range(3)]
            b = [x.copy() for x in a]
            g = np.linspace(-1, 1, 5).astype(dtype)
            fusedopt.adam_step(a[0], g, a[1], a[2], step=t, betas=betas, convention="tf1")
            R.adam_step(b[0], g, b[1], b[2], step=t, betas=betas, convention="tf1")
            assert_same(a, b)


@pytest.mark.parametrize("conv", fusedopt.CONVENTIONS)
def test_documented_defaults_are_torch_for_every_convention(conv):
    # Decision (README "Conventions", fusedopt._optim docstring): the defaults are torch's
    # for every convention; another framework's defaults are passed explicitly.
    ams = dict(amsgrad=False)
    if conv in ("tf1", "sklearn"):
        adamw_kw = dict(weight_decay=0.0)       # these frameworks have no weight decay
    else:
        adamw_kw = {}
    a = fusedopt.Adam([np.ones(2)], convention=conv)
    assert a.defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                              maximize=False, convention=conv, eps_root=0.0,
                              max_grad_norm=None, **ams)
    w = fusedopt.AdamW([np.ones(2)], convention=conv, **adamw_kw)
    assert w.defaults["weight_decay"] == adamw_kw.get("weight_decay", 1e-2)
    s = fusedopt.SGD([np.ones(2)], convention=conv)
    assert s.defaults == dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                              weight_decay=0.0, maximize=False, convention=conv,
                              max_grad_norm=None)
    # the functional defaults are the same numbers
    p, q = np.ones(3), np.ones(3)
    fusedopt.adam_step(p, np.ones(3), np.zeros(3), np.zeros(3), step=1, convention=conv)
    R.adam_step(q, np.ones(3), np.zeros(3), np.zeros(3), step=1, lr=1e-3,
                betas=(0.9, 0.999), eps=1e-8, convention=conv)
    np.testing.assert_array_equal(p, q)


def _base(a):
    while a.base is not None:
        a = a.base
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_arrays_are_packed_line_aligned(dtype):
    """A step allocates each state's arrays of one kernel call in one buffer, each on its
    own 64-byte line, in the call's order; loading a state_dict packs copies likewise."""
    shapes = [(3,), (5, 7), (0,), (1000,), (2, 2, 2)]
    params = [np.ones(s, dtype) for s in shapes]
    opt = fusedopt.Adam(params, lr=0.1)
    opt.step([np.full(s, 0.5, dtype) for s in shapes])
    for name in ("exp_avg", "exp_avg_sq"):
        arrays = [opt.state[i][name] for i in range(len(shapes))]
        assert len({id(_base(a)) for a in arrays}) == 1
        addresses = [a.ctypes.data for a in arrays if a.size]   # (numpy moves empty ones)
        assert all(x % 64 == 0 for x in addresses)
        assert addresses == sorted(addresses)
        for a, p in zip(arrays, params):
            assert a.shape == p.shape and a.dtype == p.dtype and a.flags.c_contiguous
    sd = opt.state_dict()
    other = fusedopt.Adam([p.copy() for p in params], lr=0.1)
    other.load_state_dict(sd)
    loaded = [other.state[i]["exp_avg"] for i in range(len(shapes))]
    assert len({id(_base(a)) for a in loaded}) == 1
    assert all(a.ctypes.data % 64 == 0 for a in loaded if a.size)
    for i, a in enumerate(loaded):
        np.testing.assert_array_equal(a, sd["state"][i]["exp_avg"])
        assert not np.shares_memory(a, sd["state"][i]["exp_avg"])


def test_mixed_dtypes_get_one_buffer_each():
    params = [np.ones(4, np.float32), np.ones(4, np.float64), np.ones(9, np.float32)]
    opt = fusedopt.Adam(params, lr=0.1)
    opt.step([np.ones_like(p) for p in params])
    bases = [_base(opt.state[i]["exp_avg"]) for i in range(3)]
    assert bases[0] is bases[2] and bases[1] is not bases[0]
    assert [opt.state[i]["exp_avg"].dtype for i in range(3)] == [p.dtype for p in params]
