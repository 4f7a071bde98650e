"""fusedopt.torch: ``torch.optim`` optimizers and ``torch.nn`` losses that run
fusedopt's kernels.

The losses (``fusedopt.torch.functional.cross_entropy``,
``binary_cross_entropy_with_logits`` and the modules ``CrossEntropyLoss``,
``BCEWithLogitsLoss``) are described in :mod:`fusedopt.torch.functional`.

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

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import functools

import numpy as np
import torch
from torch.optim import Optimizer

from .. import _clip, _spec
from .._spec import Spec

_torch_use_grad: Optional[Callable[..., Any]]
try:  # torch's own decorator: grad mode follows defaults["differentiable"] (False here)
    from torch.optim.optimizer import _use_grad_for_differentiable as _torch_use_grad
except ImportError:  # pragma: no cover - other torch versions
    _torch_use_grad = None


def _use_grad(func: Any) -> Any:
    """The step runs without grad mode: through torch's own decorator where the class
    has a ``differentiable`` flag (always False here), else under ``torch.no_grad()`` as
    torch.optim.Adafactor's step (which has no such flag)."""
    wrapped = _torch_use_grad(func) if _torch_use_grad is not None else None

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if wrapped is not None and "differentiable" in self.defaults:
            return wrapped(self, *args, **kwargs)
        with torch.no_grad():
            return func(self, *args, **kwargs)
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


def _check_state(t: Any, p: torch.Tensor, what: str,
                 shape: Optional[Tuple[int, ...]] = None) -> None:
    """A state tensor: dense, CPU, contiguous, of the parameter's dtype and its shape (or
    ``shape``: Adafactor's factored statistics)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a tensor, got {type(t).__name__}")
    if t.layout != torch.strided or t.device.type != "cpu":
        raise ValueError(f"{what} must be a dense CPU tensor, got layout {t.layout} on "
                         f"{t.device}")
    want = tuple(p.shape) if shape is None else shape
    if t.dtype != p.dtype or tuple(t.shape) != want:
        raise ValueError(f"{what} must have the parameter's dtype {p.dtype} and shape "
                         f"{want}, got {t.dtype} {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{what} is not contiguous (strides {t.stride()})")


def _step_tensor(st: Dict[str, Any], what: str) -> torch.Tensor:
    s = st.get("step")
    if not isinstance(s, torch.Tensor) or s.numel() != 1 or s.device.type != "cpu" \
            or not s.is_floating_point():
        raise ValueError(f"{what}['step'] must be a CPU floating-point scalar tensor "
                         f"(torch's format), got {s!r}")
    return s


def _grad_view(g: torch.Tensor, p: torch.Tensor, name: str, spec: Spec) -> np.ndarray:
    """Checks a gradient and returns a C-contiguous NumPy view (or, if the gradient is not
    contiguous, a contiguous copy: it is only read)."""
    if g.is_sparse or g.layout != torch.strided:
        raise RuntimeError(f"{spec.name} does not support sparse gradients ({name} has a "
                           f"{g.layout} gradient); use {spec.sparse_alternative} for sparse "
                           "gradients")
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
    spans = sorted((e.view.ctypes.data, e.view.ctypes.data + e.view.nbytes, id(e.param))
                   for e in batch_entries if e.view.nbytes)
    for (lo0, hi0, i0), (lo1, hi1, i1) in zip(spans, spans[1:]):
        if lo1 < hi0:
            raise ValueError(f"{where[i0]} and {where[i1]} share memory; fusedopt.torch "
                             "steps the parameters of a group together and cannot update "
                             "overlapping tensors (use one tensor, or separate groups)")


class _Entry:
    """What one parameter's step needs, cached while its storage and its state tensors
    stay the same objects: NumPy views of the tensors' own memory."""
    __slots__ = ("ptr", "param", "view", "names", "states", "views", "step", "step_view",
                 "dtype", "first")

    def __init__(self, p: torch.Tensor, names: Tuple[str, ...], states: Tuple[Any, ...],
                 step: Optional[torch.Tensor], first: bool) -> None:
        self.ptr = p.data_ptr()
        self.param = p
        self.view = _array(p.detach())
        self.names = names
        self.states = states
        self.views = tuple(_array(t) for t in states)
        self.step = step
        self.step_view = None if step is None else _array(step).reshape(())
        self.dtype = self.view.dtype.char
        self.first = first     # no state yet that the kernel reads (SGD's first momentum step)

    def valid(self, p: torch.Tensor, st: Any, names: Tuple[str, ...], step_state: bool) -> bool:
        if self.param is not p or self.ptr != p.data_ptr() or self.names != names:
            return False
        if st is None:
            return not names and not step_state
        if step_state and st.get("step") is not self.step:
            return False
        for n, t in zip(names, self.states):
            if st.get(n) is not t:
                return False
        return True


