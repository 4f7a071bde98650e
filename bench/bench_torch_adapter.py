"""fusedopt.torch.Adam against torch.optim.Adam(fused=True), one thread.

Two cases from issue 4: many small tensors (1000 tensors x 1000 elements) and one large
tensor (1e7 elements), float32.  Each optimizer owns its own copy of the parameters and
gradients; the optimizers are timed in interleaved rounds (one step each per round, after
warm-up), and the median over rounds is reported, so that the machine's slow drifts hit
all of them alike.  Also shown: fusedopt's NumPy API (``fusedopt.Adam`` on the same
arrays), i.e. the kernel plus the least Python around it, to show what the torch adapter
adds per step.

    python bench/bench_torch_adapter.py [--rounds 30] [--threads 1] [--dtype float32]

Timings are never asserted by tests; record what you measure in docs/torch.md.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import fusedopt
import fusedopt.torch


def make_params(n_tensors: int, n_elems: int, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(n_elems, generator=g, dtype=dtype))
          for _ in range(n_tensors)]
    for p in ps:
        p.grad = torch.randn(n_elems, generator=g, dtype=dtype)
    return ps


class NumpyAPI:
    """fusedopt.Adam over the tensors' NumPy views (the gradients are fixed here)."""

    def __init__(self, params, **kw):
        self.opt = fusedopt.Adam([p.detach().numpy() for p in params], **kw)
        self.grads = [p.grad.numpy() for p in params]

    def step(self):
        self.opt.step(self.grads)


def bench_case(n_tensors, n_elems, dtype, rounds, warmup=3):
    makers = {
        "torch.optim.Adam(fused=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "fusedopt.torch.Adam": lambda ps: fusedopt.torch.Adam(ps, lr=1e-3),
        "fusedopt.Adam (NumPy API)": lambda ps: NumpyAPI(ps, lr=1e-3),
    }
    opts = {name: make(make_params(n_tensors, n_elems, dtype)) for name, make in makers.items()}
    for opt in opts.values():
        for _ in range(warmup):
            opt.step()
    times = {name: [] for name in opts}
    for _ in range(rounds):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fusedopt.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    info = fusedopt.cpu_info()
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"torch {torch.__version__} (cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}), fusedopt path {info['path']}, "
          f"threads {args.threads}, {args.dtype}, median of {args.rounds} interleaved rounds")
    cases = [("1000 x 1e3", 1000, 1000), ("1 x 1e7", 1, 10_000_000)]
    names = None
    rows = []
    for label, n_t, n_e in cases:
        res = bench_case(n_t, n_e, dtype, args.rounds if n_t > 1 else max(5, args.rounds // 3))
        names = list(res)
        rows.append((label, res))
    ref = names[0]
    head = "| tensors x elements | " + " | ".join(names) + f" | speed-up vs fused |"
    print(head)
    print("|" + "---|" * (len(names) + 2))
    for label, res in rows:
        cells = " | ".join(f"{res[n] * 1e3:.2f} ms" for n in names)
        nbytes = 28 if dtype == torch.float32 else 56
        n = 1000 * 1000 if label.startswith("1000") else 10_000_000
        gbs = n * nbytes / res["fusedopt.torch.Adam"] / 1e9
        print(f"| {label} | {cells} | {res[ref] / res['fusedopt.torch.Adam']:.2f}x "
              f"({gbs:.1f} GB/s) |")


if __name__ == "__main__":
    main()
