"""The benchmark cases: what each kernel row times, for fusedopt and for every peer.

Each case owns the arrays fusedopt is timed on; a peer is built by a method returning
(callable, cleanup) on the same arrays (torch through ``torch.from_numpy``) and is freed
before the next one is built.  ``memory`` estimates the bytes a case needs with a peer
(None: fusedopt and the ceiling only), so that sizes that do not fit are skipped.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._machine import aligned_empty, aligned_uniform, aligned_zeros
from ._peers import Env, Unsupported, quiet_fds, torch_params

KERNELS: Dict[str, Dict[str, Any]] = {
    "adam": dict(label="Adam f32", dtype="float32", pattern="adam", bpe=28, unit="GB/s",
                 what="fusedopt.adam_step (functional), torch convention"),
    "adam64": dict(label="Adam f64", dtype="float64", pattern="adam", bpe=56, unit="GB/s",
                   what="fusedopt.adam_step (functional), float64"),
    "sgd": dict(label="SGD momentum f32", dtype="float32", pattern="sgd", bpe=20,
                unit="GB/s", what="fusedopt.sgd_step, momentum 0.9"),
    "lion": dict(label="Lion f32", dtype="float32", pattern="sgd", bpe=20, unit="GB/s",
                 what="fusedopt.lion_step, weight decay 0.01 (torch convention: optax's rule)"),
    "adagrad": dict(label="Adagrad f32", dtype="float32", pattern="sgd", bpe=20, unit="GB/s",
                    what="fusedopt.adagrad_step, torch convention, lr 1e-2"),
    "rmsprop": dict(label="RMSprop f32", dtype="float32", pattern="sgd", bpe=20, unit="GB/s",
                    what="fusedopt.rmsprop_step, torch convention and defaults"),
    "adafactor": dict(label="Adafactor f32, vector", dtype="float32", pattern="adafactor",
                      bpe=32, unit="GB/s", what="fusedopt.adafactor_step on a 1-D array, "
                      "torch convention and defaults (2 passes)"),
    "adafactor2d": dict(label="Adafactor f32, matrix", dtype="float32",
                        pattern="adafactor2d", bpe=24, unit="GB/s",
                        what="fusedopt.adafactor_step on the most nearly square R x C "
                        "matrix of n elements (3125 x 3200 at 1e7), factored second "
                        "moment, torch convention and defaults (3 passes)"),
    "lamb": dict(label="LAMB f32", dtype="float32", pattern="lamb", bpe=40, unit="GB/s",
                 what="fusedopt.lamb_step, optax's rule and defaults, weight decay 0.01 "
                 "(2 passes)"),
    "ce": dict(label="sigmoid CE loss+grad f32", dtype="float32", pattern="loss", bpe=12,
               unit="Melem/s", what="fusedopt.sigmoid_cross_entropy_and_grad, float32 "
               "labels, reduction mean, out= preallocated"),
    "torch_ce": dict(label="torch autograd sigmoid CE f32", dtype="float32", pattern="loss",
                     bpe=12, unit="Melem/s", what="fusedopt.torch.functional."
                     "binary_cross_entropy_with_logits forward+backward through torch's "
                     "autograd (float32 labels, reduction mean), against torch's own"),
    "softmax": dict(label="softmax CE loss+grad f32", dtype="float32", pattern="copy",
                    bpe=8, unit="Melem/s", what="fusedopt.softmax_cross_entropy_and_grad on "
                    "2048 x 32000 logits (a language model's vocabulary), class indices, "
                    "reduction mean, out= preallocated; ceiling: a copy of the logits"),
    "softmax_narrow": dict(label="softmax CE loss+grad f32, 10 classes", dtype="float32",
                           pattern="copy", bpe=8, unit="Melem/s",
                           what="as softmax, on 65536 x 10 logits"),
    "softmax_wide": dict(label="softmax CE loss+grad f32, 128k classes", dtype="float32",
                         pattern="copy", bpe=8, unit="Melem/s",
                         what="as softmax, on 512 x 131072 logits"),
    "multi": dict(label="Adam f32, 1000 x 1000 tensors", dtype="float32", pattern="adam",
                  bpe=28, unit="GB/s", what="fusedopt.Adam(...).step over 1000 tensors of "
                  "1000 elements (class API, one C call)"),
    "clip": dict(label="clip_grad_norm_ f32, 2000 x 1000 tensors", dtype="float32",
                 pattern="clip", bpe=12, unit="GB/s", what="fusedopt.clip_grad_norm_ over "
                 "2000 tensors of 1000 elements, clipping at every call (a read pass, then "
                 "the scaling pass)"),
    "overhead": dict(label="call overhead, Adam f32", dtype="float32",
                     what="fusedopt and a baseline timed alternately in this run (busy and "
                     "iqr as above, over the two); ratio: fusedopt time / baseline time"),
    "neighbour": dict(label="Adam f32 beside a busy process", dtype="float32",
                      what="while another process keeps one CPU busy, fusedopt.adam_step "
                      "with the default threads and on one thread, in alternating spells "
                      "of 0.5 s; time: the mean over every call; iqr column: the range of "
                      "the spells' means; ratio: default / one thread"),
}
KERNEL_ORDER = list(KERNELS)
# run only when asked for (--kernels neighbour or all): it loads the machine on purpose
OPT_IN = ("neighbour",)
MULTI_TENSORS, MULTI_SIZE = 1000, 1000
CLIP_TENSORS, CLIP_SIZE = 2000, 1000

Peer = Tuple[Callable[[], Any], Optional[Callable[[], None]]]
Quad = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8


def numpy_adam(items: Sequence[Quad], tmp: np.ndarray) -> Callable[[], None]:
    """torch's Adam step in in-place ufuncs over (p, g, m, v) arrays of one length, with
    one temporary ``tmp`` of that length; the bias corrections are computed once a step."""
    dt = tmp.dtype.type
    c1, c2, fb2, feps, t = dt(1 - BETA1), dt(1 - BETA2), dt(BETA2), dt(EPS), [0]
    mul, sub, add, sqrt, div = np.multiply, np.subtract, np.add, np.sqrt, np.divide

    def run() -> None:
        t[0] += 1
        bc1, bc2 = 1 - BETA1 ** t[0], 1 - BETA2 ** t[0]
        s2, s1 = dt(1 / math.sqrt(bc2)), dt(LR / bc1)
        for p, g, m, v in items:
            sub(g, m, out=tmp)                 # m = lerp(m, g, 1 - b1)
            mul(tmp, c1, out=tmp)
            add(m, tmp, out=m)
            mul(v, fb2, out=v)                 # v = b2*v + (1 - b2)*g*g
            mul(g, g, out=tmp)
            mul(tmp, c2, out=tmp)
            add(v, tmp, out=v)
            sqrt(v, out=tmp)                   # denom = sqrt(v)/sqrt(bc2) + eps
            mul(tmp, s2, out=tmp)
            add(tmp, feps, out=tmp)
            div(m, tmp, out=tmp)               # p -= lr/bc1 * m/denom
            mul(tmp, s1, out=tmp)
            sub(p, tmp, out=p)
    return run


class _Flat:
    """A case on arrays of n elements: ``arrays`` of them for fusedopt and the ceiling,
    ``peer_arrays[peer]`` more while that peer runs (its temporaries, torch's state)."""

    arrays: float
    peer_arrays: Dict[str, float]
    #: what the torch peer runs, the fused op to verify it ran (None: not an optimizer
    #: of torch's), its column's label, and why DeepSpeed has no peer (None: it has one)
    torch_impl: str = ""
    torch_op: Optional[str] = None
    torch_label = "torch fused"
    deepspeed_skip: Optional[str] = None

    def __init__(self, n: int, dtype: Any) -> None:
        self.n, self.dtype = n, np.dtype(dtype)

    @classmethod
    def memory(cls, n: int, esz: int, peer: Optional[str]) -> float:
        extra = 0 if peer is None else cls.peer_arrays[peer]
        return (cls.arrays + extra) * n * esz * 1.05


class _Step(_Flat):
    """An optimizer case: parameters ``p`` and gradients ``g``, uniform in [-1, 1)."""

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype)
        self.p = aligned_uniform(rng, n, dtype, -1, 1)
        self.g = aligned_uniform(rng, n, dtype, -1, 1)


