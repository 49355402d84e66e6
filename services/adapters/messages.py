"""Domain values as the messages that carry them."""

from __future__ import annotations

from schemas.tasks import DateVerdict, Holding, Task
from schemas.topics import HOLDINGS, VERDICTS, task_topic
from schemas.wire import model_to_kafka
from services.runtime.streams import Outgoing


def task_message(task: Task, correlation: str) -> Outgoing:
    task = task.model_copy(update={"correlation_id": correlation})
    return Outgoing(task_topic(task.system), *model_to_kafka(task, task.subject.provider_id, correlation))


def holding_message(holding: Holding, correlation: str) -> Outgoing:
    """Keyed by the place, not the provider: ``omboard.holdings`` is compacted, one record a place
    (its partition is projected by the worker that holds that partition of the inputs)."""
    return Outgoing(HOLDINGS, *model_to_kafka(holding, holding.key, correlation))


def verdict_message(verdict: DateVerdict, correlation: str) -> Outgoing:
    """Keyed by the date's subject: ``omboard.verdicts`` is compacted, the latest verdict a subject."""
    return Outgoing(VERDICTS, *model_to_kafka(verdict, verdict.key, correlation))
