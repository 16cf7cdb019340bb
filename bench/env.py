"""The environment the suite runs in: paths, the peers' venv, wrk, versions, CPU facts."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# (BENCH_PEERS_VENV: another checkout's, e.g. from a git worktree that has none of its own)
PEERS_VENV = Path(os.environ.get("BENCH_PEERS_VENV") or BENCH_DIR / ".venv-peers")
PEERS_REQUIREMENTS = BENCH_DIR / "requirements-peers.txt"
RESULTS_DIR = BENCH_DIR / "results"
DOCS_DIR = REPO_ROOT / "docs"


def log(*parts: object) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def peers_bin(name: str) -> Path:
    return PEERS_VENV / "bin" / name


def hybrid_python() -> str:
    """The interpreter that has hybrid installed: the repo's .venv, else the one running the suite."""
    candidate = REPO_ROOT / ".venv" / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    return sys.executable


def _requirements_hash() -> str:
    return hashlib.sha256(PEERS_REQUIREMENTS.read_bytes()).hexdigest()[:16]


def ensure_peers_venv() -> None:
    """Create bench/.venv-peers and install the pinned peers, once per change of requirements-peers.txt."""
    marker = PEERS_VENV / ".requirements-hash"
    want = _requirements_hash()
    if peers_python().exists() and marker.exists() and marker.read_text().strip() == want:
        return
    log(f"installing the peers into {PEERS_VENV} (one-time, about a minute)")
    if not peers_python().exists():
        # The same base interpreter as the one running the suite (and hybrid): equal footing.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = [str(peers_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    proc = subprocess.run(pip + ["-r", str(PEERS_REQUIREMENTS)], capture_output=True, text=True)
    if proc.returncode != 0:
        log("pip failed:\n" + (proc.stdout + proc.stderr)[-3000:])
        raise SystemExit(f"could not install the peers into {PEERS_VENV}")
    marker.write_text(want + "\n")


def ensure_wrk() -> str:
    """Return the path of wrk, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if not shutil.which("apt-get"):
        raise SystemExit("wrk is missing and apt-get is not available: install wrk by hand")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    log("wrk is missing: apt-get install -y wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    ok = subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "wrk"], env=env).returncode == 0
    if not ok:
        subprocess.run(sudo + ["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "wrk"], env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


def compile_c_tool(name: str) -> str:
    """bench/NAME.c compiled into the peers' venv as bench-NAME (again only when the source is newer).

    Raises RuntimeError saying why when there is no C compiler or the build fails."""
    src = BENCH_DIR / f"{name}.c"
    exe = PEERS_VENV / "bin" / f"bench-{name}"
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return str(exe)
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError(f"no C compiler for bench/{name}.c")
    exe.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"could not compile bench/{name}.c: " + proc.stderr[-300:])
    return str(exe)


def ensure_loadgen() -> list[str]:
    """The open-loop generator: bench/loadgen.c compiled into the peers' venv, else the Python fallback."""
    try:
        return [compile_c_tool("loadgen")]
    except RuntimeError as exc:
        log(f"{exc}: using the Python open-loop generator (less precise above ~10k req/s)")
    return [str(peers_python()), "-m", "bench.loadgen"]


def ensure_matplotlib_python() -> str:
    """An interpreter that can import matplotlib (the peers' venv has it)."""
    try:
        import matplotlib  # noqa: F401

        return sys.executable
    except ImportError:
        ensure_peers_venv()
        return str(peers_python())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8],
        **speed_line(),
    }


def speed_line() -> dict:
    """How fast this machine runs Python, so that runs from different machines can be compared: hybrid's own
    per-request path in process (bench.request_path, no sockets to peers, no load generator) and a fixed
    pure-Python loop. Machines of the same kind differ up to 3x here; every req/s in the report scales with it."""
    out: dict = {}
    python = hybrid_python()
    try:
        text = subprocess.run([python, "-m", "bench.request_path", "--requests", "20000"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120).stdout
        out["request_path_us"] = float(text.split(" µs per request")[0].rsplit(" ", 1)[1])
    except (OSError, subprocess.TimeoutExpired, IndexError, ValueError):
        out["request_path_us"] = None
    loop = "import timeit; print(min(timeit.repeat('sum(i * i for i in range(100000))', number=10, repeat=5)))"
    try:
        text = subprocess.run([python, "-c", loop], capture_output=True, text=True, timeout=120).stdout
        out["python_loop_ms"] = round(float(text) * 100, 2)  # per run of the 100k-item loop
    except (OSError, subprocess.TimeoutExpired, ValueError):
        out["python_loop_ms"] = None
    return out


def _pkg_version(python: str, dist: str) -> str | None:
    code = (
        "import importlib.metadata as m, sys\n"
        "try: print(m.version(sys.argv[1]))\n"
        "except Exception: print('')\n"
    )
    try:
        out = subprocess.run(
            [python, "-c", code, dist], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


def versions() -> dict:
    hp = hybrid_python()
    pp = str(peers_python())
    out = {
        "hybrid": _pkg_version(hp, "hybrid-asgi"),
        "hybrid_python": hp,
        "hybrid_venv_fastapi": _pkg_version(hp, "fastapi"),
        "hybrid_venv_uvloop": _pkg_version(hp, "uvloop"),
        "hybrid_venv_httptools": _pkg_version(hp, "httptools"),
        "peers_python": pp,
    }
    for dist in ("uvicorn", "httptools", "uvloop", "granian", "hypercorn", "fastapi", "starlette", "pydantic",
                 "django", "litestar"):
        out[dist] = _pkg_version(pp, dist)
    try:
        out["wrk"] = subprocess.run(
            ["wrk", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        out["wrk"] = None
    try:
        out["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        out["git_commit"] = None
    return out