class AdamCase(_Step):
    """``fusedopt.adam_step`` on one array of n elements."""

    arrays, peer_arrays = 4, {"numpy": 1, "torch": 2, "deepspeed": 2}
    torch_impl, torch_op = "torch.optim.Adam(fused=True)", "aten::_fused_adam_"

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype, rng)
        self.m = aligned_zeros(n, dtype)
        self.v = aligned_zeros(n, dtype)

    def stream_args(self) -> Quad:
        return self.p, self.g, self.m, self.v

    def fusedopt(self, k: Optional[int]) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.adam_step
        p, g, m, v = self.p, self.g, self.m, self.v
        t = [0]

        def run() -> None:
            t[0] += 1
            step(p, g, m, v, step=t[0], lr=LR, n_threads=k)
        return run

    def numpy(self) -> Peer:
        return numpy_adam([(self.p, self.g, self.m, self.v)],
                          aligned_empty(self.n, self.dtype)), None

    def torch(self, env: Env) -> Peer:
        opt = env.torch.optim.Adam(torch_params(env.torch, [self.p], [self.g]), lr=LR,
                                   fused=True)
        return opt.step, None

    def deepspeed(self, env: Env) -> Peer:
        if self.dtype != np.float32:
            raise Unsupported("float32 only")
        with quiet_fds():
            opt = env.ds_cls(torch_params(env.torch, [self.p], [self.g]), lr=LR,
                             adamw_mode=False)
        return opt.step, None


