"""Cross-framework conformance tests for fusedopt.

Every check here drives the *real* framework (torch, TensorFlow 1 compat, Keras 3,
optax, scikit-learn) with the same hyper-parameters and inputs as fusedopt and compares
the results element by element.  Each check runs against both the pure-NumPy oracle
``fusedopt.reference`` and the compiled top-level ``fusedopt`` package (fixture ``fo``).

Frameworks are optional: every framework fixture uses ``pytest.importorskip`` so a
missing framework skips its tests cleanly.  Framework trajectories are computed once per
(case, dtype) and shared by both implementations (``_FRAMEWORK_CACHE``).

Tolerance policy (see ``_traj_tol``): parameters after every one of ``N_STEPS`` steps
(``SCHEDULED_STEPS`` with a learning-rate change for the optimizers in ``SCHEDULED``) are
compared with ``|ours - theirs| <= atol + rtol * |theirs|``.  The parameters are O(1)
(standard normal init) while each update is O(lr), so once both sides compute the same
update up to a few ulps, the parameter trajectories are bit-identical except for rare
1-ulp rounding flips of ``p + u`` that then random-walk; after 100+ steps that is at most
a few ulp(|p|) ~ 1e-7 (fp32) / 2e-16 (fp64) absolute.  We allow ~10-20x that:
rtol = atol = 1e-6 (fp32) and 1e-12 (fp64).  atol has the same size as rtol because
|p| ~ 1 and elements that pass near 0 still carry rounding errors of size ulp(1).
Measured with fusedopt.reference over all cases: worst fp32 deviation 0.3 x tolerance
(3e-7, the eps-hat conventions vs float32 pow/running products), worst fp64 deviation
3e-4 x tolerance (a few 1e-16); TF1 and Keras are bit-identical.  A wrong convention
(eps placement, lr inside/outside the buffer with decay, max of v vs v-hat, decay
coupling, float32 vs float64 hyper-parameters for TF1) misses by 1e3-1e11 x tolerance
in float64, so fp64 is where conventions are told apart; fp32 guards the kernels.
Where a framework does *not* compute purely in the variable dtype (TF1 and Keras-TF
round Python-float hyper-parameters through float32 even for float64 variables) the
tests do not loosen tolerances: TF1's float32 hyper-parameters and beta powers are part
of fusedopt's "tf1" convention and are compared at 1e-12; Keras' float64 runs use
hyper-parameters that are exact in float32 (see ``F32_EXACT`` and ``run_keras``).
"""

from __future__ import annotations

import dataclasses
import os
import zlib

# Keras reads its backend once, at import time; the TF backend is the one whose
# numerics are described in SEMANTICS.md (the NumPy backend uses a clipped,
# non-stable BCE).  Respect an explicit user choice.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


def _importorskip(name):
    """pytest.importorskip that also skips (instead of warning -> error under
    ``filterwarnings = error``) when a module is installed but fails to import, e.g. a
    framework wheel whose shared libraries do not load on this machine."""
    try:
        return pytest.importorskip(name, exc_type=ImportError)
    except TypeError:  # pytest < 8.2 has no exc_type (and skips on any ImportError)
        return pytest.importorskip(name)


# --------------------------------------------------------------------------------------
# Implementations under test
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["reference", "compiled"])
def fo(request):
    # plain importorskip: skip if fusedopt is not installed, but let a *broken* build
    # (ImportError from the compiled extension) surface as an error
    if request.param == "reference":
        return pytest.importorskip("fusedopt.reference")
    return pytest.importorskip("fusedopt")


# --------------------------------------------------------------------------------------
# Frameworks (imported once per module; each skips cleanly if absent)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return _importorskip("torch")


@pytest.fixture(scope="module")
def tf():
    return _importorskip("tensorflow")


@pytest.fixture(scope="module")
def keras():
    keras = _importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(
            f"Keras backend is {keras.backend.backend()!r}; these checks pin the "
            "TensorFlow backend (set KERAS_BACKEND=tensorflow)"
        )
    return keras


@pytest.fixture(scope="module")
def jax():
    return _importorskip("jax")


@pytest.fixture(scope="module")
def optax(jax):
    return _importorskip("optax")


@pytest.fixture(scope="module")
def sk_optim():
    _importorskip("sklearn")
    from sklearn.neural_network import _stochastic_optimizers

    return _stochastic_optimizers


@pytest.fixture(scope="module")
def sk_loss():
    _importorskip("sklearn")
    from sklearn._loss import loss as sk_loss

    return sk_loss


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

N_STEPS = 120
PARAM_SHAPE = (13, 29)  # 377 elements: odd, so SIMD main loops *and* tails are exercised

DTYPES = [pytest.param("float32", id="f32"), pytest.param("float64", id="f64")]


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def make_problem(name: str, dtype: str, n_steps: int = N_STEPS):
    """Initial parameters and a gradient stream (drawn in float64, then cast, so the
    float32 and float64 runs see the same numbers).

    Each step's gradient has a random overall scale exp(N(0,1)) so that the second
    moment sometimes *decreases* (exercises amsgrad's running max) and the momentum
    buffer sees both large and small contributions.  A few exact zeros are included.
    """
    rng = np.random.default_rng(_seed("problem", name))
    p0 = rng.standard_normal(PARAM_SHAPE)
    grads = []
    for _ in range(n_steps):
        g = rng.standard_normal(PARAM_SHAPE) * np.exp(rng.standard_normal())
        g[rng.random(PARAM_SHAPE) < 0.02] = 0.0
        grads.append(g.astype(dtype))
    return p0.astype(dtype), grads


def _traj_tol(dtype):
    """(rtol, atol) for parameter trajectories; justified in the module docstring."""
    return (1e-6, 1e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-12)


def assert_trajectory_close(ours, theirs, rtol, atol, what=""):
    """Compare parameter trajectories (n_steps, *shape) element by element and report
    the first step at which they differ."""
    ours = np.asarray(ours)
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    bad = ~(np.abs(ours - theirs) <= atol + rtol * np.abs(theirs))
    if bad.any():
        step = int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1)))
        idx = np.unravel_index(int(np.argmax(bad[step])), bad.shape[1:])
        np.testing.assert_allclose(
            ours[step],
            theirs[step],
            rtol=rtol,
            atol=atol,
            err_msg=(
                f"{what}: first mismatch after step {step + 1} (1-based) of {ours.shape[0]}, "
                f"element {idx}: ours={ours[step][idx]!r} framework={theirs[step][idx]!r}"
            ),
        )


def assert_close_scaled(actual, desired, scale, k, dtype, what=""):
    """Element-wise |actual - desired| <= k * eps(dtype) * scale.

    ``scale`` is the magnitude of the largest intermediate that enters the element's
    computation, so this bounds the *absolute* error that any ordering of the same
    formula may legitimately produce (e.g. BCE at x=-100, y=0.001 computes
    0.1 = 0.999*(-100) - (-100): the relative error is 1000x eps, the absolute one is
    a few ulp(100))."""
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    tol = k * np.finfo(dtype).eps * np.broadcast_to(np.asarray(scale, np.float64), desired.shape)
    err = np.abs(actual - desired)
    bad = ~(err <= tol)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.ndim else ()
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.size} elements outside {k} eps * scale; first at "
            f"{i}: actual={actual[i]!r} desired={desired[i]!r} err={err[i]:.3g} tol={tol[i]:.3g}"
        )


# --------------------------------------------------------------------------------------
# Optimizer cases
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptCase:
    framework: str  # torch | torch_fused | tf1 | keras | optax | sklearn
    kind: str  # adam | sgd | lion | adagrad | rmsprop | lamb
    name: str
    hp: dict  # keyword arguments for fusedopt.<kind>_step (without state/step/convention;
    #           adagrad's initial_accumulator_value fills its state_sum, rmsprop's
    #           initial_square_avg its square_avg)
    dtypes: tuple = ("float32", "float64")
    fw: dict = dataclasses.field(default_factory=dict)  # framework-only options

    @property
    def id(self):
        return f"{self.framework}-{self.kind}-{self.name}"

    @property
    def convention(self):
        return "torch" if self.framework.startswith("torch") else self.framework


