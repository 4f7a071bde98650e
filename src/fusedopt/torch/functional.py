"""fusedopt.torch.functional: torch losses whose forward runs fusedopt's fused kernel.

``cross_entropy`` and ``binary_cross_entropy_with_logits`` take the arguments of their
``torch.nn.functional`` namesakes and return the same values.  The forward computes the
loss and its gradient in one pass and keeps the gradient; the backward only multiplies
it by ``grad_output``, with no second pass over the logits.  When ``input`` does not
require grad, the gradient is not computed.  The formulas and their accuracy are those
of :func:`fusedopt.softmax_cross_entropy_and_grad` and
:func:`fusedopt.sigmoid_cross_entropy_and_grad`.

    >>> import torch, fusedopt.torch.functional as FF
    >>> x = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    >>> loss = FF.cross_entropy(x, torch.tensor([0]))
    >>> loss.backward()
    >>> round(loss.item(), 6), x.grad
    (0.169846, tensor([[-0.1562,  0.1142,  0.0420]]))

Supported: CPU tensors of float32 or float64 (``input`` is read through a contiguous
copy when it is not contiguous).  Anything else is a clear error naming the argument:
other devices (``ValueError``), dtypes (``TypeError``), a ``target`` or ``weight`` that
requires grad (``ValueError``: only the gradient with respect to ``input`` is computed),
and a second derivative (``RuntimeError`` from ``backward(create_graph=True)``).  Under
``torch.compile`` the loss runs eagerly (a graph break), with the same numbers.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, TypeVar, cast

import numpy as np
import torch

from .. import _losses

__all__ = ["cross_entropy", "binary_cross_entropy_with_logits",
           "CrossEntropyLoss", "BCEWithLogitsLoss"]

_FLOAT = (torch.float32, torch.float64)
# the argument names of the NumPy functions, in torch's words
_NAMES = (("logits", "input"), ("labels", "target"))


def _reduction(size_average: Optional[bool], reduce: Optional[bool], reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    from torch.nn import _reduction as legacy      # torch's own mapping of the old flags
    return str(legacy.legacy_get_string(size_average, reduce, emit_warning=True))


def _check_input(x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu" or x.layout != torch.strided:
        raise ValueError(f"input is on {x.device} ({x.layout}); fusedopt.torch losses run "
                         "on dense CPU tensors")
    if x.dtype not in _FLOAT:
        raise TypeError(f"input must be float32 or float64, got {x.dtype}")


def _aux(t: Any, name: str, dtype: torch.dtype) -> Any:
    """target / weight / pos_weight as a NumPy array, floating ones in input's dtype
    (None passes)."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu" or t.layout != torch.strided:
        raise ValueError(f"{name} is on {t.device} ({t.layout}); fusedopt.torch losses run "
                         "on dense CPU tensors")
    if t.requires_grad:
        raise ValueError(f"{name} requires grad; fusedopt.torch losses compute the gradient "
                         "with respect to input only (use torch.nn.functional for more)")
    if t.dtype.is_complex or t.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"{name} has dtype {t.dtype}; expected float32, float64 or (class "
                        "indices) an integer dtype")
    t = t.detach().contiguous()
    if t.dtype.is_floating_point:
        t = t.to(dtype)
    return t.numpy()


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs a NumPy loss, its errors worded with torch's argument names."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        msg = str(e)
        for ours, theirs in _NAMES:
            msg = msg.replace(ours, theirs)
        raise type(e)(msg) from None


