"""orgstructure: organisation-level plans — structures, closures, tickets, trainings."""

from __future__ import annotations

from services.planning.app import build_planning_app
from services.runtime.settings import Settings
from services.runtime.stream_app import StreamApp

SCOPES = ("provider", "unit", "subcontractor")


def build(settings: Settings, **app_options) -> StreamApp:
    return build_planning_app("orgstructure", SCOPES, settings, **app_options)