class MultiCase:
    """One class-API step over 1000 separately allocated tensors of 1000 elements."""

    torch_impl, torch_op = "torch.optim.Adam(fused=True)", "aten::_fused_adam_"
    torch_label, deepspeed_skip = "torch fused", None

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.n, self.dtype = MULTI_TENSORS * MULTI_SIZE, np.dtype(dtype)
        self.ps = [rng.uniform(-1, 1, MULTI_SIZE).astype(dtype) for _ in range(MULTI_TENSORS)]
        self.gs = [rng.uniform(-1, 1, MULTI_SIZE).astype(dtype) for _ in range(MULTI_TENSORS)]
        self._flat: Optional[Quad] = None

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        return 10 * MULTI_TENSORS * MULTI_SIZE * esz * 1.2

    def stream_args(self) -> Quad:
        # the ceiling of the same million elements as one flat tensor
        if self._flat is None:
            n, dt = self.n, self.dtype
            self._flat = (np.concatenate(self.ps), np.concatenate(self.gs),
                          aligned_zeros(n, dt), aligned_zeros(n, dt))
        return self._flat

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        opt = fusedopt.Adam([p for p in self.ps], lr=LR)
        step, gs = opt.step, self.gs
        return lambda: step(gs, n_threads=k)

    def numpy(self) -> Peer:
        items = [(p, g, np.zeros_like(p), np.zeros_like(p)) for p, g in zip(self.ps, self.gs)]
        return numpy_adam(items, aligned_empty(MULTI_SIZE, self.dtype)), None

    def torch(self, env: Env) -> Peer:
        opt = env.torch.optim.Adam(torch_params(env.torch, self.ps, self.gs), lr=LR,
                                   fused=True)
        return opt.step, None

    def deepspeed(self, env: Env) -> Peer:
        with quiet_fds():
            opt = env.ds_cls(torch_params(env.torch, self.ps, self.gs), lr=LR,
                             adamw_mode=False)
        return opt.step, None


class ClipCase:
    """``fusedopt.clip_grad_norm_`` over 2000 separately allocated gradients of 1000
    elements, against ``torch.nn.utils.clip_grad_norm_`` (its foreach default) and NumPy
    (a dot product per array, then an in-place multiply).  Every call clips: each one
    halves max_norm (from half the starting norm, the gradients scaled by 2**40 so that
    the norm stays far above torch's 1e-6), and every ``RESTART`` calls the gradients are
    multiplied by 2**RESTART (exact) and max_norm starts again; each implementation runs
    that schedule from the same starting gradients, so it costs all of them the same (one
    extra read-write pass per 60 calls)."""

    torch_impl, torch_op = "torch.nn.utils.clip_grad_norm_", None
    torch_label, deepspeed_skip = "torch", "no clipping op"
    RESTART = 60

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.n, self.dtype = CLIP_TENSORS * CLIP_SIZE, np.dtype(dtype)
        self.gs = [(rng.uniform(-1, 1, CLIP_SIZE) * 2.0 ** 40).astype(dtype)
                   for _ in range(CLIP_TENSORS)]
        self.start = [g.copy() for g in self.gs]
        self.norm0 = math.sqrt(sum(float(np.dot(g.astype(np.float64), g.astype(np.float64)))
                                   for g in self.gs))
        self._flat: Optional[Quad] = None

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        return 7 * CLIP_TENSORS * CLIP_SIZE * esz * 1.2

    def stream_args(self) -> Quad:
        # the ceiling of the same elements as one flat array: read it, then scale it
        if self._flat is None:
            flat = np.concatenate(self.gs)
            self._flat = (flat, flat, aligned_zeros(self.n, self.dtype),
                          aligned_zeros(self.n, self.dtype))
        return self._flat

    @property
    def ps(self) -> Sequence[np.ndarray]:      # what the peers' results are compared on
        return self.gs

    def _schedule(self, clip: Callable[[float], Any]) -> Callable[[], None]:
        """``clip(max_norm)`` with a max_norm below the gradients' norm at every call."""
        for g, g0 in zip(self.gs, self.start):
            g[...] = g0
        gs, restart, up = self.gs, self.RESTART, self.dtype.type(2.0 ** self.RESTART)
        norm0, k = self.norm0, [0]

        def run() -> None:
            if k[0] == restart:
                for g in gs:
                    np.multiply(g, up, out=g)
                k[0] = 0
            k[0] += 1
            clip(norm0 * 0.5 ** k[0])
        return run

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        clip, gs = fusedopt.clip_grad_norm_, self.gs
        return self._schedule(lambda mx: clip(gs, mx, n_threads=k))

    def numpy(self) -> Peer:
        gs, dt = self.gs, self.dtype.type

        def clip(mx: float) -> None:
            total = math.sqrt(sum(float(np.dot(g, g)) for g in gs))
            coef = dt(min(mx / (total + 1e-6), 1.0))
            for g in gs:
                np.multiply(g, coef, out=g)
        return self._schedule(clip), None

    def torch(self, env: Env) -> Peer:
        torch = env.torch
        params = torch_params(torch, [np.empty_like(g) for g in self.gs], self.gs)
        clip_ = torch.nn.utils.clip_grad_norm_
        return self._schedule(lambda mx: clip_(params, mx)), None

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported("no clipping op")


