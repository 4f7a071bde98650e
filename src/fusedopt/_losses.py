"""Losses with their gradient, fused in one pass over memory.

Each ``*_and_grad`` function returns ``(loss, grad)`` where ``grad`` is d loss / d input
for the chosen reduction.  The loss of ``reduction="mean"`` or ``"sum"`` is a Python
float accumulated in double in fixed blocks (independent of the thread count); with
``reduction="none"`` it is the elementwise array and ``grad`` the elementwise derivative.
The formulas, written plainly, are in :mod:`fusedopt.reference`.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

from . import _core

Loss = Union[float, np.ndarray]
ArrayOrNumber = Union[np.ndarray, float]


def sigmoid_cross_entropy_and_grad(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    weight: Optional[ArrayOrNumber] = None,
    pos_weight: Optional[ArrayOrNumber] = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    out: Optional[np.ndarray] = None,
    n_threads: Optional[int] = None,
) -> Tuple[Loss, np.ndarray]:
    """Sigmoid cross-entropy with logits and its gradient, in one pass.

    Per element, with ``y' = y*(1 - label_smoothing) + label_smoothing/2`` (Keras / TF1
    label smoothing toward 0.5), ``lw = (pos_weight - 1)*y' + 1`` and ``w = weight``::

        loss = w * ((1 - y')*x + lw*(log1p(exp(-|x|)) + max(-x, 0)))
        grad = w * (lw*sigmoid(x) - pos_weight*y') / N        (N = x.size for "mean", else 1)

    which is ``torch.nn.functional.binary_cross_entropy_with_logits`` (``pos_weight``
    broadcast along the last axis, ``weight`` broadcastable to the logits; "mean" averages
    over all elements without renormalising by the weights) and, without weights,
    ``tf.nn.sigmoid_cross_entropy_with_logits`` / ``optax.sigmoid_binary_cross_entropy``.
    Stable for every finite logit (x = +-1e20 gives the exact 0 or |x|); NaN propagates.
    The first two terms are added by hand (``pw*y'*(-x)`` for x < 0), so that soft labels
    in [0, 1] lose nothing to cancellation: every element is within a few ulp of the
    exact loss (4.5 eps relative without weights, smoothing or ``pos_weight``, 8.5 eps with
    them), as TensorFlow and scikit-learn are; the textbook form, which torch evaluates,
    loses up to hundreds of ulp for x < 0 and 0 < y < 1.  For infinite logits the loss is
    the limit where one exists (``(+inf, 0)`` and ``(-inf, 1)`` give +inf) and NaN where
    it is ``0*inf``.

    Args:
        logits: float32 or float64 array, any shape.
        labels: same shape; bool, any integer or float dtype (cast to the logits' dtype;
            bool/uint8 are read as bytes without a copy).
        weight: scalar or array broadcastable to ``logits`` (element weight).
        pos_weight: scalar or vector along the last axis (weight of positive labels).
        label_smoothing: in [0, 1].
        reduction: "mean" (over all elements), "sum" or "none".
        out: optional C-contiguous writeable array like ``logits`` for the gradient.
        n_threads: threads for this call (default: ``fusedopt.get_num_threads()``).

    Returns:
        ``(loss, grad)``: a float (or an array for "none"), and the gradient array.

    Raises:
        TypeError: an argument is not an ndarray, or has an unsupported dtype.
        ValueError: shapes differ (no broadcasting of labels), ``out`` is read-only, not
            contiguous or shares memory with an input, bad reduction or smoothing.

    >>> import numpy as np, fusedopt
    >>> x = np.array([1e20, -1e20, 0.0])
    >>> loss, g = fusedopt.sigmoid_cross_entropy_and_grad(x, np.array([0, 0, 1]), reduction="none")
    >>> loss
    array([1.00000000e+20, 0.00000000e+00, 6.93147181e-01])
    >>> g
    array([ 1. ,  0. , -0.5])
    """
    return _core.sigmoid_ce(logits, labels, weight, pos_weight, label_smoothing, reduction,
                            out, True, n_threads)


def sigmoid_cross_entropy(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    weight: Optional[ArrayOrNumber] = None,
    pos_weight: Optional[ArrayOrNumber] = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    n_threads: Optional[int] = None,
) -> Loss:
    """Sigmoid cross-entropy with logits (the loss of
    :func:`sigmoid_cross_entropy_and_grad`, without computing the gradient).

    >>> import numpy as np, fusedopt
    >>> round(fusedopt.sigmoid_cross_entropy(np.zeros(4), np.ones(4)), 6)
    0.693147
    """
    return _core.sigmoid_ce(logits, labels, weight, pos_weight, label_smoothing, reduction,
                            None, False, n_threads)[0]


def softmax_cross_entropy_and_grad(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    weight: Optional[np.ndarray] = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    out: Optional[np.ndarray] = None,
    n_threads: Optional[int] = None,
) -> Tuple[Loss, np.ndarray]:
    """Softmax cross-entropy with logits and its gradient, in one pass over each row.

    ``logits`` is (N, C): one row of class scores per sample.  ``labels`` is either N
    integer class indices or (N, C) probabilities.  Per row, with ``log p = log_softmax(x)``,
    ``w`` the class weights (ones by default) and ``ls`` the label smoothing::

        class index y:   loss = (1-ls)*w[y]*(-log p[y]) + (ls/C)*sum_c w[c]*(-log p[c])
        probabilities q: loss = -sum_c w[c]*(q[c]*(1-ls) + ls/C)*log p[c]
        grad = T*softmax(x) - t       (t the weights of -log p above, T = sum_c t[c])

    which is ``torch.nn.functional.cross_entropy`` (``weight``, ``ignore_index``,
    ``label_smoothing``; "mean" divides by the sum of ``w[y]`` over the rows not ignored,
    or by N for probabilities), ``tf.nn.(sparse_)softmax_cross_entropy_with_logits``,
    Keras' ``(sparse_)categorical_crossentropy(from_logits=True)``,
    ``optax.softmax_cross_entropy(_with_integer_labels)`` and scikit-learn's
    ``HalfMultinomialLoss``.  Rows whose label is ``ignore_index`` have loss 0 and
    gradient 0.

    The row's maximum m is subtracted first and ``-log p[c]`` is computed as
    ``(m - x[c]) + log1p(r)`` (r: the sum of exp(x - m) over every element but one
    maximum), two non-negative terms, with the sums in double in a fixed order: logits of
    +-1e20 and -inf (masked classes) are exact, results are the same for every thread
    count and CPU path, and a confident prediction's small loss keeps its digits.  A
    probability of 0 contributes nothing, also where its logit is -inf (torch, TF and
    optax give NaN there: 0 * -inf).  A row of only -inf logits gives NaN, as in torch.

    Threads share out the rows; with fewer rows than threads (one sequence's logits over
    a large vocabulary, say), each row is cut across the threads instead, chunk by
    chunk, with the same results.

    Args:
        logits: float32 or float64 array of shape (N, C), C >= 1.  For (N, C, d1, ...)
            move the class axis last and flatten: ``np.moveaxis(x, 1, -1).reshape(-1, C)``.
        labels: integer class indices of shape (N,) (any integer dtype), or float
            probabilities of shape (N, C) (cast to the logits' dtype).
        weight: optional class weights, shape (C,).
        ignore_index: class index whose rows are skipped (class-index labels only).
        label_smoothing: in [0, 1].
        reduction: "mean", "sum" or "none" (the (N,) array of row losses).
        out: optional C-contiguous writeable array like ``logits`` for the gradient.
        n_threads: threads for this call (default: ``fusedopt.get_num_threads()``).

    Returns:
        ``(loss, grad)``: a float (or an (N,) array for "none"), and the gradient of the
        loss with respect to the logits, shaped like them.

    Raises:
        TypeError: an argument is not an ndarray, or has an unsupported dtype.
        ValueError: logits are not 2-D, a class index is out of range, probabilities or
            weight have the wrong shape, ``out`` is read-only, not contiguous or shares
            memory with an input, bad reduction or smoothing.  Nothing is written then.

    >>> import numpy as np, fusedopt
    >>> x = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> loss, g = fusedopt.softmax_cross_entropy_and_grad(x, np.array([0, 2]), reduction="none")
    >>> loss.round(6)
    array([0.169846, 1.098612])
    >>> g.round(4)
    array([[-0.1562,  0.1142,  0.042 ],
           [ 0.3333,  0.3333, -0.6667]])
    """
    return _core.softmax_ce(logits, labels, weight, ignore_index, label_smoothing, reduction,
                            out, True, n_threads)


def softmax_cross_entropy(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    weight: Optional[np.ndarray] = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    n_threads: Optional[int] = None,
) -> Loss:
    """Softmax cross-entropy with logits (the loss of
    :func:`softmax_cross_entropy_and_grad`, without computing the gradient).

    >>> import numpy as np, fusedopt
    >>> round(fusedopt.softmax_cross_entropy(np.zeros((2, 4)), np.array([1, 3])), 6)
    1.386294
    """
    return _core.softmax_ce(logits, labels, weight, ignore_index, label_smoothing, reduction,
                            None, False, n_threads)[0]


def l1_loss_and_grad(pred: np.ndarray, target: np.ndarray, *,
                     weight: Optional[ArrayOrNumber] = None, reduction: str = "mean",
                     out: Optional[np.ndarray] = None,
                     n_threads: Optional[int] = None) -> Tuple[Loss, np.ndarray]:
    """Absolute error ``w*|pred - target|`` and its gradient ``w*sgn(pred - target)/N``
    (``sgn(0) = 0``, as ``torch.nn.functional.l1_loss``).  ``reduction="sum"`` is the
    L1 norm ``sum |pred - target|``.  Arguments and errors as
    :func:`sigmoid_cross_entropy_and_grad` (``target`` must match ``pred``'s dtype).

    >>> import numpy as np, fusedopt
    >>> fusedopt.l1_loss_and_grad(np.array([1.0, 2.0]), np.array([0.0, 4.0]), reduction="sum")
    (3.0, array([ 1., -1.]))
    """
    return _core.regression(0, pred, target, weight, reduction, out, True, n_threads)


def l1_loss(pred: np.ndarray, target: np.ndarray, *, weight: Optional[ArrayOrNumber] = None,
            reduction: str = "mean", n_threads: Optional[int] = None) -> Loss:
    """Absolute error ``w*|pred - target|`` (see :func:`l1_loss_and_grad`).

    >>> import numpy as np, fusedopt
    >>> fusedopt.l1_loss(np.array([1.0, 2.0]), np.array([0.0, 4.0]))
    1.5
    """
    return _core.regression(0, pred, target, weight, reduction, None, False, n_threads)[0]


def l2_loss_and_grad(pred: np.ndarray, target: np.ndarray, *,
                     weight: Optional[ArrayOrNumber] = None, reduction: str = "mean",
                     out: Optional[np.ndarray] = None,
                     n_threads: Optional[int] = None) -> Tuple[Loss, np.ndarray]:
    """Squared error ``w*(pred - target)**2`` and its gradient ``2*w*(pred - target)/N``
    (``torch.nn.functional.mse_loss``; not halved).  ``reduction="sum"`` is
    ``sum (pred - target)**2``.

    >>> import numpy as np, fusedopt
    >>> fusedopt.l2_loss_and_grad(np.array([1.0, 2.0]), np.array([0.0, 4.0]), reduction="sum")
    (5.0, array([ 2., -4.]))
    """
    return _core.regression(1, pred, target, weight, reduction, out, True, n_threads)


def l2_loss(pred: np.ndarray, target: np.ndarray, *, weight: Optional[ArrayOrNumber] = None,
            reduction: str = "mean", n_threads: Optional[int] = None) -> Loss:
    """Squared error ``w*(pred - target)**2`` (see :func:`l2_loss_and_grad`).

    >>> import numpy as np, fusedopt
    >>> fusedopt.l2_loss(np.array([1.0, 2.0]), np.array([0.0, 4.0]))
    2.5
    """
    return _core.regression(1, pred, target, weight, reduction, None, False, n_threads)[0]
