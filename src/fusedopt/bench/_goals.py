"""fusedopt's speed goals, checked on the rows a run measured (a goal whose rows were not
measured is left out).  They compare fusedopt with what the same run measured beside it,
so that they hold on any machine; two are absolute, from the project's reference machine:

* Adam f32 at n=1e7 and 1e8, 1 thread: at least 95% of the bandwidth ceiling and at least
  as fast as ``torch.optim.Adam(fused=True)``; at 2 threads, n=1e7, at least 90%;
* Adam f64 at n=1e7, 1 and 2 threads: at least as fast as torch fused;
* SGD with momentum, Lion, Adagrad and RMSprop at n=1e7, 1 thread: at least 95% of the
  ceiling; Adagrad at least 1.2x ``torch.optim.Adagrad(fused=True)``, RMSprop at least 4x
  ``torch.optim.RMSprop``;
* LAMB at n=1e7, 1 thread: at least 95% of the ceiling of its two passes (the
  trust ratio needs both norms before the update);
* Adafactor at n=1e7 (a vector, and a 3125 x 3200 matrix: the factored statistics), 1
  thread: at least 5x ``torch.optim.Adafactor`` (its percentage of the ceiling of its
  passes' access pattern is reported beside);
* ``clip_grad_norm_`` over 2000 tensors of 1000 elements, 1 thread: at least 10x
  ``torch.nn.utils.clip_grad_norm_``;
* sigmoid cross-entropy loss+grad at n=1e6 and 1e7, 1 thread: at least 800 M elements/s
  and 10x torch autograd and NumPy; 2 threads at n=1e6: at least 1.7x 1 thread; through
  torch's autograd (``fusedopt.torch.functional``) at n=1e6, 1 thread: at least 3x
  torch's own forward+backward;
* softmax cross-entropy loss+grad on 2048 x 32000 logits, 1 thread: at least 50% of the
  ceiling of a copy of the logits and 5x torch's ``F.cross_entropy`` forward+backward;
* call overhead, 1 thread: the class step over 1000 tensors of 1e3 elements at most 1.3x
  the same step over one tensor of 1e6, ``adam_step`` at n=1e3 at most 3x a
  ``numpy.add(a, b, out=out)`` call at n=1e3; absolute: ``adam_step`` at n=1e3 within
  3 µs, the class step over 1000 x 1e3 tensors within 2.5 ms;
* beside one other busy process (kernel "neighbour", run when asked for): ``adam_step``
  at n=1e6 with the default threads at most 1.2x its time on one thread (mean over every
  call).

Nothing fails on a missed goal: the summary only reports.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ._report import fmt_n, fmt_t

Row = Dict[str, Any]
Goal = Tuple[str, Optional[bool], str]       # (goal, met?, this run's numbers)
CLASS_STEP_MAX_RATIO, CALL_MAX_RATIO, NEIGHBOUR_MAX_RATIO = 1.3, 3.0, 1.2


def _find(rows: List[Row], kernel: str, n: int, threads: int) -> Optional[Row]:
    for r in rows:
        if r["kernel"] == kernel and r["n"] == n and r["threads"] == threads and \
                "skipped" not in r:
            return r
    return None


def _torch_t(r: Row) -> Optional[float]:
    t = r["peers"].get("torch")
    return None if t is None else float(t["time_s"])


def _ceiling(rows: List[Row], kernel: str, n: int, k: int, pct: int, what: str) -> List[Goal]:
    r = _find(rows, kernel, n, k)
    if r is None:
        return []
    thr = f"{k} thread{'s' if k > 1 else ''}"
    return [(f"{what} n={fmt_n(kernel, n)}, {thr}: >= {pct}% of the bandwidth ceiling",
             r["pct_of_ceiling"] >= pct, f"{r['pct_of_ceiling']:.0f}%")]


def _adam(rows: List[Row]) -> List[Goal]:
    out: List[Goal] = []
    for n in (10 ** 7, 10 ** 8):
        r = _find(rows, "adam", n, 1)
        if r:
            tt, fo = _torch_t(r), r["fusedopt"]["time_s"]
            met = r["pct_of_ceiling"] >= 95 and (tt is None or fo <= tt)
            vs = f"{tt / fo:.2f}x torch" if tt else "torch not measured"
            out.append((f"Adam f32 n={fmt_n('adam', n)}, 1 thread: >= 95% of the bandwidth "
                        "ceiling, as fast as torch fused or faster", met,
                        f"{r['pct_of_ceiling']:.0f}%, {vs}"))
    out += _ceiling(rows, "adam", 10 ** 7, 2, 90, "Adam f32")
    for k in (1, 2):
        r = _find(rows, "adam64", 10 ** 7, k)
        tt = _torch_t(r) if r else None
        if r and tt:
            fo = r["fusedopt"]["time_s"]
            out.append((f"Adam f64 n=1e7, {k} thread{'s' if k > 1 else ''}: as fast as "
                        "torch fused or faster", fo <= tt, f"{tt / fo:.2f}x torch"))
    return out


def _elementwise(rows: List[Row]) -> List[Goal]:
    out: List[Goal] = []
    for kernel, what, vs_torch in (("sgd", "SGD momentum", None), ("lion", "Lion", None),
                                   ("adagrad", "Adagrad", 1.2), ("rmsprop", "RMSprop", 4.0),
                                   ("lamb", "LAMB", None)):
        out += _ceiling(rows, kernel, 10 ** 7, 1, 95, what)
        r = _find(rows, kernel, 10 ** 7, 1)
        tt = _torch_t(r) if r and vs_torch else None
        if r and tt and vs_torch:
            s = tt / r["fusedopt"]["time_s"]
            out.append((f"{what} n=1e7, 1 thread: >= {vs_torch:g}x torch", s >= vs_torch,
                        f"{s:.2f}x"))
    for kernel, what in (("adafactor", "Adafactor vector"), ("adafactor2d", "Adafactor matrix")):
        r = _find(rows, kernel, 10 ** 7, 1)
        tt = _torch_t(r) if r else None
        if r and tt:
            s = tt / r["fusedopt"]["time_s"]
            out.append((f"{what} n=1e7, 1 thread: >= 5x torch", s >= 5,
                        f"{s:.1f}x ({r['pct_of_ceiling']:.0f}% of the ceiling)"))
    r = _find(rows, "clip", 2000 * 1000, 1)
    tt = _torch_t(r) if r else None
    if r and tt:
        s = tt / r["fusedopt"]["time_s"]
        out.append(("clip_grad_norm_ over 2000 x 1e3 tensors, 1 thread: >= 10x torch",
                    s >= 10, f"{s:.1f}x ({r['pct_of_ceiling']:.0f}% of the ceiling)"))
    return out


def _loss(rows: List[Row]) -> List[Goal]:
    out: List[Goal] = []
    for n in (10 ** 6, 10 ** 7):
        r = _find(rows, "ce", n, 1)
        if r:
            rate = r["fusedopt"]["melem_per_s"]
            sp = {p: r["peers"][p]["speedup"] for p in ("torch", "numpy") if p in r["peers"]}
            met = rate >= 800 and all(s >= 10 for s in sp.values())
            out.append((f"sigmoid CE n={fmt_n('ce', n)}, 1 thread: >= 800 Melem/s, >= 10x "
                        "torch and NumPy", met, f"{rate:.0f} Melem/s, " +
                        ", ".join(f"{s:.1f}x {p}" for p, s in sp.items())))
    r1, r2 = _find(rows, "ce", 10 ** 6, 1), _find(rows, "ce", 10 ** 6, 2)
    if r1 and r2:
        s = r2["fusedopt"]["melem_per_s"] / r1["fusedopt"]["melem_per_s"]
        out.append(("sigmoid CE n=1e6, 2 threads: >= 1.7x 1 thread", s >= 1.7, f"{s:.2f}x"))
    r = _find(rows, "torch_ce", 10 ** 6, 1)
    tt = _torch_t(r) if r else None
    if r and tt:
        s = tt / r["fusedopt"]["time_s"]
        out.append(("torch autograd sigmoid CE n=1e6, 1 thread: >= 3x torch's", s >= 3,
                    f"{s:.2f}x"))
    r = _find(rows, "softmax", 2048 * 32000, 1)
    if r:
        tt = _torch_t(r)
        s = tt / r["fusedopt"]["time_s"] if tt else None
        met = r["pct_of_ceiling"] >= 50 and (s is None or s >= 5)
        out.append(("softmax CE 2048x32000, 1 thread: >= 50% of the bandwidth ceiling, "
                    ">= 5x torch", met, f"{r['pct_of_ceiling']:.0f}%, " +
                    (f"{s:.1f}x torch" if s else "torch not measured")))
    return out


def _overhead(rows: List[Row]) -> List[Goal]:
    out: List[Goal] = []
    r = _find(rows, "adam", 10 ** 3, 1)
    if r:
        t = r["fusedopt"]["time_s"]
        out.append(("adam_step n=1e3, 1 thread: <= 3 µs", t <= 3e-6, fmt_t(t)))
    r = _find(rows, "multi", 10 ** 6, 1)
    if r:
        t = r["fusedopt"]["time_s"]
        out.append(("class step over 1000 x 1e3 tensors, 1 thread: <= 2.5 ms", t <= 2.5e-3,
                    fmt_t(t)))
    for n, goal, lim in (
            (10 ** 6, "class step over 1000 x 1e3 tensors, 1 thread: <= "
             f"{CLASS_STEP_MAX_RATIO:g}x the step over 1 x 1e6", CLASS_STEP_MAX_RATIO),
            (10 ** 3, "adam_step n=1e3, 1 thread: <= "
             f"{CALL_MAX_RATIO:g}x a numpy.add(a, b, out=out) call at n=1e3", CALL_MAX_RATIO)):
        r = _find(rows, "overhead", n, 1)
        if r:
            out.append(_ratio_goal(goal, r, lim))
    return out


def _ratio_goal(goal: str, r: Row, lim: float) -> Goal:
    """A paired row's goal: its ratio (fusedopt / baseline) at most lim."""
    times = f"{fmt_t(r['fusedopt']['time_s'])} / {fmt_t(r['baseline']['time_s'])}"
    return goal, r["ratio"] <= lim, f"{r['ratio']:.2f}x ({times})"


def _neighbour(rows: List[Row]) -> List[Goal]:
    goal = ("adam_step n=1e6 beside a busy process, default threads: <= "
            f"{NEIGHBOUR_MAX_RATIO:g}x one thread")
    return [_ratio_goal(goal, r, NEIGHBOUR_MAX_RATIO) for r in rows
            if r["kernel"] == "neighbour" and "ratio" in r]


def check_goals(rows: List[Row]) -> List[Goal]:
    """The goals whose rows this run measured: (goal, met?, numbers)."""
    return _adam(rows) + _elementwise(rows) + _loss(rows) + _overhead(rows) + _neighbour(rows)


def render_goals(goals: List[Goal]) -> str:
    w = max(len(c) for c, _, _ in goals)
    return "\n".join(["speed goals (this run; on a busy machine timings are noisy, rerun "
                      "before concluding):"] +
                     [f"  {'met ' if met else 'MISS'}  {case:<{w}}  {nums}"
                      for case, met, nums in goals])