class _FusedLoss(torch.autograd.Function):
    """loss and d loss / d input from one kernel call; backward scales the saved
    gradient by grad_output (per row or element for reduction "none")."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, run: Callable[[np.ndarray, bool], Tuple[Any, Any]],
                per_row: bool) -> torch.Tensor:
        want = ctx.needs_input_grad[0]
        loss, grad = run(x.detach().contiguous().numpy(), want)
        ctx.per_row = per_row
        if want:
            ctx.save_for_backward(torch.from_numpy(grad))
        if isinstance(loss, np.ndarray):
            return torch.from_numpy(loss)
        return torch.tensor(loss, dtype=x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        if torch.is_grad_enabled():        # backward(create_graph=True): a 2nd derivative
            raise RuntimeError(
                "fusedopt.torch losses have no second derivative: their backward scales "
                "the gradient saved by the forward pass. Use torch.nn.functional's loss "
                "where a double backward (create_graph=True) is needed")
        (grad,) = ctx.saved_tensors
        if grad_output.dim() == 0 and grad_output.item() == 1.0:
            # loss.backward(): the saved gradient itself; once the graph releases it,
            # autograd hands it to input.grad without a copy
            return grad, None, None
        go = grad_output.to(grad.dtype)
        if go.dim():
            go = go.reshape(go.shape + (1,) * (grad.dim() - go.dim())) if ctx.per_row else go
        return grad * go, None, None


def _apply(x: torch.Tensor, with_grad: Callable[..., Any], loss_only: Callable[..., Any],
           y: np.ndarray, per_row: bool, **kw: Any) -> torch.Tensor:
    """The loss of x by a NumPy loss pair (``*_and_grad`` and the loss alone, which the
    forward picks by whether x needs its gradient), through _FusedLoss."""
    def run(xa: np.ndarray, want: bool) -> Tuple[Any, Any]:
        if want:
            loss, grad = _call(with_grad, xa, y, **kw)
            return loss, grad
        return _call(loss_only, xa, y, **kw), None
    out = _FusedLoss.apply(x, run, per_row)  # type: ignore[no-untyped-call, unused-ignore]
    assert isinstance(out, torch.Tensor)
    return out


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _eager(fn: _Fn) -> _Fn:
    """Runs fn outside torch.compile's graphs (a graph break): it calls NumPy."""
    return cast(_Fn, torch.compiler.disable(fn))  # type: ignore[no-untyped-call]


@_eager
def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: Optional[torch.Tensor] = None, size_average: Optional[bool] = None,
                  ignore_index: int = -100, reduce: Optional[bool] = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` for (N, C) logits, through the fused softmax
    cross-entropy kernel (:func:`fusedopt.softmax_cross_entropy_and_grad`).

    ``target`` holds N class indices (any integer dtype) or (N, C) probabilities.
    (N, C, d1, ...) inputs and unbatched (C,) inputs are refused with a clear error.
    """
    red = _reduction(size_average, reduce, reduction)
    _check_input(input)
    y = _aux(target, "target", input.dtype)
    w = _aux(weight, "weight", input.dtype)
    return _apply(input, _losses.softmax_cross_entropy_and_grad, _losses.softmax_cross_entropy,
                  y, True, weight=w, ignore_index=ignore_index,
                  label_smoothing=label_smoothing, reduction=red)


@_eager
def binary_cross_entropy_with_logits(input: torch.Tensor, target: torch.Tensor,
                                     weight: Optional[torch.Tensor] = None,
                                     size_average: Optional[bool] = None,
                                     reduce: Optional[bool] = None, reduction: str = "mean",
                                     pos_weight: Optional[torch.Tensor] = None
                                     ) -> torch.Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits`` through the fused sigmoid
    cross-entropy kernel (:func:`fusedopt.sigmoid_cross_entropy_and_grad`): ``target`` of
    input's shape, ``weight`` broadcastable to it, ``pos_weight`` along the last axis."""
    red = _reduction(size_average, reduce, reduction)
    _check_input(input)
    y = _aux(target, "target", input.dtype)
    w = _aux(weight, "weight", input.dtype)
    pw = _aux(pos_weight, "pos_weight", input.dtype)
    return _apply(input, _losses.sigmoid_cross_entropy_and_grad, _losses.sigmoid_cross_entropy,
                  y, False, weight=w, pos_weight=pw, reduction=red)


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` (same constructor, buffers and state dict) whose
    forward is :func:`cross_entropy`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, weight=self.weight,
                             ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` (same constructor, buffers and state dict) whose
    forward is :func:`binary_cross_entropy_with_logits`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                reduction=self.reduction,
                                                pos_weight=self.pos_weight)
