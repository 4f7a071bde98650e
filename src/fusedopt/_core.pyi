"""Type stub of fusedopt._core, the compiled binding (src/fusedopt/_core.pyx).

Not a public module: the ``fusedopt`` package wraps every function here.  Each function
validates its arguments at run time (dtype, shape, C-contiguity, writability, aliasing,
finite hyper-parameters) and raises TypeError / ValueError naming the argument; the
types below state what a valid call passes.  Arrays are float32 or float64 (checked at
run time: the annotation cannot exclude float16 or longdouble) and C-contiguous.
Keep in step with _core.pyx: ``python -m mypy.stubtest fusedopt._core`` (run by
tests/test_typing.py) compares the two.
"""
from typing import Any, Final, Literal, TypedDict, TypeVar, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_FloatArray = npt.NDArray[np.floating[Any]]
_FloatT = TypeVar("_FloatT", bound=np.floating[Any])
# loss of reduction "mean" / "sum" (a float accumulated in double) or "none" (an array)
_Loss = float | npt.NDArray[np.floating[Any]]
_Isa = Literal["baseline", "avx2", "avx512", "sve"]

class _RuntimeInfo(TypedDict):
    """runtime_info()'s dict (keep in step with _core.pyx)."""
    isa: _Isa
    detected: _Isa
    built: tuple[_Isa, ...]
    paths: tuple[_Isa, ...]
    openmp: bool
    max_threads: int
    default_threads: int
    parallel_threshold: int
    forked_single_threaded: bool
    adaptive_threads: bool
    block: int
    compiler: str
    build_flags: str

CONVENTIONS: Final[tuple[str, str, str, str, str]]
ISA_NAMES: Final[tuple[str, str, str, str]]
# pattern -> (fo_stream code, reads per element, writes per element)
STREAM_PATTERNS: Final[dict[str, tuple[int, int, int]]]

# Cython's doctest dictionary (the autotestdict directive): empty, no docstring tests
__test__: dict[str, str]

@disjoint_base
class Buffers:
    """The buffers one loss call holds (a cdef class with C fields: internal to the
    binding, not constructed from Python code)."""

def check_distinct(arrays: list[npt.NDArray[Any]], name: str = "params") -> None: ...
@disjoint_base
class TensorLists:
    """The arrays of one multi-tensor call (a cdef class with C fields: internal to the
    binding)."""
    n: int
    dtype: int
    def __new__(cls, n: int, names: tuple[str, ...]) -> TensorLists: ...

@disjoint_base
class StepPlan:
    """A class's batch of arrays held across steps (see the binding)."""
    @property
    def step(self) -> int: ...
    def __new__(cls, tl: TensorLists, state: dict[int, dict[str, Any]], index: list[int],
                keys: tuple[str | None, ...]) -> StepPlan: ...
    def ready(self, state: dict[int, dict[str, Any]], grads: list[Any]) -> bool: ...
    def release(self) -> None: ...
    def commit(self) -> None: ...

