"""Smoke tests of ``python -m fusedopt bench``: tiny configurations, structure only.

Nothing here asserts a speed (timings belong in bench/ and bench/RESULTS.md)."""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import fusedopt
import pytest

from fusedopt.__main__ import main as cli_main
from fusedopt.bench import _cases, _goals, _machine, _overhead, _peers, _run

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
    # the ceiling moves the bytes per element the row is accounted with
    from fusedopt import _core
    _, reads, writes = _core.STREAM_PATTERNS[row["ceiling"]["pattern"]]
    assert row["bytes_per_element"] == (reads + writes) * np.dtype(row["dtype"]).itemsize
    assert row["pct_of_ceiling"] > 0
    assert "others_cpu" in row             # CPU used by other processes (None without /proc)
    for peer in row["peers"].values():
        assert peer["speedup"] > 0


def check_overhead_row(row):
    """The call-overhead rows: fusedopt and its baseline, timed together, and their ratio."""
    for key in ("kernel", "case", "label", "dtype", "n", "threads", "fusedopt", "baseline",
                "ratio", "others_cpu"):
        assert key in row, key
    assert row["kernel"] == "overhead" and row["dtype"] == "float32"
    for part in (row["fusedopt"], row["baseline"]):
        assert part["time_s"] > 0 and part["min_s"] > 0
        assert part["repeats"] >= 1 and part["number"] >= 1
        assert isinstance(part["impl"], str) and part["impl"]
    assert row["ratio"] == row["fusedopt"]["time_s"] / row["baseline"]["time_s"]
    assert "ceiling" not in row and "peers" not in row
    if row["case"] == "class_step":
        assert row["n"] == 10 ** 6 and row["tensors"] == 1000 and row["tensor_size"] == 1000
        assert row["baseline"]["label"] == "class step 1 x 1e6"
        assert "fusedopt.Adam([p]).step([g])" in row["baseline"]["impl"]
    else:
        assert row["case"] == "functional_call" and row["n"] == 1000
        assert row["baseline"]["label"] == "numpy.add n=1e3"
        assert "numpy.add(a, b, out=out)" in row["baseline"]["impl"]
        assert "fusedopt.adam_step" in row["fusedopt"]["impl"]


def test_json_structure(capsys):
    rows = run_json(capsys, "--kernels", "adam", "--peers", "numpy")
    assert [(r["kernel"], r["n"], r["threads"]) for r in rows] == [("adam", 1000, 1)]
    check_row(rows[0])
    assert set(rows[0]["peers"]) == {"numpy"}
    assert rows[0]["bytes_per_element"] == 28 and rows[0]["dtype"] == "float32"


#: the kernels whose rows have a fixed shape of 1e7 elements or more (slow in a test)
BIG_FIXED = ("softmax", "softmax_narrow", "softmax_wide")


def test_every_kernel_numpy_only(capsys):
    small = [k for k in _cases.KERNEL_ORDER if k not in BIG_FIXED + _cases.OPT_IN]
    rows = run_json(capsys, "--kernels", ",".join(small), "--peers", "numpy",
                    "--threads", "1,2")
    kernels = {r["kernel"] for r in rows}
    assert kernels == {"adam", "adam64", "sgd", "lion", "adagrad", "rmsprop", "adafactor",
                       "adafactor2d", "lamb", "ce", "torch_ce", "multi", "clip", "overhead"}
    assert len(rows) == 30                 # 13 kernels x 2 threads, 2 overhead cases x 2
    for r in rows:
        if r["kernel"] == "torch_ce":      # fusedopt through torch: no NumPy peer
            if "skipped" in r:
                assert "torch" in r["skipped"]
            else:
                check_row(r)
                assert r["peers_skipped"]["numpy"] == "a torch autograd case"
            continue
        if r["kernel"] == "overhead":
            check_overhead_row(r)
            continue
        check_row(r)
        assert "numpy" in r["peers"], (r["kernel"], r["threads"], r["peers_skipped"])
    multi = [r for r in rows if r["kernel"] == "multi"]
    assert all(r["n"] == 1000 * 1000 and r["tensors"] == 1000 for r in multi)
    clip = [r for r in rows if r["kernel"] == "clip"]
    assert all(r["n"] == 2000 * 1000 and r["tensors"] == 2000 for r in clip)
    # NumPy is single-threaded: one measurement reused in both thread rows
    a1, a2 = (r for r in rows if r["kernel"] == "adam")
    assert a1["peers"]["numpy"]["time_s"] == a2["peers"]["numpy"]["time_s"]


