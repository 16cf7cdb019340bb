"""The bench's access_log scenario (bench/scenarios/access_log.py): each variant's flags, given to a real server the
way bench/servers.py starts hybrid (after its --no-access-log), do what the row's name says; and the report puts
ratios against the no-log row."""

import json
import time

import httpx
import pytest

from bench import results
from bench.scenarios import access_log

from .support import Server

pytestmark = pytest.mark.timeout(60)


def _served_once(extra: str) -> str:
    with Server(access_log.APP, "--no-access-log", *extra.split(), "--port", "0") as srv:
        assert httpx.get(srv.url + "/", timeout=5).status_code == 200
        time.sleep(0.2)
    return srv.output


@pytest.mark.parametrize("variant", list(access_log.VARIANTS))
def test_each_variant_runs_what_its_row_says(variant):
    out = _served_once(access_log.VARIANTS[variant])
    text_lines = [line for line in out.splitlines() if '"GET / HTTP/1.1" 200' in line]
    json_lines = [r for r in (json.loads(line) for line in out.splitlines() if line.startswith("{"))
                  if "status" in r]  # (access records: the server's own lines are JSON too)
    metrics = "Metrics (Prometheus text) on" in out
    expected = {"no-log": (0, 0, False), "text-log": (1, 0, False), "json-log": (0, 1, False),
                "metrics": (0, 0, True)}[variant]
    assert (len(text_lines), len(json_lines), metrics) == expected, out
    if variant == "json-log":
        assert json_lines[0]["path"] == "/" and json_lines[0]["status"] == 200


def test_report_shows_ratios_against_hybrid_without_a_log():
    def case(variant, rps):
        return {"server": "hybrid", "variant": variant, "status": "ok", "rounds": [{"rps": rps}],
                "summary": {"rps": {"median": rps, "min": rps, "max": rps, "spread_pct": 0}}}

    result = {"date": "2026-11-27", "machine": {}, "settings": {}, "versions": {}, "scenarios": {"access_log": {
        "cases": {f"hybrid/{v}": case(v, rps) for v, rps in
                  (("no-log", 20000.0), ("text-log", 16000.0), ("json-log", 10000.0), ("metrics", 15000.0))}}}}
    result["ratios"] = results.ratios(result)
    table = results.markdown(result)
    assert "| req/s vs no-log | errors |" in table
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if line.startswith("| **hybrid**")}
    assert "| 0.8x |" in rows["text-log"] and "| 0.5x |" in rows["json-log"] and "| 0.75x |" in rows["metrics"]
    assert "| 1.0x |" in rows["no-log"]
    assert "access_log[json-log] (rps): hybrid 0.5x no-log" in results.ratio_lines(result)
