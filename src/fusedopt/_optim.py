"""Optimizer updates applied in place: functional steps and stateful classes.

``convention`` selects whose update rule is reproduced, to float rounding:

========== ==================================================== ==========================
convention Adam / AdamW                                         SGD
========== ==================================================== ==========================
"torch"    torch.optim.Adam / AdamW (all flags)                 torch.optim.SGD (all flags)
"tf1"      tf.compat.v1.train.AdamOptimizer (epsilon hat)       GradientDescentOptimizer,
                                                                MomentumOptimizer
"keras"    keras.optimizers.Adam / AdamW (epsilon hat,          keras.optimizers.SGD (lr
           decoupled decay p -= p*wd*lr)                        inside the buffer)
"optax"    optax.adam / adamw / amsgrad (eps_root)              optax.sgd
"sklearn"  sklearn MLP AdamOptimizer                            sklearn MLP SGDOptimizer
========== ==================================================== ==========================

Hyper-parameter defaults are torch's (``lr=1e-3, betas=(0.9, 0.999), eps=1e-8``) for
every convention: what you pass is what runs.  To reproduce another framework's defaults,
pass them (Keras: ``eps=1e-7``, AdamW ``weight_decay=0.004``; optax adamw
``weight_decay=1e-4``; sklearn SGD ``momentum=0.9, nesterov=True``).  An option the chosen
framework does not have (dampening outside torch, weight decay in TF1, ...) is a
``ValueError``.  Formulas: :mod:`fusedopt.reference`.
"""
from __future__ import annotations

import inspect
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _checkpoint, _clip, _core, _spec
from ._spec import CONVENTIONS, Spec

__all__ = ["Optimizer", "CONVENTIONS", "unscale_and_check", "all_finite"]


def _array_list(arrays: Any, name: str) -> List[Any]:
    """A list from an ndarray (one array) or an iterable of arrays, else TypeError."""
    if isinstance(arrays, np.ndarray):
        return [arrays]
    if isinstance(arrays, (str, bytes)) or not hasattr(arrays, "__iter__"):
        raise TypeError(f"{name} must be a list of numpy.ndarray, got "
                        f"{type(arrays).__name__}")
    return list(arrays)


