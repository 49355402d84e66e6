"""Does Faust's ``exactly_once`` hold for our agents? Kill tests on Apache Kafka, with and without it.

    OMBOARD_BROKER_SESSION_TIMEOUT=6 .venv/bin/python -m tests.benchmarks.exactly_once   # ~5 min, 2 cores

Not collected by pytest. For each variant it starts a fresh embedded Apache Kafka (KRaft, one
node, temporary data directory, so runs never mix), creates every topic with 2 partitions, and runs
two kill scenarios with ``OMBOARD_PROCESSING_GUARANTEE`` set for every worker:

* **stack** (reporting and notifier killed): the whole system (``Stack``: the four workers, the
  API and a real SMTP sink), with an injected ``FileClock`` on a day when late-order notices and
  reminders are due. Wave 1: providers are published at a steady pace; once the reporting worker's
  reminders start to appear it is SIGKILLed and restarted. Wave 2: new providers; once their mail
  starts to arrive the notifier is SIGKILLed and restarted. Each wave ends when the notifier has
  caught up and nothing new has arrived for a few seconds.
* **planner** (orgstructure killed), afterwards on the same broker: one orgstructure worker;
  N ProviderStarted events (distinct providers) are published at a steady pace; when a third of
  them have tasks the worker is SIGKILLed, restarted with an empty data directory, and the run ends
  when its group has committed every event (or after a bounded wait; what is left uncommitted
  is counted).

Counted at the end, on the task topics and on ``omboard.notifications``, both with
``isolation_level="read_committed"`` (what a transactional reader sees, the figure that counts under
exactly_once) and ``read_uncommitted``: messages, distinct ids, ids seen more than once, and
transaction markers (offsets no record occupies: commit/abort markers, so 0 means nothing was
written in a transaction). The planner's expected task ids come from a dry run (``handle_event``),
so tasks lost are counted too. In mail: mails, duplicate Message-IDs, duplicate (recipient, subject).

Variants:

* ``at_least_once``: what runs in production.
* ``exactly_once``: the same code with ``OMBOARD_PROCESSING_GUARANTEE=exactly_once``.
* ``exactly_once+shim``: as above, but the workers run through this module (``worker SERVICE``),
  which replaces ``services.runtime.streams.changelogs_known`` with a version that reaches the aiokafka
  producer under exactly_once (there ``app.maybe_start_producer()`` returns Faust's
  TransactionManager, which has no ``_ensure_producer``). Nothing else changes: this shows what
  Faust's transactions do with our send path once the agents can start.

Each step has a bounded wait and the whole run has a time budget; every process is stopped in a
``finally`` (and dies with this one: ``die_with_parent``). Logs stay in the printed run directory.
A table goes to stdout, with the distinct error lines of the worker logs; the figures also go to
``<run dir>/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.catalog import load_catalog
from schemas.events import parse_event
from schemas.topics import ALL_TOPICS, EVENTS, NOTIFICATIONS, TASK_TOPICS
from schemas.wire import event_to_kafka
from services.orgstructure.app import SCOPES
from services.planning.handlers import handle_event
from services.planning.planner import Planner
from services.runtime.apache_kafka import ApacheKafka
from services.runtime.broker import create_topics, free_port
from services.runtime.clock import FileClock
from services.runtime.launcher import Stack
from services.runtime.streams import Received
from tests import factories
from tests.support.kafka import Record, TopicReader, committed_offset
from tests.support.workers import REPO, spawn_logged

PARTITIONS = 2
SESSION_TIMEOUT = "6"  # Apache Kafka refuses less than its group.min.session.timeout.ms (6 s)
WORKER_MODULE = "services.runtime.worker"
# Late-order notices and reminders fall due for providers starting on START_DATE.
NOW = dt.datetime(2027, 2, 10, 9, 0, tzinfo=dt.UTC)
START_DATE = "2027-03-01"
BUDGET = 570.0  # seconds for the whole run; a step that would start after it is skipped

_started = time.monotonic()


def left() -> float:
    return BUDGET - (time.monotonic() - _started)


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Variant:
    name: str
    guarantee: str
    shim: bool = False


VARIANTS = (
    Variant("at_least_once", "at_least_once"),
    Variant("exactly_once", "exactly_once"),
    Variant("exactly_once+shim", "exactly_once", shim=True),
)


# -- the shim: only for the exactly_once+shim variant, in the worker processes it starts -------------


async def _changelogs_known_any_guarantee(app: Any) -> None:
    """``streams.changelogs_known``, reaching the aiokafka producer through ``app.producer`` (a
    Faust Producer under either guarantee) instead of ``app.maybe_start_producer()``."""
    await app.producer.maybe_start()
    client = app.producer._ensure_producer()
    for table in app.tables.values():
        await client.partitions_for(table.changelog_topic.get_topic_name())


def run_shimmed_worker(service: str) -> None:
    from services.runtime import streams

    streams.changelogs_known = _changelogs_known_any_guarantee  # before the service modules import it
    from services.runtime.worker import run_service

    run_service(service)


def worker_command(service: str, shim: bool) -> list[str]:
    if shim:
        return [sys.executable, "-m", __spec__.name if __spec__ else "tests.benchmarks.exactly_once", "worker", service]
    return [sys.executable, "-m", WORKER_MODULE, service]


# -- processes ----------------------------------------------------------------------------------------


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def crashed_since(path: Path, offset: int) -> bool:
    """Whether the log says an agent crashed, after its first ``offset`` bytes."""
    if not path.exists():
        return False
    with path.open("rb") as file:
        file.seek(offset)
        return b"Crashed reason=" in file.read()


def wait_ready(checks: dict[str, tuple[str, Path]], processes: dict[str, subprocess.Popen], timeout: float,
               crash_grace: float = 15.0) -> str | None:
    """Until every ``name -> (readyz url, log)`` answers 200; None, or why not (a process exited, an
    agent keeps crashing for ``crash_grace`` seconds, or the timeout)."""
    deadline = time.monotonic() + min(timeout, max(left(), 5.0))
    offsets = {name: size(path) for name, (_, path) in checks.items()}  # a restarted worker appends
    first_crash: float | None = None
    while True:
        waiting = [name for name, (url, _) in checks.items() if not ready(url)]
        if not waiting:
            return None
        for name in waiting:
            process = processes.get(name)
            if process is not None and process.poll() is not None:
                return f"{name} exited with code {process.returncode}"
        crashed = [name for name in waiting if crashed_since(checks[name][1], offsets[name])]
        if crashed and first_crash is None:
            first_crash = time.monotonic()
        if first_crash is not None and time.monotonic() - first_crash > crash_grace:
            return f"not ready, agents crashing: {', '.join(crashed)}"
        if time.monotonic() > deadline:
            return f"not ready after {timeout:.0f}s: {', '.join(waiting)}"
        time.sleep(0.3)


def sigkill(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the whole group, no shutdown
        process.wait()


def terminate(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sigkill(process)


@dataclass
class BenchStack(Stack):
    """The launcher's Stack, able to run its workers through the shim and to kill and restart one."""

    shim: bool = False

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        if command[1:3] == ["-m", WORKER_MODULE]:
            command = worker_command(command[3], self.shim)
        super()._spawn(name, command, env)

    def kill(self, service: str) -> None:
        sigkill(self.processes.pop(service))

    def restart(self, service: str) -> None:
        self._spawn(service, [sys.executable, "-m", WORKER_MODULE, service],
                    {**self.env(), "OMBOARD_WEB_PORT": str(self.web_ports[service])})

    def checks(self, *services: str) -> dict[str, tuple[str, Path]]:
        return {s: (f"http://127.0.0.1:{self.web_ports[s]}/readyz", self.log_dir / f"{s}.log") for s in services}


