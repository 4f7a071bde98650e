"""fusedopt.torch: drop-in torch.optim optimizers, checked against torch.optim itself.

Every trajectory test trains the same small MLP (a synthetic binary classification task:
logits -> BCEWithLogits, as the demo) twice from the same initialisation, once with
``torch.optim.X`` (its default CPU for-loop implementation) and once with
``fusedopt.torch.X``, and compares every parameter element by element after every step.

Tolerance policy (the same as tests/test_frameworks.py): ``|ours - torch| <= atol +
rtol*|torch|`` with rtol = atol = 1e-6 in float32 and 1e-12 in float64.  Both sides
compute the same formulas in the same order with the same scalars, but torch's vectorised
CPU kernels round differently in two places (measured with torch 2.13 on AVX-512):
``lerp`` (Adam's first moment) and ``add(..., alpha=)`` (SGD's update, decay and
momentum) use a fused multiply-add, one rounding, where our kernels, built with
``-ffp-contract=off``, round twice (about 11 % of elements differ by 1 ulp); and torch's
vectorised ``sqrt`` (Sleef, 0.5001-ulp bound) is not correctly rounded for about 0.7 %
of inputs.  So even the first step differs in the last bit for a few elements, and these
flips then random-walk (and feed back through the gradients): after 120 steps we observe
at most ~4e-7 absolute in float32 (parameters are O(0.1-1), ulp(1) = 1.2e-7) and ~5e-16
in float64.  The tolerances allow a few times that; atol equals rtol because elements
passing near zero carry rounding errors of size ulp(1), not ulp(0).  Speed is never
asserted here (bench/).
"""
from __future__ import annotations

import copy
import inspect
import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fusedopt.torch")
import fusedopt  # noqa: E402

N_STEPS = 120
TOL = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}
STATE_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-11, atol=1e-11)}
DTYPES = [torch.float32, torch.float64]

# torch/testing/_internal/common_optimizers.py, optim_inputs_func_adam / _adamw / _sgd
# (the CPU configurations; Tensor lr is tested separately below)
ADAM_CONFIGS = [
    {},
    {"lr": 0.01},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "maximize": True},
    {"weight_decay": 0.1, "amsgrad": True},
]
SGD_CONFIGS = [
    {},
    {"lr": 1e-2},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.5},
    {"momentum": 0.9, "weight_decay": 0.1},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    {"weight_decay": 0.1, "maximize": True},
]
# optim_inputs_func_adagrad (CPU)
ADAGRAD_CONFIGS = [
    {},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "maximize": True},
    {"lr": 0.1},
    {"initial_accumulator_value": 0.1, "weight_decay": 0.1},
    {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1},
]
# optim_inputs_func_rmsprop (CPU)
RMSPROP_CONFIGS = [
    {},
    {"lr": 1e-3},
    {"weight_decay": 0.1, "centered": True},
    {"weight_decay": 0.1, "centered": True, "momentum": 0.1},
    # (torch's lr=1e-2 here: ascending, the model saturates 8 % of its tanh units by step
    # 20, where the gradient 1 - tanh**2 carries relative errors ~1e-4 of float32
    # cancellation that RMSprop's scale-free step turns into parameter differences of
    # lr*1e-4 between any two correct implementations; lr=1e-3 keeps them unsaturated)
    {"lr": 1e-3, "weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True},
    {"weight_decay": 0.1, "momentum": 0.1},
]
# optim_inputs_func_adafactor (CPU)
ADAFACTOR_CONFIGS = [
    {},
    {"weight_decay": 0.1, "lr": 0.01},
    # (lr 1e-3: at torch's 1e-2, after 60 ascending steps torch's float32 run is 9.5e-7 from
    # the float64 trajectory and fusedopt's 4.5e-7, on opposite sides, 1.3e-6 apart: torch
    # sums the row and column statistics and the norms in float32, fusedopt in double;
    # both are correct float32 implementations, and 1e-3 keeps them within 1e-6)
    {"lr": 1e-3, "weight_decay": 0.1, "maximize": True},
    {"beta2_decay": -1.0},
    {"d": 1.5},
]
PAIRS = {"Adam": (ft.Adam, torch.optim.Adam), "AdamW": (ft.AdamW, torch.optim.AdamW),
         "SGD": (ft.SGD, torch.optim.SGD), "Adagrad": (ft.Adagrad, torch.optim.Adagrad),
         "RMSprop": (ft.RMSprop, torch.optim.RMSprop),
         "Adafactor": (ft.Adafactor, torch.optim.Adafactor)}
CASES = [(name, cfg) for name in ("Adam", "AdamW") for cfg in ADAM_CONFIGS] + \
        [("SGD", cfg) for cfg in SGD_CONFIGS] + [("Adagrad", cfg) for cfg in ADAGRAD_CONFIGS] + \
        [("RMSprop", cfg) for cfg in RMSPROP_CONFIGS] + \
        [("Adafactor", cfg) for cfg in ADAFACTOR_CONFIGS]


def _id(case):
    name, cfg = case
    return name + "-" + ("-".join(f"{k}={v}" for k, v in cfg.items()) or "default")


# ------------------------------------------------------------------------------ helpers

def make_data(dtype, n=256, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = ((X @ w + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)) > 0)
    return X.to(dtype), y.to(dtype).unsqueeze(1)


def make_model(dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 1)).to(dtype)


