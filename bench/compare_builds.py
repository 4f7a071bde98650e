"""Times two builds of fusedopt side by side: every kernel variant, alternating builds.

    python bench/compare_builds.py BEFORE_SRC AFTER_SRC [--rounds 5] [--budget 0.25]

Each SRC is a directory that holds an importable ``fusedopt`` (a source tree built in
place, ``python setup.py build_ext --inplace``: pass its ``src``).  The builds run in
alternating worker processes (before, after, before, ...), one thread each, and each case
keeps its best time over all rounds, so that both builds see the same machine state.
Prints one row per case with the ratio after/before (> 1.05 is flagged).  Used to check
that a change of kernels or of the binding slows nothing down.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

Case = Tuple[str, Callable[[], Callable[[], Any]]]


def _cases() -> List[Case]:
    import numpy as np
    import fusedopt as fo

    rng = np.random.RandomState(0)

    def arr(n: Any, dt: Any = np.float32, scale: float = 1.0) -> Any:
        return (rng.standard_normal(n) * scale).astype(dt)

    def adam(n: int, dt: Any = np.float32, **kw: Any) -> Callable[[], Callable[[], Any]]:
        def setup() -> Callable[[], Any]:
            p, g = arr(n, dt), arr(n, dt, 0.1)
            m, v = np.zeros_like(p), np.zeros_like(p)
            vmax = np.zeros_like(p) if kw.get("amsgrad") else None
            return lambda: fo.adam_step(p, g, m, v, step=10, lr=1e-3, max_exp_avg_sq=vmax,
                                        n_threads=1, **kw)
        return setup

    def sgd(n: int, dt: Any = np.float32, **kw: Any) -> Callable[[], Callable[[], Any]]:
        def setup() -> Callable[[], Any]:
            p, g = arr(n, dt), arr(n, dt, 0.1)
            buf = np.zeros_like(p) if kw.get("momentum") else None
            return lambda: fo.sgd_step(p, g, buf, lr=1e-3, step=2, n_threads=1, **kw)
        return setup

    def bce(shape: Any, dt: Any = np.float32, labels: str = "float", grad: bool = True,
            **kw: Any) -> Callable[[], Callable[[], Any]]:
        def setup() -> Callable[[], Any]:
            x = arr(shape, dt, 4.0)
            y = rng.uniform(size=shape) < 0.5
            y = y if labels == "bool" else y.astype(dt)
            kw2 = dict(kw)
            for k in ("weight", "pos_weight"):
                if isinstance(kw2.get(k), str):
                    size = shape[-1] if kw2[k] == "col" else shape
                    kw2[k] = (rng.uniform(size=size) + 0.5).astype(dt)
            out = np.empty_like(x)
            if grad:
                return lambda: fo.sigmoid_cross_entropy_and_grad(x, y, out=out, n_threads=1,
                                                                 **kw2)
            return lambda: fo.sigmoid_cross_entropy(x, y, n_threads=1, **kw2)
        return setup

    def reg(which: str, n: int, weighted: bool) -> Callable[[], Callable[[], Any]]:
        def setup() -> Callable[[], Any]:
            x, t = arr(n), arr(n)
            w = arr(n) if weighted else None
            out = np.empty_like(x)
            f = getattr(fo, f"{which}_loss_and_grad")
            return lambda: f(x, t, weight=w, out=out, n_threads=1)
        return setup

    def multi(count: int, size: int) -> Callable[[], Callable[[], Any]]:
        def setup() -> Callable[[], Any]:
            ps = [arr(size) for _ in range(count)]
            gs = [arr(size, np.float32, 0.1) for _ in range(count)]
            opt = fo.Adam(ps, lr=1e-3)
            opt.step(gs, n_threads=1)
            return lambda: opt.step(gs, n_threads=1)
        return setup

    def ufunc() -> Callable[[], Any]:
        a, b = arr(1000), arr(1000)
        out = np.empty_like(a)
        return lambda: np.add(a, b, out=out)

    M, T = 1_000_000, 10_000_000
    return [
        ("adam f32 1e6", adam(M)), ("adam f32 1e7", adam(T)), ("adam f64 1e6", adam(M, np.float64)),
        ("adam amsgrad 1e6", adam(M, amsgrad=True)),
        ("adamw 1e6", adam(M, weight_decay=0.01, decoupled_weight_decay=True)),
        ("adam tf1 1e6", adam(M, convention="tf1")), ("adam optax 1e6", adam(M, convention="optax")),
        ("adam_step 1e3", adam(1000)), ("np.add out= 1e3", ufunc),
        ("sgd momentum 1e6", sgd(M, momentum=0.9)), ("sgd momentum 1e7", sgd(T, momentum=0.9)),
        ("sgd plain 1e6", sgd(M)), ("sgd keras nesterov 1e6",
                                    sgd(M, momentum=0.9, nesterov=True, convention="keras")),
        ("ce f32 1e6", bce((M,))), ("ce f32 1e7", bce((T,))), ("ce f64 1e6", bce((M,), np.float64)),
        ("ce bool labels 1e6", bce((M,), labels="bool")), ("ce loss only 1e6", bce((M,), grad=False)),
        ("ce reduction none 1e6", bce((M,), reduction="none")),
        ("ce col weight 1e6 (1000 cols)", bce((1000, 1000), weight="col")),
        ("ce col pos_weight 1e6 (1000 cols)", bce((1000, 1000), pos_weight="col")),
        ("ce col pos_weight 1e6 (10 cols)", bce((100000, 10), pos_weight="col")),
        ("ce full weight 1e6", bce((1000, 1000), weight="full")),
        ("ce scalar weight 1e6", bce((M,), weight=0.5)),
        ("ce label smoothing 1e6", bce((M,), label_smoothing=0.1)),
        ("l1 1e6", reg("l1", M, False)), ("l2 1e6", reg("l2", M, False)),
        ("l2 weighted 1e6", reg("l2", M, True)),
        ("class step 1 x 1e6", multi(1, M)), ("class step 1000 x 1e3", multi(1000, 1000)),
    ]


def _worker(budget: float, only: List[str]) -> None:
    res: Dict[str, float] = {}
    for name, setup in _cases():
        if only and name not in only:
            continue
        fn = setup()
        fn()
        best, t_end, reps = float("inf"), time.perf_counter() + budget, 0
        while reps < 5 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
            reps += 1
        res[name] = best
    json.dump(res, sys.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.25)
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    only = [s for s in a.only.split(",") if s]
    if a.worker:
        _worker(a.budget, only)
        return
    best: Dict[str, Dict[str, float]] = {"before": {}, "after": {}}
    for r in range(a.rounds):
        for label in ("before", "after") if r % 2 == 0 else ("after", "before"):
            src = os.path.abspath(getattr(a, label))
            env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1")
            out = subprocess.run([sys.executable, __file__, "x", "x", "--worker",
                                  "--budget", str(a.budget), "--only", a.only],
                                 env=env, capture_output=True, text=True, check=True,
                                 cwd="/")
            for k, v in json.loads(out.stdout).items():
                best[label][k] = min(v, best[label].get(k, float("inf")))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    print(f"{'case':40s} {'before':>11s} {'after':>11s} {'after/before':>13s}")
    for k, tb in best["before"].items():
        ta = best["after"][k]
        flag = "  SLOWER" if ta > 1.05 * tb else ""
        print(f"{k:40s} {tb * 1e3:9.3f}ms {ta * 1e3:9.3f}ms {ta / tb:12.3f}{flag}")


if __name__ == "__main__":
    main()
