# Sourced by build_wheel.sh and test_wheel.sh: the CPython interpreters that fusedopt
# ships wheels for, other than the main one.
#
# other_pythons MAIN: prints, one per line, an interpreter for each CPython 3.11-3.14
# found as python3.1X on PATH or under pyenv, skipping the version of MAIN.  EXTRA_PYTHONS,
# when set (even empty), replaces the search.
other_pythons() {
    if [ -n "${EXTRA_PYTHONS+set}" ]; then
        for py in $EXTRA_PYTHONS; do echo "$py"; done
        return
    fi
    local main v
    main=$("$1" -c 'import sys; print("3.%d" % sys.version_info[1])')
    for v in 3.11 3.12 3.13 3.14; do
        [ "$v" = "$main" ] || find_python "$v" || true
    done
}

# find_python X.Y: prints an interpreter of CPython X.Y found as pythonX.Y on PATH or under
# pyenv (status 1 if there is none).
find_python() {
    local py
    for py in "$(command -v "python$1" || true)" \
              "${PYENV_ROOT:-$HOME/.pyenv}"/versions/$1.*/bin/python; do
        # (a pyenv shim exists for versions it cannot run: try it)
        if [ -n "$py" ] && "$py" -c "import sys" >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

# wheel_tag PY: the cpXY tag of interpreter PY.
wheel_tag() { "$1" -c 'import sys; print("cp%d%d" % sys.version_info[:2])'; }

# The Debian suites whose roots (scripts/debian_root.sh) provide the CPythons this machine
# may lack, for the wheels compiled against their headers and tested with their Python.
# No Debian release ships CPython 3.12 (Ubuntu 24.04 does, but its arm64 packages are not
# on the mirrors this machine reaches): "bookworm+3.12" is bookworm's libraries with
# CPython 3.12 built from source (debian_root.sh; CPYTHON_SOURCES below).
DEBIAN_SUITES="bookworm:3.11 bookworm+3.12:3.12 trixie:3.13 forky:3.14"
# The CPython sources of such roots, a line each: version, URL, sha256 (CPython's release
# source as Ubuntu's archive keeps it: the orig tarball of its source package).
CPYTHON_SOURCES="
3.12.3 http://archive.ubuntu.com/ubuntu/pool/main/p/python3.12/python3.12_3.12.3.orig.tar.xz 56bfef1fdfc1221ce6720e43a661e3eb41785dd914ce99698d8c7896af4bdaa1
"
# The wheels build_wheel.sh compiles against a root's headers (ROOT_WHEELS, ARCH:SUITE
# pairs), by default.
DEFAULT_ROOT_WHEELS="x86_64:forky aarch64:bookworm aarch64:bookworm+3.12 aarch64:trixie
aarch64:forky"
# suite_python SUITE: its CPython version (3.14); python_suite cpXY: the suite with it.
suite_python() {
    local e
    for e in $DEBIAN_SUITES; do [ "${e%%:*}" = "$1" ] && { echo "${e#*:}"; return 0; }; done
    return 1
}
python_suite() {
    local e v
    for e in $DEBIAN_SUITES; do
        v=${e#*:}
        [ "cp${v/./}" = "$1" ] && { echo "${e%%:*}"; return 0; }
    done
    return 1
}
