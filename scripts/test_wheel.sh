#!/usr/bin/env bash
# Tests what scripts/build_wheel.sh produced, installed the way a user installs it.
#
#   scripts/test_wheel.sh [--wheel-only | --sdist-only | --others-only |
#                          --other-pythons-only | --root-wheels-only]
#
# (--others-only: parts 2 and 3 below; --other-pythons-only: part 2; --root-wheels-only:
# part 3.  CI runs the parts side by side, one per core.)
#
# 1. The repaired wheel for PYTHON (wheelhouse/fusedopt-*-cpXY-cpXY-manylinux*.whl):
#    - a fresh virtual environment outside the source tree (no system site-packages);
#    - every command runs with PATH = the venv's bin + a directory of symlinks to a few
#      basic tools, and no C compiler (checked: gcc, cc, c++, clang, ... are not found;
#      CC/CXX unset); `pip install --only-binary=:all: "<wheel>[test]"` so nothing can be
#      compiled on the way;
#    - checks that `import fusedopt` resolves inside the venv, the version metadata, the
#      `fusedopt` command, and what cpu_info() reports;
#    - runs the whole test suite from a copy of tests/ (plus examples/, which
#      tests/test_examples.py runs, and pyproject.toml for the pytest settings) in a
#      temporary directory, so the source tree's src/ cannot be imported;
#    - runs the kernel tests again with FUSEDOPT_CPU=baseline (the path every x86-64 CPU
#      can run), after checking that cpu_info() reports the lowered path.
# 2. The wheels for the other CPythons build_wheel.sh found (scripts/pythons.sh): each in a
#    fresh venv of its interpreter, with the same PATH and no compiler, installed with
#    NumPy, pytest, hypothesis, threadpoolctl and mpmath (binary packages only; the
#    frameworks are left out),
#    then the installed-package checks and the kernel tests, on the best CPU path and on
#    FUSEDOPT_CPU=baseline.
# 3. The wheels no interpreter here can install (the aarch64 ones, and CPythons this
#    machine lacks, such as 3.14): each unpacked into a directory on the PYTHONPATH of
#    the Python of a Debian root with that CPython (scripts/debian_root.sh: NumPy,
#    pytest, hypothesis, mpmath and threadpoolctl from Debian, or from PyPI for a
#    CPython built from source), run through the root's
#    wrapper, which is also its sys.executable (tests start subprocesses): natively with
#    the root's own loader and libraries on x86_64, under qemu-aarch64 in user mode for
#    aarch64; the installed-package checks and the kernel tests (x86_64: on every path,
#    then on FUSEDOPT_CPU=baseline; aarch64: qemu's CPU has SVE, so the first wheel on the
#    NEON and SVE paths, the others the binding's tests on SVE; and a check on an emulated
#    Cortex-A72, which has no SVE, that the wheel falls back to NEON).
# 4. The sdist (dist/fusedopt-*.tar.gz): another fresh venv, `pip install "<sdist>[test]"`
#    (compiles from source: a compiler is allowed here), then the test suite shipped
#    inside the sdist, again from a temporary directory.
#
# Environment: PYTHON (default python3); PYTEST_ADDOPTS is passed to pytest as usual.
# Exit status: non-zero as soon as a step fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=$(command -v "${PYTHON:-python3}")
DO_WHEEL=0 DO_PYTHONS=0 DO_ROOTS=0 DO_SDIST=0
case "${1:-}" in
    "") DO_WHEEL=1 DO_PYTHONS=1 DO_ROOTS=1 DO_SDIST=1 ;;
    --wheel-only) DO_WHEEL=1 ;;
    --sdist-only) DO_SDIST=1 ;;
    --others-only) DO_PYTHONS=1 DO_ROOTS=1 ;;
    --other-pythons-only) DO_PYTHONS=1 ;;
    --root-wheels-only) DO_ROOTS=1 ;;
    *) echo "usage: $0 [--wheel-only | --sdist-only | --others-only |" \
            "--other-pythons-only | --root-wheels-only]" >&2; exit 2 ;;
esac
# shellcheck source=scripts/pythons.sh
. "$ROOT/scripts/pythons.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fusedopt-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
say() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - t0)); }
KERNEL_TESTS="tests/test_losses.py tests/test_optim.py tests/test_math.py tests/test_errors.py
              tests/test_runtime.py tests/test_softmax.py tests/test_threads.py"
