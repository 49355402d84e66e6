"""Issue 3's scenarios: a history of events per kind of provider and change, the dry run of each,
and the checks that its tasks are right. ``tests/unit/test_scenarios.py`` runs them through the
services' handlers in memory; ``tests/e2e/test_scenarios.py`` checks on the real broker that the
services emit exactly the dry run."""

from __future__ import annotations

from schemas.catalog import load_catalog
from schemas.events import Envelope
from schemas.parsing import parse_event
from schemas.tasks import Plan
from services.domain.handover import takeover
from services.domain.planner import Planner, UnknownProvider
from services.domain.state import ProviderState, evolve
from tests import factories as f

CATALOG = load_catalog()
NURSE = f.hsa_id("SCN0001")


def scenario_events(name: str) -> list[dict]:
    p = f"scn-{name}"
    unit = f"{p}-u1"
    started = dict(start_date="2026-04-01", units=[f.unit(unit, staff_count=12, field_groups=["Grupp A"])])
    if name == "takeover":
        return [f.provider_started(p, regi="privat", services=["hemtjanst"], hsl=True, takeover_from="scn-old", **started)]
    if name == "egen-special-housing":
        return [f.provider_started(p, regi="egen", services=["sarskilt_boende"], hsl=True, uses_flexite=True, **started)]
    if name == "ceases":
        return [f.provider_started(p, uses_flexite=True, **started),
                f.staff_joined(p, unit_id=unit, person_id=NURSE, start_date="2026-03-20"),
                f.unit_closed(p, unit_id=unit, closing_date="2026-09-30")]
    if name == "taken-over":
        return [f.provider_started(p, **started),
                f.unit_closed(p, unit_id=unit, closing_date="2026-09-30", taken_over_by="scn-newcomer")]
    if name == "subcontractor":
        return [f.provider_started(p, **started),
                f.subcontractor_started(p, subcontractor_id=f"{p}-sub", start_date="2026-05-04"),
                f.staff_joined(p, unit_id=f"{p}-sub", person_id=f.hsa_id("SCN0002"), start_date="2026-05-04"),
                f.subcontractor_ended(p, subcontractor_id=f"{p}-sub", end_date="2026-10-30")]
    if name == "late-org-change":  # a large change reported a week after its decision, four weeks before its date
        return [f.provider_started(p, **started),
                f.org_change_requested(p, size="large", decided_on="2026-05-04", effective_date="2026-06-01",
                                       unit_ids=[unit], time="2026-05-11T10:00:00+02:00")]
    if name == "nurse":
        return [f.provider_started(p, uses_flexite=True, **started),
                f.staff_joined(p, unit_id=unit, person_id=NURSE, start_date="2026-04-01"),
                f.staff_role_changed(p, person_id=NURSE, role="omvardnadspersonal", licensed=False, effective_date="2026-06-01"),
                f.staff_left(p, person_id=NURSE, end_date="2026-08-31")]
    if name == "named-staff":  # a start that names two of twelve, and the unit's closure
        return [f.provider_started(p, start_date="2026-04-01", units=[f.unit(unit, staff_count=12, staff=[
                    f.person(NURSE), f.person(f.hsa_id("SCN0003"), role="omvardnadspersonal", licensed=False)])]),
                f.unit_closed(p, unit_id=unit, closing_date="2026-09-30")]
    if name == "roster":  # five people on a unit that counted four: four take its places, one is new; one leaves
        return [f.provider_started(p, start_date="2026-04-01", units=[f.unit(unit, staff_count=4)]),
                f.staff_roster_reported(p, as_of="2026-05-04", persons=[
                    f.roster_person(f.hsa_id(f"SCN1{i:03d}"), unit_id=unit) for i in range(5)]),
                f.staff_roster_reported(p, as_of="2026-06-01", persons=[
                    f.roster_person(f.hsa_id(f"SCN1{i:03d}"), unit_id=unit) for i in range(1, 5)])]
    if name == "roster-held":  # a roster that leaves out two of five is held until confirmed
        five = [f.person(f.hsa_id(f"SCN2{i:03d}")) for i in range(5)]
        return [f.provider_started(p, start_date="2026-04-01", units=[f.unit(unit, staff_count=5, staff=five)]),
                f.staff_roster_reported(p, as_of="2026-06-01", persons=[
                    f.roster_person(person["id"], unit_id=unit) for person in five[:3]]),
                f.staff_roster_confirmed(p, as_of="2026-06-01")]
    if name == "taken-over-by-known":  # a provider omboard knows takes over a running unit
        taker = f"{p}-taker"
        return [f.provider_started(taker, start_date="2026-04-01", units=[f.unit(f"{taker}-u1", staff_count=4)]),
                f.provider_started(p, start_date="2026-04-01", units=[f.unit(unit, staff_count=12, field_groups=["Grupp A"])]),
                f.unit_closed(p, unit_id=unit, closing_date="2026-09-30", taken_over_by=taker)]
    if name == "manager-move":  # a planner becomes the unit's manager: a move of responsibility
        manager = f.hsa_id("SCN3001")
        return [f.provider_started(p, uses_flexite=None, flexite="hsl_and_sol_lss", **started),
                f.staff_joined(p, unit_id=unit, person_id=manager, role="planerare", licensed=False, start_date="2026-04-01"),
                f.staff_role_changed(p, person_id=manager, role="enhetschef", licensed=False, effective_date="2026-09-01")]
    if name == "home-care-without-hsl":  # Prator's home-care category chosen, Flexite for HSL only
        return [f.provider_started(p, hsl=False, prator_home_care=True, uses_flexite=None, flexite="hsl", **started),
                f.staff_joined(p, unit_id=unit, person_id=f.hsa_id("SCN4001"), role="samordnare", licensed=False,
                               start_date="2026-04-01")]
    if name == "unknown-leaver":
        return [f.provider_started(p, **started), f.staff_left(p, person_id=f.hsa_id("SCN9999"), end_date="2026-08-31")]
    if name == "unit-opened":
        return [f.provider_started(p, **started),
                f.unit_opened(p, new_unit=f.unit(f"{p}-u2", staff_count=6), start_date="2026-08-03")]
    raise KeyError(name)


