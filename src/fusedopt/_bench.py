"""``python -m fusedopt bench``: fusedopt's kernels against their peers and the machine.

For each kernel, size and thread count the report times fusedopt, a careful NumPy version
(in-place ufuncs with preallocated temporaries and ``out=``), torch's fused optimizers /
autograd (when torch is installed) and DeepSpeed's ``DeepSpeedCPUAdam`` (when importable),
and measures, in the same run and on the same arrays, the memory-bandwidth ceiling with
``fusedopt._core.stream``: a small C loop with the kernel's access pattern (Adam: 4 reads +
3 writes per element; SGD with momentum: 3 + 2; the loss: 2 + 1).

Timing: every implementation is warmed up (first call excluded: it pays page faults and lazy
state allocation), then timed in samples of ``number`` back-to-back calls (``number`` chosen
so that a sample lasts a few milliseconds), and the median over the samples is reported.
fusedopt and the ceiling are sampled alternately (so that noise on a shared machine hits
both alike); each peer is then set up, timed and freed on its own, one at a time, so that
large sizes need memory for one peer only.  NumPy's ufuncs are single-threaded: NumPy is
timed once per size and that time is used in every thread-count row.

Nothing here asserts a speed; the optional "targets" section only reports.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import (Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import numpy as np

# ----------------------------------------------------------------------------- constants

KERNELS: Dict[str, Dict[str, Any]] = {
    "adam": dict(label="Adam f32", dtype="float32", pattern="adam", bpe=28, unit="GB/s",
                 what="fusedopt.adam_step (functional), torch convention"),
    "adam64": dict(label="Adam f64", dtype="float64", pattern="adam", bpe=56, unit="GB/s",
                   what="fusedopt.adam_step (functional), float64"),
    "sgd": dict(label="SGD momentum f32", dtype="float32", pattern="sgd", bpe=20,
                unit="GB/s", what="fusedopt.sgd_step, momentum 0.9"),
    "ce": dict(label="sigmoid CE loss+grad f32", dtype="float32", pattern="loss", bpe=12,
               unit="Melem/s", what="fusedopt.sigmoid_cross_entropy_and_grad, float32 "
               "labels, reduction mean, out= preallocated"),
    "multi": dict(label="Adam f32, 1000 x 1000 tensors", dtype="float32", pattern="adam",
                  bpe=28, unit="GB/s", what="fusedopt.Adam(...).step over 1000 tensors of "
                  "1000 elements (class API, one C call)"),
}
KERNEL_ORDER = ["adam", "adam64", "sgd", "ce", "multi"]
PEERS = ["numpy", "torch", "deepspeed"]
PEER_LABEL = {"numpy": "NumPy", "torch": "torch", "deepspeed": "DeepSpeed"}
FULL_SIZES = [10 ** 3, 10 ** 5, 10 ** 6, 10 ** 7, 10 ** 8]
QUICK_SIZES = [10 ** 3, 10 ** 6, 10 ** 7]
MULTI_TENSORS, MULTI_SIZE = 1000, 1000
MEMORY_FRACTION = 0.8        # use at most this share of the available memory


def _log(msg: str = "", end: str = "\n") -> None:
    print(msg, end=end, file=sys.stderr, flush=True)


def _tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _status(msg: str, end: str = "") -> None:
    """Transient progress (rewritten in place on a terminal, left out in a log)."""
    if _tty():
        _log(msg, end=end)


# ----------------------------------------------------------------------------- arguments

def _list_of(conv: Callable[[str], Any], what: str) -> Callable[[str], List[Any]]:
    def parse(s: str) -> List[Any]:
        out = []
        for part in s.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(conv(part))
            except (ValueError, argparse.ArgumentTypeError) as e:
                raise argparse.ArgumentTypeError(f"bad {what} {part!r}: {e}") from None
        if not out:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}s")
        return out
    return parse


def _size(s: str) -> int:
    v = float(s)
    if not (v >= 1 and v == int(v) and v <= 1e12):
        raise ValueError("expected a positive integer such as 1000 or 1e6")
    return int(v)


def _threads(s: str) -> int:
    v = int(s)
    if v < 1:
        raise ValueError("expected a positive integer")
    return v


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def conv(s: str) -> str:
        s = s.lower()
        if s not in choices:
            raise ValueError(f"choose from {', '.join(choices)}")
        return s
    return conv


def _positive(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise ValueError("expected a positive number")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the options of ``fusedopt bench``."""
    parser.add_argument("--quick", action="store_true",
                        help="sizes 1e3,1e6,1e7 and fewer repeats (under a minute)")
    parser.add_argument("--kernels", type=_list_of(_choice(KERNEL_ORDER + ["all"]), "kernel"),
                        default=None, metavar="LIST",
                        help="comma-separated subset of: adam (f32), adam64 (f64), sgd "
                        "(momentum, f32), ce (sigmoid cross-entropy loss+grad), multi "
                        "(1000 x 1000-element tensors, class API); default all")
    parser.add_argument("--sizes", type=_list_of(_size, "size"), default=None, metavar="LIST",
                        help="element counts, e.g. 1e3,1e6 (default 1e3,1e5,1e6,1e7,1e8; "
                        "--quick: 1e3,1e6,1e7); sizes that do not fit in the available "
                        "memory are skipped. The multi kernel has its fixed size")
    parser.add_argument("--threads", type=_list_of(_threads, "thread count"), default=None,
                        metavar="LIST", help="thread counts (default 1,2)")
    parser.add_argument("--peers", type=_list_of(_choice(PEERS), "peer"), default=None,
                        metavar="LIST", help="comma-separated subset of numpy, torch, "
                        "deepspeed (default: all that are installed)")
    parser.add_argument("--budget", type=_positive, default=None, metavar="SECONDS",
                        help="timing budget per implementation and case (default 0.4, "
                        "--quick 0.12); at least a few repeats run whatever the budget")
    parser.add_argument("--wait-quiet", type=_positive, default=0.0, metavar="SECONDS",
                        help="before each row, wait up to SECONDS until other processes use "
                        "less than 0.2 CPU (for shared machines; default: no wait)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of row dicts instead of the table")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="save throughput vs size per kernel, with the measured ceiling "
                        "as a roofline (needs matplotlib)")
    parser.add_argument("--no-targets", action="store_true",
                        help="leave out the summary of issue-3 targets under the table")


