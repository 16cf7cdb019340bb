"""Ratios, the issue's targets, the Markdown table, and the results files."""

from __future__ import annotations

import json
from pathlib import Path

from bench.scenarios import MEASURE_LABELS, load
from bench.stats import ratio

BASELINES = ("uvicorn", "granian", "hypercorn")


def med(result: dict, scenario: str, key: str, metric: str):
    case = result.get("scenarios", {}).get(scenario, {}).get("cases", {}).get(key, {})
    return case.get("summary", {}).get(metric, {}).get("median")


def baseline(result: dict, scenario: str, name: str, variant: str, metric: str, higher: bool = True):
    """The median of baseline server `name` for a variant; where the scenario runs it in several setups (rows
    "uvicorn-websockets" and "uvicorn-wsproto" in the websocket scenario), the best of them."""
    own = med(result, scenario, f"{name}/{variant}", metric)
    if own is not None:
        return own
    cases = result.get("scenarios", {}).get(scenario, {}).get("cases", {})
    found = [c.get("summary", {}).get(metric, {}).get("median") for c in cases.values()
             if c["variant"] == variant and c["server"].startswith(name + "-")]
    found = [x for x in found if x is not None]
    if not found:
        return None
    return max(found) if higher else min(found)


def variants(cases: dict) -> list[str]:
    out = []
    for c in cases.values():
        if c["variant"] not in out:
            out.append(c["variant"])
    return out


def ratios(result: dict) -> dict:
    """{scenario: {variant: {server: {"vs_uvicorn": x, "vs_granian": y}}}} on each scenario's primary metric."""
    out = {}
    specs = load([n for n in result.get("scenarios", {})])
    for name, sc in result.get("scenarios", {}).items():
        primary, higher = specs[name].primary, specs[name].higher_is_better
        per = {}
        for v in variants(sc["cases"]):
            row = {}
            for _key, c in sc["cases"].items():
                if c["variant"] != v:
                    continue
                mine = c.get("summary", {}).get(primary, {}).get("median")
                if specs[name].baseline_variant:
                    base = specs[name].baseline_variant
                    row[c["server"]] = {f"vs_{base}": ratio(mine, med(result, name, f"{c['server']}/{base}",
                                                                      primary))}
                    continue
                row[c["server"]] = {
                    f"vs_{b}": ratio(mine, baseline(result, name, b, v, primary, higher)) for b in BASELINES
                }
            per[v] = row
        out[name] = {"metric": primary, "variants": per}
    return out


def _check(name: str, target: str, measured, met) -> dict:
    return {"id": name, "target": target, "measured": measured, "met": met}


