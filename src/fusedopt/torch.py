"""fusedopt.torch: ``torch.optim`` optimizers that run fusedopt's kernels.

``fusedopt.torch.Adam``, ``AdamW`` and ``SGD`` are subclasses of
``torch.optim.Optimizer`` with the constructor arguments and defaults of their
``torch.optim`` namesakes (plus ``convention=``, see :mod:`fusedopt._optim`).  Changing
``torch.optim.Adam(model.parameters(), ...)`` into ``fusedopt.torch.Adam(...)`` is the
whole migration::

    >>> import torch, fusedopt.torch
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = fusedopt.torch.Adam(model.parameters(), lr=0.1)
    >>> model(torch.ones(2, 3)).sum().backward()
    >>> opt.step(); opt.zero_grad()
    >>> sorted(opt.state_dict()["state"][0])
    ['exp_avg', 'exp_avg_sq', 'step']

What is the same as torch: param groups with their own hyper-parameters,
``add_param_group``, ``zero_grad``, ``step(closure)`` (the closure runs under
``torch.enable_grad()``), parameters whose ``grad`` is None are skipped (no state change),
step pre/post hooks and profiler names (the base class wraps ``step``), the
``lr_scheduler`` classes (they edit ``group["lr"]``, ``group["betas"]``,
``group["momentum"]``; a 1-element tensor ``lr`` is read as a float), and
``state_dict()`` / ``load_state_dict()`` in torch's own format:
``{"step": float32 scalar tensor, "exp_avg", "exp_avg_sq"[, "max_exp_avg_sq"]}`` per
parameter for Adam, ``{"momentum_buffer": tensor}`` for SGD with momentum.  A
``torch.optim.Adam`` state dict loads into ``fusedopt.torch.Adam`` and the reverse, and
training continues as if it had never switched.

How it runs: every step makes one call of the multi-tensor kernel per (param group,
dtype, step count) batch, on NumPy views of the tensors' own memory: parameters and
optimizer state are updated in place, nothing is copied.  Every batch is validated
before the first one is updated, so a step that raises leaves parameters and state
unchanged.  Parameters' autograd version counters are bumped as torch's in-place ops
would (reusing a graph built before ``step()`` still raises in ``backward()``).

What is not supported, with the error raised (naming the parameter as
``param_groups[i]['params'][k]``):

* parameters that are not CPU tensors, not float32/float64 (``TypeError`` for dtypes,
  ``ValueError`` for devices), not contiguous (``channels_last`` included: call
  ``model.to(memory_format=torch.contiguous_format)``), inference tensors, or listed
  twice; sparse gradients (``RuntimeError``, as torch's Adam);
* ``foreach=True``, ``fused=True``, ``capturable=True``, ``differentiable=True``
  (``ValueError``: they select torch implementations; the kernels replace them).  A
  state dict saved with these flags set loads, and they are reset to None/False.

A gradient that is not contiguous (rare: autograd gives gradients the parameter's
layout) is read through a contiguous copy; it is only read, so the result is the same.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.optim import Optimizer

from . import _core

try:  # torch's own decorator: grad mode follows defaults["differentiable"] (False here)
    from torch.optim.optimizer import _use_grad_for_differentiable as _use_grad
except ImportError:  # pragma: no cover - other torch versions
    import functools

    def _use_grad(func: Any) -> Any:  # type: ignore[misc]
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with torch.no_grad():
                return func(*args, **kwargs)
        return wrapper

_get_scalar_dtype: Callable[..., Any]   # (torch's own is untyped)
try:
    from torch.optim.optimizer import _get_scalar_dtype
except ImportError:  # pragma: no cover
    def _get_scalar_dtype(is_fused: Any = None) -> Any:
        return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32

try:
    from torch.autograd.graph import increment_version as _increment_version
except ImportError:  # pragma: no cover
    def _increment_version(tensors: Any) -> None:  # type: ignore[misc]
        torch._C._increment_version(tensors)

__all__ = ["Adam", "AdamW", "SGD"]

_Batch = Tuple[List[Any], List[Any], List[Any]]   # cache entries, gradient views, names

# Flags that pick one of torch's implementations; the kernels replace all of them.
_IMPL_FLAGS = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}
_FLOAT_DTYPES = (torch.float32, torch.float64)
_F32_EXACT = 16777216.0  # 2**24: a float32 step counter stops growing here (as torch's)


def _reject_impl_flags(where: str, values: Dict[str, Any]) -> None:
    for flag in ("foreach", "fused", "capturable", "differentiable"):
        if values.get(flag):
            raise ValueError(
                f"{where}: {flag}=True is not supported by fusedopt.torch: it selects one of "
                f"torch's implementations, and fusedopt's multi-tensor CPU kernels replace "
                f"them all; pass {flag}={_IMPL_FLAGS[flag]!r} (or leave it out), or use "
                f"torch.optim for this feature")


def _float(x: Any) -> float:
    return float(x) if isinstance(x, torch.Tensor) else x


def _param_name(gi: int, k: int, group: Dict[str, Any], p: torch.Tensor) -> str:
    name = f"param_groups[{gi}]['params'][{k}]"
    names = group.get("param_names")
    if names is not None and k < len(names):
        name += f" ({names[k]!r})"
    return f"{name} (shape {tuple(p.shape)}, dtype {p.dtype}, device {p.device})"


def _check_param(p: torch.Tensor, name: str) -> None:
    """Raises a clear error unless the kernels can update ``p`` in place."""
    if p.layout != torch.strided:
        raise ValueError(f"{name} has layout {p.layout}; fusedopt.torch updates dense "
                         "(strided) CPU tensors only")
    if p.device.type != "cpu":
        raise ValueError(f"{name} is on device {p.device}; fusedopt.torch updates CPU "
                         "tensors only (use torch.optim for other devices)")
    if p.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {p.dtype}; fusedopt.torch updates float32 and "
                        "float64 parameters only")
    if not p.is_contiguous():
        raise ValueError(f"{name} is not contiguous (strides {p.stride()}); the kernels "
                         "update contiguous memory in place. Make the parameters contiguous "
                         "before creating the optimizer (for channels_last modules: "
                         "model.to(memory_format=torch.contiguous_format))")
    if p.is_inference():
        raise ValueError(f"{name} is an inference tensor (created under "
                         "torch.inference_mode()); it cannot be updated in place")


def _array(t: torch.Tensor) -> np.ndarray:
    """The NumPy view of a CPU tensor's memory (no copy)."""
    try:
        return t.numpy()
    except RuntimeError:
        return t.detach().resolve_neg().resolve_conj().numpy()