def _flag(value: Any, name: str) -> bool:
    """check_finite: bool or numpy.bool_ only (no truthiness of strings)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _unscale_by_dtype(grads: List[Any], index: List[int], inv_scale: Optional[float],
                      n_threads: Optional[int]) -> bool:
    """unscale-and-check over gradients of several dtypes: one C call per dtype."""
    by_dtype = _core.split_dtypes(grads, index)
    if len(by_dtype) > 1:     # validate every group before the first is unscaled
        for gs, idx in by_dtype:
            _core.unscale_check(gs, inv_scale, n_threads, "grads", False, idx, True)
    found = False
    for gs, idx in by_dtype:
        found |= _core.unscale_check(gs, inv_scale, n_threads, "grads", False, idx)
    return found


# ----------------------------------------------------------------------------- functional

def _packed_like(params: Sequence[np.ndarray], fill: float = 0.0,
                 shapes: Optional[Sequence[Tuple[int, ...]]] = None) -> List[np.ndarray]:
    """Arrays typed like each of ``params`` (all of one dtype) and shaped like them (or
    as ``shapes`` says), filled with ``fill``: views into ONE buffer, each starting on a
    64-byte line.  A kernel call walks
    a state's arrays in this order, and its prefetches past the end of one array then
    fetch the next; with each state array allocated on its own, a step over 1000 tensors
    of 1e3 float32 elements ran 1.37x the step over one tensor of 1e6, packed 1.16x
    (Adam, 1 thread; the arrays stay ordinary C-contiguous ndarrays)."""
    if not params:
        return []
    dtype = params[0].dtype
    per_line = max(1, 64 // dtype.itemsize)
    shapes = [p.shape for p in params] if shapes is None else list(shapes)
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // per_line) * per_line
    raw = np.empty(total * dtype.itemsize + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    buf = raw[start:start + total * dtype.itemsize].view(dtype)
    buf.fill(fill)
    return [buf[o:o + size].reshape(shape) for o, size, shape in zip(offsets, sizes, shapes)]


def _pack_copies(state: Dict[int, Dict[str, Any]], params: Sequence[np.ndarray]) -> None:
    """Replaces each state array by a copy, the copies packed per state name and dtype in
    index order (see _packed_like)."""
    by: Dict[Tuple[str, str], List[int]] = {}
    for i in sorted(state):
        for name, a in state[i].items():
            if isinstance(a, np.ndarray):
                by.setdefault((name, params[i].dtype.str), []).append(i)
    for (name, _), idx in by.items():
        for i, a in zip(idx, _packed_like([params[i] for i in idx], 0.0,
                                          [state[i][name].shape for i in idx])):
            a[...] = state[i][name]
            state[i][name] = a


def _functional(spec: Spec, name: str) -> Callable[..., None]:
    """The functional step of a description: the binding's entry of that name (which
    parses its arguments itself, so that a call on a small array costs under three NumPy
    ufunc calls), given the description's defaults, signature and documentation."""
    P = inspect.Parameter
    fn: Callable[..., None] = getattr(_core, name)
    defaults = spec.defaults
    _core.set_defaults(name, defaults)
    sig = inspect.signature(fn)
    sig = sig.replace(parameters=[
        p.replace(default=defaults[p.name]) if p.default is _core.DEFAULT
        else p.replace(default=P.empty) if p.default is _core.REQUIRED else p
        for p in sig.parameters.values()], return_annotation=None)
    fn.__signature__ = sig  # type: ignore[attr-defined]
    fn.__module__ = "fusedopt"
    fn.__doc__ = spec.functional_doc
    return fn


def unscale_and_check(grads: Sequence[np.ndarray], inv_scale: Optional[float] = None, *,
                      n_threads: Optional[int] = None) -> bool:
    """Multiplies every gradient by ``inv_scale`` in place (when given) and reports whether
    any element is NaN or infinite, in one pass over one C call for the whole list: the
    unscale-and-check of mixed-precision loss scaling
    (``torch._amp_foreach_non_finite_check_and_unscale_``).  Returns ``found_inf``.

    >>> import numpy as np, fusedopt
    >>> g = [np.full(3, 1024.0, np.float32), np.ones(2, np.float32)]
    >>> fusedopt.unscale_and_check(g, 1 / 1024)
    False
    >>> g[0]
    array([1., 1., 1.], dtype=float32)
    >>> fusedopt.unscale_and_check([np.array([1.0, np.inf])])
    True
    """
    grads = _array_list(grads, "grads")
    return _unscale_by_dtype(grads, list(range(len(grads))), inv_scale, n_threads)


def all_finite(grads: Sequence[np.ndarray], *, n_threads: Optional[int] = None) -> bool:
    """True when no element of any array is NaN or infinite (reads only; one C call).

    >>> import numpy as np, fusedopt
    >>> fusedopt.all_finite([np.ones(4), np.array([0.0, -1.0])])
    True
    """
    grads = _array_list(grads, "grads")
    return not _unscale_by_dtype(grads, list(range(len(grads))), None, n_threads)


# ----------------------------------------------------------------------------- classes

