# The two commands a newcomer needs: `make run` (serve the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APP ?= hybrid.demo:app

.PHONY: venv install build run test check lint bench bench-quick fuzz clean system-deps

UV := $(VENV)/bin/uv pip install -q --python $(PY)

# Two prerequisites at a time: `make test` installs the Debian peers (network and dpkg) while the venv installs and
# the extensions compile, instead of after them (a fresh CI machine spends a minute or more in apt).
MAKEFLAGS += -j2

# Create the virtualenv and install hybrid (editable) with test tools; `make build` compiles the Cython extensions.
# uv does the installs (pip only installs uv): several times faster than pip, and CI makes two virtualenvs.
$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(UV) -U setuptools wheel Cython
	HYBRID_SKIP_EXTENSIONS=1 $(UV) -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Compile the extensions in place: all of them after the install, then only what a .pyx/.pxd edit changed (the
# objects stay in build/). setup.py runs Cython and the compiler on every core.
build: install
	$(PY) setup.py -q build_ext --inplace

run: build
	$(PY) -m hybrid $(APP) --host 127.0.0.1 --port 8000

lint: install
	$(PY) -m ruff check hybrid tests bench

check: lint

# Real peers the integration tests drive (nginx), from Debian when missing.
system-deps:
	bash .ci/system-deps

test: build check system-deps
	$(PY) -m pytest -q

bench: build
	$(PY) -m bench

bench-quick: build
	$(PY) -m bench --quick

# Fuzz the HTTP/1.1 parser (H1Protocol over llhttp) with Atheris for FUZZ_SECONDS; fails on any finding, whose
# input is left in build/fuzz/crash-*. See docs/fuzzing.md.
FUZZ_SECONDS ?= 30
fuzz: build
	$(PY) -c "import atheris" 2>/dev/null || $(UV) 'atheris>=2.3'  # (the fuzz extra)
	PY=$(PY) FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh

clean:
	rm -rf build dist *.egg-info hybrid/_speedups/*.c hybrid/_speedups/*.so $(VENV)
