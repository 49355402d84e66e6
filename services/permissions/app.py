"""permissions: the access lifecycle of each person — joiner, mover, leaver."""

from __future__ import annotations

from services.planning.app import build_planning_app
from services.runtime.settings import Settings
from services.runtime.stream_app import StreamApp

SCOPES = ("person",)


def build(settings: Settings, **app_options) -> StreamApp:
    return build_planning_app("permissions", SCOPES, settings, **app_options)