# The binding's tests: every entry point's checks, the optimizers, the CPU paths, threads.
BINDING_TESTS="tests/test_optim.py tests/test_math.py tests/test_errors.py
               tests/test_runtime.py tests/test_threads.py"

# A copy of the tests (+ examples/, pyproject.toml) from $1 into a new directory $2.
copy_tests() {
    mkdir -p "$2"
    cp -R "$1/tests" "$2/tests"
    if [ -d "$1/examples" ]; then cp -R "$1/examples" "$2/examples"; fi
    cp "$1/pyproject.toml" "$2/pyproject.toml"
    rm -rf "$2"/tests/__pycache__
}

# Checks on the installed package, run by the venv's interpreter from $WORK (outside the
# tree): fusedopt comes from the venv, metadata and version agree, cpu_info is coherent.
# Arguments: the venv, the expected CPU path ("" = the best this CPU has).
cat > "$WORK/check_installed.py" <<'EOF'
import importlib.metadata as md, os, sys
import fusedopt
venv, want = os.path.realpath(sys.argv[1]), sys.argv[2]
where = os.path.realpath(fusedopt.__file__)
assert where.startswith(venv + os.sep), f"fusedopt imported from {where}, not from {venv}"
assert md.version("fusedopt") == fusedopt.__version__, (md.version("fusedopt"),
                                                        fusedopt.__version__)
core = os.path.realpath(fusedopt._core.__file__)
assert core.startswith(venv + os.sep), core
info = fusedopt.cpu_info()
assert info["path"] == (want or info["detected"]), info
assert info["forced"] == (want or None), info
assert "-march=native" not in info["build_flags"], info["build_flags"]
print(f"  fusedopt {fusedopt.__version__} from {where}")
print(f"  cpu_info: path={info['path']} detected={info['detected']} "
      f"forced={info['forced']} openmp={info['openmp']} threads={info['threads']}")
EOF

# The repaired wheel for interpreter $1 on this machine's architecture (exactly one).
wheel_for() {
    local tag matches
    tag=$(wheel_tag "$1")
    shopt -s nullglob
    matches=("$ROOT"/wheelhouse/fusedopt-*-"$tag"-"$tag"-manylinux*_"$(uname -m)".whl)
    shopt -u nullglob
    [ "${#matches[@]}" = 1 ] || { echo "expected one repaired $tag wheel in wheelhouse/," \
        "found ${#matches[@]}: run scripts/build_wheel.sh" >&2; return 1; }
    echo "${matches[0]}"
}

# PATH for the wheel venvs: the venv's bin and a few tools, no compiler.
SAFEBIN="$WORK/safebin"
mkdir "$SAFEBIN"
for tool in sh bash env uname cat ls mkdir rm cp mv ln grep sed sort head tail sleep \
            kill ps id hostname nproc; do
    p=$(command -v "$tool" || true)
    if [ -n "$p" ]; then ln -s "$p" "$SAFEBIN/$tool"; fi
done
nocc() {   # run a command with the restricted PATH of venv $VENV and no compiler variables
    env -u CC -u CXX -u CPP -u LDSHARED -u CFLAGS -u LDFLAGS -u PYTHONPATH \
        -u PYTHONHOME -u PYTHONUSERBASE -u PIP_NO_BINARY \
        PATH="$VENV/bin:$SAFEBIN" VIRTUAL_ENV="$VENV" PYTHONNOUSERSITE=1 "$@"
}
# A fresh venv at $2 for interpreter $1, checked to reach no compiler; sets VENV.
compilerless_venv() {
    VENV=$2
    "$1" -m venv "$VENV"
    nocc "$VENV/bin/python" - <<'EOF'
import os, shutil, sysconfig
names = ["gcc", "cc", "c++", "g++", "c99", "clang", "clang++", "icc", "tcc",
         "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-g++", "ld",
         (sysconfig.get_config_var("CC") or "gcc").split()[0]]
found = {n: shutil.which(n) for n in names if shutil.which(n)}
assert not found, f"a compiler is reachable on PATH: {found}"
print("  no C compiler on PATH:", os.environ["PATH"])
EOF
}

