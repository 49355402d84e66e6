"""One service's worker as a real process, for tests that stop, kill and restart it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from services.devtools.processes import die_with_parent, free_port
from tests.support.wait import eventually

REPO = Path(__file__).resolve().parents[2]


def spawn_logged(command: list[str], env: dict[str, str], log_path: Path, *,
                 new_session: bool = False) -> subprocess.Popen:
    """A child process of the test, run from the repository, writing stdout and stderr to
    ``log_path``, and killed by the kernel if the test process dies first."""
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=new_session,
                                preexec_fn=die_with_parent)


class WorkerProcess:
    def __init__(self, service: str, env: dict[str, str], log_path: Path):
        self.service = service
        self.env = env
        self.log_path = log_path
        self.web_port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        # Free ports of its own, so a developer's `make run` or another test's worker is no obstacle.
        env = {**os.environ, **self.env, "OMBOARD_WEB_PORT": str(self.web_port), "OMBOARD_STATUS_PORT": str(free_port())}
        self.process = spawn_logged([sys.executable, "-m", "services.entrypoints.worker", self.service], env,
                                    self.log_path, new_session=True)
        eventually(lambda: self.process.poll() is not None or self._ready(), f"{self.service} to be ready", timeout,
                   explain=lambda: f"see {self.log_path}")
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.service} exited with {self.process.returncode}; see {self.log_path}")
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/readyz", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit, as when a machine dies."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
