"""Child processes of the dev tooling (embedded brokers, PostgreSQL, workers of ``make run``)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from types import TracebackType
from typing import Self

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """``preexec_fn`` for child processes: the kernel SIGKILLs the child when its parent dies.

    Without it a crashed test run or ``omboard run`` leaves brokers and workers behind. The
    signal fires when the *thread* that spawned the child exits, so spawn from a long-lived
    thread (the main one), never from ``asyncio.to_thread``.
    """
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def stop_process(process: subprocess.Popen, sig: signal.Signals | None, timeout: float, *, group: bool = True) -> None:
    """Send ``sig`` (None: none, it was sent already) to ``process`` (its process group when
    ``group``), wait up to ``timeout`` seconds, then SIGKILL its group and reap it."""
    if process.poll() is None and sig is not None:
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if group else os.kill)(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class StartedInWith:
    """``with server:`` starts it and stops it after, whatever happened inside."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