class _FusedOptimizer(Optimizer):
    """A ``torch.optim`` optimizer running the kernel of the description ``spec``: flag
    checks, per-parameter cache of NumPy views, batching, torch's state format."""

    spec: Spec

    def __init__(self, params: Any, defaults: Dict[str, Any]) -> None:
        _reject_impl_flags(f"fusedopt.torch.{type(self).__name__}", defaults)
        lr = defaults.get("lr")
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        self._kernel_defaults = self.spec.torch_defaults
        self._validate_group(defaults)   # torch.optim checks its defaults first, too
        self._views: Dict[int, _Entry] = {}   # id(param) -> cache entry
        super().__init__(params, defaults)
        if self.spec.torch_eager_state:       # torch.optim.Adagrad's state exists at once
            for group in self.param_groups:
                names = self.spec.states(group)
                for p in group["params"]:
                    self.state[p] = self._new_state(p, names, group)

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
        """The kernel's own checks of the hyper-parameters (same messages as a step)."""
        self.spec.kernel([[], []] + [[] for _ in self.spec.roles], group,
                         self._kernel_defaults, 1, None, dry=True)

    # -- state dicts ------------------------------------------------------------------
    def _normalize_group(self, group: Dict[str, Any]) -> Dict[str, Any]:
        """A group as saved by torch.optim (or an older fusedopt) completed: implementation
        flags reset, missing hyper-parameters at the description's defaults ("convention":
        a group saved by torch.optim is torch's), fixed ones forced (AdamW's decay)."""
        for flag, value in _IMPL_FLAGS.items():
            # (the description's flags: SGD and Adagrad have no "capturable", Adafactor
            # only "foreach", as torch's; torch's __setstate__ adds "differentiable" to
            # every optimizer's defaults, not to its groups)
            if flag in self.spec.torch_flags:
                if group.get(flag):     # saved by torch.optim: the kernels replace it
                    group[flag] = value
                group.setdefault(flag, value)
        for h in self.spec.hypers:
            group.setdefault(h.name, h.default)
        group.update(self.spec.fixed)
        return group

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self._views = {}
        self._kernel_defaults = self.spec.torch_defaults
        for group in self.param_groups:
            self._normalize_group(group)
        for flag, value in _IMPL_FLAGS.items():
            if self.defaults.get(flag):
                self.defaults[flag] = value
        if self.spec.torch_step_state:
            for group in self.param_groups:
                for p in group["params"]:
                    st = self.state.get(p)
                    if st and "step" in st and not torch.is_tensor(st["step"]):
                        st["step"] = torch.tensor(float(st["step"]), dtype=_get_scalar_dtype())

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
        # Optimistic pass: cached views, the gradient's NumPy view unchecked (the binding
        # checks dtype, shape and contiguity of everything before it writes anything).
        # If the binding refuses, nothing was modified: a careful pass rebuilds every view,
        # checks every tensor (naming the parameter in its error) and runs.
        if not self._pass(careful=False):
            self._pass(careful=True)
        return loss

    def _entry(self, gi: int, k: int, group: Dict[str, Any], p: torch.Tensor,
               st: Optional[Dict[str, Any]], names: Tuple[str, ...], new_states: List[Any],
               new_items: List[Any]) -> _Entry:
        """Validates one parameter and its state, creating (but not yet inserting) what is
        missing: the state of a parameter stepped for the first time (torch inserts it
        only once the step has succeeded), or a state switched on later (amsgrad,
        momentum)."""
        name = _param_name(gi, k, group, p)
        _check_param(p, name)
        step_state = self.spec.torch_step_state

        if not st:
            if not names and not step_state:
                return _Entry(p, names, (), None, True)
            st = self._new_state(p, names, group)
            new_states.append((p, st))
            first = True
        else:
            what = f"state of {name}"
            if step_state:
                _step_tensor(st, what)
            first = not step_state and self.spec.kernel_step(st) == 1
            for n in names:
                t = st.get(n)
                if t is None:
                    if n not in self.spec.lazy_states:
                        raise ValueError(f"{what} has no {n!r} entry")
                    t = self._initial(p, n, group)
                    new_items.append((p, n, t))
                    st = dict(st, **{n: t})
                else:
                    _check_state(t, p, f"{what}[{n!r}]",
                                 self.spec.shape_of(group, n, tuple(p.shape)))
        return _Entry(p, names, tuple(st[n] for n in names),
                      st["step"] if step_state else None, first)

    def _initial(self, p: torch.Tensor, name: str, group: Dict[str, Any]) -> torch.Tensor:
        """A new state tensor: like p, at its initial value (the group's, or the
        constructor's where torch reads that: torch.optim.Adagrad's
        initial_accumulator_value)."""
        source = self.defaults if self.spec.torch_initial_from_defaults else group
        value = self.spec.initial_value(source, name)
        shape = self.spec.shape_of(group, name, tuple(p.shape))
        if shape is not None and shape != tuple(p.shape):   # (a factored statistic)
            return torch.full(shape, value, dtype=p.dtype, device=p.device)
        return torch.full_like(p, value, memory_format=torch.preserve_format)

    def _new_state(self, p: torch.Tensor, names: Tuple[str, ...],
                   group: Dict[str, Any]) -> Dict[str, Any]:
        st: Dict[str, Any] = {n: self._initial(p, n, group) for n in names}
        if self.spec.torch_step_state:
            st = {"step": torch.tensor(0.0, dtype=_get_scalar_dtype(), device="cpu"), **st}
        return st

    def _pass(self, careful: bool) -> bool:
        # The hot loop: per parameter a few identity checks against its cached entry and
        # one NumPy view of its gradient (see bench/bench_torch_adapter.py).
        cache, state, spec = self._views, self.state, self.spec
        step_state = spec.torch_step_state
        batches: Dict[Any, _Batch] = {}
        new_states: List[Any] = []
        new_items: List[Any] = []
        written: List[Any] = []
        by_shape = spec.state_shape is not None
        for gi, group in enumerate(self.param_groups):
            names = spec.states(group)
            b: Any                 # the batch of the previous gradient, when its key matches
            last_key = b = None
            for k, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    continue
                if by_shape:       # (the states this parameter has, by its shape)
                    names = spec.param_states(group, tuple(p.shape))
                st = state.get(p)
                e = cache.get(id(p))
                if careful or e is None or not e.valid(p, st, names, step_state):
                    e = cache[id(p)] = self._entry(gi, k, group, p, st, names, new_states,
                                                   new_items)
                if careful:
                    gv = _grad_view(g, p, _param_name(gi, k, group, p), spec)
                else:
                    try:
                        gv = g.numpy()
                    except (RuntimeError, TypeError):   # sparse, other device, bfloat16...
                        return False
                sv = e.step_view
                if sv is not None:
                    t = float(sv) + 1.0
                    if t > _F32_EXACT and sv.dtype == np.float32:
                        t = float(np.float32(t))
                else:                     # (SGD: torch's first momentum step, or not)
                    t = 1.0 if e.first else 2.0
                key = (gi, e.dtype, t)
                if key != last_key:
                    last_key = key
                    b = batches.get(key)
                    if b is None:
                        b = batches[key] = ([], [], [])
                b[0].append(e)
                b[1].append(gv)
                if careful:
                    b[2].append(_param_name(gi, k, group, p))
                written.append(p)
        if not batches:
            return True
        groups, roles, kernel, defaults = self.param_groups, spec.roles, spec.kernel, \
            self._kernel_defaults
        scales: Dict[int, float] = {}     # group -> max_grad_norm's coefficient

        def prepare() -> None:
            for gi, group in enumerate(groups):
                if group.get("max_grad_norm") is not None:
                    gs = [g for key, b in batches.items() if key[0] == gi for g in b[1]]
                    total, dtype = _clip.total_norm(gs, list(range(len(gs))), 2.0, None)
                    scales[gi] = _clip.clip_coef(total, group["max_grad_norm"], dtype)

        def call(key: Any, b: _Batch, dry: bool) -> None:
            group = groups[key[0]]
            es = b[0]
            names = es[0].names
            arrays: List[Any] = [[e.view for e in es], b[1]]
            for r in roles:
                if by_shape:       # (None for the parameters without that state)
                    arrays.append([e.views[e.names.index(r)] if r in e.names else None
                                   for e in es])
                elif r in names:
                    j = names.index(r)
                    arrays.append([e.views[j] for e in es])
                else:
                    arrays.append(None)
            kernel(arrays, group, defaults, int(key[2]), None, "params", False, None, dry,
                   None, False, scales.get(key[0], 1.0))

        if not self._run_batches(batches, call, careful, prepare):
            return False
        for p, st in new_states:
            state[p] = st
        for p, n, t in new_items:
            state[p][n] = t
        for key, b in batches.items():
            for e in b[0]:
                if e.step_view is not None:     # torch's step_t += 1 (float32 scalar tensors)
                    e.step_view[()] = key[2]
                e.first = False
        _increment_version(written)   # as torch's in-place update of the parameters
        return True

    def _run_batches(self, batches: Dict[Any, _Batch],
                     call: Callable[[Any, _Batch, bool], None], careful: bool,
                     prepare: Callable[[], None]) -> bool:
        """Runs ``prepare`` (the clip coefficients: a read of the clipped gradients), then
        the kernel on every batch; dry-validates them all first when there are several
        (the binding validates a whole batch before it writes).  Returns False if the
        binding refused in an optimistic pass (nothing modified)."""
        items = list(batches.items())
        if careful:
            where = {id(e.param): n for key, b in items for e, n in zip(b[0], b[2])}
            for key, b in items:
                _check_disjoint(b[0], where)
        try:
            prepare()
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


