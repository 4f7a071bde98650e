"""Checkpoints: atomic, verified, pickle-free, and resumable bit for bit."""
import hashlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fusedopt
from fusedopt import _checkpoint


def trained(make, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    ps = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(7)]
    opt = make(ps)
    gseq = [[rng.standard_normal(p.shape).astype(p.dtype) for p in ps] for _ in range(2 * steps)]
    for g in gseq[:steps]:
        opt.step(g)
    return ps, opt, gseq[steps:]


MAKERS = {
    "adam": lambda ps: fusedopt.Adam(ps, lr=0.01, amsgrad=True),
    "adamw-keras": lambda ps: fusedopt.AdamW(ps, lr=0.01, convention="keras", eps=1e-7),
    "sgd-nesterov": lambda ps: fusedopt.SGD(ps, lr=0.01, momentum=0.9, nesterov=True),
    "groups": lambda ps: fusedopt.Adam([{"params": ps[:1], "lr": 0.1}, {"params": ps[1:]}]),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_resume_is_bit_identical(tmp_path, name):
    ps, opt, rest = trained(MAKERS[name])
    path = tmp_path / "opt.ckpt"
    opt.save(path)
    resumed = fusedopt.load_optimizer(path)
    assert type(resumed) is type(opt)
    for g in rest:
        opt.step(g)
        resumed.step([x.copy() for x in g])
    for a, b in zip(ps, resumed.params):
        np.testing.assert_array_equal(a, b)
    assert resumed.param_groups == opt.param_groups


def test_load_into_existing_optimizer_and_params(tmp_path):
    ps, opt, rest = trained(MAKERS["adam"])
    opt.save(tmp_path / "a.ckpt")
    snapshot = [p.copy() for p in ps]
    for g in rest:
        opt.step(g)
    opt.load(tmp_path / "a.ckpt")                      # back to the saved point, in place
    for p, s in zip(ps, snapshot):
        np.testing.assert_array_equal(p, s)
    other = [np.zeros((4, 3), np.float32), np.zeros(7)]
    again = fusedopt.load_optimizer(tmp_path / "a.ckpt", params=other)
    assert again.params[0] is other[0]
    np.testing.assert_array_equal(other[1], snapshot[1])


def test_corruption_and_truncation_are_detected(tmp_path):
    _, opt, _ = trained(MAKERS["adam"])
    path = tmp_path / "c.ckpt"
    opt.save(path)
    data = path.read_bytes()
    for pos in (0, 20, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x40
        path.write_bytes(bytes(bad))
        with pytest.raises(fusedopt.CheckpointError):
            fusedopt.load_optimizer(path)
    for cut in (0, 10, len(data) // 3, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(fusedopt.CheckpointError):
            fusedopt.load_optimizer(path)


def test_failed_load_changes_nothing(tmp_path):
    ps, opt, _ = trained(MAKERS["adam"])
    path = tmp_path / "x.ckpt"
    opt.save(path)
    data = bytearray(path.read_bytes())
    data[-40] ^= 1
    path.write_bytes(bytes(data))
    before = [p.copy() for p in ps]
    sd = opt.state_dict()
    with pytest.raises(fusedopt.CheckpointError):
        opt.load(path)
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p, b)
    assert opt.state_dict()["state"][0]["step"] == sd["state"][0]["step"]


def _forge(path, header, payload=b""):
    hb = json.dumps(header).encode()
    body = _checkpoint.MAGIC + struct.pack("<Q", len(hb)) + hb + payload
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_crafted_files_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "evil.ckpt"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(fusedopt.CheckpointError):
        fusedopt.load_optimizer(p)
    # a well-formed file (valid hash) whose array claims an object dtype
    _forge(p, {"format": 1, "kind": "Adam", "param_groups": [], "state": {}, "params": [0],
               "arrays": [{"name": "params/0", "dtype": "|O", "shape": [1], "offset": 0,
                           "nbytes": 8}]}, pickle.dumps(Evil()))
    with pytest.raises(fusedopt.CheckpointError, match="dtype"):
        fusedopt.load_optimizer(p)
    _forge(p, {"format": 1, "kind": "os.system", "param_groups": [], "state": {},
               "params": [], "arrays": []})
    with pytest.raises(fusedopt.CheckpointError, match="kind"):
        fusedopt.load_optimizer(p)
    _forge(p, {"format": 1, "kind": "Adam", "param_groups": [], "state": {}, "params": [0],
               "arrays": [{"name": "params/0", "dtype": "<f8", "shape": [10**12], "offset": 0,
                           "nbytes": 8 * 10**12}]})
    with pytest.raises(fusedopt.CheckpointError, match="fit"):
        fusedopt.load_optimizer(p)
    assert not marker.exists()


WRITER = textwrap.dedent("""
    import sys, numpy as np, fusedopt
    path = sys.argv[1]
    p = [np.zeros(200_000), np.zeros(1000, np.float32)]
    opt = fusedopt.Adam(p, lr=0.01)
    k = 0
    while True:
        k += 1
        opt.step([np.full(200_000, float(k)), np.full(1000, float(k), np.float32)])
        opt.save(path)
        print(k, flush=True)
""")


def test_sigkill_during_checkpointing_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "live.ckpt"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(0)
    seen_steps = set()
    for trial in range(12):
        proc = subprocess.Popen([sys.executable, str(script), str(path)],
                                stdout=subprocess.PIPE, text=True)
        # wait for a first complete checkpoint, then kill at a random moment
        first = proc.stdout.readline()
        assert first.strip(), "writer did not start"
        time.sleep(float(rng.uniform(0.0, 0.15)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        opt = fusedopt.load_optimizer(path)            # never CheckpointError
        step = opt.state[0]["step"]
        assert step >= 1
        # the state is one complete step: every element saw the same gradients
        assert opt.params[0][0] == opt.params[0][-1]
        assert opt.state[1]["step"] == step
        seen_steps.add(step)
        leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        for f in leftovers:                             # a killed writer may leave its temp
            os.unlink(tmp_path / f)
    assert len(seen_steps) > 1