class Optimizer:
    """The NumPy optimizers' machinery, for the description in ``spec``: param groups,
    lazily created state, multi-tensor steps, state_dict round trips (plain arrays and
    numbers: no pickle needed), checkpoints."""

    spec: Spec

    def __init__(self, params: Iterable[Any], *args: Any, check_finite: bool = False,
                 **kwargs: Any) -> None:
        hypers = self.spec.numpy_hypers()
        if len(args) > len(hypers):
            raise TypeError(f"{type(self).__name__}() takes {len(hypers) + 1} positional "
                            f"arguments but {len(args) + 1} were given")
        defaults = {h.name: h.default for h in hypers}
        for h, v in zip(hypers, args):
            defaults[h.name] = v
        for k, v in kwargs.items():
            if k not in defaults:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                                f"{k!r}")
            if k in [h.name for h in hypers[:len(args)]]:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument "
                                f"{k!r}")
            defaults[k] = v
        self.defaults = defaults
        self._kernel_defaults = self.spec.class_defaults
        params = _array_list(params, "params")
        # One step at a time per optimizer: a second thread calling step() (or
        # state_dict/load) waits for the first, so concurrent use is safe, never corrupt.
        self._lock = threading.RLock()
        #: skip (and count) steps whose gradients are not all finite
        self.check_finite = _flag(check_finite, "check_finite")
        #: number of steps skipped because of non-finite gradients
        self.skipped_steps = 0
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: List[Dict[str, Any]] = []
        self.state: Dict[int, Dict[str, Any]] = {}
        self._params: List[np.ndarray] = []
        #: per batch of the last step: (group, indices, state names, StepPlan), when the
        #: next step can reuse the arrays it holds (every gradient given); else None
        self._plan: Optional[List[Tuple[Dict[str, Any], List[int], Tuple[str, ...], Any]]] = None
        self._plan_state: Optional[Dict[int, Dict[str, Any]]] = None
        for g in groups:
            self.add_param_group(g)

    # -- groups
    def add_param_group(self, group: Dict[str, Any]) -> None:
        """Adds a group of arrays with its own hyper-parameters (defaults fill the rest)."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a param group must be a dict with a 'params' list")
        params = _array_list(group["params"], "params")
        for k, p in enumerate(params):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"params[{len(self._params) + k}] must be a numpy.ndarray, "
                                f"got {type(p).__name__}")
            if p.dtype not in (np.float32, np.float64):
                raise TypeError(f"params[{len(self._params) + k}] must be float32 or float64, "
                                f"got dtype {p.dtype}")
            if not p.flags.c_contiguous or not p.flags.writeable:
                raise ValueError(f"params[{len(self._params) + k}] must be C-contiguous and "
                                 "writeable (it is updated in place)")
        _core.check_distinct(self._params + params, "params")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"unknown hyper-parameter(s) in param group: {sorted(unknown)}")
        g = {**self.defaults, **group}
        g["params"] = list(range(len(self._params), len(self._params) + len(params)))
        self._validate_group(g)
        self._params.extend(params)
        self.param_groups.append(g)
        self._plan = None

    @property
    def params(self) -> List[np.ndarray]:
        """All parameter arrays, in the order ``step(grads)`` expects their gradients."""
        return list(self._params)

    def _validate_group(self, g: Dict[str, Any]) -> None:
        for h in self.spec.hypers:   # canonical values: tuples, bools (as the defaults)
            v = g.get(h.name)
            if isinstance(h.default, tuple) and isinstance(v, list):
                g[h.name] = tuple(v)
            elif isinstance(h.default, bool) and isinstance(v, np.bool_):
                g[h.name] = bool(v)
        self.spec.kernel([[], []] + [[] for _ in self.spec.roles], g, self._kernel_defaults,
                         1, None, dry=True)

    # -- stepping
    def step(self, grads: Sequence[Optional[np.ndarray]], *, inv_scale: Optional[float] = None,
             n_threads: Optional[int] = None) -> bool:
        """Applies one update and returns True (False: skipped, see ``check_finite``).

        ``grads`` is aligned with :attr:`params`; a ``None`` gradient skips that parameter
        (no state change, as torch).  ``inv_scale`` first multiplies the gradients by it
        in place (loss scaling), fused with the finite check.  With ``check_finite=True``
        a step whose gradients hold any NaN or infinity changes nothing, counts in
        :attr:`skipped_steps` and returns False; by default non-finite values propagate
        through IEEE arithmetic as in every framework.  Everything is validated before
        any array is modified.  Thread-safe: concurrent calls on one optimizer run one
        after the other (the kernels release the GIL, but on steps of a few thousand
        elements, where that would cost more than the update)."""
        with self._lock:
            return self._step(grads, inv_scale, n_threads)

    def _step(self, grads: Sequence[Optional[np.ndarray]], inv_scale: Optional[float],
              n_threads: Optional[int]) -> bool:
        grads = _array_list(grads, "grads")
        if len(grads) != len(self._params):
            raise ValueError(f"step() got {len(grads)} gradients for {len(self._params)} "
                             "parameters")
        plans = self._plan
        if plans is not None:
            groups, kernel_step = self.param_groups, self.spec.kernel_step
            try:
                if self._plan_state is self.state and all(
                        any(g is group for g in groups) and self.spec.states(group) == names
                        and plan.ready(self.state, grads) for group, _, names, plan in plans):
                    held = self._execute(
                        [(group, kernel_step(self.state[idx[0]]), idx, plan)
                         for group, idx, _, plan in plans], grads, self.state, inv_scale,
                        n_threads)
                    if held is None:
                        return False
                    for _, _, _, plan in plans:
                        plan.commit()
                    return True
            finally:
                for _, _, _, plan in plans:
                    plan.release()              # (the caller's gradients are its own)
            self._plan = None
        kernel_step = self.spec.kernel_step
        batches = []
        for group in self.param_groups:
            by_key: Dict[Any, List[int]] = {}
            for i in group["params"]:
                if grads[i] is None:
                    continue
                p = self._params[i]
                by_key.setdefault((p.dtype.char, kernel_step(self.state.get(i))),
                                  []).append(i)
            for (_, key), idx in by_key.items():
                batches.append((group, key, idx, None))
        new_state = {i: {"step": 0} for _, _, idx, _ in batches for i in idx
                     if i not in self.state}
        state = {**self.state, **new_state}
        held = self._execute(batches, grads, state, inv_scale, n_threads)
        if held is None:
            return False
        self.state = state
        for _, _, idx, _ in batches:
            for i in idx:
                state[i]["step"] += 1
        if all(g is not None for g in grads) and all(tl is not None for tl in held):
            # the next steps hold these arrays (see _core.StepPlan)
            keys = (None, None) + self.spec.roles
            self._plan = [(group, idx, self.spec.states(group),
                           _core.StepPlan(tl, state, idx, keys))
                          for (group, _, idx, _), tl in zip(batches, held)]
            self._plan_state = state
        return True

    def _execute(self, batches: List[Tuple[Dict[str, Any], Any, List[int], Any]],
                 grads: List[Any], state: Dict[int, Dict[str, Any]],
                 inv_scale: Optional[float], n_threads: Optional[int]) -> Optional[List[Any]]:
        """Runs the kernel calls of a step, one per batch (group, kernel step, indices,
        StepPlan or None): every batch validated before the first array (or gradient) is
        modified, the gradients unscaled and checked, then each call.  Returns the calls'
        arrays, or None for a step skipped by check_finite."""
        if len(batches) > 1 or inv_scale is not None:
            for group, key, idx, plan in batches:
                self._run(group, key, idx, grads, state, n_threads, True, plan)
        # the gradients of the groups with max_grad_norm, per group (their norm is also
        # their finite check)
        clipped: Dict[int, Tuple[Dict[str, Any], List[int]]] = {}
        for group, _, idx, _ in batches:
            if group["max_grad_norm"] is not None:
                clipped.setdefault(id(group), (group, []))[1].extend(idx)
        if inv_scale is not None or self.check_finite:
            index = [i for i, g in enumerate(grads) if g is not None]
            if inv_scale is None and clipped:   # (unscaling writes them all; checking
                done = {i for _, idx in clipped.values() for i in idx}   # reads the rest)
                index = [i for i in index if i not in done]
            found = _unscale_by_dtype([grads[i] for i in index], index, inv_scale, n_threads)
            if found and self.check_finite:
                self.skipped_steps += 1
                return None
        coef: Dict[int, float] = {}
        for key, (group, idx) in clipped.items():
            gs = [grads[i] for i in idx]
            total, dtype = _clip.total_norm(gs, idx, 2.0, n_threads)
            # (a norm that overflows with finite gradients, [3e38, 3e38] in float32, is
            # no reason to skip: the element check decides, in that rare case)
            if self.check_finite and not np.isfinite(total) and \
                    _unscale_by_dtype(gs, idx, None, n_threads):
                self.skipped_steps += 1
                return None
            coef[key] = _clip.clip_coef(total, group["max_grad_norm"], dtype)
        return [self._run(group, key, idx, grads, state, n_threads, False, plan,
                          coef.get(id(group), 1.0))
                for group, key, idx, plan in batches]

    def _run(self, group: Dict[str, Any], key: Any, idx: List[int], grads: Sequence[Any],
             state: Dict[int, Dict[str, Any]], n_threads: Optional[int],
             validate_only: bool, plan: Any = None, grad_scale: float = 1.0) -> Any:
        """One kernel call for the parameters idx of a group, over the arrays a ready
        StepPlan holds or else the lists made here; states the group uses and a
        parameter lacks (its first step; amsgrad or momentum switched on later) start at
        their initial value (zero, or the description's); ``grad_scale`` multiplies the
        gradients inside the update (max_grad_norm's coefficient).  Returns the call's
        arrays (for a StepPlan)."""
        if plan is not None:
            return self.spec.kernel(None, group, self._kernel_defaults, key, n_threads,
                                    "params", False, idx, validate_only, plan, False,
                                    grad_scale)
        spec = self.spec
        names, roles = spec.states(group), spec.roles
        if spec.state_shape is None:
            try:
                states = [[state[i][r] for i in idx] if r in names else None for r in roles]
            except KeyError:
                self._create_states(group, names, idx, state)
                states = [[state[i][r] for i in idx] if r in names else None for r in roles]
        else:       # (states shaped by their parameter: some parameters have none)
            self._create_states(group, names, idx, state)
            states = [[state[i].get(r) for i in idx] if r in names else None for r in roles]
        arrays: List[Any] = [[self._params[i] for i in idx], [grads[i] for i in idx]] + states
        return self.spec.kernel(arrays, group, self._kernel_defaults, key, n_threads,
                                "params", False, idx, validate_only, None, not validate_only,
                                grad_scale)

    def _create_states(self, group: Dict[str, Any], names: Tuple[str, ...], idx: List[int],
                       state: Dict[int, Dict[str, Any]]) -> None:
        """The states of ``names`` that parameters idx lack (and have, by their shape),
        at their initial value, packed per state."""
        for n in names:
            lacking = [i for i in idx if n not in state[i] and
                       self.spec.shape_of(group, n, self._params[i].shape) is not None]
            shapes = [self.spec.shape_of(group, n, self._params[i].shape) for i in lacking]
            for i, a in zip(lacking, _packed_like([self._params[i] for i in lacking],
                                                  self.spec.initial_value(group, n),
                                                  shapes)):  # type: ignore[arg-type]
                state[i] = dict(state[i], **{n: a})

    # -- state dicts
    def state_dict(self) -> Dict[str, Any]:
        """The optimizer state as plain data: ``{"state": {index: {"step": int, name:
        ndarray, ...}}, "param_groups": [{hyper-parameters, "params": [indices]}],
        "kind": class name}``.  Arrays are copies."""
        with self._lock:
            return self._state_dict()

    def _state_dict(self) -> Dict[str, Any]:
        return {
            "kind": self.spec.name,
            "state": {i: {k: (v.copy() if isinstance(v, np.ndarray) else v)
                          for k, v in s.items()} for i, s in self.state.items()},
            "param_groups": [dict(g, params=list(g["params"])) for g in self.param_groups],
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`.  Checks that it comes from the same kind of
        optimizer over parameters of the same shapes and dtypes, with exactly the expected
        entries, before changing anything."""
        with self._lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != {"kind", "state", "param_groups"}:
            raise ValueError("state_dict must have exactly the keys 'kind', 'state', "
                             "'param_groups'")
        if state_dict["kind"] != self.spec.name:
            raise ValueError(f"state_dict is from a {state_dict['kind']!r} optimizer, not "
                             f"{self.spec.name!r}")
        groups = state_dict["param_groups"]
        if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
            raise ValueError("state_dict['param_groups'] must be a list of dicts")
        if not isinstance(state_dict["state"], dict):
            raise ValueError("state_dict['state'] must be a dict {parameter index: state}")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(groups)} param groups, optimizer has "
                             f"{len(self.param_groups)}")
        new_groups = []
        for k, (g, mine) in enumerate(zip(groups, self.param_groups)):
            # a state dict saved before a (late) hyper-parameter existed: its default
            g = {**{h.name: h.default for h in self.spec.numpy_hypers()
                    if h.late and h.name in mine and h.name not in g}, **g}
            if set(g) != set(mine):
                raise ValueError(f"param_groups[{k}] keys {sorted(g)} differ from "
                                 f"{sorted(mine)}")
            if not isinstance(g["params"], (list, tuple)) or list(g["params"]) != mine["params"]:
                raise ValueError(f"param_groups[{k}] holds params {g['params']!r}, "
                                 f"expected {mine['params']}")
            ng = dict(g, params=list(mine["params"]))
            self._validate_group(ng)
            new_groups.append(ng)
        new_state = {}
        for key, s in state_dict["state"].items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer, str)) or \
                    (isinstance(key, str) and not key.isdigit()):
                raise ValueError(f"state_dict['state'] key {key!r} is not a parameter index")
            if not isinstance(s, dict):
                raise ValueError(f"state_dict['state'][{key!r}] must be a dict")
            i = int(key)
            if not 0 <= i < len(self._params):
                raise ValueError(f"state_dict has state for parameter {i}, optimizer has "
                                 f"{len(self._params)}")
            p = self._params[i]
            expected = set(self.spec.param_states(_group_of(new_groups, i), p.shape)) | {"step"}
            if set(s) != expected:
                raise ValueError(f"state[{i}] has entries {sorted(s)}, expected "
                                 f"{sorted(expected)}")
            step = s["step"]
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"state[{i}]['step'] must be an integer >= 0, got {step!r}")
            ns: Dict[str, Any] = {"step": int(step)}
            for name in expected - {"step"}:
                a = s[name]
                shape = self.spec.shape_of(_group_of(new_groups, i), name, p.shape)
                if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != p.dtype:
                    raise ValueError(f"state[{i}][{name!r}] must be an array of shape "
                                     f"{shape} and dtype {p.dtype}")
                ns[name] = a
            new_state[i] = ns
        _pack_copies(new_state, self._params)
        self.param_groups = new_groups
        self.state = new_state
        self._plan = None

    # -- checkpoints
    def save(self, path: Any, *, include_params: bool = True) -> None:
        """Writes a checkpoint (state, hyper-parameters and, by default, the parameter
        values) atomically: write to a temporary file, fsync, rename.  A SHA-256 of the
        content is verified on load; no pickle is involved.  See
        :func:`fusedopt.load_optimizer` and :meth:`load`."""
        with self._lock:
            _checkpoint.save(self, path, include_params=include_params)

    def load(self, path: Any) -> None:
        """Restores a checkpoint written by :meth:`save` into this optimizer: its state,
        hyper-parameters and (when saved) the parameter values, copied into the existing
        arrays.  Everything is verified before anything changes."""
        header = _checkpoint.read(path)
        with self._lock:
            self._restore(header)

    def _restore(self, header: Dict[str, Any]) -> None:
        saved = header["params"]
        if saved is not None:
            if len(saved) != len(self._params):
                raise ValueError(f"checkpoint holds {len(saved)} parameters, optimizer "
                                 f"{len(self._params)}")
            for k, (p, s) in enumerate(zip(self._params, saved)):
                if p.shape != s.shape or p.dtype != s.dtype:
                    raise ValueError(f"checkpoint parameter {k} has shape {s.shape} and dtype "
                                     f"{s.dtype}; params[{k}] has {p.shape}, {p.dtype}")
        self.load_state_dict(_checkpoint.state_dict_of(header))
        self.skipped_steps = int(header.get("skipped_steps", 0))
        if saved is not None:
            for p, s in zip(self._params, saved):
                p[...] = s

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            for key in sorted(g):
                if key != "params":
                    lines.append(f"    {key}: {g[key]}")
        return "\n".join(lines) + "\n)"


