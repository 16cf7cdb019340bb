"""Build hybrid._speedups.h1 alone into $FUZZ_BUILD/lib with the compiler flags in CC/CFLAGS (see fuzz/run.sh)."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

OUT = os.environ.get("FUZZ_BUILD", "build/fuzz")

setup(
    name="hybrid-h1-fuzz",
    script_args=["build_ext", "--build-lib", f"{OUT}/lib", "--build-temp", f"{OUT}/tmp"],
    ext_modules=cythonize(
        [Extension("hybrid._speedups.h1", ["hybrid/_speedups/h1.pyx"])],
        language_level=3,
        build_dir=f"{OUT}/c",
        compiler_directives={"boundscheck": False, "wraparound": False},
    ),
)
