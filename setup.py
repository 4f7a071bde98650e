"""Build of fusedopt's one extension module: src/fusedopt/_core.pyx plus kernels/*.c.

Flags (see shared DESIGN notes and README "Building"):
  -O3 -fno-math-errno (lets gcc vectorise sqrt) -fno-trapping-math
  -ffp-contract=off (no FMA contraction: every CPU path rounds identically)
  -fvisibility=hidden; OpenMP when a try-compile with the building compiler shows it
  works (else a warning and single-threaded kernels).  The sources compile in parallel.
Never -march=native, -ffast-math or -Ofast: the AVX2 and AVX-512 paths are compiled with
target pragmas inside kernels/fo_isa_*.c (gcc and clang) and chosen at import time.

Environment:
  FUSEDOPT_OPENMP=0|1     force OpenMP off (or require it on)
  FUSEDOPT_BUILD_JOBS=N   parallel compiler processes (default: the number of CPUs)
  FUSEDOPT_BOUNDSCHECK=1  turn Cython bounds checks back on (debugging)
  FUSEDOPT_SANITIZE=1     build with -fsanitize=address,undefined (debugging)
"""
import os
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BASE_FLAGS = ["-std=c99", "-O3", "-fno-math-errno", "-fno-trapping-math",
              "-ffp-contract=off", "-fvisibility=hidden"]
# A kernel table entry of the wrong type is an error, not a warning (kernels/fo_isa.h).
CHECK_FLAGS = ["-Werror=incompatible-pointer-types"]

OPENMP_PROBE = ("#include <omp.h>\nint main(void){int s=0;\n"
                "#pragma omp parallel reduction(+:s)\ns+=omp_get_num_threads();\n"
                "return s>0?0:1;}\n")


def _openmp_works(compiler, cflags, ldflags):
    """Compiles and links a small OpenMP program with the compiler that builds fusedopt."""
    from setuptools.errors import CompileError, LinkError
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "omp_probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        try:
            objs = compiler.compile([src], output_dir=d, extra_postargs=cflags)
            compiler.link_executable(objs, "omp_probe", output_dir=d, extra_postargs=ldflags)
        except (CompileError, LinkError):
            return False
        return True


def openmp_flags(compiler):
    """(compile flags, link flags) for OpenMP with this compiler (gcc: libgomp; clang: its
    libomp, Debian's libomp-dev), or the single-threaded fallback with a loud warning.
    (GNU libgomp's omp.h does not compile under clang 14, so clang without libomp falls
    back.)"""
    want = os.environ.get("FUSEDOPT_OPENMP")
    if want == "0":
        return ["-fopenmp-simd"], []
    if _openmp_works(compiler, ["-fopenmp"], ["-fopenmp"]):
        return ["-fopenmp"], ["-fopenmp"]
    if want == "1":
        sys.exit("FUSEDOPT_OPENMP=1 but the compiler cannot build an OpenMP program")
    warnings.warn("fusedopt: OpenMP is not available: building single-threaded kernels "
                  "(every call runs on one thread)", stacklevel=1)
    print("*" * 70 + "\nWARNING: fusedopt built WITHOUT OpenMP (single-threaded)\n" + "*" * 70,
          file=sys.stderr)
    return ["-fopenmp-simd"], []


def _parallel_compile(compiler, jobs):
    """Makes compiler.compile build the sources of one extension in `jobs` parallel
    processes (setuptools compiles them one after the other)."""
    def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            src, ext = build[obj]
            compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)
        # the largest source (Cython's generated C) first: it takes longest
        todo = sorted((obj for obj in objects if obj in build),
                      key=lambda obj: -os.path.getsize(build[obj][0]))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, todo))
        return objects
    compiler.compile = compile


class BuildExt(build_ext):
    """Chooses the OpenMP flags by trying the compiler that will build, then compiles
    the extension's sources in parallel (FUSEDOPT_BUILD_JOBS, default: all CPUs)."""

    def build_extensions(self):
        cflags, ldflags = openmp_flags(self.compiler)
        if os.environ.get("FUSEDOPT_SANITIZE") == "1":
            cflags = cflags + ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
            ldflags = ldflags + ["-fsanitize=address,undefined"]
        flags = BASE_FLAGS + cflags
        for ext in self.extensions:
            ext.extra_compile_args = flags + CHECK_FLAGS
            ext.extra_link_args = ldflags
            ext.define_macros.append(("FO_BUILD_FLAGS", '"' + " ".join(flags) + '"'))
        jobs = int(os.environ.get("FUSEDOPT_BUILD_JOBS") or os.cpu_count() or 1)
        if jobs > 1:
            _parallel_compile(self.compiler, jobs)
        super().build_extensions()


def extensions():
    import numpy
    from Cython.Build import cythonize

    sources = ["src/fusedopt/_core.pyx"] + sorted(glob("kernels/*.c"))
    ext = Extension(
        "fusedopt._core",
        sources=sources,
        include_dirs=["kernels", numpy.get_include()],
        depends=sorted(glob("kernels/*.h")) + sorted(glob("kernels/*.def")) +
        ["src/fusedopt/_kernels.pxd"],
        # NumPy's C API (arrays read directly, see acquire in _core.pyx), built against
        # NumPy 2 headers and usable with every NumPy the package supports (>= 1.22)
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_22_API_VERSION"),
                       ("NPY_TARGET_VERSION", "NPY_1_22_API_VERSION")],
    )
    checks = os.environ.get("FUSEDOPT_BOUNDSCHECK") == "1"
    return cythonize(
        [ext],
        language_level=3,
        compiler_directives={"boundscheck": checks, "wraparound": checks,
                             "cdivision": True, "initializedcheck": checks,
                             "embedsignature": True},
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