def loss_fn(model, X, y, batch=None):
    if batch is not None:   # cycle through 4 minibatches: the gradient changes every step
        i = batch % 4
        X, y = X[i::4], y[i::4]
    return torch.nn.functional.binary_cross_entropy_with_logits(model(X), y)


def train_step(model, opt, X, y, i):
    opt.zero_grad()
    loss = loss_fn(model, X, y, i)
    loss.backward()
    opt.step()
    return loss


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_params_close(a, b, dtype, msg=""):
    for k, (x, y) in enumerate(zip(a, b)):
        torch.testing.assert_close(x, y, **TOL[dtype], msg=lambda m: f"{msg} param {k}: {m}")


def assert_state_close(opt_a, opt_b, dtype):
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys(), (sa[i].keys(), sb[i].keys())
        for key, va in sa[i].items():
            vb = sb[i][key]
            if key == "step":
                assert va.dtype == vb.dtype == torch.float32 and va.shape == vb.shape == ()
                assert va.item() == vb.item()
            elif va is None or vb is None:
                assert va is None and vb is None
            else:
                assert va.dtype == vb.dtype and va.shape == vb.shape
                # The moments average gradients, and a gradient (a sum over the batch
                # with cancellation) amplifies the parameters' rounding differences: a
                # relative 1e-7 in the parameters gives up to a few 1e-6 of the largest
                # moment.  Compared on their own scale, 10x looser than parameters.
                scale = vb.abs().max().item() or 1.0
                torch.testing.assert_close(va / scale, vb / scale, **STATE_TOL[dtype])


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ------------------------------------------------------------------------------ trajectories

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_trajectory_matches_torch(case, dtype):
    name, cfg = case
    ours_cls, torch_cls = PAIRS[name]
    X, y = make_data(dtype)
    ma, mb = make_model(dtype), make_model(dtype)
    oa, ob = ours_cls(ma.parameters(), **cfg), torch_cls(mb.parameters(), **cfg)
    assert flat(ma).equal(flat(mb))
    first = None
    for i in range(N_STEPS):
        la = train_step(ma, oa, X, y, i)
        lb = train_step(mb, ob, X, y, i)
        if i == 0:
            first = lb.item()
        assert_params_close(params_of(ma), params_of(mb), dtype, f"step {i + 1}")
    assert_state_close(oa, ob, dtype)
    # the model really trained (or, with Adam's maximize, really ascended; SGD's lr=1e-3
    # with weight decay 0.1 and maximize still descends: the decay wins)
    if name != "SGD":
        assert (lb.item() > first) if cfg.get("maximize") else (lb.item() < first)
    elif cfg.get("lr", 1e-3) >= 1e-2 or cfg.get("momentum"):
        assert lb.item() < first
    assert la.item() == pytest.approx(lb.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_tensor_lr(name):
    # torch's configs also use a Tensor lr; it is read as a float here (torch computes
    # with it in tensor arithmetic: same value, last-bit rounding may differ)
    ours_cls, torch_cls = PAIRS[name]
    X, y = make_data(torch.float32)
    ma, mb = make_model(torch.float32), make_model(torch.float32)
    cfg = {"momentum": 0.9} if name == "SGD" else {}
    oa = ours_cls(ma.parameters(), lr=torch.tensor(0.01), **cfg)
    ob = torch_cls(mb.parameters(), lr=torch.tensor(0.01), **cfg)
    for i in range(N_STEPS):
        train_step(ma, oa, X, y, i)
        train_step(mb, ob, X, y, i)
    assert_params_close(params_of(ma), params_of(mb), torch.float32)


def test_same_kernel_as_numpy_api_for_other_conventions():
    # the adapter is plumbing: fusedopt.torch.Adam(convention=c) on tensors gives exactly
    # fusedopt.Adam(convention=c) on arrays
    rng = np.random.default_rng(0)
    shapes = [(7, 3), (5,), (33,)]
    for conv, kw in [("tf1", {}), ("keras", {"weight_decay": 0.004}),
                     ("optax", {"eps_root": 1e-8}), ("sklearn", {})]:
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        tensors = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
        cls_np = fusedopt.AdamW if conv == "keras" else fusedopt.Adam
        cls_t = ft.AdamW if conv == "keras" else ft.Adam
        oa = cls_np(arrays, lr=0.01, convention=conv, **kw)
        ob = cls_t(tensors, lr=0.01, convention=conv, **kw)
        for _ in range(20):
            grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
            oa.step(grads)
            for t, g in zip(tensors, grads):
                t.grad = torch.from_numpy(g.copy())
            ob.step()
        for a, t in zip(arrays, tensors):
            np.testing.assert_array_equal(a, t.detach().numpy(), err_msg=conv)
    # SGD, Keras momentum style
    arrays = [rng.standard_normal(s) for s in shapes]
    tensors = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    oa = fusedopt.SGD(arrays, lr=0.1, momentum=0.9, nesterov=True, convention="keras")
    ob = ft.SGD(tensors, lr=0.1, momentum=0.9, nesterov=True, convention="keras")
    for _ in range(20):
        grads = [rng.standard_normal(s) for s in shapes]
        oa.step(grads)
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g.copy())
        ob.step()
    for a, t in zip(arrays, tensors):
        np.testing.assert_array_equal(a, t.detach().numpy())


