"""``python -m fusedopt bench``: fusedopt's kernels against their peers and the machine.

For each kernel, size and thread count the report times fusedopt, a careful NumPy version
(in-place ufuncs with preallocated temporaries and ``out=``), torch's fused optimizers /
autograd (when torch is installed) and DeepSpeed's ``DeepSpeedCPUAdam`` (when importable),
and measures, in the same run and on the same arrays, the memory-bandwidth ceiling with
``fusedopt._core.stream``: a small C loop with the kernel's access pattern (Adam: 4 reads +
3 writes per element; SGD with momentum: 3 + 2; the sigmoid loss: 2 + 1; the softmax
loss: a copy of the logits, 1 + 1).  The softmax rows have fixed shapes (2048 x 32000,
65536 x 10, 512 x 131072 logits), whatever ``--sizes`` says.  The "overhead" kernel
times what calling costs: the class step over 1000 tensors of 1e3 elements against the
same step over one tensor of 1e6, and ``adam_step`` at n=1e3 against ``numpy.add``.  The
"neighbour" kernel, run only when asked for, starts a process that keeps one CPU busy and
times ``adam_step`` at n=1e6 with the default threads against one thread: the mean over
every call, slow ones included.

Timing: every implementation is warmed up (first call excluded: it pays page faults and lazy
state allocation), then timed in samples of ``number`` back-to-back calls (``number`` chosen
so that a sample lasts a few milliseconds), and the median over the samples is reported.
fusedopt and the ceiling (or the overhead baseline) are sampled alternately (so that noise
on a shared machine hits both alike); each peer is then set up, timed and freed on its own,
one at a time, so that large sizes need memory for one peer only.  NumPy's ufuncs are
single-threaded: NumPy is timed once per size and that time is used in every thread row.

Nothing here asserts a speed; the speed-goal summary under the table only reports.
Modules: ``_machine`` (memory, CPU, load, aligned arrays), ``_timer``, ``_peers`` (what is
installed), ``_cases`` and ``_overhead`` (what is timed), ``_run``, ``_report`` (header,
tables, JSON), ``_goals`` (the speed goals), ``_plot``.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable, List, Sequence

from ._cases import KERNEL_ORDER, KERNELS
from ._goals import check_goals, render_goals
from ._machine import loadavg, usable_cpus
from ._peers import PEERS
from ._report import fmt_n, header, render_json, render_table
from ._run import Runner, log

__all__ = ["add_arguments", "main"]


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
                        help="comma-separated subset of: " + ", ".join(
                            f"{k} ({KERNELS[k]['label']})" for k in KERNEL_ORDER) +
                        "; default all but neighbour (which starts a busy process)")
    parser.add_argument("--sizes", type=_list_of(_size, "size"), default=None, metavar="LIST",
                        help="element counts, e.g. 1e3,1e6 (default 1e3,1e5,1e6,1e7,1e8; "
                        "--quick: 1e3,1e6,1e7); sizes that do not fit in the available "
                        "memory are skipped. The multi and overhead kernels have their "
                        "fixed sizes")
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
                        help="leave out the summary of fusedopt's speed goals (met or missed "
                        "in this run: share of the bandwidth ceiling, ratios to the peers "
                        "and to the call-overhead baselines) under the table")


def main(args: argparse.Namespace) -> int:
    """Runs the report; returns the exit status."""
    plt: Any = None
    if getattr(args, "plot", None):
        try:
            import matplotlib  # type: ignore[import-not-found, unused-ignore]
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError:
            log("fusedopt bench: --plot needs matplotlib (pip install matplotlib); nothing "
                "was measured")
            return 1
    runner = Runner(args)
    usable = usable_cpus()
    if max(runner.threads) > usable:
        log(f"fusedopt bench: note: {max(runner.threads)} threads requested, this process "
            f"may use {usable} CPUs")
    log(f"fusedopt bench: kernels {','.join(runner.kernels)}; sizes "
        f"{','.join(fmt_n('', n) for n in runner.sizes)}; threads "
        f"{','.join(map(str, runner.threads))}; peers {','.join(runner.peers) or 'none'}")
    load = runner.load[0]
    if load is not None and load > 0.5:
        log(f"fusedopt bench: note: load average {load:.2f}: other processes are running; "
            "timings (2-thread rows above all) will be noisy")
    t0 = time.perf_counter()
    runner.floors()
    rows = runner.run()
    runner.load.append(loadavg())
    log(f"done in {time.perf_counter() - t0:.0f} s")
    if args.json:
        print(render_json(rows))
    else:
        print("\n".join(header(runner)))
        print()
        print(render_table(rows, runner.peers))
        goals = [] if getattr(args, "no_targets", False) else check_goals(rows)
        if goals:
            print(render_goals(goals))
    if plt is not None:
        from ._plot import plot
        plot(rows, args.plot, plt)
        log(f"plot saved to {args.plot}")
    return 0