# Hyper-parameters that are exactly representable in float32.  Keras keeps the learning
# rate in a float32 (floatx) variable and, with the TF backend, casts Python-float
# beta/weight-decay/momentum values with tf.cast, which goes through float32
# (tf.cast(0.9, tf.float64) == 0.8999999761581421); with these values a float64 Keras run
# is genuinely float64 on every backend and can be compared at 1e-12 (see run_keras).
F32_EXACT = dict(lr=2.0**-10, betas=(0.875, 1.0 - 2.0**-10), eps=2.0**-20)

_TORCH_CASES = [
    # torch/testing/_internal/common_optimizers.py configurations (SEMANTICS.md section 11)
    ("adam", "default", {}),
    ("adam", "lr0.01", dict(lr=0.01)),
    ("adam", "wd0.1", dict(weight_decay=0.1)),
    ("adam", "wd0.1-maximize", dict(weight_decay=0.1, maximize=True)),
    ("adam", "wd0.1-amsgrad", dict(weight_decay=0.1, amsgrad=True)),
    # AdamW == Adam(decoupled_weight_decay=True); torch.optim.AdamW's default wd is 1e-2
    ("adam", "adamw-default", dict(weight_decay=1e-2, decoupled_weight_decay=True)),
    ("adam", "adamw-wd0.1", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("adam", "adamw-amsgrad", dict(weight_decay=1e-2, decoupled_weight_decay=True, amsgrad=True)),
    ("sgd", "default", dict(lr=1e-3)),
    ("sgd", "lr0.01", dict(lr=1e-2)),
    ("sgd", "momentum0.9", dict(lr=1e-3, momentum=0.9)),
    ("sgd", "momentum0.9-dampening0.5", dict(lr=1e-3, momentum=0.9, dampening=0.5)),
    ("sgd", "momentum0.9-wd0.1", dict(lr=1e-3, momentum=0.9, weight_decay=0.1)),
    ("sgd", "nesterov-wd0.1", dict(lr=1e-3, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("sgd", "wd0.1-maximize", dict(lr=1e-3, weight_decay=0.1, maximize=True)),
    ("adagrad", "default", {}),
    ("adagrad", "lr_decay0.01", dict(lr_decay=0.01)),
    ("adagrad", "wd0.1-maximize", dict(weight_decay=0.1, maximize=True)),
    ("adagrad", "iav0.1-eps1e-6", dict(initial_accumulator_value=0.1, eps=1e-6)),
    ("rmsprop", "default", {}),
    ("rmsprop", "wd0.1-maximize", dict(weight_decay=0.1, maximize=True)),
    ("rmsprop", "centered", dict(centered=True)),
    ("rmsprop", "momentum0.9", dict(lr=1e-3, momentum=0.9)),
    ("rmsprop", "centered-momentum0.5-wd0.1", dict(lr=1e-3, centered=True, momentum=0.5,
                                                   weight_decay=0.1)),
    ("rmsprop", "alpha0.9-eps1e-6-init1", dict(alpha=0.9, eps=1e-6, initial_square_avg=1.0)),
]
#: the optimizers torch has a fused CPU kernel for (torch.optim.RMSprop has none)
_TORCH_FUSED = ("adam", "sgd", "adagrad")

OPT_CASES = (
    # torch: default single-tensor for-loop path (the CPU default) and the fused CPU kernel
    [OptCase("torch", k, n, hp) for k, n, hp in _TORCH_CASES]
    + [OptCase("torch_fused", k, n, hp) for k, n, hp in _TORCH_CASES if k in _TORCH_FUSED]
    + [
        # tf.compat.v1.train.{Adam,GradientDescent,Momentum}Optimizer (defaults lr=1e-3,
        # betas=(.9,.999), eps=1e-8 == fusedopt's defaults)
        OptCase("tf1", "adam", "default", {}),
        OptCase("tf1", "adam", "eps0.1", dict(eps=0.1)),
        OptCase("tf1", "sgd", "gd", dict(lr=0.01)),
        OptCase("tf1", "sgd", "momentum0.9", dict(lr=0.01, momentum=0.9)),
        OptCase("tf1", "sgd", "momentum0.9-nesterov", dict(lr=0.01, momentum=0.9, nesterov=True)),
        # keras.optimizers.{Adam,AdamW,SGD}; Keras' default eps is 1e-7, passed explicitly.
        # float32 only with Keras' decimal defaults (see F32_EXACT for why), float64 with
        # float32-exact hyper-parameters below.
        OptCase("keras", "adam", "default", dict(eps=1e-7), ("float32",)),
        OptCase("keras", "adam", "amsgrad", dict(eps=1e-7, amsgrad=True), ("float32",)),
        OptCase(
            "keras", "adam", "adamw-wd0.004",
            dict(eps=1e-7, weight_decay=0.004, decoupled_weight_decay=True), ("float32",),
            fw=dict(cls="AdamW"),
        ),
        OptCase(
            "keras", "adam", "adam-wd0.004",
            dict(eps=1e-7, weight_decay=0.004, decoupled_weight_decay=True), ("float32",),
            fw=dict(cls="Adam"),
        ),
        OptCase("keras", "sgd", "plain", dict(lr=0.01), ("float32",)),
        OptCase("keras", "sgd", "plain-wd0.01", dict(lr=0.01, weight_decay=0.01), ("float32",)),
        OptCase("keras", "sgd", "momentum0.9", dict(lr=0.01, momentum=0.9), ("float32",)),
        OptCase(
            "keras", "sgd", "momentum0.9-wd0.01",
            dict(lr=0.01, momentum=0.9, weight_decay=0.01), ("float32",),
        ),
        OptCase(
            "keras", "sgd", "nesterov-wd0.01",
            dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01), ("float32",),
        ),
        OptCase("keras", "adam", "f32exact-hp", dict(F32_EXACT)),
        OptCase("keras", "adam", "f32exact-hp-amsgrad", dict(F32_EXACT, amsgrad=True)),
        OptCase(
            "keras", "adam", "f32exact-hp-adamw",
            dict(F32_EXACT, weight_decay=2.0**-6, decoupled_weight_decay=True),
            fw=dict(cls="AdamW"),
        ),
        OptCase(
            "keras", "sgd", "f32exact-hp-nesterov-wd",
            dict(lr=2.0**-7, momentum=0.875, nesterov=True, weight_decay=2.0**-6),
        ),
        # optax.{adam,adamw,amsgrad,sgd}
        OptCase("optax", "adam", "adam", {}),
        OptCase("optax", "adam", "adamw-wd1e-4", dict(weight_decay=1e-4, decoupled_weight_decay=True)),
        OptCase("optax", "adam", "amsgrad", dict(amsgrad=True)),
        OptCase("optax", "adam", "eps_root1e-8", dict(eps_root=1e-8)),
        OptCase("optax", "sgd", "plain", dict(lr=0.01)),
        OptCase("optax", "sgd", "momentum0.9", dict(lr=0.01, momentum=0.9)),
        OptCase("optax", "sgd", "nesterov", dict(lr=0.01, momentum=0.9, nesterov=True)),
        # optax.lion (fusedopt's torch convention is the same rule) and keras.optimizers.Lion
        OptCase("optax", "lion", "default", dict(lr=1e-3, weight_decay=1e-3)),
        OptCase("optax", "lion", "wd0", dict(lr=1e-3)),
        OptCase("optax", "lion", "betas0.95-0.98-wd0.1", dict(lr=3e-4, betas=(0.95, 0.98),
                                                             weight_decay=0.1)),
        OptCase("keras", "lion", "default", dict(lr=1e-3), ("float32",)),
        OptCase("keras", "lion", "wd0.01", dict(lr=1e-3, weight_decay=0.01), ("float32",)),
        OptCase("keras", "lion", "f32exact-hp-wd", dict(lr=2.0**-10, betas=(0.875, 0.9921875),
                                                        weight_decay=2.0**-6)),
        # optax.lamb (fusedopt's torch convention is the same rule) and keras.optimizers.Lamb
        OptCase("optax", "lamb", "default", {}),
        OptCase("optax", "lamb", "wd0.01-betas0.8-0.99", dict(lr=3e-3, betas=(0.8, 0.99),
                                                             weight_decay=0.01)),
        OptCase("keras", "lamb", "default", dict(eps=1e-7), ("float32",)),
        OptCase("keras", "lamb", "wd0.01", dict(eps=1e-7, weight_decay=0.01), ("float32",)),
        OptCase("keras", "lamb", "f32exact-hp-wd", dict(F32_EXACT, weight_decay=2.0**-6)),
        # tf.compat.v1.train.AdagradOptimizer (no epsilon; accumulator from 0.1),
        # keras.optimizers.Adagrad and optax.adagrad (eps 1e-7 inside the square root)
        OptCase("tf1", "adagrad", "default", dict(initial_accumulator_value=0.1, eps=0.0)),
        OptCase("tf1", "adagrad", "iav0.5", dict(lr=0.05, initial_accumulator_value=0.5,
                                                 eps=0.0)),
        OptCase("keras", "adagrad", "default", dict(lr=1e-3, initial_accumulator_value=0.1,
                                                    eps=1e-7), ("float32",)),
        OptCase("keras", "adagrad", "wd0.01", dict(lr=1e-2, initial_accumulator_value=0.1,
                                                   eps=1e-7, weight_decay=0.01), ("float32",)),
        OptCase("keras", "adagrad", "f32exact-hp-wd",
                dict(lr=2.0**-7, initial_accumulator_value=0.125, eps=2.0**-20,
                     weight_decay=2.0**-6)),
        OptCase("optax", "adagrad", "default", dict(initial_accumulator_value=0.1, eps=1e-7)),
        OptCase("optax", "adagrad", "iav0-eps0", dict(lr=0.05, initial_accumulator_value=0.0,
                                                      eps=0.0)),
        # tf.compat.v1.train.RMSPropOptimizer (rms from 1, eps 1e-10 inside the square root,
        # lr inside the momentum buffer), keras.optimizers.RMSprop and optax.rmsprop
        OptCase("tf1", "rmsprop", "default", dict(lr=1e-3, alpha=0.9, eps=1e-10,
                                                  initial_square_avg=1.0)),
        OptCase("tf1", "rmsprop", "momentum0.9", dict(lr=1e-3, alpha=0.9, eps=1e-10,
                                                      momentum=0.9, initial_square_avg=1.0)),
        OptCase("tf1", "rmsprop", "centered-momentum0.5",
                dict(lr=1e-3, alpha=0.9, eps=1e-6, momentum=0.5, centered=True,
                     initial_square_avg=1.0)),
        OptCase("keras", "rmsprop", "default", dict(lr=1e-3, alpha=0.9, eps=1e-7),
                ("float32",)),
        OptCase("keras", "rmsprop", "centered-momentum0.9-wd0.01",
                dict(lr=1e-3, alpha=0.9, eps=1e-7, centered=True, momentum=0.9,
                     weight_decay=0.01), ("float32",)),
        OptCase("keras", "rmsprop", "f32exact-hp-centered-momentum-wd",
                dict(lr=2.0**-10, alpha=0.875, eps=2.0**-20, centered=True, momentum=0.75,
                     weight_decay=2.0**-6)),
        OptCase("optax", "rmsprop", "default", dict(lr=1e-3, alpha=0.9, eps=1e-8)),
        OptCase("optax", "rmsprop", "centered-momentum0.9-init0.1",
                dict(lr=1e-3, alpha=0.9, eps=1e-8, centered=True, momentum=0.9,
                     initial_square_avg=0.1)),
        # sklearn.neural_network._stochastic_optimizers (constant learning rate)
        OptCase("sklearn", "adam", "adam", {}),
        OptCase("sklearn", "sgd", "momentum0.9", dict(lr=0.01, momentum=0.9, nesterov=False)),
        OptCase("sklearn", "sgd", "momentum0.9-nesterov", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ]
)

_ADAM_DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                      decoupled_weight_decay=False, amsgrad=False, maximize=False, eps_root=0.0)
_SGD_DEFAULTS = dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False)


_LION_DEFAULTS = dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0)
_ADAGRAD_DEFAULTS = dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                         eps=1e-10, maximize=False)
_RMSPROP_DEFAULTS = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                         centered=False, maximize=False, initial_square_avg=0.0)
_LAMB_DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0)
#: the optimizers added after Adam and SGD run 200 steps with the learning rate halved
#: after LR_CHANGE_AT of them (a scheduler's change, as every framework allows it)
SCHEDULED = ("lion", "adagrad", "rmsprop", "lamb")
SCHEDULED_STEPS, LR_CHANGE_AT = 200, 100


