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
# trixie 3.13, forky 3.14, and bookworm+3.12: bookworm's libraries with CPython 3.12
# cross-compiled from source (build_cpython below), as no Debian release has 3.12.
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
BASE=${SUITE%%+*}      # bookworm+3.12: bookworm, with CPython 3.12 built from source
if [ "$BASE" = "$SUITE" ]; then
    PACKAGES=python3,python3-numpy,python3-pytest,python3-hypothesis,python3-mpmath
    PACKAGES=$PACKAGES,python3-threadpoolctl,libpython$PY-dev
    SITE=usr/lib/python3/dist-packages
else
    PACKAGES=zlib1g-dev,libffi-dev     # for CPython's zlib and ctypes (threadpoolctl)
    SITE=usr/lib/python$PY/site-packages
fi

# Byte-compiles the root's modules, as Debian's maintainer scripts (py3compile) would have:
# the root's interpreter cannot write them itself under qemu (a new __pycache__ directory
# is made on the host's side of qemu's -L prefix), and importing NumPy, pytest and
# hypothesis from source takes about a minute each time under qemu (seconds compiled).
# The paths are given as the host sees them and recorded as the root's interpreter does.
compile_root() {
    [ -f "$ROOTD/.fusedopt-compiled" ] && return 0
    echo "debian_root.sh: byte-compiling the root's Python modules" >&2
    "$ROOTD/python3" -m compileall -q -s "$ROOTD" -p / "$ROOTD/usr/lib/python$PY" \
        "$ROOTD/$SITE" >&2 || \
        echo "debian_root.sh: (some of the root's modules did not compile; they are" \
             "compiled on import)" >&2
    touch "$ROOTD/.fusedopt-compiled"
}

