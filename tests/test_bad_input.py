"""Bad input, exhaustively: every public function and class, every kind of defect.

Each bad call must raise TypeError or ValueError whose message names the argument and says
what was expected, and leave every array bit-identical (compared byte for byte, including
the bases of views, optimizer state and the arrays of a state dict passed in).

The matrices here are generated: each array argument of each function (a "slot") crossed
with each defect (wrong type, wrong dtype, wrong shape, wrong layout, read-only output,
aliasing), each hyper-parameter crossed with each kind of bad value, and the classes'
constructors, ``step`` (including a failure on the 5th tensor of a multi-tensor step),
``load_state_dict`` and ``fusedopt.load_optimizer``.  tests/test_errors.py keeps the
hand-picked cases it started with; this file is the systematic product.

Valid edge inputs (empty and 0-d arrays, read-only inputs, inputs aliasing each other,
labels/weights of other dtypes or layouts, which are converted) are checked to work and to
match ``fusedopt.reference``.

Known gaps of the core are ``xfail(strict=True)`` with the reason: they document what is
still wrong and start failing (XPASS) once it is fixed, so that the marker gets removed.
"""
import copy
import math
import re

import numpy as np
import pytest

import fusedopt
from fusedopt import reference as R


# ----------------------------------------------------------------------------- snapshots

def _is_torch(obj):
    return type(obj).__module__.startswith("torch") and hasattr(obj, "numpy")


def _collect(obj, out):
    """Every ndarray reachable from obj (containers, optimizers, torch tensors), plus the
    bases of views (a write beside a strided view shows up in its base)."""
    if isinstance(obj, np.ndarray):
        while isinstance(obj, np.ndarray):
            out.append(obj)
            obj = obj.base
    elif isinstance(obj, dict):
        for v in obj.values():
            _collect(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _collect(v, out)
    elif isinstance(obj, fusedopt._optim.Optimizer):
        _collect(obj.params, out)
        _collect(obj.state, out)
    elif _is_torch(obj):
        _collect(obj.numpy(), out)


def _plain(obj):
    """The non-array part of an optimizer (hyper-parameters, step counts, state layout)."""
    return (copy.deepcopy(obj.param_groups),
            {i: {k: (v.shape, v.dtype) if isinstance(v, np.ndarray) else v
                 for k, v in s.items()} for i, s in obj.state.items()},
            obj.skipped_steps, [(p.shape, p.dtype) for p in obj.params])


class Snapshot:
    """Bytes, shape and dtype of every array reachable from the given objects."""

    def __init__(self, *objs):
        arrays = []
        _collect(objs, arrays)
        seen, self.saved = set(), []
        for a in arrays:
            if id(a) not in seen:
                seen.add(id(a))
                self.saved.append((a, a.shape, a.dtype, a.tobytes()))
        self.opts = [(o, _plain(o)) for o in objs if isinstance(o, fusedopt._optim.Optimizer)]

    def check(self):
        for k, (a, shape, dtype, data) in enumerate(self.saved):
            assert a.shape == shape and a.dtype == dtype, f"array {k} changed shape or dtype"
            assert a.tobytes() == data, f"array {k} (shape {shape}) changed"
        for o, plain in self.opts:
            assert _plain(o) == plain, "optimizer hyper-parameters or state layout changed"


def expect_error(call, exc, pattern, *objs):
    """call() raises exc with a message matching pattern; no array of objs changes."""
    snap = Snapshot(*objs)
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert re.search(pattern, msg), f"message {msg!r} does not match {pattern!r}"
    snap.check()


def both_named(a, b):
    """A 'share memory' message naming both arguments (in either order)."""
    return rf"(?=.*(?<![\w\[]){re.escape(a)}(?![\w\[]))(?=.*(?<![\w\[]){re.escape(b)}(?![\w\[]))" \
           r".*share memory"


# ----------------------------------------------------------------------------- specs

class Slot:
    """One array argument: its name in messages, its role, and the argument whose dtype and
    shape it must have (None for the one that defines them)."""

    def __init__(self, name, role, ref=None, optional=False):
        self.name, self.role, self.ref, self.optional = name, role, ref, optional

    @property
    def written(self):
        return self.role in ("out", "inout")

    @property
    def strict(self):
        """Passed to C as it is: type, dtype and layout are checked, never converted."""
        return self.role in ("in", "out", "inout")


class Spec:
    def __init__(self, name, slots, call):
        self.name, self.slots, self.call = name, slots, call

    def slot(self, name):
        return next(s for s in self.slots if s.name == name)


def _bce(fn):
    def call(a):
        kw = {k: a[k] for k in ("weight", "pos_weight", "out") if k in a}
        return fn(a["logits"], a["labels"], **kw)
    return call


def _reg(fn):
    def call(a):
        kw = {k: a[k] for k in ("weight", "out") if k in a}
        return fn(a["pred"], a["target"], **kw)
    return call


def _adam(a):
    fusedopt.adam_step(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], step=3,
                       lr=0.1, amsgrad=True, max_exp_avg_sq=a["max_exp_avg_sq"])


def _sgd(a):
    fusedopt.sgd_step(a["param"], a["grad"], a["momentum_buffer"], lr=0.1, momentum=0.9,
                      step=2)


_BCE_SLOTS = [Slot("logits", "in"), Slot("labels", "labels", "logits"),
              Slot("weight", "weight", "logits", True),
              Slot("pos_weight", "pos_weight", "logits", True)]
_REG_SLOTS = [Slot("pred", "in"), Slot("target", "in", "pred"),
              Slot("weight", "weight", "pred", True)]

SPECS = [
    Spec("sigmoid_cross_entropy_and_grad",
         _BCE_SLOTS + [Slot("out", "out", "logits", True)],
         _bce(fusedopt.sigmoid_cross_entropy_and_grad)),
    Spec("sigmoid_cross_entropy", _BCE_SLOTS, _bce(fusedopt.sigmoid_cross_entropy)),
    Spec("l1_loss_and_grad", _REG_SLOTS + [Slot("out", "out", "pred", True)],
         _reg(fusedopt.l1_loss_and_grad)),
    Spec("l1_loss", _REG_SLOTS, _reg(fusedopt.l1_loss)),
    Spec("l2_loss_and_grad", _REG_SLOTS + [Slot("out", "out", "pred", True)],
         _reg(fusedopt.l2_loss_and_grad)),
    Spec("l2_loss", _REG_SLOTS, _reg(fusedopt.l2_loss)),
    Spec("adam_step", [Slot("param", "inout"), Slot("grad", "in", "param"),
                       Slot("exp_avg", "inout", "param"), Slot("exp_avg_sq", "inout", "param"),
                       Slot("max_exp_avg_sq", "inout", "param")], _adam),
    Spec("sgd_step", [Slot("param", "inout"), Slot("grad", "in", "param"),
                      Slot("momentum_buffer", "inout", "param")], _sgd),
]
SPEC = {s.name: s for s in SPECS}

# Base arrays: a 1-D float32 case (where (N, 1) vs (N,) is the trap) and a 2-D float64 one.
BASES = {"f32-5": (np.float32, (5,)), "f64-3x4": (np.float64, (3, 4))}
OTHER_FLOAT = {np.float32: np.float64, np.float64: np.float32}


