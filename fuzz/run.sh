#!/bin/sh
# Run the Atheris harness (fuzz/h1_fuzz.py) for FUZZ_SECONDS (default 30). Called by `make fuzz`.
#
# With clang on PATH, H1Protocol (h1.pyx) and httptools (llhttp) are first built with libFuzzer's coverage
# instrumentation into build/fuzz/, so the fuzzer is guided by the parser's own branches; without clang it
# still runs every check, but blind (atheris only sees the harness's Python code) and says so.
# Any failed check, unexpected exception or crash exits non-zero and leaves the input in build/fuzz/crash-*.
set -eu
PY=${PY:-.venv/bin/python}
SECONDS_TO_RUN=${FUZZ_SECONDS:-30}
OUT=build/fuzz
CORPUS=build/fuzz/corpus
COV="-fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp -O1 -g"
if [ -n "${FUZZ_ASAN:-}" ]; then
    # FUZZ_ASAN=1: the parser and llhttp also built with AddressSanitizer and UBSan (needs clang), run with the
    # ASan runtime preloaded into python: catches memory errors in the C code. The ASan runtime's own coverage
    # hooks take precedence over atheris' libFuzzer, so this run is not guided: use it to replay the corpus of a
    # guided run (build/fuzz/corpus) under ASan and to mutate it further. (pointer-overflow is off: Cython's argument
    # parsing code adds a zero offset to a NULL pointer, harmless and not ours.)
    OUT=build/fuzz-asan
    COV="$COV -fsanitize=address,undefined -fno-sanitize=pointer-overflow -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    PRELOAD="$(clang -print-file-name=libclang_rt.asan-x86_64.so)"
fi
mkdir -p "$CORPUS" "$OUT"
if command -v clang >/dev/null 2>&1; then
    HTTPTOOLS_VERSION=$("$PY" -c 'import httptools; print(httptools.__version__)')
    if [ ! -f "$OUT/site/.version-$HTTPTOOLS_VERSION" ]; then
        echo "fuzz: building httptools $HTTPTOOLS_VERSION (llhttp) with coverage instrumentation"
        rm -rf "$OUT/site"
        CC=clang LDSHARED="clang -shared" CFLAGS="$COV" "$PY" -m pip install -q --no-cache-dir --no-binary httptools --no-deps \
            --no-build-isolation --target "$OUT/site" "httptools==$HTTPTOOLS_VERSION"
        touch "$OUT/site/.version-$HTTPTOOLS_VERSION"
    fi
    H1_SO=$(find "$OUT/lib" -name 'h1.*.so' 2>/dev/null | head -n 1)
    if [ -z "$H1_SO" ] || [ hybrid/_speedups/h1.pyx -nt "$H1_SO" ] || [ hybrid/_speedups/h1.pxd -nt "$H1_SO" ]; then
        echo "fuzz: building hybrid._speedups.h1 with coverage instrumentation"
        CC=clang LDSHARED="clang -shared" CFLAGS="$COV" FUZZ_BUILD="$OUT" "$PY" fuzz/setup_instrumented.py >"$OUT/h1-build.log" 2>&1 \
            || { cat "$OUT/h1-build.log"; exit 1; }
        H1_SO=$(find "$OUT/lib" -name 'h1.*.so' | head -n 1)
    fi
    export FUZZ_H1="$H1_SO"
    export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "fuzz: clang not found: running without coverage of the parser (apt-get install clang for a guided run)"
fi
if [ -n "${FUZZ_ASAN:-}" ]; then
    export LD_PRELOAD="$PRELOAD" PYTHONMALLOC=malloc
    export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi
exec "$PY" fuzz/h1_fuzz.py -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -dict=fuzz/http.dict -artifact_prefix="$OUT/" -print_final_stats=1 "$@" "$CORPUS" fuzz/seeds