def _lr_at(case, t):
    """The learning rate of (1-based) step t."""
    lr = _full_hp(case)["lr"]
    return lr * 0.5 if case.kind in SCHEDULED and t > LR_CHANGE_AT else lr


def _steps(case):
    return SCHEDULED_STEPS if case.kind in SCHEDULED else N_STEPS


def _full_hp(case):
    """Hyper-parameters with fusedopt's documented defaults filled in: the framework is
    always constructed with every value spelled out, while fusedopt is called with only
    ``case.hp`` (so its defaults are exercised too)."""
    defaults = {"adam": _ADAM_DEFAULTS, "sgd": _SGD_DEFAULTS, "lion": _LION_DEFAULTS,
                "adagrad": _ADAGRAD_DEFAULTS, "rmsprop": _RMSPROP_DEFAULTS,
                "lamb": _LAMB_DEFAULTS}
    return dict(defaults[case.kind], **case.hp)


# ----------------------------------------------------------------------------- fusedopt


def run_fusedopt(fo, case, p0, grads):
    p = p0.copy()
    traj = []
    conv = case.convention
    if case.kind == "adam":
        m = np.zeros_like(p)
        v = np.zeros_like(p)
        vmax = np.zeros_like(p) if case.hp.get("amsgrad") else None
        for t, g in enumerate(grads, start=1):
            g_in = g.copy()
            fo.adam_step(p, g_in, m, v, step=t, max_exp_avg_sq=vmax, convention=conv, **case.hp)
            assert np.array_equal(g_in, g), "adam_step modified the gradient"
            traj.append(p.copy())
    elif case.kind == "lion":
        m = np.zeros_like(p)
        for t, g in enumerate(grads, start=1):
            g_in = g.copy()
            fo.lion_step(p, g_in, m, convention=conv, **dict(case.hp, lr=_lr_at(case, t)))
            assert np.array_equal(g_in, g), "lion_step modified the gradient"
            traj.append(p.copy())
    elif case.kind == "lamb":
        m, v = np.zeros_like(p), np.zeros_like(p)
        for t, g in enumerate(grads, start=1):
            g_in = g.copy()
            fo.lamb_step(p, g_in, m, v, step=t, convention=conv,
                         **dict(case.hp, lr=_lr_at(case, t)))
            assert np.array_equal(g_in, g), "lamb_step modified the gradient"
            traj.append(p.copy())
    elif case.kind == "adagrad":
        hp = dict(case.hp)
        s = np.full_like(p, hp.pop("initial_accumulator_value", 0.0))
        for t, g in enumerate(grads, start=1):
            g_in = g.copy()
            fo.adagrad_step(p, g_in, s, step=t, convention=conv,
                            **dict(hp, lr=_lr_at(case, t)))
            assert np.array_equal(g_in, g), "adagrad_step modified the gradient"
            traj.append(p.copy())
    elif case.kind == "rmsprop":
        hp = dict(case.hp)
        v = np.full_like(p, hp.pop("initial_square_avg", 0.0))
        buf = np.zeros_like(p) if hp.get("momentum") else None
        gavg = np.zeros_like(p) if hp.get("centered") else None
        for t, g in enumerate(grads, start=1):
            g_in = g.copy()
            fo.rmsprop_step(p, g_in, v, buf, gavg, convention=conv,
                            **dict(hp, lr=_lr_at(case, t)))
            assert np.array_equal(g_in, g), "rmsprop_step modified the gradient"
            traj.append(p.copy())
    else:
        buf = np.zeros_like(p) if case.hp.get("momentum") else None
        for t, g in enumerate(grads, start=1):
            g_in = g.copy()
            fo.sgd_step(p, g_in, buf, step=t, convention=conv, **case.hp)
            assert np.array_equal(g_in, g), "sgd_step modified the gradient"
            traj.append(p.copy())
    assert p.dtype == p0.dtype
    return np.stack(traj)


