"""The machine the benchmark runs on: memory available, CPU name and count, the load of
other processes, and the aligned arrays every implementation is timed on."""
from __future__ import annotations

import os
import platform
import time
from typing import Any, List, Optional, Tuple

import numpy as np

MEMORY_FRACTION = 0.8        # use at most this share of the available memory


def available_memory() -> Optional[int]:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup limit."""
    cands: List[int] = []
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


def fits(nbytes: float) -> Tuple[bool, str]:
    """Whether ``nbytes`` fit in the available memory, and if not, why (for the report)."""
    avail = available_memory()
    if avail is None or nbytes <= MEMORY_FRACTION * avail:
        return True, ""
    return False, (f"needs {nbytes / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


def aligned_empty(n: int, dtype: Any, align: int = 64) -> np.ndarray:
    """A 64-byte aligned array (as torch allocates), so every implementation gets the same
    alignment; the arrays are shared with torch through ``torch.from_numpy``."""
    dt = np.dtype(dtype)
    raw = np.empty(n * dt.itemsize + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + n * dt.itemsize].view(dt)


def aligned_uniform(rng: np.random.Generator, n: int, dtype: Any, lo: float,
                    hi: float) -> np.ndarray:
    """An aligned array of uniform values in [lo, hi)."""
    a = aligned_empty(n, dtype)
    rng.random(dtype=a.dtype.type, out=a)
    a *= hi - lo
    a += lo
    return a


def aligned_zeros(n: int, dtype: Any) -> np.ndarray:
    a = aligned_empty(n, dtype)
    a.fill(0)
    return a
