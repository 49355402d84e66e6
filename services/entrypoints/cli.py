"""``omboard``: the command line of omboard.

Exit codes: 0 done; 1 the catalog (or another configuration file) is broken; 2 bad input (a usage
error, or an event that fails validation: every bad one is named as ``FILE:LINE: field: reason``);
3 Kafka (or, for ``omboard task``, the status API) is unreachable or did not acknowledge;
4 ``omboard task``: no such task.

Nothing here prints a personal identity number or an HSA-id where a person reads it: validation
errors never repeat values, and the plan table shows a pseudonym for each person.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from schemas.events import Envelope
from schemas.parsing import FieldError, InvalidEvent, described, field_errors, parse_event
from schemas.status import SETTABLE_STATUSES
from schemas.wire import event_to_kafka

DEFAULT_TIMEOUT = 10.0  # seconds; as services.intake.publisher.DEFAULT_TIMEOUT, without importing Kafka

EXIT_CATALOG = 1
EXIT_BAD_INPUT = 2
EXIT_KAFKA = 3
EXIT_UNKNOWN_TASK = 4  # omboard task: no such task

app = typer.Typer(
    name="omboard",
    help="Onboarding of care providers into the municipality's IT systems, driven by events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
schemas_app = typer.Typer(help="The event contract as JSON Schema.", no_args_is_help=True)
catalog_app = typer.Typer(help="The catalog of obligations.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(catalog_app, name="catalog")
keys_app = typer.Typer(help="API keys: hash one for OMBOARD_API_KEYS.", no_args_is_help=True)
task_app = typer.Typer(help="Move tasks through the status API.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(task_app, name="task")
roster_app = typer.Typer(help="Rosters held for an operator's word (warning roster-held).", no_args_is_help=True)
app.add_typer(roster_app, name="roster")


def _settings():
    from services.runtime.settings import get_settings

    return get_settings()


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


# -- reading event files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LineError:
    line: int
    error: FieldError


def _documents(path: Path, text: str) -> list[tuple[int, str | Any]]:
    """(line, raw event) pairs: the whole file when it is one JSON document, else one per line."""
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    if not jsonl:
        first_line = next((number for number, line in enumerate(text.splitlines(), 1) if line.strip()), 1)
        try:
            return [(first_line, json.loads(text))]
        except RecursionError:  # nested thousands deep: parse_event names it
            return [(first_line, text)]
        except json.JSONDecodeError as error:
            # "Extra data" after a first complete value: several values, one per line (JSON Lines).
            if path.suffix.lower() == ".json" or error.msg != "Extra data":
                return [(error.lineno, text)]
    return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_events(path: Path) -> tuple[list[tuple[int, Envelope]], list[LineError]]:
    """Validate every event in a JSON or JSON Lines file; return the good ones and every error."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [], [LineError(1, FieldError(field="(file)", reason="is not UTF-8 text"))]
    events: list[tuple[int, Envelope]] = []
    errors: list[LineError] = []
    for line, raw in _documents(path, text):
        try:
            event = parse_event(raw)
            event_to_kafka(event)  # EventTooLarge: it could never be published
            events.append((line, event))
        except InvalidEvent as invalid:
            errors += [LineError(line, error) for error in invalid.errors]
    if not events and not errors:
        errors.append(LineError(1, FieldError(field="(file)", reason="holds no event")))
    return events, errors


def _read_valid_events(path: Path) -> list[tuple[int, Envelope]]:
    events, errors = read_events(path)
    if errors:
        for problem in errors:
            typer.echo(f"{path}:{problem.line}: {problem.error}", err=True)
        bad_lines = len({problem.line for problem in errors})
        raise _fail(f"{path}: {bad_lines} invalid event(s); nothing was done", EXIT_BAD_INPUT)
    return events


EventFile = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, readable=True, help="A JSON file with one event, or JSON Lines (one event a line)."
    ),
]
CatalogOption = Annotated[
    Path | None,
    typer.Option("--catalog", help="Catalog file (default: OMBOARD_CATALOG_PATH or the Uppsala catalog)."),
]


