"""python -m bench.report [RESULTS.json]: regenerate docs/benchmarks.md and docs/img/*.png from results files.

Without an argument each scenario comes from the newest run in bench/results/ that has it (quick runs only when
nothing else has it), shown with that run's own header (date, machine, versions): runs from different days may
come from different machines, so compare only within one run. With an argument, that one file. Plots need
matplotlib, which bench/.venv-peers has: run from another interpreter, this re-executes itself there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from bench import env, results
from bench.scenarios import MEASURE_LABELS, ORDER, load

IMG_DIR = env.DOCS_DIR / "img"
DOC = env.DOCS_DIR / "benchmarks.md"
COLORS = {"hybrid": "#d62728", "uvicorn": "#1f77b4", "granian": "#2ca02c", "hypercorn": "#9467bd",
          "uvicorn-websockets": "#1f77b4", "uvicorn-wsproto": "#aec7e8", "hybrid-async": "#ff9896"}


def read(path: Path) -> dict:
    """A results file, each scenario's part in today's names (its Scenario.upgrade)."""
    result = json.loads(path.read_text())
    specs = load([n for n in result.get("scenarios", {}) if n in ORDER])
    for name, spec in specs.items():
        if spec.upgrade:
            spec.upgrade(result["scenarios"][name])
    return result


def newest_per_scenario() -> list[tuple[Path, dict]]:
    """[(file, result with only the scenarios taken from it)], newest file first; each scenario from the newest
    run (by date; a full run before a partial one of the same date) with at least one case that ran."""
    files = sorted(env.RESULTS_DIR.glob("*.json"), key=lambda f: (f.stem[:10], len(f.stem) == 10, f.stem),
                   reverse=True)
    files = [f for f in files if not f.stem.endswith("-quick")] + [f for f in files if f.stem.endswith("-quick")]
    taken: dict[str, Path] = {}
    loaded: dict[Path, dict] = {}
    for f in files:
        result = read(f)
        for name, sc in result.get("scenarios", {}).items():
            if name not in taken and any(c.get("status") == "ok" for c in sc.get("cases", {}).values()):
                taken[name] = f
                loaded[f] = result
    if not taken:
        raise SystemExit("no results in bench/results/: run `python -m bench` first")
    out = []
    for f, result in loaded.items():
        names = [n for n in result["scenarios"] if taken.get(n) == f]
        sub = dict(result, scenarios={n: result["scenarios"][n] for n in names})
        sub["ratios"] = results.ratios(sub)
        sub["targets"] = results.targets(sub)
        out.append((f, sub))
    first = {n: i for i, n in enumerate(ORDER)}
    return sorted(out, key=lambda run: min(first.get(n, len(first)) for n in run[1]["scenarios"]))


def plot(result: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG_DIR.mkdir(parents=True, exist_ok=True)
    out = []
    specs = load(list(result["scenarios"]))
    for name, sc in result["scenarios"].items():
        spec = specs[name]
        metrics = [spec.primary]
        if name in ("plaintext", "json", "framework", "scaling"):
            metrics.append("p99_ms")
        elif name == "blocking_mix":
            metrics.append("fast_p99_ms")
        elif name == "fixed_load":
            metrics = ["p50_ms", "p99_ms", "p999_ms"]
        elif name == "idle":
            metrics.append("new_req_p50_ms")
        elif name == "streaming":
            metrics += ["cpu_us_per_event", "rss_mb"]
        elif name == "websocket":
            metrics += ["rtt_p99_ms", "cpu_us_per_msg"]
        elif name in ("access_log", "h2"):
            metrics.append("cpu_us_per_req")
        elif name == "crossloop":
            metrics += ["p50_ms", "cpu_us_per_delivery"]
        cases = [c for c in sc["cases"].values() if c.get("status") == "ok" and c.get("summary")]
        if not cases:
            continue
        if name == "scaling":
            metrics = ["rps"]
        servers = [sv for sv in dict.fromkeys(c["server"] for c in cases)]
        variants = list(dict.fromkeys(c["variant"] for c in cases))
        width = 0.8 / len(variants)
        fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.2, 1.1 * len(servers) * len(variants) ** 0.5)
                                                           * len(metrics), 3.4), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=False):
            allvals = []
            for vi, variant in enumerate(variants):
                xs, vals, lo, hi, colors = [], [], [], [], []
                for si, srv in enumerate(servers):
                    c = sc["cases"].get(f"{srv}/{variant}")
                    st = c and c.get("status") == "ok" and c.get("summary", {}).get(metric)
                    if not st:
                        continue
                    xs.append(si - 0.4 + width * (vi + 0.5))
                    vals.append(st["median"])
                    lo.append(st["median"] - st["min"])
                    hi.append(st["max"] - st["median"])
                    colors.append(COLORS.get(srv, "#7f7f7f"))
                allvals += vals
                ax.bar(xs, vals, width=width * 0.95, yerr=[lo, hi], color=colors, capsize=2,
                       alpha=1.0 - 0.6 * vi / max(1, len(variants) - 1) if len(variants) > 1 else 1.0,
                       edgecolor="black", linewidth=0.4, label=None if variant == "-" else variant)
            ax.set_xticks(range(len(servers)))
            ax.set_xticklabels(servers, fontsize=8)
            ax.set_title(MEASURE_LABELS.get(metric, metric), fontsize=9)
            if allvals and min(allvals) > 0 and max(allvals) > 30 * min(allvals):
                ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3)
            if len(variants) > 1:
                ax.legend(fontsize=7, title="variant (darker first)", title_fontsize=7)
        fig.suptitle(textwrap.fill(spec.title, width=int(fig.get_figwidth() * 13)), fontsize=9)
        fig.tight_layout()
        path = IMG_DIR / f"bench-{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append((name, f"img/{path.name}"))
    return out


HEADER = """# Benchmarks