# ------------------------------------------------------------------------------ state dicts

def _roundtrip(sd):
    """What a checkpoint does: torch.save then torch.load (weights_only)."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,cfg", [
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01}),
    ("Adagrad", {"lr": 0.05, "initial_accumulator_value": 0.1}),
    # (lr 1e-3: at 1e-2 with momentum 0.9 the centered trajectory oscillates, and torch's
    # fused multiply-add in addcmul_ (1 ulp of v, times v/(v - ga*ga)) then grows past
    # 1e-6 by step 120: rounding, not the state format under test)
    ("RMSprop", {"lr": 1e-3, "momentum": 0.9, "centered": True, "weight_decay": 0.01}),
    ("RMSprop", {"lr": 0.01}),
    ("Adafactor", {"lr": 0.01, "weight_decay": 0.01}),
    ("Adafactor", {"lr": 0.02, "beta2_decay": -1.0, "d": 1.5}),
], ids=lambda x: x if isinstance(x, str) else "-".join(f"{k}={v}" for k, v in x.items()))
def test_state_dict_interop_both_ways(name, cfg, dtype):
    ours_cls, torch_cls = PAIRS[name]
    X, y = make_data(dtype)
    # reference: torch.optim all the way
    m_ref = make_model(dtype)
    o_ref = torch_cls(m_ref.parameters(), **cfg)
    for i in range(N_STEPS):
        train_step(m_ref, o_ref, X, y, i)
    # torch for 40 steps -> fusedopt for 40 -> torch for 40, through checkpoints
    m = make_model(dtype)
    o = torch_cls(m.parameters(), **cfg)
    for i in range(40):
        train_step(m, o, X, y, i)
    sd_torch = _roundtrip(o.state_dict())
    o2 = ours_cls(m.parameters(), lr=123.0)    # hyper-parameters come from the state dict
    o2.load_state_dict(sd_torch)
    assert o2.param_groups[0]["lr"] == cfg["lr"]
    assert o2.param_groups[0]["convention"] == "torch"
    for i in range(40, 80):
        train_step(m, o2, X, y, i)
    sd_ours = o2.state_dict()
    # torch's format exactly
    ref_sd = o_ref.state_dict()
    assert sd_ours["state"].keys() == ref_sd["state"].keys()
    for k, s in sd_ours["state"].items():
        assert s.keys() == ref_sd["state"][k].keys()
        for key, v in s.items():
            assert type(v) is type(ref_sd["state"][k][key])
            if key == "step":
                assert v.dtype == torch.float32 and v.shape == () and v.item() == 80
    extras = set(inspect.signature(ours_cls).parameters) - \
        set(inspect.signature(torch_cls).parameters)          # convention, eps_root, ...
    assert set(sd_ours["param_groups"][0]) - set(ref_sd["param_groups"][0]) <= extras
    o3 = torch_cls(m.parameters(), lr=123.0)
    o3.load_state_dict(_roundtrip(sd_ours))
    for i in range(80, N_STEPS):
        train_step(m, o3, X, y, i)
    assert_params_close(params_of(m), params_of(m_ref), dtype)
    assert_state_close(o3, o_ref, dtype)


def test_state_dict_of_fused_torch_optimizer_loads():
    # a checkpoint of torch.optim.Adam(fused=True): the implementation flag is reset
    X, y = make_data(torch.float32)
    ma, mb = make_model(torch.float32), make_model(torch.float32)
    ob = torch.optim.Adam(mb.parameters(), lr=0.01, fused=True)
    oa_src = torch.optim.Adam(ma.parameters(), lr=0.01, fused=True)
    for i in range(10):
        train_step(ma, oa_src, X, y, i)
        train_step(mb, ob, X, y, i)
    oa = ft.Adam(ma.parameters())
    oa.load_state_dict(_roundtrip(oa_src.state_dict()))
    assert oa.param_groups[0]["fused"] is None
    for i in range(10, 40):
        train_step(ma, oa, X, y, i)
        train_step(mb, ob, X, y, i)
    # torch's fused kernel rounds a little differently from its for-loop: looser check
    torch.testing.assert_close(flat(ma), flat(mb), rtol=1e-5, atol=1e-5)


def test_load_state_dict_checks_before_changing_anything():
    m = make_model(torch.float32)
    o = ft.Adam(m.parameters(), lr=0.01)
    X, y = make_data(torch.float32)
    train_step(m, o, X, y, 0)
    before = copy.deepcopy(o.state_dict())
    bad = copy.deepcopy(before)
    bad["param_groups"][0]["convention"] = "tf1"
    bad["param_groups"][0]["weight_decay"] = 0.1     # TF1 has no weight decay
    with pytest.raises(ValueError, match="weight decay"):
        o.load_state_dict(bad)
    after = o.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for k in before["state"]:
        for key in before["state"][k]:
            assert torch.equal(after["state"][k][key], before["state"][k][key])


def test_pickle_and_deepcopy():
    m = make_model(torch.float64)
    o = ft.Adam(m.parameters(), lr=0.01, amsgrad=True)
    X, y = make_data(torch.float64)
    train_step(m, o, X, y, 0)
    # a model and its optimizer deep-copied together keep their link
    m3, o3 = copy.deepcopy((m, o))
    for i in range(1, 10):
        train_step(m, o, X, y, i)
        train_step(m3, o3, X, y, i)
    assert flat(m).equal(flat(m3))
    o4 = pickle.loads(pickle.dumps(o))
    assert isinstance(o4, ft.Adam) and o4.param_groups[0]["amsgrad"] is True


# ------------------------------------------------------------------------------ torch API

def test_lr_scheduler_step_lr():
    X, y = make_data(torch.float32)
    ma, mb = make_model(torch.float32), make_model(torch.float32)
    oa, ob = ft.Adam(ma.parameters(), lr=0.05), torch.optim.Adam(mb.parameters(), lr=0.05)
    sa = torch.optim.lr_scheduler.StepLR(oa, step_size=10, gamma=0.5)
    sb = torch.optim.lr_scheduler.StepLR(ob, step_size=10, gamma=0.5)
    lrs = []
    for i in range(N_STEPS):
        train_step(ma, oa, X, y, i)
        train_step(mb, ob, X, y, i)
        sa.step()
        sb.step()
        assert oa.param_groups[0]["lr"] == ob.param_groups[0]["lr"]
        lrs.append(oa.param_groups[0]["lr"])
    assert lrs[0] == 0.05 and lrs[9] == 0.025 and lrs[19] == 0.0125
    assert_params_close(params_of(ma), params_of(mb), torch.float32)


def test_one_cycle_lr_edits_betas_and_momentum():
    # OneCycleLR cycles Adam's beta1 and SGD's momentum through the param groups
    X, y = make_data(torch.float64)
    for name, cfg in [("Adam", {}), ("SGD", {"momentum": 0.9})]:
        ours_cls, torch_cls = PAIRS[name]
        ma, mb = make_model(torch.float64), make_model(torch.float64)
        oa, ob = ours_cls(ma.parameters(), **cfg), torch_cls(mb.parameters(), **cfg)
        sa = torch.optim.lr_scheduler.OneCycleLR(oa, max_lr=0.05, total_steps=60)
        sb = torch.optim.lr_scheduler.OneCycleLR(ob, max_lr=0.05, total_steps=60)
        for i in range(60):
            train_step(ma, oa, X, y, i)
            train_step(mb, ob, X, y, i)
            sa.step()
            sb.step()
        assert_params_close(params_of(ma), params_of(mb), torch.float64, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_param_groups_with_different_hyper_parameters(dtype):
    X, y = make_data(dtype)
    ma, mb = make_model(dtype), make_model(dtype)

    def groups(m):
        return [{"params": m[0].parameters(), "lr": 0.02, "weight_decay": 0.1},
                {"params": m[2].parameters(), "lr": 0.005, "amsgrad": True},
                {"params": m[4].parameters()}]

    oa, ob = ft.Adam(groups(ma), lr=0.01), torch.optim.Adam(groups(mb), lr=0.01)
    assert [g["lr"] for g in oa.param_groups] == [0.02, 0.005, 0.01]
    for i in range(N_STEPS):
        train_step(ma, oa, X, y, i)
        train_step(mb, ob, X, y, i)
    assert_params_close(params_of(ma), params_of(mb), dtype)
    assert_state_close(oa, ob, dtype)


def test_add_param_group_mid_training():
    # fine-tuning: the last layer first, then the rest added with its own lr
    X, y = make_data(torch.float64)
    ma, mb = make_model(torch.float64), make_model(torch.float64)
    oa = ft.SGD(ma[4].parameters(), lr=0.05, momentum=0.9)
    ob = torch.optim.SGD(mb[4].parameters(), lr=0.05, momentum=0.9)
    for i in range(N_STEPS):
        if i == 30:
            for m, o in ((ma, oa), (mb, ob)):
                o.add_param_group({"params": list(m[0].parameters()) + list(m[2].parameters()),
                                   "lr": 0.01})
        train_step(ma, oa, X, y, i)
        train_step(mb, ob, X, y, i)
    assert_params_close(params_of(ma), params_of(mb), torch.float64)
    assert_state_close(oa, ob, torch.float64)


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_closure(name):
    ours_cls, torch_cls = PAIRS[name]
    X, y = make_data(torch.float32)
    ma, mb = make_model(torch.float32), make_model(torch.float32)
    cfg = {"lr": 0.01, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    oa, ob = ours_cls(ma.parameters(), **cfg), torch_cls(mb.parameters(), **cfg)

    def closure_for(m, o, i):
        def closure():
            assert torch.is_grad_enabled()   # step() runs it under enable_grad
            o.zero_grad()
            loss = loss_fn(m, X, y, i)
            loss.backward()
            return loss
        return closure

    for i in range(50):
        with torch.no_grad():                # as an LBFGS-style loop may call it
            la = oa.step(closure_for(ma, oa, i))
            lb = ob.step(closure_for(mb, ob, i))
        assert la.item() == pytest.approx(lb.item(), rel=1e-6)
    assert_params_close(params_of(ma), params_of(mb), torch.float32)
    assert oa.step() is None


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_grad_none_is_skipped(name):
    ours_cls, torch_cls = PAIRS[name]
    X, y = make_data(torch.float64)
    ma, mb = make_model(torch.float64), make_model(torch.float64)
    cfg = {"lr": 0.01, "weight_decay": 0.1}
    if name == "SGD":
        cfg["momentum"] = 0.9
    oa, ob = ours_cls(ma.parameters(), **cfg), torch_cls(mb.parameters(), **cfg)
    frozen_a, frozen_b = ma[2].weight, mb[2].weight
    for i in range(60):
        for m, o, frozen in ((ma, oa, frozen_a), (mb, ob, frozen_b)):
            o.zero_grad()
            loss_fn(m, X, y, i).backward()
            if i < 30:               # the middle layer gets no gradient for 30 steps
                frozen.grad = None
            before = frozen.detach().clone()
            o.step()
            if i < 30:
                assert torch.equal(frozen, before)   # weight decay did not touch it
                assert frozen not in o.state or len(o.state[frozen]) == 0
    assert_params_close(params_of(ma), params_of(mb), torch.float64)
    assert_state_close(oa, ob, torch.float64)
    if name != "SGD":
        assert oa.state[frozen_a]["step"].item() == 30
        assert oa.state[ma[0].weight]["step"].item() == 60


def test_zero_grad():
    m = make_model(torch.float32)
    o = ft.Adam(m.parameters())
    X, y = make_data(torch.float32)
    loss_fn(m, X, y).backward()
    o.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in m.parameters())
    o.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    o.step()            # no gradients: nothing happens, no state
    assert len(o.state) == 0


def test_persistent_grads_and_non_contiguous_grad():
    # zero_grad(set_to_none=False) keeps the same gradient tensors (cached views stay
    # valid); a non-contiguous gradient is read through a copy
    X, y = make_data(torch.float32)
    ma, mb = make_model(torch.float32), make_model(torch.float32)
    oa, ob = ft.Adam(ma.parameters(), lr=0.01), torch.optim.Adam(mb.parameters(), lr=0.01)
    for i in range(30):
        for m, o in ((ma, oa), (mb, ob)):
            o.zero_grad(set_to_none=False)
            loss_fn(m, X, y, i).backward()
        if i == 10:
            g = ma[0].weight.grad
            ma[0].weight.grad = g.t().contiguous().t()   # same values, transposed layout
            assert not ma[0].weight.grad.is_contiguous()
        oa.step()
        ob.step()
    assert_params_close(params_of(ma), params_of(mb), torch.float32)


def test_step_hooks_and_profiler_names():
    m = make_model(torch.float32)
    o = ft.Adam(m.parameters())
    calls = []
    h1 = o.register_step_pre_hook(lambda opt, args, kwargs: calls.append(("pre", opt)))
    h2 = o.register_step_post_hook(lambda opt, args, kwargs: calls.append(("post", opt)))
    X, y = make_data(torch.float32)
    train_step(m, o, X, y, 0)
    assert calls == [("pre", o), ("post", o)]
    h1.remove()
    h2.remove()
    train_step(m, o, X, y, 1)
    assert len(calls) == 2
    from torch.optim.optimizer import register_optimizer_step_post_hook
    seen = []
    h = register_optimizer_step_post_hook(lambda opt, args, kwargs: seen.append(type(opt)))
    try:
        train_step(m, o, X, y, 2)
        sgd = ft.SGD(m.parameters())
        train_step(m, sgd, X, y, 3)
    finally:
        h.remove()
    assert seen == [ft.Adam, ft.SGD]
    with torch.autograd.profiler.profile() as prof:
        train_step(m, o, X, y, 4)
    names = {e.name for e in prof.function_events}
    assert "Optimizer.step#Adam.step" in names
    assert "Optimizer.zero_grad#Adam.zero_grad" in names


def test_version_counter_bumped_like_torch():
    # a graph that saved a parameter cannot be back-propagated after step(), as with torch
    for cls in (ft.Adam, ft.SGD, torch.optim.SGD):
        w = torch.nn.Parameter(torch.randn(3))
        o = cls([w], lr=0.1)
        loss = (w ** 2).sum()
        w.grad = torch.ones(3)
        o.step()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


def test_parameter_storage_replaced_between_steps():
    # p.data = ... between steps: the cached views are rebuilt
    X, y = make_data(torch.float64)
    ma, mb = make_model(torch.float64), make_model(torch.float64)
    oa, ob = ft.Adam(ma.parameters(), lr=0.01), torch.optim.Adam(mb.parameters(), lr=0.01)
    for i in range(20):
        if i == 10:
            for m in (ma, mb):
                m[0].weight.data = m[0].weight.data.clone()
                m[4].bias.data = m[4].bias.data.clone()
        train_step(ma, oa, X, y, i)
        train_step(mb, ob, X, y, i)
    assert_params_close(params_of(ma), params_of(mb), torch.float64)


def test_named_parameters_and_repr():
    m = make_model(torch.float32)
    o = ft.AdamW(m.named_parameters(), lr=0.01)
    assert o.param_groups[0]["param_names"][0] == "0.weight"
    assert "AdamW (" in repr(o) and "convention: torch" in repr(o)
    assert o.param_groups[0]["decoupled_weight_decay"] is True
    assert o.defaults["weight_decay"] == 1e-2


def test_defaults_match_torch():
    import inspect
    for ours, theirs in [(ft.Adam, torch.optim.Adam), (ft.AdamW, torch.optim.AdamW),
                         (ft.SGD, torch.optim.SGD), (ft.Adagrad, torch.optim.Adagrad),
                         (ft.RMSprop, torch.optim.RMSprop),
                         (ft.Adafactor, torch.optim.Adafactor)]:
        po = inspect.signature(ours).parameters
        pt = inspect.signature(theirs).parameters
        for name, par in pt.items():
            assert name in po, (ours, name)
            assert po[name].default == par.default, (ours, name)
            assert po[name].kind == par.kind, (ours, name)
        assert set(po) - set(pt) <= {"convention", "eps_root", "initial_square_avg",
                                     "max_grad_norm"}
        p = torch.nn.Parameter(torch.zeros(2))
        go = ours([p]).param_groups[0]
        gt = theirs([torch.nn.Parameter(torch.zeros(2))]).param_groups[0]
        for key, value in gt.items():
            if key != "params":
                assert go[key] == value, (ours, key)


# ------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("cls", [ft.Adam, ft.AdamW, ft.SGD])
@pytest.mark.parametrize("flag", ["foreach", "fused", "capturable", "differentiable"])
def test_rejected_implementation_flags(cls, flag):
    p = torch.nn.Parameter(torch.zeros(2))
    if flag == "capturable" and cls is ft.SGD:
        with pytest.raises(TypeError):
            cls([p], capturable=True)    # torch.optim.SGD has no such argument either
        return
    with pytest.raises(ValueError, match=f"{flag}=True is not supported"):
        cls([p], **{flag: True})
    o = cls([p], **{flag: None if flag in ("foreach", "fused") else False})
    with pytest.raises(ValueError, match=f"{flag}=True is not supported"):
        o.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], flag: True})
    assert len(o.param_groups) == 1
    if flag in ("foreach", "fused"):
        cls([p], **{flag: False})


@pytest.mark.parametrize("make,exc,match", [
    (lambda: torch.nn.Parameter(torch.zeros(3, device="meta")), ValueError, "device meta"),
    (lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.float16)), TypeError, "float16"),
    (lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16)), TypeError, "bfloat16"),
    (lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64)), TypeError, "complex64"),
    (lambda: torch.zeros(3, dtype=torch.int64), TypeError, "int64"),
    (lambda: torch.nn.Parameter(torch.zeros(4, 3).t()), ValueError, "not contiguous"),
    (lambda: torch.nn.Parameter(torch.zeros(2, 3, 4, 5).to(memory_format=torch.channels_last)),
     ValueError, "not contiguous"),
])
@pytest.mark.parametrize("cls", [ft.Adam, ft.SGD])
def test_unsupported_parameters_rejected(cls, make, exc, match):
    good = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(exc, match=r"param_groups\[0\]\['params'\]\[1\].*" + match):
        cls([good, make()])


@pytest.mark.parametrize("cls", [ft.Adam, ft.SGD])
def test_invalid_hyper_parameters(cls):
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        cls([p], lr=-1)
    with pytest.raises(ValueError, match="Invalid weight_decay value: -1"):
        cls([p], weight_decay=-1)
    with pytest.raises(ValueError, match="convention"):
        cls([p], convention="mxnet")
    if cls is ft.Adam:
        with pytest.raises(ValueError, match="Invalid beta parameter at index 0: 1.0"):
            cls([p], betas=(1.0, 0.0))
        with pytest.raises(ValueError, match="has no weight decay"):
            cls([p], weight_decay=0.1, convention="tf1")
    else:
        with pytest.raises(ValueError, match="Nesterov momentum requires"):
            cls([p], nesterov=True)
    with pytest.raises(ValueError, match="listed twice"):
        cls([p, p])
    with pytest.raises(ValueError, match="empty parameter list"):
        cls([])


def _snapshot(model, opt):
    ps = [p.detach().clone() for p in model.parameters()]
    st = {id(p): {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
          for p, s in opt.state.items()}
    return ps, st


def _assert_unchanged(model, opt, snap):
    ps, st = snap
    for a, b in zip(model.parameters(), ps):
        assert torch.equal(a.detach(), b)
    now = {id(p): s for p, s in opt.state.items() if len(s)}
    assert now.keys() == {k for k, v in st.items() if len(v)}
    for k, s in now.items():
        assert s.keys() == st[k].keys()
        for key, v in s.items():
            assert torch.equal(v, st[k][key]) if isinstance(v, torch.Tensor) else v == st[k][key]


@pytest.mark.parametrize("name", ["Adam", "SGD"])
@pytest.mark.parametrize("fresh", [True, False], ids=["first-step", "later-step"])
def test_step_errors_leave_everything_untouched(name, fresh):
    ours_cls = PAIRS[name][0]
    X, y = make_data(torch.float32)
    m = make_model(torch.float32)
    cfg = {"lr": 0.01, "weight_decay": 0.1}
    if name == "SGD":
        cfg["momentum"] = 0.9
    # two groups: the bad parameter is in the second, the first must not be stepped
    o = ours_cls([{"params": list(m[0].parameters()) + list(m[2].parameters())},
                  {"params": m[4].parameters(), "lr": 0.1}], **cfg)
    if not fresh:
        for i in range(3):
            train_step(m, o, X, y, i)

    def grads():
        o.zero_grad()
        loss_fn(m, X, y).backward()

    kind = "Adam" if name == "Adam" else "SGD"
    # 1. a sparse gradient
    grads()
    snap = _snapshot(m, o)
    m[4].bias.grad = m[4].bias.grad.to_sparse()
    with pytest.raises(RuntimeError, match=rf"{kind} does not support sparse gradients "
                                           r".*param_groups\[1\]\['params'\]\[1\]"):
        o.step()
    _assert_unchanged(m, o, snap)
    # 2. a parameter whose storage became float16 after the optimizer was created
    grads()
    snap = _snapshot(m, o)
    w = m[4].weight
    orig, orig_grad = w.data, w.grad
    w.data = w.data.half()
    w.grad = None
    w.grad = torch.zeros_like(w)
    with pytest.raises(TypeError, match=r"param_groups\[1\]\['params'\]\[0\].*float16"):
        o.step()
    w.grad = None
    w.data = orig
    w.grad = orig_grad
    _assert_unchanged(m, o, snap)
    # 3. a parameter made non-contiguous
    grads()
    snap = _snapshot(m, o)
    w = m[2].weight
    w.data = w.data.t().contiguous().t()
    w.grad = w.grad.t().contiguous().t()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[2\].*not contiguous"):
        o.step()
    _assert_unchanged(m, o, snap)
    w.data = w.data.contiguous()
    w.grad = w.grad.contiguous()
    # 4. a hyper-parameter broken by hand in the second group
    snap = _snapshot(m, o)
    o.param_groups[1]["lr"] = float("nan")
    with pytest.raises(ValueError, match="lr must be finite.*no parameter or state was "
                                         "modified"):
        o.step()
    _assert_unchanged(m, o, snap)
    o.param_groups[1]["lr"] = 0.1
    # and it still trains afterwards
    o.step()
    assert not torch.equal(m[0].weight.detach(), snap[0][0])


def test_state_of_wrong_shape_is_named():
    m = make_model(torch.float64)
    o = ft.Adam(m.parameters())
    X, y = make_data(torch.float64)
    train_step(m, o, X, y, 0)
    o.state[m[2].bias]["exp_avg"] = torch.zeros(3, dtype=torch.float64)
    snap = _snapshot(m, o)
    loss_fn(m, X, y).backward()
    with pytest.raises(ValueError, match=r"state of param_groups\[0\]\['params'\]\[3\].*"
                                         r"exp_avg.*shape"):
        o.step()
    _assert_unchanged(m, o, snap)


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_mixed_dtypes_in_one_group(name):
    # one group, float32 and float64 parameters: one kernel call per dtype, as torch
    ours_cls, torch_cls = PAIRS[name]
    X, y = make_data(torch.float64)
    ma, mb = make_model(torch.float64), make_model(torch.float64)
    for m in (ma, mb):
        m[2].float()                     # the middle layer in float32

    def loss_of(m, i):
        h = torch.tanh(m[0](X[i % 4::4]))
        h = torch.tanh(m[2](h.float())).double()
        return torch.nn.functional.binary_cross_entropy_with_logits(m[4](h), y[i % 4::4])

    cfg = {"lr": 0.01, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    oa, ob = ours_cls(ma.parameters(), **cfg), torch_cls(mb.parameters(), **cfg)
    for i in range(60):
        for m, o in ((ma, oa), (mb, ob)):
            o.zero_grad()
            loss_of(m, i).backward()
            o.step()
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        assert pa.dtype == pb.dtype
        torch.testing.assert_close(pa, pb, **TOL[torch.float32])


def test_amsgrad_switched_on_mid_training():
    # torch.optim.Adam raises KeyError('max_exp_avg_sq') here; fusedopt starts the max at
    # zero, as fusedopt.Adam does (compared with it bit for bit)
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(5), rng.standard_normal((2, 3))]
    tensors = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    oa, ob = fusedopt.Adam(arrays, lr=0.01), ft.Adam(tensors, lr=0.01)
    for i in range(10):
        if i == 5:
            oa.param_groups[0]["amsgrad"] = ob.param_groups[0]["amsgrad"] = True
        grads = [rng.standard_normal(a.shape) for a in arrays]
        oa.step(grads)
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g.copy())
        ob.step()
    for a, t in zip(arrays, tensors):
        np.testing.assert_array_equal(a, t.detach().numpy())
    assert ob.state[tensors[0]]["max_exp_avg_sq"].shape == (5,)


@pytest.mark.parametrize("cls", [ft.Adam, ft.SGD])
def test_parameters_sharing_memory_are_named(cls):
    x = torch.nn.Parameter(torch.zeros(12))
    y = torch.nn.Parameter(torch.zeros(12))
    with torch.no_grad():               # y becomes a view of x's storage, elements 4..11
        y.set_(x.untyped_storage(), 4, (8,), (1,))
    o = cls([x, y], lr=0.1)
    x.grad, y.grad = torch.ones(12), torch.ones(8)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\].* and "
                                         r"param_groups\[0\]\['params'\]\[1\].*share memory"):
        o.step()
    assert not x.detach().any() and len(o.state) == 0
    # in separate groups they are stepped by separate calls, one after the other (as torch)
    o = cls([{"params": [x]}, {"params": [y]}], lr=0.1)
    o.step()
    expected = torch.tensor([-0.1] * 4 + [-0.2] * 8)
    torch.testing.assert_close(x.detach(), expected, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- torch's reading

def test_sgd_buffer_none_is_a_first_step_as_torch():
    """A state whose momentum_buffer is None (older torch state dicts, or set by hand) takes
    torch's first momentum step: the buffer becomes the gradient, undamped."""
    got = []
    for cls in (torch.optim.SGD, ft.SGD):
        w = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float64))
        opt = cls([w], lr=0.1, momentum=0.9, dampening=0.5)
        opt.state[w]["momentum_buffer"] = None
        for k in range(3):
            w.grad = torch.linspace(0.5, 1.5, 5, dtype=torch.float64) * (k + 1)
            opt.step()
            if k == 0:      # the first step sets the buffer to the gradient, exactly
                assert torch.equal(opt.state[w]["momentum_buffer"], w.grad)
        got.append((w.detach().clone(), opt.state[w]["momentum_buffer"].clone()))
    # then float64 rounding: torch's foreach path orders its operations differently (as in
    # the other trajectory tests, 1e-12 relative)
    torch.testing.assert_close(got[1][0], got[0][0], rtol=1e-12, atol=0)
    torch.testing.assert_close(got[1][1], got[0][1], rtol=1e-12, atol=0)


