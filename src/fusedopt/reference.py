"""fusedopt.reference: every kernel of fusedopt written plainly in NumPy.

This module is the test oracle and the readable statement of each formula; fusedopt's
compiled code never calls it.  Losses are computed in float64 (the clearest statement of
the math) and returned in the input's dtype; optimizer updates are computed in the
parameter's dtype in the order of operations of the framework each convention follows
(``SEMANTICS`` of the README), so that they agree with the kernels to the last bits.
The signatures are those of the ``fusedopt`` functions of the same names.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import numpy as np
from numpy.typing import DTypeLike

from . import _spec
from ._spec import CONVENTIONS
_Loss = Union[float, np.ndarray]
_ArrayOrNumber = Union[np.ndarray, float]


# ----------------------------------------------------------------------------- losses

def _reduce(loss64: np.ndarray, dtype: DTypeLike, reduction: str) -> _Loss:
    if reduction == "mean":
        return float(loss64.mean()) if loss64.size else float("nan")
    if reduction == "sum":
        return float(loss64.sum())
    if reduction == "none":
        return loss64.astype(dtype)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _scale(n: int, reduction: str) -> float:
    return 1.0 / n if reduction == "mean" and n else 1.0


def sigmoid_cross_entropy_and_grad(logits: np.ndarray, labels: np.ndarray, *,
                                   weight: Optional[_ArrayOrNumber] = None,
                                   pos_weight: Optional[_ArrayOrNumber] = None,
                                   label_smoothing: float = 0.0, reduction: str = "mean",
                                   out: Optional[np.ndarray] = None,
                                   n_threads: Optional[int] = None) -> Tuple[_Loss, np.ndarray]:
    """torch's ``binary_cross_entropy_with_logits`` with Keras/TF1 label smoothing:

    y' = y*(1-ls) + ls/2;  lw = (pw-1)*y' + 1
    loss = w*((1-y')*x + lw*(log1p(exp(-|x|)) + max(-x, 0)))
    grad = w*(lw*sigmoid(x) - pw*y') / N

    The loss is evaluated without cancellation: (1-y')*x + lw*max(-x, 0) is pw*y'*(-x)
    for x < 0, and 1-y' = (1-y)*(1-ls) + ls/2, lw = (1-y') + pw*y'.
    """
    x = np.asarray(logits, dtype=np.float64)
    y0 = np.asarray(labels).astype(np.float64)
    y = y0 * (1.0 - label_smoothing) + 0.5 * label_smoothing
    omy = (1.0 - y0) * (1.0 - label_smoothing) + 0.5 * label_smoothing
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    w = 1.0 if weight is None else np.asarray(weight, dtype=np.float64)
    lw = omy + pw * y
    with np.errstate(over="ignore", invalid="ignore"):
        log1pexp = np.log1p(np.exp(-np.abs(x)))
        loss = w * (np.where(x >= 0, omy * x, pw * y * -x) + lw * log1pexp)
        # sigmoid(x) - y' without cancellation (scikit-learn's HalfBinomialLoss form)
        e = np.exp(-np.abs(x))
        num = np.where(x >= 0, omy - pw * y * e, omy * e - pw * y)
        grad = w * (num / (1.0 + e)) * _scale(x.size, reduction)
    dtype = np.asarray(logits).dtype
    grad = grad.astype(dtype)
    if out is not None:
        out[...] = grad
        grad = out
    return _reduce(np.broadcast_to(loss, x.shape), dtype, reduction), grad


def sigmoid_cross_entropy(logits: np.ndarray, labels: np.ndarray, *,
                          weight: Optional[_ArrayOrNumber] = None,
                          pos_weight: Optional[_ArrayOrNumber] = None,
                          label_smoothing: float = 0.0, reduction: str = "mean",
                          n_threads: Optional[int] = None) -> _Loss:
    return sigmoid_cross_entropy_and_grad(logits, labels, weight=weight, pos_weight=pos_weight,
                                          label_smoothing=label_smoothing,
                                          reduction=reduction)[0]


def softmax_cross_entropy_and_grad(logits: np.ndarray, labels: np.ndarray, *,
                                   weight: Optional[np.ndarray] = None,
                                   ignore_index: int = -100, label_smoothing: float = 0.0,
                                   reduction: str = "mean", out: Optional[np.ndarray] = None,
                                   n_threads: Optional[int] = None
                                   ) -> Tuple[_Loss, np.ndarray]:
    """torch's ``cross_entropy`` over (N, C) logits, class indices or probabilities:

    -log p[c] = (m - x[c]) + log(sum_j exp(x[j] - m)),  m = max_j x[j]
    t[c] = (1-ls)*w[y]*[c == y] + (ls/C)*w[c]   (class index y; 0 for ignored rows)
    t[c] = w[c]*(q[c]*(1-ls) + ls/C)            (probabilities q)
    loss = sum_c t[c]*(-log p[c])   (a zero t[c] adds 0);  grad = (T*p - t)/den
    den = sum of w[y] over rows not ignored (class indices) or N, for "mean"; else 1.

    Computed in float64, or in long double when the logits are long double (the tests'
    exact values).
    """
    x0 = np.asarray(logits)
    work = np.result_type(x0.dtype, np.float64)
    x = x0.astype(work)
    n, c = x.shape
    w = np.ones(c, work) if weight is None else np.asarray(weight).astype(work)
    ls = work.type(label_smoothing)
    lab = np.asarray(labels)
    if lab.dtype.kind in "iu":
        keep = lab != ignore_index
        y = np.where(keep, lab, 0).astype(np.intp)
        t = (ls / c) * w[None, :] * keep[:, None]
        t[np.arange(n), y] += (1 - ls) * w[y] * keep
        den = (w[y] * keep).sum()
    else:
        t = w * (lab.astype(work) * (1 - ls) + ls / c)
        den = work.type(n)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = x.max(axis=1, keepdims=True)
        e = np.exp(x - m)
        s = e.sum(axis=1, keepdims=True)
        nlogp = (m - x) + np.log(s)
        rows = np.where(t != 0, t * nlogp, 0).sum(axis=1)
        scale = 1 / den if reduction == "mean" else 1
        grad = (t.sum(axis=1, keepdims=True) * (e / s) - t) * scale
    dtype = x0.dtype
    grad = grad.astype(dtype)
    if out is not None:
        out[...] = grad
        grad = out
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(rows.sum() / den), grad
    if reduction == "sum":
        return float(rows.sum()), grad
    if reduction == "none":
        return rows.astype(dtype), grad
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, *,
                          weight: Optional[np.ndarray] = None, ignore_index: int = -100,
                          label_smoothing: float = 0.0, reduction: str = "mean",
                          n_threads: Optional[int] = None) -> _Loss:
    return softmax_cross_entropy_and_grad(logits, labels, weight=weight,
                                          ignore_index=ignore_index,
                                          label_smoothing=label_smoothing,
                                          reduction=reduction)[0]


def l1_loss_and_grad(pred: np.ndarray, target: np.ndarray, *,
                     weight: Optional[_ArrayOrNumber] = None, reduction: str = "mean",
                     out: Optional[np.ndarray] = None,
                     n_threads: Optional[int] = None) -> Tuple[_Loss, np.ndarray]:
    """loss = w*|p - t|;  grad = w*sign(p - t)/N (sign(0) = 0, torch)."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    w = 1.0 if weight is None else np.asarray(weight, dtype=np.float64)
    loss = np.broadcast_to(w * np.abs(d), d.shape)
    grad = (w * np.sign(d) * _scale(d.size, reduction)).astype(np.asarray(pred).dtype)
    grad = np.broadcast_to(grad, d.shape).copy()
    if out is not None:
        out[...] = grad
        grad = out
    return _reduce(loss, np.asarray(pred).dtype, reduction), grad


def l1_loss(pred: np.ndarray, target: np.ndarray, *, weight: Optional[_ArrayOrNumber] = None,
            reduction: str = "mean", n_threads: Optional[int] = None) -> _Loss:
    return l1_loss_and_grad(pred, target, weight=weight, reduction=reduction)[0]


def l2_loss_and_grad(pred: np.ndarray, target: np.ndarray, *,
                     weight: Optional[_ArrayOrNumber] = None, reduction: str = "mean",
                     out: Optional[np.ndarray] = None,
                     n_threads: Optional[int] = None) -> Tuple[_Loss, np.ndarray]:
    """loss = w*(p - t)^2;  grad = 2*w*(p - t)/N (torch mse_loss)."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    w = 1.0 if weight is None else np.asarray(weight, dtype=np.float64)
    loss = np.broadcast_to(w * d * d, d.shape)
    grad = (2.0 * w * d * _scale(d.size, reduction)).astype(np.asarray(pred).dtype)
    grad = np.broadcast_to(grad, d.shape).copy()
    if out is not None:
        out[...] = grad
        grad = out
    return _reduce(loss, np.asarray(pred).dtype, reduction), grad


def l2_loss(pred: np.ndarray, target: np.ndarray, *, weight: Optional[_ArrayOrNumber] = None,
            reduction: str = "mean", n_threads: Optional[int] = None) -> _Loss:
    return l2_loss_and_grad(pred, target, weight=weight, reduction=reduction)[0]


# ----------------------------------------------------------------------------- Adam

def _tf1_power(beta: float, step: int) -> np.float32:
    """TF1 keeps beta^t in a float32 variable, multiplied by beta after each step."""
    b = np.float32(beta)
    power: np.float32 = np.multiply.accumulate(np.full(step, b, dtype=np.float32))[-1]
    return power


def _optax_power(beta: float, t: int, T: Any) -> Any:
    """optax's ``decay**count`` (an int32 count): JAX's binary exponentiation in the
    dtype T, every product rounded."""
    b, acc = T(beta), T(1)
    while t:
        if t & 1:
            acc = T(acc * b)
        b, t = T(b * b), t >> 1
    return acc


def adam_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
              exp_avg_sq: np.ndarray, *, step: int, lr: float = 1e-3,
              betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
              amsgrad: bool = False, max_exp_avg_sq: Optional[np.ndarray] = None,
              maximize: bool = False, convention: str = "torch", eps_root: float = 0.0,
              n_threads: Optional[int] = None) -> None:
    """One Adam step, in place, in the parameter's dtype (see fusedopt.adam_step).
    Hyper-parameters are checked as fusedopt checks them (its one validation)."""
    _spec.ADAM.validate(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                             decoupled_weight_decay=decoupled_weight_decay, amsgrad=amsgrad,
                             maximize=maximize, convention=convention, eps_root=eps_root))
    T = param.dtype.type
    p, g, m, v = param.copy(), grad.copy(), exp_avg, exp_avg_sq
    b1, b2 = betas
    t = int(step)
    wd = weight_decay
    if convention == "torch":
        # torch.optim.Adam, _single_tensor_adam: python-double scalars cast at use
        if maximize:
            g = -g
        if wd != 0:
            if decoupled_weight_decay:
                p = p * T(1 - lr * wd)
            else:
                g = g + T(wd) * p
        w = T(1 - b1)
        if w < 0.5:
            m[...] = m + w * (g - m)                     # lerp(m, g, 1-b1)
        else:
            m[...] = g - (g - m) * (T(1) - w)
        v[...] = v * T(b2) + (T(1 - b2) * g) * g
        bc1 = 1 - b1 ** t
        bc2_sqrt = math.sqrt(1 - b2 ** t)
        vv = v
        if amsgrad:
            assert max_exp_avg_sq is not None
            np.maximum(max_exp_avg_sq, v, out=max_exp_avg_sq)
            vv = max_exp_avg_sq
        denom = np.sqrt(vv) / T(bc2_sqrt) + T(eps)
        param[...] = p + (T(-(lr / bc1)) * m) / denom
    elif convention in ("tf1", "keras"):
        if convention == "tf1":
            # tf.compat.v1.train.AdamOptimizer: hyper-parameters are float32 tensors cast
            # to the variable dtype; beta powers float32 running products.
            f32 = np.float32
            b1T, b2T, lrT, epsT = (T(f32(x)) for x in (b1, b2, lr, eps))
            b1p, b2p = T(_tf1_power(b1, t)), T(_tf1_power(b2, t))
            omb1, omb2 = T(1) - b1T, T(1) - b2T
        else:
            # keras.optimizers.Adam: power(cast(b), cast(t)) in the variable dtype
            lrT, epsT = T(np.float32(lr)), T(eps)          # lr: a float32 variable
            b1p, b2p = T(math.pow(float(T(b1)), t)), T(math.pow(float(T(b2)), t))
            omb1, omb2 = T(1 - b1), T(1 - b2)
            if wd != 0:
                p = p - (p * T(wd)) * lrT                # base_optimizer._apply_weight_decay
        alpha = lrT * np.sqrt(T(1) - b2p) / (T(1) - b1p)
        m[...] = m + (g - m) * omb1
        v[...] = v + (g * g - v) * omb2
        vv = v
        if amsgrad:
            assert max_exp_avg_sq is not None
            np.maximum(max_exp_avg_sq, v, out=max_exp_avg_sq)
            vv = max_exp_avg_sq
        param[...] = p - (m * T(alpha)) / (np.sqrt(vv) + epsT)
    elif convention == "sklearn":
        # sklearn.neural_network._stochastic_optimizers.AdamOptimizer
        m[...] = T(b1) * m + T(1 - b1) * g
        v[...] = T(b2) * v + T(1 - b2) * (g * g)
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        param[...] = p + (T(-lr_t) * m) / (np.sqrt(v) + T(eps))
    else:
        # optax.scale_by_adam / scale_by_amsgrad (+ add_decayed_weights) + scale(-lr)
        m[...] = T(1 - b1) * g + T(b1) * m
        v[...] = T(1 - b2) * (g * g) + T(b2) * v
        mhat = m / (T(1) - _optax_power(b1, t, T))         # tree_bias_correction
        vhat = v / (T(1) - _optax_power(b2, t, T))
        if amsgrad:
            assert max_exp_avg_sq is not None
            np.maximum(max_exp_avg_sq, vhat, out=max_exp_avg_sq)
            vhat = max_exp_avg_sq
        u = mhat / (np.sqrt(vhat + T(eps_root)) + T(eps))
        if wd != 0:
            u = u + T(wd) * p
        param[...] = p + T(-lr) * u


# ----------------------------------------------------------------------------- SGD

def sgd_step(param: np.ndarray, grad: np.ndarray, momentum_buffer: Optional[np.ndarray] = None,
             *, lr: float, momentum: float = 0.0, dampening: float = 0.0,
             nesterov: bool = False, weight_decay: float = 0.0, maximize: bool = False,
             convention: str = "torch", step: Optional[int] = None,
             n_threads: Optional[int] = None) -> None:
    """One SGD step, in place, in the parameter's dtype (see fusedopt.sgd_step).
    Hyper-parameters are checked as fusedopt checks them (its one validation)."""
    _spec.SGD.validate(dict(lr=lr, momentum=momentum, dampening=dampening,
                            nesterov=nesterov, weight_decay=weight_decay, maximize=maximize,
                            convention=convention))
    T = param.dtype.type
    buf: Any                                  # an array whenever momentum != 0
    p, g, buf, mu, wd = param.copy(), grad.copy(), momentum_buffer, momentum, weight_decay
    if convention == "torch":
        if maximize:
            g = -g
        if wd != 0:
            g = g + T(wd) * p
        if mu != 0:
            if step is None:
                raise ValueError("torch momentum needs step")
            if step == 1:
                buf[...] = g
            else:
                buf[...] = buf * T(mu) + T(1 - dampening) * g
            g = g + T(mu) * buf if nesterov else buf
        param[...] = p + T(-lr) * g
    elif convention == "tf1":
        lrT, muT = T(np.float32(lr)), T(np.float32(mu))
        if mu == 0:
            param[...] = p - g * lrT                        # ApplyGradientDescent
        else:
            buf[...] = buf * muT + g                        # ApplyMomentum
            if nesterov:
                param[...] = p - (g * lrT + (buf * muT) * lrT)
            else:
                param[...] = p - buf * lrT
    elif convention == "keras":
        lrT = T(np.float32(lr))                             # a float32 variable in Keras
        if wd != 0:
            p = p - (p * T(wd)) * lrT
        if mu == 0:
            param[...] = p - g * lrT
        else:
            buf[...] = buf * T(mu) - g * lrT
            param[...] = p + (buf * T(mu) - g * lrT) if nesterov else p + buf
    elif convention == "optax":
        if mu == 0:
            param[...] = p + T(-lr) * g
        else:
            buf[...] = g + T(mu) * buf                      # optax.trace
            u = g + T(mu) * buf if nesterov else buf
            param[...] = p + T(-lr) * u
    else:
        if mu == 0:
            param[...] = p + T(-lr) * g
        else:
            buf[...] = T(mu) * buf - T(lr) * g              # sklearn SGDOptimizer
            param[...] = p + (T(mu) * buf - T(lr) * g if nesterov else buf)


# ----------------------------------------------------------------------------- Lion

def _sign(x: np.ndarray) -> np.ndarray:
    """jnp.sign: -1, 0 or 1, NaN for NaN, and 0 with its sign for a signed zero."""
    one = x.dtype.type(1)
    return np.where(x > 0, one, np.where(x < 0, -one, x))


def lion_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, *,
              lr: float = 1e-4, betas: Tuple[float, float] = (0.9, 0.99),
              weight_decay: float = 0.0, convention: str = "torch",
              n_threads: Optional[int] = None) -> None:
    """One Lion step, in place, in the parameter's dtype (see fusedopt.lion_step).

    "torch" and "optax" follow optax.lion (``scale_by_lion``: ``(1. - b1) * g + b1 * m``,
    ``jnp.sign``, ``update_moment``; ``add_decayed_weights``: ``u + wd * p``;
    ``scale_by_learning_rate``: ``-lr * u``; ``apply_updates``: ``p + u``); "keras"
    follows keras.optimizers.Lion (``update_step``, after the base optimizer's
    ``_apply_weight_decay``: ``p - p * wd * lr``)."""
    _spec.LION.validate(dict(lr=lr, betas=betas, weight_decay=weight_decay,
                             convention=convention))
    T = param.dtype.type
    b1, b2 = betas
    p, g, m = param.copy(), grad, exp_avg.copy()
    if convention == "keras":
        lrT, b1T, b2T = T(np.float32(lr)), T(b1), T(b2)   # the learning rate: a float32 variable
        if weight_decay != 0:
            p = p - (p * T(weight_decay)) * lrT
        param[...] = p - lrT * _sign(m * b1T + g * (T(1) - b1T))
        exp_avg[...] = m * b2T + g * (T(1) - b2T)
    else:
        u = _sign(T(1.0 - b1) * g + T(b1) * m)
        if weight_decay != 0:
            u = u + T(weight_decay) * p
        param[...] = p + T(-lr) * u
        exp_avg[...] = T(1.0 - b2) * g + T(b2) * m


# ----------------------------------------------------------------------------- Adagrad

def adagrad_step(param: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, *,
                 step: Optional[int] = None, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, eps: float = 1e-10, maximize: bool = False,
                 convention: str = "torch", n_threads: Optional[int] = None) -> None:
    """One Adagrad step, in place, in the parameter's dtype (see fusedopt.adagrad_step).

    "torch" follows torch.optim.Adagrad (``_single_tensor_adagrad``: ``grad.add(param,
    alpha=wd)``, ``clr = lr / (1 + (step - 1) * lr_decay)`` in Python floats,
    ``state_sum.addcmul_(grad, grad)``, ``std = sqrt(sum) + eps``,
    ``param.addcdiv_(grad, std, value=-clr)``); "tf1" the ``ApplyAdagrad`` op of
    tf.compat.v1.train.AdagradOptimizer (``accum += g*g; var -= g*lr*rsqrt(accum)``, lr
    a float32 tensor cast to the variable's dtype; its rsqrt is stated here as
    ``1/(sqrt(accum) + eps)`` with the caller's eps, 0 for TF1); "keras"
    keras.optimizers.Adagrad (``update_step``, after the base optimizer's
    ``_apply_weight_decay``); "optax" optax.adagrad (``scale_by_rss``: ``abs_sq(g) + t``,
    ``where(t > 0, rsqrt(t + eps), 0)``; ``scale_by_learning_rate``; ``apply_updates``)."""
    _spec.ADAGRAD.validate(dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                eps=eps, maximize=maximize, convention=convention))
    if step is None and lr_decay != 0:
        raise ValueError("lr_decay needs step")
    T = param.dtype.type
    p, g, s = param.copy(), grad.copy(), state_sum.copy()
    if convention == "torch":
        if maximize:
            g = -g
        if weight_decay != 0:
            g = g + T(weight_decay) * p
        clr = lr / (1 + ((step or 1) - 1) * lr_decay)
        s = s + g * g
        param[...] = p + (T(-clr) * g) / (np.sqrt(s) + T(eps))
    elif convention == "tf1":
        s = s + g * g
        param[...] = p - (g * T(np.float32(lr))) / (np.sqrt(s) + T(eps))
    elif convention == "keras":
        lrT = T(np.float32(lr))                      # the learning rate: a float32 variable
        if weight_decay != 0:
            p = p - (p * T(weight_decay)) * lrT
        s = s + g * g
        param[...] = p - (lrT * g) / np.sqrt(s + T(eps))
    else:
        s = g * g + s
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(s > 0, T(1) / np.sqrt(s + T(eps)), T(0)).astype(param.dtype)
        param[...] = p + T(-lr) * (g * r)
    state_sum[...] = s


# ----------------------------------------------------------------------------- RMSprop

def rmsprop_step(param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray,
                 momentum_buffer: Optional[np.ndarray] = None,
                 grad_avg: Optional[np.ndarray] = None, *, lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, maximize: bool = False,
                 convention: str = "torch", n_threads: Optional[int] = None) -> None:
    """One RMSprop step, in place, in the parameter's dtype (see fusedopt.rmsprop_step).

    "torch" follows torch.optim.RMSprop (``_single_tensor_rmsprop``: ``grad.add(param,
    alpha=wd)``; ``square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)``;
    ``grad_avg.lerp_(grad, 1 - alpha)``; ``avg = square_avg.addcmul(grad_avg, grad_avg,
    value=-1).sqrt_()`` or ``square_avg.sqrt()``; ``avg.add_(eps)``; with momentum
    ``buf.mul_(momentum).addcdiv_(grad, avg)``, ``param.add_(buf, alpha=-lr)``, else
    ``param.addcdiv_(grad, avg, value=-lr)``); "tf1" the ``ApplyRMSProp`` /
    ``ApplyCenteredRMSProp`` kernels of tf.compat.v1.train.RMSPropOptimizer (``ms +=
    (grad.square() - ms) * (1 - rho)``, ``mg += (grad - mg) * (1 - rho)``, ``mom = mom *
    momentum + grad * lr / sqrt(ms [- mg.square()] + epsilon)``, ``var -= mom``; every
    scalar a float32 tensor cast to the variable's dtype); "keras"
    keras.optimizers.RMSprop (``update_step``, after the base optimizer's
    ``_apply_weight_decay``); "optax" optax.rmsprop (``scale_by_rms`` /
    ``scale_by_stddev``: ``(1 - decay) * g**2 + decay * nu``, ``rsqrt(nu [- mu**2] +
    eps) * g``; ``scale_by_learning_rate``; ``trace``: ``u + momentum * t``;
    ``apply_updates``), its rsqrt stated as ``1/sqrt``."""
    _spec.RMSPROP.validate(dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                momentum=momentum, centered=centered, maximize=maximize,
                                convention=convention))
    T = param.dtype.type
    mom = momentum > 0
    if (mom and momentum_buffer is None) or (centered and grad_avg is None):
        raise ValueError("momentum needs momentum_buffer, centered needs grad_avg")
    p, g, v = param.copy(), grad.copy(), square_avg.copy()
    b = momentum_buffer.copy() if momentum_buffer is not None else np.zeros_like(p)
    ga = grad_avg.copy() if grad_avg is not None and centered else np.zeros_like(p)
    if convention == "torch":
        if maximize:
            g = -g
        if weight_decay != 0:
            g = g + T(weight_decay) * p
        a, oma = T(alpha), T(1.0 - alpha)
        v = v * a + (oma * g) * g
        if centered:   # torch's lerp, weight 1 - alpha
            ga = ga + oma * (g - ga) if oma < 0.5 else g - (g - ga) * (T(1) - oma)
        d = np.sqrt(v - ga * ga if centered else v) + T(eps)
        if mom:
            b = b * T(momentum) + g / d
            p = p + T(-lr) * b
        else:
            p = p + (T(-lr) * g) / d
    else:
        if convention == "tf1":   # float32 tensors, cast to the variable's dtype
            lrT, a, mu, epsT = (T(np.float32(x)) for x in (lr, alpha, momentum, eps))
            oma = T(1) - a
            v = v + (g * g - v) * oma
            ga = ga + (g - ga) * oma
        else:
            lrT = T(np.float32(lr)) if convention == "keras" else T(lr)
            a, oma, mu, epsT = T(alpha), T(1.0 - alpha), T(momentum), T(eps)
            if weight_decay != 0:          # Keras: the base optimizer's decay, first
                p = p - (p * T(weight_decay)) * lrT
            v = a * v + oma * (g * g)
            ga = a * ga + oma * g
        root = np.sqrt((v - ga * ga if centered else v) + epsT)
        if convention == "optax":
            u = T(-lr) * (g * (T(1) / root))
            if mom:
                b = u + mu * b
                u = b
            p = p + u
        else:
            inc = (lrT * g) / root
            if mom:
                b = b * mu + inc
                inc = b
            p = p - inc
    param[...] = p
    square_avg[...] = v
    if mom and momentum_buffer is not None:
        momentum_buffer[...] = b
    if centered and grad_avg is not None:
        grad_avg[...] = ga


# ----------------------------------------------------------------------------- clipping

def clip_grad_norm_(grads: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, *,
                    n_threads: Optional[int] = None) -> float:
    """torch.nn.utils.clip_grad_norm_'s rule on arrays (see fusedopt.clip_grad_norm_):
    ``total = (sum |g|**p)**(1/p)`` over every element (``max |g|`` for inf), here
    accumulated exactly (``math.fsum``) and rounded once to the result's dtype (float64
    when any array is, else float32); ``coef = min((1 / (total + 1e-6)) * max_norm, 1)``
    in that dtype (torch's ``max_norm / (total_norm + 1e-6)`` is
    ``reciprocal() * max_norm``); each array ``*= coef`` in its own dtype, when
    ``coef < 1``."""
    arrays = [g for g in ([grads] if isinstance(grads, np.ndarray) else grads)
              if g is not None]
    p = float(norm_type)
    if not (p == math.inf or (math.isfinite(p) and p > 0)) or not max_norm >= 0:
        raise ValueError("norm_type must be > 0 or inf, max_norm >= 0")
    values = np.concatenate([np.abs(g.astype(np.float64)).ravel() for g in arrays]) \
        if arrays else np.zeros(0)
    if p == math.inf:
        total = float(values.max()) if values.size else 0.0
    elif not np.isfinite(values).all():
        total = float(np.nan if np.isnan(values).any() else np.inf)
    else:
        total = math.fsum((values * values).tolist() if p == 2 else
                          (values ** p).tolist()) ** (1.0 / p)
    dtype = np.float64 if any(g.dtype == np.float64 for g in arrays) else np.float32
    T = np.dtype(dtype).type
    total = float(T(total))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError("the total norm is non-finite")
    with np.errstate(all="ignore"):
        coef = np.minimum((T(1) / (T(total) + T(1e-6))) * T(max_norm), T(1))
        if coef != 1:
            for g in arrays:
                g *= g.dtype.type(coef)
    return total


# ----------------------------------------------------------------------------- Adafactor

#: the kernels' summation order (kernels/fo_adafactor.h, fo_driver.c): work blocks of
#: _BLOCK elements, double accumulators in _LANES lanes folded pairwise
_BLOCK, _LANES = 16384, 16


def _fold(acc: np.ndarray) -> np.ndarray:
    """The lanes (last axis) folded pairwise: lane j += lane j + w, w = 8, 4, 2, 1."""
    acc = acc.copy()
    w = _LANES // 2
    while w:
        acc[..., :w] += acc[..., w:2 * w]
        w //= 2
    return np.asarray(acc[..., 0])


def _lane_sum(x: np.ndarray) -> float:
    """The sum of rows x (2-D, float64) as a kernel unit adds them: element c of each row
    to lane c % _LANES, rows and chunks in order, lanes folded."""
    pad = (-x.shape[1]) % _LANES
    chunks = np.pad(x, ((0, 0), (0, pad))).reshape(-1, _LANES)
    if not chunks.size:
        return 0.0
    return float(_fold(np.add.accumulate(chunks, axis=0)[-1]))


def _ordered_sum(parts: Any) -> float:
    total = 0.0
    for x in parts:
        total += float(x)
    return total


def _adafactor_units(nb: int, nr: int, nc: int) -> Any:
    """The kernel's units of a factored tensor, as (first global row, last + 1, matrix or
    None when the unit holds whole matrices)."""
    if nr * nc <= _BLOCK:
        mb = max(1, _BLOCK // max(nr * nc, 1))
        for b0 in range(0, nb, mb):
            yield b0 * nr, min(nb, b0 + mb) * nr, None
    else:
        h = min(nr, 64 if nc >= _BLOCK // 64 else _BLOCK // nc)
        for b in range(nb):
            for r0 in range(0, nr, h):
                yield b * nr + r0, b * nr + min(nr, r0 + h), b


def adafactor_step(param: np.ndarray, grad: np.ndarray, row_var: Optional[np.ndarray] = None,
                   col_var: Optional[np.ndarray] = None,
                   variance: Optional[np.ndarray] = None, *, step: int, lr: float = 1e-2,
                   beta2_decay: float = -0.8, eps: Tuple[Optional[float], float] = (None, 1e-3),
                   d: float = 1.0, weight_decay: float = 0.0, maximize: bool = False,
                   convention: str = "torch", n_threads: Optional[int] = None) -> None:
    """One Adafactor step, in place (see fusedopt.adafactor_step): torch.optim.Adafactor
    (``_single_tensor_adafactor``): Python-float scalars from the float step ``t``
    (``one_minus_beta2_t = t**beta2_decay``, ``rho_t = min(lr, 1/t**0.5)``, ``alpha =
    max(eps2, param.norm(2).item()/param.numel()**0.5)*rho_t``); ``param.mul_(1 -
    lr*wd)``; factored: ``row_mean = norm(grad, dim=-1).square_().div_(C)``,
    ``row_var.lerp_(row_mean, w)``, the same over dim -2 for ``col_var``, ``var_estimate
    = (row_var @ col_var).div_(row_var.mean(dim=-2).clamp_(min=eps1))``; else
    ``variance.lerp_(grad*grad, w)``; ``update = var_estimate.clamp_(min=eps1*eps1)
    .rsqrt_().mul_(grad)``; ``param.add_(update, alpha=-alpha/max(1, update.norm(2)
    .item()/(update.numel()**0.5*d)))``.  torch's float32 norms and means are float32
    reductions; here (as in the kernels) they are double sums in the kernels' order,
    rounded to the dtype: the value torch would have without its accumulation error."""
    _spec.ADAFACTOR.validate(dict(lr=lr, beta2_decay=beta2_decay, eps=tuple(eps), d=d,
                                  weight_decay=weight_decay, maximize=maximize,
                                  convention=convention))
    if convention == "optax":
        _adafactor_optax(param, grad, row_var, col_var, variance, step=step, lr=lr,
                         beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay)
        return
    T = param.dtype.type
    keras = convention == "keras"
    t = float(step)
    eps1 = float(np.finfo(param.dtype).eps) if eps[0] is None else float(eps[0])
    eps2 = float(eps[1])
    wT, e1sq, e1 = T(t ** beta2_decay), T(eps1 * eps1), T(eps1)
    omw = T(1) - wT
    rho: Any = min(lr, 1 / t ** 0.5)
    if keras:     # update_step: every scalar in the dtype, lr a float32 variable
        tt, lr32 = T(t), T(np.float32(lr))
        b2t = T(1) - T(tt ** T(beta2_decay))
        omb2 = T(1) - b2t
        inv = T(T(1) / T(np.sqrt(tt)))
        rho = lr32 if lr32 < inv else inv

    def stat(a: np.ndarray, s: np.ndarray, n: int) -> np.ndarray:
        """A row/column statistic from its sums of squares over n."""
        if keras:                                  # b2t*r + (1 - b2t)*mean(g*g + eps1)
            return np.asarray(b2t * a + omb2 * (s.astype(param.dtype) / T(n)))
        nrm = np.sqrt(s).astype(param.dtype)       # torch: lerp(r, norm**2/n, w)
        b = (nrm * nrm) / T(n)
        return np.asarray(a + wT * (b - a) if wT < 0.5 else b - (b - a) * omw)

    def clamp(v: np.ndarray, e: Any) -> np.ndarray:            # NaN kept
        return np.asarray(np.where(v < e, e, v))

    def square(x: np.ndarray) -> np.ndarray:                   # what the statistics average
        return np.asarray((x * x + e1).astype(np.float64) if keras else
                          x.astype(np.float64) ** 2)

    n = param.size
    if n == 0:
        return
    g = -grad if maximize else grad.copy()
    p = param.copy()
    if keras and weight_decay != 0:                # the base optimizer's decay, first
        p = p - (p * T(weight_decay)) * lr32
    p2 = p.astype(np.float64) ** 2
    rv = cv = v = None
    with np.errstate(all="ignore"):
        if param.ndim >= 2:
            assert row_var is not None and col_var is not None
            nr, nc = param.shape[-2:]
            nb = n // (nr * nc)
            G = g.reshape(nb, nr, nc)
            x = square(G)
            rv = row_var.reshape(nb, nr).copy()
            cv = col_var.reshape(nb, nc).copy()
            pad = (-nc) % _LANES
            rows = np.pad(x.reshape(nb * nr, nc), ((0, 0), (0, pad))).reshape(nb * nr, -1, _LANES)
            rowsum = _fold(np.add.accumulate(rows, axis=1)[:, -1, :])
            rv = stat(rv, rowsum.reshape(nb, nr), nc)
            colsum = np.zeros((nb, nc))
            xr = x.reshape(nb * nr, nc)
            units = list(_adafactor_units(nb, nr, nc))
            for r0, r1, b in units:       # column sums: per unit in row order, units in order
                if b is None:                 # (whole matrices)
                    colsum[r0 // nr:r1 // nr] = np.add.accumulate(
                        x[r0 // nr:r1 // nr], axis=1)[:, -1]
                else:
                    part = np.add.accumulate(xr[r0:r1], axis=0)[-1]
                    colsum[b] = part if r0 == b * nr else colsum[b] + part
            cv = stat(cv, colsum, nr)
            if keras:                     # mean(r) not clamped; U = g/sqrt((r/mean)*c)
                rmc = np.array([T(T(_seq_sum(rv[b])) / T(nr)) for b in range(nb)],
                               dtype=param.dtype)
                q = rv / rmc[:, None]
                U = (G / np.sqrt(q[:, :, None] * cv[:, None, :])).reshape(nb * nr, nc)
            else:
                rmc = np.array([T(_seq_sum(rv[b]) / nr) for b in range(nb)], dtype=param.dtype)
                rmc = clamp(rmc, e1)
                # torch's U = rsqrt(clamp(row_var*col_var/rmc, eps1**2))*g; a row none of
                # whose elements is clamped (q*min(col_var) >= eps1**2, q = row_var/rmc) or
                # overflows as g*((1/sqrt(q))*(1/sqrt(col_var))), as the kernels (a few
                # ulps apart)
                V = (rv[:, :, None] * cv[:, None, :]) / rmc[:, None, None]
                slow = (T(1) / np.sqrt(clamp(V, e1sq))) * G
                q = rv / rmc[:, None]
                cvnan = np.isnan(cv).any(axis=1)
                cvmin = np.where(cvnan, np.nan, cv.min(axis=1)).astype(T)
                cvmax = np.where(cvnan, np.nan, cv.max(axis=1)).astype(T)
                top = (rv * cvmax[:, None]) / rmc[:, None]       # no element overflows
                fast_rows = (q * cvmin[:, None] >= e1sq) & np.isfinite(top)
                fast = G * ((T(1) / np.sqrt(q))[:, :, None] * (T(1) / np.sqrt(cv))[:, None, :])
                U = np.where(fast_rows[:, :, None], fast, slow).reshape(nb * nr, nc)
            u2, pr = U.astype(np.float64) ** 2, p2.reshape(nb * nr, nc)
            psum = _ordered_sum(_lane_sum(pr[r0:r1]) for r0, r1, _ in units)
            usum = _ordered_sum(_lane_sum(u2[r0:r1]) for r0, r1, _ in units)
            U = U.reshape(param.shape)
        else:
            assert variance is not None
            if keras:
                v = b2t * variance + omb2 * (g * g + e1)
                U = g / np.sqrt(v)
            else:
                v = variance + wT * (g * g - variance) if wT < 0.5 else \
                    (g * g) - ((g * g) - variance) * omw
                U = (T(1) / np.sqrt(clamp(v, e1sq))) * g
            psum = _block_sum(p2)
            usum = _block_sum(U.astype(np.float64) ** 2)
        if keras:
            prms, denom = _af_dtype_scalars(T, n, psum, usum, eps2, d)
            alpha = T(prms * rho)
            p = p - alpha * (U / denom)
        else:
            sn = float(n) ** 0.5
            alpha = max(eps2, float(T(math.sqrt(psum))) / sn) * rho
            den = max(1.0, float(T(math.sqrt(usum))) / (sn * d))
            if weight_decay != 0:
                p = p * T(1 - lr * weight_decay)
            p = p + T(-alpha / den) * U
    _af_store(param, p, row_var, col_var, variance, param.ndim >= 2, rv, cv, v)


def _af_dtype_scalars(T: Any, n: int, psum: float, usum: float, eps2: float,
                      d: float) -> Tuple[Any, Any]:
    """Keras' and optax's per-tensor scalars in the dtype: max(rms(p), eps2) (NaN kept)
    and the clipping denominator max(1, rms(U)/d), rms = sqrt(sum/n)."""
    nT = T(n)
    rp, ru = T(np.sqrt(T(T(psum) / nT))), T(np.sqrt(T(T(usum) / nT)))
    prms = rp if rp > T(eps2) or rp != rp else T(eps2)
    qd = T(ru / T(d))
    return prms, (qd if qd > 1 or qd != qd else T(1))


def _af_store(param: np.ndarray, p: np.ndarray, row_var: Optional[np.ndarray],
              col_var: Optional[np.ndarray], variance: Optional[np.ndarray],
              factored: bool, rv: Any, cv: Any, v: Any) -> None:
    """The step's results into the caller's arrays."""
    param[...] = p
    if factored:
        assert row_var is not None and col_var is not None
        row_var[...] = rv.reshape(row_var.shape)
        col_var[...] = cv.reshape(col_var.shape)
    else:
        assert variance is not None
        variance[...] = v


def optax_factored_axes(shape: Tuple[int, ...]) -> Optional[Tuple[int, int, bool]]:
    """optax's factoring rule (``factorized._factored_dims``, min_dim_size_to_factor=128):
    the two largest axes by ``numpy.argsort(shape)`` (second largest d1, largest d0) when
    shape[d1] >= 128, as ``(a, b, norm_cols)``: a < b, norm_cols when d0 is a (the
    statistics divided by their mean are then the means over a); else None."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape)
    d1, d0 = int(order[-2]), int(order[-1])
    if shape[d1] < 128:
        return None
    return min(d0, d1), max(d0, d1), d0 < d1


def _adafactor_optax(param: np.ndarray, grad: np.ndarray, row_var: Optional[np.ndarray],
                     col_var: Optional[np.ndarray], variance: Optional[np.ndarray], *,
                     step: int, lr: float, beta2_decay: float,
                     eps: Tuple[Optional[float], float], d: float,
                     weight_decay: float) -> None:
    """optax.adafactor (``scale_by_factored_rms``, ``clip_by_block_rms(d)``,
    ``scale_by_learning_rate(lr)``, ``scale_by_param_block_rms(eps2)``,
    ``add_decayed_weights(wd)``, ``scale(-1)``) in the kernels' order of summation: the
    statistics over the axes optax_factored_axes picks, row_var the means over the later
    (b), col_var over the earlier (a), both with size 1 there; x**-0.5 as 1/sqrt(x)."""
    T = param.dtype.type
    n = param.size
    if n == 0:
        return
    f32 = np.float32
    b2t = T(f32(1) - f32(f32(step) ** f32(beta2_decay)))      # float32, as optax's
    omb2 = T(f32(1) - f32(b2t))
    e1 = T(float(np.finfo(param.dtype).eps) if eps[0] is None else float(eps[0]))
    g, p = grad.copy(), param.copy()
    p2 = p.astype(np.float64) ** 2
    fac = optax_factored_axes(param.shape)
    rv: Any = None
    cv: Any = None
    v: Any = None
    with np.errstate(all="ignore"):
        if fac is not None:
            assert row_var is not None and col_var is not None
            a, b, norm_cols = fac
            sh = param.shape
            nb, nr = int(np.prod(sh[:a])), sh[a]
            nq, nm, ns = int(np.prod(sh[a + 1:b])), sh[b], int(np.prod(sh[b + 1:]))
            nc = nq * nm * ns
            G = g.reshape(nb, nr, nq, nm, ns)
            x = (G * G + e1).astype(np.float64)
            if ns == 1:             # a row's statistic q: its nm elements in lanes
                pad = (-nm) % _LANES
                runs = np.pad(x[..., 0], ((0, 0),) * 3 + ((0, pad),))
                runs = runs.reshape(nb, nr, nq, -1, _LANES)
                rowsum = _fold(np.add.accumulate(runs, axis=3)[:, :, :, -1, :])[..., None]
            else:                   # statistic (q, s): over m in order
                rowsum = np.add.accumulate(x, axis=3)[:, :, :, -1, :]
            rv = row_var.reshape(nb, nr, nq, ns)
            rv = b2t * rv + omb2 * (rowsum.astype(param.dtype) / T(nm))
            xr = x.reshape(nb * nr, nc)
            colsum = np.zeros((nb, nc))
            units = list(_adafactor_units(nb, nr, nc))
            for r0, r1, m in units:     # column sums: per unit in row order, units in order
                if m is None:
                    colsum[r0 // nr:r1 // nr] = np.add.accumulate(
                        xr.reshape(nb, nr, nc)[r0 // nr:r1 // nr], axis=1)[:, -1]
                else:
                    part = np.add.accumulate(xr[r0:r1], axis=0)[-1]
                    colsum[m] = part if r0 == m * nr else colsum[m] + part
            cv = col_var.reshape(nb, nq, nm, ns)
            cv = b2t * cv + omb2 * (colsum.reshape(nb, nq, nm, ns).astype(param.dtype) / T(nr))
            one = T(1)
            if norm_cols:           # col_var over m divided by its mean (per (q, s))
                mean = (np.add.accumulate(cv.astype(np.float64), axis=2)[:, :, -1:, :]
                        .astype(param.dtype) / T(nm))
                cf, rf = one / np.sqrt(cv / mean), one / np.sqrt(rv)
                U = (G * cf[:, None]) * rf[:, :, :, None]
            else:                   # row_var over the rows divided by its mean
                mean = (np.add.accumulate(rv.astype(np.float64), axis=1)[:, -1:]
                        .astype(param.dtype) / T(nr))
                rf, cf = one / np.sqrt(rv / mean), one / np.sqrt(cv)
                U = (G * rf[:, :, :, None]) * cf[:, None]
            run = nm if ns == 1 else ns
            u2 = (U.astype(np.float64) ** 2).reshape(nb * nr, nc)
            pr = p2.reshape(nb * nr, nc)
            psum = _ordered_sum(_lane_sum(pr[r0:r1].reshape(-1, run)) for r0, r1, _ in units)
            usum = _ordered_sum(_lane_sum(u2[r0:r1].reshape(-1, run)) for r0, r1, _ in units)
            U = U.reshape(param.shape)
        else:
            assert variance is not None
            v = b2t * variance + omb2 * (g * g + e1)
            U = g * (T(1) / np.sqrt(v))
            psum = _block_sum(p2)
            usum = _block_sum(U.astype(np.float64) ** 2)
        prms, den = _af_dtype_scalars(T, n, psum, usum, float(eps[1]), d)
        step_ = ((U / den) * T(lr)) * prms
        p = p - (step_ + T(weight_decay) * p) if weight_decay != 0 else p - step_
    _af_store(param, p, row_var, col_var, variance, fac is not None, rv, cv, v)


def _seq_sum(x: np.ndarray) -> float:
    """The sum of x's elements in double, one after the other."""
    acc = np.add.accumulate(x.astype(np.float64).ravel())
    return float(acc[-1]) if acc.size else 0.0


# ----------------------------------------------------------------------------- LAMB

def _block_sum(x: np.ndarray) -> float:
    """The sum of a flat float64 array as the kernels add it: blocks of _BLOCK elements,
    lanes in each, blocks in order."""
    flat = x.reshape(1, -1)
    return _ordered_sum(_lane_sum(flat[:, i:i + _BLOCK]) for i in range(0, x.size, _BLOCK))


def lamb_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
              exp_avg_sq: np.ndarray, *, step: int, lr: float = 1e-3,
              betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
              weight_decay: float = 0.0, convention: str = "torch",
              n_threads: Optional[int] = None) -> None:
    """One LAMB step, in place (see fusedopt.lamb_step).  "torch" and "optax": optax.lamb
    (``scale_by_adam``: ``m = (1-b1)*g + b1*m``, ``v = (1-b2)*g*g + b2*v``, ``u =
    (m/(1-b1**t))/(sqrt(v/(1-b2**t) + 0) + eps)``; ``add_decayed_weights``: ``u + wd*p``;
    ``scale_by_trust_ratio``: ``u*(||p||/||u||)``, the ratio 1 when either norm is 0;
    ``scale_by_learning_rate``: ``*(-lr)``).  "keras": keras.optimizers.Lamb (its weight
    decay ``p - (p*wd)*lr`` first; ``m += (g - m)*(1 - b1)``, ``v += (g*g - v)*(1 -
    b2)``, ``b**t`` a power in the parameter's dtype; ``r = ||p||/||u||`` only when both
    are > 0, else 1; ``p -= (r*lr)*u``, lr a float32 variable).  The norms are double sums
    in the kernels' order rounded to the dtype (the frameworks' are reductions in it)."""
    _spec.LAMB.validate(dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                             convention=convention))
    T = param.dtype.type
    p, g, m, v = param.copy(), grad, exp_avg, exp_avg_sq
    b1, b2 = betas
    t, wd = int(step), weight_decay
    with np.errstate(all="ignore"):
        if convention == "keras":
            lrT = T(np.float32(lr))
            if wd != 0:
                p = p - (p * T(wd)) * lrT
            m[...] = m + (g - m) * T(1 - b1)
            v[...] = v + (g * g - v) * T(1 - b2)
            bc1 = T(1) - T(math.pow(float(T(b1)), t))
            bc2 = T(1) - T(math.pow(float(T(b2)), t))
        else:
            m[...] = T(1 - b1) * g + T(b1) * m
            v[...] = T(1 - b2) * (g * g) + T(b2) * v
            bc1, bc2 = T(1) - _optax_power(b1, t, T), T(1) - _optax_power(b2, t, T)
        u = (m / bc1) / (np.sqrt(v / bc2 + T(0)) + T(eps))
        if wd != 0 and convention != "keras":
            u = u + T(wd) * p
        pn = T(math.sqrt(_block_sum(p.astype(np.float64) ** 2)))
        un = T(math.sqrt(_block_sum(u.astype(np.float64) ** 2)))
        if convention == "keras":
            r = pn / un if pn > 0 and un > 0 else T(1)
            param[...] = p - T(r * lrT) * u
        else:
            r = T(1) if pn == 0 or un == 0 else pn / un
            param[...] = p + (u * T(r)) * T(-lr)