class SGDCase(_Step):
    """``fusedopt.sgd_step`` with momentum 0.9 on one array of n elements."""

    arrays, peer_arrays = 3, {"numpy": 1, "torch": 1, "deepspeed": 0}
    torch_impl, torch_op, deepspeed_skip = ("torch.optim.SGD(fused=True)", "aten::_fused_sgd_",
                                            "no CPU SGD")

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype, rng)
        self.buf = aligned_zeros(n, dtype)
        self.lr, self.mu = LR, 0.9

    def stream_args(self) -> Quad:
        return self.p, self.g, self.buf, self.buf

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.sgd_step
        p, g, buf, lr, mu = self.p, self.g, self.buf, self.lr, self.mu
        # step >= 2: the steady state (step 1 only copies the gradient into the buffer)
        return lambda: step(p, g, buf, lr=lr, momentum=mu, step=2, n_threads=k)

    def numpy(self) -> Peer:
        p, g, buf = self.p, self.g, self.buf
        tmp = aligned_empty(self.n, self.dtype)
        dt = self.dtype.type
        lr, mu = dt(self.lr), dt(self.mu)
        mul = np.multiply

        def run() -> None:
            mul(buf, mu, out=buf)              # buf = mu*buf + g
            np.add(buf, g, out=buf)
            mul(buf, lr, out=tmp)              # p -= lr*buf
            np.subtract(p, tmp, out=p)
        return run, None

    def torch(self, env: Env) -> Peer:
        opt = env.torch.optim.SGD(torch_params(env.torch, [self.p], [self.g]), lr=self.lr,
                                  momentum=self.mu, fused=True)
        return opt.step, None

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported("no CPU SGD")


class _OneState(_Step):
    """An optimizer with one state ``s`` like its parameters (the access pattern of SGD
    with momentum: p and s read and written, g read; 20 bytes per float32 element)."""

    arrays = 3

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype, rng)
        self.s = aligned_zeros(n, dtype)

    def stream_args(self) -> Quad:
        return self.p, self.g, self.s, self.s


class _Accumulator(_OneState):
    """A one-state case whose state must stay >= 0 (a sum or average of squares): the
    ceiling, which writes arbitrary values, runs on a scratch array in its place (same
    size and alignment: the same traffic)."""

    arrays = 4

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype, rng)
        self.scratch = aligned_zeros(n, dtype)

    def stream_args(self) -> Quad:
        return self.p, self.g, self.scratch, self.scratch


class LionCase(_OneState):
    """``fusedopt.lion_step`` with weight decay on one array of n elements.  torch has no
    Lion: its peer is the update in torch's in-place tensor ops (as the lion-pytorch
    package writes it)."""

    peer_arrays = {"numpy": 1, "torch": 1, "deepspeed": 0}
    torch_impl, torch_op, deepspeed_skip = "torch in-place tensor ops", None, "no Lion"
    torch_label = "torch ops"
    B1, B2, WD = 0.9, 0.99, 0.01

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.lion_step
        p, g, m, b, wd = self.p, self.g, self.s, (self.B1, self.B2), self.WD
        return lambda: step(p, g, m, lr=LR, betas=b, weight_decay=wd, n_threads=k)

    def numpy(self) -> Peer:
        p, g, m = self.p, self.g, self.s
        tmp = aligned_empty(self.n, self.dtype)
        dt = self.dtype.type
        b1, c1, b2, c2 = dt(self.B1), dt(1 - self.B1), dt(self.B2), dt(1 - self.B2)
        decay, neg_lr = dt(1 - LR * self.WD), dt(-LR)
        mul, add = np.multiply, np.add

        def run() -> None:
            mul(p, decay, out=p)               # p *= 1 - lr*wd
            mul(m, b1, out=tmp)                # c = b1*m + (1 - b1)*g
            add(tmp, mul(g, c1), out=tmp)
            np.sign(tmp, out=tmp)
            mul(tmp, neg_lr, out=tmp)          # p -= lr*sign(c)
            add(p, tmp, out=p)
            mul(m, b2, out=m)                  # m = b2*m + (1 - b2)*g
            add(m, mul(g, c2, out=tmp), out=m)
        return run, None

    def torch(self, env: Env) -> Peer:
        torch = env.torch
        p, g, m = (torch.from_numpy(a) for a in (self.p, self.g, self.s))
        b1, b2, lr, wd = self.B1, self.B2, LR, self.WD

        def run() -> None:
            with torch.no_grad():
                p.mul_(1 - lr * wd)
                update = m.mul(b1).add_(g, alpha=1 - b1).sign_()
                p.add_(update, alpha=-lr)
                m.mul_(b2).add_(g, alpha=1 - b2)
        return run, None

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported("no Lion")


