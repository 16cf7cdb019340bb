"""Build the Cython extensions in hybrid/_speedups/ (metadata lives in pyproject.toml)."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# HYBRID_SANITIZE=1 builds with AddressSanitizer/UBSan for the fuzzing work (CMakeLists.txt has the same switch).
extra_compile_args = ["-O2"]
extra_link_args = []
if os.environ.get("HYBRID_SANITIZE"):
    extra_compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    extra_link_args = ["-fsanitize=address,undefined"]

extensions = [
    Extension(
        f"hybrid._speedups.{name}",
        [f"hybrid/_speedups/{name}.pyx"],
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args,
    )
    for name in ("accesslog", "connection", "cycle", "h1", "loopcall", "monitor", "steps", "stream_connection",
                 "streams", "task", "wsframe", "wsmask")
]

# HYBRID_SKIP_EXTENSIONS=1: the Makefile's editable install leaves the compiling to `make build` (build_ext --inplace),
# which keeps its objects in build/ for the next edit; the install's own build dir is thrown away, so compiling
# there too would compile every module twice.
if os.environ.get("HYBRID_SKIP_EXTENSIONS"):
    extensions = []

setup(
    # Cythonize and compile the modules on every core.
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        nthreads=os.cpu_count() or 1,
        compiler_directives={"boundscheck": False, "wraparound": False, "embedsignature": True},
    ) if extensions else [],
)