# The wrapper: "$0" becomes the interpreter's argv[0], hence its sys.executable.  Under
# qemu the CPU is qemu's "max" (SVE included) with its cheap pointer-authentication
# algorithm (pauth-impdef): Debian 13's packages are built with branch protection, and
# the architected algorithm made importing NumPy, pytest and hypothesis 4x slower (11.5 s
# against 2.9 s); QEMU_CPU, when set, chooses another CPU.  (Rewritten on every run.)
write_wrapper() {
    if [ "$ARCH" = "$(uname -m)" ]; then
        local loader="" f
        for f in "$ROOTD"/lib64/ld-linux-*.so.* "$ROOTD"/lib/ld-linux-*.so.*; do
            if [ -e "$f" ]; then loader=${f#"$ROOTD"/}; break; fi
        done
        [ -n "$loader" ] || { echo "debian_root.sh: no dynamic loader in the root" >&2
                              exit 1; }
        cat > "$ROOTD/python3.new" <<EOF
#!/bin/sh
PYTHONHOME="$ROOTD/usr" exec "$ROOTD/$loader" \\
    --library-path "$ROOTD/lib/$ARCH-linux-gnu:$ROOTD/usr/lib/$ARCH-linux-gnu" \\
    --argv0 "\$0" "$ROOTD/usr/bin/python$PY" "\$@"
EOF
    else
        cat > "$ROOTD/python3.new" <<EOF
#!/bin/sh
exec qemu-$ARCH -cpu "\${QEMU_CPU:-max,pauth-impdef=on}" -L "$ROOTD" -0 "\$0" \\
    "$ROOTD/usr/bin/python$PY" "\$@"
EOF
    fi
    chmod +x "$ROOTD/python3.new"
    mv "$ROOTD/python3.new" "$ROOTD/python3"
}

# CPython PY from source (CPYTHON_SOURCES in pythons.sh), cross-compiled for ARCH with
# Debian's $ARCH-linux-gnu-gcc against the root's zlib and libffi, installed into the root
# with prefix /usr (make install byte-compiles its library); the same CPython on this
# machine is the build Python the cross build needs.  Its pyconfig.h is copied where
# Debian's multiarch layout has it; NumPy, pytest, hypothesis, mpmath and threadpoolctl
# come from PyPI (binary packages for the root's platform, installed by this machine's
# pip).  About 10 minutes on two cores; the sources are removed afterwards.
build_cpython() {
    local version="" url sha v u s build_py src h f name host_opts=()
    while read -r v u s; do
        if [ "${v%.*}" = "$PY" ]; then version=$v url=$u sha=$s; fi
    done <<< "$CPYTHON_SOURCES"
    [ -n "$version" ] || { echo "debian_root.sh: no CPython $PY source in" \
        "CPYTHON_SOURCES (pythons.sh)" >&2; exit 1; }
    build_py=$(find_python "$PY") || { echo "debian_root.sh: building CPython $PY for" \
        "$ARCH needs a CPython $PY on this machine (python$PY or pyenv)" >&2; exit 1; }
    src="$ROOTD.src"
    rm -rf "$src"
    mkdir -p "$src/deps/include" "$src/deps/lib"
    echo "debian_root.sh: CPython $version from $url" >&2
    "$build_py" -c 'import sys, urllib.request; urllib.request.urlretrieve(*sys.argv[1:])' \
        "$url" "$src/python.tar.xz"
    echo "$sha  $src/python.tar.xz" | sha256sum --check --quiet >&2
    tar -xJf "$src/python.tar.xz" -C "$src"
    # the root's zlib and libffi headers and libraries, alone (not the root's whole
    # /usr/include in front of the cross compiler's own C library headers)
    for h in zlib.h zconf.h ffi.h ffitarget.h; do
        for f in "$ROOTD/usr/include/$h" "$ROOTD/usr/include/$ARCH-linux-gnu/$h"; do
            if [ -e "$f" ]; then cp "$f" "$src/deps/include/"; fi
        done
    done
    # (each library's file itself: the root's libz.so link is absolute, to the root's /lib)
    for name in z ffi; do
        f=$(ls "$lib/lib$name.so".*.* | head -1)
        cp "$f" "$src/deps/lib/lib$name.so"
    done
    if [ "$ARCH" != "$(uname -m)" ]; then
        host_opts=(--build="$(uname -m)-pc-linux-gnu" --host="$ARCH-linux-gnu"
                   CC="$ARCH-linux-gnu-gcc" ac_cv_file__dev_ptmx=yes ac_cv_file__dev_ptc=no
                   ac_cv_buggy_getaddrinfo=no)
    fi
    echo "debian_root.sh: configure, make, make install (log: $src/build.log)" >&2
    (cd "$src/Python-$version" &&
     ./configure "${host_opts[@]}" --prefix=/usr --with-build-python="$build_py" \
         --without-ensurepip --disable-test-modules PKG_CONFIG_LIBDIR=/nonexistent \
         ZLIB_CFLAGS="-I$src/deps/include" ZLIB_LIBS="-L$src/deps/lib -lz" \
         LIBFFI_CFLAGS="-I$src/deps/include" LIBFFI_LIBS="-L$src/deps/lib -lffi" &&
     make -j"$(nproc)" && make install DESTDIR="$ROOTD") > "$src/build.log" 2>&1 || {
        tail -40 "$src/build.log" >&2; echo "debian_root.sh: building CPython failed" >&2
        exit 1; }
    mkdir -p "$ROOTD/usr/include/$ARCH-linux-gnu/python$PY"
    cp "$ROOTD/usr/include/python$PY/pyconfig.h" "$ROOTD/usr/include/$ARCH-linux-gnu/python$PY/"
    echo "debian_root.sh: NumPy, pytest, hypothesis, mpmath, threadpoolctl from PyPI" >&2
    "$build_py" -m pip install --quiet --target "$ROOTD/$SITE" --only-binary=:all: \
        --implementation cp --python-version "$PY" --platform "manylinux2014_$ARCH" \
        --platform "manylinux_2_17_$ARCH" --platform "manylinux_2_28_$ARCH" \
        numpy pytest hypothesis mpmath threadpoolctl >&2
    rm -rf "$src"
}

if [ -f "$ROOTD/.fusedopt-complete" ]; then
    write_wrapper
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
script=/usr/share/debootstrap/scripts/$BASE
[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
echo "debian_root.sh: debootstrap (first stage) of $BASE $DEBARCH into $ROOTD" >&2
debootstrap --foreign --arch="$DEBARCH" --variant=minbase --include="$PACKAGES" "$BASE" \
    "$ROOTD" "$MIRROR" "$script" >&2
for deb in "$ROOTD"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$ROOTD"; done
rm -f "$ROOTD"/var/cache/apt/archives/*.deb
lib="$ROOTD/usr/lib/$ARCH-linux-gnu"
if [ "$BASE" = "$SUITE" ]; then
    ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
    ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"
else
    build_cpython
fi
for need in "usr/bin/python$PY" "usr/include/python$PY/Python.h" \
            "usr/include/$ARCH-linux-gnu/python$PY/pyconfig.h" "$SITE/numpy/__init__.py"; do
    [ -e "$ROOTD/$need" ] || { echo "debian_root.sh: $need missing from the root" >&2; exit 1; }
done

write_wrapper
got=$("$ROOTD/python3" -c 'import platform, sys, numpy
print("%s %d.%d" % (platform.machine(), *sys.version_info[:2]))')
[ "$got" = "$ARCH $PY" ] || { echo "debian_root.sh: the root's python3 says '$got'," \
    "not '$ARCH $PY'" >&2; exit 1; }
compile_root
touch "$ROOTD/.fusedopt-complete"
echo "$ROOTD"