# -- input ----------------------------------------------------------------------------------------


class Publisher(threading.Thread):
    """Publishes events to omboard.events at a steady pace, from a thread of its own."""

    def __init__(self, bootstrap: str, events: list[dict], per_second: float):
        super().__init__(daemon=True)
        self.bootstrap, self.events, self.per_second = bootstrap, events, per_second
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        try:
            began = time.monotonic()
            for n, raw in enumerate(self.events):
                key, value, headers = event_to_kafka(parse_event(raw))
                producer.send(EVENTS, key=key, value=value, headers=headers)
                self.sent = n + 1
                time.sleep(max(0.0, began + (n + 1) / self.per_second - time.monotonic()))
            producer.flush()
        except BaseException as error:  # noqa: BLE001 - reported by the scenario
            self.error = error
        finally:
            producer.close()


def providers(prefix: str, count: int, first_org: int) -> list[dict]:
    return [
        factories.provider_started(f"{prefix}-{n:03d}", start_date=START_DATE, org=factories.org_number(first_org + n),
                                   contacts=[factories.contact(email=f"{prefix}-{n:03d}@example.se")])
        for n in range(count)
    ]


# -- reading what was written --------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    values: list[dict]
    markers: int  # offsets that hold no record: transaction commit/abort markers (read_uncommitted)