def test_adam_state_without_step_is_a_value_error():
    w = torch.nn.Parameter(torch.ones(3))
    opt = ft.Adam([w])
    opt.state[w] = {"exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}
    w.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"\['step'\] must be a CPU floating-point scalar"):
        opt.step()
    assert torch.equal(w.detach(), torch.ones(3))


@pytest.mark.parametrize("kw", [dict(amsgrad=1), dict(maximize=0),
                                dict(betas=torch.tensor([0.8, 0.99], dtype=torch.float64))],
                         ids=["amsgrad=1", "maximize=0", "betas-tensor"])
def test_adam_reads_values_as_torch(kw):
    """torch.optim.Adam reads flags by truth value and betas as any pair; so do we."""
    got = []
    for cls in (torch.optim.Adam, ft.Adam):
        w = torch.nn.Parameter(torch.linspace(-1, 1, 7, dtype=torch.float64))
        opt = cls([w], lr=0.1, **kw)
        for k in range(3):
            w.grad = torch.linspace(-0.5, 1.5, 7, dtype=torch.float64) * (k + 1)
            opt.step()
        got.append(w.detach().clone())
    # float64 rounding only (torch's vectorised lerp, as in the other trajectory tests)
    torch.testing.assert_close(got[1], got[0], rtol=1e-12, atol=0)