# ----------------------------------------------------------------------------- torch


def run_torch(torch, case, p0, grads, fused):
    hp = _full_hp(case)
    param = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    variant = dict(fused=True) if fused else dict(foreach=False)
    if case.kind == "adam":
        # AdamW is its own public class; check it rather than Adam(decoupled_weight_decay)
        cls = torch.optim.AdamW if hp["decoupled_weight_decay"] else torch.optim.Adam
        opt = cls([param], lr=hp["lr"], betas=hp["betas"], eps=hp["eps"],
                  weight_decay=hp["weight_decay"], amsgrad=hp["amsgrad"],
                  maximize=hp["maximize"], **variant)
    elif case.kind == "adagrad":
        opt = torch.optim.Adagrad([param], lr=hp["lr"], lr_decay=hp["lr_decay"],
                                  weight_decay=hp["weight_decay"],
                                  initial_accumulator_value=hp["initial_accumulator_value"],
                                  eps=hp["eps"], maximize=hp["maximize"], **variant)
    elif case.kind == "rmsprop":
        opt = torch.optim.RMSprop([param], lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"],
                                  weight_decay=hp["weight_decay"], momentum=hp["momentum"],
                                  centered=hp["centered"], maximize=hp["maximize"],
                                  **variant)
        if hp["initial_square_avg"]:    # torch starts at 0; a state given before the
            opt.state[param] = {           # first step is kept (its _init_group)
                "step": torch.tensor(0.0),
                "square_avg": torch.full_like(param, hp["initial_square_avg"]),
                **{k: torch.zeros_like(param) for k, on in
                   (("momentum_buffer", hp["momentum"] > 0), ("grad_avg", hp["centered"]))
                   if on}}
    else:
        opt = torch.optim.SGD([param], lr=hp["lr"], momentum=hp["momentum"],
                              dampening=hp["dampening"], weight_decay=hp["weight_decay"],
                              nesterov=hp["nesterov"], maximize=hp["maximize"], **variant)
    traj = []
    for t, g in enumerate(grads, start=1):
        opt.param_groups[0]["lr"] = _lr_at(case, t)
        param.grad = torch.from_numpy(g.copy())
        opt.step()
        traj.append(param.detach().numpy().copy())
    return np.stack(traj)


# ----------------------------------------------------------------------------- tf1


def run_tf1(tf, case, p0, grads):
    """tf.compat.v1.train optimizers in eager mode, hyper-parameters passed as Python
    floats (the normal usage).

    Note for float64 variables (TF 2.21, training/adam.py, momentum.py,
    gradient_descent.py): ``_prepare`` turns each Python-float hyper-parameter into a
    *float32* tensor with ``convert_to_tensor`` and ``_apply_dense`` casts it to the
    variable dtype, so lr, beta1, beta2, epsilon and momentum act as their float32
    roundings (0.9 -> 0.8999999761581421); and AdamOptimizer creates
    ``beta1_power``/``beta2_power`` from the Python-float betas, i.e. as *float32*
    variables whose running product is taken in float32 and cast to float64 at every
    apply.  This is what fusedopt's "tf1" convention reproduces for float64 (the test
    asserts the accumulators really are float32).  (Passing the hyper-parameters as
    float64 tensors instead would make TF1 compute everything in float64 -- a different
    convention, not the one fusedopt implements.)
    """
    hp = _full_hp(case)
    var = tf.Variable(p0.copy())
    if case.kind == "adam":
        opt = tf.compat.v1.train.AdamOptimizer(
            learning_rate=hp["lr"], beta1=hp["betas"][0], beta2=hp["betas"][1], epsilon=hp["eps"])
    elif case.kind in SCHEDULED:
        lr_now = [hp["lr"]]
        if case.kind == "adagrad":
            assert hp["eps"] == 0.0       # TF1's Adagrad has none
            opt = tf.compat.v1.train.AdagradOptimizer(
                learning_rate=lambda: lr_now[0],     # (eager mode: read at every apply)
                initial_accumulator_value=hp["initial_accumulator_value"])
        else:
            assert hp["initial_square_avg"] == 1.0   # TF1's rms slot starts at ones
            opt = tf.compat.v1.train.RMSPropOptimizer(
                learning_rate=lambda: lr_now[0], decay=hp["alpha"], momentum=hp["momentum"],
                epsilon=hp["eps"], centered=hp["centered"])
        traj = []
        for t, g in enumerate(grads, start=1):
            lr_now[0] = _lr_at(case, t)
            opt.apply_gradients([(tf.constant(g), var)])
            traj.append(var.numpy().copy())
        return np.stack(traj)
    elif hp["momentum"] == 0:
        opt = tf.compat.v1.train.GradientDescentOptimizer(learning_rate=hp["lr"])
    else:
        opt = tf.compat.v1.train.MomentumOptimizer(
            learning_rate=hp["lr"], momentum=hp["momentum"], use_nesterov=hp["nesterov"])
    traj = []
    for g in grads:
        opt.apply_gradients([(tf.constant(g), var)])
        traj.append(var.numpy().copy())
    if case.kind == "adam" and hasattr(opt, "_get_beta_accumulators"):
        assert all(v.dtype == tf.float32 for v in opt._get_beta_accumulators())
    return np.stack(traj)


# ----------------------------------------------------------------------------- keras


