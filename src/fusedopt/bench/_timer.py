"""The timer: warm-up, calibration, then samples of back-to-back calls, alternating between
the callables timed together, and the median per callable."""
from __future__ import annotations

import gc
import math
import statistics
import time
from typing import Any, Callable, Dict, List, Tuple


class Timing:
    """The samples of one callable (seconds per call, each the mean of ``number`` calls)."""

    __slots__ = ("samples", "number")

    def __init__(self, number: int) -> None:
        self.samples: List[float] = []
        self.number = number

    def summary(self) -> Dict[str, Any]:
        """time_s (median), min_s, spread (interquartile range / median), repeats, number."""
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