def targets(result: dict) -> list[dict]:
    """The issue's targets for hybrid, each met / not met / n/a (when its scenario or a peer did not run)."""
    t = []
    r = lambda *a: med(result, *a)  # noqa: E731
    for sc in ("plaintext", "json"):
        h, g = r(sc, "hybrid/-", "rps"), r(sc, "granian/-", "rps")
        hp, gp = r(sc, "hybrid/-", "p99_ms"), r(sc, "granian/-", "p99_ms")
        u = r(sc, "uvicorn/-", "rps")
        hc, gc, uc = (r(sc, f"{s}/-", "rps_per_core") for s in ("hybrid", "granian", "uvicorn"))
        if h is not None and g is not None:
            per_cpu = f"; per server CPU-second {ratio(hc, gc)}x granian, {ratio(hc, uc)}x uvicorn" if hc else ""
            t.append(_check(f"{sc}-rps", f"{sc}: hybrid req/s >= granian's",
                            f"{h:,.0f} vs {g:,.0f} ({ratio(h, g)}x granian, {ratio(h, u)}x uvicorn{per_cpu})",
                            h >= g))
        if hp is not None and gp is not None:
            t.append(_check(f"{sc}-p99", f"{sc}: hybrid p99 <= granian's", f"{hp:.2f} ms vs {gp:.2f} ms", hp <= gp))
    # Issue 22: each framework, GET and JSON POST: req/s >= 1.2x uvicorn's and >= granian's, server CPU per
    # request <= 0.85x uvicorn's.
    framework = result.get("scenarios", {}).get("framework", {}).get("cases", {})
    for v in sorted({c.get("variant") for c in framework.values() if c.get("server") == "hybrid"}):
        h, u, g = (r("framework", f"{s}/{v}", "rps") for s in ("hybrid", "uvicorn", "granian"))
        hc, uc = r("framework", f"hybrid/{v}", "cpu_us_per_req"), r("framework", f"uvicorn/{v}", "cpu_us_per_req")
        if h is not None and u is not None:
            t.append(_check(f"framework-{v}", f"framework ({v}): hybrid req/s >= 1.2x uvicorn's",
                            f"{ratio(h, u)}x ({h:,.0f} vs {u:,.0f} req/s)", h >= 1.2 * u))
        if h is not None and g is not None:
            t.append(_check(f"framework-{v}-granian", f"framework ({v}): hybrid req/s >= granian's",
                            f"{ratio(h, g)}x ({h:,.0f} vs {g:,.0f} req/s)", h >= g))
        if hc is not None and uc is not None:
            t.append(_check(f"framework-{v}-cpu", f"framework ({v}): server CPU per request <= 0.85x uvicorn's",
                            f"{ratio(hc, uc)}x ({hc:.1f} vs {uc:.1f} µs)", hc <= 0.85 * uc))
    fp, fr = r("blocking_mix", "hybrid/-", "fast_p99_ms"), r("blocking_mix", "hybrid/-", "fast_rps")
    if fp is not None:
        t.append(_check("blocking-p99", "blocking mix: fast-route p99 < 10 ms", f"{fp:.2f} ms", fp < 10))
    pl = r("plaintext", "hybrid/-", "rps")
    if fr is not None and pl is not None:
        t.append(_check("blocking-rps", "blocking mix: fast-route req/s >= 1/2 of hybrid's plaintext req/s",
                        f"{fr:,.0f} vs {pl:,.0f} ({ratio(fr, pl)})", fr >= 0.5 * pl))
    hk, uk = r("idle", "hybrid/-", "kb_per_conn"), r("idle", "uvicorn/-", "kb_per_conn")
    if hk is not None and uk is not None:
        t.append(_check("idle-rss", "idle: RSS per idle connection <= uvicorn's", f"{hk:.1f} KB vs {uk:.1f} KB",
                        hk <= uk))
    hn = r("idle", "hybrid/-", "new_req_max_ms")
    if hn is not None:
        t.append(_check("idle-latency", "idle: a new request answered within 10 ms (max over samples)",
                        f"{hn:.2f} ms (p50 {r('idle', 'hybrid/-', 'new_req_p50_ms')} ms)", hn <= 10))
    h9, u9 = r("fixed_load", "hybrid/-", "p999_ms"), r("fixed_load", "uvicorn/-", "p999_ms")
    if h9 is not None and u9 is not None:
        t.append(_check("fixed-p999", "fixed load: p99.9 <= uvicorn's", f"{h9:.2f} ms vs {u9:.2f} ms", h9 <= u9))
    for n in ("100", "1000"):  # issue 9
        key = f"hybrid/{n}"
        he, ue = r("streaming", key, "events_per_s"), r("streaming", f"uvicorn/{n}", "events_per_s")
        if he is None or ue is None:
            continue
        hm, um = r("streaming", key, "rss_mb"), r("streaming", f"uvicorn/{n}", "rss_mb")
        hc, uc = r("streaming", key, "cpu_us_per_event"), r("streaming", f"uvicorn/{n}", "cpu_us_per_event")
        met = he >= ue and hm is not None and um is not None and hm <= um and hc is not None and uc is not None \
            and hc <= uc
        t.append(_check(f"streaming-{n}", f"streaming ({n} streams): hybrid events/s >= uvicorn's, at no more RSS "
                        f"and no more server CPU per event",
                        f"{he:,.0f} vs {ue:,.0f} events/s ({ratio(he, ue)}x); RSS {hm} vs {um} MiB; "
                        f"{hc} vs {uc} µs/event", met))
    for v in ("16B", "64KiB", "16B-py", "64KiB-py"):  # issue 10; -py: the Python client (issue 22)
        h = r("websocket", f"hybrid/{v}", "msgs_per_s")
        uw, up = r("websocket", f"uvicorn-websockets/{v}", "msgs_per_s"), r("websocket", f"uvicorn-wsproto/{v}",
                                                                              "msgs_per_s")
        best = max((x for x in (uw, up) if x is not None), default=None)
        if h is None or best is None:
            continue
        g = r("websocket", f"granian/{v}", "msgs_per_s")
        hc, uwc, upc = (r("websocket", f"{s}/{v}", "cpu_us_per_msg") for s in
                        ("hybrid", "uvicorn-websockets", "uvicorn-wsproto"))
        t.append(_check(f"websocket-{v}", f"websocket echo ({v}, 32 connections): hybrid msg/s >= the best uvicorn "
                        f"backend's",
                        f"{h:,.0f} vs {best:,.0f} msg/s ({ratio(h, best)}x; websockets {_fmt(uw)}, wsproto "
                        f"{_fmt(up)}, granian {_fmt(g)}); server CPU {hc} vs {uwc} / {upc} µs/msg", h >= best))
    t += _h2_targets(result)
    # Issue 21: a message a POST route publishes reaches the streams on another loop with p99 under 10 ms.
    xloop = result.get("scenarios", {}).get("crossloop", {}).get("cases", {})
    for v in variants({k: c for k, c in xloop.items() if c.get("server") == "hybrid"}):
        hp, up = r("crossloop", f"hybrid/{v}", "p99_ms"), r("crossloop", f"uvicorn/{v}", "p99_ms")
        if hp is None:
            continue
        lost = xloop[f"hybrid/{v}"]["summary"].get("lost", {}).get("max")
        vs = f" ({ratio(hp, up)}x uvicorn's {up:.2f} ms)" if up is not None else ""
        t.append(_check(f"crossloop-{v}", f"crossloop ({v}): hybrid delivery p99 < 10 ms, nothing lost",
                        f"{hp:.2f} ms{vs}; --mode async {_fmt(r('crossloop', f'hybrid-async/{v}', 'p99_ms'))} ms; "
                        f"lost {int(lost or 0)}", hp < 10 and not lost))
    derived = result.get("scenarios", {}).get("scaling", {}).get("derived", {}).get("workers2_over_workers1", {})
    for load_ in ("plaintext", "json"):
        v = derived.get(f"hybrid/{load_}")
        if v is None and "scaling" not in result.get("scenarios", {}):
            continue
        if isinstance(v, (int, float)):
            t.append(_check(f"scaling-{load_}", f"scaling ({load_}): --workers 2 >= 1.8x --workers 1", f"{v}x",
                            v >= 1.8))
        else:
            t.append(_check(f"scaling-{load_}", f"scaling ({load_}): --workers 2 >= 1.8x --workers 1",
                            str(v or "n/a"), False))
    return t


