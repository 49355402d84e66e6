"""Embedded Apache Kafka: single-node or a small cluster of KRaft nodes on loopback.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` (``make setup`` copies the
broker and its run-time dependencies into ``build/kafka-<version>/``); Java 17 runs them. Each node
is broker and controller at once (combined mode), in its own process group, killed by the kernel
if its parent dies. A node keeps its log segments in ``data_dir``: give it a lasting folder
(``make run`` uses ``var/kafka``) and a restarted broker has every record it had.

Settings are Kafka's shipped defaults (``message.max.bytes`` and every other limit) except what
one machine needs: loopback listeners, internal topics replicated as far as there are nodes, no
initial rebalance delay (a test or demo consumer group would otherwise wait 3 s to form), and no
auto-created topics, as in ``deploy/``: every topic is created with its partition count first.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from services.devtools.processes import StartedInWith, die_with_parent, free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "deploy" / "kafka" / "pom.xml"

# One machine of 2 cores and 24 GB runs up to three nodes beside the services and the tests.
SINGLE_NODE_HEAP = "1g"
CLUSTER_NODE_HEAP = "512m"
# As the release's kafka-run-class.sh (KAFKA_JVM_PERFORMANCE_OPTS).
JVM_OPTIONS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
               "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true")

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="{log}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="file"/></Root>
    <!-- Every request and every state change: what the release's own config sends elsewhere. -->
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="state.change.logger" level="warn"/>
  </Loggers>
</Configuration>
"""


