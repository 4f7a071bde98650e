"""The peers fusedopt is timed against: what is installed (torch, DeepSpeed, threadpoolctl),
whether torch really runs its fused kernels, and their thread counts.  NumPy needs nothing
here: its versions are written out in the cases."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

PEERS = ["numpy", "torch", "deepspeed"]
PEER_LABEL = {"numpy": "NumPy", "torch": "torch", "deepspeed": "DeepSpeed"}


class Unsupported(Exception):
    """A peer has no version of a case (the message says why, for the report)."""


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Silences C-level stderr chatter (torch's profiler, DeepSpeed's import)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def torch_params(torch: Any, ps: Sequence[np.ndarray], gs: Sequence[np.ndarray]) -> List[Any]:
    """torch parameters sharing the memory of ``ps``, with ``gs`` as their gradients."""
    tps = []
    for p, g in zip(ps, gs):
        tp = torch.from_numpy(p).requires_grad_(True)
        tp.grad = torch.from_numpy(g)
        tps.append(tp)
    return tps


class Env:
    """What is installed and verified, loaded lazily once per run."""

    def __init__(self, peers: Sequence[str]) -> None:
        self.wanted = list(peers)
        self.torch: Any = None
        self.torch_reason = "not requested"
        self.fused_ops: Dict[str, Optional[bool]] = {}
        self.ds_cls: Any = None
        self.ds_reason = "not requested"
        self.threadpoolctl: Any = None
        if "torch" in peers or "deepspeed" in peers:
            try:
                import torch
                self.torch = torch
                self.torch_reason = ""
            except Exception as e:           # ImportError, or a broken install
                self.torch_reason = f"not installed ({type(e).__name__}: {e})"
        if "deepspeed" in peers:
            if self.torch is None:
                self.ds_reason = "needs torch"
            else:
                try:
                    with quiet_fds():
                        from deepspeed.ops.adam import DeepSpeedCPUAdam  # type: ignore[import, unused-ignore]
                    self.ds_cls = DeepSpeedCPUAdam
                    self.ds_reason = ""
                except Exception as e:
                    self.ds_reason = f"not installed ({type(e).__name__}: {str(e)[:80]})"
        try:
            import threadpoolctl  # type: ignore[import, unused-ignore]
            self.threadpoolctl = threadpoolctl
        except ImportError:
            pass

    def torch_ok(self) -> bool:
        return "torch" in self.wanted and self.torch is not None

    def ds_ok(self) -> bool:
        return "deepspeed" in self.wanted and self.ds_cls is not None

    def verify_fused(self, op: str) -> Optional[bool]:
        """Runs one small torch step under the profiler and looks for ``op``
        (aten::_fused_adam_, _fused_sgd_ or _fused_adagrad_) among the executed
        operators (Adam in float32 and float64)."""
        if op in self.fused_ops:
            return self.fused_ops[op]
        torch = self.torch
        makers: Dict[str, Callable[[Any], Any]] = {
                "aten::_fused_adam_": lambda p: torch.optim.Adam([p], fused=True),
                "aten::_fused_sgd_": lambda p: torch.optim.SGD([p], lr=1e-3, momentum=0.9,
                                                               fused=True),
                "aten::_fused_adagrad_": lambda p: torch.optim.Adagrad([p], fused=True)}
        make = makers[op]
        ok: Optional[bool]
        try:
            import warnings
            from torch.profiler import ProfilerActivity, profile
            for dt in (torch.float32, torch.float64) if "adam" in op else (torch.float32,):
                p = torch.zeros(1000, dtype=dt, requires_grad=True)
                p.grad = torch.ones_like(p)
                opt = make(p)
                opt.step()
                with warnings.catch_warnings(), quiet_fds():
                    warnings.simplefilter("ignore")
                    with profile(activities=[ProfilerActivity.CPU]) as prof:
                        opt.step()
                keys = {e.key for e in prof.key_averages()}
                ok = op in keys
                if not ok:
                    break
        except Exception:                     # profiler unavailable: unknown
            ok = None
        self.fused_ops[op] = ok
        return ok

    @contextlib.contextmanager
    def torch_threads(self, k: int) -> Iterator[None]:
        torch = self.torch
        before = torch.get_num_threads()
        torch.set_num_threads(k)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    @contextlib.contextmanager
    def all_openmp_threads(self, k: int) -> Iterator[None]:
        """For DeepSpeed, whose extension may carry its own OpenMP runtime."""
        if self.threadpoolctl is None:
            with self.torch_threads(k):
                yield
            return
        with self.threadpoolctl.threadpool_limits(limits=k, user_api="openmp"), \
                self.torch_threads(k):
            yield