def run_keras(keras, case, p0, grads):
    """keras.optimizers (TF backend), eager ``apply_gradients``.

    float64 variables with decimal hyper-parameters are *not* computed in float64 by
    Keras 3.15 + TF backend: the learning rate lives in a float32 (floatx) variable, and
    ``ops.cast(self.beta_1, float64)`` / ``tf.cast(self.weight_decay, float64)`` /
    ``ops.cast(self.momentum, float64)`` round the Python float through float32, while
    ``1 - self.beta_1`` and ``self.epsilon`` enter as exact doubles.  (Verified
    bit-exactly: a NumPy model using float32(lr), float32(beta) in the beta powers,
    float32(wd), float32(momentum), exact 1-beta and eps reproduces Keras-TF float64 runs
    exactly.)  With the torch or JAX backends only the learning rate is rounded, so
    float64 Keras is backend-dependent; the float64 cases therefore use float32-exact
    hyper-parameters (F32_EXACT), and the decimal Keras defaults are tested in float32.
    """
    hp = _full_hp(case)
    dtype = str(p0.dtype)
    var = keras.Variable(p0.copy(), dtype=dtype)
    wd = hp["weight_decay"] or None
    if case.kind == "adam":
        cls = getattr(keras.optimizers, case.fw.get("cls", "Adam"))
        kw = dict(learning_rate=hp["lr"], beta_1=hp["betas"][0], beta_2=hp["betas"][1],
                  epsilon=hp["eps"], amsgrad=hp["amsgrad"])
        opt = cls(weight_decay=wd, **kw)
    elif case.kind == "lion":
        opt = keras.optimizers.Lion(learning_rate=hp["lr"], beta_1=hp["betas"][0],
                                    beta_2=hp["betas"][1], weight_decay=wd)
    elif case.kind == "lamb":
        opt = keras.optimizers.Lamb(learning_rate=hp["lr"], beta_1=hp["betas"][0],
                                    beta_2=hp["betas"][1], epsilon=hp["eps"],
                                    weight_decay=wd)
    elif case.kind == "adagrad":
        opt = keras.optimizers.Adagrad(
            learning_rate=hp["lr"], initial_accumulator_value=hp["initial_accumulator_value"],
            epsilon=hp["eps"], weight_decay=wd)
    elif case.kind == "rmsprop":
        assert hp["initial_square_avg"] == 0.0       # Keras' velocity starts at zeros
        opt = keras.optimizers.RMSprop(
            learning_rate=hp["lr"], rho=hp["alpha"], momentum=hp["momentum"],
            epsilon=hp["eps"], centered=hp["centered"], weight_decay=wd)
    else:
        opt = keras.optimizers.SGD(learning_rate=hp["lr"], momentum=hp["momentum"],
                                   nesterov=hp["nesterov"], weight_decay=wd)
    traj = []
    for t, g in enumerate(grads, start=1):
        if case.kind in SCHEDULED:
            opt.learning_rate = _lr_at(case, t)       # (assigns the float32 variable)
        opt.apply_gradients([(keras.ops.convert_to_tensor(g, dtype=dtype), var)])
        traj.append(keras.ops.convert_to_numpy(var.value).copy())
    return np.stack(traj)


# ----------------------------------------------------------------------------- optax


def run_optax(jax, optax, case, p0, grads):
    """optax transformations, un-jitted (op by op, no XLA fusion).  float64 runs are made
    inside ``jax.enable_x64(True)`` so the global jax configuration is left alone."""
    import jax.numpy as jnp

    hp = _full_hp(case)
    lr = hp["lr"]
    if case.kind == "adam":
        common = dict(b1=hp["betas"][0], b2=hp["betas"][1], eps=hp["eps"], eps_root=hp["eps_root"])
        if hp["amsgrad"]:
            assert not hp["weight_decay"]
            tx = optax.amsgrad(lr, **common)
        elif hp["decoupled_weight_decay"]:
            tx = optax.adamw(lr, weight_decay=hp["weight_decay"], **common)
        else:
            tx = optax.adam(lr, **common)
    elif case.kind in SCHEDULED:
        # the transformation of each step's Python-float lr (optax's states do not hold
        # the lr, so one state carries over; inject_hyperparams would make lr an array)
        def make(lr):
            if case.kind == "lion":
                return optax.lion(lr, b1=hp["betas"][0], b2=hp["betas"][1],
                                  weight_decay=hp["weight_decay"])
            if case.kind == "lamb":
                return optax.lamb(lr, b1=hp["betas"][0], b2=hp["betas"][1], eps=hp["eps"],
                                  weight_decay=hp["weight_decay"])
            if case.kind == "rmsprop":
                return optax.rmsprop(lr, decay=hp["alpha"], eps=hp["eps"],
                                     initial_scale=hp["initial_square_avg"],
                                     centered=hp["centered"],
                                     momentum=hp["momentum"] or None)
            return optax.adagrad(lr, initial_accumulator_value=hp["initial_accumulator_value"],
                                 eps=hp["eps"])
        tx = make(lr)
    else:
        tx = optax.sgd(lr, momentum=hp["momentum"] or None, nesterov=hp["nesterov"])
    traj = []
    with jax.enable_x64(p0.dtype == np.float64):
        params = jnp.asarray(p0)
        assert params.dtype == p0.dtype
        state = tx.init(params)
        for t, g in enumerate(grads, start=1):
            if case.kind in SCHEDULED:
                tx = make(_lr_at(case, t))
            updates, state = tx.update(jnp.asarray(g), state, params)
            params = optax.apply_updates(params, updates)
            traj.append(np.asarray(params).copy())
    return np.stack(traj)


# ----------------------------------------------------------------------------- sklearn


def run_sklearn(sk_optim, case, p0, grads):
    hp = _full_hp(case)
    params = [p0.copy()]
    if case.kind == "adam":
        opt = sk_optim.AdamOptimizer(params, learning_rate_init=hp["lr"], beta_1=hp["betas"][0],
                                     beta_2=hp["betas"][1], epsilon=hp["eps"])
    else:
        opt = sk_optim.SGDOptimizer(params, learning_rate_init=hp["lr"], lr_schedule="constant",
                                    momentum=hp["momentum"], nesterov=hp["nesterov"])
    traj = []
    for g in grads:
        opt.update_params(params, [g.copy()])  # mutates params[0] in place
        traj.append(params[0].copy())
    assert params[0].dtype == p0.dtype
    return np.stack(traj)


_FRAMEWORK_CACHE: dict = {}


def framework_trajectory(request, case, dtype):
    key = (case.id, dtype)
    if key not in _FRAMEWORK_CACHE:
        fw = case.framework
        p0, grads = make_problem(case.id, dtype, _steps(case))
        if fw in ("torch", "torch_fused"):
            traj = run_torch(request.getfixturevalue("torch"), case, p0, grads, fused=fw == "torch_fused")
        elif fw == "tf1":
            traj = run_tf1(request.getfixturevalue("tf"), case, p0, grads)
        elif fw == "keras":
            traj = run_keras(request.getfixturevalue("keras"), case, p0, grads)
        elif fw == "optax":
            traj = run_optax(request.getfixturevalue("jax"), request.getfixturevalue("optax"),
                             case, p0, grads)
        elif fw == "sklearn":
            traj = run_sklearn(request.getfixturevalue("sk_optim"), case, p0, grads)
        else:  # pragma: no cover
            raise AssertionError(fw)
        assert np.isfinite(traj).all()
        _FRAMEWORK_CACHE[key] = (p0, grads, traj)
    return _FRAMEWORK_CACHE[key]


_OPT_PARAMS = [
    pytest.param(case, dtype, id=f"{case.id}-{'f32' if dtype == 'float32' else 'f64'}")
    for case in OPT_CASES
    for dtype in case.dtypes
]


@pytest.mark.parametrize("case,dtype", _OPT_PARAMS)
def test_optimizer_trajectory(request, fo, case, dtype):
    """N_STEPS updates with random gradients: fusedopt(convention=...) must reproduce the
    framework's parameter trajectory element by element, at every step."""
    p0, grads, theirs = framework_trajectory(request, case, dtype)
    ours = run_fusedopt(fo, case, p0, grads)
    # sanity: the test is not vacuous (parameters really moved)
    assert np.abs(theirs[-1] - p0).max() > 1e-3
    rtol, atol = _traj_tol(dtype)
    assert_trajectory_close(ours, theirs, rtol, atol, what=f"{case.id} [{dtype}]")


# --------------------------------------------------------------------------------------
# Options a framework does not have must raise ValueError
# --------------------------------------------------------------------------------------

