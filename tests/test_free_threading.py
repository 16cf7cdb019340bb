"""Serving threads and the GIL (issue 20, item 10). hybrid's compiled extensions do not declare free-threading
support, so a free-threaded build turns the GIL back on when it imports them, unless PYTHON_GIL=0 keeps it off:
then only one thread may run them, and more is refused with one line naming the option. This CPython has the GIL
(no free-threaded build on this machine), so the interpreter's answer is stood in for with monkeypatch; the
receive buffer (one per thread now, not one per process) is exercised by the rest of the suite."""

from __future__ import annotations

import sys

import pytest

from hybrid.config import ConfigError, ServerConfig, gil_enabled


@pytest.fixture
def gil_off(monkeypatch):
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)


@pytest.fixture
def gil_back_on(monkeypatch):
    # A free-threaded build after importing an extension without Py_mod_gil: the GIL is on again.
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)


def test_one_thread_and_no_spares_without_the_gil(gil_off):
    assert not gil_enabled()
    config = ServerConfig(workers=1)
    assert (config.threads, config.max_threads) == (1, 1)


@pytest.mark.parametrize(("options", "option"), [({"threads": 2}, "threads"), ({"max_threads": 4}, "max-threads")])
def test_more_than_one_thread_without_the_gil_is_refused_naming_the_option(gil_off, options, option):
    with pytest.raises(ConfigError) as info:
        ServerConfig(**options)
    message = str(info.value)
    assert message.startswith(f"Invalid value for '--{option}': ")
    assert "not yet safe without" in message and "PYTHON_GIL=0" in message and "\n" not in message


def test_a_free_threaded_build_with_the_gil_back_on_keeps_one_serving_thread_and_spares(gil_back_on):
    config = ServerConfig(workers=1)
    assert (config.threads, config.max_threads) == (1, 33)
    assert ServerConfig(threads=2).threads == 2  # with the GIL, more threads are the user's choice
