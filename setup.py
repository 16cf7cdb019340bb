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

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "embedsignature": True},
    )
)