if [ "$DO_WHEEL" = 1 ]; then
    wheel=$(wheel_for "$PYTHON")
    say "wheel: $(basename "$wheel")"
    compilerless_venv "$PYTHON" "$WORK/venv-wheel"

    say "pip install the wheel with its test extra (binary packages only)"
    nocc "$VENV/bin/python" -m pip install --quiet --only-binary=:all: "$wheel[test]"
    nocc "$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(fusedopt|numpy|torch|mypy|pytest) '

    say "the installed package"
    (cd "$WORK" && nocc "$VENV/bin/python" "$WORK/check_installed.py" "$VENV" "")
    (cd "$WORK" && nocc "$VENV/bin/fusedopt" info)

    say "test suite against the installed wheel (no compiler on PATH)"
    copy_tests "$ROOT" "$WORK/t-wheel"
    (cd "$WORK/t-wheel" && nocc "$VENV/bin/python" -m pytest -p no:cacheprovider -q)

    say "FUSEDOPT_CPU=baseline: cpu_info and the kernel tests"
    (cd "$WORK" && FUSEDOPT_CPU=baseline nocc "$VENV/bin/python" "$WORK/check_installed.py" \
        "$VENV" baseline)
    # shellcheck disable=SC2086
    (cd "$WORK/t-wheel" && FUSEDOPT_CPU=baseline nocc "$VENV/bin/python" -m pytest \
        -p no:cacheprovider -q $KERNEL_TESTS)
fi

others=$(other_pythons "$PYTHON")
if [ "$DO_PYTHONS" = 1 ]; then
    [ -n "$others" ] || say "no other CPython 3.11-3.14 found: only the main wheel was tested"
    for py in $others; do
        wheel=$(wheel_for "$py")
        say "wheel: $(basename "$wheel"), $("$py" --version): install, checks, kernel tests"
        tag=$(wheel_tag "$py")
        compilerless_venv "$py" "$WORK/venv-$tag"
        nocc "$VENV/bin/python" -m pip install --quiet --only-binary=:all: "$wheel" \
            "pytest>=7" "hypothesis>=6" "threadpoolctl>=3" mpmath
        (cd "$WORK" && nocc "$VENV/bin/python" "$WORK/check_installed.py" "$VENV" "")
        [ -d "$WORK/t-other" ] || copy_tests "$ROOT" "$WORK/t-other"
        # shellcheck disable=SC2086
        (cd "$WORK/t-other" && nocc "$VENV/bin/python" -m pytest -p no:cacheprovider -q \
            $KERNEL_TESTS)
        # shellcheck disable=SC2086
        (cd "$WORK/t-other" && FUSEDOPT_CPU=baseline nocc "$VENV/bin/python" -m pytest \
            -p no:cacheprovider -q $KERNEL_TESTS)
    done
fi

