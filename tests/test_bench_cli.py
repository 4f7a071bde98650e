"""Smoke tests of ``python -m fusedopt bench``: tiny configurations, structure only.

Nothing here asserts a speed (timings belong in bench/ and bench/RESULTS.md)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fusedopt import _bench
from fusedopt.__main__ import main as cli_main

TINY = ["--quick", "--sizes", "1000", "--threads", "1", "--budget", "0.01"]


def run_json(capsys, *extra):
    assert cli_main(["bench", "--json", *TINY, *extra]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out)
    assert isinstance(rows, list) and rows
    return rows


def check_row(row):
    for key in ("kernel", "label", "dtype", "n", "threads", "bytes_per_element", "unit",
                "fusedopt", "ceiling", "pct_of_ceiling", "peers", "peers_skipped"):
        assert key in row, key
    for part in [row["fusedopt"], row["ceiling"], *row["peers"].values()]:
        assert part["time_s"] > 0 and part["min_s"] > 0
        assert part["gbps"] > 0 and part["melem_per_s"] > 0
        assert part["repeats"] >= 1 and part["number"] >= 1
    assert row["ceiling"]["pattern"] in ("adam", "sgd", "loss")
    assert row["pct_of_ceiling"] > 0
    assert "others_cpu" in row             # CPU used by other processes (None without /proc)
    for peer in row["peers"].values():
        assert peer["speedup"] > 0


def test_json_structure(capsys):
    rows = run_json(capsys, "--kernels", "adam", "--peers", "numpy")
    assert [(r["kernel"], r["n"], r["threads"]) for r in rows] == [("adam", 1000, 1)]
    check_row(rows[0])
    assert set(rows[0]["peers"]) == {"numpy"}
    assert rows[0]["bytes_per_element"] == 28 and rows[0]["dtype"] == "float32"


def test_every_kernel_numpy_only(capsys):
    rows = run_json(capsys, "--kernels", "all", "--peers", "numpy", "--threads", "1,2")
    kernels = {r["kernel"] for r in rows}
    assert kernels == {"adam", "adam64", "sgd", "ce", "multi"}
    assert len(rows) == 10
    for r in rows:
        check_row(r)
        assert "numpy" in r["peers"]
    multi = [r for r in rows if r["kernel"] == "multi"]
    assert all(r["n"] == 1000 * 1000 and r["tensors"] == 1000 for r in multi)
    # NumPy is single-threaded: one measurement reused in both thread rows
    a1, a2 = (r for r in rows if r["kernel"] == "adam")
    assert a1["peers"]["numpy"]["time_s"] == a2["peers"]["numpy"]["time_s"]


def test_torch_peer(capsys):
    pytest.importorskip("torch")
    rows = run_json(capsys, "--kernels", "adam,sgd,ce", "--peers", "torch,deepspeed")
    for r in rows:
        check_row(r)
        assert "torch" in r["peers"]
        assert "deepspeed" in r["peers"] or "deepspeed" in r["peers_skipped"]
        if r["kernel"] in ("adam", "sgd"):
            assert r["peers"]["torch"]["fused_verified"] is True


def test_text_table(capsys):
    assert cli_main(["bench", *TINY, "--kernels", "adam,ce", "--peers", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "Adam f32" in out and "sigmoid CE" in out and "%ceil" in out
    assert "issue-3 targets" in out


def test_skips_sizes_that_do_not_fit(capsys, monkeypatch):
    monkeypatch.setattr(_bench, "_available_memory", lambda: 1000)
    rows = run_json(capsys, "--kernels", "adam", "--peers", "numpy")
    assert "skipped" in rows[0] and "fusedopt" not in rows[0]


def test_plot_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "p.png"
    assert cli_main(["bench", *TINY, "--kernels", "adam", "--plot", str(path)]) == 1
    assert "matplotlib" in capsys.readouterr().err
    assert not path.exists()


def test_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "p.png"
    assert cli_main(["bench", *TINY, "--kernels", "adam,multi", "--peers", "numpy",
                     "--plot", str(path)]) == 0
    assert path.stat().st_size > 1000


def test_bad_options_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--kernels", "adam,nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--sizes", "0"])
    assert e.value.code == 2


def test_subprocess_cli():
    env = dict(os.environ, PYTHONWARNINGS="error")
    proc = subprocess.run(
        [sys.executable, "-m", "fusedopt", "bench", "--json", *TINY, "--kernels", "sgd",
         "--peers", "numpy"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    check_row(rows[0])
    assert "SGD" in proc.stderr            # progress goes to stderr


@pytest.mark.parametrize("kernel", ["adam", "adam64", "sgd", "ce", "multi"])
def test_peers_compute_the_same_thing(kernel):
    """The benchmarked NumPy and torch versions do the same work as fusedopt."""
    spec = _bench.KERNELS[kernel]
    dtype = np.dtype(spec["dtype"])
    impls = ["fusedopt", "numpy"]
    env = None
    try:
        import torch  # noqa: F401
        env = _bench.Env(["torch"])
        impls.append("torch")
    except ImportError:
        pass
    results = {}
    for impl in impls:
        case = _bench.CASES[kernel](1000, dtype, np.random.default_rng(1))
        if impl == "torch":
            with env.torch_threads(1):
                fn = case.torch(env)[0]
                for _ in range(3):
                    fn()
        else:
            fn = case.fusedopt(1) if impl == "fusedopt" else case.numpy()[0]
            for _ in range(3):
                fn()
        if kernel == "ce":
            out = case.torch_x.grad.numpy() if impl == "torch" else case.grad
        else:
            out = np.concatenate(case.ps) if kernel == "multi" else case.p
        results[impl] = out.copy()
    tol = 1e-12 if dtype == np.float64 else 1e-6
    for impl in impls[1:]:
        np.testing.assert_allclose(results[impl], results["fusedopt"], rtol=tol, atol=tol,
                                   err_msg=impl)


def test_deepspeed_plumbing(capsys, monkeypatch):
    """DeepSpeed is rarely installed: a stand-in with its constructor exercises the path."""
    torch = pytest.importorskip("torch")

    class FakeDeepSpeedCPUAdam(torch.optim.Adam):
        def __init__(self, params, lr=1e-3, adamw_mode=True):
            super().__init__(params, lr=lr)

    class Env(_bench.Env):
        def __init__(self, peers):
            super().__init__(peers)
            if "deepspeed" in peers:
                self.ds_cls, self.ds_reason = FakeDeepSpeedCPUAdam, ""

    monkeypatch.setattr(_bench, "Env", Env)
    rows = run_json(capsys, "--kernels", "adam,adam64,sgd,multi", "--peers", "deepspeed")
    for r in rows:
        check_row(r)
        if r["kernel"] in ("adam", "multi"):
            assert r["peers"]["deepspeed"]["threads"] == r["threads"]
        else:
            assert "deepspeed" in r["peers_skipped"] and "deepspeed" not in r["peers"]
