"""The topic registry: the one place topic names are written.

Every topic but two is keyed by provider id, so one provider's messages stay in order on one
partition. ``omboard.holdings`` is keyed by the place and ``omboard.verdicts`` by the date's
subject, both compacted (``COMPACTED``): each record must outlive any retention (a verdict only
the latest of its subject's), and the read model needs no order among them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.events import SYSTEMS, Envelope
from schemas.notifications import DeliveryRecord, NotificationRequest
from schemas.status import TaskStatusChange
from schemas.tasks import DateVerdict, Holding, Task

EVENTS = "omboard.events"
TASK_STATUS = "omboard.task-status"
NOTIFICATIONS = "omboard.notifications"
NOTIFICATIONS_SENT = "omboard.notifications.sent"
#: The places people took in their unit's access orders (``schemas.tasks.Holding``): the access
#: register's record of who holds what through a unit's order, projected into the read model.
HOLDINGS = "omboard.holdings"
#: Each plan's verdict on its date (``schemas.tasks.DateVerdict``: ``date-at-risk``, or met),
#: the latest per subject, projected into the read model for the status page.
VERDICTS = "omboard.verdicts"
_TASKS_PREFIX = "omboard.tasks."
_DEAD_LETTER_PREFIX = "omboard.deadletter."

SERVICES = ("orgstructure", "permissions", "reporting", "notifier")


def task_topic(system: str) -> str:
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}")
    return _TASKS_PREFIX + system


def dead_letter_topic(service: str) -> str:
    """Each consuming service has its own: one message can be poison to one service and fine to another."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    return _DEAD_LETTER_PREFIX + service


TASK_TOPICS: tuple[str, ...] = tuple(task_topic(system) for system in SYSTEMS)
DEAD_LETTER_TOPICS: tuple[str, ...] = tuple(dead_letter_topic(service) for service in SERVICES)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: type[BaseModel] | None  # None: the original message's bytes, whatever they were
    description: str


REGISTRY: tuple[TopicSpec, ...] = (
    TopicSpec(EVENTS, "provider id", Envelope, "Domain events, CloudEvents binary mode (ce_* headers, data as value)"),
    *(TopicSpec(name, "provider id", Task, f"Provisioning tasks for {name.removeprefix(_TASKS_PREFIX)}") for name in TASK_TOPICS),
    TopicSpec(TASK_STATUS, "provider id", TaskStatusChange, "Task status changes from people and other systems"),
    TopicSpec(HOLDINGS, "the place (Holding.key)", Holding, "Places people took in their unit's access orders (the access register); compacted"),
    TopicSpec(VERDICTS, "the date's subject (DateVerdict.key)", DateVerdict,
              "Each plan's verdict on its date (date-at-risk, or met), the latest per subject; compacted"),
    TopicSpec(NOTIFICATIONS, "provider id", NotificationRequest, "Requests to notify a responsible party"),
    TopicSpec(NOTIFICATIONS_SENT, "provider id", DeliveryRecord, "What the notifier sent, or failed to send"),
    *(TopicSpec(name, "as the original", None, "Messages a service could not process; reason in headers") for name in DEAD_LETTER_TOPICS),
)

ALL_TOPICS: tuple[str, ...] = tuple(spec.name for spec in REGISTRY)
#: Topics created compacted, and their config.
COMPACTED: tuple[str, ...] = (HOLDINGS, VERDICTS)
COMPACT = {"cleanup.policy": "compact"}