def make_arrays(spec, dtype, shape, seed=0):
    """Valid arguments for spec: every optional array present (weights full-size, so that
    an output can alias them; pos_weight along the last axis)."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in spec.slots:
        if s.role == "labels":
            a = (rng.random(shape) > 0.5).astype(dtype)
        elif s.role == "pos_weight":
            a = rng.uniform(0.5, 2, shape[-1:]).astype(dtype)
        elif s.role == "weight":
            a = rng.uniform(0.5, 2, shape).astype(dtype)
        elif s.name in ("exp_avg_sq", "max_exp_avg_sq"):
            a = rng.uniform(0, 1, shape).astype(dtype)
        elif s.role == "out":
            a = np.full(shape, 7.0, dtype)
        else:
            a = rng.standard_normal(shape).astype(dtype)
        out[s.name] = a
    return out


def _type_name(value):
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


# ----------------------------------------------------------------------------- defects

TYPE_DEFECTS = ["list", "None", "float", "np_scalar", "torch"]
DTYPE_DEFECTS = ["int32", "int64", "uint8", "bool", "float16", "complex64", "object"]
SHAPE_DEFECTS = ["add_axis", "prepend_axis", "drop_one", "flat", "transposed", "0d", "empty"]
LAYOUT_DEFECTS = ["strided", "negative", "fortran"]


def defect_shape(defect, shape):
    if defect == "add_axis":
        return shape + (1,)
    if defect == "prepend_axis":
        return (1,) + shape
    if defect == "drop_one":
        return shape[:-1] + (shape[-1] - 1,)
    if defect == "flat":
        return (int(np.prod(shape)),) if len(shape) > 1 else None
    if defect == "transposed":
        return shape[::-1] if len(shape) > 1 and shape != shape[::-1] else None
    if defect == "0d":
        return ()
    if defect == "empty":
        return (0,)
    raise AssertionError(defect)


def apply_defect(defect, arr):
    """The bad value that replaces arr (a valid argument) for a type/dtype/layout defect."""
    if defect == "list":
        return arr.tolist()
    if defect == "None":
        return None
    if defect == "float":
        return 1.0
    if defect == "np_scalar":
        return arr.dtype.type(1.0)
    if defect == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(arr.copy())
    if defect in DTYPE_DEFECTS:
        return arr.astype(np.dtype(defect))
    if defect == "other_float":
        return arr.astype(OTHER_FLOAT[arr.dtype.type])
    if defect == "strided":
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype)
        big[..., ::2] = arr
        return big[..., ::2]
    if defect == "negative":
        return arr[..., ::-1].copy()[..., ::-1]
    if defect == "fortran":
        return np.asfortranarray(arr)
    if defect == "readonly":
        arr = arr.copy()
        arr.setflags(write=False)
        return arr
    raise AssertionError(defect)


def weight_shape_error(slot, new, shape):
    """What weight/pos_weight of shape `new` gives against logits of `shape` (None: valid)."""
    n = re.escape(slot.name)
    try:
        full = np.broadcast_shapes(new, shape)
    except ValueError:
        return ValueError, rf"{n} of shape {re.escape(str(new))} does not broadcast"
    if full != shape:
        return ValueError, rf"{n} of shape {re.escape(str(new))} would broadcast .* to " \
                           rf"{re.escape(str(full))}; it must broadcast to"
    size = int(np.prod(new))
    if slot.role == "pos_weight" and size != 1 and not (new and new[-1] == shape[-1]
                                                       and size == shape[-1]):
        return ValueError, r"pos_weight must be a scalar or a vector along the last axis"
    return None


def expectation(spec, slot, defect, base):
    """(exception, message pattern) that the defect must produce, or None when the value is
    not an error for this argument (converted, broadcast, or optional)."""
    dtype, shape = BASES[base]
    n = re.escape(slot.name)
    if defect in TYPE_DEFECTS:
        if slot.strict:
            if defect == "None" and slot.optional:
                return None
            if defect == "None" and slot.name == "max_exp_avg_sq":
                return ValueError, r"amsgrad=True needs max_exp_avg_sq \(an array like param"
            if defect == "None" and slot.name == "momentum_buffer":
                return ValueError, r"momentum != 0 needs momentum_buffer \(an array like param"
            got = {"list": "builtins.list", "None": "builtins.NoneType",
                   "float": "builtins.float", "np_scalar": r"numpy\.float(32|64)",
                   "torch": r"torch\.Tensor"}[defect]
            return TypeError, rf"^{n} must be a numpy\.ndarray of float32 or float64, got {got}$"
        if slot.role == "labels":
            got = {"list": "list", "None": "NoneType", "float": "float",
                   "np_scalar": "float(32|64)", "torch": "Tensor"}[defect]
            return TypeError, rf"^labels must be a numpy\.ndarray, got {got}$"
        # weight / pos_weight: None, numbers (and numpy scalars, see the module notes) valid
        if defect in ("list", "torch"):
            got = "list" if defect == "list" else "Tensor"
            return TypeError, rf"^{n} must be a numpy\.ndarray or a number, got {got}$"
        return None
    if defect in DTYPE_DEFECTS:
        if slot.strict:
            return TypeError, rf"^{n} must be float32 or float64, got dtype {defect}$"
        if defect in ("complex64", "object"):
            if slot.role == "labels":
                return TypeError, rf"^labels must be bool, integer or float, got dtype {defect}$"
            return TypeError, rf"^{n} must be real, got dtype {defect}$"
        return None                       # integer, bool, float16 labels/weights: converted
    if defect == "other_float":
        if not slot.strict or slot.ref is None:
            return None
        other = OTHER_FLOAT[dtype]
        return TypeError, (rf"^{n} must have the dtype of {re.escape(slot.ref)} "
                           rf"\({np.dtype(dtype).name}\), got {np.dtype(other).name}$")
    if defect in SHAPE_DEFECTS:
        if slot.ref is None:
            return None
        if slot.role == "pos_weight":
            new = defect_shape(defect, shape[-1:])
        else:
            new = defect_shape(defect, shape)
        if new is None:
            return None
        if slot.role in ("weight", "pos_weight"):
            if new == ():
                return None               # a 0-d weight is a scalar
            return weight_shape_error(slot, new, shape)
        return ValueError, (rf"^{n} must have the shape of {re.escape(slot.ref)} "
                            rf"{re.escape(str(shape))}, got {re.escape(str(new))} "
                            r"\(no broadcasting\)$")
    if defect in LAYOUT_DEFECTS:
        if not slot.strict or (defect == "fortran" and len(shape) < 2):
            return None                   # labels/weights are converted (copied)
        return ValueError, rf"^{n} must be C-contiguous \(shape {re.escape(str(shape))}"
    if defect == "readonly":
        if not slot.written:
            return None
        return ValueError, rf"^{n} is read-only, but it is written in place; pass a writeable"
    raise AssertionError(defect)


def _slot_cases():
    defects = TYPE_DEFECTS + DTYPE_DEFECTS + ["other_float"] + SHAPE_DEFECTS + \
        LAYOUT_DEFECTS + ["readonly"]
    for spec in SPECS:
        for base in BASES:
            for slot in spec.slots:
                for defect in defects:
                    if expectation(spec, slot, defect, base) is not None:
                        yield pytest.param(spec.name, base, slot.name, defect,
                                           id=f"{spec.name}-{base}-{slot.name}-{defect}")


@pytest.mark.parametrize("spec_name,base,slot_name,defect", list(_slot_cases()))
def test_bad_array_argument(spec_name, base, slot_name, defect):
    spec = SPEC[spec_name]
    slot = spec.slot(slot_name)
    dtype, shape = BASES[base]
    arrays = make_arrays(spec, dtype, shape)
    exc, pattern = expectation(spec, slot, defect, base)
    if defect in SHAPE_DEFECTS:
        new = defect_shape(defect, shape[-1:] if slot.role == "pos_weight" else shape)
        bad = np.random.default_rng(1).uniform(0.5, 2, new).astype(dtype)
    else:
        bad = apply_defect(defect, arrays[slot_name])
    arrays[slot_name] = bad
    expect_error(lambda: spec.call(arrays), exc, pattern, arrays)


def _alias_cases():
    for spec in SPECS:
        for base, (dtype, shape) in BASES.items():
            for y in spec.slots:
                if not y.written:
                    continue
                for x in spec.slots:
                    if x is y:
                        continue
                    xshape = shape[-1:] if x.role == "pos_weight" else shape
                    if xshape != shape:
                        continue
                    for how in ("same", "overlap"):
                        yield pytest.param(spec.name, base, y.name, x.name, how,
                                           id=f"{spec.name}-{base}-{y.name}-{how}-{x.name}")


@pytest.mark.parametrize("spec_name,base,written,other,how", list(_alias_cases()))
def test_output_aliasing_another_argument(spec_name, base, written, other, how):
    """An array written in place may not share memory with any other argument, whether it is
    the same object or a view overlapping it by one element (no broadcasting of shapes)."""
    spec = SPEC[spec_name]
    dtype, shape = BASES[base]
    arrays = make_arrays(spec, dtype, shape)
    if how == "same":
        arrays[written] = arrays[other]
    else:
        size = int(np.prod(shape))
        buf = np.zeros(2 * size - 1, dtype)
        buf[:size] = arrays[other].ravel()
        arrays[other] = buf[:size].reshape(shape)
        arrays[written] = buf[size - 1:].reshape(shape)
        assert np.shares_memory(arrays[other], arrays[written])
    expect_error(lambda: spec.call(arrays), ValueError, both_named(written, other), arrays)


def test_out_aliasing_byte_labels():
    """uint8 labels are read as bytes: an out array over the same bytes is caught too."""
    x = np.linspace(-2, 2, 3).astype(np.float32)
    y8 = np.zeros(12, np.uint8)
    out = y8.view(np.float32)
    expect_error(lambda: fusedopt.sigmoid_cross_entropy_and_grad(x, y8[:3], out=out),
                 ValueError, both_named("out", "labels"), x, y8)


def test_out_passed_to_a_loss_only_function():
    x = np.zeros(3)
    expect_error(lambda: fusedopt.l2_loss(x, x, out=np.zeros(3)), TypeError, "out", x)


# ----------------------------------------------------------------------------- list arguments

def _list_call(fn_name, grads):
    if fn_name == "unscale_and_check":
        return fusedopt.unscale_and_check(grads, 0.5)
    if fn_name == "unscale_and_check-no-scale":
        return fusedopt.unscale_and_check(grads)
    return fusedopt.all_finite(grads)


LIST_FNS = ["unscale_and_check", "unscale_and_check-no-scale", "all_finite"]


def _list_expectation(fn, defect):
    written = fn == "unscale_and_check"
    n = r"grads\[1\]"
    if defect in TYPE_DEFECTS:
        got = {"list": "builtins.list", "None": "builtins.NoneType",
               "float": "builtins.float", "np_scalar": r"numpy\.float32",
               "torch": r"torch\.Tensor"}[defect]
        return TypeError, rf"^{n} must be a numpy\.ndarray of float32 or float64, got {got}$"
    if defect in DTYPE_DEFECTS:
        return TypeError, rf"^{n} must be float32 or float64, got dtype {defect}$"
    if defect == "other_float":
        return None      # gradients of several dtypes are valid: one C call per dtype
    if defect in LAYOUT_DEFECTS:
        return ValueError, rf"^{n} must be C-contiguous"
    if defect == "readonly":
        return (ValueError, rf"^{n} is read-only, but it is written in place") if written \
            else None
    if defect in ("same", "overlap"):
        return (ValueError, both_named("grads[0]", "grads[1]")) if written else None
    raise AssertionError(defect)


def _list_cases():
    for fn in LIST_FNS:
        for defect in TYPE_DEFECTS + DTYPE_DEFECTS + ["other_float"] + LAYOUT_DEFECTS + \
                ["readonly", "same", "overlap"]:
            if _list_expectation(fn, defect) is not None:
                yield pytest.param(fn, defect, id=f"{fn}-{defect}")


@pytest.mark.parametrize("fn,defect", list(_list_cases()))
def test_bad_gradient_list_element(fn, defect):
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(s).astype(np.float32) for s in ((4,), (2, 3), (5,))]
    if defect == "same":
        grads[1] = grads[0]
    elif defect == "overlap":
        buf = np.zeros(7, np.float32)
        grads[0], grads[1] = buf[:4], buf[3:].reshape(2, 2)
    else:
        grads[1] = apply_defect(defect, grads[1])
    exc, pattern = _list_expectation(fn, defect)
    expect_error(lambda: _list_call(fn, grads), exc, pattern, grads)


@pytest.mark.parametrize("fn", LIST_FNS)
def test_valid_gradient_lists(fn):
    """Empty lists, tuples, generators, a bare array, 0-d and empty arrays all work."""
    g = [np.ones(3, np.float32), np.array(2.0, np.float32), np.zeros(0, np.float32)]
    assert _list_call(fn, []) is (fn == "all_finite")
    for grads in (g, tuple(g), iter(g)):
        assert _list_call(fn, grads) is (fn == "all_finite")
    assert _list_call(fn, np.ones(2, np.float32)) is (fn == "all_finite")


@pytest.mark.parametrize("fn", LIST_FNS)
@pytest.mark.parametrize("value", [None, 3.0], ids=["None", "float"])
def test_gradient_list_not_iterable(fn, value):
    with pytest.raises(TypeError, match=r"\bgrads\b"):
        _list_call(fn, value)


# ----------------------------------------------------------------------------- hyper-parameters

def _numeric(name, kw, out_of_range, extra=None, none_ok=False, label=None):
    """Bad values of a real hyper-parameter: out of range, non-finite, not a number (None is
    the default of some: then it is valid).  An out-of-range value is "Invalid <label>:"
    (torch.optim's wording: "learning rate" for lr, else "<name> value")."""
    n = re.escape(name)
    lab = re.escape(label or f"{name} value")
    cases = [(v, ValueError, rf"^Invalid {lab}: {re.escape(repr(v))} \(expected [\[(]")
             for v in out_of_range]
    cases += [(v, ValueError, rf"^{n} must be finite, got {r}$")
              for v, r in ((math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"))]
    cases += [(v, TypeError, rf"^{n} must be a real number, got {t}$")
              for v, t in ((None, "NoneType"), ("0.1", "str"), ([0.1], "list"), (1j, "complex"),
                           (True, "bool"), (np.array([0.1, 0.2]), "ndarray"))
              if not (none_ok and v is None)]
    return [(dict(extra or {}, **{kw: v}), e, p) for v, e, p in cases]


def _integer(name, kw, lo, none_ok=False):
    """Bad values of an integer argument (None is the default of some: then it is valid)."""
    n = re.escape(name)
    cases = [(v, ValueError, rf"^{n} must be >= {lo}, got {v}$") for v in (lo - 1, -5)]
    cases += [(v, TypeError, rf"^{n} must be an integer, got {t}$")
              for v, t in ((1.5, "float"), (None, "NoneType"), ("2", "str"), (True, "bool"),
                           (2.0, "float")) if not (none_ok and v is None)]
    return [({kw: v}, e, p) for v, e, p in cases]


def _choice(kw, values, pattern):
    return [({kw: v}, ValueError, pattern + re.escape(repr(v)) + "$") for v in values]


CONVENTION = r"^convention must be one of 'torch', 'tf1', 'keras', 'optax', 'sklearn'; got "
BAD_CONVENTIONS = ["pytorch", "Torch", "", None, 1]
N_THREADS = _integer("n_threads", "n_threads", 1, none_ok=True)


def _betas(values_for_index):
    cases = []
    for idx in (0, 1):
        name = f"beta parameter at index {idx}"
        for kw, e, p in _numeric(name, "b", values_for_index, label=name):
            betas = [0.9, 0.999]
            betas[idx] = kw["b"]
            cases.append(({"betas": tuple(betas)}, e, p))
    for v in (0.9, (0.9,), (0.9, 0.99, 0.999), None, "abc"):
        cases.append(({"betas": v}, TypeError, r"^betas must be a pair of floats, got "))
    return cases


HYPER = {
    "sigmoid_cross_entropy_and_grad":
        _numeric("label_smoothing", "label_smoothing", [-0.1, 1.5]) +
        _choice("reduction", ["avg", "MEAN", "", None, 0],
                r"^reduction must be 'mean', 'sum' or 'none', got ") + N_THREADS,
    "l1_loss_and_grad":
        _choice("reduction", ["avg", None], r"^reduction must be 'mean', 'sum' or 'none', got ")
        + N_THREADS,
    "adam_step":
        _numeric("lr", "lr", [-1.0, -1e-300], label="learning rate") + _numeric("epsilon", "eps", [-1e-8]) +
        _numeric("weight_decay", "weight_decay", [-0.1]) +
        _numeric("eps_root", "eps_root", [-1e-8], dict(convention="optax")) +
        _betas([1.0, 1.5, -0.1]) + _integer("step", "step", 1) +
        _choice("convention", BAD_CONVENTIONS, CONVENTION) + N_THREADS,
    "sgd_step":
        _numeric("lr", "lr", [-0.1], label="learning rate") + _numeric("momentum", "momentum", [-0.9]) +
        _numeric("dampening", "dampening", [-0.1, 1.5]) +
        _numeric("weight_decay", "weight_decay", [-1.0]) +
        _integer("step", "step", 1, none_ok=True) +       # (None: see COMBOS)
        _choice("convention", BAD_CONVENTIONS, CONVENTION) + N_THREADS,
    "unscale_and_check": _numeric("inv_scale", "inv_scale", [-1.0], none_ok=True) + N_THREADS,
    "all_finite": N_THREADS,
}
# the same checks reach every loss: sample them on the others
for _name in ("sigmoid_cross_entropy", "l1_loss", "l2_loss", "l2_loss_and_grad"):
    HYPER[_name] = _choice("reduction", ["avg"], r"^reduction must be 'mean', 'sum' or "
                                                 r"'none', got ") + N_THREADS[:3]
HYPER["sigmoid_cross_entropy"] += HYPER["sigmoid_cross_entropy_and_grad"][:9]

# option combinations that a convention does not have
COMBOS = {
    "adam_step": [
        (dict(convention="tf1", weight_decay=0.1), ValueError, r"no weight decay"),
        (dict(convention="sklearn", weight_decay=0.1), ValueError, r"no weight decay"),
        (dict(convention="keras", weight_decay=0.1), ValueError, r"decoupled"),
        (dict(convention="optax", weight_decay=0.1), ValueError, r"decoupled"),
        (dict(convention="keras", maximize=True), ValueError, r"maximize=True is a torch option"),
        (dict(convention="torch", eps_root=1e-8), ValueError, r"eps_root is an optax option"),
        (dict(convention="tf1", amsgrad=True), ValueError, r"no amsgrad"),
    ],
    "sgd_step": [
        (dict(nesterov=True, momentum=0.0), ValueError, r"Nesterov momentum requires"),
        (dict(nesterov=True, dampening=0.1), ValueError, r"Nesterov momentum requires"),
        (dict(convention="keras", dampening=0.5), ValueError, r"dampening is a torch option"),
        (dict(convention="optax", maximize=True), ValueError, r"maximize=True is a torch"),
        (dict(convention="tf1", weight_decay=0.1), ValueError, r"'tf1' has no weight decay"),
        (dict(step=None), ValueError, r"torch-convention momentum needs step"),
    ],
}


def _hyper_call(fn, kw):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(6).astype(np.float32)
    y = (rng.random(6) > 0.5).astype(np.float32)
    state = [np.zeros(6, np.float32) for _ in range(3)]
    if fn in ("unscale_and_check", "all_finite"):
        args = dict(inv_scale=0.5) if fn == "unscale_and_check" else {}
        args.update(kw)
        return (lambda: getattr(fusedopt, fn)([x, y], **args)), [x, y]
    if fn == "adam_step":
        args = dict(step=2, lr=0.1, amsgrad=True, max_exp_avg_sq=state[2])
        args.update(kw)
        if args.get("convention") in ("tf1", "sklearn") and "amsgrad" not in kw:
            args["amsgrad"] = False
        return (lambda: fusedopt.adam_step(x, y, state[0], state[1], **args)), [x, y, state]
    if fn == "sgd_step":
        args = dict(lr=0.1, momentum=0.9, step=2)
        args.update(kw)
        return (lambda: fusedopt.sgd_step(x, y, state[0], **args)), [x, y, state]
    out = np.zeros(6, np.float32)
    if fn.endswith("_and_grad"):
        kw = dict(kw, out=out)
    return (lambda: getattr(fusedopt, fn)(x, y, **kw)), [x, y, out]


def _hyper_cases():
    for fn, cases in list(HYPER.items()) + list(COMBOS.items()):
        for k, (kw, exc, pattern) in enumerate(cases):
            label = "-".join(f"{a}={v!r}" for a, v in kw.items())[:60]
            yield pytest.param(fn, kw, exc, pattern, id=f"{fn}-{k}-{label}")


@pytest.mark.parametrize("fn,kw,exc,pattern", list(_hyper_cases()))
def test_bad_hyper_parameter(fn, kw, exc, pattern):
    call, arrays = _hyper_call(fn, kw)
    expect_error(call, exc, pattern, arrays)


def test_step_too_large_for_int64():
    call, arrays = _hyper_call("adam_step", dict(step=2 ** 70))
    expect_error(call, (TypeError, ValueError), r"^step must", arrays)


@pytest.mark.parametrize("kw", [dict(momentum=0.0), dict(convention="keras")],
                         ids=["no-momentum", "keras"])
@pytest.mark.parametrize("step", [0, "x"])
def test_sgd_step_ignored_without_torch_momentum(kw, step):
    call, arrays = _hyper_call("sgd_step", dict(kw, step=step))
    expect_error(call, (TypeError, ValueError), r"^step must", arrays)


@pytest.mark.parametrize("which", ["adam", "sgd"])
def test_unused_state_argument_is_still_checked(which):
    p, g = np.zeros(3), np.ones(3)
    if which == "adam":
        call = lambda: fusedopt.adam_step(p, g, np.zeros(3), np.zeros(3), step=1,
                                          max_exp_avg_sq="junk")
    else:
        call = lambda: fusedopt.sgd_step(p, g, "junk", lr=0.1)
    expect_error(call, TypeError, r"must be a numpy\.ndarray", p, g)


# ----------------------------------------------------------------------------- constructors

def _params():
    rng = np.random.default_rng(4)
    return [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(4)]


CLASSES = {"Adam": fusedopt.Adam, "AdamW": fusedopt.AdamW, "SGD": fusedopt.SGD}


def _ctor_cases():
    adam = (_numeric("lr", "lr", [-1.0], label="learning rate") + _numeric("epsilon", "eps", [-1e-8]) +
            _numeric("weight_decay", "weight_decay", [-0.1]) +
            _numeric("eps_root", "eps_root", [-1.0], dict(convention="optax")) +
            [c for c in _betas([1.0, -0.1]) if isinstance(c[0]["betas"], tuple)
             and len(c[0]["betas"]) == 2] +
            _choice("convention", BAD_CONVENTIONS, CONVENTION) +
            [(dict(convention="keras", maximize=True), ValueError, r"maximize=True is a torch")])
    sgd = (_numeric("lr", "lr", [-1.0], label="learning rate") + _numeric("momentum", "momentum", [-0.5]) +
           _numeric("dampening", "dampening", [2.0], dict(momentum=0.9)) +
           _numeric("weight_decay", "weight_decay", [-1.0]) +
           _choice("convention", BAD_CONVENTIONS, CONVENTION) + COMBOS["sgd_step"][:5])
    for name, cases in (("Adam", adam), ("AdamW", adam), ("SGD", sgd)):
        for k, (kw, exc, pattern) in enumerate(cases):
            label = "-".join(f"{a}={v!r}" for a, v in kw.items())[:60]
            yield pytest.param(name, kw, exc, pattern, id=f"{name}-{k}-{label}")
    for k, (kw, exc, pattern) in enumerate([
            (dict(convention="tf1"), ValueError, r"no weight decay"),
            (dict(convention="sklearn"), ValueError, r"no weight decay")]):
        yield pytest.param("AdamW", kw, exc, pattern, id=f"AdamW-default-decay-{k}")


@pytest.mark.parametrize("cls,kw,exc,pattern", list(_ctor_cases()))
def test_constructor_bad_hyper_parameter(cls, kw, exc, pattern):
    ps = _params()
    expect_error(lambda: CLASSES[cls](ps, **kw), exc, pattern, ps)
    # the same value in a param group (the group's own hyper-parameters)
    expect_error(lambda: CLASSES[cls]([{"params": ps[:1]}, dict(kw, params=ps[1:])]),
                 exc, pattern, ps)


def _param_defects():
    ro = np.ones(3)
    ro.setflags(write=False)
    shared = np.ones(6)
    for label, value, got in (("None", None, "NoneType"), ("list", [1.0, 2.0], "list"),
                              ("float", 1.0, "float")):
        yield f"{label}-element", [value], TypeError, \
            rf"^params\[0\] must be a numpy\.ndarray, got {got}$"
    for dt in ("int32", "int64", "bool", "float16", "complex64", "object"):
        yield dt, [np.ones(3), np.ones(3, dt)], TypeError, \
            rf"^params\[1\] must be float32 or float64, got dtype {dt}$"
    yield "readonly", [np.ones(3), ro], ValueError, \
        r"^params\[1\] must be C-contiguous and writeable"
    yield "strided", [np.ones(6)[::2]], ValueError, r"^params\[0\] must be C-contiguous"
    yield "negative", [np.ones(6)[::-1]], ValueError, r"^params\[0\] must be C-contiguous"
    yield "fortran", [np.ones((2, 3), order="F")], ValueError, r"^params\[0\] must be C-contiguous"
    yield "same", [shared, shared], ValueError, both_named("params[0]", "params[1]")
    yield "overlap", [shared[:4], shared[3:]], ValueError, both_named("params[0]", "params[1]")
    yield "empty-list", [], ValueError, r"^optimizer got an empty parameter list$"
    yield "group-not-dict", [{"params": [np.ones(3)]}, np.ones(3)], TypeError, \
        r"^a param group must be a dict with a 'params' list$"
    yield "group-without-params", [{"lr": 0.1}], TypeError, \
        r"^a param group must be a dict with a 'params' list$"
    yield "group-unknown-key", [{"params": [np.ones(3)], "lr_decay": 0.1}], ValueError, \
        r"^unknown hyper-parameter\(s\) in param group: \['lr_decay'\]$"
    yield "groups-share-memory", [{"params": [shared]}, {"params": [shared[2:]]}], ValueError, \
        both_named("params[0]", "params[1]")


@pytest.mark.parametrize("cls", sorted(CLASSES))
@pytest.mark.parametrize("label,params,exc,pattern",
                         [pytest.param(*c, id=c[0]) for c in _param_defects()])
def test_constructor_bad_params(cls, label, params, exc, pattern):
    expect_error(lambda: CLASSES[cls](params), exc, pattern, params)


def test_constructor_accepts_empty_and_0d_params():
    for cls in CLASSES.values():
        ps = [np.zeros(0, np.float32), np.array(1.5), np.ones((2, 0, 3))]
        opt = cls(ps, lr=0.1)
        assert opt.step([np.zeros(0, np.float32), np.array(1.0), np.ones((2, 0, 3))]) is True
        assert ps[1] < 1.5


@pytest.mark.parametrize("make", [
    lambda: fusedopt.Adam(None), lambda: fusedopt.SGD(3.0),
    lambda: fusedopt.Adam([{"params": None}]), lambda: fusedopt.Adam([np.ones(3)], betas=0.9),
], ids=["Adam(None)", "SGD(3.0)", "group-params-None", "betas=0.9"])
def test_constructor_non_iterable_arguments(make):
    with pytest.raises(TypeError, match=r"\b(params|betas)\b"):
        make()


def test_constructor_single_array_is_one_parameter():
    w = np.ones((3, 2))
    opt = fusedopt.SGD(w, lr=0.1)
    assert len(opt.params) == 1 and opt.params[0] is w


# ----------------------------------------------------------------------------- class step

MAKERS = {
    "Adam-amsgrad": lambda ps, **kw: fusedopt.Adam(ps, lr=0.1, amsgrad=True, **kw),
    "AdamW-optax": lambda ps, **kw: fusedopt.AdamW(ps, lr=0.1, convention="optax", **kw),
    "SGD-nesterov": lambda ps, **kw: fusedopt.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, **kw),
    "SGD-plain": lambda ps, **kw: fusedopt.SGD(ps, lr=0.1, **kw),
}
SHAPES = [(3,), (2, 3), (17,), (1,), (4, 5), (2,), (6,), (3, 3)]


def _grad_defects():
    """Bad values for the 5th gradient (index 4, shape (4, 5), float32) of a step."""
    yield "list", lambda g, ps: g.tolist(), TypeError, \
        r"^grad\[4\] must be a numpy\.ndarray of float32 or float64, got builtins\.list$"
    yield "float", lambda g, ps: 1.0, TypeError, r"^grad\[4\] must be a numpy\.ndarray"
    yield "torch", lambda g, ps: pytest.importorskip("torch").from_numpy(g.copy()), TypeError, \
        r"^grad\[4\] must be a numpy\.ndarray of float32 or float64, got torch\.Tensor$"
    for dt in ("int32", "float16", "complex64", "object"):
        yield dt, (lambda dt: lambda g, ps: g.astype(dt))(dt), TypeError, \
            rf"^grad\[4\] must be float32 or float64, got dtype {dt}$"
    yield "float64", lambda g, ps: g.astype(np.float64), TypeError, \
        r"^grad\[4\] must have the dtype of params\[4\] \(float32\), got float64$"
    yield "(20,)", lambda g, ps: g.reshape(20), ValueError, \
        r"^grad\[4\] must have the shape of params\[4\] \(4, 5\), got \(20,\) \(no broadcasting\)$"
    yield "(4,5,1)", lambda g, ps: g.reshape(4, 5, 1), ValueError, \
        r"^grad\[4\] must have the shape of params\[4\] \(4, 5\), got \(4, 5, 1\)"
    yield "(5,4)", lambda g, ps: g.reshape(5, 4), ValueError, \
        r"^grad\[4\] must have the shape of params\[4\] \(4, 5\), got \(5, 4\)"
    yield "0d", lambda g, ps: np.array(1.0, np.float32), ValueError, \
        r"^grad\[4\] must have the shape of params\[4\] \(4, 5\), got \(\)"
    yield "fortran", lambda g, ps: np.asfortranarray(g), ValueError, \
        r"^grad\[4\] must be C-contiguous"
    yield "negative", lambda g, ps: g[::-1].copy()[::-1], ValueError, \
        r"^grad\[4\] must be C-contiguous"
    yield "is-param-4", lambda g, ps: ps[4], ValueError, both_named("params[4]", "grad[4]")
    yield "is-param-0", lambda g, ps: ps[0], ValueError, r"^grad\[4\] must have the shape"


@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "inv_scale"])
@pytest.mark.parametrize("first", [True, False], ids=["first-step", "later-step"])
@pytest.mark.parametrize("label,bad,exc,pattern",
                         [pytest.param(*c, id=c[0]) for c in _grad_defects()])
@pytest.mark.parametrize("maker", sorted(MAKERS))
def test_step_failing_on_the_fifth_tensor_changes_nothing(maker, label, bad, exc, pattern,
                                                          first, scaled):
    """Eight float32 parameters: one batch, one C call; everything is validated before the
    first element of the first tensor is touched (parameters, state, and, with inv_scale,
    the gradients themselves), and a failed first step creates no state."""
    rng = np.random.default_rng(5)
    ps = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    opt = MAKERS[maker](ps, check_finite=scaled)
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    if not first:
        opt.step([g.copy() for g in grads])
        opt.step([g.copy() for g in grads])
    grads[4] = bad(grads[4], ps)
    kw = dict(inv_scale=0.25) if scaled else {}
    expect_error(lambda: opt.step(grads, **kw), exc, pattern, opt, grads)
    if first:
        assert opt.state == {}
    # and the optimizer still works afterwards
    assert opt.step([rng.standard_normal(s).astype(np.float32) for s in SHAPES]) is True


@pytest.mark.parametrize("maker", sorted(MAKERS))
def test_step_failing_in_a_later_group_changes_nothing(maker):
    """Two groups and two dtypes (four batches): the last batch's failure is found before
    the first batch runs."""
    rng = np.random.default_rng(6)
    ps = [rng.standard_normal(s).astype(np.float32 if k % 2 else np.float64)
          for k, s in enumerate(SHAPES)]
    opt = MAKERS[maker]([{"params": ps[:4]}, {"params": ps[4:], "lr": 0.01}])
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in ps]
    opt.step([g.copy() for g in grads])
    grads[6] = grads[6].astype(np.float32)            # params[6] is float64: wrong
    expect_error(lambda: opt.step(grads, inv_scale=0.5), TypeError,
                 r"^grad\[\d\] must have the dtype of params\[\d\] \(float64\), got float32$",
                 opt, grads)
    grads[6] = ps[6]                                  # aliasing, in the last batch
    expect_error(lambda: opt.step(grads), ValueError, r"share memory", opt, grads)