SCENARIOS = ("takeover", "egen-special-housing", "ceases", "taken-over", "subcontractor", "late-org-change", "nurse",
             "unit-opened", "named-staff", "roster", "roster-held", "unknown-leaver", "taken-over-by-known",
             "manager-move", "home-care-without-hsl")


def dry_run(events: list[dict]) -> list[dict]:
    """The tasks of every event of the history, folded as the services fold it."""
    return [task.model_dump(mode="json") for plan in plans_of(events)[0] for task in plan.tasks]


def plans_of(events: list[dict]) -> tuple[list[Plan], dict[str, ProviderState]]:
    """The plan of every event of the history, and each provider's state after it."""
    planned, states = planned_events(events)
    return [plan for _, plan in planned], states


def planned_events(events: list[dict]) -> tuple[list[tuple[Envelope, Plan]], dict[str, ProviderState]]:
    """Each event planned, with its plan, and each provider's state after the history; a unit taken
    over by a provider the history started is planned at the taker too, as orgstructure publishes
    it (``services.domain.handover``)."""
    planner = Planner(CATALOG)
    states: dict[str, ProviderState] = {}
    planned = []
    pending = [parse_event(raw) for raw in events]
    while pending:
        event = pending.pop(0)
        state = states.get(event.provider_id) or ProviderState(provider_id=event.provider_id)
        try:
            plan = planner.plan(event, state)
        except UnknownProvider:  # a taker never started: the services dead-letter it
            continue
        if (taken_over := takeover(event, state)) is not None:
            pending.insert(0, taken_over)
        states[event.provider_id] = evolve(state, event, plan, CATALOG)
        planned.append((event, plan))
    return planned, states


def tasks_for(emitted: dict, provider_id: str) -> list[dict]:
    return [t for t in emitted.values() if t["subject"]["provider_id"] == provider_id]
