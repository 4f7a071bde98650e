"""One description per optimizer: what every front-end of fusedopt reads.

A description (:class:`Spec`) holds an optimizer's hyper-parameters with their defaults
(in the order of the NumPy class's signature, and which of them ``torch.optim``'s takes
by position), its state arrays, the kernel entry of the binding, and the texts of its
documentation.  The NumPy classes and functional steps (``fusedopt._optim``), the
``torch.optim`` drop-ins (``fusedopt.torch``), checkpoints and the bench are made from
these descriptions: adding an optimizer is adding a description here (plus its kernel and
its NumPy twin in ``fusedopt.reference``); no other module lists optimizers, except that
the front-ends name the existing ones once more for static type checkers.

Validation lives in one place, the kernel entry: it checks every hyper-parameter of a
call (with one message per error, worded as ``torch.optim``'s) before it touches an
array, and with ``dry=True`` it only validates (which is how a param group is checked
when it is added or loaded).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from . import _core

#: The update rules a ``convention=`` argument can reproduce.
CONVENTIONS: Tuple[str, ...] = tuple(_core.CONVENTIONS)

Kernel = Callable[..., Any]


@dataclass(frozen=True)
class Hyper:
    """A hyper-parameter: its name, default, and the line that documents it."""
    name: str
    default: Any
    doc: str
    #: added after state dicts were first saved: one without it loads with the default
    late: bool = False


@dataclass(frozen=True)
class Spec:
    """An optimizer as data.

    ``kernel(arrays, hyper, defaults, step, n_threads, pname, single, index, dry, plan,
    keep)`` is its binding entry: ``arrays`` is ``[params, grads, *states]`` (one list per
    role, None for a state the group does not use), ``hyper`` a param group (or keyword
    arguments), ``defaults`` the values of the hyper-parameters it lacks; ``plan`` a
    ready ``_core.StepPlan`` that holds the arrays instead, ``keep=True`` returns the
    call's arrays for one.  ``states(group)`` names the
    state arrays a group uses, each shaped and typed like its parameter and zero at
    first (or the value ``initial`` names), in the kernel's order (``roles`` lists them all).  ``kernel_step(state)`` is
    the ``step`` argument of the next call for a parameter with this state (None: no
    state yet); parameters with equal values are stepped in one call.
    """
    name: str
    hypers: Tuple[Hyper, ...]
    roles: Tuple[str, ...]
    states: Callable[[Mapping[str, Any]], Tuple[str, ...]]
    kernel: Kernel
    kernel_step: Callable[[Optional[Mapping[str, Any]]], int]
    #: hyper-parameters this optimizer fixes (AdamW's decoupled weight decay): not
    #: arguments, not in its param groups
    fixed: Mapping[str, Any] = field(default_factory=dict)
    #: hyper-parameters that are not arguments of the NumPy class (but of torch's)
    torch_only: Tuple[str, ...] = ()
    #: what ``torch.optim``'s signature takes by position after ``params``, in its
    #: order: hyper-parameters and implementation flags (torch.optim.Adagrad's
    #: ``foreach``; torch.optim.RMSprop's ``capturable, foreach, maximize``)
    torch_positional: Tuple[str, ...] = ()
    #: the implementation flags of ``torch.optim``'s signature (only their defaults are
    #: supported)
    torch_flags: Tuple[str, ...] = ("foreach", "fused", "capturable", "differentiable")
    #: the ``torch.optim`` signature's order, when it differs from ``hypers``
    torch_order: Tuple[str, ...] = ()
    #: whether torch keeps a "step" entry in the state (torch.optim.SGD does not)
    torch_step_state: bool = True
    #: states that a parameter's existing state may lack (switched on later: amsgrad,
    #: momentum); they start at zero
    lazy_states: Tuple[str, ...] = ()
    #: states that start at a hyper-parameter's value instead of zero (state name ->
    #: hyper-parameter name: Adagrad's sum starts at initial_accumulator_value)
    initial: Mapping[str, str] = field(default_factory=dict)
    #: whether the torch drop-in creates every parameter's state at construction, as
    #: torch.optim.Adagrad does (its state dicts hold them before the first step)
    torch_eager_state: bool = False
    #: whether the torch drop-in starts states at the constructor's value even in a group
    #: with its own (torch.optim.Adagrad's initial_accumulator_value); else the group's
    torch_initial_from_defaults: bool = False
    #: the kind of gradient torch's sparse-gradient error points to
    sparse_alternative: str = ""
    #: the shape of state ``name`` for a parameter of shape ``shape`` in a param group,
    #: or None when such a parameter has no such state (Adafactor's factored statistics);
    #: None: every state of ``states(group)`` is shaped like its parameter
    state_shape: Optional[Callable[[Mapping[str, Any], str, Tuple[int, ...]],
                                   Optional[Tuple[int, ...]]]] = None
    #: the functional step: the name of its entry in the binding, which takes the
    #: arrays and the hyper-parameters as arguments ("": none)
    functional: str = ""
    doc: str = ""
    functional_doc: str = ""
    torch_doc: str = ""

    @property
    def defaults(self) -> Dict[str, Any]:
        """Every hyper-parameter's value when not given (fixed ones included)."""
        d = {h.name: h.default for h in self.hypers}
        d.update(self.fixed)
        return d

    @property
    def torch_defaults(self) -> Dict[str, Any]:
        """The defaults the torch drop-ins pass to the kernel: the classes', and torch's
        reading of values (any truthy flag, any pair of betas)."""
        return dict(self.class_defaults, torch_values=True)

    @property
    def class_defaults(self) -> Dict[str, Any]:
        """The defaults the classes pass to the kernel: with "keras", their weight decay
        is Keras' (decoupled: ``keras.optimizers.Adam(weight_decay=...)``), as the
        functional step's is only with ``decoupled_weight_decay=True``."""
        return dict(self.defaults, keras_weight_decay_decoupled=True)

    def initial_value(self, group: Mapping[str, Any], name: str) -> float:
        """The value the state ``name`` starts at, for a parameter of ``group``."""
        hyper = self.initial.get(name)
        return 0.0 if hyper is None else float(group[hyper])

    def shape_of(self, group: Mapping[str, Any], name: str,
                 shape: Tuple[int, ...]) -> Optional[Tuple[int, ...]]:
        """The shape of state ``name`` for a parameter of ``shape`` in ``group`` (None: it
        has none)."""
        return shape if self.state_shape is None else self.state_shape(group, name, shape)

    def param_states(self, group: Mapping[str, Any], shape: Tuple[int, ...]) -> Tuple[str, ...]:
        """The states a parameter of ``shape`` in ``group`` has."""
        names = self.states(group)
        if self.state_shape is None:
            return names
        return tuple(n for n in names if self.state_shape(group, n, shape) is not None)

    def numpy_hypers(self) -> Tuple[Hyper, ...]:
        return tuple(h for h in self.hypers
                     if h.name not in self.fixed and h.name not in self.torch_only)

    def torch_hypers(self) -> Tuple[Hyper, ...]:
        by_name = {h.name: h for h in self.hypers}
        order = self.torch_order + tuple(n for n in by_name if n not in self.torch_order)
        return tuple(by_name[n] for n in order if n not in self.fixed)

    def validate(self, group: Mapping[str, Any]) -> None:
        """Checks a param group's hyper-parameters (the kernel's own checks, no arrays)."""
        self.kernel([[], []] + [[] for _ in self.roles], dict(group), self.defaults, 1,
                    None, dry=True)