@pytest.mark.parametrize("maker", ["Adam-amsgrad", "SGD-nesterov"])
def test_step_error_names_the_callers_index(maker):
    ps = [np.ones(3, np.float32 if k % 2 else np.float64) for k in range(8)]
    opt = MAKERS[maker]([{"params": ps[:4]}, {"params": ps[4:]}])
    grads = [np.ones_like(p) for p in ps]
    grads[6] = grads[6].astype(np.float32)
    expect_error(lambda: opt.step(grads), TypeError,
                 r"^grad\[6\] must have the dtype of params\[6\]", opt, grads)


@pytest.mark.parametrize("maker", sorted(MAKERS))
def test_step_bad_arguments(maker):
    ps = _params()
    opt = MAKERS[maker](ps)
    good = [np.ones_like(p) for p in ps]
    opt.step(good)
    expect_error(lambda: opt.step(good[:1]), ValueError,
                 r"^step\(\) got 1 gradients for 2 parameters$", opt, good)
    expect_error(lambda: opt.step(good + good[:1]), ValueError,
                 r"^step\(\) got 3 gradients for 2 parameters$", opt, good)
    for kw, exc, pattern in _numeric("inv_scale", "inv_scale", [-1.0], none_ok=True) + N_THREADS:
        expect_error(lambda: opt.step(good, **kw), exc, pattern, opt, good)
    # a hyper-parameter made invalid in param_groups between steps
    for key, value, pattern in (("lr", -1.0, r"^Invalid learning rate"),
                                ("convention", "jax", CONVENTION)):
        if key not in opt.param_groups[0]:
            continue
        saved = opt.param_groups[0][key]
        opt.param_groups[0][key] = value
        snap = Snapshot(ps, good)
        with pytest.raises(ValueError, match=pattern):
            opt.step(good)
        snap.check()
        opt.param_groups[0][key] = saved