class AdagradCase(_Accumulator):
    """``fusedopt.adagrad_step`` (torch's rule, lr 1e-2) on one array of n elements."""

    peer_arrays = {"numpy": 1, "torch": 1, "deepspeed": 0}
    torch_impl, torch_op = "torch.optim.Adagrad(fused=True)", "aten::_fused_adagrad_"
    deepspeed_skip = "its CPU Adagrad is not measured"
    LR, EPS = 1e-2, 1e-10

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.adagrad_step
        p, g, s, lr, eps = self.p, self.g, self.s, self.LR, self.EPS
        return lambda: step(p, g, s, lr=lr, eps=eps, n_threads=k)

    def numpy(self) -> Peer:
        p, g, s = self.p, self.g, self.s
        tmp = aligned_empty(self.n, self.dtype)
        dt = self.dtype.type
        lr, eps = dt(self.LR), dt(self.EPS)

        def run() -> None:
            np.add(s, np.multiply(g, g, out=tmp), out=s)     # s += g*g
            np.sqrt(s, out=tmp)                              # p -= lr*g/(sqrt(s) + eps)
            np.add(tmp, eps, out=tmp)
            np.divide(g, tmp, out=tmp)
            np.multiply(tmp, lr, out=tmp)
            np.subtract(p, tmp, out=p)
        return run, None

    def torch(self, env: Env) -> Peer:
        opt = env.torch.optim.Adagrad(torch_params(env.torch, [self.p], [self.g]),
                                      lr=self.LR, eps=self.EPS, fused=True)
        return opt.step, None

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported(self.deepspeed_skip or "")


class RMSpropCase(_Accumulator):
    """``fusedopt.rmsprop_step`` (torch's rule and defaults) on one array of n elements.
    torch has no fused CPU RMSprop: its peer is torch.optim.RMSprop's default (the
    for-loop over tensors, a few tensor ops each)."""

    peer_arrays = {"numpy": 1, "torch": 2, "deepspeed": 0}
    torch_impl, torch_op = "torch.optim.RMSprop (no fused CPU kernel)", None
    torch_label, deepspeed_skip = "torch", "no RMSprop"
    LR, ALPHA, EPS = 1e-2, 0.99, 1e-8

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.rmsprop_step
        p, g, v = self.p, self.g, self.s
        return lambda: step(p, g, v, n_threads=k)

    def numpy(self) -> Peer:
        p, g, v = self.p, self.g, self.s
        tmp = aligned_empty(self.n, self.dtype)
        dt = self.dtype.type
        a, oma, lr, eps = dt(self.ALPHA), dt(1 - self.ALPHA), dt(self.LR), dt(self.EPS)
        mul = np.multiply

        def run() -> None:
            mul(v, a, out=v)                   # v = v*alpha + (1 - alpha)*g*g
            mul(g, oma, out=tmp)
            mul(tmp, g, out=tmp)
            np.add(v, tmp, out=v)
            np.sqrt(v, out=tmp)                # p -= lr*g/(sqrt(v) + eps)
            np.add(tmp, eps, out=tmp)
            np.divide(g, tmp, out=tmp)
            mul(tmp, lr, out=tmp)
            np.subtract(p, tmp, out=p)
        return run, None

    def torch(self, env: Env) -> Peer:
        opt = env.torch.optim.RMSprop(torch_params(env.torch, [self.p], [self.g]),
                                      lr=self.LR, alpha=self.ALPHA, eps=self.EPS)
        return opt.step, None

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported("no RMSprop")


def matrix_shape(n: int) -> Tuple[int, int]:
    """The most nearly square (rows, cols) with rows * cols == n and rows <= cols."""
    r = math.isqrt(n)
    while n % r:
        r -= 1
    return r, n // r


class _RelativeStep(_Step):
    """A case whose step is relative to the parameter's norm (Adafactor, LAMB): fed one
    gradient over and over, the parameter grows geometrically (1e-2 of itself a call)
    and overflows within the calls of a timing run.  Every implementation alternates
    between g and -g instead (two arrays, no extra pass), which keeps it bounded."""

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype, rng)
        self.g_neg = aligned_empty(n, dtype)
        np.negative(self.g, out=self.g_neg)

    def grads(self) -> Tuple[np.ndarray, np.ndarray]:
        """(g, -g), shaped like the parameter."""
        return self.g, self.g_neg.reshape(self.g.shape)

    def torch_alternating(self, env: Env, make: Callable[[Any], Any]) -> Peer:
        """A torch optimizer (``make(params)``) stepped with g and -g in turn."""
        torch = env.torch
        (tp,) = torch_params(torch, [self.p], [self.g])
        gs = [torch.from_numpy(g) for g in self.grads()]
        opt, t = make([tp]), [0]

        def run() -> None:
            t[0] += 1
            tp.grad = gs[t[0] % 2]
            opt.step()
        return run, None


