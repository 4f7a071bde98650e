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

import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _core

CONVENTIONS: Tuple[str, ...] = tuple(_core.CONVENTIONS)


def _array_list(arrays: Any, name: str) -> List[Any]:
    """A list from an ndarray (one array) or an iterable of arrays, else TypeError."""
    if isinstance(arrays, np.ndarray):
        return [arrays]
    if isinstance(arrays, (str, bytes)) or not hasattr(arrays, "__iter__"):
        raise TypeError(f"{name} must be a list of numpy.ndarray, got "
                        f"{type(arrays).__name__}")
    return list(arrays)


def _flag(value: Any, name: str) -> bool:
    """A boolean hyper-parameter: bool or numpy.bool_ only (no truthiness of strings)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _unscale_by_dtype(grads: List[Any], index: List[int], inv_scale: Optional[float],
                      n_threads: Optional[int]) -> bool:
    """unscale-and-check over gradients of several dtypes: one C call per dtype."""
    by_dtype: Dict[Any, Tuple[List[Any], List[int]]] = {}
    for g, i in zip(grads, index):
        key = g.dtype.char if isinstance(g, np.ndarray) else None
        lst = by_dtype.setdefault(key, ([], []))
        lst[0].append(g)
        lst[1].append(i)
    if len(by_dtype) > 1:     # validate every group before the first is unscaled
        for gs, idx in by_dtype.values():
            _core.unscale_check(gs, inv_scale, n_threads, "grads", False, idx, True)
    found = False
    for gs, idx in by_dtype.values():
        found |= _core.unscale_check(gs, inv_scale, n_threads, "grads", False, idx)
    return found


def adam_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
              exp_avg_sq: np.ndarray, *, step: int, lr: float = 1e-3,
              betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
              amsgrad: bool = False, max_exp_avg_sq: Optional[np.ndarray] = None,
              maximize: bool = False, convention: str = "torch", eps_root: float = 0.0,
              n_threads: Optional[int] = None) -> None:
    """One Adam (or AdamW) update of ``param``, ``exp_avg`` and ``exp_avg_sq`` in place.

    ``step`` is the 1-based index of this update (torch's ``state["step"]`` after its
    increment).  With ``convention="torch"`` (``torch.optim.Adam``), per element::

        g = -g if maximize;  g += wd*p (L2)  or  p *= 1 - lr*wd (decoupled, AdamW)
        m = lerp(m, g, 1 - b1);  v = v*b2 + (1 - b2)*g*g;  vmax = max(vmax, v) (amsgrad)
        p -= lr/(1 - b1**t) * m / (sqrt(v or vmax)/sqrt(1 - b2**t) + eps)

    "tf1", "keras" and "sklearn" use the "epsilon hat" form
    ``p -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps)`` (TF1: hyper-parameters as float32
    tensors and b^t as a float32 running product); "optax" uses
    ``p -= lr*(m/(1-b1^t)) / (sqrt(v/(1-b2^t) + eps_root) + eps)`` and its AMSGrad takes
    the max of the bias-corrected v.  Scalars are computed once per call.

    Args:
        param, grad, exp_avg, exp_avg_sq: float32 or float64 arrays of one dtype and
            shape, C-contiguous, distinct; all but ``grad`` writeable.  State starts at 0.
        step: int >= 1.
        lr, betas, eps, weight_decay: as torch (lr, eps, wd >= 0; 0 <= beta < 1).
        decoupled_weight_decay: AdamW's decay (required for weight decay in keras/optax).
        amsgrad: needs ``max_exp_avg_sq`` (like param, initially zeros).
        maximize: ascend (torch only).
        convention: "torch", "tf1", "keras", "optax" or "sklearn".
        eps_root: optax's epsilon inside the square root.
        n_threads: threads for this call.

    Raises:
        TypeError / ValueError naming the argument; no array is modified then.

    >>> import numpy as np, fusedopt
    >>> p = np.array([1.0, 2.0], dtype=np.float32); g = np.array([0.5, -1.0], dtype=np.float32)
    >>> m, v = np.zeros_like(p), np.zeros_like(p)
    >>> fusedopt.adam_step(p, g, m, v, step=1, lr=0.1)
    >>> p
    array([0.90000004, 2.1       ], dtype=float32)
    """
    if max_exp_avg_sq is not None and not isinstance(max_exp_avg_sq, np.ndarray):
        raise TypeError("max_exp_avg_sq must be a numpy.ndarray of float32 or float64, got "
                        f"{type(max_exp_avg_sq).__module__}.{type(max_exp_avg_sq).__qualname__}")
    _core.adam_multi([param], [grad], [exp_avg], [exp_avg_sq],
                     None if max_exp_avg_sq is None else [max_exp_avg_sq], step, lr, betas,
                     eps, weight_decay, decoupled_weight_decay, amsgrad, maximize,
                     convention, eps_root, n_threads, "param", True)


def sgd_step(param: np.ndarray, grad: np.ndarray, momentum_buffer: Optional[np.ndarray] = None,
             *, lr: float, momentum: float = 0.0, dampening: float = 0.0,
             nesterov: bool = False, weight_decay: float = 0.0, maximize: bool = False,
             convention: str = "torch", step: Optional[int] = None,
             n_threads: Optional[int] = None) -> None:
    """One SGD update of ``param`` (and ``momentum_buffer``) in place.

    ``convention="torch"`` (``torch.optim.SGD``)::

        g = -g if maximize;  g += wd*p
        buf = g if step == 1 else buf*momentum + (1 - dampening)*g
        g = g + momentum*buf if nesterov else buf;   p -= lr*g

    The first momentum step is signalled by ``step=1`` (torch sets the buffer to the
    gradient, undamped); ``step`` is required for torch-convention momentum.
    "tf1": ``accum = accum*mu + g; p -= accum*lr`` (Nesterov ``p -= g*lr + accum*mu*lr``);
    "keras": ``m = m*mu - g*lr; p += m`` (lr inside the buffer; Nesterov
    ``p += m*mu - g*lr``; weight decay ``p -= p*wd*lr`` first); "optax":
    ``t = g + mu*t; p -= lr*t`` (Nesterov ``p -= lr*(g + mu*t)``); "sklearn":
    ``v = mu*v - lr*g; p += v`` (Nesterov ``p += mu*v - lr*g``).  Non-torch buffers start
    at zero.  Without momentum no buffer is needed.

    Raises:
        TypeError / ValueError naming the argument; no array is modified then.

    >>> import numpy as np, fusedopt
    >>> p = np.ones(3); buf = np.zeros(3)
    >>> fusedopt.sgd_step(p, np.full(3, 0.5), buf, lr=0.1, momentum=0.9, step=1)
    >>> p
    array([0.95, 0.95, 0.95])
    """
    if momentum_buffer is not None and not isinstance(momentum_buffer, np.ndarray):
        raise TypeError("momentum_buffer must be a numpy.ndarray of float32 or float64, got "
                        f"{type(momentum_buffer).__module__}.{type(momentum_buffer).__qualname__}")
    _core.sgd_multi([param], [grad], None if momentum_buffer is None else [momentum_buffer],
                    lr, momentum, dampening, nesterov, weight_decay, maximize, convention,
                    step, n_threads, "param", True)


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

class _Optimizer:
    """Common machinery: param groups, lazily created state, multi-tensor steps,
    state_dict round trips (plain arrays and numbers: no pickle needed)."""

    _state_keys: Tuple[str, ...] = ()
    _kind = "optimizer"

    def __init__(self, params: Iterable[Any], defaults: Dict[str, Any],
                 check_finite: bool = False) -> None:
        self.defaults = dict(defaults)
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
        self._plan: Optional[List[Tuple[Dict[str, Any], List[int]]]] = None
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
        raise NotImplementedError

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
        after the other (the kernels themselves release the GIL)."""
        with self._lock:
            return self._step(grads, inv_scale, n_threads)

    def _step(self, grads: Sequence[Optional[np.ndarray]], inv_scale: Optional[float],
              n_threads: Optional[int]) -> bool:
        grads = _array_list(grads, "grads")
        if len(grads) != len(self._params):
            raise ValueError(f"step() got {len(grads)} gradients for {len(self._params)} "
                             "parameters")
        plan = self._plan
        if plan is not None and all(g is not None for g in grads):
            # Fast path: every parameter has state and each batch one step count.
            batches = [(group, self._batch_key(idx[0]), idx) for group, idx in plan]
            new_state: Dict[int, Dict[str, Any]] = {}
            state = self.state
        else:
            plan = None
            batches = []
            for group in self.param_groups:
                by_key: Dict[Any, List[int]] = {}
                for i in group["params"]:
                    if grads[i] is None:
                        continue
                    p = self._params[i]
                    by_key.setdefault((p.dtype.char, self._batch_key(i)), []).append(i)
                for (_, key), idx in by_key.items():
                    batches.append((group, key, idx))
            new_state = {i: self._init_state(i) for _, _, idx in batches for i in idx
                         if i not in self.state}
            state = {**self.state, **new_state}
        if len(batches) > 1 or inv_scale is not None:
            # validate every batch before the first array (or gradient) is modified
            for group, key, idx in batches:
                self._run(group, key, idx, grads, state, n_threads, validate_only=True)
        if inv_scale is not None or self.check_finite:
            index = [i for i, g in enumerate(grads) if g is not None]
            found = _unscale_by_dtype([grads[i] for i in index], index, inv_scale, n_threads)
            if found and self.check_finite:
                self.skipped_steps += 1
                return False
        for group, key, idx in batches:
            self._run(group, key, idx, grads, state, n_threads, validate_only=False)
        self.state = state
        for _, _, idx in batches:
            for i in idx:
                state[i]["step"] += 1
        if plan is None:
            self._plan = self._make_plan()
        return True

    def _make_plan(self) -> Optional[List[Tuple[Dict[str, Any], List[int]]]]:
        """Batches (group, indices by dtype) for the fast path, when every parameter has
        state and all parameters of a batch have the same step count; else None."""
        plan = []
        for group in self.param_groups:
            by_dtype: Dict[str, List[int]] = {}
            for i in group["params"]:
                if i not in self.state:
                    return None
                by_dtype.setdefault(self._params[i].dtype.char, []).append(i)
            for idx in by_dtype.values():
                if len({self._batch_key(i) for i in idx}) != 1:
                    return None
                plan.append((group, idx))
        return plan

    def _batch_key(self, i: int) -> Any:
        s = self.state.get(i)
        return 1 if s is None else s["step"] + 1

    def _init_state(self, i: int) -> Dict[str, Any]:
        raise NotImplementedError

    def _run(self, group: Dict[str, Any], key: Any, idx: List[int], grads: Sequence[Any],
             state: Dict[int, Dict[str, Any]], n_threads: Optional[int],
             validate_only: bool) -> None:
        raise NotImplementedError

    # -- state dicts
    def state_dict(self) -> Dict[str, Any]:
        """The optimizer state as plain data: ``{"state": {index: {"step": int, name:
        ndarray, ...}}, "param_groups": [{hyper-parameters, "params": [indices]}],
        "kind": class name}``.  Arrays are copies."""
        with self._lock:
            return self._state_dict()

    def _state_dict(self) -> Dict[str, Any]:
        return {
            "kind": self._kind,
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
        if state_dict["kind"] != self._kind:
            raise ValueError(f"state_dict is from a {state_dict['kind']!r} optimizer, not "
                             f"{self._kind!r}")
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
            expected = set(self._state_names(i, new_groups)) | {"step"}
            if set(s) != expected:
                raise ValueError(f"state[{i}] has entries {sorted(s)}, expected "
                                 f"{sorted(expected)}")
            step = s["step"]
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"state[{i}]['step'] must be an integer >= 0, got {step!r}")
            ns: Dict[str, Any] = {"step": int(step)}
            for name in expected - {"step"}:
                a = s[name]
                if not isinstance(a, np.ndarray) or a.shape != p.shape or a.dtype != p.dtype:
                    raise ValueError(f"state[{i}][{name!r}] must be an array of shape "
                                     f"{p.shape} and dtype {p.dtype}")
                ns[name] = np.array(a, dtype=p.dtype, order="C", copy=True)
            new_state[i] = ns
        self.param_groups = new_groups
        self.state = new_state
        self._plan = None

    def _state_names(self, i: int, groups: List[Dict[str, Any]]) -> Tuple[str, ...]:
        return self._state_keys

    # -- checkpoints
    def save(self, path: Any, *, include_params: bool = True) -> None:
        """Writes a checkpoint (state, hyper-parameters and, by default, the parameter
        values) atomically: write to a temporary file, fsync, rename.  A SHA-256 of the
        content is verified on load; no pickle is involved.  See
        :func:`fusedopt.load_optimizer` and :meth:`load`."""
        from . import _checkpoint
        with self._lock:
            _checkpoint.save(self, path, include_params=include_params)

    def load(self, path: Any) -> None:
        """Restores a checkpoint written by :meth:`save` into this optimizer: its state,
        hyper-parameters and (when saved) the parameter values, copied into the existing
        arrays.  Everything is verified before anything changes."""
        from . import _checkpoint
        header = _checkpoint.read(path)
        with self._lock:
            self._restore(header)

    def _restore(self, header: Dict[str, Any]) -> None:
        from . import _checkpoint
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


