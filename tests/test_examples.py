"""The examples/ scripts run, train, and report a falling loss.

Each is run as its own process (``sys.executable``), as a user would run it; its last
line is ``final initial_loss=<float> final_loss=<float> accuracy=<float>``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINAL = re.compile(r"^final initial_loss=(\S+) final_loss=(\S+) accuracy=(\S+)$")


def run_example(name: str, *args: str):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    m = FINAL.match(lines[-1])
    assert m, f"unexpected last line of {name}: {lines[-1]!r}"
    return float(m.group(1)), float(m.group(2)), float(m.group(3)), lines


def test_numpy_trainer():
    initial, final, acc, lines = run_example("numpy_trainer.py")
    assert final < initial
    assert final < 0.5 * initial and acc > 0.85      # it really learned
    assert len(lines) >= 3                             # and printed progress


def test_torch_trainer():
    pytest.importorskip("torch")
    initial, final, acc, _ = run_example("torch_trainer.py")
    assert final < initial
    assert final < 0.5 * initial and acc > 0.85


def test_both_trainers_agree():
    # same data, same initial weights, same TF1 Adam: the same training, up to the float32
    # rounding of the forward/backward passes (torch and NumPy sum in different orders)
    pytest.importorskip("torch")
    a = run_example("numpy_trainer.py", "--steps", "60")
    b = run_example("torch_trainer.py", "--steps", "60")
    assert a[0] == pytest.approx(b[0], rel=1e-5)
    assert a[1] == pytest.approx(b[1], rel=1e-3)
