"""Running: the cases the options select, one after the other, each at every thread
count: fusedopt and the ceiling (or, for the call-overhead cases, fusedopt and their
baseline) sampled alternately, then each peer on its own; progress on stderr."""
from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

import numpy as np

from ._cases import CASES, FIXED, FIXED_FIELDS, KERNEL_ORDER, KERNELS, OPT_IN
from ._machine import OtherLoad, fits, loadavg
from ._overhead import PAIRED
from ._peers import PEERS, Env, Unsupported
from ._report import fmt_n, fmt_t
from ._timer import Timer

FULL_SIZES = [10 ** 3, 10 ** 5, 10 ** 6, 10 ** 7, 10 ** 8]
QUICK_SIZES = [10 ** 3, 10 ** 6, 10 ** 7]
Row = Dict[str, Any]


def log(msg: str = "", end: str = "\n") -> None:
    print(msg, end=end, file=sys.stderr, flush=True)


def tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def status(msg: str, end: str = "") -> None:
    """Transient progress (rewritten in place on a terminal, left out in a log)."""
    if tty():
        log(msg, end=end)


def _rates(spec: Dict[str, Any], n: int, t: float) -> Dict[str, float]:
    return {"gbps": spec["bpe"] * n / t / 1e9, "melem_per_s": n / t / 1e6}


