"""Command line: ``python -m fusedopt {demo,bench,info}`` (also installed as ``fusedopt``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, NoReturn, Optional, Tuple


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:   # one line, exit 2, no traceback
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


class _Progress:
    """tqdm when installed, else a plain one-line counter on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.bar = total, enabled, None
        if enabled:
            try:
                from tqdm import tqdm  # type: ignore[import, unused-ignore]
                self.bar = tqdm(total=total, unit="step", file=sys.stderr, leave=False)
            except ImportError:
                self.bar = None

    def update(self, it: int, loss: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if it % 50 == 0:
                self.bar.set_postfix(loss=f"{loss:.4f}")
        elif it % max(1, self.total // 100) == 0 or it == self.total:
            pct = 100 * it // self.total
            print(f"\r  [{'#' * (pct // 4):<25}] {pct:3d}%  step {it}/{self.total}  "
                  f"loss {loss:.4f}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print("\r" + " " * 72 + "\r", end="", file=sys.stderr, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from . import _demo

    adam = f"Adam (convention='tf1', lr={args.lr}), {args.steps} full-batch steps"
    if args.task == "moons":
        print(f"fusedopt demo: two-moons classifier (2 -> {args.hidden} tanh -> 1 logit), "
              f"{args.n} two-moons points, sigmoid cross-entropy (mean) + {adam}")
        where = "training set"
    else:
        x, _, x_eval, _, source = _demo._data("digits", args.n, args.seed)
        print(f"fusedopt demo: digit classifier ({x.shape[1]} -> {args.hidden} tanh -> "
              f"{_demo.DIGITS_CLASSES} logits), {source}: {x.shape[0]} to train on, "
              f"{x_eval.shape[0]} held out; softmax cross-entropy (mean) + {adam}")
        where = "held-out set"
    progress = _Progress(args.steps, not args.no_progress and sys.stderr.isatty())
    res = _demo.train(args.steps, hidden=args.hidden, lr=args.lr, n=args.n, seed=args.seed,
                      task=args.task, callback=progress.update)
    progress.close()
    every = max(1, args.steps // 10)
    print(f"{'step':>7}  {'loss':>9}")
    for i in list(range(0, args.steps, every)) + [args.steps - 1]:
        print(f"{i + 1:>7}  {res.losses[i]:9.5f}")
    print(f"final loss {res.losses[-1]:.5f} (from {res.losses[0]:.5f}), "
          f"accuracy {100 * res.accuracy:.1f}% ({where})")
    print(f"time: {res.seconds_total:.2f} s total, {res.seconds_kernels:.3f} s in fusedopt's "
          "kernels (loss+grad, Adam)")
    if not args.no_compare:
        ref = _demo.train(args.steps, hidden=args.hidden, lr=args.lr, n=args.n,
                          seed=args.seed, backend="reference", task=args.task)
        print(f"same loop on fusedopt.reference (NumPy): {ref.seconds_total:.2f} s total, "
              f"{ref.seconds_kernels:.3f} s in loss+grad and Adam "
              f"({ref.seconds_kernels / max(res.seconds_kernels, 1e-12):.1f}x fusedopt); "
              f"final loss {ref.losses[-1]:.5f}")
    if args.plot:
        try:
            import matplotlib  # type: ignore[import-not-found, unused-ignore]
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            print("fusedopt demo: --plot needs matplotlib (pip install matplotlib)",
                  file=sys.stderr)
            return 1
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(range(1, args.steps + 1), res.losses)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{'sigmoid' if args.task == 'moons' else 'softmax'} "
                      "cross-entropy (mean)")
        ax.set_yscale("log")
        ax.set_title(f"fusedopt demo: accuracy {100 * res.accuracy:.1f}%")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"loss curve saved to {args.plot}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import fusedopt

    info = fusedopt.cpu_info()
    info["version"] = fusedopt.__version__
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"fusedopt {info['version']}")
    for key in ("path", "detected", "reason", "openmp", "threads", "parallel_threshold",
                "block", "machine", "compiler", "build_flags"):
        print(f"  {key:<19} {info[key]}")
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import, unused-ignore]
        omp = [p for p in threadpool_info() if p.get("user_api") == "openmp"]
        for p in omp:
            # threadpoolctl knows no version for libgomp: leave it out rather than print None
            name = " ".join(str(p[k]) for k in ("prefix", "version") if p.get(k))
            print(f"  {'openmp runtime':<19} {name} ({p.get('filepath')}), "
                  f"{p.get('num_threads')} threads")
    except ImportError:
        pass
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench
    return bench.main(args)


def _demo_tasks() -> Tuple[str, ...]:
    from ._demo import TASKS
    return TASKS


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fusedopt", description="fused CPU kernels for training: demo, "
                "benchmarks and build information")
    sub = p.add_subparsers(dest="command", metavar="{demo,bench,info}", parser_class=_Parser)
    sub.required = True
    d = sub.add_parser("demo", help="train a small classifier with fusedopt",
                       description="Train a small classifier end to end with fusedopt: "
                       "the two-moons classifier (sigmoid cross-entropy + TF1 Adam), or "
                       "with --task digits a 10-class digit classifier (softmax "
                       "cross-entropy + TF1 Adam; scikit-learn's handwritten digits when "
                       "scikit-learn is installed, else a generated data set).")
    d.add_argument("--task", choices=_demo_tasks(), default="moons",
                   help="moons: binary, two-moons points (default); digits: 10 classes, "
                   "8x8 digit images, accuracy on a held-out fifth")
    d.add_argument("--steps", type=_positive_int, default=5000, help="Adam steps (5000)")
    d.add_argument("--hidden", type=_positive_int, default=32, help="hidden units (32)")
    d.add_argument("--lr", type=_positive_float, default=0.001,
                   help="learning rate (0.001, TF1's default)")
    d.add_argument("--n", type=_positive_int, default=2000,
                   help="two-moons points (2000; digits: the data set's 1797)")
    d.add_argument("--seed", type=int, default=0, help="data and init seed (0)")
    d.add_argument("--no-compare", action="store_true",
                   help="skip the same loop on fusedopt.reference (the NumPy statement of "
                   "the formulas) that the demo runs to compare times")
    d.add_argument("--plot", metavar="FILE.png", help="save the loss curve (matplotlib)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)
    b = sub.add_parser("bench", help="benchmark report against NumPy, torch, DeepSpeed and "
                       "the memory-bandwidth ceiling",
                       description="Benchmark fusedopt's kernels against careful NumPy, "
                       "torch and DeepSpeed (when installed) and the measured memory "
                       "bandwidth ceiling.")
    try:
        from . import bench
        bench.add_arguments(b)
    except ImportError:
        pass
    b.set_defaults(func=cmd_bench)
    i = sub.add_parser("info", help="version, CPU path, threads, OpenMP, build flags",
                       description="Show what fusedopt runs on this machine.")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # the reader went away (`python -m fusedopt info | head`): stop quietly, as other
        # command-line tools do; point stdout at devnull so the flush at exit cannot raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
