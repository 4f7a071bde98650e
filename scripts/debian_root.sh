#!/usr/bin/env bash
# A Debian root with a CPython, its headers, NumPy, pytest and hypothesis, for the wheels
# of interpreters this machine does not have natively: build_wheel.sh compiles against the
# root's Python headers, test_wheel.sh runs the kernel tests with the root's Python.
#
#   scripts/debian_root.sh ARCH SUITE   -> prints the root's path (made on first use, then
#                                          reused); ARCH x86_64 or aarch64
#   scripts/debian_root.sh --all        -> makes every root build_wheel.sh will use
#                                          (ROOT_WHEELS, default DEFAULT_ROOT_WHEELS in
#                                          scripts/pythons.sh), ahead of it (CI does
#                                          this beside the test suite)
#
# The suites and their CPythons are DEBIAN_SUITES in scripts/pythons.sh: bookworm 3.11,
# trixie 3.13, forky 3.14.
#
# The root is debootstrap's first stage only (--foreign: no code of the root runs while
# it is made): the packages it downloads are unpacked with dpkg -x, and the two library
# links their maintainer scripts would make (BLAS and LAPACK alternatives) are made here.
# It also gets an executable `python3` at its top: a wrapper that runs the root's
# interpreter with the root's own dynamic loader and libraries (x86_64 on x86_64) or under
# qemu-user with the root as its prefix (aarch64), and that is the interpreter's
# sys.executable, so tests can start subprocesses with it.
#
# The root lives outside the source tree, in FUSEDOPT_DEBIAN_ROOTS (default
# ~/.cache/fusedopt)/SUITE-ARCH, so that CI makes it once per machine (about 150 MB of
# packages, a minute or two; for aarch64 about 3 more minutes of byte-compiling under
# qemu) and reuses it.  Needs debootstrap and dpkg, network access to the Debian mirror
# (FUSEDOPT_DEBIAN_MIRROR, default deb.debian.org), and for aarch64
# qemu-aarch64 to run the wrapper.
set -euo pipefail

usage() { echo "usage: $0 x86_64|aarch64 SUITE (a suite of DEBIAN_SUITES in pythons.sh)," \
               "or $0 --all" >&2
          exit 2; }
# shellcheck source=scripts/pythons.sh
. "$(dirname "${BASH_SOURCE[0]}")/pythons.sh"
if [ $# = 1 ] && [ "$1" = --all ]; then
    for entry in ${ROOT_WHEELS-$DEFAULT_ROOT_WHEELS}; do
        "${BASH_SOURCE[0]}" "${entry%%:*}" "${entry#*:}"
    done
    exit 0
fi
[ $# = 2 ] || usage
ARCH=$1 SUITE=$2
case "$ARCH" in x86_64) DEBARCH=amd64 ;; aarch64) DEBARCH=arm64 ;; *) usage ;; esac
PY=$(suite_python "$SUITE") || usage
ROOTD=${FUSEDOPT_DEBIAN_ROOTS:-${XDG_CACHE_HOME:-$HOME/.cache}/fusedopt}/$SUITE-$ARCH
MIRROR=${FUSEDOPT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-numpy,python3-pytest,python3-hypothesis,python3-mpmath
PACKAGES=$PACKAGES,python3-threadpoolctl,libpython$PY-dev

# Byte-compiles the root's modules, as Debian's maintainer scripts (py3compile) would have:
# the root's interpreter cannot write them itself under qemu (a new __pycache__ directory
# is made on the host's side of qemu's -L prefix), and importing NumPy, pytest and
# hypothesis from source takes about a minute each time under qemu (6-10 s compiled).
# The paths are given as the host sees them and recorded as the root's interpreter does.
compile_root() {
    [ -f "$ROOTD/.fusedopt-compiled" ] && return 0
    echo "debian_root.sh: byte-compiling the root's Python modules" >&2
    "$ROOTD/python3" -m compileall -q -s "$ROOTD" -p / "$ROOTD/usr/lib/python$PY" \
        "$ROOTD/usr/lib/python3/dist-packages" >&2 || \
        echo "debian_root.sh: (some of the root's modules did not compile; they are" \
             "compiled on import)" >&2
    touch "$ROOTD/.fusedopt-compiled"
}

if [ -f "$ROOTD/.fusedopt-complete" ]; then
    compile_root
    echo "$ROOTD"
    exit 0
fi
for tool in debootstrap dpkg; do
    command -v "$tool" >/dev/null || { echo "debian_root.sh: $tool not found" >&2; exit 1; }
done
rm -rf "$ROOTD"
mkdir -p "$ROOTD"
# (a suite newer than this debootstrap knows is made like unstable)
script=/usr/share/debootstrap/scripts/$SUITE
[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
echo "debian_root.sh: debootstrap (first stage) of $SUITE $DEBARCH into $ROOTD" >&2
debootstrap --foreign --arch="$DEBARCH" --variant=minbase --include="$PACKAGES" "$SUITE" \
    "$ROOTD" "$MIRROR" "$script" >&2
for deb in "$ROOTD"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$ROOTD"; done
rm -f "$ROOTD"/var/cache/apt/archives/*.deb
lib="$ROOTD/usr/lib/$ARCH-linux-gnu"
ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"
for need in "usr/bin/python$PY" "usr/include/python$PY/Python.h" \
            "usr/include/$ARCH-linux-gnu/python$PY/pyconfig.h" \
            usr/lib/python3/dist-packages/numpy/__init__.py; do
    [ -e "$ROOTD/$need" ] || { echo "debian_root.sh: $need missing from the root" >&2; exit 1; }
done

# The wrapper: "$0" becomes the interpreter's argv[0], hence its sys.executable.
if [ "$ARCH" = "$(uname -m)" ]; then
    loader=
    for f in "$ROOTD"/lib64/ld-linux-*.so.* "$ROOTD"/lib/ld-linux-*.so.*; do
        if [ -e "$f" ]; then loader=${f#"$ROOTD"/}; break; fi
    done
    [ -n "$loader" ] || { echo "debian_root.sh: no dynamic loader in the root" >&2; exit 1; }
    cat > "$ROOTD/python3" <<EOF
#!/bin/sh
PYTHONHOME="$ROOTD/usr" exec "$ROOTD/$loader" \\
    --library-path "$ROOTD/lib/$ARCH-linux-gnu:$ROOTD/usr/lib/$ARCH-linux-gnu" \\
    --argv0 "\$0" "$ROOTD/usr/bin/python$PY" "\$@"
EOF
else
    cat > "$ROOTD/python3" <<EOF
#!/bin/sh
exec qemu-$ARCH -L "$ROOTD" -0 "\$0" "$ROOTD/usr/bin/python$PY" "\$@"
EOF
fi
chmod +x "$ROOTD/python3"
got=$("$ROOTD/python3" -c 'import platform, sys, numpy
print("%s %d.%d" % (platform.machine(), *sys.version_info[:2]))')
[ "$got" = "$ARCH $PY" ] || { echo "debian_root.sh: the root's python3 says '$got'," \
    "not '$ARCH $PY'" >&2; exit 1; }
compile_root
touch "$ROOTD/.fusedopt-complete"
echo "$ROOTD"
