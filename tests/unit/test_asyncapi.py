"""The AsyncAPI document: current, complete, and self-contained."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.export import asyncapi_document
from schemas.topics import ALL_TOPICS

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def resolve(document: dict, ref: str):
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_committed_document_is_current():
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == asyncapi_document(), "run make asyncapi"


def test_every_topic_of_the_registry_is_a_channel_with_a_writer_and_a_reader():
    document = asyncapi_document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(ALL_TOPICS)
    for channel_id in document["channels"]:
        actions = {op["action"] for op in document["operations"].values() if op["channel"]["$ref"] == f"#/channels/{channel_id}"}
        assert actions == {"send", "receive"}, channel_id


def test_every_reference_resolves_inside_the_document():
    document = asyncapi_document()
    for ref in refs(document):
        assert ref.startswith("#/"), ref
        resolve(document, ref)  # raises KeyError when it dangles
