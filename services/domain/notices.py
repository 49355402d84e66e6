"""Notification requests built from tasks: one line per task, one request per party."""

from __future__ import annotations

import datetime as dt

from schemas.notifications import NotificationKind, NotificationRequest, TaskLine
from schemas.tasks import Task


def task_line(task: Task) -> TaskLine:
    return TaskLine(
        task_id=task.id,
        obligation=task.obligation,
        system=task.system,
        action=task.action,
        due=task.due,
        channel=task.channel,
        instructions_sv=task.instructions.sv,
        instructions_en=task.instructions.en,
        where=task.instructions.where,
        unit_id=task.subject.unit_id,
        quantity=task.quantity,
        checklist_due=task.checklist_due,
        responsible=task.responsible,
    )


def earliest_due_first(task: Task) -> tuple:
    """The order of tasks in a notification (and so in the id derived from them)."""
    return task.due, task.system, task.id


def notification_about(tasks: list[Task], *, notification_id: str, kind: NotificationKind, provider_id: str,
                       party: str, at: dt.datetime, correlation: str | None) -> NotificationRequest:
    """One notification listing ``tasks``, earliest due first; it names a system or unit only
    when every task shares it (the notifier routes each line by its own system and unit)."""
    tasks = sorted(tasks, key=earliest_due_first)
    first = tasks[0]
    return NotificationRequest(
        id=notification_id,
        kind=kind,
        provider_id=provider_id,
        provider_name=first.provider_name,
        responsible=party,  # type: ignore[arg-type]
        system=first.system if len({t.system for t in tasks}) == 1 else None,
        unit_id=first.subject.unit_id if len({t.subject.unit_id for t in tasks}) == 1 else None,
        tasks=[task_line(t) for t in tasks],
        requested_at=at,
        correlation_id=correlation,
    )
