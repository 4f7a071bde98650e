"""The kernels under each C compiler: real per-path code, and the same bits everywhere.

The kernels (``kernels/*.c``) are compiled with the build's own flags by gcc and, when it
is installed, clang (Debian's ``clang`` package; the clang tests skip without it), linked
with ``tests/c/paths.c``, and run: every CPU path of every compiler must print the same
output hashes.  The AVX2 and AVX-512 functions must contain 256- and 512-bit vector
instructions (clang ignores ``#pragma GCC target``, so without its own pragma it would
build baseline code under those names), the baseline ones neither.

With Debian's ``gcc-aarch64-linux-gnu`` and ``qemu-user`` installed (CI installs them),
the kernels are also cross-compiled for aarch64 and run under ``qemu-aarch64``: the
same bits as on x86-64, from baseline code that the compiler vectorised with NEON
(Advanced SIMD, part of every ARMv8-A CPU).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from glob import glob
from typing import Dict, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "kernels")
pytestmark = pytest.mark.skipif(not os.path.isdir(KERNELS) or sys.platform != "linux",
                                reason="needs the source tree's kernels/ on Linux")


def _flags() -> List[str]:
    """BASE_FLAGS + CHECK_FLAGS as setup.py defines them (read, not imported: importing
    setup.py would run the build)."""
    with open(os.path.join(ROOT, "setup.py")) as f:
        text = f.read()
    ns: Dict[str, List[str]] = {}
    for name in ("BASE_FLAGS", "CHECK_FLAGS"):
        m = re.search(rf"^{name} = .*?\]\n", text, re.S | re.M)
        assert m, f"setup.py defines no {name}"
        exec(m.group(0), {}, ns)
    return ns["BASE_FLAGS"] + ns["CHECK_FLAGS"]


def _build(cc: str, tmp: str) -> str:
    """Compiles the kernels and tests/c/paths.c with `cc`; returns the executable."""
    srcs = sorted(glob(os.path.join(KERNELS, "*.c"))) + [os.path.join(ROOT, "tests", "c", "paths.c")]
    flags = _flags() + ["-I", KERNELS]

    def one(src: str) -> str:
        obj = os.path.join(tmp, os.path.basename(src) + ".o")
        subprocess.run([cc, *flags, "-c", src, "-o", obj], check=True, capture_output=True)
        return obj
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objs = list(pool.map(one, srcs))
    exe = os.path.join(tmp, "paths")
    subprocess.run([cc, *objs, "-o", exe, "-lm"], check=True, capture_output=True)
    return exe


# a cross compiler, and how its programs run here (user-mode emulation, Debian's sysroot)
AARCH64 = "aarch64-linux-gnu-gcc"
RUNNERS = {AARCH64: ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]}
COMPILERS = ["gcc", "clang", AARCH64]


def _available(cc: str) -> bool:
    return shutil.which(cc) is not None and all(shutil.which(r) for r in RUNNERS.get(cc, [])[:1])


def _run(exe: str, cc: str = "gcc") -> Dict[str, List[str]]:
    """kernel -> the output line of every path, without the path number."""
    out: Dict[str, List[str]] = {}
    cmd = RUNNERS.get(cc, []) + [exe]
    for line in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines():
        kernel, isa, rest = line.split(" ", 2)
        out.setdefault(kernel, []).append(rest)
    return out


def _vector_regs(exe: str, function: str) -> Dict[str, int]:
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", exe], check=True,
                         capture_output=True, text=True).stdout
    m = re.search(rf"^[0-9a-f]+ <{function}>:\n(.*?)\n\n", dis, re.S | re.M)
    assert m, f"{function} not found in {exe}"
    body = m.group(1)
    return {"ymm": len(re.findall(r"%ymm", body)), "zmm": len(re.findall(r"%zmm", body))}


def _x86() -> bool:
    import platform
    return platform.machine() in ("x86_64", "AMD64")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    exes = {}
    for cc in COMPILERS:
        if _available(cc):
            exes[cc] = _build(cc, str(tmp_path_factory.mktemp(cc)))
    if not exes:
        pytest.skip("no C compiler")
    return exes


@pytest.mark.parametrize("cc", COMPILERS)
def test_every_path_same_bits(builds: Dict[str, str], cc: str) -> None:
    if cc not in builds:
        pytest.skip(f"{cc} is not installed (or cannot run its programs here)")
    runs = _run(builds[cc], cc)
    assert set(runs) == {"adam", "sgd", "bce"}
    for kernel, lines in runs.items():
        assert len(set(lines)) == 1, f"{cc}: {kernel} differs between CPU paths: {lines}"


def test_compilers_agree(builds: Dict[str, str]) -> None:
    """gcc, clang and the aarch64 build (those installed): the same bits on every path
    (aarch64 has one path, x86-64 up to three)."""
    if len(builds) < 2:
        pytest.skip("needs two of gcc, clang and the aarch64 cross compiler")
    runs = {cc: {k: set(lines) for k, lines in _run(exe, cc).items()}
            for cc, exe in builds.items()}
    first = next(iter(runs))
    for cc, run in runs.items():
        assert run == runs[first], (first, cc)


def test_aarch64_baseline_is_neon(builds: Dict[str, str]) -> None:
    """The aarch64 build's kernels are vector code: NEON instructions on 4 float lanes."""
    if AARCH64 not in builds or not shutil.which("aarch64-linux-gnu-objdump"):
        pytest.skip("needs the aarch64 cross compiler, qemu-aarch64 and its objdump")
    dis = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn",
                          builds[AARCH64]], check=True, capture_output=True, text=True).stdout
    for kernel in ("adam_f32", "bce_block_f32"):
        m = re.search(rf"^[0-9a-f]+ <fo_{kernel}_baseline>:\n(.*?)\n\n", dis, re.S | re.M)
        assert m, f"fo_{kernel}_baseline not found"
        assert len(re.findall(r"\bv\d+\.4s\b", m.group(1))) > 10, kernel


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_paths_have_their_instructions(builds: Dict[str, str], cc: str) -> None:
    if cc not in builds:
        pytest.skip(f"{cc} is not installed")
    if not _x86() or not shutil.which("objdump"):
        pytest.skip("x86-64 with objdump only")
    for kernel in ("adam_f32", "bce_block_f32"):
        base = _vector_regs(builds[cc], f"fo_{kernel}_baseline")
        avx2 = _vector_regs(builds[cc], f"fo_{kernel}_avx2")
        avx512 = _vector_regs(builds[cc], f"fo_{kernel}_avx512")
        assert base == {"ymm": 0, "zmm": 0}, (cc, kernel, base)
        assert avx2["ymm"] > 0 and avx2["zmm"] == 0, (cc, kernel, avx2)
        assert avx512["zmm"] > 0, (cc, kernel, avx512)
