"""Build of fusedopt's one extension module: src/fusedopt/_core.pyx plus kernels/*.c.

Flags (see shared DESIGN notes and README "Building"):
  -O3 -fno-math-errno (lets gcc vectorise sqrt) -fno-trapping-math
  -ffp-contract=off (no FMA contraction: every CPU path rounds identically)
  -fvisibility=hidden; OpenMP when a try-compile shows it works.
Never -march=native, -ffast-math or -Ofast: the AVX2 and AVX-512 paths are compiled with
#pragma GCC target inside kernels/fo_isa_*.c and chosen at import time.

Environment:
  FUSEDOPT_OPENMP=0|1     force OpenMP off (or require it on)
  FUSEDOPT_BOUNDSCHECK=1  turn Cython bounds checks back on (debugging)
  FUSEDOPT_SANITIZE=1     build with -fsanitize=address,undefined (debugging)
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from glob import glob

from setuptools import Extension, setup

BASE_FLAGS = ["-std=c99", "-O3", "-fno-math-errno", "-fno-trapping-math",
              "-ffp-contract=off", "-fvisibility=hidden"]


def _try_compile(flags):
    """Compile and link a small OpenMP program with the given flags."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    src = "#include <omp.h>\nint main(void){int s=0;\n#pragma omp parallel reduction(+:s)\ns+=omp_get_num_threads();\nreturn s>0?0:1;}\n"
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "t.c")
        with open(c, "w") as f:
            f.write(src)
        try:
            r = subprocess.run(cc + flags + [c, "-o", os.path.join(d, "t")],
                               capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return r.returncode == 0


def openmp_flags():
    want = os.environ.get("FUSEDOPT_OPENMP")
    if want == "0":
        return ["-fopenmp-simd"], []
    if _try_compile(["-fopenmp"]):
        return ["-fopenmp"], ["-fopenmp"]
    if want == "1":
        sys.exit("FUSEDOPT_OPENMP=1 but the compiler cannot build an OpenMP program")
    warnings.warn("fusedopt: OpenMP is not available: building single-threaded kernels "
                  "(every call runs on one thread)", stacklevel=1)
    print("*" * 70 + "\nWARNING: fusedopt built WITHOUT OpenMP (single-threaded)\n" + "*" * 70,
          file=sys.stderr)
    return ["-fopenmp-simd"], []


def extensions():
    from Cython.Build import cythonize

    cflags, ldflags = openmp_flags()
    if os.environ.get("FUSEDOPT_SANITIZE") == "1":
        cflags = cflags + ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        ldflags = ldflags + ["-fsanitize=address,undefined"]
    ext = Extension(
        "fusedopt._core",
        sources=["src/fusedopt/_core.pyx"] + sorted(glob("kernels/*.c")),
        include_dirs=["kernels"],
        depends=sorted(glob("kernels/*.h")) + ["src/fusedopt/_kernels.pxd"],
        extra_compile_args=BASE_FLAGS + cflags,
        extra_link_args=ldflags,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("FO_BUILD_FLAGS", '"' + " ".join(BASE_FLAGS + cflags) + '"')],
    )
    checks = os.environ.get("FUSEDOPT_BOUNDSCHECK") == "1"
    return cythonize(
        [ext],
        language_level=3,
        compiler_directives={"boundscheck": checks, "wraparound": checks,
                             "cdivision": True, "initializedcheck": checks,
                             "embedsignature": True},
    )


setup(ext_modules=extensions())