class Runner:
    """The measurements of one ``fusedopt bench`` run, as a list of row dicts."""

    def __init__(self, args: argparse.Namespace) -> None:
        quick = bool(args.quick)
        self.kernels = [k for k in KERNEL_ORDER
                        if (args.kernels is None and k not in OPT_IN) or
                        (args.kernels is not None and ("all" in args.kernels or
                                                       k in args.kernels))]
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
        self.rows: List[Row] = []
        self.floor: Dict[str, float] = {}
        self.load = [loadavg()]
        self.other = OtherLoad()
        self.wait_quiet = float(getattr(args, "wait_quiet", 0.0) or 0.0)
        self._numpy_once: Optional[Dict[str, Any]] = None

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

    def cases(self) -> List[Tuple[str, int, Any]]:
        """(kernel, n, case class) in the order they run."""
        out: List[Tuple[str, int, Any]] = []
        for k in self.kernels:
            if k in FIXED:
                out.append((k, FIXED[k][0] * FIXED[k][1], CASES[k]))
            elif k in PAIRED:
                out.extend((k, c.n, c) for c in PAIRED[k])
            else:
                out.extend((k, n, CASES[k]) for n in self.sizes)
        return out

    def _base(self, kernel: str, n: int, cls: Any) -> Row:
        spec = KERNELS[kernel]
        if kernel in PAIRED:
            return {"kernel": kernel, "case": cls.case, "label": cls.label,
                    "dtype": spec["dtype"], "n": n, **cls.extra}
        base = {"kernel": kernel, "label": spec["label"], "dtype": spec["dtype"], "n": n,
                "bytes_per_element": spec["bpe"], "unit": spec["unit"]}
        if kernel in FIXED:
            base.update(zip(FIXED_FIELDS[kernel], FIXED[kernel]))
        return base

    def run(self) -> List[Row]:
        cases = self.cases()
        t_start = time.perf_counter()
        for ci, (kernel, n, cls) in enumerate(cases):
            spec = KERNELS[kernel]
            dtype = np.dtype(spec["dtype"])
            what = (cls.label if kernel in PAIRED else
                    f"{spec['label']} n={fmt_n(kernel, n)}")
            label = f"[{ci + 1}/{len(cases)}] {what}"
            base = self._base(kernel, n, cls)
            ok, why = fits(cls.memory(n, dtype.itemsize, None))
            if not ok:
                log(f"{label}: skipped ({why})")
                self.rows.extend(dict(base, threads=k, skipped=why) for k in self.threads)
                continue
            status(f"{label}: allocating...")
            try:
                case = cls(n, dtype, self.rng)
            except Unsupported as e:
                log(("\r\033[K" if tty() else "") + f"{label}: skipped ({e})")
                self.rows.extend(dict(base, threads=k, skipped=str(e)) for k in self.threads)
                continue
            self._numpy_once = None
            for k in self._threads_of(cls):
                row = dict(base, threads=k)
                t0 = time.perf_counter()
                self._wait(label, k)
                done = (self._overhead(case, row, label, k) if kernel in PAIRED else
                        self._kernel(case, kernel, row, label, k))
                self.rows.append(row)
                log(("\r\033[K" if tty() else "") + f"{label} threads={k}: {done}  "
                    f"[{time.perf_counter() - t0:.1f} s, total "
                    f"{time.perf_counter() - t_start:.0f} s]")
            del case
            gc.collect()
        return self.rows

    def _threads_of(self, cls: Any) -> List[int]:
        """The thread counts of a case's rows: --threads, or for a case that compares the
        default thread count with one (``default_threads_only``), that default alone."""
        if getattr(cls, "default_threads_only", False):
            import fusedopt
            return [fusedopt.get_num_threads()]
        return self.threads

    def _wait(self, label: str, k: int) -> None:
        if self.wait_quiet > 0:
            status(f"\r\033[K{label} threads={k}: waiting for a quiet machine")
            busy = self.other.wait_quiet(self.wait_quiet)
            if busy is not None and busy >= 0.2:
                log(("\r\033[K" if tty() else "") + f"{label} threads={k}: other "
                    f"processes still use {busy:.1f} CPU, measuring anyway")

    def _measure(self, fns: Dict[str, Callable[[], Any]]) -> Tuple[Dict[str, Row],
                                                                   Optional[float]]:
        """The timer's summaries, and the CPUs other processes used meanwhile."""
        mark = self.other.start()
        res = self.timer.measure(fns)
        return res, self.other.since(mark)

    def _overhead(self, case: Any, row: Row, label: str, k: int) -> str:
        status(f"\r\033[K{label} threads={k}: fusedopt+baseline")
        if hasattr(case, "measure"):
            mark = self.other.start()
            res = case.measure()
            row["others_cpu"] = self.other.since(mark)
        else:
            res, row["others_cpu"] = self._measure(case.pair(k))
        fo, base = res["fusedopt"], res["baseline"]
        row["fusedopt"] = dict(fo, impl=case.fusedopt_impl)
        row["baseline"] = dict(base, impl=case.baseline_impl, label=case.baseline_label)
        row["ratio"] = fo["time_s"] / base["time_s"]
        return (f"fusedopt {fmt_t(fo['time_s'])}, baseline {case.baseline_label} "
                f"{fmt_t(base['time_s'])}: ratio {row['ratio']:.2f}x")

    def _kernel(self, case: Any, kernel: str, row: Row, label: str, k: int) -> str:
        from fusedopt import _core
        spec, n = KERNELS[kernel], row["n"]
        status(f"\r\033[K{label} threads={k}: ceiling+fusedopt")
        sargs: Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = case.stream_args()
        pattern, stream = spec["pattern"], _core.stream
        res, row["others_cpu"] = self._measure({
            "ceiling": lambda: stream(pattern, *sargs, n_threads=k),
            "fusedopt": case.fusedopt(k),
        })
        fo = dict(res["fusedopt"], **_rates(spec, n, res["fusedopt"]["time_s"]))
        ce = dict(res["ceiling"], pattern=pattern, **_rates(spec, n, res["ceiling"]["time_s"]))
        row["fusedopt"] = fo
        row["ceiling"] = ce
        row["pct_of_ceiling"] = 100.0 * ce["time_s"] / fo["time_s"]
        peers: Dict[str, Any] = {}
        skipped: Dict[str, str] = {}
        for peer in self.peers:
            if peer == "numpy" and self._numpy_once is not None:
                peers["numpy"] = dict(self._numpy_once)
                continue
            status(f", {peer}")
            r = self._peer(case, kernel, peer, n, k, skipped)
            if r is None:
                continue
            r.update(_rates(spec, n, r["time_s"]))
            if peer == "numpy":
                r["threads"] = 1
                self._numpy_once = r
            peers[peer] = dict(r)
        for r in peers.values():
            r["speedup"] = r["time_s"] / fo["time_s"]
        row["peers"] = peers
        row["peers_skipped"] = skipped
        return (f"fusedopt {fmt_t(fo['time_s'])} ({row['pct_of_ceiling']:.0f}% of ceiling)"
                + "".join(f", {p} {fmt_t(r['time_s'])}" for p, r in peers.items()))

    def _peer(self, case: Any, kernel: str, peer: str, n: int, k: int,
              skipped: Dict[str, str]) -> Optional[Dict[str, Any]]:
        env = self.env
        dtype = np.dtype(KERNELS[kernel]["dtype"])
        if peer == "torch" and not env.torch_ok():
            skipped[peer] = env.torch_reason
            return None
        if peer == "deepspeed":
            if CASES[kernel].deepspeed_skip:
                skipped[peer] = CASES[kernel].deepspeed_skip
                return None
            if dtype != np.float32:
                skipped[peer] = "float32 only"
                return None
            if not env.ds_ok():
                skipped[peer] = env.ds_reason
                return None
        ok, why = fits(CASES[kernel].memory(n, dtype.itemsize, peer)
                       - CASES[kernel].memory(n, dtype.itemsize, None))
        if not ok:
            skipped[peer] = f"memory: {why}"
            return None
        info: Dict[str, Any] = {}
        ctx: ContextManager[Any]
        if peer == "torch":
            info["impl"] = CASES[kernel].torch_impl
            if CASES[kernel].torch_op:
                info["fused_verified"] = env.verify_fused(CASES[kernel].torch_op)
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
                timed, busy = self._measure({peer: fn})
                res = dict(timed[peer], others_cpu=busy)
        except Unsupported as e:
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
