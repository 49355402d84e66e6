"""Planning: one event plus what is known about its provider, through the catalog, into tasks.

Pure: no I/O, no clock. The orgstructure and permissions services, the reporting service's
monthly reports and the ``omboard plan`` dry run all call the ``Planner``, so they cannot drift.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace

from schemas.catalog.model import HELD_ROSTER_TRIGGER, MONTHLY_SERVICE_REPORT, Catalog, Rule
from schemas.events import (
    Envelope,
    OrgChangeRequested,
    Person,
    ProviderStarted,
    ServiceReportSubmitted,
    StaffJoined,
    StaffLeft,
    StaffRole,
    StaffRoleChanged,
    StaffRosterConfirmed,
    StaffRosterReported,
    SubcontractorEnded,
    SubcontractorStarted,
    Unit,
    UnitClosed,
    UnitOpened,
)
from schemas.identifiers import pseudonym
from schemas.tasks import Holding, Plan, Task, Warning
from services.domain.calendar import BusinessCalendar
from services.domain.conditions import holds, person_facts, provider_facts, unit_facts
from services.domain.dependencies import link
from services.domain.ids import (
    month_bounds,
    month_of,
    monthly_plan_id,
    monthly_report_task_id,
    roster_task_id,
    task_id,
)
from services.domain.people import Leaving, places_taken, stands_for
from services.domain.roster import confirms
from services.domain.schedule import Schedule
from services.domain.scheduler import Prerequisite, Scheduler, judges_date
from services.domain.state import (
    StaffState,
    StateView,
    UnitState,
    event_key,
    planned_key,
    planned_rule_and_unit,
    processed_marker,
    unit_orders,
)
from services.domain.task_builder import Target, TaskBuilder, unit_target

UNIT_ALREADY_OPEN = "unit-already-open"
UNKNOWN_PERSON = "unknown-person"


class UnknownProvider(LookupError):
    """An event for a provider whose ProviderStarted has not been seen: nothing can be planned."""


def _staff_named(event: Envelope) -> list[tuple[str, Person]]:
    """The (unit id, person) pairs a start, a new unit or a joiner names."""
    data = event.data
    if isinstance(data, StaffJoined):
        return [(data.unit_id, data.person)]
    units = data.units if isinstance(data, ProviderStarted) else [data.unit] if isinstance(data, UnitOpened) else []
    return [(unit.id, person) for unit in units for person in unit.staff]


def _on_staff(state: StateView, person_id: str) -> bool:
    known = state.person(person_id)
    return known is not None and known.active


def _standing_for(event: Envelope, part: StaffJoined | StaffLeft | StaffRoleChanged) -> Envelope:
    """``event`` as the StaffJoined, StaffLeft or StaffRoleChanged it stands for in part (its ids,
    and so its tasks', stay the event's)."""
    return event.model_copy(update={"type": type(part).__name__, "data": part})


class Planner:
    def __init__(self, catalog: Catalog, calendar: BusinessCalendar | None = None):
        self.catalog = catalog
        self.calendar = calendar or BusinessCalendar(catalog.calendar.country, catalog.calendar.categories)
        self.schedule = Schedule(self.calendar)
        self.scheduler = Scheduler(catalog, self.schedule)
        self.builder = TaskBuilder(catalog, self.schedule)

    # -- the entry points --------------------------------------------------------------------------

    def plan(self, event: Envelope, state: StateView) -> Plan:
        known = state.facts
        if known.provider is None and not isinstance(event.data, ProviderStarted):
            raise UnknownProvider(f"no ProviderStarted seen for provider {event.provider_id!r}; cannot plan {event.type}")
        if isinstance(event.data, (StaffRosterReported, StaffRosterConfirmed)):
            return self._plan_roster(event, state)
        if isinstance(event.data, ProviderStarted):
            state = _WithProvider(state, event.data)
        if isinstance(event.data, UnitOpened) and (unit := state.unit(event.data.unit.id)) is not None and unit.active:
            return self._linked(event, [], [Warning(
                code=UNIT_ALREADY_OPEN, obligation="ST1",
                message=f"unit {unit.id} is open already: nothing is planned again (a unit that closed opens again)")], state)
        replanning = known.provider is not None and isinstance(event.data, ProviderStarted)
        tasks, warnings = self._planned(event, state, replanning=replanning)
        holdings: list[Holding] = []
        if replanning:  # a correction that names staff: they are among those the units' orders were for
            named = {person.id for _, person in _staff_named(event) if state.person(person.id) is None}
            tasks, holdings = places_taken(tasks, named, state, self.catalog)
        return self._linked(event, tasks, warnings, state, holdings, correcting=replanning)

    def _planned(self, event: Envelope, state: StateView, *, replanning: bool) -> tuple[list[Task], list[Warning]]:
        """The tasks of ``event``. Someone it names on another unit than theirs moves: they leave
        that one first (what they held there is cancelled) and join this one anew."""
        movers = {person.id for unit_id, person in _staff_named(event)
                  if (known := state.person(person.id)) is not None and known.active and known.unit_id != unit_id}
        tasks: list[Task] = []
        warnings: list[Warning] = []
        for person_id in sorted(movers):
            # Their last day on the old unit is the day before they start on this one.
            left = StaffLeft(provider_id=event.provider_id, person_id=person_id,
                             end_date=event.anchor_date - dt.timedelta(days=1))
            cancelled, said = self._tasks(_standing_for(event, left), state, replanning=False)
            tasks += cancelled
            warnings += [warning for warning in said if warning not in warnings]
        planned, said = self._tasks(event, Leaving(state, movers) if movers else state, replanning=replanning)
        return tasks + planned, warnings + [warning for warning in said if warning not in warnings]

    def _tasks(self, event: Envelope, state: StateView, *, replanning: bool) -> tuple[list[Task], list[Warning]]:
        # A ProviderStarted for a provider already running (a correction, or a resend under a new
        # id: ``replanning``) plans only what no earlier plan made; otherwise every task came
        # twice, new ids each.
        facts = {**provider_facts(state.facts), **self._event_facts(event, state)}
        # Once an event, not once a rule: a start of 300 units has some 50 unit rules.
        key, unit_targets = event_key(event), [unit_target(unit) for unit in self._units(event, state)]
        tasks: list[Task] = []
        warnings: list[Warning] = []
        for rule in self.catalog.rules_for(event.type):
            for target in self._targets(rule, event, state, unit_targets):
                if not holds(rule.when, {**facts, **target.facts}):
                    continue
                task = self._event_task(rule, event, state, target, key, takeover=facts["takeover"])
                if rule.quantity is not None and task.quantity == 0:
                    continue  # nothing to ask for (expert users of a unit with no staff)
                subject = task.subject
                if (replanning and subject.provider_id == state.provider_id
                        and state.planned_task(planned_key(rule.id, subject.unit_id, subject.person_id)) is not None):
                    continue
                tasks.append(task)
        data = event.data
        if isinstance(data, (StaffLeft, StaffRoleChanged)) and state.person(data.person_id) is None:
            warnings.append(Warning(code=UNKNOWN_PERSON, obligation="HO1", message=(
                f"{event.type} for person {pseudonym(data.person_id)}, whom omboard never knew: every access the "
                f"provider's staff can hold is cancelled ({len(tasks)} tasks); a roster names the person's unit")))
        return tasks, warnings

    def _linked(self, event: Envelope, tasks: list[Task], warnings: list[Warning], state: StateView,
                holdings: list[Holding] = (), *, correcting: bool = False) -> Plan:
        """The plan: ``tasks`` linked to what they wait for and dated as a schedule over that graph
        (``services.domain.scheduler``), with the warnings of orders too late and the verdict on the date."""
        linked = link(tasks, state, holdings, self.catalog)
        outside = {task_id: Prerequisite(*planned_rule_and_unit(key), due=state.planned_due(key))
                   for task_id, key in linked.outside.items()}
        timings = self.scheduler.timings(linked.tasks, event, outside)
        dated = self.scheduler.dated(linked.tasks, timings, event)
        for task in dated:
            late = self.schedule.late_warning(self.catalog.rule(task.rule), event, task)
            if late is not None and late not in warnings:
                warnings = [*warnings, late]
        judged = judges_date(event, dated, correcting=correcting)
        if judged and (verdict := self.scheduler.verdict(dated, timings, event, outside)) is not None:
            warnings = [*warnings, verdict]
        return Plan(event_id=event.id, catalog_version=self.catalog.version, tasks=dated, warnings=warnings,
                    holdings=list(holdings), judged_date=judged)

    # -- a roster: the joiners, movers and leavers it stands for -----------------------------------

    def _plan_roster(self, event: Envelope, state: StateView) -> Plan:
        roster = stands_for(event, state, self.catalog)
        warnings = list(roster.warnings)
        tasks: list[Task] = []
        for part in roster.parts:
            if isinstance(part, StaffLeft) and not _on_staff(state, part.person_id):
                continue  # left already (a confirmation after a later StaffLeft)
            planned, said = self._planned(_standing_for(event, part), state, replanning=False)
            tasks += planned
            warnings += [warning for warning in said if warning not in warnings]
        tasks, holdings = places_taken(tasks, roster.joiners, state, self.catalog)
        unique = list({task.id: task for task in tasks}.values())  # a unit's ticket once for all its managers
        return self._linked(event, unique, warnings, state, holdings)

    def plan_monthly_reports(self, state: StateView, month: str) -> list[Task]:
        """The month's service-report tasks (trigger ``MonthlyServiceReport``) for ``state``'s provider.

        One task per rule and unit that was open at the end of ``month`` (a unit closed during the
        month has its last report planned by the closure). Pure and repeatable: the ids depend on
        rule, provider, unit and month only.
        """
        known = state.facts
        if known.provider is None:
            return []
        last = month_bounds(month)[1]
        if known.start_date is not None and known.start_date > last:
            return []
        facts = provider_facts(known)
        tasks = []
        units = list(state.every_unit())
        for rule in self.catalog.rules_for(MONTHLY_SERVICE_REPORT):
            for unit in units:
                open_at_month_end = ((unit.active or (unit.closed_on is not None and unit.closed_on > last))
                                     and (unit.opened_on is None or unit.opened_on <= last))
                if not open_at_month_end or not holds(rule.when, {**facts, **unit_facts(unit)}):
                    continue
                due = self.schedule.due(rule, last)
                tasks.append(
                    self.builder.build(
                        rule,
                        state,
                        unit_target(unit),
                        owner=state.provider_id,
                        due=due,
                        id=monthly_report_task_id(rule.id, state.provider_id, unit.id, month),
                        plan_id=monthly_plan_id(month),
                        opened_on=last + dt.timedelta(days=1),  # opened once the month is over
                    )
                )
        return link(tasks, state, (), self.catalog).tasks

    def held_roster_tasks(self, state: StateView, event: Envelope) -> list[Task]:
        """The task of a roster that ``state`` (after ``event``, a StaffRosterReported) holds for an
        operator's word (trigger ``RosterHeld``). Opened by reporting, which sees the roster and its
        answer in order; its id depends on rule, provider and which roster it is only."""
        held, data = state.facts.held_roster, event.data
        if held is None or not isinstance(data, StaffRosterReported) or held.roster != processed_marker(event):
            return []
        tasks = []
        for rule in self.catalog.rules_for(HELD_ROSTER_TRIGGER):
            checklist = self.schedule.due(rule, held.as_of)
            due = max(checklist, self.schedule.after(event.time.date(), rule.takes))  # a roster of long ago: from now
            task = self.builder.build(rule, state, Target(), owner=state.provider_id, due=due,
                               id=roster_task_id(rule.id, state.provider_id, held.roster), plan_id=event.id,
                               opened_on=event.time.date())
            tasks.append(task.model_copy(update={"checklist_due": checklist}) if due != checklist else task)
        return tasks

    def completions(self, event: Envelope, state: StateView) -> list[str]:
        """The ids of the tasks ``event`` may complete, ``state`` being the provider's before it.

        A ServiceReportSubmitted completes the report task of its unit and month, the monthly one
        and the last one a closure planned (the closure's only when it planned that very month). A
        roster's confirmation, or a later roster, completes the task of the roster held. Each id is
        one that task has if it exists; the ledger holds the tasks that do."""
        data = event.data
        answering = [rule for rule in self.catalog.rules if event.type in rule.completed_by]
        if isinstance(data, ServiceReportSubmitted):
            return [monthly_report_task_id(rule.id, event.provider_id, data.unit_id, data.month) for rule in answering]
        held = state.facts.held_roster
        if held is None or (isinstance(data, StaffRosterConfirmed) and not confirms(data, held)):
            return []
        if isinstance(data, StaffRosterReported) and processed_marker(event) == held.roster:
            return []  # the held roster itself, seen again past the memory of events: still held
        return [roster_task_id(rule.id, event.provider_id, held.roster) for rule in answering]  # confirmed, or superseded

    monthly_report_task_id = staticmethod(monthly_report_task_id)

    # -- what a rule applies to --------------------------------------------------------------------

    def _event_facts(self, event: Envelope, state: StateView) -> dict:
        data = event.data
        # A running business taken over: at a start that says so, or a unit taken over; a joiner
        # at a provider that once started by a takeover is no takeover.
        takeover = {"takeover": (isinstance(data, ProviderStarted) and data.takeover_from is not None)
                    or (isinstance(data, UnitOpened) and data.taken_over_from is not None)}
        if isinstance(data, UnitClosed):
            return {**takeover, "ceases_entirely": data.taken_over_by is None}
        if isinstance(data, OrgChangeRequested):
            return {**takeover, "size": data.size, "org_change": True}
        if isinstance(data, StaffRoleChanged) and self._moves_responsibility(data, state):
            return {**takeover, "size": "small", "org_change": True}
        return takeover

    def _moves_responsibility(self, change: StaffRoleChanged, state: StateView) -> bool:
        before = state.person(change.person_id)
        managing = set(self.catalog.managing_roles)
        return (before is not None and before.active and before.role != change.role
                and bool({before.role, change.role} & managing))

    def _targets(self, rule: Rule, event: Envelope, state: StateView, unit_targets: list[Target]) -> Iterable[Target]:
        data = event.data
        if rule.scope == "provider":
            if isinstance(data, UnitOpened):  # what the provider did once at its start, now for this unit
                return [unit_target(data.unit)]
            if isinstance(data, StaffRoleChanged) and (person := state.person(data.person_id)) is not None:
                return [Target(unit_id=person.unit_id)]  # a move of responsibility, on the person's unit
            return [Target()]
        if rule.scope == "unit":
            if isinstance(data, StaffJoined):  # a unit's first staff: what it lacked for having none, once
                unit = state.unit(data.unit_id)
                once = unit is not None and unit.active and not state.planned_task(planned_key(rule.id, unit.id, None))
                return [replace(unit_target(unit), staff_count=max(unit.staff_count, 1))] if once else []
            return self._access(rule, unit_targets, state)
        if rule.scope == "subcontractor":
            if isinstance(data, SubcontractorStarted):
                targets = [Target(unit_id=data.subcontractor.id, staff_count=data.staff_count, places=data.staff_count)]
            elif isinstance(data, SubcontractorEnded):
                sub = state.facts.subcontractors.get(data.subcontractor_id)
                targets = [Target(unit_id=data.subcontractor_id, staff_count=sub.staff_count if sub else None)]
            else:
                targets = []
            return self._access(rule, targets, state)
        return self._person_targets(rule, event, state)

    def _access(self, rule: Rule, targets: list[Target], state: StateView) -> list[Target]:
        """A unit's access order is for the staff not known by name, and made only when there are
        some; its end cancels what the unit's order still covers, and only that (the people known
        by name are cancelled one by one). Other unit rules apply to every target."""
        if rule.access_for:  # a unit open already (a SubcontractorStarted again) keeps its order
            return [target for target in targets if target.places and not self._ordered(rule, target, state)]
        if not rule.revokes:
            return targets
        ends = []
        for target in targets:
            unit = state.unit(target.unit_id) if target.unit_id else None
            ended = self.catalog.rule(rule.revokes).access_for
            order = unit_orders(unit, state, self.catalog).get(ended) if unit else None
            if order is not None and order.places:
                ends.append(replace(target, places=order.places, revokes=order.task_id))
        return ends

    def _ordered(self, rule: Rule, target: Target, state: StateView) -> bool:
        unit = state.unit(target.unit_id) if target.unit_id else None
        return unit is not None and unit.active and rule.access_for in unit_orders(unit, state, self.catalog)

    def _units(self, event: Envelope, state: StateView) -> list[Unit | UnitState]:
        data = event.data
        if isinstance(data, ProviderStarted):
            return list(data.units)
        if isinstance(data, UnitOpened):
            return [data.unit]
        if isinstance(data, (UnitClosed, ServiceReportSubmitted)):
            unit = state.unit(data.unit_id)
            return [unit] if unit else []
        if isinstance(data, OrgChangeRequested):
            return [unit for uid in data.unit_ids if (unit := state.unit(uid)) is not None]
        return []

    def _person_targets(self, rule: Rule, event: Envelope, state: StateView) -> list[Target]:
        data = event.data
        if isinstance(data, (ProviderStarted, UnitOpened, StaffJoined)):
            return self._joining(rule, [(person.id, StaffState(unit_id=unit_id, role=person.role, licensed=person.licensed))
                                        for unit_id, person in _staff_named(event)], state)
        if isinstance(data, (StaffLeft, StaffRoleChanged)) and state.person(data.person_id) is None:
            # Never known: cancel whatever the provider's staff can hold, since nobody can say what they held.
            could_hold = rule.revokes and self._anyone_can_hold(self.catalog.rule(rule.revokes), state)
            return [Target(person_id=data.person_id)] if could_hold else []
        if isinstance(data, StaffRoleChanged):
            before = state.person(data.person_id)
            if before is None or not before.active:
                return []
            after = before.model_copy(update={"role": data.role, "licensed": data.licensed})
            after_facts = {**provider_facts(state.facts), **person_facts(after, state)}
            if rule.revokes:
                # Take away what was granted and no longer fits the new role.
                granted = self.catalog.rule(rule.revokes)
                if rule.revokes in before.grants and not holds(granted.when, after_facts):
                    return [self._person_target(data.person_id, after, state, revokes=before.grants[rule.revokes])]
                return []
            if rule.id in before.grants:
                return []  # kept: the grant still stands (or is revoked by its own rule above)
            if not rule.is_grant and (holds(rule.when, {**provider_facts(state.facts), **person_facts(before, state)})
                                      or state.planned_task(planned_key(rule.id, before.unit_id, data.person_id))):
                return []  # work the former role needed too, or done for the person before (a course taken)
            return [self._person_target(data.person_id, after, state)]
        # Everyone who leaves, by themselves or with their unit or subcontractor, loses every access.
        if not rule.revokes:
            return []
        leavers: list[tuple[str, StaffState]] = []
        if isinstance(data, StaffLeft):
            person = state.person(data.person_id)
            leavers = [(data.person_id, person)] if person and person.active else []
        elif isinstance(data, UnitClosed):
            leavers = [(pid, p) for pid, p in state.staff_in(data.unit_id) if p.active]
        elif isinstance(data, SubcontractorEnded):
            leavers = [(pid, p) for pid, p in state.staff_in(data.subcontractor_id) if p.active]
        return [self._person_target(pid, p, state, revokes=p.grants[rule.revokes]) for pid, p in leavers
                if rule.revokes in p.grants]

    def _joining(self, rule: Rule, joiners: list[tuple[str, StaffState]], state: StateView) -> list[Target]:
        """The people an event brings in, each once: someone already on the staff keeps the access
        they hold and the courses they took (a second StaffJoined, or a start that names them)."""
        if rule.revokes:
            return []
        targets = []
        for person_id, person in joiners:
            known = state.person(person_id)
            if known is not None and known.active and (
                    rule.id in known.grants if rule.is_grant
                    else state.planned_task(planned_key(rule.id, known.unit_id, person_id))):
                continue
            targets.append(self._person_target(person_id, person, state))
        return targets

    def _person_target(self, person_id: str, person: StaffState, state: StateView, revokes: str | None = None) -> Target:
        return Target(unit_id=person.unit_id, person_id=person_id, facts=person_facts(person, state), revokes=revokes)

    def _anyone_can_hold(self, grant: Rule, state: StateView) -> bool:
        """Whether some person of the provider, in some role, could have been given ``grant``."""
        facts = provider_facts(state.facts)
        with_subcontractors = (False, True) if state.facts.subcontractors else (False,)
        return any(
            holds(grant.when, {**facts, "role": role, "licensed": licensed, "subcontractor_staff": sub})
            for role in StaffRole.__args__ for licensed in (False, True) for sub in with_subcontractors
        )

    # -- one task ----------------------------------------------------------------------------------

    def _event_task(self, rule: Rule, event: Envelope, state: StateView, target: Target, key: str, *,
                    takeover: bool) -> Task:
        owner = self._owner(rule, event)
        anchor = self.schedule.anchor(rule, event)
        if rule.completed_by and target.unit_id is not None:
            # Month-keyed: the same id as the report task a ServiceReportSubmitted names.
            identity = monthly_report_task_id(rule.id, owner, target.unit_id, month_of(anchor))
        else:
            identity = task_id(key, rule.id, owner, target.unit_id, target.person_id)
        return self.builder.build(rule, state, target, owner=owner, due=self.schedule.due(rule, anchor), id=identity, plan_id=event.id,
                           takeover=takeover)

    def _owner(self, rule: Rule, event: Envelope) -> str:
        """Whose list the task goes on: the taking-over party's tasks are that provider's."""
        data = event.data
        if rule.responsible == "taking-over-provider" and isinstance(data, UnitClosed) and data.taken_over_by:
            return data.taken_over_by
        return event.provider_id

class _WithProvider:
    """``state`` as a ProviderStarted about to be folded in sees it: its provider and takeover."""

    def __init__(self, state: StateView, started: ProviderStarted):
        self._state = state
        self.provider_id = state.provider_id
        self.facts = state.facts.model_copy(update={"provider": started.provider, "takeover_from": started.takeover_from})

    def __getattr__(self, name: str):
        return getattr(self._state, name)
