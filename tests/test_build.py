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
(Advanced SIMD, part of every ARMv8-A CPU) and from the SVE path, at every vector length.
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


def _aarch64_functions(builds: Dict[str, str]) -> Dict[str, str]:
    """function name -> its disassembly, in the aarch64 build."""
    if AARCH64 not in builds or not shutil.which("aarch64-linux-gnu-objdump"):
        pytest.skip("needs the aarch64 cross compiler, qemu-aarch64 and its objdump")
    dis = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn",
                          builds[AARCH64]], check=True, capture_output=True, text=True).stdout
    return dict(re.findall(r"^[0-9a-f]+ <([^>]+)>:\n(.*?)(?:\n\n|\Z)", dis, re.S | re.M))


# an SVE register (z0-z31 with an element size) or a predicate register (p0-p15)
SVE_REGS = re.compile(r"\bz\d+\.[bhsdq]\b|\bp\d+(/[zm]|\.[bhsd])")


def test_aarch64_paths_have_their_instructions(builds: Dict[str, str]) -> None:
    """The aarch64 baseline kernels are NEON code on 4 float lanes, and nothing outside the
    *_sve functions uses SVE (the wheel must run on NEON-only CPUs: Graviton2, Ampere
    Altra); the SVE kernels are SVE code."""
    funcs = _aarch64_functions(builds)
    for kernel in ("adam_f32", "bce_block_f32"):
        base, sve = funcs[f"fo_{kernel}_baseline"], funcs[f"fo_{kernel}_sve"]
        assert len(re.findall(r"\bv\d+\.4s\b", base)) > 10, kernel
        assert len(SVE_REGS.findall(sve)) > 10, kernel
    beyond = sorted(f for f, body in funcs.items()
                    if SVE_REGS.search(body) and not re.search(r"_sve(\.\w+)?$", f))
    assert not beyond, f"SVE instructions outside the SVE path: {beyond}"


def test_aarch64_sve_same_bits_at_every_vector_length(builds: Dict[str, str]) -> None:
    """The SVE path under emulated CPUs with vectors of 128 to 2048 bits, and a CPU
    without SVE (Cortex-A72: the NEON path only): the same bits as x86-64's gcc build."""
    if AARCH64 not in builds or "gcc" not in builds:
        pytest.skip("needs gcc and the aarch64 cross compiler with qemu-aarch64")
    want = {k: set(v) for k, v in _run(builds["gcc"]).items()}
    qemu = RUNNERS[AARCH64]
    for cpu, n_paths in [("max,sve-default-vector-length=16", 2),
                         ("max,sve-default-vector-length=32", 2),
                         ("max,sve-default-vector-length=64", 2),
                         ("max,sve-default-vector-length=256", 2), ("cortex-a72", 1)]:
        out = subprocess.run([qemu[0], "-cpu", cpu, *qemu[1:], builds[AARCH64]], check=True,
                             capture_output=True, text=True).stdout.splitlines()
        isas = {line.split(" ")[1] for line in out}
        assert len(isas) == n_paths, (cpu, isas)
        got: Dict[str, set] = {}
        for line in out:
            kernel, _, rest = line.split(" ", 2)
            got.setdefault(kernel, set()).add(rest)
        assert got == want, cpu


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