if [ "$DO_ROOTS" = 1 ]; then
    # The wheels no interpreter here can install: each unpacked onto the PYTHONPATH of a
    # Debian root's Python (scripts/debian_root.sh; under qemu-user for aarch64).
    native=" $(wheel_tag "$PYTHON") $(for py in $others; do wheel_tag "$py"; done | tr '\n' ' ')"
    shopt -s nullglob
    for w in "$ROOT"/wheelhouse/fusedopt-*-manylinux*.whl; do
        case "$w" in *_x86_64.whl) arch=x86_64 ;; *_aarch64.whl) arch=aarch64 ;;
                     *) echo "test_wheel.sh: which architecture is $w for?" >&2; exit 1 ;; esac
        tag=$(basename "$w" | cut -d- -f3)
        if [ "$arch" = "$(uname -m)" ] && [[ "$native" == *" $tag "* ]]; then continue; fi
        suite=$(python_suite "$tag") || { echo "test_wheel.sh: no Debian root has the" \
            "CPython of $(basename "$w")" >&2; exit 1; }
        if [ "$arch" != "$(uname -m)" ]; then
            command -v "qemu-$arch" >/dev/null || { echo "test_wheel.sh: $(basename "$w")" \
                "needs qemu-$arch (Debian's qemu-user)" >&2; exit 1; }
        fi
        rootd=$("$ROOT/scripts/debian_root.sh" "$arch" "$suite")
        say "wheel: $(basename "$w"), with Debian $suite's Python$( \
            [ "$arch" = "$(uname -m)" ] || echo " under qemu-$arch"): checks, kernel tests"
        site="$WORK/site-$arch-$tag"
        "$PYTHON" -m zipfile -e "$w" "$site"
        runroot() { env -u PYTHONPATH -u PYTHONHOME PYTHONPATH="$site" PYTHONNOUSERSITE=1 \
            "$rootd/python3" "$@"; }
        (cd "$WORK" && runroot -c 'import platform, sys; print("  machine:", \
platform.machine(), "python:", sys.version.split()[0])')
        [ -d "$WORK/t-other" ] || copy_tests "$ROOT" "$WORK/t-other"
        if [ "$arch" = "$(uname -m)" ]; then
            (cd "$WORK" && runroot "$WORK/check_installed.py" "$site" "")
            # shellcheck disable=SC2086
            (cd "$WORK/t-other" && runroot -m pytest -p no:cacheprovider -q $KERNEL_TESTS)
            # shellcheck disable=SC2086
            (cd "$WORK/t-other" && FUSEDOPT_CPU=baseline runroot -m pytest \
                -p no:cacheprovider -q $KERNEL_TESTS)
        else
            # qemu's CPU has SVE: the first aarch64 wheel runs the kernel tests on both
            # paths (NEON and SVE); the others, whose kernels are the same sources, compiler
            # and flags (only the binding's Python headers differ), run the binding's tests
            # (BINDING_TESTS) on the SVE path: under qemu the whole set takes about 10
            # minutes a wheel, and the x86-64 wheel of each CPython runs every kernel test
            # through the same binding.  On an emulated Cortex-A72 (no SVE) each wheel
            # falls back to NEON.
            (cd "$WORK" && QEMU_CPU=cortex-a72 runroot -c 'import fusedopt, numpy as np
info = fusedopt.cpu_info()
assert info["paths"] == ["baseline"] and info["path"] == "baseline", info
p = np.ones(1000, np.float32)
fusedopt.adam_step(p, p.copy(), np.zeros_like(p), np.zeros_like(p), step=1, lr=0.1)
assert np.allclose(p, 0.9), p[:3]
print("  Cortex-A72 (no SVE): paths", info["paths"])')
            # (FUSEDOPT_CPU empty: the best path, every path for the tests)
            if [ -z "${a64_done:-}" ]; then a64_cpu="" a64_tests=$KERNEL_TESTS a64_done=1
            else a64_cpu=sve a64_tests=$BINDING_TESTS; fi
            (cd "$WORK" && FUSEDOPT_CPU="$a64_cpu" runroot "$WORK/check_installed.py" "$site" \
                "$a64_cpu")
            # (qemu-user itself aborts when a process with threads forks: "cpu_exec:
            # assertion failed"; the fork test runs natively only)
            # shellcheck disable=SC2086
            (cd "$WORK/t-other" && FUSEDOPT_CPU="$a64_cpu" runroot -m pytest -p no:cacheprovider -q \
                $a64_tests --deselect \
                tests/test_runtime.py::test_forked_child_runs_single_threaded_instead_of_hanging)
        fi
    done
    shopt -u nullglob
fi

if [ "$DO_SDIST" = 1 ]; then
    shopt -s nullglob
    sdists=("$ROOT"/dist/fusedopt-*.tar.gz)
    shopt -u nullglob
    [ "${#sdists[@]}" = 1 ] || { echo "expected one sdist in dist/, found ${#sdists[@]}:" \
        "run scripts/build_wheel.sh" >&2; exit 1; }
    sdist=${sdists[0]}
    say "sdist: $(basename "$sdist"): pip install with its test extra (builds from source)"
    VENV2="$WORK/venv-sdist"
    "$PYTHON" -m venv "$VENV2"
    env -u PYTHONPATH "$VENV2/bin/python" -m pip install --quiet "$sdist[test]"
    (cd "$WORK" && env -u PYTHONPATH "$VENV2/bin/python" "$WORK/check_installed.py" "$VENV2" "")

    say "test suite shipped in the sdist, against the package installed from it"
    mkdir "$WORK/sdist-src"
    tar -xzf "$sdist" -C "$WORK/sdist-src"
    copy_tests "$(ls -d "$WORK"/sdist-src/fusedopt-*)" "$WORK/t-sdist"
    (cd "$WORK/t-sdist" && env -u PYTHONPATH PYTHONNOUSERSITE=1 PATH="$VENV2/bin:$PATH" \
        "$VENV2/bin/python" -m pytest -p no:cacheprovider -q)
fi

say "all passed"