class AdafactorCase(_RelativeStep):
    """``fusedopt.adafactor_step`` (torch's rule and defaults) on one array of n elements,
    1-D (the unfactored second moment ``v``).  torch has no fused Adafactor: its peer is
    torch.optim.Adafactor's default (the for-loop over tensors)."""

    arrays, peer_arrays = 5, {"numpy": 1, "torch": 2, "deepspeed": 0}
    torch_impl, torch_op = "torch.optim.Adafactor (no fused CPU kernel)", None
    torch_label, deepspeed_skip = "torch", "no Adafactor"
    LR, DECAY, EPS1, EPS2, D = 1e-2, -0.8, None, 1e-3, 1.0
    factored = False

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype, rng)
        self.shape: Tuple[int, ...] = matrix_shape(n) if self.factored else (n,)
        self.p, self.g = self.p.reshape(self.shape), self.g.reshape(self.shape)
        self.states: List[Any]
        if self.factored:
            r, c = matrix_shape(n)
            self.states = [aligned_zeros(r, dtype).reshape(r, 1),
                           aligned_zeros(c, dtype).reshape(1, c), None]
        else:
            self.states = [None, None, aligned_zeros(n, dtype)]
        self.scratch = aligned_zeros(n, dtype)   # the ceiling's c and d (v stays >= 0)

    def stream_args(self) -> Quad:
        return self.p.reshape(-1), self.g.reshape(-1), self.scratch, self.scratch

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.adafactor_step
        p, gs, states, t = self.p, self.grads(), self.states, [0]

        def run() -> None:
            t[0] += 1
            step(p, gs[t[0] % 2], *states, step=t[0], n_threads=k)
        return run

    def numpy(self) -> Peer:
        """torch's rule in NumPy: in-place ufuncs and one temporary, the norms and means
        NumPy's own reductions in the array's dtype."""
        p, gs = self.p, self.grads()
        dt = self.dtype.type
        tmp = aligned_empty(self.n, self.dtype).reshape(self.shape)
        eps1 = float(np.finfo(self.dtype).eps) if self.EPS1 is None else self.EPS1
        e1sq, sqrt_n, t = dt(eps1 * eps1), math.sqrt(self.n), [0]
        rv, cv, v = self.states
        mul, sqrt = np.multiply, np.sqrt

        def run() -> None:
            t[0] += 1
            g = gs[t[0] % 2]
            w = dt(t[0] ** self.DECAY)
            rho = min(self.LR, 1 / math.sqrt(t[0]))
            alpha = max(self.EPS2, math.sqrt(float(np.dot(p.ravel(), p.ravel()))) /
                        sqrt_n) * rho
            mul(g, g, out=tmp)
            if self.factored:
                r, c = matrix_shape(self.n)
                np.add(rv, w * (tmp.sum(axis=1, keepdims=True) / dt(c) - rv), out=rv)
                np.add(cv, w * (tmp.sum(axis=0, keepdims=True) / dt(r) - cv), out=cv)
                rmc = max(float(rv.mean()), eps1)
                mul(rv / dt(rmc), cv, out=tmp)             # the variance estimate
            else:
                np.subtract(tmp, v, out=tmp)               # v = lerp(v, g*g, w)
                mul(tmp, w, out=tmp)
                np.add(v, tmp, out=v)
                np.copyto(tmp, v)
            np.maximum(tmp, e1sq, out=tmp)               # U = g/sqrt(max(V, eps1**2))
            sqrt(tmp, out=tmp)
            np.divide(g, tmp, out=tmp)
            unorm = math.sqrt(float(np.dot(tmp.ravel(), tmp.ravel())))
            mul(tmp, dt(-alpha / max(1.0, unorm / (sqrt_n * self.D))), out=tmp)
            np.add(p, tmp, out=p)
        return run, None

    def torch(self, env: Env) -> Peer:
        return self.torch_alternating(env, lambda ps: env.torch.optim.Adafactor(
            ps, lr=self.LR, beta2_decay=self.DECAY, eps=(self.EPS1, self.EPS2), d=self.D))

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported("no Adafactor")


class Adafactor2dCase(AdafactorCase):
    """``fusedopt.adafactor_step`` on an R x C matrix of n elements (the most nearly
    square), the factored second moment: row and column statistics."""

    arrays, peer_arrays = 4, {"numpy": 1, "torch": 3, "deepspeed": 0}
    factored = True