def kafka_version() -> str:
    """The pinned release: ``kafka.version`` in ``deploy/kafka/pom.xml``, the one place it is written."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise RuntimeError(f"{POM} names no <kafka.version>")
    return match.group(1).strip()


def default_libs() -> Path:
    return REPO / "build" / f"kafka-{kafka_version()}"


def find_java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def unavailable_reason(libs: Path | None = None) -> str | None:
    """Why Apache Kafka cannot run here, or None when it can."""
    if find_java() is None:
        return "no Java (install a JRE 17 and Maven, then make setup)"
    libs = libs or default_libs()
    if not any(libs.glob("kafka_2.13-*.jar")):
        return f"its jars are not in {libs} (make setup fetches them with Maven)"
    return None


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'
    (as Kafka's own ``Uuid.randomUuid``: the storage tool would read such an id as an option; seen
    in about one start in 64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class ApacheKafka(StartedInWith):
    """Apache Kafka in KRaft combined mode: ``nodes`` processes on 127.0.0.1.

    One node formats its storage as a standalone controller quorum (``--standalone``); several
    form a static quorum of all of them. ``data_dir`` None means a temporary folder, removed at
    stop; a given folder is formatted once and reused on every later start, ports included.
    """

    def __init__(self, data_dir: Path | None = None, *, nodes: int = 1, port: int | None = None,
                 log_path: Path | None = None, libs: Path | None = None, heap: str | None = None,
                 config: dict[str, str] | None = None) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.libs = libs or default_libs()
        self._temporary = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="omboard-kafka-")) if data_dir is None else data_dir
        self.log_path = log_path or self.data_dir / "broker.log"
        self.heap = heap or (SINGLE_NODE_HEAP if nodes == 1 else CLUSTER_NODE_HEAP)
        self.extra_config = config or {}
        self.nodes = self._layout(nodes, port)
        self.fresh = False  # set at start: True when the storage was formatted by this start
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    # -- layout and configuration -----------------------------------------------------------------

    def _layout(self, count: int, port: int | None) -> list[Node]:
        # Ports are kept beside the data, so that a restarted broker listens where it did and the
        # controller quorum, which records its voters' endpoints at format, still finds itself.
        # A broker port asked for wins (clients find it there); the controller's stays as recorded.
        ports_file = self.data_dir / "ports"
        recorded = []
        if ports_file.exists():
            recorded = [tuple(map(int, line.split())) for line in ports_file.read_text().split("\n") if line]
        if len(recorded) == count:
            chosen = [(port if i == 0 and port else p, c) for i, (p, c) in enumerate(recorded)]
        else:
            chosen = [(port if i == 0 and port else free_port(), free_port()) for i in range(count)]
        return [Node(i + 1, p, c, self.data_dir / f"node-{i + 1}") for i, (p, c) in enumerate(chosen)]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def _properties(self, node: Node) -> dict[str, str]:
        replicas = str(min(3, len(self.nodes)))
        min_isr = str(min(2, len(self.nodes)))
        quorum = {"controller.quorum.bootstrap.servers": f"127.0.0.1:{node.controller_port}"}
        if len(self.nodes) > 1:
            quorum = {"controller.quorum.voters": ",".join(
                f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)}
        return {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            **quorum,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.data_dir / "log"),
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            **self.extra_config,
        }

    def _write_config(self, node: Node) -> Path:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        path = node.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in self._properties(node).items()))
        log_config = node.data_dir / "log4j2.xml"
        log_config.write_text(_LOG4J2.format(log=self._node_log(node)))
        return path

    def _node_log(self, node: Node) -> Path:
        if len(self.nodes) == 1:
            return self.log_path
        return self.log_path.with_name(f"{self.log_path.stem}-{node.node_id}{self.log_path.suffix}")

    def _java(self, node: Node, main: str, *args: str) -> list[str]:
        java = find_java()
        if java is None:
            raise RuntimeError("cannot start Apache Kafka: no Java on this machine")
        return [java, f"-Xms{self.heap}", f"-Xmx{self.heap}", *JVM_OPTIONS,
                f"-Dlog4j2.configurationFile={node.data_dir / 'log4j2.xml'}",
                f"-Dkafka.logs.dir={self.log_path.parent}",
                "-cp", f"{self.libs}/*", main, *args]

    def _format(self, node: Node, cluster_id: str) -> None:
        config = self._write_config(node)
        standalone = ["--standalone"] if len(self.nodes) == 1 else []
        result = subprocess.run(
            self._java(node, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), *standalone),
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage in {node.data_dir} failed:\n{result.stdout}{result.stderr}")

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Self:
        if reason := unavailable_reason(self.libs):
            raise RuntimeError(f"cannot start Apache Kafka: {reason}")
        for node in self.nodes:
            self._refuse_taken_port(node)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.fresh = not all((node.data_dir / "log" / "meta.properties").exists() for node in self.nodes)
        if self.fresh:
            cluster_id = new_cluster_id()
            for node in self.nodes:
                shutil.rmtree(node.data_dir, ignore_errors=True)
                self._format(node, cluster_id)
        self.data_dir.joinpath("ports").write_text("".join(f"{n.port} {n.controller_port}\n" for n in self.nodes))
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                self.start_node(node.node_id)
            self.wait_ready(deadline - time.monotonic())
        except BaseException:
            self.stop(keep_data=True)  # keep the logs the error points to
            raise
        return self

    def _refuse_taken_port(self, node: Node) -> None:
        # Another listener on the port would answer our readiness probe as if it were this broker.
        for port in (node.port, node.controller_port):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError as error:
                    raise RuntimeError(f"cannot start Apache Kafka: port {port} is in use ({error})") from error

    def start_node(self, node_id: int) -> None:
        """Start one node (again): after ``kill_node``, it rejoins with the data it had."""
        node = self.nodes[node_id - 1]
        config = self._write_config(node)
        with self._node_log(node).open("ab") as log:  # the JVM's own output: warnings, crashes
            self._processes[node_id] = subprocess.Popen(
                self._java(node, "kafka.Kafka", str(config)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the launcher, which stops us in order
                preexec_fn=die_with_parent,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every running node is listening and the cluster's metadata names each of them."""
        deadline = time.monotonic() + timeout
        running = [node for node in self.nodes if node.node_id in self._processes]
        for node in running:
            self._wait_listening(node, deadline)
        while True:
            self._check_alive()
            try:
                admin = KafkaAdminClient(bootstrap_servers=[n.address for n in running], client_id="omboard-admin",
                                         request_timeout_ms=5_000)
                try:
                    brokers = {broker["node_id"] for broker in admin.describe_cluster()["brokers"]}
                finally:
                    admin.close()
                if brokers >= {node.node_id for node in running}:
                    return
                why = f"brokers {sorted(brokers)} registered"
            except KafkaError as error:
                why = repr(error)
            if time.monotonic() > deadline:
                raise self._fail(f"did not become ready in time ({why})")
            time.sleep(0.1)

    def _wait_listening(self, node: Node, deadline: float) -> None:
        # A cheap TCP poll first: kafka-python backs off for seconds after a refused connection.
        while True:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", node.port), timeout=0.5):
                return
            if time.monotonic() > deadline:
                raise self._fail(f"node {node.node_id} did not listen on {node.port} in time")
            time.sleep(0.05)

    def _check_alive(self) -> None:
        for node_id, process in self._processes.items():
            if process.poll() is not None:
                raise self._fail(f"node {node_id} exited with code {process.returncode}")

    def _fail(self, why: str) -> RuntimeError:
        logs = [self._node_log(node) for node in self.nodes]
        tail = "".join(log.read_text(errors="replace")[-1500:] for log in logs if log.exists())
        return RuntimeError(f"Apache Kafka on {self.bootstrap} {why}; logs {', '.join(map(str, logs))}:\n{tail}")

    def pid(self, node_id: int = 1) -> int:
        return self._processes[node_id].pid

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as when its machine dies."""
        process = self._processes.pop(node_id)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self, *, keep_data: bool = False) -> None:
        """SIGTERM every node at once (a controlled shutdown), SIGKILL what is left after 30 s."""
        processes, self._processes = list(self._processes.values()), {}
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            stop_process(process, None, 30)
        if self._temporary and not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