# ----------------------------------------------------------------------------- machine

def _available_memory() -> Optional[int]:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup limit."""
    cands = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    cands.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for lim, cur in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                     ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                      "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(lim) as f:
                s = f.read().strip()
            if s != "max" and int(s) < 1 << 60:
                with open(cur) as f:
                    cands.append(int(s) - int(f.read().strip()))
                break
        except (OSError, ValueError):
            continue
    if not cands:
        try:
            cands.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return max(0, min(cands))


def _fits(nbytes: float) -> Tuple[bool, str]:
    avail = _available_memory()
    if avail is None or nbytes <= MEMORY_FRACTION * avail:
        return True, ""
    return False, (f"needs {nbytes / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


class OtherLoad:
    """CPU time used by other processes (and the hypervisor's steal) while a measurement
    ran, in CPUs (1.0: one core busy elsewhere on average), from /proc/stat minus this
    process's own time.  None where /proc is missing."""

    def __init__(self) -> None:
        try:
            self.hz = os.sysconf("SC_CLK_TCK")
            self._read()
            self.ok = True
        except (OSError, ValueError, IndexError, AttributeError):
            self.ok = False

    @staticmethod
    def _read() -> Tuple[float, int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]   # user nice system irq softirq steal
        with open("/proc/self/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        return time.perf_counter(), busy, int(st[11]) + int(st[12])   # utime + stime

    def start(self) -> Optional[Tuple[float, int, int]]:
        return self._read() if self.ok else None

    def since(self, t0: Optional[Tuple[float, int, int]]) -> Optional[float]:
        if t0 is None:
            return None
        t1 = self._read()
        wall = t1[0] - t0[0]
        if wall <= 0:
            return None
        return max(0.0, ((t1[1] - t0[1]) - (t1[2] - t0[2])) / self.hz / wall)

    def wait_quiet(self, max_wait: float, threshold: float = 0.2) -> Optional[float]:
        """Waits (up to max_wait seconds) until other processes use < threshold CPUs over
        a 0.5 s window; returns the last reading."""
        deadline = time.perf_counter() + max_wait
        while True:
            t0 = self.start()
            time.sleep(0.5)
            busy = self.since(t0)
            if busy is None or busy < threshold or time.perf_counter() >= deadline:
                return busy


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _empty(n: int, dtype: Any, align: int = 64) -> np.ndarray:
    """A 64-byte aligned array (as torch allocates), so every implementation gets the same
    alignment; the arrays are shared with torch through ``torch.from_numpy``."""
    dt = np.dtype(dtype)
    raw = np.empty(n * dt.itemsize + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + n * dt.itemsize].view(dt)


def _uniform(rng: np.random.Generator, n: int, dtype: Any, lo: float, hi: float) -> np.ndarray:
    a = _empty(n, dtype)
    rng.random(dtype=a.dtype.type, out=a)
    a *= hi - lo
    a += lo
    return a


def _zeros(n: int, dtype: Any) -> np.ndarray:
    a = _empty(n, dtype)
    a.fill(0)
    return a


# ----------------------------------------------------------------------------- timing

class Timing:
    __slots__ = ("samples", "number")

    def __init__(self, number: int) -> None:
        self.samples: List[float] = []
        self.number = number

    def summary(self) -> Dict[str, Any]:
        s = sorted(self.samples)
        med = statistics.median(s)
        q1, q3 = (s[len(s) // 4], s[(3 * len(s)) // 4]) if len(s) >= 4 else (s[0], s[-1])
        return {"time_s": med, "min_s": s[0], "spread": (q3 - q1) / med if med > 0 else 0.0,
                "repeats": len(s), "number": self.number}


class Timer:
    """Warm-up, calibration and interleaved repeats (median reported)."""

    def __init__(self, budget: float, min_repeats: int, max_repeats: int,
                 sample_time: float) -> None:
        self.budget, self.min_repeats, self.max_repeats = budget, min_repeats, max_repeats
        self.sample_time = sample_time

    @staticmethod
    def _run(fn: Callable[[], Any], number: int) -> float:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - t0

    def _calibrate(self, fn: Callable[[], Any]) -> Tuple[int, float]:
        t = self._run(fn, 1)                       # warm-up: page faults, lazy state
        number = 1
        if t < self.sample_time:
            number = max(1, min(100000, int(self.sample_time / max(t, 1e-7))))
            t = self._run(fn, number) / number     # second warm-up, better estimate
            number = max(1, min(100000, int(math.ceil(self.sample_time / max(t, 1e-9)))))
        elif t < 0.25:
            t = self._run(fn, 1)                   # a second warm-up call for large sizes
        return number, t

    def measure(self, fns: Dict[str, Callable[[], Any]]) -> Dict[str, Dict[str, Any]]:
        """Times each callable; samples alternate between them (round-robin)."""
        timings: Dict[str, Timing] = {}
        round_time = 0.0
        for name, fn in fns.items():
            number, t = self._calibrate(fn)
            timings[name] = Timing(number)
            round_time += number * t
        per_call = round_time / max(1, len(fns))
        min_rep = self.min_repeats if per_call < 0.3 else min(3, self.min_repeats)
        repeats = int(self.budget * len(fns) / max(round_time, 1e-9))
        repeats = max(min_rep, min(self.max_repeats, repeats))
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for _ in range(repeats):
                for name, fn in fns.items():
                    tm = timings[name]
                    tm.samples.append(self._run(fn, tm.number) / tm.number)
        finally:
            if gc_was:
                gc.enable()
        return {name: tm.summary() for name, tm in timings.items()}


# ----------------------------------------------------------------------------- peers

class Env:
    """What is installed and verified, loaded lazily once per run."""

    def __init__(self, peers: Sequence[str]) -> None:
        self.wanted = list(peers)
        self.torch: Any = None
        self.torch_reason = "not requested"
        self.torch_threads0 = None
        self.fused_ops: Dict[str, Optional[bool]] = {}
        self.ds_cls: Any = None
        self.ds_reason = "not requested"
        self.threadpoolctl: Any = None
        if "torch" in peers or "deepspeed" in peers:
            try:
                import torch
                self.torch = torch
                self.torch_reason = ""
                self.torch_threads0 = torch.get_num_threads()
            except Exception as e:           # ImportError, or a broken install
                self.torch_reason = f"not installed ({type(e).__name__}: {e})"
        if "deepspeed" in peers:
            if self.torch is None:
                self.ds_reason = "needs torch"
            else:
                try:
                    with _quiet_fds():
                        from deepspeed.ops.adam import DeepSpeedCPUAdam  # type: ignore[import, unused-ignore]
                    self.ds_cls = DeepSpeedCPUAdam
                    self.ds_reason = ""
                except Exception as e:
                    self.ds_reason = f"not installed ({type(e).__name__}: {str(e)[:80]})"
        try:
            import threadpoolctl  # type: ignore[import, unused-ignore]
            self.threadpoolctl = threadpoolctl
        except ImportError:
            pass

    def torch_ok(self) -> bool:
        return "torch" in self.wanted and self.torch is not None

    def ds_ok(self) -> bool:
        return "deepspeed" in self.wanted and self.ds_cls is not None

    def verify_fused(self, op: str) -> Optional[bool]:
        """Runs one small torch step under the profiler and looks for ``op``
        (aten::_fused_adam_ / aten::_fused_sgd_) among the executed operators."""
        if op in self.fused_ops:
            return self.fused_ops[op]
        torch = self.torch
        ok: Optional[bool]
        try:
            import warnings
            from torch.profiler import ProfilerActivity, profile
            for dt in (torch.float32, torch.float64) if "adam" in op else (torch.float32,):
                p = torch.zeros(1000, dtype=dt, requires_grad=True)
                p.grad = torch.ones_like(p)
                opt = (torch.optim.Adam([p], fused=True) if "adam" in op else
                       torch.optim.SGD([p], lr=1e-3, momentum=0.9, fused=True))
                opt.step()
                with warnings.catch_warnings(), _quiet_fds():
                    warnings.simplefilter("ignore")
                    with profile(activities=[ProfilerActivity.CPU]) as prof:
                        opt.step()
                keys = {e.key for e in prof.key_averages()}
                ok = op in keys
                if not ok:
                    break
        except Exception:                     # profiler unavailable: unknown
            ok = None
        self.fused_ops[op] = ok
        return ok

    @contextlib.contextmanager
    def torch_threads(self, k: int) -> Iterator[None]:
        torch = self.torch
        before = torch.get_num_threads()
        torch.set_num_threads(k)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    @contextlib.contextmanager
    def all_openmp_threads(self, k: int) -> Iterator[None]:
        """For DeepSpeed, whose extension may carry its own OpenMP runtime."""
        if self.threadpoolctl is None:
            with self.torch_threads(k):
                yield
            return
        with self.threadpoolctl.threadpool_limits(limits=k, user_api="openmp"), \
                self.torch_threads(k):
            yield


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Silences C-level stderr chatter (torch's profiler, DeepSpeed's import)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ----------------------------------------------------------------------------- cases
# Each case owns the fusedopt arrays; a peer is built by a method returning
# (callable, cleanup) and is freed before the next one is built.

Peer = Tuple[Callable[[], Any], Optional[Callable[[], None]]]


class AdamCase:
    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.n, self.dtype = n, np.dtype(dtype)
        self.p = _uniform(rng, n, dtype, -1, 1)
        self.g = _uniform(rng, n, dtype, -1, 1)
        self.m = _zeros(n, dtype)
        self.v = _zeros(n, dtype)
        self.lr, self.b1, self.b2, self.eps = 1e-3, 0.9, 0.999, 1e-8

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        extra = {None: 0, "numpy": 1, "torch": 2, "deepspeed": 2}[peer]
        return (4 + extra) * n * esz * 1.05

    def stream_args(self) -> Tuple[np.ndarray, ...]:
        return self.p, self.g, self.m, self.v

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.adam_step
        p, g, m, v, lr = self.p, self.g, self.m, self.v, self.lr
        t = [0]

        def run() -> None:
            t[0] += 1
            step(p, g, m, v, step=t[0], lr=lr, n_threads=k)
        return run

    def numpy(self) -> Peer:
        p, g, m, v = self.p, self.g, self.m, self.v
        tmp = _empty(self.n, self.dtype)
        lr, b1, b2, eps = self.lr, self.b1, self.b2, self.eps
        dt = self.dtype.type
        c1, c2, t = dt(1 - b1), dt(1 - b2), [0]
        mul, sub, add, sqrt, div = np.multiply, np.subtract, np.add, np.sqrt, np.divide

        def run() -> None:
            t[0] += 1
            bc1, bc2 = 1 - b1 ** t[0], 1 - b2 ** t[0]
            sub(g, m, out=tmp)                 # m = lerp(m, g, 1 - b1)
            mul(tmp, c1, out=tmp)
            add(m, tmp, out=m)
            mul(v, dt(b2), out=v)              # v = b2*v + (1 - b2)*g*g
            mul(g, g, out=tmp)
            mul(tmp, c2, out=tmp)
            add(v, tmp, out=v)
            sqrt(v, out=tmp)                   # denom = sqrt(v)/sqrt(bc2) + eps
            mul(tmp, dt(1 / math.sqrt(bc2)), out=tmp)
            add(tmp, dt(eps), out=tmp)
            div(m, tmp, out=tmp)               # p -= lr/bc1 * m/denom
            mul(tmp, dt(lr / bc1), out=tmp)
            sub(p, tmp, out=p)
        return run, None

    def torch(self, env: Env) -> Peer:
        torch = env.torch
        tp = torch.from_numpy(self.p).requires_grad_(True)
        tp.grad = torch.from_numpy(self.g)
        opt = torch.optim.Adam([tp], lr=self.lr, fused=True)
        return opt.step, None

    def deepspeed(self, env: Env) -> Peer:
        if self.dtype != np.float32:
            raise _Unsupported("float32 only")
        torch = env.torch
        tp = torch.from_numpy(self.p).requires_grad_(True)
        tp.grad = torch.from_numpy(self.g)
        with _quiet_fds():
            opt = env.ds_cls([tp], lr=self.lr, adamw_mode=False)
        return opt.step, None


class MultiCase:
    """One class-API step over 1000 separately allocated tensors of 1000 elements."""

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.n, self.dtype = MULTI_TENSORS * MULTI_SIZE, np.dtype(dtype)
        self.ps = [rng.uniform(-1, 1, MULTI_SIZE).astype(dtype) for _ in range(MULTI_TENSORS)]
        self.gs = [rng.uniform(-1, 1, MULTI_SIZE).astype(dtype) for _ in range(MULTI_TENSORS)]
        self.lr, self.b1, self.b2, self.eps = 1e-3, 0.9, 0.999, 1e-8
        self._flat: Optional[Tuple[np.ndarray, ...]] = None

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        return 10 * MULTI_TENSORS * MULTI_SIZE * esz * 1.2

    def stream_args(self) -> Tuple[np.ndarray, ...]:
        # the ceiling of the same million elements as one flat tensor
        if self._flat is None:
            n, dt = self.n, self.dtype
            self._flat = (np.concatenate(self.ps), np.concatenate(self.gs), _zeros(n, dt),
                          _zeros(n, dt))
        return self._flat

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        opt = fusedopt.Adam([p for p in self.ps], lr=self.lr)
        step, gs = opt.step, self.gs
        return lambda: step(gs, n_threads=k)

    def numpy(self) -> Peer:
        dt = self.dtype.type
        ms = [np.zeros_like(p) for p in self.ps]
        vs = [np.zeros_like(p) for p in self.ps]
        tmp = np.empty(MULTI_SIZE, self.dtype)
        lr, b1, b2, eps = self.lr, self.b1, self.b2, self.eps
        c1, c2, t = dt(1 - b1), dt(1 - b2), [0]
        mul, sub, add, sqrt, div = np.multiply, np.subtract, np.add, np.sqrt, np.divide
        items = list(zip(self.ps, self.gs, ms, vs))

        def run() -> None:
            t[0] += 1
            bc1, bc2 = 1 - b1 ** t[0], 1 - b2 ** t[0]
            s2, s1, fb2, feps = dt(1 / math.sqrt(bc2)), dt(lr / bc1), dt(b2), dt(eps)
            for p, g, m, v in items:
                sub(g, m, out=tmp)
                mul(tmp, c1, out=tmp)
                add(m, tmp, out=m)
                mul(v, fb2, out=v)
                mul(g, g, out=tmp)
                mul(tmp, c2, out=tmp)
                add(v, tmp, out=v)
                sqrt(v, out=tmp)
                mul(tmp, s2, out=tmp)
                add(tmp, feps, out=tmp)
                div(m, tmp, out=tmp)
                mul(tmp, s1, out=tmp)
                sub(p, tmp, out=p)
        return run, None

    def _torch_params(self, torch: Any) -> List[Any]:
        tps = []
        for p, g in zip(self.ps, self.gs):
            tp = torch.from_numpy(p).requires_grad_(True)
            tp.grad = torch.from_numpy(g)
            tps.append(tp)
        return tps

    def torch(self, env: Env) -> Peer:
        opt = env.torch.optim.Adam(self._torch_params(env.torch), lr=self.lr, fused=True)
        return opt.step, None

    def deepspeed(self, env: Env) -> Peer:
        with _quiet_fds():
            opt = env.ds_cls(self._torch_params(env.torch), lr=self.lr, adamw_mode=False)
        return opt.step, None


class SGDCase:
    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.n, self.dtype = n, np.dtype(dtype)
        self.p = _uniform(rng, n, dtype, -1, 1)
        self.g = _uniform(rng, n, dtype, -1, 1)
        self.buf = _zeros(n, dtype)
        self.lr, self.mu = 1e-3, 0.9

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        extra = {None: 0, "numpy": 1, "torch": 1, "deepspeed": 0}[peer]
        return (3 + extra) * n * esz * 1.05

    def stream_args(self) -> Tuple[np.ndarray, ...]:
        return self.p, self.g, self.buf, self.buf

    def fusedopt(self, k: int) -> Callable[[], Any]:
        import fusedopt
        step = fusedopt.sgd_step
        p, g, buf, lr, mu = self.p, self.g, self.buf, self.lr, self.mu
        # step >= 2: the steady state (step 1 only copies the gradient into the buffer)
        return lambda: step(p, g, buf, lr=lr, momentum=mu, step=2, n_threads=k)

    def numpy(self) -> Peer:
        p, g, buf = self.p, self.g, self.buf
        tmp = _empty(self.n, self.dtype)
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
        torch = env.torch
        tp = torch.from_numpy(self.p).requires_grad_(True)
        tp.grad = torch.from_numpy(self.g)
        opt = torch.optim.SGD([tp], lr=self.lr, momentum=self.mu, fused=True)
        return opt.step, None

    def deepspeed(self, env: Env) -> Peer:
        raise _Unsupported("no CPU SGD")


class CECase:
    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.n, self.dtype = n, np.dtype(dtype)
        self.x = _uniform(rng, n, dtype, -8, 8)
        self.y = _empty(n, dtype)
        self.y[...] = rng.random(n) < 0.5
        self.grad = _zeros(n, dtype)

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        extra = {None: 0, "numpy": 3.25, "torch": 5, "deepspeed": 0}[peer]
        return (3 + extra) * n * esz * 1.05

    def stream_args(self) -> Tuple[np.ndarray, ...]:
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
        e, t, u = _empty(n, dt), _empty(n, dt), _empty(n, dt)
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
        torch = env.torch
        F = torch.nn.functional
        xt = torch.from_numpy(self.x).requires_grad_(True)
        yt = torch.from_numpy(self.y)
        bce = F.binary_cross_entropy_with_logits
        self.torch_x = xt                      # its .grad: the gradient (for tests)

        def run() -> None:
            xt.grad = None
            bce(xt, yt).backward()
        return run, None

    def deepspeed(self, env: Env) -> Peer:
        raise _Unsupported("no loss kernel")


class _Unsupported(Exception):
    pass


CASES: Dict[str, Any] = {"adam": AdamCase, "adam64": AdamCase, "sgd": SGDCase, "ce": CECase,
         "multi": MultiCase}


# ----------------------------------------------------------------------------- running

def _rates(spec: Dict[str, Any], n: int, t: float) -> Dict[str, float]:
    return {"gbps": spec["bpe"] * n / t / 1e9, "melem_per_s": n / t / 1e6}


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        quick = bool(args.quick)
        self.kernels = [k for k in KERNEL_ORDER
                        if args.kernels is None or "all" in args.kernels or k in args.kernels]
        self.sizes = sorted(set(args.sizes)) if args.sizes else (QUICK_SIZES if quick
                                                                   else FULL_SIZES)
        self.threads = list(dict.fromkeys(args.threads or [1, 2]))
        self.peers = [p for p in PEERS if args.peers is None or p in args.peers]
        budget = args.budget if args.budget is not None else (0.12 if quick else 0.4)
        self.timer = Timer(budget, min_repeats=3 if quick else 5,
                           max_repeats=15 if quick else 40,
                           sample_time=0.002 if quick else 0.004)
        self.env = Env(self.peers)
        self.rng = np.random.default_rng(0)
        self.rows: List[Dict[str, Any]] = []
        self.floor: Dict[str, float] = {}
        self.load = [_loadavg()]
        self.other = OtherLoad()
        self.wait_quiet = float(getattr(args, "wait_quiet", 0.0) or 0.0)

    def floors(self) -> Dict[str, float]:
        """Per-call floors: the timing loop around a no-op Python call, and the stream
        probe at 16 elements (its own call overhead, part of every small-n ceiling)."""
        from fusedopt import _core
        a, b, c, d = (np.zeros(16, np.float32) for _ in range(4))
        stream = _core.stream
        res = self.timer.measure({"noop": lambda: None,
                                  "probe16": lambda: stream("adam", a, b, c, d, n_threads=1)})
        self.floor = {"noop_call_s": res["noop"]["time_s"],
                      "stream_probe_16_s": res["probe16"]["time_s"]}
        return self.floor

    def cases(self) -> List[Tuple[str, int]]:
        out = []
        for k in self.kernels:
            if k == "multi":
                out.append((k, MULTI_TENSORS * MULTI_SIZE))
            else:
                out.extend((k, n) for n in self.sizes)
        return out

    def run(self) -> List[Dict[str, Any]]:
        from fusedopt import _core
        cases = self.cases()
        t_start = time.perf_counter()
        for ci, (kernel, n) in enumerate(cases):
            spec = KERNELS[kernel]
            dtype = np.dtype(spec["dtype"])
            cls = CASES[kernel]
            label = f"[{ci + 1}/{len(cases)}] {spec['label']} n={_fmt_n(kernel, n)}"
            base = {"kernel": kernel, "label": spec["label"], "dtype": dtype.name, "n": n,
                    "bytes_per_element": spec["bpe"], "unit": spec["unit"]}
            if kernel == "multi":
                base.update(tensors=MULTI_TENSORS, tensor_size=MULTI_SIZE)
            ok, why = _fits(cls.memory(n, dtype.itemsize, None))
            if not ok:
                _log(f"{label}: skipped ({why})")
                for k in self.threads:
                    self.rows.append(dict(base, threads=k, skipped=why))
                continue
            _status(f"{label}: allocating...")
            case = cls(n, dtype, self.rng)
            numpy_result: Optional[Dict[str, Any]] = None
            for k in self.threads:
                row = dict(base, threads=k)
                t0 = time.perf_counter()
                if self.wait_quiet > 0:
                    _status(f"\r\033[K{label} threads={k}: waiting for a quiet machine")
                    busy = self.other.wait_quiet(self.wait_quiet)
                    if busy is not None and busy >= 0.2:
                        _log(("\r\033[K" if _tty() else "") + f"{label} threads={k}: other "
                             f"processes still use {busy:.1f} CPU, measuring anyway")
                _status(f"\r\033[K{label} threads={k}: ceiling+fusedopt")
                sargs: Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
                sargs = case.stream_args()
                pattern = spec["pattern"]
                stream = _core.stream
                mark = self.other.start()
                res = self.timer.measure({
                    "ceiling": lambda: stream(pattern, *sargs, n_threads=k),
                    "fusedopt": case.fusedopt(k),
                })
                row["others_cpu"] = self.other.since(mark)
                fo = dict(res["fusedopt"], **_rates(spec, n, res["fusedopt"]["time_s"]))
                ce = dict(res["ceiling"], pattern=pattern, **_rates(spec, n,
                                                                     res["ceiling"]["time_s"]))
                row["fusedopt"] = fo
                row["ceiling"] = ce
                row["pct_of_ceiling"] = 100.0 * ce["time_s"] / fo["time_s"]
                peers: Dict[str, Any] = {}
                skipped: Dict[str, str] = {}
                for peer in self.peers:
                    if peer == "numpy" and numpy_result is not None:
                        peers["numpy"] = dict(numpy_result)
                        continue
                    _status(f", {peer}")
                    r = self._peer(case, kernel, peer, n, dtype, k, skipped)
                    if r is None:
                        continue
                    r.update(_rates(spec, n, r["time_s"]))
                    if peer == "numpy":
                        r["threads"] = 1
                        numpy_result = r
                    peers[peer] = dict(r)
                for name, r in peers.items():
                    r["speedup"] = r["time_s"] / fo["time_s"]
                row["peers"] = peers
                row["peers_skipped"] = skipped
                self.rows.append(row)
                _log(("\r\033[K" if _tty() else "") + f"{label} threads={k}: fusedopt "
                     f"{_fmt_t(fo['time_s'])} ({row['pct_of_ceiling']:.0f}% of ceiling)"
                     + "".join(f", {p} {_fmt_t(r['time_s'])}" for p, r in peers.items())
                     + f"  [{time.perf_counter() - t0:.1f} s, total "
                     f"{time.perf_counter() - t_start:.0f} s]")
            del case
            gc.collect()
        return self.rows

    def _peer(self, case: Any, kernel: str, peer: str, n: int, dtype: np.dtype, k: int,
              skipped: Dict[str, str]) -> Optional[Dict[str, Any]]:
        env = self.env
        if peer == "torch" and not env.torch_ok():
            skipped[peer] = env.torch_reason
            return None
        if peer == "deepspeed":
            if kernel in ("sgd", "ce"):
                skipped[peer] = "no CPU SGD" if kernel == "sgd" else "no loss kernel"
                return None
            if dtype != np.float32:
                skipped[peer] = "float32 only"
                return None
            if not env.ds_ok():
                skipped[peer] = env.ds_reason
                return None
        ok, why = _fits(CASES[kernel].memory(n, dtype.itemsize, peer)
                        - CASES[kernel].memory(n, dtype.itemsize, None))
        if not ok:
            skipped[peer] = f"memory: {why}"
            return None
        info: Dict[str, Any] = {}
        ctx: ContextManager[Any]
        if peer == "torch":
            if kernel in ("adam", "adam64", "multi", "sgd"):
                op = "aten::_fused_sgd_" if kernel == "sgd" else "aten::_fused_adam_"
                info["impl"] = (f"torch.optim.{'SGD' if kernel == 'sgd' else 'Adam'}"
                                "(fused=True)")
                info["fused_verified"] = env.verify_fused(op)
            else:
                info["impl"] = "autograd F.binary_cross_entropy_with_logits fwd+bwd"
            ctx = env.torch_threads(k)
        elif peer == "deepspeed":
            info["impl"] = "DeepSpeedCPUAdam"
            ctx = env.all_openmp_threads(k)
        else:
            info["impl"] = "NumPy in-place ufuncs"
            ctx = contextlib.nullcontext()
        fn = cleanup = None
        try:
            with ctx:
                fn, cleanup = getattr(case, peer)(*(() if peer == "numpy" else (env,)))
                mark = self.other.start()
                res = self.timer.measure({peer: fn})[peer]
                res["others_cpu"] = self.other.since(mark)
        except _Unsupported as e:
            skipped[peer] = str(e)
            return None
        except Exception as e:                 # a peer failing must not end the report
            skipped[peer] = f"failed: {type(e).__name__}: {str(e)[:100]}"
            return None
        finally:
            if cleanup is not None:
                cleanup()
            del fn
            gc.collect()
        if peer != "numpy":
            res["threads"] = k
        res.update(info)
        return res


# ----------------------------------------------------------------------------- output

def _fmt_t(t: float) -> str:
    if t < 1e-6:
        return f"{t * 1e9:.0f} ns"
    if t < 1e-3:
        return f"{t * 1e6:.3g} µs" if t < 1e-4 else f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms" if t < 0.1 else f"{t * 1e3:.0f} ms"
    return f"{t:.3g} s"


def _fmt_n(kernel: str, n: int) -> str:
    if kernel == "multi":
        return f"{MULTI_TENSORS}x{MULTI_SIZE}"
    e = math.log10(n) if n > 0 else 0
    return f"1e{int(round(e))}" if n == 10 ** int(round(e)) else str(n)


def _rate(row_part: Dict[str, Any], unit: str) -> str:
    v = row_part["gbps"] if unit == "GB/s" else row_part["melem_per_s"]
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _peer_cell(r: Optional[Dict[str, Any]]) -> str:
    if r is None:
        return "-"
    return f"{_fmt_t(r['time_s'])} {r['speedup']:.2g}x" if r["speedup"] < 10 else \
        f"{_fmt_t(r['time_s'])} {r['speedup']:.0f}x"


def render_table(rows: List[Dict[str, Any]], peers: Sequence[str]) -> str:
    out: List[str] = []
    by_kernel: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        by_kernel.setdefault(r["kernel"], []).append(r)
    for kernel in KERNEL_ORDER:
        krows = by_kernel.get(kernel)
        if not krows:
            continue
        spec = KERNELS[kernel]
        unit = spec["unit"]
        shown = [p for p in peers if any(p in r.get("peers", {}) for r in krows)]
        torch_label = "torch fused" if kernel != "ce" else "torch autograd"
        head = ["n", "thr", "busy", "fusedopt", "iqr", unit, f"ceil {unit}", "%ceil"] + \
            [(torch_label if p == "torch" else PEER_LABEL[p]) for p in shown]
        body = []
        for r in krows:
            if "skipped" in r:
                body.append([_fmt_n(kernel, r["n"]), str(r["threads"]),
                             "skipped: " + r["skipped"]] + [""] * (len(head) - 3))
                continue
            noise = max(r["fusedopt"]["spread"], r["ceiling"]["spread"])
            busy = r.get("others_cpu")
            body.append([_fmt_n(kernel, r["n"]), str(r["threads"]),
                         "?" if busy is None else f"{busy:.1f}",
                         _fmt_t(r["fusedopt"]["time_s"]), f"{100 * noise:.0f}%",
                         _rate(r["fusedopt"], unit),
                         _rate(r["ceiling"], unit), f"{r['pct_of_ceiling']:.0f}%"] +
                        [_peer_cell(r["peers"].get(p)) for p in shown])
        measured = [b for b in body if not b[2].startswith("skipped")]
        widths = [max([len(h)] + [len(b[i]) for b in measured]) for i, h in enumerate(head)]
        title = f"{spec['label']}: {spec['what']}; {spec['bpe']} B/element"
        out.append(title)
        out.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        for b in body:
            if b[2].startswith("skipped"):
                out.append("  ".join(x.rjust(w) for x, w in zip(b[:2], widths[:2])) + "  " +
                           b[2])
            else:
                out.append("  ".join(x.rjust(w) for x, w in zip(b, widths)))
        notes = set()
        for r in krows:
            for p, why in r.get("peers_skipped", {}).items():
                notes.add(f"{PEER_LABEL[p]}: {why}")
            t = r.get("peers", {}).get("torch")
            if t is not None and t.get("fused_verified") is False:
                notes.add("torch: the fused kernel did NOT show up in the profiler")
        if notes:
            out.append("  (" + "; ".join(sorted(notes)) + ")")
        out.append("")
    return "\n".join(out)


def _find(rows: List[Dict[str, Any]], kernel: str, n: int,
          threads: int) -> Optional[Dict[str, Any]]:
    for r in rows:
        if r["kernel"] == kernel and r["n"] == n and r["threads"] == threads and \
                "skipped" not in r:
            return r
    return None


def check_targets(rows: List[Dict[str, Any]]) -> List[Tuple[str, Optional[bool], str]]:
    """Issue 3's targets, for the rows that were measured: (case, met?, numbers)."""
    out: List[Tuple[str, Optional[bool], str]] = []

    def torch_t(r: Dict[str, Any]) -> Optional[float]:
        t = r["peers"].get("torch")
        return None if t is None else t["time_s"]

    for n in (10 ** 7, 10 ** 8):
        r = _find(rows, "adam", n, 1)
        if r:
            tt = torch_t(r)
            fo = r["fusedopt"]["time_s"]
            met = r["pct_of_ceiling"] >= 95 and (tt is None or fo <= tt)
            vs = f"{tt / fo:.2f}x torch" if tt else "torch not measured"
            out.append((f"Adam f32 n={_fmt_n('adam', n)} 1 thread: >=95% of ceiling, >= "
                        "torch fused", met, f"{r['pct_of_ceiling']:.0f}%, {vs}"))
    r = _find(rows, "adam", 10 ** 7, 2)
    if r:
        out.append(("Adam f32 n=1e7 2 threads: >=90% of ceiling", r["pct_of_ceiling"] >= 90,
                    f"{r['pct_of_ceiling']:.0f}%"))
    for k in (1, 2):
        r = _find(rows, "adam64", 10 ** 7, k)
        if r and torch_t(r):
            tt, fo = torch_t(r), r["fusedopt"]["time_s"]
            out.append((f"Adam f64 n=1e7 {k} thread{'s' if k > 1 else ''}: >= torch fused",
                        fo <= tt, f"{tt / fo:.2f}x torch"))
    r = _find(rows, "adam", 10 ** 3, 1)
    if r:
        t = r["fusedopt"]["time_s"]
        out.append(("Adam f32 n=1e3 functional call: <= 3 µs", t <= 3e-6, _fmt_t(t)))
    r = _find(rows, "multi", MULTI_TENSORS * MULTI_SIZE, 1)
    if r:
        t = r["fusedopt"]["time_s"]
        out.append(("1000 x 1000 tensors class step, 1 thread: <= 2.5 ms", t <= 2.5e-3,
                    _fmt_t(t)))
    r = _find(rows, "sgd", 10 ** 7, 1)
    if r:
        out.append(("SGD momentum n=1e7 1 thread: >=95% of ceiling", r["pct_of_ceiling"] >= 95,
                    f"{r['pct_of_ceiling']:.0f}%"))
    for n in (10 ** 6, 10 ** 7):
        r = _find(rows, "ce", n, 1)
        if r:
            rate = r["fusedopt"]["melem_per_s"]
            sp = {p: r["peers"][p]["speedup"] for p in ("torch", "numpy") if p in r["peers"]}
            met = rate >= 800 and all(s >= 10 for s in sp.values())
            out.append((f"sigmoid CE n={_fmt_n('ce', n)} 1 thread: >=800 Melem/s, >=10x torch "
                        "and NumPy", met, f"{rate:.0f} Melem/s, " +
                        ", ".join(f"{s:.1f}x {p}" for p, s in sp.items())))
    r1, r2 = _find(rows, "ce", 10 ** 6, 1), _find(rows, "ce", 10 ** 6, 2)
    if r1 and r2:
        s = r2["fusedopt"]["melem_per_s"] / r1["fusedopt"]["melem_per_s"]
        out.append(("sigmoid CE n=1e6 2 threads: >= 1.7x 1 thread", s >= 1.7, f"{s:.2f}x"))
    return out


def _header(runner: Runner) -> List[str]:
    import fusedopt
    info = fusedopt.cpu_info()
    env = runner.env
    lines = [f"fusedopt {fusedopt.__version__} bench, {datetime.datetime.now():%Y-%m-%d %H:%M}",
             f"machine: {_cpu_name()}, {_usable_cpus()} usable CPUs, fusedopt path "
             f"{info['path']}, OpenMP {'on' if info['openmp'] else 'off'}, "
             f"parallel threshold {info['parallel_threshold']} elements",
             f"numpy {np.__version__}; torch: " +
             (env.torch.__version__ if env.torch is not None else env.torch_reason) +
             ("" if not env.fused_ops else " (" + ", ".join(
                 f"{op} {'seen' if ok else 'NOT seen' if ok is False else 'unchecked'}"
                 for op, ok in env.fused_ops.items()) + " in the profiler)") +
             "; DeepSpeed: " + ("DeepSpeedCPUAdam" if env.ds_cls is not None else
                                env.ds_reason)]
    t = runner.timer
    lines.append(f"time per call: median of >= {t.min_repeats} samples after warm-up "
                 f"(samples of >= {t.sample_time * 1e3:.0f} ms of back-to-back calls); "
                 "ceiling: C loop of the kernel's access pattern over the same arrays, same "
                 "thread count, in this run")
    if runner.floor:
        lines.append(f"per-call floors: timing loop + a no-op Python call "
                     f"{_fmt_t(runner.floor['noop_call_s'])} (not subtracted); the stream "
                     f"probe at 16 elements {_fmt_t(runner.floor['stream_probe_16_s'])}, so "
                     "at n <= 1e3 the ceiling is mostly call overhead (in cache)")
    if all(x is not None for x in runner.load):
        lines.append("load average (1 min) before / after the run: " +
                     " / ".join(f"{x:.2f}" for x in runner.load) +
                     " (other processes take CPU time from 2-thread rows)")
    lines.append("busy: CPUs used by other processes (and hypervisor steal) while fusedopt "
                 "and the ceiling were timed; above ~0.2 the row, 2-thread rows above all, "
                 "is disturbed")
    lines.append("iqr: interquartile range / median of the fusedopt and ceiling samples "
                 "(the larger); above ~10% the row is noisy")
    lines.append("peer cells: time per call, then peer time / fusedopt time (>1: fusedopt "
                 "faster); NumPy is single-threaded (its time is reused in every thread row)")
    return lines


def _plot(rows: List[Dict[str, Any]], path: str, plt: Any) -> None:
    kernels = [k for k in KERNEL_ORDER if any(r["kernel"] == k and "skipped" not in r
                                              for r in rows)]
    if not kernels:
        return
    ncol = min(3, len(kernels))
    nrow = (len(kernels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 4 * nrow), squeeze=False)
    colors = {"fusedopt": "C0", "ceiling": "k", "numpy": "C1", "torch": "C2",
              "deepspeed": "C3"}
    for ax, kernel in zip(axes.flat, kernels):
        spec = KERNELS[kernel]
        key = "gbps" if spec["unit"] == "GB/s" else "melem_per_s"
        krows = [r for r in rows if r["kernel"] == kernel and "skipped" not in r]
        threads = sorted({r["threads"] for r in krows})
        if kernel == "multi":
            labels, vals, cols = [], [], []
            for k in threads:
                r = next(r for r in krows if r["threads"] == k)
                for name, part in [("ceiling", r["ceiling"]), ("fusedopt", r["fusedopt"])] + \
                        list(r["peers"].items()):
                    if name == "numpy" and k != threads[0]:
                        continue
                    labels.append(f"{name}\n{k}t")
                    vals.append(part["time_s"] * 1e3)
                    cols.append(colors.get(name, "C4"))
            ax.bar(range(len(vals)), vals, color=cols)
            ax.set_xticks(range(len(vals)))
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_ylabel("ms per step (lower is better)")
            ax.set_yscale("log")
            ax.set_title(spec["label"], fontsize=10)
            continue
        styles = {1: "-", 2: "--"}
        for k in threads:
            ls = styles.get(k, ":")
            rk = sorted((r for r in krows if r["threads"] == k), key=lambda r: r["n"])
            ns = [r["n"] for r in rk]
            ax.plot(ns, [r["ceiling"][key] for r in rk], color=colors["ceiling"], ls=ls,
                    lw=2.5, alpha=0.35, label=f"ceiling ({spec['pattern']} stream), {k}t")
            ax.plot(ns, [r["fusedopt"][key] for r in rk], color=colors["fusedopt"], ls=ls,
                    marker="o", label=f"fusedopt, {k}t")
            for peer in PEERS:
                pts = [(r["n"], r["peers"][peer][key]) for r in rk if peer in r["peers"]]
                if not pts or (peer == "numpy" and k != threads[0]):
                    continue
                ax.plot(*zip(*pts), color=colors[peer], ls=ls, marker=".",
                        label=f"{PEER_LABEL[peer]}" + ("" if peer == "numpy" else f", {k}t"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("elements")
        ax.set_ylabel(spec["unit"] + (f" ({spec['bpe']} B/element)" if key == "gbps" else ""))
        ax.set_title(spec["label"], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(kernels):]:
        ax.set_visible(False)
    fig.suptitle("fusedopt vs peers and the measured bandwidth ceiling", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    """Runs the report; returns the exit status."""
    plt: Any = None
    if getattr(args, "plot", None):
        try:
            import matplotlib  # type: ignore[import-not-found, unused-ignore]
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError:
            _log("fusedopt bench: --plot needs matplotlib (pip install matplotlib); nothing "
                 "was measured")
            return 1
    runner = Runner(args)
    usable = _usable_cpus()
    if max(runner.threads) > usable:
        _log(f"fusedopt bench: note: {max(runner.threads)} threads requested, this process "
             f"may use {usable} CPUs")
    _log(f"fusedopt bench: kernels {','.join(runner.kernels)}; sizes "
         f"{','.join(_fmt_n('', n) for n in runner.sizes)}; threads "
         f"{','.join(map(str, runner.threads))}; peers {','.join(runner.peers) or 'none'}")
    load = runner.load[0]
    if load is not None and load > 0.5:
        _log(f"fusedopt bench: note: load average {load:.2f}: other processes are running; "
             "timings (2-thread rows above all) will be noisy")
    t0 = time.perf_counter()
    runner.floors()
    rows = runner.run()
    runner.load.append(_loadavg())
    _log(f"done in {time.perf_counter() - t0:.0f} s")
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("\n".join(_header(runner)))
        print()
        print(render_table(rows, runner.peers))
        if not getattr(args, "no_targets", False):
            targets = check_targets(rows)
            if targets:
                print("issue-3 targets (this run; the machine is noisy, rerun before "
                      "concluding):")
                w = max(len(c) for c, _, _ in targets)
                for case, met, nums in targets:
                    print(f"  {'met ' if met else 'MISS'}  {case:<{w}}  {nums}")
    if plt is not None:
        _plot(rows, args.plot, plt)
        _log(f"plot saved to {args.plot}")
    return 0