@pytest.mark.parametrize("value", [None, 3.0], ids=["None", "float"])
def test_step_grads_not_iterable(value):
    opt = fusedopt.SGD(_params(), lr=0.1)
    with pytest.raises(TypeError, match=r"\bgrads?\b"):
        opt.step(value)


@pytest.mark.parametrize("kw,step_kw", [({}, dict(inv_scale=0.5)), (dict(check_finite=True), {})],
                         ids=["inv_scale", "check_finite"])
def test_mixed_dtype_parameters_with_loss_scaling(kw, step_kw):
    ps = [np.ones(3, np.float32), np.ones(2)]
    opt = fusedopt.Adam(ps, lr=0.1, **kw)
    assert opt.step([np.ones(3, np.float32), np.ones(2)], **step_kw) is True


# ----------------------------------------------------------------------------- state dicts

def _trained(kind, amsgrad=False):
    ps = _params()
    opt = {"Adam": lambda: fusedopt.Adam(ps, lr=0.1, amsgrad=amsgrad),
           "AdamW": lambda: fusedopt.AdamW(ps, lr=0.1),
           "SGD": lambda: fusedopt.SGD(ps, lr=0.1, momentum=0.9)}[kind]()
    rng = np.random.default_rng(7)
    for _ in range(3):
        opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in ps])
    return opt