def read_all(bootstrap: str, topics: Iterable[str], isolation: str, timeout: float = 30.0) -> Read:
    """Every record of ``topics`` from the beginning, as a reader with ``isolation`` sees it."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation,
                             allow_auto_create_topics=False)
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)  # the last stable offset, for read_committed
        values: list[dict] = []
        deadline, quiet_since = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=300)
            for batch in batches.values():
                values += [json.loads(record.value) for record in batch]
            if batches:
                quiet_since = time.monotonic()
            if all(consumer.position(tp) >= ends[tp] for tp in partitions):
                break
            if time.monotonic() - quiet_since > 5:  # positions may stop short of a trailing marker
                break
        return Read(values, sum(ends.values()) - len(values))
    finally:
        consumer.close()


def drain(reader: TopicReader, rounds: int = 10) -> list[Record]:
    """What has arrived since the last call (a few polls at most: under a steady flow a poll is
    never empty, and a trigger must not wait for the flow to end)."""
    fresh: list[Record] = []
    for _ in range(rounds):
        records = reader.poll()
        if not records:
            break
        fresh += records
    return fresh


def json_of(record: Record) -> dict:
    return json.loads(record.value or b"{}")


def duplicates(ids: Iterable[str]) -> tuple[int, int, int]:
    """(messages, distinct ids, ids seen more than once)."""
    counts = Counter(ids)
    return sum(counts.values()), len(counts), sum(1 for c in counts.values() if c > 1)


def uncommitted(bootstrap: str, group: str, topic: str) -> int:
    """How many offsets of ``topic`` lie past what ``group`` has committed."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    return sum(max(0, end - (committed_offset(bootstrap, group, topic, tp.partition) or 0)) for tp, end in ends.items())


def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    return uncommitted(bootstrap, group, topic) == 0


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + min(timeout, max(left(), 1.0))
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def error_lines(paths: Iterable[Path], limit: int = 12) -> list[str]:
    """The distinct ERROR/WARNING/Crashed lines of the worker logs, without timestamps, with counts.
    aiokafka's connection chatter (the broker going away at the end) is left out."""
    noise = ("Unable connect to node", "Unable to update metadata", "Failed fetch messages",
             "Unable to request metadata", "Marking the coordinator dead", "GroupCoordinatorNotAvailable",
             "Heartbeat failed", "OffsetCommit failed", "Coordinator", "NodeNotReadyError",
             "not found in cluster metadata", "Ignoring missing topic")
    counts: Counter[str] = Counter()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if not re.search(r" (ERROR|WARNING|CRITICAL) |Crashed reason=|Error:|Exception", line):
                continue
            if any(n in line for n in noise):
                continue
            text = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", "", line)
            text = re.sub(r"0x[0-9a-f]+|\b[0-9a-f]{8}-[0-9a-f-]{27}\b", "…", text)
            counts[f"{path.stem}: {text[:260]}"] += 1
    return [f"{n}x {text}" for text, n in counts.most_common(limit)]


# -- the scenarios ------------------------------------------------------------------------------------