def _torch_class(spec: Spec, name: str) -> type:
    """The ``torch.optim`` drop-in of a description: torch's signature (its positional
    hyper-parameters, then keyword-only ones and the implementation flags), defaults and
    state format."""
    import inspect
    P = inspect.Parameter
    hypers = spec.torch_hypers()
    default = dict(_IMPL_FLAGS, **{h.name: h.default for h in hypers})
    positional = spec.torch_positional
    sig = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("params", P.POSITIONAL_OR_KEYWORD)] +
        [P(n, P.POSITIONAL_OR_KEYWORD, default=default[n]) for n in positional] +
        [P(n, P.KEYWORD_ONLY, default=default[n])
         for n in [h.name for h in hypers] + list(spec.torch_flags) if n not in positional],
        return_annotation=None)

    def __init__(self: _FusedOptimizer, *args: Any, **kwargs: Any) -> None:
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        values.pop("self")
        params = values.pop("params")
        for h in hypers:                 # lists given for tuples, kept as torch does
            if isinstance(h.default, tuple) and isinstance(values.get(h.name), list):
                values[h.name] = tuple(values[h.name])
        values.update(spec.fixed)
        _FusedOptimizer.__init__(self, params, values)
    __init__.__signature__ = sig  # type: ignore[attr-defined]
    cls = type(name, (_FusedOptimizer,), {"spec": spec, "__init__": __init__,
                                          "__doc__": spec.torch_doc,
                                          "__module__": __name__, "__qualname__": name})
    _spec.CLASSES[("torch", name)] = cls
    return cls


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False,
                    foreach: Optional[bool] = None) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` in one fused pass: scales the gradients of
    ``parameters`` (a tensor or an iterable of tensors; those without a gradient are
    skipped) in place so that their total norm is at most ``max_norm``, and returns that
    norm before clipping as a scalar tensor (float32, or float64 when any gradient is).

    Same rule and coefficient as torch's (``min(max_norm / (norm + 1e-6), 1)``, NaN and
    infinite norms included); the norm is accumulated in double in a fixed order (within
    an ulp of the exact norm; torch's float32 norm is a few ulps off), the same for every
    thread count.  ``foreach`` is accepted for torch's signature (the pass is the same
    either way).  Gradients must be CPU, float32 or float64 and contiguous (else a clear
    error, nothing changed).  To clip inside an optimizer's step, with no extra write of
    the gradients, pass ``max_grad_norm=`` to a fusedopt.torch optimizer instead.

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> w.grad = torch.tensor([3.0, 4.0])
    >>> fusedopt.torch.clip_grad_norm_([w], max_norm=1.0)
    tensor(5.)
    >>> w.grad
    tensor([0.6000, 0.8000])
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    views = []
    for k, g in enumerate(grads):
        if g.is_sparse or g.layout != torch.strided or g.device.type != "cpu" or \
                g.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"grads[{k}] must be a dense CPU float32 or float64 tensor, got "
                            f"{g.dtype} on {g.device} ({g.layout})")
        views.append(g.detach().numpy())
    total = _clip.clip_grad_norm_(views, max_norm, norm_type, error_if_nonfinite)
    _increment_version(grads)        # as torch's in-place multiplication
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    return torch.tensor(total, dtype=dtype)


#: every optimizer of fusedopt._spec as a torch.optim drop-in, by name
FRONT_END = {spec.name: _torch_class(_spec.TORCH.get(spec.name, spec), spec.name)
             for spec in _spec.all_specs()}
globals().update(FRONT_END)
from . import functional                                        # noqa: E402
from .functional import BCEWithLogitsLoss, CrossEntropyLoss      # noqa: E402

__all__ = list(FRONT_END) + ["clip_grad_norm_", "functional", "CrossEntropyLoss",
                             "BCEWithLogitsLoss"]
if TYPE_CHECKING:   # what static type checkers see of the classes made above
    class Adam(_FusedOptimizer): ...
    class AdamW(_FusedOptimizer): ...
    class SGD(_FusedOptimizer): ...
    class Lion(_FusedOptimizer): ...
    class Adagrad(_FusedOptimizer): ...
    class RMSprop(_FusedOptimizer): ...
    class Adafactor(_FusedOptimizer): ...
    class LAMB(_FusedOptimizer): ...
else:
    Adam, AdamW, SGD, Lion, Adagrad, RMSprop, Adafactor, LAMB = (
        FRONT_END[k] for k in ("Adam", "AdamW", "SGD", "Lion", "Adagrad", "RMSprop",
                               "Adafactor", "LAMB"))
