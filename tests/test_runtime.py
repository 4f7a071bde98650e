"""CPU path selection, threads and what cpu_info reports."""
import json
import textwrap
import os
import subprocess
import sys

import numpy as np
import pytest

import fusedopt

from conftest import PATHS


def run_info(env_extra):
    env = dict(os.environ, **env_extra)
    r = subprocess.run([sys.executable, "-c", "import json, fusedopt; "
                        "print(json.dumps(fusedopt.cpu_info()))"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


@pytest.mark.parametrize("path", PATHS)
def test_env_override_lowers_the_path(path):
    info, _ = run_info({"FUSEDOPT_CPU": path})
    assert info["path"] == path
    assert info["detected"] == PATHS[-1]
    if path != info["detected"]:
        assert "FUSEDOPT_CPU" in info["reason"]


def test_env_override_cannot_raise_the_path_and_bad_values_warn():
    built = fusedopt._core.runtime_info()["built"]
    info, err = run_info({"FUSEDOPT_CPU": built[-1]})
    assert info["path"] == info["detected"]          # never above what the CPU has
    # a path of the other architecture, and no path at all: a warning, the best path
    for bad in ("sve" if "avx512" in built else "avx512", "sse9"):
        info, err = run_info({"FUSEDOPT_CPU": bad})
        assert info["path"] == info["detected"] and "FUSEDOPT_CPU" in err, (bad, err)
        assert ", ".join(built) in err


def test_paths_of_this_build_and_cpu():
    info, built = fusedopt.cpu_info(), fusedopt._core.runtime_info()["built"]
    assert info["paths"][0] == "baseline" and info["paths"][-1] == info["detected"]
    assert set(info["paths"]) <= set(built)
    x86 = ("baseline", "avx2", "avx512")
    assert built in (x86, ("baseline", "sve"), ("baseline",)), built
    with pytest.raises(ValueError, match="cpu path must be one of"):
        fusedopt._runtime._set_cpu_path("sve" if "avx512" in built else "avx512")


def test_baseline_path_trains_the_demo_identically():
    # The wheel must work on any x86-64 CPU: the baseline path gives the same numbers.
    code = ("import fusedopt._demo as d, numpy as np; r = d.train(200); "
            "print(repr(r.losses[-1])); print(fusedopt.cpu_info()['path'])")
    outs = []
    for path in PATHS:
        r = subprocess.run([sys.executable, "-c", "import fusedopt; " + code],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, FUSEDOPT_CPU=path))
        assert r.returncode == 0, r.stderr
        loss, used = r.stdout.split()
        assert used == path
        outs.append(loss)
    assert len(set(outs)) == 1


def test_cpu_info_fields():
    info = fusedopt.cpu_info()
    for k in ("path", "detected", "reason", "openmp", "threads", "parallel_threshold",
              "compiler", "build_flags", "machine"):
        assert k in info
    assert "-march=native" not in info["build_flags"]
    assert "-ffp-contract=off" in info["build_flags"]


def test_set_num_threads():
    before = fusedopt.get_num_threads()
    try:
        fusedopt.set_num_threads(1)
        assert fusedopt.get_num_threads() == 1
        fusedopt.set_num_threads(3)
        assert fusedopt.get_num_threads() == 3
    finally:
        fusedopt.set_num_threads(None)
    assert fusedopt.get_num_threads() == before
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError):
            fusedopt.set_num_threads(bad)


def test_threadpoolctl_sees_and_limits_the_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not fusedopt.cpu_info()["openmp"]:
        pytest.skip("built without OpenMP")
    x = np.zeros(10**6, np.float32)
    fusedopt.sigmoid_cross_entropy(x, x)           # make sure the OpenMP runtime is loaded
    omp = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "openmp"]
    assert omp, "threadpoolctl does not see fusedopt's OpenMP runtime"
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fusedopt.get_num_threads() == 1
    assert fusedopt.get_num_threads() >= 1


def test_omp_num_threads_is_the_default():
    r = subprocess.run([sys.executable, "-c", "import fusedopt; print(fusedopt.get_num_threads())"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.stdout.strip() == "1"


def test_forked_child_runs_single_threaded_instead_of_hanging():
    # GNU OpenMP hangs in a child forked after the parent used its thread pool; fusedopt
    # detects the fork (pthread_atfork) and runs the child's calls on one thread.
    code = textwrap.dedent("""
        import multiprocessing as mp, numpy as np, fusedopt
        x = np.random.default_rng(0).random(10**6).astype(np.float32)
        parent = fusedopt.sigmoid_cross_entropy(x, x, n_threads=2)
        def child(q):
            q.put((fusedopt.sigmoid_cross_entropy(x, x, n_threads=2),
                   fusedopt.cpu_info()["forked_single_threaded"]))
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        loss, single = q.get(timeout=60)
        p.join(60)
        assert p.exitcode == 0 and loss == parent, (loss, parent)
        print(single, fusedopt.cpu_info()["forked_single_threaded"])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    openmp = fusedopt.cpu_info()["openmp"]
    assert r.stdout.split() == [str(openmp), "False"]
