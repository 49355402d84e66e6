"""Domain values as the messages that carry them."""

from __future__ import annotations

from schemas.tasks import Task
from schemas.topics import task_topic
from schemas.wire import model_to_kafka
from services.runtime.streams import Outgoing


def task_message(task: Task, correlation: str) -> Outgoing:
    task = task.model_copy(update={"correlation_id": correlation})
    return Outgoing(task_topic(task.system), *model_to_kafka(task, task.subject.provider_id, correlation))