@dataclass
class Result:
    variant: str
    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def stack_scenario(variant: Variant, bootstrap: str, run_dir: Path, per_wave: int) -> Result:
    result = Result(variant.name, "stack: reporting and notifier killed")
    clock = FileClock(run_dir / "now")
    clock.set(NOW)
    stack = BenchStack(var_dir=run_dir / "stack", bootstrap=bootstrap, api_port=free_port(), partitions=PARTITIONS,
                       session_timeout=float(SESSION_TIMEOUT), sweep_interval=0.5, clock_file=clock.path,
                       extra_env={"OMBOARD_PROCESSING_GUARANTEE": variant.guarantee}, shim=variant.shim)
    mails: list[Any] = []
    publisher: Publisher | None = None
    reader: TopicReader | None = None
    try:
        stack.start()
        services = tuple(stack.services)
        why = wait_ready(stack.checks(*services), stack.processes, timeout=90)
        if why:
            result.problems.append(f"stack: {why}")
            return result
        assert stack.mail is not None
        sink = stack.mail

        reader = TopicReader(bootstrap, NOTIFICATIONS)  # as they come, uncommitted ones too

        def reminders(prefix: str) -> int:
            drain(reader)
            return sum(1 for r in map(json_of, reader.records) if r["provider_id"].startswith(prefix)
                       and r["kind"] == "reminder")

        def mails_to(prefix: str) -> int:
            return sum(1 for m in sink.snapshot() if str(m.get("To", "")).startswith(prefix))

        quiet: dict[str, Any] = {"last": None, "since": 0.0}

        def settled() -> bool:
            """The notifier has read every request, and no request or mail came for 5 s."""
            drain(reader)
            now = (len(sink.snapshot()), len(reader.records))
            if now != quiet["last"]:
                quiet["last"], quiet["since"] = now, time.monotonic()
                return False
            return time.monotonic() - quiet["since"] >= 5 and caught_up(bootstrap, "omboard-notifier", NOTIFICATIONS)

        waves = (("w1", "reporting", reminders, "reminder requests"), ("w2", "notifier", mails_to, "mails"))
        for wave, service, trigger, what in waves:
            if left() < 60:
                result.problems.append(f"{wave}: skipped, out of time")
                break
            prefix = f"eos-{wave}"
            publisher = Publisher(bootstrap, providers(prefix, per_wave, 100 if wave == "w1" else 300), per_second=8)
            publisher.start()
            if not wait_for(lambda p=prefix, t=trigger: t(p) >= 10, timeout=60, interval=0.2):
                result.problems.append(f"{wave}: the kill trigger never came (fewer than 10 {what})")
            at_kill = trigger(prefix)
            stack.kill(service)
            log(f"{variant.name}: {service} SIGKILLed after {at_kill} {what}")
            result.figures[f"{what} when {service} was killed"] = at_kill
            time.sleep(1.0)
            stack.restart(service)
            why = wait_ready(stack.checks(service), stack.processes, timeout=60)
            if why:
                result.problems.append(f"{wave}: restarted {service} {why}")
            publisher.join(timeout=max(1.0, min(60.0, left())))
            if publisher.error:
                result.problems.append(f"{wave}: publishing failed: {publisher.error!r}")
            quiet["last"] = None
            if not wait_for(settled, timeout=60, interval=1.0):
                result.problems.append(f"{wave}: not settled within 60 s")
        mails = sink.snapshot()
        result.figures["requests the notifier left uncommitted"] = uncommitted(bootstrap, "omboard-notifier", NOTIFICATIONS)
    except Exception as error:  # noqa: BLE001 - the figures so far and the reason are the result
        result.problems.append(f"stack: {error!r}")
    finally:
        if publisher is not None:
            publisher.join(timeout=10)
        if reader is not None:
            reader.close()
        with contextlib.suppress(Exception):
            mails = mails or (stack.mail.snapshot() if stack.mail else [])
        stack.stop()
        result.errors = error_lines(sorted(stack.log_dir.glob("*.log")))

    ours = mails  # every mail of this stack is about its providers (KLK IT's go to the IT desk's address)
    total, distinct, dup_ids = duplicates(str(m["Message-ID"]) for m in ours)
    pairs = Counter((str(m["To"]), str(m["Subject"])) for m in ours)
    result.figures |= {
        "mails": total, "mails: dup Message-ID": dup_ids, "mails: extra copies": total - distinct,
        "mails: dup (recipient, subject)": sum(1 for c in pairs.values() if c > 1),
    }
    for isolation in ("read_committed", "read_uncommitted"):
        read = read_all(bootstrap, [NOTIFICATIONS], isolation)
        mine = [r for r in read.values if r["provider_id"].startswith("eos-")]
        n, d, dups = duplicates(r["id"] for r in mine)
        result.figures |= {f"notifications {isolation}": n, f"notifications {isolation}: dup ids": dups}
        if isolation == "read_uncommitted":
            result.figures["notifications: txn markers"] = read.markers
            result.figures["notifications: distinct"] = d
            # A Message-ID is <request id.recipient hash@omboard>: requests no mail was sent for.
            mailed = {str(m["Message-ID"]).strip("<>").rsplit(".", 1)[0] for m in ours}
            result.figures["requests never mailed"] = len({r["id"] for r in mine} - mailed)
    for name in ("omboard-reporting-ledgers-changelog", "omboard-notifier-sent-changelog"):
        with contextlib.suppress(Exception):
            result.figures[f"{name}: txn markers"] = read_all(bootstrap, [name], "read_uncommitted", 15).markers
    return result


