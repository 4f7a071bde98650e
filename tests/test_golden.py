"""Golden outputs: every optimizer x convention x dtype, every loss variant, bit for bit.

``tests/data/golden.json`` holds one SHA-256 digest per case: the bytes of every array a
case leaves behind (parameters and states after 200 steps, losses and gradients) and the
exact value (``float.hex``) of every scalar it returns.  The digests were recorded on the
code as it stood before the kernels were reorganised; each test recomputes its cases on
every CPU path this machine has, with 1 and 2 threads, and must reproduce them exactly.

Inputs come from ``np.random.RandomState`` (whose streams NumPy keeps fixed across
releases) and NumPy's own elementwise arithmetic, so a digest depends only on fusedopt.

Re-record only for an intended change of behaviour, and say so in the commit:
``python tests/test_golden.py --record`` (writes tests/data/golden.json).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np
import pytest

import fusedopt
from fusedopt import _core, _runtime, _spec

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "golden.json")
STEPS = 200
DTYPES = {"f32": np.float32, "f64": np.float64}


# ----------------------------------------------------------------------------- digests

def _digest(values: List[Any]) -> str:
    h = hashlib.sha256()
    for v in values:
        if isinstance(v, np.ndarray):
            h.update(f"{v.dtype.str}{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes())
        elif isinstance(v, (bool, np.bool_)):
            h.update(b"T" if v else b"F")
        elif isinstance(v, (float, np.floating)):
            h.update(float(v).hex().encode())
        else:
            h.update(repr(v).encode())
        h.update(b"|")
    return h.hexdigest()


def _arange_like(seed: int, shape: Tuple[int, ...], dtype: Any, scale: float = 1.0) -> np.ndarray:
    return (np.random.RandomState(seed).standard_normal(shape) * scale).astype(dtype)


class _Grads:
    """The gradient of step t: one of 8 fixed arrays times a step-dependent factor."""

    def __init__(self, seed: int, shape: Tuple[int, ...], dtype: Any) -> None:
        self.pool = [_arange_like(seed * 100 + k, shape, dtype) for k in range(8)]
        self.dtype = dtype

    def __call__(self, t: int) -> np.ndarray:
        return self.pool[t % 8] * self.dtype(1.0 + (t % 5) * 0.25)


# ----------------------------------------------------------------------------- optimizers

ADAM_CASES: Dict[str, Dict[str, Any]] = {
    "torch": dict(convention="torch"),
    "torch-l2": dict(convention="torch", weight_decay=0.1),
    "torch-adamw": dict(convention="torch", weight_decay=0.1, decoupled_weight_decay=True),
    "torch-ams": dict(convention="torch", amsgrad=True),
    "torch-ams-l2": dict(convention="torch", amsgrad=True, weight_decay=0.1),
    "torch-ams-adamw": dict(convention="torch", amsgrad=True, weight_decay=0.1,
                            decoupled_weight_decay=True),
    "torch-max": dict(convention="torch", maximize=True),
    "torch-max-adamw": dict(convention="torch", maximize=True, weight_decay=0.05,
                            decoupled_weight_decay=True),
    "torch-lowbeta": dict(convention="torch", betas=(0.3, 0.8), lr=0.01),
    "tf1": dict(convention="tf1"),
    "tf1-eps": dict(convention="tf1", eps=1e-3, betas=(0.8, 0.99)),
    "keras": dict(convention="keras"),
    "keras-wd": dict(convention="keras", weight_decay=0.1, decoupled_weight_decay=True),
    "keras-ams": dict(convention="keras", amsgrad=True),
    "keras-ams-wd": dict(convention="keras", amsgrad=True, weight_decay=0.1,
                         decoupled_weight_decay=True),
    "sklearn": dict(convention="sklearn"),
    "optax": dict(convention="optax"),
    "optax-wd": dict(convention="optax", weight_decay=0.1, decoupled_weight_decay=True),
    "optax-ams": dict(convention="optax", amsgrad=True),
    "optax-ams-wd": dict(convention="optax", amsgrad=True, weight_decay=0.1,
                         decoupled_weight_decay=True),
    "optax-epsroot": dict(convention="optax", eps_root=1e-8),
}

SGD_CASES: Dict[str, Dict[str, Any]] = {
    "torch-plain": dict(convention="torch"),
    "torch-plain-wd": dict(convention="torch", weight_decay=0.1),
    "torch-mom": dict(convention="torch", momentum=0.9),
    "torch-damp": dict(convention="torch", momentum=0.9, dampening=0.1),
    "torch-nesterov": dict(convention="torch", momentum=0.9, nesterov=True),
    "torch-mom-wd": dict(convention="torch", momentum=0.9, weight_decay=0.1),
    "torch-nesterov-wd": dict(convention="torch", momentum=0.9, nesterov=True,
                              weight_decay=0.1),
    "torch-max": dict(convention="torch", momentum=0.9, maximize=True),
    "torch-plain-max": dict(convention="torch", maximize=True),
    "tf1-plain": dict(convention="tf1"),
    "tf1-mom": dict(convention="tf1", momentum=0.9),
    "tf1-nesterov": dict(convention="tf1", momentum=0.9, nesterov=True),
    "keras-plain": dict(convention="keras"),
    "keras-plain-wd": dict(convention="keras", weight_decay=0.1),
    "keras-mom": dict(convention="keras", momentum=0.9),
    "keras-nesterov": dict(convention="keras", momentum=0.9, nesterov=True),
    "keras-mom-wd": dict(convention="keras", momentum=0.9, weight_decay=0.1),
    "keras-nesterov-wd": dict(convention="keras", momentum=0.9, nesterov=True,
                              weight_decay=0.1),
    "optax-plain": dict(convention="optax"),
    "optax-mom": dict(convention="optax", momentum=0.9),
    "optax-nesterov": dict(convention="optax", momentum=0.9, nesterov=True),
    "sklearn-plain": dict(convention="sklearn"),
    "sklearn-mom": dict(convention="sklearn", momentum=0.9),
    "sklearn-nesterov": dict(convention="sklearn", momentum=0.9, nesterov=True),
}

LION_CASES: Dict[str, Dict[str, Any]] = {
    "torch": dict(convention="torch"),
    "torch-wd": dict(convention="torch", weight_decay=0.1),
    "torch-betas": dict(convention="torch", betas=(0.5, 0.9)),
    "optax-wd": dict(convention="optax", weight_decay=1e-3),
    "keras": dict(convention="keras"),
    "keras-wd": dict(convention="keras", weight_decay=0.1),
}

ADAGRAD_CASES: Dict[str, Dict[str, Any]] = {
    "torch": dict(convention="torch"),
    "torch-decay-wd": dict(convention="torch", lr_decay=0.01, weight_decay=0.1),
    "torch-max-iav": dict(convention="torch", maximize=True, initial_accumulator_value=0.1),
    "tf1": dict(convention="tf1", eps=0.0, initial_accumulator_value=0.1),
    "keras": dict(convention="keras", eps=1e-7, initial_accumulator_value=0.1),
    "keras-wd": dict(convention="keras", eps=1e-7, initial_accumulator_value=0.1,
                     weight_decay=0.1),
    "optax": dict(convention="optax", eps=1e-7, initial_accumulator_value=0.1),
    "optax-iav0": dict(convention="optax", eps=0.0),
}

RMSPROP_CASES: Dict[str, Dict[str, Any]] = {
    "torch": dict(convention="torch"),
    "torch-wd-max": dict(convention="torch", weight_decay=0.1, maximize=True),
    "torch-momentum": dict(convention="torch", momentum=0.9),
    "torch-centered-momentum": dict(convention="torch", centered=True, momentum=0.5,
                                    alpha=0.9, initial_square_avg=0.5),
    "tf1": dict(convention="tf1", alpha=0.9, eps=1e-10, initial_square_avg=1.0),
    "tf1-centered-momentum": dict(convention="tf1", alpha=0.9, eps=1e-10, momentum=0.9,
                                  centered=True, initial_square_avg=1.0),
    "keras-wd-momentum": dict(convention="keras", alpha=0.9, eps=1e-7, momentum=0.5,
                              weight_decay=0.1),
    "optax-centered": dict(convention="optax", alpha=0.9, centered=True),
}

ADAFACTOR_CASES: Dict[str, Dict[str, Any]] = {
    "torch": dict(convention="torch"),
    "torch-wd-max": dict(convention="torch", weight_decay=0.1, maximize=True),
    "torch-decay1-d1.5-eps": dict(convention="torch", beta2_decay=-1.0, d=1.5,
                                  eps=(1e-20, 1e-4)),
    "optax": dict(convention="optax", eps=(1e-30, 1e-3)),
    "optax-wd-d1.5": dict(convention="optax", eps=(1e-30, 1e-3), weight_decay=0.01, d=1.5),
}

LAMB_CASES: Dict[str, Dict[str, Any]] = {
    "torch": dict(convention="torch"),
    "optax-wd": dict(convention="optax", weight_decay=0.01, betas=(0.8, 0.99)),
    "keras-wd": dict(convention="keras", weight_decay=0.01, eps=1e-7),
}

FUNC_N = 1037            # not a multiple of any vector width; one block
CLASS_SIZES = (1, 17, 1000, 40000)   # the last spans 3 blocks (threads split it)
#: Adafactor's: a vector, small matrices several to a block, a stack of matrices each
#: split into row bands (its column sums combined across units)
ADAFACTOR_SHAPES = ((1,), (17, 3), (1000,), (3, 130, 200))


def _lr_at(base: float, t: int) -> float:
    return base * (1.0 - t / (2.0 * STEPS))


def _adam_functional(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    kw = dict(kw)
    lr0 = kw.pop("lr", 1e-2)
    p = _arange_like(1, (FUNC_N,), dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    vmax = np.zeros_like(p) if kw.get("amsgrad") else None
    grads = _Grads(2, p.shape, dtype)
    for t in range(1, STEPS + 1):
        fusedopt.adam_step(p, grads(t), m, v, step=t, lr=_lr_at(lr0, t),
                           max_exp_avg_sq=vmax, n_threads=n_threads, **kw)
    return [p, m, v] + ([vmax] if vmax is not None else [])


def _sgd_functional(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    p = _arange_like(3, (FUNC_N,), dtype)
    buf = np.zeros_like(p) if kw.get("momentum", 0) else None
    grads = _Grads(4, p.shape, dtype)
    for t in range(1, STEPS + 1):
        fusedopt.sgd_step(p, grads(t), buf, lr=_lr_at(0.01, t), step=t, n_threads=n_threads,
                          **kw)
    return [p] + ([buf] if buf is not None else [])


def _lion_functional(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    p = _arange_like(5, (FUNC_N,), dtype)
    m = np.zeros_like(p)
    grads = _Grads(6, p.shape, dtype)
    for t in range(1, STEPS + 1):
        fusedopt.lion_step(p, grads(t), m, lr=_lr_at(1e-3, t), n_threads=n_threads, **kw)
    return [p, m]


def _adagrad_functional(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    kw = dict(kw)
    p = _arange_like(7, (FUNC_N,), dtype)
    s = np.full_like(p, kw.pop("initial_accumulator_value", 0.0))
    grads = _Grads(8, p.shape, dtype)
    for t in range(1, STEPS + 1):
        fusedopt.adagrad_step(p, grads(t), s, step=t, lr=_lr_at(1e-2, t),
                              n_threads=n_threads, **kw)
    return [p, s]


def _rmsprop_functional(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    kw = dict(kw)
    p = _arange_like(9, (FUNC_N,), dtype)
    v = np.full_like(p, kw.pop("initial_square_avg", 0.0))
    states = [v, np.zeros_like(p) if kw.get("momentum") else None,
              np.zeros_like(p) if kw.get("centered") else None]
    grads = _Grads(10, p.shape, dtype)
    for t in range(1, STEPS + 1):
        fusedopt.rmsprop_step(p, grads(t), *states, lr=_lr_at(1e-2, t), n_threads=n_threads,
                              **kw)
    return [p] + [a for a in states if a is not None]


def _adafactor_functional(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    out: List[Any] = []
    shapes: List[Tuple[int, ...]] = [(FUNC_N,), (37, 29), (2, 70, 300)]
    if kw.get("convention") == "optax":     # (factored over its outer axes)
        shapes.append((140, 3, 130))
    for k, shape in enumerate(shapes):
        p = _arange_like(11 + k, shape, dtype)
        states = [None if s is None else np.zeros(s, dtype) for s in
                  (_spec.ADAFACTOR.shape_of(kw, n, shape)
                   for n in ("row_var", "col_var", "variance"))]
        grads = _Grads(14 + k, p.shape, dtype)
        for t in range(1, STEPS + 1):
            fusedopt.adafactor_step(p, grads(t), *states, step=t, lr=_lr_at(1e-2, t),
                                    n_threads=n_threads, **kw)
        out += [p] + [a for a in states if a is not None]
    return out


def _lamb_functional(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    p = _arange_like(17, (FUNC_N,), dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    grads = _Grads(18, p.shape, dtype)
    for t in range(1, STEPS + 1):
        fusedopt.lamb_step(p, grads(t), m, v, step=t, lr=_lr_at(1e-2, t), n_threads=n_threads,
                           **kw)
    return [p, m, v]


def _class_kwargs(kw: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    kw = dict(kw)
    if kw.pop("decoupled_weight_decay", False):
        return fusedopt.AdamW, kw
    return fusedopt.Adam, dict(kw, weight_decay=kw.get("weight_decay", 0.0))


def _shape(n: Any) -> Tuple[int, ...]:
    return tuple(n) if isinstance(n, tuple) else (n,)


def _run_class(make: Callable[[List[Dict[str, Any]]], Any], dtype: Any, seed: int,
               n_threads: int, sizes: Tuple[Any, ...] = CLASS_SIZES) -> List[Any]:
    """Two param groups (the second with a lower lr and a float64 tensor mixed in), an lr
    schedule, a step where one parameter has no gradient, loss-scaled steps and one
    non-finite gradient (skipped by check_finite)."""
    params = [_arange_like(seed + k, _shape(n), dtype) for k, n in enumerate(sizes)]
    extra = _arange_like(seed + 9, (300,), np.float64)
    opt = make([{"params": params[:2]}, {"params": params[2:] + [extra], "lr": 3e-3}])
    opt.check_finite = True
    gens = [_Grads(seed + 20 + k, p.shape, p.dtype.type) for k, p in enumerate(params + [extra])]
    out: List[Any] = []
    base = [g["lr"] for g in opt.param_groups]
    for t in range(1, STEPS + 1):
        for g, lr0 in zip(opt.param_groups, base):
            g["lr"] = _lr_at(lr0, t)
        grads: List[Any] = [gen(t) for gen in gens]
        if t == 7:
            grads[1] = None
        inv_scale = None
        if t % 50 == 3:
            inv_scale = 1.0 / 1024
            grads = [None if gr is None else gr * gr.dtype.type(1024) for gr in grads]
        if t == 120:
            grads[2].reshape(-1)[5] = np.inf
        out.append(opt.step(grads, inv_scale=inv_scale, n_threads=n_threads))
    out.append(opt.skipped_steps)
    sd = opt.state_dict()
    for i in sorted(sd["state"]):
        for k in sorted(sd["state"][i]):
            out.append(sd["state"][i][k])
    return out + params + [extra]


def _adam_class(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    cls, kw = _class_kwargs(kw)
    kw.pop("lr", None)
    return _run_class(lambda groups: cls(groups, lr=1e-2, **kw), dtype, 10, n_threads)


def _sgd_class(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    return _run_class(lambda groups: fusedopt.SGD(groups, lr=1e-2, **kw), dtype, 30, n_threads)


def _lion_class(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    return _run_class(lambda groups: fusedopt.Lion(groups, lr=1e-3, **kw), dtype, 70, n_threads)


def _adagrad_class(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    return _run_class(lambda groups: fusedopt.Adagrad(groups, lr=1e-2, **kw), dtype, 80,
                      n_threads)


def _rmsprop_class(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    return _run_class(lambda groups: fusedopt.RMSprop(groups, lr=1e-2, **kw), dtype, 90,
                      n_threads)


def _adafactor_class(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    return _run_class(lambda groups: fusedopt.Adafactor(groups, lr=1e-2, **kw), dtype, 100,
                      n_threads, ADAFACTOR_SHAPES)


def _lamb_class(dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    return _run_class(lambda groups: fusedopt.LAMB(groups, lr=1e-2, **kw), dtype, 110,
                      n_threads)


def _torch_adapter(kind: str, dtype: Any, kw: Dict[str, Any], n_threads: int) -> List[Any]:
    torch = pytest.importorskip("torch")
    import fusedopt.torch as ft
    kw = dict(kw)
    if kw.pop("convention") != "torch":
        raise AssertionError("torch adapter cases are torch-convention only")
    if kind == "Adam":
        cls = ft.AdamW if kw.pop("decoupled_weight_decay", False) else ft.Adam
        kw.pop("lr", None)
        kw.setdefault("weight_decay", 0.0)
    else:
        cls = getattr(ft, kind)
    sizes = ADAFACTOR_SHAPES if kind == "Adafactor" else CLASS_SIZES
    params = [torch.nn.Parameter(torch.from_numpy(_arange_like(50 + k, _shape(n), dtype)))
              for k, n in enumerate(sizes)]
    opt = cls([{"params": params[:2]}, {"params": params[2:], "lr": 3e-3}], lr=1e-2, **kw)
    gens = [_Grads(60 + k, tuple(p.shape), dtype) for k, p in enumerate(params)]
    base = [g["lr"] for g in opt.param_groups]
    prev = fusedopt.get_num_threads()
    fusedopt.set_num_threads(n_threads)
    try:
        for t in range(1, STEPS + 1):
            for g, lr0 in zip(opt.param_groups, base):
                g["lr"] = _lr_at(lr0, t)
            for k, (p, gen) in enumerate(zip(params, gens)):
                p.grad = None if (t == 7 and k == 1) else torch.from_numpy(gen(t))
            opt.step()
    finally:
        fusedopt.set_num_threads(prev)
    out: List[Any] = [p.detach().numpy() for p in params]
    for p in params:
        st = opt.state[p]
        for k in sorted(st):
            out.append(st[k].detach().numpy() if hasattr(st[k], "detach") else st[k])
    return out


#: per optimizer: its golden cases, functional and class runs, and torch drop-in's name
OPTIMIZERS: Dict[str, Tuple[Dict[str, Dict[str, Any]], Callable[..., List[Any]],
                            Callable[..., List[Any]], str]] = {
    "adam": (ADAM_CASES, _adam_functional, _adam_class, "Adam"),
    "sgd": (SGD_CASES, _sgd_functional, _sgd_class, "SGD"),
    "lion": (LION_CASES, _lion_functional, _lion_class, "Lion"),
    "adagrad": (ADAGRAD_CASES, _adagrad_functional, _adagrad_class, "Adagrad"),
    "rmsprop": (RMSPROP_CASES, _rmsprop_functional, _rmsprop_class, "RMSprop"),
    "adafactor": (ADAFACTOR_CASES, _adafactor_functional, _adafactor_class, "Adafactor"),
    "lamb": (LAMB_CASES, _lamb_functional, _lamb_class, "LAMB"),
}


def _optimizer_cases() -> Iterator[Tuple[str, Callable[[int], List[Any]]]]:
    for dn, dt in DTYPES.items():
        for opt, (cases, functional, klass, _) in OPTIMIZERS.items():
            for name, kw in cases.items():
                yield (f"{opt}/fn/{dn}/{name}",
                       lambda nt, dt=dt, kw=kw, f=functional: f(dt, kw, nt))
                yield (f"{opt}/class/{dn}/{name}",
                       lambda nt, dt=dt, kw=kw, f=klass: f(dt, kw, nt))


def _torch_cases() -> Iterator[Tuple[str, Callable[[int], List[Any]]]]:
    for dn, dt in DTYPES.items():
        for opt, (cases, _, _, kind) in OPTIMIZERS.items():
            for name, kw in cases.items():
                if kw["convention"] == "torch":
                    yield (f"torch/{opt}/{dn}/{name}",
                           lambda nt, dt=dt, kw=kw, kind=kind: _torch_adapter(kind, dt, kw, nt))


# ----------------------------------------------------------------------------- losses

LOSS_SHAPE = (700, 37)   # 25900 elements: two reduction blocks, per-column runs
SCE_SHAPES = [(700, 37), (9, 5000),   # row blocks of 442 and 3 rows; rows of 3 chunks
              (1, 40000)]            # one row of 40 chunks: split across threads


def _logits(dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
    x = _arange_like(70, shape, np.float64, 4.0).reshape(-1)
    special = [0.0, -0.0, 1e20, -1e20, 30.0, -30.0, 88.0, -88.0, 1e-30, -1e-30, 17.5,
               -8.1078, 0.5, -0.5, 104.0, -104.0]
    x[: len(special)] = special
    return x.reshape(shape).astype(dtype)


def _labels(kind: str, dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
    r = np.random.RandomState(71)
    if kind == "float":
        y = r.uniform(size=shape)
        y.reshape(-1)[::3] = np.round(y.reshape(-1)[::3])
        return y.astype(dtype)
    b = r.uniform(size=shape) < 0.4
    return b if kind == "bool" else b.astype(np.uint8)


def _weight(mode: str, dtype: Any, shape: Tuple[int, ...]) -> Any:
    if mode == "none":
        return None
    if mode == "scalar":
        return 0.75
    if mode == "col":
        return (np.random.RandomState(72).uniform(size=shape[-1]) + 0.5).astype(dtype)
    return (np.random.RandomState(73).uniform(size=shape) * 2).astype(dtype)


def _loss_cases() -> Iterator[Tuple[str, Callable[[int], List[Any]]]]:
    for dn, dt in DTYPES.items():
        x = _logits(dt, LOSS_SHAPE)
        x1 = _logits(dt, (1037,))
        for lab in ("float", "uint8", "bool"):
            y = _labels(lab, dt, LOSS_SHAPE)
            y1 = _labels(lab, dt, (1037,))
            for wm in ("none", "scalar", "col", "full"):
                w = _weight(wm, dt, LOSS_SHAPE)
                for pwm in ("none", "scalar", "col"):
                    pw = None if pwm == "none" else (
                        2.5 if pwm == "scalar" else
                        (np.random.RandomState(74).uniform(size=LOSS_SHAPE[-1]) * 3).astype(dt))
                    for ls in (0.0, 0.1):
                        for red in ("mean", "sum", "none"):
                            kw = dict(weight=w, pos_weight=pw, label_smoothing=ls, reduction=red)

                            def run(nt: int, x=x, y=y, kw=kw) -> List[Any]:
                                loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(
                                    x, y, n_threads=nt, **kw)
                                only = fusedopt.sigmoid_cross_entropy(x, y, n_threads=nt, **kw)
                                return [loss, grad, only]
                            yield f"bce/{dn}/{lab}/w-{wm}/pw-{pwm}/ls-{ls}/{red}", run
            for red in ("mean", "sum", "none"):
                def run1(nt: int, x1=x1, y1=y1, red=red) -> List[Any]:
                    loss, grad = fusedopt.sigmoid_cross_entropy_and_grad(
                        x1, y1, reduction=red, n_threads=nt)
                    return [loss, grad, fusedopt.sigmoid_cross_entropy(x1, y1, reduction=red,
                                                                        n_threads=nt)]
                yield f"bce/{dn}/{lab}/1d/{red}", run1
        for shape in SCE_SHAPES:
            xs = _logits(dt, shape)
            r = np.random.RandomState(75)
            idx = r.randint(0, shape[1], shape[0])
            idx[::7] = -100
            probs = r.uniform(size=shape) ** 2
            probs = (probs / probs.sum(axis=1, keepdims=True)).astype(dt)
            cw = (r.uniform(size=shape[1]) + 0.5).astype(dt)
            for lab_name, lab in (("index", idx), ("probs", probs)):
                for wname, cwt in (("none", None), ("class", cw)):
                    for ls in (0.0, 0.1):
                        for red in ("mean", "sum", "none"):
                            skw = dict(weight=cwt, label_smoothing=ls, reduction=red)

                            def run3(nt: int, xs=xs, lab=lab, skw=skw) -> List[Any]:
                                loss, grad = fusedopt.softmax_cross_entropy_and_grad(
                                    xs, lab, n_threads=nt, **skw)
                                only = fusedopt.softmax_cross_entropy(xs, lab, n_threads=nt,
                                                                      **skw)
                                return [loss, grad, only]
                            yield (f"sce/{dn}/{shape[0]}x{shape[1]}/{lab_name}/w-{wname}/"
                                   f"ls-{ls}/{red}"), run3
        pred = _arange_like(80, LOSS_SHAPE, dt)
        target = _arange_like(81, LOSS_SHAPE, dt)
        target.reshape(-1)[::7] = pred.reshape(-1)[::7]       # d == 0: sign(0) = 0
        for which in ("l1", "l2"):
            fn_g = getattr(fusedopt, f"{which}_loss_and_grad")
            fn = getattr(fusedopt, f"{which}_loss")
            for wm in ("none", "scalar", "col", "full"):
                w = _weight(wm, dt, LOSS_SHAPE)
                for red in ("mean", "sum", "none"):
                    def run2(nt: int, fn_g=fn_g, fn=fn, w=w, red=red) -> List[Any]:
                        loss, grad = fn_g(pred, target, weight=w, reduction=red, n_threads=nt)
                        return [loss, grad, fn(pred, target, weight=w, reduction=red,
                                               n_threads=nt)]
                    yield f"{which}/{dn}/w-{wm}/{red}", run2


def _misc_cases() -> Iterator[Tuple[str, Callable[[int], List[Any]]]]:
    for dn, dt in DTYPES.items():
        a = np.concatenate([np.linspace(0, 120 if dt is np.float32 else 760, 20011),
                            [np.inf, 0.0, 1e-300, 5e-324]]).astype(dt)
        e = np.concatenate([np.linspace(0, 1, 20011), [1e-30, 0.5, 0.4999999]]).astype(dt)
        yield f"math/{dn}/exp_neg", lambda nt, a=a: [_core._elementwise(0, a)]
        yield f"math/{dn}/log1p", lambda nt, e=e: [_core._elementwise(1, e)]

        def unscale(nt: int, dt=dt) -> List[Any]:
            gs = [_arange_like(90 + k, (n,), dt, 1000.0) for k, n in enumerate(CLASS_SIZES)]
            found = fusedopt.unscale_and_check(gs, 1.0 / 1024, n_threads=nt)
            gs[3][39000] = np.nan
            found2 = fusedopt.unscale_and_check(gs, 0.5, n_threads=nt)
            return [found, found2, fusedopt.all_finite(gs[:3], n_threads=nt)] + gs
        yield f"unscale/{dn}", unscale


GROUPS: Dict[str, Callable[[], Iterator[Tuple[str, Callable[[int], List[Any]]]]]] = {
    "optimizers": _optimizer_cases,
    "torch": _torch_cases,
    "losses": _loss_cases,
    "misc": _misc_cases,
}


def _compute(group: str, n_threads: int) -> Dict[str, str]:
    return {name: _digest(run(n_threads)) for name, run in GROUPS[group]()}


# ----------------------------------------------------------------------------- tests

def _load() -> Dict[str, str]:
    with open(GOLDEN) as f:
        return json.load(f)["digests"]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_golden(group: str, n_threads: int, cpu_path: str) -> None:
    if group == "torch":
        pytest.importorskip("torch")
    want = {k: v for k, v in _load().items() if k.split("/")[0] == group or
            (group == "optimizers" and k.split("/")[0] in OPTIMIZERS) or
            (group == "losses" and k.split("/")[0] in ("bce", "sce", "l1", "l2")) or
            (group == "misc" and k.split("/")[0] in ("math", "unscale"))}
    got = _compute(group, n_threads)
    assert sorted(got) == sorted(want), "the set of golden cases changed"
    bad = sorted(k for k in got if got[k] != want[k])
    assert not bad, f"{len(bad)} of {len(got)} cases differ from the recorded outputs: {bad[:20]}"


def _record() -> None:
    digests: Dict[str, str] = {}
    for group in GROUPS:
        ref = None
        for path in fusedopt.cpu_info()["paths"]:
            _runtime._set_cpu_path(path)
            for nt in (1, 2):
                d = _compute(group, nt)
                if ref is None:
                    ref = d
                elif d != ref:
                    raise SystemExit(f"{group}: {path}/{nt} threads differs from the first run")
        _runtime._set_cpu_path(None)
        assert ref is not None
        digests.update(ref)
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    with open(GOLDEN, "w") as f:
        json.dump({"steps": STEPS, "numpy": np.__version__, "digests": digests}, f, indent=0,
                  sort_keys=True)
        f.write("\n")
    print(f"wrote {len(digests)} digests to {GOLDEN}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit(__doc__)
    _core.set_parallel_threshold(0)
    _record()