_UNSUPPORTED = [
    ("adam", "pytorch", {}),  # unknown convention
    ("sgd", "pytorch", {}),
    ("adam", "torch", dict(eps_root=1e-8)),  # eps_root is optax's
    ("adam", "keras", dict(eps_root=1e-8)),
    ("adam", "tf1", dict(weight_decay=0.1)),
    ("adam", "tf1", dict(maximize=True)),
    ("adam", "tf1", dict(amsgrad=True)),
    ("adam", "sklearn", dict(amsgrad=True)),
    ("adam", "keras", dict(maximize=True)),
    ("adam", "keras", dict(weight_decay=0.1, decoupled_weight_decay=False)),
    ("adam", "optax", dict(maximize=True)),
    ("adam", "optax", dict(weight_decay=0.1, decoupled_weight_decay=False)),
    ("adam", "sklearn", dict(weight_decay=0.1)),
    ("adam", "sklearn", dict(maximize=True)),
    ("sgd", "tf1", dict(dampening=0.5)),
    ("sgd", "tf1", dict(maximize=True)),
    ("sgd", "tf1", dict(weight_decay=0.1)),
    ("sgd", "keras", dict(dampening=0.5)),
    ("sgd", "keras", dict(maximize=True)),
    ("sgd", "optax", dict(dampening=0.5)),
    ("sgd", "optax", dict(maximize=True)),
    ("sgd", "optax", dict(weight_decay=0.1)),
    # torch itself: "Nesterov momentum requires a momentum and zero dampening"
    ("sgd", "torch", dict(nesterov=True, dampening=0.5)),
    ("sgd", "sklearn", dict(dampening=0.5)),
    ("sgd", "sklearn", dict(maximize=True)),
    ("sgd", "sklearn", dict(weight_decay=0.1)),
    ("adagrad", "sklearn", {}),                 # scikit-learn has no Adagrad
    ("adagrad", "tf1", dict(maximize=True)),
    ("adagrad", "tf1", dict(lr_decay=0.1)),
    ("adagrad", "tf1", dict(weight_decay=0.1)),
    ("adagrad", "keras", dict(maximize=True)),
    ("adagrad", "keras", dict(lr_decay=0.1)),
    ("adagrad", "optax", dict(lr_decay=0.1)),
    ("adagrad", "optax", dict(weight_decay=0.1)),
    ("rmsprop", "sklearn", {}),                 # scikit-learn has no RMSprop
    ("lamb", "tf1", {}),                        # TF1 and scikit-learn have no LAMB
    ("lamb", "sklearn", {}),
    ("rmsprop", "tf1", dict(maximize=True)),
    ("rmsprop", "tf1", dict(weight_decay=0.1)),
    ("rmsprop", "keras", dict(maximize=True)),
    ("rmsprop", "optax", dict(maximize=True)),
    ("rmsprop", "optax", dict(weight_decay=0.1)),
    ("rmsprop", "torch", dict(alpha=1.0)),      # fusedopt: alpha in [0, 1) (torch allows
    #                                             1, where the average never moves)
    ("rmsprop", "torch", dict(alpha=-0.1)),
    ("rmsprop", "torch", dict(momentum=-0.5)),
]


@pytest.mark.parametrize(
    "kind,convention,kw", _UNSUPPORTED,
    ids=[f"{k}-{c}-" + ("-".join(f"{a}{b}" for a, b in kw.items()) or "unknown")
         for k, c, kw in _UNSUPPORTED],
)
def test_unsupported_options_raise(fo, kind, convention, kw):
    p = np.ones(7)
    g = np.full(7, 0.5)
    before = p.copy()
    with pytest.raises(ValueError):
        if kind == "adam":
            mx = np.zeros(7) if kw.get("amsgrad") else None
            fo.adam_step(p, g, np.zeros(7), np.zeros(7), step=1, max_exp_avg_sq=mx,
                         convention=convention, **kw)
        elif kind == "adagrad":
            fo.adagrad_step(p, g, np.zeros(7), step=1, convention=convention, **kw)
        elif kind == "rmsprop":
            fo.rmsprop_step(p, g, np.zeros(7), np.zeros(7), np.zeros(7),
                            convention=convention, **kw)
        elif kind == "lamb":
            fo.lamb_step(p, g, np.zeros(7), np.zeros(7), step=1, convention=convention, **kw)
        else:
            fo.sgd_step(p, g, np.zeros(7), lr=0.1, momentum=0.9, step=1, convention=convention, **kw)
    np.testing.assert_array_equal(p, before)


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------

BCE_SHAPE = (23, 7)
# logits that stress the stable formulation: exact 0, tiny, moderately and very large
# (exp(-|x|) underflows float32 at |x| ~ 103), both signs
_SPECIAL_LOGITS = [0.0, 1e-3, -1e-3, 15.0, -15.0, 40.0, -40.0, 100.0, -100.0, 3.0, -3.0]


def bce_inputs(dtype, seed=0, shape=BCE_SHAPE):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 4.0
    y = rng.uniform(0.0, 1.0, shape)
    # hard labels mixed with soft ones
    y.flat[::4] = 0.0
    y.flat[1::4] = 1.0
    # special logits, each paired with y = 0, 1 and a soft label
    k = len(_SPECIAL_LOGITS)
    x.flat[: 3 * k] = np.repeat(_SPECIAL_LOGITS, 3)
    y.flat[: 3 * k] = np.tile([0.0, 1.0, 0.3], k)
    w = rng.uniform(0.0, 2.0, shape)
    pw = rng.uniform(0.25, 4.0, shape[-1])
    return x.astype(dtype), y.astype(dtype), w.astype(dtype), pw.astype(dtype)


def _bce_scales(x, w, pw, reduction, n):
    """Magnitude bounds for the BCE loss / gradient elements (see assert_close_scaled)."""
    lw = 1.0 + (np.abs(pw) if pw is not None else 1.0)
    wf = np.abs(w) if w is not None else 1.0
    loss_scale = (1.0 + np.abs(x.astype(np.float64))) * lw * wf
    grad_scale = np.broadcast_to(lw * wf, x.shape) / (n if reduction == "mean" else 1)
    return loss_scale, grad_scale


REDUCTIONS = ["mean", "sum", "none"]

# 8 eps * scale: the element loss is a handful of roundings of quantities bounded by
# scale; reductions add log2(n) * eps relative accumulation error (torch sums float32 in
# float32, fusedopt in double), also covered since sum of |l_i| <= sum of scale_i.
LOSS_K = 8