def expected_tasks(events: list[dict]) -> set[str]:
    """The orgstructure task ids a dry run plans for ``events``, each a new provider."""
    planner = Planner(load_catalog())
    ids = set()
    for n, raw in enumerate(events):
        key, value, headers = event_to_kafka(parse_event(raw))
        outcome = handle_event(Received(EVENTS, 0, n, key, value, tuple(headers)), lambda _: None, planner, SCOPES)
        ids |= {task.id for task in outcome.tasks}
    return ids


def planner_scenario(variant: Variant, bootstrap: str, run_dir: Path, count: int) -> Result:
    result = Result(variant.name, "planner: orgstructure killed")
    prefix = "eos-plan"
    events = providers(prefix, count, 600)
    expected = expected_tasks(events)
    env = {**os.environ, "OMBOARD_KAFKA_BOOTSTRAP": bootstrap, "OMBOARD_PARTITIONS": str(PARTITIONS),
           "OMBOARD_BROKER_SESSION_TIMEOUT": SESSION_TIMEOUT, "OMBOARD_PROCESSING_GUARANTEE": variant.guarantee}
    logs = [run_dir / "orgstructure-1.log", run_dir / "orgstructure-2.log"]
    worker: subprocess.Popen | None = None
    publisher: Publisher | None = None
    tasks = TopicReader(bootstrap, *TASK_TOPICS)  # as they come, uncommitted ones too

    def start(n: int) -> str | None:
        nonlocal worker
        port = free_port()
        worker = spawn_logged(worker_command("orgstructure", variant.shim),
                              {**env, "OMBOARD_WEB_PORT": str(port), "OMBOARD_STATUS_PORT": str(free_port()),
                               "OMBOARD_DATA_DIR": str(run_dir / f"orgstructure-data-{n}")},
                              logs[n - 1], new_session=True)
        return wait_ready({"orgstructure": (f"http://127.0.0.1:{port}/readyz", logs[n - 1])},
                          {"orgstructure": worker}, timeout=60)

    plans: set[str] = set()  # the events with tasks on the topics so far

    def planned() -> int:
        plans.update(t["plan_id"] for t in map(json_of, drain(tasks)) if t["subject"]["provider_id"].startswith(prefix))
        return len(plans)

    try:
        if why := start(1):
            result.problems.append(f"orgstructure: {why}")
            return result
        publisher = Publisher(bootstrap, events, per_second=25)
        publisher.start()
        if not wait_for(lambda: planned() >= count // 3, timeout=60, interval=0.1):
            result.problems.append("the kill trigger never came (a third of the events planned)")
        result.figures["events planned at kill"] = planned()
        result.figures["events published at kill"] = publisher.sent
        sigkill(worker)
        log(f"{variant.name}: orgstructure SIGKILLed with {result.figures['events planned at kill']} of "
            f"{result.figures['events published at kill']} published events planned ({count} in all)")
        if why := start(2):
            result.problems.append(f"restarted orgstructure: {why}")
        publisher.join(timeout=max(1.0, min(60.0, left())))
        if publisher.error:
            result.problems.append(f"publishing failed: {publisher.error!r}")
        began = time.monotonic()
        done = wait_for(lambda: caught_up(bootstrap, "omboard-orgstructure", EVENTS), timeout=60, interval=1.0)
        result.figures["seconds to commit every event after restart"] = round(time.monotonic() - began, 1) if done else None
        if not done:
            result.problems.append("the restarted worker did not commit every event within 60 s (stuck?)")
        time.sleep(2)
        result.figures["events left uncommitted at the end"] = uncommitted(bootstrap, "omboard-orgstructure", EVENTS)
    except Exception as error:  # noqa: BLE001
        result.problems.append(f"planner: {error!r}")
    finally:
        if publisher is not None:
            publisher.join(timeout=10)
        terminate(worker)
        tasks.close()
        result.errors = error_lines(logs)

    result.figures["tasks expected (dry run)"] = len(expected)
    for isolation in ("read_committed", "read_uncommitted"):
        read = read_all(bootstrap, TASK_TOPICS, isolation)
        mine = [t for t in read.values if t["subject"]["provider_id"].startswith(prefix)]
        n, d, dups = duplicates(t["id"] for t in mine)
        result.figures |= {f"tasks {isolation}": n, f"tasks {isolation}: distinct": d,
                           f"tasks {isolation}: dup ids": dups,
                           f"tasks {isolation}: lost": len(expected - {t['id'] for t in mine})}
        if isolation == "read_uncommitted":
            result.figures["tasks: txn markers"] = read.markers
            result.figures["events planned"] = len({t["plan_id"] for t in mine})
    with contextlib.suppress(Exception):
        changelog = "omboard-orgstructure-providers-changelog"
        result.figures[f"{changelog}: txn markers"] = read_all(bootstrap, [changelog], "read_uncommitted", 15).markers
    return result


def run_variant(variant: Variant, root: Path, per_wave: int, plan_events: int) -> list[Result]:
    run_dir = root / variant.name
    run_dir.mkdir(parents=True)
    log(f"{variant.name}: starting Apache Kafka")
    kafka = ApacheKafka(log_path=run_dir / "broker.log")
    for attempt in range(3):
        try:
            kafka.start()
            break
        except RuntimeError as error:  # e.g. a random cluster id starting with "-", which StorageTool refuses
            if attempt == 2:
                return [Result(variant.name, "broker", problems=[f"Apache Kafka did not start: {error}"[:500]])]
    results: list[Result] = []
    try:
        create_topics(kafka.bootstrap, ALL_TOPICS, PARTITIONS)
        for scenario in (lambda: stack_scenario(variant, kafka.bootstrap, run_dir, per_wave),
                         lambda: planner_scenario(variant, kafka.bootstrap, run_dir, plan_events)):
            if left() < 45:
                results.append(Result(variant.name, "skipped", problems=["out of time"]))
                continue
            results.append(scenario())
            log(f"{variant.name}: {results[-1].scenario}: {results[-1].figures} {results[-1].problems}")
    finally:
        kafka.stop()
    return results


# -- the report ---------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    variants = list(dict.fromkeys(r.variant for r in results))
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        for key, value in r.figures.items():
            rows.setdefault(f"{r.scenario.split(':')[0]}: {key}", {})[r.variant] = value
    width = max([len(k) for k in rows] + [10])
    lines = [f"| {'figure':<{width}} | " + " | ".join(f"{v:>17}" for v in variants) + " |",
             f"|{'-' * (width + 2)}|" + "|".join("-" * 19 for _ in variants) + "|"]
    for key, values in rows.items():
        lines.append(f"| {key:<{width}} | " + " | ".join(f"{values.get(v, '-')!s:>17}" for v in variants) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:  # a worker process of the exactly_once+shim variant
        run_shimmed_worker(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="*", default=[v.name for v in VARIANTS], choices=[v.name for v in VARIANTS])
    parser.add_argument("--per-wave", type=int, default=40, help="providers per wave of the stack scenario")
    parser.add_argument("--plan-events", type=int, default=300, help="events of the planner scenario")
    args = parser.parse_args(argv)
    os.chdir(REPO)  # the workers run as python -m from the repository
    root = Path(tempfile.mkdtemp(prefix="omboard-eos-"))
    log(f"run directory (logs): {root}")
    results: list[Result] = []
    for variant in (v for v in VARIANTS if v.name in args.variants):
        if left() < 60:
            results.append(Result(variant.name, "skipped", problems=["out of time"]))
            continue
        results += run_variant(variant, root, args.per_wave, args.plan_events)
    (root / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(table(results))
    for r in results:
        if r.problems or r.errors:
            print(f"\n{r.variant} / {r.scenario}:")
            for problem in r.problems:
                print(f"  problem: {problem}")
            for line in r.errors:
                print(f"  log: {line}")
    print(f"\nlogs and results.json in {root}; {time.monotonic() - _started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
