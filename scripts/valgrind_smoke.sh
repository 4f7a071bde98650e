#!/usr/bin/env bash
# Memory safety, second opinion: valgrind memcheck over scripts/valgrind_smoke.py (a few
# calls of every kernel, small sizes, every CPU path valgrind can run, 1 and 2 threads) on
# the extension as it is built in place.  Fails (exit status 99) on any memcheck error.
#
#   scripts/valgrind_smoke.sh
#
# PYTHONMALLOC=malloc sends Python's allocations to malloc, where memcheck sees them.
# Suppressions: scripts/valgrind-python.supp (errors of the interpreter itself, innermost
# frame in libpython or ld.so: this machine's CPython reports hundreds for `python -c pass`),
# plus CPython's own files when found (Debian's python3.supp, Misc/valgrind-python.supp
# next to the interpreter) and VALGRIND_SUPPRESSIONS=file.  Leaks are not checked
# (CPython keeps objects alive at exit by design).  OMP_WAIT_POLICY=passive: libgomp's
# spin-waiting is very slow under valgrind, which runs one thread at a time.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
command -v valgrind >/dev/null || { echo "valgrind_smoke: valgrind is not installed" >&2; exit 2; }

supp=("--suppressions=$repo/scripts/valgrind-python.supp")   # why: see that file
prefix="$("$py" -c 'import sys; print(sys.base_prefix)')"
for f in "${VALGRIND_SUPPRESSIONS:-}" /usr/lib/valgrind/python3.supp \
         /usr/share/doc/python3*/valgrind-python.supp* "$prefix/lib/valgrind-python.supp" \
         "$prefix/share/valgrind-python.supp"; do
    [ -n "$f" ] && [ -f "$f" ] && supp+=("--suppressions=$f")
done
echo "valgrind_smoke: $(valgrind --version), $py, suppressions: ${supp[*]:-none}"

start=$(date +%s)
cd "$repo"
set +e
PYTHONMALLOC=malloc OMP_WAIT_POLICY=passive valgrind --tool=memcheck --error-exitcode=99 \
    --leak-check=no --num-callers=40 --read-inline-info=yes "${supp[@]}" \
    "$py" scripts/valgrind_smoke.py
status=$?
set -e
echo "valgrind_smoke: exit status $status, $(( $(date +%s) - start )) s"
exit "$status"
