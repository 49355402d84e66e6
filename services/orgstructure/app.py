"""orgstructure: organisation-level plans — structures, closures, tickets, trainings."""

from __future__ import annotations

import faust

from services.planning.app import build_planning_app
from services.runtime.settings import Settings

SCOPES = ("provider", "unit", "subcontractor")


def build(settings: Settings, **app_options) -> faust.App:
    return build_planning_app("orgstructure", SCOPES, settings, **app_options)