def _check_reduced(loss, loss_none_ref, scale, reduction, dtype, what):
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.dtype == np.dtype(dtype), loss.dtype
        assert_close_scaled(loss, loss_none_ref, scale, LOSS_K, dtype, what)
    else:
        assert isinstance(loss, float), f"{what}: reduced loss must be a Python float, got {type(loss)}"
        n = np.asarray(scale).size
        ref = float(np.sum(loss_none_ref, dtype=np.float64))
        tol_scale = float(np.sum(scale, dtype=np.float64))
        if reduction == "mean":
            ref /= n
            tol_scale /= n
        assert_close_scaled(loss, ref, tol_scale, LOSS_K, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("use_pw", [False, True], ids=["nopw", "pwC"])
def test_bce_vs_torch(fo, torch, dtype, reduction, use_weight, use_pw):
    """F.binary_cross_entropy_with_logits: value and autograd gradient, all reductions,
    element weight of the full shape and pos_weight of shape [C]."""
    import torch.nn.functional as F

    x, y, w, pw = bce_inputs(dtype)
    w = w if use_weight else None
    pw = pw if use_pw else None
    n = x.size

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    lt = F.binary_cross_entropy_with_logits(
        xt, torch.from_numpy(y),
        weight=None if w is None else torch.from_numpy(w),
        pos_weight=None if pw is None else torch.from_numpy(pw),
        reduction=reduction)
    lt.backward(torch.ones_like(lt))
    t_grad = xt.grad.numpy()
    # torch's elementwise loss, to build the reduced references in double
    t_none = F.binary_cross_entropy_with_logits(
        torch.from_numpy(x), torch.from_numpy(y),
        weight=None if w is None else torch.from_numpy(w),
        pos_weight=None if pw is None else torch.from_numpy(pw),
        reduction="none").numpy()

    loss_scale, grad_scale = _bce_scales(x, w, pw, reduction, n)
    kw = dict(weight=w, pos_weight=pw, reduction=reduction)
    what = f"bce/torch {dtype} {reduction} w={use_weight} pw={use_pw}"

    loss, grad = fo.sigmoid_cross_entropy_and_grad(x, y, **kw)
    _check_reduced(loss, t_none, loss_scale, reduction, dtype, what + " loss(_and_grad)")
    if reduction != "none":
        # the framework's own reduced value
        assert_close_scaled(loss, lt.item(), float(np.sum(loss_scale)) / (n if reduction == "mean" else 1),
                            LOSS_K, dtype, what + " loss vs torch reduced")
    assert grad.dtype == np.dtype(dtype) and grad.shape == x.shape
    assert_close_scaled(grad, t_grad, grad_scale, LOSS_K, dtype, what + " grad")

    loss_only = fo.sigmoid_cross_entropy(x, y, **kw)
    _check_reduced(loss_only, t_none, loss_scale, reduction, dtype, what + " loss-only")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_vs_torch_zero_logit_grad_and_stability(fo, torch, dtype):
    """torch's own tests: grad at x=0, y=0, reduction='sum' is exactly 0.5 (with and
    without pos_weight=ones); x=[0,-120], y=[0,1] stays finite."""
    import torch.nn.functional as F

    x = np.zeros((1, 1), dtype)
    y = np.zeros((1, 1), dtype)
    for pw in (None, np.ones(1, dtype)):
        _, g = fo.sigmoid_cross_entropy_and_grad(x, y, pos_weight=pw, reduction="sum")
        assert g[0, 0] == 0.5
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        F.binary_cross_entropy_with_logits(
            xt, torch.from_numpy(y), pos_weight=None if pw is None else torch.from_numpy(pw),
            reduction="sum").backward()
        assert xt.grad.item() == 0.5
    x = np.array([0.0, -120.0], dtype)
    y = np.array([0.0, 1.0], dtype)
    for pw in (None, np.ones(2, dtype)):
        loss, g = fo.sigmoid_cross_entropy_and_grad(x, y, pos_weight=pw, reduction="none")
        assert np.isfinite(loss).all() and np.isfinite(g).all()
        t = F.binary_cross_entropy_with_logits(
            torch.from_numpy(x), torch.from_numpy(y),
            pos_weight=None if pw is None else torch.from_numpy(pw), reduction="none").numpy()
        np.testing.assert_allclose(loss, t, rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_vs_tf_nn(fo, tf, dtype):
    """tf.nn.sigmoid_cross_entropy_with_logits (value + GradientTape gradient) and
    tf.nn.weighted_cross_entropy_with_logits (value; gradient away from x = 0)."""
    x, y, _, pw = bce_inputs(dtype, seed=1)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        lt = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(y), logits=xt)
        total = tf.reduce_sum(lt)
    gt = tape.gradient(total, xt).numpy()
    loss_scale, grad_scale = _bce_scales(x, None, None, "none", x.size)
    loss, grad = fo.sigmoid_cross_entropy_and_grad(x, y, reduction="none")
    assert_close_scaled(loss, lt.numpy(), loss_scale, LOSS_K, dtype, "tf sigmoid_ce loss")
    assert_close_scaled(grad, gt, grad_scale, LOSS_K, dtype, "tf sigmoid_ce grad")
    # At x = 0 with a hard label the derivative is exactly +-0.5 (torch's own test).  TF's
    # 'where' formulation is meant to give 0.5 - z there, but in float32 TF 2.21 returns
    # -0.49999997 for z = 1 once the tensor has >= 8 elements (vectorised Eigen exp/log1p;
    # 2-element tensors give -0.5), so only ours is held to exactness.
    zero = x == 0
    hard0 = zero & ((y == 0) | (y == 1))
    assert hard0.sum() == 2
    np.testing.assert_array_equal(grad[hard0], (0.5 - y[hard0]).astype(dtype))

    pwb = np.broadcast_to(pw, x.shape)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        lt = tf.nn.weighted_cross_entropy_with_logits(
            labels=tf.constant(y), logits=xt, pos_weight=tf.constant(pwb))
        total = tf.reduce_sum(lt)
    gt = tape.gradient(total, xt).numpy()
    loss_scale, grad_scale = _bce_scales(x, None, pw, "none", x.size)
    loss, grad = fo.sigmoid_cross_entropy_and_grad(x, y, pos_weight=pw, reduction="none")
    assert_close_scaled(loss, lt.numpy(), loss_scale, LOSS_K, dtype, "tf weighted_ce loss")
    # TF's autodiff of |x| and relu(-x) uses derivative 0 at x == 0, so its gradient at
    # exactly x = 0 is 1 - z instead of 0.5*(1 + (pw-1) z) - pw z (checked below); compare
    # the true derivative elsewhere.
    assert_close_scaled(grad[~zero], gt[~zero], grad_scale[~zero], LOSS_K, dtype, "tf weighted_ce grad")
    np.testing.assert_allclose(gt[zero], (1 - y[zero]), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_vs_optax(fo, jax, optax, dtype):
    """optax.sigmoid_binary_cross_entropy value and jax.grad of its sum."""
    import jax.numpy as jnp

    x, y, _, _ = bce_inputs(dtype, seed=2)
    with jax.enable_x64(dtype == "float64"):
        xj, yj = jnp.asarray(x), jnp.asarray(y)
        assert xj.dtype == x.dtype
        lo = np.asarray(optax.sigmoid_binary_cross_entropy(xj, yj))
        go = np.asarray(jax.grad(lambda a: optax.sigmoid_binary_cross_entropy(a, yj).sum())(xj))
    loss_scale, grad_scale = _bce_scales(x, None, None, "none", x.size)
    loss, grad = fo.sigmoid_cross_entropy_and_grad(x, y, reduction="none")
    assert_close_scaled(loss, lo, loss_scale, LOSS_K, dtype, "optax loss")
    assert_close_scaled(grad, go, grad_scale, LOSS_K, dtype, "optax grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ls", [0.0, 0.1, 0.3], ids=lambda v: f"ls{v}")
def test_bce_label_smoothing_vs_keras(fo, keras, tf, dtype, ls):
    """keras.losses.binary_crossentropy(from_logits=True, label_smoothing=ls) with the TF
    backend: labels -> labels*(1-ls) + 0.5*ls, then the mean over the last axis.  Our
    reduction='none' averaged over the last axis must equal it, our 'mean' must equal the
    BinaryCrossentropy object's sum_over_batch_size value, and the gradient of the Keras
    sum must equal ours / C."""
    x, y, _, _ = bce_inputs(dtype, seed=3)
    C = x.shape[-1]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        lk = keras.losses.binary_crossentropy(tf.constant(y), xt, from_logits=True, label_smoothing=ls)
        total = tf.reduce_sum(lk)
    gk = tape.gradient(total, xt).numpy()
    lk = lk.numpy()
    assert lk.shape == (x.shape[0],)
    lobj = float(keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=ls, dtype=dtype)(y, x))

    loss_scale, grad_scale = _bce_scales(x, None, None, "none", x.size)
    loss, grad = fo.sigmoid_cross_entropy_and_grad(x, y, label_smoothing=ls, reduction="none")
    row_scale = loss_scale.mean(axis=-1)
    assert_close_scaled(loss.astype(np.float64).mean(axis=-1), lk, row_scale, LOSS_K, dtype,
                        f"keras ls={ls} row means")
    assert_close_scaled(grad / C, gk, grad_scale / C, LOSS_K, dtype, f"keras ls={ls} grad")
    mean = fo.sigmoid_cross_entropy(x, y, label_smoothing=ls, reduction="mean")
    assert_close_scaled(mean, lobj, loss_scale.mean(), LOSS_K, dtype, f"keras ls={ls} mean")


# sklearn/_loss/tests/test_loss.py::test_loss_on_specific_values, HalfBinomialLoss rows:
# (y_true, raw_prediction, loss, gradient); sklearn checks them with rel=abs=1e-15.
SKLEARN_BINOMIAL_TABLE = [
    (0.25, np.log(4), np.log1p(4) - 0.25 * np.log(4), None),
    (0.0, -1e20, 0, 0),
    (1.0, -1e20, 1e20, -1),
    (0.0, -1e3, 0, 0),
    (1.0, -1e3, 1e3, -1),
    (1.0, -37.5, 37.5, -1),
    (1.0, -37.0, 37, 1e-16 - 1),
    (0.0, -37.0, 8.533047625744065e-17, 8.533047625744065e-17),
    (1.0, -36.9, 36.9, 1e-16 - 1),
    (0.0, -36.9, 9.430476078526806e-17, 9.430476078526806e-17),
    (0.0, 37.0, 37, 1 - 1e-16),
    (1.0, 37.0, 8.533047625744066e-17, 8.533047625744066e-17),
    (0.0, 37.5, 37.5, 1),
    (0.0, 232.8, 232.8, 1),
    (1.0, 1e20, 0, 0),
    (0.0, 1e20, 1e20, 1),
    (1.0, 232.8, 0, -1.4287342391028437e-101),
    (1.0, 232.9, 0, 0),
    (1.0, 1e3, 0, 0),
    (0.0, 1e3, 1e3, 1),
]


def test_bce_sklearn_specific_values(fo, sk_loss):
    """sklearn's HalfBinomialLoss specific-values table, against our reduction='none'
    values (float64), with sklearn's own tolerance (rel=abs=1e-15).  The table is also
    re-checked against the installed sklearn so a drifted copy cannot pass silently."""
    y = np.array([r[0] for r in SKLEARN_BINOMIAL_TABLE])
    x = np.array([r[1] for r in SKLEARN_BINOMIAL_TABLE], dtype=np.float64)
    loss, grad = fo.sigmoid_cross_entropy_and_grad(x, y, reduction="none")
    loss_only = fo.sigmoid_cross_entropy(x, y, reduction="none")
    sk = sk_loss.HalfBinomialLoss()
    sk_l, sk_g = sk.loss_gradient(y_true=y, raw_prediction=x)
    for i, (yt, raw, l_true, g_true) in enumerate(SKLEARN_BINOMIAL_TABLE):
        row = f"row {i}: y={yt} raw={raw!r}"
        assert sk_l[i] == pytest.approx(l_true, rel=1e-15, abs=1e-15), row + " (sklearn itself)"
        assert loss[i] == pytest.approx(l_true, rel=1e-15, abs=1e-15), row + f" loss {loss[i]!r}"
        assert loss_only[i] == pytest.approx(l_true, rel=1e-15, abs=1e-15), row + " loss-only"
        if g_true is not None:
            assert sk_g[i] == pytest.approx(g_true, rel=1e-15, abs=1e-15), row + " (sklearn itself)"
            assert grad[i] == pytest.approx(g_true, rel=1e-15, abs=1e-15), row + f" grad {grad[i]!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_vs_sklearn_random(fo, sk_loss, dtype):
    """HalfBinomialLoss.loss_gradient (computed in C double) with sample_weight == our
    element weight, random logits in [-50, 50] plus the special logits."""
    rng = np.random.default_rng(4)
    n = 301
    x = rng.uniform(-50, 50, n)
    x[: len(_SPECIAL_LOGITS)] = _SPECIAL_LOGITS
    y = rng.uniform(0, 1, n)
    y[::3] = 0.0
    y[1::3] = 1.0
    w = rng.uniform(0, 2, n)
    x, y, w = x.astype(dtype), y.astype(dtype), w.astype(dtype)
    sk_l, sk_g = sk_loss.HalfBinomialLoss().loss_gradient(
        y_true=y.astype(np.float64), raw_prediction=x.astype(np.float64),
        sample_weight=w.astype(np.float64))
    loss, grad = fo.sigmoid_cross_entropy_and_grad(x, y, weight=w, reduction="none")
    loss_scale, grad_scale = _bce_scales(x, w, None, "none", n)
    assert_close_scaled(loss, sk_l, loss_scale, LOSS_K, dtype, "sklearn loss")
    assert_close_scaled(grad, sk_g, grad_scale, LOSS_K, dtype, "sklearn grad")


def _regression_inputs(dtype, seed=5, shape=(19, 11)):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal(shape) * 3
    target = rng.standard_normal(shape) * 3
    target.flat[::7] = pred.flat[::7]  # exact ties: torch's l1 subgradient there is sgn(0) = 0
    w = rng.uniform(0, 2, shape)
    return pred.astype(dtype), target.astype(dtype), w.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("which", ["l1", "l2"])
def test_regression_losses_vs_torch(fo, torch, dtype, reduction, use_weight, which):
    """l1_loss / l2_loss (== torch mse_loss) values and autograd gradients.  torch has no
    element weight for these losses; the weighted reference is built in torch as
    reduce(w * F.*_loss(reduction='none')), i.e. the same 'mean over all elements,
    weights not renormalised' convention as binary_cross_entropy_with_logits."""
    import torch.nn.functional as F

    pred, target, w = _regression_inputs(dtype)
    w = w if use_weight else None
    torch_fn = F.l1_loss if which == "l1" else F.mse_loss
    ours_fn = fo.l1_loss if which == "l1" else fo.l2_loss
    ours_fn_grad = fo.l1_loss_and_grad if which == "l1" else fo.l2_loss_and_grad

    pt = torch.from_numpy(pred.copy()).requires_grad_(True)
    tt = torch.from_numpy(target)
    if w is None:
        lt = torch_fn(pt, tt, reduction=reduction)
    else:
        el = torch.from_numpy(w) * torch_fn(pt, tt, reduction="none")
        lt = {"mean": el.mean, "sum": el.sum, "none": lambda: el}[reduction]()
    lt.backward(torch.ones_like(lt))
    t_grad = pt.grad.numpy()
    with torch.no_grad():
        t_none = torch_fn(pt, tt, reduction="none").numpy()
    if w is not None:
        t_none = t_none * w

    d = np.abs(pred.astype(np.float64) - target)
    wf = np.abs(w) if w is not None else 1.0
    n = pred.size
    loss_scale = (d * (1 if which == "l1" else d) + 1) * wf
    grad_scale = np.broadcast_to((1 if which == "l1" else 2 * d + 1) * wf, pred.shape) / (
        n if reduction == "mean" else 1)
    what = f"{which}/torch {dtype} {reduction} w={use_weight}"

    loss, grad = ours_fn_grad(pred, target, weight=w, reduction=reduction)
    _check_reduced(loss, t_none, loss_scale, reduction, dtype, what + " loss(_and_grad)")
    if reduction != "none":
        assert_close_scaled(loss, lt.item(), float(np.sum(loss_scale)) / (n if reduction == "mean" else 1),
                            LOSS_K, dtype, what + " loss vs torch reduced")
    assert grad.dtype == np.dtype(dtype) and grad.shape == pred.shape
    assert_close_scaled(grad, t_grad, grad_scale, LOSS_K, dtype, what + " grad")
    if which == "l1":
        ties = pred == target
        assert ties.any()
        assert (grad[ties] == 0).all() and (t_grad[ties] == 0).all()
    _check_reduced(ours_fn(pred, target, weight=w, reduction=reduction), t_none, loss_scale,
                   reduction, dtype, what + " loss-only")
