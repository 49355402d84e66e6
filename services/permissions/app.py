"""permissions: the access lifecycle of each person — joiner, mover, leaver."""

from __future__ import annotations

import faust

from services.planning.app import build_planning_app
from services.runtime.settings import Settings

SCOPES = ("person",)


def build(settings: Settings, **app_options) -> faust.App:
    return build_planning_app("permissions", SCOPES, settings, **app_options)