def _edit(fn):
    """A state-dict edit: applies fn (which mutates) and returns the dict."""
    def f(sd):
        fn(sd)
        return sd
    return f


def _set_state(i, key, value):
    return _edit(lambda sd: sd["state"][i].__setitem__(key, value))


def _set_group(key, value):
    return _edit(lambda sd: sd["param_groups"][0].__setitem__(key, value))


def _sd_defects():
    """(label, target kind, edit of a trained Adam/SGD state dict, exception, pattern)."""
    def other(kind):
        return lambda sd: _trained(kind).state_dict()
    yield "from-SGD", "Adam", other("SGD"), ValueError, \
        r"^state_dict is from a 'SGD' optimizer, not 'Adam'$"
    yield "from-AdamW", "Adam", other("AdamW"), ValueError, \
        r"^state_dict is from a 'AdamW' optimizer, not 'Adam'$"
    yield "from-Adam", "AdamW", other("Adam"), ValueError, \
        r"^state_dict is from a 'Adam' optimizer, not 'AdamW'$"
    yield "from-Adam", "SGD", other("Adam"), ValueError, \
        r"^state_dict is from a 'Adam' optimizer, not 'SGD'$"
    keys = r"^state_dict must have exactly the keys 'kind', 'state', 'param_groups'$"
    yield "None", "Adam", lambda sd: None, ValueError, keys
    yield "list", "Adam", lambda sd: [], ValueError, keys
    yield "missing-kind", "Adam", _edit(lambda sd: sd.pop("kind")), ValueError, keys
    yield "extra-top-key", "Adam", lambda sd: dict(sd, extra=1), ValueError, keys
    yield "missing-entry", "Adam", _edit(lambda sd: sd["state"][1].pop("exp_avg_sq")), \
        ValueError, (r"^state\[1\] has entries \['exp_avg', 'step'\], expected "
                     r"\['exp_avg', 'exp_avg_sq', 'step'\]$")
    yield "extra-entry", "Adam", _set_state(0, "momentum_buffer", np.zeros((3, 2), np.float32)), \
        ValueError, r"^state\[0\] has entries .*'momentum_buffer'.*, expected"
    yield "missing-step", "SGD", _edit(lambda sd: sd["state"][0].pop("step")), ValueError, \
        r"^state\[0\] has entries \['momentum_buffer'\], expected"
    for label, value in (("(3,)", np.zeros(3, np.float32)),
                         ("(3,2,1)", np.zeros((3, 2, 1), np.float32)),
                         ("(2,3)", np.zeros((2, 3), np.float32)),
                         ("float64", np.zeros((3, 2))), ("list", [[0.0] * 2] * 3),
                         ("None", None), ("int", np.zeros((3, 2), np.int32))):
        yield f"exp_avg-{label}", "Adam", _set_state(0, "exp_avg", value), ValueError, \
            r"^state\[0\]\['exp_avg'\] must be an array of shape \(3, 2\) and dtype float32$"
        yield f"momentum_buffer-{label}", "SGD", _set_state(0, "momentum_buffer", value), \
            ValueError, r"^state\[0\]\['momentum_buffer'\] must be an array of shape \(3, 2\)"
    for value in (-1, 1.5, "3", None, True):
        yield f"step={value!r}", "Adam", _set_state(1, "step", value), ValueError, \
            rf"^state\[1\]\['step'\] must be an integer >= 0, got {re.escape(repr(value))}$"
    for i in (5, -1):
        yield f"state-for-param-{i}", "Adam", \
            _edit(lambda sd, i=i: sd["state"].__setitem__(i, sd["state"][0])), ValueError, \
            rf"^state_dict has state for parameter {i}, optimizer has 2$"
    yield "two-groups", "Adam", \
        _edit(lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0]))), \
        ValueError, r"^state_dict has 2 param groups, optimizer has 1$"
    yield "group-missing-key", "Adam", _edit(lambda sd: sd["param_groups"][0].pop("eps")), \
        ValueError, r"^param_groups\[0\] keys .* differ from"
    yield "group-extra-key", "SGD", _set_group("betas", (0.9, 0.9)), ValueError, \
        r"^param_groups\[0\] keys .* differ from"
    yield "group-params", "Adam", _set_group("params", [1, 0]), ValueError, \
        r"^param_groups\[0\] holds params \[1, 0\], expected \[0, 1\]$"
    for key, value, exc, pattern in (
            ("lr", -1.0, ValueError, r"^Invalid learning rate"),
            ("lr", math.nan, ValueError, r"^lr must be finite"),
            ("eps", -1.0, ValueError, r"^Invalid epsilon value"),
            ("betas", (1.0, 0.9), ValueError, r"^Invalid beta parameter at index 0"),
            ("weight_decay", math.inf, ValueError, r"^weight_decay must be finite"),
            ("convention", "mxnet", ValueError, CONVENTION),
            ("lr", "0.1", TypeError, r"^lr must be a real number, got str$")):
        yield f"group-{key}={value!r}", "Adam", _set_group(key, value), exc, pattern
    yield "group-momentum=-1", "SGD", _set_group("momentum", -1.0), ValueError, \
        r"^Invalid momentum value"
    yield "group-momentum=0-with-buffer", "SGD", _set_group("momentum", 0.0), ValueError, \
        r"^state\[0\] has entries \['momentum_buffer', 'step'\], expected \['step'\]$"
    yield "group-amsgrad-without-max", "Adam", _set_group("amsgrad", True), ValueError, \
        r"^state\[0\] has entries .* expected .*'max_exp_avg_sq'"


