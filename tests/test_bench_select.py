"""The bench's variant selection (``bench.scenarios.select_variants``) by the framework scenario's rule: a
framework names both its methods, ``<framework>-<method>`` one; an unknown name stops the run and lists the
choices. (The h2 scenario's rule, axes, is tested in tests/test_bench_h2.py.)"""

import pytest

from bench.scenarios import framework


def test_a_framework_selects_both_methods_and_a_variant_one(monkeypatch):
    monkeypatch.setenv("BENCH_FRAMEWORK_VARIANTS", " fastapi-def-get , starlette")
    assert list(framework.measured_variants()) == ["fastapi-def-get", "starlette-get", "starlette-post"]
    assert framework.measured_variants()["starlette-post"][1] == "POST"
    monkeypatch.setenv("BENCH_FRAMEWORK_VARIANTS", "")
    assert len(framework.measured_variants()) == 2 * len(framework.VARIANTS)


def test_an_unknown_name_stops_the_run_and_lists_the_choices(monkeypatch):
    monkeypatch.setenv("BENCH_FRAMEWORK_VARIANTS", "django,fastapi")
    with pytest.raises(SystemExit, match=r"unknown fastapi; choose from fastapi-async, fastapi-def, .*-get or -post"):
        framework.measured_variants()
