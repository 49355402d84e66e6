"""Task status changes: from people (API, CLI) and from other systems (``omboard.task-status``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from schemas.events import Contract, Text
from schemas.tasks import TaskStatus

#: What a person or another system may set; ``blocked`` and ``open`` follow from prerequisites,
#: except that a failed task can be reopened.
SettableStatus = Literal["open", "done", "cancelled", "failed"]
SETTABLE_STATUSES: tuple[str, ...] = get_args(SettableStatus)


def _reason_for_failure(change: StatusRequest | TaskStatusChange):
    if change.status == "failed" and not change.reason:
        raise ValueError("reason: a failed task needs a reason")
    return change


class StatusRequest(Contract):
    """The body of ``POST /v1/tasks/{id}/status``."""

    status: SettableStatus
    reason: Annotated[Text, Field(max_length=1000)] | None = None
    #: Refused unless null: the history records the authenticated key's name, and a name the client
    #: chooses would let anyone write anyone into it. Null stays accepted because ``omboard task``
    #: sends ``"by": null`` when no ``--by`` is given. A note on who did the work goes in ``reason``.
    by: None = None

    @field_validator("by", mode="before")
    @classmethod
    def _no_client_chosen_name(cls, value: object) -> None:
        if value is not None:
            raise ValueError("is not accepted: the history records the API key's name; put a note in reason")
        return None

    @model_validator(mode="after")
    def _failed_needs_reason(self) -> StatusRequest:
        return _reason_for_failure(self)


class TaskStatusChange(Contract):
    """One change on ``omboard.task-status``, keyed by provider id."""

    id: Annotated[str, Field(min_length=1, max_length=200)]  # the change's own id, for de-duplication
    task_id: str
    provider_id: str
    status: SettableStatus
    reason: Annotated[Text, Field(max_length=1000)] | None = None
    by: Annotated[str, Field(min_length=1, max_length=200)]
    at: dt.datetime
    source: Annotated[str, Field(min_length=1, max_length=100)] = "api"

    @model_validator(mode="after")
    def _failed_needs_reason(self) -> TaskStatusChange:
        return _reason_for_failure(self)


class StatusEntry(Contract):
    """One line of a task's history: who moved it where, when, and why."""

    status: TaskStatus
    by: str
    at: dt.datetime
    reason: str | None = None
    change_id: str | None = None
