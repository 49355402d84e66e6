"""The contract as JSON Schema files, for upstream teams that validate before they send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, create_model

from schemas.events import EVENT_TYPES, Envelope
from schemas.notifications import DeliveryRecord, NotificationRequest
from schemas.tasks import Task
from schemas.topics import REGISTRY

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