def _check_state(t: Any, p: torch.Tensor, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a tensor, got {type(t).__name__}")
    if t.layout != torch.strided or t.device.type != "cpu":
        raise ValueError(f"{what} must be a dense CPU tensor, got layout {t.layout} on "
                         f"{t.device}")
    if t.dtype != p.dtype or t.shape != p.shape:
        raise ValueError(f"{what} must have the parameter's dtype {p.dtype} and shape "
                         f"{tuple(p.shape)}, got {t.dtype} {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{what} is not contiguous (strides {t.stride()})")


def _step_tensor(st: Dict[str, Any], what: str) -> torch.Tensor:
    s = st.get("step")
    if not isinstance(s, torch.Tensor) or s.numel() != 1 or s.device.type != "cpu" \
            or not s.is_floating_point():
        raise ValueError(f"{what}['step'] must be a CPU floating-point scalar tensor "
                         f"(torch's format), got {s!r}")
    return s


def _grad_view(g: torch.Tensor, p: torch.Tensor, name: str, kind: str) -> np.ndarray:
    """Checks a gradient and returns a C-contiguous NumPy view (or, if the gradient is not
    contiguous, a contiguous copy: it is only read)."""
    if g.is_sparse or g.layout != torch.strided:
        alt = "torch.optim.SparseAdam" if kind == "Adam" else "torch.optim.SGD"
        raise RuntimeError(f"{kind} does not support sparse gradients ({name} has a "
                           f"{g.layout} gradient); use {alt} for sparse gradients")
    if g.device != p.device:
        raise ValueError(f"the gradient of {name} is on {g.device}, the parameter on "
                         f"{p.device}")
    if g.dtype != p.dtype:
        raise TypeError(f"the gradient of {name} has dtype {g.dtype}, the parameter "
                        f"{p.dtype}; they must match")
    if g.shape != p.shape:
        raise ValueError(f"the gradient of {name} has shape {tuple(g.shape)}, the "
                         f"parameter {tuple(p.shape)}")
    a = _array(g.detach())
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


def _check_disjoint(batch_entries: List[Any], where: Dict[int, str]) -> None:
    """Parameters stepped by one kernel call must not share memory (the kernel may update
    them in parallel); names the first overlapping pair.  Careful pass only."""
    spans = sorted((e[1].ctypes.data, e[1].ctypes.data + e[1].nbytes, id(e[-1]))
                   for e in batch_entries if e[1].nbytes)
    for (lo0, hi0, i0), (lo1, hi1, i1) in zip(spans, spans[1:]):
        if lo1 < hi0:
            raise ValueError(f"{where[i0]} and {where[i1]} share memory; fusedopt.torch "
                             "steps the parameters of a group together and cannot update "
                             "overlapping tensors (use one tensor, or separate groups)")


class _FusedOptimizer(Optimizer):
    """Common machinery: flag checks, per-parameter cache of NumPy views, batching."""

    def __init__(self, params: Any, defaults: Dict[str, Any]) -> None:
        _reject_impl_flags(f"fusedopt.torch.{type(self).__name__}", defaults)
        self._views: Dict[int, Tuple[Any, ...]] = {}   # id(param) -> cache entry (see _entry)
        super().__init__(params, defaults)

    # -- groups -----------------------------------------------------------------------
    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Adds a group (as torch), after checking that the kernels can update its
        parameters and run its hyper-parameters."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        gi = len(self.param_groups)
        _reject_impl_flags(f"param_groups[{gi}]", param_group)
        params = param_group.get("params")
        if isinstance(params, torch.Tensor):
            params = [params]
        elif params is not None and not isinstance(params, set):
            params = list(params)
            param_group["params"] = params
            tensors = [q[1] if isinstance(q, tuple) else q for q in params]
            seen = set()
            for k, q in enumerate(tensors):
                if isinstance(q, torch.Tensor):
                    if q in seen:
                        raise ValueError(
                            f"param_groups[{gi}]['params'][{k}] is listed twice; "
                            "fusedopt.torch steps each parameter once per step (torch only "
                            "warns, and its result depends on that order)")
                    seen.add(q)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            for k, p in enumerate(group["params"]):
                _check_param(p, _param_name(gi, k, group, p))
            self._validate_group(group)
        except Exception:
            self.param_groups.pop()
            raise

    def _validate_group(self, group: Dict[str, Any]) -> None:
        raise NotImplementedError

    # -- state dicts ------------------------------------------------------------------
    # class defaults of the group keys a saved group may lack (as torch's __setstate__):
    # a group saved by torch.optim has no "convention": it is torch's.
    _group_defaults: Dict[str, Any] = {}

    def _normalize_group(self, group: Dict[str, Any]) -> Dict[str, Any]:
        for flag, value in _IMPL_FLAGS.items():
            if flag in self.defaults:   # (SGD has no "capturable", as torch's)
                if group.get(flag):     # saved by torch.optim: the kernels replace it
                    group[flag] = value
                group.setdefault(flag, value)
        for key, value in self._group_defaults.items():
            group.setdefault(key, value)
        return group

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self._views = {}
        for group in self.param_groups:
            self._normalize_group(group)
        for flag, value in _IMPL_FLAGS.items():
            if self.defaults.get(flag):
                self.defaults[flag] = value

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Loads a state dict of this class or of its ``torch.optim`` namesake (same
        format).  Implementation flags saved by torch (foreach/fused/...) are reset to
        None/False; a group without "convention" (saved by torch.optim) gets "torch".
        Hyper-parameters are checked before anything is changed."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if isinstance(groups, list):
            for g in groups:
                if isinstance(g, dict):
                    self._validate_group(self._normalize_group(
                        {k: v for k, v in g.items() if k not in ("params", "param_names")}))
        super().load_state_dict(state_dict)
        self._views = {}

    # -- stepping ---------------------------------------------------------------------
    @_use_grad
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """Performs one optimization step (see the class docstring).

        Args:
            closure: optional callable that re-evaluates the model and returns the loss;
                it runs under ``torch.enable_grad()``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._fused_step()
        return loss

    def _fused_step(self) -> None:
        # Optimistic pass: cached views, the gradient's NumPy view unchecked (the binding
        # checks dtype, shape and contiguity of everything before it writes anything).
        # If the binding refuses, nothing was modified: a careful pass rebuilds every view,
        # checks every tensor (naming the parameter in its error) and runs.
        if not self._pass(careful=False):
            self._pass(careful=True)

    def _pass(self, careful: bool) -> bool:
        raise NotImplementedError

    def _run_batches(self, batches: Dict[Any, _Batch],
                     call: Callable[[Any, _Batch, bool], None], careful: bool) -> bool:
        """Runs the kernel on every batch; dry-validates them all first when there are
        several (the binding validates a whole batch before it writes).  Returns False if
        the binding refused in an optimistic pass (nothing modified)."""
        items = list(batches.items())
        if careful:
            where = {id(e[-1]): n for key, b in items for e, n in zip(b[0], b[2])}
            for key, b in items:
                _check_disjoint(b[0], where)
        try:
            if len(items) > 1:
                for key, b in items:
                    call(key, b, True)
            for key, b in items:
                call(key, b, False)
        except (TypeError, ValueError) as e:
            if not careful:
                return False
            raise type(e)(f"{e} (in fusedopt.torch.{type(self).__name__}.step; no parameter "
                          "or state was modified)") from e
        return True


# ----------------------------------------------------------------------------------- Adam

class Adam(_FusedOptimizer):
    """``torch.optim.Adam`` running fusedopt's Adam kernel (see the module docstring).

    Args:
        params: iterable of parameters (or named parameters) or of dicts (param groups).
        lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay: as
            ``torch.optim.Adam`` (same defaults).
        foreach, fused, capturable, differentiable: accepted for signature compatibility;
            only their default values (None/False) are supported.
        convention: whose Adam to reproduce: "torch" (default), "tf1", "keras", "optax",
            "sklearn" (see :func:`fusedopt.adam_step`).
        eps_root: optax's epsilon inside the square root ("optax" convention only).

    The state per parameter is torch's: ``step`` (float32 scalar tensor), ``exp_avg``,
    ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.

    Raises ValueError / TypeError naming the parameter for tensors the kernels cannot
    update in place (see the module docstring), RuntimeError for sparse gradients.

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> opt = fusedopt.torch.Adam([w], lr=0.1)
    >>> w.grad = torch.tensor([1.0, -1.0, 0.0])
    >>> opt.step()
    >>> w.detach()
    tensor([-0.1000,  0.1000,  0.0000])
    """

    _group_defaults = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False,
                       "convention": "torch", "eps_root": 0.0}

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: Optional[bool] = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False,
                 fused: Optional[bool] = None, decoupled_weight_decay: bool = False,
                 convention: str = "torch", eps_root: float = 0.0) -> None:
        # torch's own checks and messages first
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
            "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
            "capturable": capturable, "differentiable": differentiable, "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
            "convention": convention, "eps_root": eps_root,
        }
        super().__init__(params, defaults)

    def _decoupled(self, group: Dict[str, Any]) -> bool:
        # as fusedopt.Adam: Keras' weight decay is always decoupled
        return bool(group["decoupled_weight_decay"]) or (
            group["convention"] == "keras" and _float(group["weight_decay"]) != 0)

    def _validate_group(self, group: Dict[str, Any]) -> None:
        # the binding's own validation, on empty lists: same messages as a real step
        _core.adam_multi([], [], [], [], [] if group["amsgrad"] else None, 1, group["lr"],
                         tuple(group["betas"]), group["eps"], group["weight_decay"],
                         self._decoupled(group), bool(group["amsgrad"]),
                         bool(group["maximize"]), group["convention"], group["eps_root"],
                         None)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st and "step" in st and not torch.is_tensor(st["step"]):
                    st["step"] = torch.tensor(float(st["step"]), dtype=_get_scalar_dtype())

    def _entry(self, gi: int, k: int, group: Dict[str, Any], p: torch.Tensor,
               st: Optional[Dict[str, Any]], ams: bool, new_states: List[Any],
               new_items: List[Any]) -> Tuple[Any, ...]:
        """Validates one parameter and its state; returns its cache entry ``(data_ptr,
        view, step, step view, exp_avg, view, exp_avg_sq, view, max_exp_avg_sq or None,
        view or None, dtype char, param)``: NumPy views of the tensors' own memory, reused
        while the parameter's storage and its state tensors stay the same objects."""
        name = _param_name(gi, k, group, p)
        _check_param(p, name)
        if not st:   # lazy state, as torch: inserted only once the step has succeeded
            st = {"step": torch.tensor(0.0, dtype=_get_scalar_dtype(), device="cpu"),
                  "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                  "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            if ams:
                st["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            new_states.append((p, st))
        else:
            what = f"state of {name}"
            for key in ("exp_avg", "exp_avg_sq"):
                if key not in st:
                    raise ValueError(f"{what} has no {key!r} entry")
                _check_state(st[key], p, f"{what}[{key!r}]")
            _step_tensor(st, what)
            if ams:
                if st.get("max_exp_avg_sq") is None:   # amsgrad switched on later
                    vmax: Optional[torch.Tensor] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                    new_items.append((st, "max_exp_avg_sq", vmax))
                    st = dict(st, max_exp_avg_sq=vmax)
                else:
                    _check_state(st["max_exp_avg_sq"], p, f"{what}['max_exp_avg_sq']")
        step, m, v = st["step"], st["exp_avg"], st["exp_avg_sq"]
        vmax = st.get("max_exp_avg_sq") if ams else None
        pv = _array(p.detach())
        return (p.data_ptr(), pv, step, _array(step).reshape(()), m, _array(m), v, _array(v),
                vmax, None if vmax is None else _array(vmax), pv.dtype.char, p)

    def _pass(self, careful: bool) -> bool:
        # The hot loop: per parameter a few identity checks against its cached entry and
        # one NumPy view of its gradient (see bench/bench_torch_adapter.py).
        cache, state = self._views, self.state
        batches: Dict[Any, _Batch] = {}
        new_states: List[Any] = []
        new_items: List[Any] = []
        written: List[Any] = []
        for gi, group in enumerate(self.param_groups):
            ams = bool(group["amsgrad"])
            b: Any                 # the batch of the previous gradient, when t and dtype match
            last_t = last_dt = b = None
            for k, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    continue
                st = state.get(p)
                e = cache.get(id(p))
                if careful or e is None or e[11] is not p or st is None or \
                        e[0] != p.data_ptr() or \
                        st.get("step") is not e[2] or st.get("exp_avg") is not e[4] or \
                        st.get("exp_avg_sq") is not e[6] or \
                        (ams and (e[8] is None or st.get("max_exp_avg_sq") is not e[8])):
                    e = cache[id(p)] = self._entry(gi, k, group, p, st, ams, new_states,
                                                   new_items)
                if careful:
                    gv = _grad_view(g, p, _param_name(gi, k, group, p), "Adam")
                else:
                    try:
                        gv = g.numpy()
                    except (RuntimeError, TypeError):   # sparse, other device, bfloat16...
                        return False
                t = float(e[3]) + 1.0
                if t > _F32_EXACT and e[3].dtype == np.float32:
                    t = float(np.float32(t))
                if t != last_t or e[10] != last_dt:
                    last_t, last_dt = t, e[10]
                    b = batches.get((gi, last_dt, t))
                    if b is None:
                        b = batches[(gi, last_dt, t)] = ([], [], [])
                b[0].append(e)
                b[1].append(gv)
                if careful:
                    b[2].append(_param_name(gi, k, group, p))
                written.append(p)
        if not batches:
            return True
        groups = self.param_groups

        def call(key: Any, b: _Batch, dry: bool) -> None:
            group = groups[key[0]]
            es = b[0]
            ams = bool(group["amsgrad"])
            _core.adam_multi([e[1] for e in es], b[1], [e[5] for e in es],
                             [e[7] for e in es], [e[9] for e in es] if ams else None,
                             int(key[2]), group["lr"], tuple(group["betas"]), group["eps"],
                             group["weight_decay"], self._decoupled(group), ams,
                             bool(group["maximize"]), group["convention"],
                             group["eps_root"], None, "params", False, dry)

        if not self._run_batches(batches, call, careful):
            return False
        for p, st in new_states:
            state[p] = st
        for st, key, value in new_items:
            st[key] = value
        for key, b in batches.items():   # torch's step_t += 1 (float32 scalar tensors)
            t = key[2]
            for e in b[0]:
                e[3][()] = t
        _increment_version(written)   # as torch's in-place update of the parameters
        return True


class AdamW(Adam):
    """``torch.optim.AdamW`` (Adam with decoupled weight decay, default
    ``weight_decay=1e-2``) running fusedopt's kernel.  Same arguments as
    :class:`Adam` without ``decoupled_weight_decay`` (always True, as torch's AdamW).

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> w.grad = torch.zeros(2)
    >>> fusedopt.torch.AdamW([w], lr=0.1, weight_decay=0.5).step()
    >>> w.detach()
    tensor([0.9500, 0.9500])
    """

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: Optional[bool] = None,
                 capturable: bool = False, differentiable: bool = False,
                 fused: Optional[bool] = None, convention: str = "torch",
                 eps_root: float = 0.0) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True, convention=convention,
                         eps_root=eps_root)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:   # as torch.optim.AdamW
            group["decoupled_weight_decay"] = True


# ------------------------------------------------------------------------------------ SGD

class SGD(_FusedOptimizer):
    """``torch.optim.SGD`` running fusedopt's SGD kernel (see the module docstring).

    Args:
        params: iterable of parameters or of dicts (param groups).
        lr, momentum, dampening, weight_decay, nesterov, maximize: as ``torch.optim.SGD``
            (same defaults; ``lr=1e-3``).
        foreach, fused, differentiable: only their default values are supported.
        convention: "torch" (default), "tf1", "keras", "optax" or "sklearn" (see
            :func:`fusedopt.sgd_step`).

    The state is torch's: ``{"momentum_buffer": tensor}`` per parameter once it has been
    stepped with momentum (the first step sets the buffer to the gradient); no state
    without momentum.  With a non-torch convention the buffer starts at zero.

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> opt = fusedopt.torch.SGD([w], lr=0.5, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = torch.ones(2)
    ...     opt.step()
    >>> w.detach()
    tensor([-0.4500, -0.4500])
    """

    _group_defaults = {"nesterov": False, "maximize": False, "convention": "torch"}

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: Optional[bool] = None,
                 differentiable: bool = False, fused: Optional[bool] = None,
                 convention: str = "torch") -> None:
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {
            "lr": lr, "momentum": momentum, "dampening": dampening,
            "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
            "foreach": foreach, "differentiable": differentiable, "fused": fused,
            "convention": convention,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group: Dict[str, Any]) -> None:
        _core.sgd_multi([], [], [] if _float(group["momentum"]) != 0 else None, group["lr"],
                        group["momentum"], group["dampening"], bool(group["nesterov"]),
                        group["weight_decay"], bool(group["maximize"]), group["convention"],
                        1, None)

    def _entry(self, gi: int, k: int, group: Dict[str, Any], p: torch.Tensor,
               st: Optional[Dict[str, Any]], mom: bool,
               new_items: List[Any]) -> Tuple[Any, ...]:
        """Validates one parameter and its buffer; returns its cache entry
        ``(data_ptr, view, buffer, buffer view, dtype char, first torch momentum step,
        param)``."""
        name = _param_name(gi, k, group, p)
        _check_param(p, name)
        pv = _array(p.detach())
        if not mom:
            return (p.data_ptr(), pv, None, None, pv.dtype.char, False, p)
        buf: Any = st.get("momentum_buffer") if st else None
        first = buf is None
        if first:   # torch: buffer = clone(grad) on the first step (the kernel, step=1)
            buf = torch.zeros_like(p, memory_format=torch.preserve_format)
            new_items.append((p, buf))
        else:
            _check_state(buf, p, f"state of {name}['momentum_buffer']")
        return (p.data_ptr(), pv, buf, _array(buf), pv.dtype.char,
                first and group["convention"] == "torch", p)

    def _pass(self, careful: bool) -> bool:
        cache, state = self._views, self.state
        batches: Dict[Any, _Batch] = {}
        new_items: List[Any] = []
        written: List[Any] = []
        for gi, group in enumerate(self.param_groups):
            mom = _float(group["momentum"]) != 0
            for k, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    continue
                st = state.get(p) if mom else None
                e = cache.get(id(p))
                if careful or e is None or e[6] is not p or e[0] != p.data_ptr() or (
                        (st is None or st.get("momentum_buffer") is not e[2]) if mom
                        else e[2] is not None):
                    e = cache[id(p)] = self._entry(gi, k, group, p, st, mom, new_items)
                if careful:
                    gv = _grad_view(g, p, _param_name(gi, k, group, p), "SGD")
                else:
                    try:
                        gv = g.numpy()
                    except (RuntimeError, TypeError):
                        return False
                b = batches.get((gi, e[4], e[5]))
                if b is None:
                    b = batches[(gi, e[4], e[5])] = ([], [], [])
                b[0].append(e)
                b[1].append(gv)
                if careful:
                    b[2].append(_param_name(gi, k, group, p))
                written.append(p)
        if not batches:
            return True
        groups = self.param_groups

        def call(key: Any, b: _Batch, dry: bool) -> None:
            group = groups[key[0]]
            es = b[0]
            mom = _float(group["momentum"]) != 0
            _core.sgd_multi([e[1] for e in es], b[1], [e[3] for e in es] if mom else None,
                            group["lr"], group["momentum"], group["dampening"],
                            bool(group["nesterov"]), group["weight_decay"],
                            bool(group["maximize"]), group["convention"],
                            1 if key[2] else 2, None, "params", False, dry)

        if not self._run_batches(batches, call, careful):
            return False
        for p, buf in new_items:
            state[p]["momentum_buffer"] = buf
            e = cache.get(id(p))
            if e is not None and e[2] is buf and e[5]:   # its next step is not the first
                cache[id(p)] = e[:5] + (False,) + e[6:]
        _increment_version(written)
        return True
