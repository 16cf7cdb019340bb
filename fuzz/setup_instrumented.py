"""Build hybrid._speedups.h1 alone into build/fuzz/lib with the compiler flags in CC/CFLAGS (see fuzz/run.sh)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    name="hybrid-h1-fuzz",
    script_args=["build_ext", "--build-lib", "build/fuzz/lib", "--build-temp", "build/fuzz/tmp"],
    ext_modules=cythonize(
        [Extension("hybrid._speedups.h1", ["hybrid/_speedups/h1.pyx"])],
        language_level=3,
        build_dir="build/fuzz/c",
        compiler_directives={"boundscheck": False, "wraparound": False},
    ),
)