class LAMBCase(_RelativeStep):
    """``fusedopt.lamb_step`` (optax's rule, weight decay 0.01) on one array of n
    elements.  torch has no LAMB: its peer is the update in torch's in-place tensor ops
    (as the torch-optimizer package's Lamb writes it, with optax's rule)."""

    arrays, peer_arrays = 5, {"numpy": 2, "torch": 2, "deepspeed": 0}
    torch_impl, torch_op, deepspeed_skip = "torch in-place tensor ops", None, "no LAMB"
    torch_label = "torch ops"
    B1, B2, EPS, WD = 0.9, 0.999, 1e-6, 0.01

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype, rng)
        self.m = aligned_zeros(n, dtype)
        self.v = aligned_zeros(n, dtype)

    def stream_args(self) -> Quad:
        return self.p, self.g, self.m, self.v

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.lamb_step
        p, gs, m, v, t = self.p, self.grads(), self.m, self.v, [0]
        b, eps, wd = (self.B1, self.B2), self.EPS, self.WD

        def run() -> None:
            t[0] += 1
            step(p, gs[t[0] % 2], m, v, step=t[0], lr=LR, betas=b, eps=eps, weight_decay=wd,
                 n_threads=k)
        return run

    def numpy(self) -> Peer:
        p, gs, m, v = self.p, self.grads(), self.m, self.v
        u, tmp = aligned_empty(self.n, self.dtype), aligned_empty(self.n, self.dtype)
        dt = self.dtype.type
        b1, c1, b2, c2 = dt(self.B1), dt(1 - self.B1), dt(self.B2), dt(1 - self.B2)
        eps, wd, t = dt(self.EPS), dt(self.WD), [0]
        mul, add = np.multiply, np.add

        def run() -> None:
            t[0] += 1
            g = gs[t[0] % 2]
            mul(m, b1, out=m)                  # m = b1*m + (1 - b1)*g
            add(m, mul(g, c1, out=tmp), out=m)
            mul(v, b2, out=v)                  # v = b2*v + (1 - b2)*g*g
            mul(g, g, out=tmp)
            add(v, mul(tmp, c2, out=tmp), out=v)
            np.divide(v, dt(1 - self.B2 ** t[0]), out=tmp)    # u = m_hat/(sqrt(v_hat) + eps)
            np.sqrt(tmp, out=tmp)
            add(tmp, eps, out=tmp)
            np.divide(m, dt(1 - self.B1 ** t[0]), out=u)
            np.divide(u, tmp, out=u)
            add(u, mul(p, wd, out=tmp), out=u)                # + wd*p
            pn, un = math.sqrt(float(np.dot(p, p))), math.sqrt(float(np.dot(u, u)))
            r = pn / un if pn > 0 and un > 0 else 1.0
            add(p, mul(u, dt(-LR * r), out=u), out=p)
        return run, None

    def torch(self, env: Env) -> Peer:
        torch = env.torch
        p, m, v = (torch.from_numpy(a) for a in (self.p, self.m, self.v))
        gs = [torch.from_numpy(a) for a in self.grads()]
        b1, b2, eps, wd, t = self.B1, self.B2, self.EPS, self.WD, [0]

        def run() -> None:
            t[0] += 1
            g = gs[t[0] % 2]
            with torch.no_grad():
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                u = (m / (1 - b1 ** t[0])).div_((v / (1 - b2 ** t[0])).sqrt_().add_(eps))
                u.add_(p, alpha=wd)
                pn, un = p.norm(), u.norm()
                r = (pn / un).item() if pn > 0 and un > 0 else 1.0
                p.add_(u, alpha=-LR * r)
        return run, None

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported("no LAMB")


def autograd_loss(torch: Any, loss: Callable[[Any, Any], Any], x: np.ndarray,
                  y: np.ndarray) -> Tuple[Callable[[], None], Any]:
    """A forward+backward of ``loss(x, y)`` through torch's autograd on tensors sharing
    x's and y's memory, and the input tensor (its .grad: the gradient, for tests)."""
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.from_numpy(y)

    def run() -> None:
        xt.grad = None
        loss(xt, yt).backward()
    return run, xt


class CECase(_Flat):
    """``fusedopt.sigmoid_cross_entropy_and_grad`` (mean) on n logits, float32 labels."""

    arrays, peer_arrays = 3, {"numpy": 3.25, "torch": 5, "deepspeed": 0}
    torch_impl, torch_op = "autograd F.binary_cross_entropy_with_logits fwd+bwd", None
    torch_label, deepspeed_skip = "torch autograd", "no loss kernel"

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        super().__init__(n, dtype)
        self.x = aligned_uniform(rng, n, dtype, -8, 8)
        self.y = aligned_empty(n, dtype)
        self.y[...] = rng.random(n) < 0.5
        self.grad = aligned_zeros(n, dtype)

    def stream_args(self) -> Quad:
        return self.x, self.y, self.grad, self.grad

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        f = fusedopt.sigmoid_cross_entropy_and_grad
        x, y, out = self.x, self.y, self.grad
        return lambda: f(x, y, out=out, n_threads=k)

    def numpy(self) -> Peer:
        """The stable formula, in place: loss = mean(max(x, 0) - x*y + log1p(exp(-|x|))),
        grad = (sigmoid(x) - y)/n with sigmoid(x) = 1/(1 + e) for x >= 0, 1 - 1/(1 + e)
        for x < 0 (e = exp(-|x|))."""
        x, y, g = self.x, self.y, self.grad
        n, dt = self.n, self.dtype
        e, t, u = aligned_empty(n, dt), aligned_empty(n, dt), aligned_empty(n, dt)
        neg = np.empty(n, dtype=bool)
        inv_n, one, zero = dt.type(1.0 / n), dt.type(1), dt.type(0)

        def run() -> float:
            np.abs(x, out=e)
            np.negative(e, out=e)
            np.exp(e, out=e)                   # e = exp(-|x|)
            np.log1p(e, out=t)
            np.maximum(x, zero, out=u)
            np.add(t, u, out=t)
            np.multiply(x, y, out=u)
            np.subtract(t, u, out=t)
            loss = float(t.sum()) / n
            np.add(e, one, out=u)
            np.reciprocal(u, out=g)            # sigmoid(|x|)
            np.less(x, zero, out=neg)
            np.subtract(one, g, out=g, where=neg)
            np.subtract(g, y, out=g)
            np.multiply(g, inv_n, out=g)
            return loss
        return run, None

    def torch(self, env: Env) -> Peer:
        run, self.torch_x = autograd_loss(
            env.torch, env.torch.nn.functional.binary_cross_entropy_with_logits,
            self.x, self.y)
        return run, None

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported("no loss kernel")