hybrid against uvicorn (httptools + uvloop), granian and hypercorn (uvloop), serving the same raw ASGI apps
(`bench/apps/`), one worker process each. Generated by `python -m bench.report` from
{source} (each scenario from the newest run that has it; each section says which run, machine and versions);
rerun with `make bench` (about {minutes} minutes) or `make bench-quick` (plaintext and blocking mix,
under 2 minutes). How the suite works: `bench/README.md`.

**Method.** The server is pinned to one core and the load generator (wrk, or the open-loop generator
`bench/loadgen.c` for the fixed-load scenario) to the other; every scenario starts each server fresh, warms it
up, and interleaves the servers over the rounds (the order rotates each round). Numbers are medians over the
rounds; `±` is the spread, (max - min) / median. Ratios compare medians measured in the same run. Latencies in
the closed-loop scenarios are wrk's (from each request's send); the fixed-load scenario's are measured from each
request's scheduled time (coordinated omission corrected). The machine is a small shared VM: other work on it
shows up as spread, so read ratios, not absolute numbers, and compare only within one run.
"""


# A checkout's own path before its venvs (a run from another worktree than the report's).
_VENV_PREFIX = re.compile(r"(?<!\S)/\S*?/(?=(?:bench/)?\.venv(?:-peers)?/)")


def _rel(source: Path) -> Path:
    return source.relative_to(env.REPO_ROOT) if source.is_absolute() else source


def render(runs: list[tuple[Path, dict]], images: list[tuple[str, str]]) -> str:
    minutes = max(1, round(max(r.get("seconds", 600) for _, r in runs) / 60))
    parts = [HEADER.format(source=", ".join(f"`{_rel(f)}`" for f, _ in runs), minutes=minutes)]
    for source, result in runs:
        specs = load(list(result["scenarios"]))
        title = f"Run {result.get('date')}: " + ", ".join(specs[n].title.split(":")[0] for n in result["scenarios"])
        parts.append(f"## {title} (`{_rel(source)}`)\n")
        parts.append(results.markdown(result, heading_level=3))
        if result.get("notes"):
            parts.append("Notes from the run: " + "; ".join(result["notes"]) + "\n")
    if images:
        parts.append("## Plots\n")
        parts.append("Bars are medians, whiskers the min and max over the rounds.\n")
        for name, rel in images:
            parts.append(f"![{name}]({rel})\n")
    parts.append("## Exact commands\n")
    parts.append("Ports are chosen free per start; `SCRIPT.lua` is generated by `bench/wrk.py`.\n")
    parts.append("```")
    seen = set()
    for name, sc in ((n, sc) for _, r in runs for n, sc in r["scenarios"].items()):
        for key, c in sc["cases"].items():
            for cmd in c.get("commands", [])[:3]:
                cmd = _VENV_PREFIX.sub("", cmd.replace(str(env.REPO_ROOT) + "/", ""))
                if cmd not in seen:
                    seen.add(cmd)
                    parts.append(f"{name} {key}: {cmd}")
    parts.append("```\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        if os.environ.get("BENCH_REPORT_REEXEC"):
            raise SystemExit("matplotlib is missing in bench/.venv-peers") from e
        py = env.ensure_matplotlib_python()
        environ = dict(os.environ, BENCH_REPORT_REEXEC="1",
                       PYTHONPATH=str(env.REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return subprocess.run([py, "-m", "bench.report", *argv], cwd=env.REPO_ROOT, env=environ).returncode
    if argv:
        source = Path(argv[0]).resolve()
        runs = [(source, read(source))]
    else:
        runs = newest_per_scenario()
    images = [image for _, result in runs for image in plot(result)]
    env.DOCS_DIR.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(runs, images))
    print(f"wrote {DOC.relative_to(env.REPO_ROOT)} and {len(images)} plots from "
          f"{', '.join(f.name for f, _ in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