def adam(
    arrays: list[list[_FloatArray] | None] | None,
    hyper: dict[str, Any],
    defaults: dict[str, Any],
    step: int,
    n_threads: int | None = None,
    pname: str = "param",
    single: bool = False,
    index: list[int] | None = None,
    dry: bool = False,
    plan: StepPlan | None = None,
    keep: bool = False,
    grad_scale: float = 1.0,
) -> TensorLists | None: ...
def sgd(
    arrays: list[list[_FloatArray] | None] | None,
    hyper: dict[str, Any],
    defaults: dict[str, Any],
    step: int | None,
    n_threads: int | None = None,
    pname: str = "param",
    single: bool = False,
    index: list[int] | None = None,
    dry: bool = False,
    plan: StepPlan | None = None,
    keep: bool = False,
    grad_scale: float = 1.0,
) -> TensorLists | None: ...
# the functional steps (fusedopt.adam_step, fusedopt.sgd_step: documented there, with the
# description's defaults, given by set_defaults, as their signatures)
DEFAULT: Final[object]
REQUIRED: Final[object]
def set_defaults(name: str, defaults: dict[str, Any]) -> None: ...
def adam_step(
    param: _FloatArray, grad: _FloatArray, exp_avg: _FloatArray,
    exp_avg_sq: _FloatArray, *, step: int, max_exp_avg_sq: _FloatArray | None = None,
    lr: float = ..., betas: tuple[float, float] = ..., eps: float = ...,
    weight_decay: float = ..., amsgrad: bool = ..., maximize: bool = ...,
    decoupled_weight_decay: bool = ..., convention: str = ..., eps_root: float = ...,
    n_threads: int | None = None,
) -> None: ...
def sgd_step(
    param: _FloatArray, grad: _FloatArray, momentum_buffer: _FloatArray | None = None, *,
    step: int | None = None, lr: float, momentum: float = ..., dampening: float = ...,
    nesterov: bool = ..., weight_decay: float = ..., maximize: bool = ...,
    convention: str = ..., n_threads: int | None = None,
) -> None: ...
def lion(
    arrays: list[list[_FloatArray] | None] | None,
    hyper: dict[str, Any],
    defaults: dict[str, Any],
    step: int | None,
    n_threads: int | None = None,
    pname: str = "param",
    single: bool = False,
    index: list[int] | None = None,
    dry: bool = False,
    plan: StepPlan | None = None,
    keep: bool = False,
    grad_scale: float = 1.0,
) -> TensorLists | None: ...
def lion_step(
    param: _FloatArray, grad: _FloatArray, exp_avg: _FloatArray, *, lr: float = ...,
    betas: tuple[float, float] = ..., weight_decay: float = ..., convention: str = ...,
    n_threads: int | None = None,
) -> None: ...
def adagrad(
    arrays: list[list[_FloatArray] | None] | None,
    hyper: dict[str, Any],
    defaults: dict[str, Any],
    step: int | None,
    n_threads: int | None = None,
    pname: str = "param",
    single: bool = False,
    index: list[int] | None = None,
    dry: bool = False,
    plan: StepPlan | None = None,
    keep: bool = False,
    grad_scale: float = 1.0,
) -> TensorLists | None: ...
def adagrad_step(
    param: _FloatArray, grad: _FloatArray, state_sum: _FloatArray, *,
    step: int | None = None, lr: float = ..., lr_decay: float = ...,
    weight_decay: float = ..., eps: float = ..., maximize: bool = ..., convention: str = ...,
    n_threads: int | None = None,
) -> None: ...
def rmsprop(
    arrays: list[list[_FloatArray] | None] | None,
    hyper: dict[str, Any],
    defaults: dict[str, Any],
    step: int | None,
    n_threads: int | None = None,
    pname: str = "param",
    single: bool = False,
    index: list[int] | None = None,
    dry: bool = False,
    plan: StepPlan | None = None,
    keep: bool = False,
    grad_scale: float = 1.0,
) -> TensorLists | None: ...
def rmsprop_step(
    param: _FloatArray, grad: _FloatArray, square_avg: _FloatArray,
    momentum_buffer: _FloatArray | None = None, grad_avg: _FloatArray | None = None, *,
    lr: float = ..., alpha: float = ..., eps: float = ..., weight_decay: float = ...,
    momentum: float = ..., centered: bool = ..., maximize: bool = ..., convention: str = ...,
    n_threads: int | None = None,
) -> None: ...
OPTAX_MIN_DIM_TO_FACTOR: int
def adafactor_factoring(
    shape: tuple[int, ...], convention: str = "torch"
) -> tuple[int, int, bool] | None: ...
def adafactor(
    arrays: list[list[_FloatArray | None] | None] | None,
    hyper: dict[str, Any],
    defaults: dict[str, Any],
    step: int | None,
    n_threads: int | None = None,
    pname: str = "param",
    single: bool = False,
    index: list[int] | None = None,
    dry: bool = False,
    plan: StepPlan | None = None,
    keep: bool = False,
    grad_scale: float = 1.0,
) -> None: ...
def adafactor_step(
    param: _FloatArray, grad: _FloatArray, row_var: _FloatArray | None = None,
    col_var: _FloatArray | None = None, variance: _FloatArray | None = None, *,
    step: int, lr: float = ..., beta2_decay: float = ...,
    eps: tuple[float | None, float] = ..., d: float = ..., weight_decay: float = ...,
    maximize: bool = ..., convention: str = ..., n_threads: int | None = None,
) -> None: ...
def lamb(
    arrays: list[list[_FloatArray] | None] | None,
    hyper: dict[str, Any],
    defaults: dict[str, Any],
    step: int | None,
    n_threads: int | None = None,
    pname: str = "param",
    single: bool = False,
    index: list[int] | None = None,
    dry: bool = False,
    plan: StepPlan | None = None,
    keep: bool = False,
    grad_scale: float = 1.0,
) -> TensorLists | None: ...
def lamb_step(
    param: _FloatArray, grad: _FloatArray, exp_avg: _FloatArray,
    exp_avg_sq: _FloatArray, *, step: int, lr: float = ...,
    betas: tuple[float, float] = ..., eps: float = ..., weight_decay: float = ...,
    convention: str = ..., n_threads: int | None = None,
) -> None: ...
def grad_norm(
    grads: list[_FloatArray],
    norm_type: float,
    n_threads: int | None,
    name: str = "grads",
    single: bool = False,
    index: list[int] | None = None,
    writable: bool = False,
    keep: bool = False,
) -> Any: ...
def scale_held(tl: TensorLists, scale: float, n_threads: int | None) -> None: ...
def split_dtypes(
    arrays: list[Any], index: list[int]
) -> list[tuple[list[Any], list[int]]]: ...
def unscale_check(
    grads: list[_FloatArray],
    scale: float | None,
    n_threads: int | None,
    name: str = "grads",
    single: bool = False,
    index: list[int] | None = None,
    dry: bool = False,
) -> bool: ...
@overload
def sigmoid_ce(
    logits: _FloatArray,
    labels: npt.NDArray[np.bool_ | np.integer[Any] | np.floating[Any]],
    weight: _FloatArray | float | None,
    pos_weight: _FloatArray | float | None,
    label_smoothing: float,
    reduction: str,
    out: _FloatArray | None,
    want_grad: Literal[True],
    n_threads: int | None,
) -> tuple[_Loss, _FloatArray]: ...
@overload
def sigmoid_ce(
    logits: _FloatArray,
    labels: npt.NDArray[np.bool_ | np.integer[Any] | np.floating[Any]],
    weight: _FloatArray | float | None,
    pos_weight: _FloatArray | float | None,
    label_smoothing: float,
    reduction: str,
    out: None,
    want_grad: Literal[False],
    n_threads: int | None,
) -> tuple[_Loss, None]: ...
@overload
def softmax_ce(
    logits: _FloatArray,
    labels: npt.NDArray[np.integer[Any] | np.floating[Any]],
    weight: _FloatArray | None,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    out: _FloatArray | None,
    want_grad: Literal[True],
    n_threads: int | None,
) -> tuple[_Loss, _FloatArray]: ...
@overload
def softmax_ce(
    logits: _FloatArray,
    labels: npt.NDArray[np.integer[Any] | np.floating[Any]],
    weight: _FloatArray | None,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    out: None,
    want_grad: Literal[False],
    n_threads: int | None,
) -> tuple[_Loss, None]: ...
@overload
def regression(
    kind: Literal[0, 1],
    pred: _FloatArray,
    target: _FloatArray,
    weight: _FloatArray | float | None,
    reduction: str,
    out: _FloatArray | None,
    want_grad: Literal[True],
    n_threads: int | None,
) -> tuple[_Loss, _FloatArray]: ...
@overload
def regression(
    kind: Literal[0, 1],
    pred: _FloatArray,
    target: _FloatArray,
    weight: _FloatArray | float | None,
    reduction: str,
    out: None,
    want_grad: Literal[False],
    n_threads: int | None,
) -> tuple[_Loss, None]: ...
def _elementwise(which: Literal[0, 1], x: npt.NDArray[_FloatT]) -> npt.NDArray[_FloatT]: ...
def stream(
    pattern: Literal["copy", "triad", "adam", "sgd", "loss"],
    a: _FloatArray,
    b: _FloatArray,
    c: _FloatArray,
    d: _FloatArray,
    n_threads: int | None = None,
) -> tuple[int, int]: ...
def select_isa(cap: int) -> _Isa: ...
def runtime_info() -> _RuntimeInfo: ...
def set_default_threads(n: int) -> None: ...
def set_parallel_threshold(n: int) -> None: ...
def set_adaptive_threads(on: bool) -> None: ...
def clock() -> float: ...
def threaded_regions() -> int: ...
def _adapt_reset() -> None: ...
def _adapt_note(now: float, wall: float, own: float, used: int) -> None: ...
def _adapt_serial(now: float) -> bool: ...
def _adapt_state(now: float) -> dict[str, float]: ...
