"""The package type-checks: ``mypy --strict`` on fusedopt (the installed package, or the
source tree under an editable install), and ``stubtest`` compares the stub
src/fusedopt/_core.pyi with the compiled extension it describes.

Skipped when mypy is not installed (it is in the ``test`` extra)."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("mypy")

HERE = os.path.dirname(os.path.abspath(__file__))
ALLOWLIST = os.path.join(HERE, "stubtest_allowlist.txt")


def run(args, cwd):
    """Runs ``python -m <args>`` in cwd (outside the source tree's root, so that only the
    importable fusedopt is checked); returns (exit status, output)."""
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                       cwd=cwd, timeout=900)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.slow
def test_mypy_strict(tmp_path):
    # fusedopt.torch imports torch (in the test extra); mypy needs it to check that module
    pytest.importorskip("torch")
    code, out = run(["mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
                     "-p", "fusedopt"], tmp_path)
    assert code == 0, out


def test_stubtest_core(tmp_path):
    code, out = run(["mypy.stubtest", "fusedopt._core", "--allowlist", ALLOWLIST], tmp_path)
    assert code == 0, out