def _group_of(groups: List[Dict[str, Any]], i: int) -> Dict[str, Any]:
    for g in groups:
        if i in g["params"]:
            return g
    raise KeyError(i)


def _numpy_class(spec: Spec) -> type:
    """The NumPy class of a description: its signature, defaults and docstring."""
    P = inspect.Parameter
    sig = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("params", P.POSITIONAL_OR_KEYWORD)] +
        [P(h.name, P.POSITIONAL_OR_KEYWORD, default=h.default) for h in spec.numpy_hypers()] +
        [P("check_finite", P.KEYWORD_ONLY, default=False)], return_annotation=None)
    init = Optimizer.__init__

    def __init__(self: Optimizer, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
    __init__.__signature__ = sig  # type: ignore[attr-defined]
    __init__.__doc__ = f"See :class:`{spec.name}`."
    cls = type(spec.name, (Optimizer,), {"spec": spec, "__init__": __init__,
                                          "__doc__": spec.doc, "__module__": "fusedopt",
                                          "__qualname__": spec.name})
    _spec.CLASSES[("numpy", spec.name)] = cls
    return cls


def _front_end() -> Dict[str, Any]:
    """The class and the functional step of every description in fusedopt._spec."""
    made: Dict[str, Any] = {}
    for spec in _spec.all_specs():
        made[spec.name] = _numpy_class(spec)
        if spec.functional:
            made[spec.functional] = _functional(spec, spec.functional)
    return made


#: every optimizer class and functional step, by name (exported by the package)
FRONT_END = _front_end()
globals().update(FRONT_END)
__all__ += list(FRONT_END)
if TYPE_CHECKING:   # what static type checkers see of the objects made above
    class Adam(Optimizer): ...
    class AdamW(Optimizer): ...
    class SGD(Optimizer): ...
    class Lion(Optimizer): ...
    class Adagrad(Optimizer): ...
    class RMSprop(Optimizer): ...
    class Adafactor(Optimizer): ...
    class LAMB(Optimizer): ...

    adam_step, sgd_step, lion_step = _core.adam_step, _core.sgd_step, _core.lion_step
    adagrad_step, rmsprop_step = _core.adagrad_step, _core.rmsprop_step
    adafactor_step, lamb_step = _core.adafactor_step, _core.lamb_step
else:
    Adam, AdamW, SGD, Lion, Adagrad, RMSprop, Adafactor, LAMB = (
        FRONT_END[k] for k in ("Adam", "AdamW", "SGD", "Lion", "Adagrad", "RMSprop",
                               "Adafactor", "LAMB"))
    adam_step, sgd_step, lion_step, adagrad_step, rmsprop_step, adafactor_step, \
        lamb_step = (FRONT_END[k] for k in ("adam_step", "sgd_step", "lion_step",
                                            "adagrad_step", "rmsprop_step",
                                            "adafactor_step", "lamb_step"))