_REGISTRY: Dict[str, Spec] = {}
#: front-end classes by (front-end, optimizer name), filled as the front-ends create them
#: (fusedopt.load_optimizer finds a checkpoint's class here)
CLASSES: Dict[Tuple[str, str], type] = {}
#: the torch drop-in's description of an optimizer, when it differs (its name: the same)
TORCH: Dict[str, "Spec"] = {}


#: every optimizer's gradient clipping (fusedopt.clip_grad_norm_ fused into the step)
MAX_GRAD_NORM = Hyper("max_grad_norm", None, "clip the param group's gradients to this "
                      "total 2-norm before the update, inside its pass (> 0; None: no "
                      "clipping), as torch.nn.utils.clip_grad_norm_ on the group",
                      late=True)


_CLIP_DOC = """
    ``max_grad_norm`` (every optimizer, per param group; None by default) clips each
    group's gradients to that total 2-norm before the update, as
    ``torch.nn.utils.clip_grad_norm_`` on the group (see :func:`fusedopt.clip_grad_norm_`):
    one pass reads the gradients for the norm, and the update applies the coefficient as
    it reads them (they are not written).
    """


def register(spec: Spec) -> Spec:
    """Records a description, with the hyper-parameters every optimizer has appended."""
    spec = Spec(**{**spec.__dict__, "hypers": spec.hypers + (MAX_GRAD_NORM,),
                   "doc": spec.doc + _CLIP_DOC, "torch_doc": spec.torch_doc + _CLIP_DOC})
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> Spec:
    return _REGISTRY[name]


def all_specs() -> Tuple[Spec, ...]:
    return tuple(_REGISTRY.values())


# ----------------------------------------------------------------------------- Adam

_ADAM_HYPERS = (
    Hyper("lr", 1e-3, "learning rate (>= 0)"),
    Hyper("betas", (0.9, 0.999), "coefficients of the running averages (0 <= beta < 1)"),
    Hyper("eps", 1e-8, "term added to the denominator (>= 0)"),
    Hyper("weight_decay", 0.0, "weight decay (>= 0): L2 added to the gradient, or "
          "decoupled (AdamW, Keras)"),
    Hyper("amsgrad", False, "use the running maximum of the second moment (AMSGrad)"),
    Hyper("maximize", False, "ascend the objective (torch only)"),
    Hyper("decoupled_weight_decay", False, "AdamW's decoupled weight decay"),
    Hyper("convention", "torch", "whose update rule: 'torch', 'tf1', 'keras', 'optax' or "
          "'sklearn'"),
    Hyper("eps_root", 0.0, "optax's epsilon inside the square root ('optax' only)"),
)
_ADAM_TORCH_ORDER = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize",
                     "decoupled_weight_decay", "convention", "eps_root")


def _adam_states(group: Mapping[str, Any]) -> Tuple[str, ...]:
    if group["amsgrad"]:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    return ("exp_avg", "exp_avg_sq")


def _adam_step(state: Optional[Mapping[str, Any]]) -> int:
    return 1 if state is None else int(state["step"]) + 1