# Issue 26: hybrid's HTTP/1.1 row of the same run whose CPU per request an h2 variant's may exceed by 30% at most
# (JSON over TLS has no HTTP/1.1 row: that variant is checked for req/s only).
_H2_OWN_HTTP1 = {("plaintext", "h2c"): ("plaintext", "hybrid/-", "cpu_us_per_req"),
                 ("json", "h2c"): ("json", "hybrid/-", "cpu_us_per_req"),
                 ("plaintext", "tls"): ("tls", "hybrid/https", "cpu_us_per_req")}


def _h2_targets(result: dict) -> list[dict]:
    """Issue 26, per h2 variant: hybrid's req/s >= granian's and >= 2x hypercorn's; its CPU per request <= its own
    HTTP/1.1 one's + 30% (when that scenario ran in the same run)."""
    t = []
    cases = result.get("scenarios", {}).get("h2", {}).get("cases", {})
    for v in [c["variant"] for c in cases.values() if c.get("server") == "hybrid"]:
        h, g, hc = (med(result, "h2", f"{s}/{v}", "rps") for s in ("hybrid", "granian", "hypercorn"))
        if h is not None and g is not None:
            t.append(_check(f"h2-{v}-granian", f"h2 ({v}): hybrid req/s >= granian's",
                            f"{ratio(h, g)}x ({h:,.0f} vs {g:,.0f} req/s)", h >= g))
        if h is not None and hc is not None:
            t.append(_check(f"h2-{v}-hypercorn", f"h2 ({v}): hybrid req/s >= 2x hypercorn's",
                            f"{ratio(h, hc)}x ({h:,.0f} vs {hc:,.0f} req/s)", h >= 2 * hc))
        parts = v.split("-")
        own = _H2_OWN_HTTP1.get(("json" if parts[0] == "json" else "plaintext", parts[-2]))
        mine, http1 = med(result, "h2", f"hybrid/{v}", "cpu_us_per_req"), own and med(result, *own)
        if mine is not None and http1:
            t.append(_check(f"h2-{v}-cpu", f"h2 ({v}): server CPU per request <= 1.3x hybrid's over HTTP/1.1 "
                            f"({own[0]} scenario)", f"{ratio(mine, http1)}x ({mine:.1f} vs {http1:.1f} µs)",
                            mine <= 1.3 * http1))
    return t


