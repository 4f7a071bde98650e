"""The paired cases: fusedopt against a baseline, timed alternately in the same run, so
that their ratio holds whatever the machine's speed.

The call-overhead cases (kernel "overhead"): fusedopt against a baseline doing the same
amount of work with less calling, so that their ratio shows what calling costs:

* the class step over 1000 tensors of 1e3 elements against the same step over ONE tensor
  of 1e6 elements (``fusedopt.Adam([p]).step([g])``): what the 999 extra tensors cost;
* ``fusedopt.adam_step`` at n=1e3 against ``numpy.add(a, b, out=out)`` at n=1e3 float32:
  validation and the crossing into C, against NumPy's cheapest call on as many elements.

The busy-neighbour case (kernel "neighbour"): ``adam_step`` at n=1e6 with the default
threads against the same call on one thread, while another process keeps one CPU busy:
what fusedopt's threads cost a trainer on a loaded machine.

Each case has the interface the runner expects of a case (``memory``, a constructor taking
n, dtype and the generator) and ``pair(k)``: the two callables, at k threads; a case with
``measure()`` times itself.
"""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ._cases import LR, MULTI_SIZE, MULTI_TENSORS, AdamCase, MultiCase
from ._machine import aligned_uniform, aligned_zeros


class ClassStepOverhead:
    """``fusedopt.Adam(...).step`` over 1000 tensors of 1e3 elements / over 1 of 1e6."""

    case = "class_step"
    label = "class step 1000 x 1e3"
    n = MULTI_TENSORS * MULTI_SIZE
    fusedopt_impl = "fusedopt.Adam(1000 tensors of 1e3 elements).step(grads)"
    baseline_impl = "fusedopt.Adam([p]).step([g]), one tensor of 1e6 elements"
    baseline_label = "class step 1 x 1e6"
    extra: Dict[str, Any] = {"tensors": MULTI_TENSORS, "tensor_size": MULTI_SIZE}

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.many = MultiCase(n, dtype, rng)
        self.p = aligned_uniform(rng, self.n, dtype, -1, 1)
        self.g = aligned_uniform(rng, self.n, dtype, -1, 1)

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        return MultiCase.memory(n, esz, peer) + 4 * 1.2 * ClassStepOverhead.n * esz

    def pair(self, k: int) -> Dict[str, Callable[[], Any]]:
        import fusedopt
        step, gs = fusedopt.Adam([self.p], lr=LR).step, [self.g]
        return {"fusedopt": self.many.fusedopt(k), "baseline": lambda: step(gs, n_threads=k)}


class CallOverhead:
    """``fusedopt.adam_step`` at n=1e3 / ``numpy.add(a, b, out=out)`` at n=1e3."""

    case = "functional_call"
    label = "adam_step n=1e3"
    n = 1000
    fusedopt_impl = "fusedopt.adam_step(p, g, m, v, step=t, lr=1e-3), n=1e3"
    baseline_impl = "numpy.add(a, b, out=out), n=1e3"
    baseline_label = "numpy.add n=1e3"
    extra: Dict[str, Any] = {}

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.adam = AdamCase(self.n, dtype, rng)
        self.a = aligned_uniform(rng, self.n, dtype, -1, 1)
        self.b = aligned_uniform(rng, self.n, dtype, -1, 1)
        self.out = aligned_zeros(self.n, dtype)

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        return 7 * 1.2 * CallOverhead.n * esz

    def pair(self, k: int) -> Dict[str, Callable[[], Any]]:
        a, b, out, add = self.a, self.b, self.out, np.add
        return {"fusedopt": self.adam.fusedopt(k), "baseline": lambda: add(a, b, out=out)}


class BusyNeighbour:
    """``adam_step`` at n=1e6, default threads / one thread, beside a busy process."""

    case = "busy_neighbour"
    label = "adam_step n=1e6, one other busy process"
    n = 10 ** 6
    fusedopt_impl = "fusedopt.adam_step(p, g, m, v, step=t, lr=1e-3), n=1e6, default threads"
    baseline_impl = "the same call with n_threads=1"
    baseline_label = "1 thread"
    extra: Dict[str, Any] = {}
    warm_s, spell_s, rounds = 1.0, 0.5, 6
    default_threads_only = True         # one row: the default thread count against one

    def __init__(self, n: int, dtype: Any, rng: np.random.Generator) -> None:
        self.adam = AdamCase(self.n, dtype, rng)

    @staticmethod
    def memory(n: int, esz: int, peer: Optional[str]) -> float:
        return 4 * 1.2 * BusyNeighbour.n * esz

    def pair(self, k: int) -> Dict[str, Callable[[], Any]]:
        return {"fusedopt": self.adam.fusedopt(None), "baseline": self.adam.fusedopt(1)}

    def measure(self) -> Dict[str, Dict[str, Any]]:
        """The mean time per call (every call counted, slow ones included: what a trainer
        waits, not a median) over spells of ``spell_s`` seconds alternating between the
        two, ``rounds`` each, after ``warm_s`` seconds of default calls; a process spinning
        on one CPU runs throughout."""
        fns = self.pair(0)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        spells: Dict[str, List[float]] = {name: [] for name in fns}
        calls = dict.fromkeys(fns, 0)
        spent = dict.fromkeys(fns, 0.0)
        try:
            end = time.perf_counter() + self.warm_s
            while time.perf_counter() < end:
                fns["fusedopt"]()
            for _ in range(self.rounds):
                for name, fn in fns.items():
                    c, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < self.spell_s:
                        fn()
                        c += 1
                    dt = time.perf_counter() - t0
                    spells[name].append(dt / c)
                    calls[name] += c
                    spent[name] += dt
        finally:
            busy.kill()
            busy.wait()
        out: Dict[str, Dict[str, Any]] = {}
        for name in fns:
            mean, s = spent[name] / calls[name], spells[name]
            out[name] = {"time_s": mean, "min_s": min(s), "spread": (max(s) - min(s)) / mean,
                         "repeats": len(s), "number": calls[name] // len(s)}
        return out


OVERHEAD_CASES: List[Any] = [ClassStepOverhead, CallOverhead]
NEIGHBOUR_CASES: List[Any] = [BusyNeighbour]
PAIRED: Dict[str, List[Any]] = {"overhead": OVERHEAD_CASES, "neighbour": NEIGHBOUR_CASES}