_ADAM_DOC = """Adam over a list of NumPy arrays, updated in place (one C call per step).

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

_ADAMW_DOC = """Adam with decoupled weight decay (``torch.optim.AdamW``: ``p *= 1 - lr*wd`` before
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

_ADAM_FUNCTIONAL_DOC = """One Adam (or AdamW) update of ``param``, ``exp_avg`` and ``exp_avg_sq`` in place.

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

_ADAM_TORCH_DOC = """``torch.optim.Adam`` running fusedopt's Adam kernel (see the module docstring).

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

_ADAMW_TORCH_DOC = """``torch.optim.AdamW`` (Adam with decoupled weight decay, default
    ``weight_decay=1e-2``) running fusedopt's kernel.  Same arguments as
    :class:`Adam` without ``decoupled_weight_decay`` (always True, as torch's AdamW).

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> w.grad = torch.zeros(2)
    >>> fusedopt.torch.AdamW([w], lr=0.1, weight_decay=0.5).step()
    >>> w.detach()
    tensor([0.9500, 0.9500])
    """

ADAM = register(Spec(
    name="Adam", hypers=_ADAM_HYPERS, roles=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    states=_adam_states, kernel=_core.adam, kernel_step=_adam_step,
    fixed={"decoupled_weight_decay": False}, torch_positional=_ADAM_TORCH_ORDER[:5],
    torch_order=_ADAM_TORCH_ORDER, sparse_alternative="torch.optim.SparseAdam",
    lazy_states=("max_exp_avg_sq",), functional="adam_step",
    doc=_ADAM_DOC, functional_doc=_ADAM_FUNCTIONAL_DOC, torch_doc=_ADAM_TORCH_DOC))

ADAMW = register(Spec(
    name="AdamW",
    hypers=tuple(Hyper("weight_decay", 1e-2, h.doc) if h.name == "weight_decay" else h
                 for h in _ADAM_HYPERS),
    roles=ADAM.roles, states=_adam_states, kernel=_core.adam, kernel_step=_adam_step,
    fixed={"decoupled_weight_decay": True}, torch_positional=_ADAM_TORCH_ORDER[:5],
    torch_order=_ADAM_TORCH_ORDER, sparse_alternative="torch.optim.SparseAdam",
    lazy_states=("max_exp_avg_sq",), doc=_ADAMW_DOC, torch_doc=_ADAMW_TORCH_DOC))

# Adam's torch drop-in has decoupled_weight_decay as an argument (torch.optim.Adam has).
TORCH["Adam"] = Spec(**{**ADAM.__dict__, "fixed": {}})


# ----------------------------------------------------------------------------- SGD

def _sgd_states(group: Mapping[str, Any]) -> Tuple[str, ...]:
    return ("momentum_buffer",) if group["momentum"] != 0 else ()


def _sgd_step(state: Optional[Mapping[str, Any]]) -> int:
    # torch: the first step with momentum (no buffer yet, or None) sets it to the gradient
    return 1 if state is None or state.get("momentum_buffer") is None else 2


_SGD_DOC = """Stochastic gradient descent with optional momentum / Nesterov, in place.

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

_SGD_FUNCTIONAL_DOC = """One SGD update of ``param`` (and ``momentum_buffer``) in place.

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

_SGD_TORCH_DOC = """``torch.optim.SGD`` running fusedopt's SGD kernel (see the module docstring).

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

SGD = register(Spec(
    name="SGD",
    hypers=(
        Hyper("lr", 1e-3, "learning rate (>= 0)"),
        Hyper("momentum", 0.0, "momentum factor (>= 0)"),
        Hyper("dampening", 0.0, "dampening of the momentum (torch only, in [0, 1])"),
        Hyper("nesterov", False, "Nesterov momentum"),
        Hyper("weight_decay", 0.0, "weight decay (>= 0): L2 added to the gradient; Keras' "
              "decoupled p -= p*wd*lr"),
        Hyper("maximize", False, "ascend the objective (torch only)"),
        Hyper("convention", "torch", "whose update rule: 'torch', 'tf1', 'keras', 'optax' "
              "or 'sklearn'"),
    ),
    roles=("momentum_buffer",), states=_sgd_states, kernel=_core.sgd, kernel_step=_sgd_step,
    torch_positional=("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    torch_order=("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
                 "convention"),
    torch_step_state=False, torch_flags=("foreach", "fused", "differentiable"),
    sparse_alternative="torch.optim.SGD",
    lazy_states=("momentum_buffer",),
    functional="sgd_step", doc=_SGD_DOC, functional_doc=_SGD_FUNCTIONAL_DOC, torch_doc=_SGD_TORCH_DOC))


# ----------------------------------------------------------------------------- Lion

_LION_DOC = """Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms") over a
    list of NumPy arrays, updated in place (one C call per step).

    torch.optim has no Lion: the default convention ("torch") is optax.lion's rule with
    torch-style arguments (``lr=1e-4, betas=(0.9, 0.99), weight_decay=0``; optax's default
    weight decay is 1e-3: pass it to reproduce ``optax.lion(lr)``); ``convention="keras"``
    is ``keras.optimizers.Lion``.  State per parameter: ``step`` and ``exp_avg``, in its
    dtype (see :func:`lion_step`).

    >>> import numpy as np, fusedopt
    >>> w = np.zeros(3, dtype=np.float32)
    >>> opt = fusedopt.Lion([w], lr=0.1)
    >>> opt.step([np.array([2.0, -0.5, 0.0], dtype=np.float32)])
    True
    >>> w
    array([-0.1,  0.1,  0. ], dtype=float32)
    """

_LION_FUNCTIONAL_DOC = """One Lion update of ``param`` and ``exp_avg`` in place.

    Per element, with ``convention="torch"`` or ``"optax"`` (``optax.lion``:
    ``scale_by_lion``, ``add_decayed_weights``, ``scale_by_learning_rate``)::

        c = (1 - b1)*g + b1*m;  u = sign(c) + wd*p;  p += (-lr)*u;  m = (1 - b2)*g + b2*m

    ``sign(0) = 0`` and ``sign(NaN) = NaN`` (``jnp.sign``).  ``convention="keras"``
    (``keras.optimizers.Lion``, its weight decay applied first as for every Keras
    optimizer)::

        p = p - (p*wd)*lr;  p = p - lr*sign(m*b1 + g*(1 - b1));  m = m*b2 + g*(1 - b2)

    with ``lr`` a float32 variable and ``1 - b`` computed in the parameter's dtype.
    Lion has no bias correction: there is no ``step`` argument.

    Args:
        param, grad, exp_avg: float32 or float64 arrays of one dtype and shape,
            C-contiguous, distinct; ``param`` and ``exp_avg`` writeable (``exp_avg``
            starts at 0).
        lr, betas, weight_decay: lr, wd >= 0; 0 <= beta < 1.
        convention: "torch", "optax" or "keras".
        n_threads: threads for this call.

    Raises:
        TypeError / ValueError naming the argument; no array is modified then.

    >>> import numpy as np, fusedopt
    >>> p = np.array([1.0, 2.0]); m = np.zeros(2)
    >>> fusedopt.lion_step(p, np.array([0.5, -1.0]), m, lr=0.1)
    >>> p
    array([0.9, 2.1])
    """

_LION_TORCH_DOC = """Lion for torch parameters, running fusedopt's Lion kernel.  torch.optim has no
    Lion: the rule is optax.lion's with torch-style arguments.

    Args:
        params: iterable of parameters (or named parameters) or of dicts (param groups).
        lr, betas, weight_decay: ``lr=1e-4, betas=(0.9, 0.99), weight_decay=0`` by
            default (``p -= lr*(sign(c) + weight_decay*p)``).
        convention: "torch" (default: optax's rule), "optax" or "keras" (see
            :func:`fusedopt.lion_step`).

    The state per parameter: ``step`` (float32 scalar tensor) and ``exp_avg``.

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> opt = fusedopt.torch.Lion([w], lr=0.1)
    >>> w.grad = torch.tensor([2.0, -0.5, 0.0])
    >>> opt.step()
    >>> w.detach()
    tensor([-0.1000,  0.1000,  0.0000])
    """

LION = register(Spec(
    name="Lion",
    hypers=(
        Hyper("lr", 1e-4, "learning rate (>= 0)"),
        Hyper("betas", (0.9, 0.99), "b1 interpolates the update's sign, b2 the momentum "
              "(0 <= beta < 1)"),
        Hyper("weight_decay", 0.0, "decoupled weight decay (>= 0): lr*wd*p"),
        Hyper("convention", "torch", "whose update rule: 'torch' (optax's), 'optax' or "
              "'keras'"),
    ),
    roles=("exp_avg",), states=lambda group: ("exp_avg",), kernel=_core.lion,
    kernel_step=_adam_step, torch_positional=("lr", "betas", "weight_decay"),
    functional="lion_step",
    doc=_LION_DOC, functional_doc=_LION_FUNCTIONAL_DOC, torch_doc=_LION_TORCH_DOC))


# ----------------------------------------------------------------------------- Adagrad

_ADAGRAD_DOC = """Adagrad (Duchi et al., 2011) over a list of NumPy arrays, updated in place (one C
    call per step).

    ``torch.optim.Adagrad`` semantics and defaults by default (``lr=1e-2``, the
    accumulator starts at ``initial_accumulator_value=0``, ``eps=1e-10`` outside the
    square root, ``lr_decay``, L2 weight decay, maximize); ``convention`` picks another
    framework's rule (see :func:`adagrad_step`): TF1, Keras and optax start the
    accumulator at 0.1, so pass ``initial_accumulator_value=0.1`` (and their ``eps``) to
    reproduce them.  State per parameter: ``step`` and ``sum``, in its dtype; ``sum``
    starts at its group's ``initial_accumulator_value``.

    >>> import numpy as np, fusedopt
    >>> w = np.zeros(3, dtype=np.float32)
    >>> opt = fusedopt.Adagrad([w], lr=0.1)
    >>> opt.step([np.array([2.0, -0.5, 0.0], dtype=np.float32)])
    True
    >>> w
    array([-0.1,  0.1,  0. ], dtype=float32)
    """

_ADAGRAD_FUNCTIONAL_DOC = """One Adagrad update of ``param`` and ``state_sum`` in place.

    Per element, with ``convention="torch"`` (``torch.optim.Adagrad``)::

        g = -g if maximize;  g += wd*p (L2);  clr = lr / (1 + (step - 1)*lr_decay)
        s = s + g*g;  p -= (clr*g) / (sqrt(s) + eps)

    ``"tf1"`` (``tf.compat.v1.train.AdagradOptimizer``, its ``ApplyAdagrad`` op) is the
    same with ``lr`` a float32 tensor and no epsilon (pass ``eps=0``: TF1 multiplies by
    ``rsqrt(s)``, which rounds within an ulp of the division);
    ``"keras"`` (``keras.optimizers.Adagrad``): ``p = p - (p*wd)*lr`` first, then
    ``s = s + g*g;  p = p - (lr*g) / sqrt(s + eps)``, ``lr`` a float32 variable;
    ``"optax"`` (``optax.adagrad``: ``scale_by_rss``, ``scale_by_learning_rate``)::

        s = g*g + s;  r = 1/sqrt(s + eps) if s > 0 else 0;  p += (-lr)*(g*r)

    The accumulator's initial value is the caller's (``state_sum`` as given: torch starts
    at 0, TF1, Keras and optax at 0.1).

    Args:
        param, grad, state_sum: float32 or float64 arrays of one dtype and shape,
            C-contiguous, distinct; ``param`` and ``state_sum`` writeable.
        step: the 1-based index of this update (torch's ``state["step"]`` after its
            increment); needed only with ``lr_decay``.
        lr, lr_decay, weight_decay, eps: as torch (all >= 0); lr_decay and maximize are
            torch's only; weight decay is torch's L2 or Keras' decoupled decay.
        convention: "torch", "tf1", "keras" or "optax".
        n_threads: threads for this call.

    Raises:
        TypeError / ValueError naming the argument; no array is modified then.

    >>> import numpy as np, fusedopt
    >>> p = np.array([1.0, 2.0]); s = np.zeros(2)
    >>> fusedopt.adagrad_step(p, np.array([0.5, -1.0]), s, lr=0.1)
    >>> p
    array([0.9, 2.1])
    """

_ADAGRAD_TORCH_DOC = """``torch.optim.Adagrad`` running fusedopt's Adagrad kernel (see the module docstring).

    Args:
        params: iterable of parameters (or named parameters) or of dicts (param groups).
        lr, lr_decay, weight_decay, initial_accumulator_value, eps, maximize: as
            ``torch.optim.Adagrad`` (same defaults: ``lr=1e-2``, ``eps=1e-10``).
        foreach, fused, differentiable: accepted for signature compatibility; only their
            default values (None/False) are supported.
        convention: "torch" (default), "tf1", "keras" or "optax" (see
            :func:`fusedopt.adagrad_step`).

    The state is torch's, created for every parameter at construction as torch does:
    ``step`` (float32 scalar tensor) and ``sum`` (at ``initial_accumulator_value``).

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> opt = fusedopt.torch.Adagrad([w], lr=0.1)
    >>> w.grad = torch.tensor([2.0, -0.5, 0.0])
    >>> opt.step()
    >>> w.detach()
    tensor([-0.1000,  0.1000,  0.0000])
    """

ADAGRAD = register(Spec(
    name="Adagrad",
    hypers=(
        Hyper("lr", 1e-2, "learning rate (>= 0)"),
        Hyper("lr_decay", 0.0, "learning rate decay (>= 0): lr / (1 + (step-1)*lr_decay) "
              "(torch only)"),
        Hyper("weight_decay", 0.0, "weight decay (>= 0): L2 added to the gradient; Keras' "
              "decoupled p -= p*wd*lr"),
        Hyper("initial_accumulator_value", 0.0, "the sum of squares' initial value (>= 0; "
              "TF1, Keras and optax use 0.1)"),
        Hyper("eps", 1e-10, "term added to the denominator (>= 0)"),
        Hyper("maximize", False, "ascend the objective (torch only)"),
        Hyper("convention", "torch", "whose update rule: 'torch', 'tf1', 'keras' or "
              "'optax'"),
    ),
    roles=("sum",), states=lambda group: ("sum",), kernel=_core.adagrad,
    kernel_step=_adam_step,
    torch_positional=("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps",
                      "foreach"),
    torch_flags=("foreach", "fused", "differentiable"),
    initial={"sum": "initial_accumulator_value"},
    torch_eager_state=True, torch_initial_from_defaults=True,
    sparse_alternative="torch.optim.Adagrad",
    functional="adagrad_step",
    doc=_ADAGRAD_DOC, functional_doc=_ADAGRAD_FUNCTIONAL_DOC, torch_doc=_ADAGRAD_TORCH_DOC))


# ----------------------------------------------------------------------------- RMSprop

def _rmsprop_states(group: Mapping[str, Any]) -> Tuple[str, ...]:
    return ("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ()) + \
        (("grad_avg",) if group["centered"] else ())


_RMSPROP_DOC = """RMSprop (Hinton, lecture 6e; centered: Graves, 2013) over a list of NumPy arrays,
    updated in place (one C call per step).

    ``torch.optim.RMSprop`` semantics and defaults by default (``lr=1e-2, alpha=0.99,
    eps=1e-8`` outside the square root, the learning rate applied after the momentum
    buffer, L2 weight decay, maximize); ``convention`` picks another framework's rule
    (see :func:`rmsprop_step`): TF1 starts the square average at 1, so pass
    ``initial_square_avg=1.0`` (and TF1's ``alpha=0.9, eps=1e-10``) to reproduce it.
    State per parameter: ``step``, ``square_avg`` (at its group's ``initial_square_avg``),
    ``momentum_buffer`` with momentum, ``grad_avg`` when centered; in its dtype.

    >>> import numpy as np, fusedopt
    >>> w = np.zeros(2)
    >>> opt = fusedopt.RMSprop([w], lr=0.01, alpha=0.75, eps=0.0)
    >>> opt.step([np.array([2.0, -0.5])])
    True
    >>> w
    array([-0.02,  0.02])
    """

_RMSPROP_FUNCTIONAL_DOC = """One RMSprop update of ``param`` and its states in place.

    Per element, with ``convention="torch"`` (``torch.optim.RMSprop``)::

        g = -g if maximize;  g += wd*p (L2)
        v = v*alpha + (1 - alpha)*g*g;  ga = lerp(ga, g, 1 - alpha) (centered)
        d = sqrt(v - ga*ga if centered else v) + eps
        b = b*momentum + g/d;  p -= lr*b      (momentum > 0; else p -= lr*g/d)

    ``"tf1"`` (``tf.compat.v1.train.RMSPropOptimizer``, its ``ApplyRMSProp`` kernels:
    ``v += (g*g - v)*(1 - alpha)``, ``ga += (g - ga)*(1 - alpha)``, all scalars float32
    tensors), ``"keras"`` (``keras.optimizers.RMSprop``: ``v = alpha*v + (1 - alpha)*g*g``,
    ``p = p - (p*wd)*lr`` first) and ``"optax"`` (``optax.rmsprop``: ``scale_by_rms`` or
    ``scale_by_stddev``, then ``trace``) put eps inside the square root and lr inside
    the buffer::

        i = lr*g / sqrt((v - ga*ga if centered else v) + eps)
        b = b*momentum + i;  p -= b            (momentum > 0; else p -= i)

    The square average's initial value is the caller's (``square_avg`` as given: TF1
    starts at 1, the others at 0); optax's ``nesterov``, ``bias_correction`` and
    ``eps_in_sqrt=False`` are not offered.

    Args:
        param, grad, square_avg: float32 or float64 arrays of one dtype and shape,
            C-contiguous, distinct; all but ``grad`` writeable.
        momentum_buffer: needed with ``momentum > 0`` (like param, initially zeros).
        grad_avg: needed with ``centered=True`` (like param, initially zeros).
        lr, eps, weight_decay, momentum: as torch (all >= 0); ``0 <= alpha < 1``;
            maximize is torch's only; weight decay is torch's L2 or Keras' decoupled decay.
        convention: "torch", "tf1", "keras" or "optax".
        n_threads: threads for this call.

    Raises:
        TypeError / ValueError naming the argument; no array is modified then.

    >>> import numpy as np, fusedopt
    >>> p = np.array([1.0, 2.0]); v = np.zeros(2)
    >>> fusedopt.rmsprop_step(p, np.array([0.5, -1.0]), v, lr=0.01, alpha=0.75, eps=0.0)
    >>> p
    array([0.98, 2.02])
    """

_RMSPROP_TORCH_DOC = """``torch.optim.RMSprop`` running fusedopt's RMSprop kernel (see the module docstring).

    Args:
        params: iterable of parameters (or named parameters) or of dicts (param groups).
        lr, alpha, eps, weight_decay, momentum, centered, maximize: as
            ``torch.optim.RMSprop`` (same defaults: ``lr=1e-2``, ``alpha=0.99``,
            ``eps=1e-8``).
        capturable, foreach, differentiable: accepted for signature compatibility; only
            their default values (False/None) are supported.
        initial_square_avg: the square average's initial value (torch: 0; TF1: 1).
        convention: "torch" (default), "tf1", "keras" or "optax" (see
            :func:`fusedopt.rmsprop_step`).

    The state per parameter is torch's: ``step`` (float32 scalar tensor),
    ``square_avg``, ``momentum_buffer`` with momentum and ``grad_avg`` when centered.

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> opt = fusedopt.torch.RMSprop([w], lr=0.01, alpha=0.75, eps=0.0)
    >>> w.grad = torch.tensor([2.0, -0.5])
    >>> opt.step()
    >>> w.detach()
    tensor([-0.0200,  0.0200])
    """

RMSPROP = register(Spec(
    name="RMSprop",
    hypers=(
        Hyper("lr", 1e-2, "learning rate (>= 0)"),
        Hyper("alpha", 0.99, "smoothing constant of the square average (0 <= alpha < 1; "
              "TF1's and Keras' rho, optax's decay)"),
        Hyper("eps", 1e-8, "term added to the denominator (>= 0)"),
        Hyper("weight_decay", 0.0, "weight decay (>= 0): L2 added to the gradient; Keras' "
              "decoupled p -= p*wd*lr"),
        Hyper("momentum", 0.0, "momentum factor (>= 0)"),
        Hyper("centered", False, "normalise by the estimated variance of the gradient"),
        Hyper("maximize", False, "ascend the objective (torch only)"),
        Hyper("initial_square_avg", 0.0, "the square average's initial value (>= 0; TF1 "
              "uses 1.0)"),
        Hyper("convention", "torch", "whose update rule: 'torch', 'tf1', 'keras' or "
              "'optax'"),
    ),
    roles=("square_avg", "momentum_buffer", "grad_avg"), states=_rmsprop_states,
    kernel=_core.rmsprop, kernel_step=_adam_step,
    torch_positional=("lr", "alpha", "eps", "weight_decay", "momentum", "centered",
                      "capturable", "foreach", "maximize", "differentiable"),
    torch_flags=("capturable", "foreach", "differentiable"),
    lazy_states=("momentum_buffer", "grad_avg"),
    initial={"square_avg": "initial_square_avg"}, sparse_alternative="torch.optim.Adagrad",
    functional="rmsprop_step",
    doc=_RMSPROP_DOC, functional_doc=_RMSPROP_FUNCTIONAL_DOC, torch_doc=_RMSPROP_TORCH_DOC))


# ----------------------------------------------------------------------------- Adafactor

def _adafactor_shape(group: Mapping[str, Any], name: str,
                     shape: Tuple[int, ...]) -> Optional[Tuple[int, ...]]:
    """Adafactor's statistics: a factored tensor (torch and Keras: two or more dimensions,
    over the last two; optax: its two largest axes a < b, when the second largest is at
    least 128) keeps row_var (its shape with dimension b 1) and col_var (dimension a 1);
    any other keeps a full variance."""
    f = _core.adafactor_factoring(tuple(shape), str(group.get("convention", "torch")))
    if f is not None:
        a, b = f[0], f[1]
        if name == "row_var":
            return tuple(1 if i == b else n for i, n in enumerate(shape))
        if name == "col_var":
            return tuple(1 if i == a else n for i, n in enumerate(shape))
        return None
    return shape if name == "variance" else None


_ADAFACTOR_DOC = """Adafactor (Shazeer & Stern, 2018) over a list of NumPy arrays, updated in place (one
    C call per step).

    ``torch.optim.Adafactor``'s rule and defaults (``lr=1e-2, beta2_decay=-0.8,
    eps=(None, 1e-3), d=1.0, weight_decay=0``; see :func:`adafactor_step`): the step size
    is relative, ``min(lr, 1/sqrt(t))`` times the parameter's RMS (at least ``eps[1]``),
    and the update is clipped to RMS ``d``; ``convention="keras"`` is
    ``keras.optimizers.Adafactor``'s rule (pass its ``lr=1e-3, eps=(1e-30, 1e-3)``),
    ``convention="optax"`` ``optax.adafactor``'s (pass ``eps=(1e-30, 1e-3)``; it factors
    a parameter over its two largest axes when the second is at least 128).
    A parameter of two or more dimensions keeps
    factored statistics of its last two: ``row_var`` (its shape with the last dimension
    1) and ``col_var`` (the second to last 1), so its state is about ``R + C`` numbers
    per ``R x C`` matrix instead of ``R*C``; any other parameter keeps a ``variance``
    like it.  State per parameter: ``step`` and those, in its dtype.

    >>> import numpy as np, fusedopt
    >>> w = np.ones((2, 3), dtype=np.float32)
    >>> opt = fusedopt.Adafactor([w], lr=0.1)
    >>> opt.step([np.full((2, 3), 0.5, dtype=np.float32)])
    True
    >>> w
    array([[0.9, 0.9, 0.9],
           [0.9, 0.9, 0.9]], dtype=float32)
    >>> sorted(opt.state[0])
    ['col_var', 'row_var', 'step']
    """

_ADAFACTOR_FUNCTIONAL_DOC = """One Adafactor update of ``param`` and its statistics in place.

    With ``convention="torch"`` (``torch.optim.Adafactor``, its
    ``_single_tensor_adafactor``), at step ``t`` (Python floats: ``w = t**beta2_decay``,
    ``rho = min(lr, 1/t**0.5)``, ``eps1 = eps[0]`` or the dtype's machine epsilon)::

        g = -g if maximize
        alpha = max(eps[1], ||p|| / sqrt(p.size)) * rho     (before the decay)
        p = p * (1 - lr*weight_decay)                        (weight_decay != 0)
        factored (p.ndim >= 2, over the last two axes, R x C):
            row_var = lerp(row_var, ||g||^2 over each row / C, w)
            col_var = lerp(col_var, ||g||^2 over each column / R, w)
            V = (row_var * col_var) / max(mean(row_var over the rows), eps1)
        else:
            variance = lerp(variance, g*g, w);  V = variance
        U = (1/sqrt(max(V, eps1*eps1))) * g
        p = p + (-alpha / max(1, ||U|| / (sqrt(U.size)*d))) * U

    With ``convention="keras"`` (``keras.optimizers.Adafactor.update_step``, every
    scalar in the dtype, ``lr`` a float32 variable; the same factoring and the same
    statistics' layout)::

        p = p - (p*wd)*lr                                    (its weight decay, first)
        rho = min(lr, 1/sqrt(t));  alpha = max(eps2, rms(p)) * rho
        b = 1 - t**beta2_decay;  G = g*g + eps1
        factored:  row_var = b*row_var + (1 - b)*mean(G over each row)
                   col_var = b*col_var + (1 - b)*mean(G over each column)
                   V = (row_var / mean(row_var)) * col_var
        else:      variance = b*variance + (1 - b)*G;  V = variance
        U = g / sqrt(V);  p = p - alpha * (U / max(1, rms(U)/d))

    With ``convention="optax"`` (``optax.adafactor``; pass its ``eps=(1e-30, 1e-3)``:
    ``beta2_decay = -decay_rate``, ``d`` its clipping_threshold, ``weight_decay`` its
    weight_decay_rate; its other options at their defaults)::

        factored when the second largest dimension is >= 128, over the two largest
        axes a < b (numpy.argsort(shape)'s last two): row_var the means over b (its
        shape with dimension b 1), col_var over a (dimension a 1)
        b2 = 1 - t**beta2_decay (float32);  G = g*g + eps1
        factored:  row_var = b2*row_var + (1 - b2)*mean(G over b); col_var likewise
                   U = (g*f1)*f2, f1 = (s/mean(s))**-0.5 for s the statistic over the
                   largest axis (its mean over the other), f2 = (the other)**-0.5
        else:      variance = b2*variance + (1 - b2)*G;  U = g*variance**-0.5
        U = ((U / max(1, rms(U)/d)) * lr) * max(rms(p), eps2)
        p = p - (U + weight_decay*p)                 (lr is the step: no relative step)

    The norms and means are summed in double in a fixed order (the same for every
    thread count), and rounded to the dtype where the framework computes them in it.

    Args:
        param, grad: float32 or float64 arrays of one dtype and shape, C-contiguous,
            distinct; ``param`` writeable.
        row_var, col_var: for a factored ``param`` (``param.ndim >= 2``; optax: see
            above): its shape with the last dimension 1, and with the second to last 1
            (optax: dimensions b and a; initially zeros).
        variance: for any other ``param``: like it (initially zeros).
        step: the 1-based index of this update (torch's ``state["step"]`` after its
            increment).
        lr (>= 0, the relative step's cap), beta2_decay (<= 0), eps (a pair ``(eps1 or
            None, eps2)``, each >= 0), d (>= 1, the update's RMS threshold),
            weight_decay (>= 0, decoupled: ``p *= 1 - lr*wd``), maximize: as torch.
        convention: "torch", "keras" or "optax" (``maximize`` is torch's only).
        n_threads: threads for this call.

    Raises:
        TypeError / ValueError naming the argument (a factored parameter given a
        ``variance``, a vector given ``row_var``, a statistic of the wrong shape...); no
        array is modified then.

    >>> import numpy as np, fusedopt
    >>> p = np.array([3.0, 4.0]); v = np.zeros(2)
    >>> fusedopt.adafactor_step(p, np.array([1.0, -1.0]), variance=v, step=1, lr=0.1)
    >>> p
    array([2.64644661, 4.35355339])
    """

_ADAFACTOR_TORCH_DOC = """``torch.optim.Adafactor`` running fusedopt's Adafactor kernel (see the module
    docstring).

    Args:
        params: iterable of parameters (or named parameters) or of dicts (param groups).
        lr, beta2_decay, eps, d, weight_decay, maximize: as ``torch.optim.Adafactor``
            (same defaults: ``lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0``).
        foreach: accepted for signature compatibility; only its default (None) is
            supported.
        convention: "torch" (default), "keras" or "optax" (see
            :func:`fusedopt.adafactor_step`).

    The state per parameter is torch's: ``step`` (float32 scalar tensor) and, for a
    parameter of two or more dimensions, ``row_var`` and ``col_var`` (factored over its
    last two; with convention="optax", optax's factoring), else ``variance``.

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.ones(2, 3))
    >>> opt = fusedopt.torch.Adafactor([w], lr=0.1)
    >>> w.grad = torch.full((2, 3), 0.5)
    >>> opt.step()
    >>> w.detach()
    tensor([[0.9000, 0.9000, 0.9000],
            [0.9000, 0.9000, 0.9000]])
    """

ADAFACTOR = register(Spec(
    name="Adafactor",
    hypers=(
        Hyper("lr", 1e-2, "learning rate (>= 0): the cap of the relative step "
              "min(lr, 1/sqrt(t))"),
        Hyper("beta2_decay", -0.8, "the second moment's decay: weight t**beta2_decay "
              "(<= 0)"),
        Hyper("eps", (None, 1e-3), "(eps1, eps2): eps1 bounds the variance below (None: "
              "the dtype's machine epsilon), eps2 the parameter's RMS (each >= 0)"),
        Hyper("d", 1.0, "clipping threshold of the update's RMS (>= 1)"),
        Hyper("weight_decay", 0.0, "decoupled weight decay (>= 0): p *= 1 - lr*wd"),
        Hyper("maximize", False, "ascend the objective"),
        Hyper("convention", "torch", "whose update rule: 'torch', 'keras' or 'optax'"),
    ),
    roles=("row_var", "col_var", "variance"),
    states=lambda group: ("row_var", "col_var", "variance"),
    state_shape=_adafactor_shape,
    kernel=_core.adafactor, kernel_step=_adam_step,
    torch_positional=("lr", "beta2_decay", "eps", "d", "weight_decay"),
    torch_flags=("foreach",),
    sparse_alternative="torch.optim.Adam",
    functional="adafactor_step",
    doc=_ADAFACTOR_DOC, functional_doc=_ADAFACTOR_FUNCTIONAL_DOC,
    torch_doc=_ADAFACTOR_TORCH_DOC))


# ----------------------------------------------------------------------------- LAMB

_LAMB_DOC = """LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning") over a list of
    NumPy arrays, updated in place (one C call per step; each array its own trust ratio).

    torch.optim has no LAMB: the default convention ("torch") is optax.lamb's rule with
    torch-style arguments (``lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0``:
    optax's defaults); ``convention="keras"`` is ``keras.optimizers.Lamb`` (pass its
    ``eps=1e-7``).  State per parameter: ``step``, ``exp_avg`` and ``exp_avg_sq``, in its
    dtype (see :func:`lamb_step`).

    >>> import numpy as np, fusedopt
    >>> w = np.array([3.0, 4.0], dtype=np.float32)
    >>> opt = fusedopt.LAMB([w], lr=0.1)
    >>> opt.step([np.array([1.0, -1.0], dtype=np.float32)])
    True
    >>> w          # u = (1, -1), ||w|| = 5, ||u|| = sqrt(2): w -= 0.1*(5/sqrt(2))*u
    array([2.6464467, 4.3535533], dtype=float32)
    """

_LAMB_FUNCTIONAL_DOC = """One LAMB update of ``param``, ``exp_avg`` and ``exp_avg_sq`` in
    place: Adam's direction scaled per tensor by the trust ratio ``||p|| / ||u||``.

    With ``convention="torch"`` or ``"optax"`` (``optax.lamb``: ``scale_by_adam``,
    ``add_decayed_weights``, ``scale_by_trust_ratio``, ``scale_by_learning_rate``)::

        m = (1 - b1)*g + b1*m;  v = (1 - b2)*(g*g) + b2*v
        u = (m/(1 - b1**t)) / (sqrt(v/(1 - b2**t)) + eps) + wd*p
        r = ||p|| / ||u||   (1 when either norm is 0);   p = p + (u*r)*(-lr)

    (the weight decay inside the trust ratio's norm).  ``convention="keras"``
    (``keras.optimizers.Lamb``, its weight decay applied first as for every Keras
    optimizer)::

        p = p - (p*wd)*lr;  m = m + (g - m)*(1 - b1);  v = v + (g*g - v)*(1 - b2)
        u = (m/(1 - b1**t)) / (sqrt(v/(1 - b2**t)) + eps)
        r = ||p|| / ||u|| if both are > 0 else 1;   p = p - (r*lr)*u

    with ``lr`` a float32 variable and ``b**t`` a power in the parameter's dtype.  The
    norms are double sums in a fixed order, rounded to the dtype: the same for every
    thread count (the frameworks' are reductions in the dtype, a few ulps off).

    Args:
        param, grad, exp_avg, exp_avg_sq: float32 or float64 arrays of one dtype and
            shape, C-contiguous, distinct; all but ``grad`` writeable (the moments start
            at 0).
        step: the 1-based step (bias corrections).
        lr, betas, eps, weight_decay: lr, eps, wd >= 0; 0 <= beta < 1.
        convention: "torch", "optax" or "keras".
        n_threads: threads for this call.

    Raises:
        TypeError / ValueError naming the argument; no array is modified then.

    >>> import numpy as np, fusedopt
    >>> p = np.array([3.0, 4.0]); m = np.zeros(2); v = np.zeros(2)
    >>> fusedopt.lamb_step(p, np.array([1.0, -1.0]), m, v, step=1, lr=0.1)
    >>> p.round(6)
    array([2.646447, 4.353553])
    """

_LAMB_TORCH_DOC = """LAMB for torch parameters, running fusedopt's LAMB kernel.  torch.optim has no
    LAMB: the rule is optax.lamb's with torch-style arguments.

    Args:
        params: iterable of parameters (or named parameters) or of dicts (param groups).
        lr, betas, eps, weight_decay: ``lr=1e-3, betas=(0.9, 0.999), eps=1e-6,
            weight_decay=0`` by default (optax's; its weight decay is inside the trust
            ratio).
        convention: "torch" (default: optax's rule), "optax" or "keras" (see
            :func:`fusedopt.lamb_step`).

    The state per parameter: ``step`` (float32 scalar tensor), ``exp_avg`` and
    ``exp_avg_sq``, as torch.optim.Adam's.

    >>> import torch, fusedopt.torch
    >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    >>> opt = fusedopt.torch.LAMB([w], lr=0.1)
    >>> w.grad = torch.tensor([1.0, -1.0])
    >>> opt.step()
    >>> w.detach()
    tensor([2.6464, 4.3536])
    """

LAMB = register(Spec(
    name="LAMB",
    hypers=(
        Hyper("lr", 1e-3, "learning rate (>= 0)"),
        Hyper("betas", (0.9, 0.999), "the moments' decay rates (0 <= beta < 1)"),
        Hyper("eps", 1e-6, "added to the denominator's square root (>= 0)"),
        Hyper("weight_decay", 0.0, "weight decay (>= 0): optax adds wd*p to the update "
              "before the trust ratio, Keras decays p first"),
        Hyper("convention", "torch", "whose update rule: 'torch' (optax's), 'optax' or "
              "'keras'"),
    ),
    roles=("exp_avg", "exp_avg_sq"), states=lambda group: ("exp_avg", "exp_avg_sq"),
    kernel=_core.lamb, kernel_step=_adam_step,
    torch_positional=("lr", "betas", "eps", "weight_decay"), functional="lamb_step",
    doc=_LAMB_DOC, functional_doc=_LAMB_FUNCTIONAL_DOC, torch_doc=_LAMB_TORCH_DOC))
