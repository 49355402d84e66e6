"""The composition root: settings -> catalog -> planner -> the apps.

Every worker process (``omboard worker``, which ``make run`` and the tests' worker processes run)
and the intake API are built here, so each process loads its catalog once and the apps take what
they need from one place. Only the entrypoints import this module (``tests/unit/test_layers.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from schemas.catalog import Catalog, load_catalog
from services.domain.planner import Planner
from services.domain.state import PROCESSED_MEMORY
from services.runtime.settings import Settings, bad_settings, get_settings
from services.runtime.stream_app import StreamApp


@dataclass(frozen=True)
class Composition:
    """What every app of one process shares."""

    settings: Settings
    catalog: Catalog
    planner: Planner


def bootstrap(settings: Settings | None = None) -> Composition:
    settings = settings or get_settings()
    if settings.batch_size > PROCESSED_MEMORY:  # a redelivered batch would plan its oldest events again
        raise bad_settings([("OMBOARD_BATCH_SIZE", f"at most {PROCESSED_MEMORY}, the events a provider's facts "
                                                   "remember to recognise a redelivery")])
    catalog = load_catalog(settings.catalog_path)
    return Composition(settings, catalog, Planner(catalog))


def _orgstructure(root: Composition, **options: Any) -> StreamApp:
    from services.orgstructure.app import SCOPES
    from services.planning.app import build_planning_app

    return build_planning_app("orgstructure", SCOPES, root.settings, root.planner, **options)


def _permissions(root: Composition, **options: Any) -> StreamApp:
    from services.permissions.app import SCOPES
    from services.planning.app import build_planning_app

    return build_planning_app("permissions", SCOPES, root.settings, root.planner, **options)


def _reporting(root: Composition, **options: Any) -> StreamApp:
    from services.reporting.app import build

    return build(root.settings, root.planner, **options)


def _notifier(root: Composition, **options: Any) -> StreamApp:
    from services.notifier.app import build

    return build(root.settings, **options)


#: Each worker by service name; a worker imports only its own service.
WORKERS: dict[str, Callable[..., StreamApp]] = {
    "orgstructure": _orgstructure, "permissions": _permissions, "reporting": _reporting, "notifier": _notifier,
}


def build_worker(name: str, root: Composition | None = None, **options: Any) -> StreamApp:
    if name not in WORKERS:
        raise SystemExit(f"unknown service {name!r}; choose one of {', '.join(WORKERS)}")
    return WORKERS[name](root or bootstrap(), **options)


def build_intake_api(root: Composition | None = None, **options: Any) -> FastAPI:
    from services.intake.api import create_api

    return create_api((root or bootstrap()).settings, **options)
