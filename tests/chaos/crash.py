"""The crash test (issue 8, item 6): the whole system, workers SIGKILLed at random moments, compared
with the dry run.

    .venv/bin/python -m tests.chaos.crash --rounds 20 --seed 7       # make chaos CHAOS_ARGS="--seed 7"
    .venv/bin/python -m tests.chaos.crash --rounds 1 --seed 12       # round 5 of the run above alone

Each round is independent: a fresh ``Stack`` (as ``make run`` and tests/e2e start it) on an
embedded Apache Kafka of its own, its own mail sink and an injected clock (``OMBOARD_CLOCK_FILE``)
standing at ``T0``. A round

1. makes events of every type (``chaos_events``: valid histories of a few dozen providers, built
   with tests/factories.py, now and then one sent twice) and streams them through the intake API
   (``POST /v1/events`` with the upstream key) at a steady pace;
2. SIGKILLs workers (orgstructure, permissions, reporting, notifier) at moments drawn from the
   round's seed: after the n-th event, or seconds after a clock step, while tasks, requests and
   mails are in flight; each one is restarted after a short downtime (a kill that finds its
   worker still down waits until it is back);
3. waits until everything has settled: every worker ready, every consumer group committed up to
   the end offsets of the topics it reads, nothing written for a few seconds and, after a clock
   step, the deadline sweep run at the new time. The wait is bounded; a group whose commits do
   not move for ``--stall`` seconds while it lags is reported as stuck;
4. moves the clock in steps (``--steps``) to the reminder and escalation dates of the planned
   tasks, the last past every one of them, settling after each;
5. compares with the dry run, the planner run in-process over the same events as the services
   fold them (``dry_run``; plus the monthly service reports the clock steps open, and those a
   ServiceReportSubmitted opens):

   - **lost**: tasks the dry run plans that are not in the ledger (the status API,
     ``GET /v1/providers/{id}/tasks``), and of those, how many never reached a task topic;
   - **extra**: tasks in the ledger the dry run does not plan (a planned task again under another
     id counts as a duplicate task);
   - **duplicate mails**: copies beyond the first per (notification, recipient), from the mail
     sink's Message-IDs; allowed: one per notifier kill (the mail in flight);
   - **unsent**: notification requests on ``omboard.notifications`` with no mail at all.

The goal of a round: 0 lost, 0 extra, at most one duplicate mail per notifier kill, 0 unsent, no
mail to the fallback address for a provider that named a contact person (a request routed before
its contacts were known), and settled (nothing stuck). One summary line per round (with what missed the goal under it) and a
total line go to stdout; the exit code is 1 when any round missed the goal. Progress goes to
stderr; logs stay in the printed directory (a round that met the goal keeps only its logs).

Also reported, outside the goal: dead letters, and a worker that exited by itself (it is
restarted).

Deterministic given the seed: round i uses ``random.Random(seed + i - 1)`` for its events, the
workers killed and the moments; ``--seed S+i-1 --rounds 1`` runs that round alone. What the
services do in between is, of course, up to them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import itertools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from schemas.catalog import load_catalog
from schemas.events import SYSTEMS, ContactRole, Service, StaffRole
from schemas.notifications import NotificationRequest
from schemas.parsing import parse_event
from schemas.tasks import Task
from schemas.topics import (
    ALL_TOPICS,
    DEAD_LETTER_TOPICS,
    EVENTS,
    NOTIFICATIONS,
    SERVICES,
    TASK_STATUS,
    TASK_TOPICS,
)
from services.devtools.processes import free_port
from services.domain.mail import message_id
from services.domain.planner import Planner
from services.domain.state import ProviderState, evolve
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from tests import factories as f
from tests.support.kafka import Record, TopicReader
from tests.support.wait import eventually
from tests.support.workers import REPO

#: Where the injected clock stands while the events stream in. Every provider starts at least a
#: week later, so no service report of the month before T0 is due (its opening would depend on
#: when the reporting worker happened to sweep).
T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
#: Mail no contact of a provider was found for goes here (a name of its own, to tell it apart).
FALLBACK_EMAIL = "fallback@chaos.example.se"
#: What each service's consumer group reads (docs/events.md); topics a group has committed on
#: are added, so a changed consuming loop is still measured on everything it reads.
GROUP_INPUTS: dict[str, tuple[str, ...]] = {
    "orgstructure": (EVENTS,),
    "permissions": (EVENTS,),
    "reporting": (*TASK_TOPICS, TASK_STATUS, EVENTS),
    "notifier": (EVENTS, NOTIFICATIONS),
}
SWEEP_INTERVAL = 0.5
QUIET = max(3.0, 4 * SWEEP_INTERVAL)  # seconds with nothing written before a round counts as settled
_SWEEPS = re.compile(r"^omboard_reporting_sweep_duration_seconds_count (\S+)$", re.MULTILINE)

CARE_SERVICES: tuple[str, ...] = Service.__args__  # type: ignore[attr-defined]
STAFF_ROLES: tuple[str, ...] = StaffRole.__args__  # type: ignore[attr-defined]
CONTACT_ROLES: tuple[str, ...] = ContactRole.__args__  # type: ignore[attr-defined]
FIELD_GROUPS = ("Grupp A", "Grupp B", "Natt")

# -- the events -------------------------------------------------------------------------------------

FOLLOW_UPS = ("StaffJoined", "StaffRoleChanged", "StaffLeft", "ContactAssigned", "SubcontractorStarted",
              "SubcontractorEnded", "OrgChangeRequested", "UnitClosed", "ServiceReportSubmitted")
FOLLOW_UP_WEIGHTS = (6, 2, 2, 2, 1, 1, 1, 1, 2)
#: The first provider gets one of each, in an order where each applies, so every round has all ten.
EVERY_FOLLOW_UP = ("SubcontractorStarted", "StaffJoined", "StaffRoleChanged", "ContactAssigned", "OrgChangeRequested",
                   "ServiceReportSubmitted", "StaffLeft", "SubcontractorEnded", "UnitClosed")
REPLAY_SHARE = 0.03  # of the follow-ups: an earlier event of the provider sent again, same source and id
EVENTS_PER_PROVIDER = 8


class _History:
    """One provider's events, made in order, each referring to what the provider has at that point
    (its units, subcontractors and staff)."""

    def __init__(self, rng: random.Random, tag: str, number: int, next_id: Callable[[], str]):
        self.rng = rng
        self.tag = tag
        self.number = number
        self.id = f"{tag}-p{number:03d}"
        self.next_id = next_id
        self.start = T0.date() + dt.timedelta(days=rng.randint(7, 75))
        self.units: list[str] = []
        self.closed: list[str] = []
        self.subs: list[str] = []
        self.people: dict[str, str] = {}  # active person -> unit or subcontractor
        self.events: list[dict] = []
        self._serial = itertools.count(1)

    def _day(self, low: int, high: int) -> str:
        return (self.start + dt.timedelta(days=self.rng.randint(low, high))).isoformat()

    def _sent(self) -> dict[str, str]:
        """The event's id and the time it was sent: a few days before T0, so some orders are late."""
        day = T0.date() - dt.timedelta(days=self.rng.randint(0, 4))
        return {"event_id": self.next_id(), "time": f.at(day, hour=self.rng.randint(7, 16))}

    def _leave(self, place: str) -> None:
        self.people = {person: where for person, where in self.people.items() if where != place}

    def started(self) -> dict:
        rng = self.rng
        units = [f.unit(f"{self.id}-u{n}", staff_count=rng.randint(0, 60),
                        field_groups=rng.sample(FIELD_GROUPS, rng.randint(0, 2)))
                 for n in range(1, rng.randint(1, 3) + 1)]
        self.units = [unit["id"] for unit in units]
        # A provider-wide contact person always: no mail of this provider needs the fallback address.
        contacts = [f.contact("kontaktperson", name="Kim Kontakt", email=f"{self.id}.kontakt@example.se")]
        for n in range(rng.randint(0, 2)):
            system = rng.choice(SYSTEMS)
            contacts.append(f.contact(rng.choice(CONTACT_ROLES), name=f"Alex Admin {n}",
                                      email=f"{self.id}.{system}{n}@example.se", system=system,
                                      unit_id=rng.choice([None, *self.units])))
        return f.provider_started(
            self.id, start_date=self.start.isoformat(), regi=rng.choice(["egen", "privat"]),
            services=rng.sample(CARE_SERVICES, rng.randint(1, 2)), hsl=rng.random() < 0.6,
            uses_flexite=rng.random() < 0.4,
            takeover_from=f"{self.tag}-old{self.number:03d}" if rng.random() < 0.25 else None,
            units=units, contacts=contacts, name=f"Omsorg {self.number} AB", org=f.org_number(self.number),
            **self._sent(),
        )

    def follow_up(self, kind: str) -> dict | None:
        """An event of ``kind``, or None when the provider has nothing it could be about."""
        rng, n = self.rng, next(self._serial)
        if kind == "StaffJoined":
            places = self.units + self.subs
            if not places:
                return None
            person, place = f.hsa_id(f"C{self.number:03d}P{n:03d}"), rng.choice(places)
            self.people[person] = place
            return f.staff_joined(self.id, unit_id=place, start_date=self._day(-10, 45), person_id=person,
                                  role=rng.choice(STAFF_ROLES), licensed=rng.random() < 0.5, name="Sam Personal",
                                  email=f"{self.id}.staff{n}@example.se", **self._sent())
        if kind == "StaffRoleChanged":
            if not self.people:
                return None
            return f.staff_role_changed(self.id, person_id=rng.choice(sorted(self.people)), role=rng.choice(STAFF_ROLES),
                                        licensed=rng.random() < 0.5, effective_date=self._day(10, 60), **self._sent())
        if kind == "StaffLeft":
            if not self.people:
                return None
            person = rng.choice(sorted(self.people))
            del self.people[person]
            return f.staff_left(self.id, person_id=person, end_date=self._day(20, 90), **self._sent())
        if kind == "ContactAssigned":
            system = rng.choice([None, *SYSTEMS])
            return f.contact_assigned(self.id, role=rng.choice(CONTACT_ROLES), name="Robin Roll",
                                      email=f"{self.id}.c{n}@example.se", system=system,
                                      unit_id=rng.choice([None, *self.units]), **self._sent())
        if kind == "SubcontractorStarted":
            sub = f"{self.id}-s{n}"
            self.subs.append(sub)
            return f.subcontractor_started(self.id, subcontractor_id=sub, name=f"Underleverantör {n} AB",
                                           org=f.org_number(500_000 + self.number * 100 + n % 100),
                                           start_date=self._day(0, 40), staff_count=rng.randint(1, 30), **self._sent())
        if kind == "SubcontractorEnded":
            if not self.subs:
                return None
            sub = rng.choice(self.subs)
            self.subs.remove(sub)
            self._leave(sub)
            return f.subcontractor_ended(self.id, subcontractor_id=sub, end_date=self._day(40, 120), **self._sent())
        if kind == "OrgChangeRequested":
            decided = self.start + dt.timedelta(days=rng.randint(-5, 30))
            return f.org_change_requested(
                self.id, change_id=f"{self.id}-ch{n}", size=rng.choice(["small", "large"]),
                decided_on=decided.isoformat(), effective_date=(decided + dt.timedelta(days=rng.randint(3, 60))).isoformat(),
                description="Ny enhet för nattpatrull", unit_ids=rng.sample(self.units, rng.randint(0, len(self.units))),
                **self._sent(),
            )
        if kind == "UnitClosed":
            if not self.units:
                return None
            unit = rng.choice(self.units)
            self.units.remove(unit)
            self.closed.append(unit)
            self._leave(unit)
            # Taken over by nobody, or by a provider that never starts here (its tasks have no
            # contacts, so their mail goes to the fallback address by design, not by a race).
            taker = None if rng.random() < 0.6 else f"{self.tag}-new{self.number:03d}"
            return f.unit_closed(self.id, unit_id=unit, closing_date=self._day(30, 150), taken_over_by=taker,
                                 **self._sent())
        if kind == "ServiceReportSubmitted":
            places = self.units + self.closed
            if not places:
                return None
            day = self.start + dt.timedelta(days=rng.randint(0, 70))
            following = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            return f.service_report_submitted(
                self.id, unit_id=rng.choice(places), month=f"{day.year:04d}-{day.month:02d}",
                submitted_on=(following + dt.timedelta(days=rng.randint(0, 8))).isoformat(), **self._sent(),
            )
        raise ValueError(f"unknown follow-up {kind!r}")

    def add(self, kind: str | None = None) -> None:
        """One more event: ``kind``, or a random one (now and then an earlier event again)."""
        if kind is None:
            if self.events and self.rng.random() < REPLAY_SHARE:
                self.events.append(copy.deepcopy(self.rng.choice(self.events)))
                return
            kind = self.rng.choices(FOLLOW_UPS, FOLLOW_UP_WEIGHTS)[0]
        event = self.follow_up(kind) or self.follow_up("StaffJoined") or self.follow_up("ContactAssigned")
        assert event is not None
        self.events.append(event)