class TorchCECase(CECase):
    """``fusedopt.torch.functional.binary_cross_entropy_with_logits`` forward+backward
    through torch's autograd, against ``torch.nn.functional``'s (the CECase arrays)."""

    peer_arrays = {"numpy": 0, "torch": 5, "deepspeed": 0}
    deepspeed_skip = "no loss kernel"

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        try:
            import torch                           # noqa: F401
        except ImportError:
            raise Unsupported("needs torch, which is not installed") from None
        super().__init__(n, dtype, rng)

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import torch
        import fusedopt
        from fusedopt.torch.functional import binary_cross_entropy_with_logits as bce
        step, self.fusedopt_x = autograd_loss(torch, bce, self.x, self.y)

        def run() -> None:
            saved = fusedopt.get_num_threads()
            fusedopt.set_num_threads(k)
            try:
                step()
            finally:
                fusedopt.set_num_threads(saved)
        return run

    def numpy(self) -> Peer:
        raise Unsupported("a torch autograd case")


class SoftmaxCase(_Flat):
    """``fusedopt.softmax_cross_entropy_and_grad`` (mean) on (rows, classes) float32
    logits, standard normal, with uniform class indices; n/classes rows (at least one)."""

    arrays, peer_arrays = 2, {"numpy": 0.1, "torch": 3, "deepspeed": 0}
    torch_impl, torch_op = "autograd F.cross_entropy fwd+bwd", None
    torch_label, deepspeed_skip = "torch autograd", "no loss kernel"
    classes = 32000

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        c = self.classes
        rows = max(1, n // c)
        super().__init__(rows * c, dtype)
        self.x = aligned_empty(rows * c, dtype).reshape(rows, c)
        self.x[...] = rng.standard_normal((rows, c), dtype=self.dtype)
        self.y = rng.integers(0, c, rows)
        self.grad = aligned_zeros(rows * c, dtype).reshape(rows, c)

    def stream_args(self) -> Quad:
        x, g = self.x.reshape(-1), self.grad.reshape(-1)
        return x, x, g, g

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        f = fusedopt.softmax_cross_entropy_and_grad
        x, y, out = self.x, self.y, self.grad
        return lambda: f(x, y, out=out, n_threads=k)

    def numpy(self) -> Peer:
        """In place in the gradient array: g = exp(x - max), s = row sums,
        loss = mean(log s - (x[y] - max)), g = (g/s - onehot(y))/rows."""
        x, y, g = self.x, self.y, self.grad
        rows = x.shape[0]
        idx = np.arange(rows)
        dt = self.dtype.type
        inv = dt(1.0 / rows)

        def run() -> float:
            m = x.max(axis=1, keepdims=True)
            np.subtract(x, m, out=g)
            picked = g[idx, y]                 # x[y] - max
            np.exp(g, out=g)
            s = g.sum(axis=1, keepdims=True)
            loss = float(np.mean(np.log(s[:, 0]) - picked))
            np.divide(g, s, out=g)
            g[idx, y] -= 1
            np.multiply(g, inv, out=g)
            return loss
        return run, None

    def torch(self, env: Env) -> Peer:
        run, self.torch_x = autograd_loss(env.torch, env.torch.nn.functional.cross_entropy,
                                          self.x, self.y)
        return run, None

    def deepspeed(self, env: Env) -> Peer:
        raise Unsupported("no loss kernel")


class SoftmaxNarrowCase(SoftmaxCase):
    classes = 10


class SoftmaxWideCase(SoftmaxCase):
    classes = 131072


#: the cases of a fixed shape (one row each, not one per size): its two numbers, and
#: their names in the row
FIXED: Dict[str, Tuple[int, int]] = {"multi": (MULTI_TENSORS, MULTI_SIZE),
                                     "clip": (CLIP_TENSORS, CLIP_SIZE),
                                     "softmax": (2048, SoftmaxCase.classes),
                                     "softmax_narrow": (65536, SoftmaxNarrowCase.classes),
                                     "softmax_wide": (512, SoftmaxWideCase.classes)}
FIXED_FIELDS: Dict[str, Tuple[str, str]] = {
    k: ("rows", "classes") if k.startswith("softmax") else ("tensors", "tensor_size")
    for k in FIXED}
CASES: Dict[str, Any] = {"adam": AdamCase, "adam64": AdamCase, "sgd": SGDCase,
                         "lion": LionCase, "adagrad": AdagradCase, "rmsprop": RMSpropCase,
                         "adafactor": AdafactorCase, "adafactor2d": Adafactor2dCase,
                         "lamb": LAMBCase,
                         "ce": CECase, "torch_ce": TorchCECase, "softmax": SoftmaxCase,
                         "softmax_narrow": SoftmaxNarrowCase,
                         "softmax_wide": SoftmaxWideCase, "multi": MultiCase,
                         "clip": ClipCase}
