"""The metrics every omboard process exposes on ``/metrics``, declared once.

Naming: ``omboard_`` then, for what only one service measures, the service's name; base units
(seconds), ``_total`` on counters; labels are small closed sets (service, event type, topic,
system, responsible party, kind) — never a provider, task or person id.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from schemas.events import EVENT_TYPES

# -- every consuming service -------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "omboard_events_consumed_total", "Messages a service consumed, by event type", ["service", "type"]
)
EVENTS_FAILED = Counter(
    "omboard_events_failed_total", "Messages a service could not process, by event type", ["service", "type"]
)
DEAD_LETTERS = Counter(
    "omboard_dead_letters_total", "Records written to a dead-letter topic, by source topic", ["service", "topic"]
)
READ_MODEL_SKIPPED = Counter(
    "omboard_read_model_skipped_total",
    "Changelog records the read model's projection passed over: not a task record (logged with their offset)",
)
RECORDS_TOO_LARGE = Counter(
    "omboard_records_too_large_total",
    "Writes held back because the record would be over Kafka's limit (the message behind it is dead-lettered)",
    ["service"],
)
PRODUCE_RETRIES = Counter(
    "omboard_produce_retries_total",
    "Batches produced again because the broker refused them (the partition waits meanwhile)",
    ["app"],
)
PROCESSING_SECONDS = Histogram(
    "omboard_processing_duration_seconds", "Time to process one message", ["service"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
MESSAGE_AGE_SECONDS = Histogram(
    "omboard_message_age_seconds", "Age of a message when a service processed it (now minus its Kafka timestamp)",
    ["service", "topic"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
CONSUMER_LAG = Gauge(
    "omboard_consumer_lag_messages", "Messages not yet consumed, summed over a topic's assigned partitions",
    ["service", "topic"],
)

# -- planners (orgstructure, permissions) -------------------------------------------------------
TASKS_PLANNED = Counter(
    "omboard_tasks_planned_total", "Tasks a planner emitted, by target system", ["service", "system"]
)
LATE_ORDERS = Counter(
    "omboard_late_orders_total", "Tasks planned with a deadline already past (late-order warnings)", ["service", "system"]
)
PLAN_WARNINGS = Counter(
    "omboard_plan_warnings_total", "Warnings plans carried (roster-held, unknown-person, late-order, ...)", ["service", "code"]
)

# -- reporting ----------------------------------------------------------------------------------
TASKS_CREATED = Counter(
    "omboard_reporting_tasks_created_total", "Tasks added to the ledger", ["system", "responsible"]
)
TASKS_COMPLETED = Counter(
    "omboard_reporting_tasks_completed_total", "Tasks moved to done", ["system", "responsible"]
)
COMPLETED_LATE = Counter(
    "omboard_reporting_tasks_completed_late_total",
    "Tasks an event completed after their due date (a service report submitted late)", ["system", "obligation"]
)
TASK_STATUS_CHANGES = Counter(
    "omboard_reporting_task_status_changes_total", "Accepted status changes, by new status", ["status"]
)
TASKS_OPEN = Gauge(
    "omboard_reporting_tasks_open", "Tasks open or blocked in the ledger", ["system", "responsible"]
)
TASKS_OVERDUE = Gauge(
    "omboard_reporting_tasks_overdue", "Open or blocked tasks past their due date", ["system", "responsible"]
)
NOTIFICATIONS_REQUESTED = Counter(
    "omboard_reporting_notifications_requested_total", "Reminders and escalations asked for", ["kind"]
)
SWEEP_SECONDS = Histogram(
    "omboard_reporting_sweep_duration_seconds", "Time one deadline sweep took",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)

# -- notifier -----------------------------------------------------------------------------------
EMAILS_SENT = Counter("omboard_notifier_emails_sent_total", "Mails the SMTP server accepted", ["kind"])
EMAILS_FAILED = Counter(
    "omboard_notifier_emails_failed_total", "Mails not delivered, by failure class", ["kind", "failure"]
)
EMAIL_RETRIES = Counter("omboard_notifier_email_retries_total", "Temporary SMTP failures retried", ["kind"])

# -- intake API ---------------------------------------------------------------------------------
API_REQUESTS = Counter("omboard_api_requests_total", "HTTP requests, by route template and status", ["route", "status"])
API_EVENTS_PUBLISHED = Counter("omboard_api_events_published_total", "Events accepted and published", ["type"])
API_EVENTS_REJECTED = Counter("omboard_api_events_rejected_total", "Events refused, by HTTP status", ["status"])


def exposition() -> tuple[bytes, str]:
    """The text format Prometheus scrapes, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def observe_age(service: str, topic: str, timestamp: float | None, now: float) -> None:
    if timestamp:
        MESSAGE_AGE_SECONDS.labels(service, topic).observe(max(0.0, now - timestamp))


def metric_event_type(received) -> str:
    """A ``type`` label from a message's ce_type header, from a closed set: a header is input, and
    input must not mint label values."""
    raw = received.header("ce_type") or b""
    event_type = raw.decode("utf-8", "replace")
    return event_type if event_type in EVENT_TYPES else "unknown"