def _fmt(x) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _first_line(error: str) -> str:
    """An error's first line (a round's error is a repr: its newlines are backslash-n)."""
    return error.replace("\\n", "\n").splitlines()[0][:200]


def markdown(result: dict, heading_level: int = 2) -> str:
    h = "#" * heading_level
    lines = []
    m = result.get("machine", {})
    s = result.get("settings", {})
    v = result.get("versions", {})
    lines.append(
        f"Run {result.get('date')} ({'quick' if s.get('quick') else 'full' if s.get('full') else 'custom'} run, "
        f"{s.get('rounds')} rounds x {s.get('duration')} s, servers interleaved, medians with spread "
        f"(max-min)/median) on {m.get('cpu_model')} ({m.get('cpu_count')} cores); server pinned to CPU "
        f"{s.get('server_cpus')}, load generator to CPU {s.get('client_cpus')}; "
        f"{s.get('connections')} connections unless noted."
    )
    lines.append("")
    if m.get("request_path_us") or m.get("python_loop_ms"):  # (runs before the machine line have neither)
        lines.append(
            f"Machine line: hybrid's in-process request path {m.get('request_path_us') or '?'} µs/request "
            f"(`python -m bench.request_path`), a fixed pure-Python loop {m.get('python_loop_ms') or '?'} ms; "
            "req/s scale with these, so compare runs from different machines by server CPU µs per request."
        )
        lines.append("")
    lines.append(
        "Versions: " + ", ".join(
            f"{k} {v.get(k) or '?'}" for k in ("hybrid", "uvicorn", "httptools", "uvloop", "granian", "hypercorn",
                                               "fastapi")
        ) + f"; {v.get('wrk') or 'wrk ?'}; Python {m.get('python')}."
    )
    lines.append("")
    rat = result.get("ratios", {})
    specs = load(list(result.get("scenarios", {})))
    for name, sc in result.get("scenarios", {}).items():
        spec = specs[name]
        lines.append(f"{h} {spec.title}")
        lines.append("")
        params = sc.get("params", {})
        if name == "fixed_load" and params:
            lines.append(f"Offered load: {params.get('offered_rps'):,} req/s ({params.get('reference')}: "
                         f"{params.get('reference_rps'):,.0f}).")
            lines.append("")
        if params.get("note"):  # (what a reader must know to read this run's rows: Scenario.upgrade leaves one)
            lines.append(params["note"])
            lines.append("")
        cols = spec.measures
        primary_label = MEASURE_LABELS.get(spec.primary, spec.primary)
        base = spec.baseline_variant
        against = [f"vs_{base}"] if base else [f"vs_{peer}" for peer in spec.versus]
        header = ["server", "variant"] + [MEASURE_LABELS.get(c, c) for c in cols] + \
                 [f"{primary_label} {a.replace('_', ' ')}" for a in against] + ["errors"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        for _key, c in sc.get("cases", {}).items():
            row = [f"**{c['server']}**" if c["server"] == "hybrid" else c["server"], c["variant"]]
            if c.get("status") != "ok":
                row += [c.get("status", "failed")] + [""] * (len(cols) - 1) + [""] * (len(against) + 1)
            else:
                for col in cols:
                    st = c["summary"].get(col)
                    row.append(f"{_fmt(st['median'])} ±{st['spread_pct']:.0f}%" if st else "–")
                rr = rat.get(name, {}).get("variants", {}).get(c["variant"], {}).get(c["server"], {})
                row += [f"{rr.get(a)}x" if rr.get(a) is not None else "–" for a in against]
                errs = c["summary"].get("errors", {}).get("max")
                row.append(str(int(errs)) if errs else "0")
            lines.append("| " + " | ".join(row) + " |")
        other = [r.get("other_cpu_pct") for c in sc.get("cases", {}).values() for r in c.get("rounds", [])
                 if isinstance(r.get("other_cpu_pct"), (int, float))]
        if other:
            other.sort()
            lines.append("")
            lines.append(f"CPU taken by other processes during the rounds (% of one core): median "
                         f"{other[len(other) // 2]}, max {other[-1]}.")
        failed = [f"{key} {_first_line(err)}" for key, c in sc.get("cases", {}).items()
                  for err in c.get("round_errors", [])]
        if failed:  # (a round that raised has no numbers in the medians: say so rather than show fewer rounds)
            lines.append("")
            lines.append("Rounds that failed, left out of the medians: " + "; ".join(failed) + ".")
        if name == "fixed_load":
            lags = [r.get("generator_max_lag_ms") for c in sc.get("cases", {}).values() for r in c.get("rounds", [])
                    if isinstance(r.get("generator_max_lag_ms"), (int, float))]
            if lags:
                lines.append("")
                lines.append(f"The generator's own worst lag behind its schedule (it counts against the server): "
                             f"median {sorted(lags)[len(lags) // 2]:.1f} ms, max {max(lags):.1f} ms over the rounds.")
            sat = [c["server"] for c in sc.get("cases", {}).values()
                   if c.get("summary", {}).get("achieved_rps", {}).get("median", 0)
                   < 0.98 * (params.get("offered_rps") or 0)]
            if sat:
                lines.append("")
                lines.append(f"Saturated at this rate (achieved < offered; the backlog grows for the whole run, "
                             f"errors count requests unanswered at the end): {', '.join(sat)}.")
        if name in ("streaming", "websocket", "crossloop"):
            client = [r.get("client_cpu_pct") for c in sc.get("cases", {}).values() for r in c.get("rounds", [])
                      if isinstance(r.get("client_cpu_pct"), (int, float))]
            if client:
                what = {"streaming": "failed streams (no connection, no byte, non-2xx, or ended before the run did)",
                        "websocket": "failed connections (no connection, no 101 with the right accept value, "
                                     "closed by the server, or an echo of the wrong length)",
                        "crossloop": "lost deliveries, failed subscribers, failed or unanswered POSTs"}[name]
                lines.append("")
                lines.append(f"The {name} client's own CPU use (% of its core; well under 100 means it was not the "
                             f"limit): median "
                             f"{sorted(client)[len(client) // 2]:.0f}, max {max(client):.0f}. Errors are {what}.")
        if name == "websocket":
            lines.append("")
            lines.append("uvicorn runs once per WebSocket backend (`--ws websockets`, `--ws wsproto`); \"vs uvicorn\" "
                         "divides by the better of the two for that message size.")
        if name == "crossloop":
            lines.append("")
            lines.append("Latency: from the POST's write to the read that completes the message, per subscriber. "
                         "hybrid serves the POST on a serving thread and the streams in its async pool (every "
                         "delivery crosses loops); hybrid-async (`--mode async`) serves both on one loop, as the "
                         "others do. uvicorn runs `--ws websockets`.")
        derived = sc.get("derived", {}).get("workers2_over_workers1")
        if derived:
            lines.append("")
            lines.append("workers 2 / workers 1 (req/s): " + ", ".join(
                f"{k} {f'{x}x' if isinstance(x, (int, float)) else x}" for k, x in derived.items()))
        lines.append("")
    tg = result.get("targets", [])
    if tg:
        lines.append(f"{h} Targets (issues 5, 9, 10, 22 and 26), measured in this run")
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for t in tg:
            met = "n/a" if t["met"] is None else ("met" if t["met"] else "**not met**")
            lines.append(f"| {t['target']} | {t['measured']} | {met} |")
        lines.append("")
    return "\n".join(lines)


def ratio_lines(result: dict) -> list[str]:
    out = []
    for name, r in result.get("ratios", {}).items():
        for v, row in r["variants"].items():
            parts = []
            for srv, x in row.items():
                shown = [b for b in BASELINES if b != srv and (srv == "hybrid" or b != "hypercorn")]
                if any(k not in {f"vs_{b}" for b in BASELINES} for k in x):  # against a variant of its own
                    shown = [k[3:] for k in x]
                parts.append(f"{srv} " + " / ".join(
                    f"{x.get('vs_' + b)}x {b}" if x.get("vs_" + b) is not None else f"– {b}" for b in shown))
            label = name if v == "-" else f"{name}[{v}]"
            out.append(f"{label} ({r['metric']}): " + "; ".join(parts))
    return out


def write(result: dict, results_dir: Path, stem: str) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    jpath = results_dir / f"{stem}.json"
    mpath = results_dir / f"{stem}.md"
    jpath.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    mpath.write_text(f"# Benchmark results {result.get('date')}\n\n" + markdown(result) + "\n")
    return jpath, mpath