# -- publish ---------------------------------------------------------------------------------------


@app.command()
def publish(
    file: EventFile,
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (default: settings).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for Kafka to answer and to acknowledge.")
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Validate every event in FILE, then publish them all to omboard.events (or none if any is bad)."""
    from services.intake.publisher import BlockingEventPublisher, KafkaUnavailable

    events = _read_valid_events(file)
    settings = _settings()
    bootstrap = bootstrap or settings.kafka_bootstrap
    try:
        with BlockingEventPublisher(bootstrap, settings, timeout=timeout) as publisher:
            sent = publisher.publish_all(event for _, event in events)
    except KafkaUnavailable as error:
        raise _fail(f"Kafka unavailable, events not (all) published: {error}", EXIT_KAFKA) from None
    for message in sent:
        typer.echo(message.event_id)


@roster_app.command("confirm")
def roster_confirm(
    provider_id: Annotated[str, typer.Argument(metavar="PROVIDER", help="The provider whose roster is held.")],
    as_of: Annotated[str, typer.Option("--as-of", metavar="YYYY-MM-DD", help="The held roster's date (its warning says).")],
    by: Annotated[str, typer.Option("--by", metavar="NAME", help="Who confirms it, recorded with the event.")],
    roster: Annotated[str | None, typer.Option(
        "--roster", metavar="DIGEST", help="Which roster (its warning says): only that one is confirmed.")] = None,
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (default: settings).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for Kafka to acknowledge.")] = DEFAULT_TIMEOUT,
) -> None:
    """Confirm a held roster (warning roster-held): its leavers leave on its date. Publishes
    StaffRosterConfirmed (with --roster, sending it again is the same event)."""
    import datetime as dt

    from services.intake.confirmations import roster_confirmation
    from services.intake.publisher import BlockingEventPublisher, KafkaUnavailable

    try:
        event = roster_confirmation(provider_id, as_of, by, dt.datetime.now(dt.UTC), roster)
    except InvalidEvent as invalid:
        raise _fail(f"nothing was published: {invalid}", EXIT_BAD_INPUT) from None
    settings = _settings()
    try:
        with BlockingEventPublisher(bootstrap or settings.kafka_bootstrap, settings, timeout=timeout) as publisher:
            (sent,) = publisher.publish_all([event])
    except KafkaUnavailable as error:
        raise _fail(f"Kafka unavailable, the confirmation was not published: {error}", EXIT_KAFKA) from None
    typer.echo(sent.event_id)


# -- schemas ---------------------------------------------------------------------------------------

@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(file_okay=False, help="Where to write the files (created if missing).")],
) -> None:
    """Write a JSON Schema per event type, the envelope, task and notification schemas, and topics.json."""
    from schemas.export import export_schemas

    for path in export_schemas(directory):
        typer.echo(f"wrote {path}")


# -- catalog ---------------------------------------------------------------------------------------


def _load_catalog(path: Path | None):
    from schemas.catalog import CatalogError, load_catalog

    try:
        return load_catalog(path or _settings().catalog_path)
    except CatalogError as error:
        raise _fail(str(error), EXIT_CATALOG) from None


@catalog_app.command("check")
def catalog_check(catalog: CatalogOption = None) -> None:
    """Load and validate the catalog; exit 1 naming the rule and field when it is broken."""
    loaded = _load_catalog(catalog)
    typer.echo(
        f"catalog {loaded.catalog} version {loaded.version}: "
        f"{len(loaded.rules)} rules, {len(loaded.obligations)} obligations OK"
    )


@catalog_app.command("coverage")
def catalog_coverage(
    catalog: CatalogOption = None,
    register: Annotated[
        Path | None, typer.Option(help="The obligation register (default: the one installed with the catalog, schemas/catalog/OBLIGATIONS.md).")
    ] = None,
) -> None:
    """Every obligation id with its rules and the events that trigger them, or why it has none.
    Exit 1 when an id of the register has neither a rule nor a no_task reason."""
    from schemas.catalog.coverage import coverage, coverage_table, register_ids, uncovered

    loaded = _load_catalog(catalog)
    try:
        ids = register_ids(register)
    except OSError as error:
        raise _fail(f"cannot read the obligation register: {error}", EXIT_CATALOG) from None
    rows = coverage(loaded, ids)
    typer.echo(coverage_table(rows))
    missing = uncovered(rows)
    if missing:
        raise _fail(f"no rule and no no_task reason for: {', '.join(missing)}", EXIT_CATALOG)


# -- plan (the dry run: services/entrypoints/dryrun.py) ---------------------------------------------


class Format(str, Enum):
    json = "json"
    table = "table"


@app.command()
def plan(
    file: EventFile,
    catalog: CatalogOption = None,
    format: Annotated[Format, typer.Option("--format", help="json (as the services emit it) or table.")] = Format.json,
) -> None:
    """Dry run: print the tasks the last event in FILE would create, after folding the earlier ones."""
    from services.entrypoints.dryrun import InvalidHistory, fold_and_plan, plan_table

    events = _read_valid_events(file)
    loaded = _load_catalog(catalog)
    try:
        result = fold_and_plan(events, loaded)
    except InvalidHistory as invalid:
        raise _fail(f"{file}:{invalid.line}: {invalid.error}", EXIT_BAD_INPUT) from None
    if format is Format.table:
        typer.echo(plan_table(result, events[-1][1]))
    else:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False))


# -- keys ------------------------------------------------------------------------------------------


@keys_app.command("hash")
def keys_hash(
    new: Annotated[bool, typer.Option("--new", help="Generate a new key instead of reading one from stdin.")] = False,
    name: Annotated[str, typer.Option(help="The key's name (shown in logs, errors and task histories).")] = "my-key",
    role: Annotated[str, typer.Option(help="upstream, operator, provider-admin or system.")] = "operator",
    event_type: Annotated[
        list[str] | None, typer.Option("--event-type", help="upstream: an event type it may publish (repeat).")
    ] = None,
    provider_id: Annotated[str | None, typer.Option("--provider-id", help="provider-admin: its provider.")] = None,
) -> None:
    """Print the SHA-256 of a key (read from stdin, or generated with --new) and the JSON entry to
    add to OMBOARD_API_KEYS. Only the hash is configured; keep the key itself secret."""
    from pydantic import ValidationError

    from services.http.access import MIN_KEY_LENGTH, ApiKey, generate_key, hash_key

    key = generate_key() if new else typer.get_text_stream("stdin").readline().strip()
    if len(key) < MIN_KEY_LENGTH:
        raise _fail(f"a key must be at least {MIN_KEY_LENGTH} characters (try --new)", EXIT_BAD_INPUT)
    try:
        entry = ApiKey(name=name, key_sha256=hash_key(key), role=role,  # type: ignore[arg-type]
                       event_types=event_type or None, provider_id=provider_id)
    except ValidationError as error:
        raise _fail(f"not a valid key entry: {described(field_errors(error, whole='(entry)'))}", EXIT_BAD_INPUT) from None
    if new:
        typer.echo(f"key: {key}")
    typer.echo(f"sha256: {entry.key_sha256}")
    typer.echo(json.dumps(entry.model_dump(exclude_none=True)))


# -- task status (over the status API) -------------------------------------------------------------


def _status_call(url: str | None, key: str | None, task_id: str, body: dict, timeout: float) -> None:
    """POST /v1/tasks/{id}/status and print the outcome; exit 0 ok, 2 refused or illegal, 4 unknown
    task, 3 the API cannot be reached."""
    import urllib.error
    import urllib.parse
    import urllib.request

    settings = _settings()
    base = (url or settings.status_page_url).rstrip("/")
    key = key or (settings.api_key.get_secret_value() if settings.api_key else None)
    if not key:
        raise _fail("an API key is needed: --key or OMBOARD_API_KEY", EXIT_BAD_INPUT)
    request = urllib.request.Request(
        f"{base}/v1/tasks/{urllib.parse.quote(task_id, safe='')}/status", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        status = error.code
        try:
            payload = json.loads(error.read() or b"{}")
        except ValueError:
            payload = {}
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise _fail(f"the status API at {base} cannot be reached: {reason}", EXIT_KAFKA) from None
    detail = payload.get("detail")
    if isinstance(detail, list):  # a 422 from validation
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
    if status in (200, 202):
        task = payload.get("task") or {}
        state = task.get("status", body["status"] if status == 202 else "?")
        typer.echo(f"{task_id}: {state}" + ("" if payload.get("changed", True) else " (unchanged)")
                   + (f" [{task.get('system')} {task.get('obligation')} {task.get('action')}]" if task else "")
                   + (f" - {detail}" if status == 202 else ""))
        return
    if status == 404:
        raise _fail(f"unknown task: {detail}", EXIT_UNKNOWN_TASK)
    if status >= 500:
        raise _fail(f"the status API failed ({status}): {detail}", EXIT_KAFKA)
    raise _fail(f"refused ({status}): {detail}", EXIT_BAD_INPUT)


StatusUrl = Annotated[str | None, typer.Option("--url", help="The status API (default: OMBOARD_STATUS_PAGE_URL).")]
StatusKey = Annotated[str | None, typer.Option("--key", help="API key (default: OMBOARD_API_KEY).")]
Reason = Annotated[str | None, typer.Option("--reason", help="Why, or who did the work (needed for failed).")]
StatusTimeout = Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the API.")]


@task_app.command("done")
def task_done(task_id: Annotated[str, typer.Argument(metavar="ID")], reason: Reason = None,
              url: StatusUrl = None, key: StatusKey = None, timeout: StatusTimeout = 20.0) -> None:
    """Mark task ID done (the history records the key's name; a note goes in --reason)."""
    _status_call(url, key, task_id, {"status": "done", "reason": reason}, timeout)


@task_app.command("status")
def task_status(task_id: Annotated[str, typer.Argument(metavar="ID")],
                status: Annotated[str, typer.Argument(metavar="STATUS", help="open, done, cancelled or failed.")],
                reason: Reason = None, url: StatusUrl = None, key: StatusKey = None,
                timeout: StatusTimeout = 20.0) -> None:
    """Set task ID to STATUS (open reopens a failed task; failed needs --reason)."""
    if status not in SETTABLE_STATUSES:
        raise _fail(f"STATUS must be {', '.join(SETTABLE_STATUSES[:-1])} or {SETTABLE_STATUSES[-1]}, not {status!r}",
                    EXIT_BAD_INPUT)
    if status == "failed" and not reason:
        raise _fail("a failed task needs --reason", EXIT_BAD_INPUT)
    _status_call(url, key, task_id, {"status": status, "reason": reason}, timeout)


# -- processes -------------------------------------------------------------------------------------


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: OMBOARD_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: OMBOARD_API_PORT).")] = None,
) -> None:
    """Serve the intake HTTP API (POST /v1/events, /healthz, /readyz)."""
    import uvicorn

    from services.bootstrap import bootstrap, build_intake_api
    from services.runtime.logs import configure_logging

    root = bootstrap(_settings())
    settings = root.settings
    configure_logging("api", settings.log_level)
    uvicorn.run(
        build_intake_api(root),
        host=host or settings.api_host,
        port=port if port is not None else settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep the redacting root handler configured above
    )


@app.command()
def worker(service: Annotated[str, typer.Argument(help="orgstructure, permissions, reporting or notifier.")]) -> None:
    """Run one service's worker."""
    from services.entrypoints.worker import run_service

    run_service(service)


@app.command()
def run() -> None:
    """Run everything locally: embedded broker, topics, every service, mail sink, API, demo data."""
    from services.entrypoints.launcher import run_all

    run_all()


def main() -> None:
    """The ``omboard`` console script."""
    app()


if __name__ == "__main__":
    main()
