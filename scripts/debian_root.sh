#!/usr/bin/env bash
# An arm64 Debian 12 (bookworm) root with Python 3.11, NumPy, pytest and hypothesis, and
# the Python headers, for the aarch64 wheel: build_wheel.sh compiles against its headers,
# test_wheel.sh runs the kernel tests with its Python under qemu-aarch64 (user mode).
#
#   scripts/arm64_root.sh        -> prints the root's path (made on first use, then reused)
#
# The root is debootstrap's first stage only (--foreign: no arm64 code runs while it is
# made): the packages it downloads are unpacked with dpkg -x, and the two library links
# their maintainer scripts would make (BLAS and LAPACK alternatives) are made here.  It
# lives outside the source tree, in FUSEDOPT_ARM64_ROOT (default
# ~/.cache/fusedopt/arm64-bookworm), so that CI makes it once per machine (about 150 MB
# of packages; a minute or two) and reuses it.  Needs debootstrap and dpkg, and network
# access to the Debian mirror (FUSEDOPT_DEBIAN_MIRROR, default deb.debian.org).
set -euo pipefail

ROOT64=${FUSEDOPT_ARM64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/fusedopt/arm64-bookworm}
MIRROR=${FUSEDOPT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-numpy,python3-pytest,python3-hypothesis,libpython3.11-dev

if [ -f "$ROOT64/.fusedopt-complete" ]; then
    echo "$ROOT64"
    exit 0
fi
for tool in debootstrap dpkg; do
    command -v "$tool" >/dev/null || { echo "arm64_root.sh: $tool not found" >&2; exit 1; }
done
rm -rf "$ROOT64"
mkdir -p "$ROOT64"
echo "arm64_root.sh: debootstrap (first stage) of bookworm arm64 into $ROOT64" >&2
debootstrap --foreign --arch=arm64 --variant=minbase --include="$PACKAGES" bookworm \
    "$ROOT64" "$MIRROR" >&2
for deb in "$ROOT64"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$ROOT64"; done
lib="$ROOT64/usr/lib/aarch64-linux-gnu"
ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"
for need in usr/bin/python3.11 usr/include/python3.11/Python.h \
            usr/include/aarch64-linux-gnu/python3.11/pyconfig.h \
            usr/lib/python3/dist-packages/numpy/__init__.py; do
    [ -e "$ROOT64/$need" ] || { echo "arm64_root.sh: $need missing from the root" >&2; exit 1; }
done
touch "$ROOT64/.fusedopt-complete"
echo "$ROOT64"
