"""The report: the header (machine, versions, how to read the table), one table per
kernel, and the JSON rows."""
from __future__ import annotations

import datetime
import json
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

from ._cases import CASES, FIXED, KERNEL_ORDER, KERNELS
from ._machine import cpu_name, usable_cpus
from ._overhead import PAIRED
from ._peers import PEER_LABEL

if TYPE_CHECKING:
    from ._run import Runner

Row = Dict[str, Any]


def fmt_t(t: float) -> str:
    """A time with 3 significant digits and its unit (ns, µs, ms, s)."""
    if t < 1e-6:
        return f"{t * 1e9:.0f} ns"
    if t < 1e-3:
        return f"{t * 1e6:.3g} µs" if t < 1e-4 else f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms" if t < 0.1 else f"{t * 1e3:.0f} ms"
    return f"{t:.3g} s"


def fmt_n(kernel: str, n: int) -> str:
    """An element count as 1e6 (or as it is), a fixed list of tensors' as 1000x1000."""
    if kernel in FIXED:
        return f"{FIXED[kernel][0]}x{FIXED[kernel][1]}"
    e = math.log10(n) if n > 0 else 0
    return f"1e{int(round(e))}" if n == 10 ** int(round(e)) else str(n)


def fmt_ratio(x: float) -> str:
    return f"{x:.2g}x" if x < 10 else f"{x:.0f}x"


def _rate(row_part: Row, unit: str) -> str:
    v = row_part["gbps"] if unit == "GB/s" else row_part["melem_per_s"]
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _peer_cell(r: Optional[Row]) -> str:
    return "-" if r is None else f"{fmt_t(r['time_s'])} {fmt_ratio(r['speedup'])}"


def _busy(r: Row) -> str:
    busy = r.get("others_cpu")
    return "?" if busy is None else f"{busy:.1f}"


def _grid(head: List[str], body: List[List[str]], left: Sequence[int] = ()) -> List[str]:
    """Aligned columns (right-justified but the ``left`` ones); a row of three cells whose
    third starts with "skipped" keeps its first two columns and then the reason."""
    measured = [b for b in body if not b[2].startswith("skipped")]
    widths = [max([len(h)] + [len(b[i]) for b in measured]) for i, h in enumerate(head)]

    def line(cells: List[str]) -> str:
        return "  ".join(x.ljust(w) if i in left else x.rjust(w)
                         for i, (x, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(head)]
    for b in body:
        out.append(line(b[:2]) + "  " + b[2] if b[2].startswith("skipped") else line(b))
    return out


def _kernel_table(kernel: str, krows: List[Row], peers: Sequence[str]) -> List[str]:
    spec = KERNELS[kernel]
    unit = spec["unit"]
    shown = [p for p in peers if any(p in r.get("peers", {}) for r in krows)]
    torch_label = CASES[kernel].torch_label
    head = ["n", "thr", "busy", "fusedopt", "iqr", unit, f"ceil {unit}", "%ceil"] + \
        [(torch_label if p == "torch" else PEER_LABEL[p]) for p in shown]
    body = []
    for r in krows:
        if "skipped" in r:
            body.append([fmt_n(kernel, r["n"]), str(r["threads"]), "skipped: " + r["skipped"]])
            continue
        noise = max(r["fusedopt"]["spread"], r["ceiling"]["spread"])
        body.append([fmt_n(kernel, r["n"]), str(r["threads"]), _busy(r),
                     fmt_t(r["fusedopt"]["time_s"]), f"{100 * noise:.0f}%",
                     _rate(r["fusedopt"], unit),
                     _rate(r["ceiling"], unit), f"{r['pct_of_ceiling']:.0f}%"] +
                    [_peer_cell(r["peers"].get(p)) for p in shown])
    out = [f"{spec['label']}: {spec['what']}; {spec['bpe']} B/element"] + _grid(head, body)
    notes = set()
    for r in krows:
        for p, why in r.get("peers_skipped", {}).items():
            notes.add(f"{PEER_LABEL[p]}: {why}")
        t = r.get("peers", {}).get("torch")
        if t is not None and t.get("fused_verified") is False:
            notes.add("torch: the fused kernel did NOT show up in the profiler")
    if notes:
        out.append("  (" + "; ".join(sorted(notes)) + ")")
    return out


def _paired_table(kernel: str, krows: List[Row]) -> List[str]:
    spec = KERNELS[kernel]
    head = ["case", "thr", "busy", "fusedopt", "iqr", "baseline", "time", "ratio"]
    body = []
    for r in krows:
        if "skipped" in r:
            body.append([r["label"], str(r["threads"]), "skipped: " + r["skipped"]])
            continue
        fo, base = r["fusedopt"], r["baseline"]
        body.append([r["label"], str(r["threads"]), _busy(r), fmt_t(fo["time_s"]),
                     f"{100 * max(fo['spread'], base['spread']):.0f}%", base["label"],
                     fmt_t(base["time_s"]), f"{r['ratio']:.2f}x"])
    return [f"{spec['label']}: {spec['what']}"] + _grid(head, body, left=(0, 5))


def render_table(rows: List[Row], peers: Sequence[str]) -> str:
    """One table per kernel, in the order of --kernels' help."""
    out: List[str] = []
    for kernel in KERNEL_ORDER:
        krows = [r for r in rows if r["kernel"] == kernel]
        if krows:
            out += (_paired_table(kernel, krows) if kernel in PAIRED else
                    _kernel_table(kernel, krows, peers)) + [""]
    return "\n".join(out)


def render_json(rows: List[Row]) -> str:
    return json.dumps(rows, indent=1)


def header(runner: Runner) -> List[str]:
    """The lines above the tables: when, where, which versions, how it was timed."""
    import fusedopt
    info = fusedopt.cpu_info()
    env = runner.env
    lines = [f"fusedopt {fusedopt.__version__} bench, {datetime.datetime.now():%Y-%m-%d %H:%M}",
             f"machine: {cpu_name()}, {usable_cpus()} usable CPUs, fusedopt path "
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
                     f"{fmt_t(runner.floor['noop_call_s'])} (not subtracted); the stream "
                     f"probe at 16 elements {fmt_t(runner.floor['stream_probe_16_s'])}, so "
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