@pytest.mark.parametrize("label,kind,make_bad,exc,pattern",
                         [pytest.param(*c, id=f"{c[1]}-{c[0]}") for c in _sd_defects()])
def test_load_state_dict_rejects(label, kind, make_bad, exc, pattern):
    """The optimizer and the state dict passed in are both unchanged after the failure."""
    src = _trained("Adam" if kind == "AdamW" else kind)
    bad = make_bad(src.state_dict())
    opt = _trained(kind)
    expect_error(lambda: opt.load_state_dict(bad), exc, pattern, opt, bad)
    # the optimizer still accepts its own state dict afterwards
    opt.load_state_dict(opt.state_dict())


@pytest.mark.parametrize("edit", [
    lambda sd: sd.update(state=[]), lambda sd: sd.update(state=None),
    lambda sd: sd.update(param_groups=None), lambda sd: sd.update(param_groups=[None]),
    lambda sd: sd["state"].update({0: None}), lambda sd: sd["state"].update({"a": sd["state"][0]}),
    lambda sd: sd["param_groups"][0].update(params=None),
], ids=["state-list", "state-None", "groups-None", "group-None", "entry-None", "key-'a'",
        "group-params-None"])
def test_load_state_dict_malformed_containers(edit):
    opt = _trained("Adam")
    sd = opt.state_dict()
    edit(sd)
    with pytest.raises((TypeError, ValueError), match=r"state|param_groups|params"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("case", ["maximize=2", "nesterov='yes'", "amsgrad='no'"])
def test_boolean_hyper_parameters_are_checked(case):
    if case == "amsgrad='no'":
        with pytest.raises(TypeError, match="amsgrad"):
            fusedopt.Adam(_params(), amsgrad="no")
        return
    kind, key, value = ("Adam", "maximize", 2) if case == "maximize=2" else \
        ("SGD", "nesterov", "yes")
    opt = _trained(kind)
    sd = opt.state_dict()
    sd["param_groups"][0][key] = value
    with pytest.raises((TypeError, ValueError), match=key):
        opt.load_state_dict(sd)


# ----------------------------------------------------------------------------- load_optimizer

@pytest.fixture
def checkpoint(tmp_path):
    opt = _trained("Adam", amsgrad=True)
    path = tmp_path / "opt.ckpt"
    opt.save(path)
    return path, opt


def _load_defects():
    ro = np.zeros(4)
    ro.setflags(write=False)
    yield "one-array", [np.zeros((3, 2), np.float32)], r"^params has 1 arrays, the checkpoint 2$"
    yield "three-arrays", [np.zeros((3, 2), np.float32), np.zeros(4), np.zeros(1)], \
        r"^params has 3 arrays, the checkpoint 2$"
    yield "shape", [np.zeros((2, 3), np.float32), np.zeros(4)], \
        r"^params\[0\] must be an array of shape \(3, 2\) and dtype float32$"
    yield "(4,1)", [np.zeros((3, 2), np.float32), np.zeros((4, 1))], \
        r"^params\[1\] must be an array of shape \(4,\) and dtype float64$"
    yield "dtype", [np.zeros((3, 2)), np.zeros(4)], \
        r"^params\[0\] must be an array of shape \(3, 2\) and dtype float32$"
    yield "list", [np.zeros((3, 2), np.float32), [0.0] * 4], \
        r"^params\[1\] must be an array of shape \(4,\) and dtype float64$"
    yield "None", [None, np.zeros(4)], r"^params\[0\] must be an array of shape"
    yield "readonly", [np.zeros((3, 2), np.float32), ro], \
        r"^params\[1\] must be C-contiguous and writeable"
    yield "strided", [np.zeros((3, 4), np.float32)[:, ::2], np.zeros(4)], \
        r"^params\[0\] must be C-contiguous and writeable"


@pytest.mark.parametrize("label,params,pattern",
                         [pytest.param(*c, id=c[0]) for c in _load_defects()])
def test_load_optimizer_bad_params(checkpoint, label, params, pattern):
    path, _ = checkpoint
    before = path.read_bytes()
    expect_error(lambda: fusedopt.load_optimizer(path, params=params), ValueError, pattern,
                 params)
    assert path.read_bytes() == before


def test_load_optimizer_aliased_params(checkpoint):
    path, _ = checkpoint
    shared = np.zeros(8)
    # float32 (3, 2) over bytes [0, 24), float64 (4,) over bytes [16, 48): 8 bytes in common
    params = [shared[:3].view(np.float32).reshape(3, 2), shared[2:6]]
    expect_error(lambda: fusedopt.load_optimizer(path, params=params), ValueError,
                 both_named("params[0]", "params[1]"), params)


def test_load_into_wrong_optimizer_changes_nothing(checkpoint):
    path, _ = checkpoint
    for opt in (_trained("SGD"), _trained("AdamW")):
        expect_error(lambda: opt.load(path), ValueError, r"^state_dict is from a 'Adam' "
                     r"optimizer, not '(SGD|AdamW)'$", opt)
    # params of other shapes: refused before anything is copied
    other = fusedopt.Adam([np.zeros((2, 3), np.float32), np.zeros(4)])
    expect_error(lambda: other.load(path), ValueError,
                 r"^checkpoint parameter 0 has shape \(3, 2\) and dtype float32; params\[0\] "
                 r"has \(2, 3\), float32$", other)


@pytest.mark.parametrize("value", [None, 3.5, ["a"]], ids=["None", "float", "list"])
def test_load_optimizer_bad_path_type(value):
    # open()'s own message: says what is expected (str, bytes or os.PathLike)
    with pytest.raises(TypeError, match=r"str, bytes or os\.PathLike"):
        fusedopt.load_optimizer(value)


def test_load_optimizer_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fusedopt.load_optimizer(tmp_path / "missing.ckpt")


def test_load_optimizer_params_not_iterable(checkpoint):
    path, _ = checkpoint
    with pytest.raises(TypeError, match=r"\bparams\b"):
        fusedopt.load_optimizer(path, params=3.0)


# ----------------------------------------------------------------------------- valid edge inputs

LOSSES = [("sigmoid_cross_entropy_and_grad", R.sigmoid_cross_entropy_and_grad),
          ("l1_loss_and_grad", R.l1_loss_and_grad), ("l2_loss_and_grad", R.l2_loss_and_grad)]


def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4), ()],
                         ids=["0", "0x3", "3x0", "2x0x4", "0d"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,ref", LOSSES, ids=[n for n, _ in LOSSES])
def test_empty_and_0d_losses(name, ref, shape, reduction):
    fn = getattr(fusedopt, name)
    only = getattr(fusedopt, name.replace("_and_grad", ""))
    x = np.full(shape, 0.75, np.float32)
    y = np.full(shape, 1.0, np.float32)
    kw = {} if name.startswith("l") else dict(pos_weight=np.float32(2.0).item())
    loss, grad = fn(x, y, reduction=reduction, **kw)
    rloss, rgrad = ref(x, y, reduction=reduction, **kw)
    assert grad.shape == shape and grad.dtype == np.float32
    np.testing.assert_allclose(grad, rgrad, rtol=1e-6)
    if reduction == "none":
        assert loss.shape == shape
        np.testing.assert_allclose(loss, rloss, rtol=1e-6)
    elif x.size == 0:
        assert _same(loss, rloss) and (math.isnan(loss) if reduction == "mean" else loss == 0.0)
    else:
        assert loss == pytest.approx(rloss, rel=1e-6)
    assert _same(only(x, y, reduction=reduction, **kw), loss)
    # with weights of matching shape, and out= of the shape
    out = np.empty(shape, np.float32)
    fn(x, y, weight=np.ones(shape, np.float32), reduction=reduction, out=out, **kw)
    assert _same(out, grad)


@pytest.mark.parametrize("shape", [(0,), (0, 3), ()], ids=["0", "0x3", "0d"])
@pytest.mark.parametrize("conv", ["torch", "tf1", "keras", "optax", "sklearn"])
def test_empty_and_0d_optimizer_steps(shape, conv):
    rng = np.random.default_rng(8)
    p = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    got = [np.array(p), np.zeros(shape), np.zeros(shape)]
    ref = [np.array(p), np.zeros(shape), np.zeros(shape)]
    fusedopt.adam_step(got[0], g, got[1], got[2], step=1, lr=0.1, convention=conv)
    R.adam_step(ref[0], g, ref[1], ref[2], step=1, lr=0.1, convention=conv)
    assert all(_same(a, b) for a, b in zip(got, ref))
    fusedopt.sgd_step(got[0], g, got[1], lr=0.1, momentum=0.9, step=1, convention=conv)
    R.sgd_step(ref[0], g, ref[1], lr=0.1, momentum=0.9, step=1, convention=conv)
    assert all(_same(a, b) for a, b in zip(got, ref))


def test_read_only_inputs_and_inputs_aliasing_each_other():
    rng = np.random.default_rng(9)
    x = rng.standard_normal(50).astype(np.float32)
    x.setflags(write=False)
    y = (x > 0).astype(np.float32)
    y.setflags(write=False)
    assert fusedopt.l1_loss(x, x) == 0.0 and fusedopt.l2_loss(x, x, weight=x) == 0.0
    a = fusedopt.sigmoid_cross_entropy_and_grad(x, y, weight=y, pos_weight=x)
    b = fusedopt.sigmoid_cross_entropy_and_grad(x.copy(), y.copy(), weight=y.copy(),
                                                pos_weight=x.copy())
    assert a[0] == b[0] and _same(a[1], b[1])
    p, m, v = (np.zeros(50, np.float32) for _ in range(3))
    fusedopt.adam_step(p, x, m, v, step=1)
    fusedopt.sgd_step(p, x, lr=0.1)
    assert fusedopt.all_finite([x, x, y])


@pytest.mark.parametrize("variant", ["labels-strided", "labels-negative", "labels-fortran",
                                     "labels-int64", "labels-float16", "labels-bool",
                                     "labels-other-float", "weight-strided", "weight-int",
                                     "weight-other-float", "weight-row", "pos_weight-strided",
                                     "pos_weight-(1,C)", "pos_weight-other-float"])
def test_converted_loss_inputs_give_the_same_result(variant):
    """Labels, weight and pos_weight are converted (copied) when their dtype or layout is
    not the logits': the result is that of the converted arrays, bit for bit."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((6, 5))
    y = (rng.random((6, 5)) > 0.5).astype(np.float64)
    w = rng.integers(1, 4, (6, 5)).astype(np.float64)
    pw = rng.uniform(0.5, 2, 5)
    kw = dict(labels=y, weight=w, pos_weight=pw)
    what, how = variant.split("-", 1)
    a = kw[what]
    if how in ("strided", "negative", "fortran"):
        bad = apply_defect(how, a)
    elif how == "other-float":
        bad = a.astype(np.float32)
    elif how == "int":
        bad = a.astype(np.int32)
    elif how == "row":
        bad, kw["weight"] = w[:1].copy(), np.broadcast_to(w[:1], w.shape).copy()
    elif how == "(1,C)":
        bad = a.reshape(1, 5)
    else:
        bad = a.astype(np.dtype(how))
    if how == "other-float" and what != "labels":
        kw[what] = bad.astype(np.float64)          # the values the kernel sees
    expected = fusedopt.sigmoid_cross_entropy_and_grad(x, kw["labels"], weight=kw["weight"],
                                                       pos_weight=kw["pos_weight"],
                                                       reduction="none")
    kw2 = dict(kw, **{what: bad})
    snap = Snapshot(x, bad)
    got = fusedopt.sigmoid_cross_entropy_and_grad(x, kw2["labels"], weight=kw2["weight"],
                                                  pos_weight=kw2["pos_weight"],
                                                  reduction="none")
    snap.check()
    assert _same(got[0], expected[0]) and _same(got[1], expected[1])
