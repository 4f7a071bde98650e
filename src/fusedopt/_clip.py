"""Gradient clipping by the total norm: ``torch.nn.utils.clip_grad_norm_``'s rule in one
multi-tensor reduction pass, and the clip coefficient that the optimizers' ``max_grad_norm``
applies inside their update pass (so that clipping costs one read of the gradients)."""
from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import numpy as np

from . import _core

__all__ = ["clip_grad_norm_"]

#: torch's term added to the total norm before the division (``total_norm + 1e-6``)
CLIP_EPS = 1e-6


def total_norm(grads: List[Any], index: List[int], norm_type: Any,
               n_threads: Optional[int], held: Optional[List[Any]] = None
               ) -> Tuple[float, Any]:
    """The norm of the arrays as one vector (any mix of float32 and float64), and its
    dtype as torch's result has it (float64 when any array is).  Accumulated in double,
    in a fixed order, then rounded to that dtype.  ``held``: a list that receives the
    calls' arrays, checked for writing, for :func:`scale`."""
    groups = _core.split_dtypes(grads, index)
    acc, p, inf = 0.0, 2.0, False
    for gs, idx in groups:
        if held is None:
            part, p = _core.grad_norm(gs, norm_type, n_threads, "grads", False, idx)
        else:
            part, p, tl = _core.grad_norm(gs, norm_type, n_threads, "grads", False, idx,
                                          True, True)
            held.append(tl)
        if p == math.inf:
            inf = True
            acc = part if (part > acc or part != part) and acc == acc else acc
        else:
            acc += part
    if not groups:
        p = _core.grad_norm([], norm_type, n_threads)[1]    # (validates norm_type)
        inf = p == math.inf
    dtype = np.dtype(np.float64 if any(gs[0].dtype == np.float64 for gs, _ in groups)
                     else np.float32)
    if not inf:
        acc = math.sqrt(acc) if p == 2.0 else acc if p == 1.0 else acc ** (1.0 / p)
    with np.errstate(over="ignore"):          # (a norm past float32's range is inf)
        return float(dtype.type(acc)), dtype


def clip_coef(total: float, max_norm: float, dtype: Any) -> float:
    """torch's clip coefficient ``clamp(max_norm / (total + 1e-6), max=1)``, rounded as
    torch computes it: in the norm's dtype, the division as ``(total + 1e-6).reciprocal()
    * max_norm`` (``Tensor.__rtruediv__``); NaN for a NaN norm, 0 for an infinite one."""
    T = np.dtype(dtype).type
    with np.errstate(all="ignore"):
        c = (T(1) / (T(total) + T(CLIP_EPS))) * T(max_norm)
    return float(np.minimum(c, T(1)))


def check_max_norm(max_norm: Any, name: str = "max_norm") -> float:
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.integer,
                                                               np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(max_norm).__name__}")
    v = float(max_norm)
    if not v >= 0.0:
        raise ValueError(f"{name} must be >= 0 (inf: no clipping), got {max_norm!r}")
    return v


def scale(held: List[Any], coef: float, n_threads: Optional[int]) -> None:
    """Multiplies the arrays :func:`total_norm` held by ``coef`` (rounded to each one's
    dtype) in place."""
    for tl in held:
        _core.scale_held(tl, coef, n_threads)


def clip_grad_norm_(grads: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, *,
                    n_threads: Optional[int] = None) -> float:
    """Scales the gradients in place so that their total norm is at most ``max_norm``,
    and returns the total norm they had: ``torch.nn.utils.clip_grad_norm_``'s rule.

    The norm is over all elements of all arrays as one vector (``norm_type`` p > 0, or
    ``inf`` for the largest absolute value); each array is multiplied by
    ``min(max_norm / (norm + 1e-6), 1)`` (torch's coefficient and rounding; a NaN norm
    makes every gradient NaN, an infinite one every finite gradient 0, as torch).  One C
    call per dtype reads every gradient once (in double, in a fixed order: the result is
    the same for every thread count and CPU path), and the scaling writes them only when
    the coefficient is below 1.  To clip inside an optimizer's own pass, with no extra
    write, give the optimizer ``max_grad_norm=``.

    Args:
        grads: an array or a list of arrays (float32 or float64, C-contiguous, writeable;
            None entries are skipped).
        max_norm: the largest total norm kept (>= 0; inf: finite norms are only measured).
        norm_type: p > 0, or ``float("inf")``.
        error_if_nonfinite: raise RuntimeError (changing nothing) when the norm is NaN or
            infinite.
        n_threads: threads for this call.

    Returns:
        The total norm before clipping, a float (rounded to float32 when every array is
        float32, as torch's result tensor).

    >>> import numpy as np, fusedopt
    >>> g = [np.array([3.0, 0.0]), np.array([4.0])]
    >>> fusedopt.clip_grad_norm_(g, max_norm=1.0)
    5.0
    >>> g[0], g[1]
    (array([0.6, 0. ]), array([0.8]))
    """
    if isinstance(grads, np.ndarray):
        grads = [grads]
    elif isinstance(grads, (str, bytes)) or not hasattr(grads, "__iter__"):
        raise TypeError(f"grads must be a list of numpy.ndarray, got {type(grads).__name__}")
    grads = list(grads)
    index = [i for i, g in enumerate(grads) if g is not None]
    arrays = [grads[i] for i in index]
    mx = check_max_norm(max_norm)
    if not isinstance(error_if_nonfinite, (bool, np.bool_)):
        raise TypeError("error_if_nonfinite must be a bool, got "
                        f"{type(error_if_nonfinite).__name__}")
    held: List[Any] = []
    total, dtype = total_norm(arrays, index, norm_type, n_threads, held)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {float(norm_type)} for the gradients "
                           "is non-finite, so it cannot be clipped; nothing was changed "
                           "(error_if_nonfinite=False scales them by it anyway)")
    coef = clip_coef(total, mx, dtype)
    if coef != 1.0:
        scale(held, coef, n_threads)
    return total
