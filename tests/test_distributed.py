"""fusedopt.torch inside torch.distributed: DistributedDataParallel and
ZeroRedundancyOptimizer on the gloo backend, 2 processes on this machine (loopback).

Each of the 2 spawned ranks trains the same MLP on its own shard of a synthetic binary
classification task, in float64, with several setups run one after the other in the same
process group:

* DDP + ``fusedopt.torch.Adam``   vs  DDP + ``torch.optim.Adam``; and once more with
  ``gradient_as_bucket_view=True`` (the gradients are views into DDP's buckets)
* ``ZeroRedundancyOptimizer(optimizer_class=fusedopt.torch.Adam)`` (state sharded: each
  rank steps only its partition, then broadcasts it) vs the same with
  ``torch.optim.Adam``; and once more with ``parameters_as_bucket_view=True`` (ZeRO
  re-points ``param.data`` into flat buckets).

Checks: every rank ends with bit-identical parameters (DDP all-reduces the gradients,
ZeRO broadcasts the parameters), and fusedopt's parameters equal torch.optim's to 1e-12
(float64; see tests/test_torch_adapter.py for the rounding argument).  Process joins have
a timeout, so a hang fails the test instead of blocking CI.
"""
from __future__ import annotations

import datetime
import os
import socket
import time

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
ft = pytest.importorskip("fusedopt.torch")

WORLD = 2
STEPS = 25
JOIN_TIMEOUT_S = 120
SETUPS = ["ddp-fusedopt", "ddp-torch", "ddp-gradview-fusedopt", "zero-fusedopt", "zero-torch",
          "zero-bucket-fusedopt"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(rank: int):
    g = torch.Generator().manual_seed(123)
    X = torch.randn(256, 10, generator=g, dtype=torch.float64)
    w = torch.randn(10, generator=g, dtype=torch.float64)
    y = (X @ w > 0).to(torch.float64).unsqueeze(1)
    return X[rank::WORLD], y[rank::WORLD]       # each rank its own shard


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 1)).to(torch.float64)


def _train(setup: str, rank: int):
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = _model()
    ddp = DDP(model, gradient_as_bucket_view="gradview" in setup)
    cls = ft.Adam if setup.endswith("fusedopt") else torch.optim.Adam
    kw = dict(lr=0.01, weight_decay=0.01, amsgrad=True)
    if setup.startswith("zero"):
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=cls,
                                      parameters_as_bucket_view="bucket" in setup, **kw)
    else:
        opt = cls(ddp.parameters(), **kw)
    X, y = _data(rank)
    losses = []
    for i in range(STEPS):
        opt.zero_grad()
        xb, yb = X[i % 4::4], y[i % 4::4]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ddp(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out = {"params": [p.detach().clone() for p in model.parameters()], "losses": losses}
    if setup.startswith("zero"):
        local = opt.optim
        assert type(local) is cls
        out["local_state_sizes"] = len(local.state)   # sharded: a part of the params
        opt.consolidate_state_dict(to=0)
        if rank == 0:
            out["state_dict"] = opt.state_dict()
    else:
        out["state_dict"] = opt.state_dict()
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        results = {setup: _train(setup, rank) for setup in SETUPS}
        dist.barrier()
    finally:
        dist.destroy_process_group()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import multiprocessing as mp
    out_dir = str(tmp_path_factory.mktemp("dist"))
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, out_dir)) for r in range(WORLD)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=max(1.0, JOIN_TIMEOUT_S - (time.monotonic() - t0)))
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        assert not hung, f"ranks {hung} did not finish within {JOIN_TIMEOUT_S} s"
        codes = [p.exitcode for p in procs]
        assert codes == [0] * WORLD, f"worker exit codes {codes}"
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=False)
            for r in range(WORLD)]


@pytest.mark.parametrize("setup", SETUPS)
def test_ranks_hold_identical_parameters(results, setup):
    r0, r1 = results[0][setup], results[1][setup]
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.equal(a, b)
    # and they trained: each rank's loss on its shard fell
    for r in results:
        assert r[setup]["losses"][-1] < r[setup]["losses"][0]


@pytest.mark.parametrize("ours,theirs", [("ddp-fusedopt", "ddp-torch"),
                                         ("ddp-gradview-fusedopt", "ddp-torch"),
                                         ("zero-fusedopt", "zero-torch"),
                                         ("zero-bucket-fusedopt", "zero-torch")])
def test_fusedopt_matches_torch_optim(results, ours, theirs):
    for r in results:
        for k, (a, b) in enumerate(zip(r[ours]["params"], r[theirs]["params"])):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12,
                                       msg=lambda m: f"{ours} param {k}: {m}")
        assert r[ours]["losses"] == pytest.approx(r[theirs]["losses"], rel=1e-12)


def test_state_dicts_have_torch_format(results):
    # DDP: the plain optimizer state; ZeRO: the consolidated one (on rank 0), both in the
    # same format as torch.optim.Adam's and with the same values
    for ours, theirs in [("ddp-fusedopt", "ddp-torch"), ("zero-fusedopt", "zero-torch")]:
        sa = results[0][ours]["state_dict"]["state"]
        sb = results[0][theirs]["state_dict"]["state"]
        assert sa.keys() == sb.keys() and len(sa) == 6
        for i in sa:
            assert sa[i].keys() == sb[i].keys() == {"step", "exp_avg", "exp_avg_sq",
                                                    "max_exp_avg_sq"}
            assert sa[i]["step"].dtype == torch.float32 and sa[i]["step"].item() == STEPS
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                scale = sb[i][key].abs().max().item() or 1.0
                torch.testing.assert_close(sa[i][key] / scale, sb[i][key] / scale,
                                           rtol=1e-11, atol=1e-11)
    # ZeRO really sharded the state: each rank's local optimizer holds a part
    sizes = [r["zero-fusedopt"]["local_state_sizes"] for r in results]
    assert sum(sizes) == 6 and all(0 < s < 6 for s in sizes)


def test_sharding_and_bucket_views_do_not_change_the_result(results):
    # the kernels are elementwise: stepping a shard per rank and broadcasting gives exactly
    # the parameters of stepping everything everywhere; so does reading the gradients
    # through DDP's bucket views
    for r in results:
        for setup in ("zero-fusedopt", "zero-bucket-fusedopt", "ddp-gradview-fusedopt"):
            for a, b in zip(r[setup]["params"], r["ddp-fusedopt"]["params"]):
                assert torch.equal(a, b), setup
