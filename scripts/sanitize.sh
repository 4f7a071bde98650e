#!/usr/bin/env bash
# Memory safety: builds fusedopt with AddressSanitizer + UndefinedBehaviorSanitizer
# (setup.py's FUSEDOPT_SANITIZE=1: -fsanitize=address,undefined -fno-omit-frame-pointer -g)
# in a scratch copy of the working tree, runs the whole test suite against that build, and
# fails on any sanitizer report.
#
#   scripts/sanitize.sh                     # the whole suite (tests/)
#   scripts/sanitize.sh tests/test_optim.py -k adam      # arguments go to pytest
#
# The normal in-place build and the editable install are not touched: the copy is built
# with `setup.py build_ext --inplace` inside the copy and imported first through
# PYTHONPATH=<copy>/src (the script checks that the sanitized module is the one loaded).
#
# Build: CFLAGS=-fno-sanitize-recover=all on top of setup.py's flags, so that any undefined
# behaviour aborts the process (gcc's UBSan otherwise prints and goes on).
# Runtime:  LD_PRELOAD=libasan (the interpreter is not instrumented, so the ASan runtime
# must be loaded first) and libstdc++ (for C++ extensions that throw, e.g. matplotlib's),
# PYTHONMALLOC=malloc (Python's own small-object allocator would hide overflows of the
# binding's PyMem_Malloc buffers from ASan), detect_leaks=0
# (CPython does not free everything at exit, by design), UBSAN_OPTIONS=halt_on_error=1:
# print_stacktrace=1.  ASan reports go to log files (those of the tests' child processes
# too); UBSan prints to stderr, which is saved and searched.  Any report, or a non-zero
# pytest status, fails.
#
# Needs: gcc with libasan/libubsan, and Cython >= 3.1 + setuptools importable by $PYTHON.
# Environment: PYTHON (default python3), CC (default gcc), FUSEDOPT_SANITIZE_KEEP=1 keeps
# the scratch directory (its path is printed).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cc="${CC:-gcc}"
# the interpreter itself, not a wrapper script (a pyenv shim would run bash under ASan)
py="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
work="$(mktemp -d "${TMPDIR:-/tmp}/fusedopt-sanitize.XXXXXX")"
cleanup() {
    if [ "${FUSEDOPT_SANITIZE_KEEP:-0}" = 1 ]; then
        echo "sanitize: scratch tree kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
start=$(date +%s)

# --- 1. a copy of the working tree: tracked and untracked files, no ignored ones (no build
#        outputs, no .so, no generated _core.c)
echo "sanitize: copying $repo to $work/tree"
mkdir "$work/tree" "$work/logs"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$work/tree" -xf -
else
    cp -a "$repo/." "$work/tree/"
    rm -rf "$work/tree/build" "$work/tree/src/fusedopt/_core.c"
    find "$work/tree" -name '*.so' -delete
fi
tree="$work/tree"

# --- 2. the sanitized build, inside the copy
echo "sanitize: building with FUSEDOPT_SANITIZE=1 (log: $work/build.log)"
if ! (cd "$tree" && FUSEDOPT_SANITIZE=1 CC="$cc" CFLAGS="${CFLAGS:-} -fno-sanitize-recover=all" \
        "$py" setup.py build_ext --inplace >"$work/build.log" 2>&1); then
    tail -n 40 "$work/build.log"
    echo "sanitize: BUILD FAILED" >&2
    exit 2
fi

libasan="$("$cc" -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "sanitize: libasan.so not found by $cc -print-file-name" >&2
    exit 2
fi

# libstdc++ too: ASan resolves the real __cxa_throw when it starts; a C++ extension loaded
# later (matplotlib's ft2font, say) that throws would otherwise abort in its interceptor
libstdcxx="$("$cc" -print-file-name=libstdc++.so.6)"
[ -e "$libstdcxx" ] && libasan="$libasan:$libstdcxx"
export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
export PYTHONPATH="$tree/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONMALLOC=malloc
asan_options=(detect_leaks=0 halt_on_error=1 abort_on_error=0 detect_stack_use_after_return=1
              "log_path=$work/logs/asan")
export ASAN_OPTIONS="$(IFS=:; echo "${asan_options[*]}")"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

# --- 3. the sanitized module is the one imported
(cd "$tree" && "$py" - "$tree" <<'PYEOF'
import sys, fusedopt
tree = sys.argv[1]
info = fusedopt.cpu_info()
assert fusedopt.__file__.startswith(tree), f"imported {fusedopt.__file__}, not the copy"
assert "-fsanitize=address,undefined" in info["build_flags"], info["build_flags"]
print(f"sanitize: fusedopt from {fusedopt.__file__}\nsanitize: {info['path']}, "
      f"openmp={info['openmp']}, flags: {info['build_flags']}")
PYEOF
)

# --- 4. the whole test suite
echo "sanitize: running pytest ${*:-tests}"
set +e
(cd "$tree" && "$py" -m pytest -p no:cacheprovider -q "${@:-tests}") 2>&1 | tee "$work/pytest.log"
status=${PIPESTATUS[0]}
set -e

# --- 5. any report fails, whatever pytest said (a report in a child process, say)
if grep -aE "runtime error:|ERROR: AddressSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer" \
        "$work/pytest.log" >"$work/logs/from-output" 2>/dev/null; then
    :
else
    rm -f "$work/logs/from-output"
fi
reports=$(find "$work/logs" -type f | sort)
if [ -n "$reports" ]; then
    for f in $reports; do
        echo "=== sanitizer report: $f"
        cat "$f"
    done
    echo "sanitize: FAILED: $(echo "$reports" | wc -l) sanitizer report(s)" >&2
    [ "$status" -ne 0 ] || status=3
fi
nreports=$(echo -n "$reports" | grep -c . || true)
echo "sanitize: pytest status $status, $nreports sanitizer report(s), $(( $(date +%s) - start )) s"
exit "$status"