def test_torch_peer(capsys):
    pytest.importorskip("torch")
    rows = run_json(capsys, "--kernels", "adam,sgd,lion,adagrad,rmsprop,ce",
                    "--peers", "torch,deepspeed")
    for r in rows:
        check_row(r)
        assert "torch" in r["peers"]
        assert "deepspeed" in r["peers"] or "deepspeed" in r["peers_skipped"]
        if r["kernel"] in ("adam", "sgd", "adagrad"):
            assert r["peers"]["torch"]["fused_verified"] is True


def test_text_table(capsys):
    assert cli_main(["bench", *TINY, "--kernels", "adam,ce", "--peers", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "Adam f32" in out and "sigmoid CE" in out and "%ceil" in out
    assert "speed goals (this run" in out
    assert "Adam f32 n=1e3 functional call" not in out      # the old wording
    assert "adam_step n=1e3, 1 thread: <= 3 µs" in out


def test_skips_sizes_that_do_not_fit(capsys, monkeypatch):
    monkeypatch.setattr(_machine, "available_memory", lambda: 1000)
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


def test_softmax_rows_have_their_fixed_shapes(capsys):
    """The softmax rows: the shapes the report names, whatever --sizes says (the widest
    only here: the three take seconds), the ceiling a copy of the logits."""
    rows = run_json(capsys, "--kernels", "softmax_wide", "--peers", "numpy")
    (r,) = rows
    check_row(r)
    assert (r["rows"], r["classes"], r["n"]) == (512, 131072, 512 * 131072)
    assert r["ceiling"]["pattern"] == "copy" and r["bytes_per_element"] == 8
    assert "numpy" in r["peers"]
    for k, (rows_, classes) in (("softmax", (2048, 32000)), ("softmax_narrow", (65536, 10))):
        assert _cases.FIXED[k] == (rows_, classes)
        assert _cases.CASES[k].classes == classes


def test_torch_ce_row_without_torch(capsys, monkeypatch):
    """Without torch the autograd row is skipped with the reason, the run goes on."""
    import builtins
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    rows = run_json(capsys, "--kernels", "torch_ce,ce", "--peers", "numpy")
    by = {r["kernel"]: r for r in rows}
    assert "not installed" in by["torch_ce"]["skipped"]
    check_row(by["ce"])


@pytest.mark.parametrize("kernel", ["adam", "adam64", "sgd", "lion", "adagrad", "rmsprop",
                                    "adafactor", "adafactor2d", "lamb", "ce", "torch_ce",
                                    "softmax", "softmax_narrow", "softmax_wide", "multi",
                                    "clip"])
def test_peers_compute_the_same_thing(kernel):
    """The benchmarked NumPy and torch versions do the same work as fusedopt."""
    spec = _cases.KERNELS[kernel]
    dtype = np.dtype(spec["dtype"])
    impls = ["fusedopt", "numpy"]
    env = None
    try:
        import torch  # noqa: F401
        env = _peers.Env(["torch"])
        impls.append("torch")
    except ImportError:
        pass
    if kernel == "torch_ce":
        if "torch" not in impls:
            pytest.skip("torch is not installed")
        impls.remove("numpy")                  # fusedopt through torch's autograd
    results = {}
    for impl in impls:
        case = _cases.CASES[kernel](1000, dtype, np.random.default_rng(1))
        if impl == "torch":
            with env.torch_threads(1):
                fn = case.torch(env)[0]
                for _ in range(3):
                    fn()
        else:
            fn = case.fusedopt(1) if impl == "fusedopt" else case.numpy()[0]
            for _ in range(3):
                fn()
        if kernel == "torch_ce":
            out = (case.torch_x if impl == "torch" else case.fusedopt_x).grad.numpy()
        elif kernel == "ce" or kernel.startswith("softmax"):
            out = case.torch_x.grad.numpy() if impl == "torch" else case.grad
        else:
            out = np.concatenate(case.ps) if kernel in ("multi", "clip") else case.p
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

    class Env(_peers.Env):
        def __init__(self, peers):
            super().__init__(peers)
            if "deepspeed" in peers:
                self.ds_cls, self.ds_reason = FakeDeepSpeedCPUAdam, ""

    monkeypatch.setattr(_run, "Env", Env)
    rows = run_json(capsys, "--kernels", "adam,adam64,sgd,multi", "--peers", "deepspeed")
    for r in rows:
        check_row(r)
        if r["kernel"] in ("adam", "multi"):
            assert r["peers"]["deepspeed"]["threads"] == r["threads"]
        else:
            assert "deepspeed" in r["peers_skipped"] and "deepspeed" not in r["peers"]


def test_overhead_rows_json(capsys):
    rows = run_json(capsys, "--kernels", "overhead", "--peers", "numpy", "--threads", "1,2")
    assert [(r["case"], r["threads"]) for r in rows] == [
        ("class_step", 1), ("class_step", 2), ("functional_call", 1), ("functional_call", 2)]
    for r in rows:
        check_overhead_row(r)


def test_overhead_in_default_kernels():
    args = argparse.Namespace(quick=True, kernels=None, sizes=[1000], threads=[1],
                              peers=["numpy"], budget=0.01)
    runner = _run.Runner(args)
    assert runner.kernels[-3:] == ["multi", "clip", "overhead"]
    cases = [(k, n, c) for k, n, c in runner.cases() if k == "overhead"]
    assert cases == [("overhead", 10 ** 6, _overhead.ClassStepOverhead),
                     ("overhead", 1000, _overhead.CallOverhead)]


def test_busy_neighbour_row_only_when_asked_for(capsys, monkeypatch):
    """The busy-neighbour row (short spells here): one row at the default thread count,
    the mean time per call of each side, their ratio; never among the default kernels."""
    for name, value in (("warm_s", 0.02), ("spell_s", 0.03), ("rounds", 2)):
        monkeypatch.setattr(_overhead.BusyNeighbour, name, value)
    args = argparse.Namespace(quick=True, kernels=None, sizes=[1000], threads=[1],
                              peers=["numpy"], budget=0.01)
    assert "neighbour" not in _run.Runner(args).kernels
    args.kernels = ["all"]
    assert _run.Runner(args).kernels[-1] == "neighbour"
    rows = run_json(capsys, "--kernels", "neighbour", "--peers", "numpy", "--threads", "1")
    assert len(rows) == 1
    r = rows[0]
    assert (r["kernel"], r["case"], r["n"]) == ("neighbour", "busy_neighbour", 10 ** 6)
    assert r["threads"] == fusedopt.get_num_threads()
    assert r["baseline"]["label"] == "1 thread" and "n_threads=1" in r["baseline"]["impl"]
    for part in (r["fusedopt"], r["baseline"]):
        assert part["repeats"] == 2 and part["number"] >= 1
        assert 0 < part["min_s"] <= part["time_s"] * (1 + part["spread"])
    assert r["ratio"] == r["fusedopt"]["time_s"] / r["baseline"]["time_s"]
    assert "others_cpu" in r
    goals = dict((g, met) for g, met, _ in _goals.check_goals(rows))
    assert goals == {"adam_step n=1e6 beside a busy process, default threads: <= 1.2x one "
                     "thread": r["ratio"] <= 1.2}


def test_overhead_table_and_goals(capsys):
    assert cli_main(["bench", *TINY, "--kernels", "multi,overhead", "--peers", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "call overhead, Adam f32:" in out
    table = out[out.index("call overhead, Adam f32:"):out.index("speed goals")]
    head, *body = [line for line in table.splitlines()[1:] if line.strip()]
    assert head.split() == ["case", "thr", "busy", "fusedopt", "iqr", "baseline", "time",
                            "ratio"]
    assert len(body) == 2
    assert body[0].startswith("class step 1000 x 1e3") and "class step 1 x 1e6" in body[0]
    assert body[1].startswith("adam_step n=1e3") and "numpy.add n=1e3" in body[1]
    for line in body:
        assert re.search(r"\d\.\d\dx$", line)
    goals = out[out.index("speed goals"):].splitlines()
    lines = [g for g in goals if "<= 1.3x the step over 1 x 1e6" in g or
             "<= 3x a numpy.add(a, b, out=out) call at n=1e3" in g]
    assert len(lines) == 2
    for g in lines:
        assert g.split()[0] in ("met", "MISS") and re.search(r"\d\.\d\dx \(", g)


def test_no_targets_leaves_out_the_goals(capsys):
    assert cli_main(["bench", *TINY, "--kernels", "overhead", "--no-targets"]) == 0
    out = capsys.readouterr().out
    assert "call overhead" in out and "speed goals" not in out


def _overhead_row(case, n, ratio):
    return {"kernel": "overhead", "case": case, "n": n, "threads": 1, "ratio": ratio,
            "fusedopt": {"time_s": ratio * 1e-6}, "baseline": {"time_s": 1e-6}}


@pytest.mark.parametrize("ratio,met", [(1.29, True), (1.31, False)])
def test_goal_class_step_ratio(ratio, met):
    goals = _goals.check_goals([_overhead_row("class_step", 10 ** 6, ratio)])
    assert [(g[0], g[1]) for g in goals] == [
        ("class step over 1000 x 1e3 tensors, 1 thread: <= 1.3x the step over 1 x 1e6", met)]


@pytest.mark.parametrize("ratio,met", [(2.9, True), (3.1, False)])
def test_goal_call_ratio(ratio, met):
    goals = _goals.check_goals([_overhead_row("functional_call", 1000, ratio)])
    assert [(g[0], g[1]) for g in goals] == [
        ("adam_step n=1e3, 1 thread: <= 3x a numpy.add(a, b, out=out) call at n=1e3", met)]
    assert goals[0][2].startswith(f"{ratio:.2f}x (")


def test_overhead_cases_do_the_work_they_claim():
    """The baselines do the same amount of work: one Adam step over 1e6 elements, and one
    float32 addition over 1e3."""
    rng = np.random.default_rng(2)
    cs = _overhead.ClassStepOverhead(0, np.float32, rng)
    p0, ps0 = cs.p.copy(), [p.copy() for p in cs.many.ps]
    pair = cs.pair(1)
    pair["baseline"]()
    pair["fusedopt"]()
    assert cs.p.size == sum(p.size for p in cs.many.ps) == 10 ** 6
    assert np.all(cs.p != p0) and all(np.all(p != q) for p, q in zip(cs.many.ps, ps0))
    co = _overhead.CallOverhead(0, np.float32, rng)
    pair = co.pair(1)
    pair["baseline"]()
    np.testing.assert_array_equal(co.out, co.a + co.b)
    assert co.out.dtype == np.float32 and co.out.size == 1000 == co.adam.p.size
    p0 = co.adam.p.copy()
    pair["fusedopt"]()
    assert np.all(co.adam.p != p0)


def test_no_internal_wording(capsys):
    """What users read (help, table, goals) names no issue numbers."""
    with pytest.raises(SystemExit):
        cli_main(["bench", "--help"])
    text = capsys.readouterr().out
    assert cli_main(["bench", *TINY, "--kernels", "adam,overhead", "--peers", "numpy"]) == 0
    text += capsys.readouterr().out
    assert "--no-targets" in text and "speed goals" in text
    assert not re.search(r"issue[- ]?\d", text, re.IGNORECASE)


def test_wheel_lists_the_bench_package():
    """Every package under src/fusedopt is in pyproject's packages (else the wheel lacks
    it; checked in a source tree), and the installed fusedopt has its bench."""
    import importlib.util
    assert importlib.util.find_spec("fusedopt.bench") is not None
    root = Path(__file__).resolve().parents[1]
    if not (root / "src" / "fusedopt").is_dir():
        return                      # tests run against an installed wheel or sdist
    tomllib = pytest.importorskip("tomllib")
    listed = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    found = sorted(".".join(d.relative_to(root / "src").parts)
                   for d in (root / "src" / "fusedopt").glob("**/")
                   if (d / "__init__.py").exists())
    assert found == sorted(listed) and "fusedopt.bench" in listed


@pytest.mark.parametrize("kernel", ["adagrad", "rmsprop", "adafactor", "adafactor2d", "lamb"])
def test_the_ceiling_leaves_accumulators_alone(kernel):
    """The ceiling writes arbitrary values: it must not run on a sum of squares, which the
    timed kernels (and NumPy's sqrt) then read."""
    from fusedopt import _core
    case = _cases.CASES[kernel](3 * 16384, np.float32, np.random.default_rng(0))
    states = ([case.s] if hasattr(case, "s") else [case.v] if hasattr(case, "v") else
              [a for a in case.states if a is not None])
    before = [a.copy() for a in states]
    step = case.fusedopt(1)
    for _ in range(30):      # (as many calls as a timing sample: nothing grows without bound)
        _core.stream(_cases.KERNELS[kernel]["pattern"], *case.stream_args())
        step()
    assert all((a >= 0).all() for a in states) and np.isfinite(case.p).all()
    assert any((a != b).any() for a, b in zip(states, before))     # the step ran on them


@pytest.mark.parametrize("n,shape", [(10 ** 7, (3125, 3200)), (10 ** 6, (1000, 1000)),
                                     (1000, (25, 40)), (7, (1, 7)), (12, (3, 4))])
def test_adafactor_matrix_shape(n, shape):
    assert _cases.matrix_shape(n) == shape


@pytest.mark.parametrize("kernel", ["adafactor", "adafactor2d", "lamb"])
def test_relative_steps_stay_bounded_over_a_timing_run(kernel):
    """Adafactor's and LAMB's steps are relative to the parameter: fed one gradient over
    and over it would grow 1e-2 of itself a call and overflow within a timing run (the
    NumPy peer then fails); the cases alternate g and -g, which keeps it bounded."""
    case = _cases.CASES[kernel](100, np.float32, np.random.default_rng(0))
    start = np.abs(case.p).max()
    fns = [case.fusedopt(1), case.numpy()[0]]
    for fn in fns:
        for _ in range(5000):
            fn()
    assert np.isfinite(case.p).all() and np.abs(case.p).max() < 10 * start
