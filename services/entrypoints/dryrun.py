"""The dry run behind ``omboard plan``: a file's events folded as the services fold them, the last one
planned by the same planner, and the plan as a table for a person to read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from schemas.events import Envelope
from schemas.identifiers import pseudonym
from schemas.parsing import FieldError
from services.domain.handover import takeover
from services.domain.planner import Planner, UnknownProvider
from services.domain.scheduler import DATE_AT_RISK, verdict_in
from services.domain.state import ProviderState, evolve


def fold_and_plan(events: Sequence[tuple[int, Envelope]], catalog: Any) -> Any:
    """Fold every event but the last into per-provider state, then plan the last one.

    Raises ``InvalidHistory`` naming the line of an event whose provider was never started (the
    services cannot plan it either).
    """

    planner = Planner(catalog)
    states: dict[str, ProviderState] = {}
    *history, (last_line, last) = events
    for line, event in history:
        state = states.get(event.provider_id) or ProviderState(provider_id=event.provider_id)
        if state.has_processed(event):
            continue  # a replay: the services skip it too
        try:
            plan = planner.plan(event, state)
        except UnknownProvider:
            raise InvalidHistory(line, _unknown_provider()) from None
        states[event.provider_id] = evolve(state, event, plan, catalog)
        # A unit taken over is planned at the taker too, as orgstructure publishes it; a taker never
        # started is dead-lettered by the services and left out here.
        taken_over = takeover(event, state)
        taker = states.get(taken_over.provider_id) if taken_over else None
        if taken_over is not None and taker is not None and taker.provider is not None:
            states[taker.provider_id] = evolve(taker, taken_over, planner.plan(taken_over, taker), catalog)
    state = states.get(last.provider_id) or ProviderState(provider_id=last.provider_id)
    try:
        return planner.plan(last, state)
    except UnknownProvider:
        raise InvalidHistory(last_line, _unknown_provider()) from None


def _unknown_provider() -> FieldError:
    return FieldError(
        field="data.provider_id", reason="no ProviderStarted for this provider earlier in the file; nothing to plan"
    )


class InvalidHistory(ValueError):
    def __init__(self, line: int, error: FieldError):
        self.line, self.error = line, error
        super().__init__(f"line {line}: {error}")


PLAN_COLUMNS = ("due", "checklist", "status", "system", "obligation", "action", "channel", "responsible", "unit", "person",
                "quantity")


def verdict_lines(plan: Any, event: Envelope | None = None) -> list[str]:
    """The plan's verdict on its date and the critical chain that decides it: what a reader of a
    dry run needs first. Without ``event``, only a verdict at risk is told."""
    verdict = verdict_in(plan)
    if verdict is None:
        if event is None or not plan.judged_date:
            return []
        return [f"verdict: {event.anchor_date.isoformat()} can be met: every task the checklist needs by then is due by then"]
    feasible = verdict.earliest_feasible.isoformat() if verdict.earliest_feasible else "not found"
    lines = [f"verdict: DATE AT RISK. {verdict.date.isoformat()} cannot be met; the earliest date that can is {feasible}",
             "critical chain:"]
    for number, step in enumerate(verdict.chain, 1):
        checklist = f" (checklist {step.checklist_due.isoformat()})" if step.checklist_due else ""
        unit = f" on {step.unit_id}" if step.unit_id else ""
        lines.append(f"  {number}. {step.due.isoformat()}{checklist}  {step.system} {step.action}{unit}")
    return lines


def plan_table(plan: Any, event: Envelope | None = None) -> str:
    """The plan for a person to read: the verdict on its date and the critical chain first, then
    the tasks in due order. People appear as pseudonyms, never by HSA-id."""

    rows = [
        (
            task.due.isoformat(),
            task.checklist_due.isoformat() if task.checklist_due else "-",
            task.status,
            task.system,
            task.obligation,
            task.action,
            task.channel,
            task.responsible,
            task.subject.unit_id or "-",
            pseudonym(task.subject.person_id) if task.subject.person_id else "-",
            "-" if task.quantity is None else str(task.quantity),
        )
        for task in sorted(plan.tasks, key=lambda task: (task.due, task.obligation, task.action))
    ]
    widths = [max(len(cell) for cell in column) for column in zip(PLAN_COLUMNS, *rows, strict=True)]

    def line(cells: Iterable[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    verdict = verdict_lines(plan, event)
    out = [
        f"plan of event {plan.event_id} (catalog version {plan.catalog_version}): {len(plan.tasks)} task(s)",
        *(["", *verdict] if verdict else []),
        "",
        line(PLAN_COLUMNS),
        line("-" * width for width in widths),
        *(line(row) for row in rows),
    ]
    if plan.holdings:
        out += ["", "places taken in the units' orders (nothing ordered for these):"]
        out += [f"  {pseudonym(holding.person_id)} on {holding.unit_id}: {holding.grant_rule} (task {holding.task_id})"
                for holding in plan.holdings]
    others = [warning for warning in plan.warnings if warning.code != DATE_AT_RISK]
    if others:
        out += ["", "warnings:"]
        out += [f"  {warning.code} {warning.obligation}: {warning.message}" for warning in others]
    return "\n".join(out)
