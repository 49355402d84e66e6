"""The whole system as one command: broker, database, mail sink, every service and the API (``make run``).

``Stack`` is also what the end-to-end tests start, so the demo and the tests run the same thing.
It makes its own API keys at start (an operator, an upstream key for every event type, and a
provider-admin key for the demo provider; tests add more with ``add_key``) and hands their hashes
to every process in ``OMBOARD_API_KEYS``. They are demo keys: printed, and gone when it stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schemas.events import EVENT_TYPES
from schemas.topics import ALL_TOPICS, COMPACT, COMPACTED, SERVICES
from services.devtools.embedded import Broker, BrokerKind, Choice, choose, embedded_broker
from services.devtools.mailsink import MailSink
from services.devtools.postgres import EmbeddedPostgres
from services.devtools.processes import die_with_parent, free_port
from services.http.access import ApiKey, Role, generate_key, key_entry, keys_json
from services.runtime.broker import create_topics


@dataclass
class Stack:
    var_dir: Path
    bootstrap: str | None = None  # None: start an embedded broker, its data under var_dir/kafka
    broker_port: int | None = None
    embedded: BrokerKind | None = None  # which embedded broker; None: Apache Kafka where it can run
    database_url: str | None = None  # the read model's PostgreSQL; None: an embedded one, under var_dir/postgres
    api_port: int = 8000
    smtp_port: int | None = None
    web_ports: dict[str, int] = field(default_factory=dict)
    partitions: int = 4
    replication_factor: int = 1  # of every topic, Faust's changelogs included
    # Apache Kafka refuses a consumer's session timeout under its group.min.session.timeout.ms (6 s
    # by default: InvalidSessionTimeoutError, and the worker waits forever); on Tansu the first
    # join waits about half of it.
    session_timeout: float = 6.0
    sweep_interval: float = 2.0
    clock_file: Path | None = None
    services: tuple[str, ...] = SERVICES
    extra_env: dict[str, str] = field(default_factory=dict)
    status_port: int | None = None  # the status API and page (in the reporting worker); None: a free port
    demo_provider: str = "demo-omsorg"  # gets a provider-admin key

    keys: dict[str, str] = field(default_factory=dict, init=False)  # key name -> the key itself
    key_entries: list[ApiKey] = field(default_factory=list, init=False)

    broker: Broker | None = field(default=None, init=False)
    broker_choice: Choice | None = field(default=None, init=False)
    database: EmbeddedPostgres | None = field(default=None, init=False)
    mail: MailSink | None = field(default=None, init=False)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)
    #: name -> how it was started (command, environment), for ``restart``
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.add_key("operator", "operator")
        self.add_key("upstream", "upstream", event_types=list(EVENT_TYPES))
        self.add_key(f"{self.demo_provider}-admin", "provider-admin", provider_id=self.demo_provider)

    def add_key(self, name: str, role: Role, **scope: object) -> str:
        """A new key for the stack's processes (call before ``start``); returns the key itself."""
        key = generate_key()
        self.key_entries.append(key_entry(name, key, role, **scope))  # type: ignore[arg-type]
        self.keys[name] = key
        return key

    def auth(self, name: str = "upstream") -> dict[str, str]:
        """The headers that present key ``name``."""
        return {"Authorization": f"Bearer {self.keys[name]}"}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def status_url(self) -> str:
        assert self.status_port is not None, "the status port is chosen at start"
        return f"http://127.0.0.1:{self.status_port}"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    def env(self) -> dict[str, str]:
        assert self.bootstrap is not None
        assert self.mail is not None
        assert self.database_url is not None
        env = {
            **os.environ,
            "OMBOARD_KAFKA_BOOTSTRAP": self.bootstrap,
            "OMBOARD_DATABASE_URL": self.database_url,
            "OMBOARD_PARTITIONS": str(self.partitions),
            "OMBOARD_REPLICATION_FACTOR": str(self.replication_factor),
            "OMBOARD_BROKER_SESSION_TIMEOUT": str(self.session_timeout),
            "OMBOARD_SWEEP_INTERVAL": str(self.sweep_interval),
            "OMBOARD_DATA_DIR": str(self.var_dir / "data"),
            "OMBOARD_SMTP_HOST": self.mail.host,
            "OMBOARD_SMTP_PORT": str(self.mail.port),
            "OMBOARD_API_PORT": str(self.api_port),
            "OMBOARD_STATUS_PORT": str(self.status_port),
            "OMBOARD_STATUS_PAGE_URL": self.status_url,  # mail links land on the status page
            "OMBOARD_API_KEYS": keys_json(self.key_entries),
            **self.extra_env,
        }
        if self.clock_file:
            env["OMBOARD_CLOCK_FILE"] = str(self.clock_file)
        return env

    def start(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.bootstrap is None:
                self.broker_choice = choose(self.embedded)
                self.broker = embedded_broker(self.broker_choice, self.var_dir / "kafka", port=self.broker_port,
                                              log_path=self.log_dir / "broker.log").start()
                self.bootstrap = self.broker.bootstrap
            # Every topic before any producer: an auto-created topic gets the wrong partition count.
            create_topics(self.bootstrap, [t for t in ALL_TOPICS if t not in COMPACTED], self.partitions,
                          self.replication_factor)
            create_topics(self.bootstrap, COMPACTED, self.partitions, self.replication_factor, configs=COMPACT)
            if self.database_url is None:
                self.database = EmbeddedPostgres(self.var_dir / "postgres", log_path=self.log_dir / "postgres.log").start()
                self.database_url = self.database.url
            self.mail = MailSink(self.var_dir / "mail", port=self.smtp_port).start()
            self.status_port = self.status_port or free_port()
            env = self.env()
            for service in self.services:
                port = self.web_ports.get(service) or free_port()
                self.web_ports[service] = port
                self._spawn(service, [sys.executable, "-m", "services.entrypoints.worker", service],
                            {**env, "OMBOARD_WEB_PORT": str(port)})
            self._spawn("api", [sys.executable, "-m", "services.entrypoints.cli", "api", "--port", str(self.api_port)], env)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.commands[name] = (command, env)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.processes[name] = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # Own session: Ctrl-C reaches only the launcher, which stops everything in order.
            start_new_session=True, preexec_fn=die_with_parent,
        )

    def kill(self, name: str) -> bool:
        """SIGKILL one process (its whole session), as when its machine dies: no shutdown, no last
        commit. True if it was running."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def restart(self, name: str) -> None:
        """Start a process again as it was started (the same command, environment and ports; its
        log is appended to)."""
        self._spawn(name, *self.commands[name])

    def stop_database(self) -> None:
        """Stop the embedded PostgreSQL (a fast shutdown) while everything else runs on."""
        if self.database is None:
            raise RuntimeError("the stack's database is not embedded (database_url was given)")
        self.database.stop()

    def start_database(self) -> None:
        """Start the embedded PostgreSQL again: the same data and the same port, so the same URL."""
        if self.database is None:
            raise RuntimeError("the stack's database is not embedded (database_url was given)")
        self.database.start()

    def readiness_urls(self) -> dict[str, str]:
        urls = {service: f"http://127.0.0.1:{port}/readyz" for service, port in self.web_ports.items()}
        urls["api"] = f"{self.api_url}/readyz"
        if "reporting" in self.services:  # served once the reporting worker has recovered its ledger
            urls["status"] = f"{self.status_url}/healthz"
        return urls

    def not_ready(self) -> list[str]:
        waiting = []
        for name, url in self.readiness_urls().items():
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}; see {self.log_dir / (name + '.log')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        continue
            except (urllib.error.URLError, OSError):
                pass
            waiting.append(name)
        return waiting

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while waiting := self.not_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(waiting)}; logs in {self.log_dir}")
            time.sleep(0.2)

    def stop(self) -> None:
        # The API first (no new input), then every worker at once, the database, the mail sink and the broker last.
        for group in (["api"], [name for name in self.processes if name != "api"]):
            stopping = [self.processes.pop(name) for name in group if name in self.processes]
            for process in stopping:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in stopping:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.database is not None:
            self.database.stop()
            self.database = None
            self.database_url = None  # a new start starts it again, on the same folder and port
        if self.mail is not None:
            self.mail.stop()
            self.mail = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
            self.bootstrap = None  # a new start starts the broker again

    @contextlib.contextmanager
    def running(self, timeout: float = 90.0) -> Iterator[Stack]:
        """Started and ready inside the block, stopped after it, whatever happens."""
        self.start()
        try:
            self.wait_ready(timeout=timeout)
            yield self
        finally:
            self.stop()

    def publish(self, event: dict) -> dict:
        request = urllib.request.Request(
            f"{self.api_url}/v1/events", data=json.dumps(event).encode(), method="POST",
            headers={"Content-Type": "application/json", **self.auth("upstream")},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def run_all() -> None:
    """``make run``: everything on the embedded broker, a demo provider, until Ctrl-C."""
    from services.devtools.demo import demo_events
    from services.runtime.settings import get_settings

    settings = get_settings()
    var_dir = Path("var").resolve()
    _, _, port = settings.kafka_bootstrap.rpartition(":")
    stack = Stack(var_dir=var_dir, broker_port=int(port), embedded=settings.embedded_broker,
                  database_url=settings.database_url, api_port=settings.api_port, smtp_port=settings.smtp_port,
                  web_ports={service: settings.web_port_base + i for i, service in enumerate(SERVICES)},
                  status_port=settings.status_port)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        print("omboard: starting the embedded broker, the database, the mail sink, the services and the API ...",
              flush=True)
        stack.start()
        assert stack.broker is not None and stack.broker_choice is not None
        print(f"omboard: broker: {stack.broker_choice.why}", flush=True)
        stack.wait_ready(timeout=90)
        if stack.broker.fresh:
            for event in demo_events():
                accepted = stack.publish(event)
                print(f"omboard: published demo {event['type']} {accepted['id']}", flush=True)
        else:
            print(f"omboard: kept every provider, task and mail record of the last run ({var_dir / 'kafka'}); "
                  "no demo published (make clean starts afresh)", flush=True)
        print(_summary(stack), flush=True)
        while not stopping.wait(1):
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"omboard: {name} stopped (code {process.returncode}); see {stack.log_dir}/{name}.log")
                    stopping.set()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nomboard: stopping ...", flush=True)
        stack.stop()
        print("omboard: stopped; nothing left running.", flush=True)


def _summary(stack: Stack) -> str:
    lines = [
        "",
        "omboard is running:",
        f"  {'Kafka: ' + (stack.broker_choice.description if stack.broker_choice else 'external'):<36} {stack.bootstrap}",
        f"  {'PostgreSQL (' + ('embedded' if stack.database else 'external') + ')':<36} "
        f"{_without_password(stack.database_url or '?')}",
        f"  intake API                           {stack.api_url}/v1/events  (docs: {stack.api_url}/docs)",
        f"  SMTP sink                            127.0.0.1:{stack.mail.port if stack.mail else '?'}",
        f"  status page and API                  {stack.status_url}/providers  (API: {stack.status_url}/docs)",
        f"  who holds what (the demo provider)   {stack.status_url}/providers/demo-omsorg/access",
    ]
    for service in stack.services:
        lines.append(f"  {service:<36} http://127.0.0.1:{stack.web_ports[service]}/readyz")
    lines += [
        "",
        "Demo API keys (made for this run only; sign in to the status page with one):",
        *(f"  {name:<36} {key}  ({entry.role})" for (name, key), entry in zip(stack.keys.items(), stack.key_entries, strict=True)),
        f"  e.g. curl -H 'Authorization: Bearer {stack.keys['operator']}' {stack.status_url}/v1/providers",
        f"       export OMBOARD_API_KEY={stack.keys['operator']}; .venv/bin/omboard task done TASK_ID",
        "",
        f"Mail arrives as files in {stack.var_dir / 'mail'} (reminders within a few seconds);",
        f"logs are in {stack.log_dir}. Publish more with: .venv/bin/omboard publish FILE",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines)


def _without_password(url: str) -> str:
    """A database URL (or libpq key=value string) fit to print: any password masked."""
    url = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)
