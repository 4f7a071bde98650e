"""CPU path selection and threads: what runs, and how to change it."""
from __future__ import annotations

import os
import platform
import warnings
from typing import Any, Dict, Optional

from . import _core

_ISA_BY_NAME = {name: i for i, name in enumerate(_core.ISA_NAMES)}
_forced: Optional[str] = None


def _select_from_env() -> None:
    """Applies FUSEDOPT_CPU (it can only lower the path the CPU supports)."""
    global _forced
    want = os.environ.get("FUSEDOPT_CPU", "").strip().lower()
    if not want:
        _core.select_isa(-1)
        return
    built = _core.runtime_info()["built"]
    if want not in built:
        warnings.warn(f"FUSEDOPT_CPU={want!r} is not one of {', '.join(built)} (the paths of "
                      f"this build, for {platform.machine()}); ignored",
                      RuntimeWarning, stacklevel=3)
        _core.select_isa(-1)
        return
    _forced = want
    _core.select_isa(_ISA_BY_NAME[want])


def _set_cpu_path(name: Optional[str]) -> str:
    """Selects a CPU path for this process (None: the best the CPU has). For tests and
    benchmarks; the environment variable FUSEDOPT_CPU does the same at import."""
    if name is None:
        return _core.select_isa(-1)
    built = _core.runtime_info()["built"]
    if name not in built:
        raise ValueError(f"cpu path must be one of {', '.join(built)}, got {name!r}")
    return _core.select_isa(_ISA_BY_NAME[name])


def cpu_info() -> Dict[str, Any]:
    """What fusedopt runs on this machine.

    Returns a dict: ``path`` (the kernels in use: "baseline", "avx2" or "avx512" on
    x86-64, "baseline" (NEON) or "sve" on aarch64), ``detected`` (the best path this CPU
    and build support), ``paths`` (every path they support, slowest first: the values
    FUSEDOPT_CPU can choose here), ``forced`` (the value of
    FUSEDOPT_CPU, if it lowered the path), ``reason``, ``openmp``, ``threads`` (the
    default thread count), ``parallel_threshold`` (elements below which a call runs on one
    thread), ``adaptive_threads`` (see :func:`set_adaptive_threads`), ``backed_off_for``
    (seconds for which calls will still run on one thread because threads were slower
    lately; 0.0 when they run threaded), ``forked_single_threaded`` (True in a process
    forked after its parent ran threaded kernels: GNU OpenMP cannot be used there, so calls
    run on one thread), ``block``, ``machine``, ``compiler`` and ``build_flags``.

    >>> import fusedopt
    >>> fusedopt.cpu_info()["path"] in ("baseline", "avx2", "avx512", "sve")
    True
    """
    info = _core.runtime_info()
    path, detected = info["isa"], info["detected"]
    if path == detected:
        reason = f"best path supported by this CPU ({platform.machine()})"
    else:
        reason = f"lowered from {detected} by FUSEDOPT_CPU={_forced}" if _forced else \
            f"lowered from {detected} by fusedopt._runtime._set_cpu_path"
    return {
        "path": path,
        "detected": detected,
        "paths": list(info["paths"]),
        "forced": _forced,
        "reason": reason,
        "openmp": info["openmp"],
        "threads": info["default_threads"],
        "parallel_threshold": info["parallel_threshold"],
        "adaptive_threads": info["adaptive_threads"],
        "backed_off_for": _core._adapt_state(_core.clock())["serial_for"],
        "forked_single_threaded": info["forked_single_threaded"],
        "block": info["block"],
        "machine": platform.machine(),
        "compiler": info["compiler"],
        "build_flags": info["build_flags"],
    }


def set_num_threads(n: Optional[int]) -> None:
    """Sets the default number of threads for every kernel call (None: OpenMP's default,
    which follows OMP_NUM_THREADS, the CPUs this process may use and threadpoolctl).
    A call's own ``n_threads=`` argument wins over it.  Results never depend on it.

    >>> import fusedopt
    >>> fusedopt.set_num_threads(1); fusedopt.get_num_threads()
    1
    >>> fusedopt.set_num_threads(None)
    """
    if n is None:
        _core.set_default_threads(0)
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    _core.set_default_threads(n)


def set_adaptive_threads(enabled: bool) -> None:
    """Lets threads step aside when they would make calls slower (on by default).

    A worker thread that finds its CPU busy with another process waits for a time slice,
    a few milliseconds, and the call waits with it: on a 2-core machine with one other
    busy process, a 1e6-element ``adam_step`` on 2 threads took several times its
    one-thread time.  fusedopt times every threaded region against its own estimate of
    one thread (the calling thread's share times the threads); when threads lost more
    time than they gained, calls that do not pass ``n_threads=`` run on the calling thread
    for a back-off period (50 ms, doubling while threads keep losing, up to 2 s), then
    try threads again.  A call's ``n_threads=`` is always honoured as given.  Results
    never depend on it.  ``cpu_info()["backed_off_for"]`` tells whether calls are backing
    off now.

    >>> import fusedopt
    >>> fusedopt.set_adaptive_threads(False); fusedopt.cpu_info()["adaptive_threads"]
    False
    >>> fusedopt.set_adaptive_threads(True)
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    _core.set_adaptive_threads(enabled)


def get_num_threads() -> int:
    """The number of threads a kernel call uses by default (large inputs only).

    >>> import fusedopt
    >>> fusedopt.get_num_threads() >= 1
    True
    """
    return int(_core.runtime_info()["default_threads"])
