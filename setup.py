"""Build the Cython extensions in hybrid/_speedups/ (metadata lives in pyproject.toml).

With Cython (always, under `pip install` / `python -m build`: pyproject.toml requires it for the build) the .pyx
files are compiled to C here. The sdist also ships those generated .c files, so a build without Cython
(`pip install --no-build-isolation hybrid-asgi-*.tar.gz` where Cython cannot be installed) compiles them as they
are. Installing the wheel needs neither: it holds the compiled modules.
"""

import os
from pathlib import Path

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # building from an sdist without Cython: its generated .c files
    cythonize = None

# HYBRID_SANITIZE=1 builds with AddressSanitizer/UBSan for the fuzzing work (CMakeLists.txt has the same switch).
extra_compile_args = ["-O2"]
extra_link_args = []
if os.environ.get("HYBRID_SANITIZE"):
    extra_compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    extra_link_args = ["-fsanitize=address,undefined"]

MODULES = ("accesslog", "connection", "cycle", "h1", "h1_events", "h1_response", "h2fields", "h2machine", "h2read",
           "h2scope", "h2write", "held", "hpack_codec", "loopcall", "monitor", "outbox", "steps", "stream_connection",
           "streams", "task", "tls_io", "wsframe", "wsmask")
suffix = ".pyx" if cythonize is not None else ".c"
missing = [m for m in MODULES if not Path(f"hybrid/_speedups/{m}{suffix}").is_file()]
if missing:
    raise SystemExit(f"hybrid: cannot build {', '.join(missing)}: no {suffix} file and no Cython "
                     f"(pip install Cython, or build from the sdist, which ships the generated C)")

extensions = [
    Extension(
        f"hybrid._speedups.{name}",
        [f"hybrid/_speedups/{name}{suffix}"],
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args,
    )
    for name in MODULES
]

# HYBRID_SKIP_EXTENSIONS=1: the Makefile's editable install leaves the compiling to `make build` (build_ext --inplace),
# which keeps its objects in build/ for the next edit; the install's own build dir is thrown away, so compiling
# there too would compile every module twice.
if os.environ.get("HYBRID_SKIP_EXTENSIONS"):
    extensions = []

if cythonize is not None and extensions:
    extensions = cythonize(
        extensions,
        language_level=3,
        nthreads=os.cpu_count() or 1,
        compiler_directives={"boundscheck": False, "wraparound": False, "embedsignature": True},
    )

# Compile the modules on every core.
setup(options={"build_ext": {"parallel": os.cpu_count() or 1}}, ext_modules=extensions)
