"""A real server process under ``strace -f -yy`` (each traced call names its socket's addresses), for tests that
count the system calls a request costs on its own connection."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import Server


def strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


class TracedServer(Server):
    """The server started under strace, which writes the ``calls`` (strace's ``-e trace=`` list) to ``trace``."""

    def __init__(self, trace: Path, calls: str, *args: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trace = trace
        self.calls = calls

    @property
    def cmd(self) -> list[str]:
        return ["strace", "-f", "-qq", "-yy", "-e", f"trace={self.calls}", "-o", str(self.trace),
                sys.executable, "-m", "hybrid", *self.args]

    def stop_traced(self) -> None:
        """SIGTERM to the server itself (strace's child, by its PID): stopping strace alone would leave it."""
        children = [stat.parent.name for stat in Path("/proc").glob("[0-9]*/stat") if _parent(stat) == self.proc.pid]
        assert len(children) == 1, f"strace's children: {children}"
        subprocess.run(["kill", "-TERM", children[0]], check=True, timeout=10)
        self.proc.wait(30)


def _parent(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):  # (a process gone meanwhile)
        return None
