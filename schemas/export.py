"""The contract as JSON Schema files, for upstream teams that validate before they send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, create_model

from schemas.events import EVENT_TYPES, Envelope
from schemas.notifications import DeliveryRecord, NotificationRequest
from schemas.status import TaskStatusChange
from schemas.tasks import DateVerdict, Holding, Task
from schemas.topics import DEAD_LETTER_TOPICS, REGISTRY, TASK_TOPICS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _schema(model: type[BaseModel], description: str | None = None) -> dict[str, Any]:
    schema = model.model_json_schema()
    if description:
        schema["description"] = description
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def event_schema(event_type: str) -> dict[str, Any]:
    """The whole structured-mode envelope, with ``type`` fixed and ``data`` narrowed to its model."""
    data_model = EVENT_TYPES[event_type]
    narrowed = create_model(
        f"{event_type}Event",
        __base__=Envelope,
        type=(Literal[event_type], ...),  # type: ignore[valid-type]
        data=(data_model, ...),
    )
    return _schema(
        narrowed,
        f"A {event_type} event: a CloudEvents 1.0 envelope (structured mode) whose data is a {event_type}.",
    )


def export_schemas(directory: Path) -> list[Path]:
    documents: dict[str, Any] = {f"{event_type}.json": event_schema(event_type) for event_type in EVENT_TYPES}
    documents["envelope.json"] = _schema(Envelope, "Any omboard event: a CloudEvents 1.0 envelope (structured mode).")
    documents["task.json"] = _schema(Task)
    documents["notification-request.json"] = _schema(NotificationRequest)
    documents["delivery-record.json"] = _schema(DeliveryRecord)
    documents["task-status-change.json"] = _schema(TaskStatusChange)
    documents["holding.json"] = _schema(Holding)
    documents["date-verdict.json"] = _schema(DateVerdict)
    documents["asyncapi.json"] = asyncapi_document()
    documents["topics.json"] = [
        {
            "name": spec.name,
            "key": spec.key,
            "value": spec.value.__name__ if spec.value is not None else None,
            "description": spec.description,
        }
        for spec in REGISTRY
    ]
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in documents.items():
        path = directory / name
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


# -- AsyncAPI -----------------------------------------------------------------------------------

ASYNCAPI_VERSION = "3.0.0"
_REF = "#/components/schemas/{model}"

#: Who writes and who reads each kind of topic, for the operations section.
_FLOWS = {
    "events": ("intake API (events, roster confirmations), omboard publish, omboard roster confirm, upstream "
               "systems; orgstructure (a unit taken over, for the taker)", "orgstructure, permissions, reporting, notifier"),
    "holdings": ("permissions (a roster's people taking places in their units' orders)", "reporting (the read model)"),
    "verdicts": ("orgstructure (each plan's verdict on its date)", "reporting (the read model, the status page)"),
    "tasks": ("orgstructure, permissions, reporting (monthly service reports)", "reporting"),
    "task-status": ("the status API, other systems", "reporting"),
    "notifications": ("reporting, orgstructure, permissions (late-order notices; orgstructure: date-at-risk notices)",
                      "notifier"),
    "notifications-sent": ("notifier", "operators, audit"),
    "deadletter": ("each consuming service", "operators"),
}


def _channel_id(topic: str) -> str:
    return topic.removeprefix("omboard.").replace(".", "-")


def _flow(topic: str) -> tuple[str, str]:
    if topic in TASK_TOPICS:
        return _FLOWS["tasks"]
    if topic in DEAD_LETTER_TOPICS:
        return _FLOWS["deadletter"]
    return _FLOWS[_channel_id(topic)]


def asyncapi_document() -> dict[str, Any]:
    """The topics, their keys, headers and payloads as an AsyncAPI 3 document (JSON)."""
    schemas: dict[str, Any] = {}

    def payload(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": _REF.format(model=model.__name__)}

    correlation = {"type": "string", "description": "The correlation id every derived message carries on"}
    key = {"type": "string", "description": "The provider id: one provider's messages stay in order"}
    ce_headers = {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"],
        "properties": {
            **{f"ce_{name}": {"type": "string"} for name in ("specversion", "id", "source", "time", "subject")},
            "content-type": {"const": "application/json"},
            "omboard_correlation_id": correlation,
        },
    }
    messages: dict[str, Any] = {}
    for event_type, model in EVENT_TYPES.items():
        headers = {**ce_headers, "properties": {**ce_headers["properties"], "ce_type": {"const": event_type}}}
        messages[event_type] = {
            "name": event_type, "title": event_type, "contentType": "application/json",
            "summary": f"CloudEvent {event_type} in binary mode: attributes in ce_* headers, data as the value",
            "headers": headers, "payload": payload(model), "bindings": {"kafka": {"key": key}},
        }
    plain_headers = {"type": "object", "properties": {"omboard_correlation_id": correlation}}
    for model in (Task, TaskStatusChange, NotificationRequest, DeliveryRecord):
        messages[model.__name__] = {
            "name": model.__name__, "contentType": "application/json", "headers": plain_headers,
            "payload": payload(model), "bindings": {"kafka": {"key": key}},
        }
    messages["Holding"] = {
        "name": "Holding", "contentType": "application/json", "headers": plain_headers, "payload": payload(Holding),
        "bindings": {"kafka": {"key": {"type": "string", "description": "The place (Holding.key): compacted, one record a place"}}},
    }
    messages["DateVerdict"] = {
        "name": "DateVerdict", "contentType": "application/json", "headers": plain_headers,
        "payload": payload(DateVerdict), "bindings": {"kafka": {"key": {
            "type": "string", "description": "The date's subject (DateVerdict.key): compacted, the latest verdict a subject"}}},
    }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "summary": "A message a service could not process: its key, value and headers unchanged, plus why",
        "headers": {"type": "object", "properties": {
            name: {"type": "string"} for name in ("dlq_reason", "dlq_service", "dlq_topic", "dlq_partition", "dlq_offset", "dlq_at")
        }},
        "payload": {"description": "the original bytes"},
    }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in REGISTRY:
        channel = _channel_id(spec.name)
        if spec.value is Envelope:
            names = list(EVENT_TYPES)
        elif spec.value is None:
            names = ["DeadLetter"]
        else:
            names = [spec.value.__name__]
        channels[channel] = {
            "address": spec.name,
            "description": f"{spec.description}. Key: {spec.key}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
        }
        writers, readers = _flow(spec.name)
        for action, who in (("send", writers), ("receive", readers)):
            operations[f"{action}-{channel}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": who,
                "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "omboard",
            "version": "1.0.0",
            "description": "Events in, provisioning tasks, status changes and notifications out. See docs/events.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {"host": "127.0.0.1:9092", "protocol": "kafka",
                         "description": "make run's embedded broker; production sets OMBOARD_KAFKA_BOOTSTRAP"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def write_asyncapi(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asyncapi_document(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