class Adam(_Optimizer):
    """Adam over a list of NumPy arrays, updated in place (one C call per step).

    ``torch.optim.Adam`` semantics and defaults by default (L2 weight decay added to the
    gradient); ``convention`` picks another framework's update rule (see
    :func:`adam_step`).  With ``convention="keras"`` weight decay is Keras's decoupled
    decay (Keras' ``Adam(weight_decay=...)``).  State per parameter: ``step``,
    ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq`` with amsgrad), in its dtype.
    Hyper-parameters live in ``param_groups`` and can change between steps.

    >>> import numpy as np, fusedopt
    >>> w = np.zeros(3, dtype=np.float32)
    >>> opt = fusedopt.Adam([w], lr=0.1)
    >>> opt.step([np.array([1.0, -1.0, 0.0], dtype=np.float32)])
    True
    >>> w
    array([-0.09999999,  0.09999999,  0.        ], dtype=float32)
    """

    _kind = "Adam"
    _decoupled = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
                 convention: str = "torch", eps_root: float = 0.0, *,
                 check_finite: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, convention=convention,
                                      eps_root=eps_root), check_finite)

    def _decoupled_for(self, g: Dict[str, Any]) -> bool:
        return self._decoupled or (g["convention"] == "keras" and g["weight_decay"] != 0)

    def _validate_group(self, g: Dict[str, Any]) -> None:
        for name in ("amsgrad", "maximize"):
            g[name] = _flag(g[name], name)
        betas = g["betas"]
        if isinstance(betas, np.ndarray) or not isinstance(betas, (tuple, list)) or \
                len(betas) != 2:
            raise TypeError(f"betas must be a pair of floats, got {betas!r}")
        g["betas"] = tuple(betas)
        # Runs the binding's validation on an empty list: same messages as a real step.
        _core.adam_multi([], [], [], [], [] if g["amsgrad"] else None, 1, g["lr"], g["betas"],
                         g["eps"], g["weight_decay"], self._decoupled_for(g), g["amsgrad"],
                         g["maximize"], g["convention"], g["eps_root"], None)

    def _state_names(self, i: int, groups: List[Dict[str, Any]]) -> Tuple[str, ...]:
        g = _group_of(groups, i)
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if g["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def _init_state(self, i: int) -> Dict[str, Any]:
        p = self._params[i]
        s = {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
        if _group_of(self.param_groups, i)["amsgrad"]:
            s["max_exp_avg_sq"] = np.zeros_like(p)
        return s

    def _run(self, g: Dict[str, Any], step: Any, idx: List[int], grads: Sequence[Any],
             state: Dict[int, Dict[str, Any]], n_threads: Optional[int],
             validate_only: bool) -> None:
        ams = g["amsgrad"]
        for i in idx:
            if ams and "max_exp_avg_sq" not in state[i]:
                state[i] = dict(state[i], max_exp_avg_sq=np.zeros_like(self._params[i]))
        _core.adam_multi([self._params[i] for i in idx], [grads[i] for i in idx],
                         [state[i]["exp_avg"] for i in idx],
                         [state[i]["exp_avg_sq"] for i in idx],
                         [state[i]["max_exp_avg_sq"] for i in idx] if ams else None, step,
                         g["lr"], g["betas"], g["eps"], g["weight_decay"],
                         self._decoupled_for(g), ams, g["maximize"], g["convention"],
                         g["eps_root"], n_threads, "params", False, validate_only, idx)


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``: ``p *= 1 - lr*wd`` before
    the Adam step; Keras ``p -= p*wd*lr``; optax adamw ``p -= lr*(u + wd*p)``), default
    ``weight_decay=1e-2`` as torch.  Not available for the "tf1" and "sklearn" conventions
    (they have no weight decay): pass ``weight_decay=0`` there.

    >>> import numpy as np, fusedopt
    >>> w = np.ones(2)
    >>> fusedopt.AdamW([w], lr=0.1, weight_decay=0.5).step([np.zeros(2)])
    True
    >>> w
    array([0.95, 0.95])
    """

    _kind = "AdamW"
    _decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False,
                 convention: str = "torch", eps_root: float = 0.0, *,
                 check_finite: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize, convention,
                         eps_root, check_finite=check_finite)


class SGD(_Optimizer):
    """Stochastic gradient descent with optional momentum / Nesterov, in place.

    ``torch.optim.SGD`` semantics and defaults by default (``lr=1e-3``; the momentum
    buffer starts as a copy of the first gradient; dampening; L2 weight decay; maximize).
    Other conventions: see :func:`sgd_step` (Keras' weight decay is decoupled).  State per
    parameter: ``step`` and, with momentum, ``momentum_buffer``.

    >>> import numpy as np, fusedopt
    >>> w = np.ones(2)
    >>> opt = fusedopt.SGD([w], lr=0.5, momentum=0.9)
    >>> for _ in range(2): _ = opt.step([np.ones(2)])
    >>> w
    array([-0.45, -0.45])
    """

    _kind = "SGD"

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 maximize: bool = False, convention: str = "torch", *,
                 check_finite: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay,
                                      maximize=maximize, convention=convention),
                         check_finite)

    def _validate_group(self, g: Dict[str, Any]) -> None:
        for name in ("nesterov", "maximize"):
            g[name] = _flag(g[name], name)
        mu = g["momentum"]
        if isinstance(mu, (bool, np.bool_)) or not isinstance(mu, (int, float, np.integer,
                                                                   np.floating)):
            raise TypeError(f"momentum must be a real number, got {type(mu).__name__}")
        _core.sgd_multi([], [], [] if mu != 0 else None, g["lr"], g["momentum"],
                        g["dampening"], g["nesterov"], g["weight_decay"], g["maximize"],
                        g["convention"], 1, None)

    def _state_names(self, i: int, groups: List[Dict[str, Any]]) -> Tuple[str, ...]:
        return ("momentum_buffer",) if _group_of(groups, i)["momentum"] != 0 else ()

    def _init_state(self, i: int) -> Dict[str, Any]:
        return {"step": 0}

    def _batch_key(self, i: int) -> Any:
        # torch: the first step with momentum sets the buffer to the gradient.
        s = self.state.get(i)
        return 1 if s is None or "momentum_buffer" not in s else 2

    def _run(self, g: Dict[str, Any], key: Any, idx: List[int], grads: Sequence[Any],
             state: Dict[int, Dict[str, Any]], n_threads: Optional[int],
             validate_only: bool) -> None:
        mom = g["momentum"] != 0
        if mom:
            for i in idx:
                if "momentum_buffer" not in state[i]:
                    state[i] = dict(state[i], momentum_buffer=np.zeros_like(self._params[i]))
        _core.sgd_multi([self._params[i] for i in idx], [grads[i] for i in idx],
                        [state[i]["momentum_buffer"] for i in idx] if mom else None, g["lr"],
                        g["momentum"], g["dampening"], g["nesterov"], g["weight_decay"],
                        g["maximize"], g["convention"], key, n_threads, "params", False,
                        validate_only, idx)