def chaos_events(rng: random.Random, count: int, tag: str = "chaos") -> list[dict]:
    """``count`` valid events of every type: a ProviderStarted for each of ``count // 8``
    providers and their follow-ups, the providers' histories interleaved at random (each one's
    order kept). Event ids are unique but for the few events sent twice on purpose."""
    if count < 2 + len(EVERY_FOLLOW_UP):
        raise ValueError(f"at least {2 + len(EVERY_FOLLOW_UP)} events, to have every type")
    serial = itertools.count(1)
    histories = [_History(rng, tag, n, lambda: f"{tag}-e{next(serial):05d}")
                 for n in range(1, max(2, count // EVENTS_PER_PROVIDER) + 1)]
    for history in histories:
        history.events.append(history.started())
    for kind in EVERY_FOLLOW_UP:
        histories[0].add(kind)
    for _ in range(count - len(histories) - len(EVERY_FOLLOW_UP)):
        rng.choice(histories).add()
    queues = [deque(history.events) for history in histories]
    events = []
    while waiting := [queue for queue in queues if queue]:
        events.append(rng.choice(waiting).popleft())
    for event in events:
        parse_event(event)  # a bad event here is a bug of this generator, not of the services
    return events


# -- the dry run ------------------------------------------------------------------------------------


@dataclass
class DryRun:
    tasks: dict[str, Task]  # every task the services should record, by id
    states: dict[str, ProviderState]  # each provider's state after all events


def dry_run(events: Iterable[dict], planner: Planner) -> DryRun:
    """What the services make of ``events``, folded as they fold them (a replay is skipped, as the
    CLI's ``omboard plan`` does): every event's plan, and the tasks reporting opens: the
    service-report tasks a ServiceReportSubmitted names, and a held roster's."""
    tasks: dict[str, Task] = {}
    states: dict[str, ProviderState] = {}
    for raw in events:
        event = parse_event(raw)
        state = states.get(event.provider_id) or ProviderState(provider_id=event.provider_id)
        if state.has_processed(event):
            continue
        plan = planner.plan(event, state)
        after = evolve(state, event, plan, planner.catalog)
        for task in plan.tasks:
            tasks.setdefault(task.id, task)
        completed = planner.completions(event, state)
        month = getattr(event.data, "month", None)
        if completed and month is not None:
            for task in planner.plan_monthly_reports(after, month):
                if task.id in completed:
                    tasks.setdefault(task.id, task)
        for task in planner.held_roster_tasks(after, event):
            tasks.setdefault(task.id, task)
        states[event.provider_id] = after
    return DryRun(tasks, states)


def month_before(moment: dt.datetime, zone: str = "Europe/Stockholm") -> str:
    """The month whose service reports the first sweep at ``moment`` opens."""
    from zoneinfo import ZoneInfo

    today = moment.astimezone(ZoneInfo(zone)).date()
    return (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")


def monthly_reports(states: Iterable[ProviderState], months: Iterable[str], planner: Planner) -> dict[str, Task]:
    """The service-report tasks the sweep opens for ``months``, with every event already folded."""
    return {task.id: task for month in months for state in states
            for task in planner.plan_monthly_reports(state, month)}


def clock_steps(tasks: Iterable[Task], steps: int) -> list[dt.datetime]:
    """``steps`` moments after T0 spread over the reminder and escalation dates of ``tasks``, the
    last on the latest of them, so that by the end every reminder and escalation has fallen due."""
    dates = sorted({day for task in tasks for day in (*task.remind_on, *task.escalate_on) if day > T0.date()})
    if not dates:
        dates = [T0.date() + dt.timedelta(days=30)]
    picks = sorted({dates[max(0, round(len(dates) * n / steps) - 1)] for n in range(1, steps + 1)})
    return [dt.datetime.combine(day, dt.time(8, 0), tzinfo=dt.UTC) for day in picks]


def logical_key(task: Task | dict) -> tuple:
    """What a task is about, whatever its id: its rule, subject and the event that planned it."""
    value = task.model_dump(mode="json") if isinstance(task, Task) else task
    subject = value["subject"]
    return value["rule"], subject["provider_id"], subject.get("unit_id"), subject.get("person_id"), value["plan_id"]


# -- the kills --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    service: str
    phase: int  # 0: while the events stream in; n >= 1: after the clock's n-th step
    at: float  # phase 0: after this many events have been accepted; otherwise seconds after the step
    downtime: float  # seconds from the kill to the restart


def plan_kills(rng: random.Random, kills: int, events: int, steps: int, stream_share: float = 0.6) -> list[Kill]:
    """``kills`` kills of random workers: ``stream_share`` of them (on average) while the events
    stream in, the rest within three seconds after a clock step."""
    planned = []
    for _ in range(kills):
        service = rng.choice(SERVICES)
        u = rng.random()
        if steps == 0 or u < stream_share:
            phase, at = 0, float(int(u / (stream_share if steps else 1.0) * events))
        else:
            phase = min(steps, 1 + int((u - stream_share) / (1 - stream_share) * steps))
            at = round(rng.uniform(0.0, 3.0), 2)
        planned.append(Kill(service, phase, at, round(rng.uniform(0.2, 2.0), 2)))
    return sorted(planned, key=lambda kill: (kill.phase, kill.at))


# -- offsets ----------------------------------------------------------------------------------------


class Offsets:
    """End offsets of every topic and each service group's commits: one consumer and one admin
    client for the round, so a check is two requests rather than a consumer per partition."""

    def __init__(self, bootstrap: str):
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       allow_auto_create_topics=False)
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.partitions = [TopicPartition(topic, p) for topic in ALL_TOPICS
                           for p in sorted(self._consumer.partitions_for_topic(topic) or ())]

    def ends(self) -> dict[TopicPartition, int]:
        return dict(self._consumer.end_offsets(self.partitions))

    def committed(self, service: str) -> dict[TopicPartition, int]:
        found = self._admin.list_consumer_group_offsets(f"omboard-{service}")
        return {tp: meta.offset for tp, meta in found.items() if meta.offset is not None and meta.offset >= 0}

    def lag(self, ends: dict[TopicPartition, int]) -> tuple[dict[str, dict[str, int]], int]:
        """service -> topic -> records its group has not committed past (only where it lags), and
        the sum of every commit (to see progress)."""
        lagging: dict[str, dict[str, int]] = {}
        progress = 0
        for service in SERVICES:
            committed = self.committed(service)
            progress += sum(committed.values())
            reads = set(GROUP_INPUTS[service]) | {tp.topic for tp in committed if tp.topic in ALL_TOPICS}
            for tp, end in ends.items():
                behind = end - committed.get(tp, 0) if tp.topic in reads else 0
                if behind > 0:
                    topics = lagging.setdefault(service, {})
                    topics[tp.topic] = topics.get(tp.topic, 0) + behind
        return lagging, progress

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._consumer.close()
        with contextlib.suppress(Exception):
            self._admin.close()


def describe_lag(lagging: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"omboard-{service} lags " + ", ".join(f"{n} on {topic}" for topic, n in sorted(topics.items()))
                     for service, topics in sorted(lagging.items()))


# -- one round --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundConfig:
    index: int = 1
    seed: int = 1
    events: int = 240
    kills: int = 10
    steps: int = 3
    rate: float = 15.0  # events per second through the API
    partitions: int = 4
    settle_timeout: float = 120.0
    stall: float = 30.0
    keep: bool = False  # keep the broker's data and the mail of a round that met the goal
    rounds: int = 1  # of the run, for the summary line


@dataclass
class RoundResult:
    index: int
    seed: int
    rounds: int = 1
    events: int = 0
    event_types: int = 0
    expected: int = 0
    ledger: int = 0
    kills: Counter = field(default_factory=Counter)
    requests: int = 0
    mails: int = 0
    lost: list[str] = field(default_factory=list)
    never_planned: int = 0
    extra: list[str] = field(default_factory=list)
    duplicate_tasks: int = 0
    duplicate_mails: list[str] = field(default_factory=list)
    duplicate_mail_count: int = 0
    unsent: list[str] = field(default_factory=list)
    unknown_mails: list[str] = field(default_factory=list)  # mails for no requested notification
    fallback: list[str] = field(default_factory=list)
    dead_letters: Counter = field(default_factory=Counter)
    unsettled: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    settle_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    directory: Path | None = None

    @property
    def allowed_duplicate_mails(self) -> int:
        return self.kills["notifier"]

    def misses(self) -> list[str]:
        """What missed the goal, each naming what was lost (the first ten of each kind)."""
        misses = []
        if self.errors:
            misses.append("the round did not complete: " + "; ".join(self.errors))
        if self.lost:
            misses.append(f"{len(self.lost)} task(s) the dry run plans are not in the ledger "
                          f"({self.never_planned} of them never reached a task topic): " + _first(self.lost))
        if self.extra:
            misses.append(f"{len(self.extra)} task(s) in the ledger the dry run does not plan "
                          f"({self.duplicate_tasks} of them a planned task again under another id): " + _first(self.extra))
        if self.duplicate_mail_count > self.allowed_duplicate_mails:
            misses.append(f"{self.duplicate_mail_count} duplicate mail(s), more than the "
                          f"{self.allowed_duplicate_mails} allowed (one per notifier kill): " + _first(self.duplicate_mails))
        if self.unsent:
            misses.append(f"{len(self.unsent)} requested notification(s) never mailed: " + _first(self.unsent))
        if self.unknown_mails:
            misses.append(f"{len(self.unknown_mails)} mail(s) for no requested notification: " + _first(self.unknown_mails))
        if self.fallback:
            misses.append(f"{len(self.fallback)} mail(s) to the fallback address for a provider with a contact "
                          "person (routed before its contacts were known): " + _first(self.fallback))
        if self.unsettled:
            misses.append("not settled (stuck): " + "; ".join(self.unsettled))
        return misses

    @property
    def met(self) -> bool:
        return not self.misses()

    def summary(self) -> str:
        kills = ", ".join(f"{service} {self.kills[service]}" for service in SERVICES if self.kills[service])
        verdict = "ERROR" if self.errors else "OK" if self.met else "MISSED"
        return (
            f"round {self.index}/{self.rounds} seed {self.seed}: {self.events} events ({self.event_types} types), "
            f"{self.expected} tasks planned ({self.ledger} in the ledger), {sum(self.kills.values())} kills ({kills or 'none'}), "
            f"{self.requests} requests, {self.mails} mails | lost {len(self.lost)} "
            f"(never planned {self.never_planned}), extra {len(self.extra)}, "
            f"duplicate mails {self.duplicate_mail_count} (allowed {self.allowed_duplicate_mails}), "
            f"unsent {len(self.unsent)}, {'settled' if not self.unsettled else 'STUCK'} | "
            f"fallback {len(self.fallback)}, dead letters {sum(self.dead_letters.values())}"
            f"{', exited ' + str(len(self.exits)) if self.exits else ''} | {self.seconds:.0f}s {verdict}"
        )

    def details(self) -> list[str]:
        lines = self.misses()
        if self.dead_letters:
            lines.append("dead letters: " + "; ".join(f"{n}x {what}" for what, n in self.dead_letters.most_common(5)))
        if self.exits:
            lines.append("exited by themselves (restarted): " + "; ".join(self.exits))
        if self.directory is not None and not self.met:
            lines.append(f"logs: {self.directory / 'var' / 'log'}")
        return lines


def _first(items: list[str], n: int = 10) -> str:
    return "; ".join(items[:n]) + (f"; ... and {len(items) - n} more" if len(items) > n else "")


class Round:
    def __init__(self, config: RoundConfig, directory: Path, log: Callable[[str], None] | None = None):
        self.config = config
        self.directory = directory
        self.result = RoundResult(config.index, config.seed, config.rounds, directory=directory)
        self._began = time.monotonic()
        self._log = log if log is not None else lambda line: print(line, file=sys.stderr, flush=True)
        self.stack: Stack | None = None
        self.offsets: Offsets | None = None
        self.restarts: dict[str, float] = {}  # service -> when to start it again
        self.started_at: dict[str, float] = {}
        self.deferred: list[Kill] = []  # kills that found their worker down

    def say(self, message: str) -> None:
        wall = dt.datetime.now().strftime("%H:%M:%S.%f")[:-3]  # as in the services' logs, to match them up
        self._log(f"[round {self.config.index} {wall} +{time.monotonic() - self._began:5.1f}s] {message}")

    # -- the round ---------------------------------------------------------------------------------

    def run(self) -> RoundResult:
        config, result = self.config, self.result
        rng = random.Random(config.seed)
        planner = Planner(load_catalog())
        events = chaos_events(rng, config.events)
        planned = dry_run(events, planner)
        steps = clock_steps(planned.tasks.values(), config.steps)
        kills = plan_kills(rng, config.kills, len(events), len(steps))
        months = {month_before(T0)} | {month_before(step) for step in steps}
        expected = {**planned.tasks, **monthly_reports(planned.states.values(), sorted(months), planner)}
        result.events, result.event_types, result.expected = len(events), len({e["type"] for e in events}), len(expected)
        self.say(f"seed {config.seed}: {len(events)} events, {len(expected)} tasks in the dry run, "
                 f"{len(kills)} kills, clock steps {', '.join(str(s.date()) for s in steps)}")

        self.directory.mkdir(parents=True, exist_ok=True)
        clock = FileClock(self.directory / "now")
        clock.set(T0)
        self.stack = stack = Stack(
            var_dir=self.directory / "var", embedded="kafka", api_port=free_port(), partitions=config.partitions,
            sweep_interval=SWEEP_INTERVAL, clock_file=clock.path,
            extra_env={"OMBOARD_FALLBACK_EMAIL": FALLBACK_EMAIL},
        )
        try:
            stack.start()
            stack.wait_ready(timeout=120)
            assert stack.bootstrap is not None
            self.offsets = Offsets(stack.bootstrap)
            self.say(f"stack ready on {stack.bootstrap}")
            self.stream(events, [kill for kill in kills if kill.phase == 0])
            self.settle("after the events")
            for n, step in enumerate(steps, 1):
                mark = self.sweeps()
                clock.set(step)
                self.say(f"clock moved to {step.isoformat()}")
                self.kill_after_step([kill for kill in kills if kill.phase == n])
                self.settle(f"after clock step {n} ({step.date()})", sweeps_after=mark)
            self.compare(expected, planned)
        except Exception as error:  # noqa: BLE001 - the round's result says what went wrong
            result.errors.append(f"{type(error).__name__}: {error}")
            self.say(f"error: {error!r}")
        finally:
            if self.offsets is not None:
                self.offsets.close()
            stack.stop()
            result.seconds = time.monotonic() - self._began
            if result.met and not config.keep:
                for name in ("kafka", "data", "mail"):
                    shutil.rmtree(self.directory / "var" / name, ignore_errors=True)
        return result

    # -- kills and restarts ------------------------------------------------------------------------

    def fire(self, kill: Kill) -> None:
        assert self.stack is not None
        if kill.service in self.restarts or not self.stack.alive(kill.service):
            self.deferred.append(kill)  # down already: killed again once it is back
            return
        self.stack.kill(kill.service)
        self.result.kills[kill.service] += 1
        self.restarts[kill.service] = time.monotonic() + kill.downtime
        self.say(f"SIGKILL {kill.service} (kill {sum(self.result.kills.values())}); restart in {kill.downtime:.1f}s")

    def pump(self) -> None:
        """Restarts that are due, deferred kills whose worker is back, and workers that died by themselves."""
        assert self.stack is not None
        now = time.monotonic()
        for service, when in list(self.restarts.items()):
            if now >= when:
                del self.restarts[service]
                self.stack.restart(service)
                self.started_at[service] = now
        for kill in list(self.deferred):
            if (kill.service not in self.restarts and self.stack.alive(kill.service)
                    and now - self.started_at.get(kill.service, 0.0) >= 1.0):
                self.deferred.remove(kill)
                self.fire(kill)
        for name in list(self.stack.commands):
            process = self.stack.processes.get(name)
            if process is not None and process.poll() is not None:
                self.stack.processes.pop(name)
                self.result.exits.append(f"{name} (code {process.returncode})")
                self.say(f"{name} exited by itself with code {process.returncode}; starting it again in 1s")
                self.restarts[name] = now + 1.0  # a worker that cannot start is not restarted in a tight loop

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.pump()
            time.sleep(min(0.05, left))

    def kill_after_step(self, kills: list[Kill]) -> None:
        began = time.monotonic()
        for kill in kills:
            self.wait(began + kill.at - time.monotonic())
            self.fire(kill)

    # -- input -------------------------------------------------------------------------------------

    def stream(self, events: list[dict], kills: list[Kill]) -> None:
        assert self.stack is not None
        pending = deque(kills)
        began = time.monotonic()
        with httpx.Client(base_url=self.stack.api_url, headers=self.stack.auth("upstream"), timeout=10) as client:
            for n, event in enumerate(events):
                self.publish(client, event)
                while pending and pending[0].at <= n:
                    self.fire(pending.popleft())
                self.wait(began + (n + 1) / self.config.rate - time.monotonic())
        for kill in pending:
            self.fire(kill)
        self.say(f"{len(events)} events accepted by the intake API")

    def publish(self, client: httpx.Client, event: dict) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = client.post("/v1/events", json=event)
                if response.status_code == 202:
                    return
                if response.status_code != 503:
                    raise RuntimeError(f"the intake API answered {response.status_code} to {event['type']} "
                                       f"{event['id']}: {response.text[:300]}")
                why = response.text[:200]
            except httpx.TransportError as error:
                why = repr(error)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the intake API did not take {event['id']} for 60 s: {why}")
            self.wait(0.5)

    # -- settling ----------------------------------------------------------------------------------

    def sweeps(self) -> tuple[int | None, float | None]:
        """(the reporting worker's pid, how many deadline sweeps it has finished); None if unknown."""
        assert self.stack is not None
        process = self.stack.processes.get("reporting")
        pid = process.pid if process is not None else None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.stack.web_ports['reporting']}/metrics", timeout=2) as page:
                text = page.read().decode()
        except (urllib.error.URLError, OSError):
            return pid, None
        match = _SWEEPS.search(text)
        return pid, float(match.group(1)) if match else float("inf")  # no such metric: cannot tell, do not wait

    def swept_since(self, mark: tuple[int | None, float | None]) -> bool:
        """Whether the reporting worker has finished two sweeps since ``mark`` (so one began after it)."""
        pid, count = self.sweeps()
        if count is None:
            return False
        if pid != mark[0] or mark[1] is None:
            return count >= 2
        return count >= mark[1] + 2

    def settle(self, what: str, sweeps_after: tuple[int | None, float | None] | None = None) -> None:
        """Until every worker is ready, every group has committed up to the end of what it reads,
        nothing has been written for QUIET seconds (and the sweep has run since ``sweeps_after``);
        or, bounded, until it is clear it will not: recorded in ``result.unsettled``."""
        assert self.stack is not None and self.offsets is not None
        config = self.config
        began = time.monotonic()
        quiet_since = progress_at = began
        last_ends: dict | None = None
        last_progress: int | None = None
        lagging: dict[str, dict[str, int]] = {}
        waiting: list[str] = []
        while True:
            self.pump()
            now = time.monotonic()
            try:
                ends = self.offsets.ends()
                lagging, progress = self.offsets.lag(ends)
            except Exception as error:  # noqa: BLE001 - the broker is busy; ask again
                self.say(f"offsets not read ({error!r}); again")
                time.sleep(1)
                continue
            if ends != last_ends:
                last_ends, quiet_since = ends, now
            if progress != last_progress:
                last_progress, progress_at = progress, now
            try:
                waiting = self.stack.not_ready()
            except RuntimeError:
                continue  # a process exited just now: pump() starts it again
            busy = bool(self.restarts or self.deferred or waiting or lagging)
            swept = sweeps_after is None or self.swept_since(sweeps_after)
            if not busy and swept and now - quiet_since >= QUIET:
                self.result.settle_seconds.append(now - began)
                self.say(f"settled {what} in {now - began:.1f}s")
                return
            stalled = lagging and not waiting and not self.restarts and now - progress_at > config.stall
            if stalled or now - began > config.settle_timeout:
                why = (f"no commit for {now - progress_at:.0f}s while " if stalled else
                       f"after {now - began:.0f}s: ") + (describe_lag(lagging) or "nothing lags")
                if waiting:
                    why += f"; not ready: {', '.join(waiting)}"
                if not swept:
                    why += "; no deadline sweep since the clock moved"
                self.result.unsettled.append(f"{what}: {why}")
                self.say(f"NOT settled {what}: {why}")
                return
            time.sleep(0.5)

    # -- the comparison ----------------------------------------------------------------------------

    def read(self, *topics: str) -> list[Record]:
        """Every record of ``topics`` up to their current end."""
        assert self.stack is not None and self.offsets is not None and self.stack.bootstrap is not None
        total = sum(end for tp, end in self.offsets.ends().items() if tp.topic in topics)
        reader = TopicReader(self.stack.bootstrap, *topics)
        try:
            return list(reader.wait_for(lambda records: len(records) >= total, timeout=60,
                                        what=f"{total} records of {', '.join(topics)}"))
        finally:
            reader.close()

    def ledger(self) -> dict[str, dict]:
        """Task id -> the status API's view of it, over every provider's ledger."""
        assert self.stack is not None
        with httpx.Client(base_url=self.stack.status_url, headers=self.stack.auth("operator"), timeout=30) as client:
            def providers() -> list[dict] | None:
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get("/v1/providers")
                    if response.status_code == 200:
                        return response.json()["providers"]
                return None

            tasks: dict[str, dict] = {}
            for provider in eventually(providers, "the status API's providers", timeout=60):
                response = client.get(f"/v1/providers/{provider['id']}/tasks")
                response.raise_for_status()
                for task in response.json()["tasks"]:
                    tasks[task["id"]] = task
        return tasks

    def compare(self, expected: dict[str, Task], planned: DryRun) -> None:
        assert self.stack is not None and self.stack.mail is not None
        result = self.result
        ledger = self.ledger()
        result.ledger = len(ledger)
        on_topics: dict[str, dict] = {}
        for record in self.read(*TASK_TOPICS):
            with contextlib.suppress(ValueError, KeyError):
                task = json.loads(record.value or b"")
                on_topics.setdefault(task["id"], task)

        def about(task: Task | dict) -> str:
            value = task.model_dump(mode="json") if isinstance(task, Task) else task
            subject = value["subject"]
            return (f"{value['id']} ({value['obligation']} {value['system']}, provider {subject['provider_id']}"
                    f"{', unit ' + subject['unit_id'] if subject.get('unit_id') else ''}"
                    f"{', a person' if subject.get('person_id') else ''}, planned from {value['plan_id']})")

        lost = sorted(set(expected) - set(ledger))
        result.lost = [about(expected[task_id]) for task_id in lost]
        result.never_planned = sum(1 for task_id in lost if task_id not in on_topics)
        extra = sorted(set(ledger) - set(expected))
        planned_keys = {logical_key(task) for task in expected.values()}
        result.extra = [about(on_topics[task_id]) if task_id in on_topics else f"{task_id} ({ledger[task_id]['obligation']})"
                        for task_id in extra]
        result.duplicate_tasks = sum(1 for task_id in extra
                                     if task_id in on_topics and logical_key(on_topics[task_id]) in planned_keys)

        requests: dict[str, NotificationRequest] = {}
        for record in self.read(NOTIFICATIONS):
            with contextlib.suppress(ValueError):
                request = NotificationRequest.model_validate_json(record.value or b"")
                requests.setdefault(request.id, request)
        by_local = {_local(message_id(request, ["x@example.se"])): request for request in requests.values()}
        mails = self.stack.mail.snapshot()
        copies: Counter = Counter()
        for mail in mails:
            local = _local(str(mail["Message-ID"] or ""))
            for _, address in getaddresses([str(mail.get("To", ""))]):
                copies[(local, address.lower())] += 1
        result.requests, result.mails = len(requests), len(mails)
        result.duplicate_mail_count = sum(n - 1 for n in copies.values())
        result.duplicate_mails = [f"{local} to {address}: {n} copies" for (local, address), n in sorted(copies.items()) if n > 1]
        mailed = {local for local, _ in copies}
        result.unsent = [f"{request.id} ({request.kind} for {request.responsible} of provider {request.provider_id}, "
                         f"{len(request.tasks)} task(s))" for local, request in sorted(by_local.items()) if local not in mailed]
        result.unknown_mails = sorted({local for local in mailed if local not in by_local})
        started = {provider_id for provider_id, state in planned.states.items() if state.provider is not None}
        result.fallback = [f"{by_local[local].kind} {by_local[local].id} of provider {by_local[local].provider_id}"
                           for (local, address), _ in sorted(copies.items())
                           if address == FALLBACK_EMAIL and local in by_local and by_local[local].provider_id in started]
        for record in self.read(*DEAD_LETTER_TOPICS):
            reason = (record.headers.get("dlq_reason") or b"?").decode(errors="replace")
            result.dead_letters[f"{record.topic.rsplit('.', 1)[-1]}: {reason[:120]}"] += 1


def _local(message_id_header: str) -> str:
    """The notification part of ``<{notification id}.{recipient hash}@omboard>``."""
    return message_id_header.strip().strip("<>").rpartition("@")[0].rpartition(".")[0]


def run_round(config: RoundConfig, directory: Path, log: Callable[[str], None] | None = None) -> RoundResult:
    """One round on a stack of its own under ``directory``; everything it started is stopped."""
    return Round(config, directory, log).run()


# -- the run ----------------------------------------------------------------------------------------


def total_line(results: list[RoundResult]) -> str:
    def rounds_with(items: Callable[[RoundResult], int]) -> str:
        n = sum(1 for r in results if items(r))
        return f" in {n} round{'s' if n != 1 else ''}" if n else ""

    kills: Counter = Counter()
    for r in results:
        kills.update(r.kills)
    met = sum(1 for r in results if r.met)
    return (
        f"total: {len(results)} rounds, {sum(r.events for r in results)} events, "
        f"{sum(r.expected for r in results)} tasks planned, {sum(kills.values())} kills "
        f"({', '.join(f'{s} {kills[s]}' for s in SERVICES)}), {sum(r.mails for r in results)} mails | "
        f"lost {sum(len(r.lost) for r in results)}{rounds_with(lambda r: len(r.lost))}, "
        f"extra {sum(len(r.extra) for r in results)}{rounds_with(lambda r: len(r.extra))}, "
        f"duplicate mails {sum(r.duplicate_mail_count for r in results)} (allowed {kills['notifier']}), "
        f"unsent {sum(len(r.unsent) for r in results)}{rounds_with(lambda r: len(r.unsent))}, "
        f"stuck{rounds_with(lambda r: len(r.unsettled)) or ' in no round'}, "
        f"errors{rounds_with(lambda r: len(r.errors)) or ' in no round'} | "
        f"{met} of {len(results)} rounds met the goal"
    )


def main(argv: list[str] | None = None) -> int:
    defaults = RoundConfig()
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.crash",
        description="Kill workers at random while events stream in and the clock moves; compare with the dry run.",
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="round i uses seed+i-1 (default: a random seed, printed)")
    parser.add_argument("--events", type=int, default=defaults.events, help="events per round")
    parser.add_argument("--kills", type=int, default=defaults.kills, help="SIGKILLs per round")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="clock steps per round")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="events per second through the API")
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--settle-timeout", type=float, default=defaults.settle_timeout,
                        help="seconds to wait for the system to settle, each time")
    parser.add_argument("--stall", type=float, default=defaults.stall,
                        help="seconds without a commit while a group lags that count as stuck")
    parser.add_argument("--dir", type=Path, default=None, help="where rounds keep their logs (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep broker data and mail of rounds that met the goal")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    os.chdir(REPO)  # the workers run as python -m from the repository
    root = args.dir or Path(tempfile.mkdtemp(prefix="omboard-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"crash test: seed {seed} (rerun with --seed {seed}), {args.rounds} round(s) of {args.events} events, "
          f"{args.kills} kills and {args.steps} clock steps; logs in {root}", flush=True)
    results: list[RoundResult] = []
    try:
        for index in range(1, args.rounds + 1):
            config = RoundConfig(index=index, seed=seed + index - 1, events=args.events, kills=args.kills,
                                 steps=args.steps, rate=args.rate, partitions=args.partitions,
                                 settle_timeout=args.settle_timeout, stall=args.stall, keep=args.keep,
                                 rounds=args.rounds)
            result = run_round(config, root / f"round-{index:02d}")
            print(result.summary(), flush=True)
            for line in result.details():
                print(f"    {line}", flush=True)
            results.append(result)
    except KeyboardInterrupt:  # the round's stack is stopped already; say what the finished rounds showed
        print(f"interrupted after {len(results)} round(s)", flush=True)
        print(total_line(results), flush=True)
        return 130
    print(total_line(results), flush=True)
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
